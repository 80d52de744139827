//! The master's side: retransmission and the backlog's overflow.

extern crate std;

use super::util::{A, B, Pair, VLAN};
use crate::wire::Body;
use crate::{Event, RebulkReason, Stream};

/// Data frames from A are lost for a while: the change is sent again once
/// they pass, and only then reported checkpointed.
#[test]
fn a_lost_data_frame_is_sent_again_and_only_then_checkpointed() {
    let mut p = Pair::synced(10);
    p.filter = Some(|from, body| from == A && matches!(body, Body::Data));
    let id = p.change("lab", "tag 200");
    p.run(60);
    assert!(p.dropped > 0, "a data frame was sent and lost");
    assert!(p.node[A].checkpointed(VLAN) < id, "reported checkpointed while lost");
    p.filter = None;
    p.run_until("checkpointed", 2_000, |p| p.node[A].checkpointed(VLAN) >= id);
    assert!(p.node[A].retransmits() > 0);
    assert_eq!(p.host[B].apps[0].get(&b"lab"[..]).map(|v| v.as_slice()), Some(&b"tag 200"[..]));
}

/// More unacknowledged changes than the backlog holds: the stream is
/// re-bulked (and only that stream), and the backup ends with the master's
/// table.
#[test]
fn a_backlog_overflow_rebulks_only_the_stream_that_overflowed() {
    let mut p = Pair::synced(10);
    p.filter = Some(|from, body| from == A && matches!(body, Body::Data));
    for i in 0..300 {
        p.change(&std::format!("k{i}"), "a value of some length");
        p.run(1);
    }
    let overflowed = |p: &Pair| {
        p.events[A].iter().any(|e| {
            matches!(e, Event::Rebulk { stream: Stream::App(id), reason: RebulkReason::BacklogOverflow } if *id == VLAN)
        })
    };
    assert!(overflowed(&p), "{:?}", p.events[A]);
    p.filter = None;
    p.run_until("in sync again", 5_000, |p| {
        p.node[A].checkpointed(VLAN) >= 300 && p.host[B].apps == p.host[A].apps
    });
    let others = p.events[A]
        .iter()
        .filter(|e| matches!(e, Event::Rebulk { stream, .. } if *stream != Stream::App(VLAN)));
    assert_eq!(others.count(), 0, "{:?}", p.events[A]);
}
