//! A config cannot forge a record by its content (docs/flash-format.md,
//! "Continuation marker", "Format 1"): configs holding complete record images
//! (built with the format's own encoders, newer generations) where a block
//! starts, saved normally, mount as themselves; with their record's first
//! block erased or overwritten by a later save cut anywhere, the image is
//! never taken. And a region written by the previous release (format 1) with
//! such images is upgraded without ever taking one.

// `drop(store)` ends the borrow of the flash before the test looks at it again.
#![allow(clippy::unwrap_used, clippy::panic, clippy::drop_non_drop)]
extern crate std;
use std::format;
use std::vec;
use std::vec::Vec;

use super::format::{Continuation, FLAG_CLEANS, Header, Trailer};
use super::*;
use crate::mock::{MockError, MockFlash};

type Mock<const W: usize, const B: usize> = MockFlash<Vec<u8>, Vec<u32>, W, B>;
const INFO: SaveInfo<'static> = SaveInfo { saved_at: 1_764_000_000, sw_version: "test" };
/// 28 bytes of someone else's configuration.
const FORGED: &[u8; 28] = b"create vlan evil tag 666\nxx\n";

fn mock<const W: usize, const B: usize>(blocks: usize) -> Mock<W, B> {
    MockFlash::new_erased(vec![0; blocks * B], vec![0; blocks]).unwrap()
}

fn geo<const W: usize, const B: usize>(blocks: usize) -> Geo {
    Geo { block_size: B as u32, blocks: blocks as u32, write_size: W as u32 }
}

/// A complete committed record of `data` as the store lays it out (header, data, trailer, commit
/// marker and, in format 2, a continuation marker in every block after the first), built with
/// the format's encoders: its footprint's bytes.
fn image(geo: &Geo, format: Format, flags: u8, generation: u32, data: &[u8]) -> Vec<u8> {
    let len = data.len() as u32;
    let header = Header { format, flags, generation, len, saved_at: 1, sw_version: [b'x'; SW_VERSION_LEN] };
    let hb = header.encode(ConfigName::Primary, geo);
    let header_crc = Header::crc_of(&hb);
    let mut img = vec![0xFF; geo.footprint(format, len) as usize];
    img[..HEADER_LEN as usize].copy_from_slice(&hb);
    let mut put = |c: u64, bytes: &[u8]| {
        for (i, b) in bytes.iter().enumerate() {
            img[geo.raw(format, c + i as u64) as usize] = *b;
        }
    };
    put(0, data);
    let mut trailer = vec![0xFF; geo.trailer_len() as usize];
    Trailer { data_crc: CRC32C.checksum(data), len, generation }.encode(header_crc, &mut trailer);
    put(geo.align(len), &trailer);
    let commit: Vec<u8> = (0..geo.commit_len() as usize).map(|i| COMMIT[i % COMMIT.len()]).collect();
    put(geo.align(len) + u64::from(geo.trailer_len()), &commit);
    if format == Format::V2 {
        let block = geo.block_size as usize;
        for index in 1..geo.blocks_for(format, len) as usize {
            let at = index * block;
            Continuation { generation, index: index as u32, header_crc }.encode(&mut img[at..at + block]);
        }
    }
    img
}

/// Write `img` at the start of `block`, as a flash written by another release holds it.
fn place(contents: &mut [u8], geo: &Geo, block: u32, img: &[u8]) {
    for (i, b) in img.iter().enumerate() {
        contents[geo.at(block, i as u64) as usize] = *b;
    }
}

/// `len` bytes of config text, with `images[i % images.len()]` at the `i`th of `offsets` that
/// leaves room for it.
fn config_holding(len: usize, offsets: &[u64], images: &[Vec<u8>], tag: u8) -> Vec<u8> {
    let mut data: Vec<u8> = (0..len).map(|i| b'a' + ((i as u8).wrapping_add(tag)) % 26).collect();
    for (i, at) in offsets.iter().map(|o| *o as usize).enumerate() {
        let img = &images[i % images.len()];
        if at + img.len() <= len {
            data[at..at + img.len()].copy_from_slice(img);
        }
    }
    data
}

/// Data offsets at which a record's data meets a block start: in format 1 (the previous
/// release), `k * ERASE_SIZE - 64`; in format 2 the nearest a config's data comes to one, its
/// first byte after each continuation marker.
fn boundaries(geo: &Geo, format: Format, len: usize) -> Vec<u64> {
    let b = u64::from(geo.block_size);
    let cont = u64::from(geo.cont_len(Format::V2));
    (1..=(len as u64 / (b - 64) + 1))
        .map(|k| match format {
            Format::V1 => k * b - 64,
            Format::V2 => (b - 64) + (k - 1) * (b - cont),
        })
        .filter(|at| (*at as usize) < len)
        .collect()
}

/// The forged images a config holds: a newer record of each format, the format-2 one claiming to
/// have cleaned the region if `cleaning`.
fn forged_images(geo: &Geo, cleaning: bool) -> [Vec<u8>; 2] {
    let flags = if cleaning { FLAG_CLEANS } else { 0 };
    [image(geo, Format::V2, flags, 1000, FORGED), image(geo, Format::V1, 0, 1001, FORGED)]
}

/// The config now on flash, if any, whole.
fn mounted<const W: usize, const B: usize>(flash: &mut Mock<W, B>) -> Option<(ConfigInfo, Vec<u8>)> {
    let mut s = ConfigStore::mount(&mut *flash, ConfigName::Primary).unwrap();
    let cur = *s.current()?;
    let mut data = vec![0; cur.len as usize];
    for (i, chunk) in data.chunks_mut(4093).enumerate() {
        assert_eq!(s.read((i * 4093) as u32, chunk).unwrap(), chunk.len());
    }
    assert_eq!(CRC32C.checksum(&data), cur.crc);
    Some((cur, data))
}

/// Configs holding forged images at each block boundary (of either format's layout), saved on
/// a blank region: each mounts as itself, byte-identical; with its first block erased, as when a
/// later save has started on it, nothing mounts.
fn images_at_block_boundaries_are_data<const W: usize, const B: usize>(blocks: usize, len: usize) {
    let g = geo::<W, B>(blocks);
    let images = forged_images(&g, true);
    for layout in [Format::V1, Format::V2] {
        for (i, form) in ["format 2", "format 1"].iter().enumerate() {
            let ctx = format!("erase {B} / write {W}, {len} bytes, {form} images at {layout:?} boundaries");
            let at = boundaries(&g, layout, len);
            assert!(!at.is_empty(), "{ctx}");
            let data = config_holding(len, &at, &images[i..=i], i as u8);
            let mut flash = mock::<W, B>(blocks);
            let saved =
                *ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap().save(&data, &INFO).unwrap();
            let (cur, back) = mounted(&mut flash).unwrap_or_else(|| panic!("{ctx}: nothing mounted"));
            assert_eq!((cur, back.len()), (saved, len), "{ctx}");
            assert!(back == data, "{ctx}: not byte-identical");
            // The record's first block erased: its later blocks hold the images, never taken.
            let start = saved.block as usize * B;
            flash.contents_mut()[start..start + B].fill(0xFF);
            let found = mounted(&mut flash).map(|(c, _)| (c.len, c.generation));
            assert_eq!(found, None, "{ctx}: with its first block erased");
        }
    }
}

#[test]
fn record_images_at_block_boundaries_of_a_config_are_data_erase_8k_write_8() {
    images_at_block_boundaries_are_data::<8, 8192>(4, 12_192);
}

#[test]
fn record_images_at_block_boundaries_of_a_config_are_data_erase_256k_write_32() {
    images_at_block_boundaries_are_data::<32, 262_144>(3, 266_144);
}

/// A config holding forged images at every block boundary is current (blocks 0 and 1 of 3); a
/// replacing save of two blocks walks the ring into its first block (block 2, then block 0) and
/// is cut at every `every`th point and every one near an erase, a continuation marker, the start
/// and the end: the mount then finds the real config, none, or the new one, never an image
/// (block 1 keeps them once block 0 is erased).
fn replace_cut_never_takes_an_image<const W: usize, const B: usize>(len: usize, every: u64) -> u64 {
    let blocks = 3;
    let g = geo::<W, B>(blocks);
    let images = forged_images(&g, true);
    let at: Vec<u64> =
        boundaries(&g, Format::V2, len).into_iter().chain(boundaries(&g, Format::V1, len)).collect();
    let real = config_holding(len, &at, &images, 1);
    let mut base = mock::<W, B>(blocks);
    ConfigStore::mount(&mut base, ConfigName::Primary).unwrap().save(&real, &INFO).unwrap();
    let base = base.contents().to_vec();
    let new = config_holding(g.max_len_in(2) as usize, &[], &images, 2);
    let replace = |flash: &mut Mock<W, B>| -> Result<(), Error<MockError>> {
        let mut s = ConfigStore::mount(&mut *flash, ConfigName::Primary)?;
        assert!(s.begin_replace(new.len() as u32, &INFO)?, "the new config must not fit beside");
        for c in new.chunks(4096) {
            s.write(c)?;
        }
        s.commit().map(|_| ())
    };
    let mut flash = mock::<W, B>(blocks);
    flash.contents_mut().copy_from_slice(&base);
    replace(&mut flash).unwrap();
    let units = flash.stats().units;
    // Near an event: the first block's erase and header; the second block's erase (the real
    // record's first block) and marker; the trailer and the commit marker.
    let (cont, tail) = (u64::from(g.cont_len(Format::V2)), u64::from(g.trailer_len() + g.commit_len()));
    let near = |c: u64| c <= 72 || c.abs_diff(B as u64 + 1) <= cont + 8 || units - c <= tail + 8;
    let (mut tried, mut outcomes) = (0, [0u32; 3]);
    for cut in (0..=units).filter(|c| c % every == 0 || near(*c)) {
        let ctx = format!("erase {B} / write {W}, cut after {cut} of {units} units");
        flash.reboot();
        flash.contents_mut().copy_from_slice(&base);
        flash.cut_after(cut, cut ^ 0x5EED);
        assert_eq!(replace(&mut flash).is_ok(), cut == units, "{ctx}");
        flash.reboot();
        match mounted(&mut flash) {
            None => outcomes[1] += 1,
            Some((cur, data)) => {
                assert_ne!(cur.len as usize, FORGED.len(), "{ctx}: a forged image was mounted");
                if data == real {
                    outcomes[0] += 1;
                } else {
                    assert!(
                        data == new,
                        "{ctx}: neither the real config nor the new one ({} bytes)",
                        data.len()
                    );
                    outcomes[2] += 1;
                }
            }
        }
        tried += 1;
    }
    assert!(outcomes.iter().all(|n| *n > 0), "real, none, new: {outcomes:?}");
    tried
}

#[test]
fn a_replacing_save_cut_over_a_config_holding_images_never_takes_one_erase_8k_write_8() {
    let tried = replace_cut_never_takes_an_image::<8, 8192>(12_192, 11);
    assert!(tried > 1_500, "{tried} cut points");
}

#[test]
fn a_replacing_save_cut_over_a_config_holding_images_never_takes_one_erase_256k_write_32() {
    let tried = replace_cut_never_takes_an_image::<32, 262_144>(266_144, 16_381);
    assert!(tried > 200, "{tried} cut points");
}

/// The previous release's flash: an older record and the current one, both format 1, the
/// current one holding forged images of both formats at its block boundaries (the format-2 one
/// claiming to have cleaned the region if `cleaning`).
const B1: usize = 4096;
type Small = Mock<4, B1>;

fn v1_region(cleaning: bool) -> (Small, Vec<u8>) {
    let g = geo::<4, B1>(6);
    let images = forged_images(&g, cleaning);
    let real = config_holding(10_000, &boundaries(&g, Format::V1, 10_000), &images, 3);
    let older = config_holding(5_000, &[], &images, 4);
    let mut flash = mock::<4, B1>(6);
    place(flash.contents_mut(), &g, 0, &image(&g, Format::V1, 0, 4, &older));
    place(flash.contents_mut(), &g, 2, &image(&g, Format::V1, 0, 5, &real));
    (flash, real)
}

#[test]
fn a_format_1_region_boots_its_config_and_the_first_save_cleans_it() {
    let (mut flash, real) = v1_region(false);
    let (cur, data) = mounted(&mut flash).unwrap();
    assert_eq!((cur.format_version(), cur.generation, cur.block), (1, 5, 2));
    assert!(data == real, "the previous release's config, byte-identical");
    let mut s = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
    assert_eq!(s.damage(), None);
    // The images were seen and passed over as the config's data.
    assert_eq!(s.report().first_corrupt, Some((3, CorruptReason::InsideData)), "{:?}", s.report());
    let new = config_holding(3_000, &[], &[Vec::new()], 5);
    let saved = *s.save(&new, &INFO).unwrap();
    drop(s);
    assert_eq!((saved.format_version(), saved.block), (2, 5));
    // Everything but the new record is erased: no format-1 data is left.
    let block = |i: usize| &flash.contents()[i * B1..(i + 1) * B1];
    assert!((0..5).all(|i| block(i).iter().all(|b| *b == 0xFF)));
    let (cur, data) = mounted(&mut flash).unwrap();
    assert_eq!(cur, saved);
    assert!(data == new);
    // A clean region: the next save erases nothing outside its own record.
    let counts = flash.erase_counts().to_vec();
    ConfigStore::mount(&mut flash, ConfigName::Primary)
        .unwrap()
        .save(b"create vlan x tag 9\n", &INFO)
        .unwrap();
    let erased: Vec<usize> = (0..6).filter(|i| flash.erase_counts()[*i] != counts[*i]).collect();
    assert_eq!(erased, [0], "only the new record's block");
    assert_eq!(mounted(&mut flash).unwrap().1, b"create vlan x tag 9\n");
}

/// The upgrading save cut at every point: its cleaning before the header, the record, the
/// cleaning after the commit. The mount finds the format-1 config or the new one, never an
/// image; a later save always works.
#[test]
fn the_first_save_in_a_format_1_region_cut_anywhere_never_takes_an_image() {
    let (base, real) = v1_region(false);
    let base = base.contents().to_vec();
    let new = config_holding(1_000, &[], &[Vec::new()], 6);
    let next = config_holding(500, &[], &[Vec::new()], 7);
    let mut flash = mock::<4, B1>(6);
    flash.contents_mut().copy_from_slice(&base);
    let _ = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap().save(&new, &INFO).unwrap();
    let units = flash.stats().units;
    let mut outcomes = [0u32; 2];
    for cut in 0..=units {
        let ctx = format!("cut after {cut} of {units} units");
        flash.reboot();
        flash.contents_mut().copy_from_slice(&base);
        let mut s = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
        s.flash().cut_after(cut, cut);
        let r = s.save(&new, &INFO).map(|_| ());
        assert_eq!(r.is_ok(), cut == units, "{ctx}: {r:?}");
        drop(s);
        flash.reboot();
        let (cur, data) = mounted(&mut flash).unwrap_or_else(|| panic!("{ctx}: no config"));
        if data == real {
            assert_eq!((cur.generation, cur.format_version()), (5, 1), "{ctx}");
            assert_eq!(outcomes[1], 0, "{ctx}: the old config came back");
            outcomes[0] += 1;
        } else {
            assert!(data == new, "{ctx}: neither the old config nor the new one ({} bytes)", data.len());
            assert_eq!(cur.format_version(), 2, "{ctx}");
            outcomes[1] += 1;
        }
        let mut s = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
        s.save(&next, &INFO).unwrap_or_else(|e| panic!("{ctx}: the next save: {e:?}"));
        drop(s);
        assert!(mounted(&mut flash).unwrap().1 == next, "{ctx}: after the next save");
        // Clean now: format 2 only, nothing for a save to clean.
        let s = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
        assert!(!s.dirty && s.report().foreign_blocks == 0, "{ctx}: {:?}", s.report());
    }
    assert!(outcomes.iter().all(|n| *n > 0), "old, new: {outcomes:?}");
}

/// Format-1 data whose record's first block was overwritten (the ring lapped part of it) is
/// indistinguishable from a record: the previous release's weakness, which the first save of this
/// release ends by erasing everything outside its record.
#[test]
fn format_1_leftovers_outside_any_record_are_gone_after_the_first_save() {
    let (mut flash, _) = v1_region(false);
    let g = geo::<4, B1>(6);
    let images = forged_images(&g, true);
    // Block 1 (the older record's second block) and block 5 start with images.
    place(flash.contents_mut(), &g, 1, &images[0]);
    place(flash.contents_mut(), &g, 5, &images[1]);
    flash.contents_mut()[..B1].fill(0xFF);
    let new = config_holding(3_000, &[], &[Vec::new()], 8);
    ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap().save(&new, &INFO).unwrap();
    let (cur, data) = mounted(&mut flash).unwrap();
    assert!(data == new && cur.format_version() == 2, "{cur:?}");
    for i in 0..6 {
        let b = &flash.contents()[i * B1..(i + 1) * B1];
        assert!(i as u32 == cur.block || b.iter().all(|x| *x == 0xFF), "block {i} not cleaned");
    }
}

/// A format-1 record holding a forged format-2 image that claims to have cleaned the region:
/// the mount takes neither (the image outranks the format-1 record, and lies in its data), and
/// says so; the next save cleans the region.
#[test]
fn a_forged_cleaning_image_in_a_format_1_record_is_never_taken() {
    let (mut flash, _) = v1_region(true);
    let mut s = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
    assert_eq!(s.current(), None);
    assert_eq!(s.damage(), Some(Damage::Lost { block: 3, reason: CorruptReason::InsideData }));
    s.save(b"create vlan y tag 8\n", &INFO).unwrap();
    drop(s);
    assert_eq!(mounted(&mut flash).unwrap().1, b"create vlan y tag 8\n");
}
