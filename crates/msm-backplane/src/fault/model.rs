//! The fault model of one directed link: a seeded, pure decision per frame,
//! in the style of smoltcp's `FaultInjector` and sequential-storage's mock
//! flash. It only decides; the caller moves the bytes. The
//! [`FaultInjector`](super::FaultInjector) holds frames in a fixed queue,
//! the simulator (`msm-sim`) in its virtual-time event queue, so a fault
//! means the same on a Cortex-M3, a Unix socket and in a 100 000-seed sweep.

use core::time::Duration;

use rand::{RngCore, SeedableRng};
use rand_pcg::Pcg32;

use super::{BitFlips, FaultConfig, Rate};
use crate::Instant;

/// What becomes of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Fate {
    /// Swallowed by a partition.
    Partitioned,
    /// Lost by the drop fault.
    Dropped,
    /// Arrives, perhaps damaged, late, out of order or twice.
    Delivered(Delivery),
}

/// How a frame that gets through arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Delivery {
    /// When it arrives. Frames that are not `reordered` never arrive before
    /// one sent earlier on the same link.
    pub at: Instant,
    /// Bits to flip before it is handed over (both copies of a duplicate).
    pub flips: BitFlips,
    /// A second copy arrives right after the first.
    pub duplicate: bool,
    /// Out of order: later frames may arrive first.
    pub reordered: bool,
}

/// One directed link's faults: a [`FaultConfig`], a PCG32 seeded by the
/// caller, a partition deadline and the link's FIFO horizon. The same seed
/// and the same calls give the same fates.
#[derive(Debug, Clone)]
pub struct FaultModel {
    cfg: FaultConfig,
    rng: Pcg32,
    cut_until: Option<Instant>,
    /// When the latest in-order frame arrives; the next may not come earlier.
    in_order: Instant,
}

impl FaultModel {
    /// A model with `cfg`, its random choices drawn from `seed`.
    pub fn new(cfg: FaultConfig, seed: u64) -> FaultModel {
        FaultModel { cfg, rng: Pcg32::seed_from_u64(seed), cut_until: None, in_order: Instant::ZERO }
    }

    /// The configuration in force.
    pub fn config(&self) -> &FaultConfig {
        &self.cfg
    }

    /// Changes rates or timing from the next frame on (a quiet period in a
    /// test turns faults off but keeps the latency).
    pub fn set_config(&mut self, cfg: FaultConfig) {
        self.cfg = cfg;
    }

    /// Cuts the link until `until`. Partitions overlap: a cut that already
    /// lasts longer stays.
    pub fn partition_until(&mut self, until: Instant) {
        self.cut_until = Some(self.cut_until.map_or(until, |t| t.max(until)));
    }

    /// Ends a partition now.
    pub fn heal(&mut self) {
        self.cut_until = None;
    }

    /// Whether a partition swallows frames sent at `now`.
    pub fn is_partitioned(&self, now: Instant) -> bool {
        self.cut_until.is_some_and(|t| now < t)
    }

    /// The fate of a frame of `len` bytes sent at `now`.
    pub fn decide(&mut self, now: Instant, len: usize) -> Fate {
        if self.is_partitioned(now) {
            return Fate::Partitioned;
        }
        if self.chance(self.cfg.drop) {
            return Fate::Dropped;
        }
        let flips = if self.chance(self.cfg.corrupt) { self.flips(len) } else { BitFlips::NONE };
        let duplicate = self.chance(self.cfg.duplicate);
        let reordered = self.chance(self.cfg.reorder);
        let mut at = now + self.cfg.latency + self.up_to(self.cfg.jitter);
        if reordered {
            at = at + self.up_to(self.cfg.reorder_delay);
        } else {
            at = at.max(self.in_order);
            self.in_order = at;
        }
        Fate::Delivered(Delivery { at, flips, duplicate, reordered })
    }

    fn chance(&mut self, rate: Rate) -> bool {
        let ppm = rate.as_per_million();
        ppm > 0 && ((u64::from(self.rng.next_u32()) * 1_000_000) >> 32) < u64::from(ppm)
    }

    /// Uniform in `0..n` (`n > 0`), without modulo bias worth the name.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.rng.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `0..=max`, in whole microseconds.
    fn up_to(&mut self, max: Duration) -> Duration {
        let max = u64::try_from(max.as_micros()).unwrap_or(u64::MAX);
        if max == 0 {
            return Duration::ZERO;
        }
        Duration::from_micros(self.below(max.saturating_add(1)))
    }

    /// 1 to 3 distinct bits of a `len`-byte frame (none of an empty one).
    fn flips(&mut self, len: usize) -> BitFlips {
        let bits = u64::try_from(len).unwrap_or(u64::MAX).saturating_mul(8).min(u64::from(u32::MAX));
        let mut flips = BitFlips::NONE;
        let want = (1 + self.below(BitFlips::MAX as u64)).min(bits);
        while (flips.bits().len() as u64) < want {
            let bit = self.below(bits) as u32;
            flips.insert(bit);
        }
        flips
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn delivered(f: Fate) -> Delivery {
        match f {
            Fate::Delivered(d) => d,
            other => panic!("expected a delivery, got {other:?}"),
        }
    }

    fn with(cfg: FaultConfig) -> FaultModel {
        FaultModel::new(cfg, 7)
    }

    #[test]
    fn no_faults_deliver_every_frame_intact_after_the_latency() {
        let mut m = with(FaultConfig { latency: Duration::from_micros(100), ..FaultConfig::NONE });
        for t in 0..1000 {
            let now = Instant::from_micros(t * 10);
            let d = delivered(m.decide(now, 64));
            assert_eq!(d, Delivery { at: now + Duration::from_micros(100), ..d });
            assert!(d.flips.is_empty() && !d.duplicate && !d.reordered);
        }
    }

    #[test]
    fn each_fault_strikes_at_its_rate() {
        let cfg = FaultConfig {
            drop: Rate::percent(10),
            duplicate: Rate::percent(5),
            reorder: Rate::percent(20),
            corrupt: Rate::percent(1),
            ..FaultConfig::NONE
        };
        let mut m = with(cfg);
        let (mut dropped, mut dup, mut reord, mut corrupt) = (0u32, 0u32, 0u32, 0u32);
        let n = 100_000;
        for _ in 0..n {
            match m.decide(Instant::ZERO, 100) {
                Fate::Dropped => dropped += 1,
                Fate::Delivered(d) => {
                    dup += u32::from(d.duplicate);
                    reord += u32::from(d.reordered);
                    corrupt += u32::from(!d.flips.is_empty());
                }
                Fate::Partitioned => panic!("no partition"),
            }
        }
        let through = n - dropped;
        let near = |got: u32, of: u32, pct: f64| (f64::from(got) / f64::from(of) - pct / 100.0).abs() < 0.003;
        assert!(near(dropped, n, 10.0), "dropped {dropped}");
        assert!(near(dup, through, 5.0), "duplicated {dup}");
        assert!(near(reord, through, 20.0), "reordered {reord}");
        assert!(near(corrupt, through, 1.0), "corrupted {corrupt}");
    }

    #[test]
    fn always_and_never() {
        let mut m = with(FaultConfig { drop: Rate::ALWAYS, ..FaultConfig::NONE });
        assert!((0..1000).all(|_| m.decide(Instant::ZERO, 10) == Fate::Dropped));
        m.set_config(FaultConfig { duplicate: Rate::ALWAYS, corrupt: Rate::ALWAYS, ..FaultConfig::NONE });
        for _ in 0..1000 {
            let d = delivered(m.decide(Instant::ZERO, 10));
            assert!(d.duplicate && !d.flips.is_empty() && !d.reordered);
        }
    }

    #[test]
    fn corruption_flips_one_to_three_distinct_bits_inside_the_frame() {
        let mut m = with(FaultConfig { corrupt: Rate::ALWAYS, ..FaultConfig::NONE });
        let mut counts = [0u32; 4];
        for len in (1..200).cycle().take(30_000) {
            let f = delivered(m.decide(Instant::ZERO, len)).flips;
            let bits = f.bits();
            assert!(bits.iter().all(|&b| (b as usize) < len * 8), "{bits:?} in {len} bytes");
            let mut frame = [0u8; 200];
            f.apply(&mut frame[..len]);
            let flipped: u32 = frame.iter().map(|b| b.count_ones()).sum();
            assert_eq!(flipped as usize, bits.len(), "distinct bits");
            counts[bits.len()] += 1;
        }
        assert_eq!(counts[0], 0);
        assert!(counts[1..].iter().all(|&c| c > 9_000), "{counts:?}");
        // A one-byte frame has room for all three; an empty one for none.
        assert!(delivered(m.decide(Instant::ZERO, 0)).flips.is_empty());
    }

    #[test]
    fn in_order_frames_never_arrive_before_an_earlier_one_but_reordered_frames_do() {
        let cfg = FaultConfig {
            reorder: Rate::percent(10),
            latency: Duration::from_micros(50),
            jitter: Duration::from_micros(300),
            reorder_delay: Duration::from_millis(2),
            ..FaultConfig::NONE
        };
        let mut m = with(cfg);
        let mut last_in_order = Instant::ZERO;
        let mut overtaken = 0;
        for t in 0..20_000u64 {
            let now = Instant::from_micros(t * 20);
            let d = delivered(m.decide(now, 32));
            let earliest = now + Duration::from_micros(50);
            if d.reordered {
                assert!(d.at >= earliest && d.at <= earliest + Duration::from_micros(2_300), "{d:?}");
                overtaken += u32::from(d.at > last_in_order);
            } else {
                assert!(d.at >= last_in_order, "FIFO broken at {t}: {d:?} before {last_in_order:?}");
                assert!(d.at >= earliest);
                last_in_order = d.at;
            }
        }
        assert!(overtaken > 1000, "reordered frames let later ones pass: {overtaken}");
    }

    #[test]
    fn jitter_stays_within_its_bound_and_spreads() {
        let mut m = with(FaultConfig { jitter: Duration::from_micros(300), ..FaultConfig::NONE });
        let (mut lo, mut hi) = (u64::MAX, 0);
        for t in 0..10_000u64 {
            // Far apart, so FIFO order never holds a frame back.
            let now = Instant::from_millis(t);
            let late = delivered(m.decide(now, 1)).at.as_micros() - now.as_micros();
            (lo, hi) = (lo.min(late), hi.max(late));
        }
        assert!(lo < 10 && (290..=300).contains(&hi), "{lo}..={hi}");
    }

    #[test]
    fn a_partition_swallows_frames_until_it_ends_and_overlapping_cuts_keep_the_longest() {
        let mut m = with(FaultConfig::NONE);
        m.partition_until(Instant::from_millis(10));
        m.partition_until(Instant::from_millis(5));
        assert_eq!(m.decide(Instant::from_millis(9), 8), Fate::Partitioned);
        assert!(m.is_partitioned(Instant::from_millis(9)));
        assert!(!m.is_partitioned(Instant::from_millis(10)));
        delivered(m.decide(Instant::from_millis(10), 8));
        m.partition_until(Instant::from_millis(20));
        m.heal();
        delivered(m.decide(Instant::from_millis(11), 8));
    }

    #[test]
    fn the_same_seed_gives_the_same_fates() {
        let cfg = FaultConfig {
            drop: Rate::percent(10),
            duplicate: Rate::percent(10),
            reorder: Rate::percent(10),
            corrupt: Rate::percent(10),
            jitter: Duration::from_micros(100),
            ..FaultConfig::NONE
        };
        let run = |seed| {
            let mut m = FaultModel::new(cfg, seed);
            (0..1000u64)
                .map(|t| m.decide(Instant::from_micros(t * 10), 40))
                .collect::<heapless::Vec<Fate, 1000>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }
}
