//! The attacker: anything that can put a datagram on the backplane, without
//! the chassis key. At a seeded rate it injects forged, replayed and
//! mutated frames; the simulator checks that each one was refused before
//! it could change anything (an authentication, replay or envelope
//! refusal, never a refusal that comes after authentication, never `Ok`),
//! and that the target's role, term and master are as before.

use std::collections::VecDeque;

use msm_checkpoint::wire::{self, FrameWriter, Heartbeat};
use msm_checkpoint::{FrameError, Key, MAX_NODES};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// The simulated chassis key.
pub const CHASSIS_KEY: Key = Key::new([0x5A; 32]);
/// Another chassis' key: frames the attacker captured elsewhere.
const OTHER_KEY: Key = Key::new([0xA5; 32]);
/// Frames kept for replay.
const CAPTURED: usize = 256;

/// What was sent, for the violation message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// A frame the target took, sent again.
    Replay,
    /// A real frame re-sealed under another chassis' key.
    OtherKey,
    /// A real frame with a bit flipped before the CRC, CRC recomputed.
    BitFlip,
    /// A MASTER heartbeat from a random slot with a huge term, under another key.
    Forged,
    /// A real frame with its tag zeroed and key id cleared: "unauthenticated".
    Untagged,
    /// Captures of earlier boots, to a node that has just booted.
    ReplayAtBoot,
}

/// Counts of attacks by kind, for the sweep's summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct AttackStats {
    pub injected: u64,
    pub replays: u64,
}

#[derive(Debug)]
pub struct Attacker {
    /// Probability of an attack after each delivered frame.
    pub rate: f64,
    rng: Pcg64Mcg,
    /// (target, bytes) of frames a target took.
    captured: VecDeque<(usize, Vec<u8>)>,
    pub stats: AttackStats,
}

impl Attacker {
    pub fn new(rate: f64, seed: u64) -> Attacker {
        Attacker {
            rate,
            rng: Pcg64Mcg::seed_from_u64(seed),
            captured: VecDeque::new(),
            stats: AttackStats::default(),
        }
    }

    /// A frame `to` took (authenticated and fresh): keep some for replay.
    pub fn capture(&mut self, to: usize, bytes: &[u8]) {
        if self.rate > 0.0 && self.rng.random_bool(0.2) {
            if self.captured.len() == CAPTURED {
                self.captured.pop_front();
            }
            self.captured.push_back((to, bytes.to_vec()));
        }
    }

    /// A frame node `to` took, if one was kept (for the insider).
    pub fn taken_by(&mut self, to: usize) -> Option<Vec<u8>> {
        let mine: Vec<usize> =
            self.captured.iter().enumerate().filter(|(_, (t, _))| *t == to).map(|(i, _)| i).collect();
        if mine.is_empty() {
            return None;
        }
        let k = mine[self.rng.random_range(0..mine.len())];
        Some(self.captured[k].1.clone())
    }

    /// Frames to replay at a node that has just booted, before it hears
    /// anything: captures of every slot's earlier boots, to anyone. A fresh
    /// node holds no replay window, so only the freshness proof refuses them.
    pub fn at_boot(&mut self) -> Vec<Vec<u8>> {
        if self.rate <= 0.0 || self.captured.is_empty() {
            return Vec::new();
        }
        let n = self.rng.random_range(1..=4);
        let out: Vec<Vec<u8>> =
            (0..n).map(|_| self.captured[self.rng.random_range(0..self.captured.len())].1.clone()).collect();
        self.stats.injected += out.len() as u64;
        self.stats.replays += out.len() as u64;
        out
    }

    /// Maybe an attack now: (target, frame, kind).
    pub fn next(&mut self, nodes: usize, term: u64) -> Option<(usize, Vec<u8>, Attack)> {
        if self.rate <= 0.0 || !self.rng.random_bool(self.rate) {
            return None;
        }
        let kind = match self.rng.random_range(0..5) {
            0 => Attack::Replay,
            1 => Attack::OtherKey,
            2 => Attack::BitFlip,
            3 => Attack::Forged,
            _ => Attack::Untagged,
        };
        let (to, bytes) = if kind == Attack::Forged {
            (self.rng.random_range(0..nodes), self.forged_heartbeat(term))
        } else {
            if self.captured.is_empty() {
                return None;
            }
            let k = self.rng.random_range(0..self.captured.len());
            let (to, mut b) = self.captured[k].clone();
            let sealed = wire::open(&b).ok()?;
            let (inc, counter) = (sealed.incarnation, sealed.counter);
            match kind {
                Attack::Replay => {}
                Attack::OtherKey => wire::seal(&mut b, Some(&OTHER_KEY), inc, counter),
                Attack::BitFlip => {
                    let n = b.len() - wire::CRC_LEN;
                    let at = self.rng.random_range(0..n);
                    b[at] ^= 1 << self.rng.random_range(0..8);
                    refresh_crc(&mut b);
                }
                _ => {
                    let n = b.len();
                    b[4] = msm_checkpoint::NO_KEY;
                    b[n - wire::TRAILER_LEN..n - wire::CRC_LEN].fill(0);
                    refresh_crc(&mut b);
                }
            }
            (to, b)
        };
        self.stats.injected += 1;
        if kind == Attack::Replay {
            self.stats.replays += 1;
        }
        Some((to, bytes, kind))
    }

    fn forged_heartbeat(&mut self, term: u64) -> Vec<u8> {
        let hb = Heartbeat {
            role: 1,
            priority: 0,
            health: 255,
            backup: wire::NO_SLOT,
            in_sync: true,
            session: self.rng.random(),
            incarnation: self.rng.random(),
            config: wire::DigestMark::default(),
            challenge: self.rng.random(),
            echo: [[self.rng.random(); 2]; MAX_NODES],
            holds: u64::MAX,
            keys: [self.rng.random(); 2],
            base: u64::MAX,
            made: self.rng.random(),
            acked: self.rng.random(),
            overrules: self.rng.random(),
        };
        let from = self.rng.random_range(0..MAX_NODES as u8);
        let term = if self.rng.random_bool(0.5) { u64::MAX } else { term + 0x100 };
        let mut buf = [0u8; wire::MAX_HEARTBEAT];
        let Ok(w) = FrameWriter::heartbeat(&mut buf, from, term, &hb) else {
            return Vec::new();
        };
        let n = w.finish();
        wire::seal(&mut buf[..n], Some(&OTHER_KEY), u32::MAX, self.rng.random());
        buf[..n].to_vec()
    }
}

fn refresh_crc(b: &mut [u8]) {
    let n = b.len();
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(&b[..n - wire::CRC_LEN]);
    b[n - wire::CRC_LEN..].copy_from_slice(&crc.to_le_bytes());
}

/// An attack frame's fate is acceptable: refused before authentication
/// completed, as a replay, or as a frame of a boot that has not proven it
/// is alive now (a capture of an earlier boot at a fresh node).
pub fn refused_early(r: &Result<(), FrameError>) -> bool {
    // A replay of one of the last two heartbeats is counted as a copy from
    // another path: refused at the same point, before the body is read.
    matches!(
        r,
        Err(FrameError::Auth { .. }
            | FrameError::Replay { .. }
            | FrameError::Duplicate { .. }
            | FrameError::Unproven { .. }
            | FrameError::Wire(_))
    )
}
