//! `run msm-failover` back and forth under churn, with real processes: after
//! the first sync no bulk is sent again (the old master continues every
//! stream from the point it handed over, as Redis' PSYNC2 continues a
//! replica across a promotion), and the pair ends with the same state.
//! Every wait has a deadline.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

mod common;

use common::{HB, chassis, digests, pair, switch};
use msm_control::{Churning, Configured, FailingOver, Request};
use msm_testkit::chassis::Chassis;

/// Bulk transfers sent (master) and received (backup) by `slot`, all streams.
fn bulks(c: &Chassis, slot: char) -> u64 {
    c.checkpoint(slot, None).unwrap().iter().map(|r| r.bulks).sum()
}

#[test]
fn a_hundred_switchovers_under_churn_send_no_bulk_after_the_first_sync() {
    let (_d, mut c) = chassis(HB);
    pair(&mut c, &["--churn", "1000"]);
    let first = [bulks(&c, 'A'), bulks(&c, 'B')];
    assert!(first[0] > 0 && first[1] > 0, "the first sync is a bulk: {first:?}");
    let start_term: u64 = switch(&c, 'A').term.split('.').next().unwrap().parse().unwrap();
    let mut master = 'A';
    for round in 0..100 {
        let other = if master == 'A' { 'B' } else { 'A' };
        // The old master is in sync (its streams acknowledged) before each handover.
        c.wait("in sync", Duration::from_secs(10), |c| Ok(c.in_sync(master))).unwrap();
        let r: FailingOver = c.ask(master, &Request::Failover { force: false }).unwrap();
        assert!(r.failover, "round {round}: {r:?}");
        c.wait("the other takes over", Duration::from_secs(10), |c| {
            Ok(c.role(other).as_deref() == Some("MASTER") && c.role(master).as_deref() == Some("BACKUP"))
        })
        .unwrap_or_else(|e| panic!("round {round}: {e}\n{:?}", switch(&c, master)));
        // The churn follows the master.
        c.ask::<Churning>(master, &Request::Churn { rate: 0 }).unwrap();
        c.ask::<Churning>(other, &Request::Churn { rate: 1000 }).unwrap();
        master = other;
    }
    let term = |c: &Chassis| -> u64 {
        let t = switch(c, 'A').term;
        t.split('.').next().unwrap().parse().unwrap()
    };
    assert_eq!(term(&c), start_term + 100, "one new term per switchover");
    c.wait("in sync", Duration::from_secs(10), |c| Ok(c.in_sync(master))).unwrap();
    assert_eq!([bulks(&c, 'A'), bulks(&c, 'B')], first, "a bulk was sent after the first sync");
    c.ask::<Churning>(master, &Request::Churn { rate: 0 }).unwrap();
    c.wait("the same state on both", Duration::from_secs(10), |c| {
        Ok(c.in_sync(master) && digests(c, 'A') == digests(c, 'B'))
    })
    .unwrap();
}

/// Issue 25, item 1: `run msm-failover` back and forth with three and four
/// modules under churn. Each time the old master becomes the new master's
/// BACKUP (not a standby), no module is sent a bulk after the first sync
/// (the standbys' configuration copies are rebased, not snapshot), and the
/// master and its backup end with the same state.
#[test]
fn switchovers_with_standbys_keep_the_old_master_as_backup_and_send_no_bulk() {
    for modules in [3usize, 4] {
        let (_d, mut c) = chassis(HB);
        c.nodes = modules;
        let all = &['A', 'B', 'C', 'D'][..modules];
        pair(&mut c, &["--churn", "1000"]);
        for &s in &all[2..] {
            c.start(s, &["--churn", "1000"]).unwrap();
        }
        let standbys_in_step = |c: &Chassis, master: char| {
            let peers = switch(c, master).peers;
            // Every module but the backup a standby holding the configuration
            // (one still INIT is not in step: it has no copy yet).
            peers.len() == modules - 1
                && peers
                    .iter()
                    .filter(|p| p.role != "BACKUP")
                    .all(|p| p.role == "STANDBY" && p.config.as_deref() == Some("In Sync"))
        };
        c.wait("standbys hold the configuration", Duration::from_secs(20), |c| Ok(standbys_in_step(c, 'A')))
            .unwrap();
        let first: Vec<u64> = all.iter().map(|&s| bulks(&c, s)).collect();
        let mut master = 'A';
        for round in 0..20 {
            let other = if master == 'A' { 'B' } else { 'A' };
            if round % 5 == 0 {
                let lines = vec![format!("create vlan sw{round}")];
                c.ask::<Configured>(master, &Request::Configure { lines, wait: Some(5_000) }).unwrap();
            }
            // A standby still taking a change in would be sent a snapshot
            // by the new master (it holds no records of the old term):
            // the switchover starts with every copy in step, as the
            // backup's is (`run msm-failover` refuses otherwise).
            c.wait("in sync, standbys in step", Duration::from_secs(10), |c| {
                Ok(c.in_sync(master) && standbys_in_step(c, master))
            })
            .unwrap();
            let r: FailingOver = c.ask(master, &Request::Failover { force: false }).unwrap();
            assert!(r.failover, "{modules} modules, round {round}: {r:?}");
            c.wait("the backup takes over, the old master is its backup", Duration::from_secs(10), |c| {
                Ok(c.role(other).as_deref() == Some("MASTER") && c.role(master).as_deref() == Some("BACKUP"))
            })
            .unwrap_or_else(|e| panic!("{modules} modules, round {round}: {e}\n{:?}", switch(&c, master)));
            c.ask::<Churning>(master, &Request::Churn { rate: 0 }).unwrap();
            c.ask::<Churning>(other, &Request::Churn { rate: 1000 }).unwrap();
            master = other;
            c.wait("standbys in step", Duration::from_secs(10), |c| Ok(standbys_in_step(c, master))).unwrap();
        }
        c.wait("in sync", Duration::from_secs(10), |c| Ok(c.in_sync(master))).unwrap();
        let now: Vec<u64> = all.iter().map(|&s| bulks(&c, s)).collect();
        assert_eq!(
            now,
            first,
            "{modules} modules: a bulk after the first sync (modules {all:?})\n{}",
            all.iter().map(|&s| format!("MSM-{s}:\n{}", common::log(&c, s))).collect::<Vec<_>>().join("\n")
        );
        for &s in &all[2..] {
            assert_eq!(c.role(s).as_deref(), Some("STANDBY"), "{modules} modules: MSM-{s}");
        }
        c.ask::<Churning>(master, &Request::Churn { rate: 0 }).unwrap();
        c.wait("the same state on master and backup", Duration::from_secs(10), |c| {
            Ok(c.in_sync(master) && digests(c, 'A') == digests(c, 'B'))
        })
        .unwrap();
    }
}
