//! A NOR flash image in a file, for the Linux emulation.
//!
//! - NOR rules are kept: `erase` writes 0xFF over whole blocks; `write` reads the old bytes first
//!   and refuses ([`FlashError::WouldSetBits`]) a write that would set a 0 bit to 1, so code that
//!   works on this image works on real NOR.
//! - An exclusive non-blocking `flock` is taken on open: a second process (or a second handle)
//!   gets [`FlashError::Locked`] naming the image. The lock goes with the process, so a killed
//!   process never leaves a stale lock.
//! - Writes go through the page cache; [`Durable::sync`] is `fdatasync`. The stores call it at
//!   their commit points (before and after a config's commit marker, after a settings change), so
//!   a completed `save` survives a power loss of the host, not only a crash of the process.
//! - A missing image is created full of 0xFF, atomically: written and synced under a temporary
//!   name, then linked into place, so a crash during creation never leaves a short image. An
//!   existing image of another size is refused ([`FlashError::BadImageSize`]), never truncated or
//!   extended.
//! - The image is created mode `0600` whatever the umask, and an image that group or others may
//!   write is refused ([`FlashError::OpenToOthers`]): whoever writes it rewrites the configuration.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use msm_flash::Durable;
use nix::fcntl::Flock;

use crate::error::{FlashError, check, nor_violation};
use crate::lock::lock_exclusive;

/// Largest piece read or written in one system call during erase and verification.
const CHUNK: usize = 64 * 1024;

/// A flash image file with `WRITE`-byte words and `ERASE`-byte blocks; see the module docs.
///
/// A config store on an image file: what one process saves, the next one mounts; while one
/// process holds the image, a second open is refused.
///
/// ```
/// use msm_flash::{ConfigName, ConfigStore, SaveInfo};
/// use msm_flash_linux::{FileFlash, FlashError};
///
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("A.img");
/// // 64 KiB of 4-byte words and 4 KiB blocks, created full of 0xFF.
/// let image: FileFlash = FileFlash::open(&path, 64 * 1024).unwrap();
/// let mut store = ConfigStore::mount(image, ConfigName::Primary).unwrap();
/// let info = SaveInfo { saved_at: 1_764_000_000, sw_version: "0.1.0" };
/// store.save(b"configure snmp sysName core-1\n", &info).unwrap();
/// assert!(store.flash().syncs() >= 2); // fdatasync before and after the commit marker
///
/// assert!(matches!(FileFlash::<4, 4096>::open_existing(&path), Err(FlashError::Locked { .. })));
/// drop(store); // the lock goes with the file
///
/// let image: FileFlash = FileFlash::open_existing(&path).unwrap();
/// let mut store = ConfigStore::mount(image, ConfigName::Primary).unwrap();
/// let mut buf = [0u8; 64];
/// let n = store.read(0, &mut buf).unwrap();
/// assert_eq!(&buf[..n], b"configure snmp sysName core-1\n");
/// ```
#[derive(Debug)]
pub struct FileFlash<const WRITE: usize = 4, const ERASE: usize = 4096> {
    file: Flock<File>,
    path: PathBuf,
    size: u32,
    syncs: u64,
}

impl<const WRITE: usize, const ERASE: usize> FileFlash<WRITE, ERASE> {
    /// Open the image at `path`, creating it (all 0xFF) if it does not exist. An existing image
    /// must be exactly `size` bytes.
    pub fn open(path: impl AsRef<Path>, size: u32) -> Result<Self, FlashError> {
        let path = path.as_ref();
        check_geometry::<WRITE, ERASE>(path, u64::from(size))?;
        if !path.exists() {
            create_image(path, size)?;
        }
        Self::open_inner(path, Some(size))
    }

    /// Open an existing image; its size must be a non-zero multiple of `ERASE`.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Self, FlashError> {
        Self::open_inner(path.as_ref(), None)
    }

    fn open_inner(path: &Path, size: Option<u32>) -> Result<Self, FlashError> {
        let io = |op, source| FlashError::Io { path: path.to_path_buf(), op, offset: 0, source };
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(|e| io("open", e))?;
        let file = lock_exclusive(file, path)?;
        let meta = file.metadata().map_err(|e| io("stat", e))?;
        if meta.mode() & 0o022 != 0 {
            return Err(FlashError::OpenToOthers { path: path.to_path_buf(), mode: meta.mode() & 0o7777 });
        }
        let len = meta.len();
        let expected = size.map_or(len.div_ceil(ERASE as u64).max(1) * ERASE as u64, u64::from);
        if len != expected || len > u64::from(u32::MAX) {
            return Err(FlashError::BadImageSize { path: path.to_path_buf(), found: len, expected });
        }
        check_geometry::<WRITE, ERASE>(path, len)?;
        Ok(Self { file, path: path.to_path_buf(), size: len as u32, syncs: 0 })
    }

    /// The image's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `sync` calls so far (to check that the stores reach their commit points).
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    fn io(&self, op: &'static str, offset: u32, source: std::io::Error) -> FlashError {
        FlashError::Io { path: self.path.clone(), op, offset: u64::from(offset), source }
    }
}

fn check_geometry<const WRITE: usize, const ERASE: usize>(path: &Path, size: u64) -> Result<(), FlashError> {
    let bad = |reason: String| Err(FlashError::Geometry { path: path.to_path_buf(), reason });
    if WRITE == 0 || ERASE == 0 || !ERASE.is_multiple_of(WRITE) {
        return bad(format!("ERASE_SIZE {ERASE} is not a multiple of WRITE_SIZE {WRITE}"));
    }
    if size == 0 || !size.is_multiple_of(ERASE as u64) || size > u64::from(u32::MAX) {
        return bad(format!("size {size} is not a non-zero multiple of ERASE_SIZE {ERASE} below 4 GiB"));
    }
    Ok(())
}

/// Create `path` full of 0xFF without ever exposing a partial image.
fn create_image(path: &Path, size: u32) -> Result<(), FlashError> {
    let io = |op, source| FlashError::Io { path: path.to_path_buf(), op, offset: 0, source };
    let tmp = path.with_extension(format!("creating-{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io("create", e))?;
        // The umask only removes bits; an existing temporary keeps its own.
        f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(|e| io("chmod", e))?;
        let ff = vec![0xFF; CHUNK];
        let mut left = size as usize;
        while left > 0 {
            let n = left.min(CHUNK);
            f.write_all(&ff[..n]).map_err(|e| io("write", e))?;
            left -= n;
        }
        f.sync_all().map_err(|e| io("fsync", e))?;
        // Link, not rename: if another process created the image meanwhile, keep theirs.
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("link", e)),
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("fsync directory", e))?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

impl<const WRITE: usize, const ERASE: usize> ErrorType for FileFlash<WRITE, ERASE> {
    type Error = FlashError;
}

impl<const WRITE: usize, const ERASE: usize> ReadNorFlash for FileFlash<WRITE, ERASE> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        check(offset, bytes.len(), 1, u64::from(self.size))?;
        self.file.read_exact_at(bytes, u64::from(offset)).map_err(|e| self.io("pread", offset, e))
    }

    fn capacity(&self) -> usize {
        self.size as usize
    }
}

impl<const WRITE: usize, const ERASE: usize> NorFlash for FileFlash<WRITE, ERASE> {
    const WRITE_SIZE: usize = WRITE;
    const ERASE_SIZE: usize = ERASE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        let len = to.checked_sub(from).ok_or(FlashError::OutOfBounds { offset: from, len: 0 })? as usize;
        check(from, len, ERASE, u64::from(self.size))?;
        let ff = vec![0xFF; len.min(CHUNK)];
        let mut at = from;
        while at < to {
            let n = ((to - at) as usize).min(CHUNK);
            self.file.write_all_at(&ff[..n], u64::from(at)).map_err(|e| self.io("pwrite (erase)", at, e))?;
            at += n as u32;
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        check(offset, bytes.len(), WRITE, u64::from(self.size))?;
        let mut old = vec![0; bytes.len()];
        self.file.read_exact_at(&mut old, u64::from(offset)).map_err(|e| self.io("pread", offset, e))?;
        if let Some(i) = nor_violation(&old, bytes) {
            return Err(FlashError::WouldSetBits { offset: offset + i as u32 });
        }
        self.file.write_all_at(bytes, u64::from(offset)).map_err(|e| self.io("pwrite", offset, e))
    }
}

impl<const WRITE: usize, const ERASE: usize> Durable for FileFlash<WRITE, ERASE> {
    fn sync(&mut self) -> Result<(), FlashError> {
        self.syncs += 1;
        self.file.sync_data().map_err(|e| self.io("fdatasync", 0, e))
    }
}
