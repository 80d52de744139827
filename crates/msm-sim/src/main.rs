//! `msm-sim`: seed sweeps, single-seed replays, the narrated demo, benchmarks.

use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant as WallClock;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod bench;
mod demo;

#[derive(Parser)]
#[command(about = "Deterministic simulator of an MSM chassis")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every seed of a range; stop at the first failure and print its replay command.
    Sweep {
        /// Seeds as A..B (B exclusive).
        #[arg(long, default_value = "0..1000")]
        seeds: String,
        /// A clean link, no crashes or partitions.
        #[arg(long)]
        no_faults: bool,
        /// Worker threads (default: available cores).
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Run one seed, optionally printing every event.
    Replay {
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        no_faults: bool,
        #[arg(long)]
        trace: bool,
    },
    /// A narrated two-MSM scenario: sync, checkpoint, failover, status tables.
    Demo,
    /// Core throughput and memory benchmarks.
    Bench {
        /// Dynamic records to push through the pair of nodes.
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
    },
}

fn parse_range(s: &str) -> Result<(u64, u64)> {
    let (a, b) = s.split_once("..").with_context(|| format!("seed range '{s}' is not A..B"))?;
    let a: u64 = a.trim().parse().with_context(|| format!("bad range start '{a}'"))?;
    let b: u64 = b.trim().parse().with_context(|| format!("bad range end '{b}'"))?;
    if b <= a {
        bail!("seed range '{s}' is empty");
    }
    Ok((a, b))
}

fn sweep(seeds: &str, faults: bool, jobs: Option<usize>) -> Result<bool> {
    let (a, b) = parse_range(seeds)?;
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let next = AtomicU64::new(a);
    let failed = AtomicBool::new(false);
    let first_failure: Mutex<Option<msm_sim::Failure>> = Mutex::new(None);
    let totals = Mutex::new(msm_sim::sim::Stats::default());
    let start = WallClock::now();
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= b {
                        break;
                    }
                    let r = std::panic::catch_unwind(|| msm_sim::run(seed, faults, false));
                    let r = match r {
                        Ok(r) => r,
                        Err(p) => {
                            let msg = p
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            Err(msm_sim::Failure {
                                seed,
                                faults,
                                at_us: 0,
                                violation: msm_sim::violation::Violation {
                                    invariant: 6,
                                    message: format!("panic: {msg}"),
                                },
                            })
                        }
                    };
                    match r {
                        Ok(st) => {
                            if let Ok(mut t) = totals.lock() {
                                t.frames += st.frames;
                                t.changes += st.changes;
                                t.takeovers += st.takeovers;
                                t.takeovers_checked += st.takeovers_checked;
                                t.bulks_checked += st.bulks_checked;
                                t.records_checked += st.records_checked;
                                t.frame_errors += st.frame_errors;
                                t.attacks += st.attacks;
                                t.attack_replays += st.attack_replays;
                                t.split_brains += st.split_brains;
                                t.discarded += st.discarded;
                                t.split_brains_won += st.split_brains_won;
                                t.facts_checked += st.facts_checked;
                                t.lost_both_sides += st.lost_both_sides;
                                t.insider += st.insider;
                                t.two_path_runs += st.two_path_runs;
                                t.path_moves += st.path_moves;
                                t.continued += st.continued;
                                t.copies_checked += st.copies_checked;
                                t.standby_runs[0] += st.standby_runs[0];
                                t.standby_runs[1] += st.standby_runs[1];
                            }
                        }
                        Err(f) => {
                            failed.store(true, Ordering::Relaxed);
                            if let Ok(mut ff) = first_failure.lock() {
                                if ff.as_ref().is_none_or(|x| f.seed < x.seed) {
                                    *ff = Some(f);
                                }
                            }
                        }
                    }
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    if let Some(f) = first_failure.into_inner().ok().flatten() {
        eprintln!("FAILED {f}");
        return Ok(false);
    }
    let t = totals.into_inner().unwrap_or_default();
    println!(
        "sim: seeds {a}..{b} ({} runs, faults {}) passed in {secs:.1} s on {jobs} threads",
        b - a,
        if faults { "on" } else { "off" }
    );
    println!(
        "     {} frames ({} refused), {} changes, {} records and {} bulk starts checked, {} takeovers ({} checked for lost changes), {} split brains ({} changes discarded, each count checked; {} won by the lower term for what it held)",
        t.frames,
        t.frame_errors,
        t.changes,
        t.records_checked,
        t.bulks_checked,
        t.takeovers,
        t.takeovers_checked,
        t.split_brains,
        t.discarded,
        t.split_brains_won
    );
    println!(
        "     invariant 10: {} acknowledged changes checked present at promotions and after the quiet periods; {} lost to split brains where both sides had a backup acknowledge changes",
        t.facts_checked, t.lost_both_sides
    );
    println!(
        "     {} runs with two backplane paths ({} moves of data to the other path), {} streams continued across a switchover without a bulk",
        t.two_path_runs, t.path_moves, t.continued
    );
    println!(
        "     {} runs with three modules and {} with four: {} standby configuration copies checked against the master's",
        t.standby_runs[0], t.standby_runs[1], t.copies_checked
    );
    println!(
        "     attacker: {} frames injected ({} replays of taken frames), every one refused before authentication completed",
        t.attacks, t.attack_replays
    );
    println!(
        "     insider (holds the key): {} frames with counters, boot counts and terms at their extremes; none moved a role, a term or a master, and terms stayed bounded",
        t.insider
    );
    Ok(true)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Sweep { seeds, no_faults, jobs } => sweep(&seeds, !no_faults, jobs),
        Cmd::Replay { seed, no_faults, trace } => match msm_sim::run(seed, !no_faults, trace) {
            Ok(st) => {
                println!("seed {seed} passed: {st:?}");
                Ok(true)
            }
            Err(f) => {
                eprintln!("FAILED {f}");
                Ok(false)
            }
        },
        Cmd::Demo => demo::run().map(|()| true),
        Cmd::Bench { records } => bench::run(records).map(|()| true),
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("msm-sim: {e:#}");
            ExitCode::from(2)
        }
    }
}
