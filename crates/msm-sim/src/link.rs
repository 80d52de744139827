//! The backplane model between simulated nodes: delay, jitter, drop,
//! duplicate, reorder, corrupt, and partitions between pairs.

use rand::Rng;
use rand_pcg::Pcg64Mcg;

/// Fault rates of every directed link (probabilities per frame).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkFaults {
    pub drop: f64,
    pub duplicate: f64,
    /// Probability of an extra delay that lets later frames overtake.
    pub reorder: f64,
    /// Probability of flipping one random bit.
    pub corrupt: f64,
    /// Base one-way delay and uniform jitter, microseconds.
    pub delay_us: u64,
    pub jitter_us: u64,
}

impl LinkFaults {
    pub const NONE: LinkFaults =
        LinkFaults { drop: 0.0, duplicate: 0.0, reorder: 0.0, corrupt: 0.0, delay_us: 100, jitter_us: 0 };

    pub fn random(rng: &mut Pcg64Mcg) -> LinkFaults {
        LinkFaults {
            drop: rng.random_range(0.0..0.05),
            duplicate: rng.random_range(0.0..0.03),
            reorder: rng.random_range(0.0..0.05),
            corrupt: rng.random_range(0.0..0.01),
            delay_us: rng.random_range(50..500),
            jitter_us: rng.random_range(0..300),
        }
    }
}

/// A cut between two nodes (both directions) until a time.
#[derive(Debug, Clone, Copy)]
pub struct Partition {
    pub a: usize,
    pub b: usize,
    pub until_us: u64,
}

/// What happens to one frame on one link: zero, one or two deliveries.
/// A link is FIFO (serial lines and stream sockets are) unless the reorder
/// fault strikes: `deliver` gets `(at, bytes, overtakeable)` and the caller
/// keeps FIFO order for deliveries that are not marked overtakeable.
pub fn transmit(
    rng: &mut Pcg64Mcg,
    f: &LinkFaults,
    now_us: u64,
    bytes: &[u8],
    mut deliver: impl FnMut(u64, Vec<u8>, bool),
) {
    if rng.random_bool(f.drop) {
        return;
    }
    let copies = if rng.random_bool(f.duplicate) { 2 } else { 1 };
    for _ in 0..copies {
        let mut b = bytes.to_vec();
        if !b.is_empty() && rng.random_bool(f.corrupt) {
            let i = rng.random_range(0..b.len());
            b[i] ^= 1 << rng.random_range(0..8);
        }
        let mut delay = f.delay_us + if f.jitter_us > 0 { rng.random_range(0..=f.jitter_us) } else { 0 };
        let reorder = rng.random_bool(f.reorder);
        if reorder {
            delay += rng.random_range(100..3000);
        }
        deliver(now_us + delay, b, reorder);
    }
}
