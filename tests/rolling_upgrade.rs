//! A rolling upgrade with two real builds: release N (an earlier commit of
//! main, tagged, built by `cargo xtask upgrade-test` from the repository's
//! own history; its `bin` directory in `MSM_RELEASE_N`) and N+1 (this tree).
//! They differ on the wire (N speaks protocol version 4 only, N+1 4 and 5)
//! and in one application's schema (`stp` records are `[state]` in N,
//! `[state, role]` in N+1). Under churn: both modules at N; the backup
//! restarted at N+1 syncs from the master at N, declaring N's `stp` schema
//! and converting what it receives; `run msm-failover` to it is hitless (no
//! bulk); the old master, still at N, follows it, holding every stream but
//! `stp` (the check names that loss); it is restarted at N+1 and the chassis
//! fails back; then one module is rolled back to N and forward again. Every
//! change the journal says a master had acknowledged is on the next one.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use msm_control::{Churning, FailingOver, FailoverCheck, Request};
use msm_runtime::apps::{STP, STP_ROLE_UNKNOWN};
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

/// Changes `slot` made as master that its backup acknowledged, all streams.
fn acked(c: &Chassis, slot: char) -> u64 {
    c.checkpoint(slot, None).unwrap().iter().map(|r| r.checkpointed).sum()
}

/// Every change `old` acknowledged as master (its journal) is in `state`.
fn nothing_lost(c: &Chassis, old: char, state: &[BTreeMap<u64, String>]) -> usize {
    let text = std::fs::read_to_string(c.path(old, "journal")).unwrap();
    let journal = Journal::parse(&text).unwrap();
    journal.verify(state).unwrap_or_else(|e| panic!("{old}'s journal: {e}"))
}

/// Some hundreds of changes `from` made acknowledged by its backup, then
/// `run msm-failover` to `to`: it takes over, `from` follows it.
fn hand_over(c: &mut Chassis, from: char, to: char) -> u64 {
    let start = acked(c, from);
    c.wait("churn acknowledged", Duration::from_secs(20), |c| Ok(acked(c, from) > start + 300)).unwrap();
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
    before
}

#[test]
fn a_rolling_upgrade_from_release_n_under_churn_is_hitless_and_loses_nothing() {
    let Some(n) = release_n() else { return };
    let (_d, mut c) = chassis(HB);
    c.bins = [Some(n.clone()), Some(n.clone()), None, None];
    let n = Some(n);
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

    // 2. Fail over to it: hitless, every acknowledged change there (stp converted).
    let before = hand_over(&mut c, 'A', 'B');
    let mut state = c.app_state('B').unwrap();
    let stp = &mut state[STP.index()];
    assert!(!stp.is_empty());
    for v in stp.values_mut() {
        // [state, role] in N+1; the role is unknown for what came from N.
        assert_eq!(v.len(), 4, "stp rows are two bytes on N+1: {v}");
        assert_eq!(&v[2..], format!("{STP_ROLE_UNKNOWN:02x}"), "converted from N's [state]: {v}");
        v.truncate(2);
    }
    let verified = nothing_lost(&c, 'A', &state);
    assert!(verified > 100, "only {verified} acknowledged changes of A to check");
    c.ask::<Churning>('B', &Request::Churn { rate: 500 }).unwrap();
    // A (N) follows B (N+1) and continues every stream but stp, whose schema it lacks.
    c.wait("A continues all but stp", Duration::from_secs(20), |c| {
        let k: FailoverCheck = c.ask('B', &Request::FailoverCheck)?;
        Ok(k.reasons.len() == 1 && k.reasons[0].what == "stp")
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", c.ask::<FailoverCheck>('B', &Request::FailoverCheck)));
    let k: FailoverCheck = c.ask('B', &Request::FailoverCheck).unwrap();
    assert_eq!(k.verdict, "allow-with-loss", "{k:?}");
    assert!(k.reasons[0].detail.contains("schema version 2 here, 1 on MSM-A"), "{k:?}");
    assert_eq!(k.backup_release.as_deref(), Some("release not said (protocol v4)"), "{k:?}");
    assert_eq!(bulks(&c, 'A') + bulks(&c, 'B'), before, "hitless: no stream was bulked again");

    // 3. The other to N+1: in sync, a failback allowed, hitless.
    c.stop('A').unwrap();
    c.bins[0] = None;
    c.start('A', &[]).unwrap();
    c.wait("A (N+1) in sync", Duration::from_secs(20), |c| Ok(c.in_sync('A') && c.in_sync('B'))).unwrap();
    let k: FailoverCheck = c.ask('B', &Request::FailoverCheck).unwrap();
    assert_eq!(k.verdict, "allow", "{k:?}");
    let release = format!("{} (protocol v5)", switch(&c, 'A').release);
    assert_eq!(k.backup_release.as_deref(), Some(release.as_str()), "{k:?}");
    let before = hand_over(&mut c, 'B', 'A');
    let verified = nothing_lost(&c, 'B', &c.app_state('A').unwrap());
    assert!(verified > 100, "only {verified} acknowledged changes of B to check");
    c.wait("in sync after the failback", Duration::from_secs(20), |c| Ok(c.in_sync('A'))).unwrap();
    assert_eq!(bulks(&c, 'A') + bulks(&c, 'B'), before, "hitless: no stream was bulked again");
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

    // 4. A rollback: B back to N next to the N+1 master. A speaks 4 to the
    //    new boot at once (it could not prove itself otherwise) and B holds
    //    every stream but stp again; forward to N+1, all in sync.
    c.stop('B').unwrap();
    c.bins[1] = n;
    c.start('B', &[]).unwrap();
    c.wait("B (N) holds all but stp", Duration::from_secs(20), |c| {
        let k: FailoverCheck = c.ask('A', &Request::FailoverCheck)?;
        Ok(k.reasons.len() == 1 && k.reasons[0].what == "stp" && switch(c, 'A').protocol == 4)
    })
    .unwrap_or_else(|e| panic!("{e}\nA:\n{}\nB (N):\n{}", log(&c, 'A'), log(&c, 'B')));
    c.stop('B').unwrap();
    c.bins[1] = None;
    c.start('B', &[]).unwrap();
    c.wait("B (N+1) in sync again", Duration::from_secs(20), |c| {
        Ok(c.in_sync('A') && c.in_sync('B') && switch(c, 'A').protocol == 5)
    })
    .unwrap();
}
