//! `cargo xtask ci`: the whole pipeline, in order, stopping at the first
//! failing step. `.ci/run` is just this.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::{cmd, cross, fuzz, msrv, qemu, sim, soak};

/// Seeds swept (with faults) by CI.
const CI_SEEDS: &str = "0..2000";
/// Seconds of fuzzing per target in CI: a smoke test of the targets and of
/// what changed since; long sessions are `cargo xtask fuzz --time 300`.
const CI_FUZZ_SECONDS: u64 = 20;

#[derive(Debug)]
struct Step {
    name: &'static str,
    what: &'static str,
    run: fn() -> Result<()>,
}

const STEPS: &[Step] = &[
    Step { name: "fmt", what: "cargo fmt --all -- --check, and fuzz/", run: fmt },
    Step { name: "clippy", what: "cargo clippy --workspace --all-targets -- -D warnings", run: clippy },
    Step {
        name: "shape",
        what: "files of the core crates at most 600 lines; stream state assigned only in stream.rs",
        run: crate::shape::run,
    },
    Step { name: "doc", what: "RUSTDOCFLAGS=\"-D warnings\" cargo doc --no-deps --workspace", run: doc },
    Step {
        name: "msrv",
        what: "rust-version true for every dependency (workspace and firmware)",
        run: msrv::run,
    },
    Step { name: "test", what: "cargo test --workspace", run: test },
    Step {
        name: "examples",
        what: "cargo run --example: two_nodes, config_store, link_pair (each asserts its outcome)",
        run: examples,
    },
    Step { name: "sim", what: "simulator sweep with faults, seeds 0..2000", run: sim_sweep },
    Step {
        name: "soak",
        what: "chassis soak: 4 rounds, seed 1, the master SIGKILLed in each (cargo xtask soak --rounds 4 --seed 1)",
        run: soak_small,
    },
    Step {
        name: "bench",
        what: "msm against Redis, short: 2 alternating pairs of 100 000 records (cargo xtask bench --vs redis --short; \
               reports timing, fails only on a wrong result)",
        run: bench_short,
    },
    Step {
        name: "fuzz",
        what: "every fuzz target for 20 s (cargo xtask fuzz --time 20; needs a nightly toolchain)",
        run: fuzz_short,
    },
    Step {
        name: "upgrade",
        what: "rolling upgrade from release N (built from history, cached in target/release-n) to this tree under churn",
        run: crate::upgrade::run,
    },
    Step {
        name: "cross",
        what: "no_std crates for thumbv7m-none-eabi, core only: no features, defmt, log",
        run: cross::run,
    },
    Step {
        name: "qemu",
        what: "lm3s6965evb firmware in QEMU with a Linux node over a serial backplane",
        run: qemu::interop,
    },
    Step {
        name: "aarch64",
        what: "the aarch64 Linux board in QEMU (MTD flash, UDP over two NICs) and an x86 node as one chassis",
        run: aarch64_interop,
    },
];

fn aarch64_interop() -> Result<()> {
    crate::aarch64::interop::interop(&crate::aarch64::dir())
}

fn fmt() -> Result<()> {
    cmd::run(cmd::cargo().args(["fmt", "--all", "--", "--check"]))?;
    // fuzz/ is outside the workspace: `--all` does not reach it.
    cmd::run(cmd::cargo().args(["fmt", "--manifest-path", "fuzz/Cargo.toml", "--", "--check"]))
}

fn clippy() -> Result<()> {
    cmd::run(cmd::cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))
}

fn doc() -> Result<()> {
    cmd::run(cmd::cargo().env("RUSTDOCFLAGS", "-D warnings").args(["doc", "--no-deps", "--workspace"]))
}

fn test() -> Result<()> {
    crate::test(&[])
}

/// The `examples/` program of each library crate (already built by `test`).
const EXAMPLES: &[(&str, &str)] =
    &[("msm-checkpoint", "two_nodes"), ("msm-flash", "config_store"), ("msm-backplane-linux", "link_pair")];

fn examples() -> Result<()> {
    for (package, example) in EXAMPLES {
        cmd::run(cmd::cargo().args(["run", "-q", "-p", package, "--example", example]))?;
    }
    Ok(())
}

fn bench_short() -> Result<()> {
    crate::vs_redis::run(&["--short".to_string()])
}

fn sim_sweep() -> Result<()> {
    sim::run(&sim::SimArgs::sweep(CI_SEEDS))
}

fn fuzz_short() -> Result<()> {
    // These machines have a nightly toolchain; a fresh one may not, and may
    // not reach rustup's servers: try, and say so loudly when it cannot.
    if !fuzz::has_nightly()? {
        let _ = cmd::run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]));
        if !fuzz::has_nightly()? {
            println!(
                "SKIPPED fuzz: no nightly toolchain, and `rustup toolchain install nightly` failed \
                 (see docs/fuzzing.md); every other step ran"
            );
            return Ok(());
        }
    }
    fuzz::run(&fuzz::FuzzArgs { time: CI_FUZZ_SECONDS, target: None })
}

fn soak_small() -> Result<()> {
    soak::run(&soak::SoakArgs::ci())
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Passed(Duration),
    Failed(Duration),
    Skipped,
}

/// Runs [`STEPS`] in order; prints a summary table whatever happens.
pub(crate) fn run() -> Result<()> {
    let total = Instant::now();
    let mut outcomes = vec![Outcome::Skipped; STEPS.len()];
    let mut failure = None;
    for (i, (step, outcome)) in STEPS.iter().zip(&mut outcomes).enumerate() {
        println!("\n==> ci [{}/{}] {}: {}", i + 1, STEPS.len(), step.name, step.what);
        let start = Instant::now();
        let result = (step.run)();
        let elapsed = start.elapsed();
        match result {
            Ok(()) => {
                println!("<== ci {} ok ({:.1} s)", step.name, elapsed.as_secs_f64());
                *outcome = Outcome::Passed(elapsed);
            }
            Err(err) => {
                eprintln!("<== ci {} FAILED ({:.1} s): {err:#}", step.name, elapsed.as_secs_f64());
                *outcome = Outcome::Failed(elapsed);
                failure = Some((step, err));
                break;
            }
        }
    }
    print_summary(&outcomes, total.elapsed());
    match failure {
        None => Ok(()),
        Some((step, err)) => Err(err.context(format!("ci failed at step `{}` ({})", step.name, step.what))),
    }
}

fn print_summary(outcomes: &[Outcome], total: Duration) {
    println!("\nci summary");
    println!("  {:<8} {:<8} {:>9}", "step", "status", "time");
    for (step, outcome) in STEPS.iter().zip(outcomes) {
        let (status, time) = match outcome {
            Outcome::Passed(d) => ("ok", format!("{:.1} s", d.as_secs_f64())),
            Outcome::Failed(d) => ("FAILED", format!("{:.1} s", d.as_secs_f64())),
            Outcome::Skipped => ("skipped", "-".to_owned()),
        };
        println!("  {:<8} {status:<8} {time:>9}", step.name);
    }
    println!("  {:<8} {:<8} {:>9}", "total", "", format!("{:.1} s", total.as_secs_f64()));
}
