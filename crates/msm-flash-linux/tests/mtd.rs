//! What can be checked of the MTD driver without an MTD device: the ioctl ABI against
//! `mtd-abi.h`, the geometry checks, and the errors on paths that are not MTD devices.
#![allow(clippy::unwrap_used, clippy::panic)]
// `drop(store)` ends the borrow of the flash before the test looks at it again.
#![allow(clippy::drop_non_drop)]

use std::mem::{offset_of, size_of};

use msm_flash_linux::mtd::abi::{self, EraseInfoUser, MtdInfoUser};
use msm_flash_linux::mtd::{Geometry, check_geometry};
use msm_flash_linux::{FlashError, MtdFlash};

#[test]
fn ioctl_structures_match_mtd_abi_h() {
    assert_eq!(size_of::<MtdInfoUser>(), 32);
    assert_eq!(offset_of!(MtdInfoUser, type_), 0);
    assert_eq!(offset_of!(MtdInfoUser, flags), 4);
    assert_eq!(offset_of!(MtdInfoUser, size), 8);
    assert_eq!(offset_of!(MtdInfoUser, erasesize), 12);
    assert_eq!(offset_of!(MtdInfoUser, writesize), 16);
    assert_eq!(offset_of!(MtdInfoUser, oobsize), 20);
    assert_eq!(offset_of!(MtdInfoUser, padding), 24);
    assert_eq!(size_of::<EraseInfoUser>(), 8);
    assert_eq!(offset_of!(EraseInfoUser, start), 0);
    assert_eq!(offset_of!(EraseInfoUser, length), 4);
}

#[test]
fn ioctl_request_numbers_match_mtd_abi_h() {
    // _IOR('M', 1, struct mtd_info_user), _IOW('M', 2, struct erase_info_user)
    assert_eq!(abi::MEMGETINFO, 0x8020_4d01);
    assert_eq!(abi::MEMERASE, 0x4008_4d02);
}

fn nor(size: u32, erasesize: u32, writesize: u32) -> MtdInfoUser {
    MtdInfoUser {
        type_: abi::MTD_NORFLASH,
        flags: abi::MTD_WRITEABLE | 0x800,
        size,
        erasesize,
        writesize,
        ..Default::default()
    }
}

#[test]
fn geometry_is_checked_against_the_driver_constants() {
    let g = check_geometry(&nor(16 << 20, 65536, 1), 1, 65536).unwrap();
    assert_eq!(g, Geometry { size: 16 << 20, device_erase: 65536, device_write: 1 });
    // Larger logical units over smaller device units are fine.
    check_geometry(&nor(16 << 20, 4096, 1), 16, 65536).unwrap();
    // Smaller ones are not.
    assert!(check_geometry(&nor(16 << 20, 65536, 1), 1, 4096).unwrap_err().contains("erasesize 65536"));
    assert!(check_geometry(&nor(16 << 20, 65536, 4), 1, 65536).unwrap_err().contains("writesize 4"));
    assert!(check_geometry(&nor(100_000, 65536, 1), 1, 65536).unwrap_err().contains("device size"));
    assert!(check_geometry(&nor(0, 65536, 1), 1, 65536).is_err());
    assert!(check_geometry(&nor(1 << 20, 0, 1), 1, 65536).is_err());
    let mut nand = nor(1 << 20, 65536, 2048);
    nand.type_ = abi::MTD_NANDFLASH;
    assert!(check_geometry(&nand, 2048, 65536).unwrap_err().contains("NAND"));
    let mut ro = nor(1 << 20, 65536, 1);
    ro.flags = 0;
    assert!(check_geometry(&ro, 1, 65536).unwrap_err().contains("not writeable"));
    let mut ram = nor(1 << 20, 4096, 1);
    ram.type_ = abi::MTD_RAM;
    check_geometry(&ram, 4, 4096).unwrap();
    let mut odd = nor(1 << 20, 4096, 1);
    odd.type_ = 42;
    assert!(check_geometry(&odd, 1, 4096).unwrap_err().contains("unknown MTD type 42"));
}

#[test]
fn a_path_that_is_not_an_mtd_device_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-mtd");
    std::fs::write(&path, [0xFF; 4096]).unwrap();
    let err = MtdFlash::<1, 65536>::open(&path).unwrap_err();
    assert!(matches!(err, FlashError::NotMtd { .. }), "{err:?}");
    assert!(err.to_string().contains("not-mtd") && err.to_string().contains("not an MTD device"), "{err}");
    // A character device that is not MTD.
    let err = MtdFlash::<1, 65536>::open("/dev/null").unwrap_err();
    assert!(matches!(err, FlashError::NotMtd { .. }), "{err:?}");
    let err = MtdFlash::<1, 65536>::open("/dev/mtd-does-not-exist").unwrap_err();
    assert!(matches!(err, FlashError::Io { op: "open", .. }), "{err:?}");
    assert!(err.to_string().contains("/dev/mtd-does-not-exist"), "{err}");
}
