//! The one CRC-32C (Castagnoli, `CRC_32_ISCSI`) used by framing.

#[cfg(not(feature = "fast-crc"))]
type CrcImpl = crc::Table<1>;
#[cfg(feature = "fast-crc")]
type CrcImpl = crc::Table<16>;

static CRC32C: crc::Crc<u32, CrcImpl> = crc::Crc::<u32, CrcImpl>::new(&crc::CRC_32_ISCSI);

/// CRC-32C of `bytes`.
pub(crate) fn checksum(bytes: &[u8]) -> u32 {
    CRC32C.checksum(bytes)
}
