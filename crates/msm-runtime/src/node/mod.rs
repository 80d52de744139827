//! One MSM as a Linux process: the checkpoint engine, its host (application
//! tables, configuration, flash), the backplane link and the workload, driven
//! by one poll loop, [`MsmNode::pump`].
//!
//! Beside the loop, each in its own file: `outbox` (with `throttle`) paces
//! frames to the link; `operator` carries out the operator's requests on the
//! node and `render` shapes their output. The loop uses neither of the last
//! two; a test's [`Watcher`] sees the master's changes when one is given.

mod operator;
mod ops;
mod outbox;
pub(crate) mod render;
mod throttle;

use std::time::Duration;

use msm_backplane::{Error as _, ErrorKind, FrameClass, Link, Redundant};
use msm_checkpoint::{
    AppRegistry, AppsFrom, Config, ConfigChoice, Event, FrameError, Node, Role, Slot, Term,
};
use msm_flash::ConfigName;
use msm_time::Instant;

use crate::apps::{AppIds, BuiltinApp, Change};
use crate::config::RunningConfig;
use crate::flash::NodeFlash;
use crate::hooks::{Watcher, Workload};
use crate::host::ChassisHost;
use crate::host::Forward;
use crate::process_apps::{ProcessApp, ProcessApps, ProcessSpec};
use crate::split_brain::{self, Source, Unacked};
pub use operator::{Handled, MAX_CHURN};
use ops::Ops;
pub use ops::Ticket;
use outbox::Outbox;

/// The engine as configured on Linux: 16 applications (six built in, the
/// rest process applications), 64 frames in flight,
/// 256 KiB of backlog (about half a second of 10 000 changes/s: more than a
/// link blip shorter than failure detection needs).
pub type Engine = Node<16, 64, { 256 * 1024 }>;

/// Backplane paths a node takes at most (`--backplane` given twice).
pub const MAX_PATHS: usize = 2;

/// The backplane as the node sees it: one or two paths to the peer.
pub type Paths<L> = Redundant<L, MAX_PATHS>;

fn classify(frame: &[u8]) -> FrameClass {
    match msm_checkpoint::wire::is_heartbeat(frame) {
        true => FrameClass::EveryPath,
        false => FrameClass::DataPath,
    }
}

/// Acknowledged changes the split-brain record drops a call, at most.
const UNACKED_TRIM: usize = 4096;

/// Frames and time a loop turn spends receiving at most.
const RX_FRAMES: usize = 256;
const RX_SLICE: Duration = Duration::from_millis(3);

/// Time a loop turn spends recording a fresh master's initial state.
const SEED_SLICE: Duration = Duration::from_millis(2);

/// How a node was started.
#[derive(Debug, Clone)]
pub struct Options {
    pub slot: Slot,
    pub priority: Option<u8>,
    pub heartbeat: Duration,
    pub miss_count: u8,
    pub max_frame: usize,
    /// Throttle sends to this many bytes per second (a slow serial
    /// backplane); `None`: as fast as the link takes them.
    pub link_rate: Option<u64>,
    /// Run only these applications (by name; `None`: all). Both MSMs of a
    /// chassis run the same set; a small MCU peer runs few.
    pub apps: Option<Vec<String>>,
    /// Applications that run as their own processes (`--process`).
    pub processes: Vec<ProcessSpec>,
    /// The chassis key; `None`: an unauthenticated backplane.
    pub key: Option<msm_checkpoint::Key>,
    /// Clear the term kept in flash before starting (`--forget-term`).
    pub forget_term: bool,
}

/// Why the node wants to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The operator asked for a reboot.
    Reboot,
}

/// One management module: the engine, its host, flash, backplane link and
/// workload, driven by [`pump`](Self::pump). (The engine alone is a `Node`;
/// this is the whole module around it.)
pub struct MsmNode<L: Link> {
    pub engine: Box<Engine>,
    pub host: ChassisHost<Box<dyn NodeFlash>>,
    pub link: Paths<L>,
    /// What each path is (its `--backplane` spec), for `show switch`.
    pub path_names: Vec<String>,
    /// Changes made while master (the emulation's churn).
    pub workload: Box<dyn Workload>,
    pub exit: Option<Exit>,
    /// Frames the link refused as damaged or oversized.
    pub link_errors: u64,
    clock: std::time::Instant,
    /// One frame, received or to send.
    buf: Vec<u8>,
    outbox: Outbox,
    watcher: Option<Box<dyn Watcher>>,
    /// The operator's notify hook (`--notify`).
    notifier: Option<crate::notify::Notifier>,
    /// The applications that run here, by their ids in the engine.
    apps: AppIds,
    /// The process applications declared, by their ids in the engine.
    pub processes: ProcessApps,
    /// The configuration this boot loaded, for `show switch`.
    booted: ConfigName,
    /// Operator work in progress and answers ready.
    ops: Ops,
    /// A fresh master's initial state, recorded a slice per loop turn (a
    /// million MAC entries must not hold the loop).
    seeding: std::collections::VecDeque<(BuiltinApp, Change)>,
    /// While master: the changes no backup acknowledged yet.
    unacked: Unacked,
    /// The last split brain this node lost.
    pub split_brain: Option<split_brain::Report>,
    /// Why and when this module became master, as its flash keeps it.
    history: crate::failover_history::History,
    /// The highest term kept in flash (see `keep_term`).
    last_term: u64,
    /// When `last_term` was last written.
    last_term_at: std::time::Instant,
    /// Per process application: times its writer's changes were held back
    /// because the backup was behind (backpressure, `app_server`).
    held_back: Vec<u64>,
}

impl<L: Link> std::fmt::Debug for MsmNode<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MsmNode({})", self.engine.slot())
    }
}

impl<L: Link> MsmNode<L> {
    /// Boot: load the selected configuration (the factory default if there is
    /// none or it is refused), register the applications, start the engine.
    pub fn new(opts: Options, flash: impl NodeFlash + 'static, link: L) -> anyhow::Result<Self> {
        Self::with_paths(opts, flash, vec![link])
    }

    /// A node with one backplane link per path (at most [`MAX_PATHS`]), the
    /// first the primary: heartbeats go on each, data on the first alive.
    pub fn with_paths(opts: Options, flash: impl NodeFlash + 'static, links: Vec<L>) -> anyhow::Result<Self> {
        let mut flash: Box<dyn NodeFlash> = Box::new(flash);
        let paths = links.len();
        // A heartbeat missed on a path (1.5 intervals of silence) marks it
        // down and data moves: data stalls at most that long, and a spurious
        // move under load costs one retransmission of what was in flight.
        let dead_after = (opts.heartbeat * 3 / 2).max(Duration::from_millis(2));
        let link = Redundant::new(links, classify, dead_after)
            .ok_or_else(|| anyhow::anyhow!("{paths} backplane paths: give 1 to {MAX_PATHS}"))?;
        let booted = flash.selected();
        let running = match flash.load(booted)? {
            Some(text) => RunningConfig::parse(&text)
                .inspect(|_| log::info!("booting {} ({} bytes)", booted.file_name(), text.len()))
                .unwrap_or_else(|e| {
                    log::warn!(
                        "{}: saved configuration refused ({e}); booting the factory default",
                        booted.file_name()
                    );
                    crate::config::factory_default()
                }),
            None => crate::config::factory_default(),
        };
        let mut reg = AppRegistry::<16>::new();
        let apps = AppIds::register(&mut reg, opts.apps.as_deref()).map_err(anyhow::Error::msg)?;
        let process_from = reg.len();
        let mut processes = ProcessApps::default();
        for p in &opts.processes {
            let deps: Vec<&str> = p.deps.iter().map(String::as_str).collect();
            let id = reg
                .register(&p.name, p.schema, &deps)
                .map_err(|e| anyhow::anyhow!("--process {}: {e}", p.name))?;
            processes.0.push((p.clone(), id));
        }
        let running_apps = reg.len();
        let mut c = Config::new(opts.slot);
        c.priority =
            opts.priority.or(running.priority[opts.slot.index().min(1)]).or(flash.priority()).unwrap_or(0);
        c.heartbeat_interval = opts.heartbeat;
        c.miss_count = opts.miss_count;
        c.paths = u8::try_from(paths).unwrap_or(u8::MAX);
        c.max_frame = opts.max_frame.min(link.max_frame());
        // The boot count is durable before the first frame, grows by one a
        // boot and starts at the clock's seconds since 2025 on a fresh
        // flash: peers refuse frames of an incarnation older than one heard.
        c.incarnation = flash.boot_count();
        c.release = crate::release::code(crate::release::RELEASE);
        // Random per boot: no frame of any earlier boot answers its challenges.
        c.boot_nonce = boot_nonce();
        c.rto = (opts.heartbeat / 2).max(Duration::from_millis(2));
        c.rto_max = opts.heartbeat * 4;
        let mut engine = Box::new(Engine::new(c, reg, Instant::ZERO).map_err(|e| anyhow::anyhow!("{e}"))?);
        if let Some(k) = &opts.key {
            engine.set_key(k);
        }
        // Never claim a term an earlier boot of this module saw: a term names
        // one mastership, and a standby's or backup's points rest on it.
        if opts.forget_term {
            log::warn!(
                "--forget-term: the kept term {} is cleared; start every module of the chassis this way, together",
                Term::from_raw(flash.last_term())
            );
            flash.set_last_term(0).map_err(|e| anyhow::anyhow!("clearing the kept term: {e}"))?;
        }
        let last_term = flash.last_term();
        engine.restore_term(Term::from_raw(last_term));
        let history = crate::failover_history::History::load(flash.failover_history());
        let max_frame = engine.config().max_frame;
        Ok(MsmNode {
            engine,
            host: ChassisHost::new(flash, running, running_apps, process_from),
            link,
            path_names: (1..=paths).map(|i| format!("path {i}")).collect(),
            workload: Box::new(crate::hooks::Idle),
            exit: None,
            link_errors: 0,
            clock: std::time::Instant::now(),
            buf: vec![0u8; max_frame],
            outbox: Outbox::new(opts.link_rate),
            watcher: None,
            notifier: None,
            apps,
            processes,
            booted,
            ops: Ops::default(),
            seeding: std::collections::VecDeque::new(),
            unacked: Unacked::default(),
            split_brain: None,
            history,
            held_back: Vec::new(),
            last_term,
            last_term_at: std::time::Instant::now(),
        })
    }

    /// Changes to make while master (the emulation's churn); none by default.
    pub fn set_workload(&mut self, workload: Box<dyn Workload>) {
        self.workload = workload;
    }

    /// Let `watcher` see the master's changes and checkpoints (a test's
    /// journal); a product node has none.
    pub fn watch(&mut self, watcher: Box<dyn Watcher>) {
        self.watcher = Some(watcher);
    }

    /// Tell `notifier` of role changes, sync, peers, split brain, failover.
    pub fn notify_with(&mut self, notifier: crate::notify::Notifier) {
        self.notifier = Some(notifier);
    }

    pub fn now(&self) -> Instant {
        Instant::from_micros(self.clock.elapsed().as_micros() as u64)
    }

    /// When the loop must wake at the latest.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let mut t = self.engine.poll_timeout();
        if self.outbox.holding() {
            let soon = self.now() + Duration::from_millis(1);
            t = Some(t.map_or(soon, |x| x.min(soon)));
        }
        if self.engine.role() == Role::Master && self.workload.rate() > 0 {
            let tick = self.now() + Duration::from_millis(5);
            t = Some(t.map_or(tick, |x| x.min(tick)));
        }
        if self.ops.busy() || !self.seeding.is_empty() {
            t = Some(self.now());
        }
        if let Some(d) = self.ops.next_deadline() {
            t = Some(t.map_or(d, |x| x.min(d)));
        }
        t
    }

    /// One round: receive, timers, workload, transmit, events.
    pub fn pump(&mut self) {
        let now = self.now();
        self.refresh_upgrades();
        // A bounded share of what arrived: a peer sending a bulk as fast as
        // it can must not keep this node from its own heartbeats and acks.
        // (The rest stays readable: the loop's poll comes straight back.)
        if self.link.tick(now) {
            let to = self.link.data_path();
            let name = self.path_names.get(to).map_or("?", String::as_str);
            log::warn!("{}: backplane data moves to path {} ({name})", self.engine.slot(), to + 1);
            self.engine.link_changed(now);
        }
        let start = std::time::Instant::now();
        for _ in 0..RX_FRAMES {
            if start.elapsed() >= RX_SLICE {
                break;
            }
            match self.link.recv(&mut self.buf) {
                Ok(Some(n)) => {
                    // Each frame at the time it is read: a heartbeat read at the
                    // end of a 3 ms slice was heard then, not at the turn's start
                    // (which made the gaps a peer hears look up to a slice longer).
                    let now = self.now();
                    match self.engine.handle_frame(now, &self.buf[..n], &mut self.host) {
                        Ok(()) | Err(FrameError::Duplicate { .. }) => {}
                        Err(e) => {
                            self.link.refused();
                            log::debug!("frame refused: {e}");
                        }
                    }
                    // Frame by frame: an ack just before a rival master's heartbeat counts.
                    self.trim_unacked();
                }
                Ok(None) => break,
                Err(e) if e.kind() == ErrorKind::FrameTooLarge => self.link_errors += 1,
                Err(e) => {
                    log::debug!("link receive: {e:?}");
                    break;
                }
            }
        }
        // Time goes on for the engine: never earlier than the frames' times.
        let now = self.now();
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now, &mut self.host);
        }
        if self.engine.role() == Role::Master {
            for (app, c) in self.workload.due(now.as_micros()) {
                let _ = self.change(app, c);
            }
            let start = std::time::Instant::now();
            while start.elapsed() < SEED_SLICE {
                let Some((app, c)) = self.seeding.pop_front() else { break };
                let _ = self.change(app, c);
            }
        } else {
            self.seeding.clear();
        }
        // Protocol first: what is due goes out before any operator work.
        self.transmit();
        self.events();
        self.work();
        self.transmit();
        self.events();
        self.watch_checkpoints();
    }

    fn transmit(&mut self) {
        self.keep_term();
        let now = self.now();
        let _ = self.link.flush();
        if !self.outbox.send_held(&mut self.link, now) {
            return;
        }
        // The time read for each frame: a heartbeat that falls due while a
        // bulk fills the link goes out next, not after the whole burst.
        while let Some(n) = self.engine.poll_transmit(self.now(), &mut self.host, &mut self.buf) {
            let now = self.now();
            if !self.outbox.send(&mut self.link, now, &self.buf[..n]) {
                return;
            }
        }
    }

    /// Which applications' records arrive in the release before's schema
    /// version (this node, a backup, declared it to a master of that
    /// release): the host converts them as it applies them.
    fn refresh_upgrades(&mut self) {
        for (app, id) in self.apps.iter() {
            let declared = self.engine.declared_schema(id);
            let upgrade = match declared == crate::apps::APPS[app.index()].1 {
                true => None,
                false => crate::apps::upgrade(app, declared),
            };
            if let Some(slot) = self.host.upgrades.get_mut(id.index()) {
                *slot = upgrade;
            }
        }
    }

    /// A term this node claimed goes to flash before a frame in it goes
    /// out; the highest term seen goes at most once a second (a module
    /// that misbehaves must not make the loop write flash for every frame).
    fn keep_term(&mut self) {
        let claimed = self.engine.claimed_term().raw();
        let seen = self.engine.max_term().raw();
        let lazy = seen > self.last_term && self.last_term_at.elapsed() >= Duration::from_secs(1);
        if claimed <= self.last_term && !lazy {
            return;
        }
        let term = claimed.max(seen);
        self.last_term_at = std::time::Instant::now();
        match self.host.flash.set_last_term(term) {
            Ok(()) => self.last_term = term,
            // A broken settings area: said once a term; a restart may then reuse it.
            Err(e) => {
                log::warn!("keeping term {} in flash: {e}", Term::from_raw(term));
                self.last_term = term;
            }
        }
    }

    fn events(&mut self) {
        while let Some(ev) = self.engine.poll_event() {
            log::info!("{}: {ev:?}", self.engine.slot());
            if let Some(n) = &self.notifier {
                if let Some(notice) = crate::notify::Notice::of(self.engine.slot(), &ev) {
                    n.send(notice);
                }
            }
            self.record_failover(&ev);
            if let Event::SplitBrain { winner, winner_term, our_term, discarded, rule } = ev {
                log::warn!("split brain lost to {winner}: {}", rule.as_str());
                self.split_brain_lost(winner, winner_term, our_term, discarded);
            }
            if let Event::SplitBrainWon { loser, term, rule, .. } = ev {
                log::warn!("split brain won over {loser}, now master in term {term}: {}", rule.as_str());
                self.unacked.continue_as(term);
            }
            if let Event::Promoted { config, in_sync, apps, .. } = ev {
                if config == ConfigChoice::OwnSaved {
                    let selected = self.host.flash.selected();
                    match self.host.flash.load(selected) {
                        Ok(Some(text)) => {
                            if let Ok(c) = RunningConfig::parse(&text) {
                                self.host.running = c;
                            }
                        }
                        Ok(None) => self.host.running = crate::config::factory_default(),
                        Err(e) => log::warn!("reading the saved configuration: {e}"),
                    }
                }
                if apps == AppsFrom::Fresh || (!in_sync && self.host.tables.iter().all(|t| t.is_empty())) {
                    // No state held (a standby, a fresh boot, a backup that
                    // got nothing yet): the applications start with their initial state.
                    log::info!("applications start fresh: this module held no copy of their state");
                    self.seeding = self.workload.initial().into();
                }
                if let Some(j) = &mut self.watcher {
                    j.promoted(config, in_sync);
                }
                self.derive_vlans();
            }
        }
    }

    /// A takeover or a split brain goes into the failover history, on
    /// flash first (once per failover: the term was just written too).
    fn record_failover(&mut self, ev: &Event) {
        let unix_ms = crate::wall_clock::unix_now_ms();
        let Some(r) = self.history.record_of(self.engine.slot(), ev, unix_ms) else { return };
        let f = crate::failover_history::describe(&r);
        log::info!("failover #{} recorded: {}", r.seq, crate::failover_history::line(&f));
        if let Err(e) = self.host.flash.record_failover(r) {
            log::warn!("keeping failover #{} in flash: {e} (it is shown until a restart)", r.seq);
        }
        self.history.push(r);
    }

    /// A new master's vlan table is what its active configuration derives:
    /// the two streams are checkpointed apart (a re-bulk of one may be in
    /// progress when the master dies), so the difference is made up here,
    /// as changes the backup gets too.
    fn derive_vlans(&mut self) {
        let Some(id) = self.apps.get(crate::apps::VLAN) else { return };
        let changes = crate::apps::vlan_changes(&self.host.running, &self.host.tables[id.index()]);
        if changes.is_empty() {
            return;
        }
        log::warn!(
            "vlan table re-derived from the active configuration: {} row(s) differed ({} VLANs configured)",
            changes.len(),
            self.host.running.vlans.len()
        );
        for c in changes {
            self.change(crate::apps::VLAN, c);
        }
    }

    /// Every change of built-in application `app`
    /// up to this id is on the backup.
    pub fn checkpointed(&self, app: BuiltinApp) -> u64 {
        self.apps.get(app).map_or(0, |id| self.engine.checkpointed(id))
    }

    /// The master changes one key of one application; the change id, if it was taken.
    pub fn change(&mut self, app: BuiltinApp, c: Change) -> Option<u64> {
        let id = self.apps.get(app)?;
        let record = c.encode();
        match self.engine.record_change(id, &record) {
            Ok(change) => {
                self.unacked.record(self.engine.term(), Source::App(id), change, record);
                if let Some(j) = &mut self.watcher {
                    j.change(app, change, &c);
                }
                self.host.tables[id.index()].apply(c);
                Some(change)
            }
            Err(e) => {
                log::debug!("change refused: {e}");
                None
            }
        }
    }

    /// The master changes one key of process application `p`; its sequence
    /// number, or why not.
    pub fn process_change(&mut self, p: ProcessApp, c: Change) -> Result<u64, String> {
        let (spec, id) = self.processes.0.get(p.index()).ok_or("no such process application")?;
        if self.engine.role() != Role::Master {
            return Err(format!(
                "{}: changes are taken on the master; this node ({}) is {}",
                spec.name,
                self.engine.slot(),
                self.engine.role()
            ));
        }
        let record = c.encode();
        let seq = self.engine.record_change(*id, &record).map_err(|e| format!("{}: {e}", spec.name))?;
        self.unacked.record(self.engine.term(), Source::App(*id), seq, record);
        self.host.tables[id.index()].apply(c);
        Ok(seq)
    }

    /// Every change of process application `p` up to this number is on the backup.
    pub fn process_checkpointed(&self, p: ProcessApp) -> u64 {
        self.processes.0.get(p.index()).map_or(0, |(_, id)| self.engine.checkpointed(*id))
    }

    /// The node's copy of process application `p`'s table.
    pub fn process_table(&self, p: ProcessApp) -> Option<&crate::apps::Table> {
        self.processes.0.get(p.index()).and_then(|(_, id)| self.host.tables.get(id.index()))
    }

    /// Process application `p`'s writer is held back: the backup is behind.
    pub fn note_held(&mut self, p: ProcessApp) {
        if self.held_back.len() <= p.index() {
            self.held_back.resize(p.index() + 1, 0);
        }
        self.held_back[p.index()] += 1;
    }

    /// Times each process application's writer was held back, by name.
    pub fn held_back(&self) -> Vec<(String, u64)> {
        self.processes
            .0
            .iter()
            .enumerate()
            .map(|(p, (spec, _))| (spec.name.clone(), self.held_back.get(p).copied().unwrap_or(0)))
            .collect()
    }

    /// What the backup applied to process applications since the last call, by process index.
    pub fn take_forwarded(&mut self) -> Vec<(ProcessApp, Forward)> {
        let processes = &self.processes;
        std::mem::take(&mut self.host.forwarded)
            .into_iter()
            .filter_map(|(table, f)| Some((processes.by_table(table)?, f)))
            .collect()
    }

    /// A configuration line the master recorded under change id `id`.
    pub(crate) fn config_recorded(&mut self, id: u64, line: &[u8]) {
        self.unacked.record(self.engine.term(), Source::Config, id, line.to_vec());
    }

    /// Forget, while master, the changes the backup acknowledged.
    fn trim_unacked(&mut self) {
        if self.engine.role() != Role::Master || self.unacked.is_empty() {
            return;
        }
        // A bounded share a call: after a bulk the backup acknowledges at
        // once every change made while there was none (up to a million), and
        // freeing them all held one loop turn for 8 ms. Called frame by frame
        // and every turn, it catches up within a few turns.
        self.drop_acknowledged(UNACKED_TRIM);
    }

    /// Drop at most `budget` of the kept changes the engine reports checkpointed.
    fn drop_acknowledged(&mut self, budget: usize) {
        let engine = &self.engine;
        self.unacked.trim_with(budget, |source| match source {
            Source::Config => engine.config_checkpointed(),
            Source::App(id) => engine.checkpointed(id),
        });
    }

    /// This node was master in `our_term`, heard `winner` master in the
    /// higher `winner_term` and stepped down: the changes it made that no
    /// backup acknowledged are discarded here. Write them next to the flash
    /// image for the operator, and say so in the log and in `show switch`.
    fn split_brain_lost(&mut self, winner: Slot, winner_term: Term, our_term: Term, discarded: u64) {
        // Whole now: the file must list only what no backup acknowledged.
        self.drop_acknowledged(usize::MAX);
        let changes = self.unacked.take(our_term);
        let at_unix = crate::wall_clock::unix_now();
        let path = split_brain::file_path(self.host.flash.path(), at_unix);
        let mut report = split_brain::Report {
            at_unix,
            slot: self.engine.slot(),
            winner,
            winner_term,
            our_term,
            discarded,
            listed: changes.len() as u64,
            file: Ok(path.clone()),
        };
        // Names and describers of the streams, for the file.
        let mut names = std::collections::BTreeMap::new();
        for (s, _, _) in &changes {
            names.entry(*s).or_insert_with(|| match s {
                Source::Config => ("active-config".to_string(), None),
                Source::App(id) => (
                    self.engine.app(*id).map_or_else(|| format!("#{}", id.index()), |a| a.name.to_string()),
                    self.apps.iter().find(|(_, x)| x == id).map(|(i, _)| i),
                ),
            });
        }
        // The name is claimed here; rendering and writing (a million changes
        // at most) go on another thread: heartbeats come first. The file
        // appears under its name once whole.
        report.file = match split_brain::reserve(&path) {
            Ok((f, tmp, final_path)) => {
                let r = report.clone();
                let slot = report.slot;
                let shown = final_path.clone();
                let spawned = std::thread::Builder::new().name("split-brain".into()).spawn(move || {
                    let name = |s: Source| names.get(&s).map_or_else(|| "?".to_string(), |n| n.0.clone());
                    let describe = |s: Source, key: u64, value: &[u8]| {
                        names.get(&s).and_then(|n| n.1).map(|i| crate::apps::describe(Some(i), key, value))
                    };
                    let text = split_brain::render(&r, &changes, name, describe);
                    if let Err(e) = split_brain::finish(f, &tmp, &shown, &text) {
                        log::error!("{slot}: writing the split-brain file {}: {e}", shown.display());
                    }
                });
                match spawned {
                    Ok(_) => Ok(final_path),
                    Err(e) => Err(format!("{}: {e}", path.display())),
                }
            }
            Err(e) => Err(format!("{}: {e}", path.display())),
        };
        match &report.file {
            Ok(p) => log::warn!(
                "{}: split brain: stepped down to {winner} (term {winner_term} > {our_term}); {discarded} change(s) \
                 made as master discarded, {} listed in {}",
                report.slot,
                report.listed,
                p.display()
            ),
            Err(e) => log::warn!(
                "{}: split brain: stepped down to {winner} (term {winner_term} > {our_term}); {discarded} change(s) \
                 made as master discarded; writing them failed: {e}",
                report.slot
            ),
        }
        self.split_brain = Some(report);
    }

    /// Tell the watcher how far each application is checkpointed, while master.
    fn watch_checkpoints(&mut self) {
        let Some(j) = &mut self.watcher else { return };
        if self.engine.role() != Role::Master {
            return;
        }
        let peer = self.engine.checkpoint_peer();
        for (app, id) in self.apps.iter() {
            j.checkpointed(app, self.engine.checkpointed(id), peer);
        }
        j.config_checkpointed(self.engine.config_checkpointed(), peer);
        j.flush();
    }
}

/// Four bytes of the kernel's CSPRNG; the clock's nanoseconds if it cannot be read.
fn boot_nonce() -> u32 {
    use std::io::Read;
    let mut b = [0u8; 4];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)) {
        Ok(()) => u32::from_le_bytes(b),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos() ^ d.as_secs() as u32),
    }
}
