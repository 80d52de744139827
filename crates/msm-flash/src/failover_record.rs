//! One entry of a module's failover history, as the settings area keeps it
//! ([`NodeSettings::record_failover`](crate::NodeSettings::record_failover)):
//! when this module became master (or lost mastership to a split brain's
//! winner), why, in which term, and whether nothing checkpointed was lost.
//!
//! The byte layout is here, encode and decode side by side; the codes of
//! `cause` and `rule` belong to the node that writes them (the Linux runtime:
//! `docs/flash-format.md` lists them). A version other than
//! [`FailoverRecord::VERSION`] decodes to `None`: a newer build's record is
//! skipped, never misread.

/// Offsets of the fields (all integers little-endian).
mod at {
    pub const VERSION: usize = 0;
    pub const CAUSE: usize = 1;
    pub const RULE: usize = 2;
    pub const SLOT: usize = 3;
    pub const FLAGS: usize = 4;
    // 5..8 reserved, zero.
    pub const SEQ: usize = 8;
    pub const UNIX_MS: usize = 12;
    pub const TERM: usize = 20;
    pub const DISCARDED: usize = 28;
    pub const FAILOVERS: usize = 32;
    pub const END: usize = 36;
}

const HITLESS: u8 = 1;
const OWN_SAVED: u8 = 2;

/// One failover, as kept on flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FailoverRecord {
    /// Ordinal of this record on this module, from 1: the newest has the highest.
    pub seq: u32,
    /// Wall-clock time, milliseconds since the Unix epoch (0: the board has no clock).
    pub unix_ms: u64,
    /// Why (the writer's code).
    pub cause: u8,
    /// The split-brain rule that decided, or 0.
    pub rule: u8,
    /// The module that is master after it (slot index: 0 = A).
    pub slot: u8,
    /// The master's term after it (raw).
    pub term: u64,
    /// Nothing checkpointed was lost: the new master held every stream.
    pub hitless: bool,
    /// The new master ran its own saved configuration (not the old master's active one).
    pub own_saved: bool,
    /// Changes discarded (a split brain lost), saturated.
    pub discarded: u32,
    /// Failovers on this module so far, this one included (a record of an
    /// election at boot is not one, and carries the count before it).
    pub failovers: u32,
}

impl FailoverRecord {
    /// The layout's version.
    pub const VERSION: u8 = 1;
    /// Encoded length in bytes.
    pub const LEN: usize = at::END;

    /// The record's bytes.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[at::VERSION] = Self::VERSION;
        b[at::CAUSE] = self.cause;
        b[at::RULE] = self.rule;
        b[at::SLOT] = self.slot;
        b[at::FLAGS] = if self.hitless { HITLESS } else { 0 } | if self.own_saved { OWN_SAVED } else { 0 };
        b[at::SEQ..at::UNIX_MS].copy_from_slice(&self.seq.to_le_bytes());
        b[at::UNIX_MS..at::TERM].copy_from_slice(&self.unix_ms.to_le_bytes());
        b[at::TERM..at::DISCARDED].copy_from_slice(&self.term.to_le_bytes());
        b[at::DISCARDED..at::FAILOVERS].copy_from_slice(&self.discarded.to_le_bytes());
        b[at::FAILOVERS..at::END].copy_from_slice(&self.failovers.to_le_bytes());
        b
    }

    /// The record in `b`; `None` for another version.
    pub fn decode(b: &[u8; Self::LEN]) -> Option<Self> {
        if b[at::VERSION] != Self::VERSION {
            return None;
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| u64::from(u32_at(o)) | (u64::from(u32_at(o + 4)) << 32);
        Some(FailoverRecord {
            seq: u32_at(at::SEQ),
            unix_ms: u64_at(at::UNIX_MS),
            cause: b[at::CAUSE],
            rule: b[at::RULE],
            slot: b[at::SLOT],
            term: u64_at(at::TERM),
            hitless: b[at::FLAGS] & HITLESS != 0,
            own_saved: b[at::FLAGS] & OWN_SAVED != 0,
            discarded: u32_at(at::DISCARDED),
            failovers: u32_at(at::FAILOVERS),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_another_version_is_skipped() {
        let r = FailoverRecord {
            seq: 7,
            unix_ms: 1_796_000_000_123,
            cause: 2,
            rule: 5,
            slot: 1,
            term: (12 << 8) | 1,
            hitless: true,
            own_saved: false,
            discarded: 40_000,
            failovers: 3,
        };
        let mut b = r.encode();
        assert_eq!(FailoverRecord::decode(&b), Some(r));
        b[0] = 2;
        assert_eq!(FailoverRecord::decode(&b), None);
    }
}
