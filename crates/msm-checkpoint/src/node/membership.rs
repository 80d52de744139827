//! Who is who in the chassis: the peers this node hears, its own role and
//! term, the master it follows, the backup it chose, and the election.
//! Membership decides; the node applies each decision to the sender and the
//! receiver.

use core::cmp::Reverse;
use core::time::Duration;

use msm_time::Instant;

use super::config::Config;
use crate::error::FrameError;
use crate::role::{MAX_NODES, MAX_TERM_COUNT, MAX_TERM_JUMP, Rank, Role, Slot, Term};
use crate::status::PeerStatus;
use crate::wire::{DigestMark, Heartbeat, NO_SLOT};

/// A module as this node last heard it.
#[derive(Debug, Clone, Copy)]
struct Peer {
    known: bool,
    alive: bool,
    /// The boot heard; what is known of the peer belongs to it.
    incarnation: u32,
    role: Role,
    term: Term,
    priority: u8,
    health: u8,
    /// The term whose whole state it holds, as its heartbeat says.
    holds: u64,
    /// Fingerprints of the keys it holds (sending, other).
    keys: [u32; 2],
    /// Its last heartbeat, and the longest silence between two since it
    /// came up: how close the chassis came to a failover.
    last_heartbeat: Option<Instant>,
    max_gap: Duration,
}

impl Peer {
    const fn new() -> Self {
        Peer {
            known: false,
            alive: false,
            incarnation: 0,
            role: Role::Init,
            term: Term::NONE,
            priority: 0,
            health: 0,
            holds: 0,
            keys: [0; 2],
            last_heartbeat: None,
            max_gap: Duration::ZERO,
        }
    }
}

/// What a MASTER heartbeat from another module means for this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MasterVerdict {
    /// We are master and its term is higher: step down and follow it.
    StepDown,
    /// We are master and its term is not higher: it steps down when it
    /// hears our heartbeat, so send one now.
    Rival,
    /// Our master, in our term.
    Current,
    /// A master of a newer term (or the first one we hear): follow it.
    Follow,
    /// A master of an older term: refused.
    Stale,
}

/// The chassis as this node sees it.
#[derive(Debug)]
pub(crate) struct Membership {
    me: Slot,
    pub(crate) role: Role,
    /// The current master's term (ours when master).
    pub(crate) term: Term,
    /// The highest term seen on the backplane.
    pub(crate) max_term: Term,
    /// The highest term this node claimed (became master in).
    pub(crate) claimed: Term,
    pub(crate) master: Option<Slot>,
    /// The boot count of the master we follow: another one in its slot is a
    /// restart, or a second module claiming that slot.
    pub(crate) master_incarnation: u32,
    /// Master: the module chosen to receive checkpoints.
    pub(crate) backup: Option<Slot>,
    peers: [Peer; MAX_NODES],
    /// The count terms were known to have reached when the current
    /// detection time began, and when: frames may be at most
    /// `MAX_TERM_JUMP` beyond it within one.
    term_window: (u64, Option<Instant>),
    /// Terms went on at least this far (counts refused frames showed):
    /// only the admission window moves with it, never a term we claim.
    term_floor: u64,
    /// A module whose frames were refused for their term was heard until
    /// then: it is alive and we cannot tell what it holds, so no election
    /// is won meanwhile.
    ahead_until: Option<Instant>,
}

impl Membership {
    pub(crate) const fn new(me: Slot) -> Self {
        Membership {
            me,
            role: Role::Init,
            term: Term::NONE,
            max_term: Term::NONE,
            claimed: Term::NONE,
            master: None,
            master_incarnation: 0,
            backup: None,
            peers: [Peer::new(); MAX_NODES],
            term_window: (0, None),
            term_floor: 0,
            ahead_until: None,
        }
    }

    /// A frame of `from`'s boot `incarnation` in `term` decoded. True when
    /// the peer was not alive. A new boot is known only by its liveness
    /// until its heartbeat says more: the old boot's role, term and what it
    /// held are not the new one's.
    pub(crate) fn heard(&mut self, from: Slot, term: Term, incarnation: u32) -> bool {
        let p = &mut self.peers[from.index()];
        let was_alive = p.alive;
        if !was_alive || p.incarnation != incarnation {
            *p = Peer { known: true, incarnation, ..Peer::new() };
        }
        p.known = true;
        p.alive = true;
        if term > self.max_term {
            self.max_term = term;
        }
        !was_alive
    }

    /// Record what a heartbeat says of its sender; its role.
    pub(crate) fn heartbeat(&mut self, now: Instant, from: Slot, term: Term, hb: &Heartbeat) -> Role {
        let role = Role::from_wire(hb.role).unwrap_or(Role::Init);
        let p = &mut self.peers[from.index()];
        if let Some(last) = p.last_heartbeat {
            p.max_gap = p.max_gap.max(now.saturating_since(last));
        }
        p.last_heartbeat = Some(now);
        p.role = role;
        p.term = term;
        p.priority = hb.priority;
        p.health = hb.health;
        p.holds = hb.holds;
        p.keys = hb.keys;
        role
    }

    pub(crate) fn judge_master(&self, from: Slot, term: Term) -> MasterVerdict {
        match self.role {
            Role::Master if term > self.term => MasterVerdict::StepDown,
            Role::Master => MasterVerdict::Rival,
            _ if self.master == Some(from) && term == self.term => MasterVerdict::Current,
            _ if term > self.term || (self.role == Role::Init && term >= self.term) => MasterVerdict::Follow,
            _ => MasterVerdict::Stale,
        }
    }

    /// Follow `master` (boot count `incarnation`) in `term`, as a standby
    /// until it names us backup.
    /// Follow `master`. True when it is another boot of the module whose
    /// term we followed, claiming that term again (it restarted and heard
    /// no higher one): records of that term held here are not of its history.
    pub(crate) fn follow(&mut self, master: Slot, incarnation: u32, term: Term) -> bool {
        let reused = self.term == term && term != Term::NONE && self.master_incarnation != incarnation;
        self.master = Some(master);
        self.master_incarnation = incarnation;
        self.term = term;
        self.role = Role::Standby;
        reused
    }

    /// A frame only our master sends (hello ack, data, handover).
    pub(crate) fn check_from_master(&self, from: Slot, term: Term) -> Result<(), FrameError> {
        if term < self.term {
            return Err(FrameError::StaleTerm { got: term, ours: self.term });
        }
        if self.role == Role::Master || self.master != Some(from) || term != self.term {
            return Err(FrameError::Unexpected { from });
        }
        Ok(())
    }

    /// A frame only our backup sends (hello, acks, resync).
    pub(crate) fn check_from_backup(&self, from: Slot, term: Term) -> Result<(), FrameError> {
        if term < self.term {
            return Err(FrameError::StaleTerm { got: term, ours: self.term });
        }
        if self.role != Role::Master || term != self.term || self.backup != Some(from) {
            return Err(FrameError::Unexpected { from });
        }
        Ok(())
    }

    /// A frame only a standby sends (its mirror's report): as master in our
    /// term, from a live peer that is not our backup.
    pub(crate) fn check_from_standby(&self, from: Slot, term: Term) -> Result<(), FrameError> {
        if term < self.term {
            return Err(FrameError::StaleTerm { got: term, ours: self.term });
        }
        let live = self.is_alive(from);
        if self.role != Role::Master || term != self.term || self.backup == Some(from) || !live {
            return Err(FrameError::Unexpected { from });
        }
        Ok(())
    }

    /// What our heartbeat says: who we are, whom we chose, what we hold,
    /// and (master) the session and config position the sender and streams
    /// report. The caller adds the challenge, the echoes and the keys.
    pub(crate) fn heartbeat_of(
        &self,
        cfg: &Config,
        in_sync: bool,
        session: u32,
        config: DigestMark,
        holds: u64,
    ) -> Heartbeat {
        Heartbeat {
            role: self.role.to_wire(),
            priority: cfg.priority,
            health: cfg.health,
            backup: self.backup.map_or(NO_SLOT, |s| s.raw()),
            in_sync,
            session,
            incarnation: cfg.incarnation,
            config,
            holds,
            ..Heartbeat::default()
        }
    }

    /// The term we would claim; `None` at the maximum.
    pub(crate) fn next_term(&self) -> Option<Term> {
        self.max_term.next(self.me)
    }

    /// A frame's term is one a module could hold: not beyond the maximum,
    /// and not beyond what the terms we know may have grown to in this
    /// detection time. Refused further, the frame still teaches us that
    /// terms went on: the admission window's floor moves to the bound (a
    /// module that missed takeovers catches up `MAX_TERM_JUMP` counts a
    /// detection time), but no term we claim does (so frames refused never
    /// inflate the chassis' terms), and no election is won while such a
    /// module is heard (it is alive; what it holds we cannot tell yet).
    pub(crate) fn admit_term(&mut self, now: Instant, detect: Duration, got: Term) -> Result<(), FrameError> {
        let ours = self.max_term;
        if got.count() > MAX_TERM_COUNT {
            return Err(FrameError::TermOutOfRange { got, ours });
        }
        let known = self.max_term.count().max(self.term_floor);
        let (base, since) = &mut self.term_window;
        if since.is_none_or(|t| now >= t + detect) {
            *base = known;
            *since = Some(now);
        }
        let limit = base.saturating_add(MAX_TERM_JUMP).min(MAX_TERM_COUNT);
        if got.count() <= limit {
            return Ok(());
        }
        self.term_floor = self.term_floor.max(limit);
        self.ahead_until = Some(now + detect);
        Err(FrameError::TermOutOfRange { got, ours })
    }

    /// Become master in `term`, from [`next_term`](Self::next_term).
    pub(crate) fn claim(&mut self, term: Term) -> Term {
        self.term = term;
        self.max_term = term;
        self.claimed = term;
        self.role = Role::Master;
        self.master = Some(self.me);
        self.backup = None;
        term
    }

    /// Stay master in `term`, a term above a rival's (a split brain we
    /// won); the backup chosen stays chosen.
    pub(crate) fn reclaim(&mut self, term: Term) {
        self.term = term;
        self.max_term = term;
        self.claimed = term;
    }

    /// Back to INIT: the master is gone and we were not its backup.
    pub(crate) fn orphan(&mut self) {
        self.role = Role::Init;
        self.master = None;
    }

    /// Our master handed over to us (`run msm-failover`): it steps down as
    /// soon as it hears us, holding what we hold, so it is no longer a
    /// master to pass over but the first candidate for our backup (its
    /// heartbeat said it holds its whole state). Its next heartbeat, as
    /// master or follower, says again what it is.
    pub(crate) fn handed_over(&mut self, from: Slot) {
        let p = &mut self.peers[from.index()];
        if p.role == Role::Master {
            p.role = Role::Init;
        }
    }

    pub(crate) fn is_alive(&self, slot: Slot) -> bool {
        self.peers[slot.index()].alive
    }

    pub(crate) fn lost(&mut self, slot: Slot) {
        self.peers[slot.index()].alive = false;
    }

    /// The best module to be master or backup besides us: alive (heard in
    /// authenticated frames of our protocol), not itself a master; one that
    /// holds the newest whole state first, then the best rank. The one
    /// candidate filter.
    fn best_candidate(&self) -> Option<(Reverse<u64>, Rank, Slot)> {
        self.peers
            .iter()
            .zip((0..MAX_NODES as u8).filter_map(Slot::new))
            .filter(|(p, _)| p.alive && p.role != Role::Master)
            .map(|(p, s)| (Reverse(p.holds), Rank::new(p.priority, p.health, s), s))
            .min()
    }

    /// INIT after a silent detection interval: do we outrank every
    /// candidate? A module that holds a newer whole state than `holds` (a
    /// backup in sync whose master is gone) always does: mastership follows
    /// the data, and rank decides only between equals.
    pub(crate) fn wins_election(&self, now: Instant, priority: u8, health: u8, holds: u64) -> bool {
        if self.ahead_until.is_some_and(|t| now < t) {
            return false;
        }
        let me = (Reverse(holds), Rank::new(priority, health, self.me));
        self.best_candidate().is_none_or(|(h, r, _)| me < (h, r))
    }

    /// A live peer that does not hold the key with fingerprint `fp`.
    pub(crate) fn peer_lacking_key(&self, fp: u32) -> Option<Slot> {
        self.live_peers().find(|(p, _)| !p.keys.contains(&fp)).map(|(_, s)| s)
    }

    /// A live peer that sends under the key with fingerprint `fp`.
    pub(crate) fn peer_sending_under(&self, fp: u32) -> Option<Slot> {
        self.live_peers().find(|(p, _)| p.keys[0] == fp).map(|(_, s)| s)
    }

    /// Live peers whose heartbeat we have (their keys are known).
    fn live_peers(&self) -> impl Iterator<Item = (&Peer, Slot)> {
        self.peers
            .iter()
            .zip((0..MAX_NODES as u8).filter_map(Slot::new))
            .filter(move |(p, s)| *s != self.me && p.alive && p.last_heartbeat.is_some())
    }

    /// Master: a better backup than the current one, if the current one is
    /// gone and another candidate is alive.
    pub(crate) fn better_backup(&self) -> Option<Slot> {
        if self.role != Role::Master || self.backup.is_some_and(|b| self.is_alive(b)) {
            return None;
        }
        self.best_candidate().map(|(_, _, s)| s).filter(|&s| Some(s) != self.backup)
    }

    /// Every module ever heard, for `show switch`.
    pub(crate) fn peer_status(&self) -> [Option<PeerStatus>; MAX_NODES] {
        let mut out = [None; MAX_NODES];
        for ((o, p), slot) in out.iter_mut().zip(&self.peers).zip((0..MAX_NODES as u8).filter_map(Slot::new))
        {
            if p.known {
                *o = Some(PeerStatus {
                    slot,
                    alive: p.alive,
                    role: p.role,
                    term: p.term,
                    priority: p.priority,
                    health: p.health,
                    max_heartbeat_gap: p.max_gap,
                    keys: p.keys,
                    holds: Term::from_raw(p.holds),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::DigestMark;

    fn hb(role: Role, priority: u8, health: u8) -> Heartbeat {
        Heartbeat {
            role: role.to_wire(),
            priority,
            health,
            backup: 0xFF,
            incarnation: 1,
            config: DigestMark::default(),
            ..Heartbeat::default()
        }
    }

    fn slot(i: u8) -> Slot {
        Slot::new(i).unwrap()
    }

    #[test]
    fn candidates_exclude_dead_masters() {
        let mut m = Membership::new(Slot::A);
        m.heard(slot(1), Term::NONE, 1);
        m.heartbeat(Instant::ZERO, slot(1), Term::NONE, &hb(Role::Master, 0, 100));
        m.heard(slot(2), Term::NONE, 1);
        m.heartbeat(Instant::ZERO, slot(2), Term::NONE, &hb(Role::Init, 5, 100));
        assert_eq!(m.best_candidate().map(|c| c.2), Some(slot(2)), "B is a master");
        assert!(m.wins_election(Instant::ZERO, 5, 100, 0), "equal rank: the lower slot wins");
        assert!(!m.wins_election(Instant::ZERO, 6, 100, 0));
        m.lost(slot(2));
        assert_eq!(m.best_candidate(), None);
        assert!(m.wins_election(Instant::ZERO, 255, 0, 0));
    }

    #[test]
    fn terms_grow_at_a_bounded_pace_whatever_a_module_sends() {
        const D: Duration = Duration::from_millis(30);
        let at = Instant::from_millis;
        let mut m = Membership::new(Slot::B);
        let term = |count: u64| Term::from_raw(count << 8 | 0xFF);
        let huge = Term::from_raw(u64::MAX);
        assert!(matches!(m.admit_term(at(0), D, huge), Err(FrameError::TermOutOfRange { .. })));
        // A blank module takes a chassis' term a few counts on at once...
        assert_eq!(m.admit_term(at(0), D, term(3)), Ok(()));
        m.heard(Slot::A, term(3), 1);
        assert_eq!(m.admit_term(at(1), D, term(MAX_TERM_JUMP)), Ok(()));
        // ...but a frame near the maximum moves no term it could claim.
        let far = term(MAX_TERM_COUNT - 5);
        assert!(matches!(m.admit_term(at(2), D, far), Err(FrameError::TermOutOfRange { .. })));
        assert_eq!(m.max_term.count(), 3, "refused frames never raise a term we claim");
        assert!(!m.wins_election(at(3), 0, 255, u64::MAX), "a module ahead of us is alive: no election");
        assert!(m.wins_election(at(40), 0, 255, 0), "until it falls silent");
        // An insider climbing frame by frame gets MAX_TERM_JUMP a detection time.
        for i in 0..1000u64 {
            let t = term(m.max_term.count().max(m.term_floor) + MAX_TERM_JUMP);
            if m.admit_term(at(100 + i), D, t).is_ok() {
                m.heard(Slot::A, t, 1);
            }
        }
        let climbed = m.max_term.count();
        // 1000 ms: at most 34 detection times began.
        assert!(climbed <= MAX_TERM_JUMP * 35, "climbed to {climbed}");
        // A module that missed many takeovers catches up, a bound a detection time.
        let mut late = Membership::new(slot(2));
        late.heard(Slot::A, term(5), 1);
        let now = term(500);
        let mut t = 0;
        while late.admit_term(at(t), D, now).is_err() {
            t += 30;
        }
        assert!(t <= 31 * 30, "caught up after {t} ms");
    }

    #[test]
    fn backup_choice_keeps_a_live_backup_and_replaces_a_lost_one() {
        let mut m = Membership::new(Slot::A);
        assert_eq!(m.better_backup(), None, "only a master chooses");
        m.claim(m.next_term().unwrap());
        for s in [slot(1), slot(2)] {
            m.heard(s, Term::NONE, 1);
            m.heartbeat(Instant::ZERO, s, Term::NONE, &hb(Role::Standby, 0, 100));
        }
        assert_eq!(m.better_backup(), Some(slot(1)));
        m.backup = Some(slot(1));
        assert_eq!(m.better_backup(), None);
        m.lost(slot(1));
        assert_eq!(m.better_backup(), Some(slot(2)));
    }

    #[test]
    fn verdicts_on_master_heartbeats() {
        let mut m = Membership::new(Slot::B);
        let t1 = Term::NONE.next(Slot::A).unwrap();
        assert_eq!(m.judge_master(Slot::A, Term::NONE), MasterVerdict::Follow, "INIT follows any master");
        m.heard(Slot::A, t1, 1);
        m.follow(Slot::A, 1, t1);
        assert_eq!(m.judge_master(Slot::A, t1), MasterVerdict::Current);
        assert_eq!(m.judge_master(Slot::A, Term::NONE), MasterVerdict::Stale);
        let t2 = m.claim(m.next_term().unwrap());
        assert_eq!(t2, t1.next(Slot::B).unwrap());
        assert_eq!(m.judge_master(Slot::A, t1), MasterVerdict::Rival);
        assert_eq!(m.judge_master(Slot::A, t2.next(Slot::A).unwrap()), MasterVerdict::StepDown);
    }
}
