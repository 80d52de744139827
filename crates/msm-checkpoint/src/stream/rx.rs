//! The backup's (or a standby's) half of a stream: the master's epoch it
//! holds records of, how far, whether its state is whole, and what it owes
//! the master. Only its own methods change it (`cargo xtask shape` checks).

use super::{Digest, Failure, Tx};

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

/// A state built whole for tests elsewhere in the crate.
#[cfg(test)]
impl Rx {
    /// Holding the whole state of the master's epoch `epoch` in `term` up to record `applied`.
    pub(crate) fn holding(term: u64, epoch: u32, applied: u64) -> Rx {
        Rx { term, epoch, applied, complete: true, held_term: term, ..Rx::new() }
    }
}
