//! Errors of the stores and of the partition views. Every failure has a name; nothing panics.

use core::fmt;

use embedded_storage::nor_flash::{NorFlashError, NorFlashErrorKind};

/// Why a record on flash was found unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CorruptReason {
    /// The record header has the magic but its CRC does not match.
    HeaderCrc,
    /// The header names a format version this code does not know.
    UnsupportedVersion(u8),
    /// The header belongs to the other config (primary found in the secondary's region, ...).
    WrongName,
    /// The header was written for another `WRITE_SIZE`, so its trailer cannot be located.
    WrongGeometry,
    /// The header's data length cannot fit in the region.
    BadLength,
    /// The commit marker is present but the trailer (length, generation, CRC) does not match.
    TrailerCrc,
    /// A committed record (format 2) has a block that does not start with its continuation
    /// marker (generation, index, header CRC): the block was overwritten or damaged.
    Continuation,
    /// The record lies inside the data of an intact format-1 record: it is that config's data
    /// (a record image a config carried), not a record.
    InsideData,
    /// The record was committed but its data no longer matches its CRC-32C.
    DataCrc,
}

impl fmt::Display for CorruptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HeaderCrc => f.write_str("record header CRC mismatch"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported record format version {v}"),
            Self::WrongName => f.write_str("record belongs to the other config"),
            Self::WrongGeometry => f.write_str("record written with another flash write size"),
            Self::BadLength => f.write_str("record length does not fit the region"),
            Self::TrailerCrc => f.write_str("committed record with a bad trailer"),
            Self::Continuation => f.write_str("committed record with a block not marked as its own"),
            Self::InsideData => f.write_str("record image inside another record's data"),
            Self::DataCrc => f.write_str("committed record whose data fails its CRC-32C"),
        }
    }
}

/// Errors of [`ConfigStore`](crate::ConfigStore) and [`NodeSettings`](crate::NodeSettings);
/// `E` is the flash's own error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error<E> {
    /// The flash (or the partition below the store) failed.
    Flash(E),
    /// The region does not suit the store: `reason` says why.
    Geometry {
        /// What is wrong with the region or the flash geometry.
        reason: &'static str,
    },
    /// No config has ever been saved in this store (or none survived, see the mount report).
    NoValidConfig,
    /// Nothing valid is left and this record was found corrupt.
    Corrupt {
        /// Erase block (index within the store's region) where the damaged record starts.
        block: u32,
        /// What is wrong with it.
        reason: CorruptReason,
    },
    /// The config is larger than the space the store can use without touching the current one.
    TooLarge {
        /// Length asked for.
        len: u32,
        /// Largest length the next save can take.
        max: u32,
    },
    /// `write` or `commit` without a `begin_save`.
    NoSaveInProgress,
    /// `begin_save` while another save is in progress (call `abort_save` first).
    SaveInProgress,
    /// More data written than `begin_save` declared.
    Overflow {
        /// Declared length.
        len: u32,
    },
    /// `commit` before all declared bytes were written.
    LengthMismatch {
        /// Declared length.
        len: u32,
        /// Bytes written.
        written: u32,
    },
    /// Reading the data back before committing gave another CRC: the flash does not hold what was
    /// programmed (failing block?). Nothing was committed.
    VerifyFailed {
        /// First erase block of the record.
        block: u32,
    },
    /// 2^32 - 1 saves: the generation counter is exhausted (erase the region).
    GenerationExhausted,
    /// The key-value area is full even after garbage collection.
    KvFull,
    /// `sequential-storage` found the key-value area corrupt.
    KvCorrupt,
    /// A stored setting has a value this code cannot decode.
    KvBadValue {
        /// Key of the setting.
        key: u8,
    },
    /// `sequential-storage` reported an internal error (buffer, logic): should not happen.
    KvInternal,
}

impl<E: fmt::Debug> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flash(e) => write!(f, "flash error: {e:?}"),
            Self::Geometry { reason } => write!(f, "unsuitable flash region: {reason}"),
            Self::NoValidConfig => f.write_str("no valid config saved"),
            Self::Corrupt { block, reason } => write!(f, "corrupt config store at block {block}: {reason}"),
            Self::TooLarge { len, max } => write!(f, "config of {len} bytes too large (max {max})"),
            Self::NoSaveInProgress => f.write_str("no save in progress"),
            Self::SaveInProgress => f.write_str("a save is already in progress"),
            Self::Overflow { len } => write!(f, "more data than the declared {len} bytes"),
            Self::LengthMismatch { len, written } => {
                write!(f, "commit after {written} of {len} declared bytes")
            }
            Self::VerifyFailed { block } => write!(f, "read-back verify failed (record at block {block})"),
            Self::GenerationExhausted => f.write_str("generation counter exhausted"),
            Self::KvFull => f.write_str("key-value area full"),
            Self::KvCorrupt => f.write_str("key-value area corrupt"),
            Self::KvBadValue { key } => write!(f, "setting {key} has an undecodable value"),
            Self::KvInternal => f.write_str("key-value area internal error"),
        }
    }
}

impl<E> From<E> for Error<E> {
    fn from(e: E) -> Self {
        Self::Flash(e)
    }
}

/// Errors of a [`Partition`](crate::Partition): its own checks, or the device's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PartitionError<E> {
    /// An access reaches outside the partition.
    OutOfRange {
        /// Partition name.
        partition: &'static str,
        /// Offset asked for, relative to the partition.
        offset: u32,
        /// Length asked for.
        len: u32,
        /// Size of the partition.
        size: u32,
    },
    /// The partition's start or size is not a multiple of the device's erase size.
    Misaligned {
        /// Partition name.
        partition: &'static str,
        /// Start on the device.
        start: u32,
        /// Size.
        size: u32,
        /// The device's erase size.
        erase_size: u32,
    },
    /// The partition ends beyond the device.
    BeyondDevice {
        /// Partition name.
        partition: &'static str,
        /// End on the device.
        end: u64,
        /// The device's capacity.
        capacity: u64,
    },
    /// An offset or length not aligned to the device's read/write/erase size.
    NotAligned {
        /// Partition name.
        partition: &'static str,
        /// Offset asked for, relative to the partition.
        offset: u32,
    },
    /// The device failed.
    Device(E),
}

impl<E: NorFlashError> NorFlashError for PartitionError<E> {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::OutOfRange { .. } | Self::BeyondDevice { .. } => NorFlashErrorKind::OutOfBounds,
            Self::Misaligned { .. } | Self::NotAligned { .. } => NorFlashErrorKind::NotAligned,
            Self::Device(e) => e.kind(),
        }
    }
}

impl<E: fmt::Debug> fmt::Display for PartitionError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange { partition, offset, len, size } => write!(
                f,
                "partition `{partition}`: access of {len} bytes at offset {offset} is outside its {size} bytes"
            ),
            Self::Misaligned { partition, start, size, erase_size } => write!(
                f,
                "partition `{partition}`: start {start} / size {size} not multiples of the erase size {erase_size}"
            ),
            Self::BeyondDevice { partition, end, capacity } => {
                write!(f, "partition `{partition}` ends at {end}, beyond the device's {capacity} bytes")
            }
            Self::NotAligned { partition, offset } => {
                write!(f, "partition `{partition}`: access at offset {offset} not aligned")
            }
            Self::Device(e) => write!(f, "device error: {e:?}"),
        }
    }
}

/// Errors of a [`SharedFlash`](crate::SharedFlash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SharedError<E> {
    /// The device is borrowed by another user right now (re-entrant use).
    Busy,
    /// The device failed.
    Device(E),
}

impl<E: NorFlashError> NorFlashError for SharedError<E> {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::Busy => NorFlashErrorKind::Other,
            Self::Device(e) => e.kind(),
        }
    }
}

impl<E: fmt::Debug> fmt::Display for SharedError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Busy => f.write_str("flash device busy (already borrowed)"),
            Self::Device(e) => write!(f, "device error: {e:?}"),
        }
    }
}
