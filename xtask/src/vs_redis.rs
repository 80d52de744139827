//! `cargo xtask bench --vs redis`: the checkpoint system against Redis
//! replication, real processes on loopback, the same data, in alternating
//! pairs (msm, Redis, msm, Redis, ...; at least 5) in one invocation, every
//! process pinned alike ([`placement`]), each path's physical floor measured
//! in the same pairs ([`floor`]). Every figure is a median with its min–max;
//! ratios are of medians.
//!
//! Figures: the bulk of 1 M 100-byte records to a fresh backup against a
//! Redis full sync, acknowledged writes one at a time and 64 in flight per
//! wait, and msm's three- and four-module chassis. The run fails (rather
//! than reporting) when any node heard a heartbeat gap above 1.5 intervals
//! in any phase; `--short` (CI's) runs fewer, smaller pairs and only
//! reports such a gap, since a shared CI machine decides nothing.

mod floor;
mod msm;
mod placement;
mod redis;

use std::time::Duration;

use anyhow::{Result, bail};

use crate::pairs::Spread;
use placement::Placement;

/// msm's heartbeat interval here; a gap above 1.5 of it fails the run.
pub(crate) const HEARTBEAT_MS: u64 = 10;
const INFLIGHT: u64 = 64;
/// How often either system is asked whether its bulk is over: the same for
/// both, and rare enough not to load the node that answers.
const ASK_EVERY: Duration = Duration::from_millis(5);

/// The size of a run.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pairs: usize,
    records: u64,
    value: usize,
    /// Acknowledged writes timed, per mode.
    writes: u64,
    /// Fail on a heartbeat gap above this (µs); `None`: report it only.
    gap_limit_us: Option<u64>,
    /// `--only msm`: msm's two-module runs alone, to look into them.
    msm_only: bool,
}

impl Shape {
    fn from_args(args: &[String]) -> Result<Shape> {
        let short = args.iter().any(|a| a == "--short");
        let mut s = Shape {
            pairs: if short { 2 } else { 5 },
            records: if short { 100_000 } else { 1_000_000 },
            value: 100,
            writes: if short { 2_000 } else { 20_000 },
            gap_limit_us: (!short).then_some(HEARTBEAT_MS * 1500),
            msm_only: args.windows(2).any(|w| w == ["--only", "msm"]),
        };
        if let Some(i) = args.iter().position(|a| a == "--pairs") {
            let n = args.get(i + 1).and_then(|n| n.parse().ok());
            s.pairs = n
                .filter(|&n| n >= 1)
                .ok_or_else(|| anyhow::anyhow!("--pairs takes a count of at least 1"))?;
        }
        for (flag, into) in [("--records", &mut s.records), ("--writes", &mut s.writes)] {
            if let Some(i) = args.iter().position(|a| a == flag) {
                let n = args.get(i + 1).and_then(|n| n.parse().ok());
                *into = n
                    .filter(|&n| n >= INFLIGHT)
                    .ok_or_else(|| anyhow::anyhow!("{flag} takes a count of at least {INFLIGHT}"))?;
            }
        }
        Ok(s)
    }
}

/// Throughput and latency of one acknowledged-write mode.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Writes {
    per_s: f64,
    p50_us: f64,
    p99_us: f64,
}

impl Writes {
    fn of(lat: &mut [Duration], changes: u64, total: Duration) -> Writes {
        lat.sort();
        let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)].as_secs_f64() * 1e6;
        Writes { per_s: changes as f64 / total.as_secs_f64(), p50_us: pct(50), p99_us: pct(99) }
    }
}

/// The largest heartbeat gap any node heard by the end of each phase (µs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gaps {
    bulk: u64,
    one: u64,
    many: u64,
}

/// One run of one system.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    /// The bulk (with standbys: bringing every module into sync).
    bulk: Duration,
    one: Writes,
    many: Writes,
    /// msm only.
    gaps: Option<Gaps>,
}

/// A record's value: its number, padded.
pub(crate) fn value(i: u64, len: usize) -> Vec<u8> {
    let mut v = format!("{i:020}").into_bytes();
    v.resize(len, b'v');
    v
}

/// Everything measured, per pair.
#[derive(Default)]
struct Pairs {
    msm: Vec<Run>,
    redis: Vec<Run>,
    copy: Vec<Duration>,
    hops: Vec<Writes>,
    three: Vec<Run>,
    four: Vec<Run>,
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let shape = Shape::from_args(args)?;
    let bin = crate::soak::release_bins()?;
    let place = Placement::from_args(args)?;
    let server = redis::server()?;
    println!(
        "msm vs Redis replication: {} alternating pairs (msm, Redis, floors, three and four modules) in one run",
        shape.pairs
    );
    println!("  placement: {}", place.describe());
    println!(
        "  {} records of {} bytes; {} acknowledged writes per mode; msm: authenticated backplane, {HEARTBEAT_MS} ms \
         heartbeats; Redis {}: diskless replication",
        shape.records,
        shape.value,
        shape.writes,
        server.as_deref().map_or_else(|| "skipped".into(), redis::version)
    );
    let mut p = Pairs::default();
    for i in 0..shape.pairs {
        let n = i + 1;
        let with = |what: &str| format!("pair {n}, {what}");
        p.msm.push(msm::run(&bin, &shape, &place).map_err(|e| e.context(with("msm")))?);
        if shape.msm_only {
            let r = p.msm.last().copied();
            if let Some(r) = r {
                let g = r.gaps.map_or(0, |g| g.bulk.max(g.one).max(g.many));
                println!(
                    "  pair {n}: msm bulk {:.3} s, largest gap {:.1} ms",
                    r.bulk.as_secs_f64(),
                    g as f64 / 1e3
                );
            }
            continue;
        }
        if let Some(server) = &server {
            p.redis.push(redis::run(server, &shape, &place).map_err(|e| e.context(with("Redis")))?);
        }
        p.copy.push(floor::raw_copy(&shape, &place)?);
        p.hops.push(floor::four_hops(shape.writes, &place)?);
        for (modules, into) in [(3, &mut p.three), (4, &mut p.four)] {
            into.push(
                msm::with_standbys(&bin, modules, &shape, &place)
                    .map_err(|e| e.context(with(&format!("msm, {modules} modules"))))?,
            );
        }
        println!("  pair {n} of {}: done", shape.pairs);
    }
    if !shape.msm_only {
        report(&shape, &p);
    }
    Ok(())
}

/// Fail (or, in `--short`, warn) when a phase heard a gap above 1.5 intervals.
pub(crate) fn check_gaps(r: &Run, shape: &Shape, chassis: &str) -> Result<()> {
    let Some(g) = r.gaps else { return Ok(()) };
    let limit = HEARTBEAT_MS * 1500;
    // The figures are cumulative: the first phase above the limit had the gap.
    let phase = [(g.bulk, "the bulk"), (g.one, "writes one at a time"), (g.many, "writes 64 in flight")]
        .into_iter()
        .find(|(gap, _)| *gap > limit);
    if let Some((gap, phase)) = phase {
        let what = format!(
            "{chassis}: a node heard no heartbeat for {:.1} ms during {phase}, above 1.5 intervals ({:.1} ms)",
            gap as f64 / 1e3,
            limit as f64 / 1e3
        );
        match shape.gap_limit_us {
            Some(_) => bail!("{what}: the protocol came second, so this run measured nothing"),
            None => println!("  WARNING (--short reports it only): {what}"),
        }
    }
    Ok(())
}

fn spread<T>(runs: &[T], f: impl Fn(&T) -> f64) -> Spread {
    Spread::of(runs.iter().map(f).collect())
}

fn report(shape: &Shape, p: &Pairs) {
    let has_redis = !p.redis.is_empty();
    println!("\n  medians (min-max) of {} pairs; ratios of medians", shape.pairs);
    println!("  {:<40} {:>26} {:>26} {:>10}", "", "msm", "Redis", "msm/Redis");
    let row = |what: &str, m: Spread, r: Option<Spread>| {
        let (rs, ratio) = match r {
            Some(r) => (format!("{r}"), format!("{:.2}", m.median / r.median)),
            None => ("skipped".into(), "-".into()),
        };
        println!("  {what:<40} {:>26} {rs:>26} {ratio:>10}", format!("{m}"));
    };
    let redis = |f: &dyn Fn(&Run) -> f64| has_redis.then(|| spread(&p.redis, f));
    let secs = |r: &Run| r.bulk.as_secs_f64();
    row(&format!("bulk of {} records (s)", shape.records), spread(&p.msm, secs), redis(&secs));
    type Mode = fn(&Run) -> Writes;
    for (mode, of) in [("one at a time", (|r: &Run| r.one) as Mode), ("64 in flight", |r: &Run| r.many)] {
        row(&format!("acked writes, {mode} (/s)"), spread(&p.msm, |r| of(r).per_s), redis(&|r| of(r).per_s));
        row(
            &format!("acked writes, {mode}, p50 (us)"),
            spread(&p.msm, |r| of(r).p50_us),
            redis(&|r| of(r).p50_us),
        );
        row(
            &format!("acked writes, {mode}, p99 (us)"),
            spread(&p.msm, |r| of(r).p99_us),
            redis(&|r| of(r).p99_us),
        );
    }
    // The floors.
    let copy = spread(&p.copy, |d| d.as_secs_f64());
    let hop50 = spread(&p.hops, |w| w.p50_us);
    let hop_rate = spread(&p.hops, |w| w.per_s);
    println!("\n  physical floors, in the same pairs");
    println!("  {:<40} {:>26}", "raw Unix stream copy of the bulk (s)", format!("{copy}"));
    println!("  {:<40} {:>26}", "bare four-hop round trip, p50 (us)", format!("{hop50}"));
    println!("  {:<40} {:>26}", "bare four-hop round trips (/s)", format!("{hop_rate}"));
    let m_bulk = spread(&p.msm, secs).median;
    let m_one50 = spread(&p.msm, |r| r.one.p50_us).median;
    println!("  msm bulk speed / raw copy speed: {:.2} (goal >= 0.5)", copy.median / m_bulk);
    println!("  msm one-at-a-time p50 / bare four hops: {:.2} (goal <= 1.3)", m_one50 / hop50.median);
    if has_redis {
        let r_one50 = spread(&p.redis, |r| r.one.p50_us).median;
        println!(
            "  Redis one-at-a-time p50 / bare four hops: {:.2} (its own sockets are TCP)",
            r_one50 / hop50.median
        );
    }
    // Standbys.
    println!("\n  msm with standbys mirroring the configuration (medians, min-max)");
    println!("  {:<40} {:>26} {:>26} {:>26}", "", "two modules", "three modules", "four modules");
    let three = |f: &dyn Fn(&Run) -> f64| [spread(&p.msm, f), spread(&p.three, f), spread(&p.four, f)];
    let line = |what: &str, s: [Spread; 3]| {
        println!(
            "  {what:<40} {:>26} {:>26} {:>26}",
            format!("{}", s[0]),
            format!("{}", s[1]),
            format!("{}", s[2])
        );
    };
    line("acked writes, one at a time (/s)", three(&|r| r.one.per_s));
    line("acked writes, one at a time, p99 (us)", three(&|r| r.one.p99_us));
    line("acked writes, 64 in flight (/s)", three(&|r| r.many.per_s));
    line("acked writes, 64 in flight, p99 (us)", three(&|r| r.many.p99_us));
    let gap = |r: &Run| r.gaps.map_or(0.0, |g| g.bulk.max(g.one).max(g.many) as f64 / 1e3);
    line("largest heartbeat gap, any phase (ms)", three(&gap));
    println!("  (two modules' gap includes the bulk; three and four modules' the start of the standbys)");
    if has_redis {
        let r = |f: &dyn Fn(&Run) -> f64| spread(&p.redis, f).median;
        let m = |f: &dyn Fn(&Run) -> f64| spread(&p.msm, f).median;
        println!(
            "\n  goals: bulk <= 0.2x Redis: {:.2}x; 64 in flight >= 3x Redis: {:.2}x, p99 {:.2}x Redis's; \
             one at a time >= 1.5x Redis: {:.2}x, p99 {:.2}x Redis's",
            m(&secs) / r(&secs),
            m(&|r| r.many.per_s) / r(&|r| r.many.per_s),
            m(&|r| r.many.p99_us) / r(&|r| r.many.p99_us),
            m(&|r| r.one.per_s) / r(&|r| r.one.per_s),
            m(&|r| r.one.p99_us) / r(&|r| r.one.p99_us),
        );
    }
}
