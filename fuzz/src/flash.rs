//! The flash image `flash_mount` mounts: the input is its contents (cut, or
//! padded with erased bytes, to [`IMAGE`]), laid out as the Linux board lays
//! out its image (settings, `primary.cfg`, `secondary.cfg`), scaled down to
//! 256-byte erase blocks so that inputs stay small.
//!
//! Mounting must give a store or a named error, never panic; a mounted
//! store must read its whole config, and it must match the CRC the mount
//! found; and a save on whatever the flash held must either fail with a named
//! error or be what the next mount finds (the store's promise: the old config
//! or the new one, after anything).
//!
//! The same bytes are also a configuration's data ([`config_as_data`]): saved
//! normally, whatever they hold (record images of either format placed where
//! a block starts), the mount finds exactly them; cut at an input-chosen point
//! of the save, the older config or them; with their record's first block
//! erased, the older config. A config cannot forge a record by its content.

use core::cell::RefCell;

use embedded_storage::nor_flash::NorFlash;
use msm_flash::mock::MockFlash;
use msm_flash::{
    ConfigInfo, ConfigName, ConfigStore, Durable, NodeSettings, Partition, SaveInfo, SharedFlash,
};

pub const WRITE: usize = 4;
pub const BLOCK: usize = 256;
/// (offset, size) of each partition.
pub const SETTINGS: (u32, u32) = (0, 4 * BLOCK as u32);
pub const PRIMARY: (u32, u32) = (SETTINGS.1, 8 * BLOCK as u32);
pub const SECONDARY: (u32, u32) = (PRIMARY.0 + PRIMARY.1, 8 * BLOCK as u32);
pub const IMAGE: usize = (SECONDARY.0 + SECONDARY.1) as usize;

pub type Mock = MockFlash<Vec<u8>, Vec<u32>, WRITE, BLOCK>;
type Part<'a> = Partition<SharedFlash<'a, Mock>>;

/// What the target saves on top of the fuzzed contents.
const NEW: &[u8] = b"create vlan fuzz tag 7\nconfigure vlan fuzz add ports 1-4\n";
const INFO: SaveInfo<'static> = SaveInfo { saved_at: 1_764_000_000, sw_version: "fuzz" };

/// A flash holding `data` as its contents.
pub fn device(data: &[u8]) -> Mock {
    let mut mem = vec![0xFF; IMAGE];
    let n = data.len().min(IMAGE);
    mem[..n].copy_from_slice(&data[..n]);
    match Mock::new(mem, vec![0; IMAGE / BLOCK]) {
        Ok(m) => m,
        Err(e) => panic!("the fuzz image's geometry is refused: {e:?}"),
    }
}

/// A partition of `dev`; the layout fits the image, so this cannot fail.
pub fn part<'a>(dev: &'a RefCell<Mock>, name: &'static str, (start, size): (u32, u32)) -> Part<'a> {
    match Partition::new(SharedFlash::new(dev), name, start, size) {
        Ok(p) => p,
        Err(e) => panic!("{name}: the fuzz layout is refused: {e}"),
    }
}

/// The whole current config, or the named error saying why there is none.
pub fn read_all<F: embedded_storage::nor_flash::NorFlash + Durable>(
    store: &mut ConfigStore<F>,
) -> Result<Vec<u8>, msm_flash::Error<F::Error>> {
    let len = store.current_or_err()?.len as usize;
    let mut out = Vec::with_capacity(len);
    let mut buf = [0u8; 100];
    loop {
        let n = store.read(out.len() as u32, &mut buf)?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        assert!(out.len() <= len, "read past the config's {len} bytes");
    }
    assert_eq!(out.len(), len, "read stopped short of the config's length");
    Ok(out)
}

/// CRC-32C, as the store computes it.
fn crc32c(data: &[u8]) -> u32 {
    crate::CRC32C.checksum(data)
}

/// The mounted store's config, whole, checked against the CRC the mount found (`None`: no
/// config, or a named error reading it).
fn checked<F: embedded_storage::nor_flash::NorFlash + Durable>(
    store: &mut ConfigStore<F>,
    name: &str,
) -> Option<(ConfigInfo, Vec<u8>)> {
    let info = *store.current()?;
    let data = read_all(store).ok()?;
    assert_eq!(crc32c(&data), info.crc, "{name}: the mounted config does not match its CRC");
    assert!(store.verify().is_ok(), "{name}: the mounted config fails its own verify");
    Some((info, data))
}

/// The whole `flash_mount` run.
pub fn run(data: &[u8]) {
    saved_stream(data);
    config_as_data(data);
    let dev = RefCell::new(device(data));
    settings(&dev);
    for (name, which, range) in
        [("primary.cfg", ConfigName::Primary, PRIMARY), ("secondary.cfg", ConfigName::Secondary, SECONDARY)]
    {
        let mut store = match ConfigStore::mount(part(&dev, name, range), which) {
            Ok(s) => s,
            Err(e) => {
                let _ = e.to_string(); // a named error, printable
                continue;
            }
        };
        let _ = store.damage().map(|d| d.to_string());
        let _ = checked(&mut store, name);
        let saved = match store.save(NEW, &INFO) {
            Ok(info) => *info,
            Err(e) => {
                let _ = e.to_string();
                continue;
            }
        };
        let mut again = match ConfigStore::mount(part(&dev, name, range), which) {
            Ok(s) => s,
            Err(e) => panic!("{name}: mount after a successful save: {e}"),
        };
        let found = again.current().map(|c| (c.generation, c.len, c.crc));
        assert_eq!(
            found,
            Some((saved.generation, saved.len, saved.crc)),
            "{name}: the save is not what mounts"
        );
        assert_eq!(read_all(&mut again).ok().as_deref(), Some(NEW), "{name}: the saved bytes differ");
    }
}

/// The older config [`config_as_data`] saves first.
const OLDER: &[u8] = b"create vlan older tag 5\n";

/// The input as a configuration's data (cut to what fits), saved in a blank `primary.cfg` after
/// [`OLDER`]: see the module docs. The first two bytes choose the cut point.
pub fn config_as_data(data: &[u8]) {
    let dev = RefCell::new(device(&[]));
    let open = || match ConfigStore::mount(part(&dev, "primary.cfg", PRIMARY), ConfigName::Primary) {
        Ok(s) => s,
        Err(e) => panic!("primary.cfg: mount of the store's own writes: {e}"),
    };
    let mut store = open();
    if let Err(e) = store.save(OLDER, &INFO) {
        panic!("primary.cfg: a save on a blank region: {e}");
    }
    let config = &data[..data.len().min(store.max_len() as usize)];
    drop(store);
    let before = dev.borrow().contents().to_vec();
    let units = dev.borrow().stats().units;
    let saved = match open().save(config, &INFO) {
        Ok(info) => *info,
        Err(e) => panic!("primary.cfg: a save of {} bytes that fit: {e}", config.len()),
    };
    let units = dev.borrow().stats().units - units;
    let found = checked(&mut open(), "primary.cfg");
    assert_eq!(found.as_ref().map(|(i, _)| *i), Some(saved), "the config saved is not what mounts");
    assert!(found.is_some_and(|(_, d)| d == config), "the config's bytes differ");
    // Its first block erased (a later save started there): the older config, never its content.
    let at = saved.block * BLOCK as u32;
    if let Err(e) = part(&dev, "primary.cfg", PRIMARY).erase(at, at + BLOCK as u32) {
        panic!("primary.cfg: erase: {e}");
    }
    let found = checked(&mut open(), "primary.cfg").map(|(_, d)| d);
    assert_eq!(found.as_deref(), Some(OLDER), "with the config's first block erased");
    // Cut at an input-chosen point of the save: the older config or the new one.
    let cut = u64::from(u16::from_le_bytes([
        data.first().copied().unwrap_or(0),
        data.get(1).copied().unwrap_or(0),
    ])) % (units + 1);
    dev.borrow_mut().contents_mut().copy_from_slice(&before);
    dev.borrow_mut().cut_after(cut, cut);
    let result = open().save(config, &INFO).map(|_| ());
    assert_eq!(result.is_ok(), cut == units, "cut after {cut} of {units} units: {result:?}");
    dev.borrow_mut().reboot();
    let found = checked(&mut open(), "primary.cfg").map(|(_, d)| d);
    assert!(
        found.as_deref() == Some(OLDER) || found.as_deref() == Some(config),
        "cut after {cut} of {units} units: neither the older config nor the new one"
    );
}

/// Seeds beyond the stores' plain images (`examples/seeds.rs`): a config holding a complete
/// record (28 bytes of another config, newer than anything the target saves) right after each
/// continuation marker of the record [`config_as_data`] writes, and at the first block
/// boundary; and the flash after that save, as `flash_mount` mounts it.
pub fn seed_images() -> Vec<(&'static str, Vec<u8>)> {
    const FORGED: &[u8; 28] = b"create vlan evil tag 666\nxx\n";
    let scratch = RefCell::new(device(&[]));
    let mut store = match ConfigStore::mount(part(&scratch, "primary.cfg", PRIMARY), ConfigName::Primary) {
        Ok(s) => s,
        Err(e) => panic!("scratch: {e}"),
    };
    let mut block = 0;
    for _ in 0..9 {
        block = match store.save(FORGED, &INFO) {
            Ok(info) => info.block,
            Err(e) => panic!("scratch: {e}"),
        };
    }
    drop(store);
    // Header, the 28 bytes, trailer, commit marker (WRITE 4).
    let at = (PRIMARY.0 + block * BLOCK as u32) as usize;
    let image = scratch.borrow().contents()[at..at + 64 + 28 + 16 + 8].to_vec();
    let mut config: Vec<u8> =
        b"configure vlan lab add ports 1-48\n".iter().copied().cycle().take(1200).collect();
    // The record starts on a block; data fills 192 bytes of it, then 240 of each one after.
    let room = config.len() - image.len();
    for offset in (0..).map(|k| 192 + k * 240).take_while(|o| *o <= room) {
        config[offset..offset + image.len()].copy_from_slice(&image);
    }
    let dev = RefCell::new(device(&[]));
    let mut store = match ConfigStore::mount(part(&dev, "primary.cfg", PRIMARY), ConfigName::Primary) {
        Ok(s) => s,
        Err(e) => panic!("primary.cfg: {e}"),
    };
    for c in [OLDER, &config[..]] {
        if let Err(e) = store.save(c, &INFO) {
            panic!("primary.cfg: {e}");
        }
    }
    drop(store);
    let saved = dev.borrow().contents().to_vec();
    vec![("config-images", config), ("saved-config-images", saved)]
}

/// The settings area: read every setting; a boot count written is read back.
fn settings(dev: &RefCell<Mock>) {
    let mut s = match NodeSettings::new(part(dev, "settings", SETTINGS)) {
        Ok(s) => s,
        Err(e) => panic!("the fuzz settings area is refused: {e}"),
    };
    let _ = s.mount();
    let _ = (s.priority(), s.selected_config(), s.last_term());
    if let Ok(n) = s.increment_boot_count() {
        assert_eq!(s.boot_count().ok(), Some(n), "the boot count written is not read back");
    }
}

/// The input as a saved-configuration stream from a master: whole
/// (`file_in`) and cut at every seventh byte (`Parser`), the two agree on
/// whether it is good; neither panics; a refusal is a named error.
fn saved_stream(data: &[u8]) {
    use msm_flash::saved_stream::{Parser, Piece, file_in};
    let whole = file_in(data, Some(ConfigName::Secondary));
    let mut p = Parser::new();
    let mut files = 0;
    let mut cut = Ok(());
    for c in data.chunks(7) {
        cut = p.push(c, |piece| -> Result<(), ()> {
            if let Piece::FileStart(..) = piece {
                files += 1;
            }
            Ok(())
        });
        if cut.is_err() {
            break;
        }
    }
    let cut = match cut {
        Ok(()) => p.finish(),
        Err(Err(e)) => Err(e),
        Err(Ok(())) => unreachable!("the sink never fails"),
    };
    if let Err(e) = &whole {
        let _ = e.to_string();
    }
    assert_eq!(whole.is_ok(), cut.is_ok(), "file_in {whole:?}, parser {cut:?}");
    assert!(files <= 2);
}
