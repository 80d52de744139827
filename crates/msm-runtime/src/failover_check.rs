//! The check before `run msm-failover`, as ExtremeXOS checks before a
//! hitless failover: allow, allow with a named loss, or refuse, each with
//! what decides (`run msm-failover check` asks it alone; `run msm-failover`
//! runs it first and needs `force` to accept a loss).
//!
//! - **Refuse**: this module is not master, there is no backup, or the
//!   backup is lost or restarting: nothing could take over.
//! - **Allow with a loss**: the backup lacks some state, named per stream:
//!   an application it has not (or has in another schema version), a
//!   stream that failed on it, a bulk not finished. After the failover
//!   that state starts from what the new master holds.
//! - **Allow**: every stream is in sync; the backup's release and protocol
//!   version are named (a backup of another release is compatible when it
//!   is heard at all: every frame type of a handover is in both versions).

use msm_checkpoint::{Phase, Role, Slot, StreamStatus, SwitchStatus, SyncState};
use msm_control::{CheckReason, FailoverCheck};

/// The verdict of the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    AllowWithLoss,
    Refuse,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::AllowWithLoss => "allow-with-loss",
            Verdict::Refuse => "refuse",
        }
    }
}

fn reason(what: impl Into<String>, detail: impl Into<String>) -> CheckReason {
    CheckReason { what: what.into(), detail: detail.into() }
}

/// Judge a failover from this module's `status` and its `streams`.
pub fn check(status: &SwitchStatus, streams: impl Iterator<Item = StreamStatus>) -> (Verdict, FailoverCheck) {
    let refuse = |what: &str, detail: String, backup: Option<Slot>| {
        let answer = FailoverCheck {
            verdict: Verdict::Refuse.as_str().into(),
            backup: backup.map(|b| b.letter().to_string()),
            backup_release: None,
            reasons: vec![reason(what, detail)],
        };
        (Verdict::Refuse, answer)
    };
    if status.role != Role::Master {
        let master = status.master.map_or("the master".to_string(), |m| m.to_string());
        return refuse("role", format!("this module is {}: run it on {master}", status.role), None);
    }
    let Some(backup) = status.backup else {
        return refuse("backup", "there is no backup to take over".into(), None);
    };
    match status.sync {
        SyncState::NoBackup | SyncState::BackupLost | SyncState::BackupRestarting => {
            return refuse("backup", format!("{backup}: {}", status.sync), Some(backup));
        }
        _ => {}
    }
    let mut losses = Vec::new();
    for s in streams {
        let name = s.name.as_str();
        if let Some(m) = s.mismatch {
            let detail = match m.theirs {
                Some(theirs) => format!(
                    "schema version {} here, {theirs} on {backup}: its state is not on the backup, which starts it from its own",
                    m.ours
                ),
                None => format!("{backup} does not run it: its state is not on the backup"),
            };
            losses.push(reason(name, detail));
        } else if s.phase == Phase::Failed {
            losses
                .push(reason(name, format!("failed on {backup}, waiting for a new bulk: not on the backup")));
        } else if s.phase != Phase::Synced {
            losses.push(reason(
                name,
                format!("bulk to {backup} {}% done: the backup holds part of its state", s.percent()),
            ));
        }
    }
    let peer = status.protocols[backup.index()];
    let release = crate::release::describe(peer);
    let (verdict, reasons) = if losses.is_empty() {
        let note = format!(
            "{backup} runs {release}: every stream in sync, every frame type of a handover understood"
        );
        (Verdict::Allow, vec![reason("backup", note)])
    } else {
        (Verdict::AllowWithLoss, losses)
    };
    let answer = FailoverCheck {
        verdict: verdict.as_str().into(),
        backup: Some(backup.letter().to_string()),
        backup_release: Some(release),
        reasons,
    };
    (verdict, answer)
}

/// The check as the operator reads it.
pub fn render(c: &FailoverCheck) -> String {
    use std::fmt::Write;
    let to = c.backup.as_deref().map(|b| format!(" to MSM-{b}")).unwrap_or_default();
    let mut t = format!("Failover{to}: {}\n", c.verdict);
    for r in &c.reasons {
        let _ = writeln!(t, "  {}: {}", r.what, r.detail);
    }
    t
}
