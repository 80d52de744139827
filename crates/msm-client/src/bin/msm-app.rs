//! `msm-app`: a process application for tests, demos and benchmarks. It
//! registers with its node and acts by role:
//! - master: writes `--count` changes (key `i % --keys`, value = `i` as
//!   text), `--inflight` at a time, then waits until the backup has them;
//!   after every successful wait it appends `key value` of each change to
//!   `--acked FILE`. With `--count 0` it writes until its node dies.
//! - backup: applies the state and the changes its node forwards; when the
//!   node takes over, it writes its table (`key value` lines) to `--dump
//!   FILE` and exits 0.
//!
//! It exits 0 when its node closes the connection, 1 on any other error.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use msm_client::{Change, Client, Error, Event, Role};

struct Args {
    socket: PathBuf,
    name: String,
    schema: u16,
    deps: Vec<String>,
    count: u64,
    keys: u64,
    inflight: u64,
    acked: Option<PathBuf>,
    dump: Option<PathBuf>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        socket: PathBuf::new(),
        name: String::new(),
        schema: 1,
        deps: Vec::new(),
        count: 0,
        keys: 1000,
        inflight: 16,
        acked: None,
        dump: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--socket" => a.socket = val()?.into(),
            "--name" => a.name = val()?,
            "--schema" => a.schema = val()?.parse().map_err(|e| format!("--schema: {e}"))?,
            "--dep" => a.deps.push(val()?),
            "--count" => a.count = val()?.parse().map_err(|e| format!("--count: {e}"))?,
            "--keys" => a.keys = val()?.parse().map_err(|e| format!("--keys: {e}"))?,
            "--inflight" => a.inflight = val()?.parse().map_err(|e| format!("--inflight: {e}"))?,
            "--acked" => a.acked = Some(val()?.into()),
            "--dump" => a.dump = Some(val()?.into()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.name.is_empty() || a.socket.as_os_str().is_empty() {
        return Err("usage: msm-app --socket PATH --name NAME [--schema N] [--dep D]... [--count N] [--keys K] [--inflight F] [--acked FILE] [--dump FILE]".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("msm-app: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) | Err(Error::Closed) => ExitCode::SUCCESS,
        Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("msm-app {}: {e}", args.name);
            ExitCode::from(1)
        }
    }
}

fn run(a: &Args) -> Result<(), Error> {
    let deps: Vec<&str> = a.deps.iter().map(String::as_str).collect();
    let mut c = Client::connect(&a.socket, &a.name, a.schema, &deps)?;
    let mut table = BTreeMap::new();
    loop {
        if c.role() == Role::Master {
            return write(&mut c, a);
        }
        match c.next_event(None)? {
            Some(Event::StateBegin { .. }) => table.clear(),
            Some(Event::Record(Change::Set(k, v))) => {
                table.insert(k, v);
            }
            Some(Event::Record(Change::Delete(k))) => {
                table.remove(&k);
            }
            Some(Event::Role(Role::Master)) => {
                if let Some(path) = &a.dump {
                    let mut text = String::new();
                    for (k, v) in &table {
                        text.push_str(&format!("{k} {}\n", String::from_utf8_lossy(v)));
                    }
                    std::fs::write(path, text)?;
                    return Ok(());
                }
            }
            _ => {}
        }
    }
}

fn write(c: &mut Client, a: &Args) -> Result<(), Error> {
    let mut acked = match &a.acked {
        Some(p) => Some(std::fs::OpenOptions::new().create(true).append(true).open(p)?),
        None => None,
    };
    let mut i = 0u64;
    while a.count == 0 || i < a.count {
        let batch: Vec<(u64, u64)> = (i..i + a.inflight).map(|n| (n % a.keys, n)).collect();
        for (k, n) in &batch {
            c.send(Change::Set(*k, n.to_string().into_bytes()));
        }
        c.flush()?;
        let mut last = 0;
        for _ in &batch {
            last = c.accepted()?;
        }
        if c.wait(last, Duration::from_secs(5))? {
            if let Some(f) = &mut acked {
                let lines: String = batch.iter().map(|(k, n)| format!("{k} {n}\n")).collect();
                f.write_all(lines.as_bytes())?;
            }
        }
        i += a.inflight;
    }
    Ok(())
}
