//! The config store on Linux: `primary.cfg` and the node settings in one
//! file-backed flash image (`msm_flash_linux::FileFlash`, NOR rules kept,
//! `fdatasync` at the commit points), then the power-cut guarantee on the
//! in-RAM `MockFlash`, whose power can be cut at any byte.
//!
//! ```sh
//! cargo run -p msm-flash --example config_store
//! ```
//!
//! 1. save a config, reopen the image (a reboot) and read it back;
//! 2. a save killed half-way (the process dies before the commit): the old config is still there;
//! 3. a config that does not fit beside the old one replaces it (`begin_replace`);
//! 4. power cuts at many points of a save: every one leaves the old or the new config.
//!
//! The example asserts each step, so a regression makes it exit non-zero.

use std::cell::RefCell;
use std::path::Path;

use msm_flash::mock::MockFlash;
use msm_flash::{ConfigName, ConfigStore, NodeSettings, Partition, SaveInfo, SharedFlash};
use msm_flash_linux::FileFlash;

/// 256 KiB image: settings in the first 32 KiB, `primary.cfg` in the rest (56 blocks of 4 KiB).
const IMAGE: u32 = 256 * 1024;
const SETTINGS: u32 = 32 * 1024;

const INFO: SaveInfo<'static> = SaveInfo { saved_at: 1_764_000_000, sw_version: "0.1.0" };

type Image = FileFlash;
type Store<'a> = ConfigStore<Partition<SharedFlash<'a, Image>>>;

/// Mount `primary.cfg` of an image that is already open.
fn mount(dev: &RefCell<Image>) -> Store<'_> {
    let region =
        Partition::new(SharedFlash::new(dev), "primary.cfg", SETTINGS, IMAGE - SETTINGS).expect("aligned");
    ConfigStore::mount(region, ConfigName::Primary).expect("mount only reads")
}

/// The whole current config.
fn read_all<F: embedded_storage::nor_flash::NorFlash + msm_flash::Durable>(
    store: &mut ConfigStore<F>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let n = store.read(out.len() as u32, &mut buf).expect("a committed config");
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// A configuration of `vlans` VLANs, as `save` would write it.
fn config(vlans: u32) -> Vec<u8> {
    (1..=vlans).flat_map(vlan).collect()
}

/// The lines of one VLAN.
fn vlan(v: u32) -> Vec<u8> {
    format!("create vlan v{v} tag {v}\nconfigure vlan v{v} add ports {}\n", v % 48 + 1).into_bytes()
}

fn file_backed(path: &Path) {
    println!("1. save, reboot, read back ({})", path.display());
    let v1 = config(10);
    {
        let dev = RefCell::new(Image::open(path, IMAGE).expect("image"));
        let kv = Partition::new(SharedFlash::new(&dev), "settings", 0, SETTINGS).expect("aligned");
        let mut settings = NodeSettings::new(kv).expect("settings area");
        let boot = settings.increment_boot_count().expect("settings");
        let mut store = mount(&dev);
        assert!(store.current().is_none(), "a new image holds no config");
        let saved = *store.save(&v1, &INFO).expect("fits");
        println!(
            "   boot {boot}: saved {} bytes, generation {}, {} fdatasync calls",
            saved.len,
            saved.generation,
            dev.borrow().syncs()
        );
    } // the image is closed: its lock is released
    let info = {
        let dev = RefCell::new(Image::open(path, IMAGE).expect("image"));
        let mut store = mount(&dev);
        let info = *store.current().expect("the saved config");
        assert_eq!(read_all(&mut store), v1);
        println!(
            "   after the reboot: generation {}, {} bytes, saved by {}",
            info.generation,
            info.len,
            info.sw_version()
        );

        println!("2. a save killed before its commit");
        let v2 = config(40);
        store.begin_save(v2.len() as u32, &INFO).expect("fits");
        store.write(&v2[..v2.len() / 2]).expect("written");
        info
    }; // as if the process died here: no commit marker, the image closed
    let dev = RefCell::new(Image::open(path, IMAGE).expect("image"));
    let mut store = mount(&dev);
    assert_eq!(store.current().map(|c| c.generation), Some(info.generation));
    assert_eq!(read_all(&mut store), v1);
    println!(
        "   mount found {} torn record(s); the current config is still generation {}",
        store.report().torn_records,
        info.generation
    );

    println!("3. replace with a config too large to sit beside the old one");
    // Just larger than the space beside the current config: the save must reuse its blocks.
    let mut big = Vec::new();
    for v in 1.. {
        if big.len() as u32 > store.max_len() {
            break;
        }
        big.extend_from_slice(&vlan(v));
    }
    assert!(big.len() as u32 <= store.max_len_replacing(), "fits the region");
    let replacing = store.begin_replace(big.len() as u32, &INFO).expect("fits the region");
    for chunk in big.chunks(1000) {
        store.write(chunk).expect("written");
    }
    let saved = *store.commit().expect("committed");
    assert!(replacing);
    assert_eq!(read_all(&mut store), big);
    println!("   {} bytes saved as generation {} (replacing: {replacing})", saved.len, saved.generation);
}

fn power_cuts() {
    println!("4. power cuts during a save (MockFlash)");
    let old = config(20);
    let new = config(60);
    type Mock = MockFlash<Vec<u8>, Vec<u32>, 4, 4096>;
    let blank = Mock::new_erased(vec![0; 16 * 4096], vec![0; 16]).expect("geometry");
    let mut store = ConfigStore::mount(blank, ConfigName::Primary).expect("mount");
    let before = *store.save(&old, &INFO).expect("fits");
    let (mem, counts) = store.into_inner().into_parts();
    let (mut kept_old, mut got_new) = (0, 0);
    for cut in (0..6_000).step_by(97) {
        let flash = Mock::new(mem.clone(), counts.clone()).expect("geometry");
        let mut store = ConfigStore::mount(flash, ConfigName::Primary).expect("mount");
        store.flash().cut_after(cut, cut);
        let _ = store.save(&new, &INFO); // fails where the power went
        let mut flash = store.into_inner();
        flash.reboot();
        let mut store = ConfigStore::mount(flash, ConfigName::Primary).expect("mount");
        let now = read_all(&mut store);
        if now == old {
            assert_eq!(store.current().map(|c| c.generation), Some(before.generation));
            kept_old += 1;
        } else {
            assert_eq!(now, new, "power cut after {cut} units: neither the old nor the new config");
            got_new += 1;
        }
    }
    assert!(kept_old > 0 && got_new > 0, "the cuts span the save");
    println!(
        "   {} cut points: {kept_old} kept the old config, {got_new} have the new one, none lost both",
        kept_old + got_new
    );
}

fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    file_backed(&dir.path().join("A.img"));
    power_cuts();
    println!("the config store kept a whole config through every interruption");
}
