//! `cargo xtask sim | demo | bench`: thin forwards to the `msm-sim` binary,
//! which owns the simulation logic, its output and its exit status.

use anyhow::Result;
use clap::Args;

use crate::cmd;

/// Seeds swept when neither `--seeds` nor `--seed` is given.
const DEFAULT_SEEDS: &str = "0..1000";

#[derive(Debug, Default, Args)]
pub(crate) struct SimArgs {
    /// Sweep this seed range, `A..B` (end exclusive) [default: 0..1000].
    #[arg(long, value_name = "A..B", conflicts_with = "seed")]
    pub(crate) seeds: Option<String>,
    /// Replay a single seed instead of sweeping.
    #[arg(long, value_name = "N")]
    pub(crate) seed: Option<u64>,
    /// Print the full event trace of the replayed seed.
    #[arg(long, requires = "seed")]
    pub(crate) trace: bool,
    /// Disable fault injection.
    #[arg(long)]
    pub(crate) no_faults: bool,
    /// Worker threads for the sweep.
    #[arg(long, value_name = "N", conflicts_with = "seed")]
    pub(crate) jobs: Option<usize>,
    /// Extra arguments for the msm-sim subcommand (after `--`).
    #[arg(last = true, value_name = "ARGS")]
    pub(crate) extra: Vec<String>,
}

impl SimArgs {
    /// A sweep over `seeds` with faults on: what CI runs.
    pub(crate) fn sweep(seeds: &str) -> Self {
        Self { seeds: Some(seeds.to_owned()), ..Self::default() }
    }
}

/// `msm-sim sweep --seeds A..B [--no-faults] [--jobs N]` or
/// `msm-sim replay --seed N [--trace] [--no-faults]`.
pub(crate) fn run(args: &SimArgs) -> Result<()> {
    let mut sim_args: Vec<String> = Vec::new();
    if let Some(seed) = args.seed {
        sim_args.extend(["replay".into(), "--seed".into(), seed.to_string()]);
        if args.trace {
            sim_args.push("--trace".into());
        }
    } else {
        let seeds = args.seeds.as_deref().unwrap_or(DEFAULT_SEEDS);
        sim_args.extend(["sweep".into(), "--seeds".into(), seeds.to_owned()]);
        if let Some(jobs) = args.jobs {
            sim_args.extend(["--jobs".into(), jobs.to_string()]);
        }
    }
    if args.no_faults {
        sim_args.push("--no-faults".into());
    }
    sim_args.extend(args.extra.iter().cloned());
    msm_sim(&sim_args)
}

/// `msm-sim demo`: the narrated scenario.
pub(crate) fn demo() -> Result<()> {
    msm_sim(&["demo".to_owned()])
}

/// `msm-sim bench [ARGS]`.
/// Benchmarks of the other crates, each a `harness = false` bench target:
/// (package, bench, features).
const CRATE_BENCHES: &[(&str, &str, &str)] = &[
    ("msm-backplane-linux", "backplane", ""),
    ("msm-flash", "flash", "mock"),
    ("msm-runtime", "chassis", ""),
];

/// The core benchmark (through msm-sim, extra args go to it), then every crate's.
pub(crate) fn bench(extra: &[String]) -> Result<()> {
    let mut sim_args = vec!["bench".to_owned()];
    sim_args.extend(extra.iter().cloned());
    msm_sim(&sim_args)?;
    for (package, bench, features) in CRATE_BENCHES {
        let mut c = cmd::cargo();
        c.args(["bench", "-q", "-p", package, "--bench", bench]);
        if !features.is_empty() {
            c.args(["--features", features]);
        }
        cmd::run(&mut c)?;
    }
    Ok(())
}

/// `cargo run --release -q -p msm-sim -- ARGS`.
fn msm_sim(sim_args: &[String]) -> Result<()> {
    let mut c = cmd::cargo();
    c.args(["run", "--release", "-q", "-p", "msm-sim", "--"]).args(sim_args);
    cmd::run(&mut c)
}
