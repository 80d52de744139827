//! Per-stream state: what the master has sent and had acknowledged, and what
//! the backup has applied. A node keeps both halves: roles change.

use core::time::Duration;

use msm_time::Instant;

use crate::host::HostError;
use crate::wire::CrcImpl;

/// Config-stream and application digests: CRC-64/XZ over every item in order.
static CRC64: crc::Crc<u64, CrcImpl> = crc::Crc::<u64, CrcImpl>::new(&crc::CRC_64_XZ);

/// A running digest over a stream's items.
#[derive(Clone)]
pub(crate) struct Digest(crc::Digest<'static, u64, CrcImpl>);

impl Digest {
    pub(crate) fn new() -> Self {
        Digest(CRC64.digest())
    }
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    /// The digest so far; the running state continues.
    pub(crate) fn value(&self) -> u64 {
        self.0.clone().finalize()
    }
    /// A digest that continues from `value`, a running digest's
    /// [`value`](Self::value): a standby that received a stream's state as a
    /// snapshot goes on from the master's digest at that point.
    pub(crate) fn resume(value: u64) -> Self {
        // CRC-64/XZ is reflected in and out: the running register is the
        // finalized value without the final XOR; `digest_with_initial` takes
        // it bit-reversed, as it takes an algorithm's `init`.
        Digest(CRC64.digest_with_initial((value ^ crc::CRC_64_XZ.xorout).reverse_bits()))
    }
}

impl core::fmt::Debug for Digest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Digest({:016x})", self.value())
    }
}

/// Where a stream is on the master, in the order it goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Phase {
    /// No backup session.
    Off,
    /// Waiting for the streams it depends on to finish their bulk.
    Waiting,
    /// Bulk records are being read from the host and sent.
    Bulk,
    /// The last bulk record is sent; waiting for its acknowledgement.
    Ending,
    /// Bulk done; every change goes out as a dynamic checkpoint.
    Synced,
    /// The backup cannot take this stream (schema or protocol mismatch).
    Blocked,
    /// The host failed to produce a record; not in sync until re-bulked.
    Failed,
}

impl Phase {
    /// The status word `show checkpoint-data` prints.
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Off => "OFF",
            Phase::Waiting => "WAIT",
            Phase::Bulk | Phase::Ending => "BULK",
            Phase::Synced => "OK",
            Phase::Blocked => "MISMATCH",
            Phase::Failed => "ERROR",
        }
    }
}

/// Why a stream stopped: it waits for a new bulk transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Failure {
    /// The board's [`Host`](crate::Host) refused or failed an operation.
    Host(HostError),
    /// Backup: the bulk's digest differs from the master's (a record lost
    /// or altered on the way, or a host that stored something else).
    Digest,
    /// Master: the backup could not take the stream and asked for a new bulk.
    BackupRefused,
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Failure::Host(e) => write!(f, "host: {e}"),
            Failure::Digest => f.write_str("digest differs from the master's"),
            Failure::BackupRefused => f.write_str("the backup refused it and asked for a new bulk"),
        }
    }
}

/// The backup's schema for a stream differs from the master's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Mismatch {
    /// This node's schema version of the stream.
    pub ours: u16,
    /// `None`: the backup has no application of that name.
    pub theirs: Option<u16>,
}

#[derive(Debug, Clone)]
pub(crate) struct Tx {
    pub phase: Phase,
    pub epoch: u32,
    /// Next sequence number to assign; sequence numbers start at 1 per epoch.
    pub next_seq: u64,
    /// Last sequence number the backup acknowledged in this epoch.
    pub acked: u64,
    /// Sequence number of this epoch's `End`, once appended.
    pub end_seq: Option<u64>,
    pub cursor: u64,
    /// Changes are appended to the backlog (a bulk has begun in this session).
    pub recording: bool,
    pub digest: Digest,
    /// Change ids handed out so far.
    pub changes: u64,
    /// The change id when this node last became master: ids above it were
    /// handed out in the current mastership.
    pub since: u64,
    /// Changes up to this id are inside the current bulk.
    pub covers: u64,
    pub max_acked_change: u64,
    /// Every change up to this id is on the current backup (0 again when
    /// a session ends: a new backup holds nothing yet).
    pub checkpointed: u64,
    /// The highest `checkpointed` any backup reached: kept when a session
    /// ends, so it counts what was ever acknowledged (split brains weigh it).
    pub acked_high: u64,
    pub bulk_sent: u64,
    pub bulk_total: u64,
    pub mismatch: Option<Mismatch>,
    pub failure: Option<Failure>,
    pub rebulks: u32,
    /// Re-bulks the backup asked for since the stream last synced: each
    /// one waits longer before the next bulk starts.
    pub requests: u8,
    /// A bulk held back by that backoff starts no earlier than this.
    pub hold_until: Instant,
    /// After `run msm-failover`: this epoch continues the old master's
    /// stream (its term, epoch and last sequence number), whose state this
    /// node holds whole. A returning old master that offers exactly that
    /// point continues without a bulk (Redis' PSYNC2).
    pub continues: Option<(u64, u32, u64)>,
    /// The point this epoch began from when it continued another's stream
    /// (`continues` at the start of the epoch): kept for the whole epoch, so
    /// a standby holding exactly that point is rebased onto it whenever it
    /// reports, after the new backup took `continues` or before.
    pub origin: Option<(u64, u32, u64)>,
    /// Continued, but the backup has not acknowledged the new epoch yet:
    /// until it does, nothing of the stream is reported checkpointed (if
    /// this node failed now, the backup would not know it holds our state).
    pub unconfirmed: bool,
}

impl Tx {
    pub(crate) fn new() -> Self {
        Tx {
            phase: Phase::Off,
            epoch: 0,
            next_seq: 1,
            acked: 0,
            end_seq: None,
            cursor: 0,
            recording: false,
            digest: Digest::new(),
            changes: 0,
            since: 0,
            covers: 0,
            max_acked_change: 0,
            checkpointed: 0,
            acked_high: 0,
            bulk_sent: 0,
            bulk_total: 0,
            mismatch: None,
            failure: None,
            rebulks: 0,
            requests: 0,
            hold_until: Instant::ZERO,
            continues: None,
            origin: None,
            unconfirmed: false,
        }
    }

    /// Start a new epoch that will begin with a bulk once dependencies allow.
    pub(crate) fn restart(&mut self) {
        self.phase = Phase::Waiting;
        self.epoch = self.epoch.wrapping_add(1);
        self.next_seq = 1;
        self.acked = 0;
        self.end_seq = None;
        self.cursor = 0;
        self.recording = false;
        self.digest = Digest::new();
        self.max_acked_change = 0;
        self.bulk_sent = 0;
        self.bulk_total = 0;
        self.continues = None;
        self.origin = None;
        self.unconfirmed = false;
        self.failure = self.failure.filter(|f| *f == Failure::BackupRefused);
    }

    /// Forget the session (no backup any more); change ids continue.
    pub(crate) fn stop(&mut self) {
        let (changes, since, epoch, acked_high) = (self.changes, self.since, self.epoch, self.acked_high);
        *self = Tx::new();
        self.changes = changes;
        self.since = since;
        self.epoch = epoch;
        self.acked_high = acked_high;
    }

    /// The current backup holds every change up to `upto`.
    pub(crate) fn checkpoint(&mut self, upto: u64) {
        self.checkpointed = self.checkpointed.max(upto);
        self.acked_high = self.acked_high.max(self.checkpointed);
    }

    /// The backup has no such stream, or another schema of it: nothing is
    /// sent of it (`mismatch` says why, for status).
    pub(crate) fn block(&mut self, mismatch: Mismatch) {
        self.phase = Phase::Blocked;
        self.recording = false;
        self.mismatch = Some(mismatch);
    }

    /// A bulk of `total` items starts in this epoch: from now on every
    /// change is recorded, and the bulk covers every change made so far.
    pub(crate) fn begin_bulk(&mut self, total: u64) {
        self.phase = Phase::Bulk;
        self.recording = true;
        self.cursor = 0;
        self.bulk_total = total;
        self.bulk_sent = 0;
        self.covers = self.changes;
    }

    /// The host could not read the bulk: the stream is failed until a new one.
    pub(crate) fn fail(&mut self, failure: Failure) {
        self.phase = Phase::Failed;
        self.failure = Some(failure);
    }

    /// A change or a bulk item goes into the backlog: its sequence number;
    /// the running digest takes its bytes.
    pub(crate) fn record(&mut self, data: &[u8]) -> u64 {
        self.digest.update(data);
        self.take_seq()
    }

    /// The bulk's next item, read up to `cursor`, goes into the backlog.
    pub(crate) fn record_bulk(&mut self, data: &[u8], cursor: u64) -> u64 {
        self.cursor = cursor;
        self.bulk_sent += 1;
        self.record(data)
    }

    /// The bulk's `Begin` goes into the backlog.
    pub(crate) fn record_begin(&mut self) -> u64 {
        self.take_seq()
    }

    /// The bulk's `End` goes into the backlog: the stream syncs when it is
    /// acknowledged.
    pub(crate) fn record_end(&mut self) -> u64 {
        let seq = self.take_seq();
        self.end_seq = Some(seq);
        seq
    }

    fn take_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq - 1
    }

    /// The bulk's `End` is in the backlog: synced once it is acknowledged.
    pub(crate) fn ending(&mut self) {
        self.phase = Phase::Ending;
    }

    /// The backup acknowledged the bulk's `End`: synced, and a resync
    /// backoff starts over.
    pub(crate) fn synced(&mut self) {
        self.phase = Phase::Synced;
        self.requests = 0;
        self.failure = None;
    }

    /// A re-bulk with no backup session: nothing is sent until one.
    pub(crate) fn off(&mut self) {
        self.phase = Phase::Off;
    }

    /// A new epoch that continues another's stream from `point` (whose
    /// whole state this node holds) without a bulk: synced at once,
    /// recording from now on, covering every change made so far.
    pub(crate) fn continue_from(&mut self, point: (u64, u32, u64)) {
        self.restart();
        self.phase = Phase::Synced;
        self.recording = true;
        self.covers = self.changes;
        self.origin = Some(point);
    }

    /// This node took over from a master whose state up to `point` it
    /// holds whole: a new epoch continues from it, and the old master may
    /// come back offering exactly that point.
    pub(crate) fn continue_for_old_master(&mut self, point: (u64, u32, u64)) {
        self.continue_from(point);
        self.continues = Some(point);
    }

    /// No module may continue from the point kept any more (a backup
    /// offered another, or the stream's state moved on).
    pub(crate) fn forget_continuation(&mut self) {
        self.continues = None;
    }

    /// The backup offered exactly `point`, the one this epoch continues
    /// (or a kept one, for a standby's configuration: a new epoch recording
    /// from now on): no bulk, and nothing reported checkpointed until the
    /// backup acknowledges the epoch (see [`confirm`](Self::confirm)).
    pub(crate) fn continued_by_backup(&mut self, point: (u64, u32, u64)) {
        if !self.recording {
            self.continue_from(point);
        }
        self.unconfirmed = true;
    }

    /// This node becomes master holding the previous master's state up to
    /// its change `held`: ids go on from there, so a change's id is its
    /// position in the chassis' stream across takeovers.
    pub(crate) fn continue_ids(&mut self, held: u64) {
        self.changes = self.changes.max(held);
    }

    /// This node becomes master: changes from now on are this mastership's.
    pub(crate) fn begin_mastership(&mut self) {
        self.since = self.changes;
    }

    /// The stream's state changed (a change, or a `save` of the saved
    /// configuration): the next change id. Unrecorded, the change moves our
    /// state on from the point a new backup could continue from.
    pub(crate) fn next_change(&mut self) -> u64 {
        self.changes += 1;
        if !self.recording {
            self.continues = None;
        }
        self.changes
    }

    /// The point (`term`, epoch, sequence number) whose state is exactly
    /// this master's now: every record of the stream is made, none pending
    /// in a bulk. A module that holds that point whole holds our state.
    pub(crate) fn exact_point(&self, term: u64) -> Option<(u64, u32, u64)> {
        if !self.recording || !matches!(self.phase, Phase::Synced | Phase::Ending) {
            return None;
        }
        match (self.next_seq, self.continues) {
            // Continued and nothing recorded since: the point continued
            // from, as long as a module may still offer it.
            (1, Some(point)) => Some(point),
            (next, _) => Some((term, self.epoch, next - 1)),
        }
    }

    /// The session ends but this node stays master: the stream's exact
    /// point, if it has one, is kept as the point a new backup may
    /// continue from (a standby holds the configuration at it).
    pub(crate) fn stop_keeping_point(&mut self, term: u64) {
        // Stopped already (the session ended, and a new backup's hello ends
        // it again): the point kept then still holds, as no change was made
        // since (`next_change` forgets it on the first).
        let point = if self.recording { self.exact_point(term) } else { self.continues };
        self.stop();
        self.continues = point;
    }

    /// The backup acknowledged a record of the continued epoch (or said in
    /// a hello it holds it): what it holds is ours, up to what the epoch
    /// covers.
    pub(crate) fn confirm(&mut self) {
        if self.unconfirmed {
            self.unconfirmed = false;
            self.checkpoint(self.covers);
        }
    }

    /// The backup acknowledged every record up to `seq`, the newest change
    /// among them being `newest`. Returns whether this ended the bulk (the
    /// stream became synced).
    pub(crate) fn acknowledged(&mut self, seq: u64, newest: Option<u64>) -> bool {
        self.acked = seq;
        self.max_acked_change = self.max_acked_change.max(newest.unwrap_or(0));
        let synced = self.phase == Phase::Ending && self.end_seq.is_some_and(|e| e <= seq);
        if synced {
            self.synced();
        }
        if self.phase == Phase::Synced {
            self.checkpoint(self.covers.max(self.max_acked_change));
        }
        synced
    }

    /// A backup's hello matches no schema mismatch any more.
    pub(crate) fn matched(&mut self) {
        self.mismatch = None;
    }

    /// The session's state of the stream is lost (a new bulk follows):
    /// counted as a re-bulk unless nothing was ever sent.
    pub(crate) fn count_rebulk(&mut self) {
        if self.phase != Phase::Off {
            self.rebulks += 1;
        }
    }

    /// The backup refused the stream again: the next bulk waits, a
    /// heartbeat interval for the second request, doubling up to 64 times.
    /// Returns when it may start, if it must wait.
    pub(crate) fn refused(&mut self, now: Instant, heartbeat: Duration) -> Option<Instant> {
        self.requests = self.requests.saturating_add(1);
        self.failure = Some(Failure::BackupRefused);
        if self.requests < 2 {
            return None;
        }
        self.hold_until = now + heartbeat * (1u32 << (self.requests - 2).min(6));
        Some(self.hold_until)
    }

    /// Changes handed out in the current mastership that no backup
    /// acknowledged: above both [`since`](Self::since) and `checkpointed`.
    pub(crate) fn unacknowledged(&self) -> u64 {
        self.changes.saturating_sub(self.since.max(self.checkpointed))
    }

    /// Changes handed out in the current mastership.
    pub(crate) fn made(&self) -> u64 {
        self.changes.saturating_sub(self.since)
    }

    /// Changes handed out in the current mastership that a backup
    /// acknowledged (any backup of it, the current one or an earlier one).
    pub(crate) fn acked(&self) -> u64 {
        self.acked_high.saturating_sub(self.since)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Rx {
    /// Term and epoch of the records held.
    pub term: u64,
    pub epoch: u32,
    pub applied: u64,
    pub in_bulk: bool,
    /// A bulk of this epoch completed: the state is whole.
    pub complete: bool,
    /// The term of the last bulk that completed: the host holds a whole
    /// state of that term, even while a later bulk of it is in progress
    /// (hosts keep their state until `bulk_end`).
    pub held_term: u64,
    pub digest: Digest,
    pub ack_due: bool,
    pub gap: bool,
    /// The state is unusable until a new bulk: ask the master, again every
    /// heartbeat interval until a new epoch begins (a Resync can be lost).
    pub resync: bool,
    /// Why the state became unusable, for status.
    pub failure: Option<Failure>,
    pub bulk_rcvd: u64,
    pub bulk_total: u64,
    /// The master's change id of the last change held: the bulk's `covers`,
    /// then one more a change applied. A new master continues from it.
    pub change: u64,
}

impl Rx {
    pub(crate) fn new() -> Self {
        Rx {
            term: 0,
            epoch: 0,
            applied: 0,
            in_bulk: false,
            complete: false,
            held_term: 0,
            digest: Digest::new(),
            ack_due: false,
            gap: false,
            resync: false,
            failure: None,
            bulk_rcvd: 0,
            bulk_total: 0,
            change: 0,
        }
    }

    /// What an old master holds of a stream it handed over whole: its own
    /// epoch in `term` up to its last acknowledged record, its digest, and
    /// its own change count (every change it made is on the backup).
    pub(crate) fn handed_over(term: u64, tx: &Tx) -> Rx {
        Rx {
            term,
            epoch: tx.epoch,
            applied: tx.acked,
            complete: true,
            held_term: term,
            digest: tx.digest.clone(),
            change: tx.changes,
            ..Rx::new()
        }
    }

    /// The whole state held becomes the start of the master's epoch
    /// `epoch` in `term`, before its record 1 (a continued stream, or a
    /// standby's copy rebased). The change count goes on as it was.
    pub(crate) fn continue_as(&mut self, term: u64, epoch: u32) {
        self.term = term;
        self.epoch = epoch;
        self.applied = 0;
        self.held_term = term;
        self.digest = Digest::new();
        self.resync = false;
        self.gap = false;
    }

    /// A record of a new epoch (`term`, `epoch`): what is held belongs to
    /// an older one. (A bulk in progress is aborted by the caller first.)
    pub(crate) fn new_epoch(&mut self, term: u64, epoch: u32) {
        self.term = term;
        self.epoch = epoch;
        self.applied = 0;
        self.complete = false;
        self.digest = Digest::new();
        self.resync = false;
    }

    /// The bulk in progress, if any, will not complete: whether there was
    /// one (the caller tells the host).
    pub(crate) fn abort_bulk(&mut self) -> bool {
        core::mem::take(&mut self.in_bulk)
    }

    /// What is held is no longer whole (a new transfer starts): whether a
    /// bulk was in progress (the caller tells the host).
    pub(crate) fn start_over(&mut self) -> bool {
        self.complete = false;
        self.abort_bulk()
    }

    /// A bulk's `Begin`: `total` items follow, holding every change up to `covers`.
    pub(crate) fn begin_bulk(&mut self, total: u64, covers: u64) {
        self.change = covers;
        self.in_bulk = true;
        self.bulk_total = total;
        self.bulk_rcvd = 0;
        self.digest = Digest::new();
    }

    /// A bulk item (`bulk`) or a change was applied.
    pub(crate) fn applied_item(&mut self, data: &[u8], bulk: bool) {
        self.digest.update(data);
        if bulk {
            self.bulk_rcvd += 1;
        } else {
            self.change += 1;
        }
    }

    /// The bulk's `End` carries `digest`: whether it is the digest of what
    /// this bulk applied.
    pub(crate) fn end_matches(&self, digest: u64) -> bool {
        self.in_bulk && self.digest.value() == digest
    }

    /// The host holds the bulk whole: the state is whole, of this term.
    pub(crate) fn complete_bulk(&mut self) {
        self.in_bulk = false;
        self.complete = true;
        self.held_term = self.term;
        self.failure = None;
    }

    /// A configuration snapshot of the master's epoch `epoch` in `term`
    /// begins (a standby's copy).
    pub(crate) fn begin_snapshot(&mut self, term: u64, epoch: u32) {
        self.new_epoch(term, epoch);
        self.in_bulk = true;
        self.bulk_rcvd = 0;
        self.bulk_total = 0;
    }

    /// An item of the snapshot was applied.
    pub(crate) fn snapshot_item(&mut self) {
        self.bulk_rcvd += 1;
    }

    /// The host holds the snapshot whole: the state at the master's record
    /// `seq` of the epoch, whose running digest was `digest`.
    pub(crate) fn complete_snapshot(&mut self, seq: u64, digest: u64) {
        self.applied = seq;
        self.complete = true;
        self.held_term = self.term;
        self.digest = Digest::resume(digest);
        self.failure = None;
    }

    /// Record `seq` was applied, in order.
    pub(crate) fn applied_to(&mut self, seq: u64) {
        self.applied = seq;
    }

    /// A record beyond the next one arrived: the acknowledgement says so.
    pub(crate) fn saw_gap(&mut self) {
        self.gap = true;
    }

    /// The master is owed an acknowledgement of the stream.
    pub(crate) fn owe_ack(&mut self) {
        self.ack_due = true;
    }

    /// The acknowledgement went out.
    pub(crate) fn ack_sent(&mut self) {
        self.ack_due = false;
        self.gap = false;
    }

    /// No master to acknowledge or ask any more.
    pub(crate) fn stop_asking(&mut self) {
        self.ack_due = false;
        self.resync = false;
    }

    /// The state is unusable until a new bulk (`ask`: ask the master for one).
    pub(crate) fn fail(&mut self, failure: Failure, ask: bool) {
        self.resync = ask;
        self.complete = false;
        self.failure = Some(failure);
    }

    /// The host refused a transfer of the stream (for status).
    pub(crate) fn refused(&mut self, failure: Failure) {
        self.failure = Some(failure);
    }

    /// Records of `term` held here are of another boot of its master:
    /// hold no point of it, nor a whole state of it.
    pub(crate) fn forget_term(&mut self, term: u64) {
        if self.term == term {
            self.forget_point();
        }
        if self.held_term == term {
            self.held_term = 0;
        }
    }

    /// Hold no point a master could resume or continue from (the host keeps
    /// its state; only a bulk replaces it).
    pub(crate) fn forget_point(&mut self) {
        self.term = 0;
        self.epoch = 0;
        self.applied = 0;
        self.complete = false;
    }
}

/// States built whole for tests elsewhere in the crate.
#[cfg(test)]
impl Tx {
    /// Synced in `epoch`, recording, with `next_seq` next and the bulk's
    /// `End` at `end_seq`.
    pub(crate) fn synced_at(epoch: u32, next_seq: u64, end_seq: u64) -> Tx {
        Tx { phase: Phase::Synced, recording: true, epoch, next_seq, end_seq: Some(end_seq), ..Tx::new() }
    }
}

#[cfg(test)]
impl Rx {
    /// Holding the whole state of the master's epoch `epoch` in `term` up to record `applied`.
    pub(crate) fn holding(term: u64, epoch: u32, applied: u64) -> Rx {
        Rx { term, epoch, applied, complete: true, held_term: term, ..Rx::new() }
    }
}

/// Frame and error counters of one stream, for `show checkpoint-data`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Runs and acknowledgements sent for the stream.
    pub tx: u64,
    /// Runs and acknowledgements received for the stream.
    pub rx: u64,
    /// Records refused or failed.
    pub errors: u64,
    /// Bulk transfers begun: sent (master) or received (backup). A stream
    /// resumed or continued across a switchover adds none.
    pub bulks: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct StreamState {
    pub tx: Tx,
    pub rx: Rx,
    pub counters: Counters,
}

impl StreamState {
    pub(crate) fn new() -> Self {
        StreamState { tx: Tx::new(), rx: Rx::new(), counters: Counters::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_digest_continues_as_the_running_one() {
        let mut whole = Digest::new();
        whole.update(b"vlan 10 name red\n");
        let resumed_from = whole.value();
        whole.update(b"vlan 20 name blue\n");
        let mut resumed = Digest::resume(resumed_from);
        assert_eq!(resumed.value(), resumed_from);
        resumed.update(b"vlan 20 name blue\n");
        assert_eq!(resumed.value(), whole.value());
        assert_eq!(Digest::resume(Digest::new().value()).value(), Digest::new().value());
    }
}
