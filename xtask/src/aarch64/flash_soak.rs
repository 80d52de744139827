//! Power cuts on the aarch64 board's MTD flash, in the guest: the board
//! saves configurations without end (`msm-aarch64 --soak-flash`), this
//! process SIGKILLs QEMU at a seeded random moment (mid-save, mostly: a
//! save takes tens of milliseconds, the gap between saves almost none), and
//! the next boot must find the last save that completed, or the one that
//! was under way, whole (the config store's guarantee; docs/flash-format.md).
//! QEMU's pflash writes its backing file as it goes, so what a kill leaves
//! is what a power cut leaves.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use super::guest::Guest;
use super::interop::{Board, guest_config_for};
use super::netns::Netns;

const STEP: Duration = Duration::from_secs(120);

/// `rounds` power cuts with seed `seed`; each boot checks the last.
pub(crate) fn run(board: &Board, netns: &Arc<Netns>, rounds: u32, seed: u64) -> Result<()> {
    let flash = board.work.join("soak-flash.img");
    let _ = std::fs::remove_file(&flash);
    let mut config = guest_config_for(board, &flash, "soak-console.log");
    config.args.push("--soak-flash".into());
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let mut g = Guest::start(config, Arc::clone(netns))?;
    let mut printed: Option<u64> = None;
    for round in 0..=rounds {
        let found = g.wait_for("flash soak: found", STEP).context("the soak's check at boot")?;
        let found_n = found.split_whitespace().nth(3).and_then(|n| n.parse::<u64>().ok());
        match (printed, found_n) {
            (None, _) if round == 0 => {}
            (Some(p), Some(n)) if found.contains("whole") && (n == p || n == p + 1) => {}
            _ => bail!(
                "round {round} (seed {seed}): the boot after a power cut found {found:?}; the last save \
                 completed before the cut was {printed:?} (replay: cargo xtask qemu-test --board aarch64-msm)"
            ),
        }
        if round == rounds {
            break;
        }
        for _ in 0..rng.random_range(1..=4) {
            g.wait_for("flash soak: saved", STEP).context("a soak save")?;
        }
        // The cut: a seeded moment within the next save or so.
        std::thread::sleep(Duration::from_millis(rng.random_range(0..60)));
        g.kill()?;
        printed = g
            .console_text()
            .lines()
            .filter_map(|l| l.split("flash soak: saved ").nth(1))
            .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
            .max();
        g.restart()?;
    }
    g.kill()?;
    println!(
        "  0. {rounds} power cuts (seed {seed}) during saves on the MTD flash: every boot found the last save whole"
    );
    Ok(())
}
