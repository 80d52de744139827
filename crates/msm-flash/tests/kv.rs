//! The node-settings key-value area: set/get/overwrite, persistence, garbage collection, power
//! cuts, corruption as named errors, never a panic.
#![allow(clippy::unwrap_used, clippy::panic)]
// `drop(store)` ends the borrow of the flash before the test looks at it again.
#![allow(clippy::drop_non_drop)]

mod common;

use common::{Mock, mock, rng};
use msm_flash::kv::{Blocking, block_on};
use msm_flash::{ConfigName, Error, NodeSettings};
use rand::{Rng, RngCore};
use sequential_storage::cache::Cache;
use sequential_storage::map::{MapConfig, MapStorage};

/// sequential-storage may program a word a second time after a power cut (it re-closes a page
/// whose closing word was torn), clearing more bits: allowed on NOR without ECC words, refused by
/// the mock's strict mode. So the key-value tests run the mock without it.
fn kv_mock<const B: usize>(blocks: usize) -> Mock<4, B> {
    let mut m = mock::<4, B>(blocks);
    m.set_strict(false);
    m
}

#[test]
fn settings_set_get_overwrite_and_persist() {
    let mut flash = kv_mock::<4096>(4);
    let mut s = NodeSettings::new(&mut flash).unwrap();
    assert_eq!(s.priority().unwrap(), None);
    assert_eq!(s.selected_config().unwrap(), ConfigName::Primary);
    assert_eq!(s.boot_count().unwrap(), 0);
    assert_eq!(s.last_term().unwrap(), 0);
    s.set_priority(7).unwrap();
    s.set_selected_config(ConfigName::Secondary).unwrap();
    assert_eq!(s.increment_boot_count().unwrap(), 1);
    assert_eq!(s.increment_boot_count().unwrap(), 2);
    s.set_last_term(41).unwrap();
    s.set_last_term(42).unwrap();
    s.set_priority(3).unwrap();
    drop(s);
    let mut s = NodeSettings::new(&mut flash).unwrap();
    assert_eq!(s.priority().unwrap(), Some(3));
    assert_eq!(s.selected_config().unwrap(), ConfigName::Secondary);
    assert_eq!(s.boot_count().unwrap(), 2);
    assert_eq!(s.last_term().unwrap(), 42);
    s.erase_all().unwrap();
    assert_eq!(s.priority().unwrap(), None);
}

#[test]
fn setting_an_unchanged_value_programs_nothing_and_a_change_syncs() {
    let mut flash = kv_mock::<4096>(4);
    let mut s = NodeSettings::new(&mut flash).unwrap();
    s.set_last_term(9).unwrap();
    drop(s);
    let (bytes, syncs) = (flash.stats().bytes_programmed, flash.stats().syncs);
    assert_eq!(syncs, 2, "one sync per mirrored half");
    let mut s = NodeSettings::new(&mut flash).unwrap();
    s.set_last_term(9).unwrap();
    drop(s);
    assert_eq!(flash.stats().bytes_programmed, bytes);
}

#[test]
fn many_updates_in_a_four_block_area_garbage_collect_and_keep_the_latest_values() {
    let mut flash = kv_mock::<4096>(4);
    let mut s = NodeSettings::new(&mut flash).unwrap();
    for term in 1..=700u64 {
        s.set_last_term(term).unwrap();
        if term % 97 == 0 {
            s.increment_boot_count().unwrap();
        }
    }
    drop(s);
    let mut s = NodeSettings::new(&mut flash).unwrap();
    assert_eq!(s.last_term().unwrap(), 700);
    assert_eq!(s.boot_count().unwrap(), 7);
    drop(s);
    assert!(flash.erase_counts().iter().all(|c| *c >= 1), "{:?}", flash.erase_counts());
}

#[test]
fn a_power_cut_at_any_point_of_a_setting_change_leaves_old_or_new() {
    // 60 successive term changes in an area of four 512-byte blocks (two per mirrored half), so the sequence crosses page switches and
    // garbage collection. Every cut point is tried for every change that erases (page switch) and
    // for every 12th change; the state then moves on to the completed change.
    let mut flash = kv_mock::<512>(4);
    NodeSettings::new(&mut flash).unwrap().set_priority(5).unwrap();
    let mut image = flash.contents().to_vec();
    let (mut cut_points, mut swept_with_erase) = (0, 0);
    for term in 1..=60u64 {
        flash.reboot();
        flash.contents_mut().copy_from_slice(&image);
        flash.reset_stats();
        NodeSettings::new(&mut flash).unwrap().set_last_term(term).unwrap();
        let (units, erases) = (flash.stats().units, flash.stats().erases);
        let next = flash.contents().to_vec();
        if erases > 0 || term % 12 == 0 {
            swept_with_erase += usize::from(erases > 0);
            for cut in 0..units {
                let ctx = format!("term {term}, cut after {cut} of {units} units (seed {cut})");
                flash.reboot();
                flash.contents_mut().copy_from_slice(&image);
                flash.cut_after(cut, cut);
                assert!(NodeSettings::new(&mut flash).unwrap().set_last_term(term).is_err(), "{ctx}");
                flash.reboot();
                let mut s = NodeSettings::new(&mut flash).unwrap();
                let got = s.last_term().unwrap_or_else(|e| panic!("{ctx}: {e:?}"));
                assert!(got == term - 1 || got == term, "{ctx}: term {got}");
                assert_eq!(s.priority().unwrap(), Some(5), "{ctx}");
                s.set_last_term(1_000).unwrap_or_else(|e| panic!("{ctx}: set after recovery: {e:?}"));
                cut_points += 1;
            }
        }
        image = next;
    }
    assert!(swept_with_erase > 0, "no change crossed a page switch");
    println!("key-value area: {cut_points} cut points covered ({swept_with_erase} changes with an erase)");
}

/// The measured reason for the mirror: one `sequential-storage` map (two 1 KiB pages), a power cut
/// that tears the erase of the page its garbage collection just emptied (cut after 40 units of the
/// 51st change, seed 40), and every setting reads back as unset. If an upgrade of
/// sequential-storage fixes this, this test fails and the mirror can be reconsidered.
#[test]
fn one_sequential_storage_map_alone_loses_every_setting_on_a_torn_garbage_collection_erase() {
    let mut flash = kv_mock::<1024>(2);
    let config = || MapConfig::try_new(0..2048).unwrap();
    let mut map = MapStorage::<u8, _, _>::new(Blocking(&mut flash), config(), Cache::new_uncached());
    block_on(map.store_item(&mut [0; 64], &1u8, &5u8)).unwrap().unwrap();
    for term in 1..=50u64 {
        block_on(map.store_item(&mut [0; 64], &4u8, &term)).unwrap().unwrap();
    }
    drop(map);
    flash.cut_after(40, 40);
    let mut map = MapStorage::<u8, _, _>::new(Blocking(&mut flash), config(), Cache::new_uncached());
    assert!(block_on(map.store_item(&mut [0; 64], &4u8, &51u64)).unwrap().is_err());
    drop(map);
    flash.reboot();
    let mut map = MapStorage::<u8, _, _>::new(Blocking(&mut flash), config(), Cache::new_uncached());
    let term = block_on(map.fetch_item::<u64>(&mut [0; 64], &4u8)).unwrap();
    let priority = block_on(map.fetch_item::<u8>(&mut [0; 64], &1u8)).unwrap();
    assert_eq!((term, priority), (Ok(None), Ok(None)), "sequential-storage kept the settings");
}

#[test]
fn a_value_this_code_cannot_decode_is_a_named_error() {
    let mut flash = kv_mock::<4096>(4);
    let mut map = MapStorage::<u8, _, _>::new(
        Blocking(&mut flash),
        MapConfig::try_new(0..8192).unwrap(),
        Cache::new_uncached(),
    );
    block_on(map.store_item(&mut [0; 64], &2u8, &7u8)).unwrap().unwrap();
    drop(map);
    let mut s = NodeSettings::new(&mut flash).unwrap();
    assert_eq!(s.selected_config(), Err(Error::KvBadValue { key: 2 }));
}

#[test]
fn a_key_value_area_of_fewer_than_four_or_an_odd_number_of_blocks_is_refused() {
    let mut two = kv_mock::<4096>(2);
    assert!(matches!(NodeSettings::new(&mut two), Err(Error::Geometry { .. })));
    let mut five = kv_mock::<4096>(5);
    assert!(matches!(NodeSettings::new(&mut five), Err(Error::Geometry { .. })));
}

#[test]
fn random_contents_and_bit_flips_give_values_or_named_errors_never_panics() {
    let mut used = kv_mock::<4096>(4);
    let mut s = NodeSettings::new(&mut used).unwrap();
    for term in 1..=200u64 {
        s.set_last_term(term).unwrap();
    }
    s.set_priority(1).unwrap();
    drop(s);
    let image = used.contents().to_vec();
    let mut outcomes = [0usize; 2];
    for seed in 0..150u64 {
        let mut r = rng(seed);
        let mut flash = kv_mock::<4096>(4);
        if seed % 2 == 0 {
            r.fill_bytes(flash.contents_mut());
        } else {
            flash.contents_mut().copy_from_slice(&image);
            for _ in 0..r.random_range(1..20) {
                let at = r.random_range(0..16384);
                flash.contents_mut()[at] ^= 1 << r.random_range(0..8);
            }
        }
        let mut s = NodeSettings::new(&mut flash).unwrap();
        // Every call returns; errors are named variants (the type guarantees it), values decode.
        // On garbage, sequential-storage may try to set bits that are 0: the mock refuses (a flash
        // error) where real NOR would silently AND the bits.
        let results = [
            s.last_term().map(|_| ()),
            s.priority().map(|_| ()),
            s.selected_config().map(|_| ()),
            s.set_last_term(1_000 + seed),
            s.increment_boot_count().map(|_| ()),
        ];
        for r in &results {
            if let Err(e) = r {
                assert!(
                    matches!(
                        e,
                        Error::KvCorrupt
                            | Error::KvBadValue { .. }
                            | Error::KvFull
                            | Error::KvInternal
                            | Error::Flash(_)
                    ),
                    "seed {seed}: unexpected {e:?}"
                );
            }
        }
        outcomes[usize::from(results.iter().any(Result::is_err))] += 1;
        drop(s);
        if results[3].is_ok() {
            // Read back from flash, not from the RAM cache.
            assert_eq!(NodeSettings::new(&mut flash).unwrap().last_term(), Ok(1_000 + seed), "seed {seed}");
        }
    }
    println!("key-value area under random damage: {} clean, {} with named errors", outcomes[0], outcomes[1]);
}
