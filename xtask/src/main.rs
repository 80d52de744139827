//! Project automation, run as `cargo xtask <flow>` (alias in `.cargo/config.toml`).
//!
//! Every flow only orchestrates: it runs child commands (mostly `cargo`) from
//! the workspace root with inherited stdio, echoes each command before running
//! it, and turns a failure into an error that names the command. The exit
//! status of a failed child (e.g. msm-sim reporting a failing seed) becomes the
//! exit status of the xtask.

mod aarch64;
mod against;
mod board;
mod ci;
mod cmd;
mod cross;
mod emu;
mod fuzz;
mod keyfile;
mod load;
mod msrv;
mod operations;
mod pairs;
mod path_loss;
mod qemu;
mod sdimage;
mod shape;
mod sim;
mod size;
mod soak;
mod switchover;
mod upgrade;
mod vs_redis;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Project automation for the msm-ha workspace"
)]
struct Cli {
    #[command(subcommand)]
    flow: Flow,
}

// Each flow with more than a few lines gets its own module (`cross`, `board`,
// `qemu`, `size`, `soak`, `fuzz`, `ci`).
#[derive(Debug, Subcommand)]
enum Flow {
    /// Run the host test suite: `cargo test --workspace [ARGS]`.
    ///
    /// ARGS go to `cargo test` unchanged; arguments for the test binaries go
    /// after a second `--`, e.g. `cargo xtask test -- -- --nocapture`.
    Test(PassThrough),
    /// Run the deterministic chassis simulator (sweep a seed range, or replay one seed).
    Sim(sim::SimArgs),
    /// Run the narrated demo scenario of the simulator.
    Demo,
    /// A two-MSM chassis of real processes: sync, checkpoint, kill the master,
    /// takeover, resync. ARGS go to msm-chassis (e.g. `--interactive`, `--dir D`).
    Emu(PassThrough),
    /// Every benchmark: the core (`msm-sim bench [ARGS]`), each crate's, and
    /// the chassis under load with real processes. `--vs redis`: side by
    /// side with Redis replication (installs redis-server when root).
    /// `--switchover`: only the switchover measurements (two and three modules).
    /// `--operations`: the largest heartbeat gap with metrics scraped every
    /// 100 ms and a notify hook that sleeps 5 s, against none.
    /// `--core-against REV`: the core benchmark of this tree against commit
    /// REV's, in alternating pairs. `--board aarch64-msm`: the aarch64
    /// board's failover times at 10 and 100 ms heartbeats.
    Bench(PassThrough),
    /// Check that the workspace's rust-version is true for every dependency.
    Msrv,
    /// Build every no_std crate for `thumbv7m-none-eabi` (with `core` only: proves they are allocation-free).
    Cross,
    /// Build the firmware of an MCU board (the cross toolchain found or installed as for `cross`).
    Build {
        /// The board: lm3s6965evb (firmware), or aarch64-msm (a static
        /// aarch64 Linux binary, built with Debian's rustc and -Zbuild-std).
        #[arg(long)]
        board: String,
    },
    /// Build the lm3s6965evb firmware and run it in QEMU: UART0 logs here,
    /// UART1 (backplane) on a pty, SD card on an image file.
    Qemu(qemu::QemuArgs),
    /// Provision the lm3s6965evb's SD card image: create it if missing, write
    /// the chassis key (`--key-file`), seed the boot counter from the clock.
    SdImage(sdimage::SdImageArgs),
    /// The interoperation test: a Linux node and the firmware in QEMU form
    /// one chassis over a serial backplane (installs qemu-system-arm if needed).
    QemuTest {
        /// aarch64-msm: the aarch64 Linux board and the x86 node as one
        /// chassis instead (needs root: a network namespace, apt).
        #[arg(long)]
        board: Option<String>,
    },
    /// The rolling-upgrade test with two real builds: release N (a tagged
    /// earlier commit, built from the repository's history into
    /// target/release-n/, kept) and this tree, failed over to each other under churn.
    UpgradeTest,
    /// The aarch64 board's tool chain end to end with a throwaway guest
    /// program: three boots on one flash file, UDP over both NICs.
    Aarch64Smoke,
    /// Text, data and bss of the lm3s6965evb firmware, split by crate (core, link, flash store, board).
    Size,
    /// Rules of the code's shape CI keeps: files of the core crates at most
    /// 600 lines, a stream's state assigned only by its own methods.
    Shape,
    /// Soak a chassis of real processes: each round kills the master with
    /// SIGKILL at a seeded random moment (during bulk, churn, right after a
    /// save, during a configure burst), checks every checkpointed change on
    /// the new master, restarts the dead node and waits for resync.
    Soak(soak::SoakArgs),
    /// Run the cargo-fuzz targets of fuzz/ for S seconds each (installs
    /// cargo-fuzz; needs a nightly toolchain, see docs/fuzzing.md). A crash
    /// fails, naming the input and the command that replays it.
    Fuzz(fuzz::FuzzArgs),
    /// The full CI pipeline: fmt, clippy, test, simulator sweep, soak, fuzz, cross, qemu.
    Ci,
}

#[derive(Debug, Args)]
struct PassThrough {
    /// Extra arguments, passed through unchanged.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    args: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.flow) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(cmd::exit_code_of(&err))
        }
    }
}

fn run(flow: Flow) -> Result<()> {
    match flow {
        Flow::Test(pass) => test(&pass.args),
        Flow::Sim(args) => sim::run(&args),
        Flow::Demo => sim::demo(),
        Flow::Emu(pass) => emu::run(&pass.args),
        // `--vs redis`: the side-by-side against Redis replication alone.
        Flow::Bench(pass) if pass.args.windows(2).any(|w| w == ["--vs", "redis"]) => {
            vs_redis::run(&pass.args)
        }
        Flow::Bench(pass) if pass.args.iter().any(|a| a == "--switchover") => switchover::bench(),
        Flow::Bench(pass) if pass.args.iter().any(|a| a == "--operations") => operations::bench(),
        Flow::Bench(pass) if pass.args.windows(2).any(|w| w == ["--board", AARCH64]) => {
            aarch64::interop::bench(&aarch64::dir())
        }
        Flow::Bench(pass) if pass.args.first().is_some_and(|a| a == "--core-against") => {
            against::run(pass.args.get(1).map_or("HEAD", String::as_str))
        }
        Flow::Bench(pass) => sim::bench(&pass.args).and_then(|()| load::run()),
        Flow::Cross => cross::run(),
        Flow::Build { board } if board == AARCH64 => {
            aarch64::build_static("msm-aarch64", "msm-aarch64").map(|p| println!("{}", p.display()))
        }
        Flow::Build { board } => board::build(&board::find(&board)?).map(drop),
        Flow::Qemu(args) if args.board.as_deref() == Some(AARCH64) => {
            aarch64::interop::run_alone(&aarch64::dir(), args.key_file.as_deref())
        }
        Flow::Qemu(args) => qemu::run(&args),
        Flow::SdImage(args) => sdimage::run(&args),
        Flow::QemuTest { board: Some(b) } if b == AARCH64 => aarch64::interop::interop(&aarch64::dir()),
        Flow::QemuTest { board: Some(b) } => {
            anyhow::bail!("qemu-test --board {b}: lm3s6965evb (the default) or {AARCH64}")
        }
        Flow::QemuTest { board: None } => qemu::interop(),
        Flow::Aarch64Smoke => aarch64::smoke::run(&aarch64::dir()),
        Flow::UpgradeTest => upgrade::run(),
        Flow::Size => size::run(),
        Flow::Shape => shape::run(),
        Flow::Soak(args) => soak::run(&args),
        Flow::Fuzz(args) => fuzz::run(&args),
        Flow::Ci => ci::run(),
        Flow::Msrv => msrv::run(),
    }
}

/// The aarch64 Linux board's name on the command line.
const AARCH64: &str = "aarch64-msm";

/// `cargo test --workspace [ARGS]`.
pub(crate) fn test(args: &[String]) -> Result<()> {
    let mut c = cmd::cargo();
    c.args(["test", "--workspace"]).args(args);
    cmd::run(&mut c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
