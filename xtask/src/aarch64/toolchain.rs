//! The host side of the aarch64 board: the packages it needs (installed with
//! apt-get when missing and we are root) and static builds of binaries for
//! [`TARGET`] with Debian's `rustc-web` and `-Zbuild-std=std,panic_abort`
//! (no rustup target needed), linked by `aarch64-linux-gnu-gcc`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cmd::{self, DEBIAN_RUSTC};

/// The guest's Rust target.
pub(crate) const TARGET: &str = "aarch64-unknown-linux-gnu";
/// The cross linker (`gcc-aarch64-linux-gnu`, with `libc6-dev-arm64-cross`).
const LINKER: &str = "aarch64-linux-gnu-gcc";

/// What the flows need on the host: a program (looked up on `PATH`, `/usr/sbin`
/// and `/sbin`) or an absolute path, and the Debian package that provides it.
const HOST_PACKAGES: &[(&str, &str)] = &[
    (DEBIAN_RUSTC, "rustc-web"),
    ("/usr/bin/cargo", "cargo-web"),
    ("/usr/lib/rustlib/src/rust/library/std/Cargo.toml", "rust-web-src"),
    (LINKER, "gcc-aarch64-linux-gnu"),
    ("/usr/aarch64-linux-gnu/lib/libc.a", "libc6-dev-arm64-cross"),
    ("qemu-system-aarch64", "qemu-system-arm"),
    ("depmod", "kmod"),
    ("xz", "xz-utils"),
    ("make", "make"),
    ("ip", "iproute2"),
];

/// Makes sure every host package of [`HOST_PACKAGES`] is installed and that
/// apt can download arm64 packages (`dpkg --add-architecture arm64`: only the
/// package index; nothing arm64 is installed on the host).
pub(crate) fn ensure() -> Result<()> {
    let missing: Vec<&str> =
        HOST_PACKAGES.iter().filter(|(probe, _)| !present(probe)).map(|(_, package)| *package).collect();
    if !missing.is_empty() {
        install(&missing)?;
        let still: Vec<&str> =
            HOST_PACKAGES.iter().filter(|(probe, _)| !present(probe)).map(|(probe, _)| *probe).collect();
        if !still.is_empty() {
            bail!("installed {} but still missing: {}", missing.join(" "), still.join(", "));
        }
    }
    ensure_arm64_index()
}

/// Whether `probe` (an absolute path, or a program name) exists.
fn present(probe: &str) -> bool {
    if probe.starts_with('/') {
        return Path::new(probe).exists();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|dir| dir.join(probe).is_file())
}

fn is_root() -> bool {
    cmd::output(Command::new("id").arg("-u")).is_ok_and(|uid| uid == "0")
}

/// `apt-get install` of `packages`, after an `apt-get update` if the first try fails.
fn install(packages: &[&str]) -> Result<()> {
    let list = packages.join(" ");
    if !(is_root() && cmd::exists("apt-get")) {
        bail!(
            "the aarch64 board needs {list}, and they cannot be installed automatically \
             (needs root and apt-get):\n  sudo apt-get update && sudo apt-get install -y {list}"
        );
    }
    println!("aarch64: installing {list} with apt-get");
    let start = Instant::now();
    let run = || {
        cmd::run(
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["-o", "DPkg::Lock::Timeout=300", "install", "-y", "--no-install-recommends"])
                .args(packages),
        )
    };
    if run().is_err() {
        apt_update()?;
        run().with_context(|| format!("installing {list} failed"))?;
    }
    println!("aarch64: installed {list} in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

pub(crate) fn apt_update() -> Result<()> {
    cmd::run(Command::new("apt-get").args(["-o", "DPkg::Lock::Timeout=300", "update"]))
        .context("apt-get update failed")
}

/// Adds arm64 to dpkg's foreign architectures (so `apt-get download pkg:arm64`
/// works) and updates the index when apt does not know arm64 packages yet.
fn ensure_arm64_index() -> Result<()> {
    let foreign = cmd::output(Command::new("dpkg").arg("--print-foreign-architectures"))?;
    let known = foreign.split_whitespace().any(|a| a == "arm64");
    if known && super::deb::has_lists_for("arm64") {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "apt cannot download arm64 packages; run as root:\n  \
             sudo dpkg --add-architecture arm64 && sudo apt-get update"
        );
    }
    if !known {
        cmd::run(Command::new("dpkg").args(["--add-architecture", "arm64"]))?;
    }
    apt_update()?;
    if !super::deb::has_lists_for("arm64") {
        bail!("apt has no arm64 package list even after `apt-get update`");
    }
    Ok(())
}

/// Builds `bin` of workspace `package` for [`TARGET`] as a static binary into
/// `target/aarch64`; returns its path.
pub(crate) fn build_static(package: &str, bin: &str) -> Result<PathBuf> {
    build_static_in(&cmd::workspace_root(), &super::dir(), package, bin)
}

/// Builds `bin` of `package` from the cargo project (workspace or single
/// crate) at `project` into the cargo target dir `target_dir`: release, static
/// (`+crt-static`), `std` built from `rust-web-src` by Debian's rustc.
pub(crate) fn build_static_in(
    project: &Path,
    target_dir: &Path,
    package: &str,
    bin: &str,
) -> Result<PathBuf> {
    ensure()?;
    let start = Instant::now();
    let mut c = build_command(target_dir);
    c.current_dir(project).args(["-p", package, "--bin", bin]);
    cmd::run(&mut c).with_context(|| format!("building {bin} ({package}) for {TARGET} failed"))?;
    let out = target_dir.join(TARGET).join("release").join(bin);
    if !is_static_elf(&out)? {
        bail!("{} was built but is not a static ELF (it has an interpreter)", out.display());
    }
    println!(
        "aarch64: {bin} built for {TARGET} in {:.1} s: {}",
        start.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(out)
}

/// `cargo build --release -Zbuild-std=std,panic_abort --target aarch64-…`
/// with Debian's rustc, the cross gcc as linker and `+crt-static`.
fn build_command(target_dir: &Path) -> Command {
    let mut c = crate::cross::debian_cargo(TARGET, Path::new(LINKER));
    let var = |what: &str| format!("CARGO_TARGET_{}_{what}", TARGET.to_uppercase().replace('-', "_"));
    // They would win over the target's rustflags below.
    c.env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env(var("RUSTFLAGS"), "-C target-feature=+crt-static")
        .args(["build", "--release", "-Zbuild-std=std,panic_abort", "--target", TARGET])
        .arg("--target-dir")
        .arg(target_dir);
    c
}

/// Whether the ELF64 file at `path` has no `PT_INTERP` program header (a
/// static or static-pie binary, which runs without a libc in the guest).
fn is_static_elf(path: &Path) -> Result<bool> {
    const PT_INTERP: u32 = 3;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let le_u16 = |at: usize| bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let le_u32 = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let le_u64 =
        |at: usize| bytes.get(at..at + 8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes);
    if bytes.get(..5) != Some(b"\x7fELF\x02") {
        bail!("{} is not an ELF64 file", path.display());
    }
    let header = (le_u64(0x20), le_u16(0x36), le_u16(0x38));
    let (Some(phoff), Some(phentsize), Some(phnum)) = header else {
        bail!("{}: truncated ELF header", path.display());
    };
    let phoff = usize::try_from(phoff)?;
    for i in 0..usize::from(phnum) {
        let p_type = le_u32(phoff + i * usize::from(phentsize))
            .with_context(|| format!("{}: truncated program headers", path.display()))?;
        if p_type == PT_INTERP {
            return Ok(false);
        }
    }
    Ok(true)
}
