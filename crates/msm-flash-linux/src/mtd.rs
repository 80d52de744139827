//! A Linux MTD character device (`/dev/mtdN`) as a NOR flash.
//!
//! Geometry comes from the `MEMGETINFO` ioctl; erase is the `MEMERASE` ioctl; reads and writes
//! are `pread`/`pwrite` on the character device, which the kernel turns into flash reads and
//! programs. The driver's `WRITE` and `ERASE` are compile-time constants (the `embedded-storage`
//! traits need them): `WRITE` must be a multiple of the device's `writesize`, `ERASE` a multiple of
//! its `erasesize` (a logical block may span several device blocks), and the device size a
//! multiple of `ERASE`; [`check_geometry`] refuses anything else by name. Only NOR-like devices
//! (`MTD_NORFLASH`, `MTD_RAM`) that are writeable are accepted: NAND needs bad-block handling and
//! whole-page programs, which the stores do not do.
//!
//! The NOR rule is checked in software before each write (the old bytes are read back): an
//! MTD NOR device would otherwise AND the bits silently.
//!
//! **Where it runs.** The aarch64 board (`boards/aarch64-msm`) runs on it under QEMU: pflash
//! through the kernel's CFI (`cfi_cmdset_0001`) and `physmap` drivers, `/dev/mtd0`, 256 KiB erase
//! blocks; `cargo xtask qemu-test --board aarch64-msm` saves and mounts on it, cuts the power
//! (SIGKILL of QEMU) during saves, and runs a chassis on it. Two findings: choose `WRITE` as the
//! bus word the kernel's driver programs, not the `writesize` of 1 that MEMGETINFO reports for
//! NOR (the driver pads a partial word with 0xFF, harmless on AND-programming NOR, destructive on
//! a device that overwrites, as QEMU's pflash does); and RAM-like devices (`mtdram`,
//! `block2mtd`: `MTD_NO_ERASE`) are refused by name, because the stores' power-cut guarantees rest
//! on erase-then-program and such a device has no erase to rely on. Also tested here: the ioctl
//! structures' sizes and field offsets against `include/uapi/mtd/mtd-abi.h` (`struct
//! mtd_info_user` 32 bytes, `struct erase_info_user` 8), the ioctl request numbers, the geometry
//! checks, and the errors for a path that is missing or not an MTD device. Not exercised: erase
//! failures (`EIO`) of a worn block.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use msm_flash::Durable;
use nix::errno::Errno;
use nix::fcntl::Flock;

use crate::error::{FlashError, check, nor_violation};
use crate::lock::lock_exclusive;

/// `mtd-abi.h` definitions and the two ioctls.
#[allow(unsafe_code)]
pub mod abi {
    use std::os::fd::AsRawFd;

    /// `MTD_RAM`
    pub const MTD_RAM: u8 = 1;
    /// `MTD_ROM`
    pub const MTD_ROM: u8 = 2;
    /// `MTD_NORFLASH`
    pub const MTD_NORFLASH: u8 = 3;
    /// `MTD_NANDFLASH`
    pub const MTD_NANDFLASH: u8 = 4;
    /// `MTD_DATAFLASH`
    pub const MTD_DATAFLASH: u8 = 6;
    /// `MTD_UBIVOLUME`
    pub const MTD_UBIVOLUME: u8 = 7;
    /// `MTD_MLCNANDFLASH`
    pub const MTD_MLCNANDFLASH: u8 = 8;
    /// `MTD_WRITEABLE`: the device can be written.
    pub const MTD_WRITEABLE: u32 = 0x400;
    /// `MTD_NO_ERASE`: the device needs no (and has no) erase.
    pub const MTD_NO_ERASE: u32 = 0x1000;

    /// `struct mtd_info_user` (32 bytes).
    #[repr(C)]
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct MtdInfoUser {
        /// `MTD_*` device type.
        pub type_: u8,
        /// `MTD_*` flags.
        pub flags: u32,
        /// Total size in bytes.
        pub size: u32,
        /// Erase block size.
        pub erasesize: u32,
        /// Minimal program unit (1 on NOR).
        pub writesize: u32,
        /// Out-of-band bytes per page (NAND).
        pub oobsize: u32,
        /// Reserved.
        pub padding: u64,
    }

    /// `struct erase_info_user` (8 bytes).
    #[repr(C)]
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct EraseInfoUser {
        /// First byte to erase.
        pub start: u32,
        /// Bytes to erase.
        pub length: u32,
    }

    nix::ioctl_read!(mem_get_info, b'M', 1, MtdInfoUser);
    nix::ioctl_write_ptr!(mem_erase, b'M', 2, EraseInfoUser);

    /// `MEMGETINFO` request number.
    pub const MEMGETINFO: u64 = nix::request_code_read!(b'M', 1, size_of::<MtdInfoUser>()) as u64;
    /// `MEMERASE` request number.
    pub const MEMERASE: u64 = nix::request_code_write!(b'M', 2, size_of::<EraseInfoUser>()) as u64;

    /// `MEMGETINFO` on `fd`.
    pub fn get_info(fd: &impl AsRawFd) -> nix::Result<MtdInfoUser> {
        let mut info = MtdInfoUser::default();
        // SAFETY: the fd is open for the duration of the call, and `info` is a valid, writable
        // `struct mtd_info_user` (repr(C), layout checked by the tests) that the kernel fills.
        unsafe { mem_get_info(fd.as_raw_fd(), &mut info) }?;
        Ok(info)
    }

    /// `MEMERASE` of `[start, start + length)` on `fd`.
    pub fn erase(fd: &impl AsRawFd, start: u32, length: u32) -> nix::Result<()> {
        let req = EraseInfoUser { start, length };
        // SAFETY: the fd is open for the duration of the call, and `req` is a valid
        // `struct erase_info_user` (repr(C), layout checked by the tests) the kernel only reads.
        unsafe { mem_erase(fd.as_raw_fd(), &req) }?;
        Ok(())
    }
}

/// What [`check_geometry`] accepts from `MEMGETINFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Device size in bytes.
    pub size: u32,
    /// Device erase block.
    pub device_erase: u32,
    /// Device program unit.
    pub device_write: u32,
}

/// Check what `MEMGETINFO` reported against the driver's `WRITE` / `ERASE`.
pub fn check_geometry(info: &abi::MtdInfoUser, write: usize, erase: usize) -> Result<Geometry, String> {
    match info.type_ {
        abi::MTD_NORFLASH | abi::MTD_RAM => {}
        abi::MTD_NANDFLASH | abi::MTD_MLCNANDFLASH => {
            return Err("NAND flash is not supported (bad blocks, whole-page programs)".into());
        }
        abi::MTD_ROM => return Err("read-only MTD device (MTD_ROM)".into()),
        abi::MTD_UBIVOLUME => return Err("UBI volume, not a raw flash".into()),
        abi::MTD_DATAFLASH => return Err("DataFlash is not supported".into()),
        t => return Err(format!("unknown MTD type {t}")),
    }
    if info.flags & abi::MTD_WRITEABLE == 0 {
        return Err("MTD device is not writeable (MTD_WRITEABLE clear)".into());
    }
    if info.flags & abi::MTD_NO_ERASE != 0 {
        return Err("MTD device has no erase (MTD_NO_ERASE)".into());
    }
    let (dw, de) = (info.writesize as usize, info.erasesize as usize);
    if dw == 0 || de == 0 {
        return Err(format!("device reports writesize {dw} / erasesize {de}"));
    }
    if write == 0 || !write.is_multiple_of(dw) {
        return Err(format!("WRITE_SIZE {write} is not a multiple of the device writesize {dw}"));
    }
    if erase == 0 || !erase.is_multiple_of(de) || !erase.is_multiple_of(write) {
        return Err(format!(
            "ERASE_SIZE {erase} must be a multiple of the device erasesize {de} and of WRITE_SIZE {write}"
        ));
    }
    if info.size == 0 || !(info.size as usize).is_multiple_of(erase) {
        return Err(format!("device size {} is not a multiple of ERASE_SIZE {erase}", info.size));
    }
    Ok(Geometry { size: info.size, device_erase: info.erasesize, device_write: info.writesize })
}

/// `/dev/mtdN` as a NOR flash with `WRITE`-byte words and `ERASE`-byte blocks; see the module docs.
#[derive(Debug)]
pub struct MtdFlash<const WRITE: usize = 1, const ERASE: usize = 65536> {
    file: Flock<File>,
    path: PathBuf,
    geometry: Geometry,
}

impl<const WRITE: usize, const ERASE: usize> MtdFlash<WRITE, ERASE> {
    /// Open and lock the device, read its geometry and check it against `WRITE` / `ERASE`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, FlashError> {
        let path = path.as_ref();
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(|source| FlashError::Io {
            path: path.to_path_buf(),
            op: "open",
            offset: 0,
            source,
        })?;
        let file = lock_exclusive(file, path)?;
        let info = abi::get_info(&*file).map_err(|e| map_info_error(path, e))?;
        let geometry = check_geometry(&info, WRITE, ERASE)
            .map_err(|reason| FlashError::Geometry { path: path.to_path_buf(), reason })?;
        Ok(Self { file, path: path.to_path_buf(), geometry })
    }

    /// What the device reported.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn io(&self, op: &'static str, offset: u32, source: std::io::Error) -> FlashError {
        FlashError::Io { path: self.path.clone(), op, offset: u64::from(offset), source }
    }
}

/// `MEMGETINFO` failing with ENOTTY / EINVAL means the path is not an MTD device.
pub fn map_info_error(path: &Path, e: Errno) -> FlashError {
    match e {
        Errno::ENOTTY | Errno::EINVAL => FlashError::NotMtd { path: path.to_path_buf() },
        e => FlashError::Io { path: path.to_path_buf(), op: "MEMGETINFO", offset: 0, source: e.into() },
    }
}

impl<const WRITE: usize, const ERASE: usize> ErrorType for MtdFlash<WRITE, ERASE> {
    type Error = FlashError;
}

impl<const WRITE: usize, const ERASE: usize> ReadNorFlash for MtdFlash<WRITE, ERASE> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        check(offset, bytes.len(), 1, u64::from(self.geometry.size))?;
        self.file.read_exact_at(bytes, u64::from(offset)).map_err(|e| self.io("pread", offset, e))
    }

    fn capacity(&self) -> usize {
        self.geometry.size as usize
    }
}

impl<const WRITE: usize, const ERASE: usize> NorFlash for MtdFlash<WRITE, ERASE> {
    const WRITE_SIZE: usize = WRITE;
    const ERASE_SIZE: usize = ERASE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        let len = to.checked_sub(from).ok_or(FlashError::OutOfBounds { offset: from, len: 0 })?;
        check(from, len as usize, ERASE, u64::from(self.geometry.size))?;
        if len == 0 {
            return Ok(());
        }
        // EIO here is the device failing to erase (a worn-out block).
        abi::erase(&*self.file, from, len).map_err(|e| self.io("MEMERASE", from, e.into()))
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        check(offset, bytes.len(), WRITE, u64::from(self.geometry.size))?;
        let mut old = vec![0; bytes.len()];
        self.file.read_exact_at(&mut old, u64::from(offset)).map_err(|e| self.io("pread", offset, e))?;
        if let Some(i) = nor_violation(&old, bytes) {
            return Err(FlashError::WouldSetBits { offset: offset + i as u32 });
        }
        self.file.write_all_at(bytes, u64::from(offset)).map_err(|e| self.io("pwrite", offset, e))
    }
}

impl<const WRITE: usize, const ERASE: usize> Durable for MtdFlash<WRITE, ERASE> {
    /// MTD writes are synchronous (the kernel programs before `pwrite` returns); `fsync` is kept
    /// for devices with a write cache. A device without `fsync` (EINVAL) is already durable.
    fn sync(&mut self) -> Result<(), FlashError> {
        match self.file.sync_data() {
            Err(e) if e.raw_os_error() == Some(Errno::EINVAL as i32) => Ok(()),
            r => r.map_err(|e| self.io("fsync", 0, e)),
        }
    }
}
