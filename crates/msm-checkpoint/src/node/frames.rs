//! Receiving a frame: the envelope, the key and the replay window first,
//! then the term and the sender, and only then the body, dispatched to the
//! part that owns it (membership, sender, receiver, mirror, standbys). A
//! refused frame changes only counters (see `handle_frame`).

use super::*;

impl<const APPS: usize, const WINDOW: usize, const BACKLOG: usize, const STANDBYS: usize>
    Node<APPS, WINDOW, BACKLOG, STANDBYS>
{
    /// Handle one received frame. Its envelope, tag and replay window are
    /// checked before anything of its body is read: a frame refused there
    /// (corrupt, another version, not under a key we hold, a replay) or one
    /// that does not decode changes only counters. An authentic frame refused
    /// for its term or sender still shows
    /// the sender alive and its term seen (that is how a stale master learns
    /// to step down), but changes no checkpointed state. Every refusal is
    /// counted in [`SwitchStatus::errors`](crate::SwitchStatus).
    pub fn handle_frame<H: Host>(
        &mut self,
        now: Instant,
        bytes: &[u8],
        host: &mut H,
    ) -> Result<(), FrameError> {
        let sealed = match wire::open(bytes) {
            Ok(s) => s,
            Err(e) => {
                // Nothing here is authenticated: count it, change nothing.
                let e = FrameError::Wire(e);
                self.errors.count(&e);
                return Err(e);
            }
        };
        if !self.keys.verify(sealed.key_id, sealed.signed(), sealed.tag()) {
            let r = self.refuse(FrameError::Auth { from: sealed.from, key_id: sealed.key_id });
            // A key mismatch raises its own alarm, never a silent "peer
            // dead": logged at the 1st, 2nd, 4th, 8th... refusal per slot.
            let n = self.errors.by_slot.get(usize::from(sealed.from)).map_or(0, |r| r.auth);
            if n.is_power_of_two() {
                warn!(
                    "{} frames claiming slot {} failed authentication (key id {}): that module uses a key this one does not hold, or they are forged",
                    n, sealed.from, sealed.key_id
                );
            }
            return r;
        }
        let Some(from) = Slot::new(sealed.from) else {
            return self.refuse(WireError::BadSlot(sealed.from).into());
        };
        if from != self.cfg.slot {
            // Before the freshness check: an older module proves its boot
            // only once it hears us in its version (see `versions`).
            self.versions.heard(now, from, sealed.incarnation, sealed.version);
        }
        // Untagged frames (an unauthenticated backplane) can be forged
        // whole: a replay window on them would only let a forger lock a slot out.
        let keyed = sealed.key_id != NO_KEY;
        let mut admission = Admission::Taken;
        if keyed {
            if from == self.cfg.slot && self.is_own_echo(sealed.incarnation, sealed.counter) {
                return self.refuse(FrameError::Replay { from });
            }
            // Our own slot's windows are those of another module claiming it.
            match self.replay.check(now, self.cfg.detect(), from, sealed.incarnation, sealed.counter) {
                Ok(a) => admission = a,
                Err(_)
                    if self.cfg.paths > 1
                        && self.replay.is_heartbeat_copy(from, sealed.incarnation, sealed.counter) =>
                {
                    return self.refuse(FrameError::Duplicate { from });
                }
                Err(Stale::Jump) => {
                    warn!("counter jump from {} refused", from);
                    return self.refuse(FrameError::CounterJump { from });
                }
                Err(Stale::Counter) => return self.refuse(FrameError::Replay { from }),
            }
        }
        let f = match sealed.decode() {
            Ok(f) => f,
            Err(e) => return self.refuse(e.into()),
        };
        // One boot count per frame: the header's, which the replay window
        // keys on, must be the one the body states.
        let stated = match &f.body {
            Body::Heartbeat(hb) => Some(hb.incarnation),
            Body::Hello { incarnation, .. } | Body::Report { incarnation } => Some(*incarnation),
            _ => None,
        };
        if stated.is_some_and(|i| i != sealed.incarnation) {
            return self.refuse(WireError::Malformed.into());
        }
        if let Body::Heartbeat(hb) = &f.body {
            self.freshness.heard(now, from, sealed.incarnation, hb.challenge);
        }
        if admission == Admission::Unproven {
            // A boot we hold no live window for: only a heartbeat that
            // answers a recent challenge of ours makes its frames count.
            let proven = match &f.body {
                Body::Heartbeat(hb) => self.freshness.proves(now, hb.echo[self.cfg.slot.index()]),
                _ => false,
            };
            if !proven {
                // Answer its challenge promptly (heartbeats stay rate-limited).
                self.timers.set(Timer::Heartbeat, now);
                return self.refuse(FrameError::Unproven { from });
            }
            debug!("{} proved its boot alive", from);
            self.replay.admit(now, self.cfg.detect(), from, sealed.incarnation, sealed.counter);
            // Our answer to its challenge lets it take our frames as soon.
            self.timers.set(Timer::Heartbeat, now);
        }
        if matches!(f.body, Body::Heartbeat(_)) {
            if from != self.cfg.slot {
                // Of a proven boot. Version 4 leaves a heartbeat's tail
                // unread: an older module's has none, a newer one's names
                // what it speaks.
                let mut tail = f.tail;
                let ext = match wire::take::<HeartbeatExt>(&mut tail) {
                    Ok(ext) => Some(ext),
                    Err(e) if f.version >= 5 => return self.refuse(e.into()),
                    Err(_) => None,
                };
                self.versions.heartbeat(from, f.version, ext);
            }
            self.replay.heartbeat_taken(from, sealed.incarnation, sealed.counter);
        }
        if from == self.cfg.slot {
            // Our links never echo our own frames: another module claims this slot.
            self.errors.count(&FrameError::OwnSlot);
            self.identity.conflict(now, self.cfg.slot, &mut self.timers);
            return Err(FrameError::OwnSlot);
        }
        if f.to != BROADCAST && f.to != self.cfg.slot.raw() {
            return Ok(());
        }
        let term = Term::from_raw(f.term);
        let detect = self.cfg.detect();
        self.members.admit_term(now, detect, term).or_else(|e| self.refuse(e))?;
        let inc = sealed.incarnation;
        if self.members.role != Role::Master
            && self.members.master == Some(from)
            && inc != self.members.master_incarnation
        {
            // Another boot in the slot of the master we follow: a restart or
            // a second module. Neither is by itself "the master is gone":
            // only the followed boot's silence for the detection time is,
            // so this boot keeps nothing alive and is taken for nothing but
            // its heartbeat, which `identity` judges.
            return match f.body {
                Body::Heartbeat(hb) => {
                    self.on_heartbeat(now, from, term, &hb, host);
                    Ok(())
                }
                _ => self.refuse(FrameError::Unexpected { from }),
            };
        }
        if self.members.heard(from, term, inc) {
            self.events.push(Event::PeerUp(from));
        }
        self.timers.set(Timer::PeerLost(from), now + self.cfg.detect());
        let r = self.dispatch(now, from, term, f.body, f.tail, host);
        self.update_in_sync();
        if let Err(e) = &r {
            self.errors.count(e);
        }
        r
    }

    pub(super) fn refuse(&mut self, e: FrameError) -> Result<(), FrameError> {
        self.errors.count(&e);
        Err(e)
    }

    /// An authentic frame from our own slot that we could have sent: of an
    /// earlier boot of ours (incarnations only grow), or of this one with a
    /// counter we used. Anything else is another module in our slot.
    pub(super) fn is_own_echo(&self, incarnation: u32, counter: u64) -> bool {
        incarnation < self.cfg.incarnation || (incarnation == self.cfg.incarnation && counter <= self.sent)
    }

    pub(super) fn dispatch<H: Host>(
        &mut self,
        now: Instant,
        from: Slot,
        term: Term,
        body: Body,
        tail: &[u8],
        host: &mut H,
    ) -> Result<(), FrameError> {
        match body {
            Body::Heartbeat(hb) => {
                self.on_heartbeat(now, from, term, &hb, host);
                Ok(())
            }
            Body::Hello { incarnation, hello_id, total } => {
                if self.members.role == Role::Master && self.members.backup.is_none() {
                    self.choose_backup(now);
                }
                self.members.check_from_backup(from, term)?;
                let other_boot = self.partner().is_some_and(|(s, inc)| s == from && inc != incarnation);
                if other_boot && self.identity.doubted(from, &self.timers) {
                    // A boot of our backup's slot we are not sure of: its hello waits (it repeats).
                    return Ok(());
                }
                let (streams, events, timers) = (&mut self.streams, &mut self.events, &mut self.timers);
                let hello = HelloFrom { slot: from, incarnation, hello_id, total };
                self.sender.on_hello(term.raw(), hello, tail, streams, events, timers)
            }
            Body::HelloAck { incarnation, hello_id } => {
                self.members.check_from_master(from, term)?;
                if incarnation != self.cfg.incarnation || self.members.role != Role::Backup {
                    return Ok(());
                }
                let (streams, events, timers) = (&mut self.streams, &mut self.events, &mut self.timers);
                self.receiver.on_hello_ack(hello_id, term, tail, streams, events, timers)
            }
            Body::Data => {
                self.members.check_from_master(from, term)?;
                let (streams, events, timers) = (&mut self.streams, &mut self.events, &mut self.timers);
                if self.members.role == Role::Standby {
                    // Our configuration mirror.
                    self.mirror.data_received();
                    let reader = Reader::Standby { copying: self.mirror.snapshots() };
                    return self.receiver.on_data(term, tail, streams, host, events, timers, reader);
                }
                // Data belongs to a session: until the master acknowledged our
                // hello, it may be for an earlier incarnation of this slot
                // (sent before the master heard we rebooted).
                if self.members.role != Role::Backup || !self.receiver.hello_acked() {
                    return Ok(());
                }
                self.receiver.on_data(term, tail, streams, host, events, timers, Reader::Backup)
            }
            Body::Report { incarnation } => {
                self.members.check_from_standby(from, term)?;
                self.standbys.on_report(from, incarnation, tail)
            }
            Body::Snapshot { stream, epoch, seq, cursor, digest } => {
                self.members.check_from_master(from, term)?;
                if self.members.role != Role::Standby {
                    return Ok(());
                }
                let (streams, events) = (&mut self.streams, &mut self.events);
                let part = SnapshotPart { sid: usize::from(stream), epoch, seq, cursor, digest };
                self.mirror.on_snapshot(term, part, tail, streams, host, events)
            }
            Body::Rebase { stream, from: point, epoch } => {
                self.members.check_from_master(from, term)?;
                if self.members.role != Role::Standby {
                    return Ok(());
                }
                let (streams, events) = (&mut self.streams, &mut self.events);
                self.mirror.on_rebase(term, usize::from(stream), point, epoch, streams, events)
            }
            Body::Ack => {
                self.members.check_from_backup(from, term)?;
                self.sender.on_acks(now, tail, &mut self.streams, &mut self.events, &mut self.timers)
            }
            Body::Resync { stream, epoch, .. } => {
                self.members.check_from_backup(from, term)?;
                let sid = self.sender.local_sid(stream, &self.streams)?;
                let tx = &self.streams.get(sid).tx;
                if tx.epoch == epoch && tx.phase != Phase::Blocked {
                    self.sender.rebulk(sid, RebulkReason::BackupRequest, &mut self.streams, &mut self.events);
                    self.sender.back_off(now, sid, &mut self.streams, &mut self.timers);
                }
                Ok(())
            }
            Body::Handover { .. } => {
                self.members.check_from_master(from, term)?;
                if self.members.role == Role::Backup {
                    info!("handover received: taking over");
                    let old = self.partner().filter(|p| p.0 == from);
                    // The old master is our backup-to-be, not a standby made one.
                    self.members.handed_over(from);
                    self.promote(now, host, TakeoverCause::Handover);
                    // The old master comes back as our backup holding what we
                    // hold: its streams continue without a bulk.
                    // (Another module chosen as backup instead ends that session.)
                    if let Some((slot, incarnation)) = old {
                        self.sender.continue_for_old_master(slot, incarnation, term.raw(), &mut self.streams);
                    }
                }
                Ok(())
            }
        }
    }
}
