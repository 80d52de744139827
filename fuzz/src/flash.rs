//! The flash image `flash_mount` mounts: the input is its contents (cut, or
//! padded with erased bytes, to [`IMAGE`]), laid out as the Linux board lays
//! out its image (settings, `primary.cfg`, `secondary.cfg`), scaled down to
//! 256-byte erase blocks so that inputs stay small.
//!
//! Mounting must give a store or a named error, never panic; a mounted
//! store must read its whole config; and a save on whatever the flash held
//! must either fail with a named error or be what the next mount finds
//! (the store's promise: the old config or the new one, after anything).

use core::cell::RefCell;

use msm_flash::mock::MockFlash;
use msm_flash::{ConfigName, ConfigStore, Durable, NodeSettings, Partition, SaveInfo, SharedFlash};

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

/// The whole `flash_mount` run.
pub fn run(data: &[u8]) {
    saved_stream(data);
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
        let _ = read_all(&mut store);
        let _ = store.verify();
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
