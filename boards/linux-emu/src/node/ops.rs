//! Operator work that takes longer than one loop turn. A `configure` of many
//! lines is applied in slices between protocol work (heartbeats, frames,
//! timeouts come first), and `--wait` waits for the backup's acknowledgement
//! without holding the loop: the answer goes out when the backup has every
//! change, or when the time is up, saying how far behind it is (as Redis
//! `WAIT` and DRBD protocol C answer only once the peer has the write).

use std::collections::VecDeque;
use std::time::Duration;

use msm_backplane::link::Link;
use msm_checkpoint::Role;
use msm_flash::ConfigName;
use msm_time::Instant;
use serde_json::json;

use super::MsmNode;
use crate::apps::{Change, VLAN, vlan_key};
use crate::config::Effect;
use crate::control::{Response, config_word};

/// Names one pending answer.
pub type Ticket = u64;

/// Lines applied per slice at most; a slice also ends after [`SLICE_TIME`].
const SLICE_LINES: usize = 512;
/// A slice's time budget: well under a heartbeat interval (10 ms at the
/// fastest), so heartbeats go out on time whatever the operator sends.
const SLICE_TIME: Duration = Duration::from_millis(2);

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Done {
    Configure { applied: usize },
    Save { which: ConfigName, bytes: usize },
}

#[derive(Debug)]
struct Configure {
    ticket: Ticket,
    lines: Vec<String>,
    next: usize,
    wait: Option<Duration>,
    marks: Marks,
}

#[derive(Debug)]
struct Wait {
    ticket: Ticket,
    marks: Marks,
    done: Done,
    started: Instant,
    deadline: Instant,
}

/// The operator's pending work, oldest first, and the answers ready to go.
#[derive(Debug, Default)]
pub(crate) struct Ops {
    configures: VecDeque<Configure>,
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
        !self.configures.is_empty()
    }

    /// The earliest wait deadline, for the loop's sleep.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.waits.iter().map(|w| w.deadline).min()
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
        self.ops.configures.push_back(Configure { ticket, lines, next: 0, wait, marks: Marks::default() });
        Ok(ticket)
    }

    /// Wait for `marks` on the backup, then answer `done` (at once without `wait`).
    pub(crate) fn answer_when_checkpointed(&mut self, marks: Marks, done: Done, wait: Option<u64>) -> Ticket {
        let ticket = self.ops.ticket();
        let now = self.now();
        let deadline = now + Duration::from_millis(wait.unwrap_or(0));
        self.ops.waits.push(Wait { ticket, marks, done, started: now, deadline });
        self.check_waits(now);
        ticket
    }

    /// One slice of pending operator work, then the waits that are over.
    pub(crate) fn work(&mut self) {
        let start = std::time::Instant::now();
        let mut budget = SLICE_LINES;
        while budget > 0 && start.elapsed() < SLICE_TIME {
            let Some(job) = self.ops.configures.front_mut() else { break };
            let (ticket, i) = (job.ticket, job.next);
            let Some(line) = job.lines.get(i).cloned() else {
                let Some(job) = self.ops.configures.pop_front() else { break };
                let applied = job.lines.len();
                let now = self.now();
                let deadline = now + job.wait.unwrap_or(Duration::ZERO);
                let done = Done::Configure { applied };
                self.ops.waits.push(Wait { ticket, marks: job.marks, done, started: now, deadline });
                continue;
            };
            budget -= 1;
            match self.configure_line(&line) {
                Ok(marks) => {
                    if let Some(job) = self.ops.configures.front_mut() {
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
                    self.ops.configures.pop_front();
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
        if let Some(j) = &mut self.journal {
            j.config_change(config, line.trim());
        }
        let mut marks = Marks { config, ..Marks::default() };
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
            if behind > 0 && now < w.deadline && self.engine.role() == Role::Master {
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
        let waited = now.saturating_since(w.started).as_millis();
        let waited_for = w.deadline > w.started;
        let on_backup = if checkpointed {
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
        let common = json!({
            "seq": w.marks.config,
            "checkpointed": checkpointed,
            "behind": behind,
            "waited_ms": waited,
        });
        match w.done {
            Done::Configure { applied } => {
                let mut j = json!({ "applied": applied, "vlan_seq": w.marks.vlan });
                merge(&mut j, common);
                let text = if waited_for || !checkpointed {
                    format!("{applied} line(s) applied, {on_backup}.")
                } else {
                    String::new()
                };
                Response::ok(text, j)
            }
            Done::Save { which, bytes } => {
                let mut j = json!({ "saved": config_word(which), "bytes": bytes, "save_seq": w.marks.saved });
                merge(&mut j, common);
                let mut text = format!(
                    "Saving configuration on {} ... done!\n{bytes} bytes saved to {}",
                    self.engine.slot(),
                    which.file_name()
                );
                if waited_for {
                    text.push_str(&format!("\nBackup flash: {on_backup}."));
                }
                Response::ok(text, j)
            }
        }
    }
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    if let (Some(a), serde_json::Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}
