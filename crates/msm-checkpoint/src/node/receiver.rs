//! The backup's half of a checkpoint session: saying hello with what it
//! holds, applying data runs in order through the board's [`Host`], checking
//! bulk and config digests, asking for a new bulk (Resync) when a stream's
//! state is unusable, and acknowledging what it applied.

use core::time::Duration;

use msm_time::Instant;

use super::stream_set::{ACTIVE, CONFIG_STREAMS, Streams};
use super::timers::{Timer, TimerTable};
use crate::error::FrameError;
use crate::event::{Event, EventQueue};
use crate::host::{Host, ItemKind};
use crate::role::{Slot, Term};
use crate::status::{SyncState, percent, stream_name};
use crate::stream::{Failure, Rx};
use crate::wire::{self, AckItem, Body, ContinuedItem, DigestMark, Origin, Record, StreamHello};

/// Whom a data frame is read for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reader {
    /// Our backup session: every stream; a failed stream asks for a bulk.
    Backup,
    /// Our configuration mirror as a standby: configuration streams only,
    /// those in `copying` (a snapshot of them in progress) left alone, and
    /// a failed stream waits for the master to see it in our report.
    Standby { copying: u32 },
}

/// What the backup knows of its session with the master.
#[derive(Debug)]
pub(crate) struct Receiver {
    /// How often hellos and Resyncs repeat until answered.
    repeat: Duration,
    /// Our hello's id; the master echoes it in heartbeats while it sends to us.
    hello_id: u32,
    hello_acked: bool,
    /// Next stream to list in a multi-frame hello.
    hello_part: usize,
    /// Where the master's active-config stream is, with its digest.
    master_config: Option<DigestMark>,
    master_in_sync: bool,
    /// The last hello declared the release before's schema versions.
    older_master: bool,
    /// Streams whose Resync goes out in this round.
    resync_round: u32,
    /// The host may hold application state of a role this node had in
    /// this boot (master or backup), not dropped since.
    apps_held: bool,
}

impl Receiver {
    pub(crate) const fn new(repeat: Duration) -> Self {
        Receiver {
            repeat,
            hello_id: 0,
            hello_acked: false,
            hello_part: 0,
            master_config: None,
            master_in_sync: false,
            older_master: false,
            resync_round: 0,
            apps_held: false,
        }
    }

    /// The schema versions the last hello declared were the release before's.
    pub(crate) fn declared_older(&self) -> bool {
        self.older_master
    }

    pub(crate) fn hello_id(&self) -> u32 {
        self.hello_id
    }

    pub(crate) fn hello_acked(&self) -> bool {
        self.hello_acked
    }

    /// Start a new session: hello again from the first stream.
    pub(crate) fn new_hello(&mut self, now: Instant, timers: &mut TimerTable) {
        self.hello_id = self.hello_id.wrapping_add(1).max(1);
        self.hello_acked = false;
        self.hello_part = 0;
        timers.set(Timer::Hello, now);
    }

    /// The master took our hello. Its tail names the streams it continues
    /// across a switchover (see `Sender::continue_for_old_master`): what we
    /// hold of them is whole and becomes the start of its new epoch.
    pub(crate) fn on_hello_ack(
        &mut self,
        hello_id: u32,
        term: Term,
        mut tail: &[u8],
        streams: &mut Streams,
        events: &mut EventQueue,
        timers: &mut TimerTable,
    ) -> Result<(), FrameError> {
        if hello_id != self.hello_id {
            return Ok(());
        }
        // A repeat (our acknowledgement of a continued stream was lost):
        // acknowledge the streams already continued again.
        let repeat = self.hello_acked;
        self.hello_acked = true;
        timers.stop(Timer::Hello);
        while !tail.is_empty() {
            let c: ContinuedItem = wire::take(&mut tail).map_err(|_| FrameError::BadRecord)?;
            let sid = usize::from(c.stream);
            if sid >= streams.len() {
                return Err(FrameError::UnknownStream(c.stream));
            }
            let rx = &mut streams.get_mut(sid).rx;
            if repeat {
                if rx.term == term.raw() && rx.epoch == c.epoch {
                    rx.owe_ack();
                }
                continue;
            }
            if !rx.complete || rx.in_bulk {
                continue; // not what we offered: its data will ask for a bulk
            }
            rx.continue_as(term.raw(), c.epoch);
            // Acknowledge the new epoch at once: the master reports the
            // stream checkpointed only from then on.
            rx.owe_ack();
            events.push(Event::StreamContinued(Streams::stream(sid)));
        }
        Ok(())
    }

    /// A new master: nothing is known of it yet.
    pub(crate) fn follow(&mut self, timers: &mut TimerTable) {
        self.master_config = None;
        self.master_in_sync = false;
        self.hello_acked = false;
        timers.stop(Timer::Hello);
    }

    /// Our master's heartbeat: its view of our sync and its config digest.
    pub(crate) fn master_heartbeat(&mut self, in_sync: bool, config: DigestMark) {
        self.master_in_sync = in_sync;
        self.master_config = Some(config);
    }

    /// Bulks in progress will not complete (new master, lost master, promotion).
    pub(crate) fn abort_bulks<H: Host>(
        &mut self,
        streams: &mut Streams,
        host: &mut H,
        timers: &mut TimerTable,
    ) {
        for sid in streams.ids() {
            let rx = &mut streams.get_mut(sid).rx;
            if rx.abort_bulk() {
                host.bulk_abort(Streams::stream(sid));
            }
            rx.stop_asking();
        }
        self.resync_round = 0;
        timers.stop(Timer::Resync);
    }

    /// This node became master or backup: its host holds application state.
    pub(crate) fn holding_apps(&mut self) {
        self.apps_held = true;
    }

    /// Does the host hold application state of an earlier role of this boot?
    pub(crate) fn apps_held(&self) -> bool {
        self.apps_held
    }

    /// The master made another module its backup: what this node's host
    /// holds of the applications is a copy of nothing the master
    /// acknowledges from now on, so it is emptied ([`Host::forget`]) and
    /// the streams hold no point. True if anything was held.
    pub(crate) fn drop_apps<H: Host>(&mut self, streams: &mut Streams, host: &mut H) -> bool {
        if !core::mem::take(&mut self.apps_held) {
            return false;
        }
        for sid in streams.ids().skip(CONFIG_STREAMS) {
            let stream = Streams::stream(sid);
            let rx = &mut streams.get_mut(sid).rx;
            if rx.in_bulk {
                host.bulk_abort(stream);
            }
            *rx = Rx::new();
            if host.forget(stream).is_err() {
                warn!("a standby could not empty an application's state: the host refused");
            }
        }
        true
    }

    /// Backup again after a time as standby: streams still waiting for a
    /// new bulk ask for it again.
    pub(crate) fn resume_resyncs(&self, now: Instant, streams: &Streams, timers: &mut TimerTable) {
        if streams.ids().any(|i| streams.get(i).rx.resync) {
            timers.set_earliest(Timer::Resync, now);
        }
    }

    /// A data frame from our master in `term`, read for `reader`.
    // Eight arguments, kept: the frame (term, tail), whom it is read for,
    // and the four parts of the node a record changes; a struct bundling
    // some would exist for this call alone.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_data<H: Host>(
        &mut self,
        term: Term,
        mut tail: &[u8],
        streams: &mut Streams,
        host: &mut H,
        events: &mut EventQueue,
        timers: &mut TimerTable,
        reader: Reader,
    ) -> Result<(), FrameError> {
        let standby = reader != Reader::Backup;
        // The current run: stream, next sequence number, and whether to skip the rest of it.
        let mut run: Option<(usize, u64, bool)> = None;
        while !tail.is_empty() {
            let Ok(rec) = wire::take::<Record<'_>>(&mut tail) else {
                if let Some((sid, _, _)) = run {
                    streams.get_mut(sid).counters.errors += 1;
                }
                return Err(FrameError::BadRecord);
            };
            if let Record::Run { stream, epoch, first_seq } = rec {
                let sid = stream as usize;
                if sid >= streams.len() || (standby && sid >= CONFIG_STREAMS) {
                    return Err(FrameError::UnknownStream(stream));
                }
                // A standby's mirror only extends the epoch it holds (new
                // ones come as snapshots or rebases): data of another epoch
                // is for a backup session it is not in (a late frame).
                let rx = &streams.get(sid).rx;
                let other = rx.term != term.raw() || rx.epoch != epoch;
                let held = match reader {
                    Reader::Backup => false,
                    Reader::Standby { copying } => copying & (1 << sid) != 0 || other,
                };
                let skip = held || !start_run(streams, sid, term, epoch, host);
                run = Some((sid, first_seq, skip));
                continue;
            }
            let Some((sid, seq, skip)) = run.as_mut() else { return Err(FrameError::BadRecord) };
            let sid = *sid;
            let this = *seq;
            *seq += 1;
            if *skip {
                continue;
            }
            let applied = streams.get(sid).rx.applied;
            if this <= applied {
                continue;
            }
            if this > applied + 1 {
                streams.get_mut(sid).rx.saw_gap();
                *skip = true;
                continue;
            }
            if let Err(failure) = apply(streams, sid, rec, host, events) {
                warn!("record refused: the stream waits for a new bulk");
                fail(streams, sid, failure, timers, !standby);
                if failure == Failure::Digest && sid == ACTIVE {
                    events.push(Event::ConfigDigestMismatch);
                }
                *skip = true;
                continue;
            }
            streams.get_mut(sid).rx.applied_to(this);
            if sid == ACTIVE {
                self.compare_config_digest(term, streams, events, timers, !standby);
            }
        }
        Ok(())
    }

    /// Compare our active-config digest with the master's at the same point
    /// (`resync`: as backup, ask for a new bulk if they differ).
    pub(crate) fn compare_config_digest(
        &mut self,
        term: Term,
        streams: &mut Streams,
        events: &mut EventQueue,
        timers: &mut TimerTable,
        resync: bool,
    ) {
        let Some(m) = self.master_config else { return };
        let rx = &streams.get(ACTIVE).rx;
        if rx.term != term.raw() || rx.epoch != m.epoch || rx.applied != m.seq || m.seq == 0 {
            return;
        }
        if rx.digest.value() != m.digest && !rx.resync {
            warn!("active config digest differs from the master's");
            fail(streams, ACTIVE, Failure::Digest, timers, resync);
            events.push(Event::ConfigDigestMismatch);
        }
    }

    /// The next frame for the master: hello parts, Resyncs, then acks.
    /// `older`: the master speaks only an older protocol version (the
    /// release before): hellos declare its schema versions.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn poll_transmit(
        &mut self,
        now: Instant,
        from: Origin,
        master: Slot,
        older: bool,
        streams: &mut Streams,
        timers: &mut TimerTable,
        buf: &mut [u8],
    ) -> Option<usize> {
        if timers.is_expired(Timer::Hello, now) {
            self.older_master = older;
            return self.hello(now, from, master, streams, timers, buf);
        }
        let term = from.term.raw();
        if timers.is_expired(Timer::Resync, now) {
            self.resync_round = streams
                .ids()
                .filter(|&i| streams.get(i).rx.resync && streams.get(i).rx.term == term)
                .fold(0, |m, i| m | 1 << i);
            if self.resync_round == 0 {
                timers.stop(Timer::Resync);
            } else {
                timers.set(Timer::Resync, now + self.repeat);
            }
        }
        while self.resync_round != 0 {
            let sid = self.resync_round.trailing_zeros() as usize;
            self.resync_round &= !(1 << sid);
            let st = streams.get_mut(sid);
            if !(st.rx.resync && st.rx.term == term) {
                continue;
            }
            let body = Body::Resync { stream: sid as u8, epoch: st.rx.epoch, reason: 0 };
            let n = from.writer(buf, master.raw(), &body)?.finish();
            st.counters.tx += 1;
            return Some(n);
        }
        acks(from, master, streams, buf)
    }

    /// Hello in as many frames as the stream table needs; all parts go out
    /// in consecutive polls, then again every heartbeat until acknowledged.
    fn hello(
        &mut self,
        now: Instant,
        from: Origin,
        master: Slot,
        streams: &Streams,
        timers: &mut TimerTable,
        buf: &mut [u8],
    ) -> Option<usize> {
        let n = streams.len();
        let start = self.hello_part.min(n);
        let body = Body::Hello { incarnation: from.incarnation, hello_id: self.hello_id, total: n as u8 };
        let mut w = from.writer(buf, master.raw(), &body)?;
        let mut sid = start;
        while sid < n {
            let rx = &streams.get(sid).rx;
            let h = StreamHello {
                id: sid as u8,
                name: streams.name(sid),
                schema: streams.declared_schema(sid, self.older_master),
                term: rx.term,
                epoch: rx.epoch,
                seq: rx.applied,
                complete: rx.complete,
            };
            if w.push(&h).is_err() {
                break;
            }
            sid += 1;
        }
        if sid == start && start < n {
            return None; // not even one entry fits: the buffer is smaller than max_frame
        }
        if sid >= n {
            self.hello_part = 0;
            timers.set(Timer::Hello, now + self.repeat);
        } else {
            self.hello_part = sid;
        }
        Some(w.finish())
    }

    /// Why the backup is or is not in sync, from its own view.
    /// Every stream's bulk completed in `term`: this node holds the whole
    /// state of that master (every change it reported checkpointed), as a
    /// takeover would find it, whatever the master last said of the sync.
    pub(crate) fn holds_whole(&self, term: Term, streams: &Streams) -> bool {
        term != Term::NONE
            && streams.ids().all(|sid| {
                let rx = &streams.get(sid).rx;
                rx.complete && rx.term == term.raw()
            })
    }

    pub(crate) fn sync_state(&self, term: Term, streams: &Streams) -> SyncState {
        for sid in streams.ids() {
            let rx = &streams.get(sid).rx;
            if !(rx.complete && rx.term == term.raw()) {
                let percent = percent(rx.bulk_rcvd, rx.bulk_total);
                return SyncState::Syncing { stream: stream_name(streams.name(sid)), percent };
            }
        }
        if self.master_in_sync { SyncState::InSync } else { SyncState::AwaitingMaster }
    }
}

/// A run of `sid` records in `epoch` starts. False: the run is stale, skip it.
fn start_run<H: Host>(streams: &mut Streams, sid: usize, term: Term, epoch: u32, host: &mut H) -> bool {
    let st = streams.get_mut(sid);
    st.counters.rx += 1;
    st.rx.owe_ack();
    let rx = &mut st.rx;
    if rx.term == term.raw() && epoch < rx.epoch {
        return false; // an old epoch, retransmitted late
    }
    if rx.term != term.raw() || epoch > rx.epoch {
        // A new master or a new bulk: what we hold belongs to an older epoch.
        // (If this is not the epoch's first record, the gap logic asks for it.)
        if rx.abort_bulk() {
            host.bulk_abort(Streams::stream(sid));
        }
        rx.new_epoch(term.raw(), epoch);
    }
    true
}

/// Apply one record of `sid` through the host, in order.
fn apply<H: Host>(
    streams: &mut Streams,
    sid: usize,
    rec: Record<'_>,
    host: &mut H,
    events: &mut EventQueue,
) -> Result<(), Failure> {
    let stream = Streams::stream(sid);
    let st = streams.get_mut(sid);
    if matches!(rec, Record::Begin { .. }) {
        st.counters.bulks += 1;
    }
    let rx = &mut st.rx;
    match rec {
        Record::Begin { total, covers } => {
            host.bulk_begin(stream, total).map_err(Failure::Host)?;
            rx.begin_bulk(total, covers);
        }
        Record::Bulk(b) | Record::Change(b) => {
            let kind = if matches!(rec, Record::Bulk(_)) { ItemKind::Bulk } else { ItemKind::Dynamic };
            host.apply(stream, kind, b).map_err(Failure::Host)?;
            rx.applied_item(b, kind == ItemKind::Bulk);
        }
        Record::Run { .. } => {} // read by on_data
        Record::End { digest } => {
            if !rx.end_matches(digest) {
                warn!("bulk digest mismatch");
                rx.abort_bulk();
                host.bulk_abort(stream);
                return Err(Failure::Digest);
            }
            host.bulk_end(stream).map_err(Failure::Host)?;
            rx.complete_bulk();
            events.push(Event::StreamSynced(stream));
        }
    }
    Ok(())
}

/// The stream's state is unusable until a new bulk: ask the master for one
/// now (`ask`; a standby's report shows it instead).
fn fail(streams: &mut Streams, sid: usize, failure: Failure, timers: &mut TimerTable, ask: bool) {
    let st = streams.get_mut(sid);
    st.counters.errors += 1;
    st.rx.fail(failure, ask);
    if ask {
        timers.set(Timer::Resync, Instant::ZERO);
    }
}

/// One frame acknowledging every stream with news.
fn acks(from: Origin, master: Slot, streams: &mut Streams, buf: &mut [u8]) -> Option<usize> {
    let term = from.term.raw();
    let due = |streams: &Streams, i: usize| streams.get(i).rx.ack_due && streams.get(i).rx.term == term;
    if !streams.ids().any(|i| due(streams, i)) {
        return None;
    }
    let mut w = from.writer(buf, master.raw(), &Body::Ack)?;
    for sid in streams.ids() {
        if !due(streams, sid) {
            continue;
        }
        let st = streams.get_mut(sid);
        let item = AckItem { stream: sid as u8, epoch: st.rx.epoch, seq: st.rx.applied, gap: st.rx.gap };
        if w.push(&item).is_err() {
            break; // the rest go in the next frame
        }
        st.rx.ack_sent();
        st.counters.tx += 1;
    }
    Some(w.finish())
}
