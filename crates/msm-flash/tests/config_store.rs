//! The config store's contract apart from power cuts: streaming, metadata, limits, the ring,
//! corruption fallback, and the partition views it runs on.
#![allow(clippy::unwrap_used, clippy::panic)]
// `drop(store)` ends the borrow of the flash before the test looks at it again.
#![allow(clippy::drop_non_drop)]

mod common;

use core::cell::RefCell;

use common::{config, mock, read_all, save_chunked};
use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use msm_flash::{
    ConfigName, ConfigStore, CorruptReason, Error, Partition, PartitionError, SaveInfo, SharedError,
    SharedFlash,
};

const INFO: SaveInfo<'static> = SaveInfo { saved_at: 1_617_900_322, sw_version: "16.2.5.4" };

#[test]
fn empty_store_has_no_config_and_read_says_so() {
    let mut flash = mock::<4, 4096>(4);
    let mut store = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
    assert!(store.current().is_none());
    assert_eq!(store.read(0, &mut [0; 4]), Err(Error::NoValidConfig));
    assert_eq!(store.verify(), Err(Error::NoValidConfig));
    assert_eq!(*store.report(), Default::default());
}

#[test]
fn a_512_kib_config_streamed_in_odd_chunks_reads_back_identical_after_remount() {
    let mut flash = mock::<16, 65536>(20);
    let data = config(512 * 1024, 1);
    let mut store = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
    assert!(store.max_len() >= 512 * 1024);
    save_chunked(&mut store, &data, 1021, 7).unwrap();
    drop(store);
    let mut store = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
    assert_eq!(read_all(&mut store, 4093).unwrap(), data);
    store.verify().unwrap();
    // Reads past the end return 0, reads across it are cut.
    assert_eq!(store.read(512 * 1024, &mut [0; 8]).unwrap(), 0);
    assert_eq!(store.read(512 * 1024 - 3, &mut [0; 8]).unwrap(), 3);
    println!(
        "RAM of a ConfigStore over a mock flash: {} bytes",
        core::mem::size_of::<ConfigStore<&mut common::Mock<16, 65536>>>()
    );
}

#[test]
fn records_length_crc_generation_time_and_version() {
    let mut flash = mock::<4, 4096>(8);
    let mut store = ConfigStore::mount(&mut flash, ConfigName::Secondary).unwrap();
    let data = config(278_217 / 40, 2);
    let info = *store.save(&data, &INFO).unwrap();
    assert_eq!(info.len as usize, data.len());
    assert_eq!(info.crc, crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(&data));
    assert_eq!(info.generation, 1);
    assert_eq!(info.saved_at, 1_617_900_322);
    assert_eq!(info.sw_version(), "16.2.5.4");
    assert_eq!(info.name, ConfigName::Secondary);
    let info2 = *store.save(&data[..100], &SaveInfo { saved_at: 5, sw_version: "17.1" }).unwrap();
    assert_eq!(info2.generation, 2);
    drop(store);
    let store = ConfigStore::mount(&mut flash, ConfigName::Secondary).unwrap();
    assert_eq!(store.current(), Some(&info2));
    assert_eq!(store.report().valid_records, 1);
}

#[test]
fn long_software_version_is_cut_at_a_char_boundary() {
    let mut flash = mock::<4, 4096>(4);
    let mut store = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
    let long = "ExtremeXOS version 16.2.5.4 patch1-5 é";
    assert!(long.len() > 32);
    let info = *store.save(b"x", &SaveInfo { saved_at: 0, sw_version: long }).unwrap();
    assert!(long.starts_with(info.sw_version()) && info.sw_version().len() <= 32, "{:?}", info.sw_version());
    let accents = "éééééééééééééééééé"; // 36 bytes, boundaries at even offsets
    let info = *store.save(b"y", &SaveInfo { saved_at: 0, sw_version: accents }).unwrap();
    assert_eq!(info.sw_version(), &accents[..32]);
}

#[test]
fn too_large_config_is_refused_and_the_current_one_stays() {
    let mut flash = mock::<4, 4096>(4);
    let mut store = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
    // Header, trailer, commit marker, and a 16-byte continuation marker in each block after the
    // first.
    assert_eq!(store.max_len(), 4 * 4096 - 64 - 16 - 8 - 3 * 16);
    let data = config(5000, 3);
    store.save(&data, &INFO).unwrap();
    // The current record uses 2 blocks, 2 remain.
    let max = store.max_len();
    assert_eq!(max, 2 * 4096 - 88 - 16);
    assert_eq!(store.begin_save(max + 1, &INFO), Err(Error::TooLarge { len: max + 1, max }));
    store.save(&config(max as usize, 4), &INFO).unwrap();
    assert_eq!(read_all(&mut store, 999).unwrap(), config(max as usize, 4));
}

#[test]
fn a_config_filling_the_whole_ring_blocks_further_saves_instead_of_erasing_it() {
    let mut flash = mock::<4, 4096>(2);
    let mut store = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
    let big = config(store.max_len() as usize, 8);
    store.save(&big, &INFO).unwrap();
    assert_eq!(store.max_len(), 0);
    assert_eq!(store.begin_save(0, &INFO), Err(Error::TooLarge { len: 0, max: 0 }));
    drop(store);
    let mut store = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
    assert_eq!(read_all(&mut store, 1000).unwrap(), big);
}

#[test]
fn misuse_of_a_save_gets_named_errors_and_the_current_config_stays() {
    let mut flash = mock::<4, 4096>(4);
    let mut store = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
    store.save(b"old config", &INFO).unwrap();
    assert_eq!(store.write(b"x"), Err(Error::NoSaveInProgress));
    assert_eq!(store.commit().err(), Some(Error::NoSaveInProgress));
    store.begin_save(4, &INFO).unwrap();
    assert_eq!(store.begin_save(4, &INFO), Err(Error::SaveInProgress));
    assert_eq!(store.write(b"12345"), Err(Error::Overflow { len: 4 }));
    assert!(!store.save_in_progress());
    store.begin_save(4, &INFO).unwrap();
    store.write(b"12").unwrap();
    assert_eq!(store.commit().err(), Some(Error::LengthMismatch { len: 4, written: 2 }));
    store.begin_save(4, &INFO).unwrap();
    store.write(b"12").unwrap();
    store.abort_save();
    assert_eq!(read_all(&mut store, 3).unwrap(), b"old config");
    drop(store);
    let mut store = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
    assert_eq!(read_all(&mut store, 3).unwrap(), b"old config");
    assert_eq!(store.report().torn_records, 1, "{:?}", store.report());
    // Generations keep increasing past the abandoned saves.
    assert!(store.save(b"new", &INFO).unwrap().generation > 4);
}

#[test]
fn commit_syncs_before_and_after_the_marker() {
    let mut flash = mock::<4, 4096>(4);
    let mut store = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
    store.save(b"a config", &INFO).unwrap();
    assert_eq!(flash.stats().syncs, 2);
}

#[test]
fn the_ring_wraps_many_times_and_always_mounts_the_latest() {
    let mut r = common::rng(5);
    let mut flash = mock::<4, 4096>(10);
    for i in 0..200u64 {
        let len = (rand::Rng::random_range(&mut r, 0..9000)) as usize;
        let data = config(len, i);
        let mut store = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
        let chunk = rand::Rng::random_range(&mut r, 1..3000);
        save_chunked(&mut store, &data, chunk, i)
            .unwrap_or_else(|e| panic!("save {i} ({len} bytes): {e:?} (seed 5)"));
        drop(store);
        let mut store = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
        assert_eq!(store.current().unwrap().generation as u64, i + 1);
        assert_eq!(read_all(&mut store, 512).unwrap(), data, "save {i} (seed 5)");
    }
    let counts = flash.erase_counts();
    let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(max - min <= 2, "erases not spread: {counts:?}");
}

#[test]
fn a_config_store_refuses_the_other_configs_region() {
    let mut flash = mock::<4, 4096>(4);
    ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap().save(b"primary", &INFO).unwrap();
    let store = ConfigStore::mount(&mut flash, ConfigName::Secondary).unwrap();
    assert!(store.current().is_none());
    assert_eq!(
        store.current_or_err().err(),
        Some(Error::Corrupt { block: 0, reason: CorruptReason::WrongName })
    );
}

#[test]
fn unsuitable_geometry_is_refused() {
    let mut one_block = mock::<4, 4096>(1);
    assert!(matches!(ConfigStore::mount(&mut one_block, ConfigName::Primary), Err(Error::Geometry { .. })));
    let mut wide = mock::<128, 4096>(4);
    assert!(matches!(ConfigStore::mount(&mut wide, ConfigName::Primary), Err(Error::Geometry { .. })));
}

#[test]
fn a_damaged_newest_config_falls_back_to_the_previous_one_and_is_reported() {
    let mut flash = mock::<4, 4096>(8);
    let old = config(3000, 10);
    let new = config(3000, 11);
    let mut store = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
    store.save(&old, &INFO).unwrap();
    let block = store.save(&new, &INFO).unwrap().block;
    drop(store);
    // Flip one bit in the newest record's data.
    flash.contents_mut()[block as usize * 4096 + 64 + 1000] ^= 0x10;
    let mut store = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
    assert_eq!(read_all(&mut store, 700).unwrap(), old);
    assert_eq!(store.report().first_corrupt, Some((block, CorruptReason::DataCrc)));
    // Damage the old one too: nothing valid, the error names the block and the reason.
    let old_block = store.current().unwrap().block;
    drop(store);
    flash.contents_mut()[old_block as usize * 4096 + 64 + 5] ^= 0x01;
    let mut store = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
    assert_eq!(store.read(0, &mut [0; 4]), Err(Error::Corrupt { block, reason: CorruptReason::DataCrc }));
    // A new save still works.
    store.save(b"fresh", &INFO).unwrap();
    assert_eq!(read_all(&mut store, 2).unwrap(), b"fresh");
}

#[test]
fn partition_refuses_access_outside_itself_with_its_name() {
    let mut flash = mock::<4, 4096>(4);
    let mut p = Partition::new(&mut flash, "kv", 4096, 8192).unwrap();
    assert_eq!(p.capacity(), 8192);
    let err = p.write(8192, &[0; 4]).unwrap_err();
    assert_eq!(err, PartitionError::OutOfRange { partition: "kv", offset: 8192, len: 4, size: 8192 });
    assert_eq!(err.to_string(), "partition `kv`: access of 4 bytes at offset 8192 is outside its 8192 bytes");
    assert!(matches!(p.read(8190, &mut [0; 4]), Err(PartitionError::OutOfRange { .. })));
    assert!(matches!(p.erase(0, 3 * 4096), Err(PartitionError::OutOfRange { .. })));
    assert!(matches!(p.erase(4096, 0), Err(PartitionError::OutOfRange { .. })));
    assert!(matches!(p.read(u32::MAX, &mut [0; 4]), Err(PartitionError::OutOfRange { .. })));
    assert!(matches!(p.write(2, &[0; 4]), Err(PartitionError::NotAligned { .. })));
    p.write(0, &[1, 2, 3, 4]).unwrap();
    assert_eq!(&flash.contents()[4096..4100], &[1, 2, 3, 4]);
    assert!(matches!(Partition::new(&mut flash, "x", 100, 4096), Err(PartitionError::Misaligned { .. })));
    assert!(matches!(
        Partition::new(&mut flash, "x", 4096, 4 * 4096),
        Err(PartitionError::BeyondDevice { .. })
    ));
}

#[test]
fn primary_secondary_and_kv_partitions_share_one_device() {
    let device = RefCell::new(mock::<4, 4096>(14));
    let primary = Partition::new(SharedFlash::new(&device), "primary", 0, 5 * 4096).unwrap();
    let secondary = Partition::new(SharedFlash::new(&device), "secondary", 5 * 4096, 5 * 4096).unwrap();
    let kv = Partition::new(SharedFlash::new(&device), "kv", 10 * 4096, 4 * 4096).unwrap();
    let mut p = ConfigStore::mount(primary, ConfigName::Primary).unwrap();
    let mut s = ConfigStore::mount(secondary, ConfigName::Secondary).unwrap();
    let mut settings = msm_flash::NodeSettings::new(kv).unwrap();
    p.save(&config(9000, 1), &INFO).unwrap();
    s.save(&config(7000, 2), &INFO).unwrap();
    settings.set_selected_config(ConfigName::Secondary).unwrap();
    assert_eq!(read_all(&mut p, 1000).unwrap(), config(9000, 1));
    assert_eq!(read_all(&mut s, 1000).unwrap(), config(7000, 2));
    assert_eq!(settings.selected_config().unwrap(), ConfigName::Secondary);
    // Re-entrant use is an error, not a panic.
    let _held = device.borrow_mut();
    assert_eq!(p.read(0, &mut [0; 4]), Err(Error::Flash(PartitionError::Device(SharedError::Busy))));
}
