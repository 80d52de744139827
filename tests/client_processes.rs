//! Application processes checkpointing through their nodes (`msm-client`,
//! `msm-node --process ... --app-socket ...`), with real processes: two
//! client processes per MSM, one with a dependency on a built-in
//! application; the master is SIGKILLed mid-writing, and every change a
//! writer's `wait` reported as on the backup is in the table the client on
//! the new master holds. Every wait has a deadline.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

mod common;

use msm_testkit::chassis::{Chassis, Reaped};

static SERIAL: Mutex<()> = Mutex::new(());

/// The process applications both nodes declare.
const PROCESSES: [(&str, &str); 2] = [("acl", "acl:1:vlan"), ("stats", "stats:1")];

fn chassis() -> (tempfile::TempDir, Chassis) {
    let (dir, mut c) = common::chassis(common::HB);
    for (_, spec) in PROCESSES {
        c.common.extend(["--process".to_string(), spec.to_string()]);
    }
    (dir, c)
}

fn start(c: &mut Chassis, slot: char) {
    let app = c.path(slot, "app").display().to_string();
    c.start(slot, &["--app-socket", &app]).unwrap();
}

fn app(c: &Chassis, slot: char, name: &str, extra: &[&str]) -> Reaped {
    let mut cmd = Command::new(c.bin.join("msm-app"));
    cmd.arg("--socket").arg(c.path(slot, "app")).args(["--name", name]);
    if name == "acl" {
        cmd.args(["--dep", "vlan"]);
    }
    Reaped(cmd.args(extra).stdin(Stdio::null()).spawn().unwrap())
}

/// `key value` lines: the last value of each key.
fn table(text: &str) -> BTreeMap<u64, u64> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
        .collect()
}

#[test]
fn every_change_a_client_waited_for_is_on_the_new_master_after_a_sigkill() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, mut c) = chassis();
    start(&mut c, 'A');
    c.wait("A master", Duration::from_secs(5), |c| Ok(c.role('A').as_deref() == Some("MASTER"))).unwrap();
    start(&mut c, 'B');
    c.wait("in sync", Duration::from_secs(20), |c| Ok(c.in_sync('A'))).unwrap();
    // Backup side first: they follow from the start.
    let mut followers = Vec::new();
    for (name, _) in PROCESSES {
        let dump = c.dir.join(format!("{name}.dump"));
        followers.push(app(&c, 'B', name, &["--dump", dump.to_str().unwrap()]));
    }
    let mut writers = Vec::new();
    for (name, _) in PROCESSES {
        let acked = c.dir.join(format!("{name}.acked"));
        writers.push(app(
            &c,
            'A',
            name,
            &["--acked", acked.to_str().unwrap(), "--keys", "500", "--inflight", "8"],
        ));
    }
    // Writing under way on both, each checkpointed through its node.
    c.wait("acknowledged writes", Duration::from_secs(20), |c| {
        Ok(PROCESSES.iter().all(|(name, _)| {
            std::fs::read_to_string(c.dir.join(format!("{name}.acked"))).map_or(0, |t| t.lines().count())
                > 2000
        }))
    })
    .unwrap();
    let j = c.checkpoint('A', Some("acl")).unwrap();
    assert_eq!(
        j.first().map(|r| r.process.as_str()),
        Some("acl"),
        "the process application is listed like the others: {j:?}"
    );
    c.kill('A').unwrap();
    c.wait("B took over", Duration::from_secs(5), |c| Ok(c.role('B').as_deref() == Some("MASTER"))).unwrap();
    for (name, _) in PROCESSES {
        let dump = c.dir.join(format!("{name}.dump"));
        c.wait("the client on B dumps its table", Duration::from_secs(5), |_| Ok(dump.exists())).unwrap();
        let held = table(&std::fs::read_to_string(&dump).unwrap());
        let acked = table(&std::fs::read_to_string(c.dir.join(format!("{name}.acked"))).unwrap());
        assert!(acked.len() >= 500, "{name}: every key written and acknowledged");
        for (k, v) in &acked {
            let got = held.get(k).copied();
            assert!(
                got.is_some_and(|g| g >= *v),
                "{name}: key {k} acknowledged at {v}, the new master's client has {got:?}"
            );
        }
    }
    drop(writers);
    drop(followers);
}

fn pair(c: &mut Chassis) {
    start(c, 'A');
    c.wait("A master", Duration::from_secs(5), |c| Ok(c.role('A').as_deref() == Some("MASTER"))).unwrap();
    start(c, 'B');
    c.wait("in sync", Duration::from_secs(20), |c| Ok(c.in_sync('A'))).unwrap();
}

fn refused(r: Result<msm_client::Client, msm_client::Error>) -> String {
    match r {
        Err(msm_client::Error::Refused(m)) => m,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn bad_clients_are_refused_by_name_and_disturb_nothing() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, mut c) = chassis();
    pair(&mut c);
    let term = c.switch('A').unwrap().term;
    let sock = c.path('A', "app");
    let m = refused(msm_client::Client::connect(&sock, "bgp", 1, &[]));
    assert!(m.contains("no process application named 'bgp'") && m.contains("acl, stats"), "{m}");
    let m = refused(msm_client::Client::connect(&sock, "acl", 1, &["fdb"]));
    assert!(m.contains("dependencies [fdb] registered, the node declares [vlan]"), "{m}");
    let m = refused(msm_client::Client::connect(&sock, "acl", 9, &["vlan"]));
    assert!(m.contains("schema 9 registered"), "{m}");
    // Garbage, and a message longer than the protocol allows: an error naming it, then closed.
    for (bytes, want) in [
        (vec![3, 0, 0, 0, 0x7F, 1, 2], "unknown op 0x7f"),
        ((u32::MAX).to_le_bytes().to_vec(), "longer than"),
    ] {
        let mut s = UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&bytes).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        assert!(String::from_utf8_lossy(&answer).contains(want), "{want}: {answer:?}");
    }
    // A change too large for a record is refused, and the client goes on.
    let mut w = msm_client::Client::connect(&sock, "stats", 1, &[]).unwrap();
    match w.set(1, &vec![0u8; 100_000]) {
        Err(msm_client::Error::Refused(m)) => assert!(m.contains("exceeds the"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(w.set(1, b"ok").unwrap() >= 1);
    // On the backup a change is refused by name: it is not the master.
    let mut b = msm_client::Client::connect(c.path('B', "app"), "stats", 1, &[]).unwrap();
    match b.set(2, b"x") {
        Err(msm_client::Error::Refused(m)) => assert!(m.contains("is BACKUP"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A client on the backup that never reads while the master writes a lot: dropped, nothing else.
    let mut idle = UnixStream::connect(c.path('B', "app")).unwrap();
    let mut reg = Vec::new();
    msm_client::proto::Request::Register { version: 1, name: "stats".into(), schema: 1, deps: vec![] }
        .encode(&mut reg);
    idle.write_all(&reg).unwrap();
    let value = vec![7u8; 900];
    for round in 0..40u64 {
        for k in 0..64u64 {
            w.send(msm_client::Change::Set(round * 64 + k, value.clone()));
        }
        w.flush().unwrap();
        for _ in 0..64 {
            w.accepted().unwrap();
        }
    }
    c.wait("B drops the client that does not read", Duration::from_secs(15), |c| {
        Ok(std::fs::read_to_string(c.path('B', "log"))
            .unwrap_or_default()
            .contains("application client dropped"))
    })
    .unwrap();
    let a = c.switch('A').unwrap();
    assert_eq!((a.role.as_str(), &a.term), ("MASTER", &term), "no failover: {a:?}");
    c.wait("in sync", Duration::from_secs(5), |c| Ok(c.in_sync('A'))).unwrap();
}

#[test]
fn a_restarted_client_gets_its_state_back_from_its_node_without_a_rebulk() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, mut c) = chassis();
    pair(&mut c);
    let sock = c.path('A', "app");
    {
        let mut w = msm_client::Client::connect(&sock, "acl", 1, &["vlan"]).unwrap();
        let mut last = 0;
        for k in 0..299u64 {
            last = w.set(k, format!("rule {k}").as_bytes()).unwrap();
        }
        assert!(w.wait(last, Duration::from_secs(5)).unwrap());
        // WAIT 0 in the same write: every change this client sent.
        let (seq, ok) = w.set_and_wait(299, b"rule 299", Duration::from_secs(5)).unwrap();
        assert!(ok && seq == last + 1, "{seq} after {last}");
    } // the process is gone
    let rebulks = |c: &Chassis| c.checkpoint('A', Some("acl")).unwrap().first().map(|r| r.rebulks);
    let before = rebulks(&c);
    let mut again = msm_client::Client::connect(&sock, "acl", 1, &["vlan"]).unwrap();
    assert!(again.checkpointed_at_start() >= 300);
    let mut state = BTreeMap::new();
    loop {
        match again.next_event(Some(Duration::from_secs(5))).unwrap() {
            Some(msm_client::Event::StateBegin { entries }) => assert_eq!(entries, 300),
            Some(msm_client::Event::Record(msm_client::Change::Set(k, v))) => {
                state.insert(k, String::from_utf8(v).unwrap());
            }
            Some(msm_client::Event::StateEnd) => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(state.len(), 300);
    assert_eq!(state[&42], "rule 42");
    assert_eq!(rebulks(&c), before, "nothing chassis-wide was sent again");
    assert!(c.in_sync('A'));
}

/// The Python client of `examples/python` speaks the protocol from its
/// documentation alone.
#[test]
fn the_python_client_registers_sets_and_waits() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if Command::new("python3").arg("--version").output().is_err() {
        println!("SKIPPED the_python_client_registers_sets_and_waits: no python3 on this machine");
        return;
    }
    let (_d, mut c) = chassis();
    pair(&mut c);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python/msm_client.py");
    let out =
        Command::new("python3").arg(&script).arg(c.path('A', "app")).args(["stats", "1"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("on the backup: True"), "{out:?}");
    let j = c.checkpoint('A', Some("stats")).unwrap();
    assert!(j.first().map(|r| r.checkpointed) >= Some(100), "{j:?}");
    // On the backup it receives the state the master's process wrote.
    let out =
        Command::new("python3").arg(&script).arg(c.path('B', "app")).args(["stats", "1"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("state received: 100 entries"), "{out:?}");
}

/// A change's acceptance waits for the answer to the wait behind it only
/// briefly (the node coalesces them when the backup answers within a round
/// trip): with no backup the wait runs its whole time, and the acceptance
/// must reach the client long before it ends.
#[test]
fn a_wait_without_a_backup_does_not_withhold_the_acceptance() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, mut c) = chassis();
    start(&mut c, 'A');
    c.wait("A master", Duration::from_secs(5), |c| Ok(c.role('A').as_deref() == Some("MASTER"))).unwrap();
    let mut w = msm_client::Client::connect(c.path('A', "app"), "stats", 1, &[]).unwrap();
    let wait = Duration::from_secs(3);
    let t = std::time::Instant::now();
    w.send(msm_client::Change::Set(1, b"1".to_vec()));
    w.send_wait_all(wait);
    w.flush().unwrap();
    w.accepted().unwrap();
    let accepted = t.elapsed();
    assert!(!w.waited().unwrap(), "no backup holds the change");
    let waited = t.elapsed();
    assert!(waited >= wait, "the wait ran its time ({waited:?})");
    assert!(accepted < wait / 2, "the acceptance was held {accepted:?} of a {wait:?} wait");
}
