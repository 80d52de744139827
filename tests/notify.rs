//! Notify hooks (`msm-node --notify CMD`) with real processes: each node's
//! hook hears its role, its peer up and lost, in-sync and the failover, with
//! the fields in its environment; a hook that sleeps past its timeout is
//! killed and one that fails is logged, and neither moves the chassis.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;

/// An executable `#!/bin/sh` script `name` in `dir` with `body`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A hook that appends one line an event: event, slot and the other fields.
fn recorder(dir: &Path, slot: char) -> (PathBuf, PathBuf) {
    let out = dir.join(format!("{slot}.events"));
    let body = format!(
        "echo \"$MSM_SEQ $MSM_EVENT $MSM_SLOT role=$MSM_ROLE peer=$MSM_PEER in_sync=$MSM_IN_SYNC time=$MSM_TIME\" >> {}",
        out.display()
    );
    (script(dir, &format!("{slot}.hook"), &body), out)
}

fn events(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn each_node_hears_its_role_its_peer_sync_and_the_failover() {
    let (d, mut c) = common::chassis(common::HB);
    let (hook_a, out_a) = recorder(d.path(), 'A');
    let (hook_b, out_b) = recorder(d.path(), 'B');
    let (a, b) = (hook_a.display().to_string(), hook_b.display().to_string());
    c.start('A', &["--notify", &a]).unwrap();
    c.wait("A master", Duration::from_secs(5), |c| Ok(c.role('A').as_deref() == Some("MASTER"))).unwrap();
    c.start('B', &["--notify", &b]).unwrap();
    c.wait("in sync", Duration::from_secs(20), |c| Ok(c.in_sync('A'))).unwrap();
    let has = |path: &Path, want: &[&str]| {
        let text = events(path);
        text.lines().any(|l| want.iter().all(|w| l.contains(w)))
    };
    c.wait("A's hook: master, peer up, in sync", Duration::from_secs(10), |_| {
        Ok(has(&out_a, &["role MSM-A", "role=MASTER"])
            && has(&out_a, &["peer-up MSM-A", "peer=MSM-B"])
            && has(&out_a, &["in-sync MSM-A", "in_sync=yes"]))
    })
    .unwrap();
    c.wait("B's hook: backup, peer up", Duration::from_secs(10), |_| {
        Ok(has(&out_b, &["role MSM-B", "role=BACKUP"]) && has(&out_b, &["peer-up MSM-B", "peer=MSM-A"]))
    })
    .unwrap();
    let line = events(&out_b).lines().next().unwrap_or_default().to_string();
    let time = line.split("time=").nth(1).unwrap_or_default();
    assert!(humantime::parse_rfc3339(time).is_ok(), "MSM_TIME is RFC 3339: {line:?}");

    c.kill('A').unwrap();
    c.wait("B's hook: peer lost, failover, master", Duration::from_secs(10), |_| {
        Ok(has(&out_b, &["peer-lost MSM-B", "peer=MSM-A"])
            && has(&out_b, &["failover MSM-B", "in_sync="])
            && has(&out_b, &["role MSM-B", "role=MASTER"]))
    })
    .unwrap_or_else(|e| panic!("{e}; B's hook heard:\n{}", events(&out_b)));
    // One hook at a time, in order: the sequence numbers count up from 1.
    let seqs: Vec<u64> = events(&out_b).lines().filter_map(|l| l.split(' ').next()?.parse().ok()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{}", events(&out_b));
}

#[test]
fn a_hook_that_sleeps_or_fails_moves_nothing() {
    let (d, mut c) = common::chassis(common::HB);
    let slow = script(d.path(), "slow", "sleep 5").display().to_string();
    let failing = script(d.path(), "failing", "exit 1").display().to_string();
    c.start('A', &["--notify", &slow, "--notify-timeout-ms", "500"]).unwrap();
    c.wait("A master", Duration::from_secs(5), |c| Ok(c.role('A').as_deref() == Some("MASTER"))).unwrap();
    c.start('B', &["--notify", &failing]).unwrap();
    c.wait("in sync", Duration::from_secs(20), |c| Ok(c.in_sync('A'))).unwrap();
    let term = common::switch(&c, 'A').term;
    c.wait("the slow hook killed at its timeout", Duration::from_secs(20), |c| {
        Ok(common::log(c, 'A').contains("killed after 500 ms"))
    })
    .unwrap();
    c.wait("the failing hook logged", Duration::from_secs(10), |c| {
        Ok(common::log(c, 'B').contains("failing")
            && common::log(c, 'B').contains("ended with exit status: 1"))
    })
    .unwrap();
    // Changes flow and the roles hold while hooks sleep and fail.
    c.call(
        'A',
        &msm_control::Request::Configure { lines: vec!["create vlan v77 tag 77".into()], wait: Some(5000) },
    )
    .unwrap();
    common::no_failover(&c, &term);
    // A missing program is logged by name, and the node goes on.
    let (_d2, mut c2) = common::chassis(common::HB);
    c2.start('A', &["--notify", "/nonexistent/hook"]).unwrap();
    c2.wait("the missing hook logged", Duration::from_secs(10), |c| {
        Ok(common::log(c, 'A').contains("/nonexistent/hook: cannot run it"))
    })
    .unwrap();
    assert_eq!(c2.role('A').as_deref(), Some("MASTER"));
}
