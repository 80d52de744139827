//! What the node applied to its process applications' tables, kept once
//! for every client that follows them (as Redis 7 keeps one replication
//! buffer for all its replicas). Each client reads it from its own
//! position, a slice a loop turn and only while its socket takes bytes, so
//! a client that does not read costs the node no work and no memory of its
//! own; one that falls behind the oldest entry kept is dropped. Bounded by
//! [`MAX_BYTES`] over all clients.

use std::collections::VecDeque;

use crate::host::Forward;
use crate::process_apps::ProcessApp;

/// Bytes of changes the log keeps (values and keys, roughly as encoded):
/// a client further behind than this is dropped as too slow.
pub const MAX_BYTES: usize = 32 << 20;

/// Bytes an entry counts for: its value and a message's overhead.
fn weight(f: &Forward) -> usize {
    match f {
        Forward::Change(crate::apps::Change::Set(_, v)) => v.len() + 16,
        _ => 16,
    }
}

#[derive(Debug, Default)]
pub struct ForwardLog {
    /// Position of the first entry kept.
    base: u64,
    entries: VecDeque<(ProcessApp, Forward)>,
    bytes: usize,
    /// Per process application: the position after its last entry.
    last: Vec<u64>,
}

impl ForwardLog {
    /// The position after the last entry: where a client that starts now begins.
    pub fn end(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    /// The position of the oldest entry kept.
    pub fn base(&self) -> u64 {
        self.base
    }

    pub fn push(&mut self, app: ProcessApp, f: Forward) {
        self.bytes += weight(&f);
        self.entries.push_back((app, f));
        if self.last.len() <= app.index() {
            self.last.resize(app.index() + 1, 0);
        }
        self.last[app.index()] = self.end();
    }

    /// The entry at `pos`, if kept.
    pub fn get(&self, pos: u64) -> Option<&(ProcessApp, Forward)> {
        let i = usize::try_from(pos.checked_sub(self.base)?).ok()?;
        self.entries.get(i)
    }

    /// Whether an entry of `app` is at `from` or after.
    pub fn has_for(&self, app: ProcessApp, from: u64) -> bool {
        self.last.get(app.index()).is_some_and(|&l| l > from)
    }

    /// Forget entries before `keep_from` (no client needs them), and the
    /// oldest beyond [`MAX_BYTES`]: clients still before the new
    /// [`base`](Self::base) have fallen too far behind.
    pub fn trim(&mut self, keep_from: u64) {
        while let Some((_, f)) = self.entries.front() {
            if self.base >= keep_from && self.bytes <= MAX_BYTES {
                break;
            }
            self.bytes -= weight(f);
            self.entries.pop_front();
            self.base += 1;
        }
    }

    /// Bytes held, for the memory bound.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::Change;

    #[test]
    fn positions_per_app_and_trimming() {
        let mut log = ForwardLog::default();
        log.push(ProcessApp::of(1), Forward::Begin);
        log.push(ProcessApp::of(2), Forward::Change(Change::Set(7, vec![0; 10])));
        log.push(ProcessApp::of(1), Forward::End);
        assert_eq!((log.base(), log.end()), (0, 3));
        assert!(
            log.has_for(ProcessApp::of(1), 2)
                && !log.has_for(ProcessApp::of(1), 3)
                && log.has_for(ProcessApp::of(2), 1)
                && !log.has_for(ProcessApp::of(2), 2)
        );
        assert!(!log.has_for(ProcessApp::of(5), 0), "an application with no entry");
        assert_eq!(log.get(1).map(|e| e.0), Some(ProcessApp::of(2)));
        log.trim(2);
        assert_eq!(
            (log.base(), log.get(1).is_none(), log.get(2).map(|e| e.0)),
            (2, true, Some(ProcessApp::of(1)))
        );
        // Over the bound: the oldest go even if a client needs them.
        for _ in 0..(MAX_BYTES / 1000 + 10) {
            log.push(ProcessApp::of(3), Forward::Change(Change::Set(1, vec![0; 1000])));
        }
        log.trim(0);
        assert!(log.bytes() <= MAX_BYTES && log.base() > 2);
    }
}
