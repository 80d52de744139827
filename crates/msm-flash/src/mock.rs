//! A NOR flash in RAM with the real write rules, wear counters and seeded power cuts (feature
//! `mock`), for the tests of every crate. No `std`: the caller provides the memory, for example
//! arrays, `&mut [u8]` or (in std tests) `Vec`s.
//!
//! Rules, as on real NOR flash:
//! - `erase` sets a whole block to 0xFF and counts one erase of that block;
//! - `write` may only clear bits: a write that would turn a 0 bit into 1 is refused with
//!   [`MockError::WouldSetBits`] and changes nothing; in strict mode (the default) a write into a
//!   `WRITE_SIZE` word that is not fully erased is refused too ([`MockError::AlreadyWritten`]),
//!   since `embedded-storage` forbids writing a word twice;
//! - `WRITE_SIZE` and `ERASE_SIZE` are const parameters; offsets and lengths must be aligned.
//!
//! Power cuts: [`MockFlash::cut_after`]`(n, seed)` lets `n` more *units* complete (one unit per
//! byte programmed, one per block erased) and tears the next one: a torn byte gets a random part
//! of its 0 bits programmed, a torn erase sets random bits of the block to 1. From then on every
//! operation fails with [`MockError::PowerCut`] until [`MockFlash::reboot`], which keeps the
//! contents. The randomness comes from `seed` only, so a run is replayable.

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash, check_erase, check_read, check_write,
};

use crate::durable::Durable;

/// Errors of [`MockFlash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum MockError {
    /// Offset or length not aligned to `WRITE_SIZE` / `ERASE_SIZE`.
    NotAligned,
    /// Outside the flash.
    OutOfBounds,
    /// The write would set a 0 bit to 1 at this offset (NOR can only clear bits).
    WouldSetBits {
        /// Device offset of the first offending byte.
        offset: u32,
    },
    /// Strict mode: the write targets a word that is not erased (a word may be written once).
    AlreadyWritten {
        /// Device offset of the word.
        offset: u32,
    },
    /// The power is cut: nothing works until [`MockFlash::reboot`].
    PowerCut,
    /// Memory and counter buffers do not match the geometry.
    BadGeometry,
}

impl NorFlashError for MockError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::NotAligned => NorFlashErrorKind::NotAligned,
            Self::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            _ => NorFlashErrorKind::Other,
        }
    }
}

impl From<NorFlashErrorKind> for MockError {
    fn from(kind: NorFlashErrorKind) -> Self {
        match kind {
            NorFlashErrorKind::NotAligned => Self::NotAligned,
            _ => Self::OutOfBounds,
        }
    }
}

/// Counters since creation or [`MockFlash::reset_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MockStats {
    /// Bytes passed to successful (or torn) `write`s.
    pub bytes_programmed: u64,
    /// `write` calls that programmed something.
    pub program_ops: u64,
    /// Blocks erased.
    pub erases: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// `sync` calls.
    pub syncs: u64,
    /// Power-cut units consumed: bytes programmed + blocks erased.
    pub units: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    Off,
    Armed { remaining: u64, rng: u64 },
    Down,
}

/// NOR flash in RAM; see the module docs. `M` holds the contents (`len` a multiple of `ERASE`),
/// `C` one erase counter per block.
#[derive(Debug)]
pub struct MockFlash<M, C, const WRITE: usize, const ERASE: usize> {
    mem: M,
    counts: C,
    stats: MockStats,
    cut: Cut,
    strict: bool,
}

impl<M, C, const WRITE: usize, const ERASE: usize> MockFlash<M, C, WRITE, ERASE>
where
    M: AsRef<[u8]> + AsMut<[u8]>,
    C: AsRef<[u32]> + AsMut<[u32]>,
{
    /// A flash holding `mem` as it is (for example a snapshot of another one), with `counts` as
    /// its per-block erase counters. Fails unless `mem.len()` is a non-zero multiple of `ERASE`,
    /// `ERASE` a multiple of `WRITE`, and `counts` has one entry per block.
    pub fn new(mem: M, counts: C) -> Result<Self, MockError> {
        let len = mem.as_ref().len();
        if WRITE == 0
            || ERASE == 0
            || !ERASE.is_multiple_of(WRITE)
            || len == 0
            || len % ERASE != 0
            || u32::try_from(len).is_err()
            || counts.as_ref().len() != len / ERASE
        {
            return Err(MockError::BadGeometry);
        }
        Ok(Self { mem, counts, stats: MockStats::default(), cut: Cut::Off, strict: true })
    }

    /// Like [`new`](Self::new), with every byte erased (0xFF) and the counters at zero.
    pub fn new_erased(mut mem: M, mut counts: C) -> Result<Self, MockError> {
        mem.as_mut().fill(0xFF);
        counts.as_mut().fill(0);
        Self::new(mem, counts)
    }

    /// Strict mode (default on): refuse a write into a word that is not fully erased.
    pub fn set_strict(&mut self, strict: bool) {
        self.strict = strict;
    }

    /// The contents, read directly (no counters, works during a cut).
    pub fn contents(&self) -> &[u8] {
        self.mem.as_ref()
    }

    /// The contents for direct modification (corruption injection): no NOR rules, no counters.
    pub fn contents_mut(&mut self) -> &mut [u8] {
        self.mem.as_mut()
    }

    /// Erase count of each block.
    pub fn erase_counts(&self) -> &[u32] {
        self.counts.as_ref()
    }

    /// Counters of the operations.
    pub fn stats(&self) -> MockStats {
        self.stats
    }

    /// Zero the operation counters (not the per-block erase counts).
    pub fn reset_stats(&mut self) {
        self.stats = MockStats::default();
    }

    /// Arm a power cut: `units` more units (bytes programmed, blocks erased) complete, the next
    /// one is torn using randomness from `seed`, then everything fails until [`reboot`](Self::reboot).
    pub fn cut_after(&mut self, units: u64, seed: u64) {
        // splitmix64 must not start from 0 forever; any seed works after this mix.
        self.cut = Cut::Armed { remaining: units, rng: seed ^ 0x9E37_79B9_7F4A_7C15 };
    }

    /// Disarm a pending cut (no effect once the power is down).
    pub fn disarm(&mut self) {
        if let Cut::Armed { .. } = self.cut {
            self.cut = Cut::Off;
        }
    }

    /// True after a cut until [`reboot`](Self::reboot).
    pub fn is_down(&self) -> bool {
        self.cut == Cut::Down
    }

    /// Power back on: operations work again, contents are kept, no cut is armed.
    pub fn reboot(&mut self) {
        self.cut = Cut::Off;
    }

    /// Memory and counters back.
    pub fn into_parts(self) -> (M, C) {
        (self.mem, self.counts)
    }

    fn up(&self) -> Result<(), MockError> {
        if self.cut == Cut::Down { Err(MockError::PowerCut) } else { Ok(()) }
    }

    /// Take one unit; `Some(rng)` if this unit is the torn one.
    fn take_unit(&mut self) -> Option<u64> {
        self.stats.units += 1;
        match &mut self.cut {
            Cut::Armed { remaining, rng } => {
                if *remaining == 0 {
                    let r = splitmix64(rng);
                    self.cut = Cut::Down;
                    Some(r)
                } else {
                    *remaining -= 1;
                    None
                }
            }
            _ => None,
        }
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl<M, C, const WRITE: usize, const ERASE: usize> ErrorType for MockFlash<M, C, WRITE, ERASE> {
    type Error = MockError;
}

impl<M, C, const WRITE: usize, const ERASE: usize> ReadNorFlash for MockFlash<M, C, WRITE, ERASE>
where
    M: AsRef<[u8]> + AsMut<[u8]>,
    C: AsRef<[u32]> + AsMut<[u32]>,
{
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), MockError> {
        self.up()?;
        check_read(self, offset, bytes.len())?;
        let at = offset as usize;
        bytes.copy_from_slice(&self.mem.as_ref()[at..at + bytes.len()]);
        self.stats.bytes_read += bytes.len() as u64;
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.mem.as_ref().len()
    }
}

impl<M, C, const WRITE: usize, const ERASE: usize> NorFlash for MockFlash<M, C, WRITE, ERASE>
where
    M: AsRef<[u8]> + AsMut<[u8]>,
    C: AsRef<[u32]> + AsMut<[u32]>,
{
    const WRITE_SIZE: usize = WRITE;
    const ERASE_SIZE: usize = ERASE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), MockError> {
        self.up()?;
        check_erase(self, from, to)?;
        for block in (from as usize / ERASE)..(to as usize / ERASE) {
            let torn = self.take_unit();
            let range = block * ERASE..(block + 1) * ERASE;
            self.counts.as_mut()[block] = self.counts.as_ref()[block].saturating_add(1);
            self.stats.erases += 1;
            match torn {
                None => self.mem.as_mut()[range].fill(0xFF),
                Some(mut rng) => {
                    // Partly erased: random bits of the block go to 1.
                    for byte in &mut self.mem.as_mut()[range] {
                        *byte |= splitmix64(&mut rng) as u8;
                    }
                    return Err(MockError::PowerCut);
                }
            }
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), MockError> {
        self.up()?;
        check_write(self, offset, bytes.len())?;
        let at = offset as usize;
        let old = &self.mem.as_ref()[at..at + bytes.len()];
        if let Some(i) = old.iter().zip(bytes).position(|(o, n)| o & n != *n) {
            return Err(MockError::WouldSetBits { offset: offset + i as u32 });
        }
        if self.strict {
            for (w, word) in old.chunks(WRITE).enumerate() {
                if word.iter().any(|b| *b != 0xFF) {
                    return Err(MockError::AlreadyWritten { offset: (at + w * WRITE) as u32 });
                }
            }
        }
        if !bytes.is_empty() {
            self.stats.program_ops += 1;
        }
        for (i, new) in bytes.iter().enumerate() {
            let torn = self.take_unit();
            self.stats.bytes_programmed += 1;
            let cell = &mut self.mem.as_mut()[at + i];
            match torn {
                None => *cell &= *new,
                Some(rng) => {
                    // Partly programmed: a random part of the bits to clear are cleared.
                    let to_clear = *cell & !*new;
                    *cell &= !(to_clear & rng as u8);
                    return Err(MockError::PowerCut);
                }
            }
        }
        Ok(())
    }
}

impl<M, C, const WRITE: usize, const ERASE: usize> Durable for MockFlash<M, C, WRITE, ERASE>
where
    M: AsRef<[u8]> + AsMut<[u8]>,
    C: AsRef<[u32]> + AsMut<[u32]>,
{
    fn sync(&mut self) -> Result<(), MockError> {
        self.up()?;
        self.stats.syncs += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Flash = MockFlash<[u8; 64], [u32; 4], 4, 16>;

    fn flash() -> Flash {
        MockFlash::new_erased([0; 64], [0; 4]).unwrap()
    }

    #[test]
    fn erase_sets_ff_and_counts_per_block() {
        let mut f = flash();
        f.write(0, &[0, 1, 2, 3]).unwrap();
        f.erase(0, 32).unwrap();
        assert!(f.contents()[..32].iter().all(|b| *b == 0xFF));
        assert_eq!(f.erase_counts(), &[1, 1, 0, 0]);
        assert_eq!(f.stats().erases, 2);
    }

    #[test]
    fn write_that_sets_a_bit_is_refused_and_changes_nothing() {
        let mut f = flash();
        f.set_strict(false);
        f.write(4, &[0x0F, 0xFF, 0xFF, 0xFF]).unwrap();
        assert_eq!(f.write(4, &[0xF0, 0xFF, 0xFF, 0xFF]), Err(MockError::WouldSetBits { offset: 4 }));
        assert_eq!(f.contents()[4], 0x0F);
        // Clearing more bits is allowed outside strict mode.
        f.write(4, &[0x05, 0xFF, 0xFF, 0xFF]).unwrap();
        assert_eq!(f.contents()[4], 0x05);
    }

    #[test]
    fn strict_mode_refuses_a_second_write_of_a_word() {
        let mut f = flash();
        f.write(8, &[0x0F, 0xFF, 0xFF, 0xFF]).unwrap();
        assert_eq!(f.write(8, &[0x05, 0xFF, 0xFF, 0xFF]), Err(MockError::AlreadyWritten { offset: 8 }));
    }

    #[test]
    fn misaligned_and_out_of_bounds_are_refused() {
        let mut f = flash();
        assert_eq!(f.write(2, &[0; 4]), Err(MockError::NotAligned));
        assert_eq!(f.write(0, &[0; 3]), Err(MockError::NotAligned));
        assert_eq!(f.write(64, &[0; 4]), Err(MockError::OutOfBounds));
        assert_eq!(f.erase(8, 16), Err(MockError::NotAligned));
        assert_eq!(f.erase(0, 80), Err(MockError::OutOfBounds));
        let mut buf = [0; 4];
        assert_eq!(f.read(62, &mut buf), Err(MockError::OutOfBounds));
    }

    #[test]
    fn bad_geometry_is_refused() {
        assert_eq!(MockFlash::<_, _, 4, 16>::new([0u8; 60], [0u32; 4]).err(), Some(MockError::BadGeometry));
        assert_eq!(MockFlash::<_, _, 4, 16>::new([0u8; 64], [0u32; 3]).err(), Some(MockError::BadGeometry));
        assert_eq!(MockFlash::<_, _, 3, 16>::new([0u8; 64], [0u32; 4]).err(), Some(MockError::BadGeometry));
    }

    #[test]
    fn cut_mid_write_tears_one_byte_then_everything_fails_until_reboot() {
        for seed in 0..64 {
            let mut f = flash();
            f.cut_after(5, seed);
            let data = [0u8; 8];
            assert_eq!(f.write(0, &data), Err(MockError::PowerCut), "seed {seed}");
            assert_eq!(&f.contents()[..5], &[0; 5], "seed {seed}");
            assert!(f.contents()[6..].iter().all(|b| *b == 0xFF), "seed {seed}");
            let mut buf = [0; 4];
            assert_eq!(f.read(0, &mut buf), Err(MockError::PowerCut));
            assert_eq!(f.erase(0, 16), Err(MockError::PowerCut));
            assert_eq!(f.sync(), Err(MockError::PowerCut));
            f.reboot();
            f.read(0, &mut buf).unwrap();
            assert_eq!(buf, [0; 4]);
        }
        // Across seeds the torn byte takes partial values, not only 0x00 or 0xFF.
        let partial = (0..64)
            .filter(|seed| {
                let mut f = flash();
                f.cut_after(0, *seed);
                let _ = f.write(0, &[0; 4]);
                f.contents()[0] != 0 && f.contents()[0] != 0xFF
            })
            .count();
        assert!(partial > 32, "only {partial} of 64 seeds tore the byte partially");
    }

    #[test]
    fn cut_mid_erase_leaves_the_block_partly_erased() {
        let mut f = flash();
        f.contents_mut().fill(0);
        f.cut_after(1, 7);
        assert_eq!(f.erase(0, 48), Err(MockError::PowerCut));
        assert!(f.contents()[..16].iter().all(|b| *b == 0xFF));
        let torn = &f.contents()[16..32];
        assert!(torn.iter().any(|b| *b != 0xFF) && torn.iter().any(|b| *b != 0), "{torn:?}");
        assert!(f.contents()[32..].iter().all(|b| *b == 0));
        assert_eq!(f.stats().units, 2);
    }
}
