//! The metrics endpoint (`msm-node --metrics ADDR`) of real nodes: scraped
//! over HTTP, it shows the role, the sync, the peers, each stream's phase
//! and lag; a scraper that sends nothing, or asks every 10 ms, moves
//! nothing in the chassis.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

mod common;

/// One scrape: the status line and the body.
fn get(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: node\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap_or_default().to_string(), body.to_string())
}

#[test]
fn a_scrape_shows_role_sync_peers_and_streams_and_scrapers_move_nothing() {
    let (_d, mut c) = common::chassis(common::HB);
    common::pair(&mut c, &["--metrics", "127.0.0.1:0"]);
    let (a, b) = (c.metrics_address('A').unwrap(), c.metrics_address('B').unwrap());
    let term = common::switch(&c, 'A').term;

    let want_a = [
        "msm_role{slot=\"A\",role=\"MASTER\"} 1",
        "msm_in_sync 1",
        "msm_peer_alive{peer=\"B\",role=\"BACKUP\"} 1",
        "msm_stream_phase{stream=\"vlan\"",
        "msm_stream_lag_records{stream=\"vlan\"}",
        "msm_frames_refused_total{reason=\"auth\"}",
        "msm_backlog_bytes{of=\"capacity\"}",
        "msm_key{fingerprint=",
    ];
    c.wait("A's metrics", Duration::from_secs(10), |_| {
        let (_, body) = get(&a, "/metrics");
        Ok(want_a.iter().all(|w| body.contains(w)))
    })
    .unwrap_or_else(|e| panic!("{e}:\n{}", get(&a, "/metrics").1));
    c.wait("B's metrics", Duration::from_secs(10), |_| {
        Ok(get(&b, "/metrics").1.contains("msm_role{slot=\"B\",role=\"BACKUP\"} 1"))
    })
    .unwrap();
    let (status, _) = get(&a, "/other");
    assert!(status.contains("404"), "{status}");

    // A scraper that connects and says nothing, and one that asks every
    // 10 ms while the operator configures: the chassis does not move.
    let _silent = TcpStream::connect(&a).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scraper = {
        let (stop, b) = (stop.clone(), b.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = get(&b, "/metrics");
                n += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            n
        })
    };
    for i in 0..20 {
        let line = format!("create vlan m{i} tag {}", 100 + i);
        let r =
            c.call('A', &msm_control::Request::Configure { lines: vec![line], wait: Some(5000) }).unwrap();
        assert!(matches!(r, msm_control::Response::Ok { .. }), "{r:?}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(scraper.join().unwrap() > 0);
    common::no_failover(&c, &term);
}
