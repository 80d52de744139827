//! The master's change journal, for verifying a takeover from outside the
//! processes: every change with its id, and each time the engine reports
//! changes up to an id as checkpointed. After the master is killed, every
//! change it reported checkpointed must be on the new master.
//!
//! One line per fact, appended by [`JournalWriter`] and read back by
//! [`Journal::parse`]:
//!
//! ```text
//! boot 3
//! change <app> <id> <key> set <hex value> | change <app> <id> <key> del
//! checkpointed <app> <id> <peer slot letter or ->
//! promoted <config choice> in_sync=<bool>
//! ```

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use msm_checkpoint::{ConfigChoice, Slot};

use crate::apps::{APPS, Change, hex};

/// Appends to the journal, one write per line: a node killed mid-run leaves
/// whole lines for the reader. Write errors are ignored: the journal is for
/// checking a run from outside, and must not stop the node.
#[derive(Debug)]
pub struct JournalWriter<W: Write = File> {
    out: W,
    /// Per application of [`APPS`]: the id last written as checkpointed,
    /// so a report is written only when it moves.
    checkpointed: [u64; APPS.len()],
}

impl JournalWriter {
    /// Append to the journal at `path` (created if missing), starting boot
    /// `boot`: the reader takes the last boot's lines.
    pub fn open(path: &Path, boot: u32) -> io::Result<JournalWriter> {
        let out = OpenOptions::new().create(true).append(true).open(path)?;
        let mut journal = JournalWriter::new(out);
        journal.line(format_args!("boot {boot}"));
        Ok(journal)
    }
}

impl<W: Write> JournalWriter<W> {
    pub fn new(out: W) -> Self {
        JournalWriter { out, checkpointed: [0; APPS.len()] }
    }

    /// The master made change `id` of application `app` (index in [`APPS`]).
    pub fn change(&mut self, app: usize, id: u64, change: &Change) {
        match change {
            Change::Set(k, v) => self.line(format_args!("change {app} {id} {k} set {}", hex(v))),
            Change::Delete(k) => self.line(format_args!("change {app} {id} {k} del")),
        }
    }

    /// The master applied configuration line `id`.
    pub fn config_change(&mut self, id: u64, line: &str) {
        self.line(format_args!("config {id} {}", hex(line.as_bytes())));
    }

    /// The engine reports every change of `app` up to `id` on the backup `peer`.
    pub fn checkpointed(&mut self, app: usize, id: u64, peer: Option<Slot>) {
        if self.checkpointed.get(app).is_none_or(|last| *last == id) {
            return;
        }
        self.checkpointed[app] = id;
        self.line(format_args!("checkpointed {app} {id} {}", peer.map_or('-', |s| s.letter())));
    }

    pub fn promoted(&mut self, config: ConfigChoice, in_sync: bool) {
        self.line(format_args!("promoted {config:?} in_sync={in_sync}"));
    }

    pub fn flush(&mut self) {
        let _ = self.out.flush();
    }

    /// (`writeln!` would write each piece of the line separately.)
    fn line(&mut self, line: std::fmt::Arguments<'_>) {
        let mut text = line.to_string();
        text.push('\n');
        let _ = self.out.write_all(text.as_bytes());
    }
}

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

    /// Keeps each `write` call apart.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_reader_reads_what_the_writer_wrote_one_write_per_line() {
        let mut w = JournalWriter::new(Writes::default());
        w.line(format_args!("boot 1"));
        w.change(3, 1, &Change::Set(10, vec![0xaa]));
        w.change(3, 2, &Change::Delete(10));
        w.checkpointed(3, 1, Slot::new(1));
        w.checkpointed(3, 1, Slot::new(1));
        w.promoted(ConfigChoice::OwnSaved, false);
        let writes = w.out.0;
        assert!(writes.iter().all(|l| l.ends_with(b"\n") && l.iter().filter(|b| **b == b'\n').count() == 1));
        let text = String::from_utf8(writes.concat()).unwrap();
        assert_eq!(text.matches("checkpointed").count(), 1, "an unchanged report is not repeated");
        let j = Journal::parse(&text).unwrap();
        let change =
            |id, value: Option<&str>| JournalChange { id, key: 10, value: value.map(str::to_string) };
        assert_eq!(j.changes[3], [change(1, Some("aa")), change(2, None)]);
        assert_eq!((j.checkpointed[3], j.peer), (1, Some('B')));
    }
}
