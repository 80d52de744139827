//! The master's change journal, for verifying a takeover from outside the
//! processes: every change with its id, and each time the engine reports
//! changes up to an id as checkpointed. After the master is killed, every
//! change it reported checkpointed must be on the new master.

use std::collections::BTreeMap;

use crate::apps::APPS;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalChange {
    pub id: u64,
    pub key: u64,
    /// `None`: deleted.
    pub value: Option<String>,
}

/// One boot of one node, as journalled.
#[derive(Debug, Default, Clone)]
pub struct Journal {
    pub changes: Vec<Vec<JournalChange>>,
    pub checkpointed: Vec<u64>,
    /// The peer the last checkpoint report was about.
    pub peer: Option<char>,
}

impl Journal {
    /// Parse the lines of the last boot in `text`; bad lines are named.
    pub fn parse(text: &str) -> Result<Journal, String> {
        let mut j = Journal::new();
        for (n, line) in text.lines().enumerate() {
            let w: Vec<&str> = line.split_whitespace().collect();
            let bad = || format!("journal line {}: cannot read {line:?}", n + 1);
            let num = |s: &str| s.parse::<u64>().map_err(|_| bad());
            match w.as_slice() {
                ["boot", ..] => j = Journal::new(),
                ["change", app, id, key, "set", v] => {
                    let a = num(app)? as usize;
                    let c = JournalChange { id: num(id)?, key: num(key)?, value: Some((*v).to_string()) };
                    j.changes.get_mut(a).ok_or_else(bad)?.push(c);
                }
                ["change", app, id, key, "del"] => {
                    let a = num(app)? as usize;
                    j.changes.get_mut(a).ok_or_else(bad)?.push(JournalChange {
                        id: num(id)?,
                        key: num(key)?,
                        value: None,
                    });
                }
                ["checkpointed", app, id, peer] => {
                    let a = num(app)? as usize;
                    *j.checkpointed.get_mut(a).ok_or_else(bad)? = num(id)?;
                    j.peer = peer.chars().next().filter(|c| *c != '-');
                }
                ["promoted", ..] | [] => {}
                _ => return Err(bad()),
            }
        }
        Ok(j)
    }

    fn new() -> Journal {
        Journal { changes: vec![Vec::new(); APPS.len()], checkpointed: vec![0; APPS.len()], peer: None }
    }

    /// Check that `state` (per app: key -> value in hex) holds every change
    /// reported checkpointed, or a later change of the same key. Returns how
    /// many checkpointed changes were verified.
    pub fn verify(&self, state: &[BTreeMap<u64, String>]) -> Result<usize, String> {
        let mut verified = 0;
        for (app, changes) in self.changes.iter().enumerate() {
            let upto = self.checkpointed[app];
            // The last checkpointed change per key, then every later value is acceptable too.
            let mut last: BTreeMap<u64, usize> = BTreeMap::new();
            for (i, c) in changes.iter().enumerate() {
                if c.id <= upto {
                    last.insert(c.key, i);
                    verified += 1;
                }
            }
            for (key, i) in last {
                let ok = changes[i..]
                    .iter()
                    .filter(|c| c.key == key)
                    .any(|c| state[app].get(&key).map(String::as_str) == c.value.as_deref());
                if !ok {
                    return Err(format!(
                        "{}: key {key} should be {:?} (change #{}, reported checkpointed up to #{upto}) but is {:?}",
                        APPS[app].0,
                        changes[i].value,
                        changes[i].id,
                        state[app].get(&key)
                    ));
                }
            }
        }
        Ok(verified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_accepts_checkpointed_or_later_and_refuses_older() {
        let j = Journal::parse(
            "boot 1\nchange 3 1 10 set aa\nchange 3 2 10 set bb\nchange 3 3 11 set cc\ncheckpointed 3 2 B\nchange 3 4 10 del\n",
        )
        .unwrap();
        let mut state = vec![BTreeMap::new(); APPS.len()];
        state[3].insert(10, "bb".to_string());
        assert_eq!(j.verify(&state), Ok(2));
        state[3].remove(&10); // deleted by the later change 4: fine
        assert!(j.verify(&state).is_ok());
        state[3].insert(10, "aa".to_string()); // older than the checkpoint: lost change
        assert!(j.verify(&state).unwrap_err().contains("key 10"));
        assert!(Journal::parse("gibberish here").is_err());
    }
}
