//! `cargo xtask bench`: core throughput and memory.
//!
//! Two engines wired back to back in memory (no simulator, no checkers): the
//! master records changes, frames go straight across, the backup applies them
//! into a hash map. The baseline, measured in the same run, does the same
//! application work (encode the record, copy it through a queue, apply it to a
//! hash map) without any protocol; the ratio shows what checkpointing costs.
//! The engine runs twice, with and without the chassis key: the ratio of the
//! two is what authenticating every frame costs.

use std::collections::{HashMap, VecDeque};
use std::time::Instant as Wall;

use anyhow::{Result, bail};
use msm_checkpoint::wire::{self, Body, FrameWriter, Record};
use msm_checkpoint::{AppId, AppRegistry, Config, Host, HostError, ItemKind, Key, Node, Slot, Stream};
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

fn node(slot: Slot, key: Option<&Key>) -> Result<BenchNode> {
    let mut reg = AppRegistry::<16>::new();
    for i in 0..16 {
        reg.register(&format!("app{i}"), 1, &[]).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let mut c = Config::new(slot);
    c.max_frame = 8192;
    let mut n = BenchNode::new(c, reg, Instant::ZERO).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(k) = key {
        n.set_key(k);
    }
    Ok(n)
}

/// One engine run: records per second, frames, and the p50 and p99 of the
/// time from `record_change` to the change being checkpointed (ns).
struct EngineRun {
    rate: f64,
    frames: u64,
    p50_ns: u64,
    p99_ns: u64,
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

fn engine_run(records: u64, key: Option<&Key>) -> Result<EngineRun> {
    let mut n = [node(Slot::A, key)?, node(Slot::B, key)?];
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
    let mut latencies: Vec<u64> = Vec::with_capacity(records as usize);
    let mut batch: Vec<Wall> = Vec::with_capacity(64);
    let start = Wall::now();
    let now = Instant::from_micros(t);
    for i in 0..records {
        batch.push(Wall::now());
        let app = (i % 16) as u8;
        let r = Rec { op: Op::Set, key: (i % 100_000) as u32, stamp: i + 1 };
        r.encode(&mut rec);
        let id = AppId::new(app);
        n[0].record_change(id, &rec).map_err(|e| anyhow::anyhow!("{e}"))?;
        h[0].apps[app as usize].insert(r.key, r.stamp);
        if i % 64 == 63 {
            frames += pump(now, &mut n, &mut h, &mut buf);
            // In memory a pump drains everything: the batch is checkpointed now.
            let done = Wall::now();
            latencies.extend(batch.drain(..).map(|t| (done - t).as_nanos() as u64));
        }
    }
    frames += pump(now, &mut n, &mut h, &mut buf);
    let done = Wall::now();
    latencies.extend(batch.drain(..).map(|t| (done - t).as_nanos() as u64));
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
    latencies.sort_unstable();
    let pct = |p: usize| latencies.get(latencies.len() * p / 100).copied().unwrap_or(0);
    Ok(EngineRun { rate: records as f64 / secs, frames, p50_ns: pct(50), p99_ns: pct(99) })
}

/// Bytes of the Data frame that carries `records` changes of `payload`
/// bytes in one run, as sent (version 2).
fn data_frame_len(payload: usize, records: usize) -> usize {
    let mut buf = vec![0u8; 128 + records * (payload + 4)];
    let Ok(mut w) = FrameWriter::new(&mut buf, 0, 1, 0x1FF, &Body::Data) else { return 0 };
    let rec = vec![0x5Au8; payload];
    let ok = w.push(&Record::Run { stream: 2, epoch: 1, first_seq: 1000 }).is_ok()
        && (0..records).all(|_| w.push(&Record::Change(&rec)).is_ok());
    if ok { w.finish() } else { 0 }
}

/// What the authenticated envelope adds to a version 1 frame: the key id,
/// incarnation and counter, and the tag.
const V2_EXTRA: usize = wire::HEADER_LEN - 4 + msm_checkpoint::TAG_LEN;

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
    // Best of three, alternating, so all see the same machine conditions.
    let key = Key::new([0x5A; 32]);
    let (mut base, mut open, mut auth): (f64, Option<EngineRun>, Option<EngineRun>) = (0.0, None, None);
    for _ in 0..3 {
        base = base.max(baseline_run(records));
        let o = engine_run(records, None)?;
        if open.as_ref().is_none_or(|b| o.rate > b.rate) {
            open = Some(o);
        }
        let a = engine_run(records, Some(&key))?;
        if auth.as_ref().is_none_or(|b| a.rate > b.rate) {
            auth = Some(a);
        }
    }
    let (open, auth) = (
        open.unwrap_or(EngineRun { rate: 0.0, frames: 0, p50_ns: 0, p99_ns: 0 }),
        auth.unwrap_or(EngineRun { rate: 0.0, frames: 0, p50_ns: 0, p99_ns: 0 }),
    );
    println!("  baseline (encode, queue, apply; no protocol): {:>12.0} records/s", base);
    for (what, r) in [("unauthenticated", &open), ("authenticated (HMAC-SHA256)", &auth)] {
        println!(
            "  engine, {what:<28} {:>12.0} records/s  ({} frames of up to 8 KiB, {:.1} records/frame), latency p50 {:.1} us p99 {:.1} us",
            r.rate,
            r.frames,
            records as f64 / r.frames.max(1) as f64,
            r.p50_ns as f64 / 1000.0,
            r.p99_ns as f64 / 1000.0
        );
    }
    println!("  ratio engine/baseline: {:.3} (authenticated {:.3})", open.rate / base, auth.rate / base);
    println!(
        "  ratio authenticated/unauthenticated: {:.3} (goal >= 0.85); p99 {:.2}x",
        auth.rate / open.rate,
        auth.p99_ns as f64 / open.p99_ns.max(1) as f64
    );
    println!("framing efficiency (payload bytes / frame bytes), authenticated v2 against v1's envelope:");
    for payload in [64usize, 256, 1024] {
        let n = data_frame_len(payload, 1);
        println!(
            "  one {payload:>4}-byte change a frame: {n:>4}-byte frame, {:>5.1} % (v1 {:>5.1} %)",
            100.0 * payload as f64 / n as f64,
            100.0 * payload as f64 / (n - V2_EXTRA) as f64
        );
    }
    let p = msm_sim::record::LEN;
    let per = (1..).take_while(|&k| data_frame_len(p, k) <= 1024).last().unwrap_or(0);
    let n = data_frame_len(p, per);
    println!(
        "  a full 1 KiB frame of {p}-byte changes ({per} of them): {:>5.1} % (v1 {:>5.1} %)",
        100.0 * (per * p) as f64 / n as f64,
        100.0 * (per * p) as f64 / (n - V2_EXTRA) as f64
    );
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
