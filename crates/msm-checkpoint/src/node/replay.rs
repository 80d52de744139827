//! Replay refusal: each sender's frames carry its incarnation (a boot) and
//! a counter from 1 within it. A receiver keeps, per slot, a 64-frame
//! window below the highest counter of a boot, as IPsec and WireGuard do,
//! for at most two boots at once: a restart is heard beside the boot it
//! replaces until that one falls silent, and a second module that claims a
//! slot is seen and reported as a conflict rather than hidden.
//!
//! A window is opened only for a boot that proved it is alive now
//! (`freshness.rs`): a frame of a boot without a live window is
//! [`Admission::Unproven`], and only its heartbeat, if it echoes a recent
//! challenge of ours, opens one. So a capture of an earlier boot is
//! refused even in the first microseconds of the receiver's boot, and no
//! incarnation number, however high, locks a slot out: a window closes
//! when its boot has been silent for the detection time.
//!
//! Refused: counter 0 (never sent), a counter seen already or older than
//! the window, and one more than [`MAX_COUNTER_JUMP`] ahead of the newest
//! (no module sends that many frames between two heartbeats: a faulty or
//! hostile module's attempt to lock its slot's window; never adopted).
//! Frames reordered within the window are taken; a legitimate frame delayed
//! past it is refused too, which the protocol treats as a loss. A boot whose
//! window closed may come back ahead by what it can have sent meanwhile (a
//! frame a microsecond) and the bound, no further.

use core::time::Duration;

use msm_time::Instant;

use crate::role::{MAX_NODES, Slot};

/// Frames below the highest counter that may still arrive late.
pub(crate) const WINDOW: u64 = 64;

/// The furthest a boot's frame counter may move ahead of the last one taken
/// from it. A module sends far fewer frames in a detection time; a window
/// silent that long closes, and the boot's next proven heartbeat reopens it
/// at any counter.
pub const MAX_COUNTER_JUMP: u64 = 1 << 24;

/// Why a frame is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stale {
    /// A counter seen already, older than the window, or 0.
    Counter,
    /// A counter more than [`MAX_COUNTER_JUMP`] ahead.
    Jump,
}

/// A frame not refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Of a boot with a live window: taken.
    Taken,
    /// Of a boot that has not proven it is alive now: nothing taken.
    Unproven,
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
    /// Opened at the proving frame: every counter below it counts as seen,
    /// so nothing the boot sent before (to us or to anyone) is taken later.
    fn new(now: Instant, incarnation: u32, counter: u64) -> Window {
        Window { incarnation, top: counter, seen: u64::MAX, last: now }
    }

    fn take(&mut self, now: Instant, counter: u64) -> Result<(), Stale> {
        if counter > self.top {
            let shift = counter - self.top;
            if shift > MAX_COUNTER_JUMP {
                return Err(Stale::Jump);
            }
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

/// Microseconds from `then` to `now` (0 if `now` is earlier).
fn micros_since(now: Instant, then: Instant) -> u64 {
    u64::try_from(now.saturating_since(then).as_micros()).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone, Copy, Default)]
struct SlotWindows {
    boots: [Option<Window>; 2],
}

impl SlotWindows {
    fn check(&mut self, now: Instant, detect: Duration, inc: u32, counter: u64) -> Result<Admission, Stale> {
        if counter == 0 {
            return Err(Stale::Counter);
        }
        match self.boots.iter_mut().flatten().find(|w| w.incarnation == inc) {
            Some(w) if w.live(now, detect) => w.take(now, counter).map(|()| Admission::Taken),
            // A closed window still knows how far its boot got: nothing at
            // or below that is new, proven or not; and nothing further than
            // it can have sent since (a frame a microsecond, well above any
            // backplane's rate), so a taken frame sealed again far ahead is
            // refused even after its boot fell silent.
            Some(w) if counter <= w.top => Err(Stale::Counter),
            Some(w) if counter - w.top > MAX_COUNTER_JUMP.saturating_add(micros_since(now, w.last)) => {
                Err(Stale::Jump)
            }
            _ => Ok(Admission::Unproven),
        }
    }

    /// Open a window for a boot that proved it is alive: in place of its
    /// own closed one, a free one, a closed one, or the one heard longest ago.
    fn admit(&mut self, now: Instant, detect: Duration, inc: u32, counter: u64) {
        let b = &self.boots;
        let i = b
            .iter()
            .position(|w| w.is_some_and(|w| w.incarnation == inc))
            .or_else(|| b.iter().position(Option::is_none))
            .or_else(|| b.iter().position(|w| w.is_some_and(|w| !w.live(now, detect))))
            .unwrap_or(usize::from(b[1].map(|w| w.last) < b[0].map(|w| w.last)));
        self.boots[i] = Some(Window::new(now, inc, counter));
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
    /// Take an authenticated frame's `(incarnation, counter)` from `from`,
    /// find it unproven, or refuse it. Only a frame taken moves a window.
    pub(crate) fn check(
        &mut self,
        now: Instant,
        detect: Duration,
        from: Slot,
        incarnation: u32,
        counter: u64,
    ) -> Result<Admission, Stale> {
        self.slots[from.index()].check(now, detect, incarnation, counter)
    }

    /// `from`'s boot `incarnation` proved it is alive with the frame
    /// numbered `counter`: its window opens there.
    pub(crate) fn admit(
        &mut self,
        now: Instant,
        detect: Duration,
        from: Slot,
        incarnation: u32,
        counter: u64,
    ) {
        self.slots[from.index()].admit(now, detect, incarnation, counter);
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
    use Admission::{Taken, Unproven};

    /// A guard with `(incarnation, counter)` of slot B admitted at `t`.
    fn admitted(t: Instant, inc: u32, counter: u64) -> ReplayGuard {
        let mut g = ReplayGuard::default();
        g.admit(t, D, B, inc, counter);
        g
    }

    #[test]
    fn nothing_is_taken_from_a_boot_before_it_proves_itself() {
        let mut g = ReplayGuard::default();
        assert_eq!(g.check(T0, D, B, 5, 1), Ok(Unproven), "a fresh receiver takes no boot on trust");
        assert_eq!(g.check(T0, D, B, 5, 1), Ok(Unproven), "nothing was recorded");
        g.admit(T0, D, B, 5, 2);
        assert_eq!(g.check(T0, D, B, 5, 2), Err(Stale::Counter), "the proving frame itself is taken");
        assert_eq!(g.check(T0, D, B, 5, 3), Ok(Taken));
        assert_eq!(g.check(T0, D, B, 4, 9), Ok(Unproven), "an earlier boot must prove itself too");
        assert_eq!(g.check(T0, D, B, 5, 0), Err(Stale::Counter), "counter 0 is never sent");
    }

    #[test]
    fn two_live_boots_are_heard_and_a_silent_one_closes() {
        let at = Instant::from_millis;
        let mut g = admitted(at(0), 5, 1);
        g.admit(at(10), D, B, 9, 1); // a restart, or a second module in slot B
        assert_eq!(g.check(at(20), D, B, 5, 2), Ok(Taken), "the first one is live: both are heard");
        assert_eq!(g.check(at(20), D, B, 5, 2), Err(Stale::Counter));
        assert_eq!(g.check(at(300), D, B, 9, 2), Ok(Taken));
        assert_eq!(g.check(at(400), D, B, 5, 3), Ok(Unproven), "silent for 380 ms: closed");
        // A third boot takes the place of a closed one.
        g.admit(at(401), D, B, 7, 1);
        assert_eq!(g.check(at(402), D, B, 7, 2), Ok(Taken));
    }

    #[test]
    fn no_incarnation_locks_a_slot_out() {
        let at = Instant::from_millis;
        // A faulty module claims slot B with the highest boot count and leaves.
        let mut g = admitted(at(0), u32::MAX, 1);
        g.admit(at(1), D, B, 3, 1);
        assert_eq!(g.check(at(2), D, B, 3, 2), Ok(Taken));
        // The real module restarts twice after it: each boot proves itself and is heard.
        g.admit(at(500), D, B, 4, 1);
        assert_eq!(g.check(at(501), D, B, 4, 2), Ok(Taken));
        g.admit(at(1000), D, B, 5, 1);
        assert_eq!(g.check(at(1001), D, B, 5, 2), Ok(Taken));
    }

    #[test]
    fn a_counter_jump_beyond_the_bound_is_refused_and_never_adopted() {
        let mut g = admitted(T0, 1, 10);
        assert_eq!(g.check(T0, D, B, 1, u64::MAX), Err(Stale::Jump));
        assert_eq!(g.check(T0, D, B, 1, 11), Ok(Taken), "the real next frame still counts");
        assert_eq!(g.check(T0, D, B, 1, 11 + MAX_COUNTER_JUMP), Ok(Taken), "the bound itself is allowed");
        // After a silence the boot proves itself again and resumes at any
        // counter it can have reached meanwhile (a frame a microsecond).
        let later = Instant::from_millis(400);
        let top = 11 + MAX_COUNTER_JUMP;
        assert_eq!(g.check(later, D, B, 1, 11), Err(Stale::Counter), "closed, but not forgotten");
        assert_eq!(
            g.check(later, D, B, 1, u64::MAX),
            Err(Stale::Jump),
            "a taken frame sealed again far ahead"
        );
        let reach = top + MAX_COUNTER_JUMP + 400_000;
        assert_eq!(g.check(later, D, B, 1, reach + 1), Err(Stale::Jump));
        assert_eq!(g.check(later, D, B, 1, reach), Ok(Unproven));
        g.admit(later, D, B, 1, reach);
        assert_eq!(g.check(later, D, B, 1, reach + 1), Ok(Taken));
    }

    #[test]
    fn duplicates_and_frames_older_than_the_window_are_refused() {
        let mut g = admitted(T0, 1, 1);
        for c in 2..=200 {
            assert_eq!(g.check(T0, D, B, 1, c), Ok(Taken));
        }
        assert_eq!(g.check(T0, D, B, 1, 200), Err(Stale::Counter));
        assert_eq!(g.check(T0, D, B, 1, 150), Err(Stale::Counter));
        assert_eq!(g.check(T0, D, B, 1, 200 - WINDOW), Err(Stale::Counter), "below the window");
        assert_eq!(g.check(T0, D, B, 1, 1), Err(Stale::Counter));
    }

    #[test]
    fn frames_sent_before_the_proving_one_are_never_taken() {
        let mut g = admitted(T0, 1, 100);
        for c in 37..100 {
            assert_eq!(g.check(T0, D, B, 1, c), Err(Stale::Counter), "counter {c}");
        }
    }

    #[test]
    fn reordering_within_the_window_is_taken_once() {
        let mut g = admitted(T0, 1, 1);
        assert_eq!(g.check(T0, D, B, 1, 10), Ok(Taken));
        assert_eq!(g.check(T0, D, B, 1, 70), Ok(Taken));
        assert_eq!(g.check(T0, D, B, 1, 69), Ok(Taken));
        assert_eq!(g.check(T0, D, B, 1, 11), Ok(Taken), "59 behind: inside the window");
        assert_eq!(g.check(T0, D, B, 1, 11), Err(Stale::Counter));
        assert_eq!(g.check(T0, D, B, 1, 6), Err(Stale::Counter), "64 behind: outside");
        assert_eq!(g.check(T0, D, B, 1, 1000), Ok(Taken), "a jump clears the window");
        assert_eq!(g.check(T0, D, B, 1, 999), Ok(Taken));
        assert_eq!(g.check(T0, D, B, 1, 70), Err(Stale::Counter));
    }

    #[test]
    fn seeded_shuffles_take_each_counter_at_most_once() {
        // A deterministic shuffle of 1..=500 with duplicates: nothing taken twice.
        let mut g = admitted(T0, 1, 1);
        let mut taken = [false; 501];
        taken[1] = true;
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
