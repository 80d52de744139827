//! The workload a run or a test drives: changes of applications and of the configuration, saves,
//! switchovers. Each goes to the master (or a named node) and is recorded for the checkers.

use super::*;

impl Sim {
    /// The master changes one key of `app`. Returns the change id.
    pub fn change(&mut self, app: usize, key: u32, op: Op) -> Option<u64> {
        let m = self.master()?;
        self.change_on(m, app, key, op)
    }

    /// Node `m` changes one key of `app` if it is master (of two, during a
    /// partition). Returns the change id.
    pub fn change_on(&mut self, m: usize, app: usize, key: u32, op: Op) -> Option<u64> {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        let rec = Rec { op, key, stamp };
        let id = self.ids[m][app];
        let st = &mut self.nodes[m];
        let engine = st.engine.as_deref_mut()?;
        let cid = engine.record_change(id, &rec.to_vec()).ok()?;
        st.host.set(app, rec);
        self.checker.made(m, app, cid, rec);
        self.stats.changes += 1;
        if self.trace_frames {
            self.log(Some(m), format_args!("change app{app} {rec:?} id {cid}"));
        }
        self.flush(m);
        Some(cid)
    }

    /// A random change on a random application.
    /// During a split brain (two masters), on one of them: what the loser
    /// makes is what it reports discarded.
    pub fn random_change(&mut self, keys: u32) {
        if self.cfg.apps.is_empty() {
            return;
        }
        let app = self.rng.random_range(0..self.cfg.apps.len());
        let key = self.rng.random_range(0..keys);
        let op = if self.rng.random_bool(0.8) { Op::Set } else { Op::Delete };
        let masters = self.masters();
        match masters.as_slice() {
            [] => {}
            [m] => {
                self.change_on(*m, app, key, op);
            }
            _ => {
                let m = masters[self.rng.random_range(0..masters.len())];
                self.change_on(m, app, key, op);
            }
        }
    }

    /// The operator changes the master's active configuration.
    pub fn config_change(&mut self, line: &str) -> Option<u64> {
        let m = self.master()?;
        self.config_change_on(m, line)
    }

    /// Node `m`, if master, changes its active configuration by one line.
    pub fn config_change_on(&mut self, m: usize, line: &str) -> Option<u64> {
        let st = &mut self.nodes[m];
        let id = st.engine.as_deref_mut()?.config_change(line.as_bytes()).ok()?;
        st.host.active_config.extend_from_slice(line.as_bytes());
        self.checker.config_made(m, id, line.as_bytes());
        self.log(Some(m), format_args!("configure: {}", line.trim_end()));
        self.flush(m);
        Some(id)
    }

    /// `save` on the master.
    pub fn save(&mut self) {
        let Some(m) = self.master() else { return };
        let st = &mut self.nodes[m];
        st.host.saved_config = st.host.active_config.clone();
        if let Some(e) = st.engine.as_deref_mut() {
            e.config_saved();
        }
        self.log(Some(m), format_args!("save ({} bytes)", self.nodes[m].host.saved_config.len()));
        self.flush(m);
    }

    /// `run msm-failover [force]` on the master.
    pub fn failover(&mut self, force: bool) -> Result<(), String> {
        let m = self.master().ok_or("no single master")?;
        let now = self.instant();
        let r = self.nodes[m].engine.as_deref_mut().ok_or("master down")?.failover(now, force);
        self.log(Some(m), format_args!("run msm-failover{}: {:?}", if force { " force" } else { "" }, r));
        self.flush(m);
        r.map_err(|e| e.to_string())
    }
}
