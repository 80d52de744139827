//! `cargo xtask sd-image`: provision the lm3s6965evb's SD card image with
//! the chassis key and a boot counter seeded from the host clock. `cargo
//! xtask qemu` and `qemu-test` make their images through here too.
//!
//! Why the seed: the firmware's incarnation is the card's boot count, and a
//! peer refuses frames of an incarnation at or below one it has seen (once
//! the backplane is authenticated). A card provisioned at time T starts at
//! T (seconds since 2025-01-01 UTC), so a replacement card provisioned
//! later starts above an earlier card's count, as long as that card booted
//! fewer times than seconds passed between the two provisionings.
//!
//! The layout is the firmware's own `card.rs`, included here.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::keyfile;

#[path = "../../boards/lm3s6965evb/src/card.rs"]
mod card;

/// Size of a fresh SD card image (QEMU wants a power of two).
pub(crate) const SD_SIZE: u64 = 4 << 20;
/// 2025-01-01T00:00:00Z in Unix seconds: the epoch of boot counter seeds.
const SEED_EPOCH: Duration = Duration::from_secs(1_735_689_600);

#[derive(Debug, Args)]
pub(crate) struct SdImageArgs {
    /// The SD card image (created, 4 MiB, if missing; relative to the workspace root).
    #[arg(long, default_value = "target/firmware/sd.img")]
    pub(crate) sd: PathBuf,
    /// Write this chassis key (64 hex digits, mode 0600: `msm keygen PATH`) into the key block.
    #[arg(long, value_name = "PATH")]
    pub(crate) key_file: Option<PathBuf>,
}

/// `cargo xtask sd-image`.
pub(crate) fn run(args: &SdImageArgs) -> Result<()> {
    let sd = crate::cmd::workspace_root().join(&args.sd);
    provision(&sd, args.key_file.as_deref(), SystemTime::now())?;
    describe(&sd)
}

/// Makes `sd` a provisioned card: creates it (zeroed, [`SD_SIZE`]) if
/// missing, writes the key of `key_file` if given, and after either seeds
/// the boot counter from `now` (never lowering it). An existing image with
/// no key file given is left as it is.
pub(crate) fn provision(sd: &Path, key_file: Option<&Path>, now: SystemTime) -> Result<()> {
    // The key first: a bad key file leaves no image behind.
    let key = key_file.map(keyfile::read).transpose()?;
    let fresh = !sd.exists();
    if fresh {
        if let Some(dir) = sd.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        File::create(sd)
            .and_then(|f| f.set_len(SD_SIZE))
            .with_context(|| format!("creating {}", sd.display()))?;
    }
    if !fresh && key.is_none() {
        return Ok(());
    }
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(sd)
        .with_context(|| format!("opening {}", sd.display()))?;
    let len = f.metadata()?.len();
    let need = u64::from(card::REGION_FIRST + card::REGION_BLOCKS) * card::BLOCK as u64;
    if len < need {
        bail!("{}: {len} bytes, too small for the card layout (at least {need})", sd.display());
    }
    if let Some(key) = &key {
        write_block(&mut f, card::KEY_BLOCK, &card::encode_key(key))?;
    }
    let seed = seed(now)?;
    let old = card::decode_boot(&read_block(&mut f, card::BOOT_BLOCK)?);
    if old.is_none_or(|n| n < seed) {
        write_block(&mut f, card::BOOT_BLOCK, &card::encode_boot(seed))?;
    }
    f.sync_all().with_context(|| format!("syncing {}", sd.display()))?;
    Ok(())
}

/// The boot counter seed for `now`: seconds since 2025-01-01 UTC.
fn seed(now: SystemTime) -> Result<u32> {
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH + SEED_EPOCH)
        .map_err(|_| anyhow::anyhow!("the host clock is before 2025-01-01: cannot seed the boot counter"))?;
    u32::try_from(since.as_secs()).context("the host clock is past 2161: the boot counter seed overflows")
}

/// What the image holds: the key by fingerprint (or why there is none) and
/// the boot count.
pub(crate) fn describe(sd: &Path) -> Result<()> {
    let mut f = File::open(sd).with_context(|| format!("opening {}", sd.display()))?;
    let (key, count) = (read_block(&mut f, card::KEY_BLOCK)?, read_block(&mut f, card::BOOT_BLOCK)?);
    let b = card::KEY_BLOCK;
    let key = match card::decode_key(&key) {
        Ok(k) => format!("chassis key {:08x} (block {b})", msm_checkpoint::Key::new(k).fingerprint()),
        Err(card::KeyBlockError::UnknownVersion(v)) => {
            format!(
                "NO usable key: block {b} has key block version {v}, the firmware reads {}",
                card::KEY_VERSION
            )
        }
        Err(e) => format!("NO key: {} (block {b}), the firmware runs unauthenticated", e.reason()),
    };
    let count = card::decode_boot(&count).map_or("no boot counter".to_owned(), |n| format!("boot count {n}"));
    println!("sd-image: {}: {key}; {count} (block {})", sd.display(), card::BOOT_BLOCK);
    Ok(())
}

/// The boot count on the card image `sd`; `None`: no counter.
pub(crate) fn boot_count(sd: &Path) -> Result<Option<u32>> {
    let mut f = File::open(sd).with_context(|| format!("opening {}", sd.display()))?;
    Ok(card::decode_boot(&read_block(&mut f, card::BOOT_BLOCK)?))
}

fn read_block(f: &mut File, idx: u32) -> Result<[u8; card::BLOCK]> {
    let mut block = [0u8; card::BLOCK];
    f.seek(SeekFrom::Start(u64::from(idx) * card::BLOCK as u64))?;
    f.read_exact(&mut block).with_context(|| format!("reading block {idx}"))?;
    Ok(block)
}

fn write_block(f: &mut File, idx: u32, block: &[u8; card::BLOCK]) -> Result<()> {
    f.seek(SeekFrom::Start(u64::from(idx) * card::BLOCK as u64))?;
    f.write_all(block).with_context(|| format!("writing block {idx}"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn key_file(dir: &Path) -> PathBuf {
        let path = dir.join("chassis.key");
        std::fs::write(&path, format!("{HEX}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    fn at(secs_since_2025: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + SEED_EPOCH + Duration::from_secs(secs_since_2025)
    }

    #[test]
    fn the_key_block_round_trips_and_names_each_fault() {
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let block = card::encode_key(&key);
        assert_eq!(&block[..8], b"MSMk\x01\0\0\0");
        // Pinned: a change of the layout must be a new version, not a silent one.
        assert_eq!(&block[40..44], &0x8314_da53_u32.to_le_bytes(), "CRC-32C of bytes 0..40");
        assert!(block[44..].iter().all(|&b| b == 0));
        assert_eq!(card::decode_key(&block), Ok(key));
        assert_eq!(card::decode_key(&[0; card::BLOCK]), Err(card::KeyBlockError::Missing));
        let mut flipped = block;
        flipped[20] ^= 1;
        assert_eq!(card::decode_key(&flipped), Err(card::KeyBlockError::BadCrc));
        let mut newer = block;
        newer[4] = 2;
        assert_eq!(card::decode_key(&newer), Err(card::KeyBlockError::UnknownVersion(2)));
    }

    #[test]
    fn the_layout_keeps_its_blocks_apart() {
        assert_eq!((card::KEY_BLOCK, card::BOOT_BLOCK, card::REGION_FIRST), (2046, 2047, 2048));
        assert_eq!(card::decode_boot(&card::encode_boot(7)), Some(7));
        assert_eq!(card::decode_boot(&[0; card::BLOCK]), None);
    }

    #[test]
    fn seeds_count_seconds_since_2025() {
        assert_eq!(seed(at(0)).unwrap(), 0);
        assert_eq!(seed(at(86_400)).unwrap(), 86_400);
        assert!(seed(SystemTime::UNIX_EPOCH).is_err());
        assert!(seed(at(1 << 32)).is_err());
    }

    #[test]
    fn a_fresh_image_is_seeded_and_a_key_reseeds_without_lowering() {
        let dir = tempfile::tempdir().unwrap();
        let sd = dir.path().join("sd.img");
        provision(&sd, None, at(1000)).unwrap();
        assert_eq!(std::fs::metadata(&sd).unwrap().len(), SD_SIZE);
        assert_eq!(boot_count(&sd).unwrap(), Some(1000));
        let mut f = File::open(&sd).unwrap();
        assert_eq!(
            card::decode_key(&read_block(&mut f, card::KEY_BLOCK).unwrap()),
            Err(card::KeyBlockError::Missing)
        );

        // An existing image without a key file: untouched, even later.
        provision(&sd, None, at(5000)).unwrap();
        assert_eq!(boot_count(&sd).unwrap(), Some(1000));

        // A key: written, and the counter moves up to the clock.
        let key = key_file(dir.path());
        provision(&sd, Some(&key), at(2000)).unwrap();
        let mut f = File::open(&sd).unwrap();
        assert_eq!(card::decode_key(&read_block(&mut f, card::KEY_BLOCK).unwrap()).unwrap()[31], 0x1f);
        assert_eq!(boot_count(&sd).unwrap(), Some(2000));

        // A clock behind the card's count never lowers it.
        let mut f = OpenOptions::new().write(true).open(&sd).unwrap();
        write_block(&mut f, card::BOOT_BLOCK, &card::encode_boot(9000)).unwrap();
        provision(&sd, Some(&key), at(3000)).unwrap();
        assert_eq!(boot_count(&sd).unwrap(), Some(9000));
    }

    #[test]
    fn a_bad_key_file_leaves_no_image() {
        let dir = tempfile::tempdir().unwrap();
        let key = key_file(dir.path());
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let sd = dir.path().join("sd.img");
        let e = provision(&sd, Some(&key), at(1)).unwrap_err().to_string();
        assert!(e.contains("mode 0644"), "{e}");
        assert!(!sd.exists());
    }
}
