//! The UART driver and the fault injector on their own.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{ByteFaults, byte_pair, mem_pair, message};
use msm_backplane::UartLink;
use msm_backplane::{Error as _, ErrorKind, Link};
use msm_backplane::{FaultConfig, FaultInjector, Rate};
use msm_time::Instant;

#[test]
fn uart_link_moves_frames_through_a_16_byte_fifo_without_blocking() {
    let (a, b) = byte_pair(16, ByteFaults::default(), 1);
    let mut a: UartLink<_, 300, 700> = UartLink::new(a);
    let mut b: UartLink<_, 300, 700> = UartLink::new(b);
    let mut buf = [0u8; 300];
    let (mut sent, mut got) = (0u64, 0u64);
    let mut would_block = 0;
    for _ in 0..100_000 {
        if sent < 500 {
            match a.send(&message(sent, 290)) {
                Ok(()) => sent += 1,
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::WouldBlock);
                    would_block += 1;
                }
            }
        }
        a.flush().unwrap();
        while let Some(n) = b.recv(&mut buf).unwrap() {
            assert_eq!(&buf[..n], &message(got, 290)[..]);
            got += 1;
        }
        if got == 500 {
            break;
        }
    }
    assert_eq!(got, 500);
    assert!(would_block > 0, "the transmit buffer filled up at least once");
    assert!(!a.tx_pending());
    assert_eq!(b.counters().frames, 500);
    assert_eq!(a.send(&[0; 301]).unwrap_err().kind(), ErrorKind::FrameTooLarge);
}

#[test]
fn uart_link_reports_a_frame_larger_than_the_callers_buffer() {
    let (a, b) = byte_pair(1 << 16, ByteFaults::default(), 1);
    let mut a: UartLink<_, 100, 300> = UartLink::new(a);
    let mut b: UartLink<_, 100, 300> = UartLink::new(b);
    a.send(&[7; 50]).unwrap();
    a.send(&[8; 5]).unwrap();
    let mut small = [0u8; 10];
    assert_eq!(b.recv(&mut small).unwrap_err().kind(), ErrorKind::FrameTooLarge);
    assert_eq!(b.recv(&mut small).unwrap(), Some(5));
    assert_eq!(small[..5], [8; 5]);
}

fn run_faults(seed: u64) -> (msm_backplane::FaultStats, Vec<Vec<u8>>) {
    let (mut a, b) = mem_pair(64, 1 << 20);
    let cfg = FaultConfig {
        drop: Rate::percent(10),
        duplicate: Rate::percent(10),
        reorder: Rate::percent(10),
        corrupt: Rate::percent(10),
        jitter: Duration::from_micros(250),
        reorder_delay: Duration::from_millis(3),
        ..FaultConfig::NONE
    };
    let mut b: FaultInjector<_, 32, 64> = FaultInjector::new(b, cfg, seed);
    let mut out = Vec::new();
    let mut buf = [0u8; 64];
    for i in 0..10_000u64 {
        a.send(&message(i, 40)).unwrap();
        b.set_now(Instant::from_micros(i * 100));
        while let Some(n) = b.recv(&mut buf).unwrap() {
            out.push(buf[..n].to_vec());
        }
    }
    b.set_now(Instant::from_millis(10_000));
    while let Some(n) = b.recv(&mut buf).unwrap() {
        out.push(buf[..n].to_vec());
    }
    assert_eq!(b.held(), 0);
    (b.stats(), out)
}

#[test]
fn fault_injector_applies_each_fault_at_its_rate_and_replays_from_its_seed() {
    let (s, out) = run_faults(42);
    println!("{s:?}");
    assert_eq!(s.received, 10_000);
    // Drop draws on all 10 000 frames, the other faults on the ~9 000 it lets through.
    for (name, n, expect) in [
        ("drop", s.dropped, 1000),
        ("corrupt", s.corrupted, 900),
        ("reorder", s.reordered, 900),
        ("duplicate", s.duplicated, 900),
    ] {
        assert!(n.abs_diff(expect) < 150, "{name}: {n}, expected about {expect}: {s:?}");
    }
    // Jitter holds most frames back a little (FIFO), reorder some for longer.
    assert!(s.delayed > 5_000, "{s:?}");
    assert_eq!(s.delivered as usize, out.len());
    assert_eq!(s.delivered, s.received - s.dropped + s.duplicated);
    let ids: Vec<u64> = out.iter().map(|f| u64::from_le_bytes(f[..8].try_into().unwrap())).collect();
    assert!(ids.windows(2).any(|w| w[1] < w[0]), "some frames overtaken");
    assert_eq!(run_faults(42), (s, out), "same seed, same faults");
    assert_ne!(run_faults(43).0, s);
}

#[test]
fn partition_swallows_both_directions_until_healed() {
    let (a, b) = mem_pair(64, 1 << 10);
    let mut a: FaultInjector<_, 4, 64> = FaultInjector::new(a, FaultConfig::NONE, 1);
    let mut b: FaultInjector<_, 4, 64> = FaultInjector::new(b, FaultConfig::NONE, 2);
    let mut buf = [0u8; 64];
    a.partition_until(Instant::from_millis(10));
    assert!(a.is_partitioned());
    a.send(b"lost").unwrap();
    b.send(b"lost too").unwrap();
    assert_eq!(a.recv(&mut buf).unwrap(), None);
    a.set_now(Instant::from_millis(10));
    assert!(!a.is_partitioned());
    a.send(b"through").unwrap();
    assert_eq!(b.recv(&mut buf).unwrap(), Some(7));
    assert_eq!(a.stats().partitioned, 2);
}

#[test]
fn fault_injector_keeps_order_under_jitter_without_reorder() {
    let (mut a, b) = mem_pair(64, 1 << 20);
    let cfg = FaultConfig {
        latency: Duration::from_micros(100),
        jitter: Duration::from_micros(900),
        ..FaultConfig::NONE
    };
    let mut b: FaultInjector<_, 32, 64> = FaultInjector::new(b, cfg, 5);
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    for i in 0..5_000u64 {
        a.send(&message(i, 16)).unwrap();
        b.set_now(Instant::from_micros(i * 50));
        while let Some(n) = b.recv(&mut buf).unwrap() {
            got.push(buf[..n].to_vec());
        }
        assert!(b.poll_timeout().is_none_or(|t| t > Instant::from_micros(i * 50)));
    }
    b.set_now(Instant::from_millis(1_000));
    while let Some(n) = b.recv(&mut buf).unwrap() {
        got.push(buf[..n].to_vec());
    }
    assert_eq!(got, (0..5_000).map(|i| message(i, 16)).collect::<Vec<_>>());
    assert!(b.stats().delayed > 4_000, "{:?}", b.stats());
}
