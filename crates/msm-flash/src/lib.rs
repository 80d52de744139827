//! Flash storage for a management module, on the `embedded-storage` NOR flash traits.
//!
//! - [`partition`]: a typed view of a range of one device ([`Partition`]), and [`SharedFlash`]
//!   so several partitions can share one device.
//! - [`config_store`]: the XOS `save` semantics: [`ConfigStore`] replaces a whole configuration
//!   atomically (a power cut at any byte leaves the old or the new one), streamed in chunks, with
//!   generation, CRC, save time and software version; a ring of erase blocks spreads wear.
//! - [`kv`]: [`NodeSettings`], a small key-value area for node settings (priority, selected
//!   config, boot count, last term) over two mirrored `sequential-storage` maps.
//! - [`saved_stream`]: the layout of the saved-configuration stream a master sends its backup
//!   and standbys (both files and which one is selected), with its parser.
//! - [`durable`]: [`Durable`], the commit point hook (`fsync` on Linux, nothing on raw NOR).
//! - `mock` (feature `mock`): `mock::MockFlash`, a NOR flash in RAM with the real write
//!   rules, wear counters and seeded power cuts, for the tests of every crate.
//!
//! `no_std`, no allocation; nothing here panics on any flash contents. The on-flash format is
//! described in `docs/flash-format.md`.
#![no_std]

#[macro_use]
mod fmt;

pub mod config_store;
pub mod durable;
pub mod error;
pub mod failover_record;
pub mod key_block;
pub mod kv;
#[cfg(feature = "mock")]
pub mod mock;
pub mod partition;
pub mod saved_stream;

pub use config_store::{ConfigInfo, ConfigName, ConfigStore, Damage, MountReport, SaveInfo};
pub use durable::{Durable, NoSync};
pub use error::{CorruptReason, Error, PartitionError, SharedError};
pub use failover_record::FailoverRecord;
pub use kv::{HISTORY, KvDamage, NodeSettings, Setting, SettingsReport};
pub use partition::{Partition, SharedFlash};

/// CRC-32C (Castagnoli), the same polynomial as the backplane frames.
pub(crate) static CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
