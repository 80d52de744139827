//! What each request answers, as types: the node builds one and sends it
//! as the response's `json`; a client reads it back with
//! [`Response::answer`](crate::Response::answer). One definition for both
//! sides, so a renamed field breaks the build, not a test at run time.
//! Slots are letters ("A"), terms as `show switch` prints them ("3.A").

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The data of a request's answer.
pub trait Answer: Serialize + DeserializeOwned {}

/// `show switch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Switch {
    /// This module's software release.
    #[serde(default)]
    pub release: String,
    /// The protocol version it speaks now (the oldest a live peer speaks).
    #[serde(default)]
    pub protocol: u8,
    pub slot: String,
    /// MASTER, BACKUP, STANDBY, INIT.
    pub role: String,
    /// The state column of `show switch` ("BACKUP (In Sync)").
    pub state: String,
    pub term: String,
    pub master: Option<String>,
    pub backup: Option<String>,
    /// Master: its backup holds every stream; backup: its master says so.
    pub in_sync: bool,
    pub sync: String,
    pub peers: Vec<Peer>,
    pub config_selected: String,
    pub config_booted: String,
    pub saved: Vec<SavedFile>,
    pub unsaved_changes: bool,
    /// A second module claims this slot on the backplane.
    pub slot_conflict: Option<String>,
    /// Master: where its application state came from ("checkpointed", "held", "fresh").
    pub applications: Option<String>,
    pub paths: Vec<Path>,
    /// The last split brain this node lost.
    pub split_brain: Option<SplitBrain>,
    pub keys: Keys,
    pub frame_errors: FrameErrors,
    /// Failovers on this module so far (kept in its flash; elections at boot are not counted).
    #[serde(default)]
    pub failovers: u32,
    /// The newest entry of its failover history.
    #[serde(default)]
    pub last_failover: Option<Failover>,
    /// Failovers (and elections) recorded since the node process started, by cause.
    #[serde(default)]
    pub failovers_since_start: std::collections::BTreeMap<String, u64>,
}

/// One entry of a module's failover history (`show failover history`):
/// this module became master, or lost mastership to a split brain's winner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failover {
    /// Its ordinal on this module (from 1).
    pub seq: u32,
    /// RFC 3339, UTC, milliseconds ("-" when the module had no clock).
    pub time: String,
    pub unix_ms: u64,
    /// admin, peer-silent, master-restarted, conflict, elected, split-brain.
    pub cause: String,
    /// What happened, in a phrase (the split-brain rule that decided, if one did).
    pub detail: String,
    /// The module master after it.
    pub module: String,
    /// Its term.
    pub term: String,
    /// Nothing checkpointed was lost: the new master held every stream.
    pub hitless: bool,
    /// The configuration the new master ran: "master's active" or "own saved".
    pub config: Option<String>,
    /// Split brain: "won" or "lost" (this module's side).
    pub outcome: Option<String>,
    /// Changes this module discarded (a split brain lost).
    pub discarded: u32,
}

/// `run msm-failover check`: whether a failover now would be hitless.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverCheck {
    /// "allow", "allow-with-loss" (only with `force`) or "refuse".
    pub verdict: String,
    /// The module that would take over.
    pub backup: Option<String>,
    /// Its release and protocol version as its heartbeat says them.
    pub backup_release: Option<String>,
    /// What decides: per stream what would be lost, or why not at all.
    pub reasons: Vec<CheckReason>,
}

/// One thing a failover check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReason {
    /// The stream (application or configuration), or "role", "backup".
    pub what: String,
    pub detail: String,
}

/// `show failover history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverHistory {
    pub failovers: u32,
    /// Newest first.
    pub entries: Vec<Failover>,
}

/// Another module as this one sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Peer {
    pub slot: String,
    pub alive: bool,
    pub role: String,
    pub term: String,
    pub priority: u8,
    /// The longest silence between two of its heartbeats this node heard.
    pub max_heartbeat_gap_us: u64,
    /// Fingerprints of the keys it sends under, as hex.
    pub keys: Vec<String>,
    /// The term whose whole state it holds.
    pub holds: Option<String>,
    /// Master: a standby's copy of the configuration ("In Sync", "copying", "waiting").
    pub config: Option<String>,
    /// The protocol version of its last authenticated frame (0: never heard).
    #[serde(default)]
    pub protocol: u8,
    /// Its software release as its heartbeat says it ("0.29.0 (protocol v5)").
    #[serde(default)]
    pub release: String,
}

/// A saved configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedFile {
    pub file: String,
    pub bytes: u64,
    /// Seconds since the Unix epoch.
    pub saved_at: u64,
    /// The software version that saved it.
    pub version: String,
    /// CRC-32C of its bytes (hex), as its record on flash says.
    #[serde(default)]
    pub crc32c: Option<String>,
}

/// One backplane path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Path {
    /// Its `--backplane` spec.
    pub path: String,
    /// "up", "DOWN", "never heard".
    pub state: String,
    /// Data goes on it.
    pub data: bool,
    pub silent_for_us: Option<u64>,
    pub rx: u64,
    pub tx: u64,
    pub refused: u64,
    pub tx_errors: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// A split brain this node lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitBrain {
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub uptime_ms: Option<u64>,
    pub winner: String,
    pub winner_term: String,
    pub our_term: String,
    /// Changes this node discarded.
    pub discarded: u64,
    /// Of them, listed in the file.
    pub listed: u64,
    pub file: Option<String>,
    pub error: Option<String>,
}

/// The chassis keys this node holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Keys {
    pub sending: Option<String>,
    pub also: Option<AlsoKey>,
    pub authenticated: bool,
}

/// The second key accepted during a rotation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlsoKey {
    pub fingerprint: Option<String>,
    /// "next" or "previous".
    pub role: String,
}

/// Frames refused, by reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FrameErrors {
    pub total: u64,
    pub bad_crc: u64,
    pub malformed: u64,
    pub version: u64,
    pub auth: u64,
    pub replay: u64,
    pub term_range: u64,
    pub counter_jump: u64,
    pub unproven: u64,
    pub duplicate: u64,
    pub by_slot: Vec<SlotErrors>,
    pub stale_term: u64,
    pub own_slot: u64,
    pub unexpected: u64,
    pub unknown_stream: u64,
    pub oversize: u64,
}

/// Frames refused, of one claimed sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotErrors {
    pub slot: String,
    pub auth: u64,
    pub replay: u64,
    pub unproven: u64,
    pub version: u64,
    pub last_version: u8,
}

/// One row of `show checkpoint-data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRow {
    /// Process applications: times its writer was held back for the backup.
    pub held_back: Option<u64>,
    pub process: String,
    pub tx: u64,
    pub rx: u64,
    pub errors: u64,
    pub sent: u64,
    pub total: u64,
    pub percent: u8,
    pub status: String,
    pub changes: u64,
    pub checkpointed: u64,
    pub rebulks: u32,
    pub bulks: u64,
    pub mismatch: Option<Mismatch>,
}

/// The backup's schema of a stream differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    pub ours: u16,
    pub theirs: Option<u16>,
}

/// One row of `show node`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRow {
    pub node: String,
    pub state: String,
    pub priority: String,
    pub health: String,
}

/// `show configuration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Configuration {
    pub text: String,
}

/// `show app`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppTable {
    pub app: String,
    pub entries: u64,
    /// The table's digest, 16 hex digits.
    pub digest: String,
    /// With `--rows`: at most `MAX_ROWS` of them.
    pub rows: Vec<AppRow>,
    /// The key the next page starts at, if there are more rows.
    #[serde(default)]
    pub next: Option<u64>,
}

/// One row of an application's table; the value as hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRow {
    pub key: u64,
    pub value: String,
}

/// How far a `configure` or `save` got toward the backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnBackup {
    /// The active configuration's change id of the last line.
    pub seq: u64,
    /// The backup holds it (false with no backup).
    pub checkpointed: bool,
    /// There is a backup.
    pub backup: bool,
    /// Changes the backup still lacks.
    pub behind: u64,
    pub waited_ms: u64,
}

/// `configure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Configured {
    /// Lines applied.
    pub applied: u64,
    /// The vlan application's change id of the last change the lines made.
    pub vlan_seq: u64,
    #[serde(flatten)]
    pub on_backup: OnBackup,
}

/// `save`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// "primary" or "secondary".
    pub saved: String,
    pub bytes: u64,
    /// The saved configuration stream's change id of the save.
    pub save_seq: u64,
    #[serde(flatten)]
    pub on_backup: OnBackup,
}

/// `synchronize`: what the master copied to its backup's flash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Synchronized {
    /// The backup that received them.
    pub backup: String,
    /// Each saved configuration as copied (an empty one is copied as empty).
    pub files: Vec<SyncedFile>,
    /// The configuration both modules boot next.
    pub selected: String,
    /// The saved-configuration stream's change id of the copy.
    pub save_seq: u64,
    /// The backup's flash acknowledged the copy, its bulk digest matched.
    pub verified: bool,
    pub waited_ms: u64,
}

/// One file of a `synchronize`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncedFile {
    pub file: String,
    /// None: the file is empty here, and so on the backup after the copy.
    pub bytes: Option<u64>,
    /// CRC-32C of its bytes (hex).
    pub crc32c: Option<String>,
}

/// `use configuration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selected {
    pub selected: String,
}

/// `reboot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rebooting {
    pub rebooting: bool,
}

/// `run msm-failover`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailingOver {
    pub failover: bool,
    pub force: bool,
}

/// `churn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Churning {
    pub rate: u32,
}

/// `debug`: the log's level, before and now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLevel {
    pub was: String,
    pub level: String,
}

impl Answer for LogLevel {}

/// A key rotation step: the keys it leaves, as `show switch` prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStep {
    pub keys: String,
}

impl Answer for Switch {}
impl Answer for FailoverHistory {}
impl Answer for FailoverCheck {}
impl Answer for Synchronized {}
impl Answer for Vec<CheckpointRow> {}
impl Answer for Vec<NodeRow> {}
impl Answer for Configuration {}
impl Answer for AppTable {}
impl Answer for Configured {}
impl Answer for Saved {}
impl Answer for Selected {}
impl Answer for Rebooting {}
impl Answer for FailingOver {}
impl Answer for Churning {}
impl Answer for KeyStep {}
