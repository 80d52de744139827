//! The master's half of a checkpoint session: the session with one backup
//! incarnation (hello, stream mapping, resume or re-bulk per stream), the
//! window of runs in flight with its retransmission timer, acknowledgements,
//! and the handover of `run msm-failover`. What goes into the backlog is the
//! [`Recorder`]'s; how a frame is filled from it, the packer's.

mod handover;

use core::time::Duration;

use heapless::Vec;
use msm_time::Instant;

use super::backlog::Backlog;
use super::packer::{Run, pack};
use super::recorder::{Rebulked, Recorder};
use super::stream_set::{Acked, MAX_STREAMS, Streams};
use super::timers::{Timer, TimerTable};
use crate::error::FrameError;
use crate::event::{Event, EventQueue, RebulkReason};
use crate::host::Host;
use crate::role::Slot;
use crate::status::{SyncState, percent, stream_name};
use crate::stream::{Mismatch, Phase};
use crate::wire::{self, AckItem, Body, ContinuedItem, NO_SLOT, Outgoing, StreamHello};

/// A backup's hello, as its header names it: who sends it, which boot,
/// which session, and how many streams its parts list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HelloFrom {
    pub slot: Slot,
    pub incarnation: u32,
    pub hello_id: u32,
    pub total: u8,
}

/// The master's checkpoint session with one backup incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Session {
    slot: Slot,
    incarnation: u32,
    hello_id: u32,
    /// Backup stream ids whose hello entry arrived.
    seen: u32,
    total: u8,
}

/// Limits the sender works within, from the node's [`Config`](crate::Config).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendLimits {
    pub rto: Duration,
    pub rto_max: Duration,
    pub heartbeat: Duration,
    pub max_frame: usize,
    pub max_record: usize,
}

/// What the master sends to its backup.
#[derive(Debug)]
pub(crate) struct Sender<const WINDOW: usize, const BACKLOG: usize> {
    limits: SendLimits,
    session: Option<Session>,
    /// Every part of the session's hello arrived: data may flow.
    attached: bool,
    hello_ack_due: bool,
    /// Backup's stream id for each of our streams (`NO_SLOT`: none).
    peer_sid: [u8; MAX_STREAMS],
    in_flight: Vec<Run, WINDOW>,
    rto: Duration,
    /// A rate limit, not a deadline: gap reports before it do not rewind again.
    gap_resend_after: Instant,
    /// `run msm-failover` in progress; `true` when forced.
    handover: Option<bool>,
    /// The backup was last reported in sync (for the `InSync` event).
    pub(crate) in_sync: bool,
    out: Recorder<BACKLOG>,
    retransmits: u64,
    /// Our streams the backup's hello continued across a switchover: the
    /// `HelloAck` names them (and is repeated with them).
    continued: u32,
}

impl<const WINDOW: usize, const BACKLOG: usize> Sender<WINDOW, BACKLOG> {
    pub(crate) fn new(limits: SendLimits) -> Self {
        Sender {
            limits,
            session: None,
            attached: false,
            hello_ack_due: false,
            peer_sid: [NO_SLOT; MAX_STREAMS],
            in_flight: Vec::new(),
            rto: limits.rto,
            gap_resend_after: Instant::ZERO,
            handover: None,
            in_sync: false,
            out: Recorder::new(limits.max_record, limits.max_frame),
            retransmits: 0,
            continued: 0,
        }
    }

    /// The backup the session is with, and its incarnation then.
    pub(crate) fn session(&self) -> Option<(Slot, u32)> {
        self.session.map(|s| (s.slot, s.incarnation))
    }

    /// The hello id of the session data flows in (0: none), for heartbeats.
    pub(crate) fn attached_session(&self) -> u32 {
        self.session.filter(|_| self.attached).map_or(0, |s| s.hello_id)
    }

    pub(crate) fn handover_in_progress(&self) -> bool {
        self.handover.is_some()
    }

    /// The records made and not yet trimmed (standbys' mirrors read them).
    pub(crate) fn backlog(&self) -> &Backlog {
        &self.out.backlog
    }

    pub(crate) fn backlog_used(&self) -> usize {
        self.out.backlog.used()
    }

    pub(crate) fn retransmits(&self) -> u64 {
        self.retransmits
    }

    /// Stop every stream and clear the backlog: nothing is on a backup.
    /// `keep`: we stay master in that term (see [`Streams::stop_all`]).
    fn stop_all(&mut self, streams: &mut Streams, timers: &mut TimerTable, keep: Option<u64>) {
        streams.stop_all(keep);
        timers.stop(Timer::BulkHoldoff);
        self.out.backlog.clear();
        self.in_flight.clear();
        timers.stop(Timer::Retransmit);
    }

    /// Stop sending to the backup; the session may resume from the backlog.
    pub(crate) fn detach(&mut self, timers: &mut TimerTable) {
        self.attached = false;
        self.in_flight.clear();
        timers.stop(Timer::Retransmit);
        self.out.backlog.rewind();
    }

    /// End the session: nothing checkpointed is on a backup any more. True
    /// when a handover in progress was abandoned with it. `keep`: we stay
    /// master in that term, and a new backup holding a stream's exact point
    /// (a standby's configuration) continues it.
    pub(crate) fn end_session(
        &mut self,
        streams: &mut Streams,
        timers: &mut TimerTable,
        keep: Option<u64>,
    ) -> bool {
        self.detach(timers);
        self.session = None;
        self.stop_all(streams, timers, keep);
        self.cancel_handover(timers)
    }

    /// A hello part from the backup (already checked to be our backup in our term).
    pub(crate) fn on_hello(
        &mut self,
        term: u64,
        hello: HelloFrom,
        mut tail: &[u8],
        streams: &mut Streams,
        events: &mut EventQueue,
        timers: &mut TimerTable,
    ) -> Result<(), FrameError> {
        let HelloFrom { slot: from, incarnation, hello_id, total } = hello;
        let fresh = self
            .session
            .is_none_or(|s| s.slot != from || s.incarnation != incarnation || s.hello_id != hello_id);
        // The module the session was with (or held open for: an old master coming back).
        let same_backup = self.session.is_some_and(|s| s.slot == from && s.incarnation == incarnation);
        if fresh {
            debug!("new hello");
            if !same_backup {
                self.stop_all(streams, timers, Some(term));
            }
            self.detach(timers);
            self.peer_sid = [NO_SLOT; MAX_STREAMS];
            self.continued = 0;
            let total = total.min(MAX_STREAMS as u8);
            self.session = Some(Session { slot: from, incarnation, hello_id, seen: 0, total });
        }
        let Some(mut session) = self.session else {
            return Ok(());
        };
        while !tail.is_empty() {
            let h: StreamHello<'_> = wire::take(&mut tail).map_err(|_| FrameError::BadRecord)?;
            if usize::from(h.id) >= MAX_STREAMS || session.seen & (1 << h.id) != 0 {
                continue;
            }
            // Counted even when we have no such application: the backup's extra
            // streams simply get nothing, and the hello still completes.
            session.seen |= 1 << h.id;
            let Some(sid) = streams.find(h.name) else {
                continue;
            };
            self.peer_sid[sid] = h.id;
            self.plan_stream(sid, &h, term, same_backup, streams, events);
        }
        let complete = session.seen.count_ones() >= u32::from(session.total);
        self.session = Some(session);
        if complete && !self.attached {
            for sid in streams.ids().filter(|&i| self.peer_sid[i] == NO_SLOT) {
                let ours = streams.schema(sid);
                streams.get_mut(sid).tx.block(Mismatch { ours, theirs: None });
            }
            self.attached = true;
            self.out.backlog.rewind();
            self.rto = self.limits.rto;
            events.push(Event::BackupAttached(from));
        }
        if complete {
            self.hello_ack_due = true;
        }
        Ok(())
    }

    /// Resume a stream from the backup's last applied record if the backlog
    /// still covers it; otherwise start a new bulk.
    fn plan_stream(
        &mut self,
        sid: usize,
        h: &StreamHello<'_>,
        term: u64,
        returning: bool,
        streams: &mut Streams,
        events: &mut EventQueue,
    ) {
        let ours = streams.schema(sid);
        if h.schema != ours {
            self.out.backlog.kill_stream(sid as u8);
            streams.get_mut(sid).tx.block(Mismatch { ours, theirs: Some(h.schema) });
            return;
        }
        if let Some(point) = streams.get(sid).tx.continues {
            if self.continue_stream(sid, h, point, streams) {
                return;
            }
            if h.complete || returning {
                // (A module new to the session holding nothing of it just
                // gets its first bulk; the old master's history diverged.)
                let stream = Streams::stream(sid);
                events.push(Event::Rebulk { stream, reason: RebulkReason::Diverged });
            }
        }
        let tx = &streams.get(sid).tx;
        let resumable = tx.recording
            && h.term == term
            && h.epoch == tx.epoch
            && h.seq >= streams.acked(sid)
            && h.seq < tx.next_seq
            && tx.phase != Phase::Failed;
        let idle = tx.phase == Phase::Waiting && !tx.recording;
        streams.get_mut(sid).tx.matched();
        if resumable {
            debug!("stream resumes from backlog");
            if h.complete {
                // A hello in the continued epoch (a second one, after the
                // first's acknowledgement was lost): the backup holds it.
                streams.get_mut(sid).tx.confirm();
            }
            self.acknowledge(sid, h.seq, streams, events);
        } else if !idle {
            // (Idle: nothing sent in this epoch yet; the bulk will start normally.)
            self.out.backlog.kill_stream(sid as u8);
            streams.get_mut(sid).tx.count_rebulk();
            streams.restart(sid);
        }
    }

    /// Our stream id for the backup's `peer_id`.
    pub(crate) fn local_sid(&self, peer_id: u8, streams: &Streams) -> Result<usize, FrameError> {
        streams.ids().find(|&i| self.peer_sid[i] == peer_id).ok_or(FrameError::UnknownStream(peer_id))
    }

    /// An Ack frame from the backup (already checked to be ours, in our term).
    pub(crate) fn on_acks(
        &mut self,
        now: Instant,
        mut tail: &[u8],
        streams: &mut Streams,
        events: &mut EventQueue,
        timers: &mut TimerTable,
    ) -> Result<(), FrameError> {
        if !self.attached {
            return Ok(());
        }
        let mut gap = false;
        let mut progress = false;
        while !tail.is_empty() {
            let a: AckItem = wire::take(&mut tail).map_err(|_| FrameError::BadRecord)?;
            let sid = self.local_sid(a.stream, streams)?;
            let tx = &streams.get(sid).tx;
            if tx.epoch != a.epoch {
                continue; // for an epoch already replaced: harmless
            }
            if a.seq >= tx.next_seq {
                return Err(FrameError::BadRecord);
            }
            streams.get_mut(sid).counters.rx += 1;
            // The backup took the continuation: what it holds is ours.
            streams.get_mut(sid).tx.confirm();
            gap |= a.gap;
            if a.seq > streams.acked(sid) {
                self.acknowledge(sid, a.seq, streams, events);
                progress = true;
            }
        }
        if progress {
            self.rto = self.limits.rto;
            if self.in_flight.is_empty() {
                timers.stop(Timer::Retransmit);
            } else {
                timers.set(Timer::Retransmit, now + self.rto);
            }
        }
        if gap && now >= self.gap_resend_after {
            // The backup saw a hole: resend from the oldest unacknowledged record now.
            self.go_back(timers);
            self.gap_resend_after = now + self.limits.rto;
        }
        Ok(())
    }

    /// Everything of `sid` up to `seq` is on the backup.
    fn acknowledge(&mut self, sid: usize, seq: u64, streams: &mut Streams, events: &mut EventQueue) {
        let newest = self.out.backlog.max_change(sid as u8, seq);
        let synced = streams.get_mut(sid).tx.acknowledged(seq, newest);
        self.in_flight.retain(|f| !(usize::from(f.sid) == sid && f.last_seq <= seq));
        self.out.backlog.trim(&*streams);
        if synced {
            events.push(Event::StreamSynced(Streams::stream(sid)));
        }
    }

    /// The path changed under us: retransmit everything unacknowledged now,
    /// at the first timeout again.
    pub(crate) fn resend_now(&mut self, now: Instant, timers: &mut TimerTable) {
        if self.attached && !self.in_flight.is_empty() {
            self.go_back(timers);
            self.rto = self.limits.rto;
            self.gap_resend_after = now + self.limits.rto;
        }
    }

    /// Retransmit everything unacknowledged, from the oldest record.
    fn go_back(&mut self, timers: &mut TimerTable) {
        self.out.backlog.rewind();
        self.in_flight.clear();
        timers.stop(Timer::Retransmit);
        self.retransmits += 1;
    }

    /// Deadlines of the sender that passed.
    pub(crate) fn on_timeout(
        &mut self,
        now: Instant,
        streams: &Streams,
        timers: &mut TimerTable,
        events: &mut EventQueue,
    ) {
        if timers.is_expired(Timer::BulkHoldoff, now) {
            // A held stream may start now; the next one still held, if any, sets the timer again.
            match streams.ids().map(|i| streams.get(i).tx.hold_until).filter(|&t| t > now).min() {
                Some(t) => timers.set(Timer::BulkHoldoff, t),
                None => timers.stop(Timer::BulkHoldoff),
            }
        }
        if timers.is_expired(Timer::Retransmit, now) {
            if self.in_flight.is_empty() {
                timers.stop(Timer::Retransmit);
            } else {
                debug!("retransmission timeout");
                self.go_back(timers);
                self.rto = (self.rto * 2).min(self.limits.rto_max);
            }
        }
        if timers.is_expired(Timer::HandoverDeadline, now) {
            warn!("failover timed out");
            self.cancel_handover(timers);
            events.push(Event::FailoverFailed);
        }
    }

    /// A change of `sid`: its id (see [`Recorder::change`]), and whether a
    /// stream had to start over for it (the backlog overflowed).
    pub(crate) fn change(
        &mut self,
        sid: usize,
        record: &[u8],
        streams: &mut Streams,
        events: &mut EventQueue,
    ) -> (u64, bool) {
        let (id, rebulked) = self.out.change(sid, record, streams, events);
        self.void_runs(rebulked);
        (id, rebulked != 0)
    }

    /// Start `sid` over with a new bulk (a new epoch).
    pub(crate) fn rebulk(
        &mut self,
        sid: usize,
        reason: RebulkReason,
        streams: &mut Streams,
        events: &mut EventQueue,
    ) {
        self.out.rebulk(sid, reason, self.session.is_some(), streams, events);
        self.void_runs(1 << sid);
    }

    /// Runs in flight of re-bulked streams will never be acknowledged.
    fn void_runs(&mut self, rebulked: Rebulked) {
        if rebulked != 0 {
            self.in_flight.retain(|r| rebulked & (1 << r.sid) == 0);
        }
    }

    /// A stream the backup asked to re-bulk again: the next bulk waits, a
    /// heartbeat interval for the second request, doubling up to 64, so a
    /// backup that keeps refusing a stream costs little and shows in status.
    pub(crate) fn back_off(
        &mut self,
        now: Instant,
        sid: usize,
        streams: &mut Streams,
        timers: &mut TimerTable,
    ) {
        let st = streams.get_mut(sid);
        st.counters.errors += 1;
        if let Some(until) = st.tx.refused(now, self.limits.heartbeat) {
            warn!("backup refuses a stream again: its next bulk waits");
            timers.set_earliest(Timer::BulkHoldoff, until);
        }
    }

    /// The next frame for the backup: hello ack, handover, then data.
    pub(crate) fn poll_transmit<H: Host>(
        &mut self,
        now: Instant,
        out: Outgoing<'_>,
        host: &mut H,
        streams: &mut Streams,
        events: &mut EventQueue,
        timers: &mut TimerTable,
    ) -> Option<usize> {
        if self.hello_ack_due {
            let s = self.session?;
            self.hello_ack_due = false;
            let body = Body::HelloAck { incarnation: s.incarnation, hello_id: s.hello_id };
            let mut w = out.writer(&body)?;
            for sid in streams.ids().filter(|&i| self.continued & (1 << i) != 0) {
                let item = ContinuedItem { stream: self.peer_sid[sid], epoch: streams.get(sid).tx.epoch };
                // A stream table fits a frame (it fits the hello); the rest would bulk.
                if w.push(&item).is_err() {
                    break;
                }
            }
            return Some(w.finish());
        }
        if let Some(force) = self.handover {
            // Resends wait for the drain; an acknowledgement brings the board back here.
            if !(force || self.drained(streams)) {
                timers.stop(Timer::HandoverResend);
            } else if !timers.is_armed(Timer::HandoverResend) {
                timers.set(Timer::HandoverResend, now);
            }
            if timers.is_expired(Timer::HandoverResend, now) {
                timers.set(Timer::HandoverResend, now + self.limits.heartbeat);
                return Some(out.writer(&Body::Handover { force })?.finish());
            }
        }
        if !self.attached || self.in_flight.is_full() {
            return None;
        }
        if !self.handover_in_progress() {
            let rebulked = self.out.start_ready_bulks(now, host, streams, events);
            self.void_runs(rebulked);
        }
        loop {
            let off = self.out.backlog.skip_acknowledged(self.out.backlog.send_cursor(), &*streams);
            self.out.backlog.set_send_cursor(off);
            if self.out.backlog.get(off).is_some() {
                return self.send_data(now, out, off, streams, timers);
            }
            let (pulled, rebulked) = self.out.pull_bulk(host, streams, events);
            self.void_runs(rebulked);
            if !pulled {
                return None;
            }
        }
    }

    /// One data frame from the backlog at `off`; its runs join the window.
    fn send_data(
        &mut self,
        now: Instant,
        out: Outgoing<'_>,
        off: usize,
        streams: &mut Streams,
        timers: &mut TimerTable,
    ) -> Option<usize> {
        let mut w = out.writer(&Body::Data)?;
        let room = WINDOW - self.in_flight.len();
        let (runs, cur) = pack::<WINDOW>(&mut w, &self.out.backlog, off, streams, &self.peer_sid, room);
        if runs.is_empty() {
            return None;
        }
        self.out.backlog.set_send_cursor(cur);
        for r in &runs {
            let _ = self.in_flight.push(*r);
            streams.get_mut(usize::from(r.sid)).counters.tx += 1;
        }
        if !timers.is_armed(Timer::Retransmit) {
            timers.set(Timer::Retransmit, now + self.rto);
        }
        Some(w.finish())
    }

    /// Master: why its backup is or is not in sync, from the streams.
    pub(crate) fn sync_state(&self, backup: Option<Slot>, streams: &Streams) -> SyncState {
        match (backup, self.session) {
            (None, Some(_)) => return SyncState::BackupLost,
            (None, None) => return SyncState::NoBackup,
            (Some(_), _) if !self.attached => return SyncState::NoBackup,
            _ => {}
        }
        for sid in streams.ids() {
            let tx = &streams.get(sid).tx;
            let stream = || stream_name(streams.name(sid));
            match tx.phase {
                Phase::Synced if tx.unconfirmed => {
                    return SyncState::Syncing { stream: stream(), percent: 100 };
                }
                Phase::Synced => {}
                Phase::Blocked => return SyncState::VersionMismatch { stream: stream() },
                Phase::Failed => return SyncState::Failed { stream: stream() },
                _ => {
                    return SyncState::Syncing {
                        stream: stream(),
                        percent: percent(tx.bulk_sent, tx.bulk_total),
                    };
                }
            }
        }
        SyncState::InSync
    }
}
