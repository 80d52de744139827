//! Part of `cargo xtask bench`: how long data stalls when the backplane
//! path it takes dies, on a chassis with two paths (real `msm-node`
//! processes, 10 ms heartbeats). A client process writes one change at a
//! time and waits for each to be on the backup; the path data takes is cut
//! (and healed) under it. The stall is the longest of those waits across a
//! cut; the baseline, in the same run, the longest wait with both paths up.
//! Goal: no stall longer than two heartbeat intervals.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use msm_client::Client;
use msm_testkit::chassis::{CabledPath, Chassis};

const HEARTBEAT_MS: u64 = 10;
/// Cuts of the data path timed, each healed after.
const CUTS: usize = 6;

/// Acknowledged writes for `d`: the longest wait for one.
fn longest_wait(w: &mut Client, d: Duration, next: &mut u64) -> Result<Duration> {
    let end = Instant::now() + d;
    let mut worst = Duration::ZERO;
    while Instant::now() < end {
        let t = Instant::now();
        *next += 1;
        let (seq, ok) =
            w.set_and_wait(*next % 4096, next.to_le_bytes().as_slice(), Duration::from_secs(5))?;
        if !ok {
            bail!("change {seq} not on the backup within 5 s");
        }
        worst = worst.max(t.elapsed());
    }
    Ok(worst)
}

pub(crate) fn run(bin: &Path) -> Result<()> {
    let dir = crate::soak::fresh_dir("path-loss")?;
    let mut c = Chassis::new(&dir, bin);
    c.journal = false;
    c.common = ["--heartbeat-ms", "10", "--miss", "3", "--process", "bench:1"].map(String::from).to_vec();
    let (one, taps1) = CabledPath::lay(&c, 1)?;
    let (two, taps2) = CabledPath::lay(&c, 2)?;
    c.taps = taps1;
    c.second_path = Some(taps2);
    let app = c.path('A', "app").display().to_string();
    c.start('A', &["--app-socket", &app])?;
    c.wait("A master", Duration::from_secs(10), |c| Ok(c.role('A').as_deref() == Some("MASTER")))?;
    c.start('B', &[])?;
    c.wait("in sync", Duration::from_secs(30), |c| Ok(c.in_sync('A')))?;
    let term = c.switch('A')?.term;
    let mut w = Client::connect(&app, "bench", 1, &[])?;
    let mut next = 0u64;
    let baseline = longest_wait(&mut w, Duration::from_secs(2), &mut next)?;
    let mut stall = Duration::ZERO;
    for _ in 0..CUTS {
        // Data is on path 1 while it lives: cut it, time the waits, heal it
        // (data moves back) and let it settle.
        one.set_cut(true);
        stall = stall.max(longest_wait(&mut w, Duration::from_millis(500), &mut next)?);
        one.set_cut(false);
        longest_wait(&mut w, Duration::from_millis(300), &mut next)?;
    }
    drop(two);
    let after = c.switch('A')?;
    let failover = after.term != term || after.role != "MASTER";
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "  {:<34} longest wait for the backup across a cut {:>6.1} ms ({:.1} heartbeat intervals, goal <= 2), with both paths up {:.1} ms{}",
        format!("two paths, data path cut x{CUTS}"),
        ms(stall),
        ms(stall) / HEARTBEAT_MS as f64,
        ms(baseline),
        if failover { "  FAILOVER" } else { "" }
    );
    drop(w);
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
    if failover {
        bail!("losing one of two paths caused a failover");
    }
    Ok(())
}
