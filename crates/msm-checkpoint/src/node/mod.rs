//! The checkpoint engine of one management module.
//!
//! Sans-IO: feed it frames (`handle_frame`) and timeouts (`handle_timeout`),
//! tell it about changes (`record_change`, `config_change`, `config_saved`),
//! then drain `poll_transmit` until it returns `None` and `poll_event`
//! likewise, and sleep until `poll_timeout`. It reads no clock, socket or
//! flash.
//!
//! [`Node`] is a thin dispatcher over the state it owns, one concept a file:
//! `membership` (peers, roles, terms, election), `streams` (per-stream state
//! and what is acknowledged), `sender` (the master's session, backlog and
//! bulks), `receiver` (the backup's hello, apply, acks and resyncs), `timers`
//! (every deadline), `status` (what `show` prints), `frames` (receiving a
//! frame and dispatching its body), `roles` (role changes applied).
//! Membership decides; the node applies the decision to the sender and the
//! receiver.

mod backlog;
mod config;
mod frames;
mod freshness;
mod identity;
mod membership;
mod mirror;
mod packer;
mod queries;
mod receiver;
mod recorder;
mod replay;
mod rivals;
mod roles;
mod sender;
mod standbys;
mod stream_set;
mod timers;
mod versions;

use msm_time::Instant;

pub use config::Config;
use freshness::Freshness;
use identity::{Finding, Identity};
use membership::{MasterVerdict, Membership};
use mirror::{Mirror, SnapshotPart};
use receiver::{Reader, Receiver};
pub use replay::MAX_COUNTER_JUMP;
use replay::{Admission, ReplayGuard, Stale};
use rivals::{Claim, Verdict};
use sender::{HelloFrom, SendLimits, Sender};
use standbys::Standbys;
use stream_set::{ACTIVE, CONFIG_STREAMS, SAVED, StreamStore, Streams};
use timers::{Timer, TimerTable};
use versions::Versions;

use crate::app::AppRegistry;
use crate::auth::NO_KEY;
use crate::auth::{Key, KeyError, KeyStatus, Keyring, SecondKey};
use crate::error::{ChangeError, ConfigError, FailoverError, FrameError};
use crate::event::{ConfigChoice, Event, EventQueue, RebulkReason};
use crate::host::{AppId, Host, Stream};
use crate::role::{MAX_NODES, Role, Slot, Term};
use crate::status::{AppsFrom, FrameErrors, SplitBrain, SplitBrainWon, SplitRule, SyncState};
use crate::stream::Phase;
use crate::takeover::TakeoverCause;
use crate::wire::{
    self, BROADCAST, Body, DigestMark, Heartbeat, HeartbeatExt, NO_SLOT, Origin, Outgoing, WireError,
};

/// One management module's checkpoint engine. `APPS` applications, at most
/// `WINDOW` runs unacknowledged (a run is one stream's consecutive records in
/// a data frame; a frame carries one or more), `BACKLOG` bytes of
/// unacknowledged records, configuration mirrors for up to `STANDBYS`
/// standbys (a chassis of `STANDBYS + 2` modules; 0 for a pair).
#[derive(Debug)]
pub struct Node<const APPS: usize, const WINDOW: usize, const BACKLOG: usize, const STANDBYS: usize = 2> {
    cfg: Config,
    members: Membership,
    streams: StreamStore<APPS>,
    sender: Sender<WINDOW, BACKLOG>,
    receiver: Receiver,
    /// Master: its standbys' configuration mirrors.
    standbys: Standbys<STANDBYS>,
    /// Standby: its own.
    mirror: Mirror,
    timers: TimerTable,
    events: EventQueue,
    errors: FrameErrors,
    identity: Identity,
    keys: Keyring,
    replay: ReplayGuard,
    freshness: Freshness,
    /// The protocol version each peer speaks.
    versions: Versions,
    /// The one this node speaks: the oldest a live peer speaks.
    speaking: u8,
    /// When the last heartbeat went out: prompt heartbeats are spaced by at
    /// least a quarter interval whatever the node hears.
    last_heartbeat: Option<Instant>,
    /// Frames sealed in this incarnation: the counter of the last one.
    sent: u64,
    /// The last split brain this node lost.
    split_brain: Option<SplitBrain>,
    /// The last split brain this node won.
    split_brain_won: Option<SplitBrainWon>,
    /// Master: where its application state came from when it became master.
    apps: Option<AppsFrom>,
    /// Master: the term whose whole state it took over (0: none).
    base: u64,
    /// Master: the rival term it overruled last (0: none).
    overrules: u64,
    /// Master: per slot, `Streams::acked_ever` when the backup in that slot
    /// was lost: what was acknowledged since, that module lacks.
    forks: [Option<u64>; crate::role::MAX_NODES],
}

impl<const APPS: usize, const WINDOW: usize, const BACKLOG: usize, const STANDBYS: usize>
    Node<APPS, WINDOW, BACKLOG, STANDBYS>
{
    /// A node in INIT. `cfg` and `apps` are validated here: settings that
    /// cannot work, unknown dependencies and cycles are refused by name.
    pub fn new(cfg: Config, mut apps: AppRegistry<APPS>, now: Instant) -> Result<Self, ConfigError> {
        cfg.validate()?;
        apps.validate().map_err(ConfigError::Apps)?;
        let mut timers = TimerTable::new();
        timers.set(Timer::Heartbeat, now);
        timers.set(Timer::Election, now + cfg.detect());
        let limits = SendLimits {
            rto: cfg.rto,
            rto_max: cfg.rto_max,
            heartbeat: cfg.heartbeat_interval,
            max_frame: cfg.max_frame,
            max_record: wire::max_record(cfg.max_frame),
        };
        Ok(Node {
            members: Membership::new(cfg.slot),
            streams: StreamStore::new(apps),
            sender: Sender::new(limits),
            receiver: Receiver::new(cfg.heartbeat_interval),
            standbys: Standbys::new(),
            mirror: Mirror::new(cfg.heartbeat_interval),
            timers,
            events: EventQueue::new(),
            errors: FrameErrors::default(),
            identity: Identity::new(now, cfg.heartbeat_interval, cfg.detect()),
            keys: Keyring::open(),
            replay: ReplayGuard::default(),
            freshness: Freshness::new(
                cfg.boot_nonce,
                cfg.incarnation,
                cfg.heartbeat_interval,
                cfg.miss_count,
            ),
            versions: Versions::default(),
            speaking: crate::wire::PROTOCOL_VERSION,
            last_heartbeat: None,
            sent: 0,
            split_brain: None,
            split_brain_won: None,
            apps: None,
            base: 0,
            overrules: 0,
            forks: [None; crate::role::MAX_NODES],
            cfg,
        })
    }

    /// Authenticate every frame with `key` from now on, and only `key`
    /// (the board calls this at start). Without it the backplane is
    /// unauthenticated: untagged frames are sent and only those accepted.
    pub fn set_key(&mut self, key: &Key) {
        self.keys.set(key);
    }

    /// Key rotation, step 1: accept frames under `key` too. The next
    /// heartbeat goes out at once: peers learn the keys this node holds.
    pub fn install_key(&mut self, key: &Key) -> Result<(), KeyError> {
        self.keys.install(key)?;
        self.timers.set(Timer::Heartbeat, Instant::ZERO);
        Ok(())
    }

    /// Key rotation, step 2: send under the installed key; the previous one
    /// is still accepted. Refused while a live module does not hold the
    /// next key (it would refuse every frame of ours and lose us).
    pub fn switch_key(&mut self) -> Result<(), KeyError> {
        let next = match self.keys.status().also {
            Some((next, SecondKey::Next)) => next,
            _ => return Err(KeyError::NoNextKey),
        };
        if let Some(slot) = next.and_then(|fp| self.members.peer_lacking_key(fp)) {
            return Err(KeyError::PeerLacksKey { slot, fingerprint: next.unwrap_or(0) });
        }
        self.keys.switch()?;
        self.timers.set(Timer::Heartbeat, Instant::ZERO);
        Ok(())
    }

    /// Key rotation, step 3: stop accepting the second key. Refused while a
    /// live module still sends under it (we would refuse its frames and
    /// lose it).
    pub fn retire_key(&mut self) -> Result<(), KeyError> {
        let Some((second, _)) = self.keys.status().also else {
            return Err(KeyError::NothingToRetire);
        };
        if let Some(slot) = second.and_then(|fp| self.members.peer_sending_under(fp)) {
            return Err(KeyError::PeerSendsUnder { slot, fingerprint: second.unwrap_or(0) });
        }
        self.keys.retire()?;
        self.timers.set(Timer::Heartbeat, Instant::ZERO);
        Ok(())
    }

    /// The challenge this boot's heartbeat carries at `now`: a peer's boot
    /// counts here once its heartbeat echoes it (for tools and tests that
    /// speak for a module).
    pub fn challenge(&self, now: Instant) -> u32 {
        self.freshness.challenge(now)
    }

    /// The keys held, by fingerprint.
    pub fn key_status(&self) -> KeyStatus {
        self.keys.status()
    }

    /// Backup: the stream's state is whole (its bulk completed) for the current master.
    pub fn has_complete(&self, stream: Stream) -> bool {
        let rx = &self.streams.get(Streams::sid(stream)).rx;
        rx.complete && rx.term == self.members.term.raw()
    }

    /// Largest record payload that always fits in one data frame.
    pub fn max_record(&self) -> usize {
        wire::max_record(self.cfg.max_frame)
    }

    /// Next event for the board, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    /// The highest term this module saw before it restarted (the board keeps
    /// [`max_term`](Self::max_term) in flash): it never claims that term or
    /// a lower one again, so a term names one mastership of one boot. Call
    /// before the first frame.
    pub fn restore_term(&mut self, term: Term) {
        if term > self.members.max_term {
            self.members.max_term = term;
        }
    }

    /// The highest term seen or claimed. A board that keeps it across
    /// restarts may store it when it grows, at its own pace (a module that
    /// misbehaves can make it grow by `MAX_TERM_JUMP` a detection time):
    /// after a restart the module then catches up at once.
    pub fn max_term(&self) -> Term {
        self.members.max_term
    }

    /// The highest term this node claimed (became master in). A board that
    /// keeps terms across restarts stores it when it grows, before the next
    /// `poll_transmit`: a frame in a claimed term goes out only once the
    /// claim is durable, so no later boot claims it again.
    pub fn claimed_term(&self) -> Term {
        self.members.claimed
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
    pub fn record_change(&mut self, app: AppId, record: &[u8]) -> Result<u64, ChangeError> {
        let sid = self.streams.app_sid(app).ok_or(ChangeError::UnknownApp)?;
        self.change(sid, record)
    }

    /// Master: the operator changed the active configuration by one line.
    pub fn config_change(&mut self, line: &[u8]) -> Result<u64, ChangeError> {
        self.change(ACTIVE, line)
    }

    /// Master: the saved configuration was replaced (`save`); the backup's
    /// flash copy is refreshed with a new bulk of the saved-config stream.
    /// Returns the save's id: the backup's flash holds it once
    /// [`saved_checkpointed`](Self::saved_checkpointed) reaches it.
    pub fn config_saved(&mut self) -> u64 {
        let id = self.streams.get_mut(SAVED).tx.next_change();
        self.standbys.changed();
        if self.members.role == Role::Master && self.sender.session().is_some() {
            let tx = &self.streams.get(SAVED).tx;
            if tx.recording || tx.phase == Phase::Synced || tx.phase == Phase::Failed {
                self.sender.rebulk(SAVED, RebulkReason::ConfigSaved, &mut self.streams, &mut self.events);
                self.update_in_sync();
            }
        }
        id
    }

    fn change(&mut self, sid: usize, record: &[u8]) -> Result<u64, ChangeError> {
        if self.members.role != Role::Master {
            return Err(ChangeError::NotMaster);
        }
        if self.sender.handover_in_progress() {
            return Err(ChangeError::HandoverInProgress);
        }
        let max = self.max_record();
        if record.len() > max {
            return Err(ChangeError::RecordTooLarge { len: record.len(), max });
        }
        let (id, rebulked) = self.sender.change(sid, record, &mut self.streams, &mut self.events);
        if rebulked {
            self.update_in_sync();
        }
        if sid < CONFIG_STREAMS {
            self.standbys.changed();
        }
        Ok(id)
    }

    /// Master: `run msm-failover [force]`. Without `force` it is refused
    /// unless the backup is in sync; the backlog drains first, then the
    /// backup is told to take over.
    pub fn failover(&mut self, now: Instant, force: bool) -> Result<(), FailoverError> {
        if self.members.role != Role::Master {
            return Err(FailoverError::NotMaster);
        }
        if self.sender.handover_in_progress() {
            return Err(FailoverError::AlreadyInProgress);
        }
        if self.members.backup.is_none() || self.sender.session().is_none() {
            return Err(FailoverError::NoBackup);
        }
        let sync = self.sync_state();
        if !force && sync != SyncState::InSync {
            return Err(FailoverError::NotInSync(sync));
        }
        info!("failover requested");
        self.sender.start_handover(now, force, now + self.cfg.handover_timeout, &mut self.timers);
        Ok(())
    }

    /// The board's backplane moved data to another path (a redundant link
    /// lost the one it used): what was in flight on the old path is resent
    /// now, not after the retransmission timeout, so a path's loss stalls
    /// data for about the time it takes to notice it.
    pub fn link_changed(&mut self, now: Instant) {
        if self.members.role == Role::Master {
            self.sender.resend_now(now, &mut self.timers);
        }
    }

    /// Why the backup is or is not in sync, from this node's view.
    pub fn sync_state(&self) -> SyncState {
        match self.members.role {
            Role::Master => self.master_sync_state(),
            Role::Backup => self.receiver.sync_state(self.members.term, &self.streams),
            Role::Standby if self.members.master.is_some() => SyncState::Standby,
            _ => SyncState::NoMaster,
        }
    }

    fn master_sync_state(&self) -> SyncState {
        // From the new boot's first proven heartbeat: never "In Sync" for
        // a session whose backup may have lost everything.
        if self.sender.session().is_some() && self.timers.is_armed(Timer::PartnerSuspect) {
            return SyncState::BackupRestarting;
        }
        self.sender.sync_state(self.members.backup, &self.streams)
    }

    fn update_in_sync(&mut self) {
        let now_in_sync = self.members.role == Role::Master && self.master_sync_state() == SyncState::InSync;
        if now_in_sync != self.sender.in_sync {
            self.sender.in_sync = now_in_sync;
            self.events.push(Event::InSync(now_in_sync));
        }
    }

    /// Process every deadline that has passed.
    pub fn handle_timeout<H: Host>(&mut self, now: Instant, host: &mut H) {
        for slot in (0..MAX_NODES as u8).filter_map(Slot::new) {
            if self.timers.is_expired(Timer::PeerLost(slot), now) {
                self.timers.stop(Timer::PeerLost(slot));
                self.peer_lost(now, slot, host);
            }
        }
        let master = self.members.role == Role::Master;
        if self.identity.on_timeout(now, self.partner().map(|p| p.0), master, &mut self.timers)
            == Finding::Lost
        {
            if self.members.role == Role::Master {
                // The backup rebooted: everything checkpointed to it is gone with its RAM.
                self.forget_backup();
                self.choose_backup(now);
            } else {
                self.master_lost(now, host, TakeoverCause::SlotConflict);
            }
        }
        if self.members.role == Role::Init && self.timers.is_expired(Timer::Election, now) {
            // Two modules for our slot: neither may take the chassis as that slot.
            let conflict = self.identity.current(&self.timers) == Some(self.cfg.slot);
            if !conflict && self.members.wins_election(now, self.cfg.priority, self.cfg.health, self.holds())
            {
                self.promote(now, host, TakeoverCause::Elected);
            } else {
                self.timers.set(Timer::Election, now + self.cfg.detect());
            }
        }
        self.sender.on_timeout(now, &self.streams, &mut self.timers, &mut self.events);
        self.update_in_sync();
    }

    fn peer_lost<H: Host>(&mut self, now: Instant, slot: Slot, host: &mut H) {
        self.members.lost(slot);
        self.standbys.forget(slot);
        if self.members.master == Some(slot) && self.members.role != Role::Master {
            self.master_lost(now, host, TakeoverCause::MasterSilent);
            return;
        }
        self.events.push(Event::PeerLost(slot));
        if self.members.role == Role::Master && self.members.backup == Some(slot) {
            warn!("backup lost");
            self.fork(Some(slot));
            self.members.backup = None;
            self.sender.detach(&mut self.timers);
            if self.sender.cancel_handover(&mut self.timers) {
                self.events.push(Event::FailoverFailed);
            }
            self.update_in_sync();
            self.choose_backup(now);
        }
    }

    /// The next frame to send, written into `buf`; `None` when nothing is due.
    /// Call until `None` after every input. `buf` must hold `max_frame` bytes:
    /// with less, what does not fit waits (it is never split or truncated).
    pub fn poll_transmit<H: Host>(&mut self, now: Instant, host: &mut H, buf: &mut [u8]) -> Option<usize> {
        let max = buf.len().min(self.cfg.max_frame);
        let buf = &mut buf[..max];
        self.speaking = self.versions.speak(now, self.cfg.detect());
        let from = Origin {
            me: self.cfg.slot,
            term: self.members.term,
            incarnation: self.cfg.incarnation,
            version: self.speaking,
        };
        if self.timers.is_expired(Timer::Heartbeat, now) {
            // Prompt heartbeats (answers, rivals, new backups) are spaced by
            // a quarter interval: nothing a peer sends makes us flood.
            let spacing = self.cfg.heartbeat_interval / 4;
            match self.last_heartbeat.map(|t| t + spacing).filter(|&t| t > now) {
                Some(next) => self.timers.set(Timer::Heartbeat, next),
                None => {
                    // On a cadence: one sent a little late does not push the
                    // next later, so the gap a peer hears stays an interval,
                    // not an interval plus every lateness; more than half an
                    // interval late (or a prompt one) starts a new cadence.
                    let interval = self.cfg.heartbeat_interval;
                    let next = match self.timers.get(Timer::Heartbeat) {
                        Some(due) if now.saturating_since(due) < interval / 2 => due + interval,
                        _ => now + interval,
                    };
                    self.timers.set(Timer::Heartbeat, next);
                    self.last_heartbeat = Some(now);
                    if self.members.role == Role::Master {
                        self.sender.repeat_continuation(&self.streams);
                    }
                    let n = self.heartbeat(now, from, buf)?;
                    return Some(self.seal(&mut buf[..n]));
                }
            }
        }
        let (streams, events, timers) = (&mut self.streams, &mut self.events, &mut self.timers);
        let sent = match self.members.role {
            Role::Master => {
                let to_backup = match self.members.backup {
                    Some(backup) => {
                        let out = Outgoing { from, to: backup.raw(), buf: &mut *buf };
                        self.sender.poll_transmit(now, out, host, streams, events, timers)
                    }
                    None => None,
                };
                // Standbys after the backup: what they lack waits for its data.
                to_backup.or_else(|| {
                    self.standbys.poll_transmit(from, host, &self.streams, self.sender.backlog(), buf)
                })
            }
            Role::Backup => {
                let master = self.members.master?;
                let older = self.versions.proven(master).is_some_and(|v| v < wire::PROTOCOL_VERSION);
                self.receiver.poll_transmit(now, from, master, older, streams, timers, buf)
            }
            Role::Standby => {
                let master = self.members.master?;
                self.mirror.poll_transmit(now, from, master, streams, timers, buf)
            }
            Role::Init => None,
        };
        // Bulk reads may have failed a stream or overflowed the backlog.
        self.update_in_sync();
        let n = sent?;
        Some(self.seal(&mut buf[..n]))
    }

    /// Number, authenticate and check-sum a frame a part of the node wrote.
    fn seal(&mut self, frame: &mut [u8]) -> usize {
        self.sent += 1;
        wire::seal_with(frame, &self.keys, self.cfg.incarnation, self.sent);
        frame.len()
    }

    /// The term whose whole state this node holds: its own as master, its
    /// master's as a backup in sync; else none (0).
    fn holds(&self) -> u64 {
        let whole = match self.members.role {
            Role::Master => true,
            Role::Backup => self.receiver.holds_whole(self.members.term, &self.streams),
            _ => false,
        };
        if whole { self.members.term.raw() } else { 0 }
    }

    fn heartbeat(&self, now: Instant, from: Origin, buf: &mut [u8]) -> Option<usize> {
        let master = self.members.role == Role::Master;
        let a = &self.streams.get(ACTIVE).tx;
        // Master: where its active configuration is, for the backup to compare digests.
        let config = match master && a.recording {
            true => DigestMark { epoch: a.epoch, seq: a.next_seq - 1, digest: a.digest.value() },
            false => DigestMark::default(),
        };
        let (in_sync, session) =
            if master { (self.sender.in_sync, self.sender.attached_session()) } else { (false, 0) };
        let mut hb = self.members.heartbeat_of(&self.cfg, in_sync, session, config, self.holds());
        if master {
            (hb.base, hb.made, hb.overrules) = (self.base, self.streams.made(), self.overrules);
            hb.acked = self.streams.acked_made();
        }
        hb.challenge = self.freshness.challenge(now);
        hb.echo = self.freshness.echo(now);
        let keys = self.keys.status();
        hb.keys = [keys.sending.unwrap_or(0), keys.also.and_then(|(k, _)| k).unwrap_or(0)];
        let mut w = from.writer(buf, BROADCAST, &Body::Heartbeat(hb))?;
        // In either version (see `HeartbeatExt`).
        w.push(&HeartbeatExt { newest: wire::PROTOCOL_VERSION, release: self.cfg.release }).ok()?;
        Some(w.finish())
    }
}
