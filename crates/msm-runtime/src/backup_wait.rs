//! One way to wait for the backup, for the operator's `configure --wait` /
//! `save --wait` (`node/ops.rs`) and a process application's `WAIT`
//! (`app_server.rs`): a wait is over once the backup holds what it waits
//! for, once its time is up, or once this node is no longer master (then no
//! backup of it will acknowledge more). Generic over the clock: the node's
//! `msm_time::Instant` for the operator, the process clock for clients.

/// A wait begun at `started`, given up at `deadline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupWait<T> {
    pub started: T,
    pub deadline: T,
}

impl<T: Copy + Ord> BackupWait<T> {
    pub fn new(started: T, deadline: T) -> Self {
        BackupWait { started, deadline }
    }

    /// Over at `now`, with `behind` changes still missing on the backup,
    /// this node master or not.
    pub fn over(&self, now: T, behind: u64, master: bool) -> bool {
        behind == 0 || now >= self.deadline || !master
    }

    /// It waits at all (a timeout of 0 answers with what is there).
    pub fn waits(&self) -> bool {
        self.deadline > self.started
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_when_held_when_late_or_when_no_longer_master() {
        let w = BackupWait::new(10u64, 20);
        assert!(!w.over(15, 3, true));
        assert!(w.over(15, 0, true), "the backup holds it");
        assert!(w.over(20, 3, true), "time is up");
        assert!(w.over(15, 3, false), "no longer master");
        assert!(w.waits() && !BackupWait::new(5u64, 5).waits());
    }
}
