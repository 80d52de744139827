//! The node's role changes, applied: what a master's heartbeat means for
//! this node (follow it, step down to it, or judge a split brain), entering
//! BACKUP or STANDBY, following, stepping down and reclaiming, losing the
//! master, promotion, and the master's choice of backup. Membership
//! decides; these apply the decision to the sender, receiver and mirror.

use super::*;

impl<const APPS: usize, const WINDOW: usize, const BACKLOG: usize, const STANDBYS: usize>
    Node<APPS, WINDOW, BACKLOG, STANDBYS>
{
    pub(super) fn on_heartbeat<H: Host>(
        &mut self,
        now: Instant,
        from: Slot,
        term: Term,
        hb: &Heartbeat,
        host: &mut H,
    ) {
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
            self.master_lost(now, host, TakeoverCause::MasterRestarted);
            return;
        }
        if self.members.role == Role::Master {
            self.choose_backup(now);
        }
    }

    /// The module whose boot we depend on: the master we follow, or, as
    /// master, the backup our session is with; and its boot count.
    pub(super) fn partner(&self) -> Option<(Slot, u32)> {
        match self.members.role {
            Role::Master => self.sender.session(),
            _ => self.members.master.map(|m| (m, self.members.master_incarnation)),
        }
    }

    /// Backup or standby of the current master, as its heartbeat says.
    pub(super) fn enter<H: Host>(&mut self, now: Instant, role: Role, host: &mut H) {
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

    pub(super) fn follow<H: Host>(
        &mut self,
        now: Instant,
        master: Slot,
        incarnation: u32,
        term: Term,
        host: &mut H,
    ) {
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
    pub(super) fn step_down(&mut self, now: Instant, winner: Slot, term: Term, rule: SplitRule) {
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
    pub(super) fn reclaim<H: Host>(
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

    pub(super) fn master_lost<H: Host>(&mut self, now: Instant, host: &mut H, why: TakeoverCause) {
        warn!("master lost: {}", why.as_str());
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
    pub(super) fn promote<H: Host>(&mut self, now: Instant, host: &mut H, why: TakeoverCause) {
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
        info!("promoted to master in term {}: {}; applications: {}", term, why.as_str(), apps.as_str());
        self.events.push(Event::RoleChanged { role: Role::Master, term });
        self.events.push(Event::Promoted { term, config, in_sync, apps, whole, cause: why });
        self.choose_backup(now);
    }

    pub(super) fn choose_backup(&mut self, now: Instant) {
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
    pub(super) fn fork(&mut self, slot: Option<Slot>) {
        if let Some(s) = slot {
            self.forks[s.index()] = Some(self.streams.acked_ever());
        }
    }

    /// End the checkpoint session: nothing is on a backup any more.
    pub(super) fn forget_backup(&mut self) {
        self.fork(self.members.backup);
        let term = Some(self.members.term.raw());
        if self.sender.end_session(&mut self.streams, &mut self.timers, term) {
            self.events.push(Event::FailoverFailed);
        }
        self.members.backup = None;
    }
}
