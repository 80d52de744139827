//! The chassis under load and bad input, with real `msm-node` processes: the
//! node loop serves the protocol first whatever an operator, a script or a
//! stranger on the backplane does, and acknowledged configuration is on the
//! backup. Every wait has a deadline; no test sleeps to let something happen.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::Write;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

mod common;

use common::{HB, chassis, log, no_failover, pair, switch};
use msm_control::{AppTable, Churning, Configured, Request, Response, Saved};
use msm_testkit::chassis::{Chassis, Reaped};

/// One chassis at a time: these tests are about timing under load, and two
/// chassis of debug builds on two cores would be each other's load.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn a_configure_of_20000_lines_keeps_the_heartbeats_and_is_on_the_backup_when_acknowledged() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, mut c) = chassis(HB);
    pair(&mut c, &[]);
    let term = switch(&c, 'A').term;
    let lines: Vec<String> = (0..20_000).map(|i| format!("create vlan v{i}")).collect();
    let r: Configured = c.ask('A', &Request::Configure { lines, wait: Some(20_000) }).unwrap();
    assert_eq!(r.applied, 20_000, "{r:?}");
    assert!(r.on_backup.checkpointed, "{r:?}");
    assert_eq!(r.on_backup.behind, 0);
    assert!(r.on_backup.seq >= 20_000, "{r:?}");
    no_failover(&c, &term);
    // What the master acknowledged is on the backup: its running configuration has every VLAN.
    let text = c.text('B', &Request::ShowConfiguration).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("create vlan v")).count(), 20_000);
    // A save waits for the backup's flash the same way.
    let s: Saved = c.ask('A', &Request::Save { which: None, wait: Some(20_000) }).unwrap();
    assert!(s.on_backup.checkpointed, "{s:?}");
    no_failover(&c, &term);
}

#[test]
fn a_wait_the_backup_cannot_answer_says_how_far_behind_it_is() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, mut c) = chassis(HB);
    pair(&mut c, &[]);
    // The backup stops (SIGSTOP): alive to the master until detection, acknowledging nothing.
    let pid = c.children[1].as_ref().unwrap().id() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGSTOP).unwrap();
    let lines = vec!["create vlan late1".to_string(), "create vlan late2".to_string()];
    let r: Configured = c.ask('A', &Request::Configure { lines, wait: Some(200) }).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGCONT).unwrap();
    assert_eq!(r.applied, 2, "{r:?}");
    assert!(!r.on_backup.checkpointed, "{r:?}");
    assert!(r.on_backup.behind >= 2, "{r:?}");
    let text = match c.call('A', &Request::ShowSwitch).unwrap() {
        Response::Ok { .. } => "ok",
        Response::Error { .. } => "error",
    };
    assert_eq!(text, "ok");
}

#[test]
fn a_client_that_never_reads_its_answer_is_dropped_and_the_node_goes_on() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, mut c) = chassis(HB);
    pair(&mut c, &["--fdb", "200000"]);
    let term = switch(&c, 'A').term;
    // Ask for some 10 MB of rows and never read them.
    let mut greedy = UnixStream::connect(c.path('A', "ctl")).unwrap();
    greedy.write_all(b"{\"op\":\"show-app\",\"app\":\"fdb\",\"rows\":true}\n").unwrap();
    // Meanwhile the node answers others and keeps its heartbeats.
    for _ in 0..20 {
        no_failover(&c, &term);
    }
    c.wait("the stalled client dropped", Duration::from_secs(15), |c| {
        Ok(log(c, 'A').contains("control client dropped"))
    })
    .unwrap();
    no_failover(&c, &term);
    drop(greedy);
}

#[test]
fn a_workload_beyond_the_limit_is_refused_by_name() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, mut c) = chassis(HB);
    pair(&mut c, &[]);
    let term = switch(&c, 'A').term;
    match c.call('A', &Request::Churn { rate: u32::MAX }).unwrap() {
        Response::Error { message } => assert!(message.contains("100000"), "{message}"),
        r => panic!("accepted: {r:?}"),
    }
    c.ask::<Churning>('A', &Request::Churn { rate: 20_000 }).unwrap();
    c.wait("churn checkpointed", Duration::from_secs(5), |c| {
        let rows = c.checkpoint('A', Some("fdb"))?;
        Ok(rows.first().is_some_and(|r| r.checkpointed > 20_000))
    })
    .unwrap();
    no_failover(&c, &term);
}

/// A second `msm-node --slot A` with its own flash, the `control` socket
/// given, and A's backplane path, run to its exit.
fn second_node_for_a(c: &Chassis, control: &std::path::Path) -> std::process::Output {
    Command::new(c.bin.join("msm-node"))
        .args(["--slot", "A", "--flash"])
        .arg(c.dir.join("intruder.img"))
        .arg("--control")
        .arg(control)
        .arg("--backplane")
        .arg(c.backplane('A'))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_second_node_given_the_running_nodes_paths_exits_and_names_them() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, mut c) = chassis(HB);
    pair(&mut c, &[]);
    let term = switch(&c, 'A').term;
    let out = second_node_for_a(&c, &c.path('A', "ctl"));
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("A.ctl") && err.contains("in use"), "{err}");
    // The backplane path is checked as well.
    let out = second_node_for_a(&c, &c.dir.join("intruder.ctl"));
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("A.sock"));
    no_failover(&c, &term);
}

#[test]
fn a_second_node_for_a_running_slot_is_reported_and_never_splits_the_chassis() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, mut c) = chassis(HB);
    pair(&mut c, &[]);
    let term = switch(&c, 'A').term;
    // A fresh flash counts boots from the clock's seconds: the second
    // module booted in the same second would have A's incarnation, and its
    // frames would only be refused as replays (documented). It boots later.
    let a_inc: u64 = log(&c, 'A')
        .split("incarnation ")
        .nth(1)
        .and_then(|s| s.split(|ch: char| !ch.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    c.wait("a later second", Duration::from_secs(3), |_| {
        Ok(msm_runtime::wall_clock::unix_now() - msm_runtime::flash::EPOCH_2025 > a_inc)
    })
    .unwrap();
    // Its own files and the chassis key, but slot A and a backplane to B: B
    // hears two modules claim A.
    let intruder = Command::new(c.bin.join("msm-node"))
        .args(["--slot", "A", "--heartbeat-ms", &HB.to_string(), "--flash"])
        .arg(c.dir.join("intruder.img"))
        .arg("--control")
        .arg(c.dir.join("intruder.ctl"))
        .arg("--backplane")
        .arg(format!("unix:{}:{}", c.dir.join("intruder.sock").display(), c.path('B', "sock").display()))
        .args(c.key_args().unwrap())
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Reaped)
        .unwrap();
    // It hears nothing (no module sends to its socket), so it never answers
    // B's challenge: B refuses its frames as a boot not proven alive and
    // nothing moves. (A second module that hears the chassis is reported
    // as a slot conflict: tests/mastership.rs.)
    let unproven = |c: &Chassis| {
        switch(c, 'B').frame_errors.by_slot.iter().find(|r| r.slot == "A").map_or(0, |r| r.unproven)
    };
    c.wait("B refuses the deaf module's frames", Duration::from_secs(5), |c| Ok(unproven(c) >= 20)).unwrap();
    let text = c.text('B', &Request::ShowSwitch).unwrap();
    assert!(text.contains("frames from MSM-A of a boot not proven alive"), "{text}");
    for _ in 0..20 {
        no_failover(&c, &term);
    }
    drop(intruder);
    no_failover(&c, &term);
    c.wait("in sync", Duration::from_secs(10), |c| Ok(c.in_sync('A'))).unwrap();
}

#[test]
fn every_refused_frame_is_counted_by_reason() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, mut c) = chassis(HB);
    pair(&mut c, &[]);
    let sock = UnixDatagram::unbound().unwrap();
    let target = c.path('B', "sock");
    sock.send_to(&[0xC5; 3], &target).unwrap(); // too short
    sock.send_to(&[0xC5, 1, 0, 1, 9, 9, 9, 9, 9, 9, 9, 9], &target).unwrap(); // bad CRC
    sock.send_to(&vec![0u8; 70_000], &target).unwrap_or(0); // larger than any frame
    c.wait("counted", Duration::from_secs(5), |c| {
        let e = switch(c, 'B').frame_errors;
        Ok(e.malformed >= 1 && e.bad_crc >= 1)
    })
    .unwrap();
    let e = switch(&c, 'B').frame_errors;
    assert!(e.total >= 2, "{e:?}");
    let text = c.text('B', &Request::ShowSwitch).unwrap();
    assert!(text.contains("Refused frames:"), "{text}");
}

#[test]
fn a_backup_whose_own_saved_configuration_is_larger_takes_the_masters() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, mut c) = chassis(HB);
    // B's own primary.cfg: some 1.9 MB.
    {
        let mut flash = msm_runtime::flash::BoardFlash::open(&c.path('B', "img")).unwrap();
        let big: String = (0..86_300).map(|i| format!("create vlan big{i:06}\n")).collect();
        assert!(big.len() > 1_850_000, "{}", big.len());
        flash.save(msm_flash::ConfigName::Primary, &big, 1).unwrap();
    }
    c.start('A', &[]).unwrap();
    c.wait("A master", Duration::from_secs(10), |c| Ok(c.role('A').as_deref() == Some("MASTER"))).unwrap();
    let lines: Vec<String> = (0..16_000).map(|i| format!("create vlan master{i:05}")).collect();
    c.ask::<Configured>('A', &Request::Configure { lines, wait: None }).unwrap();
    let saved: Saved = c.ask('A', &Request::Save { which: None, wait: None }).unwrap();
    let bytes = saved.bytes;
    assert!(bytes > 300_000, "{saved:?}");
    c.start('B', &[]).unwrap();
    c.wait("in sync", Duration::from_secs(60), |c| Ok(c.in_sync('A'))).unwrap();
    let b = switch(&c, 'B');
    assert_eq!(b.saved.first().map(|f| f.bytes), Some(bytes), "B's primary.cfg is the master's: {b:?}");
    let fail = c.checkpoint('A', Some("saved-config")).unwrap();
    assert_eq!(fail.first().map(|r| r.errors), Some(0), "{fail:?}");
}

#[test]
fn an_fdb_beyond_the_old_cap_is_honoured() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, mut c) = chassis(HB);
    c.start('A', &["--fdb", "60000"]).unwrap();
    c.wait("seeded", Duration::from_secs(30), |c| {
        let t: AppTable = c.ask('A', &Request::ShowApp { app: "fdb".into(), rows: false, from: 0 })?;
        Ok(t.entries == 60_000)
    })
    .unwrap();
}
