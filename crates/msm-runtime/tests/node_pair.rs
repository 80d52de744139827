//! Two nodes in one process over a Unix datagram socket pair: the node
//! logic (flash, config, applications, control requests) without process
//! management. Real time, waits with deadlines.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::{Duration, Instant};

use msm_backplane_linux::{UnixDatagramLink, unix_datagram_pair};
use msm_checkpoint::{Role, Slot};
use msm_control::{Request, Response};
use msm_flash::ConfigName;
use msm_runtime::flash::BoardFlash;
use msm_runtime::node::{MsmNode, Options};

fn opts(slot: u8) -> Options {
    Options {
        forget_term: false,
        slot: Slot::new(slot).unwrap(),
        priority: None,
        heartbeat: Duration::from_millis(10),
        miss_count: 3,
        max_frame: 4096,
        link_rate: None,
        apps: None,
        key: None,
        processes: Vec::new(),
    }
}

fn pair(dir: &std::path::Path) -> (MsmNode<UnixDatagramLink>, MsmNode<UnixDatagramLink>) {
    let (la, lb) = unix_datagram_pair(4096).unwrap();
    let a = MsmNode::new(opts(0), BoardFlash::open(&dir.join("a.img")).unwrap(), la).unwrap();
    let b = MsmNode::new(opts(1), BoardFlash::open(&dir.join("b.img")).unwrap(), lb).unwrap();
    (a, b)
}

fn run_until(
    a: &mut MsmNode<UnixDatagramLink>,
    b: &mut MsmNode<UnixDatagramLink>,
    what: &str,
    mut cond: impl FnMut(&mut MsmNode<UnixDatagramLink>, &mut MsmNode<UnixDatagramLink>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond(a, b) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        a.pump();
        b.pump();
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn ok(r: Response) -> serde_json::Value {
    match r {
        Response::Ok { json, .. } => json,
        Response::Error { message } => panic!("{message}"),
    }
}

#[test]
fn saved_and_active_config_reach_the_backup_then_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b) = pair(dir.path());
    run_until(&mut a, &mut b, "in sync", |a, _| ok(a.handle(Request::ShowSwitch))["in_sync"] == true);
    assert_eq!(a.engine.role(), Role::Master);
    ok(a.handle(Request::Configure {
        lines: vec!["create vlan v10 tag 10".into(), "configure vlan v10 add ports 1-4".into()],
        wait: None,
    }));
    ok(a.handle(Request::Save { which: None, wait: None }));
    let saved = a.host.flash.load(ConfigName::Primary).unwrap().unwrap();
    run_until(&mut a, &mut b, "saved config on the backup", |_, b| {
        b.host.flash.load(ConfigName::Primary).unwrap().as_deref() == Some(saved.as_str())
    });
    ok(a.handle(Request::Configure { lines: vec!["configure vlan v10 add ports 9".into()], wait: None }));
    run_until(&mut a, &mut b, "active config on the backup", |a, b| a.host.running == b.host.running);
    assert!(b.host.running.to_text().contains("configure vlan v10 add ports 1-4,9"));
    let r = b.handle(Request::Configure { lines: vec!["create vlan v11".into()], wait: None });
    assert!(matches!(r, Response::Error { message } if message.contains("made on the master")));
}
