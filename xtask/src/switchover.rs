//! Part of `cargo xtask bench`: what a graceful switchover costs with a
//! million records of state (real `msm-node` processes, 10 ms heartbeats).
//! The baseline, measured in the same run, is the full bulk the backup
//! took when it started: its time and the bytes the master sent for it.
//! After `run msm-failover`, the old master returns as backup and continues
//! every stream from the handover point: the time until the new master
//! reports it In Sync, and the bytes the new master sent meanwhile.
//! Goal: at most 1 % of the full bulk's bytes.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use msm_linux_emu::chassis::Chassis;
use msm_linux_emu::control::Request;

/// Bytes `slot` has sent on its backplane paths.
fn sent(c: &Chassis, slot: char) -> Result<u64> {
    let j = c.ask(slot, &Request::ShowSwitch)?;
    let paths = j["paths"].as_array().context("paths")?;
    Ok(paths.iter().filter_map(|p| p["tx_bytes"].as_u64()).sum())
}

pub(crate) fn run(bin: &Path) -> Result<()> {
    let dir = crate::soak::fresh_dir("switchover")?;
    let mut c = Chassis::new(&dir, bin);
    c.journal = false;
    c.common = ["--heartbeat-ms", "10", "--miss", "3", "--fdb", "1000000"].map(String::from).to_vec();
    c.start('A', &[])?;
    c.wait("A seeded", Duration::from_secs(120), |c| {
        let j = c.ask('A', &Request::ShowApp { app: "fdb".into(), rows: false, from: 0 })?;
        Ok(j["entries"].as_u64() == Some(1_000_000))
    })?;
    let before = sent(&c, 'A')?;
    let t0 = Instant::now();
    c.start('B', &[])?;
    c.wait("in sync", Duration::from_secs(300), |c| Ok(c.in_sync('A')))?;
    let bulk_time = t0.elapsed();
    let bulk_bytes = sent(&c, 'A')? - before;

    let before = sent(&c, 'B')?;
    let t0 = Instant::now();
    let r = c.ask('A', &Request::Failover { force: false })?;
    if r["failover"] != true {
        bail!("run msm-failover refused: {r}");
    }
    c.wait("B master, A its backup, in sync", Duration::from_secs(60), |c| {
        Ok(c.role('B').as_deref() == Some("MASTER")
            && c.role('A').as_deref() == Some("BACKUP")
            && c.in_sync('B'))
    })?;
    let switch_time = t0.elapsed();
    let switch_bytes = sent(&c, 'B')? - before;
    let j = c.ask('B', &Request::ShowCheckpointData { process: Some("fdb".into()) })?;
    let rebulks = j[0]["rebulks"].as_u64().unwrap_or(0);
    println!(
        "  {:<34} old master In Sync again in {:.1} ms, {} bytes sent ({:.3} % of the full bulk's {} bytes in {:.2} s; goal <= 1 %){}",
        "switchover, 1 000 000 fdb entries",
        switch_time.as_secs_f64() * 1e3,
        switch_bytes,
        switch_bytes as f64 * 100.0 / bulk_bytes.max(1) as f64,
        bulk_bytes,
        bulk_time.as_secs_f64(),
        if rebulks > 0 { "  RE-BULKED" } else { "" }
    );
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
