//! Errors the engine returns to its callers. Each names what was at fault.

use core::fmt;

use crate::role::Term;
use crate::status::{FrameErrors, SyncState};
use crate::wire::WireError;

/// A frame was refused. Counted in the node's status; the node's state is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The bytes are not a frame this node can use.
    Wire(WireError),
    /// The frame claims to come from this node's own slot (looped back, or two
    /// modules configured with one slot).
    OwnSlot,
    /// From a master of an older term (invariant 5: a stale master is refused).
    StaleTerm {
        /// The frame's term.
        got: Term,
        /// This node's term.
        ours: Term,
    },
    /// A stream id this node does not have.
    UnknownStream(u8),
    /// A message this node does not take from that sender in its role (a
    /// hello from a standby, data from a module that is not our master).
    Unexpected {
        /// The sender.
        from: crate::role::Slot,
    },
    /// A record list that does not decode, although the CRC matched.
    BadRecord,
    /// The tag does not verify under any key this node holds.
    Auth {
        /// The slot the frame claims.
        from: u8,
        /// The key id it carries (0: none).
        key_id: u8,
    },
    /// Authentic, but seen already or from an earlier boot of the sender.
    Replay {
        /// The sender.
        from: crate::role::Slot,
    },
    /// Authentic, a copy of a heartbeat already taken: it came on another
    /// backplane path as well (redundant links send heartbeats on each).
    Duplicate {
        /// The sender.
        from: crate::role::Slot,
    },
    /// Authentic, from a boot of the sender that has not proven it is alive
    /// now (no heartbeat of it echoed a recent challenge of ours): a capture
    /// of an earlier boot, or a boot whose handshake is still under way.
    /// Only its heartbeat's challenge is kept, to answer it.
    Unproven {
        /// The sender.
        from: crate::role::Slot,
    },
    /// Authentic, but its counter is further ahead of the last one taken
    /// from that boot than a module can send between two heartbeats
    /// ([`MAX_COUNTER_JUMP`](crate::MAX_COUNTER_JUMP)): refused, never adopted.
    CounterJump {
        /// The sender.
        from: crate::role::Slot,
    },
    /// A term beyond [`MAX_TERM_COUNT`](crate::MAX_TERM_COUNT), or more
    /// than [`MAX_TERM_JUMP`](crate::MAX_TERM_JUMP) ahead of ours.
    TermOutOfRange {
        /// The frame's term.
        got: Term,
        /// The newest term this node knows.
        ours: Term,
    },
}

impl FrameErrors {
    /// Count one refused frame under its reason.
    pub(crate) fn count(&mut self, e: &FrameError) {
        let counter = match e {
            FrameError::Wire(WireError::BadCrc) => &mut self.bad_crc,
            FrameError::Wire(WireError::UnsupportedVersion { from, got }) => {
                if let Some(r) = self.by_slot.get_mut(*from as usize) {
                    r.version += 1;
                    r.last_version = *got;
                }
                &mut self.version
            }
            FrameError::Auth { from, .. } => {
                if let Some(r) = self.by_slot.get_mut(*from as usize) {
                    r.auth += 1;
                }
                &mut self.auth
            }
            FrameError::Replay { from } => {
                self.by_slot[from.index()].replay += 1;
                &mut self.replay
            }
            FrameError::Duplicate { .. } => &mut self.duplicate,
            FrameError::Unproven { from } => {
                self.by_slot[from.index()].unproven += 1;
                &mut self.unproven
            }
            FrameError::CounterJump { from } => {
                self.by_slot[from.index()].replay += 1;
                &mut self.counter_jump
            }
            FrameError::TermOutOfRange { .. } => &mut self.term_range,
            FrameError::Wire(_) | FrameError::BadRecord => &mut self.malformed,
            FrameError::StaleTerm { .. } => &mut self.stale_term,
            FrameError::UnknownStream(_) => &mut self.unknown_stream,
            FrameError::Unexpected { .. } => &mut self.unexpected,
            FrameError::OwnSlot => &mut self.own_slot,
        };
        *counter += 1;
    }
}

impl From<WireError> for FrameError {
    fn from(e: WireError) -> Self {
        FrameError::Wire(e)
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Wire(e) => write!(f, "{e}"),
            FrameError::OwnSlot => f.write_str("frame claims this node's own slot"),
            FrameError::StaleTerm { got, ours } => {
                write!(f, "frame from stale term {got} (current term {ours})")
            }
            FrameError::UnknownStream(s) => write!(f, "unknown stream id {s}"),
            FrameError::Unexpected { from } => write!(f, "unexpected message from {from} in this role"),
            FrameError::BadRecord => f.write_str("record list does not decode"),
            FrameError::Auth { from, key_id: 0 } => {
                write!(f, "frame claiming slot {from} is unauthenticated and this node requires a key")
            }
            FrameError::Auth { from, key_id } => {
                write!(f, "frame claiming slot {from} failed authentication (key id {key_id})")
            }
            FrameError::Replay { from } => write!(f, "replayed frame from {from}"),
            FrameError::Duplicate { from } => write!(f, "heartbeat from {from} also came on another path"),
            FrameError::Unproven { from } => {
                write!(f, "frame from a boot of {from} that has not proven it is alive now")
            }
            FrameError::CounterJump { from } => {
                write!(f, "frame from {from} with a counter implausibly far ahead of its last one")
            }
            FrameError::TermOutOfRange { got, ours } => {
                write!(f, "term {got} is out of range (newest known {ours})")
            }
        }
    }
}

/// A change (an application record or a configuration line) was refused;
/// nothing of it was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeError {
    /// Only the master records changes.
    NotMaster,
    /// `run msm-failover` is draining the backlog; changes wait for the new master.
    HandoverInProgress,
    /// No application registered with that id.
    UnknownApp,
    /// A record must fit in one frame.
    RecordTooLarge {
        /// The record's length.
        len: usize,
        /// The largest record a frame carries (`Node::max_record`).
        max: usize,
    },
}

impl fmt::Display for ChangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeError::NotMaster => f.write_str("this node is not the master"),
            ChangeError::HandoverInProgress => f.write_str("failover in progress"),
            ChangeError::UnknownApp => f.write_str("unknown application"),
            ChangeError::RecordTooLarge { len, max } => {
                write!(f, "record of {len} bytes exceeds the {max}-byte limit")
            }
        }
    }
}

/// `run msm-failover` refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailoverError {
    /// Only the master hands over.
    NotMaster,
    /// No backup has a checkpoint session.
    NoBackup,
    /// Not without `force`: the backup would lose state.
    NotInSync(SyncState),
    /// A handover is already draining.
    AlreadyInProgress,
}

impl fmt::Display for FailoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailoverError::NotMaster => f.write_str("this node is not the master"),
            FailoverError::NoBackup => f.write_str("there is no backup to take over"),
            FailoverError::NotInSync(s) => {
                write!(f, "backup is not in sync ({s}); use 'run msm-failover force' to override")
            }
            FailoverError::AlreadyInProgress => f.write_str("a failover is already in progress"),
        }
    }
}

/// A node configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `heartbeat_interval` is zero.
    ZeroHeartbeat,
    /// `miss_count` is zero: every peer would be lost at once.
    ZeroMissCount,
    /// `max_frame` outside 256..=65535 (`wire::MIN_MAX_FRAME`).
    MaxFrame(usize),
    /// The application table: a name, a dependency or a cycle.
    Apps(crate::app::RegisterError),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroHeartbeat => f.write_str("heartbeat interval must be non-zero"),
            ConfigError::ZeroMissCount => f.write_str("heartbeat miss count must be at least 1"),
            ConfigError::MaxFrame(n) => write!(f, "max frame {n} outside 256..=65535"),
            ConfigError::Apps(e) => write!(f, "{e}"),
        }
    }
}
