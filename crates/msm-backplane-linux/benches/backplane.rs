//! Backplane benchmark: framing efficiency, and reliable-channel throughput
//! over a Unix socket pair as a ratio to a raw socket copy of the same bytes
//! in the same run.
//!
//! `cargo bench -p msm-backplane-linux --bench backplane`
#![allow(clippy::panic, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant as StdInstant};

use msm_backplane::Link;
use msm_backplane::channel::{ChannelConfig, ChannelLink, OVERHEAD};
use msm_backplane::framing;
use msm_backplane_linux::{Clock, Error, UnixDatagramLink, UnixStreamLink, wait};
use rand::RngCore;
use rand_pcg::Pcg64Mcg;

const SEED: u128 = 0xBAC4_91A7E;
/// Message size of the throughput runs.
const MSG: usize = 1024;
/// Channel packet size: a message plus the channel's header and CRC.
const FRAME: usize = MSG + OVERHEAD;
const WINDOW: usize = 32;
/// Bytes per throughput run.
const TOTAL: usize = 48 << 20;
const RUNS: usize = 3;

fn main() {
    framing_efficiency();
    println!();
    throughput();
}

/// Payload bytes ÷ wire bytes of `frames` encoded as a stream driver sends
/// them: a leading delimiter only at the start of a burst.
fn efficiency(payloads: &[Vec<u8>], back_to_back: bool) -> f64 {
    let mut wire = vec![0u8; framing::max_encoded_len(2048)];
    let (mut payload, mut bytes) = (0usize, 0usize);
    for (i, p) in payloads.iter().enumerate() {
        let lead = !back_to_back || i == 0;
        let n = framing::encode(p, &mut wire, lead).unwrap_or(0);
        payload += p.len();
        bytes += n;
    }
    payload as f64 / bytes as f64
}

fn framing_efficiency() {
    let mut rng = Pcg64Mcg::new(SEED);
    println!("framing efficiency: payload bytes / wire bytes (COBS + CRC-32C + 0x00 delimiters)");
    println!(
        "{:>8}  {:>22}  {:>22}  {:>26}  {:>8}",
        "payload", "random, back-to-back", "random, isolated", "no zero bytes (worst case)", "goal"
    );
    for size in [64usize, 256, 1024] {
        let random: Vec<Vec<u8>> = (0..10_000)
            .map(|_| {
                let mut p = vec![0; size];
                rng.fill_bytes(&mut p);
                p
            })
            .collect();
        // No zero byte anywhere (the CRC too): COBS's worst case.
        let worst: Vec<Vec<u8>> = (0u32..)
            .map(|i| {
                let mut p = vec![0xA5; size];
                p[..4].copy_from_slice(&(i | 0x8080_8080).to_le_bytes());
                p
            })
            .filter(|p| {
                let mut w = vec![0; framing::max_encoded_len(size)];
                framing::encode(p, &mut w, true).is_ok_and(|n| n == framing::max_encoded_len(size))
            })
            .take(1000)
            .collect();
        let rb = efficiency(&random, true);
        let ri = efficiency(&random, false);
        let wb = efficiency(&worst, true);
        let wi = efficiency(&worst, false);
        let goal = if size == 256 {
            if rb >= 0.97 && wb >= 0.97 { ">= 97% met" } else { ">= 97% MISSED" }
        } else {
            ""
        };
        println!(
            "{:>6} B  {:>21.2}%  {:>21.2}%  {:>12.2}% / {:>6.2}% isol.  {goal}",
            size,
            rb * 100.0,
            ri * 100.0,
            wb * 100.0,
            wi * 100.0
        );
    }
    println!("  (back-to-back frames share one delimiter; an isolated frame after an idle line carries two)");
}

fn message(i: usize) -> Vec<u8> {
    let mut m = vec![(i % 251) as u8; MSG];
    m[..8].copy_from_slice(&(i as u64).to_le_bytes());
    m
}

/// Raw copy: a blocking writer thread writes the same messages, the reader
/// reads until it has every byte. Returns seconds.
fn raw_copy(msgs: &[Vec<u8>]) -> f64 {
    let (mut a, mut b) = UnixStream::pair().unwrap_or_else(|e| panic!("socketpair: {e}"));
    let total: usize = msgs.iter().map(Vec::len).sum();
    let start = StdInstant::now();
    thread::scope(|s| {
        s.spawn(move || {
            for m in msgs {
                a.write_all(m).unwrap_or_else(|e| panic!("raw write: {e}"));
            }
        });
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < total {
            match b.read(&mut buf) {
                Ok(0) => panic!("raw copy: EOF after {got} bytes"),
                Ok(n) => got += n,
                Err(e) => panic!("raw read: {e}"),
            }
        }
    });
    start.elapsed().as_secs_f64()
}

/// The same messages through a reliable channel on each end of a link pair,
/// one thread per end, each with a poll loop; done when the sender has every
/// message acknowledged. Returns seconds and the sender's retransmissions.
fn channel_copy<L>(msgs: &[Vec<u8>], pair: (L, L)) -> (f64, u64)
where
    L: Link<Error = Error> + AsFd + Send,
{
    let (a, b) = pair;
    let clock = Clock::new();
    let done = Arc::new(AtomicBool::new(false));
    let start = StdInstant::now();
    let retransmits = thread::scope(|s| {
        let done_rx = done.clone();
        s.spawn(move || {
            let mut b: ChannelLink<L, WINDOW, FRAME> =
                ChannelLink::new(b, ChannelConfig::new(2), clock.now());
            let mut buf = vec![0u8; FRAME];
            let mut got = 0;
            while !done_rx.load(Ordering::Relaxed) {
                b.poll(clock.now()).unwrap_or_else(|e| panic!("receiver poll: {e:?}"));
                let mut any = false;
                while let Some(n) = b.recv(&mut buf).unwrap_or_else(|e| panic!("receiver: {e:?}")) {
                    assert_eq!(buf[..8], (got as u64).to_le_bytes(), "message {got} out of order");
                    assert_eq!(n, MSG);
                    got += 1;
                    any = true;
                }
                if any {
                    // Acknowledge now.
                    b.poll(clock.now()).unwrap_or_else(|e| panic!("receiver poll: {e:?}"));
                }
                let t = b.poll_timeout().map_or(Duration::from_millis(1), |t| clock.until(t));
                let _ = wait(&[(b.link().as_fd(), b.tx_pending())], Some(t.min(Duration::from_millis(1))));
            }
            assert_eq!(got, msgs.len());
        });
        let mut a: ChannelLink<L, WINDOW, FRAME> = ChannelLink::new(a, ChannelConfig::new(1), clock.now());
        let mut sent = 0;
        loop {
            while sent < msgs.len() && a.send(&msgs[sent]).is_ok() {
                sent += 1;
            }
            a.poll(clock.now()).unwrap_or_else(|e| panic!("sender poll: {e:?}"));
            if sent == msgs.len() && a.channel().unacked() == 0 {
                break;
            }
            if sent < msgs.len() && a.channel().can_send() {
                // Acks opened the window: queue more before sleeping.
                continue;
            }
            let t = a.poll_timeout().map_or(Duration::from_millis(1), |t| clock.until(t));
            let _ = wait(&[(a.link().as_fd(), a.tx_pending())], Some(t.min(Duration::from_millis(1))));
        }
        done.store(true, Ordering::Relaxed);
        a.channel().stats().retransmits
    });
    (start.elapsed().as_secs_f64(), retransmits)
}

fn stream_pair() -> (UnixStreamLink, UnixStreamLink) {
    msm_backplane_linux::unix_stream_pair(FRAME).unwrap_or_else(|e| panic!("socketpair: {e}"))
}

fn datagram_pair() -> (UnixDatagramLink, UnixDatagramLink) {
    msm_backplane_linux::unix_datagram_pair(FRAME).unwrap_or_else(|e| panic!("socketpair: {e}"))
}

fn throughput() {
    let msgs: Vec<Vec<u8>> = (0..TOTAL / MSG).map(message).collect();
    let mib = TOTAL as f64 / (1 << 20) as f64;
    println!(
        "reliable channel throughput over a Unix socket pair: {} messages of {MSG} B ({mib:.0} MiB), \
         window {WINDOW}, best of {RUNS}",
        msgs.len()
    );
    let best = |f: &mut dyn FnMut() -> (f64, u64)| {
        (0..RUNS).map(|_| f()).min_by(|x, y| x.0.total_cmp(&y.0)).unwrap_or((f64::NAN, 0))
    };
    let (raw, _) = best(&mut || (raw_copy(&msgs), 0));
    let (stream, rs) = best(&mut || channel_copy(&msgs, stream_pair()));
    let (dgram, rd) = best(&mut || channel_copy(&msgs, datagram_pair()));
    let rate = |t: f64| mib / t;
    println!("  raw socket copy (blocking write/read):        {:>8.1} MiB/s", rate(raw));
    println!(
        "  channel over Unix stream (COBS/CRC framing):  {:>8.1} MiB/s  ratio {:.2}  ({rs} retransmits)",
        rate(stream),
        raw / stream
    );
    println!(
        "  channel over Unix datagram (frame/datagram):  {:>8.1} MiB/s  ratio {:.2}  ({rd} retransmits)",
        rate(dgram),
        raw / dgram
    );
    println!("  (ratio = channel throughput / raw copy throughput; 1.00 would be free)");
}
