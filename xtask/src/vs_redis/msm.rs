//! The msm half: `msm-node` processes on Unix sockets, pinned as Redis's
//! master and replica are, the product's defaults (the backplane
//! authenticated), 10 ms heartbeats.
//!
//! - bulk: a fresh backup's start to In Sync, the master holding the records
//!   in a process application's table;
//! - one at a time: msm-client `set` and `wait` in one write;
//! - 64 in flight: 64 `set` and one `wait` in one write.
//!
//! With standbys (three and four modules) the same writes run with the third
//! and fourth module up and mirroring the configuration; there is no bulk
//! figure (standbys take no application state).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use msm_client::{Change, Client};
use msm_testkit::chassis::Chassis;

use super::placement::{Part, Placement};
use super::{Gaps, HEARTBEAT_MS, INFLIGHT, Run, Shape, Writes, value};

const SLOTS: [char; 4] = ['A', 'B', 'C', 'D'];

fn fresh_dir(modules: usize) -> Result<PathBuf> {
    let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    let dir = base.join(format!("msm-vs-redis-{}-{modules}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn chassis(bin: &Path, dir: &Path, modules: usize) -> Chassis {
    let mut c = Chassis::new(dir, bin);
    c.journal = false;
    c.nodes = modules;
    c.common =
        ["--heartbeat-ms", &HEARTBEAT_MS.to_string(), "--miss", "3", "--fdb", "0", "--process", "bench:1"]
            .map(String::from)
            .to_vec();
    c
}

fn start(c: &mut Chassis, slot: char, part: Part, place: &Placement) -> Result<()> {
    c.launcher = place.launcher(part);
    let app = c.path(slot, "app").display().to_string();
    c.start(slot, &["--app-socket", &app])
}

/// Who heard the largest gap from whom: "MSM-B from MSM-A 16.8 ms".
pub(crate) fn who_heard(c: &Chassis) -> String {
    SLOTS[..c.nodes]
        .iter()
        .filter_map(|s| c.switch(*s).ok().map(|sw| (*s, sw)))
        .flat_map(|(s, sw)| sw.peers.into_iter().map(move |p| (s, p)))
        .max_by_key(|(_, p)| p.max_heartbeat_gap_us)
        .map_or_else(String::new, |(s, p)| {
            format!("MSM-{s} from MSM-{} {:.1} ms", p.slot, p.max_heartbeat_gap_us as f64 / 1e3)
        })
}

/// One two-module run: the bulk, then both write modes.
pub(crate) fn run(bin: &Path, shape: &Shape, place: &Placement) -> Result<Run> {
    let dir = fresh_dir(2)?;
    let mut c = chassis(bin, &dir, 2);
    start(&mut c, 'A', Part::Master, place)?;
    c.wait("A master", Duration::from_secs(10), |c| Ok(c.role('A').as_deref() == Some("MASTER")))?;
    // The master's process holds the records.
    let mut w = Client::connect(c.path('A', "app"), "bench", 1, &[])?;
    for chunk in (0..shape.records).step_by(1000) {
        let end = (chunk + 1000).min(shape.records);
        for i in chunk..end {
            w.send(Change::Set(i, value(i, shape.value)));
        }
        w.flush()?;
        for _ in chunk..end {
            w.accepted()?;
        }
    }
    place.pin_here(Part::Client)?;
    // Bulk: the backup's start to In Sync.
    let t0 = Instant::now();
    start(&mut c, 'B', Part::Backup, place)?;
    c.wait_every("in sync", Duration::from_secs(300), super::ASK_EVERY, |c| Ok(c.in_sync('A')))?;
    let bulk = t0.elapsed();
    let rows = c.checkpoint('B', Some("bench"))?;
    if rows.first().map(|r| r.status.as_str()) != Some("OK") {
        bail!("msm bulk: the backup's bench stream is not OK: {rows:?}");
    }
    let after_bulk = c.max_heartbeat_gap_us();
    let (one, many, after_one, after_many) = writes(&c, &mut w, shape)?;
    place.unpin_here()?;
    let run =
        Run { bulk, one, many, gaps: Some(Gaps { bulk: after_bulk, one: after_one, many: after_many }) };
    super::check_gaps(&run, shape, &format!("two modules ({}; logs in {})", who_heard(&c), dir.display()))?;
    drop(w);
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(run)
}

/// Both write modes on a running chassis: (one, many, gap after one, gap after many).
fn writes(c: &Chassis, w: &mut Client, shape: &Shape) -> Result<(Writes, Writes, u64, u64)> {
    let wait = Duration::from_secs(5);
    let mut lat = Vec::with_capacity(shape.writes as usize);
    let t = Instant::now();
    for i in 0..shape.writes {
        let s = Instant::now();
        let (seq, ok) = w.set_and_wait(i, &value(i + 7, shape.value), wait)?;
        if !ok {
            bail!("msm: change {seq} not on the backup within 5 s");
        }
        lat.push(s.elapsed());
    }
    let one = Writes::of(&mut lat, shape.writes, t.elapsed());
    let after_one = c.max_heartbeat_gap_us();
    let mut lat = Vec::new();
    let batches = shape.writes / INFLIGHT;
    let t = Instant::now();
    for b in 0..batches {
        let s = Instant::now();
        for i in 0..INFLIGHT {
            w.send(Change::Set(b * INFLIGHT + i, value(i + 9, shape.value)));
        }
        w.send_wait_all(wait);
        w.flush()?;
        let mut last = 0;
        for _ in 0..INFLIGHT {
            last = w.accepted()?;
        }
        if !w.waited()? {
            bail!("msm: change {last} not on the backup within 5 s");
        }
        lat.push(s.elapsed());
    }
    let many = Writes::of(&mut lat, batches * INFLIGHT, t.elapsed());
    Ok((one, many, after_one, c.max_heartbeat_gap_us()))
}

/// One run with standbys: `modules` (3 or 4) up and in sync, then both
/// write modes. The bulk figure is the time to bring them all up.
pub(crate) fn with_standbys(bin: &Path, modules: usize, shape: &Shape, place: &Placement) -> Result<Run> {
    let dir = fresh_dir(modules)?;
    let mut c = chassis(bin, &dir, modules);
    start(&mut c, 'A', Part::Master, place)?;
    c.wait("A master", Duration::from_secs(10), |c| Ok(c.role('A').as_deref() == Some("MASTER")))?;
    let t0 = Instant::now();
    start(&mut c, 'B', Part::Backup, place)?;
    for (i, slot) in SLOTS[2..modules].iter().enumerate() {
        start(&mut c, *slot, Part::Standby(i), place)?;
    }
    c.wait("every module in sync", Duration::from_secs(60), |c| {
        Ok(c.in_sync('A')
            && SLOTS[2..modules]
                .iter()
                .all(|s| c.role(*s).as_deref().is_some_and(|r| r.starts_with("STANDBY"))))
    })?;
    let up = t0.elapsed();
    let after_up = c.max_heartbeat_gap_us();
    let mut w = Client::connect(c.path('A', "app"), "bench", 1, &[])?;
    place.pin_here(Part::Client)?;
    let (one, many, after_one, after_many) = writes(&c, &mut w, shape)?;
    place.unpin_here()?;
    let run =
        Run { bulk: up, one, many, gaps: Some(Gaps { bulk: after_up, one: after_one, many: after_many }) };
    let heard = who_heard(&c);
    super::check_gaps(&run, shape, &format!("{modules} modules ({heard}; logs in {})", dir.display()))?;
    drop(w);
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(run)
}
