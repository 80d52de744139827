//! What `show switch` and `show checkpoint-data {<process>}` print, as data
//! (for `--json` and tests) and as plain text shaped like ExtremeXOS output.

use core::fmt::{self, Write};

use crate::app::MAX_NAME;
use crate::role::{MAX_NODES, Role, Slot, Term};
use crate::stream::{Counters, Mismatch, Phase};
use heapless::String;

/// A stream's name as status shows it.
pub type Name = String<MAX_NAME>;

/// Why the backup is or is not "In Sync".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncState {
    InSync,
    /// This node is master and no backup has said hello.
    NoBackup,
    /// This node is master and its backup stopped answering.
    BackupLost,
    /// Which stream is still in its bulk transfer, and how far (percent).
    Syncing {
        stream: Name,
        percent: u8,
    },
    /// A stream the backup cannot take.
    VersionMismatch {
        stream: Name,
    },
    /// The peer speaks another protocol version.
    ProtocolMismatch {
        slot: Slot,
        version: u8,
    },
    /// A stream failed on one side and waits for a new bulk.
    Failed {
        stream: Name,
    },
    /// Backup: the configured master is not known yet.
    NoMaster,
    /// Backup: every stream is complete here, but the master does not yet
    /// count this backup as in sync (a stream it is re-sending, a mismatch).
    AwaitingMaster,
}

impl fmt::Display for SyncState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncState::InSync => f.write_str("In Sync"),
            SyncState::NoBackup => f.write_str("no backup"),
            SyncState::BackupLost => f.write_str("backup lost"),
            SyncState::Syncing { stream, percent } => {
                write!(f, "checkpointing {stream} {percent}%")
            }
            SyncState::VersionMismatch { stream } => write!(f, "version mismatch: {stream}"),
            SyncState::ProtocolMismatch { slot, version } => {
                write!(f, "{slot} speaks protocol v{version}")
            }
            SyncState::Failed { stream } => write!(f, "{stream} failed"),
            SyncState::NoMaster => f.write_str("no master"),
            SyncState::AwaitingMaster => f.write_str("waiting for the master"),
        }
    }
}

/// One row of `show checkpoint-data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStatus {
    pub id: u8,
    pub name: Name,
    pub schema: u16,
    pub counters: Counters,
    /// Bulk records sent (master) or received (backup) in the current bulk.
    pub sent: u64,
    pub total: u64,
    pub phase: Phase,
    pub mismatch: Option<Mismatch>,
    /// Master: changes up to this id are on the backup.
    pub checkpointed: u64,
    /// Master: change ids handed out.
    pub changes: u64,
    /// Bulk transfers after the first (overflow, resync, save).
    pub rebulks: u32,
}

impl StreamStatus {
    /// Percent checkpointed: 100 once the bulk is done.
    pub fn percent(&self) -> u8 {
        match self.phase {
            Phase::Synced => 100,
            _ => crate::node::percent(self.sent, self.total),
        }
    }
}

/// A peer as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerStatus {
    pub slot: Slot,
    pub alive: bool,
    pub role: Role,
    pub term: Term,
    pub priority: u8,
    pub health: u8,
    /// Set when the peer speaks another protocol version.
    pub version: Option<u8>,
}

/// The redundancy part of `show switch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchStatus {
    pub slot: Slot,
    pub role: Role,
    pub term: Term,
    pub priority: u8,
    pub health: u8,
    pub master: Option<Slot>,
    pub backup: Option<Slot>,
    pub sync: SyncState,
    pub peers: [Option<PeerStatus>; MAX_NODES],
    /// Frames refused, by cause.
    pub errors: FrameErrors,
}

/// Refused frames by cause, for `show node` style diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameErrors {
    pub bad_crc: u64,
    pub malformed: u64,
    pub version: u64,
    pub stale_term: u64,
    pub other: u64,
}

/// "BACKUP (In Sync)", "MASTER", "BACKUP (checkpointing stream 3 40%)".
pub fn state_label(role: Role, sync: &SyncState, out: &mut impl Write) -> fmt::Result {
    match role {
        Role::Backup => match sync {
            SyncState::InSync => out.write_str("BACKUP (In Sync)"),
            other => write!(out, "BACKUP ({other})"),
        },
        r => out.write_str(r.as_str()),
    }
}

/// Render the redundancy part of `show switch`, one line per slot.
pub fn render_switch(s: &SwitchStatus, out: &mut impl Write) -> fmt::Result {
    writeln!(out, "{:<10} {:<28} {:<6} {:<8} {:<8}", "Node", "Current State", "Term", "Priority", "Health")?;
    for i in 0..MAX_NODES {
        if i == s.slot.index() {
            switch_line(out, s.slot, s.role, &s.sync, s.term, s.priority, s.health, true)?;
        } else if let Some(p) = &s.peers[i] {
            let role = if p.alive { p.role } else { Role::Init };
            let sync = if p.alive && p.role == Role::Backup { s.sync.clone() } else { SyncState::NoMaster };
            if p.alive {
                switch_line(out, p.slot, role, &sync, p.term, p.priority, p.health, false)?;
            } else {
                writeln!(out, "{:<10} {:<28}", DisplaySlot(p.slot, false), "DOWN")?;
            }
        }
    }
    if s.role == Role::Master || s.role == Role::Backup {
        writeln!(out, "Checkpoint: {}", s.sync)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn switch_line(
    out: &mut impl Write,
    slot: Slot,
    role: Role,
    sync: &SyncState,
    term: Term,
    prio: u8,
    health: u8,
    me: bool,
) -> fmt::Result {
    let mut label: String<48> = String::new();
    let _ = state_label(role, sync, &mut label);
    writeln!(
        out,
        "{:<10} {:<28} {:<6} {:<8} {:<8}",
        DisplaySlot(slot, me),
        label.as_str(),
        DisplayTerm(term),
        prio,
        health
    )
}

/// Render `show checkpoint-data`: a header and one row per stream.
pub fn render_checkpoint<'a>(
    rows: impl IntoIterator<Item = &'a StreamStatus>,
    out: &mut impl Write,
) -> fmt::Result {
    writeln!(
        out,
        "{:<16} {:>9} {:>9} {:>7} {:>9} {:>9} {:>8}  Status",
        "Process", "Tx", "Rx", "Errors", "Sent", "Total", "% Chkpt"
    )?;
    for r in rows {
        write!(
            out,
            "{:<16} {:>9} {:>9} {:>7} {:>9} {:>9} {:>7}%  {}",
            r.name.as_str(),
            r.counters.tx,
            r.counters.rx,
            r.counters.errors,
            r.sent,
            r.total,
            r.percent(),
            r.phase.as_str()
        )?;
        if let Some(m) = r.mismatch {
            match m.theirs {
                Some(t) => write!(out, " (schema {} here, {} on peer)", m.ours, t)?,
                None => write!(out, " (missing on peer)")?,
            }
        }
        writeln!(out)?;
    }
    Ok(())
}

struct DisplaySlot(Slot, bool);
impl fmt::Display for DisplaySlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s: String<12> = String::new();
        let _ = write!(s, "{}{}", self.0, if self.1 { "*" } else { "" });
        f.pad(&s)
    }
}

struct DisplayTerm(Term);
impl fmt::Display for DisplayTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s: String<24> = String::new();
        let _ = write!(s, "{}", self.0);
        f.pad(&s)
    }
}
