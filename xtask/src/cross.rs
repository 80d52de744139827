//! `cargo xtask cross`: build every `no_std` crate for the Cortex-M3 target,
//! with no features, with `defmt` and with `log` (see [`NO_STD_CRATES`]).
//!
//! On the Debian path the crates are built with `-Zbuild-std=core`: only
//! `core` exists for the target, not even `alloc` (`extern crate alloc` fails
//! with "can't find crate"), so a crate that builds there is proven
//! allocation-free: no `Vec`, `Box`, `String` or global allocator can sneak
//! in, directly or through a dependency. (rustup's prebuilt target also ships
//! `alloc`, so that path proves `no_std` only; machines without rustup targets,
//! like the dev/CI box this was written on, take the Debian path.)
//!
//! Two ways to get a `thumbv7m-none-eabi` toolchain, tried in order:
//! 1. rustup, when `rustup target list --installed` lists the target: a plain
//!    `cargo build --target thumbv7m-none-eabi`.
//! 2. Debian's `rustc-web` (rustc >= 1.85 at `/usr/bin/rustc`) with
//!    `rust-web-src` (its standard library source): rustup's cargo drives
//!    Debian's rustc with `RUSTC_BOOTSTRAP=1 -Zbuild-std=core`, linking with the
//!    `rust-lld` shipped in rustup's host toolchain (Debian's `rust-lld` link
//!    is dangling). Installed with apt-get when missing and we are root. The
//!    build goes to `target/cross` so switching compilers never invalidates
//!    the host build cache.
//!
//! See `docs/cross-toolchain.md` for the recipe, step by step.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cmd::{self, DEBIAN_RUSTC};

/// The `no_std` crates of the workspace, all built by `cargo xtask cross`,
/// each with the logging features it has: none, `defmt` (MCU boards), `log`
/// (the crates make the two mutually exclusive), so no logging path rots
/// unbuilt.
pub(crate) const NO_STD_CRATES: &[(&str, &[&str])] = &[
    ("msm-time", &["", "defmt"]),
    ("msm-records", &[""]),
    ("msm-checkpoint", &["", "defmt", "log"]),
    ("msm-flash", &["", "defmt", "log"]),
    ("msm-backplane", &["", "defmt", "log"]),
];

/// Cortex-M3 (QEMU `lm3s6965evb`), the smallest target the firmware supports.
pub(crate) const TARGET: &str = "thumbv7m-none-eabi";

/// The standard library source shipped by Debian's `rust-web-src`.
const DEBIAN_LIBRARY_SRC: &str = "/usr/lib/rustlib/src/rust/library";
/// Debian packages for the fallback: `rustc-web` (the compiler at
/// `/usr/bin/rustc`), `cargo-web` (its matching cargo) and `rust-web-src`
/// (the library source that `-Zbuild-std=core` compiles).
const DEBIAN_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src"];
/// Edition 2024 needs rustc 1.85.
const MIN_RUSTC: (u32, u32) = (1, 85);

/// How the cross build gets its target libraries.
#[derive(Debug)]
pub(crate) enum Toolchain {
    /// rustup has the target installed: a plain cargo build.
    Rustup,
    /// Debian's rustc building `core` from source.
    Debian {
        /// `rustc --version` of `/usr/bin/rustc`.
        version: String,
        /// `rust-lld` from rustup's host toolchain.
        linker: PathBuf,
    },
}

/// Builds every crate of [`NO_STD_CRATES`] for [`TARGET`] in release mode.
pub(crate) fn run() -> Result<()> {
    let toolchain = detect()?;
    match &toolchain {
        Toolchain::Rustup => println!("cross: using rustup's installed {TARGET} target"),
        Toolchain::Debian { version, linker } => println!(
            "cross: rustup has no {TARGET} target; using Debian's {version} ({DEBIAN_RUSTC}) \
             with -Zbuild-std=core from {DEBIAN_LIBRARY_SRC}, linker {}",
            linker.display()
        ),
    }
    for (krate, feature_sets) in NO_STD_CRATES {
        for features in *feature_sets {
            let start = Instant::now();
            let with =
                if features.is_empty() { "no features".to_owned() } else { format!("--features {features}") };
            let mut c = build_command(&toolchain, krate);
            if !features.is_empty() {
                c.args(["--features", features]);
            }
            cmd::run(&mut c)
                .with_context(|| format!("cross build of `{krate}` ({with}) for {TARGET} failed"))?;
            println!("cross: {krate} ({with}) built for {TARGET} ({:.1} s)", start.elapsed().as_secs_f64());
        }
    }
    Ok(())
}

fn build_command(toolchain: &Toolchain, krate: &str) -> Command {
    match toolchain {
        Toolchain::Rustup => {
            let mut c = cmd::cargo();
            c.args(["build", "--release", "--target", TARGET, "-p", krate]);
            c
        }
        Toolchain::Debian { linker, .. } => {
            let mut c = debian_build(TARGET, linker);
            c.current_dir(cmd::workspace_root())
                .args(["--target", TARGET])
                .arg("--target-dir")
                .arg(cross_target_dir())
                .args(["-p", krate]);
            c
        }
    }
}

/// `cargo build --release -Zbuild-std=core` with Debian's rustc for `target`,
/// linking with `linker`. Shared by `cross` and `build --board`.
pub(crate) fn debian_build(target: &str, linker: &Path) -> Command {
    let mut c = debian_cargo(target, linker);
    c.args(["build", "--release", "-Zbuild-std=core"]);
    c
}

/// Cargo driving Debian's rustc (`RUSTC_BOOTSTRAP` for `-Zbuild-std`),
/// with `linker` for `target` and no compiler wrapper.
pub(crate) fn debian_cargo(target: &str, linker: &Path) -> Command {
    // Not `cmd::cargo()`: that one may strip RUSTC, here it must be Debian's.
    let mut c = Command::new(cmd::cargo_path());
    let linker_var = format!("CARGO_TARGET_{}_LINKER", target.to_uppercase().replace('-', "_"));
    // Env overrides config, so these win over anything inherited.
    c.env("RUSTC", DEBIAN_RUSTC)
        .env("RUSTC_BOOTSTRAP", "1")
        // Empty disables a wrapper from env or config (e.g. sccache).
        .env("RUSTC_WRAPPER", "")
        .env("RUSTC_WORKSPACE_WRAPPER", "")
        .env_remove("CARGO_BUILD_RUSTC")
        .env_remove("CARGO_BUILD_RUSTC_WRAPPER")
        .env_remove("CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER")
        .env(linker_var, linker);
    c
}

/// `target/cross` (under `$CARGO_TARGET_DIR` when that is set).
pub(crate) fn cross_target_dir() -> PathBuf {
    let root = cmd::workspace_root();
    let base = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |dir| root.join(dir));
    base.join("cross")
}

pub(crate) fn detect() -> Result<Toolchain> {
    if rustup_has_target() {
        return Ok(Toolchain::Rustup);
    }
    let version = match debian_rustc() {
        Ok(version) => version,
        Err(missing) => {
            install_debian_packages(&missing)?;
            debian_rustc().map_err(|still| {
                anyhow::anyhow!(
                    "installed {} but the Debian toolchain is still unusable: {still}",
                    DEBIAN_PACKAGES.join(" ")
                )
            })?
        }
    };
    Ok(Toolchain::Debian { version, linker: rustup_lld()? })
}

/// Whether rustup (if any) lists the target as installed for the toolchain
/// that runs in the workspace.
fn rustup_has_target() -> bool {
    let mut c = Command::new("rustup");
    c.args(["target", "list", "--installed"]).current_dir(cmd::workspace_root());
    cmd::output(&mut c).is_ok_and(|out| out.lines().any(|l| l.trim() == TARGET))
}

/// `Ok(version)` when Debian's rustc and library source are usable, else
/// `Err(what is missing)`.
fn debian_rustc() -> Result<String, String> {
    let mut c = Command::new(DEBIAN_RUSTC);
    c.arg("--version");
    let version = cmd::output(&mut c).map_err(|e| format!("{DEBIAN_RUSTC} is not usable ({e:#})"))?;
    match parse_version(&version) {
        Some(v) if v >= MIN_RUSTC => {}
        Some(_) => {
            return Err(format!(
                "{DEBIAN_RUSTC} is `{version}`, older than {}.{} (edition 2024)",
                MIN_RUSTC.0, MIN_RUSTC.1
            ));
        }
        None => {
            return Err(format!("cannot parse `{DEBIAN_RUSTC} --version`: `{version}`"));
        }
    }
    if !Path::new(DEBIAN_LIBRARY_SRC).join("core").is_dir() {
        return Err(format!(
            "{DEBIAN_LIBRARY_SRC} is missing (the library source that -Zbuild-std=core compiles)"
        ));
    }
    Ok(version)
}

/// `(major, minor)` from `rustc 1.96.0 (ac68faa20 2026-05-25)`.
fn parse_version(version: &str) -> Option<(u32, u32)> {
    let number = version.split_whitespace().nth(1)?;
    let mut parts = number.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Installs [`DEBIAN_PACKAGES`] with apt-get if we are root, else fails with
/// instructions.
fn install_debian_packages(missing: &str) -> Result<()> {
    let packages = DEBIAN_PACKAGES.join(" ");
    let is_root = cmd::output(Command::new("id").arg("-u")).is_ok_and(|uid| uid == "0");
    let has_apt = cmd::exists("apt-get");
    if !(is_root && has_apt) {
        let why_not = if has_apt { "not running as root" } else { "apt-get not found" };
        bail!(
            "cannot build for {TARGET}: rustup has no {TARGET} target and the Debian fallback \
             is incomplete: {missing}.\n\
             Either run `rustup target add {TARGET}`, or install the Debian packages \
             (cannot do it automatically: {why_not}):\n  \
             sudo apt-get update && sudo apt-get install -y {packages}\n\
             (rustc-web: rustc >= {}.{} at {DEBIAN_RUSTC}; rust-web-src: its library source for \
             -Zbuild-std=core; cargo-web: its matching cargo)",
            MIN_RUSTC.0,
            MIN_RUSTC.1
        );
    }
    println!("cross: {missing}; installing {packages} with apt-get");
    cmd::run(Command::new("apt-get").arg("update"))?;
    cmd::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            // Wait for a concurrent apt/dpkg instead of failing on its lock.
            .args(["-o", "DPkg::Lock::Timeout=300", "install", "-y"])
            .args(DEBIAN_PACKAGES),
    )
    .with_context(|| format!("installing {packages} failed"))
}

/// `rust-lld` of rustup's host toolchain: the rustc next to `$CARGO` first,
/// then `rustc` from `PATH`, skipping any whose sysroot has no `rust-lld`
/// (Debian's, where the link is dangling).
fn rustup_lld() -> Result<PathBuf> {
    let cargo = cmd::cargo_path();
    let mut candidates = Vec::new();
    if let Some(dir) = cargo.parent().filter(|d| !d.as_os_str().is_empty()) {
        candidates.push(dir.join("rustc"));
    }
    candidates.push(PathBuf::from("rustc"));
    let mut tried = Vec::new();
    for rustc in candidates {
        if rustc == Path::new(DEBIAN_RUSTC) {
            continue;
        }
        match lld_of(&rustc) {
            Ok(lld) if lld.is_file() => return Ok(lld),
            Ok(lld) => tried.push(format!("{} (no {})", rustc.display(), lld.display())),
            Err(e) => tried.push(format!("{} ({e:#})", rustc.display())),
        }
    }
    bail!(
        "no rust-lld found for linking {TARGET}; it ships with rustup's host toolchain \
         (tried: {})",
        tried.join("; ")
    )
}

/// `<sysroot>/lib/rustlib/<host>/bin/rust-lld` for the given rustc.
fn lld_of(rustc: &Path) -> Result<PathBuf> {
    let sysroot = cmd::output(Command::new(rustc).args(["--print", "sysroot"]))?;
    let verbose = cmd::output(Command::new(rustc).arg("-vV"))?;
    let host =
        verbose.lines().find_map(|l| l.strip_prefix("host: ")).context("`rustc -vV` printed no host line")?;
    Ok(Path::new(&sysroot).join("lib/rustlib").join(host.trim()).join("bin/rust-lld"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rustc_versions() {
        assert_eq!(
            parse_version("rustc 1.96.0 (ac68faa20 2026-05-25) (built from a source tarball)"),
            Some((1, 96))
        );
        assert_eq!(parse_version("rustc 1.63.0"), Some((1, 63)));
        assert_eq!(parse_version("rustc 1.97.0-nightly (abc 2026-06-01)"), Some((1, 97)));
        assert_eq!(parse_version("garbage"), None);
        assert!(parse_version("rustc 1.84.1").is_some_and(|v| v < MIN_RUSTC));
    }
}
