//! The failover history of real nodes (`show failover history`, the count
//! and the newest in `show switch`, `msm_failovers_total`): each takeover is
//! recorded with its cause, module, term and whether it was hitless, on the
//! module's flash, so a restart keeps it; an election at boot is recorded
//! but not counted.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use msm_control::{FailingOver, FailoverHistory, Request};

mod common;

use common::{HB, chassis, log, pair, switch};

fn history(c: &msm_testkit::chassis::Chassis, slot: char) -> FailoverHistory {
    c.ask(slot, &Request::ShowFailoverHistory).unwrap()
}

/// One scrape of `slot`'s metrics: the body.
fn metrics(c: &msm_testkit::chassis::Chassis, slot: char) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(c.metrics_address(slot).unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: node\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
}

#[test]
fn each_takeover_is_recorded_with_its_cause_and_survives_a_restart() {
    let (_d, mut c) = chassis(HB);
    pair(&mut c, &["--churn", "100", "--metrics", "127.0.0.1:0"]);
    // A was elected at boot: recorded, not a failover.
    let a = history(&c, 'A');
    assert_eq!(a.failovers, 0, "{a:?}");
    assert_eq!(a.entries.first().map(|e| e.cause.as_str()), Some("elected"), "{a:?}");
    assert_eq!(history(&c, 'B').entries.len(), 0);

    // The operator's handover: B takes over, hitless.
    c.ask::<FailingOver>('A', &Request::Failover { force: false }).unwrap();
    c.wait("B master", Duration::from_secs(10), |c| Ok(c.role('B').as_deref() == Some("MASTER"))).unwrap();
    let b = history(&c, 'B');
    let e = &b.entries[0];
    assert_eq!((b.failovers, e.cause.as_str(), e.module.as_str()), (1, "admin", "B"), "{b:?}");
    assert!(e.hitless, "an in-sync handover is hitless: {b:?}");
    assert_eq!(e.term, switch(&c, 'B').term);
    assert_eq!(e.config.as_deref(), Some("master's active"));
    assert!(e.time.ends_with('Z') && e.time.contains('T'), "RFC 3339: {}", e.time);
    let s = switch(&c, 'B');
    assert_eq!((s.failovers, s.last_failover.as_ref()), (1, Some(e)), "show switch carries it: {s:?}");
    let text = c.text('B', &Request::ShowSwitch).unwrap();
    assert!(text.contains("Failovers:        1, last:") && text.contains("admin, hitless"), "{text}");
    let m = metrics(&c, 'B');
    assert!(m.contains("msm_failovers_total 1\n"), "{m}");
    assert!(m.contains("msm_failovers_since_start_total{cause=\"admin\"} 1\n"), "{m}");
    assert!(
        m.contains("msm_last_failover_timestamp_seconds{cause=\"admin\",module=\"B\",hitless=\"yes\"}"),
        "{m}"
    );

    // The master dies: A, in sync again, takes over because B is silent.
    c.wait("A in sync", Duration::from_secs(20), |c| Ok(c.in_sync('B'))).unwrap();
    c.kill('B').unwrap();
    c.wait("A master", Duration::from_secs(10), |c| Ok(c.role('A').as_deref() == Some("MASTER"))).unwrap();
    let a = history(&c, 'A');
    let e = &a.entries[0];
    assert_eq!((a.failovers, e.cause.as_str(), e.module.as_str()), (1, "peer-silent", "A"), "{a:?}");
    assert!(e.hitless, "{a:?}\n{}", log(&c, 'A'));
    assert_eq!(a.entries.len(), 2, "the election stays below it: {a:?}");
    let text = c.text('A', &Request::ShowFailoverHistory).unwrap();
    assert!(text.starts_with("Failovers: 1") && text.contains("peer-silent"), "{text}");

    // Kept on flash: both survive a restart (B's while A is master: B comes
    // back as backup and its history still has its handover).
    c.start('B', &[]).unwrap();
    c.wait("B back in sync", Duration::from_secs(20), |c| Ok(c.in_sync('A'))).unwrap();
    let b_again = history(&c, 'B');
    assert_eq!(b_again.entries, b.entries, "B's history after its restart");
    c.stop('A').unwrap();
    c.wait("B master", Duration::from_secs(10), |c| Ok(c.role('B').as_deref() == Some("MASTER"))).unwrap();
    c.start('A', &[]).unwrap();
    let a_again = history(&c, 'A');
    assert_eq!(a_again.entries, a.entries, "A's history after its restart");
    let b = history(&c, 'B');
    assert_eq!((b.failovers, b.entries[0].cause.as_str()), (2, "peer-silent"), "{b:?}");
}
