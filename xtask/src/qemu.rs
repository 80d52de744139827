//! `cargo xtask qemu`: build the firmware and run it in QEMU, and the
//! interoperation test step of CI (`cargo xtask qemu-test`).
//!
//! Wiring (QEMU maps `-serial` options in order to UART0, UART1, UART2):
//! UART0 unused, UART1 and UART2 (the two backplane paths, UART1 the
//! primary) each to a pty that a Linux `msm-node --backplane serial:<UART1's pty>
//! --backplane serial:<UART2's pty>` opens, the SD card (SSI0) to an image
//! file that keeps the saved configuration across runs.
//!
//! Logs: the firmware writes defmt frames over semihosting, which QEMU
//! (`-semihosting-config enable=on,target=native`) passes to its standard
//! output; [`decode`] turns them into lines `[  seconds.millis] LEVEL text`
//! with `defmt-decoder` and the format strings in the firmware's ELF.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::board;
use crate::cmd;
use crate::sdimage;

/// The QEMU machine of the board and the Debian package that provides it.
const QEMU: &str = "qemu-system-arm";
const QEMU_PACKAGE: &str = "qemu-system-arm";

#[derive(Debug, Args)]
pub(crate) struct QemuArgs {
    /// The SD card image (created, 4 MiB, if missing; relative to the workspace root).
    #[arg(long, default_value = "target/firmware/sd.img")]
    sd: PathBuf,
    /// Provision this chassis key onto the card (or the aarch64 board's flash) first.
    #[arg(long, value_name = "PATH")]
    pub(crate) key_file: Option<PathBuf>,
    /// aarch64-msm: boot the aarch64 Linux board instead (its console here).
    #[arg(long)]
    pub(crate) board: Option<String>,
    /// Where UART1 (backplane path 1, the primary) goes: `pty`, or any QEMU
    /// chardev (e.g. `unix:/tmp/bp.sock,server=on,wait=off`).
    #[arg(long, default_value = "pty")]
    uart1: String,
    /// Where UART2 (backplane path 2) goes: `pty`, `null` (one path only), or
    /// any QEMU chardev.
    #[arg(long, default_value = "pty")]
    uart2: String,
    /// Count instructions instead of host time (QEMU `-icount shift=0`): one
    /// instruction is 1 ns of guest time, so the firmware's timings read as
    /// thousands of instructions, the same on every host.
    #[arg(long)]
    icount: bool,
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

/// What QEMU itself prints on its standard output, before the guest runs,
/// for each `-serial pty`: `char device redirected to /dev/pts/N (label serial1)`
/// (`serial1` is UART1, `serial2` UART2).
const QEMU_PTY_LINE: &[u8] = b"char device redirected to ";

/// Decodes the defmt frames read from `input` (QEMU's standard output) with
/// the format strings of `elf`, calling `line` with each decoded line,
/// `[  seconds.millis] LEVEL text`, until `input` ends. QEMU's own
/// `char device redirected to ...` lines, which come first, are passed on
/// as they are.
pub(crate) fn decode(
    elf: &Path,
    mut input: impl Read,
    mut line: impl FnMut(&str) -> Result<()>,
) -> Result<()> {
    let bytes = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    let table = defmt_decoder::Table::parse(&bytes)
        .with_context(|| format!("reading the defmt table of {}", elf.display()))?
        .with_context(|| format!("{} has no defmt data (built without defmt?)", elf.display()))?;
    let mut decoder = table.new_stream_decoder();
    let mut buf = [0u8; 4096];
    // QEMU's text lines before the first defmt byte.
    let mut preamble: Option<Vec<u8>> = Some(Vec::new());
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("reading the firmware's defmt output"),
        };
        let mut data = &buf[..n];
        let rest;
        if let Some(mut text) = preamble.take() {
            text.extend_from_slice(data);
            loop {
                let k = text.len().min(QEMU_PTY_LINE.len());
                if text[..k] != QEMU_PTY_LINE[..k] {
                    break; // defmt from here on
                }
                match text.iter().position(|b| *b == b'\n') {
                    Some(end) => {
                        line(String::from_utf8_lossy(&text[..end]).trim_end())?;
                        text.drain(..=end);
                    }
                    None => {
                        preamble = Some(std::mem::take(&mut text));
                        break; // wait for the rest of the line
                    }
                }
            }
            rest = text;
            data = &rest;
        }
        decoder.received(data);
        loop {
            match decoder.decode() {
                Ok(frame) => line(&format_frame(&frame))?,
                Err(defmt_decoder::DecodeError::UnexpectedEof) => break,
                Err(defmt_decoder::DecodeError::Malformed) if table.encoding().can_recover() => {
                    line("(malformed defmt frame skipped)")?;
                }
                Err(defmt_decoder::DecodeError::Malformed) => bail!("malformed defmt frame"),
            }
        }
    }
}

/// `[     5.123] INFO  text`: the timestamp is the firmware's milliseconds.
fn format_frame(frame: &defmt_decoder::Frame<'_>) -> String {
    let ts = frame.display_timestamp().map(|t| t.to_string()).unwrap_or_default();
    let level = frame.level().map_or("", |l| l.as_str()).to_uppercase();
    format!("[{ts:>10}] {level:<5} {}", frame.display_message())
}

/// The QEMU command line for `elf`: UART0 to `uart0`, UART1 to `uart1`,
/// UART2 to `uart2`; the defmt log on QEMU's standard output.
pub(crate) fn command(elf: &Path, uart0: &str, uart1: &str, uart2: &str, sd: &Path) -> Command {
    let mut c = Command::new(QEMU);
    c.args(["-M", "lm3s6965evb", "-display", "none", "-monitor", "none"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .args(["-serial", uart0, "-serial", uart1, "-serial", uart2])
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
    let sd = cmd::workspace_root().join(&args.sd);
    sdimage::provision(&sd, args.key_file.as_deref(), SystemTime::now())?;
    sdimage::describe(&sd)?;
    println!("qemu: the firmware's defmt log below, decoded; SD card {}", sd.display());
    for (uart, chardev) in [("UART1", &args.uart1), ("UART2", &args.uart2)] {
        let path = if uart == "UART1" { "path 1, the primary" } else { "path 2" };
        if chardev == "pty" {
            println!(
                "qemu: {uart} (backplane {path}) is the pty QEMU names below \
                 (\"char device redirected to /dev/pts/N (label serial{})\")",
                &uart[4..]
            );
        } else {
            println!("qemu: {uart} (backplane {path}) on {chardev}");
        }
    }
    println!(
        "      join them with: target/release/msm-node --slot A --flash A.img --control A.ctl \
         --apps devmgr,cfgmgr,vlan --max-frame 512 --backplane serial:<UART1's pty> \
         --backplane serial:<UART2's pty>"
    );
    println!("qemu: stop with Ctrl-C");
    let mut c = command(&elf, "null", &args.uart1, &args.uart2, &sd);
    if args.icount {
        c.args(["-icount", "shift=0"]);
    }
    c.stdout(Stdio::piped());
    eprintln!("$ {}", cmd::display(&c));
    let mut child = c.spawn().context("starting qemu-system-arm")?;
    let stdout = child.stdout.take().context("qemu's standard output")?;
    let decoded = decode(&elf, stdout, |l| {
        println!("{l}");
        Ok(())
    });
    let status = child.wait()?;
    decoded?;
    if !status.success() {
        bail!("qemu-system-arm exited with {status}");
    }
    Ok(())
}

/// CI step: install QEMU if needed, build the firmware, compare a scenario
/// run with its checked-in expected output, then run `tests/qemu_interop.rs`
/// (firmware and a Linux node over the serial backplane).
pub(crate) fn interop() -> Result<()> {
    ensure_qemu()?;
    let b = board::find("lm3s6965evb")?;
    let elf = board::build(&b)?;
    scenario(&b, &elf)?;
    // The test finds msm-node in the target dir and builds it only when
    // missing: build it here so a stale one (e.g. without --key-file) is not run.
    cmd::run(cmd::cargo().args(["build", "-p", "msm-linux-emu", "--bins"]))?;
    let mut c = cmd::cargo();
    c.args(["test", "-p", "msm-system-tests", "--test", "qemu_interop", "--", "--nocapture"])
        .env("MSM_FIRMWARE", &elf);
    cmd::run(&mut c)
}

/// The chassis key of the checked-in scenario: a published test key, not a secret.
const SCENARIO_KEY: &[u8; 32] = b"msm-ha qemu scenario: not secret";

/// Values that change from run to run, masked as `*` in the scenario's
/// output: the text between each pair.
const VARIABLE: &[(&str, &str)] = &[
    // Seeded from the host clock at provisioning; checked against the card instead.
    ("up: incarnation ", ","),
    // A time measured under QEMU.
    ("-byte frame tagged in ", " us"),
];

fn normalise(line: &str) -> String {
    let mut out = line.to_owned();
    for (after, before) in VARIABLE {
        if let Some(from) = out.find(after).map(|i| i + after.len()) {
            if let Some(len) = out[from..].find(before) {
                out.replace_range(from..from + len, "*");
            }
        }
    }
    out
}

/// A key file as `msm keygen` writes one: 64 hex digits and a newline, mode 0600.
fn write_key_file(path: &Path, key: &[u8; 32]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let _ = std::fs::remove_file(path);
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    writeln!(f, "{hex}").with_context(|| format!("writing {}", path.display()))
}

/// The scenario whose output is checked in: the firmware boots on a fresh
/// SD card provisioned with [`SCENARIO_KEY`] (as `cargo xtask sd-image
/// --key-file` does it) and no peer; the backplane stays silent and the
/// node elects itself. The decoded defmt log (timestamps removed, the
/// values of [`VARIABLE`] masked) must equal `boards/<board>/expected/solo.log`;
/// `MSM_BLESS=1` rewrites that file instead (then review the diff), as
/// rtic's and defmt's expected outputs do. The masked incarnation is
/// checked here instead: one above the provisioned seed, and on the card.
fn scenario(b: &board::Board, elf: &Path) -> Result<()> {
    const LAST: &str = "active configuration: ";
    let start = Instant::now();
    let dir = b.target_dir().join("scenario");
    std::fs::create_dir_all(&dir)?;
    let sd = dir.join("sd.img");
    let _ = std::fs::remove_file(&sd);
    let key_file = dir.join("chassis.key");
    write_key_file(&key_file, SCENARIO_KEY)?;
    sdimage::provision(&sd, Some(&key_file), SystemTime::now())?;
    let seed = sdimage::boot_count(&sd)?.context("the provisioned image has no boot counter")?;
    let mut c = command(elf, "null", "null", "null", &sd);
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    eprintln!("$ {}", cmd::display(&c));
    let mut child = c.spawn().context("starting qemu-system-arm")?;
    let stdout = child.stdout.take().context("qemu's standard output")?;
    let text = Arc::new(Mutex::new(String::new()));
    let decoder = {
        let (elf, text) = (elf.to_path_buf(), Arc::clone(&text));
        std::thread::spawn(move || {
            decode(&elf, stdout, |l| {
                let mut t = text.lock().map_err(|_| anyhow::anyhow!("log lock poisoned"))?;
                t.push_str(l);
                t.push('\n');
                Ok(())
            })
        })
    };
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let done = text.lock().map_or(true, |t| t.lines().any(|l| l.contains(LAST)));
        if done || Instant::now() > deadline || child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    match decoder.join() {
        Ok(r) => r?,
        Err(_) => bail!("the defmt decoder thread panicked"),
    }
    let text = text.lock().map(|t| t.clone()).unwrap_or_default();
    // Timestamps differ from run to run: compare `LEVEL text` only.
    let raw: Vec<&str> = text.lines().map(|l| l.split_once("] ").map_or(l, |(_, rest)| rest)).collect();
    let want = format!("incarnation {}, ", u64::from(seed) + 1);
    if !raw.iter().any(|l| l.contains("node MSM-B up: ") && l.contains(&want)) {
        bail!("the firmware did not run as {want}one above the card's seed {seed}; its log:\n{text}");
    }
    let on_card = sdimage::boot_count(&sd)?;
    if on_card != Some(seed + 1) {
        bail!(
            "the card's boot count is {on_card:?} after one boot from seed {seed}: the bump was not persisted"
        );
    }
    let got: String = raw.iter().map(|l| format!("{}\n", normalise(l))).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_values_are_masked_and_nothing_else() {
        assert_eq!(
            normalise("INFO  node MSM-B up: incarnation 31536001, key 1a2b3c4d, apps"),
            "INFO  node MSM-B up: incarnation *, key 1a2b3c4d, apps"
        );
        assert_eq!(
            normalise("INFO  auth: 512-byte frame tagged in 153.2 us (100 runs)"),
            "INFO  auth: 512-byte frame tagged in * us (100 runs)"
        );
        assert_eq!(normalise("INFO  role MASTER term 1.B"), "INFO  role MASTER term 1.B");
    }

    #[test]
    fn the_scenario_key_file_is_one_the_key_file_rules_take() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_key_file(&path, SCENARIO_KEY).unwrap();
        assert_eq!(&crate::keyfile::read(&path).unwrap(), SCENARIO_KEY);
    }
}
