//! Why a module became master: the cause each takeover names.

/// Why a module became master ([`Event::Promoted`](crate::Event::Promoted)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TakeoverCause {
    /// `run msm-failover`: the master handed over (the operator's).
    Handover,
    /// The master was silent for the detection time on every path.
    MasterSilent,
    /// The master's new boot says it is master no more: it restarted (or
    /// stepped down) without a beat missed.
    MasterRestarted,
    /// The master's boot went silent while another module spoke in its slot.
    SlotConflict,
    /// Elected: no live module held a newer state or outranked this one.
    Elected,
}

impl TakeoverCause {
    /// Every cause, in the order of their codes (1..).
    pub const ALL: [TakeoverCause; 5] = [
        TakeoverCause::Handover,
        TakeoverCause::MasterSilent,
        TakeoverCause::MasterRestarted,
        TakeoverCause::SlotConflict,
        TakeoverCause::Elected,
    ];

    /// A short name for scripts and metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            TakeoverCause::Handover => "admin",
            TakeoverCause::MasterSilent => "peer-silent",
            TakeoverCause::MasterRestarted => "master-restarted",
            TakeoverCause::SlotConflict => "conflict",
            TakeoverCause::Elected => "elected",
        }
    }

    /// One phrase for `show switch` and the log.
    pub const fn as_str(self) -> &'static str {
        match self {
            TakeoverCause::Handover => "the master handed over (run msm-failover)",
            TakeoverCause::MasterSilent => {
                "the master's boot was silent for the detection time on every path"
            }
            TakeoverCause::MasterRestarted => "the master's boot says it is master no more",
            TakeoverCause::SlotConflict => {
                "the master's boot was silent for the detection time while another spoke in its slot"
            }
            TakeoverCause::Elected => "elected: no live module holds a newer state or outranks this one",
        }
    }

    /// Its code where a cause is stored; never 0.
    pub fn code(self) -> u8 {
        Self::ALL.iter().position(|c| *c == self).map_or(0, |i| i as u8 + 1)
    }

    /// The cause of `code`, if it is one.
    pub fn from_code(code: u8) -> Option<TakeoverCause> {
        Self::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }
}
