//! The operator's commands, as they arrive on the control socket: each
//! reads or changes the node and answers with text and JSON ([`render`]
//! shapes the `show` output).

use msm_backplane::Link;
use msm_checkpoint::Role;
use msm_flash::ConfigName;

use super::ops::Ticket;
use super::{Exit, MsmNode, render};
use crate::apps;
use msm_control::{Request, Response, config_word};

/// Most changes to the workload rate a node takes (changes per second):
/// above it one loop turn would spend more than a heartbeat interval on
/// churn. Higher rates are refused, naming this limit.
pub const MAX_CHURN: u32 = 100_000;

/// A request's answer: now, or later under a ticket ([`MsmNode::take_answer`]).
#[derive(Debug)]
pub enum Handled {
    Now(Response),
    Later(Ticket),
}

impl<L: Link> MsmNode<L> {
    /// Carry out one request in-process: the answer, after as many loop
    /// turns as it takes (a long configure, a wait for the backup).
    pub fn handle(&mut self, req: Request) -> Response {
        match self.submit(req) {
            Handled::Now(r) => r,
            Handled::Later(t) => loop {
                self.pump();
                if let Some(r) = self.take_answer_for(t) {
                    return r;
                }
            },
        }
    }

    /// An answer that became ready, with its ticket.
    pub fn take_answer(&mut self) -> Option<(Ticket, Response)> {
        self.ops.take_answer()
    }

    fn take_answer_for(&mut self, ticket: Ticket) -> Option<Response> {
        let (t, r) = self.ops.take_answer()?;
        debug_assert_eq!(t, ticket, "in-process callers have one request at a time");
        Some(r)
    }

    /// Take one request: answered now, or later (a configure applied in
    /// slices between protocol work; a wait for the backup).
    pub fn submit(&mut self, req: Request) -> Handled {
        match req {
            Request::Configure { lines, wait } => match self.start_configure(lines, wait) {
                Ok(t) => Handled::Later(t),
                Err(r) => Handled::Now(r),
            },
            Request::Save { which, wait } => self.save(which, wait),
            Request::Synchronize { wait } => match self.synchronize(wait) {
                Ok(t) => Handled::Later(t),
                Err(r) => Handled::Now(r),
            },
            Request::ShowApp { app, rows: true, from } => match self.app_table(&app) {
                Ok((index, id)) => Handled::Later(self.start_rows(app, index, id, from)),
                Err(r) => Handled::Now(r),
            },
            other => Handled::Now(self.handle_now(other)),
        }
    }

    fn handle_now(&mut self, req: Request) -> Response {
        match req {
            Request::ShowSwitch => self.show_switch(),
            Request::ShowCheckpointData { process } => self.show_checkpoint(process.as_deref()),
            Request::ShowNode => render::nodes(&self.engine.switch_status()),
            Request::ShowConfiguration => render::configuration(self.host.running.to_text()),
            Request::ShowFailoverHistory => {
                let h = self.history.answer();
                Response::ok(crate::failover_history::render(&h), &h)
            }
            Request::ShowApp { app, rows, .. } => self.show_app(&app, rows),
            Request::Configure { .. } | Request::Save { .. } | Request::Synchronize { .. } => {
                Response::error("answered later")
            }
            Request::UseConfiguration { which } => match self.host.flash.select(which) {
                Ok(()) => {
                    if self.engine.role() == Role::Master {
                        // The selection travels with the saved configurations.
                        self.engine.config_saved();
                    }
                    Response::ok(
                        format!("The selected configuration will be {} at the next boot.", which.file_name()),
                        &msm_control::Selected { selected: config_word(which).into() },
                    )
                }
                Err(e) => Response::error(format!("use configuration: {e}")),
            },
            Request::Reboot { force } => {
                if !force && self.unsaved() {
                    return Response::error(
                        "the configuration has unsaved changes: 'save' first, or 'reboot --force' to discard them",
                    );
                }
                self.exit = Some(Exit::Reboot);
                Response::ok(
                    format!("Rebooting {}...", self.engine.slot()),
                    &msm_control::Rebooting { rebooting: true },
                )
            }
            Request::FailoverCheck => {
                let (_, c) = self.failover_check();
                Response::ok(crate::failover_check::render(&c), &c)
            }
            Request::Failover { force } => {
                let (verdict, c) = self.failover_check();
                let named =
                    || c.reasons.iter().map(|r| format!("{}: {}", r.what, r.detail)).collect::<Vec<_>>();
                match verdict {
                    crate::failover_check::Verdict::Refuse => {
                        return Response::error(format!(
                            "run msm-failover: refused ({})",
                            named().join("; ")
                        ));
                    }
                    crate::failover_check::Verdict::AllowWithLoss if !force => {
                        return Response::error(format!(
                            "run msm-failover: it would lose {} ('run msm-failover force' accepts the loss)",
                            named().join("; ")
                        ));
                    }
                    _ => {}
                }
                let now = self.now();
                match self.engine.failover(now, force) {
                    Ok(()) => Response::ok(
                        "Failover started: the backup takes over.",
                        &msm_control::FailingOver { failover: true, force },
                    ),
                    Err(e) => Response::error(format!("run msm-failover: {e}")),
                }
            }
            Request::Churn { rate } if rate > MAX_CHURN => Response::error(format!(
                "churn {rate}: more than {MAX_CHURN} changes per second is refused (the loop must keep its heartbeats)"
            )),
            Request::Churn { rate } => {
                self.workload.set_rate(rate);
                Response::ok(format!("workload: {rate} changes per second"), &msm_control::Churning { rate })
            }
            Request::KeyInstall { path } => match crate::key_file::load(std::path::Path::new(&path)) {
                Ok(key) => self.key_step("install", |e| e.install_key(&key)),
                Err(e) => Response::error(format!("key install: {e}")),
            },
            Request::KeySwitch => self.key_step("switch", |e| e.switch_key()),
            Request::KeyRetire => self.key_step("retire", |e| e.retire_key()),
            Request::Debug { level } => match level.parse::<log::LevelFilter>() {
                Ok(to) if to != log::LevelFilter::Off => {
                    let was = crate::logging::set_level(to);
                    let (was, level) = (was.as_str().to_lowercase(), to.as_str().to_lowercase());
                    log::info!("{}: log level {level} (was {was}), by the operator", self.engine.slot());
                    Response::ok(
                        format!("log level {level} (was {was})"),
                        &msm_control::LogLevel { was, level },
                    )
                }
                _ => Response::error(format!(
                    "debug {level:?}: the level is one of error, warn, info, debug, trace"
                )),
            },
        }
    }

    /// A key rotation step, logged with the fingerprints it leaves.
    fn key_step(
        &mut self,
        step: &str,
        f: impl FnOnce(&mut super::Engine) -> Result<(), msm_checkpoint::KeyError>,
    ) -> Response {
        match f(&mut self.engine) {
            Ok(()) => {
                let keys = render::keys(&self.engine.key_status());
                log::info!("{}: key {step}: {keys}", self.engine.slot());
                Response::ok(format!("key {step}: {keys}"), &msm_control::KeyStep { keys: keys.clone() })
            }
            Err(e) => Response::error(format!("key {step}: {e}")),
        }
    }

    /// `save [primary|secondary]`: the running configuration to flash; the
    /// master sends both saved files to the backup and standbys again.
    /// Written in slices after the work queued before it; with `wait`, the
    /// answer waits until the backup's flash has it.
    fn save(&mut self, which: Option<ConfigName>, wait: Option<u64>) -> Handled {
        let which = which.unwrap_or_else(|| self.host.flash.selected());
        Handled::Later(self.start_save(which, wait))
    }

    /// Whether the running configuration differs from the selected file.
    fn failover_check(&self) -> (crate::failover_check::Verdict, msm_control::FailoverCheck) {
        crate::failover_check::check(&self.engine.switch_status(), self.engine.checkpoint_status())
    }

    pub(crate) fn unsaved(&mut self) -> bool {
        let text = self.host.running.to_text();
        let selected = self.host.flash.selected();
        !matches!(self.host.flash.load(selected), Ok(Some(saved)) if saved == text)
    }

    fn show_switch(&mut self) -> Response {
        let flash = &mut self.host.flash;
        let files = render::ConfigFiles {
            sysname: self.host.running.sysname.clone(),
            selected: flash.selected(),
            booted: self.booted,
            saved: [ConfigName::Primary, ConfigName::Secondary].map(|w| (w, flash.info(w))),
            unsaved: self.unsaved(),
        };
        let now = self.now();
        let paths: Vec<render::PathRow> = (0..self.link.len())
            .filter_map(|i| {
                let stats = self.link.stats(i)?;
                Some(render::PathRow {
                    name: self.path_names.get(i).cloned().unwrap_or_else(|| format!("path {}", i + 1)),
                    state: self.link.state(i),
                    data: self.link.data_path() == i,
                    silent_for: self.link.last_heard(i).map(|t| now.saturating_since(t)),
                    stats,
                })
            })
            .collect();
        render::switch(
            &self.engine.switch_status(),
            &self.engine.key_status(),
            &files,
            self.link_errors,
            &paths,
            self.split_brain.as_ref(),
            &self.history,
        )
    }

    fn show_checkpoint(&self, process: Option<&str>) -> Response {
        let rows: Vec<_> = match process {
            Some(p) => match self.engine.process_status(p) {
                Some(r) => vec![r],
                None => return Response::error(format!("no process named '{p}'")),
            },
            None => self.engine.checkpoint_status().collect(),
        };
        render::checkpoint(&rows, &self.held_back())
    }

    fn show_app(&self, name: &str, rows: bool) -> Response {
        match self.app_table(name) {
            Ok((app, id)) => render::app(name, app, &self.host.tables[id.index()], rows),
            Err(r) => r,
        }
    }

    /// Application `name`: a built-in application, or a process application
    /// (`None`: rows as text or hex), and its id.
    fn app_table(&self, name: &str) -> Result<(Option<apps::BuiltinApp>, msm_checkpoint::AppId), Response> {
        if let Ok((_, _, id)) = self.processes.find(name) {
            return Ok((None, id));
        }
        let app = apps::find(name).map_err(|e| match self.processes.0.is_empty() {
            true => Response::error(e),
            false => Response::error(format!(
                "{e}, or the process applications {}",
                self.processes.0.iter().map(|(p, _)| p.name.as_str()).collect::<Vec<_>>().join(", ")
            )),
        })?;
        let id = self
            .apps
            .get(app)
            .ok_or_else(|| Response::error(format!("application '{name}' does not run on this node")))?;
        Ok((Some(app), id))
    }
}
