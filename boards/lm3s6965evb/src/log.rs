//! Logs through defmt: one frame per event, written to the host over
//! semihosting (`defmt-semihosting`; QEMU passes it to its standard output)
//! and decoded there against this ELF (`cargo xtask qemu`, `qemu-test` and
//! `tests/qemu_interop.rs` use `defmt-decoder`). Each frame carries a
//! millisecond timestamp; the decoded line is `[  seconds.millis] LEVEL text`,
//! which is what `tests/qemu_interop.rs` and the expected output read.
//!
//! The format strings are defmt's: interned in the ELF, never in flash as
//! text, and no `core::fmt` on the device.

use defmt_semihosting as _;

defmt::timestamp!("{=u64:ms}", crate::clock::now().as_millis());

/// `log!("fmt", args..)`: one event at info level (defmt format string).
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => { ::defmt::info!($($arg)*) };
}

/// A slot as the engine's `Display` writes it: `MSM-B`.
pub struct SlotName(pub msm_checkpoint::Slot);

impl defmt::Format for SlotName {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "MSM-{}", self.0.letter());
    }
}

/// A term as the engine's `Display` writes it: `3.B` (count, owner).
pub struct TermName(pub msm_checkpoint::Term);

impl defmt::Format for TermName {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self.0.owner() {
            Some(s) => defmt::write!(f, "{=u64}.{}", self.0.count(), s.letter()),
            None => defmt::write!(f, "-"),
        }
    }
}

/// The key frames are sent under, by fingerprint: `1a2b3c4d`, or `none`.
pub struct KeyName(pub Option<u32>);

impl defmt::Format for KeyName {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self.0 {
            Some(fp) => defmt::write!(f, "{=u32:08x}", fp),
            None => defmt::write!(f, "none (unauthenticated)"),
        }
    }
}
