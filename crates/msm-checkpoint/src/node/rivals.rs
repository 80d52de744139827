//! Two masters meet (a partition healed, or a module elected itself alone):
//! which one stays is decided by what each holds, not by the term alone.
//! Only the master of the lower term judges, from the rival's heartbeat;
//! the rival of the higher term waits (it sends a heartbeat so the other
//! hears it). A master that stays claims a term above the rival's and names
//! the term it overrules, and the rival steps down to it without judging
//! again, so the two never take turns.
//!
//! What a master's heartbeat says for this: `base`, the term whose whole
//! state it took over when it became master (0: it took over none: elected
//! from its own flash, or a backup not in sync), `made`, the changes it
//! made as master since, and `acked`, how many of them a backup
//! acknowledged. The judging master also knows how many of its own changes
//! a backup acknowledged since it lost the rival (the fork: `ours.acked`).
//! The rules, in order (`SplitRule`):
//! 1. The rival overruled our term: we step down.
//! 2. The rival took over a whole state of our term or later (it descends
//!    from us): it holds everything we had when it took over. If it made no
//!    change since, we stay and it discards nothing. If our changes since the
//!    fork were acknowledged by a backup and none of its were, we stay: an
//!    acknowledged change is never discarded for unacknowledged ones.
//!    Otherwise it stays and ours since the fork are discarded (listed in the
//!    split-brain file; where both sides had a backup acknowledge changes,
//!    ours are lost, and the log says so).
//! 3. The rival took over no whole state of ours. Whichever took over the
//!    newer whole state (the higher `base`) holds what the other lacks and
//!    stays. With equal bases neither took over more than the other: we
//!    stay, unless we made no change and it made some.

use crate::status::SplitRule;

/// A master as a split brain sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Claim {
    pub term: u64,
    /// The term whose whole state it took over; 0: none.
    pub base: u64,
    /// Changes it made as master.
    pub made: u64,
    /// Changes a backup acknowledged: of the rival, among `made`; of the
    /// judging master, since it lost the rival as its backup.
    pub acked: u64,
    /// The rival's term it overruled in a split brain; 0: none.
    pub overrules: u64,
}

/// What the master of the lower term does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Claim a term above the rival's, naming it overruled.
    Stay(SplitRule),
    /// Step down and follow the rival.
    Yield(SplitRule),
}

/// `ours` is master of the lower term and hears `theirs`.
pub(crate) fn judge(ours: Claim, theirs: Claim) -> Verdict {
    if theirs.overrules != 0 && theirs.overrules == ours.term {
        return Verdict::Yield(SplitRule::Overruled);
    }
    if theirs.base >= ours.term {
        if theirs.made == 0 {
            return Verdict::Stay(SplitRule::RivalMadeNothing);
        }
        if ours.acked > 0 && theirs.acked == 0 {
            return Verdict::Stay(SplitRule::RivalUnacknowledged);
        }
        return Verdict::Yield(SplitRule::NewerLineage);
    }
    if theirs.base > ours.base {
        return Verdict::Yield(SplitRule::RivalHoldsNewerState);
    }
    if theirs.base == ours.base && ours.made == 0 && theirs.made > 0 {
        return Verdict::Yield(SplitRule::WeHeldNothing);
    }
    Verdict::Stay(SplitRule::RivalLacksOurState)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(term: u64, base: u64, made: u64) -> Claim {
        Claim { term, base, made, acked: 0, overrules: 0 }
    }

    #[test]
    fn the_side_with_the_data_stays() {
        // A (term 0x1FF) kept going through a partition; B took over A's whole
        // state (base 0x1FF) in 0x2FE.
        let a = claim(0x1FF, 0, 500);
        assert_eq!(judge(a, claim(0x2FE, 0x1FF, 40)), Verdict::Yield(SplitRule::NewerLineage));
        assert_eq!(judge(a, claim(0x2FE, 0x1FF, 0)), Verdict::Stay(SplitRule::RivalMadeNothing));
        // A kept a backup (a third module) that acknowledged its changes;
        // B's were acknowledged by none: A's stay.
        let a_acked = Claim { acked: 12, ..a };
        assert_eq!(judge(a_acked, claim(0x2FE, 0x1FF, 40)), Verdict::Stay(SplitRule::RivalUnacknowledged));
        let b_acked = Claim { acked: 3, ..claim(0x2FE, 0x1FF, 40) };
        assert_eq!(judge(a_acked, b_acked), Verdict::Yield(SplitRule::NewerLineage), "both: the newer stays");
        // B took over without a whole copy (a backup mid-bulk, or a module
        // that restarted and elected itself alone): A holds what it lacks.
        assert_eq!(judge(a, claim(0x2FE, 0, 40)), Verdict::Stay(SplitRule::RivalLacksOurState));
        // B took over a whole state, of an older term than A's: A took over
        // none, so B's lineage is the newer one.
        assert_eq!(judge(a, claim(0x2FE, 0x0FF, 40)), Verdict::Yield(SplitRule::RivalHoldsNewerState));
        // Found by the sweep (seed 43): C elected itself alone, holding
        // nothing (base 0), in 3.C; A took over B's whole state (base 2.B)
        // in 3.A. C, of the lower term, gives way: A holds the newer state.
        let c = claim(0x3FD, 0, 7);
        assert_eq!(judge(c, claim(0x3FF, 0x2FE, 12)), Verdict::Yield(SplitRule::RivalHoldsNewerState));
        // And A, if its term were the lower one, stays.
        let a3 = claim(0x3FF, 0x2FE, 12);
        assert_eq!(judge(a3, claim(0x4FD, 0, 7)), Verdict::Stay(SplitRule::RivalLacksOurState));
        // A master that holds nothing gives way to one that made changes.
        let empty = claim(0x1FE, 0, 0);
        assert_eq!(judge(empty, claim(0x1FF, 0, 3)), Verdict::Yield(SplitRule::WeHeldNothing));
        assert_eq!(judge(empty, claim(0x1FF, 0, 0)), Verdict::Stay(SplitRule::RivalLacksOurState));
    }

    #[test]
    fn an_overruled_master_steps_down_without_judging_again() {
        // A stayed and claimed 0x3FF over B's 0x2FE; B now holds the lower
        // term and must yield, whatever its own claim would say.
        let b = claim(0x2FE, 0, 40);
        let a = Claim { term: 0x3FF, base: 0, made: 500, acked: 0, overrules: 0x2FE };
        assert_eq!(judge(b, a), Verdict::Yield(SplitRule::Overruled));
        let other = Claim { overrules: 0x1FE, ..a };
        assert_eq!(judge(b, other), Verdict::Stay(SplitRule::RivalLacksOurState));
    }
}
