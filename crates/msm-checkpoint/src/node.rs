//! The checkpoint engine of one management module.
//!
//! Sans-IO: feed it frames (`handle_frame`) and timeouts (`handle_timeout`),
//! tell it about changes (`record_change`, `config_change`, `config_saved`),
//! then drain `poll_transmit` until it returns `None` and `poll_event` likewise,
//! and sleep until `poll_timeout`. It reads no clock, socket or flash.
//!
//! Streams: 0 is the saved configuration, 1 the active configuration, 2.. the
//! registered applications. Each stream is an ordered sequence of records per
//! epoch (a new epoch starts with each bulk transfer); the backup acknowledges
//! cumulatively; the master keeps every unacknowledged record in its backlog.

use core::time::Duration;

use heapless::{Deque, Vec};

use crate::app::{AppRegistry, MAX_NAME};
use crate::backlog::{Backlog, Kind};
use crate::error::{ConfigError, Error, FailoverError, FrameError};
use crate::event::{ConfigChoice, Event, RebulkReason};
use crate::host::{AppId, Host, ItemKind, Stream};
use crate::role::{MAX_NODES, Rank, Role, Slot, Term};
use crate::status::{FrameErrors, Name, PeerStatus, StreamStatus, SwitchStatus, SyncState};
use crate::stream::{Digest, Mismatch, Phase, StreamState};
use crate::time::{Instant, earliest};
use crate::wire::{
    self, AckItem, BROADCAST, Body, DigestMark, FrameWriter, Heartbeat, NO_SLOT, Record, StreamHello,
    WireError,
};

const SAVED: usize = 0;
const ACTIVE: usize = 1;
const CONFIG_STREAMS: usize = 2;
const SAVED_NAME: &str = "saved-config";
const ACTIVE_NAME: &str = "active-config";
const CONFIG_SCHEMA: u16 = 1;
const EVENTS: usize = 16;

/// Settings of one node. [`Config::new`] gives XOS-like defaults.
#[derive(Debug, Clone)]
pub struct Config {
    pub slot: Slot,
    /// Lower wins the election (XOS `configure node slot <s> priority <n>`).
    pub priority: u8,
    /// Higher is healthier; breaks priority ties.
    pub health: u8,
    pub heartbeat_interval: Duration,
    /// Heartbeats missed before a peer is declared lost.
    pub miss_count: u8,
    /// Largest frame this node sends (128..=65535).
    pub max_frame: usize,
    /// First retransmission timeout; doubles on each expiry up to `rto_max`.
    pub rto: Duration,
    pub rto_max: Duration,
    /// Boot counter: a restarted node is a new incarnation and never resumes
    /// an old session.
    pub incarnation: u32,
    /// How long `run msm-failover` may take before it is abandoned.
    pub handover_timeout: Duration,
}

impl Config {
    pub fn new(slot: Slot) -> Self {
        Config {
            slot,
            priority: 0,
            health: 100,
            heartbeat_interval: Duration::from_millis(100),
            miss_count: 3,
            max_frame: 1024,
            rto: Duration::from_millis(40),
            rto_max: Duration::from_millis(320),
            incarnation: 0,
            handover_timeout: Duration::from_secs(5),
        }
    }

    fn detect(&self) -> Duration {
        self.heartbeat_interval * u32::from(self.miss_count)
    }
}

#[derive(Debug, Clone, Copy)]
struct Peer {
    known: bool,
    alive: bool,
    last_heard: Instant,
    role: Role,
    term: Term,
    priority: u8,
    health: u8,
    incarnation: u32,
    version: Option<u8>,
}

impl Peer {
    const fn new() -> Self {
        Peer {
            known: false,
            alive: false,
            last_heard: Instant::ZERO,
            role: Role::Init,
            term: Term::NONE,
            priority: 0,
            health: 0,
            incarnation: 0,
            version: None,
        }
    }
}

/// The master's checkpoint session with one backup incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Session {
    slot: Slot,
    incarnation: u32,
    hello_id: u32,
    /// Backup stream ids whose hello entry arrived.
    seen: u32,
    total: u8,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    sid: u8,
    last_seq: u64,
}

#[derive(Debug, Clone, Copy)]
struct Handover {
    force: bool,
    deadline: Instant,
    next_send: Instant,
}

/// One management module's checkpoint engine. `APPS` applications, at most
/// `WINDOW` runs unacknowledged (a run is one stream's consecutive records in
/// a data frame; a frame carries one or more), `BACKLOG` bytes of
/// unacknowledged records.
#[derive(Debug)]
pub struct Node<const APPS: usize, const WINDOW: usize, const BACKLOG: usize> {
    cfg: Config,
    apps: AppRegistry<APPS>,
    role: Role,
    /// The current master's term (ours when master).
    term: Term,
    max_term: Term,
    master: Option<Slot>,
    peers: [Peer; MAX_NODES],
    election_at: Option<Instant>,
    next_heartbeat: Instant,
    // -- follower --
    hello_id: u32,
    hello_acked: bool,
    next_hello: Instant,
    /// Next stream to list in a multi-frame hello.
    hello_part: usize,
    master_config: Option<DigestMark>,
    master_in_sync: bool,
    // -- master --
    backup: Option<Slot>,
    session: Option<Session>,
    attached: bool,
    hello_ack_due: bool,
    /// Backup's stream id for each of our streams (`NO_SLOT`: none).
    peer_sid: [u8; 32],
    in_flight: Vec<InFlight, WINDOW>,
    rto: Duration,
    rto_at: Option<Instant>,
    gap_resend_after: Instant,
    handover: Option<Handover>,
    bulk_rr: usize,
    in_sync: bool,
    // -- both --
    cfg_streams: [StreamState; CONFIG_STREAMS],
    app_streams: [StreamState; APPS],
    backlog: Backlog<BACKLOG>,
    events: Deque<Event, EVENTS>,
    events_dropped: u32,
    errors: FrameErrors,
    retransmits: u64,
}

/// `part` of `total` in percent, 0 for an empty total.
pub(crate) fn percent(part: u64, total: u64) -> u8 {
    (part.min(total).saturating_mul(100)).checked_div(total).map_or(0, |p| p as u8)
}

fn name(s: &str) -> Name {
    Name::try_from(s).unwrap_or_default()
}

impl<const APPS: usize, const WINDOW: usize, const BACKLOG: usize> Node<APPS, WINDOW, BACKLOG> {
    /// A node in INIT. `apps` is validated here: unknown dependencies and
    /// cycles are refused by name.
    pub fn new(cfg: Config, mut apps: AppRegistry<APPS>, now: Instant) -> Result<Self, ConfigError> {
        if cfg.heartbeat_interval.is_zero() {
            return Err(ConfigError::ZeroHeartbeat);
        }
        if cfg.miss_count == 0 {
            return Err(ConfigError::ZeroMissCount);
        }
        if !(128..=65535).contains(&cfg.max_frame) {
            return Err(ConfigError::MaxFrame(cfg.max_frame));
        }
        apps.validate().map_err(ConfigError::Apps)?;
        let detect = cfg.detect();
        let rto = cfg.rto;
        Ok(Node {
            cfg,
            apps,
            role: Role::Init,
            term: Term::NONE,
            max_term: Term::NONE,
            master: None,
            peers: [Peer::new(); MAX_NODES],
            election_at: Some(now + detect),
            next_heartbeat: now,
            hello_id: 0,
            hello_acked: false,
            next_hello: now,
            hello_part: 0,
            master_config: None,
            master_in_sync: false,
            backup: None,
            session: None,
            attached: false,
            hello_ack_due: false,
            peer_sid: [NO_SLOT; 32],
            in_flight: Vec::new(),
            rto,
            rto_at: None,
            gap_resend_after: now,
            handover: None,
            bulk_rr: 0,
            in_sync: false,
            cfg_streams: core::array::from_fn(|_| StreamState::new()),
            app_streams: core::array::from_fn(|_| StreamState::new()),
            backlog: Backlog::new(),
            events: Deque::new(),
            events_dropped: 0,
            errors: FrameErrors::default(),
            retransmits: 0,
        })
    }

    // ------------------------------------------------------------------ queries

    pub fn role(&self) -> Role {
        self.role
    }
    pub fn term(&self) -> Term {
        self.term
    }
    pub fn slot(&self) -> Slot {
        self.cfg.slot
    }
    pub fn master(&self) -> Option<Slot> {
        self.master
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn apps(&self) -> &AppRegistry<APPS> {
        &self.apps
    }
    /// Total retransmission rounds (go-back-N restarts).
    pub fn retransmits(&self) -> u64 {
        self.retransmits
    }
    /// Events dropped because the board did not poll them in time.
    pub fn events_dropped(&self) -> u32 {
        self.events_dropped
    }
    /// Bytes of backlog in use.
    pub fn backlog_used(&self) -> usize {
        self.backlog.used()
    }

    /// Master: the module the checkpoint session is with (it may be briefly
    /// unreachable); the one [`checkpointed`](Self::checkpointed) speaks of.
    pub fn checkpoint_peer(&self) -> Option<Slot> {
        self.session.map(|s| s.slot)
    }

    /// Master: the boot count (incarnation) of that peer when its session began.
    /// A peer that rebooted since holds none of it, though the master may not
    /// have heard of the reboot yet.
    pub fn checkpoint_peer_incarnation(&self) -> Option<u32> {
        self.session.map(|s| s.incarnation)
    }

    /// Master: every change of `app` with an id up to the returned one is
    /// applied on the [`checkpoint_peer`](Self::checkpoint_peer) (0: none yet).
    pub fn checkpointed(&self, app: AppId) -> u64 {
        self.app_streams.get(app.index()).map_or(0, |s| s.tx.checkpointed)
    }

    /// Master: the same for configuration changes.
    pub fn config_checkpointed(&self) -> u64 {
        self.cfg_streams[ACTIVE].tx.checkpointed
    }

    /// Backup: the application's state is whole (its bulk completed) for the current master.
    pub fn has_complete(&self, stream: Stream) -> bool {
        let sid = self.sid_of(stream);
        self.st(sid).rx.complete && self.st(sid).rx.term == self.term.raw()
    }

    fn n_streams(&self) -> usize {
        CONFIG_STREAMS + self.apps.len()
    }

    fn st(&self, sid: usize) -> &StreamState {
        if sid < CONFIG_STREAMS { &self.cfg_streams[sid] } else { &self.app_streams[sid - CONFIG_STREAMS] }
    }

    fn st_mut(&mut self, sid: usize) -> &mut StreamState {
        if sid < CONFIG_STREAMS {
            &mut self.cfg_streams[sid]
        } else {
            &mut self.app_streams[sid - CONFIG_STREAMS]
        }
    }

    fn stream_of(sid: usize) -> Stream {
        match sid {
            SAVED => Stream::SavedConfig,
            ACTIVE => Stream::ActiveConfig,
            n => Stream::App(AppId((n - CONFIG_STREAMS) as u8)),
        }
    }

    fn sid_of(&self, s: Stream) -> usize {
        match s {
            Stream::SavedConfig => SAVED,
            Stream::ActiveConfig => ACTIVE,
            Stream::App(a) => CONFIG_STREAMS + a.index(),
        }
    }

    fn stream_name(&self, sid: usize) -> &str {
        match sid {
            SAVED => SAVED_NAME,
            ACTIVE => ACTIVE_NAME,
            n => self.apps.apps.get(n - CONFIG_STREAMS).map_or("?", |a| a.name.as_str()),
        }
    }

    fn stream_schema(&self, sid: usize) -> u16 {
        if sid < CONFIG_STREAMS {
            CONFIG_SCHEMA
        } else {
            self.apps.apps.get(sid - CONFIG_STREAMS).map_or(0, |a| a.schema)
        }
    }

    /// Streams `sid` waits for: config before apps, saved before active.
    fn deps_of(&self, sid: usize) -> u32 {
        match sid {
            SAVED => 0,
            ACTIVE => 1 << SAVED,
            n => {
                (1 << ACTIVE)
                    | (self.apps.apps.get(n - CONFIG_STREAMS).map_or(0, |a| a.deps) << CONFIG_STREAMS)
            }
        }
    }

    fn synced_mask(&self) -> u32 {
        (0..self.n_streams()).filter(|&i| self.st(i).tx.phase == Phase::Synced).fold(0, |m, i| m | 1 << i)
    }

    fn acked_table(&self) -> [u64; 32] {
        let mut t = [u64::MAX; 32];
        for (i, a) in t.iter_mut().enumerate().take(self.n_streams()) {
            *a = self.st(i).tx.acked;
        }
        t
    }

    /// Largest record payload that always fits in one data frame.
    pub fn max_record(&self) -> usize {
        let room = self.cfg.max_frame - wire::DATA_OVERHEAD;
        room - 1 - wire::varint_len(room as u64)
    }

    fn push_event(&mut self, e: Event) {
        if self.events.is_full() {
            self.events.pop_front();
            self.events_dropped = self.events_dropped.saturating_add(1);
        }
        let _ = self.events.push_back(e);
    }

    fn detect(&self) -> Duration {
        self.cfg.detect()
    }

    // --------------------------------------------------------------- public API

    /// Next event for the board, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = Some(self.next_heartbeat);
        let detect = self.detect();
        for p in self.peers.iter().filter(|p| p.alive) {
            t = earliest(t, Some(p.last_heard + detect));
        }
        t = earliest(t, self.election_at);
        if !self.in_flight.is_empty() {
            t = earliest(t, self.rto_at);
        }
        if self.role == Role::Backup {
            if !self.hello_acked {
                t = earliest(t, Some(self.next_hello));
            }
            for sid in 0..self.n_streams() {
                let rx = &self.st(sid).rx;
                if rx.term == self.term.raw() {
                    t = earliest(t, rx.resync_at);
                }
            }
        }
        if let Some(h) = &self.handover {
            // Resends wait for the drain; an acknowledgement wakes the board anyway.
            let resend = (h.force || self.drained()).then_some(h.next_send);
            t = earliest(t, earliest(Some(h.deadline), resend));
        }
        t
    }

    /// Change this node's election priority (takes effect at the next election).
    pub fn set_priority(&mut self, priority: u8) {
        self.cfg.priority = priority;
    }

    /// Report this node's health (software/hardware checks of the board).
    pub fn set_health(&mut self, health: u8) {
        self.cfg.health = health;
    }

    /// Master: an application changed one key. Returns the change id; the
    /// change is checkpointed once [`checkpointed`](Self::checkpointed) reaches it.
    pub fn record_change(&mut self, now: Instant, app: AppId, record: &[u8]) -> Result<u64, Error> {
        if app.index() >= self.apps.len() {
            return Err(Error::UnknownApp);
        }
        self.change(now, CONFIG_STREAMS + app.index(), record)
    }

    /// Master: the operator changed the active configuration by one line.
    pub fn config_change(&mut self, now: Instant, line: &[u8]) -> Result<u64, Error> {
        self.change(now, ACTIVE, line)
    }

    /// Master: the saved configuration was replaced (`save`); the backup's
    /// flash copy is refreshed with a new bulk of the saved-config stream.
    pub fn config_saved(&mut self, _now: Instant) {
        if self.role == Role::Master && self.session.is_some() {
            let tx = &self.cfg_streams[SAVED].tx;
            if tx.recording || tx.phase == Phase::Synced || tx.phase == Phase::Failed {
                self.rebulk(SAVED, RebulkReason::ConfigSaved);
            }
        }
    }

    fn change(&mut self, _now: Instant, sid: usize, record: &[u8]) -> Result<u64, Error> {
        if self.role != Role::Master {
            return Err(Error::NotMaster);
        }
        if self.handover.is_some() {
            return Err(Error::HandoverInProgress);
        }
        let max = self.max_record();
        if record.len() > max {
            return Err(Error::RecordTooLarge { len: record.len(), max });
        }
        let tx = &mut self.st_mut(sid).tx;
        tx.changes += 1;
        let id = tx.changes;
        if tx.recording {
            self.append(sid, Kind::Change, id, record);
        }
        Ok(id)
    }

    /// Master: `run msm-failover [force]`. Without `force` it is refused
    /// unless the backup is in sync; the backlog drains first, then the
    /// backup is told to take over.
    pub fn failover(&mut self, now: Instant, force: bool) -> Result<(), FailoverError> {
        if self.role != Role::Master {
            return Err(FailoverError::NotMaster);
        }
        if self.handover.is_some() {
            return Err(FailoverError::AlreadyInProgress);
        }
        if self.backup.is_none() || self.session.is_none() {
            return Err(FailoverError::NoBackup);
        }
        let sync = self.sync_state();
        if !force && sync != SyncState::InSync {
            return Err(FailoverError::NotInSync(sync));
        }
        info!("failover requested");
        self.handover = Some(Handover { force, deadline: now + self.cfg.handover_timeout, next_send: now });
        Ok(())
    }

    // ------------------------------------------------------------------ status

    /// Why the backup is or is not in sync, from this node's view.
    pub fn sync_state(&self) -> SyncState {
        match self.role {
            Role::Master => self.master_sync_state(),
            Role::Backup => self.backup_sync_state(),
            _ => SyncState::NoMaster,
        }
    }

    fn master_sync_state(&self) -> SyncState {
        for p in self.peers.iter().enumerate() {
            if let (Some(v), Some(s)) = (p.1.version, Slot::new(p.0 as u8)) {
                if p.1.alive {
                    return SyncState::ProtocolMismatch { slot: s, version: v };
                }
            }
        }
        match (self.backup, self.session) {
            (None, Some(_)) => return SyncState::BackupLost,
            (None, None) => return SyncState::NoBackup,
            (Some(_), _) if !self.attached => return SyncState::NoBackup,
            _ => {}
        }
        for sid in 0..self.n_streams() {
            let tx = &self.st(sid).tx;
            match tx.phase {
                Phase::Synced => {}
                Phase::Blocked => {
                    return SyncState::VersionMismatch { stream: name(self.stream_name(sid)) };
                }
                Phase::Failed => {
                    return SyncState::Failed { stream: name(self.stream_name(sid)) };
                }
                _ => {
                    let percent = percent(tx.bulk_sent, tx.bulk_total);
                    return SyncState::Syncing { stream: name(self.stream_name(sid)), percent };
                }
            }
        }
        SyncState::InSync
    }

    fn backup_sync_state(&self) -> SyncState {
        for sid in 0..self.n_streams() {
            let rx = &self.st(sid).rx;
            if !(rx.complete && rx.term == self.term.raw()) {
                let percent = percent(rx.bulk_rcvd, rx.bulk_total);
                return SyncState::Syncing { stream: name(self.stream_name(sid)), percent };
            }
        }
        if self.master_in_sync { SyncState::InSync } else { SyncState::AwaitingMaster }
    }

    /// The redundancy part of `show switch`.
    pub fn switch_status(&self) -> SwitchStatus {
        let mut peers = [None; MAX_NODES];
        for (i, p) in self.peers.iter().enumerate() {
            if let (true, Some(slot)) = (p.known, Slot::new(i as u8)) {
                peers[i] = Some(PeerStatus {
                    slot,
                    alive: p.alive,
                    role: p.role,
                    term: p.term,
                    priority: p.priority,
                    health: p.health,
                    version: p.version,
                });
            }
        }
        SwitchStatus {
            slot: self.cfg.slot,
            role: self.role,
            term: self.term,
            priority: self.cfg.priority,
            health: self.cfg.health,
            master: self.master,
            backup: self.backup,
            sync: self.sync_state(),
            peers,
            errors: self.errors,
        }
    }

    /// One row of `show checkpoint-data`: streams 0 and 1 are the
    /// configuration, then applications in registration order.
    pub fn stream_status(&self, sid: usize) -> Option<StreamStatus> {
        if sid >= self.n_streams() {
            return None;
        }
        let s = self.st(sid);
        let master = self.role == Role::Master;
        let (sent, total, phase) = if master {
            (s.tx.bulk_sent, s.tx.bulk_total, s.tx.phase)
        } else {
            let phase = if s.rx.complete && s.rx.term == self.term.raw() {
                Phase::Synced
            } else if s.rx.in_bulk {
                Phase::Bulk
            } else if self.role == Role::Backup {
                Phase::Waiting
            } else {
                Phase::Off
            };
            (s.rx.bulk_rcvd, s.rx.bulk_total, phase)
        };
        Some(StreamStatus {
            id: sid as u8,
            name: name(self.stream_name(sid)),
            schema: self.stream_schema(sid),
            counters: s.counters,
            sent,
            total,
            phase,
            mismatch: s.tx.mismatch,
            checkpointed: s.tx.checkpointed,
            changes: s.tx.changes,
            rebulks: s.tx.rebulks,
        })
    }

    /// All rows of `show checkpoint-data`.
    pub fn checkpoint_status(&self) -> impl Iterator<Item = StreamStatus> + '_ {
        (0..self.n_streams()).filter_map(|i| self.stream_status(i))
    }

    /// The row of one process, by name, for `show checkpoint-data <process>`.
    pub fn process_status(&self, process: &str) -> Option<StreamStatus> {
        (0..self.n_streams()).find(|&i| self.stream_name(i) == process).and_then(|i| self.stream_status(i))
    }

    // ------------------------------------------------------------------ input

    /// Handle one received frame. A frame that does not decode changes only
    /// counters. A decoded frame refused for its term or sender still shows
    /// the sender alive and its term seen (that is how a stale master learns
    /// to step down), but changes no checkpointed state.
    pub fn handle_frame<H: Host>(
        &mut self,
        now: Instant,
        bytes: &[u8],
        host: &mut H,
    ) -> Result<(), FrameError> {
        let f = match wire::decode(bytes) {
            Ok(f) => f,
            Err(e) => {
                match e {
                    WireError::BadCrc => self.errors.bad_crc += 1,
                    WireError::Malformed | WireError::Truncated => self.errors.malformed += 1,
                    WireError::UnsupportedVersion { from, got } => {
                        self.errors.version += 1;
                        let other = from != self.cfg.slot.raw();
                        if let Some(p) = self.peers.get_mut(from as usize).filter(|_| other) {
                            p.known = true;
                            p.alive = true;
                            p.last_heard = now;
                            p.version = Some(got);
                        }
                    }
                    _ => self.errors.other += 1,
                }
                return Err(e.into());
            }
        };
        if f.from == self.cfg.slot.raw() {
            self.errors.other += 1;
            return Err(FrameError::OwnSlot);
        }
        if f.to != BROADCAST && f.to != self.cfg.slot.raw() {
            return Ok(());
        }
        let Some(from) = Slot::new(f.from) else {
            return Err(WireError::BadSlot(f.from).into());
        };
        let term = Term::from_raw(f.term);
        let p = &mut self.peers[from.index()];
        let was_alive = p.alive;
        p.known = true;
        p.alive = true;
        p.version = None;
        p.last_heard = now;
        if !was_alive {
            self.push_event(Event::PeerUp(from));
        }
        if term > self.max_term {
            self.max_term = term;
        }
        let r = match f.body {
            Body::Heartbeat(hb) => {
                self.on_heartbeat(now, from, term, &hb, host);
                Ok(())
            }
            Body::Hello { incarnation, hello_id, total } => {
                self.on_hello(now, from, term, incarnation, hello_id, total, f.tail)
            }
            Body::HelloAck { incarnation, hello_id } => {
                self.check_from_master(from, term)?;
                if incarnation == self.cfg.incarnation && hello_id == self.hello_id {
                    self.hello_acked = true;
                }
                Ok(())
            }
            Body::Data => self.on_data(from, term, f.tail, host),
            Body::Ack => self.on_acks(now, from, term, f.tail),
            Body::Resync { stream, epoch, .. } => {
                self.check_from_backup(from, term)?;
                let sid = self.local_sid(stream)?;
                if self.st(sid).tx.epoch == epoch && self.st(sid).tx.phase != Phase::Blocked {
                    self.rebulk(sid, RebulkReason::BackupRequest);
                }
                Ok(())
            }
            Body::Handover { .. } => {
                self.check_from_master(from, term)?;
                if self.role == Role::Backup {
                    info!("handover received: taking over");
                    self.promote(now, host);
                }
                Ok(())
            }
        };
        self.update_in_sync();
        match r {
            Err(FrameError::StaleTerm { .. }) => self.errors.stale_term += 1,
            Err(FrameError::BadRecord) => self.errors.malformed += 1,
            Err(_) => self.errors.other += 1,
            Ok(()) => {}
        }
        r
    }

    fn check_from_master(&self, from: Slot, term: Term) -> Result<(), FrameError> {
        if term < self.term {
            return Err(FrameError::StaleTerm { got: term, ours: self.term });
        }
        if self.role == Role::Master || self.master != Some(from) || term != self.term {
            return Err(FrameError::Unexpected { from });
        }
        Ok(())
    }

    fn check_from_backup(&self, from: Slot, term: Term) -> Result<(), FrameError> {
        if term < self.term {
            return Err(FrameError::StaleTerm { got: term, ours: self.term });
        }
        if self.role != Role::Master || term != self.term || self.backup != Some(from) {
            return Err(FrameError::Unexpected { from });
        }
        Ok(())
    }

    fn on_heartbeat<H: Host>(&mut self, now: Instant, from: Slot, term: Term, hb: &Heartbeat, host: &mut H) {
        let role = Role::from_wire(hb.role).unwrap_or(Role::Init);
        let p = &mut self.peers[from.index()];
        let restarted = p.incarnation != hb.incarnation;
        p.role = role;
        p.term = term;
        p.priority = hb.priority;
        p.health = hb.health;
        p.incarnation = hb.incarnation;

        if role == Role::Master {
            match self.role {
                Role::Master if term > self.term => {
                    warn!("stepping down: higher term seen");
                    self.step_down(now, host);
                    self.follow(now, from, term, host);
                }
                Role::Master => {
                    // A stale master; it steps down when it hears our heartbeat.
                    self.errors.stale_term += 1;
                    self.next_heartbeat = now;
                }
                _ if self.master == Some(from) && term == self.term => {}
                _ if term > self.term || (self.role == Role::Init && term >= self.term) => {
                    self.follow(now, from, term, host);
                }
                _ => {
                    self.errors.stale_term += 1;
                    return;
                }
            }
            if self.master == Some(from) {
                self.master_in_sync = hb.in_sync;
                let want = if hb.backup == self.cfg.slot.raw() { Role::Backup } else { Role::Standby };
                if want != self.role {
                    self.role = want;
                    if want == Role::Backup {
                        self.new_hello(now);
                    }
                    self.push_event(Event::RoleChanged { role: want, term: self.term });
                } else if want == Role::Backup && self.hello_acked && hb.session != self.hello_id {
                    // The master dropped our session (it lost us for a while): say hello again.
                    self.new_hello(now);
                }
                self.master_config = Some(hb.config);
                self.compare_config_digest();
            }
            return;
        }

        // A non-master peer.
        if self.master == Some(from) && self.role != Role::Master {
            // Our master restarted or stepped down without us missing a beat.
            self.master_lost(now, host);
            return;
        }
        if self.role == Role::Master {
            if restarted && self.session.is_some_and(|s| s.slot == from) {
                // The backup rebooted: everything checkpointed to it is gone with its RAM.
                self.forget_backup();
            }
            self.choose_backup(now);
        }
    }

    fn new_hello(&mut self, now: Instant) {
        self.hello_id = self.hello_id.wrapping_add(1).max(1);
        self.hello_acked = false;
        self.hello_part = 0;
        self.next_hello = now;
    }

    fn follow<H: Host>(&mut self, now: Instant, master: Slot, term: Term, host: &mut H) {
        info!("following new master");
        self.abort_rx_bulks(host);
        self.master = Some(master);
        self.term = term;
        self.role = Role::Standby;
        self.election_at = None;
        self.master_config = None;
        self.master_in_sync = false;
        self.hello_acked = false;
        self.next_hello = now;
        self.next_heartbeat = now;
        self.push_event(Event::RoleChanged { role: Role::Standby, term });
    }

    fn abort_rx_bulks<H: Host>(&mut self, host: &mut H) {
        for sid in 0..self.n_streams() {
            let rx = &mut self.st_mut(sid).rx;
            if rx.in_bulk {
                rx.in_bulk = false;
                host.bulk_abort(Self::stream_of(sid));
            }
            rx.ack_due = false;
            rx.resync_at = None;
        }
    }

    fn step_down<H: Host>(&mut self, _now: Instant, _host: &mut H) {
        self.detach(false);
        self.session = None;
        self.backup = None;
        self.handover = None;
        for sid in 0..self.n_streams() {
            self.st_mut(sid).tx.stop();
        }
        self.backlog.clear();
        self.in_sync = false;
        self.push_event(Event::SteppedDown { term: self.max_term });
    }

    fn master_lost<H: Host>(&mut self, now: Instant, host: &mut H) {
        self.push_event(Event::PeerLost(self.master.unwrap_or(self.cfg.slot)));
        match self.role {
            Role::Backup => self.promote(now, host),
            _ => {
                self.abort_rx_bulks(host);
                self.role = Role::Init;
                self.master = None;
                self.election_at = Some(now + self.detect());
                self.push_event(Event::RoleChanged { role: Role::Init, term: self.term });
            }
        }
    }

    /// Become master: after the master was lost, on handover, or by election.
    fn promote<H: Host>(&mut self, now: Instant, host: &mut H) {
        let config = if self.role == Role::Backup && self.has_complete(Stream::ActiveConfig) {
            ConfigChoice::MastersActive
        } else {
            ConfigChoice::OwnSaved
        };
        let in_sync = self.role == Role::Backup && self.backup_sync_state() == SyncState::InSync;
        self.abort_rx_bulks(host);
        let term = self.max_term.next(self.cfg.slot);
        self.term = term;
        self.max_term = term;
        self.role = Role::Master;
        self.master = Some(self.cfg.slot);
        self.election_at = None;
        self.backup = None;
        self.session = None;
        self.attached = false;
        self.handover = None;
        for sid in 0..self.n_streams() {
            self.st_mut(sid).tx.stop();
        }
        self.backlog.clear();
        self.in_flight.clear();
        self.next_heartbeat = now;
        info!("promoted to master");
        self.push_event(Event::RoleChanged { role: Role::Master, term });
        self.push_event(Event::Promoted { term, config, in_sync });
        self.choose_backup(now);
    }

    fn choose_backup(&mut self, now: Instant) {
        if self.role != Role::Master {
            return;
        }
        if let Some(b) = self.backup {
            if self.peers[b.index()].alive {
                return;
            }
        }
        let best = self
            .peers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.alive && p.version.is_none() && p.role != Role::Master)
            .filter_map(|(i, p)| Slot::new(i as u8).map(|s| (Rank::new(p.priority, p.health, s), s)))
            .min()
            .map(|(_, s)| s);
        if best.is_some() && best != self.backup {
            if self.session.is_some_and(|s| Some(s.slot) != best) {
                // Another module becomes backup: what the old one held is not there.
                self.forget_backup();
            }
            self.backup = best;
            self.next_heartbeat = now;
        }
    }

    /// End the checkpoint session: nothing is on a backup any more.
    fn forget_backup(&mut self) {
        self.detach(true);
        self.backup = None;
        for sid in 0..self.n_streams() {
            self.st_mut(sid).tx.stop();
        }
        self.backlog.clear();
    }

    /// Stop sending to the backup. With `forget`, the session ends too and the
    /// next hello starts from scratch.
    fn detach(&mut self, forget: bool) {
        self.attached = false;
        self.in_flight.clear();
        self.rto_at = None;
        self.backlog.rewind();
        if forget {
            self.session = None;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_hello(
        &mut self,
        now: Instant,
        from: Slot,
        term: Term,
        incarnation: u32,
        hello_id: u32,
        total: u8,
        mut tail: &[u8],
    ) -> Result<(), FrameError> {
        if self.role == Role::Master && self.backup.is_none() {
            self.choose_backup(now);
        }
        self.check_from_backup(from, term)?;
        let fresh = match self.session {
            Some(s) => s.slot != from || s.incarnation != incarnation || s.hello_id != hello_id,
            None => true,
        };
        if fresh {
            let same_backup = self.session.is_some_and(|s| s.slot == from && s.incarnation == incarnation);
            debug!("new hello");
            if !same_backup {
                for sid in 0..self.n_streams() {
                    self.st_mut(sid).tx.stop();
                }
                self.backlog.clear();
            }
            self.detach(false);
            self.peer_sid = [NO_SLOT; 32];
            self.session = Some(Session { slot: from, incarnation, hello_id, seen: 0, total: total.min(32) });
        }
        let Some(mut session) = self.session else {
            return Ok(());
        };
        while !tail.is_empty() {
            let h: StreamHello<'_> = wire::take(&mut tail).map_err(|_| FrameError::BadRecord)?;
            if h.id >= 32 || session.seen & (1 << h.id) != 0 {
                continue;
            }
            // Counted even when we have no such application: the backup's extra
            // streams simply get nothing, and the hello still completes.
            session.seen |= 1 << h.id;
            let Some(sid) = (0..self.n_streams()).find(|&i| self.stream_name(i) == h.name) else {
                continue;
            };
            self.peer_sid[sid] = h.id;
            self.plan_stream(sid, &h);
        }
        let complete = session.seen.count_ones() >= u32::from(session.total);
        self.session = Some(session);
        if complete && !self.attached {
            for sid in 0..self.n_streams() {
                if self.peer_sid[sid] == NO_SLOT {
                    let ours = self.stream_schema(sid);
                    let tx = &mut self.st_mut(sid).tx;
                    tx.phase = Phase::Blocked;
                    tx.mismatch = Some(Mismatch { ours, theirs: None });
                }
            }
            self.attached = true;
            self.backlog.rewind();
            self.rto = self.cfg.rto;
            self.push_event(Event::BackupAttached(from));
        }
        if complete {
            self.hello_ack_due = true;
        }
        Ok(())
    }

    /// Resume a stream from the backup's last applied record if the backlog
    /// still covers it; otherwise start a new bulk.
    fn plan_stream(&mut self, sid: usize, h: &StreamHello<'_>) {
        let ours = self.stream_schema(sid);
        let term = self.term.raw();
        if h.schema != ours {
            self.backlog.kill_stream(sid as u8);
            let tx = &mut self.st_mut(sid).tx;
            tx.phase = Phase::Blocked;
            tx.recording = false;
            tx.mismatch = Some(Mismatch { ours, theirs: Some(h.schema) });
            return;
        }
        let tx = &self.st(sid).tx;
        let resumable = tx.recording
            && h.term == term
            && h.epoch == tx.epoch
            && h.seq >= tx.acked
            && h.seq < tx.next_seq
            && tx.phase != Phase::Failed;
        self.st_mut(sid).tx.mismatch = None;
        if resumable {
            debug!("stream resumes from backlog");
            self.acknowledge(sid, h.seq);
        } else if self.st(sid).tx.phase == Phase::Waiting && !self.st(sid).tx.recording {
            // Nothing sent in this epoch yet: the bulk will start normally.
        } else {
            self.backlog.kill_stream(sid as u8);
            let tx = &mut self.st_mut(sid).tx;
            if tx.phase != Phase::Off {
                tx.rebulks += 1;
            }
            tx.restart();
        }
    }

    fn local_sid(&self, peer_id: u8) -> Result<usize, FrameError> {
        (0..self.n_streams()).find(|&i| self.peer_sid[i] == peer_id).ok_or(FrameError::UnknownStream(peer_id))
    }

    fn on_acks(&mut self, now: Instant, from: Slot, term: Term, mut tail: &[u8]) -> Result<(), FrameError> {
        self.check_from_backup(from, term)?;
        if !self.attached {
            return Ok(());
        }
        let mut gap = false;
        let mut progress = false;
        while !tail.is_empty() {
            let a: AckItem = wire::take(&mut tail).map_err(|_| FrameError::BadRecord)?;
            let sid = self.local_sid(a.stream)?;
            let tx = &self.st(sid).tx;
            if tx.epoch != a.epoch {
                continue; // for an epoch already replaced: harmless
            }
            if a.seq >= tx.next_seq {
                return Err(FrameError::BadRecord);
            }
            self.st_mut(sid).counters.rx += 1;
            gap |= a.gap;
            if a.seq > self.st(sid).tx.acked {
                self.acknowledge(sid, a.seq);
                progress = true;
            }
        }
        if progress {
            self.rto = self.cfg.rto;
            self.rto_at = if self.in_flight.is_empty() { None } else { Some(now + self.rto) };
        }
        if gap && now >= self.gap_resend_after {
            // The backup saw a hole: resend from the oldest unacknowledged record now.
            self.go_back();
            self.gap_resend_after = now + self.cfg.rto;
        }
        Ok(())
    }

    /// Everything of `sid` up to `seq` is on the backup.
    fn acknowledge(&mut self, sid: usize, seq: u64) {
        let mut max_change = self.st(sid).tx.max_acked_change;
        let mut off = self.backlog.start();
        while let Some(e) = self.backlog.get(off) {
            if e.stream as usize == sid && !e.dead {
                if e.seq > seq {
                    break;
                }
                if e.kind == Kind::Change {
                    max_change = max_change.max(e.change);
                }
            }
            off = e.next;
        }
        let tx = &mut self.st_mut(sid).tx;
        tx.acked = seq;
        tx.max_acked_change = max_change;
        let mut synced = false;
        if tx.end_seq.is_some_and(|e| e <= seq) && tx.phase == Phase::Ending {
            tx.phase = Phase::Synced;
            synced = true;
        }
        if tx.phase == Phase::Synced {
            tx.checkpointed = tx.checkpointed.max(tx.covers).max(tx.max_acked_change);
        }
        let sidb = sid as u8;
        self.in_flight.retain(|f| !(f.sid == sidb && f.last_seq <= seq));
        let acked = self.acked_table();
        self.backlog.trim(|s, q| q > acked[s as usize]);
        if synced {
            self.push_event(Event::StreamSynced(Self::stream_of(sid)));
        }
        self.update_in_sync();
    }

    fn update_in_sync(&mut self) {
        let now_in_sync = self.role == Role::Master && self.master_sync_state() == SyncState::InSync;
        if now_in_sync != self.in_sync {
            self.in_sync = now_in_sync;
            self.push_event(Event::InSync(now_in_sync));
        }
    }

    fn go_back(&mut self) {
        self.backlog.rewind();
        self.in_flight.clear();
        self.rto_at = None;
        self.retransmits += 1;
    }

    fn on_data<H: Host>(
        &mut self,
        from: Slot,
        term: Term,
        mut tail: &[u8],
        host: &mut H,
    ) -> Result<(), FrameError> {
        self.check_from_master(from, term)?;
        if self.role != Role::Backup {
            return Ok(());
        }
        // The current run: stream, next sequence number, and whether to skip the rest of it.
        let mut run: Option<(usize, u64, bool)> = None;
        while !tail.is_empty() {
            let Ok(rec) = wire::take::<Record<'_>>(&mut tail) else {
                if let Some((sid, _, _)) = run {
                    self.st_mut(sid).counters.errors += 1;
                }
                return Err(FrameError::BadRecord);
            };
            if let Record::Run { stream, epoch, first_seq } = rec {
                let sid = stream as usize;
                if sid >= self.n_streams() {
                    return Err(FrameError::UnknownStream(stream));
                }
                let skip = !self.start_run(sid, term, epoch, host);
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
            let applied = self.st(sid).rx.applied;
            if this <= applied {
                continue;
            }
            if this > applied + 1 {
                self.st_mut(sid).rx.gap = true;
                *skip = true;
                continue;
            }
            if let Err(()) = self.apply_record(sid, rec, host) {
                *skip = true;
                continue;
            }
            self.st_mut(sid).rx.applied = this;
            if sid == ACTIVE {
                self.compare_config_digest();
            }
        }
        Ok(())
    }

    /// A run of `sid` records in `epoch` starts. False: the run is stale, skip it.
    fn start_run<H: Host>(&mut self, sid: usize, term: Term, epoch: u32, host: &mut H) -> bool {
        let st = self.st_mut(sid);
        st.counters.rx += 1;
        st.rx.ack_due = true;
        let rx = &mut st.rx;
        if rx.term == term.raw() && epoch < rx.epoch {
            return false; // an old epoch, retransmitted late
        }
        if rx.term != term.raw() || epoch > rx.epoch {
            // A new master or a new bulk: what we hold belongs to an older epoch.
            // (If this is not the epoch's first record, the gap logic asks for it.)
            if rx.in_bulk {
                rx.in_bulk = false;
                host.bulk_abort(Self::stream_of(sid));
            }
            rx.term = term.raw();
            rx.epoch = epoch;
            rx.applied = 0;
            rx.complete = false;
            rx.digest = Digest::new();
            rx.resync_at = None;
        }
        true
    }

    fn apply_record<H: Host>(&mut self, sid: usize, rec: Record<'_>, host: &mut H) -> Result<(), ()> {
        let stream = Self::stream_of(sid);
        let res = match rec {
            Record::Begin { total } => {
                let r = host.bulk_begin(stream, total);
                if r.is_ok() {
                    let rx = &mut self.st_mut(sid).rx;
                    rx.in_bulk = true;
                    rx.bulk_total = total;
                    rx.bulk_rcvd = 0;
                    rx.digest = Digest::new();
                }
                r
            }
            Record::Bulk(b) | Record::Change(b) => {
                let kind = if matches!(rec, Record::Bulk(_)) { ItemKind::Bulk } else { ItemKind::Dynamic };
                let r = host.apply(stream, kind, b);
                if r.is_ok() {
                    let rx = &mut self.st_mut(sid).rx;
                    rx.digest.update(b);
                    if kind == ItemKind::Bulk {
                        rx.bulk_rcvd += 1;
                    }
                }
                r
            }
            Record::Run { .. } => Ok(()), // handled by on_data
            Record::End { digest } => {
                let ours = self.st(sid).rx.digest.value();
                if ours != digest || !self.st(sid).rx.in_bulk {
                    warn!("bulk digest mismatch");
                    self.st_mut(sid).rx.in_bulk = false;
                    host.bulk_abort(stream);
                    self.fail_rx(sid);
                    if sid == ACTIVE {
                        self.push_event(Event::ConfigDigestMismatch);
                    }
                    return Err(());
                }
                let r = host.bulk_end(stream);
                if r.is_ok() {
                    let rx = &mut self.st_mut(sid).rx;
                    rx.in_bulk = false;
                    rx.complete = true;
                    self.push_event(Event::StreamSynced(stream));
                }
                r
            }
        };
        match res {
            Ok(()) => Ok(()),
            Err(e) => {
                warn!("host refused a record");
                let _ = e;
                self.fail_rx(sid);
                Err(())
            }
        }
    }

    fn fail_rx(&mut self, sid: usize) {
        let st = self.st_mut(sid);
        st.counters.errors += 1;
        st.rx.resync_at = Some(Instant::ZERO);
        st.rx.complete = false;
    }

    /// Compare our active-config digest with the master's at the same point.
    fn compare_config_digest(&mut self) {
        let Some(m) = self.master_config else { return };
        let rx = &self.cfg_streams[ACTIVE].rx;
        if rx.term != self.term.raw() || rx.epoch != m.epoch || rx.applied != m.seq || m.seq == 0 {
            return;
        }
        if rx.digest.value() != m.digest && self.cfg_streams[ACTIVE].rx.resync_at.is_none() {
            warn!("active config digest differs from the master's");
            self.fail_rx(ACTIVE);
            self.push_event(Event::ConfigDigestMismatch);
        }
    }

    // ---------------------------------------------------------------- timers

    /// Process every deadline that has passed.
    pub fn handle_timeout<H: Host>(&mut self, now: Instant, host: &mut H) {
        let detect = self.detect();
        for i in 0..MAX_NODES {
            let p = self.peers[i];
            if !p.alive || now < p.last_heard + detect {
                continue;
            }
            self.peers[i].alive = false;
            let Some(slot) = Slot::new(i as u8) else {
                continue;
            };
            if self.master == Some(slot) && self.role != Role::Master {
                self.master_lost(now, host);
            } else {
                self.push_event(Event::PeerLost(slot));
                if self.role == Role::Master && self.backup == Some(slot) {
                    warn!("backup lost");
                    self.backup = None;
                    self.detach(false);
                    self.handover = None;
                    self.update_in_sync();
                    self.choose_backup(now);
                }
            }
        }
        if self.role == Role::Init && self.election_at.is_some_and(|t| now >= t) {
            self.elect(now, host);
        }
        if self.rto_at.is_some_and(|t| now >= t) && !self.in_flight.is_empty() {
            debug!("retransmission timeout");
            self.go_back();
            self.rto = (self.rto * 2).min(self.cfg.rto_max);
        }
        if let Some(h) = self.handover {
            if now >= h.deadline {
                warn!("failover timed out");
                self.handover = None;
                self.push_event(Event::FailoverFailed);
            }
        }
        self.update_in_sync();
    }

    fn elect<H: Host>(&mut self, now: Instant, host: &mut H) {
        let me = Rank::new(self.cfg.priority, self.cfg.health, self.cfg.slot);
        let best_other = self
            .peers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.alive && p.version.is_none() && p.role != Role::Master)
            .filter_map(|(i, p)| Slot::new(i as u8).map(|s| Rank::new(p.priority, p.health, s)))
            .min();
        if best_other.is_none_or(|o| me < o) {
            info!("elected master");
            self.promote(now, host);
        } else {
            self.election_at = Some(now + self.detect());
        }
    }

    // ---------------------------------------------------------------- output

    /// The next frame to send, written into `buf`; `None` when nothing is due.
    /// Call until `None` after every input. `buf` must hold `max_frame` bytes:
    /// with less, what does not fit waits (it is never split or truncated).
    pub fn poll_transmit<H: Host>(&mut self, now: Instant, host: &mut H, buf: &mut [u8]) -> Option<usize> {
        let max = buf.len().min(self.cfg.max_frame);
        let buf = &mut buf[..max];
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.cfg.heartbeat_interval;
            return self.heartbeat(buf);
        }
        match self.role {
            Role::Master => self.transmit_master(now, host, buf),
            Role::Backup => self.transmit_backup(now, buf),
            _ => None,
        }
    }

    fn writer<'b>(&self, buf: &'b mut [u8], to: u8, body: &Body) -> Option<FrameWriter<'b>> {
        FrameWriter::new(buf, self.cfg.slot.raw(), to, self.term.raw(), body).ok()
    }

    fn heartbeat(&mut self, buf: &mut [u8]) -> Option<usize> {
        let a = &self.cfg_streams[ACTIVE].tx;
        let config = if self.role == Role::Master && a.recording {
            DigestMark { epoch: a.epoch, seq: a.next_seq - 1, digest: a.digest.value() }
        } else {
            DigestMark::default()
        };
        let hb = Heartbeat {
            role: self.role.to_wire(),
            priority: self.cfg.priority,
            health: self.cfg.health,
            backup: self.backup.map_or(NO_SLOT, |s| s.raw()),
            in_sync: self.role == Role::Master && self.in_sync,
            session: match self.session {
                Some(s) if self.attached && self.role == Role::Master => s.hello_id,
                _ => 0,
            },
            incarnation: self.cfg.incarnation,
            config,
        };
        Some(self.writer(buf, BROADCAST, &Body::Heartbeat(hb))?.finish())
    }

    fn transmit_backup(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let master = self.master?.raw();
        if !self.hello_acked && now >= self.next_hello {
            return self.hello(now, master, buf);
        }
        for sid in 0..self.n_streams() {
            let rx = &self.st(sid).rx;
            if rx.resync_at.is_some_and(|t| now >= t) && rx.term == self.term.raw() {
                let body = Body::Resync { stream: sid as u8, epoch: rx.epoch, reason: 0 };
                let n = self.writer(buf, master, &body)?.finish();
                let again = now + self.cfg.heartbeat_interval;
                let st = self.st_mut(sid);
                st.rx.resync_at = Some(again);
                st.counters.tx += 1;
                return Some(n);
            }
        }
        self.acks(master, buf)
    }

    /// One frame acknowledging every stream with news.
    fn acks(&mut self, master: u8, buf: &mut [u8]) -> Option<usize> {
        let term = self.term.raw();
        if !(0..self.n_streams()).any(|i| self.st(i).rx.ack_due && self.st(i).rx.term == term) {
            return None;
        }
        let mut w = self.writer(buf, master, &Body::Ack)?;
        for sid in 0..self.n_streams() {
            let rx = &self.st(sid).rx;
            if !(rx.ack_due && rx.term == term) {
                continue;
            }
            let item = AckItem { stream: sid as u8, epoch: rx.epoch, seq: rx.applied, gap: rx.gap };
            if w.push(&item).is_err() {
                break; // the rest go in the next frame
            }
            let st = self.st_mut(sid);
            st.rx.ack_due = false;
            st.rx.gap = false;
            st.counters.tx += 1;
        }
        Some(w.finish())
    }

    /// Hello in as many frames as the stream table needs; all parts go out
    /// in consecutive polls, then again every heartbeat until acknowledged.
    fn hello(&mut self, now: Instant, master: u8, buf: &mut [u8]) -> Option<usize> {
        let n = self.n_streams();
        let start = self.hello_part.min(n);
        let body = Body::Hello { incarnation: self.cfg.incarnation, hello_id: self.hello_id, total: n as u8 };
        let mut w = self.writer(buf, master, &body)?;
        let mut sid = start;
        while sid < n {
            let rx = &self.st(sid).rx;
            let h = StreamHello {
                id: sid as u8,
                name: self.stream_name(sid),
                schema: self.stream_schema(sid),
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
            self.next_hello = now + self.cfg.heartbeat_interval;
        } else {
            self.hello_part = sid;
        }
        Some(w.finish())
    }

    fn transmit_master<H: Host>(&mut self, now: Instant, host: &mut H, buf: &mut [u8]) -> Option<usize> {
        let backup = self.backup?;
        if self.hello_ack_due {
            let s = self.session?;
            self.hello_ack_due = false;
            let body = Body::HelloAck { incarnation: s.incarnation, hello_id: s.hello_id };
            return Some(self.writer(buf, backup.raw(), &body)?.finish());
        }
        if let Some(h) = self.handover {
            if now >= h.next_send && (h.force || self.drained()) {
                self.handover = Some(Handover { next_send: now + self.cfg.heartbeat_interval, ..h });
                return Some(self.writer(buf, backup.raw(), &Body::Handover { force: h.force })?.finish());
            }
        }
        if !self.attached || self.in_flight.is_full() {
            return None;
        }
        self.start_ready_bulks(host);
        loop {
            let acked = self.acked_table();
            let mut off = self.backlog.send_cursor();
            while let Some(e) = self.backlog.get(off) {
                if !e.dead && e.seq > acked[e.stream as usize] {
                    break;
                }
                off = e.next;
            }
            self.backlog.set_send_cursor(off);
            if self.backlog.get(off).is_some() {
                return self.pack(now, backup, off, buf);
            }
            if !self.pull_bulk(host) {
                return None;
            }
        }
    }

    /// Every record made has been acknowledged.
    fn drained(&self) -> bool {
        (0..self.n_streams()).all(|i| {
            let tx = &self.st(i).tx;
            !tx.recording || tx.acked + 1 == tx.next_seq
        })
    }

    /// Streams whose dependencies all finished their bulk begin theirs.
    fn start_ready_bulks<H: Host>(&mut self, host: &mut H) {
        if self.handover.is_some() {
            return;
        }
        for sid in 0..self.n_streams() {
            if self.st(sid).tx.phase != Phase::Waiting {
                continue;
            }
            let deps = self.deps_of(sid);
            if deps & !self.synced_mask() != 0 {
                continue;
            }
            let total = host.bulk_start(Self::stream_of(sid));
            let covers = self.st(sid).tx.changes;
            let tx = &mut self.st_mut(sid).tx;
            tx.phase = Phase::Bulk;
            tx.recording = true;
            tx.cursor = 0;
            tx.bulk_total = total;
            tx.bulk_sent = 0;
            tx.covers = covers;
            debug!("bulk starts");
            self.append(sid, Kind::Begin, covers, &total.to_le_bytes());
        }
    }

    /// Append a record to the backlog under the overflow policy: when full,
    /// the stream holding the most bytes is dropped and re-bulked. Returns
    /// false when the record itself was dropped that way.
    fn append(&mut self, sid: usize, kind: Kind, change: u64, data: &[u8]) -> bool {
        loop {
            let acked = self.acked_table();
            let live = |s: u8, q: u64| q > acked[s as usize];
            if let Some(slot) = self.backlog.reserve(data.len(), live) {
                slot[..data.len()].copy_from_slice(data);
                let tx = &mut self.st_mut(sid).tx;
                let seq = tx.next_seq;
                tx.next_seq += 1;
                match kind {
                    Kind::Bulk | Kind::Change => tx.digest.update(data),
                    Kind::End => tx.end_seq = Some(seq),
                    Kind::Begin => {}
                }
                self.backlog.commit(sid as u8, kind, seq, change, data.len());
                return true;
            }
            let mut usage = [0usize; 32];
            self.backlog.usage(live, &mut usage);
            let victim = (0..self.n_streams()).max_by_key(|&i| (usage[i], i == sid)).unwrap_or(sid);
            if usage[victim] == 0 {
                // Cannot happen for records within max_record and a backlog of
                // at least a few frames; drop to a re-bulk rather than lose order.
                self.rebulk(sid, RebulkReason::BacklogOverflow);
                return false;
            }
            self.rebulk(victim, RebulkReason::BacklogOverflow);
            if victim == sid {
                return false;
            }
        }
    }

    fn rebulk(&mut self, sid: usize, reason: RebulkReason) {
        warn!("stream re-bulk");
        self.backlog.kill_stream(sid as u8);
        let sidb = sid as u8;
        self.in_flight.retain(|f| f.sid != sidb);
        let off = self.session.is_none();
        let tx = &mut self.st_mut(sid).tx;
        tx.restart();
        tx.rebulks += 1;
        if off {
            tx.phase = Phase::Off;
        }
        self.push_event(Event::Rebulk { stream: Self::stream_of(sid), reason });
        self.update_in_sync();
    }

    /// Read bulk records from the host into the backlog, about one frame's
    /// worth, round-robin over streams in bulk. False when there is nothing.
    fn pull_bulk<H: Host>(&mut self, host: &mut H) -> bool {
        let n = self.n_streams();
        let Some(sid) = (0..n).map(|k| (self.bulk_rr + k) % n).find(|&i| self.st(i).tx.phase == Phase::Bulk)
        else {
            return false;
        };
        self.bulk_rr = (sid + 1) % n;
        let stream = Self::stream_of(sid);
        let max = self.max_record();
        let mut budget = self.cfg.max_frame;
        let mut any = false;
        while budget > 0 && self.st(sid).tx.phase == Phase::Bulk {
            let acked = self.acked_table();
            let live = |s: u8, q: u64| q > acked[s as usize];
            let mut cursor = self.st(sid).tx.cursor;
            let Some(slot) = self.backlog.reserve(max, live) else {
                break; // full of unacknowledged records: wait for acks
            };
            match host.bulk_read(stream, &mut cursor, slot) {
                Ok(Some(len)) if len <= max => {
                    let tx = &mut self.st_mut(sid).tx;
                    let seq = tx.next_seq;
                    tx.next_seq += 1;
                    tx.cursor = cursor;
                    tx.bulk_sent += 1;
                    let off = self.backlog.commit(sid as u8, Kind::Bulk, seq, 0, len);
                    // Disjoint fields: the record stays in the backlog, the digest is the stream's.
                    let tx = if sid < CONFIG_STREAMS {
                        &mut self.cfg_streams[sid].tx
                    } else {
                        &mut self.app_streams[sid - CONFIG_STREAMS].tx
                    };
                    if let Some(e) = self.backlog.get(off) {
                        tx.digest.update(e.data);
                    }
                    budget = budget.saturating_sub(len + wire::bytes_record_len(0));
                    any = true;
                }
                res @ (Ok(Some(_)) | Err(_)) => {
                    let st = self.st_mut(sid);
                    st.tx.phase = Phase::Failed;
                    st.tx.failure = Some(res.err().unwrap_or(crate::host::HostError::RecordTooLarge));
                    st.counters.errors += 1;
                    self.update_in_sync();
                    break;
                }
                Ok(None) => {
                    let digest = self.st(sid).tx.digest.value();
                    if self.append(sid, Kind::End, 0, &digest.to_le_bytes()) {
                        self.st_mut(sid).tx.phase = Phase::Ending;
                        any = true;
                    }
                    break;
                }
            }
        }
        any
    }

    /// Fill one data frame from the send cursor: consecutive records of each
    /// stream form a run; a frame carries as many runs as fit and the window allows.
    fn pack(&mut self, now: Instant, backup: Slot, off: usize, buf: &mut [u8]) -> Option<usize> {
        let acked = self.acked_table();
        let mut w =
            FrameWriter::new(buf, self.cfg.slot.raw(), backup.raw(), self.term.raw(), &Body::Data).ok()?;
        let mut runs: Vec<InFlight, WINDOW> = Vec::new();
        let room = WINDOW - self.in_flight.len();
        let mut cur = off;
        let mut expect = 0u64;
        while let Some(e) = self.backlog.get(cur) {
            let sid = e.stream as usize;
            if e.dead || e.seq <= acked[sid] {
                cur = e.next;
                continue;
            }
            let word = |d: &[u8]| d.get(..8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
            let rec = match e.kind {
                Kind::Begin => Record::Begin { total: word(e.data) },
                Kind::Bulk => Record::Bulk(e.data),
                Kind::Change => Record::Change(e.data),
                Kind::End => Record::End { digest: word(e.data) },
            };
            let same_run = runs.last().is_some_and(|r| r.sid == e.stream && expect == e.seq);
            if !same_run {
                // Begin/End carry a u64 as a varint: up to 11 bytes with the tag.
                let need = wire::RUN_LEN + wire::bytes_record_len(e.data.len()).max(11);
                if runs.len() >= room || w.remaining() < need {
                    break;
                }
                let epoch = if sid < CONFIG_STREAMS {
                    self.cfg_streams[sid].tx.epoch
                } else {
                    self.app_streams[sid - CONFIG_STREAMS].tx.epoch
                };
                let run = Record::Run { stream: self.peer_sid[sid], epoch, first_seq: e.seq };
                if w.push(&run).is_err() || runs.push(InFlight { sid: e.stream, last_seq: e.seq }).is_err() {
                    break;
                }
            }
            if w.push(&rec).is_err() {
                break;
            }
            if let Some(r) = runs.last_mut() {
                r.last_seq = e.seq;
            }
            expect = e.seq + 1;
            cur = e.next;
        }
        if runs.is_empty() {
            return None;
        }
        self.backlog.set_send_cursor(cur);
        for r in &runs {
            let _ = self.in_flight.push(*r);
            self.st_mut(r.sid as usize).counters.tx += 1;
        }
        if self.rto_at.is_none() {
            self.rto_at = Some(now + self.rto);
        }
        Some(w.finish())
    }
}

// Compile-time: the stream sets are u32 bit masks.
const _: () = assert!(crate::app::MAX_APPS + CONFIG_STREAMS <= 32);
const _: () = assert!(MAX_NAME <= 16);
