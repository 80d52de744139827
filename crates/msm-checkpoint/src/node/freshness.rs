//! Proof that a boot is alive now. A frame of an earlier boot, captured on
//! the backplane and replayed, carries a valid tag; a replay window cannot
//! refuse it when the receiver has never heard that boot (it just started)
//! or has stopped hearing it. So a boot's frames count only once it has
//! proven it is alive now: every heartbeat carries a *challenge* that moves
//! every half heartbeat interval from a random per-boot base, and echoes the
//! challenges it last heard from each slot. A heartbeat that echoes one of
//! our challenges no older than [`Freshness::span`] was sealed after we sent
//! that challenge: its boot is live. The node then opens a replay window for
//! it (`replay.rs`); until then only the boot's challenge is kept, to answer.
//!
//! Two challenges are echoed per slot, the newest boot's and the last other
//! boot's, so a flood of replayed heartbeats of an old boot cannot displace
//! the live boot's challenge from our answer.

use core::time::Duration;

use msm_time::Instant;

use crate::role::{MAX_NODES, Slot};

/// A challenge heard from one boot of a slot.
#[derive(Debug, Clone, Copy)]
struct Heard {
    incarnation: u32,
    challenge: u32,
    at: Instant,
}

#[derive(Debug, Clone, Copy, Default)]
struct SlotChallenges {
    /// The highest incarnation heard (while it is heard).
    newest: Option<Heard>,
    /// The last challenge of any other boot.
    other: Option<Heard>,
}

/// This boot's challenges and the answers it owes.
#[derive(Debug)]
pub(crate) struct Freshness {
    base: u32,
    /// Microseconds a challenge lasts: half a heartbeat interval.
    step: u64,
    /// How many steps old an echoed challenge may be.
    span: u32,
    /// Challenges older than this are no longer answered.
    detect: Duration,
    heard: [SlotChallenges; MAX_NODES],
}

impl Freshness {
    /// `nonce`: random at each boot (0: derived from `incarnation`, which
    /// only a module whose boot counter is never reset may rely on).
    pub(crate) fn new(nonce: u32, incarnation: u32, heartbeat: Duration, miss_count: u8) -> Self {
        let base = if nonce != 0 { nonce } else { incarnation.wrapping_mul(0x9E37_79B9) ^ 0x5BD1_E995 };
        let step = (heartbeat.as_micros() as u64 / 2).max(1);
        // A live peer echoes a challenge at most about two intervals old
        // (it heard it, then sent its next heartbeat); the detection time,
        // at least three intervals, leaves room for a loaded loop.
        let span = (2 * u32::from(miss_count)).max(6);
        Freshness { base, step, span, detect: heartbeat * u32::from(miss_count), heard: Default::default() }
    }

    /// The challenge our heartbeat carries at `now`; never 0.
    pub(crate) fn challenge(&self, now: Instant) -> u32 {
        let c = self.base.wrapping_add((now.as_micros() / self.step) as u32);
        if c == 0 { 1 } else { c }
    }

    /// One of `echo` is a challenge of ours at most `span` steps old.
    pub(crate) fn proves(&self, now: Instant, echo: [u32; 2]) -> bool {
        let current = self.challenge(now);
        echo.iter().any(|&c| c != 0 && current.wrapping_sub(c) <= self.span)
    }

    /// A heartbeat of `slot`'s boot `incarnation` carried `challenge`
    /// (proven or not: answering is harmless).
    pub(crate) fn heard(&mut self, now: Instant, slot: Slot, incarnation: u32, challenge: u32) {
        let live = |h: &Heard| now.saturating_since(h.at) < self.detect;
        let s = &mut self.heard[slot.index()];
        let h = Heard { incarnation, challenge, at: now };
        match s.newest {
            Some(n) if n.incarnation == incarnation => s.newest = Some(h),
            Some(n) if incarnation > n.incarnation || !live(&n) => {
                s.other = s.newest;
                s.newest = Some(h);
            }
            None => s.newest = Some(h),
            Some(_) => s.other = Some(h),
        }
    }

    /// What our heartbeat echoes, per slot: challenges heard within the
    /// detection time.
    pub(crate) fn echo(&self, now: Instant) -> [[u32; 2]; MAX_NODES] {
        let fresh = |h: Option<Heard>| {
            h.filter(|h| now.saturating_since(h.at) < self.detect).map_or(0, |h| h.challenge)
        };
        let mut out = [[0; 2]; MAX_NODES];
        for (o, s) in out.iter_mut().zip(&self.heard) {
            *o = [fresh(s.newest), fresh(s.other)];
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HB: Duration = Duration::from_millis(10);
    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    #[test]
    fn an_echo_proves_freshness_only_while_recent_and_only_for_this_boot() {
        let f = Freshness::new(0xDEAD_BEEF, 7, HB, 3);
        let c = f.challenge(ms(1000));
        assert_ne!(c, f.challenge(ms(1005)), "moves every half interval");
        assert!(f.proves(ms(1000), [c, 0]));
        assert!(f.proves(ms(1029), [0, c]), "three intervals later: still fresh");
        assert!(!f.proves(ms(1035), [c, 0]), "older than the span");
        assert!(!f.proves(ms(990), [c, 0]), "a challenge not yet sent");
        assert!(!f.proves(ms(1000), [0, 0]));
        let other_boot = Freshness::new(0x1234_5678, 8, HB, 3);
        assert!(!other_boot.proves(ms(1000), [c, 0]), "another boot's challenges answer nothing here");
    }

    #[test]
    fn replays_of_an_old_boot_cannot_displace_the_live_boots_challenge() {
        let mut f = Freshness::new(1, 1, HB, 3);
        f.heard(ms(0), Slot::A, 5, 500);
        f.heard(ms(1), Slot::A, 4, 400); // a replay of an earlier boot
        f.heard(ms(2), Slot::A, 3, 300); // and another
        assert_eq!(f.echo(ms(3))[0], [500, 300]);
        f.heard(ms(4), Slot::A, 5, 501);
        assert_eq!(f.echo(ms(5))[0], [501, 300]);
        // The newest boot falls silent: a lower one that is heard takes its place.
        f.heard(ms(40), Slot::A, 2, 200);
        assert_eq!(f.echo(ms(41))[0], [200, 0], "the silent boot's challenge is no longer answered");
        assert_eq!(f.echo(ms(41))[1], [0, 0]);
    }
}
