//! A standby's copy of the configuration. The seed: "during the
//! initialization of a standby or backup MSM, the master's saved
//! configuration is copied to local flash". A standby holds both
//! configuration streams as a backup holds them (term, epoch, last sequence
//! number, digest), so that when it becomes backup its hello offers them and
//! the master continues them without a bulk; only application state is sent.
//!
//! The standby reports where each copy is (`Report`) every heartbeat
//! interval and after every frame of its mirror; the master (`standbys`)
//! answers with what it lacks: data runs from the backlog, applied by the
//! receiver as a backup would, a snapshot of the stream's state at a point,
//! or a rebase onto the epoch that continued the stream across a switchover.

use core::time::Duration;

use msm_time::Instant;

use super::stream_set::{CONFIG_STREAMS, Streams};
use super::timers::{Timer, TimerTable};
use crate::error::FrameError;
use crate::event::{Event, EventQueue};
use crate::host::{Host, HostError, ItemKind};
use crate::role::{Slot, Term};
use crate::stream::Failure;
use crate::wire::{self, Body, MirrorItem, MirrorPoint, NO_CURSOR, Origin, SnapshotItem};

/// A snapshot being received.
#[derive(Debug, Clone, Copy, Default)]
struct Incoming {
    epoch: u32,
    seq: u64,
    /// The master's read position the next frame starts at.
    next: u64,
    active: bool,
}

/// A snapshot frame's header: which configuration stream, the master's
/// point it is of (`epoch`, `seq`, the running `digest` there), and the
/// read position of its first item (`cursor`, 0 when it starts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SnapshotPart {
    pub sid: usize,
    pub epoch: u32,
    pub seq: u64,
    pub cursor: u64,
    pub digest: u64,
}

/// What a standby keeps of its configuration mirror besides the streams' receive state.
#[derive(Debug)]
pub(crate) struct Mirror {
    repeat: Duration,
    incoming: [Incoming; CONFIG_STREAMS],
    report_due: bool,
}

impl Mirror {
    pub(crate) const fn new(repeat: Duration) -> Self {
        Mirror {
            repeat,
            incoming: [Incoming { epoch: 0, seq: 0, next: 0, active: false }; CONFIG_STREAMS],
            report_due: false,
        }
    }

    /// Standby of a master from now on: report at once.
    pub(crate) fn start(&mut self, now: Instant, timers: &mut TimerTable) {
        self.report_due = true;
        timers.set(Timer::Report, now);
    }

    /// Standby no more (backup, master, or no master). A snapshot in
    /// progress is abandoned, and its stream holds nothing a master could
    /// resume: its point names the snapshot's epoch, not records of it (the
    /// host keeps its state from before the snapshot, as after any bulk abort).
    pub(crate) fn stop<H: Host>(
        &mut self,
        streams: &mut Streams,
        host: &mut H,
        timers: &mut TimerTable,
        events: &mut EventQueue,
    ) {
        for sid in 0..CONFIG_STREAMS {
            if core::mem::take(&mut self.incoming[sid]).active {
                let stream = Streams::stream(sid);
                let rx = &mut streams.get_mut(sid).rx;
                if rx.abort_bulk() {
                    host.bulk_abort(stream);
                }
                rx.forget_point();
                events.push(Event::CopyAbandoned(stream));
            }
        }
        self.report_due = false;
        timers.stop(Timer::Report);
    }

    /// A data frame of the mirror was applied (or skipped): say where we are now.
    pub(crate) fn data_received(&mut self) {
        self.report_due = true;
    }

    /// Streams a snapshot is being received for: data runs of them wait
    /// (the host stages the snapshot; a run's bulk would start another).
    pub(crate) fn snapshots(&self) -> u32 {
        self.incoming.iter().enumerate().filter(|(_, i)| i.active).fold(0, |m, (sid, _)| m | 1 << sid)
    }

    /// A part of a snapshot of configuration stream `sid` from the master of `term`.
    pub(crate) fn on_snapshot<H: Host>(
        &mut self,
        term: Term,
        part: SnapshotPart,
        mut tail: &[u8],
        streams: &mut Streams,
        host: &mut H,
        events: &mut EventQueue,
    ) -> Result<(), FrameError> {
        let SnapshotPart { sid, epoch, seq, cursor, digest } = part;
        if sid >= CONFIG_STREAMS {
            return Err(FrameError::UnknownStream(sid as u8));
        }
        self.report_due = true;
        let stream = Streams::stream(sid);
        let st = streams.get_mut(sid);
        let inc = &mut self.incoming[sid];
        // (A first frame always starts over: the master restarts a snapshot
        // whose read position it cannot vouch for, and a late copy of one
        // costs only the restart.)
        if cursor == 0 {
            if st.rx.start_over() {
                host.bulk_abort(stream);
            }
            st.counters.bulks += 1;
            if let Err(e) = host.bulk_begin(stream, 0) {
                self.refused(sid, e, streams, host);
                return Ok(());
            }
            st.rx.begin_snapshot(term.raw(), epoch);
            *inc = Incoming { epoch, seq, next: 0, active: true };
        }
        let rx = &st.rx;
        let expected = inc.active
            && rx.in_bulk
            && rx.term == term.raw()
            && (inc.epoch, inc.seq, inc.next) == (epoch, seq, cursor);
        if !expected {
            // Late or out of order: the report says where we are.
            return Ok(());
        }
        st.counters.rx += 1;
        while !tail.is_empty() {
            let item: SnapshotItem<'_> = wire::take(&mut tail).map_err(|_| FrameError::BadRecord)?;
            if item.next == NO_CURSOR {
                return self.finish(sid, digest, streams, host, events);
            }
            if let Err(e) = host.apply(stream, ItemKind::Bulk, item.data) {
                self.refused(sid, e, streams, host);
                return Ok(());
            }
            streams.get_mut(sid).rx.snapshot_item();
            self.incoming[sid].next = item.next;
        }
        Ok(())
    }

    fn finish<H: Host>(
        &mut self,
        sid: usize,
        digest: u64,
        streams: &mut Streams,
        host: &mut H,
        events: &mut EventQueue,
    ) -> Result<(), FrameError> {
        let stream = Streams::stream(sid);
        let inc = core::mem::take(&mut self.incoming[sid]);
        streams.get_mut(sid).rx.abort_bulk();
        if let Err(e) = host.bulk_end(stream) {
            self.refused(sid, e, streams, host);
            return Ok(());
        }
        streams.get_mut(sid).rx.complete_snapshot(inc.seq, digest);
        events.push(Event::StreamSynced(stream));
        Ok(())
    }

    /// The host refused the snapshot of `sid`: it is abandoned (the host
    /// keeps its state from before), counted, and the report asks anew.
    fn refused<H: Host>(&mut self, sid: usize, e: HostError, streams: &mut Streams, host: &mut H) {
        warn!("standby: configuration snapshot refused");
        let st = streams.get_mut(sid);
        st.counters.errors += 1;
        st.rx.refused(Failure::Host(e));
        if st.rx.abort_bulk() {
            host.bulk_abort(Streams::stream(sid));
        }
        self.incoming[sid] = Incoming::default();
    }

    /// The master continued `sid` across a switchover: if we hold exactly
    /// the point it continued from, we hold its `epoch` before record 1.
    pub(crate) fn on_rebase(
        &mut self,
        term: Term,
        sid: usize,
        from: MirrorPoint,
        epoch: u32,
        streams: &mut Streams,
        events: &mut EventQueue,
    ) -> Result<(), FrameError> {
        if sid >= CONFIG_STREAMS {
            return Err(FrameError::UnknownStream(sid as u8));
        }
        self.report_due = true;
        let rx = &mut streams.get_mut(sid).rx;
        let held = MirrorPoint { term: rx.term, epoch: rx.epoch, seq: rx.applied };
        if !(rx.complete && !rx.in_bulk && held == from) {
            return Ok(());
        }
        rx.continue_as(term.raw(), epoch);
        events.push(Event::StreamContinued(Streams::stream(sid)));
        Ok(())
    }

    /// The report, when one is due: after a mirror frame, and every
    /// heartbeat interval (a lost frame or report costs one interval).
    pub(crate) fn poll_transmit(
        &mut self,
        now: Instant,
        from: Origin,
        master: Slot,
        streams: &Streams,
        timers: &mut TimerTable,
        buf: &mut [u8],
    ) -> Option<usize> {
        if !(self.report_due || timers.is_expired(Timer::Report, now)) {
            return None;
        }
        let body = Body::Report { incarnation: from.incarnation };
        let mut w = from.writer(buf, master.raw(), &body)?;
        for (sid, inc) in self.incoming.iter().enumerate() {
            let rx = &streams.get(sid).rx;
            let item = if inc.active && rx.in_bulk {
                let point = MirrorPoint { term: rx.term, epoch: inc.epoch, seq: inc.seq };
                MirrorItem { stream: sid as u8, point, complete: false, cursor: inc.next }
            } else {
                let point = MirrorPoint { term: rx.term, epoch: rx.epoch, seq: rx.applied };
                MirrorItem { stream: sid as u8, point, complete: rx.complete, cursor: NO_CURSOR }
            };
            w.push(&item).ok()?;
        }
        self.report_due = false;
        timers.set(Timer::Report, now + self.repeat);
        Some(w.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::AppRegistry;
    use crate::host::Stream;
    use crate::node::stream_set::SAVED;
    use crate::node::stream_set::StreamStore;
    use crate::stream::Rx;

    /// What a standby's host was asked to do with the saved configuration.
    #[derive(Default)]
    struct Flash {
        staged: Option<heapless::Vec<u8, 64>>,
        saved: heapless::Vec<u8, 64>,
        aborts: u32,
    }

    impl Host for Flash {
        fn bulk_start(&mut self, _: Stream) -> u64 {
            0
        }
        fn bulk_read(&mut self, _: Stream, _: &mut u64, _: &mut [u8]) -> Result<Option<usize>, HostError> {
            Ok(None)
        }
        fn bulk_begin(&mut self, _: Stream, _: u64) -> Result<(), HostError> {
            self.staged = Some(heapless::Vec::new());
            Ok(())
        }
        fn apply(&mut self, _: Stream, _: ItemKind, item: &[u8]) -> Result<(), HostError> {
            let staged = self.staged.as_mut().ok_or(HostError::BadRecord)?;
            staged.extend_from_slice(item).map_err(|_| HostError::Full)
        }
        fn bulk_end(&mut self, _: Stream) -> Result<(), HostError> {
            self.saved = self.staged.take().ok_or(HostError::BadRecord)?;
            Ok(())
        }
        fn bulk_abort(&mut self, _: Stream) {
            self.staged = None;
            self.aborts += 1;
        }
    }

    const TERM: Term = Term::from_raw(0x1FF);

    fn items<'a>(buf: &'a mut [u8], items: &[SnapshotItem<'_>]) -> &'a [u8] {
        let mut n = 0;
        for i in items {
            n += postcard::to_slice(i, &mut buf[n..]).unwrap().len();
        }
        &buf[..n]
    }

    fn part(cursor: u64) -> SnapshotPart {
        SnapshotPart { sid: SAVED, epoch: 4, seq: 9, cursor, digest: 0xD1 }
    }

    #[test]
    fn a_snapshot_in_order_is_the_masters_state_at_its_point() {
        let mut streams = StreamStore::<0>::new(AppRegistry::new());
        let (mut m, mut host, mut events) =
            (Mirror::new(Duration::from_millis(100)), Flash::default(), EventQueue::new());
        let mut buf = [0u8; 64];
        let first = items(&mut buf, &[SnapshotItem { next: 6, data: b"vlan 1" }]);
        m.on_snapshot(TERM, part(0), first, &mut streams, &mut host, &mut events).unwrap();
        // A first frame again starts over (nothing is applied twice); a frame
        // from elsewhere changes nothing.
        let again = items(&mut buf, &[SnapshotItem { next: 6, data: b"vlan 1" }]);
        m.on_snapshot(TERM, part(0), again, &mut streams, &mut host, &mut events).unwrap();
        let again = items(&mut buf, &[SnapshotItem { next: 6, data: b"vlan 1" }]);
        m.on_snapshot(TERM, part(6 + 1), again, &mut streams, &mut host, &mut events).unwrap();
        assert_eq!(m.snapshots(), 1 << SAVED);
        let last = items(&mut buf, &[SnapshotItem { next: 12, data: b"vlan 2" }, SnapshotItem::END]);
        m.on_snapshot(TERM, part(6), last, &mut streams, &mut host, &mut events).unwrap();
        assert_eq!(host.saved.as_slice(), b"vlan 1vlan 2");
        let rx = &streams.get(SAVED).rx;
        assert_eq!((rx.term, rx.epoch, rx.applied, rx.complete, rx.in_bulk), (TERM.raw(), 4, 9, true, false));
        assert_eq!(rx.digest.value(), 0xD1, "the master's digest at the point");
        assert_eq!(m.snapshots(), 0);
    }

    #[test]
    fn becoming_backup_mid_snapshot_offers_nothing_and_the_host_keeps_its_state() {
        let mut streams = StreamStore::<0>::new(AppRegistry::new());
        let (mut m, mut host, mut events) =
            (Mirror::new(Duration::from_millis(100)), Flash::default(), EventQueue::new());
        let mut timers = TimerTable::new();
        let mut buf = [0u8; 64];
        let first = items(&mut buf, &[SnapshotItem { next: 6, data: b"vlan 1" }]);
        m.on_snapshot(TERM, part(0), first, &mut streams, &mut host, &mut events).unwrap();
        while events.pop().is_some() {}
        m.stop(&mut streams, &mut host, &mut timers, &mut events);
        let rx = &streams.get(SAVED).rx;
        assert_eq!((rx.term, rx.epoch, rx.applied, rx.complete, rx.in_bulk), (0, 0, 0, false, false));
        assert_eq!(host.aborts, 1);
        assert_eq!(events.pop(), Some(Event::CopyAbandoned(crate::host::Stream::SavedConfig)), "said");
        assert!(!timers.is_armed(Timer::Report));
    }

    #[test]
    fn a_rebase_takes_only_the_exact_point_it_names() {
        let mut streams = StreamStore::<0>::new(AppRegistry::new());
        let (mut m, mut events) = (Mirror::new(Duration::from_millis(100)), EventQueue::new());
        streams.get_mut(SAVED).rx = Rx::holding(0x1FE, 2, 30);
        let new = Term::from_raw(0x2FF);
        let elsewhere = MirrorPoint { term: 0x1FE, epoch: 2, seq: 29 };
        m.on_rebase(new, SAVED, elsewhere, 1, &mut streams, &mut events).unwrap();
        assert_eq!(streams.get(SAVED).rx.term, 0x1FE, "not the point held");
        let held = MirrorPoint { term: 0x1FE, epoch: 2, seq: 30 };
        m.on_rebase(new, SAVED, held, 1, &mut streams, &mut events).unwrap();
        let rx = &streams.get(SAVED).rx;
        assert_eq!((rx.term, rx.epoch, rx.applied, rx.complete), (0x2FF, 1, 0, true));
        assert!(matches!(
            m.on_rebase(new, 5, held, 1, &mut streams, &mut events),
            Err(FrameError::UnknownStream(5))
        ));
    }
}
