//! Linux drivers for [`msm_flash`]: the same `embedded-storage` NOR flash traits over
//! - [`FileFlash`]: a flash image file for the Linux emulation, keeping NOR rules, locked against
//!   a second process, `fsync`ed at the stores' commit points;
//! - [`MtdFlash`]: a Linux MTD character device (`/dev/mtdN`) on MSM boards running Linux.
//!
//! Both take an exclusive `flock` on open, so two processes never share one flash.

mod error;
mod file;
mod lock;
pub mod mtd;

pub use error::FlashError;
pub use file::FileFlash;
pub use mtd::MtdFlash;
