//! The board's flash under test, in the guest on the MTD device itself (run
//! by `cargo xtask qemu-test --board aarch64-msm`, never by the node):
//! `--bench-flash` times a save and a mount; `--soak-flash` saves without
//! end while the xtask cuts the power (SIGKILL of QEMU) at random moments,
//! and at each boot checks that primary.cfg is the last save or the one
//! before it, whole.

use std::path::Path;
use std::time::Instant;

use msm_flash::ConfigName;

use crate::open_stores;

/// `--bench-flash BYTES`: save and mount times of a configuration that size.
pub(crate) fn bench(mtd: &std::path::Path, bytes: usize) -> anyhow::Result<()> {
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let (mut flash, _) = open_stores(mtd)?;
    let mount = ms(t);
    let mut text = String::with_capacity(bytes + 32);
    for i in 0.. {
        if text.len() >= bytes {
            break;
        }
        text.push_str(&format!("create vlan v{i:06} tag {}\n", i % 4094 + 1));
    }
    let t = Instant::now();
    flash.save(ConfigName::Primary, &text, 0).map_err(anyhow::Error::msg)?;
    let save = ms(t);
    drop(flash);
    let t = Instant::now();
    let (mut flash, _) = open_stores(mtd)?;
    let remount = ms(t);
    let t = Instant::now();
    let back = flash.load(ConfigName::Primary)?;
    let read = ms(t);
    anyhow::ensure!(back.as_deref() == Some(text.as_str()), "the configuration read back differs");
    println!(
        "flash bench: {} bytes: save {save:.0} ms; mount {mount:.0} ms empty, {remount:.0} ms with it; read {read:.0} ms",
        text.len()
    );
    Ok(())
}

/// The configuration of soak save `n`: its number on the first line, then
/// lines enough for a size that changes from save to save (up to ~40 KB,
/// so saves span several 256 KiB-block records and wrap the ring).
fn soak_config(n: u64) -> String {
    let lines = (n * 7919) % 1500 + 1;
    let mut text = format!("# soak {n}\n");
    for i in 0..lines {
        text.push_str(&format!("create vlan s{n}x{i:05} tag {}\n", i % 4094 + 1));
    }
    text
}

/// `--soak-flash`: check what the last power cut left, then save for ever.
pub(crate) fn soak(mtd: &Path) -> anyhow::Result<()> {
    let (mut flash, _) = open_stores(mtd)?;
    let mut next = 1;
    match flash.load(ConfigName::Primary)? {
        None => println!("flash soak: found none"),
        Some(text) => {
            let n: u64 = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# soak "))
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("primary.cfg is not a soak configuration"))?;
            let whole = text == soak_config(n);
            println!("flash soak: found {n} {}", if whole { "whole" } else { "DAMAGED" });
            anyhow::ensure!(whole, "save {n} read back differs");
            next = n + 1;
        }
    }
    for n in next.. {
        let text = soak_config(n);
        flash.save(ConfigName::Primary, &text, 0).map_err(anyhow::Error::msg)?;
        println!("flash soak: saved {n} ({} bytes)", text.len());
    }
    Ok(())
}
