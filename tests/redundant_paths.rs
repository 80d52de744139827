//! Two backplane paths between the MSMs (`--backplane` twice), with real
//! processes: under churn, either path is cut and healed, and nothing fails
//! over, nothing is re-bulked, no change is lost; the peer is lost only when
//! both paths are silent. Every wait has a deadline.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

mod common;

use common::{HB, chassis, digests, log, no_failover, pair, rebulks, switch};
use msm_control::{Churning, Path, Request};
use msm_testkit::chassis::{CabledPath, Chassis};

fn cabled(c: &Chassis, path: usize) -> (CabledPath, [Option<std::path::PathBuf>; 2]) {
    CabledPath::lay(c, path).unwrap()
}

fn paths(c: &Chassis, slot: char) -> Vec<Path> {
    switch(c, slot).paths
}

/// Path `i` (0-based) of `slot` is in `state`, and data goes on path `data`.
fn path_is(c: &Chassis, slot: char, i: usize, state: &str, data: usize) -> bool {
    let p = paths(c, slot);
    p.len() == 2 && p[i].state == state && p[data].data
}

fn data_sent_on(c: &Chassis, slot: char, i: usize) -> u64 {
    paths(c, slot).get(i).map_or(0, |p| p.tx)
}

#[test]
fn cutting_either_path_under_churn_fails_nothing_over_rebulks_nothing_and_loses_nothing() {
    let (_d, mut c) = chassis(HB);
    let (one, taps1) = cabled(&c, 1);
    let (two, taps2) = cabled(&c, 2);
    c.taps = taps1;
    c.second_path = Some(taps2);
    pair(&mut c, &["--churn", "2000"]);
    let term = switch(&c, 'A').term;
    let before = rebulks(&c);
    let wait = Duration::from_secs(10);
    c.wait("both paths up on both", wait, |c| {
        Ok(path_is(c, 'A', 1, "up", 0) && path_is(c, 'B', 1, "up", 0) && path_is(c, 'A', 0, "up", 0))
    })
    .unwrap();

    // The primary is cut: data moves to the second path and keeps flowing.
    one.set_cut(true);
    c.wait("A sees path 1 down, data on path 2", wait, |c| Ok(path_is(c, 'A', 0, "DOWN", 1))).unwrap();
    c.wait("B too", wait, |c| Ok(path_is(c, 'B', 0, "DOWN", 1))).unwrap();
    let on_two = data_sent_on(&c, 'A', 1);
    c.wait("changes flow on path 2", wait, |c| Ok(data_sent_on(c, 'A', 1) > on_two + 200)).unwrap();
    no_failover(&c, &term);
    assert!(c.in_sync('A'), "{:?}", switch(&c, 'A'));

    // It heals: data goes back to the primary.
    one.set_cut(false);
    c.wait("data back on path 1", wait, |c| Ok(path_is(c, 'A', 0, "up", 0) && path_is(c, 'B', 0, "up", 0)))
        .unwrap();
    // The second path is cut: data never left the primary.
    two.set_cut(true);
    c.wait("A sees path 2 down", wait, |c| Ok(path_is(c, 'A', 1, "DOWN", 0))).unwrap();
    let on_one = data_sent_on(&c, 'A', 0);
    c.wait("changes flow on path 1", wait, |c| Ok(data_sent_on(c, 'A', 0) > on_one + 200)).unwrap();
    two.set_cut(false);

    // Quiet: both hold the same state, and nothing was lost or redone.
    c.ask::<Churning>('A', &Request::Churn { rate: 0 }).unwrap();
    c.wait("same state on both", wait, |c| Ok(c.in_sync('A') && digests(c, 'A') == digests(c, 'B'))).unwrap();
    no_failover(&c, &term);
    assert_eq!(rebulks(&c), before, "no stream was re-bulked");
    for slot in ['A', 'B'] {
        assert!(!log(&c, slot).contains("PeerLost"), "MSM-{slot} lost its peer:\n{}", log(&c, slot));
        let s = switch(&c, slot);
        let e = &s.frame_errors;
        assert!(e.duplicate > 0, "heartbeat copies are counted as such: {s:?}");
        assert_eq!(e.replay, 0, "and never as replays: {s:?}");
    }
    let moves = log(&c, 'A').matches("backplane data moves to path").count();
    assert!(moves >= 2, "data moved to path 2 and back: {moves} moves logged");
}

#[test]
fn the_peer_is_lost_only_when_both_paths_are_silent() {
    let (_d, mut c) = chassis(HB);
    let (one, taps1) = cabled(&c, 1);
    let (two, taps2) = cabled(&c, 2);
    c.taps = taps1;
    c.second_path = Some(taps2);
    pair(&mut c, &[]);
    let term = switch(&c, 'A').term;
    one.set_cut(true);
    c.wait("path 1 down", Duration::from_secs(5), |c| Ok(path_is(c, 'B', 0, "DOWN", 1))).unwrap();
    no_failover(&c, &term);
    two.set_cut(true);
    c.wait("B takes over", Duration::from_secs(5), |c| Ok(c.role('B').as_deref() == Some("MASTER"))).unwrap();
    // Kill the old master before the paths heal: no split brain in this test.
    c.kill('A').unwrap();
}
