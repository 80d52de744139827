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
//! config <id> <hex of the line>
//! config-checkpointed <id> <peer slot letter or ->
//! promoted <config choice> in_sync=<bool>
//! ```
//!
//! Application changes are checked key by key ([`Journal::verify`]); the
//! configuration lines as a sequence ([`Journal::verify_config`]): the new
//! master's running configuration must be the old master's with every line up
//! to the checkpointed one applied, and maybe some after it, in order.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use msm_checkpoint::{ConfigChoice, Slot};
use msm_runtime::hooks::Watcher;

use msm_runtime::apps::{APPS, BuiltinApp, Change, hex};
use msm_runtime::config::RunningConfig;

/// Appends to the journal, one write per line: a node killed mid-run leaves
/// whole lines for the reader. Write errors are ignored: the journal is for
/// checking a run from outside, and must not stop the node.
#[derive(Debug)]
pub struct JournalWriter<W: Write = File> {
    out: W,
    /// Per application of [`APPS`]: the id last written as checkpointed,
    /// so a report is written only when it moves.
    checkpointed: [u64; APPS.len()],
    /// The same for the configuration lines.
    config_checkpointed: u64,
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
        JournalWriter { out, checkpointed: [0; APPS.len()], config_checkpointed: 0 }
    }

    /// (`writeln!` would write each piece of the line separately.)
    fn line(&mut self, line: std::fmt::Arguments<'_>) {
        let mut text = line.to_string();
        text.push('\n');
        let _ = self.out.write_all(text.as_bytes());
    }
}

/// The journal is the runtime's watcher of a test's node (`msm-node --journal`).
impl<W: Write> Watcher for JournalWriter<W> {
    /// The master made change `id` of application `app` (index in [`APPS`]).
    fn change(&mut self, app: BuiltinApp, id: u64, change: &Change) {
        let app = app.index();
        match change {
            Change::Set(k, v) => self.line(format_args!("change {app} {id} {k} set {}", hex(v))),
            Change::Delete(k) => self.line(format_args!("change {app} {id} {k} del")),
        }
    }

    /// The engine reports every change of `app` up to `id` on the backup `peer`.
    fn checkpointed(&mut self, app: BuiltinApp, id: u64, peer: Option<Slot>) {
        let app = app.index();
        if self.checkpointed.get(app).is_none_or(|last| *last == id) {
            return;
        }
        self.checkpointed[app] = id;
        self.line(format_args!("checkpointed {app} {id} {}", peer.map_or('-', |s| s.letter())));
    }

    /// The master applied configuration line `line` as change `id` of the
    /// active configuration.
    fn config_change(&mut self, id: u64, line: &str) {
        self.line(format_args!("config {id} {}", hex(line.as_bytes())));
    }

    /// The engine reports every configuration change up to `id` on the backup `peer`.
    fn config_checkpointed(&mut self, id: u64, peer: Option<Slot>) {
        if self.config_checkpointed == id {
            return;
        }
        self.config_checkpointed = id;
        self.line(format_args!("config-checkpointed {id} {}", peer.map_or('-', |s| s.letter())));
    }

    fn promoted(&mut self, config: ConfigChoice, in_sync: bool) {
        self.line(format_args!("promoted {config:?} in_sync={in_sync}"));
    }

    fn flush(&mut self) {
        let _ = self.out.flush();
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalChange {
    pub id: u64,
    pub key: u64,
    /// `None`: deleted.
    pub value: Option<String>,
}

/// One configuration line the master applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    pub id: u64,
    pub line: String,
}

/// One boot of one node, as journalled.
#[derive(Debug, Default, Clone)]
pub struct Journal {
    pub changes: Vec<Vec<JournalChange>>,
    pub checkpointed: Vec<u64>,
    /// The peer the last checkpoint report was about.
    pub peer: Option<char>,
    /// Configuration lines in the order applied (ids increasing).
    pub config: Vec<JournalConfig>,
    /// Every configuration line up to this id is on the backup.
    pub config_checkpointed: u64,
    /// The peer the last configuration report was about.
    pub config_peer: Option<char>,
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
                ["config", id, rest @ ..] if rest.len() <= 1 => {
                    let bytes = unhex(rest.first().copied().unwrap_or("")).ok_or_else(bad)?;
                    let line = String::from_utf8(bytes).map_err(|_| bad())?;
                    j.config.push(JournalConfig { id: num(id)?, line });
                }
                ["config-checkpointed", id, peer] => {
                    j.config_checkpointed = num(id)?;
                    j.config_peer = peer.chars().next().filter(|c| *c != '-');
                }
                ["promoted", ..] | [] => {}
                _ => return Err(bad()),
            }
        }
        Ok(j)
    }

    fn new() -> Journal {
        Journal {
            changes: vec![Vec::new(); APPS.len()],
            checkpointed: vec![0; APPS.len()],
            peer: None,
            config: Vec::new(),
            config_checkpointed: 0,
            config_peer: None,
        }
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

    /// Check the new master's running configuration `now` against the
    /// configuration lines reported checkpointed. `base` is the configuration
    /// the journalled master ran when its last line was the one with id
    /// `after` (0: none yet); the lines after it are replayed on `base`. The
    /// backup applies them in order, so `now` must be `base` with the lines up
    /// to the checkpointed one applied, and possibly some of the later ones:
    /// one prefix of the lines, at least as long as the checkpointed part.
    /// Returns how many checkpointed lines were verified (0 when none after
    /// `after` was reported checkpointed: then there is nothing to check).
    pub fn verify_config(
        &self,
        base: &RunningConfig,
        after: u64,
        now: &RunningConfig,
    ) -> Result<usize, String> {
        let upto = self.config_checkpointed;
        let lines: Vec<&JournalConfig> = self.config.iter().filter(|c| c.id > after).collect();
        let verified = lines.iter().filter(|c| c.id <= upto).count();
        if verified == 0 {
            return Ok(0);
        }
        let mut cfg = base.clone();
        let mut at_checkpoint = None;
        for (i, c) in lines.iter().enumerate() {
            cfg.apply(&c.line).map_err(|reason| {
                format!(
                    "config line #{} {:?} does not replay on the old master's configuration: {reason}",
                    c.id,
                    c.line.trim()
                )
            })?;
            let next_is_later = lines.get(i + 1).is_none_or(|n| n.id > upto);
            if c.id <= upto && next_is_later {
                at_checkpoint = Some(cfg.clone());
            }
            if at_checkpoint.is_some() && cfg == *now {
                return Ok(verified);
            }
        }
        let expected = at_checkpoint.unwrap_or(cfg);
        Err(format!(
            "the configuration lost a change reported checkpointed (lines up to #{upto}): {}",
            config_diff(&expected, now)
        ))
    }
}

/// The first differences between the configuration expected at the
/// checkpoint and the one found, for the failure message.
fn config_diff(expected: &RunningConfig, found: &RunningConfig) -> String {
    let mut out = Vec::new();
    if expected.sysname != found.sysname {
        out.push(format!("sysName {:?} expected, {:?} found", expected.sysname, found.sysname));
    }
    for (name, v) in &expected.vlans {
        match found.vlans.get(name) {
            None => out.push(format!("vlan {name} missing")),
            Some(f) if f != v => out.push(format!("vlan {name} is {f:?}, expected {v:?}")),
            Some(_) => {}
        }
    }
    for name in found.vlans.keys().filter(|n| !expected.vlans.contains_key(*n)) {
        out.push(format!("vlan {name} present, expected deleted or not yet created"));
    }
    if expected.disabled_ports != found.disabled_ports {
        out.push(format!(
            "disabled ports {:?} expected, {:?} found",
            expected.disabled_ports, found.disabled_ports
        ));
    }
    if expected.priority != found.priority {
        out.push(format!("priorities {:?} expected, {:?} found", expected.priority, found.priority));
    }
    let n = out.len();
    if n > 5 {
        out.truncate(5);
        out.push(format!("and {} more differences", n - 5));
    }
    if out.is_empty() {
        // Equal to the checkpoint but none of the prefixes after it.
        return "it matches no prefix of the journalled lines".into();
    }
    out.join("; ")
}

/// The inverse of [`hex`].
fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect()
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

    #[test]
    fn config_lines_and_reports_round_trip() {
        let mut w = JournalWriter::new(Writes::default());
        w.line(format_args!("boot 2"));
        w.config_change(1, "create vlan corp tag 100\n");
        w.config_change(2, "");
        w.config_checkpointed(1, Slot::new(1));
        w.config_checkpointed(1, Slot::new(1));
        w.config_checkpointed(0, None);
        let text = String::from_utf8(w.out.0.concat()).unwrap();
        assert_eq!(text.matches("config-checkpointed").count(), 2, "an unchanged report is not repeated");
        let j = Journal::parse(&text).unwrap();
        let line = |id, line: &str| JournalConfig { id, line: line.to_string() };
        assert_eq!(j.config, [line(1, "create vlan corp tag 100\n"), line(2, "")]);
        assert_eq!((j.config_checkpointed, j.config_peer), (0, None));
        assert!(Journal::parse("config 3 zz").is_err());
        assert!(Journal::parse("config-checkpointed x B").is_err());
        // A new boot starts afresh.
        let j = Journal::parse(&format!("{text}boot 3\n")).unwrap();
        assert!(j.config.is_empty());
    }

    #[test]
    fn verify_config_wants_a_prefix_at_least_as_long_as_the_checkpoint() {
        let base = msm_runtime::config::factory_default();
        let lines =
            ["create vlan a tag 10", "configure vlan a add ports 1-4", "create vlan b", "delete vlan a"];
        let mut text = String::from("boot 1\nconfig 7 6e6f7065\n"); // before the base: not replayed
        for (i, l) in lines.iter().enumerate() {
            text.push_str(&format!("config {} {}\n", 8 + i, hex(l.as_bytes())));
        }
        let after = |n: usize| {
            let mut c = base.clone();
            for l in &lines[..n] {
                c.apply(l).unwrap();
            }
            c
        };
        // Nothing checkpointed after the base: nothing to verify, whatever the state.
        let j = Journal::parse(&format!("{text}config-checkpointed 7 B\n")).unwrap();
        assert_eq!(j.verify_config(&base, 7, &after(3)), Ok(0));
        assert_eq!(Journal::parse("boot 1\n").unwrap().verify_config(&base, 0, &after(1)), Ok(0));
        // Lines 8 and 9 checkpointed: prefixes 2, 3, 4 pass, 0 and 1 do not.
        let j = Journal::parse(&format!("{text}config-checkpointed 9 B\n")).unwrap();
        for n in 2..=4 {
            assert_eq!(j.verify_config(&base, 7, &after(n)), Ok(2), "prefix {n}");
        }
        let e = j.verify_config(&base, 7, &after(1)).unwrap_err();
        assert!(e.contains("vlan a is"), "{e}");
        let e = j.verify_config(&base, 7, &base).unwrap_err();
        assert!(e.contains("vlan a missing"), "{e}");
        // Something that is no prefix at all.
        let mut odd = after(2);
        odd.sysname = "elsewhere".into();
        assert!(j.verify_config(&base, 7, &odd).unwrap_err().contains("sysName"));
        // A line that does not replay on the base is named.
        let e = j.verify_config(&after(1), 7, &after(2)).unwrap_err();
        assert!(e.contains("#8") && e.contains("already exists"), "{e}");
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
        w.change(msm_runtime::apps::FDB, 1, &Change::Set(10, vec![0xaa]));
        w.change(msm_runtime::apps::FDB, 2, &Change::Delete(10));
        w.checkpointed(msm_runtime::apps::FDB, 1, Slot::new(1));
        w.checkpointed(msm_runtime::apps::FDB, 1, Slot::new(1));
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
