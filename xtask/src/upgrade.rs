//! `cargo xtask upgrade-test`: the rolling-upgrade test with two real
//! builds. Release N is [`RELEASE_N`], a tagged earlier commit of main,
//! taken from the repository's own history (a git worktree, as
//! `bench --core-against` takes its commit) and built once into
//! `target/release-n/<commit>/` (kept: the next run reuses it); N+1 is
//! this tree. Then `tests/rolling_upgrade.rs` runs with
//! `MSM_RELEASE_N` naming N's binaries.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::cmd;

/// Release N: its tag, and the commit the tag names (a clone without tags
/// still has the commit).
pub(crate) const RELEASE_N: (&str, &str) = ("v0.28.0", "80618518f08605560d69a696481dd3ca222a8b50");

/// Whether this clone holds `commit`.
fn has_commit(root: &std::path::Path, commit: &str) -> Result<bool> {
    let s = Command::new("git")
        .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
        .current_dir(root)
        .stderr(Stdio::null())
        .status()
        .context("running git")?;
    Ok(s.success())
}

/// The directory of release N's `msm-node` and `msm`, built if not yet;
/// `None` when this clone lacks N's commit and cannot fetch it.
pub(crate) fn build_release_n() -> Result<Option<PathBuf>> {
    let (tag, commit) = RELEASE_N;
    let root = cmd::workspace_root();
    let dir = root.join("target/release-n").join(&commit[..12]);
    let bin = dir.join("bin");
    if bin.join("msm-node").is_file() && bin.join("msm").is_file() {
        println!("release N ({tag}, {}) already built: {}", &commit[..12], bin.display());
        return Ok(Some(bin));
    }
    if !has_commit(&root, commit)? {
        // A shallow clone: ask its origin for the history (or the one commit).
        println!("release N ({tag}) is commit {commit}, which this clone lacks: fetching it");
        let _ = cmd::run(Command::new("git").args(["fetch", "--quiet", "--unshallow"]).current_dir(&root));
        if !has_commit(&root, commit)? {
            let _ =
                cmd::run(Command::new("git").args(["fetch", "--quiet", "origin", commit]).current_dir(&root));
        }
        if !has_commit(&root, commit)? {
            return Ok(None);
        }
    }
    let src = dir.join("src");
    cmd::worktree(commit, &src)?;
    // Its own target directory: N's crates have the same names as ours.
    let target = dir.join("target");
    let mut c = cmd::cargo();
    c.args(["build", "-q", "--locked", "-p", "msm-linux-emu", "--bins", "--manifest-path"])
        .arg(src.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target);
    cmd::run(&mut c)?;
    std::fs::create_dir_all(&bin)?;
    for name in ["msm-node", "msm"] {
        std::fs::copy(target.join("debug").join(name), bin.join(name))
            .with_context(|| format!("copying release N's {name}"))?;
    }
    Ok(Some(bin))
}

/// Build N (if needed) and N+1, then run the rolling-upgrade test.
pub(crate) fn run() -> Result<()> {
    let Some(n) = build_release_n()? else {
        let (tag, commit) = RELEASE_N;
        println!(
            "SKIPPED upgrade: release N ({tag}, commit {commit}) is not in this clone and could not be \
             fetched (a shallow clone without its origin); every other step ran. A full clone runs it."
        );
        return Ok(());
    };
    cmd::run(cmd::cargo().args(["build", "-q", "-p", "msm-linux-emu", "--bins"]))?;
    cmd::run(
        cmd::cargo()
            .args(["test", "-q", "-p", "msm-system-tests", "--test", "rolling_upgrade", "--", "--nocapture"])
            .env("MSM_RELEASE_N", &n),
    )
}
