//! The glue between the world and the checkers (`check.rs`, `facts.rs`): the events of each node
//! after each step, the invariants after every step, and convergence after the quiet period.

use super::*;

impl Sim {
    pub(super) fn drain_events(&mut self, i: usize) {
        while let Some(ev) = self.nodes[i].engine.as_deref_mut().and_then(|e| e.poll_event()) {
            self.log(Some(i), format_args!("{ev:?}"));
            self.nodes[i].events.push((self.now, ev));
            if let Event::StreamContinued(s) = ev {
                self.stats.continued += 1;
                // Whole without a bulk: it counts as finished for the order of bulks.
                let term = self.engine(i).map_or(Term::NONE, |e| e.term());
                if let Ok(s) = self.nodes[i].host.sim_stream(s) {
                    self.checker.continued(i, term, s);
                }
            }
            if let Event::Promoted { term, config, apps, .. } = ev {
                self.stats.takeovers += 1;
                let followed = self.nodes[i].followed;
                let state = self.nodes[i].host.apps.clone();
                if apps == AppsFrom::Fresh && state.iter().any(|t| !t.is_empty()) {
                    let rows: usize = state.iter().map(|t| t.len()).sum();
                    let message =
                        format!("node {i} promoted saying its applications start fresh, holding {rows} rows");
                    self.violation.get_or_insert(Violation { invariant: 11, message });
                }
                let inc = self.nodes[i].incarnation;
                let active: Option<Vec<u8>> = match config {
                    ConfigChoice::MastersActive => Some(self.nodes[i].host.active_config.clone()),
                    ConfigChoice::OwnSaved => None,
                };
                if let Err(v) = self.checker.takeover(i, inc, followed, &state, active.as_deref()) {
                    self.violation.get_or_insert(v);
                }
                match self.checker.facts.check(i, &state, true, "at its promotion") {
                    Ok(n) => self.stats.facts_checked += n,
                    Err(v) => {
                        self.violation.get_or_insert(v);
                    }
                }
                let config = self.nodes[i].host.active_config.clone();
                self.checker.mastership(i, term, &state, &config);
            }
            if let Event::RoleChanged { role: Role::Standby | Role::Init, .. } = ev {
                self.checker.facts.released(i);
            }
            if let Event::SplitBrainWon { term, .. } = ev {
                self.stats.split_brains_won += 1;
                self.checker.reclaimed(i, term);
            }
            if let Event::SplitBrain { winner, winner_term, our_term, discarded, .. } = ev {
                self.stats.split_brains += 1;
                self.stats.discarded += discarded;
                let still = self
                    .engine(winner.index())
                    .is_some_and(|e| e.role() == Role::Master && e.term() == winner_term);
                self.checker.split_facts(i, winner.index());
                let r = self.checker.split_brain(i, winner.raw(), winner_term, our_term, discarded, still);
                if let Err(v) = r {
                    self.violation.get_or_insert(v);
                }
            }
        }
    }

    pub(super) fn check(&mut self, i: usize) {
        let Some((role, term, slot_raw)) =
            self.nodes[i].engine.as_deref().map(|e| (e.role(), e.term(), e.slot().raw()))
        else {
            return;
        };
        let seen = std::mem::take(&mut self.nodes[i].host.seen);
        for s in &seen {
            if let crate::host::Seen::BulkBegin(st) = s {
                *self.nodes[i].bulk_begins.entry(*st).or_default() += 1;
            }
            if self.trace_frames {
                self.log(Some(i), format_args!("host {s:?}"));
            }
        }
        let r = self
            .checker
            .seen(i, term, &seen)
            .and_then(|()| self.checker.roles(i, slot_raw, role == Role::Master, term));
        if let Err(v) = r {
            self.violation.get_or_insert(v);
        }
        if role == Role::Master {
            let Some(e) = self.nodes[i].engine.as_deref() else { return };
            let checkpointed: Vec<u64> =
                (0..self.cfg.apps.len()).map(|a| e.checkpointed(self.ids[i][a])).collect();
            // The backup holds them only if it still follows this master
            // (it may have left since the master last stepped).
            let backup = e.checkpoint_peer().map(|b| b.index()).filter(|&b| {
                self.engine(b).is_some_and(|be| be.role() == Role::Backup && be.master() == Some(slot(i)))
            });
            self.checker.acknowledged(i, backup, &checkpointed);
            self.checker.master_step(i, term, self.now, checkpointed, e.config_checkpointed());
            self.checker.last_report = e.checkpoint_peer().map(|b| {
                let checkpointed = (0..self.cfg.apps.len()).map(|a| e.checkpointed(self.ids[i][a])).collect();
                Report {
                    master: i,
                    term,
                    backup: b.index(),
                    incarnation: e.checkpoint_peer_incarnation().unwrap_or(0),
                    checkpointed,
                    config_checkpointed: e.config_checkpointed(),
                }
            });
            self.check_copies(i);
        }
        self.nodes[i].followed = term;
    }

    /// Invariant 9: each time master `m` sees a standby's copy of the
    /// configuration reach In Sync, the standby holds exactly the master's
    /// saved and active configuration.
    pub(super) fn check_copies(&mut self, m: usize) {
        let n = self.nodes.len();
        if n < 3 {
            return;
        }
        for s in (0..n).filter(|&s| s != m) {
            let Some(slot) = Slot::new(s as u8) else { continue };
            let state = self.engine(m).and_then(|e| e.standby_config(slot));
            let was = std::mem::replace(&mut self.copies[m * n + s], state);
            if state != Some(ConfigCopy::InSync) || was == state {
                continue;
            }
            self.stats.copies_checked += 1;
            if let Err(v) = self.same_config(m, s, "reported In Sync") {
                self.violation.get_or_insert(v);
            }
        }
    }

    /// Node `s` holds master `m`'s saved and active configuration.
    pub(super) fn same_config(&self, m: usize, s: usize, when: &str) -> Result<(), Violation> {
        let (hm, hs) = (&self.nodes[m].host, &self.nodes[s].host);
        for (what, ours, theirs) in
            [("saved", &hm.saved_config, &hs.saved_config), ("active", &hm.active_config, &hs.active_config)]
        {
            if ours != theirs {
                return Err(Violation {
                    invariant: 9,
                    message: format!(
                        "standby {s} {when}: its {what} configuration ({} bytes) is not master {m}'s ({} bytes)",
                        theirs.len(),
                        ours.len()
                    ),
                });
            }
        }
        Ok(())
    }

    /// After a quiet period: one master, its backup in sync, identical state.
    pub fn check_converged(&self) -> Result<(), Violation> {
        let up: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.is_up(i)).collect();
        let masters = self.masters();
        let [m] = masters.as_slice() else {
            return Err(Violation {
                invariant: 0,
                message: format!("{} masters after quiet period", masters.len()),
            });
        };
        // No module's terms ran away, whatever the insider sent: they grow by
        // at most MAX_TERM_JUMP a detection time (and one a claim).
        let detect = (self.cfg.heartbeat.as_micros() as u64 * u64::from(self.cfg.miss_count)).max(1);
        let bound = (msm_checkpoint::MAX_TERM_JUMP + 1) * (self.now / detect + 2);
        for &i in &up {
            if let Some(e) = self.engine(i) {
                if e.max_term().count() > bound {
                    return Err(Violation {
                        invariant: 5,
                        message: format!("node {i}'s terms ran to {} (at most {bound} by now)", e.max_term()),
                    });
                }
            }
        }
        if up.len() < 2 {
            return Ok(());
        }
        let me = self.engine(*m).ok_or_else(|| Violation { invariant: 0, message: "master down".into() })?;
        if me.sync_state() != SyncState::InSync {
            return Err(Violation {
                invariant: 0,
                message: format!("backup not in sync after quiet period: {}", me.sync_state()),
            });
        }
        let b = self.backup().ok_or_else(|| Violation { invariant: 0, message: "no backup".into() })?;
        let (hm, hb) = (&self.nodes[*m].host, &self.nodes[b].host);
        self.checker.facts.check(*m, &hm.apps, false, "after the quiet period")?;
        for a in 0..self.cfg.apps.len() {
            if hm.apps[a] != hb.apps[a] {
                let diff: Vec<_> =
                    hm.apps[a].iter().filter(|(k, v)| hb.apps[a].get(k) != Some(v)).take(3).collect();
                return Err(Violation {
                    invariant: 0,
                    message: format!(
                        "app {} differs after quiet period: master {} keys, backup {} keys, e.g. {diff:?}",
                        self.cfg.apps[a].name,
                        hm.apps[a].len(),
                        hb.apps[a].len()
                    ),
                });
            }
        }
        if hm.active_config != hb.active_config {
            return Err(Violation {
                invariant: 0,
                message: "active configs differ after quiet period".into(),
            });
        }
        if hm.saved_config != hb.saved_config {
            return Err(Violation {
                invariant: 0,
                message: "saved configs differ after quiet period".into(),
            });
        }
        // Every standby holds the configuration too.
        for s in up.iter().copied().filter(|&s| self.engine(s).is_some_and(|e| e.role() == Role::Standby)) {
            let state = Slot::new(s as u8).and_then(|slot| me.standby_config(slot));
            if state != Some(ConfigCopy::InSync) {
                return Err(Violation {
                    invariant: 9,
                    message: format!("standby {s}'s configuration is {state:?} after quiet period"),
                });
            }
            self.same_config(*m, s, "after quiet period")?;
            // A standby serves no application state: what it held in an
            // earlier role is a copy of nothing acknowledged.
            let rows: usize = self.nodes[s].host.apps.iter().map(|t| t.len()).sum();
            if rows > 0 {
                return Err(Violation {
                    invariant: 11,
                    message: format!("standby {s} holds {rows} application rows after quiet period"),
                });
            }
        }
        Ok(())
    }

    pub fn finish_stats(&mut self) -> Stats {
        self.stats.takeovers_checked = self.checker.takeovers_checked;
        self.stats.bulks_checked = self.checker.bulks_checked;
        self.stats.records_checked = self.checker.records_checked;
        self.stats.attacks = self.attacker.stats.injected;
        self.stats.attack_replays = self.attacker.stats.replays;
        self.stats.two_path_runs = u64::from(self.cfg.paths > 1);
        self.stats.lost_both_sides = self.checker.facts.lost_both_sides;
        self.stats.insider = self.insider.sent;
        self.stats.standby_runs = [u64::from(self.cfg.nodes == 3), u64::from(self.cfg.nodes == 4)];
        self.stats.clone()
    }
}
