//! The exclusive, non-blocking `flock` both drivers take on open.

use std::fs::File;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::FlashError;

/// Lock `file` (opened from `path`) for this process, or say who holds it.
pub(crate) fn lock_exclusive(file: File, path: &Path) -> Result<Flock<File>, FlashError> {
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| match errno {
        Errno::EWOULDBLOCK => FlashError::Locked { path: path.to_path_buf() },
        e => FlashError::Io { path: path.to_path_buf(), op: "flock", offset: 0, source: e.into() },
    })
}
