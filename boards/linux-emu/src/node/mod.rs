//! One MSM: the checkpoint engine, the application state, the flash, the backplane
//! link, the workload and the operator requests, driven by one poll loop.

mod outbox;
mod throttle;

use std::fmt::Write as _;
use std::time::Duration;

use msm_backplane::link::{Error as _, ErrorKind, Link};
use msm_checkpoint::status::{render_checkpoint, render_switch, state_label};
use msm_checkpoint::{AppRegistry, Config, ConfigChoice, Event, Instant, Node, Role, Slot, SyncState};
use msm_flash::ConfigName;
use serde_json::json;

use crate::apps::{self, AppIds, Change, VLAN, describe, hex, vlan_key};
use crate::churn::Churn;
use crate::config::{Effect, RunningConfig};
use crate::control::{Request, Response, config_word};
use crate::flash::BoardFlash;
use crate::host::ChassisHost;
use crate::journal::JournalWriter;
use outbox::Outbox;

/// The engine as configured on Linux: 8 applications, 64 frames in flight,
/// 256 KiB of backlog (about half a second of 10 000 changes/s: more than a
/// link blip shorter than failure detection needs).
pub type Engine = Node<8, 64, { 256 * 1024 }>;

/// How a node was started.
#[derive(Debug, Clone)]
pub struct Options {
    pub slot: Slot,
    pub priority: Option<u8>,
    pub heartbeat: Duration,
    pub miss_count: u8,
    pub churn: u32,
    /// MAC table entries a master elected at boot starts with.
    pub fdb: u32,
    pub seed: u64,
    pub max_frame: usize,
    /// Throttle sends to this many bytes per second (a slow serial
    /// backplane); `None`: as fast as the link takes them.
    pub link_rate: Option<u64>,
    /// Run only these applications (by name; `None`: all). Both MSMs of a
    /// chassis run the same set; a small MCU peer runs few.
    pub apps: Option<Vec<String>>,
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
    pub host: ChassisHost<BoardFlash>,
    pub link: L,
    pub churn: Churn,
    clock: std::time::Instant,
    buf: Vec<u8>,
    outbox: Outbox,
    journal: Option<JournalWriter>,
    opts: Options,
    pub exit: Option<Exit>,
    /// Frames the link refused as damaged or oversized.
    pub link_errors: u64,
    booted: ConfigName,
    /// The applications that run here, by their ids in the engine.
    apps: AppIds,
}

impl<L: Link> std::fmt::Debug for MsmNode<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MsmNode({})", self.engine.slot())
    }
}

/// "Tue Nov 24 23:20:56 2026" (UTC) without a date crate.
pub fn ctime(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days.rem_euclid(7)) as usize];
    let mon = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        [(m - 1) as usize];
    format!("{wd} {mon} {d:>2} {:02}:{:02}:{:02} {y}", secs / 3600, secs / 60 % 60, secs % 60)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl<L: Link> MsmNode<L> {
    pub fn new(
        opts: Options,
        mut flash: BoardFlash,
        link: L,
        journal: Option<JournalWriter>,
    ) -> anyhow::Result<Self> {
        let booted = flash.selected();
        let running = match flash.load(booted)? {
            Some(text) => RunningConfig::parse(&text).unwrap_or_else(|e| {
                log::warn!(
                    "{}: saved configuration refused ({e}); booting the factory default",
                    booted.file_name()
                );
                crate::config::factory_default()
            }),
            None => crate::config::factory_default(),
        };
        let mut reg = AppRegistry::<8>::new();
        let apps = AppIds::register(&mut reg, opts.apps.as_deref()).map_err(anyhow::Error::msg)?;
        let running_apps = reg.len();
        let mut c = Config::new(opts.slot);
        c.priority =
            opts.priority.or(running.priority[opts.slot.index().min(1)]).or(flash.priority()).unwrap_or(0);
        c.heartbeat_interval = opts.heartbeat;
        c.miss_count = opts.miss_count;
        c.max_frame = opts.max_frame.min(link.max_frame());
        c.incarnation = flash.boot_count();
        c.rto = (opts.heartbeat / 2).max(Duration::from_millis(2));
        c.rto_max = opts.heartbeat * 4;
        let engine = Box::new(Engine::new(c, reg, Instant::ZERO).map_err(|e| anyhow::anyhow!("{e}"))?);
        let max_frame = engine.config().max_frame;
        Ok(MsmNode {
            engine,
            host: ChassisHost::new(flash, running, running_apps),
            link,
            churn: Churn::new(opts.seed, opts.churn, 50_000),
            clock: std::time::Instant::now(),
            buf: vec![0u8; max_frame],
            outbox: Outbox::new(opts.link_rate),
            journal,
            opts,
            exit: None,
            link_errors: 0,
            booted,
            apps,
        })
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
        if self.engine.role() == Role::Master && self.churn.rate > 0 {
            let tick = self.now() + Duration::from_millis(5);
            t = Some(t.map_or(tick, |x| x.min(tick)));
        }
        t
    }

    /// One round: receive, timers, workload, transmit, events.
    pub fn pump(&mut self) {
        let now = self.now();
        loop {
            match self.link.recv(&mut self.buf) {
                Ok(Some(n)) => {
                    if let Err(e) = self.engine.handle_frame(now, &self.buf[..n], &mut self.host) {
                        log::debug!("frame refused: {e}");
                    }
                }
                Ok(None) => break,
                Err(e) if e.kind() == ErrorKind::FrameTooLarge => self.link_errors += 1,
                Err(e) => {
                    log::debug!("link receive: {e:?}");
                    break;
                }
            }
        }
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now, &mut self.host);
        }
        if self.engine.role() == Role::Master {
            for (app, c) in self.churn.due(now.as_micros()) {
                let _ = self.change(app, c);
            }
        }
        self.transmit();
        self.events();
        self.journal_checkpoints();
    }

    fn transmit(&mut self) {
        let now = self.now();
        let _ = self.link.flush();
        if !self.outbox.send_held(&mut self.link, now) {
            return;
        }
        while let Some(n) = self.engine.poll_transmit(now, &mut self.host, &mut self.buf) {
            if !self.outbox.send(&mut self.link, now, &self.buf[..n]) {
                return;
            }
        }
    }

    fn events(&mut self) {
        while let Some(ev) = self.engine.poll_event() {
            log::info!("{}: {ev:?}", self.engine.slot());
            if let Event::Promoted { config, in_sync, .. } = ev {
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
                if !in_sync && self.host.tables.iter().all(|t| t.rows.is_empty()) {
                    // A fresh chassis: the applications start with their initial state.
                    for (app, c) in self.churn.initial(self.opts.fdb) {
                        let _ = self.change(app, c);
                    }
                }
                if let Some(j) = &mut self.journal {
                    j.promoted(config, in_sync);
                }
            }
        }
    }

    /// Every change of application `app` (index in [`APPS`](crate::apps::APPS))
    /// up to this id is on the backup.
    pub fn checkpointed(&self, app: usize) -> u64 {
        self.apps.get(app).map_or(0, |id| self.engine.checkpointed(id))
    }

    /// The master changes one key of one application; the change id, if it was taken.
    pub fn change(&mut self, app: usize, c: Change) -> Option<u64> {
        let now = self.now();
        let id = self.apps.get(app)?;
        match self.engine.record_change(now, id, &c.encode()) {
            Ok(change) => {
                if let Some(j) = &mut self.journal {
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

    /// Journal how far each application is checkpointed, while master.
    fn journal_checkpoints(&mut self) {
        let Some(j) = &mut self.journal else { return };
        if self.engine.role() != Role::Master {
            return;
        }
        let peer = self.engine.checkpoint_peer();
        for (app, id) in self.apps.iter() {
            j.checkpointed(app, self.engine.checkpointed(id), peer);
        }
        j.flush();
    }

    fn unsaved(&mut self) -> bool {
        let text = self.host.running.to_text();
        let selected = self.host.flash.selected();
        !matches!(self.host.flash.load(selected), Ok(Some(saved)) if saved == text)
    }

    // ------------------------------------------------------------ operator

    pub fn handle(&mut self, req: Request) -> Response {
        match req {
            Request::ShowSwitch => self.show_switch(),
            Request::ShowCheckpointData { process } => self.show_checkpoint(process.as_deref()),
            Request::ShowNode => self.show_node(),
            Request::ShowConfiguration => {
                let t = self.host.running.to_text();
                Response::ok(t.clone(), json!({ "text": t }))
            }
            Request::ShowApp { app, rows } => self.show_app(&app, rows),
            Request::Configure { lines } => self.configure(&lines),
            Request::Save { which } => self.save(which),
            Request::UseConfiguration { which } => match self.host.flash.select(which) {
                Ok(()) => Response::ok(
                    format!("The selected configuration will be {} at the next boot.", which.file_name()),
                    json!({ "selected": config_word(which) }),
                ),
                Err(e) => Response::error(format!("use configuration: {e}")),
            },
            Request::Reboot { force } => {
                if !force && self.unsaved() {
                    return Response::error(
                        "the configuration has unsaved changes: 'save' first, or 'reboot --force' to discard them",
                    );
                }
                self.exit = Some(Exit::Reboot);
                Response::ok(format!("Rebooting {}...", self.engine.slot()), json!({ "rebooting": true }))
            }
            Request::Failover { force } => {
                let now = self.now();
                match self.engine.failover(now, force) {
                    Ok(()) => Response::ok(
                        "Failover started: the backup takes over.",
                        json!({ "failover": true, "force": force }),
                    ),
                    Err(e) => Response::error(format!("run msm-failover: {e}")),
                }
            }
            Request::Churn { rate } => {
                self.churn.rate = rate;
                Response::ok(format!("workload: {rate} changes per second"), json!({ "rate": rate }))
            }
        }
    }

    fn configure(&mut self, lines: &[String]) -> Response {
        if self.engine.role() != Role::Master {
            return Response::error(format!(
                "{} is {}: configuration changes are made on the master",
                self.engine.slot(),
                self.engine.role()
            ));
        }
        for (i, line) in lines.iter().enumerate() {
            if line.contains('\n') {
                return Response::error(format!("line {}: one command per line: {line:?}", i + 1));
            }
            let mut trial = self.host.running.clone();
            let effect = match trial.apply(line) {
                Ok(e) => e,
                Err(reason) => {
                    return Response::error(format!(
                        "line {}: {reason}: {line}{}",
                        i + 1,
                        if i > 0 {
                            format!(" (the {i} line(s) before it were applied)")
                        } else {
                            String::new()
                        }
                    ));
                }
            };
            let now = self.now();
            let mut text = line.trim().to_string();
            text.push('\n');
            if let Err(e) = self.engine.config_change(now, text.as_bytes()) {
                return Response::error(format!("line {}: {e}: {line}", i + 1));
            }
            self.host.running = trial;
            match effect {
                Effect::Vlan(name) => {
                    let key = vlan_key(&name);
                    let c = match self.host.running.vlans.get(&name) {
                        Some(v) => {
                            let tag = v.tag.map_or("untagged".to_string(), |t| format!("tag {t}"));
                            let ports = crate::config::port_list(&v.ports);
                            Change::Set(key, format!("{name} {tag} ports {ports}").into_bytes())
                        }
                        None => Change::Delete(key),
                    };
                    let _ = self.change(VLAN, c);
                }
                Effect::Priority(slot, p) if slot == self.engine.slot().index() => {
                    self.engine.set_priority(p);
                    let _ = self.host.flash.set_priority(p);
                }
                _ => {}
            }
        }
        Response::ok(String::new(), json!({ "applied": lines.len() }))
    }

    fn save(&mut self, which: Option<ConfigName>) -> Response {
        let selected = self.host.flash.selected();
        let which = which.unwrap_or(selected);
        let text = self.host.running.to_text();
        match self.host.flash.save(which, &text, unix_now()) {
            Ok(n) => {
                if which == selected && self.engine.role() == Role::Master {
                    let now = self.now();
                    self.engine.config_saved(now);
                }
                Response::ok(
                    format!(
                        "Saving configuration on {} ... done!\n{n} bytes saved to {}",
                        self.engine.slot(),
                        which.file_name()
                    ),
                    json!({ "saved": config_word(which), "bytes": n }),
                )
            }
            Err(e) => Response::error(format!("save {}: {e}", which.file_name())),
        }
    }

    fn show_switch(&mut self) -> Response {
        let s = self.engine.switch_status();
        let mut t = String::new();
        let _ = writeln!(t, "SysName:          {}", self.host.running.sysname);
        let _ = render_switch(&s, &mut t);
        let selected = self.host.flash.selected();
        let _ = writeln!(t, "Config Selected:  {}", selected.file_name());
        let _ = writeln!(t, "Config Booted:    {}", self.booted.file_name());
        let mut files = Vec::new();
        for w in [ConfigName::Primary, ConfigName::Secondary] {
            match self.host.flash.info(w) {
                Some(i) => {
                    let _ = writeln!(t, "{:<18}Created by msm-ha version {}", w.file_name(), i.version);
                    let _ = writeln!(t, "{:<18}{} bytes saved on {}", "", i.len, ctime(i.saved_at));
                    files.push(json!({ "file": w.file_name(), "bytes": i.len, "saved_at": i.saved_at, "version": i.version }));
                }
                None => {
                    let _ = writeln!(t, "{:<18}Empty", w.file_name());
                }
            }
        }
        let unsaved = self.unsaved();
        let _ = writeln!(t, "Unsaved changes:  {}", if unsaved { "yes" } else { "no" });
        let mut label = String::new();
        let _ = state_label(s.role, &s.sync, &mut label);
        let peers: Vec<_> = s
            .peers
            .iter()
            .flatten()
            .map(|p| json!({ "slot": p.slot.letter().to_string(), "alive": p.alive, "role": p.role.as_str(), "term": p.term.to_string(), "priority": p.priority }))
            .collect();
        let j = json!({
            "slot": s.slot.letter().to_string(),
            "role": s.role.as_str(),
            "state": label,
            "term": s.term.to_string(),
            "master": s.master.map(|m| m.letter().to_string()),
            "backup": s.backup.map(|m| m.letter().to_string()),
            "in_sync": s.sync == SyncState::InSync,
            "sync": s.sync.to_string(),
            "peers": peers,
            "config_selected": selected.file_name(),
            "config_booted": self.booted.file_name(),
            "saved": files,
            "unsaved_changes": unsaved,
            "frame_errors": { "bad_crc": s.errors.bad_crc, "malformed": s.errors.malformed, "version": s.errors.version, "stale_term": s.errors.stale_term, "other": s.errors.other },
        });
        Response::ok(t, j)
    }

    fn show_checkpoint(&self, process: Option<&str>) -> Response {
        let rows: Vec<_> = match process {
            Some(p) => match self.engine.process_status(p) {
                Some(r) => vec![r],
                None => return Response::error(format!("no process named '{p}'")),
            },
            None => self.engine.checkpoint_status().collect(),
        };
        let mut t = String::new();
        let _ = render_checkpoint(rows.iter(), &mut t);
        let j: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "process": r.name.as_str(), "tx": r.counters.tx, "rx": r.counters.rx, "errors": r.counters.errors,
                    "sent": r.sent, "total": r.total, "percent": r.percent(), "status": r.phase.as_str(),
                    "changes": r.changes, "checkpointed": r.checkpointed, "rebulks": r.rebulks,
                    "mismatch": r.mismatch.map(|m| json!({ "ours": m.ours, "theirs": m.theirs })),
                })
            })
            .collect();
        Response::ok(t, json!(j))
    }

    fn show_node(&self) -> Response {
        let s = self.engine.switch_status();
        let mut t = format!("{:<10} {:<10} {:<10} {:<10}\n", "Node", "State", "Priority", "Health");
        let mut j = Vec::new();
        for i in 0..2u8 {
            let Some(slot) = Slot::new(i) else { continue };
            let (state, prio, health) = if slot == s.slot {
                (s.role.as_str(), s.priority.to_string(), s.health.to_string())
            } else {
                match s.peers[i as usize] {
                    Some(p) if p.alive => (p.role.as_str(), p.priority.to_string(), p.health.to_string()),
                    _ => ("DOWN", "-".into(), "-".into()),
                }
            };
            let _ = writeln!(t, "{:<10} {:<10} {:<10} {:<10}", slot.to_string(), state, prio, health);
            j.push(json!({ "node": slot.to_string(), "state": state, "priority": prio, "health": health }));
        }
        Response::ok(t, json!(j))
    }

    fn show_app(&self, app: &str, rows: bool) -> Response {
        let i = match apps::find(app) {
            Ok(i) => i,
            Err(e) => return Response::error(e),
        };
        let Some(id) = self.apps.get(i) else {
            return Response::error(format!("application '{app}' does not run on this node"));
        };
        let table = &self.host.tables[id.index()];
        let mut t = format!("{app}: {} entries, digest {:016x}\n", table.rows.len(), table.digest());
        let mut entries = Vec::new();
        if rows {
            for (k, v) in &table.rows {
                let _ = writeln!(t, "  {}", describe(i, *k, v));
                entries.push(json!({ "key": k, "value": hex(v) }));
            }
        }
        Response::ok(
            t,
            json!({ "app": app, "entries": table.rows.len(), "digest": format!("{:016x}", table.digest()), "rows": entries }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctime_formats_like_xos() {
        assert_eq!(ctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(ctime(1_617_900_322), "Thu Apr  8 16:45:22 2021");
    }
}
