//! Part of `cargo xtask bench`: the chassis under load, with real `msm-node`
//! processes (release build, 10 ms heartbeats, failure detected after 30 ms):
//! a `configure` of 1 000, 5 000 and 20 000 lines (time to answer, time until
//! the backup has it), a bulk of a million MAC entries, and maximum churn.
//! The figure that matters for a failover is the largest gap between two
//! heartbeats the peer heard; the baseline, measured in the same run, is
//! that gap on an idle chassis over the same time. Last, the failover time:
//! SIGKILL of the master to the backup answering MASTER, under churn.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use msm_control::{AppTable, Churning, Configured, Request};
use msm_testkit::chassis::Chassis;

const HEARTBEAT_MS: u64 = 10;

/// A two-node chassis in a fresh directory, in sync, authenticated.
fn chassis(bin: &Path, extra: &[&str]) -> Result<(PathBuf, Chassis)> {
    chassis_with(bin, extra, true)
}

/// The same, with or without the chassis key.
fn chassis_with(bin: &Path, extra: &[&str], authenticated: bool) -> Result<(PathBuf, Chassis)> {
    let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    let dir = base.join(format!("msm-load-{}-{}", std::process::id(), Instant::now().elapsed().as_nanos()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut c = Chassis::new(&dir, bin);
    c.authenticated = authenticated;
    c.common = vec!["--heartbeat-ms".into(), HEARTBEAT_MS.to_string(), "--miss".into(), "3".into()];
    c.start('A', extra)?;
    c.wait("A master", Duration::from_secs(10), |c| Ok(c.role('A').as_deref() == Some("MASTER")))?;
    c.start('B', extra)?;
    c.wait("in sync", Duration::from_secs(300), |c| Ok(c.in_sync('A')))?;
    Ok((dir, c))
}

/// The largest heartbeat gap `slot` heard from its peer since it came up, in ms.
fn gap_ms(c: &Chassis, slot: char) -> Result<f64> {
    let us = c.switch(slot)?.peers.iter().map(|p| p.max_heartbeat_gap_us).max().unwrap_or(0);
    Ok(us as f64 / 1000.0)
}

fn term(c: &Chassis) -> Result<(String, String)> {
    let s = c.switch('A')?;
    Ok((s.role, s.term))
}

fn row(what: &str, figures: &str, gap: f64, base: f64, failover: bool) {
    println!(
        "  {what:<34} {figures:<44} max heartbeat gap {gap:>6.1} ms ({:.2}x idle){}",
        gap / base.max(0.001),
        if failover { "  FAILOVER" } else { "" }
    );
}

/// Acknowledged single writes timed per scenario.
const ACKED: usize = 300;

/// Maximum churn for 3 s, then `ACKED` one-line configures each waiting for
/// the backup: (changes/s checkpointed, p50 ms, p99 ms, max heartbeat gap
/// ms, a failover happened).
fn churn(bin: &Path, authenticated: bool) -> Result<(f64, f64, f64, f64, bool)> {
    let (dir, c) = chassis_with(bin, &[], authenticated)?;
    let before = term(&c)?;
    let from = c.checkpoint('A', Some("fdb"))?.first().map_or(0, |r| r.checkpointed);
    c.ask::<Churning>('A', &Request::Churn { rate: msm_runtime::node::MAX_CHURN })?;
    let t0 = Instant::now();
    c.wait("churn", Duration::from_secs(5), |_| Ok(t0.elapsed() >= Duration::from_secs(3)))?;
    c.ask::<Churning>('A', &Request::Churn { rate: 0 })?;
    let done = c.checkpoint('A', Some("fdb"))?.first().map_or(0, |r| r.checkpointed).saturating_sub(from);
    let mut lat = Vec::with_capacity(ACKED);
    for i in 0..ACKED {
        let t = Instant::now();
        let r: Configured =
            c.ask('A', &Request::Configure { lines: vec![format!("create vlan w{i}")], wait: Some(2000) })?;
        if !r.on_backup.checkpointed {
            bail!("configure --wait {i}: not on the backup: {r:?}");
        }
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)];
    let failover = term(&c)? != before;
    let gap = gap_ms(&c, 'B')?.max(gap_ms(&c, 'A')?);
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
    Ok((done as f64 / 3.0, pct(50), pct(99), gap, failover))
}

/// Run every load scenario; print one row each.
/// Failover time, `rounds` times: SIGKILL of the master (churning 2 000
/// changes a second) to the backup answering MASTER.
fn failover_times(bin: &Path, rounds: usize) -> Result<Vec<Duration>> {
    let (dir, mut c) = chassis(bin, &["--churn", "2000"])?;
    let (mut master, mut backup) = ('A', 'B');
    let mut out = Vec::new();
    for _ in 0..rounds {
        c.wait("in sync", Duration::from_secs(20), |c| Ok(c.in_sync(master)))?;
        c.kill(master)?;
        let t = Instant::now();
        c.wait("takeover", Duration::from_secs(5), |c| Ok(c.role(backup).as_deref() == Some("MASTER")))?;
        out.push(t.elapsed());
        c.start(master, &["--churn", "2000"])?;
        std::mem::swap(&mut master, &mut backup);
    }
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}

pub(crate) fn run() -> Result<()> {
    let bin = crate::soak::release_bins()?;
    println!(
        "chassis load (real processes, {HEARTBEAT_MS} ms heartbeats, failover after {} ms)",
        3 * HEARTBEAT_MS
    );

    // Baseline: an idle chassis over a few seconds.
    let (dir, c) = chassis(&bin, &[])?;
    let start = Instant::now();
    c.wait("idle", Duration::from_secs(3), |_| Ok(start.elapsed() >= Duration::from_secs(2)))?;
    let idle = gap_ms(&c, 'B')?;
    println!("  {:<34} {:<44} max heartbeat gap {idle:>6.1} ms (baseline)", "idle chassis, 2 s", "");
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);

    for n in [1_000usize, 5_000, 20_000] {
        let (dir, c) = chassis(&bin, &[])?;
        let before = term(&c)?;
        let lines: Vec<String> = (0..n).map(|i| format!("create vlan v{i}")).collect();
        let t0 = Instant::now();
        let r: Configured = c.ask('A', &Request::Configure { lines, wait: None })?;
        let answered = t0.elapsed();
        let seq = r.on_backup.seq;
        c.wait("checkpointed", Duration::from_secs(120), |c| {
            Ok(c.checkpoint('A', Some("active-config"))?.first().map_or(0, |r| r.checkpointed) >= seq)
        })?;
        let acked = t0.elapsed();
        let failover = term(&c)? != before;
        let figures = format!(
            "answer {:>7.1} ms, on backup {:>7.1} ms ({:.0} lines/s)",
            answered.as_secs_f64() * 1e3,
            acked.as_secs_f64() * 1e3,
            n as f64 / acked.as_secs_f64()
        );
        row(&format!("configure {n} lines"), &figures, gap_ms(&c, 'B')?, idle, failover);
        drop(c);
        let _ = std::fs::remove_dir_all(&dir);
    }

    // A bulk of a million MAC entries to a fresh backup.
    let dir = crate::soak::fresh_dir("load-bulk")?;
    let mut c = Chassis::new(&dir, &bin);
    c.common = vec!["--heartbeat-ms".into(), HEARTBEAT_MS.to_string(), "--miss".into(), "3".into()];
    c.start('A', &["--fdb", "1000000"])?;
    c.wait("A seeded", Duration::from_secs(120), |c| {
        let t: AppTable = c.ask('A', &Request::ShowApp { app: "fdb".into(), rows: false, from: 0 })?;
        Ok(t.entries == 1_000_000)
    })?;
    let before = term(&c)?;
    let t0 = Instant::now();
    c.start('B', &["--fdb", "1000000"])?;
    c.wait("in sync", Duration::from_secs(300), |c| Ok(c.in_sync('A')))?;
    let synced = t0.elapsed();
    let failover = term(&c)? != before;
    let gap = gap_ms(&c, 'B')?.max(gap_ms(&c, 'A')?);
    row(
        "bulk of 1 000 000 fdb entries",
        &format!("backup start to In Sync {:.2} s", synced.as_secs_f64()),
        gap,
        idle,
        failover,
    );

    drop(c);
    let _ = std::fs::remove_dir_all(&dir);

    // Maximum churn, on a chassis of its own.
    // Maximum churn and acknowledged single writes, without and with the
    // chassis key: what authenticating every frame costs real processes.
    let mut rates = [0f64; 2];
    let mut failover = false;
    for (i, authenticated) in [false, true].into_iter().enumerate() {
        let (rate, p50, p99, gap, f) = churn(&bin, authenticated)?;
        rates[i] = rate;
        failover |= f;
        let what = if authenticated { "authenticated" } else { "unauthenticated" };
        let figures = format!("{} asked, {rate:.0}/s checkpointed", msm_runtime::node::MAX_CHURN);
        row(&format!("maximum churn 3 s, {what}"), &figures, gap, idle, f);
        let figures = format!("p50 {p50:.2} ms, p99 {p99:.2} ms");
        row(&format!("configure --wait x{ACKED}, {what}"), &figures, gap, idle, f);
    }
    println!("  churn authenticated/unauthenticated: {:.3} (goal >= 0.85)", rates[1] / rates[0].max(1.0));
    crate::path_loss::run(&bin)?;
    crate::switchover::run(&bin)?;
    crate::switchover::with_standbys(&bin)?;
    let f =
        crate::pairs::Spread::of(failover_times(&bin, 5)?.iter().map(|d| d.as_secs_f64() * 1e3).collect());
    println!(
        "  {:<34} SIGKILL of the master to the backup answering MASTER, 5 runs: median {:.0} ms ({:.0}-{:.0})",
        "failover at 10 ms heartbeats x 3", f.median, f.min, f.max
    );
    if failover {
        bail!("a failover happened under load");
    }
    Ok(())
}
