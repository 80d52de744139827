//! Invariant 6 for flash: random flash contents, random bit flips and crafted headers never panic
//! the mount and never yield a config whose CRC does not match. Seeded; a failure prints its seed.
#![allow(clippy::unwrap_used, clippy::panic)]
// `drop(store)` ends the borrow of the flash before the test looks at it again.
#![allow(clippy::drop_non_drop)]

mod common;

use common::{Mock, config, mock, read_all, rng, save_chunked};
use msm_flash::{ConfigName, ConfigStore, Error};
use rand::{Rng, RngCore};

const B: usize = 4096;
const BLOCKS: usize = 8;
type Flash = Mock<4, B>;

fn crc32c(data: &[u8]) -> u32 {
    crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(data)
}

/// Mount and, if a config comes back, read it and check it against its CRC and `history`.
/// Returns whether a config was found.
fn check_mount(flash: &mut Flash, history: &[Vec<u8>], ctx: &str) -> bool {
    let mut store = ConfigStore::mount(&mut *flash, ConfigName::Primary)
        .unwrap_or_else(|e| panic!("{ctx}: mount: {e:?}"));
    match store.current().copied() {
        None => {
            assert!(
                matches!(store.read(0, &mut [0; 1]), Err(Error::NoValidConfig | Error::Corrupt { .. })),
                "{ctx}"
            );
            // A save still works on whatever is there.
            store.save(b"after damage", &msm_flash::SaveInfo { saved_at: 0, sw_version: "t" }).unwrap();
            false
        }
        Some(info) => {
            let data = read_all(&mut store, 1000).unwrap_or_else(|e| panic!("{ctx}: read: {e:?}"));
            assert_eq!(crc32c(&data), info.crc, "{ctx}: returned a config whose CRC does not match");
            assert!(history.contains(&data), "{ctx}: returned a config that was never saved");
            true
        }
    }
}

#[test]
fn random_flash_contents_never_panic_the_mount() {
    for seed in 0..300 {
        let mut r = rng(seed);
        let mut flash = mock::<4, B>(BLOCKS);
        r.fill_bytes(flash.contents_mut());
        // Random contents cannot hold a valid config (2^-64 per block), so none may come back.
        assert!(!check_mount(&mut flash, &[], &format!("random contents, seed {seed}")));
    }
}

#[test]
fn random_bit_flips_never_return_a_config_with_a_bad_crc() {
    // A used store: several saves, so older records are still on flash.
    let mut flash = mock::<4, B>(BLOCKS);
    let mut history = Vec::new();
    let mut store = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
    for i in 0..7 {
        let data = config(1500 + 900 * i, i as u64);
        save_chunked(&mut store, &data, 333, i as u64).unwrap();
        history.push(data);
    }
    drop(store);
    let image = flash.contents().to_vec();
    let (mut found, mut lost) = (0, 0);
    for seed in 0..400 {
        let mut r = rng(1000 + seed);
        flash.contents_mut().copy_from_slice(&image);
        let flips = r.random_range(1..=12);
        for _ in 0..flips {
            let at = r.random_range(0..B * BLOCKS);
            flash.contents_mut()[at] ^= 1 << r.random_range(0..8);
        }
        if check_mount(&mut flash, &history, &format!("{flips} bit flips, seed {}", 1000 + seed)) {
            found += 1;
        } else {
            lost += 1;
        }
    }
    println!("bit flips: {found} mounts found a valid config, {lost} found none");
    assert!(found > 0);
}

/// Header layout from docs/flash-format.md, with a valid CRC over whatever fields are given.
fn header(version: u8, name: u8, write: u16, generation: u32, len: u32, block: u32) -> [u8; 64] {
    let mut h = [0xFF; 64];
    h[0..4].copy_from_slice(b"MSMc");
    h[4] = version;
    h[5] = name;
    h[6..8].copy_from_slice(&write.to_le_bytes());
    h[8..12].copy_from_slice(&generation.to_le_bytes());
    h[12..16].copy_from_slice(&len.to_le_bytes());
    h[16..24].copy_from_slice(&0u64.to_le_bytes());
    h[24..56].fill(0);
    h[56..60].copy_from_slice(&block.to_le_bytes());
    let crc = crc32c(&h[..60]);
    h[60..64].copy_from_slice(&crc.to_le_bytes());
    h
}

#[test]
fn crafted_headers_with_valid_crcs_and_wild_fields_never_panic() {
    for seed in 0..300u64 {
        let mut r = rng(5000 + seed);
        let mut flash = mock::<4, B>(BLOCKS);
        let mut store = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
        let good = config(r.random_range(0..6000), seed);
        store.save(&good, &msm_flash::SaveInfo { saved_at: 1, sw_version: "v" }).unwrap();
        drop(store);
        for _ in 0..r.random_range(1..6) {
            let block = r.random_range(0..BLOCKS);
            let len = match r.random_range(0..4) {
                0 => u32::MAX - r.random_range(0..200),
                1 => r.random_range(0..(B * BLOCKS) as u32),
                2 => r.random_range(0..200),
                _ => (B * BLOCKS) as u32 - r.random_range(0..200),
            };
            let generation = if r.random_bool(0.5) { u32::MAX - r.random_range(0..3) } else { r.random() };
            let version = if r.random_bool(0.8) { 1 } else { r.random() };
            let name = if r.random_bool(0.8) { 1 } else { r.random() };
            let write = if r.random_bool(0.8) { 4 } else { r.random() };
            let h = header(version, name, write, generation, len, B as u32);
            flash.contents_mut()[block * B..block * B + 64].copy_from_slice(&h);
            if r.random_bool(0.5) {
                // A commit marker where the trailer would be, with a random trailer.
                let end = (block * B + 64 + (len as usize).div_ceil(4) * 4) % (B * BLOCKS);
                if end + 24 <= B * BLOCKS {
                    r.fill_bytes(&mut flash.contents_mut()[end..end + 16]);
                    flash.contents_mut()[end + 16..end + 24].copy_from_slice(b"COMMIT:)");
                }
            }
        }
        // The good config may have been overwritten; anything returned must match its CRC.
        let ctx = format!("crafted headers, seed {}", 5000 + seed);
        let mut store =
            ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap_or_else(|e| panic!("{ctx}: {e:?}"));
        if let Some(info) = store.current().copied() {
            let data = read_all(&mut store, 1000).unwrap();
            assert_eq!(crc32c(&data), info.crc, "{ctx}");
        }
        // Saving over the crafted state works and becomes current.
        let next = config(1000, seed + 77);
        if save_chunked(&mut store, &next, 100, 0).is_ok() {
            drop(store);
            let mut store = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
            assert_eq!(read_all(&mut store, 1000).unwrap(), next, "{ctx}");
        }
    }
}
