//! FileFlash: creation and refusal of images, NOR rules, the lock, durability points, and the
//! config store and settings on top of it.
#![allow(clippy::unwrap_used, clippy::panic)]
// `drop(store)` ends the borrow of the flash before the test looks at it again.
#![allow(clippy::drop_non_drop)]

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use msm_flash::{ConfigName, ConfigStore, NodeSettings, Partition, SaveInfo};
use msm_flash_linux::{FileFlash, FlashError};

type Flash = FileFlash<4, 4096>;

#[test]
fn a_missing_image_is_created_erased() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flash.img");
    let mut f = Flash::open(&path, 8 * 4096).unwrap();
    assert_eq!(f.capacity(), 8 * 4096);
    let mut buf = vec![0; 8 * 4096];
    f.read(0, &mut buf).unwrap();
    assert!(buf.iter().all(|b| *b == 0xFF));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 8 * 4096);
    // No temporary file left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_short_or_odd_sized_image_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.img");
    std::fs::write(&path, vec![0xFF; 3 * 4096]).unwrap();
    let err = Flash::open(&path, 8 * 4096).unwrap_err();
    assert!(matches!(err, FlashError::BadImageSize { found: 12288, expected: 32768, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("short.img") && msg.contains("refusing"), "{msg}");
    // The image is left as it was.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 * 4096);
    std::fs::write(&path, vec![0xFF; 4096 + 100]).unwrap();
    assert!(matches!(Flash::open_existing(&path), Err(FlashError::BadImageSize { .. })));
    assert!(matches!(Flash::open(&path, 4096 + 100), Err(FlashError::Geometry { .. })));
    assert!(matches!(
        Flash::open_existing(dir.path().join("missing.img")),
        Err(FlashError::Io { op: "open", .. })
    ));
}

#[test]
fn nor_rules_hold_on_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Flash::open(dir.path().join("f.img"), 2 * 4096).unwrap();
    f.write(8, &[0x0F, 0xF0, 0xFF, 0x00]).unwrap();
    let err = f.write(8, &[0xFF, 0xF0, 0xFF, 0x00]).unwrap_err();
    assert!(matches!(err, FlashError::WouldSetBits { offset: 8 }), "{err:?}");
    // Clearing more bits is allowed.
    f.write(8, &[0x0E, 0x00, 0xFF, 0x00]).unwrap();
    let mut buf = [0; 4];
    f.read(8, &mut buf).unwrap();
    assert_eq!(buf, [0x0E, 0x00, 0xFF, 0x00]);
    f.erase(0, 4096).unwrap();
    f.read(8, &mut buf).unwrap();
    assert_eq!(buf, [0xFF; 4]);
    assert!(matches!(f.write(2, &[0; 4]), Err(FlashError::NotAligned { .. })));
    assert!(matches!(f.erase(0, 100), Err(FlashError::NotAligned { .. })));
    assert!(matches!(f.write(2 * 4096, &[0; 4]), Err(FlashError::OutOfBounds { .. })));
    assert!(matches!(f.read(2 * 4096 - 2, &mut buf), Err(FlashError::OutOfBounds { .. })));
}

#[test]
fn a_second_handle_on_the_same_image_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.img");
    let first = Flash::open(&path, 4096).unwrap();
    let err = Flash::open(&path, 4096).unwrap_err();
    assert!(matches!(err, FlashError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("locked.img"), "{err}");
    drop(first);
    Flash::open(&path, 4096).unwrap();
}

#[test]
fn config_store_and_settings_on_a_file_image_survive_reopening_and_sync_at_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("msm-a.img");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    {
        let mut flash = Flash::open(&path, 256 * 4096).unwrap();
        let mut store = ConfigStore::mount(
            Partition::new(&mut flash, "primary", 0, 200 * 4096).unwrap(),
            ConfigName::Primary,
        )
        .unwrap();
        store
            .begin_save(data.len() as u32, &SaveInfo { saved_at: 1_617_900_322, sw_version: "16.2.5.4" })
            .unwrap();
        for c in data.chunks(4000) {
            store.write(c).unwrap();
        }
        store.commit().unwrap();
        drop(store);
        assert_eq!(flash.syncs(), 2, "commit must fsync before and after the marker");
        let mut settings =
            NodeSettings::new(Partition::new(&mut flash, "kv", 252 * 4096, 4 * 4096).unwrap()).unwrap();
        settings.set_last_term(17).unwrap();
        drop(settings);
        assert_eq!(flash.syncs(), 4, "a settings change must fsync (each mirrored half)");
    }
    let mut flash = Flash::open(&path, 256 * 4096).unwrap();
    let mut store = ConfigStore::mount(
        Partition::new(&mut flash, "primary", 0, 200 * 4096).unwrap(),
        ConfigName::Primary,
    )
    .unwrap();
    let info = *store.current().unwrap();
    assert_eq!((info.len, info.saved_at, info.sw_version()), (300_000, 1_617_900_322, "16.2.5.4"));
    let mut back = vec![0; data.len()];
    let mut off = 0;
    while off < back.len() {
        off += store.read(off as u32, &mut back[off..]).unwrap();
    }
    assert_eq!(back, data);
    drop(store);
    let mut settings =
        NodeSettings::new(Partition::new(&mut flash, "kv", 252 * 4096, 4 * 4096).unwrap()).unwrap();
    assert_eq!(settings.last_term().unwrap(), 17);
}

#[test]
fn the_image_is_the_owners_alone_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flash.img");
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let created = Flash::open(&path, 4 * 4096);
    nix::sys::stat::umask(old);
    drop(created.unwrap());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "created under umask 000");
    // An image others may write is refused by name, and opens again once fixed.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let e = Flash::open(&path, 4 * 4096).err().unwrap();
    assert!(matches!(e, FlashError::OpenToOthers { mode: 0o666, .. }), "{e:?}");
    assert!(e.to_string().contains("chmod 600") && e.to_string().contains("flash.img"), "{e}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    Flash::open(&path, 4 * 4096).unwrap();
}
