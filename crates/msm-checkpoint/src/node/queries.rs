//! What the node reports: its role and term, what is checkpointed, and the
//! rows of `show switch` and `show checkpoint-data` (the types in
//! [`crate::status`]) filled from the node's parts.

use super::Node;
use super::config::Config;
use super::stream_set::{ACTIVE, CONFIG_STREAMS};
use crate::app::AppSpec;
use crate::host::AppId;
use crate::role::{Role, Slot, Term};
use crate::status::{ConfigCopy, StreamStatus, SwitchStatus, stream_name};
use crate::stream::Phase;

impl<const APPS: usize, const WINDOW: usize, const BACKLOG: usize, const STANDBYS: usize>
    Node<APPS, WINDOW, BACKLOG, STANDBYS>
{
    /// INIT, MASTER, BACKUP or STANDBY.
    pub fn role(&self) -> Role {
        self.members.role
    }
    /// The current master's term (ours when master).
    pub fn term(&self) -> Term {
        self.members.term
    }
    /// This module's slot.
    pub fn slot(&self) -> Slot {
        self.cfg.slot
    }
    /// The master this node follows (itself when master).
    pub fn master(&self) -> Option<Slot> {
        self.members.master
    }
    /// The settings the node was made with (priority and health as changed since).
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    /// What was registered as `app` (its name, schema and dependencies).
    pub fn app(&self, app: AppId) -> Option<&AppSpec> {
        self.streams.spec(app)
    }
    /// Frames sealed in this incarnation: the last frame counter used.
    pub fn frames_sent(&self) -> u64 {
        self.sent
    }

    /// Total retransmission rounds (go-back-N restarts).
    pub fn retransmits(&self) -> u64 {
        self.sender.retransmits()
    }
    /// Events dropped because the board did not poll them in time.
    pub fn events_dropped(&self) -> u32 {
        self.events.dropped()
    }
    /// Bytes of backlog in use.
    pub fn backlog_used(&self) -> usize {
        self.sender.backlog_used()
    }

    /// Bytes of backlog there are: above them, what the backup lacks is
    /// re-bulked (`RebulkReason::BacklogOverflow`).
    pub fn backlog_capacity(&self) -> usize {
        BACKLOG
    }

    /// Master: the module the checkpoint session is with (it may be briefly
    /// unreachable); the one [`checkpointed`](Self::checkpointed) speaks of.
    pub fn checkpoint_peer(&self) -> Option<Slot> {
        self.sender.session().map(|s| s.0)
    }

    /// Master: the boot count (incarnation) of that peer when its session began.
    /// A peer that rebooted since holds none of it, though the master may not
    /// have heard of the reboot yet.
    pub fn checkpoint_peer_incarnation(&self) -> Option<u32> {
        self.sender.session().map(|s| s.1)
    }

    /// Master: every change of `app` with an id up to the returned one is
    /// applied on the [`checkpoint_peer`](Self::checkpoint_peer) (0: none yet).
    pub fn checkpointed(&self, app: AppId) -> u64 {
        self.streams.app_sid(app).map_or(0, |sid| self.streams.get(sid).tx.checkpointed)
    }

    /// Master: the last save (see [`config_saved`](Self::config_saved)) the
    /// backup holds in its flash.
    pub fn saved_checkpointed(&self) -> u64 {
        self.streams.get(super::stream_set::SAVED).tx.checkpointed
    }

    /// Master: the same for configuration changes.
    pub fn config_checkpointed(&self) -> u64 {
        self.streams.get(ACTIVE).tx.checkpointed
    }

    /// Master: where standby `slot`'s copy of the configuration is (`None`:
    /// no report from it, or not master).
    pub fn standby_config(&self, slot: Slot) -> Option<ConfigCopy> {
        if self.members.role != Role::Master {
            return None;
        }
        self.standbys.copy_state(slot, self.members.term.raw(), &self.streams, self.sender.backlog())
    }

    /// The redundancy part of `show switch`.
    pub fn switch_status(&self) -> SwitchStatus {
        SwitchStatus {
            slot: self.cfg.slot,
            role: self.members.role,
            term: self.members.term,
            priority: self.cfg.priority,
            health: self.cfg.health,
            master: self.members.master,
            backup: self.members.backup,
            sync: self.sync_state(),
            peers: self.members.peer_status(),
            errors: self.errors,
            slot_conflict: self.identity.current(&self.timers),
            last_split_brain: self.split_brain,
            split_brain_won: self.split_brain_won,
            standby_config: match self.members.role {
                Role::Master => {
                    self.standbys.copies(self.members.term.raw(), &self.streams, self.sender.backlog())
                }
                _ => [None; crate::role::MAX_NODES],
            },
            apps: self.apps.filter(|_| self.members.role == Role::Master),
            protocol: self.speaking,
            protocols: self.versions.status(),
        }
    }

    /// The schema version application `app`'s records arrive in here, as
    /// this node's last hello declared it: the registered one, or the
    /// release before's ([`AppRegistry::previous_schema`](crate::AppRegistry::previous_schema))
    /// while it is the backup of a master of that release. The host
    /// converts records of the previous version as it applies them.
    pub fn declared_schema(&self, app: AppId) -> u16 {
        let sid = app.index() + CONFIG_STREAMS;
        let older = self.members.role == Role::Backup && self.receiver.declared_older();
        self.streams.declared_schema(sid, older)
    }

    /// One row of `show checkpoint-data`: streams 0 and 1 are the
    /// configuration, then applications in registration order.
    pub fn stream_status(&self, sid: usize) -> Option<StreamStatus> {
        if sid >= self.streams.len() {
            return None;
        }
        let s = self.streams.get(sid);
        let (sent, total, phase, failure) = if self.members.role == Role::Master {
            (s.tx.bulk_sent, s.tx.bulk_total, s.tx.phase, s.tx.failure)
        } else {
            let phase = if s.rx.complete && s.rx.term == self.members.term.raw() {
                Phase::Synced
            } else if s.rx.in_bulk {
                Phase::Bulk
            } else if s.rx.resync && self.members.role == Role::Backup {
                Phase::Failed
            } else if self.members.role == Role::Backup {
                Phase::Waiting
            } else {
                Phase::Off
            };
            (s.rx.bulk_rcvd, s.rx.bulk_total, phase, s.rx.failure.filter(|_| s.rx.resync))
        };
        Some(StreamStatus {
            id: sid as u8,
            name: stream_name(self.streams.name(sid)),
            schema: self.streams.schema(sid),
            counters: s.counters,
            sent,
            total,
            phase,
            mismatch: s.tx.mismatch,
            failure,
            checkpointed: s.tx.checkpointed,
            changes: s.tx.changes,
            rebulks: s.tx.rebulks,
        })
    }

    /// All rows of `show checkpoint-data`.
    pub fn checkpoint_status(&self) -> impl Iterator<Item = StreamStatus> + '_ {
        self.streams.ids().filter_map(|i| self.stream_status(i))
    }

    /// The row of one process, by name, for `show checkpoint-data <process>`.
    pub fn process_status(&self, process: &str) -> Option<StreamStatus> {
        self.streams.find(process).and_then(|i| self.stream_status(i))
    }
}
