//! The operator's commands, as they arrive on the control socket: each
//! reads or changes the node and answers with text and JSON ([`render`]
//! shapes the `show` output).

use msm_backplane::link::Link;
use msm_checkpoint::Role;
use msm_flash::ConfigName;
use serde_json::json;

use super::{Exit, MsmNode, render};
use crate::apps::{self, Change, VLAN, vlan_key};
use crate::config::Effect;
use crate::control::{Request, Response, config_word};
use crate::flash::unix_now;

impl<L: Link> MsmNode<L> {
    /// Carry out one request.
    pub fn handle(&mut self, req: Request) -> Response {
        match req {
            Request::ShowSwitch => self.show_switch(),
            Request::ShowCheckpointData { process } => self.show_checkpoint(process.as_deref()),
            Request::ShowNode => render::nodes(&self.engine.switch_status()),
            Request::ShowConfiguration => render::configuration(self.host.running.to_text()),
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

    /// Apply configuration lines in order, each checkpointed as it is
    /// applied; the first bad line stops the rest.
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
            let mut text = line.trim().to_string();
            text.push('\n');
            if let Err(e) = self.engine.config_change(text.as_bytes()) {
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

    /// `save [primary|secondary]`: the running configuration to flash; the
    /// master sends the selected file to the backup again.
    fn save(&mut self, which: Option<ConfigName>) -> Response {
        let selected = self.host.flash.selected();
        let which = which.unwrap_or(selected);
        let text = self.host.running.to_text();
        match self.host.flash.save(which, &text, unix_now()) {
            Ok(n) => {
                if which == selected && self.engine.role() == Role::Master {
                    self.engine.config_saved();
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

    /// Whether the running configuration differs from the selected file.
    fn unsaved(&mut self) -> bool {
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
        render::switch(&self.engine.switch_status(), &files, self.link_errors)
    }

    fn show_checkpoint(&self, process: Option<&str>) -> Response {
        let rows: Vec<_> = match process {
            Some(p) => match self.engine.process_status(p) {
                Some(r) => vec![r],
                None => return Response::error(format!("no process named '{p}'")),
            },
            None => self.engine.checkpoint_status().collect(),
        };
        render::checkpoint(&rows)
    }

    fn show_app(&self, name: &str, rows: bool) -> Response {
        let app = match apps::find(name) {
            Ok(i) => i,
            Err(e) => return Response::error(e),
        };
        let Some(id) = self.apps.get(app) else {
            return Response::error(format!("application '{name}' does not run on this node"));
        };
        render::app(name, app, &self.host.tables[id.index()], rows)
    }
}
