//! Chassis benchmarks (issue 5), from one run:
//! - bulk checkpoint time for 100 k and 1 M records (two nodes in one
//!   process over a Unix datagram socket pair), against a raw copy of the
//!   same records through the same kind of socket into a table;
//! - dynamic checkpoint throughput, and p50/p99 latency from a change to
//!   its acknowledgement by the backup;
//!
//! (Failover time with real processes is in `cargo xtask bench`'s chassis
//! load part, xtask/src/load.rs.)
#![allow(clippy::unwrap_used, clippy::panic)] // a benchmark: a failure is a panic with its reason

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use msm_backplane::Link;
use msm_backplane_linux::{UnixDatagramLink, unix_datagram_pair};
use msm_checkpoint::Slot;
use msm_runtime::apps::{Change, FDB};
use msm_runtime::flash::BoardFlash;
use msm_runtime::node::{MsmNode, Options};

type B = MsmNode<UnixDatagramLink>;

fn opts(slot: u8) -> Options {
    Options {
        forget_term: false,
        slot: Slot::new(slot).unwrap(),
        priority: None,
        heartbeat: Duration::from_millis(100),
        miss_count: 3,
        max_frame: 8192,
        link_rate: None,
        apps: Some(vec!["devmgr".into(), "cfgmgr".into(), "vlan".into(), "fdb".into()]),
        key: None,
        processes: Vec::new(),
    }
}

fn mac(i: u64) -> Change {
    Change::Set(0x0004_9600_0000 + i, [1u8, 0, (i % 48) as u8 + 1, 0].to_vec())
}

fn pump_until(a: &mut B, b: &mut B, limit: Duration, mut done: impl FnMut(&mut B, &mut B) -> bool) {
    let end = Instant::now() + limit;
    while !done(a, b) {
        assert!(Instant::now() < end, "benchmark step did not finish in {limit:?}");
        a.pump();
        b.pump();
    }
}

fn in_sync(a: &mut B) -> bool {
    a.engine.sync_state() == msm_checkpoint::SyncState::InSync
}

/// Master with `n` MAC entries, then a backup joins: time to in sync.
fn bulk(dir: &std::path::Path, n: u64) -> Duration {
    let (la, lb) = unix_datagram_pair(8192).unwrap();
    let mut a = MsmNode::new(opts(0), BoardFlash::open(&dir.join(format!("a{n}.img"))).unwrap(), la).unwrap();
    let t = Instant::now();
    while a.engine.role() != msm_checkpoint::Role::Master {
        assert!(t.elapsed() < Duration::from_secs(5));
        a.pump();
    }
    for i in 0..n {
        a.change(FDB, mac(i)).unwrap();
    }
    let mut b = MsmNode::new(opts(1), BoardFlash::open(&dir.join(format!("b{n}.img"))).unwrap(), lb).unwrap();
    let start = Instant::now();
    pump_until(&mut a, &mut b, Duration::from_secs(300), |a, _| in_sync(a));
    let took = start.elapsed();
    assert_eq!(a.host.tables[3].len(), b.host.tables[3].len());
    took
}

/// The same records through a raw Unix datagram pair into a table, batched like the engine's frames.
fn raw_copy(n: u64) -> Duration {
    let (mut la, mut lb) = unix_datagram_pair(8192).unwrap();
    let mut table = BTreeMap::new();
    let mut buf = vec![0u8; 8192];
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        let mut frame = Vec::with_capacity(8192);
        while i < n && frame.len() + 40 < 8000 {
            let rec = mac(i).encode();
            frame.push(rec.len() as u8);
            frame.extend_from_slice(&rec);
            i += 1;
        }
        la.send(&frame).unwrap();
        while let Some(len) = lb.recv(&mut buf).unwrap() {
            let mut at = 0;
            while at < len {
                let l = buf[at] as usize;
                if let Ok(Change::Set(k, v)) = Change::decode(&buf[at + 1..at + 1 + l]) {
                    table.insert(k, v);
                }
                at += 1 + l;
            }
        }
    }
    assert_eq!(table.len() as u64, n);
    start.elapsed()
}

/// `key`: the chassis key both nodes hold, or none (unauthenticated).
fn dynamic(dir: &std::path::Path, n: u64, key: Option<msm_checkpoint::Key>) -> (f64, Duration, Duration) {
    let (la, lb) = unix_datagram_pair(8192).unwrap();
    let tag = if key.is_some() { "k" } else { "" };
    let o = |slot| Options { key: key.clone(), ..opts(slot) };
    let mut a = MsmNode::new(o(0), BoardFlash::open(&dir.join(format!("ad{tag}.img"))).unwrap(), la).unwrap();
    let mut b = MsmNode::new(o(1), BoardFlash::open(&dir.join(format!("bd{tag}.img"))).unwrap(), lb).unwrap();
    pump_until(&mut a, &mut b, Duration::from_secs(10), |a, _| in_sync(a));
    let mut sent: Vec<(u64, Instant)> = Vec::with_capacity(n as usize);
    let mut lat = Vec::with_capacity(n as usize);
    let mut acked = 0;
    let start = Instant::now();
    let mut i = 0;
    while (lat.len() as u64) < n {
        // Offer changes in bursts of 32, as an application under load would.
        for _ in 0..32 {
            if i < n {
                let id = a.change(FDB, mac(i % 50_000)).unwrap();
                sent.push((id, Instant::now()));
                i += 1;
            }
        }
        a.pump();
        b.pump();
        let c = a.checkpointed(FDB);
        let now = Instant::now();
        while acked < sent.len() && sent[acked].0 <= c {
            lat.push(now - sent[acked].1);
            acked += 1;
        }
        assert!(start.elapsed() < Duration::from_secs(120));
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    (n as f64 / secs, lat[lat.len() / 2], lat[lat.len() * 99 / 100])
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    println!("chassis benchmark (two nodes in one process over a Unix datagram pair)");
    for n in [100_000u64, 1_000_000] {
        let raw = raw_copy(n);
        let t = bulk(dir.path(), n);
        println!(
            "  bulk checkpoint of {n:>9} records: {:>8.3} s  ({:>9.0} records/s); raw socket copy of the same records {:.3} s; ratio {:.2}",
            t.as_secs_f64(),
            n as f64 / t.as_secs_f64(),
            raw.as_secs_f64(),
            raw.as_secs_f64() / t.as_secs_f64()
        );
    }
    // Without and with the chassis key, alternating, best of three each.
    let key = msm_checkpoint::Key::new([0x5A; 32]);
    let mut best = [(0f64, Duration::ZERO, Duration::ZERO); 2];
    for _ in 0..3 {
        for (i, k) in [None, Some(key.clone())].into_iter().enumerate() {
            let r = dynamic(dir.path(), 200_000, k);
            if r.0 > best[i].0 {
                best[i] = r;
            }
        }
    }
    for (what, (rate, p50, p99)) in ["unauthenticated", "authenticated"].iter().zip(best) {
        println!(
            "  dynamic checkpoint, {what:<15}: {rate:>9.0} changes/s acknowledged; latency change -> acknowledged p50 {:.1} us, p99 {:.1} us",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6
        );
    }
    println!(
        "  ratio authenticated/unauthenticated: throughput {:.3} (goal >= 0.85), p99 latency {:.2}x",
        best[1].0 / best[0].0,
        best[1].2.as_secs_f64() / best[0].2.as_secs_f64()
    );
}
