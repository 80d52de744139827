//! A fault-injecting [`Link`] wrapper: the [`FaultModel`] decides each
//! received frame's fate, the injector carries it out with a fixed queue of
//! held frames.
//!
//! Faults strike on the receive side, so wrapping both ends of a link faults
//! both directions. Time is an argument ([`FaultInjector::set_now`]), as
//! everywhere in this crate.

use heapless::Vec;

use super::{Fate, FaultConfig, FaultModel};
use crate::Instant;
use crate::link::{ErrorType, Link};

/// What the injector did so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FaultStats {
    /// Frames taken from the inner link.
    pub received: u64,
    /// Frames handed to the caller, duplicates included.
    pub delivered: u64,
    /// Frames lost to the drop fault.
    pub dropped: u64,
    /// Frames delivered twice.
    pub duplicated: u64,
    /// Frames taken out of order.
    pub reordered: u64,
    /// Frames with flipped bits.
    pub corrupted: u64,
    /// Frames held back for a while (latency, jitter, FIFO order or reorder).
    pub delayed: u64,
    /// Frames swallowed by a partition (either direction), held ones included.
    pub partitioned: u64,
}

#[derive(Debug)]
struct Held<const MAX: usize> {
    due: Instant,
    bytes: Vec<u8, MAX>,
}

/// A fault-injecting wrapper around link `L`, holding up to `DEPTH` late or
/// duplicate frames of up to `MAX` bytes. A frame that does not fit (larger
/// than `MAX`, or the queue is full) is delivered at once: it escapes its
/// delay and its duplicate, never its drop or corruption.
#[derive(Debug)]
pub struct FaultInjector<L, const DEPTH: usize, const MAX: usize> {
    inner: L,
    model: FaultModel,
    now: Instant,
    /// In arrival order; equal due times leave in this order.
    held: Vec<Held<MAX>, DEPTH>,
    stats: FaultStats,
}

impl<L: Link, const DEPTH: usize, const MAX: usize> FaultInjector<L, DEPTH, MAX> {
    /// Wraps `inner`, deciding faults with `cfg` and a model seeded by `seed`.
    pub fn new(inner: L, cfg: FaultConfig, seed: u64) -> Self {
        FaultInjector {
            inner,
            model: FaultModel::new(cfg, seed),
            now: Instant::ZERO,
            held: Vec::new(),
            stats: FaultStats::default(),
        }
    }

    /// The current time: held frames come due against it.
    pub fn set_now(&mut self, now: Instant) {
        self.now = now;
    }

    /// The configuration in force.
    pub fn config(&self) -> &FaultConfig {
        self.model.config()
    }

    /// Changes rates or timing from the next frame on.
    pub fn set_config(&mut self, cfg: FaultConfig) {
        self.model.set_config(cfg);
    }

    /// Cuts the link (both directions) until `until`; frames held back are lost.
    pub fn partition_until(&mut self, until: Instant) {
        self.model.partition_until(until);
        self.stats.partitioned += self.held.len() as u64;
        self.held.clear();
    }

    /// Heals a partition now.
    pub fn heal(&mut self) {
        self.model.heal();
    }

    /// Whether a partition is in force now.
    pub fn is_partitioned(&self) -> bool {
        self.model.is_partitioned(self.now)
    }

    /// What the injector did so far.
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

    /// The wrapped link.
    pub fn inner(&self) -> &L {
        &self.inner
    }

    /// The wrapped link, mutably.
    pub fn inner_mut(&mut self) -> &mut L {
        &mut self.inner
    }

    fn hold(&mut self, bytes: &[u8], due: Instant) -> bool {
        let Ok(bytes) = Vec::from_slice(bytes) else { return false };
        self.held.push(Held { due, bytes }).is_ok()
    }

    /// The held frame due first, if it is due now; `Err` when it does not fit `buf` (it is lost).
    fn take_due(&mut self, buf: &mut [u8]) -> Option<Result<usize, ()>> {
        // `min_by_key` keeps the first of equals: arrival order among equal due times.
        let i = (0..self.held.len())
            .filter(|&i| self.held[i].due <= self.now)
            .min_by_key(|&i| self.held[i].due)?;
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
            let d = match self.model.decide(self.now, n) {
                Fate::Partitioned => {
                    self.stats.partitioned += 1;
                    continue;
                }
                Fate::Dropped => {
                    self.stats.dropped += 1;
                    continue;
                }
                Fate::Delivered(d) => d,
            };
            let frame = &mut buf[..n];
            d.flips.apply(frame);
            self.stats.corrupted += u64::from(!d.flips.is_empty());
            self.stats.reordered += u64::from(d.reordered);
            if d.duplicate && self.hold(frame, d.at) {
                self.stats.duplicated += 1;
            }
            // Nothing held is due yet (take_due said so): a frame due now goes first.
            if d.at > self.now && self.hold(frame, d.at) {
                self.stats.delayed += 1;
                continue;
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
