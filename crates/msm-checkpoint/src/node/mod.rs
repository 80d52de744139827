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
//! (every deadline), `status` (what `show` prints). Membership decides; the
//! node applies the decision to the sender and the receiver.

mod backlog;
mod config;
mod freshness;
mod identity;
mod membership;
mod mirror;
mod packer;
mod receiver;
mod recorder;
mod replay;
mod rivals;
mod sender;
mod standbys;
mod status;
mod streams;
mod timers;

use msm_time::Instant;

pub use config::Config;
use freshness::Freshness;
use identity::{Finding, Identity};
use membership::{MasterVerdict, Membership};
use mirror::Mirror;
use receiver::Receiver;
pub use replay::MAX_COUNTER_JUMP;
use replay::{Admission, ReplayGuard, Stale};
use rivals::{Claim, Verdict};
use sender::{SendLimits, Sender};
use standbys::Standbys;
use streams::{ACTIVE, CONFIG_STREAMS, SAVED, Streams};
use timers::{Timer, TimerTable};

use crate::app::AppRegistry;
use crate::auth::NO_KEY;
use crate::auth::{Key, KeyError, KeyStatus, Keyring, SecondKey};
use crate::error::{ChangeError, ConfigError, FailoverError, FrameError};
use crate::event::{ConfigChoice, Event, EventQueue, RebulkReason};
use crate::host::{AppId, Host, Stream};
use crate::role::{MAX_NODES, Role, Slot, Term};
use crate::status::{AppsFrom, FrameErrors, SplitBrain, SplitBrainWon, SplitRule, SyncState};
use crate::stream::Phase;
use crate::wire::{self, BROADCAST, Body, DigestMark, Heartbeat, NO_SLOT, Origin, WireError};

/// One management module's checkpoint engine. `APPS` applications, at most
/// `WINDOW` runs unacknowledged (a run is one stream's consecutive records in
/// a data frame; a frame carries one or more), `BACKLOG` bytes of
/// unacknowledged records, configuration mirrors for up to `STANDBYS`
/// standbys (a chassis of `STANDBYS + 2` modules; 0 for a pair).
#[derive(Debug)]
pub struct Node<const APPS: usize, const WINDOW: usize, const BACKLOG: usize, const STANDBYS: usize = 2> {
    cfg: Config,
    members: Membership,
    streams: Streams<APPS>,
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
            streams: Streams::new(apps),
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
        let rx = &self.streams.get(Streams::<APPS>::sid(stream)).rx;
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

    /// Handle one received frame. Its envelope, tag and replay window are
    /// checked before anything of its body is read: a frame refused there
    /// (corrupt, another version, not under a key we hold, a replay) or one
    /// that does not decode changes only counters. An authentic frame refused
    /// for its term or sender still shows
    /// the sender alive and its term seen (that is how a stale master learns
    /// to step down), but changes no checkpointed state. Every refusal is
    /// counted in [`SwitchStatus::errors`](crate::SwitchStatus).
    pub fn handle_frame<H: Host>(
        &mut self,
        now: Instant,
        bytes: &[u8],
        host: &mut H,
    ) -> Result<(), FrameError> {
        let sealed = match wire::open(bytes) {
            Ok(s) => s,
            Err(e) => {
                // Nothing here is authenticated: count it, change nothing.
                let e = FrameError::Wire(e);
                self.errors.count(&e);
                return Err(e);
            }
        };
        if !self.keys.verify(sealed.key_id, sealed.signed(), sealed.tag()) {
            let r = self.refuse(FrameError::Auth { from: sealed.from, key_id: sealed.key_id });
            // A key mismatch raises its own alarm, never a silent "peer
            // dead": logged at the 1st, 2nd, 4th, 8th... refusal per slot.
            let n = self.errors.by_slot.get(usize::from(sealed.from)).map_or(0, |r| r.auth);
            if n.is_power_of_two() {
                warn!(
                    "{} frames claiming slot {} failed authentication (key id {}): that module uses a key this one does not hold, or they are forged",
                    n, sealed.from, sealed.key_id
                );
            }
            return r;
        }
        let Some(from) = Slot::new(sealed.from) else {
            return self.refuse(WireError::BadSlot(sealed.from).into());
        };
        // Untagged frames (an unauthenticated backplane) can be forged
        // whole: a replay window on them would only let a forger lock a slot out.
        let keyed = sealed.key_id != NO_KEY;
        let mut admission = Admission::Taken;
        if keyed {
            if from == self.cfg.slot && self.is_own_echo(sealed.incarnation, sealed.counter) {
                return self.refuse(FrameError::Replay { from });
            }
            // Our own slot's windows are those of another module claiming it.
            match self.replay.check(now, self.cfg.detect(), from, sealed.incarnation, sealed.counter) {
                Ok(a) => admission = a,
                Err(_)
                    if self.cfg.paths > 1
                        && self.replay.is_heartbeat_copy(from, sealed.incarnation, sealed.counter) =>
                {
                    return self.refuse(FrameError::Duplicate { from });
                }
                Err(Stale::Jump) => {
                    warn!("counter jump from {} refused", from);
                    return self.refuse(FrameError::CounterJump { from });
                }
                Err(Stale::Counter) => return self.refuse(FrameError::Replay { from }),
            }
        }
        let f = match sealed.decode() {
            Ok(f) => f,
            Err(e) => return self.refuse(e.into()),
        };
        // One boot count per frame: the header's, which the replay window
        // keys on, must be the one the body states.
        let stated = match &f.body {
            Body::Heartbeat(hb) => Some(hb.incarnation),
            Body::Hello { incarnation, .. } | Body::Report { incarnation } => Some(*incarnation),
            _ => None,
        };
        if stated.is_some_and(|i| i != sealed.incarnation) {
            return self.refuse(WireError::Malformed.into());
        }
        if let Body::Heartbeat(hb) = &f.body {
            self.freshness.heard(now, from, sealed.incarnation, hb.challenge);
        }
        if admission == Admission::Unproven {
            // A boot we hold no live window for: only a heartbeat that
            // answers a recent challenge of ours makes its frames count.
            let proven = match &f.body {
                Body::Heartbeat(hb) => self.freshness.proves(now, hb.echo[self.cfg.slot.index()]),
                _ => false,
            };
            if !proven {
                // Answer its challenge promptly (heartbeats stay rate-limited).
                self.timers.set(Timer::Heartbeat, now);
                return self.refuse(FrameError::Unproven { from });
            }
            debug!("{} proved its boot alive", from);
            self.replay.admit(now, self.cfg.detect(), from, sealed.incarnation, sealed.counter);
            // Our answer to its challenge lets it take our frames as soon.
            self.timers.set(Timer::Heartbeat, now);
        }
        if matches!(f.body, Body::Heartbeat(_)) {
            self.replay.heartbeat_taken(from, sealed.incarnation, sealed.counter);
        }
        if from == self.cfg.slot {
            // Our links never echo our own frames: another module claims this slot.
            self.errors.count(&FrameError::OwnSlot);
            self.identity.conflict(now, self.cfg.slot, &mut self.timers);
            return Err(FrameError::OwnSlot);
        }
        if f.to != BROADCAST && f.to != self.cfg.slot.raw() {
            return Ok(());
        }
        let term = Term::from_raw(f.term);
        let detect = self.cfg.detect();
        self.members.admit_term(now, detect, term).or_else(|e| self.refuse(e))?;
        let inc = sealed.incarnation;
        if self.members.role != Role::Master
            && self.members.master == Some(from)
            && inc != self.members.master_incarnation
        {
            // Another boot in the slot of the master we follow: a restart or
            // a second module. Neither is by itself "the master is gone":
            // only the followed boot's silence for the detection time is,
            // so this boot keeps nothing alive and is taken for nothing but
            // its heartbeat, which `identity` judges.
            return match f.body {
                Body::Heartbeat(hb) => {
                    self.on_heartbeat(now, from, term, &hb, host);
                    Ok(())
                }
                _ => self.refuse(FrameError::Unexpected { from }),
            };
        }
        if self.members.heard(from, term, inc) {
            self.events.push(Event::PeerUp(from));
        }
        self.timers.set(Timer::PeerLost(from), now + self.cfg.detect());
        let r = self.dispatch(now, from, term, f.body, f.tail, host);
        self.update_in_sync();
        if let Err(e) = &r {
            self.errors.count(e);
        }
        r
    }

    fn refuse(&mut self, e: FrameError) -> Result<(), FrameError> {
        self.errors.count(&e);
        Err(e)
    }

    /// An authentic frame from our own slot that we could have sent: of an
    /// earlier boot of ours (incarnations only grow), or of this one with a
    /// counter we used. Anything else is another module in our slot.
    fn is_own_echo(&self, incarnation: u32, counter: u64) -> bool {
        incarnation < self.cfg.incarnation || (incarnation == self.cfg.incarnation && counter <= self.sent)
    }

    fn dispatch<H: Host>(
        &mut self,
        now: Instant,
        from: Slot,
        term: Term,
        body: Body,
        tail: &[u8],
        host: &mut H,
    ) -> Result<(), FrameError> {
        match body {
            Body::Heartbeat(hb) => {
                self.on_heartbeat(now, from, term, &hb, host);
                Ok(())
            }
            Body::Hello { incarnation, hello_id, total } => {
                if self.members.role == Role::Master && self.members.backup.is_none() {
                    self.choose_backup(now);
                }
                self.members.check_from_backup(from, term)?;
                let other_boot = self.partner().is_some_and(|(s, inc)| s == from && inc != incarnation);
                if other_boot && self.identity.doubted(from, &self.timers) {
                    // A boot of our backup's slot we are not sure of: its hello waits (it repeats).
                    return Ok(());
                }
                let (streams, events, timers) = (&mut self.streams, &mut self.events, &mut self.timers);
                self.sender.on_hello(
                    from,
                    term.raw(),
                    incarnation,
                    hello_id,
                    total,
                    tail,
                    streams,
                    events,
                    timers,
                )
            }
            Body::HelloAck { incarnation, hello_id } => {
                self.members.check_from_master(from, term)?;
                if incarnation != self.cfg.incarnation || self.members.role != Role::Backup {
                    return Ok(());
                }
                let (streams, events, timers) = (&mut self.streams, &mut self.events, &mut self.timers);
                self.receiver.on_hello_ack(hello_id, term, tail, streams, events, timers)
            }
            Body::Data => {
                self.members.check_from_master(from, term)?;
                let (streams, events, timers) = (&mut self.streams, &mut self.events, &mut self.timers);
                if self.members.role == Role::Standby {
                    // Our configuration mirror.
                    self.mirror.data_received();
                    let skip = Some(self.mirror.snapshots());
                    return self.receiver.on_data(term, tail, streams, host, events, timers, skip);
                }
                // Data belongs to a session: until the master acknowledged our
                // hello, it may be for an earlier incarnation of this slot
                // (sent before the master heard we rebooted).
                if self.members.role != Role::Backup || !self.receiver.hello_acked() {
                    return Ok(());
                }
                self.receiver.on_data(term, tail, streams, host, events, timers, None)
            }
            Body::Report { incarnation } => {
                self.members.check_from_standby(from, term)?;
                self.standbys.on_report(from, incarnation, tail)
            }
            Body::Snapshot { stream, epoch, seq, cursor, digest } => {
                self.members.check_from_master(from, term)?;
                if self.members.role != Role::Standby {
                    return Ok(());
                }
                let (streams, events) = (&mut self.streams, &mut self.events);
                let sid = usize::from(stream);
                self.mirror.on_snapshot(term, sid, epoch, seq, cursor, digest, tail, streams, host, events)
            }
            Body::Rebase { stream, from: point, epoch } => {
                self.members.check_from_master(from, term)?;
                if self.members.role != Role::Standby {
                    return Ok(());
                }
                let (streams, events) = (&mut self.streams, &mut self.events);
                self.mirror.on_rebase(term, usize::from(stream), point, epoch, streams, events)
            }
            Body::Ack => {
                self.members.check_from_backup(from, term)?;
                self.sender.on_acks(now, tail, &mut self.streams, &mut self.events, &mut self.timers)
            }
            Body::Resync { stream, epoch, .. } => {
                self.members.check_from_backup(from, term)?;
                let sid = self.sender.local_sid(stream, &self.streams)?;
                let tx = &self.streams.get(sid).tx;
                if tx.epoch == epoch && tx.phase != Phase::Blocked {
                    self.sender.rebulk(sid, RebulkReason::BackupRequest, &mut self.streams, &mut self.events);
                    self.sender.back_off(now, sid, &mut self.streams, &mut self.timers);
                }
                Ok(())
            }
            Body::Handover { .. } => {
                self.members.check_from_master(from, term)?;
                if self.members.role == Role::Backup {
                    info!("handover received: taking over");
                    let old = self.partner().filter(|p| p.0 == from);
                    // The old master is our backup-to-be, not a standby made one.
                    self.members.handed_over(from);
                    self.promote(now, host, "the master handed over (run msm-failover)");
                    // The old master comes back as our backup holding what we
                    // hold: its streams continue without a bulk.
                    // (Another module chosen as backup instead ends that session.)
                    if let Some((slot, incarnation)) = old {
                        self.sender.continue_for_old_master(slot, incarnation, term.raw(), &mut self.streams);
                    }
                }
                Ok(())
            }
        }
    }

    fn on_heartbeat<H: Host>(&mut self, now: Instant, from: Slot, term: Term, hb: &Heartbeat, host: &mut H) {
        if let Some((slot, incarnation)) = self.partner().filter(|p| p.0 == from) {
            if hb.incarnation != incarnation {
                // Another boot in our partner's slot: nothing changes yet (see `identity`).
                if self.identity.other_boot(now, slot, &mut self.timers) {
                    self.errors.unexpected += 1;
                }
                return;
            }
            self.identity.partner_heard(now);
        }
        let role = self.members.heartbeat(now, from, term, hb);
        if role == Role::Master {
            match self.members.judge_master(from, term) {
                MasterVerdict::StepDown => {
                    let verdict = if self.sender.handover_in_progress() {
                        Verdict::Yield(SplitRule::Handover)
                    } else {
                        // Ours acknowledged since the rival was our backup (the fork).
                        let acked = self.forks[from.index()]
                            .map_or(0, |at| self.streams.acked_ever().saturating_sub(at));
                        let ours = Claim {
                            term: self.members.term.raw(),
                            base: self.base,
                            made: self.streams.made(),
                            acked,
                            overrules: self.overrules,
                        };
                        let theirs = Claim {
                            term: term.raw(),
                            base: hb.base,
                            made: hb.made,
                            acked: hb.acked,
                            overrules: hb.overrules,
                        };
                        let v = rivals::judge(ours, theirs);
                        if v == Verdict::Yield(SplitRule::NewerLineage) && acked > 0 {
                            warn!(
                                "split brain: {} changes a backup acknowledged are discarded: both sides had a backup acknowledge changes",
                                acked
                            );
                        }
                        v
                    };
                    match verdict {
                        Verdict::Stay(rule) => self.reclaim(now, (from, hb.incarnation), term, rule, host),
                        Verdict::Yield(rule) => {
                            warn!("stepping down: higher term seen");
                            self.step_down(now, from, term, rule);
                            self.follow(now, from, hb.incarnation, term, host);
                        }
                    }
                }
                MasterVerdict::Rival => {
                    // A stale master; it steps down when it hears our heartbeat.
                    self.errors.stale_term += 1;
                    self.timers.set(Timer::Heartbeat, now);
                }
                MasterVerdict::Current => {}
                MasterVerdict::Follow => {
                    // A master of a higher term that took over no state of
                    // ours, while the master we follow lives: the two
                    // masters settle it between them (a split brain); we
                    // keep the copy we hold rather than have it replaced.
                    let ours = self.members.master.filter(|&m| m != from && self.members.is_alive(m));
                    let current = self.members.term.raw();
                    if ours.is_some() && hb.base < current && hb.overrules != current {
                        self.errors.stale_term += 1;
                        return;
                    }
                    self.follow(now, from, hb.incarnation, term, host)
                }
                MasterVerdict::Stale => {
                    self.errors.stale_term += 1;
                    return;
                }
            }
            if self.members.master == Some(from) {
                self.receiver.master_heartbeat(hb.in_sync, hb.config);
                let want = if hb.backup == self.cfg.slot.raw() { Role::Backup } else { Role::Standby };
                if want == Role::Standby
                    && hb.backup != NO_SLOT
                    && self.receiver.drop_apps(&mut self.streams, host)
                {
                    // (Not on a heartbeat naming no backup yet: an old master
                    // that stepped down may still be made backup and continue.)
                    info!(
                        "application state dropped: another module is the master's backup; a standby holds only the configuration"
                    );
                }
                if want != self.members.role {
                    self.enter(now, want, host);
                } else if want == Role::Backup
                    && self.receiver.hello_acked()
                    && hb.session != self.receiver.hello_id()
                {
                    // The master dropped our session (it lost us for a while): say hello again.
                    self.receiver.new_hello(now, &mut self.timers);
                }
                if matches!(self.members.role, Role::Backup | Role::Standby) {
                    let term = self.members.term;
                    let resync = self.members.role == Role::Backup;
                    let (streams, events, timers) = (&mut self.streams, &mut self.events, &mut self.timers);
                    self.receiver.compare_config_digest(term, streams, events, timers, resync);
                }
            }
            return;
        }
        // A non-master peer.
        if self.members.master == Some(from) && self.members.role != Role::Master {
            // Our master restarted or stepped down without us missing a beat.
            self.master_lost(now, host, "the master's boot says it is master no more");
            return;
        }
        if self.members.role == Role::Master {
            self.choose_backup(now);
        }
    }

    /// The module whose boot we depend on: the master we follow, or, as
    /// master, the backup our session is with; and its boot count.
    fn partner(&self) -> Option<(Slot, u32)> {
        match self.members.role {
            Role::Master => self.sender.session(),
            _ => self.members.master.map(|m| (m, self.members.master_incarnation)),
        }
    }

    /// Backup or standby of the current master, as its heartbeat says.
    fn enter<H: Host>(&mut self, now: Instant, role: Role, host: &mut H) {
        self.members.role = role;
        if role == Role::Backup {
            self.receiver.holding_apps();
            self.mirror.stop(&mut self.streams, host, &mut self.timers, &mut self.events);
            self.receiver.new_hello(now, &mut self.timers);
            self.receiver.resume_resyncs(now, &self.streams, &mut self.timers);
        } else {
            self.timers.stop(Timer::Hello);
            self.timers.stop(Timer::Resync);
            self.mirror.start(now, &mut self.timers);
        }
        self.events.push(Event::RoleChanged { role, term: self.members.term });
    }

    fn follow<H: Host>(&mut self, now: Instant, master: Slot, incarnation: u32, term: Term, host: &mut H) {
        info!("following {} in term {}", master, term);
        self.mirror.stop(&mut self.streams, host, &mut self.timers, &mut self.events);
        self.receiver.abort_bulks(&mut self.streams, host, &mut self.timers);
        self.timers.stop(Timer::PartnerSuspect);
        self.identity.partner_heard(now);
        if self.members.follow(master, incarnation, term) {
            warn!("the master restarted and claims its term again: what it sent before is dropped");
            self.streams.forget_term(term.raw());
        }
        self.receiver.follow(&mut self.timers);
        self.mirror.start(now, &mut self.timers);
        self.timers.stop(Timer::Election);
        self.timers.set(Timer::Heartbeat, now);
        self.events.push(Event::RoleChanged { role: Role::Standby, term });
    }

    /// A master heard `winner`, master of the higher term `term`. Unless it
    /// handed over to it (`run msm-failover`), both were master at once: a
    /// split brain, which this node lost. What it made as master and no
    /// backup acknowledged is counted before the session that knew it ends.
    fn step_down(&mut self, now: Instant, winner: Slot, term: Term, rule: SplitRule) {
        let split = rule != SplitRule::Handover;
        let discarded = self.streams.unacknowledged();
        let our_term = self.members.term;
        // What the backup acknowledged to the last record is what we hold,
        // as its backup now (after `run msm-failover`, every stream; after a
        // split brain, those we changed nothing of since).
        self.sender.hand_over_streams(self.members.term.raw(), &mut self.streams);
        self.sender.end_session(&mut self.streams, &mut self.timers, None);
        self.standbys.clear();
        self.members.backup = None;
        self.sender.in_sync = false;
        self.events.push(Event::SteppedDown { term: self.members.max_term });
        if split {
            warn!("split brain: {} changes made as master discarded ({})", discarded, rule.as_str());
            self.split_brain =
                Some(SplitBrain { at: now, winner, winner_term: term, our_term, discarded, rule });
            self.events.push(Event::SplitBrain { winner, winner_term: term, our_term, discarded, rule });
        }
        self.base = 0;
        self.overrules = 0;
    }

    /// A master of the lower term judged that it holds the state a rival
    /// lacks (`rivals`): it stays master in a term above the rival's,
    /// naming the rival's term overruled, and the rival steps down to it.
    /// Its backup follows the new term and says hello again.
    fn reclaim<H: Host>(
        &mut self,
        now: Instant,
        rival: (Slot, u32),
        rival_term: Term,
        rule: SplitRule,
        host: &mut H,
    ) {
        let (rival, incarnation) = rival;
        let Some(term) = self.members.next_term() else {
            warn!("cannot stay master: term {} is the last one", self.members.max_term);
            self.step_down(now, rival, rival_term, rule);
            self.follow(now, rival, incarnation, rival_term, host);
            return;
        };
        warn!("split brain: staying master over {} ({})", rival, rule.as_str());
        self.members.reclaim(term);
        self.overrules = rival_term.raw();
        if self.sender.end_session(&mut self.streams, &mut self.timers, None) {
            self.events.push(Event::FailoverFailed);
        }
        self.standbys.clear();
        self.members.backup = None;
        self.timers.set(Timer::Heartbeat, now);
        self.split_brain_won =
            Some(SplitBrainWon { at: now, loser: rival, loser_term: rival_term, term, rule });
        self.events.push(Event::RoleChanged { role: Role::Master, term });
        self.events.push(Event::SplitBrainWon { loser: rival, loser_term: rival_term, term, rule });
        self.choose_backup(now);
    }

    fn master_lost<H: Host>(&mut self, now: Instant, host: &mut H, why: &'static str) {
        warn!("master lost: {}", why);
        self.timers.stop(Timer::PartnerSuspect);
        self.events.push(Event::PeerLost(self.members.master.unwrap_or(self.cfg.slot)));
        if self.members.role == Role::Backup {
            let old = self.partner().filter(|p| Some(p.0) == self.members.master);
            let old_term = self.members.term.raw();
            self.promote(now, host, why);
            // If the old master lived (a partition, not a crash), it comes
            // back holding what it had: the streams it had made no change
            // to since our last acknowledgement continue without a bulk.
            if let Some((slot, incarnation)) = old {
                self.sender.continue_for_old_master(slot, incarnation, old_term, &mut self.streams);
            }
            return;
        }
        self.mirror.stop(&mut self.streams, host, &mut self.timers, &mut self.events);
        self.receiver.abort_bulks(&mut self.streams, host, &mut self.timers);
        self.members.orphan();
        self.timers.stop(Timer::Hello);
        self.timers.set(Timer::Election, now + self.cfg.detect());
        self.events.push(Event::RoleChanged { role: Role::Init, term: self.members.term });
    }

    /// Become master: after the master was lost, on handover, or by election.
    fn promote<H: Host>(&mut self, now: Instant, host: &mut H, why: &'static str) {
        let Some(term) = self.members.next_term() else {
            warn!("cannot become master: term {} is the last one", self.members.max_term);
            return;
        };
        let backup = self.members.role == Role::Backup;
        // The master's active configuration if a whole one of its term is
        // held here: a bulk completed, whether or not a later one is in
        // progress, and whatever role the master gave this node since. Every
        // line the master reported checkpointed is in it.
        let held = self.streams.get(ACTIVE).rx.held_term;
        let config = if held != 0 && held == self.members.term.raw() {
            ConfigChoice::MastersActive
        } else {
            ConfigChoice::OwnSaved
        };
        let in_sync =
            backup && self.receiver.sync_state(self.members.term, &self.streams) == SyncState::InSync;
        let apps = match (backup, self.receiver.apps_held()) {
            (true, _) => AppsFrom::Checkpointed,
            (false, true) => AppsFrom::Held,
            (false, false) => AppsFrom::Fresh,
        };
        self.receiver.holding_apps();
        self.apps = Some(apps);
        // The lineage it continues: the whole state of its master's term, or none.
        let whole = backup && self.receiver.holds_whole(self.members.term, &self.streams);
        self.base = if whole { self.members.term.raw() } else { 0 };
        self.overrules = 0;
        self.forks = [None; crate::role::MAX_NODES];
        self.mirror.stop(&mut self.streams, host, &mut self.timers, &mut self.events);
        self.receiver.abort_bulks(&mut self.streams, host, &mut self.timers);
        self.standbys.clear();
        self.streams.continue_ids(self.members.term.raw());
        let term = self.members.claim(term);
        self.sender.end_session(&mut self.streams, &mut self.timers, None);
        self.streams.begin_mastership();
        self.timers.stop(Timer::Election);
        self.timers.stop(Timer::Hello);
        self.timers.set(Timer::Heartbeat, now);
        info!("promoted to master in term {}: {}; applications: {}", term, why, apps.as_str());
        self.events.push(Event::RoleChanged { role: Role::Master, term });
        self.events.push(Event::Promoted { term, config, in_sync, apps });
        self.choose_backup(now);
    }

    fn choose_backup(&mut self, now: Instant) {
        let Some(best) = self.members.better_backup() else { return };
        if self.checkpoint_peer().is_some_and(|s| s != best) {
            // Another module becomes backup: what the old one held is not there.
            self.forget_backup();
        }
        self.members.backup = Some(best);
        self.standbys.forget(best);
        self.timers.set(Timer::Heartbeat, now);
    }

    /// The backup in `slot` is gone: what is acknowledged from now on, it lacks.
    fn fork(&mut self, slot: Option<Slot>) {
        if let Some(s) = slot {
            self.forks[s.index()] = Some(self.streams.acked_ever());
        }
    }

    /// End the checkpoint session: nothing is on a backup any more.
    fn forget_backup(&mut self) {
        self.fork(self.members.backup);
        let term = Some(self.members.term.raw());
        if self.sender.end_session(&mut self.streams, &mut self.timers, term) {
            self.events.push(Event::FailoverFailed);
        }
        self.members.backup = None;
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
                self.master_lost(
                    now,
                    host,
                    "its boot was silent for the detection time while another spoke in its slot",
                );
            }
        }
        if self.members.role == Role::Init && self.timers.is_expired(Timer::Election, now) {
            // Two modules for our slot: neither may take the chassis as that slot.
            let conflict = self.identity.current(&self.timers) == Some(self.cfg.slot);
            if !conflict && self.members.wins_election(now, self.cfg.priority, self.cfg.health, self.holds())
            {
                self.promote(now, host, "elected: no live module holds a newer state or outranks this one");
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
            self.master_lost(now, host, "its boot was silent for the detection time on every path");
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
        let from = Origin { me: self.cfg.slot, term: self.members.term, incarnation: self.cfg.incarnation };
        if self.timers.is_expired(Timer::Heartbeat, now) {
            // Prompt heartbeats (answers, rivals, new backups) are spaced by
            // a quarter interval: nothing a peer sends makes us flood.
            let spacing = self.cfg.heartbeat_interval / 4;
            match self.last_heartbeat.map(|t| t + spacing).filter(|&t| t > now) {
                Some(next) => self.timers.set(Timer::Heartbeat, next),
                None => {
                    self.timers.set(Timer::Heartbeat, now + self.cfg.heartbeat_interval);
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
                        self.sender.poll_transmit(now, from, backup, host, streams, events, timers, buf)
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
                self.receiver.poll_transmit(now, from, master, streams, timers, buf)
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
        Some(from.writer(buf, BROADCAST, &Body::Heartbeat(hb))?.finish())
    }
}
