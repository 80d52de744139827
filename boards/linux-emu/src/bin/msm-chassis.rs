//! `msm-chassis`: a two-MSM chassis of real processes, narrated. This is
//! what `cargo xtask emu` runs: boot, configuration sync, bulk checkpoint
//! with progress, dynamic checkpoint under churn, a SIGKILLed master, the
//! backup taking over with every acknowledged change, the old master back as
//! backup. `--interactive` leaves the chassis running for the operator.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use msm_control::{AppTable, Request};
use msm_narrate::{Progress, progress_bar};
use msm_runtime::apps::APPS;
use msm_testkit::chassis::{Chassis, Reaped};
use msm_testkit::journal::Journal;

#[derive(Parser)]
#[command(about = "Run a two-MSM chassis of processes and narrate sync, checkpoint and failover")]
struct Args {
    /// Keep the chassis in this directory (default: a new temporary one).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Leave the chassis running after start-up and print how to drive it.
    #[arg(long)]
    interactive: bool,
    #[arg(long, default_value_t = 50)]
    heartbeat_ms: u64,
    /// MAC table entries on the first master.
    #[arg(long, default_value_t = 20_000)]
    fdb: u32,
    /// State changes per second during the churn phase.
    #[arg(long, default_value_t = 5_000)]
    churn: u32,
}

fn heading(s: &str) {
    println!("{}", msm_narrate::heading(s));
}

fn bars(c: &Chassis, slot: char) -> Result<bool> {
    for r in c.checkpoint(slot, None)? {
        println!(
            "{}",
            progress_bar(&Progress {
                name: &r.process,
                percent: u64::from(r.percent),
                sent: r.sent,
                total: r.total,
                status: &r.status,
            })
        );
    }
    Ok(c.in_sync(slot))
}

fn show(c: &Chassis, slot: char, req: Request, cmd: &str) -> Result<()> {
    println!("* MSM.{slot} # {cmd}");
    let text = c.text(slot, &req)?;
    // Some answers (`save`) end without a newline: the next prompt must start a line.
    if text.is_empty() || text.ends_with('\n') {
        print!("{text}")
    } else {
        println!("{text}")
    }
    Ok(())
}

/// Bulk transfers `slot` took or sent so far, all streams.
fn bulks(c: &Chassis, slot: char) -> Result<u64> {
    Ok(c.checkpoint(slot, None)?.iter().map(|r| r.bulks).sum())
}

fn state_of(c: &Chassis, slot: char) -> Result<Vec<BTreeMap<u64, String>>> {
    c.app_state(slot)
}

fn digests(c: &Chassis, slot: char) -> Result<Vec<String>> {
    APPS.iter()
        .map(|(name, _, _)| {
            let t: AppTable = c.ask(slot, &Request::ShowApp { app: (*name).into(), rows: false, from: 0 })?;
            Ok(format!("{}:{}:{}", name, t.entries, t.digest))
        })
        .collect()
}

fn main() -> Result<()> {
    let args = Args::parse();
    let tmp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let mut c = Chassis::new(&dir, Chassis::bin_dir()?);
    c.common = vec!["--heartbeat-ms".into(), args.heartbeat_ms.to_string(), "--miss".into(), "3".into()];
    // acl runs as its own process on each MSM (msm-app, through msm-client).
    c.common.extend(["--process".into(), "acl:1:vlan".into()]);
    let hb = Duration::from_millis(args.heartbeat_ms);
    println!("chassis directory: {}", dir.display());

    heading("MSM-A boots alone");
    let app_a = c.path('A', "app").display().to_string();
    let app_b = c.path('B', "app").display().to_string();
    c.start('A', &["--fdb", &args.fdb.to_string(), "--app-socket", &app_a])?;
    c.wait("MSM-A to become MASTER", hb * 20, |c| Ok(c.role('A').as_deref() == Some("MASTER")))?;
    c.text(
        'A',
        &Request::Configure {
            lines: vec![
                "configure snmp sysName core-1".into(),
                "create vlan corp tag 100".into(),
                "configure vlan corp add ports 1-24".into(),
                "create vlan lab tag 200".into(),
                "configure vlan lab add ports 25-40".into(),
            ],
            wait: None,
        },
    )?;
    show(&c, 'A', Request::Save { which: None, wait: None }, "save")?;
    show(&c, 'A', Request::ShowSwitch, "show switch")?;

    heading("MSM-B boots: saved config to its flash, active config, bulk checkpoint");
    c.start('B', &["--app-socket", &app_b])?;
    let t0 = Instant::now();
    let mut shown = 0;
    loop {
        std::thread::sleep(Duration::from_millis(150));
        let done = c.in_sync('A');
        if shown < 5 || done {
            println!("-- {:.2} s", t0.elapsed().as_secs_f64());
            bars(&c, 'A')?;
            shown += 1;
        }
        if done {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("MSM-B did not get in sync within 60 s");
        }
    }
    println!("in sync after {:.2} s", t0.elapsed().as_secs_f64());
    show(&c, 'A', Request::ShowSwitch, "show switch")?;
    show(&c, 'B', Request::ShowSwitch, "show switch")?;
    show(&c, 'A', Request::ShowCheckpointData { process: None }, "show checkpoint-data")?;

    if args.interactive {
        heading("Interactive: the chassis keeps running");
        let msm = c.bin.join("msm");
        println!("Try, for example:");
        println!("  {} --node {} show switch", msm.display(), c.path('A', "ctl").display());
        println!("  {} --node {} show checkpoint-data fdb", msm.display(), c.path('B', "ctl").display());
        println!(
            "  {} --node {} configure \"create vlan v5 tag 5\"",
            msm.display(),
            c.path('A', "ctl").display()
        );
        println!("  {} --node {} churn 2000", msm.display(), c.path('A', "ctl").display());
        println!("  {} --node {} run msm-failover", msm.display(), c.path('A', "ctl").display());
        println!("  kill -9 $(pgrep -f 'msm-node --slot A')   # a master failure");
        println!("Logs: {}/A.log, {}/B.log. Press Ctrl-C to stop the chassis.", dir.display(), dir.display());
        let mut mask = nix::sys::signal::SigSet::empty();
        mask.add(nix::sys::signal::Signal::SIGINT);
        mask.add(nix::sys::signal::Signal::SIGTERM);
        mask.thread_block()?;
        let _ = mask.wait();
        let status =
            |r: Result<std::process::ExitStatus>| r.map_or_else(|e| e.to_string(), |s| s.to_string());
        let (a, b) = (status(c.stop('A')), status(c.stop('B')));
        println!("\nstopped: MSM-A {a}, MSM-B {b}");
        return Ok(());
    }

    heading("acl, an application in its own process on each MSM");
    let acl = AclProcesses::start(&c)?;
    c.wait("acl writes", Duration::from_secs(10), |_| Ok(acl.acked() > 1000))?;
    println!(
        "acl on MSM-A (pid {}) writes and waits until MSM-B has each change: {} acknowledged so far;",
        acl.writer.0.id(),
        acl.acked()
    );
    println!("acl on MSM-B (pid {}) applies them as its node forwards them", acl.follower.0.id());
    show(&c, 'A', Request::ShowCheckpointData { process: Some("acl".into()) }, "show checkpoint-data acl")?;

    heading("Dynamic checkpoint: configuration changes and state churn");
    c.text('A', &Request::Churn { rate: args.churn })?;
    for v in 1..=5 {
        c.text(
            'A',
            &Request::Configure { lines: vec![format!("create vlan v{v} tag {}", 300 + v)], wait: None },
        )?;
        std::thread::sleep(Duration::from_millis(200));
    }
    show(&c, 'A', Request::ShowCheckpointData { process: Some("fdb".into()) }, "show checkpoint-data fdb")?;
    show(&c, 'B', Request::ShowCheckpointData { process: Some("fdb".into()) }, "show checkpoint-data fdb")?;
    show(&c, 'A', Request::Reboot { force: false }, "reboot").unwrap_or_else(|e| println!("{e}"));

    heading("A stranger on the backplane: forged frames without the chassis key");
    stranger(&c)?;

    heading("MSM-A dies (SIGKILL) in the middle of the churn");
    c.kill('A')?;
    let killed = Instant::now();
    c.wait("MSM-B to become MASTER", hb * 10, |c| Ok(c.role('B').as_deref() == Some("MASTER")))?;
    println!(
        "MSM-B is MASTER {:.0} ms after the kill (heartbeat {} ms x 3)",
        killed.elapsed().as_secs_f64() * 1000.0,
        args.heartbeat_ms
    );
    c.text('B', &Request::Churn { rate: 0 })?;
    let journal =
        Journal::parse(&std::fs::read_to_string(c.path('A', "journal"))?).map_err(anyhow::Error::msg)?;
    let verified = journal.verify(&state_of(&c, 'B')?).map_err(anyhow::Error::msg)?;
    println!("every change MSM-A reported as checkpointed is on MSM-B: {verified} changes verified");
    let (acked, held) = acl.verify(&c)?;
    println!(
        "acl: the process on MSM-B holds every one of the {acked} changes the process on MSM-A waited for \
         ({held} keys), and its node is MASTER"
    );
    show(&c, 'B', Request::ShowSwitch, "show switch")?;

    heading("MSM-A restarts: it comes back as BACKUP and resynchronises");
    c.start('A', &[])?;
    let t1 = Instant::now();
    c.wait("MSM-A in sync as BACKUP", Duration::from_secs(60), |c| {
        Ok(c.in_sync('B') && c.role('A').as_deref() == Some("BACKUP"))
    })?;
    println!("resynchronised in {:.2} s", t1.elapsed().as_secs_f64());
    show(&c, 'B', Request::ShowSwitch, "show switch")?;
    show(&c, 'A', Request::ShowCheckpointData { process: None }, "show checkpoint-data")?;
    let (da, db) = (digests(&c, 'A')?, digests(&c, 'B')?);
    println!("application digests equal on both MSMs: {}", da == db);
    if da != db {
        bail!("state differs: A {da:?} B {db:?}");
    }

    heading("run msm-failover on MSM-B: a hitless switchover back to MSM-A");
    let bulks_before = bulks(&c, 'B')?;
    let t2 = Instant::now();
    c.text('B', &Request::Failover { force: false })?;
    c.wait("MSM-A MASTER, MSM-B its BACKUP, in sync", Duration::from_secs(10), |c| {
        Ok(c.role('A').as_deref() == Some("MASTER")
            && c.role('B').as_deref() == Some("BACKUP")
            && c.in_sync('A'))
    })?;
    let sent = bulks(&c, 'B')? - bulks_before;
    println!(
        "MSM-A is MASTER and MSM-B, the old master, is its BACKUP in sync {:.1} ms later, with {sent} bulk \
         transfers: every stream continued from the handover point",
        t2.elapsed().as_secs_f64() * 1e3
    );
    if sent != 0 {
        bail!("the switchover sent {sent} bulk transfers");
    }
    show(&c, 'B', Request::ShowCheckpointData { process: None }, "show checkpoint-data")?;
    let (sa, sb) = (c.stop('A')?, c.stop('B')?);
    println!("\nstopped with SIGTERM: MSM-A {sa}, MSM-B {sb}. Demo complete.");
    Ok(())
}

/// The acl application's two processes: a writer on MSM-A, a follower on MSM-B.
struct AclProcesses {
    writer: Reaped,
    follower: Reaped,
    acked: std::path::PathBuf,
    dump: std::path::PathBuf,
}

impl AclProcesses {
    fn start(c: &Chassis) -> Result<AclProcesses> {
        let (acked, dump) = (c.dir.join("acl.acked"), c.dir.join("acl.dump"));
        let spawn = |slot: char, extra: &[&std::ffi::OsStr]| -> Result<Reaped> {
            let mut cmd = std::process::Command::new(c.bin.join("msm-app"));
            cmd.arg("--socket").arg(c.path(slot, "app")).args(["--name", "acl", "--dep", "vlan"]).args(extra);
            Ok(Reaped(cmd.stdin(std::process::Stdio::null()).spawn().context("starting msm-app")?))
        };
        let follower = spawn('B', &["--dump".as_ref(), dump.as_os_str()])?;
        let writer =
            spawn('A', &["--acked".as_ref(), acked.as_os_str(), "--keys".as_ref(), "2000".as_ref()])?;
        Ok(AclProcesses { writer, follower, acked, dump })
    }

    fn acked(&self) -> usize {
        std::fs::read_to_string(&self.acked).map_or(0, |t| t.lines().count())
    }

    /// Every change the writer waited for is in the follower's table: (changes, keys).
    fn verify(&self, c: &Chassis) -> Result<(usize, usize)> {
        c.wait("acl on MSM-B to dump its table", Duration::from_secs(5), |_| Ok(self.dump.exists()))?;
        let parse = |t: String| -> BTreeMap<u64, u64> {
            t.lines()
                .filter_map(|l| l.split_once(' '))
                .filter_map(|(k, v)| Some((k.parse().ok()?, v.parse().ok()?)))
                .collect()
        };
        let held = parse(std::fs::read_to_string(&self.dump)?);
        let text = std::fs::read_to_string(&self.acked)?;
        let acked = text.lines().count();
        for (k, v) in parse(text) {
            if held.get(&k).is_none_or(|h| *h < v) {
                bail!("acl key {k}: acknowledged at {v}, MSM-B's process has {:?}", held.get(&k));
            }
        }
        Ok((acked, held.len()))
    }
}

/// What the first wave's attacker did with one datagram each: a MASTER
/// heartbeat of a phantom slot C with a higher term (to make A step down),
/// a Handover "from A" to B; now refused, counted, and nothing moves.
fn stranger(c: &Chassis) -> Result<()> {
    use msm_checkpoint::wire::{self, Body, FrameWriter, Heartbeat};
    let before = c.switch('A')?.term;
    let hb = Heartbeat {
        role: 1,
        priority: 0,
        health: 255,
        backup: wire::NO_SLOT,
        in_sync: true,
        session: 0,
        incarnation: u32::MAX,
        config: wire::DigestMark::default(),
        ..Heartbeat::default()
    };
    let sock = std::os::unix::net::UnixDatagram::unbound()?;
    for i in 0..50u64 {
        let mut buf = [0u8; wire::MAX_HEARTBEAT];
        let n = FrameWriter::heartbeat(&mut buf, 2, u64::MAX, &hb)?.finish();
        wire::seal(&mut buf[..n], None, u32::MAX, i + 1);
        sock.send_to(&buf[..n], c.path('A', "sock"))?;
        let n = FrameWriter::new(&mut buf, 0, 1, 0x7FFF_FFFF, &Body::Handover { force: true })?.finish();
        wire::seal(&mut buf[..n], None, u32::MAX, i + 1);
        sock.send_to(&buf[..n], c.path('B', "sock"))?;
    }
    println!(
        "sent 50 MASTER heartbeats of a phantom MSM-C in term u64::MAX to MSM-A, 50 Handovers 'from MSM-A' to MSM-B"
    );
    c.wait("both to count them", Duration::from_secs(5), |c| {
        let refused = |s: char, from: &str| -> Result<u64> {
            let j = c.switch(s)?;
            Ok(j.frame_errors.by_slot.iter().find(|r| r.slot == from).map_or(0, |r| r.auth))
        };
        Ok(refused('A', "C")? >= 50 && refused('B', "A")? >= 50)
    })?;
    show(c, 'A', Request::ShowSwitch, "show switch")?;
    let after = c.switch('A')?;
    if after.term != before || after.role != "MASTER" || c.role('B').as_deref() != Some("BACKUP") {
        bail!("a forged frame moved the chassis: {after:?}");
    }
    println!(
        "nothing moved: MSM-A is MASTER in term {before}, MSM-B BACKUP; every forged frame was refused before it was read"
    );
    Ok(())
}
