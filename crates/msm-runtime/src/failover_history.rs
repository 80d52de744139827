//! Why and when this module became master (`show failover history`, the
//! count and the newest in `show switch`), kept in the settings area so it
//! survives a restart: each takeover (the operator's handover, the master
//! silent, restarted or replaced in its slot, an election) and each split
//! brain, won or lost, with the wall-clock time, the module master after it,
//! its term, and whether nothing checkpointed was lost.
//!
//! The record's bytes are `msm_flash::FailoverRecord`'s; the codes of its
//! `cause` and `rule` are the engine's ([`TakeoverCause::code`],
//! [`SplitRule::code`]) and the two below (docs/flash-format.md).

use msm_checkpoint::{ConfigChoice, Event, Slot, SplitRule, TakeoverCause, Term};
use msm_control::{Failover, FailoverHistory};
use msm_flash::{FailoverRecord, HISTORY};

/// `cause` of a split brain this module won (it stayed master).
const SPLIT_BRAIN_WON: u8 = 16;
/// `cause` of a split brain this module lost (it stepped down to the winner).
const SPLIT_BRAIN_LOST: u8 = 17;

/// The history as this module holds it, newest first.
#[derive(Debug, Default)]
pub struct History {
    entries: Vec<FailoverRecord>,
    /// Failovers recorded since this process started, by cause (as a
    /// Prometheus counter: it starts again with the process).
    since_start: std::collections::BTreeMap<String, u64>,
}

impl History {
    /// The history read from flash (newest first).
    pub fn load(entries: Vec<FailoverRecord>) -> History {
        History { entries, since_start: Default::default() }
    }

    /// Failovers (and elections) recorded since this process started, by cause.
    pub fn since_start(&self) -> &std::collections::BTreeMap<String, u64> {
        &self.since_start
    }

    /// Failovers on this module so far.
    pub fn failovers(&self) -> u32 {
        self.entries.first().map_or(0, |r| r.failovers)
    }

    /// The newest entry.
    pub fn last(&self) -> Option<Failover> {
        self.entries.first().map(describe)
    }

    /// The record `ev` makes on module `own` at `unix_ms`, if it is one the
    /// history keeps (a takeover or a split brain).
    pub fn record_of(&self, own: Slot, ev: &Event, unix_ms: u64) -> Option<FailoverRecord> {
        let newest = self.entries.first().copied().unwrap_or_default();
        let mut r = FailoverRecord {
            seq: newest.seq.wrapping_add(1).max(1),
            unix_ms,
            slot: own.index() as u8,
            failovers: newest.failovers.saturating_add(1),
            ..FailoverRecord::default()
        };
        match *ev {
            Event::Promoted { term, config, whole, cause, .. } => {
                r.cause = cause.code();
                r.term = term.raw();
                r.hitless = whole;
                r.own_saved = config == ConfigChoice::OwnSaved;
                if cause == TakeoverCause::Elected {
                    r.failovers = newest.failovers;
                }
            }
            Event::SplitBrainWon { term, rule, .. } => {
                (r.cause, r.rule, r.term, r.hitless) = (SPLIT_BRAIN_WON, rule.code(), term.raw(), true);
            }
            Event::SplitBrain { winner, winner_term, discarded, rule, .. } => {
                r.cause = SPLIT_BRAIN_LOST;
                r.rule = rule.code();
                r.slot = winner.index() as u8;
                r.term = winner_term.raw();
                r.discarded = u32::try_from(discarded).unwrap_or(u32::MAX);
                r.hitless = discarded == 0;
            }
            _ => return None,
        }
        Some(r)
    }

    /// Take `r` as the newest entry (the ring keeps [`HISTORY`]).
    pub fn push(&mut self, r: FailoverRecord) {
        *self.since_start.entry(cause(&r).0).or_default() += 1;
        self.entries.insert(0, r);
        self.entries.truncate(HISTORY);
    }

    /// `show failover history`.
    pub fn answer(&self) -> FailoverHistory {
        FailoverHistory { failovers: self.failovers(), entries: self.entries.iter().map(describe).collect() }
    }
}

/// A record's cause as scripts and metrics name it, and a split brain's
/// outcome for this module ("won", "lost").
fn cause(r: &FailoverRecord) -> (String, Option<&'static str>) {
    match (TakeoverCause::from_code(r.cause), r.cause) {
        (Some(c), _) => (c.name().to_string(), None),
        (None, SPLIT_BRAIN_WON) => ("split-brain".to_string(), Some("won")),
        (None, SPLIT_BRAIN_LOST) => ("split-brain".to_string(), Some("lost")),
        (None, other) => (format!("cause {other}"), None),
    }
}

/// One record as the operator reads it.
pub fn describe(r: &FailoverRecord) -> Failover {
    let takeover = TakeoverCause::from_code(r.cause);
    let rule = SplitRule::from_code(r.rule);
    let (cause, outcome) = cause(r);
    let detail = match (takeover, rule, outcome) {
        (Some(c), _, _) => c.as_str().to_string(),
        (None, Some(rule), Some("won")) => format!("stayed master: {}", rule.as_str()),
        (None, Some(rule), _) => format!("stepped down to the winner: {}", rule.as_str()),
        _ => "-".to_string(),
    };
    let time = if r.unix_ms == 0 {
        "-".to_string()
    } else {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.unix_ms);
        humantime::format_rfc3339_millis(at).to_string()
    };
    Failover {
        seq: r.seq,
        time,
        unix_ms: r.unix_ms,
        cause,
        detail,
        module: Slot::new(r.slot).map_or_else(|| format!("slot {}", r.slot), |s| s.letter().to_string()),
        term: Term::from_raw(r.term).to_string(),
        hitless: r.hitless,
        config: takeover.map(|_| if r.own_saved { "own saved" } else { "master's active" }.to_string()),
        outcome: outcome.map(str::to_string),
        discarded: r.discarded,
    }
}

/// The one-line form: "2026-12-08T01:02:03.456Z MSM-B term 4.B peer-silent, hitless".
pub fn line(f: &Failover) -> String {
    let how = if f.hitless { "hitless" } else { "not hitless" };
    let outcome = f.outcome.as_deref().map(|o| format!(" {o}")).unwrap_or_default();
    format!("{} MSM-{} term {} {}{outcome}, {how}", f.time, f.module, f.term, f.cause)
}

/// `show failover history` as text.
pub fn render(h: &FailoverHistory) -> String {
    use std::fmt::Write;
    let mut t = format!("Failovers: {} (elections at boot not counted)\n", h.failovers);
    if h.entries.is_empty() {
        t.push_str("No failover recorded on this module.\n");
    }
    for f in &h.entries {
        let _ = writeln!(t, "#{:<4} {}", f.seq, line(f));
        let _ = writeln!(t, "      {}", f.detail);
        if let Some(c) = &f.config {
            let _ = writeln!(t, "      configuration: {c}");
        }
        if f.discarded > 0 {
            let _ = writeln!(t, "      {} changes discarded", f.discarded);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use msm_checkpoint::AppsFrom;

    use super::*;

    fn term(n: u64, s: Slot) -> Term {
        let mut t = Term::NONE;
        for _ in 0..n {
            t = t.next(s).unwrap();
        }
        t
    }

    /// Each kind of event makes its record; elections are kept but not
    /// counted as failovers; the ring keeps the newest.
    #[test]
    fn takeovers_and_split_brains_are_recorded_with_their_cause() {
        let mut h = History::default();
        let promoted = |cause, whole| Event::Promoted {
            term: term(1, Slot::B),
            config: ConfigChoice::MastersActive,
            in_sync: whole,
            whole,
            apps: AppsFrom::Checkpointed,
            cause,
        };
        let elected = h.record_of(Slot::B, &promoted(TakeoverCause::Elected, false), 5).unwrap();
        assert_eq!((elected.seq, elected.failovers), (1, 0));
        h.push(elected);
        let silent = h.record_of(Slot::B, &promoted(TakeoverCause::MasterSilent, true), 6).unwrap();
        assert_eq!((silent.seq, silent.failovers, silent.hitless), (2, 1, true));
        h.push(silent);
        let lost = Event::SplitBrain {
            winner: Slot::A,
            winner_term: term(3, Slot::A),
            our_term: term(1, Slot::B),
            discarded: 12,
            rule: SplitRule::NewerLineage,
        };
        let r = h.record_of(Slot::B, &lost, 7).unwrap();
        h.push(r);
        let f = h.last().unwrap();
        assert_eq!(
            (f.cause.as_str(), f.outcome.as_deref(), f.module.as_str()),
            ("split-brain", Some("lost"), "A")
        );
        assert_eq!((f.discarded, f.hitless, f.config.as_deref()), (12, false, None));
        assert!(f.detail.contains(SplitRule::NewerLineage.as_str()), "{}", f.detail);
        assert_eq!(h.failovers(), 2);
        assert!(h.record_of(Slot::B, &Event::InSync(true), 8).is_none());
        for i in 0..20 {
            let r = h.record_of(Slot::B, &promoted(TakeoverCause::Handover, true), 10 + i).unwrap();
            h.push(r);
        }
        let a = h.answer();
        assert_eq!((a.entries.len(), a.failovers, a.entries[0].seq), (HISTORY, 22, 23));
        assert_eq!(a.entries[0].cause, "admin");
        let counts: Vec<(&str, u64)> = h.since_start().iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(counts, [("admin", 20), ("elected", 1), ("peer-silent", 1), ("split-brain", 1)]);
        assert!(render(&a).contains("Failovers: 22"), "{}", render(&a));
    }
}
