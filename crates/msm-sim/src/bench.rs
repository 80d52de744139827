//! `cargo xtask bench`: core throughput and memory.
//!
//! Two engines wired back to back in memory (no simulator, no checkers): the
//! master records changes, frames go straight across, the backup applies them
//! into a hash map. The baseline, measured in the same run, does the same
//! application work (encode the record, copy it through a queue, apply it to a
//! hash map) without any protocol; the ratio shows what checkpointing costs.

use std::collections::{HashMap, VecDeque};
use std::time::Instant as Wall;

use anyhow::{Result, bail};
use msm_checkpoint::{AppId, AppRegistry, Config, Host, HostError, ItemKind, Node, Slot, Stream};
use msm_sim::record::{Op, Rec};
use msm_time::Instant;

type BenchNode = Node<16, 64, 65536>;

#[derive(Default)]
struct MapHost {
    apps: Vec<HashMap<u32, u64>>,
}

impl Host for MapHost {
    fn bulk_start(&mut self, stream: Stream) -> u64 {
        match stream {
            Stream::App(a) => self.apps[a.index()].len() as u64,
            _ => 0,
        }
    }
    fn bulk_read(&mut self, _: Stream, _: &mut u64, _: &mut [u8]) -> Result<Option<usize>, HostError> {
        Ok(None) // the benchmark starts from empty state: bulks are empty
    }
    fn bulk_begin(&mut self, _: Stream, _: u64) -> Result<(), HostError> {
        Ok(())
    }
    fn apply(&mut self, stream: Stream, _: ItemKind, item: &[u8]) -> Result<(), HostError> {
        if let Stream::App(a) = stream {
            let r = Rec::decode(item).ok_or(HostError::BadRecord)?;
            match r.op {
                Op::Set => self.apps[a.index()].insert(r.key, r.stamp),
                Op::Delete => self.apps[a.index()].remove(&r.key),
            };
        }
        Ok(())
    }
    fn bulk_end(&mut self, _: Stream) -> Result<(), HostError> {
        Ok(())
    }
    fn bulk_abort(&mut self, _: Stream) {}
}

fn node(slot: Slot) -> Result<BenchNode> {
    let mut reg = AppRegistry::<16>::new();
    for i in 0..16 {
        reg.register(&format!("app{i}"), 1, &[]).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let mut c = Config::new(slot);
    c.max_frame = 8192;
    BenchNode::new(c, reg, Instant::ZERO).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Move frames both ways until neither side has anything to send.
fn pump(now: Instant, n: &mut [BenchNode; 2], h: &mut [MapHost; 2], buf: &mut [u8]) -> u64 {
    let mut frames = 0;
    loop {
        let mut moved = false;
        for from in 0..2 {
            let to = 1 - from;
            while let Some(len) = n[from].poll_transmit(now, &mut h[from], buf) {
                let _ = n[to].handle_frame(now, &buf[..len], &mut h[to]);
                frames += 1;
                moved = true;
            }
        }
        if !moved {
            return frames;
        }
    }
}

fn engine_run(records: u64) -> Result<(f64, u64)> {
    let mut n = [node(Slot::A)?, node(Slot::B)?];
    let mut h = [MapHost { apps: vec![HashMap::new(); 16] }, MapHost { apps: vec![HashMap::new(); 16] }];
    let mut buf = vec![0u8; 8192];
    let mut t = 0u64;
    // Elect, attach, sync (empty state).
    while t < 2_000_000 {
        let now = Instant::from_micros(t);
        for i in 0..2 {
            n[i].handle_timeout(now, &mut h[i]);
        }
        pump(now, &mut n, &mut h, &mut buf);
        if n[0].sync_state() == msm_checkpoint::SyncState::InSync {
            break;
        }
        t += 1000;
    }
    if n[0].sync_state() != msm_checkpoint::SyncState::InSync {
        bail!("benchmark pair never got in sync: {}", n[0].sync_state());
    }
    let mut rec = vec![0u8; msm_sim::record::LEN];
    let mut frames = 0;
    let start = Wall::now();
    let now = Instant::from_micros(t);
    for i in 0..records {
        let app = (i % 16) as u8;
        let r = Rec { op: Op::Set, key: (i % 100_000) as u32, stamp: i + 1 };
        r.encode(&mut rec);
        let id = AppId::new(app);
        n[0].record_change(id, &rec).map_err(|e| anyhow::anyhow!("{e}"))?;
        h[0].apps[app as usize].insert(r.key, r.stamp);
        if i % 64 == 63 {
            frames += pump(now, &mut n, &mut h, &mut buf);
        }
    }
    frames += pump(now, &mut n, &mut h, &mut buf);
    let secs = start.elapsed().as_secs_f64();
    for a in 0..16u8 {
        let want = records / 16;
        if n[0].checkpointed(AppId::new(a)) < want {
            bail!("app{a}: only {} of {want} changes checkpointed", n[0].checkpointed(AppId::new(a)));
        }
    }
    if h[0].apps != h[1].apps {
        bail!("backup state differs from master state after the run");
    }
    Ok((records as f64 / secs, frames))
}

fn baseline_run(records: u64) -> f64 {
    let mut q: VecDeque<Vec<u8>> = VecDeque::new();
    let mut master: Vec<HashMap<u32, u64>> = vec![HashMap::new(); 16];
    let mut backup: Vec<HashMap<u32, u64>> = vec![HashMap::new(); 16];
    let start = Wall::now();
    for i in 0..records {
        let app = (i % 16) as usize;
        let r = Rec { op: Op::Set, key: (i % 100_000) as u32, stamp: i + 1 };
        master[app].insert(r.key, r.stamp);
        q.push_back(r.to_vec());
        if q.len() >= 64 {
            while let Some(b) = q.pop_front() {
                if let Some(r) = Rec::decode(&b) {
                    backup[app].insert(r.key, r.stamp);
                }
            }
        }
    }
    while let Some(b) = q.pop_front() {
        if let Some(r) = Rec::decode(&b) {
            backup[(r.stamp as usize - 1) % 16].insert(r.key, r.stamp);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(&backup);
    records as f64 / secs
}

pub fn run(records: u64) -> Result<()> {
    println!(
        "core benchmark: {records} dynamic records through two in-memory nodes (16 apps, window 64, backlog 64 KiB)"
    );
    // Best of three, alternating, so both see the same machine conditions.
    let (mut base, mut eng, mut frames) = (0f64, 0f64, 0u64);
    for _ in 0..3 {
        base = base.max(baseline_run(records));
        let (e, f) = engine_run(records)?;
        if e > eng {
            (eng, frames) = (e, f);
        }
    }
    println!("  baseline (encode, queue, apply; no protocol): {:>12.0} records/s", base);
    println!(
        "  checkpoint engine, acknowledged end to end:  {:>12.0} records/s  ({} frames, {:.1} records/frame)",
        eng,
        frames,
        records as f64 / frames.max(1) as f64
    );
    println!("  ratio engine/baseline: {:.3}", eng / base);
    let size = std::mem::size_of::<BenchNode>();
    println!(
        "memory: Node<16 apps, 64-frame window, 64 KiB backlog> = {size} bytes ({:.1} KiB); of which backlog 65536, engine state {} bytes",
        size as f64 / 1024.0,
        size - 65536
    );
    println!(
        "        Node<8, 16, 8 KiB> (the simulator's) = {} bytes; Node<2, 8, 2 KiB> (an MCU-sized node) = {} bytes",
        std::mem::size_of::<msm_sim::sim::SimNode>(),
        std::mem::size_of::<Node<2, 8, 2048>>()
    );
    Ok(())
}
