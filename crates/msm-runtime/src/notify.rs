//! Notify hooks (`msm-node --notify CMD`), as keepalived's notify scripts
//! and Pacemaker's alerts: CMD runs on role changes, in-sync changes, a
//! peer lost and back, split brain and failover, each event's fields in its
//! environment (`MSM_EVENT`, `MSM_SLOT`, ...; docs/operator-guide.md).
//!
//! The protocol first: the loop only puts an event in a bounded queue
//! ([`QUEUE`]; a full queue drops the event and counts it, never waits). A
//! thread of its own runs CMD for each, one at a time, not through a
//! shell, and kills it when it outlasts its timeout; a failing, slow or
//! missing CMD is logged by name and delays nothing else.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant, SystemTime};

use msm_checkpoint::{Event, Slot};

/// Events waiting for the hook, at most.
pub const QUEUE: usize = 64;

/// One event for the hook: its name and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// `role`, `in-sync`, `peer-lost`, `peer-up`, `split-brain`, `failover`.
    pub event: &'static str,
    /// `MSM_`-prefixed in the hook's environment, upper-cased.
    pub fields: Vec<(&'static str, String)>,
}

impl Notice {
    /// The notice of an engine event of module `slot`, if it is one a hook hears.
    pub fn of(slot: Slot, ev: &Event) -> Option<Notice> {
        let (event, mut fields) = match ev {
            Event::RoleChanged { role, term } => {
                ("role", vec![("role", role.to_string()), ("term", term.to_string())])
            }
            Event::InSync(yes) => ("in-sync", vec![("in_sync", yes_no(*yes))]),
            Event::PeerLost(peer) => ("peer-lost", vec![("peer", peer.to_string())]),
            Event::PeerUp(peer) => ("peer-up", vec![("peer", peer.to_string())]),
            Event::Promoted { term, in_sync, .. } => {
                ("failover", vec![("term", term.to_string()), ("in_sync", yes_no(*in_sync))])
            }
            Event::SplitBrain { winner, winner_term, discarded, rule, .. } => (
                "split-brain",
                vec![
                    ("outcome", "lost".into()),
                    ("peer", winner.to_string()),
                    ("term", winner_term.to_string()),
                    ("discarded", discarded.to_string()),
                    ("rule", rule.as_str().into()),
                ],
            ),
            Event::SplitBrainWon { loser, term, rule, .. } => (
                "split-brain",
                vec![
                    ("outcome", "won".into()),
                    ("peer", loser.to_string()),
                    ("term", term.to_string()),
                    ("rule", rule.as_str().into()),
                ],
            ),
            _ => return None,
        };
        fields.insert(0, ("slot", slot.to_string()));
        Some(Notice { event, fields })
    }

    /// The hook's environment: `MSM_EVENT`, `MSM_TIME` (RFC 3339, UTC), `MSM_SEQ`, then the fields.
    fn environment(&self, seq: u64, at: SystemTime) -> Vec<(String, String)> {
        let mut env = vec![
            ("MSM_EVENT".to_string(), self.event.to_string()),
            ("MSM_TIME".to_string(), humantime::format_rfc3339_millis(at).to_string()),
            ("MSM_SEQ".to_string(), seq.to_string()),
        ];
        env.extend(self.fields.iter().map(|(k, v)| (format!("MSM_{}", k.to_uppercase()), v.clone())));
        env
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

/// The queue to the hook's thread.
#[derive(Debug)]
pub struct Notifier {
    queue: SyncSender<(Notice, SystemTime)>,
    /// Events dropped because the queue was full.
    dropped: Arc<AtomicU64>,
}

impl Notifier {
    /// Start the hook's thread: `cmd` run for each event, killed after `timeout`.
    pub fn start(cmd: PathBuf, timeout: Duration) -> std::io::Result<Notifier> {
        let (queue, events) = sync_channel(QUEUE);
        std::thread::Builder::new().name("notify".into()).spawn(move || run(&cmd, timeout, &events))?;
        Ok(Notifier { queue, dropped: Arc::default() })
    }

    /// Hand `notice` to the hook; never waits. A full queue drops it (logged
    /// the first time and every hundredth).
    pub fn send(&self, notice: Notice) {
        match self.queue.try_send((notice, SystemTime::now())) {
            Ok(()) => {}
            Err(TrySendError::Full((n, _))) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped == 1 || dropped.is_multiple_of(100) {
                    log::warn!(
                        "notify hook: {} events wait already; {} dropped (this one: {}); the hook is too slow",
                        QUEUE,
                        dropped,
                        n.event
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// The hook's thread: each event in turn, until the node drops its queue.
fn run(cmd: &PathBuf, timeout: Duration, events: &Receiver<(Notice, SystemTime)>) {
    let mut seq = 0;
    while let Ok((notice, at)) = events.recv() {
        seq += 1;
        let name = cmd.display();
        let child = Command::new(cmd)
            .envs(notice.environment(seq, at))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                log::warn!("notify hook {name}: cannot run it for {}: {e}", notice.event);
                continue;
            }
        };
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => {
                    log::warn!("notify hook {name}: waiting for it: {e}");
                    break None;
                }
            }
        };
        match status {
            Some(s) if s.success() => log::debug!("notify hook {name}: {} done", notice.event),
            Some(s) => log::warn!("notify hook {name}: {} event: it ended with {s}", notice.event),
            None => log::warn!(
                "notify hook {name}: {} event: killed after {} ms (--notify-timeout-ms)",
                notice.event,
                timeout.as_millis()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use msm_checkpoint::{Role, Term};

    use super::*;

    #[test]
    fn events_become_notices_with_their_fields() {
        let t = Term::NONE.next(Slot::B).unwrap();
        let n = Notice::of(Slot::B, &Event::RoleChanged { role: Role::Master, term: t }).unwrap();
        assert_eq!(n.event, "role");
        let env = n.environment(7, SystemTime::UNIX_EPOCH);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("MSM_EVENT"), Some("role"));
        assert_eq!(get("MSM_SLOT"), Some("MSM-B"));
        assert_eq!(get("MSM_ROLE"), Some("MASTER"));
        assert_eq!(get("MSM_TERM"), Some(t.to_string().as_str()));
        assert_eq!(get("MSM_SEQ"), Some("7"));
        assert_eq!(get("MSM_TIME"), Some("1970-01-01T00:00:00.000Z"));
        assert_eq!(Notice::of(Slot::A, &Event::InSync(false)).unwrap().fields[1], ("in_sync", "no".into()));
        assert!(Notice::of(Slot::A, &Event::FailoverFailed).is_none(), "not every event is one");
    }

    /// A hook that outlasts its timeout is killed, so the next event's
    /// hook runs; the queue never makes the sender wait, and drops what
    /// does not fit.
    #[test]
    fn a_slow_hook_is_killed_and_a_full_queue_drops() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (hook, marks) = (dir.path().join("hook"), dir.path().join("marks"));
        let script = format!("#!/bin/sh\necho $MSM_SEQ >> {}\nsleep 30\n", marks.display());
        std::fs::write(&hook, script).unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        let n = Notifier::start(hook, Duration::from_millis(100)).unwrap();
        for _ in 0..QUEUE + 10 {
            n.send(Notice::of(Slot::A, &Event::PeerLost(Slot::B)).unwrap());
        }
        // try_send: what does not fit is dropped, the sender goes on.
        assert!(n.dropped.load(Ordering::Relaxed) >= 9);
        // The first hook sleeps 30 s: the second ran only because it was killed.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&marks).unwrap_or_default().lines().any(|l| l == "2") {
            assert!(Instant::now() < deadline, "the slow hook was not killed at its timeout");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
