//! A rolling upgrade with two real builds: release N (an earlier commit of
//! main, tagged, built by `cargo xtask upgrade-test` from the repository's
//! own history; its `bin` directory in `MSM_RELEASE_N`) and N+1 (this tree).
//! Under churn: both modules at N; the backup restarted at N+1 syncs from
//! the master at N; `run msm-failover` to it is hitless (no bulk: every
//! stream continues); the old master, still at N, follows the N+1 master;
//! it is restarted at N+1 and the chassis fails back. Every change the
//! journal says a master had acknowledged is on the next one.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use msm_control::{Churning, FailingOver, FailoverCheck, Request};
use msm_testkit::chassis::Chassis;
use msm_testkit::journal::Journal;

mod common;

use common::{HB, chassis, digests, log, switch};

fn release_n() -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("MSM_RELEASE_N").map(PathBuf::from) else {
        eprintln!(
            "SKIPPED rolling_upgrade: MSM_RELEASE_N is not set; run `cargo xtask upgrade-test` \
             (builds release N from the repository's history, runs this test)"
        );
        return None;
    };
    assert!(dir.join("msm-node").is_file(), "MSM_RELEASE_N={}: no msm-node in it", dir.display());
    Some(dir)
}

/// Bulk transfers sent (master) or received (backup) by `slot`, all streams.
fn bulks(c: &Chassis, slot: char) -> u64 {
    c.checkpoint(slot, None).unwrap().iter().map(|r| r.bulks).sum()
}

/// Every change `old` acknowledged as master (its journal) is in `new`'s state.
fn nothing_lost(c: &Chassis, old: char, new: char) -> usize {
    let text = std::fs::read_to_string(c.path(old, "journal")).unwrap();
    let journal = Journal::parse(&text).unwrap();
    journal.verify(&c.app_state(new).unwrap()).unwrap_or_else(|e| panic!("{old} -> {new}: {e}"))
}

/// Hand over from `from` (churning) to `to` (started without churn); the
/// old master becomes the new one's backup and continues every stream
/// without a bulk; every change `from` acknowledged is on `to`, checked
/// before `to` churns in turn.
fn hand_over(c: &mut Chassis, from: char, to: char) -> usize {
    // Under churn: some hundreds of changes acknowledged by the backup first.
    let acked =
        |c: &Chassis| -> u64 { c.checkpoint(from, None).unwrap().iter().map(|r| r.checkpointed).sum() };
    let start = acked(c);
    c.wait("churn acknowledged", Duration::from_secs(20), |c| Ok(acked(c) > start + 300)).unwrap();
    // Both say so: the master may not have noticed yet that the backup restarted.
    c.wait("in sync before the handover", Duration::from_secs(20), |c| Ok(c.in_sync(from) && c.in_sync(to)))
        .unwrap();
    let before = bulks(c, from) + bulks(c, to);
    let r: FailingOver = c.ask(from, &Request::Failover { force: false }).unwrap();
    assert!(r.failover, "{r:?}");
    c.wait("the handover", Duration::from_secs(10), |c| {
        Ok(c.role(to).as_deref() == Some("MASTER") && c.role(from).as_deref() == Some("BACKUP"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{from}:\n{}\n{to}:\n{}", log(c, from), log(c, to)));
    c.ask::<Churning>(from, &Request::Churn { rate: 0 }).unwrap();
    let verified = nothing_lost(c, from, to);
    c.ask::<Churning>(to, &Request::Churn { rate: 500 }).unwrap();
    c.wait("in sync after the handover", Duration::from_secs(20), |c| Ok(c.in_sync(to))).unwrap();
    assert_eq!(bulks(c, from) + bulks(c, to), before, "hitless: no stream was bulked again");
    verified
}

#[test]
fn a_rolling_upgrade_from_release_n_under_churn_is_hitless_and_loses_nothing() {
    let Some(n) = release_n() else { return };
    let (_d, mut c) = chassis(HB);
    c.bins = [Some(n.clone()), Some(n.clone()), None, None];
    common::pair(&mut c, &["--churn", "500"]);

    // 1. The backup to N+1: it syncs from the master at N.
    c.stop('B').unwrap();
    c.bins[1] = None;
    c.start('B', &[]).unwrap();
    c.wait("B (N+1) in sync with A (N)", Duration::from_secs(30), |c| Ok(c.in_sync('A') && c.in_sync('B')))
        .unwrap_or_else(|e| panic!("{e}\nA (N):\n{}\nB (N+1):\n{}", log(&c, 'A'), log(&c, 'B')));

    // N+1 speaks N's protocol version next to it, and knows it is older.
    let b = switch(&c, 'B');
    let a_seen = b.peers.iter().find(|p| p.slot == "A").unwrap();
    assert_eq!((b.protocol, a_seen.protocol), (4, 4), "{b:?}");
    assert_eq!(a_seen.release, "release not said (protocol v4)");

    // 2. Fail over to it: hitless; A, still at N, follows it.
    let verified = hand_over(&mut c, 'A', 'B');
    assert!(verified > 100, "only {verified} acknowledged changes of A to check");
    // The N+1 master's check before failing back to the N module: allowed,
    // naming what the backup runs.
    let k: FailoverCheck = c.ask('B', &Request::FailoverCheck).unwrap();
    assert_eq!(k.verdict, "allow", "{k:?}");
    assert_eq!(k.backup_release.as_deref(), Some("release not said (protocol v4)"), "{k:?}");

    // 3. The other to N+1, then fail back.
    c.stop('A').unwrap();
    c.bins[0] = None;
    c.start('A', &[]).unwrap();
    c.wait("A (N+1) in sync", Duration::from_secs(20), |c| Ok(c.in_sync('A') && c.in_sync('B'))).unwrap();
    let k: FailoverCheck = c.ask('B', &Request::FailoverCheck).unwrap();
    assert_eq!(k.verdict, "allow", "{k:?}");
    let release = format!("{} (protocol v5)", switch(&c, 'A').release);
    assert_eq!(k.backup_release.as_deref(), Some(release.as_str()), "{k:?}");
    let verified = hand_over(&mut c, 'B', 'A');
    assert!(verified > 100, "only {verified} acknowledged changes of B to check");
    c.ask::<Churning>('A', &Request::Churn { rate: 0 }).unwrap();
    c.wait("the same state on both", Duration::from_secs(10), |c| {
        Ok(c.in_sync('A') && digests(c, 'A') == digests(c, 'B'))
    })
    .unwrap();
    // Both at N+1: version 5 again, each saying its release.
    for (me, peer) in [('A', "B"), ('B', "A")] {
        let s = switch(&c, me);
        let p = s.peers.iter().find(|p| p.slot == peer).unwrap();
        assert_eq!((s.protocol, p.protocol), (5, 5), "{s:?}");
        assert_eq!(p.release, format!("{} (protocol v5)", s.release));
        assert_eq!(s.frame_errors.version, 0, "an N+1 module refused no frame for its version: {s:?}");
    }
}
