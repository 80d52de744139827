//! `msm-node`: one emulated management module as a Linux process, on a
//! file-backed flash image, with the emulation's workload (`--churn`,
//! `--fdb`) and, for tests, the change journal (`--journal`). Exit codes:
//! `msm_runtime::service` (0 stopped, 1 bad arguments, 2 flash, 3 reboot,
//! 4 a socket path in use).
// The argument docs below are clap's --help text, where `<peer>` is meant literally, not as HTML.
#![allow(rustdoc::invalid_html_tags)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use msm_linux_emu::churn::{Churn, ChurnWorkload, check_fdb};
use msm_runtime::flash::BoardFlash;
use msm_runtime::node::{Exit, MAX_CHURN};
use msm_runtime::service::{self, EXIT_FLASH, Failure, NodeArgs, Service};
use msm_testkit::journal::JournalWriter;

#[derive(Parser, Debug)]
#[command(name = "msm-node", about = "One emulated MSM (management module)")]
struct Args {
    #[command(flatten)]
    node: NodeArgs,
    /// The flash image (created, 4 MiB, if missing).
    #[arg(long)]
    flash: PathBuf,
    /// State changes per second while master.
    #[arg(long, default_value_t = 0)]
    churn: u32,
    /// MAC table entries a fresh master starts with (at most 1 000 000, MAX_FDB).
    #[arg(long, default_value_t = 1000)]
    fdb: u32,
    /// Append the change journal here (for verifying takeovers).
    #[arg(long)]
    journal: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// mimalloc, not glibc's malloc, and no transparent huge pages: a million
/// frees or a 2 MiB first touch must not hold a loop turn (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match service::begin::<Args>("msm-node") {
        Ok(args) => service::exit_code("msm-node", run(args)),
        Err(code) => code,
    }
}

fn run(args: Args) -> Result<Option<Exit>, Failure> {
    let mask = service::block_stop_signals()?;
    check_fdb(args.fdb).map_err(|e| Failure::start(anyhow::anyhow!(e)))?;
    if args.churn > MAX_CHURN {
        return Err(Failure::start(anyhow::anyhow!(
            "--churn {}: at most {MAX_CHURN} changes per second",
            args.churn
        )));
    }
    let slot = args.node.slot()?;
    let bound = Service::bind(&args.node)?;
    let flash = BoardFlash::open(&args.flash).map_err(|error| Failure { code: EXIT_FLASH, error })?;
    let boot = flash.boot_count();
    let mut service = bound.start(flash, &mask)?;
    let churn = Churn::new(args.seed ^ u64::from(slot.raw()), args.churn, 50_000);
    service.node.set_workload(Box::new(ChurnWorkload { churn, fdb: args.fdb }));
    if let Some(path) = &args.journal {
        service.node.watch(Box::new(JournalWriter::open(path, boot).map_err(Failure::start)?));
    }
    service.run()
}
