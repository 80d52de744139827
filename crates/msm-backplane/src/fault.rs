//! A seeded fault-injecting link wrapper, in the style of smoltcp's
//! `FaultInjector`: it implements [`Link`] over another link and, for frames
//! it receives, drops, corrupts, duplicates, reorders or delays them at
//! configured rates; a partition swallows everything in both directions.
//!
//! Faults strike on the receive side, so wrapping both ends of a link faults
//! both directions. Decisions come from a PCG32 seeded by the caller: the
//! same seed and the same sequence of calls give the same faults. Time is an
//! argument ([`FaultInjector::set_now`]), as everywhere in this crate.

use core::time::Duration;

use heapless::Vec;
use rand::{RngCore, SeedableRng};
use rand_pcg::Pcg32;

use crate::Instant;
use crate::link::{ErrorType, Link};

/// A probability, in parts per million.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Rate(u32);

impl Rate {
    pub const NEVER: Rate = Rate(0);
    pub const ALWAYS: Rate = Rate(1_000_000);

    pub const fn per_million(n: u32) -> Rate {
        Rate(if n > 1_000_000 { 1_000_000 } else { n })
    }
    pub const fn percent(p: u32) -> Rate {
        Rate::per_million(p.saturating_mul(10_000))
    }
    pub const fn as_per_million(self) -> u32 {
        self.0
    }
}

/// Fault rates, per received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FaultConfig {
    pub drop: Rate,
    /// Deliver the frame, then a second copy right after.
    pub duplicate: Rate,
    /// Hold the frame back until 1 to `reorder_depth` later frames passed it
    /// (or `max_delay` passed).
    pub reorder: Rate,
    pub reorder_depth: u8,
    /// Flip 1 to 3 random bits.
    pub corrupt: Rate,
    /// Hold the frame for a random time up to `max_delay`.
    pub delay: Rate,
    pub max_delay: Duration,
}

impl FaultConfig {
    /// No faults.
    pub const NONE: FaultConfig = FaultConfig {
        drop: Rate::NEVER,
        duplicate: Rate::NEVER,
        reorder: Rate::NEVER,
        reorder_depth: 3,
        corrupt: Rate::NEVER,
        delay: Rate::NEVER,
        max_delay: Duration::from_millis(5),
    };
}

/// What the injector did so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FaultStats {
    /// Frames taken from the inner link.
    pub received: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub corrupted: u64,
    pub delayed: u64,
    /// Frames swallowed by a partition (either direction).
    pub partitioned: u64,
}

#[derive(Debug)]
struct Held<const MAX: usize> {
    /// Deliver after this many more fresh frames were delivered...
    countdown: Option<u8>,
    /// ... or at this time, whichever comes first.
    due: Instant,
    bytes: Vec<u8, MAX>,
}

/// A fault-injecting wrapper around link `L`, holding up to `DEPTH` delayed,
/// reordered or duplicated frames of up to `MAX` bytes (larger frames and
/// frames that find the queue full pass through unharmed by those faults).
#[derive(Debug)]
pub struct FaultInjector<L, const DEPTH: usize, const MAX: usize> {
    inner: L,
    cfg: FaultConfig,
    rng: Pcg32,
    now: Instant,
    partition_until: Option<Instant>,
    held: Vec<Held<MAX>, DEPTH>,
    stats: FaultStats,
}

impl<L: Link, const DEPTH: usize, const MAX: usize> FaultInjector<L, DEPTH, MAX> {
    pub fn new(inner: L, cfg: FaultConfig, seed: u64) -> Self {
        FaultInjector {
            inner,
            cfg,
            rng: Pcg32::seed_from_u64(seed),
            now: Instant::ZERO,
            partition_until: None,
            held: Vec::new(),
            stats: FaultStats::default(),
        }
    }

    /// The current time: held frames come due against it.
    pub fn set_now(&mut self, now: Instant) {
        self.now = now;
    }

    pub fn config(&self) -> &FaultConfig {
        &self.cfg
    }

    pub fn set_config(&mut self, cfg: FaultConfig) {
        self.cfg = cfg;
    }

    /// Cut the link (both directions) until `until`; frames held back are lost.
    pub fn partition_until(&mut self, until: Instant) {
        self.partition_until = Some(until);
        self.stats.partitioned += self.held.len() as u64;
        self.held.clear();
    }

    /// Heal a partition now.
    pub fn heal(&mut self) {
        self.partition_until = None;
    }

    pub fn is_partitioned(&self) -> bool {
        self.partition_until.is_some_and(|t| self.now < t)
    }

    pub fn stats(&self) -> FaultStats {
        self.stats
    }

    /// Frames held back now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The earliest time a held frame comes due, for a poll loop's sleep.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.held.iter().map(|h| h.due).min()
    }

    pub fn inner(&self) -> &L {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut L {
        &mut self.inner
    }

    fn chance(&mut self, rate: Rate) -> bool {
        rate.0 > 0 && ((u64::from(self.rng.next_u32()) * 1_000_000) >> 32) < u64::from(rate.0)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.rng.next_u64()) * u128::from(n)) >> 64) as u64
    }

    fn hold(&mut self, bytes: &[u8], countdown: Option<u8>, due: Instant) -> bool {
        let Ok(bytes) = Vec::from_slice(bytes) else { return false };
        self.held.push(Held { countdown, due, bytes }).is_ok()
    }

    fn take_due(&mut self, buf: &mut [u8]) -> Option<Result<usize, ()>> {
        let now = self.now;
        // The earliest due first, so delays keep their order among themselves.
        let i = (0..self.held.len())
            .filter(|&i| self.held[i].countdown == Some(0) || self.held[i].due <= now)
            .min_by_key(|&i| (self.held[i].countdown.is_none(), self.held[i].due))?;
        let h = self.held.remove(i);
        match buf.get_mut(..h.bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(&h.bytes);
                Some(Ok(h.bytes.len()))
            }
            None => Some(Err(())),
        }
    }
}

impl<L: Link, const DEPTH: usize, const MAX: usize> ErrorType for FaultInjector<L, DEPTH, MAX> {
    type Error = L::Error;
}

impl<L: Link, const DEPTH: usize, const MAX: usize> Link for FaultInjector<L, DEPTH, MAX> {
    fn max_frame(&self) -> usize {
        self.inner.max_frame()
    }

    fn send(&mut self, frame: &[u8]) -> Result<(), Self::Error> {
        if self.is_partitioned() {
            self.stats.partitioned += 1;
            return Ok(());
        }
        self.inner.send(frame)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Self::Error> {
        loop {
            if self.is_partitioned() {
                while self.inner.recv(buf)?.is_some() {
                    self.stats.received += 1;
                    self.stats.partitioned += 1;
                }
                return Ok(None);
            }
            match self.take_due(buf) {
                Some(Ok(n)) => {
                    self.stats.delivered += 1;
                    return Ok(Some(n));
                }
                // Held frame larger than the caller's buffer: lost.
                Some(Err(())) => continue,
                None => {}
            }
            let Some(n) = self.inner.recv(buf)? else { return Ok(None) };
            self.stats.received += 1;
            if self.chance(self.cfg.drop) {
                self.stats.dropped += 1;
                continue;
            }
            if n > 0 && self.chance(self.cfg.corrupt) {
                self.stats.corrupted += 1;
                let flips = 1 + self.below(3);
                for _ in 0..flips {
                    let bit = self.below(n as u64 * 8);
                    buf[(bit / 8) as usize] ^= 1 << (bit % 8);
                }
            }
            let now = self.now;
            if self.chance(self.cfg.reorder) {
                let depth = 1 + self.below(u64::from(self.cfg.reorder_depth.max(1))) as u8;
                if self.hold(&buf[..n], Some(depth), now + self.cfg.max_delay) {
                    self.stats.reordered += 1;
                    continue;
                }
            }
            if self.chance(self.cfg.delay) {
                let max = u64::try_from(self.cfg.max_delay.as_micros()).unwrap_or(u64::MAX);
                let d = Duration::from_micros(self.below(max.saturating_add(1)));
                if self.hold(&buf[..n], None, now + d) {
                    self.stats.delayed += 1;
                    continue;
                }
            }
            if self.chance(self.cfg.duplicate) && self.hold(&buf[..n], Some(0), now) {
                self.stats.duplicated += 1;
            }
            // A fresh frame passes every reordered one held back.
            for h in self.held.iter_mut() {
                if let Some(c) = h.countdown.as_mut() {
                    *c = c.saturating_sub(1);
                }
            }
            self.stats.delivered += 1;
            return Ok(Some(n));
        }
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        self.inner.flush()
    }

    fn tx_pending(&self) -> bool {
        self.inner.tx_pending()
    }
}
