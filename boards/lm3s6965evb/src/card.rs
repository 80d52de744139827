//! The SD card's layout: which 512-byte block holds what, and the two small
//! blocks outside the config region (the chassis key, the boot counter).
//!
//! One definition for both sides: the firmware reads these blocks, and the
//! host tools that provision a card (`cargo xtask sd-image`, and
//! `tests/qemu_interop.rs`) include this file with `#[path]` and write them.
//! So it uses `core` and `msm-flash` only, and no logging.
//!
//! ```text
//! block 2046        key block (`msm_flash::key_block`: "MSMk", version, key, CRC-32C), zero-padded
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
/// The key block's layout: `msm_flash::key_block`, one for every board.
// (Each includer of this file uses some of them.)
#[allow(unused_imports)]
pub use msm_flash::key_block::{KEY_BYTES, KeyBlockError, VERSION as KEY_VERSION};

fn u32_at(block: &[u8; BLOCK], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&block[at..at + 4]);
    u32::from_le_bytes(b)
}

/// The key block for `key`, as the card's block.
pub fn encode_key(key: &[u8; KEY_BYTES]) -> [u8; BLOCK] {
    let mut block = [0u8; BLOCK];
    block[..msm_flash::key_block::LEN].copy_from_slice(&msm_flash::key_block::encode(key));
    block
}

/// The key the card's key block holds.
pub fn decode_key(block: &[u8; BLOCK]) -> Result<[u8; KEY_BYTES], KeyBlockError> {
    msm_flash::key_block::decode(block)
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
