//! `cargo xtask bench --vs redis`: the checkpoint system against Redis
//! replication, side by side, real processes on loopback, the same data:
//!
//! 1. bulk: 1 M records of 100-byte values to a fresh backup (msm: backup
//!    start to In Sync) against a Redis full sync of 1 M 100-byte values
//!    (`REPLICAOF` to the link up with every key), diskless;
//! 2. acknowledged writes from an external client process: msm-client
//!    `set` + `wait` one at a time and 64 in flight per `wait`, against Redis
//!    `SET` + `WAIT 1 0` one at a time and 64 pipelined `SET` + one `WAIT`;
//! 3. the same 1 M records through a raw Unix socket copy, as the floor.
//!
//! Redis is Debian's `redis-server`, installed when missing and running as
//! root; otherwise the exact command is printed and the Redis half skipped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use msm_client::{Change, Client};
use msm_testkit::chassis::{Chassis, Reaped};

use crate::cmd;

const RECORDS: u64 = 1_000_000;
const VALUE: usize = 100;
/// Acknowledged writes timed, per mode.
const WRITES: u64 = 20_000;
const INFLIGHT: u64 = 64;

/// Throughput and latency of one acknowledged-write mode.
#[derive(Debug, Clone, Copy)]
struct Writes {
    per_s: f64,
    p50_us: f64,
    p99_us: f64,
}

fn writes(lat: &mut [Duration], changes: u64, total: Duration) -> Writes {
    lat.sort();
    let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)].as_secs_f64() * 1e6;
    Writes { per_s: changes as f64 / total.as_secs_f64(), p50_us: pct(50), p99_us: pct(99) }
}

fn value(i: u64) -> Vec<u8> {
    let mut v = format!("{i:020}").into_bytes();
    v.resize(VALUE, b'v');
    v
}

pub(crate) fn run() -> Result<()> {
    let bin = crate::soak::release_bins()?;
    println!(
        "msm vs Redis replication: real processes on loopback, {RECORDS} records of {VALUE}-byte values"
    );
    let floor = raw_copy()?;
    println!("  raw Unix socket copy of the records: {:.3} s", floor.as_secs_f64());
    let (msm_bulk, msm_one, msm_many) = msm(&bin)?;
    let redis = match redis_server()? {
        Some(server) => Some(redis(&server)?),
        None => None,
    };
    println!("\n  {:<44} {:>14} {:>14} {:>10}", "", "msm", "Redis", "msm/Redis");
    let row = |what: &str, m: f64, r: Option<f64>, unit: &str| {
        let ratio = r.map_or("-".to_string(), |r| format!("{:.2}", m / r));
        let r = r.map_or("skipped".to_string(), |r| format!("{r:.3} {unit}"));
        println!("  {what:<44} {:>14} {r:>14} {ratio:>10}", format!("{m:.3} {unit}"));
    };
    row("bulk of 1 M to a fresh backup (s)", msm_bulk.as_secs_f64(), redis.map(|r| r.0.as_secs_f64()), "s");
    for (what, m, r) in [
        ("one at a time", msm_one, redis.map(|r| r.1)),
        ("64 in flight per wait", msm_many, redis.map(|r| r.2)),
    ] {
        row(&format!("acked writes, {what} (changes/s)"), m.per_s, r.map(|r| r.per_s), "/s");
        row(&format!("acked writes, {what}, p50 (us)"), m.p50_us, r.map(|r| r.p50_us), "us");
        row(&format!("acked writes, {what}, p99 (us)"), m.p99_us, r.map(|r| r.p99_us), "us");
    }
    println!(
        "  bulk against the raw copy: {:.2}x its speed (goal >= 0.5)",
        floor.as_secs_f64() / msm_bulk.as_secs_f64()
    );
    if let Some(r) = redis {
        println!(
            "  goals: bulk <= 0.2x Redis ({:.2}x), acked writes >= 3x Redis ({:.2}x one at a time, {:.2}x 64 in flight), p99 no worse",
            msm_bulk.as_secs_f64() / r.0.as_secs_f64(),
            msm_one.per_s / r.1.per_s,
            msm_many.per_s / r.2.per_s
        );
    }
    Ok(())
}

/// The records through a Unix stream socket pair: length, key, value each.
fn raw_copy() -> Result<Duration> {
    let mut records = Vec::with_capacity(RECORDS as usize * (4 + 8 + VALUE));
    for i in 0..RECORDS {
        records.extend_from_slice(&((8 + VALUE) as u32).to_le_bytes());
        records.extend_from_slice(&i.to_le_bytes());
        records.extend_from_slice(&value(i));
    }
    let (mut a, mut b) = std::os::unix::net::UnixStream::pair()?;
    let start = Instant::now();
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0u64;
        let want = RECORDS * (4 + 8 + VALUE as u64);
        while got < want {
            let n = b.read(&mut buf)?;
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        Ok(got)
    });
    for chunk in records.chunks(1 << 20) {
        a.write_all(chunk)?;
    }
    drop(a);
    let got = reader.join().map_err(|_| anyhow::anyhow!("reader panicked"))??;
    if got != RECORDS * (4 + 8 + VALUE as u64) {
        bail!("raw copy: {got} bytes arrived");
    }
    Ok(start.elapsed())
}

/// (bulk, one at a time, 64 in flight) with two msm-node processes.
fn msm(bin: &Path) -> Result<(Duration, Writes, Writes)> {
    let dir = std::env::temp_dir().join(format!("msm-vs-redis-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut c = Chassis::new(&dir, bin);
    c.journal = false;
    c.common = ["--heartbeat-ms", "10", "--miss", "3", "--fdb", "0", "--process", "bench:1"]
        .map(String::from)
        .to_vec();
    let app = |slot: char| c.path(slot, "app").display().to_string();
    let (app_a, app_b) = (app('A'), app('B'));
    c.start('A', &["--app-socket", &app_a])?;
    c.wait("A master", Duration::from_secs(10), |c| Ok(c.role('A').as_deref() == Some("MASTER")))?;
    // The master's process holds a million records.
    let mut w = Client::connect(&app_a, "bench", 1, &[])?;
    for chunk in 0..RECORDS / 1000 {
        for i in chunk * 1000..(chunk + 1) * 1000 {
            w.send(Change::Set(i, value(i)));
        }
        w.flush()?;
        for _ in 0..1000 {
            w.accepted()?;
        }
    }
    // Bulk: backup start to In Sync.
    let t0 = Instant::now();
    c.start('B', &["--app-socket", &app_b])?;
    c.wait("in sync", Duration::from_secs(300), |c| Ok(c.in_sync('A')))?;
    let bulk = t0.elapsed();
    let j = c.checkpoint('B', Some("bench"))?;
    if j.first().map(|r| r.status.as_str()) != Some("OK") {
        bail!("msm bulk: the backup's bench stream is not OK: {j:?}");
    }
    println!("  msm: bulk of {RECORDS} records to a fresh backup in {:.3} s", bulk.as_secs_f64());
    let gap_after_bulk = max_gap_us(&c);
    // Acknowledged writes, one at a time.
    let mut lat = Vec::with_capacity(WRITES as usize);
    let t = Instant::now();
    for i in 0..WRITES {
        let s = Instant::now();
        let (seq, ok) = w.set_and_wait(i, &value(i + 7), Duration::from_secs(5))?;
        if !ok {
            bail!("msm: change {seq} not on the backup within 5 s");
        }
        lat.push(s.elapsed());
    }
    let one = writes(&mut lat, WRITES, t.elapsed());
    let gap_after_one = max_gap_us(&c);
    // 64 in flight per wait.
    let mut lat = Vec::new();
    let t = Instant::now();
    for b in 0..WRITES / INFLIGHT {
        let s = Instant::now();
        for i in 0..INFLIGHT {
            w.send(Change::Set(b * INFLIGHT + i, value(i + 9)));
        }
        // As the Redis side: the changes and one wait in one write.
        w.send_wait_all(Duration::from_secs(5));
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
    let many = writes(&mut lat, WRITES / INFLIGHT * INFLIGHT, t.elapsed());

    println!(
        "  msm: largest heartbeat gap through the bulk {:.1} ms, then writes one at a time {:.1} ms, then 64 in flight {:.1} ms (interval 10 ms)",
        gap_after_bulk as f64 / 1000.0,
        gap_after_one as f64 / 1000.0,
        max_gap_us(&c) as f64 / 1000.0
    );
    // A benchmark during which a node lost its peer measured a broken
    // chassis: 30 ms is the detection time (10 ms heartbeats, 3 missed).
    let gap = max_gap_us(&c);
    if gap >= 30_000 {
        bail!(
            "a node heard no heartbeat for {:.1} ms, past the 30 ms detection time: see the nodes' logs in {}",
            gap as f64 / 1000.0,
            dir.display()
        );
    }
    drop(w);
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
    Ok((bulk, one, many))
}

/// The protocol first: the largest silence either node heard between two of
/// the other's heartbeats since it came up, in µs.
fn max_gap_us(c: &Chassis) -> u64 {
    ['A', 'B']
        .iter()
        .filter_map(|s| c.switch(*s).ok())
        .flat_map(|s| s.peers)
        .map(|p| p.max_heartbeat_gap_us)
        .max()
        .unwrap_or(0)
}

/// `redis-server`, installed when missing and root; `None` (with the command) otherwise.
fn redis_server() -> Result<Option<PathBuf>> {
    let found = |p: &str| Path::new(p).exists().then(|| PathBuf::from(p));
    if let Some(p) = found("/usr/bin/redis-server") {
        return Ok(Some(p));
    }
    if !nix_is_root() {
        println!(
            "  SKIPPED the Redis half: redis-server is not installed and this is not root. Install it with\n    \
             sudo apt-get install -y redis-server"
        );
        return Ok(None);
    }
    println!("  installing Debian's redis-server (apt-get)");
    let _ = cmd::run(Command::new("apt-get").args(["update", "-q"]));
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "redis-server"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    Ok(found("/usr/bin/redis-server"))
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// A minimal RESP client: commands out, replies in.
struct Resp {
    out: TcpStream,
    input: BufReader<TcpStream>,
}

#[derive(Debug, PartialEq)]
enum Value {
    Simple(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Error(String),
    Array(usize),
}

impl Resp {
    fn connect(port: u16) -> Result<Resp> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        Ok(Resp { input: BufReader::new(s.try_clone()?), out: s })
    }

    fn encode(buf: &mut Vec<u8>, args: &[&[u8]]) {
        buf.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a);
            buf.extend_from_slice(b"\r\n");
        }
    }

    fn read(&mut self) -> Result<Value> {
        let mut line = String::new();
        self.input.read_line(&mut line)?;
        let line = line.trim_end();
        let (kind, rest) = line.split_at(1.min(line.len()));
        Ok(match kind {
            "+" => Value::Simple(rest.into()),
            "-" => Value::Error(rest.into()),
            ":" => Value::Int(rest.parse()?),
            "*" => Value::Array(rest.parse()?),
            "$" => {
                let n: i64 = rest.parse()?;
                if n < 0 {
                    Value::Bulk(None)
                } else {
                    let mut b = vec![0u8; n as usize + 2];
                    self.input.read_exact(&mut b)?;
                    b.truncate(n as usize);
                    Value::Bulk(Some(b))
                }
            }
            _ => bail!("RESP: unexpected reply line {line:?}"),
        })
    }

    fn call(&mut self, args: &[&[u8]]) -> Result<Value> {
        let mut b = Vec::new();
        Self::encode(&mut b, args);
        self.out.write_all(&b)?;
        match self.read()? {
            Value::Error(e) => bail!("redis {}: {e}", String::from_utf8_lossy(args[0])),
            v => Ok(v),
        }
    }

    fn info_field(&mut self, section: &str, field: &str) -> Result<Option<String>> {
        let Value::Bulk(Some(text)) = self.call(&[b"INFO", section.as_bytes()])? else { return Ok(None) };
        let text = String::from_utf8_lossy(&text).into_owned();
        Ok(text.lines().find_map(|l| l.strip_prefix(&format!("{field}:")).map(|v| v.trim().to_string())))
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

fn start_redis(server: &Path, dir: &Path) -> Result<(Reaped, u16)> {
    let port = free_port()?;
    let child = Command::new(server)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args([
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
            "--repl-diskless-load",
            "on-empty-db",
        ])
        .args(["--dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting redis-server")?;
    let r = Reaped(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Resp::connect(port).is_err() {
        if Instant::now() > deadline {
            bail!("redis-server on port {port} did not start");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok((r, port))
}

/// (full sync, one at a time, 64 pipelined) with a Redis master and replica.
fn redis(server: &Path) -> Result<(Duration, Writes, Writes)> {
    let dir = std::env::temp_dir().join(format!("redis-vs-msm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("m"))?;
    std::fs::create_dir_all(dir.join("r"))?;
    let (_m, mport) = start_redis(server, &dir.join("m"))?;
    let (_r, rport) = start_redis(server, &dir.join("r"))?;
    let mut m = Resp::connect(mport)?;
    let version = m.info_field("server", "redis_version")?.unwrap_or_default();
    // The master holds a million 100-byte values.
    for chunk in 0..RECORDS / 10_000 {
        let mut b = Vec::new();
        for i in chunk * 10_000..(chunk + 1) * 10_000 {
            Resp::encode(&mut b, &[b"SET", i.to_string().as_bytes(), &value(i)]);
        }
        m.out.write_all(&b)?;
        for _ in 0..10_000 {
            m.read()?;
        }
    }
    // Full sync: REPLICAOF until the link is up with every key.
    let mut r = Resp::connect(rport)?;
    let t0 = Instant::now();
    r.call(&[b"REPLICAOF", b"127.0.0.1", mport.to_string().as_bytes()])?;
    loop {
        let up = r.info_field("replication", "master_link_status")?.as_deref() == Some("up");
        if up && r.call(&[b"DBSIZE"])? == Value::Int(RECORDS as i64) {
            break;
        }
        if t0.elapsed() > Duration::from_secs(300) {
            bail!("redis replica never synced");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let sync = t0.elapsed();
    println!(
        "  Redis {version}: full sync of {RECORDS} keys to a fresh replica in {:.3} s (diskless)",
        sync.as_secs_f64()
    );
    // SET + WAIT 1 0, one at a time.
    let mut lat = Vec::new();
    let t = Instant::now();
    for i in 0..WRITES {
        let s = Instant::now();
        m.call(&[b"SET", i.to_string().as_bytes(), &value(i + 7)])?;
        if m.call(&[b"WAIT", b"1", b"0"])? != Value::Int(1) {
            bail!("redis WAIT did not reach the replica");
        }
        lat.push(s.elapsed());
    }
    let one = writes(&mut lat, WRITES, t.elapsed());
    // 64 pipelined SET + one WAIT 1 0.
    let mut lat = Vec::new();
    let t = Instant::now();
    for b in 0..WRITES / INFLIGHT {
        let s = Instant::now();
        let mut buf = Vec::new();
        for i in 0..INFLIGHT {
            Resp::encode(&mut buf, &[b"SET", (b * INFLIGHT + i).to_string().as_bytes(), &value(i + 9)]);
        }
        Resp::encode(&mut buf, &[b"WAIT", b"1", b"0"]);
        m.out.write_all(&buf)?;
        for _ in 0..INFLIGHT {
            m.read()?;
        }
        if m.read()? != Value::Int(1) {
            bail!("redis WAIT did not reach the replica");
        }
        lat.push(s.elapsed());
    }
    let many = writes(&mut lat, WRITES / INFLIGHT * INFLIGHT, t.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
    Ok((sync, one, many))
}
