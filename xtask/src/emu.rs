//! `cargo xtask emu`: the Linux emulation chassis, two `msm-node` processes,
//! narrated by `msm-chassis` (boards/linux-emu/src/bin/msm-chassis.rs).

use anyhow::Result;

use crate::cmd;

/// Build the node, CLI and chassis binaries in release mode, then run the chassis.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut build = cmd::cargo();
    build.args(["build", "--release", "-q", "-p", "msm-linux-emu", "-p", "msm-client", "--bins"]);
    cmd::run(&mut build)?;
    let bin = crate::soak::target_dir().join("release/msm-chassis");
    let mut c = std::process::Command::new(bin);
    c.args(args);
    cmd::run(&mut c)
}
