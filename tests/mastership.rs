//! Mastership follows the data, with real `msm-node` processes and the
//! chassis key: frames of an earlier boot replayed at a module as it
//! restarts, a second module configured for the master's slot, and key
//! rotation steps out of order never fail the chassis over or make the
//! master discard anything. Every wait has a deadline.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{HB, Tap, by_slot, chassis, log, pair, switch, tapped_pair};
use msm_control::{AppTable, FailingOver, KeyStep, Request, Switch};
use msm_testkit::chassis::Chassis;

/// One chassis at a time: timing under two debug chassis on two cores is noise.
static SERIAL: Mutex<()> = Mutex::new(());
const WAIT: Duration = Duration::from_secs(20);

/// Entries of every application on `slot`.
fn entries(c: &Chassis, slot: char) -> Vec<(String, u64)> {
    msm_runtime::apps::APPS
        .iter()
        .map(|(n, _, _)| {
            let t: AppTable =
                c.ask(slot, &Request::ShowApp { app: (*n).into(), rows: false, from: 0 }).unwrap();
            ((*n).to_string(), t.entries)
        })
        .collect()
}

/// A stayed master in `term`, lost no split brain, and holds at least the
/// entries it held before (nothing it had was discarded).
fn master_kept_everything(c: &Chassis, term: &str, before: &[(String, u64)]) {
    let a = switch(c, 'A');
    let logs = || format!("A log:\n{}\nB log:\n{}", log(c, 'A'), log(c, 'B'));
    assert_eq!((a.role.as_str(), a.term.as_str()), ("MASTER", term), "A: {a:?}\n{}", logs());
    assert_eq!(a.split_brain, None, "A discarded changes: {a:?}\n{}", logs());
    for ((name, had), (_, has)) in before.iter().zip(entries(c, 'A')) {
        // The churn changes values and deletes some; a wipe takes most.
        assert!(has * 2 >= *had, "{name}: {had} entries before, {has} after\n{}", logs());
    }
}

/// Send every frame of `frames` to `to` as soon as its socket appears, again
/// and again for `for_how_long`: the first microseconds of a boot included.
fn replay_at_boot(frames: Vec<Vec<u8>>, to: std::path::PathBuf, for_how_long: Duration) -> ReplayThread {
    let (stop, sent) = (std::sync::Arc::new(AtomicBool::new(false)), std::sync::Arc::new(AtomicU64::new(0)));
    let (s, n) = (stop.clone(), sent.clone());
    let thread = std::thread::spawn(move || {
        let sock = UnixDatagram::unbound().unwrap();
        let start = Instant::now();
        while !s.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(30) {
            if to.exists() {
                break;
            }
            std::hint::spin_loop();
        }
        let start = Instant::now();
        while !s.load(Ordering::Relaxed) && start.elapsed() < for_how_long {
            for f in &frames {
                if sock.send_to(f, &to).is_ok() {
                    n.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    ReplayThread { stop, sent, thread: Some(thread) }
}

struct ReplayThread {
    stop: std::sync::Arc<AtomicBool>,
    sent: std::sync::Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ReplayThread {
    fn finish(mut self) -> u64 {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for ReplayThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn failover(c: &Chassis, from: char, to: char) {
    c.wait("in sync before the switchover", WAIT, |c| Ok(c.in_sync(from))).unwrap();
    c.ask::<FailingOver>(from, &Request::Failover { force: false }).unwrap();
    c.wait("switched over", WAIT, |c| Ok(c.role(to).as_deref() == Some("MASTER") && c.in_sync(to))).unwrap();
}

/// The first finding: MASTER heartbeats (and a Handover) of an earlier boot
/// of A, captured on the backplane, sent to B as it restarts. B used to
/// follow the dead boot, take over from the live A and make A discard its
/// state. Now B refuses them until A's live boot answers its challenge, and
/// the chassis does not move.
#[test]
fn frames_of_an_earlier_boot_replayed_at_a_restart_move_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, mut c) = chassis(HB);
    let tap = tapped_pair(&mut c, &["--churn", "1000"]);
    // A's first boot as master, then as the master that hands over (a Handover).
    failover(&c, 'A', 'B');
    failover(&c, 'B', 'A');
    // A restarts: B takes over; A's second boot becomes backup, then master again.
    c.kill('A').unwrap();
    c.wait("B master", WAIT, |c| Ok(c.role('B').as_deref() == Some("MASTER"))).unwrap();
    c.start('A', &["--churn", "1000"]).unwrap();
    failover(&c, 'B', 'A');
    let captured: Vec<Vec<u8>> = tap.frames.lock().unwrap().clone();
    let boots: std::collections::BTreeSet<u32> =
        captured.iter().filter_map(|f| msm_checkpoint::wire::open(f).ok()).map(|s| s.incarnation).collect();
    assert!(boots.len() >= 2, "frames of two boots of A captured: {boots:?}");
    let term = switch(&c, 'A').term;
    let before = entries(&c, 'A');

    // B restarts with the captures of both boots of A flooding its socket.
    c.kill('B').unwrap();
    let _ = std::fs::remove_file(c.path('B', "sock"));
    let replay = replay_at_boot(captured, c.path('B', "sock"), Duration::from_millis(600));
    c.start('B', &["--churn", "1000"]).unwrap();
    let sent = replay.finish();
    assert!(sent > 0);
    c.wait(
        "B backup in sync again",
        WAIT,
        |c| Ok(c.in_sync('A') && c.role('B').as_deref() == Some("BACKUP")),
    )
    .unwrap();
    master_kept_everything(&c, &term, &before);
    let b = switch(&c, 'B');
    let refused = by_slot(&b, "A", |r| r.unproven) + by_slot(&b, "A", |r| r.replay);
    assert!(refused > 0, "B refused the captures: {b:?}");
    let text = c.text('B', &Request::ShowSwitch).unwrap();
    assert!(text.contains("frames from MSM-A"), "{text}");
}

/// Start a second module configured for slot A with the chassis key, its
/// own flash, control socket and backplane socket `sock` sending to `peers`.
fn second_module_in_slot_a(c: &Chassis, sock: &std::path::Path, peers: &[&std::path::Path]) -> Child {
    let peers: Vec<String> = peers.iter().map(|p| p.display().to_string()).collect();
    let log = std::fs::File::create(c.dir.join("A2.log")).unwrap();
    Command::new(c.bin.join("msm-node"))
        .args(["--slot", "A", "--flash"])
        .arg(c.dir.join("A2.img"))
        .arg("--control")
        .arg(c.dir.join("A2.ctl"))
        .arg("--backplane")
        .arg(format!("unix:{}:{}", sock.display(), peers.join("+")))
        .args(&c.common)
        .args(c.key_args().unwrap())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// The second finding: a second module configured for slot A (the key on
/// it, its own backplane socket) while A and B run in sync. Whether or not
/// it hears the pair, B keeps following A, nothing fails over, and a module
/// that hears A in its own slot or a backup holding the state never takes
/// mastership.
#[test]
fn a_second_module_for_the_masters_slot_fails_nothing_over() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, mut c) = chassis(HB);
    c.nodes = 3; // a bus: A and B also send to the third socket, where the second module listens
    pair(&mut c, &["--churn", "1000"]);
    let term = switch(&c, 'A').term;
    let before = entries(&c, 'A');
    let a2_sock = c.path('C', "sock");
    // Heard by nobody it can hear back: it sends to B only, listens where only A and B send.
    let mut a2 = second_module_in_slot_a(&c, &a2_sock, &[&c.path('B', "sock")]);
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_millis(1500) {
        master_kept_everything(&c, &term, &before);
        assert_eq!(c.role('B').as_deref(), Some("BACKUP"), "B log:\n{}", log(&c, 'B'));
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = a2.kill();
    let _ = a2.wait();
    // Now on the bus both ways: it hears A (its own slot) and B (a backup that holds the state).
    let _ = std::fs::remove_file(c.dir.join("A2.img"));
    let mut a2 = second_module_in_slot_a(&c, &a2_sock, &[&c.path('A', "sock"), &c.path('B', "sock")]);
    c.wait("B reports two modules in slot A", WAIT, |c| {
        Ok(switch(c, 'B').slot_conflict.as_deref() == Some("A"))
    })
    .unwrap();
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_millis(1500) {
        master_kept_everything(&c, &term, &before);
        assert_eq!(c.role('B').as_deref(), Some("BACKUP"), "B log:\n{}", log(&c, 'B'));
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = msm_control::call(&c.dir.join("A2.ctl"), &Request::ShowSwitch);
    if let Ok(Ok(s)) = second.map(msm_control::Response::answer::<Switch>) {
        assert_ne!(s.role, "MASTER", "the second module took mastership: {s:?}");
    }
    let _ = a2.kill();
    let _ = a2.wait();
    c.wait("in sync", WAIT, |c| Ok(c.in_sync('A'))).unwrap();
    master_kept_everything(&c, &term, &before);
}

/// The third finding: key rotation steps out of order are refused by name
/// and fail nothing over; an all-zero key file is refused at start.
#[test]
fn key_rotation_out_of_order_is_refused_and_fails_nothing_over() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, mut c) = chassis(HB);
    pair(&mut c, &["--churn", "1000"]);
    let term = switch(&c, 'A').term;
    let before = entries(&c, 'A');
    let next = c.dir.join("next.key");
    msm_runtime::key_file::generate(&next).unwrap();
    let next = next.display().to_string();
    // Switch on A before B holds the next key: refused, naming B.
    c.ask::<KeyStep>('A', &Request::KeyInstall { path: next.clone() }).unwrap();
    let e = c.ask::<KeyStep>('A', &Request::KeySwitch).unwrap_err().to_string();
    assert!(e.contains("MSM-B does not hold key"), "{e}");
    // Retire on B while A... B holds one key only: nothing to retire. Install, then
    // retiring the next key on A is fine (no one sends under it).
    c.ask::<KeyStep>('B', &Request::KeyInstall { path: next.clone() }).unwrap();
    c.wait("A sees B hold the next key", WAIT, |c| Ok(c.ask::<KeyStep>('A', &Request::KeySwitch).is_ok()))
        .unwrap();
    // A sends under the next key; B still sends under the old one: neither may retire it.
    let e = c.ask::<KeyStep>('A', &Request::KeyRetire).unwrap_err().to_string();
    assert!(e.contains("MSM-B still sends under key"), "{e}");
    // B may switch once A's heartbeat since its install said it holds the key.
    c.wait("B may switch", WAIT, |c| Ok(c.ask::<KeyStep>('B', &Request::KeySwitch).is_ok())).unwrap();
    c.wait("B switched", WAIT, |c| Ok(c.ask::<KeyStep>('A', &Request::KeyRetire).is_ok())).unwrap();
    c.ask::<KeyStep>('B', &Request::KeyRetire).unwrap();
    c.wait("in sync", WAIT, |c| Ok(c.in_sync('A'))).unwrap();
    master_kept_everything(&c, &term, &before);
    assert_eq!(c.role('B').as_deref(), Some("BACKUP"));

    // An all-zero key file: refused at start, by name.
    let zero = c.dir.join("zero.key");
    std::fs::write(&zero, format!("{}\n", "0".repeat(64))).unwrap();
    std::fs::set_permissions(&zero, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = Command::new(c.bin.join("msm-node"))
        .args(["--slot", "C", "--key-file"])
        .arg(&zero)
        .arg("--flash")
        .arg(c.dir.join("z.img"))
        .arg("--control")
        .arg(c.dir.join("z.ctl"))
        .args(["--backplane", "unix:/nonexistent/x:/nonexistent/y"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("all bytes of the key are equal"), "{out:?}");
}

/// The newest heartbeat in `frames` (a tap's capture of one module's
/// datagrams): its boot, counter, term and body.
fn last_heartbeat(frames: &[Vec<u8>]) -> (u32, u64, u64, msm_checkpoint::wire::Heartbeat) {
    use msm_checkpoint::wire::{self, Body};
    frames
        .iter()
        .rev()
        .filter_map(|f| {
            let s = wire::open(f).ok()?;
            let fr = s.decode().ok()?;
            match fr.body {
                Body::Heartbeat(hb) => Some((s.incarnation, s.counter, fr.term, hb)),
                _ => None,
            }
        })
        .next()
        .expect("a heartbeat captured")
}

/// Who a forged heartbeat claims to be: slot index, boot, frame counter,
/// term and role.
struct Who {
    slot: u8,
    inc: u32,
    counter: u64,
    term: u64,
    role: u8,
}

/// A heartbeat as a module holding the chassis key would send it, as `who`,
/// answering module `to`'s challenge `challenge`.
fn insider_heartbeat(key: &msm_checkpoint::Key, who: Who, to: usize, challenge: u32) -> Vec<u8> {
    use msm_checkpoint::wire::{self, FrameWriter, Heartbeat};
    let mut echo = [[0u32; 2]; msm_checkpoint::MAX_NODES];
    echo[to] = [challenge, 0];
    let hb = Heartbeat {
        role: who.role,
        incarnation: who.inc,
        echo,
        backup: wire::NO_SLOT,
        health: 100,
        ..Heartbeat::default()
    };
    let mut buf = [0u8; wire::MAX_HEARTBEAT];
    let n = FrameWriter::heartbeat(&mut buf, who.slot, who.term, &hb).unwrap().finish();
    wire::seal(&mut buf[..n], Some(key), who.inc, who.counter);
    buf[..n].to_vec()
}

fn term_count(s: &Switch) -> u64 {
    s.term.split_once('.').and_then(|(n, _)| n.parse().ok()).unwrap_or(0)
}

/// The fourth finding: a module that holds the key but misbehaves. One frame
/// with counter u64::MAX in the master's live boot, a boot of slot B with
/// incarnation u32::MAX, MASTER heartbeats 2^16 terms apart and 2 000
/// MASTER heartbeats of a phantom in the master's own term: none locks a
/// module out, exhausts the terms, fails the chassis over or makes a module
/// flood the backplane.
#[test]
fn a_key_holder_that_misbehaves_locks_nothing_out() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, mut c) = chassis(HB);
    let (tap_a, tap_b) = (c.dir.join("tapA.sock"), c.dir.join("tapB.sock"));
    let from_a = Tap::start(&tap_a, &c.path('B', "sock"));
    let from_b = Tap::start(&tap_b, &c.path('A', "sock"));
    c.taps = [Some(tap_a), Some(tap_b)];
    pair(&mut c, &["--churn", "500"]);
    let key = msm_runtime::key_file::load(&c.key_path()).unwrap();
    let term = switch(&c, 'A').term;
    let before = entries(&c, 'A');
    let sock = UnixDatagram::unbound().unwrap();

    // 1. Counter u64::MAX in A's live boot, to B: refused, A's next frames still taken.
    let (a_inc, _, a_term, _) = last_heartbeat(&from_a.frames.lock().unwrap());
    let (_, _, _, b_hb) = last_heartbeat(&from_b.frames.lock().unwrap());
    let f = insider_heartbeat(
        &key,
        Who { slot: 0, inc: a_inc, counter: u64::MAX, term: a_term, role: 1 },
        1,
        b_hb.challenge,
    );
    sock.send_to(&f, c.path('B', "sock")).unwrap();
    c.wait("B counts the jump", WAIT, |c| Ok(switch(c, 'B').frame_errors.counter_jump >= 1)).unwrap();
    let sent = from_a.frames.lock().unwrap().len();
    c.wait("A's frames still taken", WAIT, |c| {
        Ok(c.in_sync('A') && from_a.frames.lock().unwrap().len() > sent + 20)
    })
    .unwrap();
    master_kept_everything(&c, &term, &before);
    assert_eq!(c.role('B').as_deref(), Some("BACKUP"));

    // 2. A boot of slot B with incarnation u32::MAX, proven to A; then B restarts twice.
    let (_, _, _, a_hb) = last_heartbeat(&from_a.frames.lock().unwrap());
    let f = insider_heartbeat(
        &key,
        Who { slot: 1, inc: u32::MAX, counter: 1, term: a_term, role: 0 },
        0,
        a_hb.challenge,
    );
    sock.send_to(&f, c.path('A', "sock")).unwrap();
    for _ in 0..2 {
        c.kill('B').unwrap();
        c.start('B', &["--churn", "500"]).unwrap();
        c.wait("B back in sync", WAIT, |c| Ok(c.in_sync('A') && c.role('B').as_deref() == Some("BACKUP")))
            .unwrap();
    }
    master_kept_everything(&c, &term, &before);

    // 3. MASTER heartbeats of a phantom slot C, each 2^16 terms above the last, for a second.
    let start = Instant::now();
    let mut fake = a_term;
    let mut counter = 1;
    while start.elapsed() < Duration::from_secs(1) {
        let (_, _, _, b_hb) = last_heartbeat(&from_b.frames.lock().unwrap());
        fake += 1 << 24; // count + 2^16
        counter += 1;
        let f = insider_heartbeat(
            &key,
            Who { slot: 2, inc: 7, counter, term: fake | 0xFD, role: 1 },
            1,
            b_hb.challenge,
        );
        let _ = sock.send_to(&f, c.path('B', "sock"));
        std::thread::sleep(Duration::from_millis(1));
    }
    c.wait("the chassis settles", WAIT, |c| {
        Ok(c.role('A').as_deref() == Some("MASTER")
            && c.role('B').as_deref() == Some("BACKUP")
            && c.in_sync('A'))
    })
    .unwrap_or_else(|e| panic!("{e}\nA log:\n{}\nB log:\n{}", log(&c, 'A'), log(&c, 'B')));
    // A second of insider frames moved the terms by at most 16 a detection time.
    for s in ['A', 'B'] {
        let n = term_count(&switch(&c, s));
        assert!(n < 16 * 40, "MSM-{s}'s term count is {n}");
    }
    let b = switch(&c, 'B');
    assert!(b.frame_errors.term_range >= 1, "{b:?}");

    // 4. 2 000 MASTER heartbeats of a phantom in the master's own term, to A:
    //    A answers a rival at most four times an interval.
    let (_, _, a_term_now, a_hb) = last_heartbeat(&from_a.frames.lock().unwrap());
    let heartbeats =
        |frames: &[Vec<u8>]| frames.iter().filter(|f| msm_checkpoint::wire::is_heartbeat(f)).count();
    let before_burst = heartbeats(&from_a.frames.lock().unwrap());
    let start = Instant::now();
    for i in 0..2000u64 {
        let f = insider_heartbeat(
            &key,
            Who { slot: 3, inc: 9, counter: i + 1, term: a_term_now, role: 1 },
            0,
            a_hb.challenge,
        );
        let _ = sock.send_to(&f, c.path('A', "sock"));
    }
    let during = heartbeats(&from_a.frames.lock().unwrap());
    // A's heartbeats after the burst, until one more has gone out.
    c.wait("A's next heartbeat", WAIT, |_| Ok(heartbeats(&from_a.frames.lock().unwrap()) > during)).unwrap();
    let took = start.elapsed();
    let sent = heartbeats(&from_a.frames.lock().unwrap()) - before_burst;
    let intervals = took.as_millis() as u64 / HB + 2;
    assert!(sent as u64 <= 4 * intervals, "A sent {sent} heartbeats in {intervals} intervals");
    c.wait("in sync", WAIT, |c| Ok(c.in_sync('A') && c.role('B').as_deref() == Some("BACKUP"))).unwrap();
    master_kept_everything(&c, &term, &before);
    drop((from_a, from_b));
}
