//! The config store's own tests: damage named at mount, a replace cut
//! anywhere. (The crate's `tests/` hold the rest.)

// `drop(store)` ends the borrow of the flash before the test looks at it again.
#![allow(clippy::unwrap_used, clippy::panic, clippy::drop_non_drop)]
use rand::{RngCore, SeedableRng};

use super::*;
use crate::mock::{MockError, MockFlash};

/// Eight 256-byte blocks, 4-byte words.
type Mock = MockFlash<[u8; 2048], [u32; 8], 4, 256>;
const INFO: SaveInfo<'static> = SaveInfo { saved_at: 7, sw_version: "test" };

fn erased() -> Mock {
    MockFlash::new_erased([0u8; 2048], [0u32; 8]).unwrap()
}

fn text(len: usize, tag: u8) -> [u8; 2048] {
    let mut t = [0u8; 2048];
    for (i, b) in t[..len].iter_mut().enumerate() {
        *b = b'a' + ((i as u8).wrapping_add(tag)) % 26;
    }
    t
}

fn damage_of(flash: &mut Mock) -> Option<Damage> {
    ConfigStore::mount(flash, ConfigName::Primary).unwrap().damage()
}

fn read(flash: &mut Mock, len: usize) -> Option<[u8; 2048]> {
    let mut s = ConfigStore::mount(flash, ConfigName::Primary).unwrap();
    let cur = *s.current()?;
    assert_eq!(cur.len as usize, len, "{cur:?}");
    let mut out = [0u8; 2048];
    assert_eq!(s.read(0, &mut out[..len]).unwrap(), len);
    Some(out)
}

#[test]
fn damage_names_what_the_mount_found() {
    // Never written: nothing to report.
    assert_eq!(damage_of(&mut erased()), None);
    // Zeros, random bytes: no record, the region holds data.
    let mut zeros = erased();
    zeros.contents_mut().fill(0);
    assert_eq!(damage_of(&mut zeros), Some(Damage::Unrecognised { blocks: 8 }));
    let mut random = erased();
    rand_pcg::Pcg64Mcg::seed_from_u64(1).fill_bytes(random.contents_mut());
    assert_eq!(damage_of(&mut random), Some(Damage::Unrecognised { blocks: 8 }));
    // One save, its data damaged: lost.
    let mut one = erased();
    ConfigStore::mount(&mut one, ConfigName::Primary).unwrap().save(&text(300, 0)[..300], &INFO).unwrap();
    one.contents_mut()[100] ^= 0x40;
    let d = damage_of(&mut one);
    assert_eq!(d, Some(Damage::Lost { block: 0, reason: CorruptReason::DataCrc }));
    // Its header damaged instead.
    one.contents_mut()[100] ^= 0x40;
    one.contents_mut()[9] ^= 1;
    assert_eq!(damage_of(&mut one), Some(Damage::Lost { block: 0, reason: CorruptReason::HeaderCrc }));
    // Its second block's continuation marker instead (the generation in it).
    one.contents_mut()[9] ^= 1;
    assert_eq!(&one.contents()[256..260], b"MSMk");
    one.contents_mut()[256 + 4] ^= 1;
    assert_eq!(damage_of(&mut one), Some(Damage::Lost { block: 0, reason: CorruptReason::Continuation }));
    one.contents_mut()[256 + 4] ^= 1;
    assert_eq!(damage_of(&mut one), None);
    // Two saves, the newest damaged: the older one is current, and that is said.
    let mut two = erased();
    let mut s = ConfigStore::mount(&mut two, ConfigName::Primary).unwrap();
    s.save(&text(300, 0)[..300], &INFO).unwrap();
    s.save(&text(300, 1)[..300], &INFO).unwrap();
    assert_eq!(s.damage(), None);
    let newest = s.current().unwrap().block;
    drop(s);
    two.contents_mut()[newest as usize * 256 + 80] ^= 1;
    assert_eq!(damage_of(&mut two), Some(Damage::FellBack { block: newest, reason: CorruptReason::DataCrc }));
    // A first save cut short.
    let mut torn = erased();
    let mut s = ConfigStore::mount(&mut torn, ConfigName::Primary).unwrap();
    s.begin_save(300, &INFO).unwrap();
    s.write(&text(300, 0)[..100]).unwrap();
    drop(s);
    assert_eq!(damage_of(&mut torn), Some(Damage::Interrupted { records: 1 }));
    // A commit clears it.
    let mut s = ConfigStore::mount(&mut zeros, ConfigName::Primary).unwrap();
    s.save(&text(10, 0)[..10], &INFO).unwrap();
    assert_eq!(s.damage(), None);
}

/// A config that does not fit beside the current one replaces it; one larger than the region
/// is refused naming the largest possible.
#[test]
fn replace_takes_a_config_that_does_not_fit_beside_the_current_one() {
    let mut flash = erased();
    let mut s = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
    let (big, small) = (1500, 700); // 6 blocks and 4 blocks of 8
    s.save(&text(big, 0)[..big], &INFO).unwrap();
    assert!(matches!(s.begin_save(small as u32, &INFO), Err(Error::TooLarge { .. })));
    let max = s.max_len_replacing();
    assert_eq!(s.begin_replace(max + 1, &INFO), Err(Error::TooLarge { len: max + 1, max }));
    assert_eq!(s.current().map(|c| c.len), Some(big as u32), "a refused replace keeps the config");
    assert_eq!(s.begin_replace(small as u32, &INFO), Ok(true));
    s.write(&text(small, 1)[..small]).unwrap();
    s.commit().unwrap();
    drop(s);
    assert_eq!(read(&mut flash, small).unwrap()[..small], text(small, 1)[..small]);
    // Beside the current one when it fits: an ordinary save (the current one is kept).
    let mut s = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
    assert_eq!(s.begin_replace(300, &INFO), Ok(false));
    assert_eq!(s.current().map(|c| c.len), Some(small as u32));
    s.abort_save();
    // The whole region at most.
    assert_eq!(s.begin_replace(max, &INFO), Ok(true));
}

/// A power cut at every point of a replacing save: the old config until the save reaches the
/// old record's first block, then none (or the new one once committed); never a mix; a later
/// replace always works.
#[test]
fn replace_cut_anywhere_leaves_the_old_none_or_the_new_config() {
    let (big, small) = (1500, 700);
    let mut base = erased();
    ConfigStore::mount(&mut base, ConfigName::Primary).unwrap().save(&text(big, 0)[..big], &INFO).unwrap();
    let replace = |flash: &mut Mock| -> Result<(), Error<MockError>> {
        let mut s = ConfigStore::mount(flash, ConfigName::Primary)?;
        s.begin_replace(small as u32, &INFO)?;
        for c in text(small, 1)[..small].chunks(100) {
            s.write(c)?;
        }
        s.commit().map(|_| ())
    };
    let mut full = erased();
    full.contents_mut().copy_from_slice(base.contents());
    full.reset_stats();
    replace(&mut full).unwrap();
    let units = full.stats().units;
    let (mut old, mut none, mut new) = (0, 0, 0);
    for cut in 0..=units {
        let mut f = erased();
        f.contents_mut().copy_from_slice(base.contents());
        f.cut_after(cut, cut);
        let r = replace(&mut f);
        assert_eq!(r.is_ok(), cut == units, "cut {cut}: {r:?}");
        f.reboot();
        let s = ConfigStore::mount(&mut f, ConfigName::Primary).unwrap();
        match s.current().map(|c| c.len as usize) {
            Some(n) if n == big => {
                assert!(none == 0 && new == 0, "cut {cut}: the old config came back");
                old += 1;
            }
            None => {
                assert!(s.damage().is_some(), "cut {cut}: a lost config is reported");
                assert_eq!(new, 0, "cut {cut}: the new config was lost again");
                none += 1;
            }
            Some(n) => {
                assert_eq!(n, small, "cut {cut}");
                new += 1;
            }
        }
        drop(s);
        if new > 0 {
            assert_eq!(read(&mut f, small).unwrap()[..small], text(small, 1)[..small], "cut {cut}: a mix");
        } else if none == 0 {
            assert_eq!(read(&mut f, big).unwrap()[..big], text(big, 0)[..big], "cut {cut}: a mix");
        }
        replace(&mut f).unwrap_or_else(|e| panic!("cut {cut}: a later replace failed: {e:?}"));
        assert_eq!(read(&mut f, small).unwrap()[..small], text(small, 1)[..small], "cut {cut}");
    }
    assert!(old > 0 && none > 0 && new > 0, "old {old}, none {none}, new {new}");
}
