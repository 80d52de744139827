//! `cargo xtask fuzz --time S [--target NAME]`: the cargo-fuzz targets of
//! `fuzz/` (outside the workspace, see docs/fuzzing.md), each run for S
//! seconds after one build of them all.
//!
//! cargo-fuzz is installed when missing; a nightly toolchain (for the
//! sanitizer flags) is not, since that is the developer's choice to make:
//! the flow names the command and stops. libFuzzer's own output goes to
//! `fuzz/artifacts/<target>/last-run.log`; here it prints the final
//! executions and coverage of each target, and a crash fails the flow,
//! naming the input that crashed and the command that replays it.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::cmd;

#[derive(Debug, Args)]
pub(crate) struct FuzzArgs {
    /// Seconds of fuzzing per target.
    #[arg(long, value_name = "S", default_value_t = 60)]
    pub(crate) time: u64,
    /// Only this target [default: every target of fuzz/Cargo.toml].
    #[arg(long, value_name = "NAME")]
    pub(crate) target: Option<String>,
}

/// A unit that runs longer than this is reported as a hang (libFuzzer's
/// default, 20 minutes, would stall CI instead).
const UNIT_TIMEOUT_S: u64 = 10;

/// libFuzzer's last status line of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Stats {
    runs: u64,
    cov: u64,
    ft: u64,
    corpus: String,
    exec_per_s: u64,
}

#[derive(Debug)]
struct Outcome {
    target: String,
    stats: Stats,
    took: Duration,
    /// The input that crashed (or hung), if any.
    crash: Option<String>,
    log: PathBuf,
}

pub(crate) fn run(args: &FuzzArgs) -> Result<()> {
    ensure_tools()?;
    let all = targets()?;
    let targets = match &args.target {
        Some(t) if all.contains(t) => vec![t.clone()],
        Some(t) => bail!("no fuzz target `{t}`; the targets are: {}", all.join(", ")),
        None => all,
    };
    let build = Instant::now();
    let mut c = nightly_fuzz();
    c.arg("build");
    if let Some(t) = &args.target {
        c.arg(t);
    }
    c.arg("--target-dir").arg(target_dir());
    cmd::run(&mut c)?;
    println!("fuzz: built {} target(s) in {:.1} s", targets.len(), build.elapsed().as_secs_f64());
    let outcomes = targets.iter().map(|t| run_target(t, args.time)).collect::<Result<Vec<_>>>()?;
    println!("\nfuzz summary ({} s per target)", args.time);
    println!(
        "  {:<16} {:>11} {:>7} {:>7} {:>9} {:>14}  result",
        "target", "executions", "exec/s", "cov", "ft", "corpus"
    );
    for o in &outcomes {
        let s = &o.stats;
        let result = if o.crash.is_some() { "CRASH" } else { "ok" };
        println!(
            "  {:<16} {:>11} {:>7} {:>7} {:>9} {:>14}  {result} ({:.0} s)",
            o.target,
            s.runs,
            s.exec_per_s,
            s.cov,
            s.ft,
            s.corpus,
            o.took.as_secs_f64()
        );
    }
    let crashed: Vec<_> = outcomes.iter().filter(|o| o.crash.is_some()).collect();
    if crashed.is_empty() {
        return Ok(());
    }
    let dir = target_dir();
    for o in &crashed {
        let (t, input) = (&o.target, o.crash.as_deref().unwrap_or_default());
        eprintln!(
            "fuzz: {t} crashed on {input}\n  \
             replay:         cargo +nightly fuzz run {t} --target-dir {dir} {input}\n  \
             show the input: cargo +nightly fuzz fmt {t} --target-dir {dir} {input}\n  \
             log:            {}",
            o.log.display(),
            dir = dir.display(),
        );
    }
    bail!(
        "{} fuzz target(s) crashed: {}",
        crashed.len(),
        crashed.iter().map(|o| o.target.as_str()).collect::<Vec<_>>().join(", ")
    )
}

/// `cargo fuzz` (installed if missing), a nightly toolchain, a C++ compiler
/// for libFuzzer.
fn ensure_tools() -> Result<()> {
    if !has_nightly()? {
        bail!(
            "cargo fuzz needs a nightly toolchain and rustup lists none. Install one with\n    \
             rustup toolchain install nightly --profile minimal\nand run this again (see docs/fuzzing.md)"
        );
    }
    if !cmd::exists("c++") {
        bail!(
            "cargo fuzz builds libFuzzer with a C++ compiler and there is none (`c++`). On Debian:\n    \
             sudo apt-get install -y g++"
        );
    }
    let found = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        println!("fuzz: cargo-fuzz is not installed; installing it (about a minute)");
        cmd::run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

pub(crate) fn has_nightly() -> Result<bool> {
    let out = Command::new("rustup").args(["toolchain", "list"]).output().context(
        "cargo fuzz needs a nightly toolchain from rustup, and rustup cannot be run; install rustup \
         (https://rustup.rs), then `rustup toolchain install nightly --profile minimal`",
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().any(|l| l.starts_with("nightly")))
}

/// `cargo +nightly fuzz` from the workspace root. `cargo` is rustup's proxy
/// from PATH (not `$CARGO`, the stable cargo running us, which has no `+`).
fn nightly_fuzz() -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(cmd::workspace_root()).args(["+nightly", "fuzz"]);
    c
}

/// Sanitizer builds by the nightly compiler go beside the workspace's own
/// (`target/fuzz`, or under `CARGO_TARGET_DIR`), not into `fuzz/target`.
fn target_dir() -> PathBuf {
    crate::soak::target_dir().join("fuzz")
}

/// The targets `fuzz/Cargo.toml` declares.
fn targets() -> Result<Vec<String>> {
    let list = cmd::output(nightly_fuzz().arg("list"))?;
    Ok(list.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
}

/// Run one target for `secs`: libFuzzer's output to its log, its status
/// lines (start, pulses, end, and any crash report) echoed here.
fn run_target(target: &str, secs: u64) -> Result<Outcome> {
    let dir = cmd::workspace_root().join("fuzz/artifacts").join(target);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let log_path = dir.join("last-run.log");
    let mut log =
        std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut c = nightly_fuzz();
    // cargo-fuzz's own error on a crash, without its backtrace: the target's is in the log.
    c.env("RUST_LIB_BACKTRACE", "0");
    c.args(["run", target, "--target-dir"])
        .arg(target_dir())
        .arg("--")
        .arg(format!("-max_total_time={secs}"))
        .arg(format!("-timeout={UNIT_TIMEOUT_S}"));
    eprintln!("\n$ {}", cmd::display(&c));
    let start = Instant::now();
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to start `{}`", cmd::display(&c)))?;
    let mut text = String::new();
    let mut crashing = false;
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines() {
            let line = line.context("reading libFuzzer's output")?;
            writeln!(log, "{line}").context("writing the fuzz log")?;
            crashing |=
                line.starts_with("==") || line.contains("panicked at") || line.contains("ERROR: libFuzzer");
            if crashing || ["INITED", "pulse", "DONE"].iter().any(|w| line.contains(w)) {
                println!("  {target}: {line}");
            }
            text.push_str(&line);
            text.push('\n');
        }
    }
    let status = child.wait().context("waiting for cargo fuzz")?;
    let crash = artifact(&text);
    if !status.success() && crash.is_none() {
        bail!(
            "`cargo +nightly fuzz run {target}` failed ({status}) without a crash input; see {}",
            log_path.display()
        );
    }
    Ok(Outcome {
        target: target.to_owned(),
        stats: stats(&text),
        took: start.elapsed(),
        crash,
        log: log_path,
    })
}

/// The last `#N ... cov: C ft: F corp: K/Sb ... exec/s: E` line.
fn stats(log: &str) -> Stats {
    let Some(line) = log.lines().rev().find(|l| l.starts_with('#') && l.contains(" cov: ")) else {
        return Stats::default();
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |key: &str| words.iter().position(|w| *w == key).and_then(|i| words.get(i + 1)).copied();
    let num = |key: &str| after(key).and_then(|v| v.parse().ok()).unwrap_or(0);
    Stats {
        runs: words.first().and_then(|w| w.trim_start_matches('#').parse().ok()).unwrap_or(0),
        cov: num("cov:"),
        ft: num("ft:"),
        corpus: after("corp:").unwrap_or("-").to_owned(),
        exec_per_s: num("exec/s:"),
    }
}

/// The input libFuzzer saved on a crash, leak, timeout or out-of-memory.
fn artifact(log: &str) -> Option<String> {
    log.lines().rev().find_map(|l| l.split_once("Test unit written to ").map(|(_, p)| p.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = "\
INFO: Seed: 123
#6\tINITED cov: 241 ft: 333 corp: 5/227b exec/s: 0 rss: 36Mb
#262144\tpulse  cov: 497 ft: 1080 corp: 218/4301b lim: 2000 exec/s: 29127 rss: 190Mb
#341410\tDONE   cov: 498 ft: 1088 corp: 220/4324b lim: 2073 exec/s: 31037 rss: 201Mb
Done 341410 runs in 11 second(s)
";

    #[test]
    fn the_final_status_line_gives_the_stats() {
        let s = stats(RUN);
        assert_eq!(
            s,
            Stats { runs: 341_410, cov: 498, ft: 1088, corpus: "220/4324b".into(), exec_per_s: 31_037 }
        );
        assert_eq!(artifact(RUN), None);
        assert_eq!(stats("no status at all"), Stats::default());
    }

    #[test]
    fn a_crash_names_its_input() {
        let log = "#1000\tNEW    cov: 10 ft: 11 corp: 3/30b lim: 4 exec/s: 0 rss: 30Mb L: 3/3 MS: 1 ChangeBit-\n\
                   thread '<unnamed>' panicked at src/x.rs:1:1:\n\
                   ==1234== ERROR: libFuzzer: deadly signal\n\
                   artifact_prefix='/w/fuzz/artifacts/t/'; Test unit written to /w/fuzz/artifacts/t/crash-abc\n";
        assert_eq!(artifact(log).as_deref(), Some("/w/fuzz/artifacts/t/crash-abc"));
        assert_eq!(stats(log).runs, 1000);
    }
}
