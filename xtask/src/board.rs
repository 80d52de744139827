//! `cargo xtask build --board <name>`: firmware for an MCU board.
//!
//! Each board is a leaf crate under `boards/<name>` outside the host
//! workspace, with its own `.cargo/config.toml` (target, linker script) and
//! `memory.x`. It is built with the board crate as the working directory so
//! that config applies, with the toolchain `cargo xtask cross` finds or
//! installs: rustup's target when installed, else Debian's `rustc-web` with
//! `-Zbuild-std=core` and rustup's `rust-lld`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cmd;
use crate::cross::{self, TARGET, Toolchain};

/// An MCU board the xtask knows how to build and run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Board {
    /// Directory under `boards/` and the name on the command line.
    pub(crate) name: &'static str,
    /// The firmware binary the crate builds.
    pub(crate) bin: &'static str,
    pub(crate) target: &'static str,
}

/// Every MCU board. A new board is one entry here plus its leaf crate.
pub(crate) const BOARDS: &[Board] = &[Board { name: "lm3s6965evb", bin: "msm-lm3s6965evb", target: TARGET }];

pub(crate) fn find(name: &str) -> Result<Board> {
    match BOARDS.iter().find(|b| b.name == name) {
        Some(b) => Ok(*b),
        None => bail!(
            "no board named `{name}` (have: {})",
            BOARDS.iter().map(|b| b.name).collect::<Vec<_>>().join(", ")
        ),
    }
}

impl Board {
    pub(crate) fn dir(&self) -> PathBuf {
        cmd::workspace_root().join("boards").join(self.name)
    }

    /// Where the firmware is built: `target/firmware/<board>` of the workspace.
    pub(crate) fn target_dir(&self) -> PathBuf {
        cross::cross_target_dir().with_file_name("firmware").join(self.name)
    }

    /// The release ELF.
    pub(crate) fn elf(&self) -> PathBuf {
        self.target_dir().join(self.target).join("release").join(self.bin)
    }
}

/// Builds the board's firmware in release mode; returns the ELF.
pub(crate) fn build(board: &Board) -> Result<PathBuf> {
    let toolchain = cross::detect()?;
    let start = Instant::now();
    let mut c = match &toolchain {
        Toolchain::Rustup => {
            let mut c = Command::new(cmd::cargo_path());
            c.args(["build", "--release"]);
            c
        }
        Toolchain::Debian { linker, version } => {
            println!("build: using Debian's {version} with -Zbuild-std=core, linker {}", linker.display());
            cross::debian_build(board.target, linker)
        }
    };
    // From the board directory, so its .cargo/config.toml applies.
    c.current_dir(board.dir()).args(["--target", board.target]).arg("--target-dir").arg(board.target_dir());
    cmd::run(&mut c).with_context(|| format!("building the {} firmware failed", board.name))?;
    let elf = board.elf();
    if !elf.is_file() {
        bail!("the build succeeded but {} is missing", elf.display());
    }
    println!("build: {} firmware in {:.1} s: {}", board.name, start.elapsed().as_secs_f64(), elf.display());
    Ok(elf)
}
