//! What the fuzz targets (`fuzz_targets/`) and the seed generator
//! (`examples/seeds.rs`) share: each target's input format and the harness
//! that drives the code under test, defined once so that seeds captured from
//! a real exchange replay the same way under the fuzzer.
//!
//! - [`engine`]: a checkpoint `Node` with a fixed host, fed frames on a 1 ms clock;
//! - [`backplane`]: the COBS/CRC-32C decoder;
//! - [`flash`]: the partition layout of the image that `flash_mount` mounts.

pub mod backplane;
pub mod engine;
pub mod flash;

/// CRC-32C, the check of engine frames.
pub(crate) static CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
