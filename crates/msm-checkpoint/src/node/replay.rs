//! Replay refusal: each sender's frames carry its incarnation (a boot; a
//! restart is higher) and a counter from 1 within it. A receiver keeps, per
//! slot, a 64-frame window below the highest counter of an incarnation, as
//! IPsec and WireGuard do, for two incarnations: the newest heard, and the
//! one before it while that one is still live (heard within the detection
//! time). The second is what lets a second module that claims a slot be
//! seen and reported as a conflict rather than hide the first.
//!
//! Refused: a counter already seen or older than the window; an incarnation
//! older than both, or the older one once silent for the detection time (a
//! capture of an earlier boot). Taken: a higher incarnation (a restart); one
//! between the two when the newest has fallen silent (the newest was
//! another module that left, the older one restarted). Frames reordered
//! within the window are taken; a legitimate frame delayed past it is
//! refused too, which the protocol treats as a loss.

use core::time::Duration;

use msm_time::Instant;

use crate::role::{MAX_NODES, Slot};

/// Frames below the highest counter that may still arrive late.
pub(crate) const WINDOW: u64 = 64;

/// Why a frame is a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stale {
    /// An incarnation this slot has moved past.
    OldIncarnation,
    /// A counter seen already, or older than the window.
    Counter,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    incarnation: u32,
    /// Highest counter accepted.
    top: u64,
    /// Bit i: counter `top - i` was accepted.
    seen: u64,
    last: Instant,
}

impl Window {
    fn new(now: Instant, incarnation: u32, counter: u64) -> Window {
        Window { incarnation, top: counter, seen: 1, last: now }
    }

    fn take(&mut self, now: Instant, counter: u64) -> Result<(), Stale> {
        if counter > self.top {
            let shift = counter - self.top;
            self.seen = if shift >= WINDOW { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.top = counter;
        } else {
            let age = self.top - counter;
            if age >= WINDOW || self.seen & (1 << age) != 0 {
                return Err(Stale::Counter);
            }
            self.seen |= 1 << age;
        }
        self.last = now;
        Ok(())
    }

    fn live(&self, now: Instant, detect: Duration) -> bool {
        now < self.last + detect
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct SlotWindows {
    newest: Option<Window>,
    older: Option<Window>,
    /// The highest incarnation ever taken: one that left is never re-admitted.
    max_seen: u32,
}

impl SlotWindows {
    fn check(&mut self, now: Instant, detect: Duration, inc: u32, counter: u64) -> Result<(), Stale> {
        let Some(newest) = &mut self.newest else {
            self.newest = Some(Window::new(now, inc, counter));
            self.max_seen = inc;
            return Ok(());
        };
        if inc == newest.incarnation {
            return newest.take(now, counter);
        }
        if inc > self.max_seen {
            self.older = self.newest.replace(Window::new(now, inc, counter));
            self.max_seen = inc;
            return Ok(());
        }
        let newest_live = newest.live(now, detect);
        match &mut self.older {
            Some(o) if inc == o.incarnation && o.live(now, detect) => o.take(now, counter),
            Some(o) if inc > o.incarnation && inc < newest.incarnation && !newest_live => {
                self.newest = Some(Window::new(now, inc, counter));
                Ok(())
            }
            _ => Err(Stale::OldIncarnation),
        }
    }
}

/// The windows of every slot.
#[derive(Debug, Default)]
pub(crate) struct ReplayGuard {
    slots: [SlotWindows; MAX_NODES],
    /// The last two heartbeats taken from each slot, `(incarnation,
    /// counter)`: with redundant backplane paths every heartbeat arrives
    /// once per path, and the copies are duplicates, not replays.
    heartbeats: [[(u32, u64); 2]; MAX_NODES],
}

impl ReplayGuard {
    /// Take an authenticated frame's `(incarnation, counter)` from `from`, or
    /// refuse it. Only a frame taken moves a window.
    pub(crate) fn check(
        &mut self,
        now: Instant,
        detect: Duration,
        from: Slot,
        incarnation: u32,
        counter: u64,
    ) -> Result<(), Stale> {
        self.slots[from.index()].check(now, detect, incarnation, counter)
    }

    /// A heartbeat from `from` was taken.
    pub(crate) fn heartbeat_taken(&mut self, from: Slot, incarnation: u32, counter: u64) {
        let h = &mut self.heartbeats[from.index()];
        h[1] = h[0];
        h[0] = (incarnation, counter);
    }

    /// A refused frame is a copy of one of the last heartbeats taken from
    /// `from` (another path's): authentic and harmless. Counter 0 is never
    /// sent, so the empty entries match nothing.
    pub(crate) fn is_heartbeat_copy(&self, from: Slot, incarnation: u32, counter: u64) -> bool {
        counter != 0 && self.heartbeats[from.index()].contains(&(incarnation, counter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_of_a_recent_heartbeat_is_told_from_a_replay() {
        let mut g = ReplayGuard::default();
        assert!(!g.is_heartbeat_copy(Slot::B, 0, 0), "nothing taken: nothing matches");
        g.heartbeat_taken(Slot::B, 7, 10);
        g.heartbeat_taken(Slot::B, 7, 20);
        assert!(g.is_heartbeat_copy(Slot::B, 7, 10) && g.is_heartbeat_copy(Slot::B, 7, 20));
        assert!(!g.is_heartbeat_copy(Slot::B, 7, 11), "a data frame's counter");
        assert!(!g.is_heartbeat_copy(Slot::A, 7, 20), "another slot's");
        g.heartbeat_taken(Slot::B, 7, 30);
        assert!(!g.is_heartbeat_copy(Slot::B, 7, 10), "two remembered");
    }

    const B: Slot = Slot::B;
    const T0: Instant = Instant::ZERO;
    const D: Duration = Duration::from_millis(300);

    #[test]
    fn a_second_live_boot_is_taken_until_it_falls_silent() {
        let mut g = ReplayGuard::default();
        let at = Instant::from_millis;
        assert_eq!(g.check(at(0), D, B, 5, 1), Ok(()));
        assert_eq!(g.check(at(10), D, B, 9, 1), Ok(()), "another module (or a restart) in slot B");
        assert_eq!(g.check(at(20), D, B, 5, 2), Ok(()), "the first one is live: both are seen");
        assert_eq!(g.check(at(20), D, B, 5, 2), Err(Stale::Counter));
        assert_eq!(g.check(at(30), D, B, 4, 9), Err(Stale::OldIncarnation));
        assert_eq!(g.check(at(400), D, B, 9, 2), Ok(()));
        assert_eq!(g.check(at(400), D, B, 5, 3), Err(Stale::OldIncarnation), "silent for 380 ms: closed");
        // The newest falls silent; a boot between the two is a restart of the older module.
        assert_eq!(g.check(at(1000), D, B, 7, 1), Ok(()));
        assert_eq!(
            g.check(at(1010), D, B, 9, 3),
            Err(Stale::OldIncarnation),
            "an incarnation that left stays out"
        );
        assert_eq!(g.check(at(1020), D, B, 7, 2), Ok(()));
    }

    #[test]
    fn first_frame_of_a_slot_and_a_newer_boot_are_taken() {
        let mut g = ReplayGuard::default();
        assert_eq!(g.check(T0, D, B, 5, 100), Ok(()));
        assert_eq!(g.check(T0, D, B, 6, 1), Ok(()), "a restart: new incarnation, counter from 1");
        assert_eq!(g.check(T0, D, B, 5, 100), Err(Stale::Counter), "a capture of the earlier boot");
        let later = Instant::from_millis(300);
        assert_eq!(
            g.check(later, D, B, 5, 101),
            Err(Stale::OldIncarnation),
            "the earlier boot is silent: closed"
        );
        assert_eq!(g.check(T0, D, Slot::A, 1, 1), Ok(()), "slots are independent");
    }

    #[test]
    fn duplicates_and_frames_older_than_the_window_are_refused() {
        let mut g = ReplayGuard::default();
        for c in 1..=200 {
            assert_eq!(g.check(T0, D, B, 1, c), Ok(()));
        }
        assert_eq!(g.check(T0, D, B, 1, 200), Err(Stale::Counter));
        assert_eq!(g.check(T0, D, B, 1, 150), Err(Stale::Counter));
        assert_eq!(g.check(T0, D, B, 1, 200 - WINDOW), Err(Stale::Counter), "below the window");
        assert_eq!(g.check(T0, D, B, 1, 1), Err(Stale::Counter));
    }

    #[test]
    fn reordering_within_the_window_is_taken_once() {
        let mut g = ReplayGuard::default();
        assert_eq!(g.check(T0, D, B, 1, 10), Ok(()));
        assert_eq!(g.check(T0, D, B, 1, 70), Ok(()));
        assert_eq!(g.check(T0, D, B, 1, 69), Ok(()));
        assert_eq!(g.check(T0, D, B, 1, 11), Ok(()), "59 behind: inside the window");
        assert_eq!(g.check(T0, D, B, 1, 11), Err(Stale::Counter));
        assert_eq!(g.check(T0, D, B, 1, 6), Err(Stale::Counter), "64 behind: outside");
        assert_eq!(g.check(T0, D, B, 1, 1000), Ok(()), "a jump clears the window");
        assert_eq!(g.check(T0, D, B, 1, 999), Ok(()));
        assert_eq!(g.check(T0, D, B, 1, 70), Err(Stale::Counter));
    }

    #[test]
    fn seeded_shuffles_take_each_counter_at_most_once() {
        // A deterministic shuffle of 1..=500 with duplicates: nothing taken twice.
        let mut g = ReplayGuard::default();
        let mut taken = [false; 501];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..2000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let c = (i / 4 + x % 40).clamp(1, 500);
            if g.check(T0, D, B, 1, c).is_ok() {
                assert!(!taken[c as usize], "counter {c} taken twice");
                taken[c as usize] = true;
            }
        }
    }
}
