//! A chassis of three modules with real processes (a Unix datagram bus
//! between them): the master is killed, the backup takes over, the standby
//! becomes its backup and reaches In Sync, and the old master returns as a
//! standby. Every wait has a deadline.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

mod common;

use common::{HB, chassis, digests, switch};
use msm_linux_emu::chassis::Chassis;
use msm_linux_emu::control::Request;

fn role(c: &Chassis, slot: char) -> String {
    c.role(slot).unwrap_or_default()
}

#[test]
fn kill_the_master_of_three_the_standby_becomes_backup_and_the_old_master_a_standby() {
    let (_d, mut c) = chassis(HB);
    c.nodes = 3;
    let wait = Duration::from_secs(20);
    c.start('A', &["--churn", "500"]).unwrap();
    c.wait("A master", wait, |c| Ok(role(c, 'A') == "MASTER")).unwrap();
    c.start('B', &["--churn", "500"]).unwrap();
    c.wait("B backup in sync", wait, |c| Ok(role(c, 'B') == "BACKUP" && c.in_sync('A'))).unwrap();
    c.start('C', &["--churn", "500"]).unwrap();
    c.wait("C standby", wait, |c| Ok(role(c, 'C') == "STANDBY")).unwrap();
    let peers = switch(&c, 'A')["peers"].as_array().unwrap().len();
    assert_eq!(peers, 2, "the master hears both others: {}", switch(&c, 'A'));

    c.kill('A').unwrap();
    c.wait("B takes over", wait, |c| Ok(role(c, 'B') == "MASTER")).unwrap();
    c.wait("C becomes B's backup, in sync", wait, |c| Ok(role(c, 'C') == "BACKUP" && c.in_sync('B')))
        .unwrap();

    c.start('A', &["--churn", "500"]).unwrap();
    c.wait("A returns as a standby", wait, |c| Ok(role(c, 'A') == "STANDBY")).unwrap();
    assert_eq!((role(&c, 'B'), role(&c, 'C')), ("MASTER".into(), "BACKUP".into()));
    c.ask('B', &Request::Churn { rate: 0 }).unwrap();
    c.wait("B and C hold the same state", wait, |c| Ok(c.in_sync('B') && digests(c, 'B') == digests(c, 'C')))
        .unwrap();
}
