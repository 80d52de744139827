//! Invariant checkers, run at every step of the simulator. Numbers follow
//! `docs/architecture.md`:
//! 1. the backup applies only changes the master made, in order per application;
//! 2. every change the master reported checkpointed is on the backup at takeover
//!    (configuration lines too: the master's active configuration up to the
//!    last line reported checkpointed is a prefix of the new master's, so
//!    none is missing and none out of order);
//! 3. no application's bulk starts before its dependencies finished theirs;
//! 5. two masters never act in one term; a node never follows an older term;
//! 6. corrupt frames never reach state (no garbage record is ever applied);
//! 7. no frame of the attacker (forged, replayed, mutated, under another
//!    key) gets past authentication or changes a node's role, term, master
//!    or events (checked in `Sim::attack`).
//! 8. a master that steps down for a rival of a higher term reports a split
//!    brain only if both were master at once, and counts exactly the changes
//!    it made as master that its backup had not acknowledged (`checkpointed`).
//! 9. a standby the master sees holding the configuration In Sync holds
//!    exactly the master's saved and active configuration (checked in
//!    `Sim::check_copies`, and for every standby after the quiet period).

use std::collections::{BTreeMap, HashMap, HashSet};

use msm_checkpoint::{ItemKind, Term};

use crate::facts::MasterLog;
use crate::host::{Seen, SimStream};
use crate::record::{Op, Rec, Stamp};
use crate::violation::Violation;

fn fail(invariant: u8, message: String) -> Result<(), Violation> {
    Err(Violation { invariant, message })
}

#[derive(Debug, Clone)]
pub struct Report {
    pub master: usize,
    pub term: Term,
    pub backup: usize,
    /// The backup's boot count then: a reboot since loses what it held.
    pub incarnation: u32,
    pub checkpointed: Vec<u64>,
    /// Configuration lines up to this change id.
    pub config_checkpointed: u64,
}

#[derive(Debug, Default)]
pub struct Checker {
    /// Every record any master made, by stamp.
    made: HashMap<Stamp, (usize, Rec)>,
    /// Per node: its current mastership, if any.
    pub logs: HashMap<usize, MasterLog>,
    pub last_report: Option<Report>,
    /// Per (node, master term): streams whose bulk completed.
    ended: HashMap<(usize, Term), HashSet<SimStream>>,
    /// Per (node, term followed, app): last dynamic stamp applied.
    last_dynamic: HashMap<(usize, Term, usize), Stamp>,
    /// Term -> the node that acted as master in it.
    term_owner: HashMap<Term, usize>,
    /// Per node: highest term followed since boot.
    followed: HashMap<usize, Term>,
    /// App -> direct dependencies (app indexes).
    pub deps: Vec<Vec<usize>>,
    /// Per master node: what its backup acknowledged, as of its last step:
    /// `checkpointed` per app, and configuration lines.
    acked: HashMap<usize, (Vec<u64>, u64)>,
    /// Per term: the first and last simulated time its master was seen master.
    master_seen: HashMap<Term, (u64, u64)>,
    pub split_brains_checked: u64,
    /// Invariant 10: acknowledged changes and who holds them.
    pub facts: crate::facts::Facts,
    pub takeovers_checked: u64,
    pub bulks_checked: u64,
    pub records_checked: u64,
}

impl Checker {
    pub fn new(deps: Vec<Vec<usize>>) -> Self {
        Checker { deps, ..Default::default() }
    }

    /// A master made a change.
    pub fn made(&mut self, node: usize, app: usize, id: u64, rec: Rec) {
        self.made.insert(rec.stamp, (app, rec));
        if rec.op == Op::Delete {
            self.facts.deleted(app, rec.key, rec.stamp);
        }
        if let Some(log) = self.logs.get_mut(&node) {
            log.changes[app].push((id, rec));
        }
    }

    /// A master changed its active configuration by one line.
    pub fn config_made(&mut self, node: usize, id: u64, line: &[u8]) {
        if let Some(log) = self.logs.get_mut(&node) {
            log.config_lines.push((id, line.to_vec()));
        }
    }

    /// A node became master with this state and active configuration.
    /// Master `node`'s backup `backup` holds its changes up to `checkpointed`.
    pub fn acknowledged(&mut self, node: usize, backup: Option<usize>, checkpointed: &[u64]) {
        if let Some(log) = self.logs.get(&node) {
            self.facts.acknowledged(node, backup, log, checkpointed);
        }
    }

    /// `loser` stepped down to `winner`: if the winner's backup also
    /// acknowledged changes of its mastership, the loser's are lost (admitted).
    pub fn split_facts(&mut self, loser: usize, winner: usize) {
        let (Some(log), Some((acked, _))) = (self.logs.get(&winner), self.acked.get(&winner)) else { return };
        let winner_acked =
            log.changes.iter().zip(acked).any(|(c, &upto)| c.first().is_some_and(|(id, _)| *id <= upto));
        if winner_acked {
            self.facts.lost_to_a_split(loser, winner);
        }
    }

    pub fn mastership(&mut self, node: usize, term: Term, state: &[BTreeMap<u32, Stamp>], config: &[u8]) {
        self.facts.mastership(node);
        let apps = state.len();
        self.logs.insert(
            node,
            MasterLog {
                term,
                initial: state.to_vec(),
                changes: vec![Vec::new(); apps],
                config: config.to_vec(),
                config_lines: Vec::new(),
            },
        );
    }

    /// `node` won a split brain and stays master in `term`: its mastership
    /// (and the log of what it made) goes on.
    pub fn reclaimed(&mut self, node: usize, term: Term) {
        if let Some(log) = self.logs.get_mut(&node) {
            log.term = term;
        }
    }

    /// A stream of `node` continued across a switchover in `term`: whole,
    /// as if its bulk had finished (streams depending on it may bulk).
    pub fn continued(&mut self, node: usize, term: Term, stream: SimStream) {
        self.ended.entry((node, term)).or_default().insert(stream);
    }

    pub fn rebooted(&mut self, node: usize) {
        self.facts.released(node);
        self.logs.remove(&node);
        self.acked.remove(&node);
        self.ended.retain(|(n, _), _| *n != node);
        self.followed.remove(&node);
    }

    /// What the node's host saw during one step, with the term it followed.
    pub fn seen(&mut self, node: usize, term: Term, seen: &[Seen]) -> Result<(), Violation> {
        for s in seen {
            match s {
                Seen::BulkBegin(stream) => {
                    self.bulks_checked += 1;
                    let ended = self.ended.entry((node, term)).or_default();
                    let need: Vec<SimStream> = match stream {
                        SimStream::Saved => vec![],
                        SimStream::Active => vec![SimStream::Saved],
                        SimStream::App(a) => {
                            let mut v = vec![SimStream::Active];
                            v.extend(self.deps[*a].iter().map(|&d| SimStream::App(d)));
                            v
                        }
                    };
                    for d in need {
                        if !ended.contains(&d) {
                            return fail(
                                3,
                                format!("node {node}: bulk of {stream:?} began before {d:?} finished"),
                            );
                        }
                    }
                }
                Seen::BulkEnd(stream) => {
                    self.ended.entry((node, term)).or_default().insert(*stream);
                }
                Seen::Forgot(stream) => {
                    if let Some(ended) = self.ended.get_mut(&(node, term)) {
                        ended.remove(stream);
                    }
                }
                Seen::Garbage { app } => {
                    return fail(6, format!("node {node}: an undecodable record reached app {app}"));
                }
                Seen::Applied { app, kind, rec } => {
                    self.records_checked += 1;
                    match self.made.get(&rec.stamp) {
                        Some((a, r)) if *a == *app && (r.key == rec.key) => {
                            // A bulk carries the current value as a Set; a change carries its own op.
                            if *kind == ItemKind::Dynamic && r.op != rec.op {
                                return fail(
                                    1,
                                    format!("node {node}: change {} applied with wrong op", rec.stamp),
                                );
                            }
                            if *kind == ItemKind::Bulk && (r.op != Op::Set || rec.op != Op::Set) {
                                return fail(
                                    1,
                                    format!("node {node}: bulk record {} is not a live value", rec.stamp),
                                );
                            }
                        }
                        _ => {
                            return fail(
                                1,
                                format!("node {node}: applied {rec:?} to app {app}, which no master made"),
                            );
                        }
                    }
                    if *kind == ItemKind::Dynamic {
                        let last = self.last_dynamic.entry((node, term, *app)).or_insert(0);
                        if rec.stamp <= *last {
                            return fail(
                                1,
                                format!(
                                    "node {node}: app {app} change {} applied after {} (out of order)",
                                    rec.stamp, *last
                                ),
                            );
                        }
                        *last = rec.stamp;
                    }
                }
            }
        }
        Ok(())
    }

    /// Per-step role checks: one node per term; terms followed never decrease.
    pub fn roles(&mut self, node: usize, slot: u8, is_master: bool, term: Term) -> Result<(), Violation> {
        if is_master {
            if term.owner().map(|s| s.raw()) != Some(slot) {
                return fail(5, format!("node {node} is master in term {term} claimed by another slot"));
            }
            match self.term_owner.insert(term, node) {
                Some(other) if other != node => {
                    return fail(5, format!("nodes {other} and {node} both acted as master in term {term}"));
                }
                _ => {}
            }
        }
        let f = self.followed.entry(node).or_insert(term);
        if term < *f {
            return fail(5, format!("node {node} went back from term {} to {term}", *f));
        }
        *f = term;
        Ok(())
    }

    /// A master at the end of a step: in `term` at `now`, and what its
    /// backup acknowledged so far (all 0 without a session).
    pub fn master_step(&mut self, node: usize, term: Term, now: u64, checkpointed: Vec<u64>, config: u64) {
        let seen = self.master_seen.entry(term).or_insert((now, now));
        seen.1 = now;
        self.acked.insert(node, (checkpointed, config));
    }

    /// `node` reported a split brain: it was master in `ours` and stepped
    /// down to `winner`, master of `theirs`, discarding `discarded`
    /// changes. Both must have been master at once (the winner still is, or
    /// was seen master after this node became master), and the count must be
    /// the changes of its mastership above what its backup acknowledged.
    pub fn split_brain(
        &mut self,
        node: usize,
        winner: u8,
        theirs: Term,
        ours: Term,
        discarded: u64,
        winner_still_master: bool,
    ) -> Result<(), Violation> {
        self.split_brains_checked += 1;
        let Some(log) = self.logs.get(&node).filter(|l| l.term == ours) else {
            return fail(8, format!("node {node} reported a split brain, but was not master in term {ours}"));
        };
        if theirs <= ours || theirs.owner().map(|s| s.raw()) != Some(winner) {
            return fail(
                8,
                format!("node {node}: split brain to term {theirs} of slot {winner} from {ours}"),
            );
        }
        let (Some(&(ours_from, _)), Some(&(_, theirs_until))) =
            (self.master_seen.get(&ours), self.master_seen.get(&theirs))
        else {
            return fail(
                8,
                format!("node {node}: split brain with term {theirs}, which no node was master in"),
            );
        };
        if !winner_still_master && theirs_until < ours_from {
            return fail(
                8,
                format!(
                    "node {node}: split brain with term {theirs}, master last at {theirs_until} us, before this node became master in {ours} at {ours_from} us"
                ),
            );
        }
        let (apps, config) = self.acked.get(&node).cloned().unwrap_or_default();
        let mut want = log.config_lines.iter().filter(|(id, _)| *id > config).count() as u64;
        for (app, changes) in log.changes.iter().enumerate() {
            let upto = apps.get(app).copied().unwrap_or(0);
            want += changes.iter().filter(|(id, _)| *id > upto).count() as u64;
        }
        if want != discarded {
            return fail(
                8,
                format!(
                    "node {node} reported {discarded} changes discarded in its split brain; it made {want} its backup had not acknowledged (acknowledged as of its last step: apps {apps:?}, config {config}; made {:?})",
                    log.changes.iter().map(Vec::len).collect::<Vec<_>>()
                ),
            );
        }
        Ok(())
    }

    /// `node` just took over from the master it backed up: everything that
    /// master reported as checkpointed must be in its state.
    pub fn takeover(
        &mut self,
        node: usize,
        incarnation: u32,
        followed: Term,
        state: &[BTreeMap<u32, Stamp>],
        active: Option<&[u8]>,
    ) -> Result<(), Violation> {
        let Some(rep) = self.last_report.clone() else {
            return Ok(());
        };
        if rep.backup != node || rep.term != followed || rep.incarnation != incarnation {
            return Ok(());
        }
        let Some(log) = self.logs.get(&rep.master) else {
            return Ok(());
        };
        if log.term != rep.term {
            return Ok(());
        }
        self.takeovers_checked += 1;
        if rep.config_checkpointed > 0 {
            let want = log.config_at(rep.config_checkpointed);
            match active {
                None => {
                    return fail(
                        2,
                        format!(
                            "node {node} took over on its own saved configuration though the master reported \
                             configuration changes up to id {} as checkpointed",
                            rep.config_checkpointed
                        ),
                    );
                }
                Some(have) if !have.starts_with(&want) => {
                    return fail(
                        2,
                        format!(
                            "node {node} took over without the configuration the master reported as checkpointed \
                             (up to change {}): has {} bytes, {} expected as a prefix",
                            rep.config_checkpointed,
                            have.len(),
                            want.len()
                        ),
                    );
                }
                Some(_) => {}
            }
        }
        for (app, &upto) in rep.checkpointed.iter().enumerate() {
            if upto == 0 {
                continue;
            }
            let want = log.state_at(app, upto);
            let have = &state[app];
            for (k, s) in &want {
                // Newer than the checkpoint is fine: a later change (or its delete) got through too.
                let deleted_later =
                    log.changes[app].iter().any(|(id, r)| *id > upto && r.key == *k && r.op == Op::Delete);
                match have.get(k) {
                    Some(h) if h >= s => {}
                    None if deleted_later => {}
                    other => {
                        return fail(
                            2,
                            format!(
                                "node {node} took over without app {app} key {k} = {s} (has {other:?}); \
                                 master reported changes up to id {upto} as checkpointed"
                            ),
                        );
                    }
                }
            }
            // Deletions up to `upto` must not be undone by an older value.
            for (id, r) in &log.changes[app] {
                if *id > upto {
                    break;
                }
                if r.op == Op::Delete && !want.contains_key(&r.key) {
                    if let Some(h) = have.get(&r.key) {
                        if *h < r.stamp {
                            return fail(
                                2,
                                format!(
                                    "node {node} took over with app {app} key {} deleted at {} still at {h}",
                                    r.key, r.stamp
                                ),
                            );
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
