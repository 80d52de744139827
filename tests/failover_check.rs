//! The check before `run msm-failover` with real nodes: allow when every
//! stream is in sync (naming the backup's release), allow with a named loss
//! when the backup runs an application in another schema version (then
//! only with `force`), refuse on a module that is not master or with no
//! backup. `tests/rolling_upgrade.rs` checks it across two releases.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use msm_control::{FailingOver, FailoverCheck, Request, Response};

mod common;

use common::{HB, chassis, log};

fn check(c: &msm_testkit::chassis::Chassis, slot: char) -> FailoverCheck {
    c.ask(slot, &Request::FailoverCheck).unwrap()
}

#[test]
fn a_backup_with_another_schema_is_a_named_loss_and_not_master_is_refused() {
    let (_d, mut c) = chassis(HB);
    // The process application acl: schema 1 on A, 2 on B.
    c.start('A', &["--process", "acl:1"]).unwrap();
    c.wait("A master", Duration::from_secs(5), |c| Ok(c.role('A').as_deref() == Some("MASTER"))).unwrap();
    c.start('B', &["--process", "acl:2"]).unwrap();
    // Every other stream in sync: acl is the one loss.
    c.wait("only acl left", Duration::from_secs(20), |c| {
        let k = check(c, 'A');
        Ok(k.verdict == "allow-with-loss" && k.reasons.len() == 1)
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", check(&c, 'A'), log(&c, 'A')));
    let k = check(&c, 'A');
    assert_eq!((k.reasons[0].what.as_str(), k.backup.as_deref()), ("acl", Some("B")), "{k:?}");
    assert!(k.reasons[0].detail.contains("schema version 1 here, 2 on MSM-B"), "{k:?}");
    let text = c.text('A', &Request::FailoverCheck).unwrap();
    assert!(text.starts_with("Failover to MSM-B: allow-with-loss") && text.contains("acl:"), "{text}");

    // Not without force, saying what would be lost.
    match c.call('A', &Request::Failover { force: false }).unwrap() {
        Response::Error { message } => {
            assert!(message.contains("would lose acl") && message.contains("force"), "{message}")
        }
        ok => panic!("a lossy failover went ahead without force: {ok:?}"),
    }
    assert_eq!(c.role('A').as_deref(), Some("MASTER"));

    // Refused on the backup, naming the master.
    let k = check(&c, 'B');
    assert_eq!((k.verdict.as_str(), k.reasons[0].what.as_str()), ("refuse", "role"), "{k:?}");
    assert!(k.reasons[0].detail.contains("run it on MSM-A"), "{k:?}");

    // With force it goes ahead: B takes over.
    let r: FailingOver = c.ask('A', &Request::Failover { force: true }).unwrap();
    assert!(r.failover && r.force);
    c.wait("B master", Duration::from_secs(10), |c| Ok(c.role('B').as_deref() == Some("MASTER"))).unwrap();

    // No backup: refused.
    c.kill('A').unwrap();
    c.wait("A lost", Duration::from_secs(10), |c| Ok(check(c, 'B').verdict == "refuse")).unwrap();
    let k = check(&c, 'B');
    assert_eq!(k.reasons[0].what, "backup", "{k:?}");
    match c.call('B', &Request::Failover { force: true }).unwrap() {
        Response::Error { message } => assert!(message.contains("refused"), "{message}"),
        ok => panic!("{ok:?}"),
    }
}
