//! `cargo xtask bench --core-against REV`: the core benchmark of this tree
//! against the same benchmark of an earlier commit, in one invocation.
//! The earlier commit is checked out in a worktree under
//! `target/against/` and built there once; then [`PAIRS`] alternating
//! pairs run (theirs, ours, theirs, ours, ...), both pinned to the same
//! CPU when `taskset` exists, and medians with min–max are printed, with
//! the ratio of the medians. Each run is `msm-sim bench`'s own best of
//! three with its baseline (the same application work without a protocol).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd;
use crate::pairs::Spread;

/// Alternating pairs run.
const PAIRS: usize = 5;
/// The CPU both sides are pinned to (the benchmark is one thread).
const CPU: &str = "1";

/// What one `msm-sim bench` run printed.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// Records a second, no key.
    open: f64,
    /// Records a second, every frame authenticated.
    auth: f64,
    /// Engine against its baseline, no key.
    ratio: f64,
}

pub(crate) fn run(rev: &str) -> Result<()> {
    let root = cmd::workspace_root();
    let sha = cmd::output(Command::new("git").current_dir(&root).args(["rev-parse", "--short", rev]))?;
    let sha = sha.trim();
    let tree = root.join("target/against").join(sha);
    cmd::worktree(sha, &tree)?;
    let theirs_target = root.join("target/against/target");
    let mut c = cmd::cargo();
    c.args(["build", "--release", "-q", "-p", "msm-sim", "--manifest-path"])
        .arg(tree.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&theirs_target);
    cmd::run(&mut c)?;
    cmd::run(cmd::cargo().args(["build", "--release", "-q", "-p", "msm-sim"]))?;
    let theirs = theirs_target.join("release/msm-sim");
    let ours = root.join("target/release/msm-sim");
    let pinned = cmd::exists("taskset");
    println!(
        "core benchmark, this tree against {sha}: {PAIRS} alternating pairs, {}",
        if pinned { format!("both pinned to CPU {CPU} (taskset)") } else { "unpinned (no taskset)".into() }
    );
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..PAIRS {
        a.push(bench(&theirs, pinned).with_context(|| format!("{sha}, pair {}", i + 1))?);
        b.push(bench(&ours, pinned).with_context(|| format!("this tree, pair {}", i + 1))?);
    }
    for (what, f) in [
        ("engine, no key (records/s)", (|r: &Run| r.open) as fn(&Run) -> f64),
        ("engine, authenticated (records/s)", |r: &Run| r.auth),
        ("engine/baseline", |r: &Run| r.ratio),
    ] {
        let old = Spread::of(a.iter().map(f).collect());
        let new = Spread::of(b.iter().map(f).collect());
        println!(
            "  {what:<36} {sha}: {old}   this tree: {new}   this/{sha} = {:.3}",
            new.median / old.median
        );
    }
    Ok(())
}

/// One `msm-sim bench` run.
fn bench(bin: &Path, pinned: bool) -> Result<Run> {
    let mut c = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", CPU]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    let out = cmd::output(c.arg("bench"))?;
    parse(&out).with_context(|| format!("{} printed no engine rates:\n{out}", PathBuf::from(bin).display()))
}

/// The rates and the ratio out of `msm-sim bench`'s text.
fn parse(out: &str) -> Result<Run> {
    let number_before = |line: &str, unit: &str| -> Option<f64> {
        let head = &line[..line.find(unit)?];
        head.split_whitespace().last()?.parse().ok()
    };
    let (mut open, mut auth, mut ratio) = (None, None, None);
    for line in out.lines() {
        if line.contains("engine, unauthenticated") {
            open = number_before(line, "records/s");
        } else if line.contains("engine, authenticated") {
            auth = number_before(line, "records/s");
        } else if let Some(rest) = line.trim().strip_prefix("ratio engine/baseline:") {
            ratio = rest.split_whitespace().next().and_then(|v| v.parse().ok());
        }
    }
    match (open, auth, ratio) {
        (Some(open), Some(auth), Some(ratio)) => Ok(Run { open, auth, ratio }),
        _ => bail!("missing a rate or the ratio"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_msm_sim_bench_prints() {
        let out = "core benchmark: ...\n  baseline (encode, queue, apply; no protocol):      6282223 records/s\n  \
                   engine, unauthenticated                   2223343 records/s  (31250 frames), latency p50 22.1 us\n  \
                   engine, authenticated (HMAC-SHA256)       1826708 records/s  (31250 frames)\n  \
                   ratio engine/baseline: 0.354 (authenticated 0.291)\n";
        let r = parse(out).unwrap();
        assert_eq!((r.open, r.auth, r.ratio), (2223343.0, 1826708.0, 0.354));
        assert!(parse("core benchmark: nothing\n").is_err());
    }
}
