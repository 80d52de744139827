//! The deterministic simulator: N nodes, virtual time, a link model, crashes,
//! and the invariant checkers after every step. Everything random comes from
//! one seeded PCG, so a seed replays exactly.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

use msm_backplane::{Fate, FaultConfig, PathHealth};
use msm_checkpoint::{
    AppId, AppRegistry, AppsFrom, Config, ConfigChoice, ConfigCopy, Event, Key, Node, Role, Slot, Stream,
    SyncState, Term,
};
use msm_time::Instant;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::attacker::{self, Attack, Attacker};
use crate::check::{Checker, Report};
use crate::host::{SimHost, SimStream};
use crate::insider::{self, Insider, Misdeed};
use crate::link::{self, Links};
use crate::record::{Op, Rec, Stamp};
use crate::violation::Violation;

mod checks;
mod hostile;
mod network;
mod workload;

/// Capacities used in the simulator: small on purpose, so windows fill and
/// backlogs overflow.
pub const APPS: usize = 8;
pub const WINDOW: usize = 16;
pub const BACKLOG: usize = 8 * 1024;
pub type SimNode = Node<APPS, WINDOW, BACKLOG>;

/// One application of the simulated chassis.
#[derive(Debug, Clone)]
pub struct AppDef {
    pub name: String,
    pub schema: u16,
    pub deps: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
    pub apps: Vec<AppDef>,
    /// Registration order per node (a permutation of app indexes); `None`: in order.
    pub order: Option<Vec<usize>>,
    /// Per node schema overrides: (node, app, schema).
    pub schema_overrides: Vec<(usize, usize, u16)>,
    pub heartbeat: Duration,
    pub miss_count: u8,
    pub max_frame: usize,
    /// Every directed link's faults and timing.
    pub link: FaultConfig,
    pub saved_config: Vec<u8>,
    /// Node i boots at i * this.
    pub boot_gap: Duration,
    /// The chassis key every node holds; `None`: an unauthenticated backplane.
    pub key: Option<Key>,
    /// Probability of an attacker's frame after each delivered frame.
    pub attack: f64,
    /// Probability of an insider's misdeed (a module holding the key)
    /// after each delivered frame, until the quiet period.
    pub insider: f64,
    /// Backplane paths between each pair (1, or 2: redundant links, each
    /// failing on its own; heartbeats on both, data on the first alive).
    pub paths: usize,
    /// Nodes keep the highest term they saw in flash and restore it at boot
    /// (as the Linux board does); without, a restarted node may claim its
    /// old term again (as the firmware may).
    pub keep_terms: bool,
}

impl SimConfig {
    /// The XOS-like demo chain: devmgr <- cfgmgr <- vlan <- {fdb, stp, ospf}.
    pub fn chassis(nodes: usize) -> SimConfig {
        let app = |name: &str, deps: &[usize]| AppDef { name: name.into(), schema: 1, deps: deps.to_vec() };
        SimConfig {
            nodes,
            apps: vec![
                app("devmgr", &[]),
                app("cfgmgr", &[0]),
                app("vlan", &[1]),
                app("fdb", &[2]),
                app("stp", &[2]),
                app("ospf", &[2]),
            ],
            order: None,
            schema_overrides: vec![],
            heartbeat: Duration::from_millis(10),
            miss_count: 3,
            max_frame: 1024,
            link: link::CLEAN,
            saved_config: default_config(),
            boot_gap: Duration::from_millis(0),
            key: Some(attacker::CHASSIS_KEY),
            attack: 0.0,
            insider: 0.0,
            paths: 1,
            keep_terms: true,
        }
    }
}

/// Backplane paths a simulated pair may have.
pub const MAX_PATHS: usize = 2;

/// A path silent this long is down (as the Linux board: a heartbeat missed).
fn path_dead_after(cfg: &SimConfig) -> Duration {
    cfg.heartbeat * 3 / 2
}

pub fn default_config() -> Vec<u8> {
    let mut c = String::from("# saved by msm-sim\nconfigure snmp sysName chassis\n");
    for v in 1..=40 {
        c.push_str(&format!("create vlan v{v}\nconfigure vlan v{v} tag {v}\n"));
    }
    c.into_bytes()
}

#[derive(Debug)]
pub struct NodeState {
    pub engine: Option<Box<SimNode>>,
    pub host: SimHost,
    pub incarnation: u32,
    pub events: Vec<(u64, Event)>,
    /// The term followed at the end of the previous step (for takeover checks).
    followed: Term,
    pub bulk_begins: std::collections::HashMap<SimStream, usize>,
}

/// A frame on the wire: by arrival time, then by send order, so a link's
/// in-order frames (never due before an earlier one) leave in order.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: u64,
    seq: u64,
    to: usize,
    from: usize,
    path: usize,
    bytes: Vec<u8>,
}

/// Statistics of one run.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub frames: u64,
    pub changes: u64,
    pub takeovers: u64,
    pub takeovers_checked: u64,
    pub bulks_checked: u64,
    pub records_checked: u64,
    pub frame_errors: u64,
    /// Attacker frames injected, and how many were replays.
    pub attacks: u64,
    pub attack_replays: u64,
    /// Times a node moved its data to another backplane path.
    pub path_moves: u64,
    /// Runs with two backplane paths.
    pub two_path_runs: u64,
    /// Runs of a chassis with three modules, and with four.
    pub standby_runs: [u64; 2],
    /// Streams continued across a switchover (no bulk).
    pub continued: u64,
    /// Standbys' configuration copies found equal to the master's each
    /// time the master saw one reach In Sync (invariant 9).
    pub copies_checked: u64,
    /// Split brains reported, each checked for its count (invariant 8).
    pub split_brains: u64,
    /// Changes they discarded.
    pub discarded: u64,
    /// Split brains the master of the lower term won by what it held.
    pub split_brains_won: u64,
    /// Acknowledged changes checked present (invariant 10).
    pub facts_checked: u64,
    /// Frames a misbehaving module holding the key sent.
    pub insider: u64,
    /// Acknowledged changes lost to split brains where both sides had a
    /// backup acknowledge changes (admitted by the design).
    pub lost_both_sides: u64,
}

/// A hostile frame's fate at a node: the refusal (or not), the node's
/// (role, term, master) before and after, and the events it caused.
type Hostile = (Result<(), msm_checkpoint::FrameError>, [(Role, Term, Option<Slot>); 2], Vec<Event>);

pub struct Sim {
    pub cfg: SimConfig,
    pub now: u64,
    pub rng: Pcg64Mcg,
    pub nodes: Vec<NodeState>,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    links: Links,
    /// Node i's view of its paths to node j, at `i * n + j`.
    health: Vec<PathHealth<MAX_PATHS>>,
    /// What each master last saw of each standby's configuration copy, `[master * n + standby]`.
    copies: Vec<Option<ConfigCopy>>,
    pub checker: Checker,
    next_stamp: Stamp,
    pub trace: bool,
    /// Also print every frame delivered (very verbose).
    pub trace_frames: bool,
    pub stats: Stats,
    violation: Option<Violation>,
    /// App index -> the AppId each node registered it under.
    ids: Vec<Vec<AppId>>,
    steps: u64,
    pub attacker: Attacker,
    pub insider: Insider,
    /// Counter for frames tests forge with [`Sim::seal_as`].
    forged: u64,
}

/// Simulator steps one run may take: a deterministic guard against livelock.
pub const STEP_BUDGET: u64 = 5_000_000;

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sim(t={}us, {} nodes)", self.now, self.nodes.len())
    }
}

impl Sim {
    pub fn new(cfg: SimConfig, seed: u64) -> Sim {
        let deps = cfg.apps.iter().map(|a| a.deps.clone()).collect();
        let n = cfg.nodes;
        let mut sim = Sim {
            // The links draw from a stream of their own, apart from the churn's.
            links: Links::new(n, cfg.paths.clamp(1, MAX_PATHS), cfg.link, seed ^ 0x11_4c),
            health: vec![PathHealth::new(cfg.paths, path_dead_after(&cfg)); n * n],
            copies: vec![None; n * n],
            now: 0,
            rng: Pcg64Mcg::seed_from_u64(seed),
            nodes: Vec::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            checker: Checker::new(deps),
            next_stamp: 1,
            trace: false,
            trace_frames: std::env::var_os("MSM_SIM_FRAMES").is_some(),
            stats: Stats::default(),
            violation: None,
            ids: Vec::new(),
            steps: 0,
            attacker: Attacker::new(cfg.attack, seed ^ 0xa77a_c4e5),
            insider: Insider::new(cfg.insider, seed ^ 0x1251_de42),
            forged: 1 << 40,
            cfg,
        };
        for i in 0..n {
            sim.nodes.push(NodeState {
                engine: None,
                host: SimHost::new(sim.cfg.apps.len(), sim.cfg.saved_config.clone()),
                incarnation: 0,
                events: Vec::new(),
                followed: Term::NONE,
                bulk_begins: Default::default(),
            });
            sim.ids.push(Vec::new());
            if sim.cfg.boot_gap.is_zero() || i == 0 {
                sim.boot(i);
            }
        }
        sim
    }

    fn log(&self, node: Option<usize>, msg: std::fmt::Arguments<'_>) {
        if self.trace {
            let who = node.map_or("-".to_string(), |i| slot(i).letter().to_string());
            println!("[{:>9.3} ms] {who}: {msg}", self.now as f64 / 1000.0);
        }
    }

    fn instant(&self) -> Instant {
        Instant::from_micros(self.now)
    }

    /// Power on node `i` (again): RAM state lost, flash kept.
    pub fn boot(&mut self, i: usize) {
        let order: Vec<usize> = self.cfg.order.clone().unwrap_or_else(|| (0..self.cfg.apps.len()).collect());
        let mut reg = AppRegistry::<APPS>::new();
        let mut ids = vec![AppId::new(0); self.cfg.apps.len()];
        for &a in &order {
            let def = &self.cfg.apps[a];
            let schema = self
                .cfg
                .schema_overrides
                .iter()
                .find(|(n, ap, _)| *n == i && *ap == a)
                .map_or(def.schema, |o| o.2);
            let deps: Vec<&str> = def.deps.iter().map(|&d| self.cfg.apps[d].name.as_str()).collect();
            match reg.register(&def.name, schema, &deps) {
                Ok(id) => ids[a] = id,
                Err(e) => {
                    self.violation
                        .get_or_insert(Violation { invariant: 0, message: format!("app table: {e}") });
                    return;
                }
            }
        }
        let mut map = vec![0usize; self.cfg.apps.len()];
        for (a, id) in ids.iter().enumerate() {
            map[id.index()] = a;
        }
        let st = &mut self.nodes[i];
        st.incarnation += 1;
        st.host.reboot(map);
        let mut c = Config::new(slot(i));
        c.heartbeat_interval = self.cfg.heartbeat;
        c.miss_count = self.cfg.miss_count;
        c.max_frame = self.cfg.max_frame;
        c.incarnation = st.incarnation;
        c.boot_nonce = self.rng.random();
        c.paths = self.cfg.paths as u8;
        c.rto = self.cfg.heartbeat.min(Duration::from_millis(5));
        c.rto_max = self.cfg.heartbeat * 2;
        c.handover_timeout = self.cfg.heartbeat * 50;
        let node = match SimNode::new(c, reg, Instant::from_micros(self.now)) {
            Ok(n) => n,
            Err(e) => {
                self.violation
                    .get_or_insert(Violation { invariant: 0, message: format!("node config: {e}") });
                return;
            }
        };
        let mut node = node;
        if let Some(k) = &self.cfg.key {
            node.set_key(k);
        }
        if self.cfg.keep_terms {
            node.restore_term(Term::from_raw(st.host.last_term));
        }
        st.engine = Some(Box::new(node));
        st.followed = Term::NONE;
        let n = self.nodes.len();
        let fresh = PathHealth::new(self.cfg.paths, path_dead_after(&self.cfg));
        self.health[i * n..(i + 1) * n].fill(fresh);
        self.ids[i] = ids;
        self.checker.rebooted(i);
        self.log(Some(i), format_args!("boot (incarnation {})", self.nodes[i].incarnation));
        for bytes in self.attacker.at_boot() {
            self.attack_with(i, &bytes, Attack::ReplayAtBoot);
        }
        self.flush(i);
    }

    /// Node `i` loses power: RAM and in-flight frames to it are gone.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].engine = None;
        self.checker.facts.released(i);
        self.log(Some(i), format_args!("CRASH"));
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].engine.is_some()
    }

    pub fn engine(&self, i: usize) -> Option<&SimNode> {
        self.nodes[i].engine.as_deref()
    }

    pub fn engine_mut(&mut self, i: usize) -> Option<&mut SimNode> {
        self.nodes[i].engine.as_deref_mut()
    }

    pub fn app_id(&self, node: usize, app: usize) -> AppId {
        self.ids[node][app]
    }

    pub fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.engine(i).is_some_and(|n| n.role() == Role::Master)).collect()
    }

    /// The one master, if exactly one node is master.
    pub fn master(&self) -> Option<usize> {
        match self.masters().as_slice() {
            [m] => Some(*m),
            _ => None,
        }
    }

    pub fn backup(&self) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| self.engine(i).is_some_and(|n| n.role() == Role::Backup))
    }

    /// Run until virtual time `t_us`. Stops early at an invariant violation.
    pub fn run_until(&mut self, t_us: u64) -> Result<(), Violation> {
        let mut spins = 0u32;
        let mut last = self.now;
        loop {
            if let Some(v) = &self.violation {
                return Err(v.clone());
            }
            self.steps += 1;
            if self.steps > STEP_BUDGET {
                return Err(Violation {
                    invariant: 0,
                    message: format!("step budget of {STEP_BUDGET} exceeded at {} us (livelock?)", self.now),
                });
            }
            if self.now == last {
                spins += 1;
                if spins > 10_000 {
                    return Err(Violation {
                        invariant: 0,
                        message: format!("livelock: no progress of time at {} us", self.now),
                    });
                }
            } else {
                (spins, last) = (0, self.now);
            }
            let mut next = self.queue.peek().map(|d| d.0.at);
            for st in &self.nodes {
                if let Some(e) = &st.engine {
                    if let Some(t) = e.poll_timeout() {
                        let t = t.as_micros().max(self.now);
                        next = Some(next.map_or(t, |n| n.min(t)));
                    }
                }
            }
            let Some(next) = next.filter(|&n| n <= t_us) else {
                self.now = self.now.max(t_us);
                return Ok(());
            };
            self.now = next;
            while self.queue.peek().is_some_and(|d| d.0.at <= next) {
                let Some(Reverse(d)) = self.queue.pop() else {
                    break;
                };
                self.stats.frames += 1;
                if self.trace_frames {
                    let f = msm_checkpoint::wire::decode(&d.bytes);
                    self.log(Some(d.to), format_args!("<- {:?}", f.map(|f| (f.from, f.term, f.body))));
                }
                let now = self.instant();
                let nodes = self.nodes.len();
                let st = &mut self.nodes[d.to];
                if let Some(e) = st.engine.as_deref_mut() {
                    self.health[d.to * nodes + d.from].heard(d.path, now);
                    let r = e.handle_frame(now, &d.bytes, &mut st.host);
                    if r.is_err() {
                        self.stats.frame_errors += 1;
                    }
                    if !attacker::refused_early(&r) {
                        self.attacker.capture(d.to, &d.bytes);
                    }
                    self.after(d.to);
                }
                self.attack();
                self.misbehave();
            }
            for i in 0..self.nodes.len() {
                let now = self.instant();
                let st = &mut self.nodes[i];
                if let Some(e) = st.engine.as_deref_mut() {
                    if e.poll_timeout().is_some_and(|t| t <= now) {
                        e.handle_timeout(now, &mut st.host);
                        self.after(i);
                    }
                }
            }
        }
    }

    pub fn run_for(&mut self, d: Duration) -> Result<(), Violation> {
        self.run_until(self.now + d.as_micros() as u64)
    }

    /// Run until `cond` holds (checked every 100 us of virtual time), at most `limit`.
    pub fn run_until_cond(
        &mut self,
        limit: Duration,
        mut cond: impl FnMut(&Sim) -> bool,
    ) -> Result<bool, Violation> {
        let end = self.now + limit.as_micros() as u64;
        while self.now < end {
            if cond(self) {
                return Ok(true);
            }
            self.run_until((self.now + 100).min(end))?;
        }
        Ok(cond(self))
    }

    /// Run until there is one master whose backup is in sync.
    pub fn run_until_in_sync(&mut self, limit: Duration) -> Result<bool, Violation> {
        self.run_until_cond(limit, |s| {
            s.master().and_then(|m| s.engine(m)).is_some_and(|e| e.sync_state() == SyncState::InSync)
        })
    }

    /// After node `i` handled something: events, checks, transmissions.
    fn after(&mut self, i: usize) {
        self.drain_events(i);
        self.check(i);
        self.flush(i);
    }

    /// Bulk-begin records seen by node `i`'s host so far, per stream (from events).
    pub fn events_of(&self, i: usize) -> &[(u64, Event)] {
        &self.nodes[i].events
    }

    /// The state of `app` on node `i`.
    pub fn state(&self, i: usize, app: usize) -> &BTreeMap<u32, Stamp> {
        &self.nodes[i].host.apps[app]
    }

    pub fn stream_of(&self, i: usize, app: usize) -> Stream {
        Stream::App(self.ids[i][app])
    }

    /// Bulk transfers of `stream` that node `i`'s host began (as a backup).
    pub fn bulk_begins(&self, i: usize, stream: SimStream) -> usize {
        self.nodes[i].bulk_begins.get(&stream).copied().unwrap_or(0)
    }
}

pub fn slot(i: usize) -> Slot {
    Slot::new(i as u8).unwrap_or(Slot::A)
}
