//! Tests of `kv`, beside it.

// `drop(store)` ends the borrow of the flash before the test looks at it again.
#![allow(clippy::unwrap_used, clippy::panic, clippy::drop_non_drop)]
use rand::{RngCore, SeedableRng};

use super::*;
use crate::failover_record::FailoverRecord;
use crate::mock::MockFlash;

type Mock = MockFlash<[u8; 16384], [u32; 4], 4, 4096>;

/// A settings area of four 4 KiB blocks filled by `fill`.
fn area(fill: impl FnOnce(&mut [u8])) -> Mock {
    let mut m = MockFlash::new_erased([0u8; 16384], [0u32; 4]).unwrap();
    // sequential-storage may program a word twice after a cut (see the module docs).
    m.set_strict(false);
    fill(m.contents_mut());
    m
}

/// A damaged area: mounts with every setting at its default, reports why, and takes writes.
fn boots_with_defaults(flash: &mut Mock, what: &str) -> SettingsReport {
    let mut s = NodeSettings::new(&mut *flash).unwrap();
    let report = s.mount().unwrap_or_else(|e| panic!("{what}: mount failed: {e:?}"));
    assert_eq!(s.boot_count(), Ok(0), "{what}");
    assert_eq!(s.priority(), Ok(None), "{what}");
    assert_eq!(s.selected_config(), Ok(ConfigName::Primary), "{what}");
    assert_eq!(s.increment_boot_count(), Ok(1), "{what}: the area takes writes again");
    s.set_priority(7).unwrap();
    drop(s);
    let mut again = NodeSettings::new(&mut *flash).unwrap();
    assert_eq!(again.mount().unwrap(), SettingsReport::default(), "{what}: clean after the rebuild");
    assert_eq!((again.boot_count(), again.priority()), (Ok(1), Ok(Some(7))), "{what}");
    report
}

#[test]
fn zeroed_area_boots_with_defaults_and_says_why() {
    let mut flash = area(|m| m.fill(0));
    let r = boots_with_defaults(&mut flash, "zeros");
    assert!(r.reformatted(), "{r:?}");
    assert!(!r.blank);
    assert_eq!(r.damage(), Some(KvDamage::Corrupt), "{r:?}");
}

#[test]
fn random_area_boots_with_defaults_and_says_why() {
    let mut reformatted = 0;
    for seed in 0..20 {
        let mut flash = area(|m| rand_pcg::Pcg64Mcg::seed_from_u64(seed).fill_bytes(m));
        let mut s = NodeSettings::new(&mut flash).unwrap();
        let r = s.mount().unwrap();
        assert!(r.damage().is_some(), "seed {seed}: {r:?}");
        drop(s);
        if r.reformatted() {
            reformatted += 1;
            boots_with_defaults(&mut flash, "random bytes");
        } else {
            // Random bytes can hold an item whose CRC happens to match: that half's values
            // are taken, the other half is rebuilt from it; writes work.
            let mut s = NodeSettings::new(&mut flash).unwrap();
            let n = s.boot_count().unwrap();
            assert_eq!(s.increment_boot_count(), Ok(n.saturating_add(1)), "seed {seed}");
        }
    }
    assert!(reformatted >= 15, "{reformatted} of 20 random areas reformatted");
}

#[test]
fn erased_area_is_blank_not_damaged() {
    let mut flash = area(|_| {});
    let r = boots_with_defaults(&mut flash, "erased");
    assert_eq!(r, SettingsReport { blank: true, rebuilt: [None; 2] });
}

#[test]
fn one_damaged_half_is_rebuilt_and_the_settings_kept() {
    let mut flash = area(|_| {});
    let mut s = NodeSettings::new(&mut flash).unwrap();
    s.set_priority(3).unwrap();
    s.increment_boot_count().unwrap();
    drop(s);
    flash.contents_mut()[8192..].fill(0);
    let mut s = NodeSettings::new(&mut flash).unwrap();
    let r = s.mount().unwrap();
    assert_eq!(r.rebuilt[0], None, "{r:?}");
    assert!(r.rebuilt[1].is_some() && !r.reformatted(), "{r:?}");
    assert_eq!((s.priority(), s.boot_count()), (Ok(Some(3)), Ok(1)));
}

/// The failover history: newest first, a ring of `HISTORY`, kept across a
/// remount, rebuilt in a damaged half from the other, and a power cut at any
/// point of a record's double write leaves the old ring or the new one.
#[test]
fn failover_history_is_a_ring_that_survives_a_damaged_half_and_power_cuts() {
    let rec = |seq: u32| FailoverRecord {
        seq,
        unix_ms: 1000 + u64::from(seq),
        cause: 2,
        term: 7,
        ..Default::default()
    };
    let mut flash = area(|_| {});
    let mut s = NodeSettings::new(&mut flash).unwrap();
    s.set_priority(4).unwrap();
    for seq in 1..=11 {
        s.record_failover(&rec(seq)).unwrap();
    }
    let want: [Option<FailoverRecord>; HISTORY] = core::array::from_fn(|i| Some(rec(11 - i as u32)));
    assert_eq!(s.failover_history().unwrap(), want, "newest first, the oldest three overwritten");
    drop(s);
    // Half B zeroed: rebuilt from A, history and settings kept.
    flash.contents_mut()[8192..].fill(0);
    let mut s = NodeSettings::new(&mut flash).unwrap();
    assert!(s.mount().unwrap().rebuilt[1].is_some());
    assert_eq!(s.failover_history().unwrap(), want);
    assert_eq!(s.priority(), Ok(Some(4)));
    drop(s);
    // Half A zeroed: rebuilt from B.
    flash.contents_mut()[..8192].fill(0);
    let mut s = NodeSettings::new(&mut flash).unwrap();
    assert!(s.mount().unwrap().rebuilt[0].is_some());
    assert_eq!(s.failover_history().unwrap(), want);
    drop(s);
    // Every cut point of the next record's write.
    let image = flash.contents().to_vec();
    flash.reset_stats();
    NodeSettings::new(&mut flash).unwrap().record_failover(&rec(12)).unwrap();
    let units = flash.stats().units;
    for cut in 0..units {
        flash.reboot();
        flash.contents_mut().copy_from_slice(&image);
        flash.cut_after(cut, cut);
        assert!(NodeSettings::new(&mut flash).unwrap().record_failover(&rec(12)).is_err(), "cut {cut}");
        flash.reboot();
        let mut s = NodeSettings::new(&mut flash).unwrap();
        let got = s.failover_history().unwrap_or_else(|e| panic!("cut {cut}: {e:?}"));
        let newest = got[0].map(|r| r.seq);
        assert!(newest == Some(11) || newest == Some(12), "cut {cut}: newest {newest:?}");
        assert_eq!(
            got[1..],
            want[usize::from(newest == Some(11))..HISTORY - usize::from(newest == Some(12))],
            "cut {cut}"
        );
        assert_eq!(s.priority(), Ok(Some(4)), "cut {cut}");
        drop(s);
        // Reconciled: both halves agree now, so a remount reads the same.
        let mut again = NodeSettings::new(&mut flash).unwrap();
        assert_eq!(again.failover_history().unwrap(), got, "cut {cut}");
    }
}
