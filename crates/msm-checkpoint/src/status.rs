//! What `show switch` and `show checkpoint-data {<process>}` print, as data
//! (for `--json` and tests) and as plain text shaped like ExtremeXOS output.

use core::fmt::{self, Write};

use msm_time::Instant;

use heapless::String;

use crate::app::MAX_NAME;
use crate::role::{MAX_NODES, Role, Slot, Term};
use crate::stream::{Counters, Failure, Mismatch, Phase};

/// A stream's name as status shows it.
pub type Name = String<MAX_NAME>;

/// `name` as status holds it (registered names always fit).
pub(crate) fn stream_name(name: &str) -> Name {
    Name::try_from(name).unwrap_or_default()
}

/// `part` of `total` in percent, 0 for an empty total.
pub(crate) fn percent(part: u64, total: u64) -> u8 {
    (part.min(total).saturating_mul(100)).checked_div(total).map_or(0, |p| p as u8)
}

/// Why the backup is or is not "In Sync".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncState {
    /// Every stream's bulk is done and every change is going out.
    InSync,
    /// This node is master and no backup has said hello.
    NoBackup,
    /// This node is master and its backup stopped answering.
    BackupLost,
    /// This node is master and a new boot spoke in its backup's slot: the
    /// backup restarted (holding nothing) unless its boot is heard again.
    BackupRestarting,
    /// Which stream is still in its bulk transfer, and how far (percent).
    Syncing {
        /// The first stream not yet through.
        stream: Name,
        /// How far its bulk is.
        percent: u8,
    },
    /// A stream the backup cannot take.
    VersionMismatch {
        /// The stream.
        stream: Name,
    },
    /// A stream failed on one side and waits for a new bulk.
    Failed {
        /// The stream.
        stream: Name,
    },
    /// Backup: the configured master is not known yet.
    NoMaster,
    /// A standby of a live master: it holds the master's configuration,
    /// not its application state.
    Standby,
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
            SyncState::BackupRestarting => f.write_str("backup restarting (a new boot in its slot)"),
            SyncState::Syncing { stream, percent } => {
                write!(f, "checkpointing {stream} {percent}%")
            }
            SyncState::VersionMismatch { stream } => write!(f, "version mismatch: {stream}"),
            SyncState::Failed { stream } => write!(f, "{stream} failed"),
            SyncState::NoMaster => f.write_str("no master"),
            SyncState::Standby => f.write_str("standby: the configuration, no application state"),
            SyncState::AwaitingMaster => f.write_str("waiting for the master"),
        }
    }
}

/// One row of `show checkpoint-data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStatus {
    /// Local stream id: 0 saved config, 1 active config, then applications.
    pub id: u8,
    /// The process name.
    pub name: Name,
    /// This node's schema version of the stream.
    pub schema: u16,
    /// Frames and errors.
    pub counters: Counters,
    /// Bulk records sent (master) or received (backup) in the current bulk.
    pub sent: u64,
    /// Bulk records announced for the current bulk.
    pub total: u64,
    /// Where the stream is.
    pub phase: Phase,
    /// The backup cannot take the stream: why.
    pub mismatch: Option<Mismatch>,
    /// The stream failed and waits for a new bulk: why.
    pub failure: Option<Failure>,
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
            _ => percent(self.sent, self.total),
        }
    }
}

/// The protocol a module was last heard speaking, and the software release
/// its heartbeat said (from protocol version 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PeerProtocol {
    /// Protocol version of its last authenticated frame; 0: never heard.
    pub version: u8,
    /// `major << 16 | minor << 8 | patch`; 0: not said (version 4 does not).
    pub release: u32,
}

/// A peer as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerStatus {
    /// Its slot.
    pub slot: Slot,
    /// Heard within the detection interval.
    pub alive: bool,
    /// The role its last heartbeat claimed.
    pub role: Role,
    /// The term its last heartbeat carried.
    pub term: Term,
    /// Its election priority (lower wins).
    pub priority: u8,
    /// Its health (higher wins ties).
    pub health: u8,
    /// The longest time between two of its heartbeats since it came up.
    pub max_heartbeat_gap: core::time::Duration,
    /// Fingerprints of the keys its heartbeat says it holds (sending, other; 0: none).
    pub keys: [u32; 2],
    /// The term whose whole state it holds, as its heartbeat says (0: none).
    pub holds: Term,
}

/// Which rule decided a split brain (two masters met); see
/// `docs/architecture.md`, *Split brain*.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SplitRule {
    /// The other master took over a whole state of the loser's term and
    /// changed it since: the newer lineage stays.
    NewerLineage,
    /// The other master took over a whole state of the winner's term and
    /// made no change since: the winner stays and nothing is discarded.
    RivalMadeNothing,
    /// The other master took over a whole state of the winner's term; the
    /// winner's changes since were acknowledged by a backup, the other's by
    /// none: the winner stays.
    RivalUnacknowledged,
    /// The other master took over no whole state of the winner's (it started
    /// from its own flash, or from an older state): the winner stays.
    RivalLacksOurState,
    /// Neither took over the other's state, and the winner took over a
    /// newer whole state (a higher `base`) than the loser did.
    RivalHoldsNewerState,
    /// The loser took over no newer state than the winner and made no
    /// change; the winner made some.
    WeHeldNothing,
    /// The winner judged (it overruled the loser's term by one of the
    /// rules above) and the loser followed.
    Overruled,
    /// `run msm-failover` handed mastership over: not a split brain.
    Handover,
}

impl SplitRule {
    /// One phrase for `show switch` and the log.
    pub const fn as_str(self) -> &'static str {
        match self {
            SplitRule::NewerLineage => "the other master took over this state whole and changed it since",
            SplitRule::RivalMadeNothing => "the other master took over this state whole and changed nothing",
            SplitRule::RivalUnacknowledged => {
                "this master's changes since were acknowledged by a backup, the other master's by none"
            }
            SplitRule::RivalLacksOurState => "the other master took over no whole copy of this state",
            SplitRule::RivalHoldsNewerState => "the other master took over a newer whole state than this one",
            SplitRule::WeHeldNothing => "this master held no state and changed nothing",
            SplitRule::Overruled => {
                "the winner held state this master lacked, or changed what this one did not"
            }
            SplitRule::Handover => "handover",
        }
    }
}

impl SplitRule {
    /// Every rule, in the order of their codes (1..).
    pub const ALL: [SplitRule; 8] = [
        SplitRule::NewerLineage,
        SplitRule::RivalMadeNothing,
        SplitRule::RivalUnacknowledged,
        SplitRule::RivalLacksOurState,
        SplitRule::RivalHoldsNewerState,
        SplitRule::WeHeldNothing,
        SplitRule::Overruled,
        SplitRule::Handover,
    ];

    /// Its code where a rule is stored (a failover record: docs/flash-format.md); never 0.
    pub fn code(self) -> u8 {
        Self::ALL.iter().position(|r| *r == self).map_or(0, |i| i as u8 + 1)
    }

    /// The rule of `code`, if it is one.
    pub fn from_code(code: u8) -> Option<SplitRule> {
        Self::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }
}

/// The last split brain this node won: it was master in the lower term,
/// judged that it holds the state, and claimed a term above the rival's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitBrainWon {
    /// When (engine time).
    pub at: Instant,
    /// The master that stepped down to it.
    pub loser: Slot,
    /// The loser's term, overruled.
    pub loser_term: Term,
    /// The term this node claimed over it.
    pub term: Term,
    /// Why this node stayed.
    pub rule: SplitRule,
}

impl fmt::Display for SplitBrainWon {
    /// "stayed master over MSM-B (term 3.B) in term 4.A at 12.3 s: the other master ..."
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.at.as_millis();
        write!(
            f,
            "stayed master over {} (term {}) in term {} at {}.{} s: {}",
            self.loser,
            self.loser_term,
            self.term,
            ms / 1000,
            ms % 1000 / 100,
            self.rule.as_str()
        )
    }
}

/// The last split brain this node lost: it was master, heard a master of a
/// higher term, stepped down and discarded what it had not checkpointed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitBrain {
    /// When it stepped down (engine time, since the board's epoch).
    pub at: Instant,
    /// The master it stepped down to.
    pub winner: Slot,
    /// The winner's term.
    pub winner_term: Term,
    /// The term this node was master in.
    pub our_term: Term,
    /// Changes made as master that no backup acknowledged, discarded.
    pub discarded: u64,
    /// Which rule decided.
    pub rule: SplitRule,
}

impl fmt::Display for SplitBrain {
    /// "stepped down to MSM-B (term 3.B > 2.A) at 12.3 s; 37 changes discarded (the other master ...)"
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.at.as_millis();
        write!(
            f,
            "stepped down to {} (term {} > {}) at {}.{} s; {} change{} discarded ({})",
            self.winner,
            self.winner_term,
            self.our_term,
            ms / 1000,
            ms % 1000 / 100,
            self.discarded,
            if self.discarded == 1 { "" } else { "s" },
            self.rule.as_str()
        )
    }
}

/// The redundancy part of `show switch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchStatus {
    /// This node's slot.
    pub slot: Slot,
    /// This node's role.
    pub role: Role,
    /// The current master's term.
    pub term: Term,
    /// This node's election priority.
    pub priority: u8,
    /// This node's health.
    pub health: u8,
    /// The master this node follows (itself when master).
    pub master: Option<Slot>,
    /// Master: the backup it chose.
    pub backup: Option<Slot>,
    /// Why the backup is or is not in sync.
    pub sync: SyncState,
    /// Every other module heard from, by slot.
    pub peers: [Option<PeerStatus>; MAX_NODES],
    /// Frames refused, by cause.
    pub errors: FrameErrors,
    /// Two modules claimed this slot within the last detection interval
    /// (this node's own, or its master's): two modules configured for one slot.
    pub slot_conflict: Option<Slot>,
    /// The last split brain this node lost since it booted.
    pub last_split_brain: Option<SplitBrain>,
    /// The last split brain this node won since it booted.
    pub split_brain_won: Option<SplitBrainWon>,
    /// Master: where each standby's copy of the configuration is, by slot
    /// (standbys that have reported).
    pub standby_config: [Option<ConfigCopy>; MAX_NODES],
    /// Master: where its application state came from when it became master.
    pub apps: Option<AppsFrom>,
    /// The protocol version this node speaks now.
    pub protocol: u8,
    /// Per slot, the protocol it speaks and its release.
    pub protocols: [PeerProtocol; MAX_NODES],
}

/// Where a new master's application state comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AppsFrom {
    /// It was the backup: the master's state as checkpointed to it (whole
    /// when `in_sync`).
    Checkpointed,
    /// It was master itself earlier in this boot (it handed over, or lost
    /// a split brain) and no master since made another module its backup:
    /// what it holds is its own last mastership's state.
    Held,
    /// It holds no application state: a standby (a standby holds only the
    /// configuration) or a fresh boot. The applications start from their
    /// initial state.
    Fresh,
}

impl AppsFrom {
    /// What it means, for `show switch`.
    pub const fn describe(self) -> &'static str {
        match self {
            AppsFrom::Checkpointed => "the state checkpointed to this module as backup",
            AppsFrom::Held => "the state this module held as master before this term",
            AppsFrom::Fresh => "started fresh (this module held no copy of their state)",
        }
    }

    /// "checkpointed", "held", "fresh".
    pub const fn as_str(self) -> &'static str {
        match self {
            AppsFrom::Checkpointed => "checkpointed",
            AppsFrom::Held => "held",
            AppsFrom::Fresh => "fresh",
        }
    }
}

/// Master: how a standby's copy of the configuration (saved and active)
/// stands against the master's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConfigCopy {
    /// The master has nothing to send it yet: no backup session, or a bulk
    /// of the configuration to the backup is in progress.
    Waiting,
    /// Records or a snapshot are on their way.
    Copying,
    /// Both streams are at the master's point.
    InSync,
}

impl ConfigCopy {
    /// "In Sync", "copying", "waiting".
    pub const fn as_str(self) -> &'static str {
        match self {
            ConfigCopy::Waiting => "waiting",
            ConfigCopy::Copying => "copying",
            ConfigCopy::InSync => "In Sync",
        }
    }
}

/// Refused frames by cause, for `show node` style diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameErrors {
    /// Corrupted on the link.
    pub bad_crc: u64,
    /// The CRC matched but the contents do not decode.
    pub malformed: u64,
    /// From a peer speaking another protocol version.
    pub version: u64,
    /// The tag does not verify under any key this node holds: a forged
    /// frame, a module with another chassis key, or no key where one is
    /// required.
    pub auth: u64,
    /// Authentic but seen before, or from an earlier boot of its sender.
    pub replay: u64,
    /// A term beyond the maximum or implausibly far ahead.
    pub term_range: u64,
    /// A frame counter implausibly far ahead of the last one of its boot.
    pub counter_jump: u64,
    /// From a boot that has not yet proven it is alive now: a few during
    /// each peer's boot handshake, not counted in [`total`](Self::total);
    /// a steady count is someone replaying frames of an earlier boot.
    pub unproven: u64,
    /// Copies of heartbeats taken, from redundant paths: expected, not
    /// counted in [`total`](Self::total).
    pub duplicate: u64,
    /// From a master of an older term.
    pub stale_term: u64,
    /// Claiming this node's own slot: another module with the same slot.
    pub own_slot: u64,
    /// A message this node does not take from that sender in its role.
    pub unexpected: u64,
    /// Naming a stream this node does not have.
    pub unknown_stream: u64,
    /// The refusals before authentication, by the slot the frame claims.
    pub by_slot: [SlotRefusals; MAX_NODES],
}

/// Frames refused before they could be trusted, by the slot they claim to
/// come from ("12 frames from MSM-B failed authentication").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotRefusals {
    /// Failed authentication.
    pub auth: u64,
    /// Replays (and counters implausibly far ahead).
    pub replay: u64,
    /// Frames of a boot not yet proven alive.
    pub unproven: u64,
    /// In another protocol version.
    pub version: u64,
    /// The last other version heard (0: none).
    pub last_version: u8,
}

impl FrameErrors {
    /// Every refused frame.
    pub fn total(&self) -> u64 {
        self.bad_crc
            + self.malformed
            + self.version
            + self.auth
            + self.replay
            + self.term_range
            + self.counter_jump
            + self.stale_term
            + self.own_slot
            + self.unexpected
            + self.unknown_stream
    }
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
        let mut label: String<48> = String::new();
        if i == s.slot.index() {
            let _ = state_label(s.role, &s.sync, &mut label);
            switch_line(out, DisplaySlot(s.slot, true), &label, s.term, s.priority, s.health)?;
        } else if let Some(p) = &s.peers[i] {
            if !p.alive {
                writeln!(out, "{:<10} {:<28}", DisplaySlot(p.slot, false), "DOWN")?;
                continue;
            }
            if p.role == Role::Backup && s.role != Role::Master {
                // Only the master knows how its backup stands.
                let _ = label.push_str("BACKUP");
            } else if let (Role::Standby, Some(copy)) = (p.role, s.standby_config[i]) {
                let _ = write!(label, "STANDBY (config {})", copy.as_str());
            } else {
                let sync = if p.role == Role::Backup { s.sync.clone() } else { SyncState::NoMaster };
                let _ = state_label(p.role, &sync, &mut label);
            }
            switch_line(out, DisplaySlot(p.slot, false), &label, p.term, p.priority, p.health)?;
        }
    }
    if matches!(s.role, Role::Master | Role::Backup | Role::Standby) {
        writeln!(out, "Checkpoint: {}", s.sync)?;
    }
    if let Some(apps) = s.apps {
        writeln!(out, "Applications: {}", apps.describe())?;
    }
    if let Some(slot) = s.slot_conflict {
        writeln!(out, "Slot conflict: two modules claim {slot} on the backplane")?;
    }
    if let Some(sb) = &s.last_split_brain {
        writeln!(out, "Split brain:      {sb}")?;
    }
    if let Some(sb) = &s.split_brain_won {
        writeln!(out, "Split brain:      {sb}")?;
    }
    Ok(())
}

/// One module's line of `show switch`.
fn switch_line(
    out: &mut impl Write,
    slot: DisplaySlot,
    label: &str,
    term: Term,
    prio: u8,
    health: u8,
) -> fmt::Result {
    writeln!(out, "{slot:<10} {label:<28} {:<6} {prio:<8} {health:<8}", DisplayTerm(term))
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
        if let Some(f) = r.failure {
            write!(out, " ({f})")?;
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

#[cfg(test)]
mod tests;
