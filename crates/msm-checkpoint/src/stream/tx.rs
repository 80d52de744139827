//! The master's half of a stream: the epoch it sends, what the backup
//! acknowledged, the bulk's progress, and the change ids handed out. Only
//! its own methods change it (`cargo xtask shape` checks).

use core::time::Duration;

use msm_time::Instant;

use super::{Digest, Failure, Mismatch, Phase};

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

/// A state built whole for tests elsewhere in the crate.
#[cfg(test)]
impl Tx {
    /// Synced in `epoch`, recording, with `next_seq` next and the bulk's
    /// `End` at `end_seq`.
    pub(crate) fn synced_at(epoch: u32, next_seq: u64, end_seq: u64) -> Tx {
        Tx { phase: Phase::Synced, recording: true, epoch, next_seq, end_seq: Some(end_seq), ..Tx::new() }
    }
}
