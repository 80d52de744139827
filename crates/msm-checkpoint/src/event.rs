//! What the engine tells the board, through `Node::poll_event`.

use crate::host::Stream;
use crate::role::{Role, Slot, Term};

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event {
    RoleChanged {
        role: Role,
        term: Term,
    },
    /// This node became master. The board starts its applications with the
    /// checkpointed state and runs `config`.
    Promoted {
        term: Term,
        config: ConfigChoice,
        in_sync: bool,
    },
    /// A master saw a higher term and stepped down; a fresh bulk follows.
    SteppedDown {
        term: Term,
    },
    PeerUp(Slot),
    PeerLost(Slot),
    /// Master: a backup said hello and its checkpoint session began.
    BackupAttached(Slot),
    /// A stream's bulk transfer completed (master: acknowledged; backup: applied).
    StreamSynced(Stream),
    Rebulk {
        stream: Stream,
        reason: RebulkReason,
    },
    /// The backup became, or stopped being, in sync.
    InSync(bool),
    /// The backup's copy of the active configuration differs from the master's.
    ConfigDigestMismatch,
    /// A handover did not complete in time; this node stays master.
    FailoverFailed,
}
