//! Operator work that takes longer than one loop turn. A `configure` of many
//! lines is applied, and a `save` of a large configuration written to flash,
//! in slices between protocol work (heartbeats, frames, timeouts come first),
//! in the order the operator asked; `--wait` waits for the backup's acknowledgement
//! without holding the loop: the answer goes out when the backup has every
//! change, or when the time is up, saying how far behind it is (as Redis
//! `WAIT` and DRBD protocol C answer only once the peer has the write).

use std::collections::VecDeque;
use std::time::Duration;

use msm_backplane::Link;
use std::fmt::Write as _;

use msm_checkpoint::{AppId, Role, Slot, SyncState};
use msm_flash::ConfigName;
use msm_time::Instant;

use super::MsmNode;
use crate::apps::{Change, VLAN, describe, hex, vlan_key};
use crate::backup_wait::BackupWait;
use crate::config::Effect;
use msm_control::{Configured, MAX_ROWS, OnBackup, Response, Saved, Synchronized, config_word};

/// Names one pending answer.
pub type Ticket = u64;

/// Lines applied per slice at most; a slice also ends after [`SLICE_TIME`].
const SLICE_LINES: usize = 512;
/// A slice's time budget: well under a heartbeat interval (10 ms at the
/// fastest), so heartbeats go out on time whatever the operator sends.
const SLICE_TIME: Duration = Duration::from_millis(2);
/// Bytes of a save written to flash per step of a slice.
const SAVE_PIECE: usize = 16 * 1024;
/// Rows of a `show app --rows` answer built per step of a slice.
const ROWS_PER_STEP: usize = 2000;

/// The change ids an answer waits for (0: nothing of that kind).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Marks {
    /// Last configuration line.
    pub config: u64,
    /// Last change of the vlan application the lines made.
    pub vlan: u64,
    /// The save.
    pub saved: u64,
}

/// What the answer reports once the wait is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Done {
    Configure {
        applied: usize,
    },
    Save {
        which: ConfigName,
        bytes: usize,
    },
    /// `synchronize` to `backup`: the files as they were when it began.
    Synchronize {
        backup: Slot,
        files: Vec<msm_control::SyncedFile>,
        selected: ConfigName,
    },
}

#[derive(Debug)]
struct Configure {
    ticket: Ticket,
    lines: Vec<String>,
    next: usize,
    wait: Option<Duration>,
    marks: Marks,
}

/// A `save` being written: the text as it was when the save's turn came.
#[derive(Debug)]
struct Save {
    ticket: Ticket,
    which: ConfigName,
    wait: Option<u64>,
    text: Option<Vec<u8>>,
    at: usize,
}

/// `show app <name> --rows` of a table that may hold a million rows: the
/// answer is built a step at a time. Rows changed meanwhile are shown as
/// they are when their step reads them, as a switch's `show` commands do.
#[derive(Debug)]
struct Rows {
    ticket: Ticket,
    name: String,
    app: Option<crate::apps::BuiltinApp>,
    id: AppId,
    /// The first key not yet read.
    next: Option<u64>,
    /// The page is full: the first key of the next one.
    more: Option<u64>,
    text: String,
    rows: Vec<msm_control::AppRow>,
}

#[derive(Debug)]
enum Job {
    Configure(Configure),
    Save(Save),
    Rows(Rows),
}

#[derive(Debug)]
struct Wait {
    ticket: Ticket,
    marks: Marks,
    done: Done,
    wait: BackupWait<Instant>,
}

/// The operator's pending work, oldest first, and the answers ready to go.
#[derive(Debug, Default)]
pub(crate) struct Ops {
    jobs: VecDeque<Job>,
    waits: Vec<Wait>,
    answers: VecDeque<(Ticket, Response)>,
    next: Ticket,
}

impl Ops {
    fn ticket(&mut self) -> Ticket {
        self.next += 1;
        self.next
    }

    /// Something to do at the next loop turn.
    pub(crate) fn busy(&self) -> bool {
        !self.jobs.is_empty()
    }

    /// The earliest wait deadline, for the loop's sleep.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.waits.iter().map(|w| w.wait.deadline).min()
    }

    pub(crate) fn take_answer(&mut self) -> Option<(Ticket, Response)> {
        self.answers.pop_front()
    }
}

impl<L: Link> MsmNode<L> {
    /// Queue a configure; its lines are applied in slices by [`work`](Self::work).
    pub(crate) fn start_configure(
        &mut self,
        lines: Vec<String>,
        wait: Option<u64>,
    ) -> Result<Ticket, Response> {
        if self.engine.role() != Role::Master {
            return Err(Response::error(format!(
                "{} is {}: configuration changes are made on the master",
                self.engine.slot(),
                self.engine.role()
            )));
        }
        if let Some((i, line)) = lines.iter().enumerate().find(|(_, l)| l.contains('\n')) {
            return Err(Response::error(format!("line {}: one command per line: {line:?}", i + 1)));
        }
        let ticket = self.ops.ticket();
        let wait = wait.map(Duration::from_millis);
        self.ops.jobs.push_back(Job::Configure(Configure {
            ticket,
            lines,
            next: 0,
            wait,
            marks: Marks::default(),
        }));
        Ok(ticket)
    }

    /// Queue a `save` of the running configuration, after the work before it.
    pub(crate) fn start_save(&mut self, which: ConfigName, wait: Option<u64>) -> Ticket {
        let ticket = self.ops.ticket();
        self.ops.jobs.push_back(Job::Save(Save { ticket, which, wait, text: None, at: 0 }));
        ticket
    }

    /// Queue a `show app <name> --rows`.
    pub(crate) fn start_rows(
        &mut self,
        name: String,
        app: Option<crate::apps::BuiltinApp>,
        id: AppId,
        from: u64,
    ) -> Ticket {
        let ticket = self.ops.ticket();
        let job = Rows {
            ticket,
            name,
            app,
            id,
            next: Some(from),
            more: None,
            text: String::new(),
            rows: Vec::new(),
        };
        self.ops.jobs.push_back(Job::Rows(job));
        ticket
    }

    /// One step of a `--rows` answer: `Some` with the answer once every row is read.
    fn rows_step(&self, r: &mut Rows) -> Option<Response> {
        let table = &self.host.tables[r.id.index()];
        if let Some(from) = r.next {
            r.next = None;
            for (read, (k, v)) in table.rows().range(from..).enumerate() {
                if r.rows.len() == MAX_ROWS {
                    r.more = Some(*k);
                    break;
                }
                if read == ROWS_PER_STEP {
                    r.next = Some(*k);
                    break;
                }
                let _ = writeln!(r.text, "  {}", describe(r.app, *k, v));
                r.rows.push(msm_control::AppRow { key: *k, value: hex(v) });
            }
        }
        r.next.is_none().then(|| {
            let head = format!("{}: {} entries, digest {:016x}\n", r.name, table.len(), table.digest());
            let mut text = head + &r.text;
            if let Some(k) = r.more {
                let _ = writeln!(text, "(more: show app {} --rows --from {k})", r.name);
            }
            let j = msm_control::AppTable {
                app: r.name.clone(),
                entries: table.len() as u64,
                digest: format!("{:016x}", table.digest()),
                rows: std::mem::take(&mut r.rows),
                next: r.more,
            };
            Response::ok(text, &j)
        })
    }

    /// One step of the save at the head of the queue: `None` while it goes on.
    fn save_step(&mut self, s: &mut Save) -> Option<Result<usize, String>> {
        let which = s.which;
        let text = match &s.text {
            Some(t) => t,
            None => {
                let t = self.host.running.to_text().into_bytes();
                if let Err(e) = self.host.flash.begin_save_of(which, t.len(), crate::wall_clock::unix_now()) {
                    return Some(Err(e));
                }
                s.text.insert(t)
            }
        };
        let end = (s.at + SAVE_PIECE).min(text.len());
        if let Err(e) = self.host.flash.write_piece(which, &text[s.at..end]) {
            return Some(Err(e));
        }
        s.at = end;
        (end == text.len()).then(|| self.host.flash.commit_save_of(which))
    }

    /// Answer `done` under `ticket` once `marks` are on the backup, or when
    /// `wait` is over (at once without it).
    fn wait_for_backup(&mut self, ticket: Ticket, marks: Marks, done: Done, wait: Option<Duration>) {
        let now = self.now();
        let deadline = now + wait.unwrap_or(Duration::ZERO);
        self.ops.waits.push(Wait { ticket, marks, done, wait: BackupWait::new(now, deadline) });
    }

    /// One slice of pending operator work, then the waits that are over.
    pub(crate) fn work(&mut self) {
        let start = std::time::Instant::now();
        let mut budget = SLICE_LINES;
        while budget > 0 && start.elapsed() < SLICE_TIME {
            if let Some(Job::Rows(_)) = self.ops.jobs.front() {
                let Some(Job::Rows(mut r)) = self.ops.jobs.pop_front() else { break };
                budget = budget.saturating_sub(SLICE_LINES / 4);
                match self.rows_step(&mut r) {
                    Some(answer) => self.ops.answers.push_back((r.ticket, answer)),
                    None => self.ops.jobs.push_front(Job::Rows(r)),
                }
                continue;
            }
            if let Some(Job::Save(_)) = self.ops.jobs.front() {
                let Some(Job::Save(mut s)) = self.ops.jobs.pop_front() else { break };
                budget = budget.saturating_sub(SLICE_LINES / 4);
                match self.save_step(&mut s) {
                    None => self.ops.jobs.push_front(Job::Save(s)),
                    Some(Err(e)) => {
                        let r = Response::error(format!("save {}: {e}", s.which.file_name()));
                        self.ops.answers.push_back((s.ticket, r));
                    }
                    Some(Ok(bytes)) => {
                        let mut marks = Marks::default();
                        // Either file: the saved-configuration stream carries both.
                        if self.engine.role() == Role::Master {
                            marks.saved = self.engine.config_saved();
                        }
                        let wait = s.wait.map(Duration::from_millis);
                        self.wait_for_backup(s.ticket, marks, Done::Save { which: s.which, bytes }, wait);
                    }
                }
                continue;
            }
            let Some(Job::Configure(job)) = self.ops.jobs.front_mut() else { break };
            let (ticket, i) = (job.ticket, job.next);
            let Some(line) = job.lines.get(i).cloned() else {
                let Some(Job::Configure(job)) = self.ops.jobs.pop_front() else { break };
                let done = Done::Configure { applied: job.lines.len() };
                self.wait_for_backup(ticket, job.marks, done, job.wait);
                continue;
            };
            budget -= 1;
            match self.configure_line(&line) {
                Ok(marks) => {
                    if let Some(Job::Configure(job)) = self.ops.jobs.front_mut() {
                        job.next += 1;
                        job.marks.config = job.marks.config.max(marks.config);
                        job.marks.vlan = job.marks.vlan.max(marks.vlan);
                    }
                }
                Err(reason) => {
                    let before = if i > 0 {
                        format!(" (the {i} line(s) before it were applied)")
                    } else {
                        String::new()
                    };
                    self.ops.jobs.pop_front();
                    let r = Response::error(format!("line {}: {reason}: {line}{before}", i + 1));
                    self.ops.answers.push_back((ticket, r));
                }
            }
        }
        let now = self.now();
        self.check_waits(now);
    }

    /// Apply one line on the master: the model, the checkpoint, the effect.
    fn configure_line(&mut self, line: &str) -> Result<Marks, String> {
        if self.engine.role() != Role::Master {
            return Err(format!("{} is no longer the master", self.engine.slot()));
        }
        let mut text = line.trim().to_string();
        text.push('\n');
        // Checked before the engine records it: a refused line changes nothing.
        let effect = self.host.running.check(line)?;
        let config = self.engine.config_change(text.as_bytes()).map_err(|e| e.to_string())?;
        self.host.running.apply(line)?;
        self.config_recorded(config, text.as_bytes());
        if let Some(j) = &mut self.watcher {
            j.config_change(config, line.trim());
        }
        let mut marks = Marks { config, ..Marks::default() };
        match effect {
            Effect::Vlan(name) => {
                let key = vlan_key(&name);
                let c = match self.host.running.vlans.get(&name) {
                    Some(v) => Change::Set(key, crate::apps::vlan_row(&name, v)),
                    None => Change::Delete(key),
                };
                marks.vlan = self.change(VLAN, c).unwrap_or(0);
            }
            Effect::Priority(slot, p) if slot == self.engine.slot().index() => {
                self.engine.set_priority(p);
                let _ = self.host.flash.set_priority(p);
            }
            _ => {}
        }
        Ok(marks)
    }

    /// Changes of `marks` not yet on the backup.
    fn behind(&self, marks: Marks) -> u64 {
        let vlan = self.apps.get(VLAN).map_or(0, |id| self.engine.checkpointed(id));
        marks.config.saturating_sub(self.engine.config_checkpointed())
            + marks.vlan.saturating_sub(vlan)
            + marks.saved.saturating_sub(self.engine.saved_checkpointed())
    }

    /// Answer every wait whose changes reached the backup or whose time is up.
    fn check_waits(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.ops.waits.len() {
            let w = &self.ops.waits[i];
            let behind = self.behind(w.marks);
            if !w.wait.over(now, behind, self.engine.role() == Role::Master) {
                i += 1;
                continue;
            }
            let w = self.ops.waits.swap_remove(i);
            let r = self.answer(&w, behind, now);
            self.ops.answers.push_back((w.ticket, r));
        }
    }

    fn answer(&self, w: &Wait, behind: u64, now: Instant) -> Response {
        let checkpointed = behind == 0;
        let waited = now.saturating_since(w.wait.started).as_millis();
        let waited_for = w.wait.waits();
        let no_backup = self.engine.role() == Role::Master && self.engine.switch_status().backup.is_none();
        let on_backup = if no_backup {
            "no backup: on no other module".to_string()
        } else if checkpointed {
            "on the backup".to_string()
        } else if self.engine.role() != Role::Master {
            format!("{} is no longer the master: not known to be on the backup", self.engine.slot())
        } else if waited_for {
            format!(
                "applied on the master, not yet on the backup: {behind} change(s) behind after {waited} ms"
            )
        } else {
            format!("applied on the master; {behind} change(s) not yet on the backup")
        };
        let on_backup_data = OnBackup {
            seq: w.marks.config,
            checkpointed: checkpointed && !no_backup,
            backup: !no_backup,
            behind,
            waited_ms: u64::try_from(waited).unwrap_or(u64::MAX),
        };
        match w.done.clone() {
            Done::Configure { applied } => {
                let j =
                    Configured { applied: applied as u64, vlan_seq: w.marks.vlan, on_backup: on_backup_data };
                let text = if waited_for || !checkpointed {
                    format!("{applied} line(s) applied, {on_backup}.")
                } else {
                    String::new()
                };
                Response::ok(text, &j)
            }
            Done::Save { which, bytes } => {
                let j = Saved {
                    saved: config_word(which).into(),
                    bytes: bytes as u64,
                    save_seq: w.marks.saved,
                    on_backup: on_backup_data,
                };
                let mut text = format!(
                    "Saving configuration on {} ... done!\n{bytes} bytes saved to {}",
                    self.engine.slot(),
                    which.file_name()
                );
                if waited_for {
                    text.push_str(&format!("\nBackup flash: {on_backup}."));
                }
                Response::ok(text, &j)
            }
            Done::Synchronize { backup, files, selected } => {
                if !checkpointed || no_backup {
                    return Response::error(format!(
                        "synchronize: {backup}'s flash did not acknowledge the copy: {on_backup}; run it again when the backup is in sync"
                    ));
                }
                let j = Synchronized {
                    backup: backup.letter().to_string(),
                    files: files.clone(),
                    selected: config_word(selected).into(),
                    save_seq: w.marks.saved,
                    verified: true,
                    waited_ms: on_backup_data.waited_ms,
                };
                let mut text = format!("Synchronizing with {backup} ... done in {waited} ms.\n");
                for f in &files {
                    let _ = match (f.bytes, &f.crc32c) {
                        (Some(n), Some(crc)) => writeln!(text, "  {:<14}{n} bytes, CRC-32C {crc}", f.file),
                        _ => writeln!(text, "  {:<14}empty", f.file),
                    };
                }
                let _ = write!(
                    text,
                    "  selected      {}\nThe backup's flash holds them: the copy's digest matched.",
                    selected.file_name()
                );
                Response::ok(text, &j)
            }
        }
    }

    /// `synchronize` (master): both saved configurations and the selection
    /// to the backup's flash, answered once its flash acknowledged them.
    pub(crate) fn synchronize(&mut self, wait: u64) -> Result<Ticket, Response> {
        let refuse = |why: String| Err(Response::error(format!("synchronize: {why}")));
        let status = self.engine.switch_status();
        if self.engine.role() != Role::Master {
            let master = status.master.map_or("the master".to_string(), |m| m.to_string());
            return refuse(format!(
                "this module is {}: only the master copies its saved configurations (run it on {master})",
                self.engine.role()
            ));
        }
        let Some(backup) = status.backup else { return refuse("there is no backup to copy to".into()) };
        if status.sync != SyncState::InSync {
            return refuse(format!("the backup {backup} is not in sync ({}): wait for In Sync", status.sync));
        }
        if self.unsaved() {
            return refuse(
                "the running configuration has unsaved changes: 'save' first (synchronize copies the saved configurations)"
                    .into(),
            );
        }
        let files = [ConfigName::Primary, ConfigName::Secondary]
            .map(|w| {
                let info = self.host.flash.info(w);
                msm_control::SyncedFile {
                    file: w.file_name().into(),
                    bytes: info.as_ref().map(|i| u64::from(i.len)),
                    crc32c: info.map(|i| format!("{:08x}", i.crc)),
                }
            })
            .to_vec();
        let selected = self.host.flash.selected();
        let ticket = self.ops.ticket();
        let marks = Marks { saved: self.engine.config_saved(), ..Marks::default() };
        let done = Done::Synchronize { backup, files, selected };
        self.wait_for_backup(ticket, marks, done, Some(Duration::from_millis(wait.max(1))));
        Ok(ticket)
    }
}
