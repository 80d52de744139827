//! The backup's side: applying in order, acknowledging, and asking for a
//! new bulk when its host cannot take a record.

use super::util::{A, B, Pair, VLAN};
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
