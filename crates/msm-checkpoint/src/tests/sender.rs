//! The master's side: bulk order, retransmission, the backlog's overflow,
//! and the backoff for a backup that keeps refusing a stream.

extern crate std;

use super::util::{A, B, Pair, VLAN};
use crate::wire::Body;
use crate::{Event, Failure, RebulkReason, Stream};

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

/// Bulks start in dependency order: the saved configuration, then the
/// active one, then vlan, then fdb (which depends on vlan).
#[test]
fn bulks_finish_in_dependency_order() {
    let p = Pair::synced(5);
    let synced: std::vec::Vec<Stream> = p.events[A]
        .iter()
        .filter_map(|e| match e {
            Event::StreamSynced(s) => Some(*s),
            _ => None,
        })
        .collect();
    let fdb = Stream::App(crate::AppId::new(1));
    assert_eq!(synced, [Stream::SavedConfig, Stream::ActiveConfig, Stream::App(VLAN), fdb]);
}

/// The backup's acknowledgements are lost for a while: the master sends
/// the records again, the backup applies them once, and they are reported
/// checkpointed only once an acknowledgement arrives.
#[test]
fn lost_acknowledgements_are_answered_by_sending_again() {
    let mut p = Pair::synced(10);
    p.filter = Some(|from, body| from == B && matches!(body, Body::Ack));
    let mut last = 0;
    for i in 0..20 {
        last = p.change(&std::format!("k{i}"), &std::format!("lost ack {i}"));
    }
    p.run(100);
    assert!(p.dropped > 0);
    assert!(p.node[A].checkpointed(VLAN) < last, "checkpointed without an acknowledgement");
    p.filter = None;
    p.run_until("checkpointed", 2_000, |p| p.node[A].checkpointed(VLAN) >= last);
    assert!(p.node[A].retransmits() > 0);
    assert_eq!(p.host[B].apps[0], p.host[A].apps[0]);
}

/// A backup that refuses a stream again and again is sent a new bulk less
/// and less often (a heartbeat interval for the second request, doubling),
/// the stream says why, and once it takes the records it catches up.
#[test]
fn a_backup_that_keeps_refusing_is_asked_less_and_less_often() {
    let mut p = Pair::synced(10);
    p.host[B].refusing = true;
    let id = p.change("lab", "tag 200");
    p.run(1_000);
    let rebulks = p.events[A]
        .iter()
        .filter(|e| matches!(e, Event::Rebulk { reason: RebulkReason::BackupRequest, .. }))
        .count();
    // Without the backoff it would be one a round trip: about a hundred.
    assert!((3..=12).contains(&rebulks), "{rebulks} re-bulks in a second");
    let vlan = p.node[A].stream_status(2).expect("vlan's stream");
    assert_eq!(vlan.failure, Some(Failure::BackupRefused));
    p.host[B].refusing = false;
    p.run_until("checkpointed", 3_000, |p| p.node[A].checkpointed(VLAN) >= id);
    assert_eq!(p.host[B].apps[0], p.host[A].apps[0]);
}
