//! Who is really in a slot. A heartbeat of another boot in the slot of our
//! partner (the master we follow; as master, the backup our session is
//! with) means the partner restarted (its old boot falls silent) or a second
//! module claims that slot (the old boot is heard again well after the new
//! one spoke); a frame claiming our own slot means a second module in it.
//! A master ends its session with a backup that restarted at once; a
//! follower loses its master only when the followed boot has been silent
//! for the detection time, whatever else speaks in its slot. A conflict lasts a detection interval past its last sign,
//! is shown in status, and while it lasts the other module's heartbeats
//! change nothing here and no election is won for a claimed slot.

use core::time::Duration;

use msm_time::Instant;

use super::timers::{Timer, TimerTable};
use crate::role::Slot;

/// What [`Identity::on_timeout`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finding {
    Nothing,
    /// The partner restarted, or fell silent while another module spoke in
    /// its slot: it is lost.
    Lost,
}

/// Slot conflicts and restarts of the master we follow.
#[derive(Debug)]
pub(crate) struct Identity {
    heartbeat: Duration,
    detect: Duration,
    /// The slot two modules claim, while [`Timer::SlotConflict`] runs.
    conflict: Option<Slot>,
    /// Last heartbeat of the partner, in its boot.
    partner_heard: Instant,
    /// When another boot of the partner's slot first spoke.
    suspect_since: Instant,
}

impl Identity {
    pub(crate) const fn new(now: Instant, heartbeat: Duration, detect: Duration) -> Self {
        Identity { heartbeat, detect, conflict: None, partner_heard: now, suspect_since: now }
    }

    /// A heartbeat of the partner, in its boot (or the partnership just began).
    pub(crate) fn partner_heard(&mut self, now: Instant) {
        self.partner_heard = now;
    }

    /// A heartbeat from the partner's slot with another boot count. It
    /// changes nothing yet: see [`on_timeout`](Self::on_timeout).
    pub(crate) fn other_boot(&mut self, now: Instant, slot: Slot, timers: &mut TimerTable) -> bool {
        if self.conflict == Some(slot) && timers.is_armed(Timer::SlotConflict) {
            timers.set(Timer::SlotConflict, now + self.detect);
            return true; // counted by the caller: a frame of the other module
        }
        if !timers.is_armed(Timer::PartnerSuspect) {
            self.suspect_since = now;
            timers.set(Timer::PartnerSuspect, now + self.heartbeat + self.heartbeat / 2);
        }
        false
    }

    /// Two modules claim `slot`.
    pub(crate) fn conflict(&mut self, now: Instant, slot: Slot, timers: &mut TimerTable) {
        if !timers.is_armed(Timer::SlotConflict) {
            warn!("slot conflict: two modules claim one slot");
        }
        self.conflict = Some(slot);
        timers.set(Timer::SlotConflict, now + self.detect);
    }

    /// Another boot of the partner's slot spoke and is being judged, or is a
    /// conflict: its frames wait or are ignored.
    pub(crate) fn doubted(&self, slot: Slot, timers: &TimerTable) -> bool {
        timers.is_armed(Timer::PartnerSuspect) || self.current(timers) == Some(slot)
    }

    /// The slot in conflict, if any.
    pub(crate) fn current(&self, timers: &TimerTable) -> Option<Slot> {
        self.conflict.filter(|_| timers.is_armed(Timer::SlotConflict))
    }

    /// Decide what the suspect window showed; end a conflict whose last sign
    /// is a detection interval old. `partner`: its slot, if any.
    pub(crate) fn on_timeout(
        &mut self,
        now: Instant,
        partner: Option<Slot>,
        master: bool,
        timers: &mut TimerTable,
    ) -> Finding {
        if timers.is_expired(Timer::SlotConflict, now) {
            info!("slot conflict over");
            timers.stop(Timer::SlotConflict);
            self.conflict = None;
        }
        if timers.is_expired(Timer::PartnerSuspect, now) {
            timers.stop(Timer::PartnerSuspect);
            // The old boot heard well after the new one spoke, not a frame
            // still on its way when it died: a second module.
            let alive = self.partner_heard > self.suspect_since + self.heartbeat / 2;
            match partner {
                Some(m) if alive => self.conflict(now, m, timers),
                // Our backup restarted: its session is over now.
                Some(_) if master => {
                    info!("backup restarted");
                    return Finding::Lost;
                }
                // Our master's slot has a new boot, and the one we follow
                // has not spoken since: it may have restarted, but only its
                // silence for the detection time makes it lost (a new boot
                // in its slot could be a second module, or a replay).
                Some(_) => info!("another boot in the master's slot: waiting for the master's silence"),
                None => {}
            }
        }
        // A conflict must not keep us with a partner that died: the other
        // module's heartbeats refresh the slot, not the partner.
        let silent = now.saturating_since(self.partner_heard) >= self.detect;
        if silent && self.conflict.is_some() && self.conflict == partner {
            return Finding::Lost;
        }
        Finding::Nothing
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
    fn a_restart_is_a_lost_master_a_second_module_a_conflict() {
        // A follower never loses its master to a new boot in its slot, only to silence.
        let (mut id, mut t) = (Identity::new(ms(0), HB, HB * 3), TimerTable::new());
        id.partner_heard(ms(100));
        id.other_boot(ms(101), Slot::A, &mut t);
        assert_eq!(id.on_timeout(ms(116), Some(Slot::A), false, &mut t), Finding::Nothing);
        assert_eq!(id.current(&t), None);

        // Restart of a backup: the old boot says nothing after the new one spoke.
        let (mut id, mut t) = (Identity::new(ms(0), HB, HB * 3), TimerTable::new());
        id.partner_heard(ms(100));
        assert!(!id.other_boot(ms(101), Slot::A, &mut t));
        id.partner_heard(ms(102)); // still on its way when the old boot died
        assert_eq!(id.on_timeout(ms(116), Some(Slot::A), true, &mut t), Finding::Lost);
        assert_eq!(id.current(&t), None);

        // Second module: the followed boot keeps speaking.
        let (mut id, mut t) = (Identity::new(ms(0), HB, HB * 3), TimerTable::new());
        id.other_boot(ms(101), Slot::A, &mut t);
        id.partner_heard(ms(110));
        assert_eq!(id.on_timeout(ms(116), Some(Slot::A), true, &mut t), Finding::Nothing);
        assert_eq!(id.current(&t), Some(Slot::A));
        assert!(id.other_boot(ms(120), Slot::A, &mut t), "the other module's frames are the conflict's");
        // The followed master falls silent while the other one speaks: lost.
        id.other_boot(ms(140), Slot::A, &mut t);
        assert_eq!(id.on_timeout(ms(141), Some(Slot::A), true, &mut t), Finding::Lost);
        // The other module leaves: the conflict ends a detection interval later.
        assert_eq!(id.on_timeout(ms(171), None, true, &mut t), Finding::Nothing);
        assert_eq!(id.current(&t), None);
    }
}
