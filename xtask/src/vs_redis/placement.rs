//! Where each process of the comparison runs. Left to the scheduler, the
//! one-at-a-time latency of either system moved 2.5x between runs of the
//! same code (which core each process landed on decided it), so every
//! process is pinned, and both systems get the same placement: the master
//! (and the client) on one CPU, the backup on another, standbys spread.

use std::process::Command;

use anyhow::Result;
use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;

/// A process's part in a chassis of either system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Master,
    Backup,
    /// The third or fourth module (msm only): its index, 0 or 1.
    Standby(usize),
    /// The benchmark's own thread: the client, or the copier of a floor.
    Client,
}

/// CPUs by part; `None` when the machine has one CPU or no `taskset` (then
/// nothing is pinned, and the report says so).
#[derive(Debug, Clone)]
pub(crate) struct Placement {
    cpus: Option<[usize; 2]>,
}

impl Placement {
    /// The placement on this machine: `--cpus M,B` (the master's and the
    /// backup's CPUs; the same CPU twice puts everything on it), or 0 and 1.
    pub(crate) fn from_args(args: &[String]) -> Result<Placement> {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        let taskset = crate::cmd::exists("taskset");
        let given = match args.iter().position(|a| a == "--cpus") {
            Some(i) => {
                let cpus: Option<Vec<usize>> =
                    args.get(i + 1).map(|c| c.split(',').filter_map(|c| c.parse().ok()).collect());
                match cpus.as_deref() {
                    Some(&[m, b]) if m < n && b < n => Some([m, b]),
                    _ => anyhow::bail!(
                        "--cpus takes the master's and the backup's CPU, below {n}: e.g. --cpus 0,1"
                    ),
                }
            }
            None => None,
        };
        Ok(Placement { cpus: taskset.then(|| given.unwrap_or(if n >= 2 { [0, 1] } else { [0, 0] })) })
    }

    /// The CPU of `part`. The client shares the master's CPU: on two CPUs one
    /// process must share, and the client is idle while the master works.
    pub(crate) fn cpu(&self, part: Part) -> Option<usize> {
        let [a, b] = self.cpus?;
        Some(match part {
            Part::Master | Part::Client => a,
            Part::Backup => b,
            Part::Standby(i) => [b, a][i % 2],
        })
    }

    /// The `taskset` prefix that starts a program as `part` (empty when unpinned).
    pub(crate) fn launcher(&self, part: Part) -> Vec<String> {
        self.cpu(part).map_or_else(Vec::new, |c| vec!["taskset".into(), "-c".into(), c.to_string()])
    }

    /// `program` started as `part`.
    pub(crate) fn command(&self, part: Part, program: &std::path::Path) -> Command {
        match self.launcher(part).split_first() {
            Some((taskset, args)) => {
                let mut c = Command::new(taskset);
                c.args(args).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// Pin the calling thread as `part`.
    pub(crate) fn pin_here(&self, part: Part) -> Result<()> {
        if let Some(cpu) = self.cpu(part) {
            let mut set = CpuSet::new();
            set.set(cpu)?;
            sched_setaffinity(Pid::from_raw(0), &set)?;
        }
        Ok(())
    }

    /// Unpin the calling thread (every CPU again), after a comparison.
    pub(crate) fn unpin_here(&self) -> Result<()> {
        let mut set = CpuSet::new();
        for cpu in 0..std::thread::available_parallelism().map_or(1, |n| n.get()) {
            set.set(cpu)?;
        }
        sched_setaffinity(Pid::from_raw(0), &set)?;
        Ok(())
    }

    /// One line for the report.
    pub(crate) fn describe(&self) -> String {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        match self.cpus {
            Some(_) => format!(
                "{n} CPUs; both systems pinned alike (taskset): master and client on CPU {}, backup on CPU {}, \
                 standbys on CPUs {} and {}",
                self.cpu(Part::Master).unwrap_or(0),
                self.cpu(Part::Backup).unwrap_or(0),
                self.cpu(Part::Standby(0)).unwrap_or(0),
                self.cpu(Part::Standby(1)).unwrap_or(0),
            ),
            None => format!("{n} CPU(s); NOT pinned (no taskset): expect runs to differ"),
        }
    }
}
