//! `cargo xtask msrv`: the `rust-version` the workspace claims is true. Every
//! package the workspace and the firmware resolve to (their lock files) must
//! build with it, so no dependency may ask for a newer Rust; and the claim is
//! no lower than the newest requirement among them (the resolver holds
//! dependencies back to the claim, so a too-low claim silently costs fixes).
//! A toolchain of exactly that version cannot be fetched on these machines:
//! where one is installed (`rustup toolchain list`), the workspace is also
//! built with it.

use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::cmd;

type Version = (u64, u64, u64);

fn parse(v: &str) -> Option<Version> {
    let mut it = v.split('.').map(|p| p.parse::<u64>().ok());
    Some((it.next()??, it.next().flatten().unwrap_or(0), it.next().flatten().unwrap_or(0)))
}

fn show(v: Version) -> String {
    format!("{}.{}.{}", v.0, v.1, v.2)
}

/// The part of `cargo metadata`'s output this reads.
#[derive(Debug, Deserialize)]
struct Metadata {
    workspace_members: Vec<String>,
    packages: Vec<Package>,
}

#[derive(Debug, Deserialize)]
struct Package {
    id: String,
    name: String,
    version: String,
    rust_version: Option<String>,
}

/// What a manifest's packages claim, and the newest requirement among the
/// rest of its graph with who has it.
#[derive(Debug)]
struct Requirements {
    claim: Option<Version>,
    newest: Option<(Version, String)>,
}

fn requirements(manifest: Option<&str>) -> Result<Requirements> {
    let mut c = cmd::cargo();
    c.args(["metadata", "--format-version", "1", "--locked"]);
    if let Some(m) = manifest {
        c.args(["--manifest-path", m]);
    }
    let out = c.output().context("cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let meta: Metadata = serde_json::from_slice(&out.stdout).context("cargo metadata's output")?;
    let mut claim = None;
    let mut newest: Option<(Version, String)> = None;
    for p in &meta.packages {
        let Some(v) = p.rust_version.as_deref().and_then(parse) else { continue };
        if meta.workspace_members.contains(&p.id) {
            claim = claim.max(Some(v));
        } else if newest.as_ref().is_none_or(|(n, _)| v > *n) {
            newest = Some((v, format!("{} {}", p.name, p.version)));
        }
    }
    Ok(Requirements { claim, newest })
}

pub(crate) fn run() -> Result<()> {
    let root = cmd::workspace_root();
    let firmware = root.join("boards/lm3s6965evb/Cargo.toml");
    let ws = requirements(None)?;
    let claim = ws.claim.context("the workspace claims no rust-version")?;
    let fw = requirements(firmware.to_str())?;
    let fw_claim = fw.claim.context("the firmware claims no rust-version")?;
    let (ws_newest, fw_newest) = (ws.newest, fw.newest);
    for (what, claim, newest) in [("workspace", claim, ws_newest), ("firmware", fw_claim, fw_newest)] {
        let Some((v, who)) = newest else { continue };
        if v > claim {
            bail!("{who} needs Rust {}, the {what} claims {}: raise its rust-version", show(v), show(claim));
        }
        if v < claim {
            println!("msrv: {what} claims {} though its dependencies need only {}", show(claim), show(v));
        }
        println!("msrv: {what}: newest requirement Rust {} ({who}) <= claim {}", show(v), show(claim));
    }
    let toolchains = Command::new("rustup").args(["toolchain", "list"]).output();
    let want = format!("{}.{}", claim.0, claim.1);
    match toolchains {
        Ok(o) if String::from_utf8_lossy(&o.stdout).lines().any(|l| l.starts_with(&want)) => {
            cmd::run(cmd::cargo().arg(format!("+{want}")).args(["check", "--workspace", "--all-targets"]))
        }
        _ => {
            println!("msrv: no Rust {want} toolchain installed here: checked the dependency graph only");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(parse("1.87"), Some((1, 87, 0)));
        assert_eq!(parse("1.87.1"), Some((1, 87, 1)));
        assert!(parse("1.88") > parse("1.87.9"));
        assert_eq!(parse("x"), None);
    }
}
