//! `cargo xtask bench --operations`: the protocol first under the
//! operator's tools. Two real nodes (10 ms heartbeats, churn 2 000 changes
//! a second, a `run msm-failover` three seconds in), each with `--metrics`
//! scraped every 100 ms and a `--notify` hook that sleeps 5 s, against the
//! same chassis without them, in alternating pairs; the largest heartbeat
//! gap any node heard is the figure, and a run with the tools fails above
//! 1.5 intervals.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use msm_control::{FailingOver, Request};
use msm_testkit::chassis::Chassis;

use crate::pairs::Spread;

const HEARTBEAT_MS: u64 = 10;
const PAIRS: usize = 3;
const RUN: Duration = Duration::from_secs(10);
const SCRAPE_EVERY: Duration = Duration::from_millis(100);

/// One run: the largest gap (ms), scrapes answered, hooks started.
struct Run {
    gap_ms: f64,
    scrapes: u64,
    hooks: usize,
}

pub(crate) fn bench() -> Result<()> {
    let bin = crate::soak::release_bins()?;
    println!(
        "operations: {PAIRS} alternating pairs of {} s runs, {HEARTBEAT_MS} ms heartbeats, churn 2 000/s, \
         a run msm-failover at 3 s; with: metrics scraped every 100 ms on both nodes and a notify hook that sleeps 5 s",
        RUN.as_secs()
    );
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for i in 0..PAIRS {
        with.push(run(&bin, true).with_context(|| format!("pair {}, with the tools", i + 1))?);
        without.push(run(&bin, false).with_context(|| format!("pair {}, without", i + 1))?);
    }
    let gaps = |runs: &[Run]| Spread::of(runs.iter().map(|r| r.gap_ms).collect());
    println!("  largest heartbeat gap (ms), median (min-max)");
    println!("    with metrics and the hook: {:.1}", gaps(&with));
    println!("    without:                   {:.1}", gaps(&without));
    let scrapes: u64 = with.iter().map(|r| r.scrapes).sum();
    let hooks: usize = with.iter().map(|r| r.hooks).sum();
    println!(
        "  {scrapes} scrapes answered, {hooks} hooks started (each sleeping 5 s) over the runs with the tools"
    );
    let worst = with.iter().map(|r| r.gap_ms).fold(0.0, f64::max);
    let limit = HEARTBEAT_MS as f64 * 1.5;
    if worst > limit {
        bail!(
            "with the tools a node heard a heartbeat gap of {worst:.1} ms, above 1.5 intervals ({limit:.1} ms)"
        );
    }
    Ok(())
}

fn run(bin: &Path, tools: bool) -> Result<Run> {
    let dir = crate::soak::fresh_dir(if tools { "operations-with" } else { "operations-without" })?;
    let mut c = Chassis::new(&dir, bin);
    c.journal = false;
    c.common = ["--heartbeat-ms", &HEARTBEAT_MS.to_string(), "--miss", "3", "--churn", "2000"]
        .map(String::from)
        .to_vec();
    let hook = dir.join("hook");
    let runs = dir.join("hook.runs");
    std::fs::write(&hook, format!("#!/bin/sh\necho \"$MSM_EVENT\" >> {}\nsleep 5\n", runs.display()))?;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
    let hook = hook.display().to_string();
    let extra: Vec<&str> = if tools { vec!["--metrics", "127.0.0.1:0", "--notify", &hook] } else { vec![] };
    c.start('A', &extra)?;
    c.wait("A master", Duration::from_secs(10), |c| Ok(c.role('A').as_deref() == Some("MASTER")))?;
    c.start('B', &extra)?;
    c.wait("in sync", Duration::from_secs(60), |c| Ok(c.in_sync('A')))?;
    let stop = Arc::new(AtomicBool::new(false));
    let scrapes = Arc::new(AtomicU64::new(0));
    let scraper = tools.then(|| {
        let addrs: Vec<String> = ['A', 'B'].iter().filter_map(|s| c.metrics_address(*s)).collect();
        let (stop, scrapes) = (stop.clone(), scrapes.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for a in &addrs {
                    if scrape(a).is_ok() {
                        scrapes.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(SCRAPE_EVERY);
            }
        })
    });
    let t0 = Instant::now();
    c.wait_every("3 s", RUN * 2, SCRAPE_EVERY, |_| Ok(t0.elapsed() >= Duration::from_secs(3)))?;
    c.ask::<FailingOver>('A', &Request::Failover { force: false })?;
    c.wait("B master", Duration::from_secs(10), |c| Ok(c.role('B').as_deref() == Some("MASTER")))?;
    c.wait_every("the run", RUN * 2, SCRAPE_EVERY, |_| Ok(t0.elapsed() >= RUN))?;
    stop.store(true, Ordering::Relaxed);
    if let Some(s) = scraper {
        let _ = s.join();
    }
    let gap_us = c.max_heartbeat_gap_us();
    let hooks = std::fs::read_to_string(&runs).map(|t| t.lines().count()).unwrap_or(0);
    if tools && hooks == 0 {
        bail!("the notify hook never ran (see the logs in {})", dir.display());
    }
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Run { gap_ms: gap_us as f64 / 1e3, scrapes: scrapes.load(Ordering::Relaxed), hooks })
}

fn scrape(addr: &str) -> std::io::Result<usize> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: node\r\n\r\n")?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    Ok(body.len())
}
