//! The one CRC-32C (Castagnoli, `CRC_32_ISCSI`) used by framing.

#[cfg(not(feature = "fast-crc"))]
type CrcImpl = crc::Table<1>;
#[cfg(feature = "fast-crc")]
type CrcImpl = crc::Table<16>;

// With `hw-crc` the tables only check the instruction in tests.
#[cfg_attr(feature = "hw-crc", allow(dead_code))]
static CRC32C: crc::Crc<u32, CrcImpl> = crc::Crc::<u32, CrcImpl>::new(&crc::CRC_32_ISCSI);

/// CRC-32C of `bytes`: the CPU's instruction with `hw-crc` (chosen at run
/// time), the tables otherwise; the same value either way.
pub(crate) fn checksum(bytes: &[u8]) -> u32 {
    #[cfg(feature = "hw-crc")]
    return crc32c::crc32c(bytes);
    #[cfg(not(feature = "hw-crc"))]
    CRC32C.checksum(bytes)
}

#[cfg(test)]
mod tests {
    /// Whichever implementation is built agrees with the tables, at every
    /// length around the instruction's 8-byte steps and alignments.
    #[test]
    fn agrees_with_the_tables() {
        let bytes: [u8; 300] = core::array::from_fn(|i| (i * 37 + 11) as u8);
        for start in 0..9 {
            for end in start..bytes.len() {
                assert_eq!(super::checksum(&bytes[start..end]), super::CRC32C.checksum(&bytes[start..end]));
            }
        }
    }
}
