//! Several processes on one flash image: a second process is refused by name, and a process killed
//! with SIGKILL in the middle of a save leaves an image that mounts to the old or the new config.
//!
//! The child processes are this test binary run again with `MSM_FLASH_CHILD` set: the test
//! `child_process_entry` then plays the child's role and exits. The child reports its progress on
//! stdout (lines starting with `CHILD `) and, in the stepped mode, waits for a line on stdin after
//! each step, so the parent kills it at an exact point. Waits have deadlines, never fixed sleeps.
#![allow(clippy::unwrap_used, clippy::panic)]
// `drop(store)` ends the borrow of the flash before the test looks at it again.
#![allow(clippy::drop_non_drop)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use msm_flash::{ConfigName, ConfigStore, Partition, SaveInfo};
use msm_flash_linux::{FileFlash, FlashError};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

type Flash = FileFlash<4, 4096>;
const SIZE: u32 = 64 * 4096;
const CHUNK: usize = 8192;
const DEADLINE: Duration = Duration::from_secs(30);

fn config(len: usize, tag: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(tag)).collect()
}

/// Mount the image's primary store (the whole image) and read the config.
fn mounted(path: &Path) -> Option<Vec<u8>> {
    let flash = Flash::open(path, SIZE).unwrap();
    let mut store =
        ConfigStore::mount(Partition::new(flash, "primary", 0, SIZE).unwrap(), ConfigName::Primary).unwrap();
    let len = store.current()?.len as usize;
    let mut out = vec![0; len];
    let mut off = 0;
    while off < len {
        off += store.read(off as u32, &mut out[off..]).unwrap();
    }
    store.verify().unwrap();
    Some(out)
}

fn save(path: &Path, data: &[u8]) {
    let flash = Flash::open(path, SIZE).unwrap();
    let mut store = ConfigStore::mount(flash, ConfigName::Primary).unwrap();
    store.save(data, &SaveInfo { saved_at: 1, sw_version: "parent" }).unwrap();
}

/// The child's side. Roles: `open` (try to open the image and report), `stepped` (save the new
/// config, pausing after every step), `loop` (save configs A and B alternately, forever).
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var("MSM_FLASH_CHILD") else { return };
    let path = std::env::var("MSM_FLASH_IMAGE").unwrap();
    let say = |line: &str| println!("CHILD {line}");
    let stdin = std::io::stdin();
    let wait = || {
        let mut line = String::new();
        stdin.lock().read_line(&mut line).unwrap();
    };
    match role.as_str() {
        "open" => match Flash::open(&path, SIZE) {
            Ok(_) => say("opened"),
            Err(e @ FlashError::Locked { .. }) => say(&format!("locked: {e}")),
            Err(e) => say(&format!("other error: {e}")),
        },
        "stepped" => {
            let new = config(40_000, 2);
            let mut store =
                ConfigStore::mount(Flash::open(&path, SIZE).unwrap(), ConfigName::Primary).unwrap();
            store.begin_save(new.len() as u32, &SaveInfo { saved_at: 2, sw_version: "child" }).unwrap();
            say("begun");
            wait();
            for (i, c) in new.chunks(CHUNK).enumerate() {
                store.write(c).unwrap();
                say(&format!("chunk {i}"));
                wait();
            }
            store.commit().unwrap();
            say("committed");
            wait();
        }
        "loop" => {
            let configs = [config(30_000, 3), config(35_000, 4)];
            let mut store =
                ConfigStore::mount(Flash::open(&path, SIZE).unwrap(), ConfigName::Primary).unwrap();
            for i in 0u64.. {
                store
                    .save(&configs[(i % 2) as usize], &SaveInfo { saved_at: i, sw_version: "child" })
                    .unwrap();
                say(&format!("saved {i}"));
            }
        }
        other => panic!("unknown child role {other}"),
    }
    std::process::exit(0);
}

struct ChildProc {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

fn spawn(role: &str, path: &Path) -> ChildProc {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process_entry", "--nocapture", "--test-threads=1"])
        .env("MSM_FLASH_CHILD", role)
        .env("MSM_FLASH_IMAGE", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stdin = child.stdin.take().unwrap();
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // The test harness may print "test child_process_entry ... " on the same line.
            if let Some(at) = line.find("CHILD ") {
                if tx.send(line[at + 6..].to_string()).is_err() {
                    break;
                }
            }
        }
    });
    ChildProc { child, stdin, lines }
}

impl ChildProc {
    /// The next progress line, within the deadline.
    fn next(&self, ctx: &str) -> String {
        self.lines.recv_timeout(DEADLINE).unwrap_or_else(|e| panic!("{ctx}: no progress from the child: {e}"))
    }

    fn go_on(&mut self) {
        // The child may already be gone (killed or finished): ignore a broken pipe.
        let _ = writeln!(self.stdin, "go");
    }

    fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL on Unix
        let status = self.child.wait().unwrap();
        assert!(!status.success());
    }
}

#[test]
fn a_second_process_on_the_same_image_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chassis-a.img");
    let held = Flash::open(&path, SIZE).unwrap();
    let child = spawn("open", &path);
    let line = child.next("second process");
    assert!(line.starts_with("locked:"), "{line}");
    assert!(line.contains("chassis-a.img") && line.contains("in use by another process"), "{line}");
    let mut child = child;
    assert!(child.child.wait().unwrap().success());
    // Once the first process lets go, the image opens.
    drop(held);
    let child = spawn("open", &path);
    assert_eq!(child.next("after release"), "opened");
}

#[test]
fn a_process_killed_at_each_step_of_a_save_leaves_old_or_new() {
    let dir = tempfile::tempdir().unwrap();
    let old = config(25_000, 1);
    let new = config(40_000, 2);
    let steps = new.len().div_ceil(CHUNK) + 2; // begun, chunks, committed
    for kill_at in 0..steps {
        let path = dir.path().join(format!("kill-{kill_at}.img"));
        save(&path, &old);
        let mut child = spawn("stepped", &path);
        for step in 0..=kill_at {
            let line = child.next(&format!("kill at step {kill_at}"));
            if step < kill_at {
                child.go_on();
            } else {
                assert!(line == "begun" || line.starts_with("chunk") || line == "committed", "{line}");
            }
        }
        let committed = kill_at == steps - 1;
        child.kill();
        let got = mounted(&path).unwrap_or_else(|| panic!("kill at step {kill_at}: no config"));
        if committed {
            assert!(got == new, "kill after commit: must be the new config");
        } else {
            assert!(got == old, "kill at step {kill_at} (before commit): must be the old config");
        }
    }
    println!("killed a saving process at each of {steps} steps");
}

#[test]
fn a_process_killed_while_saving_continuously_leaves_a_config_it_saved() {
    let dir = tempfile::tempdir().unwrap();
    let seed = 77;
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let configs = [config(30_000, 3), config(35_000, 4)];
    for round in 0..3 {
        let path = dir.path().join(format!("loop-{round}.img"));
        save(&path, &config(1000, 9));
        let child = spawn("loop", &path);
        // Kill right after a seeded number of completed saves: the kill lands in the next save.
        let saves = rng.random_range(1..6u64);
        let start = Instant::now();
        loop {
            let line = child.next("continuous saves");
            if line == format!("saved {saves}") {
                break;
            }
            assert!(start.elapsed() < DEADLINE, "seed {seed}: child too slow");
        }
        child.kill();
        let got = mounted(&path).unwrap_or_else(|| panic!("seed {seed} round {round}: no config"));
        assert!(configs.contains(&got), "seed {seed} round {round}: config is neither A nor B");
    }
}
