//! The SD card's layout: which 512-byte block holds what, and the two small
//! blocks outside the config region (the chassis key, the boot counter).
//!
//! One definition for both sides: the firmware reads these blocks, and the
//! host tools that provision a card (`cargo xtask sd-image`, and
//! `tests/qemu_interop.rs`) include this file with `#[path]` and write them.
//! So it uses `core` and `crc` only, and no logging.
//!
//! ```text
//! block 2046        key block: "MSMk", version u32 LE (1), key 32 bytes, CRC-32C u32 LE of bytes 0..40
//! block 2047        boot counter: "MSMb", count u32 LE (the node's incarnation)
//! blocks 2048..2176 msm-flash's config store (primary.cfg), 64 KiB
//! ```
//! Every other byte of the two blocks is zero; blocks 0..2046 are unused.

// The firmware uses only the reading half, the host tools mostly the writing one.
#![allow(dead_code)]

/// Bytes of an SD block.
pub const BLOCK: usize = 512;
/// First block of the config region (1 MiB into the card), and its length.
pub const REGION_FIRST: u32 = 2048;
pub const REGION_BLOCKS: u32 = 128;
/// The boot counter: the block just before the region.
pub const BOOT_BLOCK: u32 = REGION_FIRST - 1;
/// The chassis key: the block before the boot counter.
pub const KEY_BLOCK: u32 = REGION_FIRST - 2;

const BOOT_MAGIC: [u8; 4] = *b"MSMb";
const KEY_MAGIC: [u8; 4] = *b"MSMk";
/// The key block layout this build reads and writes.
pub const KEY_VERSION: u32 = 1;
/// Bytes of the key.
pub const KEY_BYTES: usize = 32;
/// Bytes of a version 1 key block that the CRC covers: magic, version, key.
const KEY_SIGNED: usize = 8 + KEY_BYTES;

/// Bitwise CRC-32C: 40 bytes once a boot need no 1 KiB table in flash.
const CRC32C: crc::Crc<u32, crc::NoTable> = crc::Crc::<u32, crc::NoTable>::new(&crc::CRC_32_ISCSI);

/// Why a card holds no usable key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyBlockError {
    /// No key block magic: the card was never given a key (or it was erased).
    Missing,
    /// The magic is there but the CRC does not match: a damaged block.
    BadCrc,
    /// A layout this build does not know (written by a newer tool).
    UnknownVersion(u32),
}

impl KeyBlockError {
    /// What the log says.
    pub fn reason(&self) -> &'static str {
        match self {
            KeyBlockError::Missing => "no key block on the card",
            KeyBlockError::BadCrc => "the key block's CRC does not match (damaged)",
            KeyBlockError::UnknownVersion(_) => "the key block has a version this firmware does not know",
        }
    }
}

fn u32_at(block: &[u8; BLOCK], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&block[at..at + 4]);
    u32::from_le_bytes(b)
}

/// The key block for `key`.
pub fn encode_key(key: &[u8; KEY_BYTES]) -> [u8; BLOCK] {
    let mut block = [0u8; BLOCK];
    block[..4].copy_from_slice(&KEY_MAGIC);
    block[4..8].copy_from_slice(&KEY_VERSION.to_le_bytes());
    block[8..KEY_SIGNED].copy_from_slice(key);
    let crc = CRC32C.checksum(&block[..KEY_SIGNED]);
    block[KEY_SIGNED..KEY_SIGNED + 4].copy_from_slice(&crc.to_le_bytes());
    block
}

/// The key a key block holds. The version is checked before the CRC, so a
/// newer layout (whose CRC may sit elsewhere) is named as such.
pub fn decode_key(block: &[u8; BLOCK]) -> Result<[u8; KEY_BYTES], KeyBlockError> {
    if block[..4] != KEY_MAGIC {
        return Err(KeyBlockError::Missing);
    }
    let version = u32_at(block, 4);
    if version != KEY_VERSION {
        return Err(KeyBlockError::UnknownVersion(version));
    }
    if CRC32C.checksum(&block[..KEY_SIGNED]) != u32_at(block, KEY_SIGNED) {
        return Err(KeyBlockError::BadCrc);
    }
    let mut key = [0u8; KEY_BYTES];
    key.copy_from_slice(&block[8..KEY_SIGNED]);
    Ok(key)
}

/// The boot counter block holding `count`.
pub fn encode_boot(count: u32) -> [u8; BLOCK] {
    let mut block = [0u8; BLOCK];
    block[..4].copy_from_slice(&BOOT_MAGIC);
    block[4..8].copy_from_slice(&count.to_le_bytes());
    block
}

/// The count a boot counter block holds; `None`: no counter yet.
pub fn decode_boot(block: &[u8; BLOCK]) -> Option<u32> {
    (block[..4] == BOOT_MAGIC).then(|| u32_at(block, 4))
}
