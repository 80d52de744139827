//! The insider: a module that holds the chassis key and misbehaves. At a
//! seeded rate (in some seeds, during the churn only) it sends a node one
//! of:
//! - a frame the node took, sealed again with counter `u64::MAX` in the
//!   same boot: it must be refused (`CounterJump`, or `Replay`/`Unproven`
//!   once that boot's window closed), never adopted;
//! - a MASTER heartbeat of a phantom slot, proven (it answers the node's
//!   challenge), with a term far beyond what terms may have grown to: it
//!   must be refused (`TermOutOfRange`, or as a replay or counter jump of a
//!   phantom boot heard before);
//! - an INIT or STANDBY heartbeat of a phantom slot with an extreme boot
//!   count and counter, proven: it may be taken (the phantom is a module
//!   like any), but must not change the node's role, term or master.
//!
//! After the run, the chassis must converge as always, and no node's term
//! count may exceed what real takeovers and `MAX_TERM_JUMP` a detection
//! time allow: nothing the insider sent locked a module out or used up the
//! terms.

use msm_checkpoint::wire::{self, FrameWriter, Heartbeat};
use msm_checkpoint::{FrameError, Key, MAX_NODES};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// What the insider sent, for the violation message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misdeed {
    CounterJump,
    FarTerm,
    Phantom,
}

#[derive(Debug)]
pub struct Insider {
    /// Probability of a misdeed after each delivered frame (0: no insider).
    pub rate: f64,
    rng: Pcg64Mcg,
    /// Frames sealed by the phantom, its counter.
    counter: u64,
    pub sent: u64,
}

impl Insider {
    pub fn new(rate: f64, seed: u64) -> Insider {
        Insider { rate, rng: Pcg64Mcg::seed_from_u64(seed), counter: 0, sent: 0 }
    }

    /// Maybe a misdeed now against one of `nodes` nodes: (target, kind).
    pub fn next(&mut self, nodes: usize) -> Option<(usize, Misdeed)> {
        if self.rate <= 0.0 || !self.rng.random_bool(self.rate) {
            return None;
        }
        let kind = match self.rng.random_range(0..3) {
            0 => Misdeed::CounterJump,
            1 => Misdeed::FarTerm,
            _ => Misdeed::Phantom,
        };
        // A phantom needs a slot no module of the chassis holds.
        if kind != Misdeed::CounterJump && nodes >= MAX_NODES {
            return None;
        }
        Some((self.rng.random_range(0..nodes), kind))
    }

    /// A frame `to` took, sealed again at counter `u64::MAX` in its boot.
    pub fn jump(&mut self, key: &Key, taken: &[u8]) -> Option<Vec<u8>> {
        let s = wire::open(taken).ok()?;
        let mut b = taken.to_vec();
        wire::seal(&mut b, Some(key), s.incarnation, u64::MAX);
        self.sent += 1;
        Some(b)
    }

    /// A heartbeat of a slot none of the chassis' `nodes` modules holds,
    /// answering `to`'s `challenge`.
    pub fn phantom(
        &mut self,
        key: &Key,
        kind: Misdeed,
        nodes: usize,
        to: usize,
        challenge: u32,
        max_term: u64,
    ) -> Vec<u8> {
        let from = self.rng.random_range(nodes..MAX_NODES) as u8;
        let mut echo = [[0u32; 2]; MAX_NODES];
        echo[to] = [challenge, 0];
        let incarnation = if self.rng.random_bool(0.5) { u32::MAX } else { self.rng.random() };
        let (role, term) = match kind {
            // Far beyond the 16 a detection time terms may grow by.
            Misdeed::FarTerm => {
                let jump = [1u64 << 16, 1 << 30, 1 << 39][self.rng.random_range(0..3)];
                (1, ((max_term >> 8) + jump) << 8 | u64::from(0xFF - from))
            }
            _ => (if self.rng.random_bool(0.5) { 0 } else { 3 }, max_term),
        };
        let hb = Heartbeat {
            role,
            priority: self.rng.random(),
            health: self.rng.random(),
            backup: wire::NO_SLOT,
            incarnation,
            echo,
            holds: if self.rng.random_bool(0.5) { u64::MAX } else { 0 },
            base: self.rng.random(),
            made: self.rng.random(),
            acked: self.rng.random(),
            ..Heartbeat::default()
        };
        self.counter += 1;
        // Counters far apart, up to the last one a boot could send.
        let counter = if self.rng.random_bool(0.3) { u64::MAX - self.counter } else { self.counter };
        let mut buf = [0u8; wire::MAX_HEARTBEAT];
        let Ok(w) = FrameWriter::heartbeat(&mut buf, from, term, &hb) else {
            return Vec::new();
        };
        let n = w.finish();
        wire::seal(&mut buf[..n], Some(key), incarnation, counter);
        self.sent += 1;
        buf[..n].to_vec()
    }
}

/// The misdeed's fate is acceptable: a counter jump or a far term refused.
pub fn refused(kind: Misdeed, r: &Result<(), FrameError>) -> bool {
    match kind {
        Misdeed::CounterJump => matches!(
            r,
            Err(FrameError::CounterJump { .. } | FrameError::Replay { .. } | FrameError::Unproven { .. })
        ),
        // Its term, or its counter within a phantom boot seen before.
        Misdeed::FarTerm => matches!(
            r,
            Err(FrameError::TermOutOfRange { .. }
                | FrameError::Replay { .. }
                | FrameError::CounterJump { .. })
        ),
        Misdeed::Phantom => true,
    }
}
