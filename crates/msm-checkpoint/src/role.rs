//! Who is who in the chassis: slots, roles, terms and the election rank.

use core::fmt;

/// Maximum number of management modules in one chassis (slots A..D).
pub const MAX_NODES: usize = 4;

/// A management-module slot. Slot 0 is "A".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot(u8);

/// "MSM-A", as `Display` says it.
#[cfg(feature = "defmt")]
impl defmt::Format for Slot {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "MSM-{=char}", self.letter())
    }
}

impl Slot {
    /// The first MSM slot.
    pub const A: Slot = Slot(0);
    /// The second MSM slot.
    pub const B: Slot = Slot(1);

    /// `None` for an index outside the chassis.
    pub const fn new(index: u8) -> Option<Slot> {
        if (index as usize) < MAX_NODES { Some(Slot(index)) } else { None }
    }
    /// 0 for A, 1 for B, ...
    pub const fn index(self) -> usize {
        self.0 as usize
    }
    /// The slot number as the wire carries it.
    pub const fn raw(self) -> u8 {
        self.0
    }
    /// 'A', 'B', ...
    pub const fn letter(self) -> char {
        (b'A' + self.0) as char
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MSM-{}", self.letter())
    }
}

/// Node states as XOS names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Role {
    /// Booting: listening for a master, or electing one.
    Init,
    /// Runs the chassis and replicates to the backup.
    Master,
    /// Receives checkpoints and takes over when the master is lost.
    Backup,
    /// A third or fourth module: follows the master, holds no checkpointed state.
    Standby,
}

impl Role {
    /// The word `show switch` prints.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Init => "INIT",
            Role::Master => "MASTER",
            Role::Backup => "BACKUP",
            Role::Standby => "STANDBY",
        }
    }
    pub(crate) const fn to_wire(self) -> u8 {
        match self {
            Role::Init => 0,
            Role::Master => 1,
            Role::Backup => 2,
            Role::Standby => 3,
        }
    }
    pub(crate) const fn from_wire(v: u8) -> Option<Role> {
        match v {
            0 => Some(Role::Init),
            1 => Some(Role::Master),
            2 => Some(Role::Backup),
            3 => Some(Role::Standby),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mastership epoch. The low byte names the slot that claimed it, so two
/// modules can never claim the same term (invariant 5 by construction); the
/// high bits count changes of master. Zero means "no master yet". The low
/// byte holds `0xFF - slot`, so when two masters of the same count meet after
/// a partition, slot A's term is the higher one, as in the election rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Term(u64);

/// "3.A", as `Display` says it.
#[cfg(feature = "defmt")]
impl defmt::Format for Term {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self.owner() {
            Some(s) => defmt::write!(f, "{=u64}.{=char}", self.count(), s.letter()),
            None => defmt::write!(f, "-"),
        }
    }
}

impl Term {
    /// No master yet.
    pub const NONE: Term = Term(0);

    /// A term as the wire carries it.
    pub const fn from_raw(raw: u64) -> Term {
        Term(raw)
    }
    /// The term as the wire carries it.
    pub const fn raw(self) -> u64 {
        self.0
    }
    /// How many changes of master this term is.
    pub const fn count(self) -> u64 {
        self.0 >> 8
    }
    /// The slot that claimed the term.
    pub const fn owner(self) -> Option<Slot> {
        if self.0 == 0 { None } else { Slot::new(0xff - (self.0 & 0xff) as u8) }
    }
    /// The term `slot` claims when it becomes master after `self`; `None`
    /// when `self` is at [`MAX_TERM_COUNT`]: terms never wrap.
    pub const fn next(self, slot: Slot) -> Option<Term> {
        if self.count() >= MAX_TERM_COUNT {
            return None;
        }
        Some(Term(((self.count() + 1) << 8) | (0xff - slot.0) as u64))
    }
}

/// The highest term count. One takeover a millisecond would take 35 years
/// to reach it; a frame beyond it is refused, so `count + 1` never wraps.
pub const MAX_TERM_COUNT: u64 = 1 << 40;

/// How far the highest term a node knows may grow in one detection time.
/// Each takeover adds one and needs a detection time of silence (a
/// handover a drained backlog), so real terms grow far slower; a module
/// that missed takeovers (partitioned, blank) catches up this many counts a
/// detection time. A frame beyond is refused even when authenticated: a
/// faulty or hostile key holder climbs at most this fast, and the term
/// space lasts decades at the fastest heartbeat.
pub const MAX_TERM_JUMP: u64 = 16;

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.owner() {
            Some(s) => write!(f, "{}.{}", self.count(), s.letter()),
            None => f.write_str("-"),
        }
    }
}

/// Election rank: lower priority value wins, then better health, then the
/// lower slot (A before B). Smaller rank wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Rank {
    priority: u8,
    sickness: u8,
    slot: u8,
}

impl Rank {
    pub(crate) const fn new(priority: u8, health: u8, slot: Slot) -> Rank {
        Rank { priority, sickness: u8::MAX - health, slot: slot.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_of_different_slots_never_collide_and_increase() {
        let t1 = Term::NONE.next(Slot::A).unwrap();
        let t2 = t1.next(Slot::B).unwrap();
        let t2a = t1.next(Slot::A).unwrap();
        assert!(t2 > t1 && t2a > t1);
        assert_ne!(t2, t2a);
        assert_eq!(t2.owner(), Some(Slot::B));
        assert_eq!(t2.count(), 2);
        assert!(t2a > t2, "same count: slot A's term wins, as in the election");
    }

    #[test]
    fn a_term_at_its_maximum_has_no_next() {
        let last = Term::from_raw((MAX_TERM_COUNT << 8) | 0xFE);
        assert_eq!(last.next(Slot::A), None);
        let before = Term::from_raw(((MAX_TERM_COUNT - 1) << 8) | 0xFE);
        assert_eq!(before.next(Slot::A).map(Term::count), Some(MAX_TERM_COUNT));
        assert_eq!(Term::from_raw(u64::MAX).next(Slot::A), None, "the frame of the wrap attack");
    }

    #[test]
    fn rank_orders_priority_then_health_then_slot() {
        assert!(Rank::new(0, 10, Slot::B) < Rank::new(1, 99, Slot::A));
        assert!(Rank::new(1, 99, Slot::B) < Rank::new(1, 10, Slot::A));
        assert!(Rank::new(1, 10, Slot::A) < Rank::new(1, 10, Slot::B));
    }
}
