//! Every deadline of a node in one table; [`TimerTable::next_timeout`] is
//! what `Node::poll_timeout` returns. A timer is armed only while it can
//! fire: one that expires with nothing to do is stopped, never left in the
//! past (a board would spin on it).

use msm_time::Instant;

use crate::role::{MAX_NODES, Slot};

/// The node's deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Send the next heartbeat. Always armed.
    Heartbeat,
    /// INIT: no master heard from; elect one.
    Election,
    /// Master: the oldest unacknowledged run is overdue; go back and resend.
    Retransmit,
    /// Backup: say hello (again) until the master acknowledges it.
    Hello,
    /// Backup: (re)send a Resync for every stream that needs a new bulk.
    Resync,
    /// Master: `run msm-failover` gives up.
    HandoverDeadline,
    /// Master: (re)send the Handover once the backlog has drained.
    HandoverResend,
    /// Another module claimed our slot; the conflict is over when this passes.
    SlotConflict,
    /// Master: a stream held back after repeated re-bulk requests may start.
    BulkHoldoff,
    /// Another boot of our partner's slot spoke (the master we follow; as
    /// master, our backup): unless the partner is heard again by then, it
    /// restarted and is lost.
    PartnerSuspect,
    /// Standby: report where its configuration mirror is.
    Report,
    /// A peer is lost unless heard from by then.
    PeerLost(Slot),
}

const FIXED: usize = 11;
const COUNT: usize = FIXED + MAX_NODES;

impl Timer {
    const fn index(self) -> usize {
        match self {
            Timer::Heartbeat => 0,
            Timer::Election => 1,
            Timer::Retransmit => 2,
            Timer::Hello => 3,
            Timer::Resync => 4,
            Timer::HandoverDeadline => 5,
            Timer::HandoverResend => 6,
            Timer::SlotConflict => 7,
            Timer::BulkHoldoff => 8,
            Timer::PartnerSuspect => 9,
            Timer::Report => 10,
            Timer::PeerLost(s) => FIXED + s.index(),
        }
    }
}

/// "Not armed": the end of time, which no deadline reaches (additions
/// saturate there, and a deadline there would never fire anyway). Half the
/// RAM of `Option<Instant>` on an MCU.
const NEVER: Instant = Instant::from_micros(u64::MAX);

/// When each [`Timer`] fires, if armed.
#[derive(Debug, Clone)]
pub(crate) struct TimerTable([Instant; COUNT]);

impl TimerTable {
    pub(crate) const fn new() -> Self {
        TimerTable([NEVER; COUNT])
    }

    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.0[timer.index()] = at;
    }

    /// Arm `timer` at `at` unless it is already armed earlier.
    pub(crate) fn set_earliest(&mut self, timer: Timer, at: Instant) {
        let t = &mut self.0[timer.index()];
        *t = (*t).min(at);
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.0[timer.index()] = NEVER;
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        Some(self.0[timer.index()]).filter(|&t| t != NEVER)
    }

    pub(crate) fn is_armed(&self, timer: Timer) -> bool {
        self.get(timer).is_some()
    }

    /// Armed and due at `now`.
    pub(crate) fn is_expired(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|t| now >= t)
    }

    /// The earliest armed deadline.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.0.iter().min().copied().filter(|&t| t != NEVER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn next_timeout_is_the_earliest_armed() {
        let mut timers = TimerTable::new();
        assert_eq!(timers.next_timeout(), None);
        timers.set(Timer::Heartbeat, t(100));
        timers.set(Timer::PeerLost(Slot::B), t(30));
        timers.set(Timer::Retransmit, t(40));
        assert_eq!(timers.next_timeout(), Some(t(30)));
        timers.stop(Timer::PeerLost(Slot::B));
        assert_eq!(timers.next_timeout(), Some(t(40)));
        assert!(!timers.is_armed(Timer::PeerLost(Slot::B)));
    }

    #[test]
    fn expiry_and_set_earliest() {
        let mut timers = TimerTable::new();
        assert!(!timers.is_expired(Timer::Resync, t(5)), "a stopped timer never expires");
        timers.set_earliest(Timer::Resync, t(20));
        timers.set_earliest(Timer::Resync, t(50));
        assert_eq!(timers.get(Timer::Resync), Some(t(20)));
        timers.set_earliest(Timer::Resync, t(10));
        assert!(timers.is_expired(Timer::Resync, t(10)));
        assert!(!timers.is_expired(Timer::Resync, t(9)));
    }

    #[test]
    fn every_timer_has_its_own_slot() {
        let mut all = [Timer::Heartbeat; COUNT];
        let fixed = [
            Timer::Heartbeat,
            Timer::Election,
            Timer::Retransmit,
            Timer::Hello,
            Timer::Resync,
            Timer::HandoverDeadline,
            Timer::HandoverResend,
            Timer::SlotConflict,
            Timer::BulkHoldoff,
            Timer::PartnerSuspect,
            Timer::Report,
        ];
        all[..FIXED].copy_from_slice(&fixed);
        for (i, slot) in (0..MAX_NODES as u8).filter_map(Slot::new).enumerate() {
            all[FIXED + i] = Timer::PeerLost(slot);
        }
        for (i, timer) in all.iter().enumerate() {
            assert_eq!(timer.index(), i);
        }
    }
}
