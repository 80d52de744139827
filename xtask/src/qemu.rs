//! `cargo xtask qemu`: build the firmware and run it in QEMU, and the
//! interoperation test step of CI (`cargo xtask qemu-test`).
//!
//! Wiring (QEMU maps `-serial` options in order to UART0, UART1, UART2):
//! UART0 (logs) to this terminal, UART1 (the backplane) to a pty that a Linux
//! `msm-node --backplane serial:<pty>` opens, the SD card (SSI0) to an image
//! file that keeps the saved configuration across runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::board;
use crate::cmd;

/// The QEMU machine of the board and the Debian package that provides it.
const QEMU: &str = "qemu-system-arm";
const QEMU_PACKAGE: &str = "qemu-system-arm";
/// Size of a fresh SD card image (QEMU wants a power of two).
pub(crate) const SD_SIZE: u64 = 4 << 20;

#[derive(Debug, Args)]
pub(crate) struct QemuArgs {
    /// The SD card image (created, 4 MiB, if missing).
    #[arg(long, default_value = "target/firmware/sd.img")]
    sd: PathBuf,
    /// Where UART1 (the backplane) goes: `pty`, or any QEMU chardev
    /// (e.g. `unix:/tmp/bp.sock,server=on,wait=off`).
    #[arg(long, default_value = "pty")]
    uart1: String,
}

/// Makes sure `qemu-system-arm` can run: installs it with apt-get when
/// missing and we are root, else fails with the command to run.
pub(crate) fn ensure_qemu() -> Result<()> {
    if cmd::exists(QEMU) {
        return Ok(());
    }
    let is_root = cmd::output(Command::new("id").arg("-u")).is_ok_and(|uid| uid == "0");
    if !(is_root && cmd::exists("apt-get")) {
        bail!(
            "{QEMU} is not installed and cannot be installed automatically (needs root and apt-get):\n  \
             sudo apt-get update && sudo apt-get install -y {QEMU_PACKAGE}"
        );
    }
    println!("qemu: {QEMU} missing; installing {QEMU_PACKAGE} with apt-get (about a minute)");
    let start = Instant::now();
    let install = || {
        cmd::run(Command::new("apt-get").env("DEBIAN_FRONTEND", "noninteractive").args([
            "-o",
            "DPkg::Lock::Timeout=300",
            "install",
            "-y",
            "--no-install-recommends",
            QEMU_PACKAGE,
        ]))
    };
    if install().is_err() {
        cmd::run(Command::new("apt-get").args(["-o", "DPkg::Lock::Timeout=300", "update"]))?;
        install().with_context(|| format!("installing {QEMU_PACKAGE} failed"))?;
    }
    if !cmd::exists(QEMU) {
        bail!("installed {QEMU_PACKAGE} but {QEMU} still does not run");
    }
    println!("qemu: installed in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// Creates a zeroed SD card image of [`SD_SIZE`] bytes unless it exists.
pub(crate) fn ensure_sd_image(path: &Path) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.set_len(SD_SIZE)?;
    Ok(())
}

/// The QEMU command line for `elf`: UART0 to `uart0`, UART1 to `uart1`.
pub(crate) fn command(elf: &Path, uart0: &str, uart1: &str, sd: &Path) -> Command {
    let mut c = Command::new(QEMU);
    c.args(["-M", "lm3s6965evb", "-display", "none", "-monitor", "none"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .args(["-serial", uart0, "-serial", uart1, "-serial", "null"])
        .arg("-drive")
        .arg(format!("if=sd,format=raw,file={}", sd.display()))
        .arg("-kernel")
        .arg(elf);
    c
}

/// `cargo xtask qemu`.
pub(crate) fn run(args: &QemuArgs) -> Result<()> {
    ensure_qemu()?;
    let b = board::find("lm3s6965evb")?;
    let elf = board::build(&b)?;
    let sd = if args.sd.is_absolute() { args.sd.clone() } else { cmd::workspace_root().join(&args.sd) };
    ensure_sd_image(&sd)?;
    println!("qemu: UART0 (logs) below; SD card {}", sd.display());
    if args.uart1 == "pty" {
        println!(
            "qemu: UART1 (backplane) is the pty QEMU names below (\"char device redirected to /dev/pts/N \
             (label serial1)\");\n      join it with: target/release/msm-node --slot A --flash A.img \
             --control A.ctl --apps devmgr,cfgmgr,vlan --max-frame 512 --backplane serial:/dev/pts/N"
        );
    } else {
        println!("qemu: UART1 (backplane) on {}", args.uart1);
    }
    println!("qemu: stop with Ctrl-C");
    cmd::run(&mut command(&elf, "stdio", &args.uart1, &sd))
}

/// CI step: install QEMU if needed, build the firmware, compare a scenario
/// run with its checked-in expected output, then run `tests/qemu_interop.rs`
/// (firmware and a Linux node over the serial backplane).
pub(crate) fn interop() -> Result<()> {
    ensure_qemu()?;
    let b = board::find("lm3s6965evb")?;
    let elf = board::build(&b)?;
    scenario(&b, &elf)?;
    let mut c = cmd::cargo();
    c.args(["test", "-p", "msm-system-tests", "--test", "qemu_interop", "--", "--nocapture"])
        .env("MSM_FIRMWARE", &elf);
    cmd::run(&mut c)
}

/// The scenario whose output is checked in: the firmware boots on a blank
/// SD card with no peer; the backplane stays silent and the node elects
/// itself. The log (timestamps removed) must equal
/// `boards/<board>/expected/solo.log`; `MSM_BLESS=1` rewrites that file
/// instead (then review the diff), as rtic's and defmt's expected outputs do.
fn scenario(b: &board::Board, elf: &Path) -> Result<()> {
    const LAST: &str = "active configuration: ";
    let start = Instant::now();
    let dir = b.target_dir().join("scenario");
    std::fs::create_dir_all(&dir)?;
    let sd = dir.join("sd.img");
    let _ = std::fs::remove_file(&sd);
    ensure_sd_image(&sd)?;
    let log = dir.join("uart0.log");
    let _ = std::fs::remove_file(&log);
    let mut c = command(elf, &format!("file:{}", log.display()), "null", &sd);
    c.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    eprintln!("$ {}", cmd::display(&c));
    let mut child = c.spawn().context("starting qemu-system-arm")?;
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    let text = loop {
        let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
        if text.lines().any(|l| l.contains(LAST)) || Instant::now() > deadline {
            break text;
        }
        if child.try_wait()?.is_some() {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    let got: String = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .map(|l| l.split_once("] ").map_or(l, |(_, rest)| rest))
        .map(|l| format!("{l}\n"))
        .collect();
    let expected_path = b.dir().join("expected/solo.log");
    if std::env::var_os("MSM_BLESS").is_some() {
        std::fs::write(&expected_path, &got)?;
        println!("scenario: wrote {} ({:.1} s)", expected_path.display(), start.elapsed().as_secs_f64());
        return Ok(());
    }
    let expected = std::fs::read_to_string(&expected_path)
        .with_context(|| format!("reading {} (create it with MSM_BLESS=1)", expected_path.display()))?;
    if got != expected {
        println!("scenario: firmware output differs from {}:", expected_path.display());
        let (e, g): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), got.lines().collect());
        for i in 0..e.len().max(g.len()) {
            match (e.get(i), g.get(i)) {
                (Some(a), Some(b)) if a == b => println!("   {a}"),
                (a, b) => {
                    if let Some(a) = a {
                        println!(" - {a}");
                    }
                    if let Some(b) = b {
                        println!(" + {b}");
                    }
                }
            }
        }
        bail!(
            "the firmware scenario output changed; if intended, run `MSM_BLESS=1 cargo xtask qemu-test` \
             and commit the new {}",
            expected_path.display()
        );
    }
    println!("scenario: output matches {} ({:.1} s)", expected_path.display(), start.elapsed().as_secs_f64());
    Ok(())
}
