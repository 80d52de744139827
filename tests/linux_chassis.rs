//! A chassis of real `msm-node` processes on Unix sockets and flash image
//! files, driven over their control sockets. Every wait has a deadline; no
//! test sleeps for a fixed time to let something happen.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{chassis, digests};

use msm_control::{Configuration, Configured, Rebooting, Request, Response, Saved};
use msm_flash::ConfigName;
use msm_runtime::flash::BoardFlash;
use msm_testkit::chassis::Chassis;
use msm_testkit::journal::Journal;
use rand::{Rng, SeedableRng};

fn master(c: &mut Chassis, slot: char, extra: &[&str]) {
    c.start(slot, extra).unwrap();
    c.wait("a master", Duration::from_secs(5), |c| Ok(c.role(slot).as_deref() == Some("MASTER"))).unwrap();
}

fn configure(c: &Chassis, slot: char, lines: &[&str]) -> Response {
    c.call(slot, &Request::Configure { lines: lines.iter().map(|s| s.to_string()).collect(), wait: None })
        .unwrap()
}

fn state(c: &Chassis, slot: char) -> Vec<std::collections::BTreeMap<u64, String>> {
    c.app_state(slot).unwrap()
}

#[test]
fn backup_started_after_master_gets_saved_then_active_config_then_every_change() {
    let (_d, mut c) = chassis(20);
    master(&mut c, 'A', &["--fdb", "3000"]);
    assert!(matches!(
        configure(&c, 'A', &["create vlan corp tag 100", "configure vlan corp add ports 1-8"]),
        Response::Ok { .. }
    ));
    c.ask::<Saved>('A', &Request::Save { which: None, wait: None }).unwrap();
    // An unsaved change: the active config differs from the saved one.
    assert!(matches!(configure(&c, 'A', &["create vlan lab tag 200"]), Response::Ok { .. }));
    c.start('B', &[]).unwrap();
    c.wait("in sync", Duration::from_secs(20), |c| Ok(c.in_sync('A') && c.in_sync('B'))).unwrap();
    let sa = c.switch('A').unwrap();
    let sb = c.switch('B').unwrap();
    assert_eq!(sb.state, "BACKUP (In Sync)");
    assert_eq!(
        sa.saved.first().map(|f| f.bytes),
        sb.saved.first().map(|f| f.bytes),
        "B's flash holds A's saved config"
    );
    let conf = |s| c.ask::<Configuration>(s, &Request::ShowConfiguration).unwrap().text;
    assert_eq!(conf('A'), conf('B'));
    assert!(conf('B').contains("create vlan lab tag 200"));
    assert_eq!(digests(&c, 'A'), digests(&c, 'B'));
    // Every later change.
    assert!(matches!(configure(&c, 'A', &["configure vlan lab add ports 30-31"]), Response::Ok { .. }));
    c.text('A', &Request::Churn { rate: 2000 }).unwrap();
    c.wait("some churn", Duration::from_secs(5), |c| {
        let rows = c.checkpoint('A', Some("fdb"))?;
        Ok(rows.first().map_or(0, |r| r.changes) > 500)
    })
    .unwrap();
    c.text('A', &Request::Churn { rate: 0 }).unwrap();
    c.wait("backup caught up", Duration::from_secs(10), |c| {
        Ok(digests(c, 'A') == digests(c, 'B') && conf('A') == conf('B'))
    })
    .unwrap();
    assert!(conf('B').contains("configure vlan lab add ports 30-31"));
    // The backup's flash got A's saved config, byte for byte.
    let (sa, sb) = (c.stop('A').unwrap(), c.stop('B').unwrap());
    assert!(sa.success() && sb.success(), "SIGTERM exits 0: {sa} {sb}");
    let a = BoardFlash::open(&c.path('A', "img")).unwrap().load(ConfigName::Primary).unwrap();
    let b = BoardFlash::open(&c.path('B', "img")).unwrap().load(ConfigName::Primary).unwrap();
    assert_eq!(a, b);
    assert!(a.unwrap().contains("create vlan corp tag 100"));
}

#[test]
fn sigkill_of_master_under_churn_loses_no_checkpointed_change() {
    let hb = 50u64;
    let (_d, mut c) = chassis(hb);
    master(&mut c, 'A', &["--fdb", "5000", "--churn", "5000"]);
    c.start('B', &[]).unwrap();
    c.wait("in sync", Duration::from_secs(20), |c| Ok(c.in_sync('A'))).unwrap();
    c.wait("sustained churn", Duration::from_secs(10), |c| {
        let rows = c.checkpoint('A', Some("fdb"))?;
        Ok(rows.first().map_or(0, |r| r.checkpointed) > 8000)
    })
    .unwrap();
    c.kill('A').unwrap();
    let killed = Instant::now();
    c.wait("B to become MASTER", Duration::from_secs(5), |c| Ok(c.role('B').as_deref() == Some("MASTER")))
        .unwrap();
    // How fast is `cargo xtask bench`'s to measure; this test is about what survives.
    eprintln!("takeover seen after {:?} at {hb} ms heartbeats", killed.elapsed());
    c.text('B', &Request::Churn { rate: 0 }).unwrap();
    let journal = Journal::parse(&std::fs::read_to_string(c.path('A', "journal")).unwrap()).unwrap();
    assert_eq!(journal.peer, Some('B'));
    let verified = journal.verify(&state(&c, 'B')).unwrap();
    assert!(verified > 8000, "only {verified} checkpointed changes to verify");
    // The old master comes back as backup and resynchronises.
    c.start('A', &[]).unwrap();
    c.wait("A back as BACKUP in sync", Duration::from_secs(20), |c| {
        Ok(c.role('A').as_deref() == Some("BACKUP") && c.in_sync('B'))
    })
    .unwrap();
    c.wait("same state", Duration::from_secs(10), |c| Ok(digests(c, 'A') == digests(c, 'B'))).unwrap();
}

#[test]
fn failover_before_sync_uses_the_backups_own_flash_config() {
    let (_d, mut c) = chassis(50);
    // B's flash: a configuration of its own, saved while B ran alone.
    master(&mut c, 'B', &[]);
    assert!(matches!(configure(&c, 'B', &["create vlan from_b_flash tag 77"]), Response::Ok { .. }));
    c.ask::<Saved>('B', &Request::Save { which: None, wait: None }).unwrap();
    c.stop('B').unwrap();
    // A: a large saved config and an unsaved change. The backplane is a slow
    // serial-like link, so the saved config (sent first) takes a while and the
    // active config (sent after it) has not arrived when A dies.
    let slow = ["--link-rate", "40000", "--max-frame", "512"];
    master(&mut c, 'A', &slow);
    let lines: Vec<String> = (0..600).map(|i| format!("create vlan a{i} tag {}", 100 + i)).collect();
    c.ask::<Configured>('A', &Request::Configure { lines, wait: None }).unwrap();
    c.ask::<Saved>('A', &Request::Save { which: None, wait: None }).unwrap();
    assert!(matches!(configure(&c, 'A', &["create vlan from_a_active tag 88"]), Response::Ok { .. }));
    c.start('B', &slow).unwrap();
    c.wait("B is BACKUP", Duration::from_secs(5), |c| Ok(c.role('B').as_deref() == Some("BACKUP"))).unwrap();
    let sync = c.switch('B').unwrap().sync;
    assert!(sync.contains("saved-config"), "still receiving the saved config: {sync}");
    c.kill('A').unwrap();
    c.wait("B to become MASTER", Duration::from_secs(5), |c| Ok(c.role('B').as_deref() == Some("MASTER")))
        .unwrap();
    let conf = c.ask::<Configuration>('B', &Request::ShowConfiguration).unwrap().text;
    assert!(conf.contains("from_b_flash"), "B runs its own flash config:\n{conf}");
    assert!(
        !conf.contains("from_a_active") && !conf.contains("vlan a599"),
        "B cannot have A's config:\n{conf}"
    );
    // Its vlan table is what that configuration derives (it held none of A's).
    c.wait("B's vlan table derived from its configuration", Duration::from_secs(5), |c| {
        Ok(common::vlans_derived(c, 'B').is_ok())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", common::vlans_derived(&c, 'B')));
}

/// Issue 25, item 4: the master dies partway through a 10 000-line
/// configure under churn. The new master's vlan table is what its active
/// configuration derives (the two streams are checkpointed apart, and a
/// re-bulk of one may be in progress), and so is the old master's when it
/// comes back as backup; the two hold the same state.
#[test]
fn a_master_killed_midway_through_a_large_configure_leaves_tables_and_configuration_agreeing() {
    let (_d, mut c) = chassis(20);
    master(&mut c, 'A', &["--churn", "20000"]);
    c.start('B', &["--churn", "20000"]).unwrap();
    c.wait("in sync", Duration::from_secs(20), |c| Ok(c.in_sync('A'))).unwrap();
    let lines: Vec<String> = (0..10_000).map(|i| format!("create vlan big{i}")).collect();
    // Answered once applied on A; B is still taking it in.
    c.ask::<Configured>('A', &Request::Configure { lines, wait: None }).unwrap();
    c.wait("B's configuration partway", Duration::from_secs(30), |c| {
        Ok(c.running_config('B').map(|r| r.vlans.len()).unwrap_or(0) > 2_000)
    })
    .unwrap();
    c.kill('A').unwrap();
    c.wait("B master", Duration::from_secs(5), |c| Ok(c.role('B').as_deref() == Some("MASTER"))).unwrap();
    c.text('B', &Request::Churn { rate: 0 }).unwrap();
    c.wait("B's vlan table derived from its configuration", Duration::from_secs(5), |c| {
        Ok(common::vlans_derived(c, 'B').is_ok())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", common::vlans_derived(&c, 'B')));
    c.start('A', &[]).unwrap();
    c.wait("A back as backup in sync", Duration::from_secs(30), |c| {
        Ok(c.role('A').as_deref() == Some("BACKUP") && c.in_sync('B'))
    })
    .unwrap();
    c.wait("the same state", Duration::from_secs(10), |c| Ok(digests(c, 'A') == digests(c, 'B'))).unwrap();
    common::vlans_derived(&c, 'A').unwrap();
}

#[test]
fn kill_during_save_leaves_old_or_new_config() {
    let (_d, mut c) = chassis(20);
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(0x5a7e);
    master(&mut c, 'A', &[]);
    c.ask::<Saved>('A', &Request::Save { which: None, wait: None }).unwrap();
    let mut outcomes = [0u32; 2];
    for round in 0..8u32 {
        let old = c.ask::<Configuration>('A', &Request::ShowConfiguration).unwrap().text;
        // Many lines make a save take milliseconds (with its fsyncs).
        let lines: Vec<String> =
            (0..500).map(|i| format!("create vlan r{round}v{i} tag {}", 2 + round * 500 + i)).collect();
        c.ask::<Configured>('A', &Request::Configure { lines, wait: None }).unwrap();
        let new = c.ask::<Configuration>('A', &Request::ShowConfiguration).unwrap().text;
        // Fire the save and kill the node at a random moment of it.
        let ctl = c.path('A', "ctl");
        let save =
            std::thread::spawn(move || msm_control::call(&ctl, &Request::Save { which: None, wait: None }));
        std::thread::sleep(Duration::from_micros(rng.random_range(0..3000)));
        c.kill('A').unwrap();
        let _ = save.join();
        let on_flash = BoardFlash::open(&c.path('A', "img"))
            .unwrap()
            .load(ConfigName::Primary)
            .unwrap()
            .unwrap_or_default();
        assert!(
            on_flash == old || on_flash == new,
            "round {round} (seed 0x5a7e): the image holds neither the old nor the new config"
        );
        outcomes[usize::from(on_flash == new)] += 1;
        // The node boots from whichever it is.
        master(&mut c, 'A', &[]);
        let booted = c.ask::<Configuration>('A', &Request::ShowConfiguration).unwrap().text;
        assert_eq!(booted, on_flash);
    }
    eprintln!("kill during save: old config kept {} times, new one {} times", outcomes[0], outcomes[1]);
}

#[test]
fn reboot_refuses_unsaved_changes_and_one_image_serves_one_node() {
    let (_d, mut c) = chassis(20);
    master(&mut c, 'A', &[]);
    c.ask::<Saved>('A', &Request::Save { which: None, wait: None }).unwrap();
    assert!(matches!(configure(&c, 'A', &["create vlan unsaved tag 9"]), Response::Ok { .. }));
    match c.call('A', &Request::Reboot { force: false }).unwrap() {
        Response::Error { message } => assert!(message.contains("unsaved changes"), "{message}"),
        r => panic!("reboot with unsaved changes was accepted: {r:?}"),
    }
    assert_eq!(c.role('A').as_deref(), Some("MASTER"), "still running");
    // A second node on A's flash image refuses to start, naming the image.
    let out = Command::new(c.bin.join("msm-node"))
        .args(["--slot", "B", "--flash"])
        .arg(c.path('A', "img"))
        .args(["--control"])
        .arg(c.path('B', "ctl"))
        .args(["--backplane"])
        .arg(c.backplane('B'))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("A.img"), "{err}");
    // Saved, the reboot goes ahead: exit code 3.
    c.ask::<Saved>('A', &Request::Save { which: None, wait: None }).unwrap();
    c.ask::<Rebooting>('A', &Request::Reboot { force: false }).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = c.exited('A').unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "node did not exit after reboot");
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(status.code(), Some(3));
}

#[test]
fn bad_cli_input_and_malformed_requests_get_clear_errors_and_change_nothing() {
    let (_d, mut c) = chassis(20);
    master(&mut c, 'A', &[]);
    let before: Configuration = c.ask('A', &Request::ShowConfiguration).unwrap();
    // Invalid configuration lines: refused with the reason and the line.
    match configure(&c, 'A', &["create vlan 9lives"]) {
        Response::Error { message } => assert!(
            message.contains("not a valid name") && message.contains("create vlan 9lives"),
            "{message}"
        ),
        r => panic!("{r:?}"),
    }
    // Malformed control requests.
    use std::io::{BufRead, BufReader, Write};
    // The last one is long enough to be parsed off the node's loop.
    let long = format!("{{\"op\":\"configure\",\"lines\":[{}7]}}\n", "\"create vlan v\",".repeat(5_000));
    for garbage in
        ["not json\n", "{\"op\":\"self-destruct\"}\n", "{\"op\":\"configure\",\"lines\":7}\n", &long]
    {
        let mut s = std::os::unix::net::UnixStream::connect(c.path('A', "ctl")).unwrap();
        s.write_all(garbage.as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        let r: Response = serde_json::from_str(&line).unwrap();
        assert!(
            matches!(&r, Response::Error { message } if message.starts_with("malformed request")),
            "{}: {r:?}",
            &garbage[..garbage.len().min(80)]
        );
    }
    // The CLI refuses bad arguments before sending anything.
    let out = Command::new(c.bin.join("msm"))
        .arg("--node")
        .arg(c.path('A', "ctl"))
        .args(["show", "flux-capacitor"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("flux-capacitor"));
    let out = Command::new(c.bin.join("msm"))
        .arg("--node")
        .arg(c.path('A', "ctl"))
        .args(["configure", "create vlan x tag 99999"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside 1-4094"));
    assert_eq!(c.ask::<Configuration>('A', &Request::ShowConfiguration).unwrap(), before, "nothing changed");
    assert_eq!(c.role('A').as_deref(), Some("MASTER"));
}

#[test]
fn the_control_socket_is_for_the_nodes_user_root_and_its_socket_group() {
    use std::os::unix::fs::MetadataExt;
    let (_d, mut c) = chassis(20);
    master(&mut c, 'A', &[]);
    let meta = std::fs::symlink_metadata(c.path('A', "ctl")).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "only the node's user may connect");
    // An unknown group stops the node at start-up, naming the group: exit code 2.
    let out = Command::new(c.bin.join("msm-node"))
        .args(["--slot", "B", "--flash"])
        .arg(c.path('B', "img"))
        .arg("--control")
        .arg(c.path('B', "ctl"))
        .arg("--backplane")
        .arg(c.backplane('B'))
        .args(["--socket-group", "no-such-group-msm"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-group-msm") && err.contains("no such group"), "{err}");
    // Our own group (every user may give a file its own group): mode 0660, that group.
    let own = nix::unistd::Group::from_gid(nix::unistd::Gid::effective()).unwrap().unwrap();
    c.start('B', &["--socket-group", &own.name]).unwrap();
    c.wait("B answering", Duration::from_secs(5), |c| Ok(c.role('B').is_some())).unwrap();
    let meta = std::fs::symlink_metadata(c.path('B', "ctl")).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.gid()), (0o660, own.gid.as_raw()));
}
