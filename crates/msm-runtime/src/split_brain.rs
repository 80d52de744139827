//! Split brain on the Linux board. While master, the node keeps the changes
//! no backup has acknowledged yet (application records and active
//! configuration lines, each with its change id), trimmed as the engine's
//! `checkpointed` advances. When the engine reports that this node lost a
//! split brain ([`Event::SplitBrain`](msm_checkpoint::Event)), they are
//! written to a file next to the flash image, as DRBD's split-brain handler
//! leaves the victim's data for recovery: the node then takes the winner's
//! state, and the file is the only copy of what it had made.
//!
//! Bounded: at most [`MAX_ENTRIES`] changes or [`MAX_BYTES`] bytes are kept;
//! beyond that they are only counted (the engine's count), and the file
//! says how many it could not list.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use msm_checkpoint::{AppId, Slot, Term};

/// Changes kept at most, whatever their size.
pub const MAX_ENTRIES: usize = 1 << 20;
/// Bytes kept at most: the changes' data and what keeping each costs.
pub const MAX_BYTES: usize = 64 << 20;

/// What keeping one change costs besides its data (its entry and allocation).
const OVERHEAD: usize = std::mem::size_of::<Entry>() + 16;

/// Which stream a change belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// One line of the active configuration.
    Config,
    /// One application record.
    App(AppId),
}

#[derive(Debug)]
struct Entry {
    /// Order of recording across streams.
    order: u64,
    id: u64,
    data: Vec<u8>,
}

/// The master's changes no backup acknowledged, per stream, oldest first.
#[derive(Debug, Default)]
pub struct Unacked {
    /// The term the changes were made in: a new mastership starts empty.
    term: Option<Term>,
    streams: BTreeMap<Source, VecDeque<Entry>>,
    entries: usize,
    bytes: usize,
    order: u64,
}

impl Unacked {
    /// The master of `term` made change `id` of `source`.
    pub fn record(&mut self, term: Term, source: Source, id: u64, data: Vec<u8>) {
        if self.term != Some(term) {
            self.clear();
            self.term = Some(term);
        }
        if self.entries >= MAX_ENTRIES || self.bytes + data.len() + OVERHEAD > MAX_BYTES {
            return;
        }
        self.order += 1;
        self.entries += 1;
        self.bytes += data.len() + OVERHEAD;
        let e = Entry { order: self.order, id, data };
        self.streams.entry(source).or_default().push_back(e);
    }

    /// The mastership goes on in `term` (a split brain won: a term above
    /// the rival's): what it made and no backup acknowledged stays kept.
    pub fn continue_as(&mut self, term: Term) {
        if self.term.is_some() {
            self.term = Some(term);
        }
    }

    /// Every change of `source` up to `checkpointed` is on the backup.
    pub fn trim(&mut self, source: Source, checkpointed: u64) {
        self.trim_with(usize::MAX, |s| if s == source { checkpointed } else { 0 });
    }

    /// Every change of each stream up to `checkpointed(stream)` is on the
    /// backup: drop at most `budget` of them (the rest at the next call).
    /// True when none is left to drop.
    pub fn trim_with(&mut self, mut budget: usize, checkpointed: impl Fn(Source) -> u64) -> bool {
        for (source, q) in &mut self.streams {
            let upto = checkpointed(*source);
            while q.front().is_some_and(|e| e.id <= upto) {
                if budget == 0 {
                    return false;
                }
                if let Some(e) = q.pop_front() {
                    budget -= 1;
                    self.entries -= 1;
                    self.bytes -= e.data.len() + OVERHEAD;
                }
            }
        }
        true
    }

    /// Changes kept.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    pub fn clear(&mut self) {
        self.streams.clear();
        self.entries = 0;
        self.bytes = 0;
    }

    /// The changes of mastership `term`, in the order they were made; then empty.
    pub fn take(&mut self, term: Term) -> Vec<(Source, u64, Vec<u8>)> {
        if self.term != Some(term) {
            self.clear();
            return Vec::new();
        }
        let mut all: Vec<(u64, Source, u64, Vec<u8>)> = std::mem::take(&mut self.streams)
            .into_iter()
            .flat_map(|(s, q)| q.into_iter().map(move |e| (e.order, s, e.id, e.data)))
            .collect();
        self.clear();
        all.sort_by_key(|e| e.0);
        all.into_iter().map(|(_, s, id, d)| (s, id, d)).collect()
    }
}

/// The last split brain this node lost, for `show switch` and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// When (seconds since 1970).
    pub at_unix: u64,
    pub slot: Slot,
    pub winner: Slot,
    pub winner_term: Term,
    pub our_term: Term,
    /// The engine's count of changes discarded.
    pub discarded: u64,
    /// Of them, listed in the file.
    pub listed: u64,
    /// The file, or why it could not be written.
    pub file: Result<PathBuf, String>,
}

/// `<flash image>.split-brain-<unix time>.txt`.
pub fn file_path(flash: &Path, at_unix: u64) -> PathBuf {
    let mut name = flash.as_os_str().to_owned();
    name.push(format!(".split-brain-{at_unix}.txt"));
    PathBuf::from(name)
}

/// The file's text: a header of `#` lines, then one line per change in the
/// order they were made:
/// `config <id> <line>`, `app <name> <id> set <key> <value hex>  # <described>`,
/// `app <name> <id> delete <key>`. `describe(source, record)` names the
/// stream and describes a record of it.
pub fn render(
    r: &Report,
    changes: &[(Source, u64, Vec<u8>)],
    name: impl Fn(Source) -> String,
    describe: impl Fn(Source, u64, &[u8]) -> Option<String>,
) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "# Split brain: changes discarded by {}", r.slot);
    let _ = writeln!(t, "# at: unix time {} ({} UTC)", r.at_unix, crate::wall_clock::ctime(r.at_unix));
    let _ = writeln!(
        t,
        "# {} was master in term {}; it heard {}, master in term {}, stepped down and took its state.",
        r.slot, r.our_term, r.winner, r.winner_term
    );
    let _ = writeln!(
        t,
        "# discarded: {} change(s) made as master that no backup acknowledged (application records and \
         active-configuration lines; a save is not counted)",
        r.discarded
    );
    let _ = writeln!(t, "# listed: {}", r.listed);
    if r.listed < r.discarded {
        let _ = writeln!(
            t,
            "# not listed: {} (this node keeps at most {} changes / {} MiB of unacknowledged changes, or \
             they were acknowledged by a backup since lost)",
            r.discarded - r.listed,
            MAX_ENTRIES,
            MAX_BYTES >> 20
        );
    }
    let _ = writeln!(t, "# format: config <change id> <line>");
    let _ = writeln!(t, "#         app <application> <change id> set <key> <value hex>  # <value as shown>");
    let _ = writeln!(t, "#         app <application> <change id> delete <key>");
    for (source, id, data) in changes {
        match source {
            Source::Config => {
                let _ = writeln!(t, "config {id} {}", String::from_utf8_lossy(data).trim_end());
            }
            Source::App(_) => {
                let _ = match crate::apps::Change::decode(data) {
                    Ok(crate::apps::Change::Set(k, v)) => {
                        let shown = describe(*source, k, &v).map_or(String::new(), |d| format!("  # {d}"));
                        writeln!(t, "app {} {id} set {k} {}{shown}", name(*source), crate::apps::hex(&v))
                    }
                    Ok(crate::apps::Change::Delete(k)) => {
                        writeln!(t, "app {} {id} delete {k}", name(*source))
                    }
                    Err(_) => writeln!(t, "app {} {id} record {}", name(*source), crate::apps::hex(data)),
                };
            }
        }
    }
    t
}

/// Write `text` to `path`, or to `path` with `.2`, `.3`, ... before its
/// extension if that exists (an existing file is never overwritten), and
/// sync it. The path written.
pub fn write_file(path: &Path, text: &str) -> std::io::Result<PathBuf> {
    let (f, tmp, p) = reserve(path)?;
    finish(f, &tmp, &p, text)?;
    Ok(p)
}

/// Claim the file's name: `path`, or `.2`, `.3`, ... before its extension
/// if that (or its `.tmp` being written) exists. The open `.tmp` file, its
/// path, and the name it gets once written.
pub fn reserve(path: &Path) -> std::io::Result<(std::fs::File, PathBuf, PathBuf)> {
    let mut n = 1;
    loop {
        let p = match n {
            1 => path.to_path_buf(),
            n => path.with_extension(format!("{n}.txt")),
        };
        let mut tmp = p.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let taken = p.exists();
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) if !taken => return Ok((f, tmp, p)),
            Ok(_) => {
                let _ = std::fs::remove_file(&tmp);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if n >= 100 {
            return Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, "100 files of that second"));
        }
        n += 1;
    }
}

/// Write and sync `text`, then give the file its name: it appears whole.
pub fn finish(mut f: std::fs::File, tmp: &Path, path: &Path, text: &str) -> std::io::Result<()> {
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(n: u8, s: Slot) -> Term {
        (0..n).try_fold(Term::NONE, |t, _| t.next(s)).unwrap()
    }

    #[test]
    fn kept_until_acknowledged_and_a_new_mastership_starts_empty() {
        let (t1, t2) = (term(1, Slot::A), term(2, Slot::A));
        let mut u = Unacked::default();
        let fdb = Source::App(AppId::new(3));
        u.record(t1, fdb, 1, b"a".to_vec());
        u.record(t1, Source::Config, 1, b"configure x\n".to_vec());
        u.record(t1, fdb, 2, b"b".to_vec());
        u.trim(fdb, 1);
        assert_eq!(u.len(), 2);
        u.trim(fdb, 0);
        assert_eq!(u.len(), 2, "checkpointed never moves anything back");
        let all = u.take(t1);
        assert_eq!(all.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>(), vec![(Source::Config, 1), (fdb, 2)]);
        assert!(u.is_empty());
        u.record(t1, fdb, 3, b"c".to_vec());
        u.record(t2, fdb, 4, b"d".to_vec());
        assert_eq!(u.len(), 1, "changes of an earlier mastership are gone");
        assert!(u.take(t1).is_empty());
    }

    /// A trim drops at most its budget and says when it is done; the next
    /// calls go on where it stopped, across streams.
    #[test]
    fn a_trim_drops_at_most_its_budget() {
        let t = term(1, Slot::A);
        let mut u = Unacked::default();
        let (fdb, vlan) = (Source::App(AppId::new(3)), Source::App(AppId::new(2)));
        for id in 1..=10 {
            u.record(t, fdb, id, vec![0; 8]);
            u.record(t, vlan, id, vec![0; 8]);
        }
        let acked = |s: Source| if s == fdb { 10 } else { 4 };
        assert!(!u.trim_with(5, acked));
        assert_eq!(u.len(), 15);
        assert!(!u.trim_with(5, acked));
        assert!(u.trim_with(5, acked), "the last 4 acknowledged ones fit the budget");
        assert_eq!(u.len(), 6, "vlan 5..=10 are not acknowledged");
        assert!(u.trim_with(0, acked), "nothing left to drop");
    }

    #[test]
    fn beyond_the_cap_changes_are_not_kept() {
        let t = term(1, Slot::B);
        let mut u = Unacked::default();
        let big = vec![0u8; MAX_BYTES / 2];
        u.record(t, Source::Config, 1, big.clone());
        u.record(t, Source::Config, 2, big.clone());
        assert_eq!(u.len(), 1);
        u.trim(Source::Config, 1);
        u.record(t, Source::Config, 3, big);
        assert_eq!(u.len(), 1, "room again once acknowledged");
    }

    #[test]
    fn the_file_lists_each_change_and_says_what_is_missing() {
        let vlan = Source::App(AppId::new(2));
        let r = Report {
            at_unix: 1_800_000_000,
            slot: Slot::A,
            winner: Slot::B,
            winner_term: term(2, Slot::B),
            our_term: term(1, Slot::A),
            discarded: 4,
            listed: 3,
            file: Ok(PathBuf::from("x")),
        };
        let changes = vec![
            (Source::Config, 7, b"configure vlan v10 add ports 3\n".to_vec()),
            (vlan, 9, crate::apps::Change::Set(5, b"v10 tag 10 ports 3".to_vec()).encode()),
            (vlan, 10, crate::apps::Change::Delete(6).encode()),
        ];
        let text = render(&r, &changes, |_| "vlan".into(), |_, _, v| Some(String::from_utf8_lossy(v).into()));
        let body: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            body,
            vec![
                "config 7 configure vlan v10 add ports 3",
                "app vlan 9 set 5 7631302074616720313020706f7274732033  # v10 tag 10 ports 3",
                "app vlan 10 delete 6",
            ]
        );
        assert!(text.contains("# discarded: 4 change(s)"), "{text}");
        assert!(text.contains("# not listed: 1 "), "{text}");
        assert_eq!(file_path(Path::new("/x/a.img"), 5), PathBuf::from("/x/a.img.split-brain-5.txt"));
    }

    #[test]
    fn a_second_file_in_the_same_second_gets_its_own_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = file_path(&dir.path().join("a.img"), 5);
        assert_eq!(write_file(&p, "one").unwrap(), p);
        let second = write_file(&p, "two").unwrap();
        assert_eq!(second, dir.path().join("a.img.split-brain-5.2.txt"));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "one");
    }
}
