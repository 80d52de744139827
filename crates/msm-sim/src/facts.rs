//! Invariant 10: a change a master acknowledged (reported checkpointed) is
//! lost only if every module that held it crashed. Each acknowledged change
//! becomes a *fact* of its key, held by the master that made it and the
//! backup that acknowledged it; a crash takes a module off the holders, and
//! so does becoming a standby or INIT (a standby holds configuration, not
//! application state: what its tables still have is no copy of anything). A
//! fact with a holder left must be in the state of every module that
//! promotes while holding it, and in the master's after the quiet period
//! (newer values and later deletes of the key allowed).
//!
//! The one loss the design admits is exempt: a split brain where both
//! masters had a backup acknowledge changes (four modules cut in two pairs);
//! the loser's acknowledged changes since it became master are dropped, and
//! counted.

use std::collections::{BTreeMap, HashMap};

use msm_checkpoint::Term;

use crate::record::{Op, Rec, Stamp};
use crate::violation::Violation;

/// One node's mastership: its state when it became master, then its changes.
#[derive(Debug, Clone, Default)]
pub struct MasterLog {
    pub term: Term,
    pub initial: Vec<BTreeMap<u32, Stamp>>,
    /// Per application: (change id, record).
    pub changes: Vec<Vec<(u64, Rec)>>,
    /// The active configuration when it became master.
    pub config: Vec<u8>,
    /// Configuration lines since: (change id, line).
    pub config_lines: Vec<(u64, Vec<u8>)>,
}

impl MasterLog {
    /// The active configuration right after line `upto`.
    pub fn config_at(&self, upto: u64) -> Vec<u8> {
        let mut c = self.config.clone();
        for (_, line) in self.config_lines.iter().take_while(|(id, _)| *id <= upto) {
            c.extend_from_slice(line);
        }
        c
    }
}

impl MasterLog {
    /// The application's state right after change `upto`.
    pub fn state_at(&self, app: usize, upto: u64) -> BTreeMap<u32, Stamp> {
        let mut m = self.initial[app].clone();
        for (id, r) in &self.changes[app] {
            if *id > upto {
                break;
            }
            match r.op {
                Op::Set => m.insert(r.key, r.stamp),
                Op::Delete => m.remove(&r.key),
            };
        }
        m
    }
}

/// What the master last reported as checkpointed, and to whom.
#[derive(Debug, Clone)]
struct Fact {
    stamp: Stamp,
    op: Op,
    /// The master whose log made it.
    made_by: usize,
    holders: Vec<usize>,
}

/// The acknowledged facts of every key, and how far each master's log was read.
#[derive(Debug, Default)]
pub struct Facts {
    facts: HashMap<(usize, u32), Fact>,
    /// Per key: the newest delete any master made (acknowledged or not).
    deletes: HashMap<(usize, u32), Stamp>,
    /// Per master node: checkpointed change ids already made facts, per app.
    marks: HashMap<usize, Vec<u64>>,
    /// Acknowledged changes lost to split brains where both sides had them.
    pub lost_both_sides: u64,
}

impl Facts {
    /// `node` became master: its log starts over.
    pub fn mastership(&mut self, node: usize) {
        self.marks.remove(&node);
    }

    /// A master made a delete of `key` (acknowledged or not).
    pub fn deleted(&mut self, app: usize, key: u32, stamp: Stamp) {
        let d = self.deletes.entry((app, key)).or_insert(stamp);
        *d = (*d).max(stamp);
    }

    /// Master `master`, whose backup is `backup`, reports changes of its
    /// log up to `upto` (per app) as checkpointed.
    pub fn acknowledged(&mut self, master: usize, backup: Option<usize>, log: &MasterLog, upto: &[u64]) {
        let marks = self.marks.entry(master).or_insert_with(|| vec![0; upto.len()]);
        for (app, (&to, mark)) in upto.iter().zip(marks.iter_mut()).enumerate() {
            if to <= *mark {
                continue;
            }
            let changes = &log.changes[app];
            let first = changes.partition_point(|(id, _)| *id <= *mark);
            for (_, r) in changes[first..].iter().take_while(|(id, _)| *id <= to) {
                let holders = [Some(master), backup].into_iter().flatten().collect();
                let fact = Fact { stamp: r.stamp, op: r.op, made_by: master, holders };
                match self.facts.get_mut(&(app, r.key)) {
                    Some(f) if f.stamp > r.stamp => {}
                    Some(f) => *f = fact,
                    None => {
                        self.facts.insert((app, r.key), fact);
                    }
                }
            }
            *mark = to;
        }
    }

    /// `node` lost its RAM, or holds no application state as a copy any
    /// more (it became a standby or INIT).
    pub fn released(&mut self, node: usize) {
        for f in self.facts.values_mut() {
            f.holders.retain(|&h| h != node);
        }
        self.facts.retain(|_, f| !f.holders.is_empty());
    }

    /// `loser` stepped down to `winner`, which also had a backup acknowledge
    /// changes of its own: one side's acknowledged changes are lost whichever
    /// stays (the design admits it); those the loser made that the winner
    /// never held are dropped.
    pub fn lost_to_a_split(&mut self, loser: usize, winner: usize) {
        let before = self.facts.len();
        self.facts.retain(|_, f| f.made_by != loser || f.holders.contains(&winner));
        self.lost_both_sides += (before - self.facts.len()) as u64;
    }

    /// `node`'s state holds every fact (every fact it holds, with
    /// `only_held`); how many were checked.
    pub fn check(
        &self,
        node: usize,
        state: &[BTreeMap<u32, Stamp>],
        only_held: bool,
        when: &str,
    ) -> Result<u64, Violation> {
        let mut checked = 0;
        for (&(app, key), f) in &self.facts {
            if only_held && !f.holders.contains(&node) {
                continue;
            }
            checked += 1;
            let have = state.get(app).and_then(|t| t.get(&key)).copied();
            let deleted_later = self.deletes.get(&(app, key)).is_some_and(|&d| d > f.stamp);
            let ok = match (f.op, have) {
                (_, Some(h)) if h > f.stamp => true,
                (Op::Set, Some(h)) => h == f.stamp,
                (Op::Set, None) => deleted_later,
                (Op::Delete, None) => true,
                (Op::Delete, Some(_)) => false,
            };
            if !ok {
                return Err(Violation {
                    invariant: 10,
                    message: format!(
                        "{when}: node {node} lacks app {app} key {key} = {:?} {} (has {have:?}), acknowledged by \
                         node {} and still held by {:?}",
                        f.op, f.stamp, f.made_by, f.holders
                    ),
                });
            }
        }
        Ok(checked)
    }
}
