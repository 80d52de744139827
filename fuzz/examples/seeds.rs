//! Writes the seeds of every fuzz target to `corpus/<target>/seed-*`:
//! frames and packets captured from real exchanges driven by the same
//! harness code as the targets (so they replay the same way under the
//! fuzzer; checked here), and flash images written by the real stores.
//! Run it again after a wire or flash format change:
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds
//! ```

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use msm_backplane::framing;
use msm_checkpoint::{AppId, Slot, SyncState, wire};
use msm_flash::{ConfigName, ConfigStore, NodeSettings, SaveInfo};
use msm_fuzz::{engine, flash};

fn main() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let frames = engine_seeds(&corpus);
    backplane_seeds(&corpus, &frames);
    flash_seeds(&corpus);
}

fn write(corpus: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir: PathBuf = corpus.join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    let path = dir.join(format!("seed-{name}"));
    std::fs::write(&path, bytes).expect("seed file");
    println!("{:>6} bytes  {}", bytes.len(), path.display());
}

/// A master and a backup until in sync and a few changes later; each node's
/// received frames become its `node_frame` seed, the first frame of each
/// kind a `wire_decode` seed. Returns every frame sent.
fn engine_seeds(corpus: &Path) -> Vec<Vec<u8>> {
    let mut nodes = [engine::Driver::new(Slot::A), engine::Driver::new(Slot::B)];
    let mut inputs = [vec![0u8], vec![1u8]];
    let mut last = [0u64; 2];
    let mut wire_q: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut all = Vec::new();
    let mut synced_at = None;
    for ms in 0..3_000u64 {
        for (to, frame) in std::mem::take(&mut wire_q) {
            let now = nodes[to].now.as_millis();
            engine::push_record(&mut inputs[to], now - last[to], &frame);
            last[to] = now;
            nodes[to].deliver(&frame);
        }
        for (i, node) in nodes.iter_mut().enumerate() {
            node.tick(&mut |f| {
                wire_q.push((1 - i, f.to_vec()));
                all.push(f.to_vec());
            });
        }
        if synced_at.is_none() && nodes[0].node.sync_state() == SyncState::InSync {
            synced_at = Some(ms);
            let a = &mut nodes[0].node;
            a.config_change(b"create vlan lab tag 200").expect("master");
            a.record_change(AppId::new(1), b"k\x01\x09=moved").expect("master");
            a.record_change(AppId::new(0), b"k\x00\x02=").expect("master");
        }
        if synced_at.is_some_and(|t| ms >= t + 40) {
            break;
        }
    }
    assert!(synced_at.is_some(), "the seed exchange never reached sync");
    println!(
        "in sync at {} ms; frames: {}; applied on the backup: {}",
        synced_at.unwrap_or_default(),
        all.len(),
        nodes[1].host.applied
    );
    for (i, name) in [(0, "master"), (1, "backup")] {
        // (Roles may differ: the replay runs on after the last frame, and the peer falls silent.)
        let replay = engine::run(&inputs[i]);
        let counts = |d: &engine::Driver| (d.host.applied, d.host.bulks);
        assert_eq!(counts(&replay), counts(&nodes[i]), "{name}: the seed does not replay");
        write(corpus, "node_frame", name, &inputs[i]);
    }
    // The longest frame of each kind: a data frame with records, not a bare one.
    let mut longest = std::collections::BTreeMap::<String, &Vec<u8>>::new();
    for f in &all {
        let body = format!("{:?}", wire::decode(f).expect("the engine's own frame").body);
        let kind: String = body.chars().take_while(char::is_ascii_alphanumeric).collect();
        let e = longest.entry(kind.to_lowercase()).or_insert(f);
        if f.len() > e.len() {
            *e = f;
        }
    }
    for (kind, f) in longest {
        write(corpus, "wire_decode", &kind, f);
    }
    all
}

/// Framed streams of engine frames (with noise, and a low frame limit).
fn backplane_seeds(corpus: &Path, frames: &[Vec<u8>]) {
    let mut stream = Vec::new();
    for (i, f) in frames.iter().step_by(7).take(8).enumerate() {
        let mut out = vec![0u8; framing::max_encoded_len(f.len())];
        let n = framing::encode(f, &mut out, i == 0).expect("sized");
        stream.extend_from_slice(&out[..n]);
        if i == 3 {
            stream.extend_from_slice(b"\x03noise\x00"); // a bad frame between good ones
        }
    }
    write(corpus, "backplane_frame", "frames", &[[0, 255, 7].as_slice(), &stream].concat());
    write(corpus, "backplane_frame", "frames-small-limit", &[[0, 40, 3].as_slice(), &stream].concat());
}

/// Images written by the stores: settings and both configs saved; and the
/// same with a save torn by a power cut.
fn flash_seeds(corpus: &Path) {
    let info = SaveInfo { saved_at: 1_764_000_000, sw_version: "0.1.0" };
    let dev = RefCell::new(flash::device(&[]));
    {
        let mut s = NodeSettings::new(flash::part(&dev, "settings", flash::SETTINGS)).expect("geometry");
        s.increment_boot_count().expect("settings");
        s.set_priority(3).expect("settings");
        s.set_selected_config(ConfigName::Secondary).expect("settings");
        s.set_last_term(7).expect("settings");
    }
    let mut p = ConfigStore::mount(flash::part(&dev, "primary.cfg", flash::PRIMARY), ConfigName::Primary)
        .expect("mount");
    p.save(b"create vlan corp tag 100\n", &info).expect("fits");
    let mut s =
        ConfigStore::mount(flash::part(&dev, "secondary.cfg", flash::SECONDARY), ConfigName::Secondary)
            .expect("mount");
    s.save(b"create vlan a tag 1\n", &info).expect("fits");
    s.save(&b"create vlan b tag 2\n".repeat(20), &info).expect("fits");
    write(corpus, "flash_mount", "saved", dev.borrow().contents());

    dev.borrow_mut().cut_after(300, 1);
    let mut s =
        ConfigStore::mount(flash::part(&dev, "secondary.cfg", flash::SECONDARY), ConfigName::Secondary)
            .expect("mount");
    assert!(s.save(&b"create vlan c tag 3\n".repeat(30), &info).is_err(), "the cut tears the save");
    dev.borrow_mut().reboot();
    write(corpus, "flash_mount", "torn", dev.borrow().contents());

    for (name, bytes) in flash::seed_images() {
        write(corpus, "flash_mount", name, &bytes);
    }
}
