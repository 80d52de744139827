//! `cargo xtask emu`: the Linux emulation chassis, two `msm-node` processes,
//! narrated by `msm-chassis` (boards/linux-emu/src/bin/msm-chassis.rs).

use anyhow::Result;

use crate::cmd;

/// Build the node, CLI and chassis binaries in release mode, then run the chassis.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut c = std::process::Command::new(crate::soak::release_bins()?.join("msm-chassis"));
    c.args(args);
    cmd::run(&mut c)
}
