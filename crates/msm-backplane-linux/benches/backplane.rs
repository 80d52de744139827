//! Backplane benchmark: framing efficiency of the COBS/CRC-32C stream
//! framing, for random and worst-case payloads. (What the checkpoint
//! traffic costs over real sockets is `cargo xtask bench`'s to measure,
//! against a raw copy of the same bytes.)
//!
//! `cargo bench -p msm-backplane-linux --bench backplane`
#![allow(clippy::panic, clippy::unwrap_used)]

use msm_backplane::framing;
use rand::RngCore;
use rand_pcg::Pcg64Mcg;

const SEED: u128 = 0xBAC4_91A7E;

fn main() {
    framing_efficiency();
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
