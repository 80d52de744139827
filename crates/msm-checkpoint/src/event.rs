//! What the engine tells the board, through `Node::poll_event`.

use heapless::Deque;

use crate::host::Stream;
use crate::role::{Role, Slot, Term};
use crate::status::{AppsFrom, SplitRule};
use crate::takeover::TakeoverCause;

/// Which configuration a node runs after becoming master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConfigChoice {
    /// The master's active configuration, received in full (XOS: the normal case).
    MastersActive,
    /// Its own saved configuration from flash: runtime sync never completed,
    /// or this node was elected at boot.
    OwnSaved,
}

/// Why a stream starts a new bulk transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RebulkReason {
    /// The backlog no longer covers what the backup is missing.
    BacklogOverflow,
    /// The backup asked for it (digest mismatch, storage error).
    BackupRequest,
    /// `save` on the master: the saved configuration changed.
    ConfigSaved,
    /// After `run msm-failover`, the returning old master offered another
    /// point than the one the new master continues from (its state moved
    /// on, or another module came back): it cannot continue without a bulk.
    Diverged,
}

/// Something the board should know or act on, from `Node::poll_event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event {
    /// A standby stopped copying a configuration stream in the middle of a
    /// snapshot (it was made backup, or follows another master): its copy
    /// is incomplete, so the master bulks the stream to it.
    CopyAbandoned(Stream),
    /// This node's role changed (INIT, MASTER, BACKUP, STANDBY).
    RoleChanged {
        /// The new role.
        role: Role,
        /// The master's term it holds in.
        term: Term,
    },
    /// This node became master. The board starts its applications with the
    /// checkpointed state and runs `config`.
    Promoted {
        /// The term this node claimed.
        term: Term,
        /// Which configuration to run.
        config: ConfigChoice,
        /// The node was an in-sync backup: nothing checkpointed is missing.
        in_sync: bool,
        /// Where its application state comes from.
        apps: AppsFrom,
        /// It held the whole state of its master's term (every stream's
        /// bulk complete in that term): nothing the master reported
        /// checkpointed is missing. True of a handover while the master
        /// drained, when its heartbeat no longer says "in sync".
        whole: bool,
        /// Why it took over.
        cause: TakeoverCause,
    },
    /// A master saw a higher term and stepped down; a fresh bulk follows.
    SteppedDown {
        /// The higher term that made it step down.
        term: Term,
    },
    /// Split brain: this node was master and heard a master of a higher term
    /// (both were master at once, after a partition longer than the
    /// detection time). It stepped down (a [`SteppedDown`](Event::SteppedDown)
    /// comes just before) and follows the winner, whose state replaces its own.
    /// Not raised on a handover (`run msm-failover`).
    SplitBrain {
        /// The master it now follows.
        winner: Slot,
        /// The winner's term.
        winner_term: Term,
        /// The term this node was master in.
        our_term: Term,
        /// Changes (application records and active-configuration lines)
        /// this node made as master that no backup acknowledged: they are
        /// not in the winner's state and are discarded here.
        discarded: u64,
        /// Which rule decided.
        rule: SplitRule,
    },
    /// A master of the lower term met a rival master and judged that it
    /// holds the state (see [`SplitRule`]): it stays master in `term`, a
    /// term above the rival's, which steps down to it. Its own backup
    /// session starts again in the new term.
    SplitBrainWon {
        /// The rival, which steps down.
        loser: Slot,
        /// The rival's term, overruled.
        loser_term: Term,
        /// The term this node now holds.
        term: Term,
        /// Why this node stays.
        rule: SplitRule,
    },
    /// A module was heard from after silence.
    PeerUp(Slot),
    /// A module was silent for the detection interval.
    PeerLost(Slot),
    /// Master: a backup said hello and its checkpoint session began.
    BackupAttached(Slot),
    /// A stream's bulk transfer completed (master: acknowledged; backup: applied).
    StreamSynced(Stream),
    /// Backup: a stream continues across a switchover without a bulk (the
    /// new master took over from this node with `run msm-failover`, and
    /// what this node holds is what it continues from).
    StreamContinued(Stream),
    /// A stream starts a new bulk transfer.
    Rebulk {
        /// The stream starting over.
        stream: Stream,
        /// Why.
        reason: RebulkReason,
    },
    /// The backup became, or stopped being, in sync.
    InSync(bool),
    /// The backup's copy of the active configuration differs from the master's.
    ConfigDigestMismatch,
    /// A handover did not complete in time; this node stays master.
    FailoverFailed,
}

/// Events waiting for the board; when it does not poll in time the oldest
/// go first, and are counted.
#[derive(Debug)]
pub(crate) struct EventQueue {
    queue: Deque<Event, 16>,
    dropped: u32,
}

impl EventQueue {
    pub(crate) const fn new() -> Self {
        EventQueue { queue: Deque::new(), dropped: 0 }
    }

    pub(crate) fn push(&mut self, e: Event) {
        if self.queue.is_full() {
            self.queue.pop_front();
            self.dropped = self.dropped.saturating_add(1);
        }
        let _ = self.queue.push_back(e);
    }

    pub(crate) fn pop(&mut self) -> Option<Event> {
        self.queue.pop_front()
    }

    pub(crate) fn dropped(&self) -> u32 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_it() {
        let mut q = EventQueue::new();
        for i in 0..20u8 {
            q.push(Event::PeerUp(Slot::new(i % 4).unwrap()));
        }
        assert_eq!(q.dropped(), 4);
        assert_eq!(q.pop(), Some(Event::PeerUp(Slot::new(0).unwrap())), "event 4 is the oldest kept");
        let mut n = 1;
        while q.pop().is_some() {
            n += 1;
        }
        assert_eq!(n, 16);
    }
}
