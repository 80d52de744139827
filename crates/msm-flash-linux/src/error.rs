//! The one error type of both drivers; every message names the image or device.

use std::fmt;
use std::path::PathBuf;

use embedded_storage::nor_flash::{NorFlashError, NorFlashErrorKind};

/// Errors of [`FileFlash`](crate::FileFlash) and [`MtdFlash`](crate::MtdFlash).
#[derive(Debug)]
pub enum FlashError {
    /// Another process (or another handle in this one) holds the image or device.
    Locked {
        /// The image or device.
        path: PathBuf,
    },
    /// An existing image has the wrong size (short, or not what was asked for).
    BadImageSize {
        /// The image.
        path: PathBuf,
        /// Its size.
        found: u64,
        /// The size asked for.
        expected: u64,
    },
    /// The image or device does not suit the driver's `WRITE_SIZE` / `ERASE_SIZE` or NOR rules.
    Geometry {
        /// The image or device.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Group or others may write the image: anyone could rewrite the
    /// configuration. Refused by name; the image is created `0600`.
    OpenToOthers {
        /// The image.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The path is not an MTD device (MEMGETINFO failed with ENOTTY/EINVAL).
    NotMtd {
        /// The path.
        path: PathBuf,
    },
    /// A system call failed.
    Io {
        /// The image or device.
        path: PathBuf,
        /// What was being done ("pread", "MEMERASE", ...).
        op: &'static str,
        /// Offset of the operation on the flash (0 when not applicable).
        offset: u64,
        /// The error.
        source: std::io::Error,
    },
    /// Offset or length not aligned to `WRITE_SIZE` / `ERASE_SIZE`.
    NotAligned {
        /// Offset asked for.
        offset: u32,
        /// Length asked for.
        len: usize,
    },
    /// Outside the flash.
    OutOfBounds {
        /// Offset asked for.
        offset: u32,
        /// Length asked for.
        len: usize,
    },
    /// A write would turn a 0 bit into 1 (NOR flash can only clear bits; erase first).
    WouldSetBits {
        /// Flash offset of the first offending byte.
        offset: u32,
    },
}

impl NorFlashError for FlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::NotAligned { .. } => NorFlashErrorKind::NotAligned,
            Self::OutOfBounds { .. } => NorFlashErrorKind::OutOfBounds,
            _ => NorFlashErrorKind::Other,
        }
    }
}

impl fmt::Display for FlashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Locked { path } => {
                write!(f, "flash image {} is in use by another process (flock held)", path.display())
            }
            Self::BadImageSize { path, found, expected } => write!(
                f,
                "flash image {} is {found} bytes, expected {expected}: refusing a short or odd-sized image",
                path.display()
            ),
            Self::Geometry { path, reason } => write!(f, "flash {}: {reason}", path.display()),
            Self::OpenToOthers { path, mode } => write!(
                f,
                "flash image {} has mode {mode:04o}: group or others could rewrite the configuration; run: chmod 600 {}",
                path.display(),
                path.display()
            ),
            Self::NotMtd { path } => {
                write!(f, "{} is not an MTD device (MEMGETINFO refused)", path.display())
            }
            Self::Io { path, op, offset, source } => {
                write!(f, "flash {}: {op} at offset {offset} failed: {source}", path.display())
            }
            Self::NotAligned { offset, len } => {
                write!(f, "flash access of {len} bytes at {offset} not aligned")
            }
            Self::OutOfBounds { offset, len } => {
                write!(f, "flash access of {len} bytes at {offset} out of bounds")
            }
            Self::WouldSetBits { offset } => {
                write!(f, "write at {offset} would set a 0 bit to 1 (NOR flash: erase first)")
            }
        }
    }
}

impl std::error::Error for FlashError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Bounds and alignment of a `[offset, offset + len)` access with `align` granularity.
pub(crate) fn check(offset: u32, len: usize, align: usize, capacity: u64) -> Result<(), FlashError> {
    if u64::from(offset) + len as u64 > capacity {
        return Err(FlashError::OutOfBounds { offset, len });
    }
    if !(offset as usize).is_multiple_of(align) || !len.is_multiple_of(align) {
        return Err(FlashError::NotAligned { offset, len });
    }
    Ok(())
}

/// `old` may become `new` by clearing bits only; else the offset of the first byte that cannot.
pub(crate) fn nor_violation(old: &[u8], new: &[u8]) -> Option<usize> {
    old.iter().zip(new).position(|(o, n)| o & n != *n)
}
