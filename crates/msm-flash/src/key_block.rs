//! The chassis key as a board keeps it on its own storage, outside the
//! configuration stores: written by a provisioning tool (`cargo xtask
//! sd-image`, `cargo xtask provision`), read by the board at boot. One
//! layout for every board (the Cortex-M's SD card, the aarch64 module's
//! MTD flash); the board chooses where the block sits.
//!
//! ```text
//! offset 0   magic "MSMk"
//! offset 4   version u32 LE (1)
//! offset 8   key, 32 bytes
//! offset 40  CRC-32C u32 LE of bytes 0..40
//! ```
//! `LEN` bytes in all; what follows is the board's (zeros on an SD block,
//! 0xFF in an erase block).

use crc::{CRC_32_ISCSI, Crc, NoTable};

/// Offset and bytes of the magic.
pub const MAGIC: [u8; 4] = *b"MSMk";
/// Offset of the version.
pub const VERSION_AT: usize = 4;
/// Offset of the key.
pub const KEY_AT: usize = 8;
/// Bytes of the key.
pub const KEY_BYTES: usize = 32;
/// Offset of the CRC, which covers every byte before it.
pub const CRC_AT: usize = KEY_AT + KEY_BYTES;
/// Bytes of a key block.
pub const LEN: usize = CRC_AT + 4;
/// The layout this build reads and writes.
pub const VERSION: u32 = 1;

/// Bitwise CRC-32C: 40 bytes once a boot need no 1 KiB table in flash.
const CRC32C: Crc<u32, NoTable> = Crc::<u32, NoTable>::new(&CRC_32_ISCSI);

/// Why a board holds no usable key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KeyBlockError {
    /// No key block magic: never given a key (or erased).
    Missing,
    /// The magic is there but the CRC does not match: a damaged block.
    BadCrc,
    /// A layout this build does not know (written by a newer tool).
    UnknownVersion(u32),
}

impl KeyBlockError {
    /// What a log says.
    pub fn reason(&self) -> &'static str {
        match self {
            KeyBlockError::Missing => "no key block",
            KeyBlockError::BadCrc => "the key block's CRC does not match (damaged)",
            KeyBlockError::UnknownVersion(_) => "the key block has a version this build does not know",
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

/// The key block for `key`.
pub fn encode(key: &[u8; KEY_BYTES]) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[..VERSION_AT].copy_from_slice(&MAGIC);
    b[VERSION_AT..KEY_AT].copy_from_slice(&VERSION.to_le_bytes());
    b[KEY_AT..CRC_AT].copy_from_slice(key);
    let crc = CRC32C.checksum(&b[..CRC_AT]);
    b[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The key the block at the start of `bytes` holds. The version is checked
/// before the CRC, so a newer layout (whose CRC may sit elsewhere) is named.
pub fn decode(bytes: &[u8]) -> Result<[u8; KEY_BYTES], KeyBlockError> {
    let b = bytes.get(..LEN).ok_or(KeyBlockError::Missing)?;
    if b[..VERSION_AT] != MAGIC {
        return Err(KeyBlockError::Missing);
    }
    let version = u32_at(b, VERSION_AT);
    if version != VERSION {
        return Err(KeyBlockError::UnknownVersion(version));
    }
    if CRC32C.checksum(&b[..CRC_AT]) != u32_at(b, CRC_AT) {
        return Err(KeyBlockError::BadCrc);
    }
    let mut key = [0u8; KEY_BYTES];
    key.copy_from_slice(&b[KEY_AT..CRC_AT]);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_and_damage_is_named() {
        let key: [u8; KEY_BYTES] = core::array::from_fn(|i| i as u8);
        let b = encode(&key);
        assert_eq!(decode(&b), Ok(key));
        assert_eq!(decode(&[0xFF; 64]), Err(KeyBlockError::Missing));
        assert_eq!(decode(&b[..LEN - 1]), Err(KeyBlockError::Missing));
        let mut flipped = b;
        flipped[KEY_AT] ^= 1;
        assert_eq!(decode(&flipped), Err(KeyBlockError::BadCrc));
        let mut newer = b;
        newer[VERSION_AT] = 2;
        assert_eq!(decode(&newer), Err(KeyBlockError::UnknownVersion(2)));
    }
}
