//! Which bits of a frame the corrupt fault flips: drawn once by the model,
//! applied by whoever holds the bytes (the injector's buffer, the
//! simulator's copy).

/// Up to three distinct bit positions of one frame, counted from bit 0 of
/// byte 0. Distinct, so a corrupted frame really differs from the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BitFlips {
    bits: [u32; BitFlips::MAX],
    len: u8,
}

impl BitFlips {
    /// The most bits one corruption flips.
    pub const MAX: usize = 3;

    /// No flips: the frame arrives intact.
    pub const NONE: BitFlips = BitFlips { bits: [0; BitFlips::MAX], len: 0 };

    /// Adds `bit` unless it is already there or the set is full; whether it was added.
    pub(crate) fn insert(&mut self, bit: u32) -> bool {
        if self.len as usize >= Self::MAX || self.bits().contains(&bit) {
            return false;
        }
        self.bits[self.len as usize] = bit;
        self.len += 1;
        true
    }

    /// The bit positions, in the order they were drawn.
    pub fn bits(&self) -> &[u32] {
        &self.bits[..self.len as usize]
    }

    /// Whether the frame is left intact.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Flips the bits in `frame`; positions past its end are skipped, so a
    /// shorter buffer is never indexed out of bounds.
    pub fn apply(&self, frame: &mut [u8]) {
        for &bit in self.bits() {
            if let Some(b) = frame.get_mut((bit / 8) as usize) {
                *b ^= 1 << (bit % 8);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_flips_exactly_the_listed_bits() {
        let mut f = BitFlips::NONE;
        assert!(f.insert(0) && f.insert(13) && f.insert(23));
        let mut frame = [0u8; 3];
        f.apply(&mut frame);
        assert_eq!(frame, [0b0000_0001, 0b0010_0000, 0b1000_0000]);
        f.apply(&mut frame);
        assert_eq!(frame, [0; 3], "flipping twice restores the frame");
    }

    #[test]
    fn positions_are_distinct_and_at_most_three() {
        let mut f = BitFlips::NONE;
        assert!(f.is_empty());
        assert!(f.insert(5));
        assert!(!f.insert(5));
        assert!(f.insert(6) && f.insert(7));
        assert!(!f.insert(8));
        assert_eq!(f.bits(), &[5, 6, 7]);
    }

    #[test]
    fn bits_past_the_end_are_skipped() {
        let mut f = BitFlips::NONE;
        f.insert(3);
        f.insert(64);
        let mut frame = [0u8; 2];
        f.apply(&mut frame);
        assert_eq!(frame, [0b1000, 0]);
    }
}
