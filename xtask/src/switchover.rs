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

use anyhow::{Result, bail};
use msm_control::{AppTable, FailingOver, Request};
use msm_testkit::chassis::Chassis;

use crate::pairs::Spread;

/// Bytes `slot` has sent on its backplane paths.
fn sent(c: &Chassis, slot: char) -> Result<u64> {
    Ok(c.switch(slot)?.paths.iter().map(|p| p.tx_bytes).sum())
}

pub(crate) fn run(bin: &Path) -> Result<()> {
    let dir = crate::soak::fresh_dir("switchover")?;
    let mut c = Chassis::new(&dir, bin);
    c.journal = false;
    c.common = ["--heartbeat-ms", "10", "--miss", "3", "--fdb", "1000000"].map(String::from).to_vec();
    c.start('A', &[])?;
    c.wait("A seeded", Duration::from_secs(120), |c| {
        let t: AppTable = c.ask('A', &Request::ShowApp { app: "fdb".into(), rows: false, from: 0 })?;
        Ok(t.entries == 1_000_000)
    })?;
    let before = sent(&c, 'A')?;
    let t0 = Instant::now();
    c.start('B', &[])?;
    c.wait("in sync", Duration::from_secs(300), |c| Ok(c.in_sync('A')))?;
    let bulk_time = t0.elapsed();
    let bulk_bytes = sent(&c, 'A')? - before;

    let before = sent(&c, 'B')?;
    let t0 = Instant::now();
    let r: FailingOver = c.ask('A', &Request::Failover { force: false })?;
    if !r.failover {
        bail!("run msm-failover refused: {r:?}");
    }
    c.wait("B master, A its backup, in sync", Duration::from_secs(60), |c| {
        Ok(c.role('B').as_deref() == Some("MASTER")
            && c.role('A').as_deref() == Some("BACKUP")
            && c.in_sync('B'))
    })?;
    let switch_time = t0.elapsed();
    let switch_bytes = sent(&c, 'B')? - before;
    let rebulks = c.checkpoint('B', Some("fdb"))?.first().map_or(0, |r| r.rebulks);
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

/// `cargo xtask bench --switchover`: the switchover measurements alone.
pub(crate) fn bench() -> Result<()> {
    let bin = crate::soak::release_bins()?;
    println!("switchovers (real processes, 10 ms heartbeats)");
    run(&bin)?;
    with_standbys(&bin)
}

/// Entries of the chassis of [`with_standbys`].
const STANDBY_FDB: u32 = 200_000;
/// Switchovers timed in each chassis.
const ROUNDS: usize = 5;

/// A chassis of `modules`, A master with [`STANDBY_FDB`] fdb entries, the
/// backup in sync and every standby holding the configuration.
fn chassis(name: &str, modules: usize, bin: &Path) -> Result<(std::path::PathBuf, Chassis)> {
    let dir = crate::soak::fresh_dir(name)?;
    let mut c = Chassis::new(&dir, bin);
    c.journal = false;
    c.nodes = modules;
    let fdb = STANDBY_FDB.to_string();
    c.common = ["--heartbeat-ms", "10", "--miss", "3", "--fdb", &fdb].map(String::from).to_vec();
    c.start('A', &[])?;
    c.wait("A master", Duration::from_secs(60), |c| Ok(c.role('A').as_deref() == Some("MASTER")))?;
    for s in ['B', 'C', 'D'].into_iter().take(modules - 1) {
        c.start(s, &[])?;
    }
    c.wait("in sync, standbys in step", Duration::from_secs(120), |c| {
        let peers = c.switch('A')?.peers;
        Ok(c.in_sync('A')
            && peers.len() == modules - 1
            && peers
                .iter()
                .filter(|p| p.role != "BACKUP")
                .all(|p| p.role == "STANDBY" && p.config.as_deref() == Some("In Sync")))
    })?;
    Ok((dir, c))
}

/// One `run msm-failover` on `c`, whose master is `master`: the time until
/// the new master reports its backup (the old master) In Sync.
fn switch_once(c: &Chassis, master: char) -> Result<Duration> {
    let other = if master == 'A' { 'B' } else { 'A' };
    let t0 = Instant::now();
    let r: FailingOver = c.ask(master, &Request::Failover { force: false })?;
    if !r.failover {
        bail!("run msm-failover refused: {r:?}");
    }
    c.wait("the switchover, in sync", Duration::from_secs(60), |c| {
        Ok(c.role(other).as_deref() == Some("MASTER")
            && c.role(master).as_deref() == Some("BACKUP")
            && c.in_sync(other))
    })?;
    Ok(t0.elapsed())
}

fn median_ms(v: &[Duration]) -> (f64, f64, f64) {
    let s = Spread::of(v.iter().map(|d| d.as_secs_f64() * 1e3).collect());
    (s.median, s.min, s.max)
}

/// Issue 25: a switchover with three modules costs what one with two does
/// (the old master becomes the backup and continues; the standby is
/// rebased). Both chassis run side by side, unpinned (the same placement
/// for both), and are switched over in alternation, [`ROUNDS`] times each;
/// medians and min–max. Goal: three modules within 1.2× of two.
pub(crate) fn with_standbys(bin: &Path) -> Result<()> {
    let (d2, c2) = chassis("switchover2", 2, bin)?;
    let (d3, c3) = chassis("switchover3", 3, bin)?;
    let bulks = |c: &Chassis, modules: usize| -> Result<u64> {
        let mut n = 0;
        for s in ['A', 'B', 'C'].into_iter().take(modules) {
            n += c.checkpoint(s, None)?.iter().map(|r| r.bulks).sum::<u64>();
        }
        Ok(n)
    };
    let first = [bulks(&c2, 2)?, bulks(&c3, 3)?];
    let (mut two, mut three) = (Vec::new(), Vec::new());
    let mut master = 'A';
    for _ in 0..ROUNDS {
        two.push(switch_once(&c2, master)?);
        three.push(switch_once(&c3, master)?);
        master = if master == 'A' { 'B' } else { 'A' };
    }
    let again = [bulks(&c2, 2)?, bulks(&c3, 3)?];
    let (m2, lo2, hi2) = median_ms(&two);
    let (m3, lo3, hi3) = median_ms(&three);
    println!(
        "  {:<34} In Sync after run msm-failover: 2 modules {m2:.1} ms ({lo2:.1}-{hi2:.1}), 3 modules {m3:.1} ms \
         ({lo3:.1}-{hi3:.1}); {} alternating pairs, unpinned; 3/2 = {:.2} (goal <= 1.2){}",
        "switchover, 200 000 fdb, standbys",
        ROUNDS,
        m3 / m2.max(1e-9),
        if again != first { "  BULKED" } else { "" }
    );
    drop((c2, c3));
    let _ = std::fs::remove_dir_all(&d2);
    let _ = std::fs::remove_dir_all(&d3);
    if again != first {
        bail!("a switchover sent a bulk: bulks {first:?} before, {again:?} after");
    }
    Ok(())
}
