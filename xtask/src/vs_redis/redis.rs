//! The Redis half: a master and a replica of Debian's `redis-server`,
//! diskless, pinned as msm's master and backup are.
//!
//! - bulk: `REPLICAOF` on a fresh replica until the link is up with every key;
//! - one at a time: `SET` and `WAIT 1 0` in one write (as msm's client sends
//!   its change and its wait), both replies read;
//! - 64 in flight: 64 pipelined `SET` and one `WAIT 1 0`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use msm_testkit::chassis::Reaped;

use super::placement::{Part, Placement};
use super::{Run, Shape, Writes, value};
use crate::cmd;

/// `redis-server`, installed when missing and root; `None` (with the command) otherwise.
pub(crate) fn server() -> Result<Option<PathBuf>> {
    let found = |p: &str| Path::new(p).exists().then(|| PathBuf::from(p));
    if let Some(p) = found("/usr/bin/redis-server") {
        return Ok(Some(p));
    }
    if !is_root() {
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

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// The server's version, for the report.
pub(crate) fn version(server: &Path) -> String {
    cmd::output(Command::new(server).arg("--version"))
        .ok()
        .and_then(|v| v.split_whitespace().find_map(|w| w.strip_prefix("v=").map(String::from)))
        .unwrap_or_else(|| "?".into())
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

fn start(server: &Path, dir: &Path, part: Part, place: &Placement) -> Result<(Reaped, u16)> {
    let port = free_port()?;
    let child = place
        .command(part, server)
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

/// One run: full sync, one at a time, 64 pipelined.
pub(crate) fn run(server: &Path, shape: &Shape, place: &Placement) -> Result<Run> {
    let dir = std::env::temp_dir().join(format!("redis-vs-msm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("m"))?;
    std::fs::create_dir_all(dir.join("r"))?;
    let (_m, mport) = start(server, &dir.join("m"), Part::Master, place)?;
    let (_r, rport) = start(server, &dir.join("r"), Part::Backup, place)?;
    let mut m = Resp::connect(mport)?;
    // The master holds the records.
    for chunk in (0..shape.records).step_by(10_000) {
        let mut b = Vec::new();
        let end = (chunk + 10_000).min(shape.records);
        for i in chunk..end {
            Resp::encode(&mut b, &[b"SET", i.to_string().as_bytes(), &value(i, shape.value)]);
        }
        m.out.write_all(&b)?;
        for _ in chunk..end {
            m.read()?;
        }
    }
    place.pin_here(Part::Client)?;
    // Full sync: REPLICAOF until the link is up with every key.
    let mut r = Resp::connect(rport)?;
    let t0 = Instant::now();
    r.call(&[b"REPLICAOF", b"127.0.0.1", mport.to_string().as_bytes()])?;
    loop {
        let up = r.info_field("replication", "master_link_status")?.as_deref() == Some("up");
        if up && r.call(&[b"DBSIZE"])? == Value::Int(shape.records as i64) {
            break;
        }
        if t0.elapsed() > Duration::from_secs(300) {
            bail!("the Redis replica never synced");
        }
        std::thread::sleep(super::ASK_EVERY);
    }
    let bulk = t0.elapsed();
    // SET and WAIT 1 0 in one write, one at a time.
    let mut lat = Vec::with_capacity(shape.writes as usize);
    let t = Instant::now();
    let mut buf = Vec::new();
    for i in 0..shape.writes {
        let s = Instant::now();
        buf.clear();
        Resp::encode(&mut buf, &[b"SET", i.to_string().as_bytes(), &value(i + 7, shape.value)]);
        Resp::encode(&mut buf, &[b"WAIT", b"1", b"0"]);
        m.out.write_all(&buf)?;
        if m.read()? != Value::Simple("OK".into()) || m.read()? != Value::Int(1) {
            bail!("Redis: SET {i} not acknowledged by the replica");
        }
        lat.push(s.elapsed());
    }
    let one = Writes::of(&mut lat, shape.writes, t.elapsed());
    // 64 pipelined SET and one WAIT 1 0.
    let mut lat = Vec::new();
    let t = Instant::now();
    let batches = shape.writes / super::INFLIGHT;
    for b in 0..batches {
        let s = Instant::now();
        buf.clear();
        for i in 0..super::INFLIGHT {
            let key = (b * super::INFLIGHT + i).to_string();
            Resp::encode(&mut buf, &[b"SET", key.as_bytes(), &value(i + 9, shape.value)]);
        }
        Resp::encode(&mut buf, &[b"WAIT", b"1", b"0"]);
        m.out.write_all(&buf)?;
        for _ in 0..super::INFLIGHT {
            m.read()?;
        }
        if m.read()? != Value::Int(1) {
            bail!("Redis: WAIT did not reach the replica");
        }
        lat.push(s.elapsed());
    }
    let many = Writes::of(&mut lat, batches * super::INFLIGHT, t.elapsed());
    place.unpin_here()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Run { bulk, one, many, gaps: None })
}
