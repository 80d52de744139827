//! The backup's side: applying in order and once, acknowledging, and
//! asking for a new bulk when its host cannot take a record.

use super::util::{A, B, Pair, VLAN};
use crate::wire::Body;
use crate::{Event, RebulkReason, Stream};

extern crate std;

/// Sets and deletes, pipelined: the backup applies them in order and
/// acknowledges them; its table ends as the master's.
#[test]
fn changes_are_applied_in_order_and_acknowledged() {
    let mut p = Pair::synced(50);
    let mut last = 0;
    for i in 0..200 {
        let key = std::format!("k{}", i % 60);
        last = if i % 3 == 2 {
            p.host[A].apps[0].remove(key.as_bytes());
            p.node[A].record_change(VLAN, std::format!("{key}=").as_bytes()).unwrap_or(0)
        } else {
            p.change(&key, &std::format!("v{i}"))
        };
    }
    p.run_until("every change checkpointed", 2_000, |p| p.node[A].checkpointed(VLAN) >= last);
    assert_eq!(p.host[B].apps[0], p.host[A].apps[0]);
}

/// The backup's host refuses one record: the backup asks for a new bulk
/// of that stream, the master sends it, and nothing is lost.
#[test]
fn a_record_the_host_refuses_brings_a_new_bulk_of_that_stream() {
    let mut p = Pair::synced(20);
    p.host[B].refuse = true;
    let id = p.change("lab", "tag 200");
    p.run_until("checkpointed after the new bulk", 3_000, |p| p.node[A].checkpointed(VLAN) >= id);
    let asked = p.events[A].iter().any(|e| {
        matches!(e, Event::Rebulk { stream: Stream::App(s), reason: RebulkReason::BackupRequest } if *s == VLAN)
    });
    assert!(asked, "{:?}", p.events[A]);
    assert_eq!(p.host[B].apps[0], p.host[A].apps[0]);
}

/// A path that delivers every frame twice: each configuration line (an
/// append, so a second apply would show) is applied once, and the active
/// configurations end equal.
#[test]
fn duplicated_frames_are_applied_once() {
    let mut p = Pair::synced(5);
    p.duplicate = true;
    let mut last = 0;
    for i in 0..30 {
        let line = std::format!("configure vlan v{i} tag {i}\n");
        p.host[A].active_config.extend_from_slice(line.as_bytes());
        last = p.node[A].config_change(line.as_bytes()).expect("a config change");
    }
    p.run_until("checkpointed", 2_000, |p| {
        p.node[A].stream_status(1).is_some_and(|s| s.checkpointed >= last)
    });
    assert_eq!(p.host[B].active_config, p.host[A].active_config);
}

/// Data frames arrive out of order (the first ones lost, then resent): the
/// backup applies nothing beyond a hole, says so, and ends with the
/// master's table.
#[test]
fn a_hole_is_reported_and_filled_in_order() {
    let mut p = Pair::synced(5);
    p.filter = Some(|from, body| from == A && matches!(body, Body::Data));
    let first = p.change("a", "1");
    p.run(5);
    p.filter = None;
    let mut last = first;
    for i in 0..10 {
        last = p.change(&std::format!("b{i}"), "2");
        p.run(1);
    }
    p.run_until("checkpointed", 2_000, |p| p.node[A].checkpointed(VLAN) >= last);
    assert_eq!(p.host[B].apps[0], p.host[A].apps[0]);
}
