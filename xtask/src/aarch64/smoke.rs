//! The end-to-end smoke flow of the aarch64 board: toolchain, kernel,
//! modules, a throwaway guest program ([`GUEST_MAIN`]) built static for
//! aarch64, the initramfs, then three boots in one network namespace on one
//! flash file: the program reads MEMGETINFO, bumps a boot counter in the
//! flash, probes program semantics and exchanges UDP over both NICs with
//! this process (sockets inside the namespace). Boot 1 runs to power-off;
//! boot 2 is killed (SIGKILL) right after writing its counter; boot 3 must
//! find that counter and runs to power-off. Prints how long each step took.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::guest::{self, Guest, GuestConfig, Nic};
use super::netns::Netns;
use super::{initramfs, kernel, modules, toolchain};

/// The guest program's source (std only).
const GUEST_MAIN: &str = include_str!("smoke_guest.rs");
const GUEST_MANIFEST: &str = "[package]\nname = \"a64-smoke\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\
publish = false\n\n# Not part of the msm-ha workspace.\n[workspace]\n\n[profile.release]\nopt-level = \"s\"\n";
/// The guest's UDP port, the same on both NICs.
const GUEST_PORT: u16 = 7000;
/// Host side, inside the namespace: NIC k's guest sends to `host_ip(k):HOST_BASE+k`…
const HOST_BASE: u16 = 15500;
/// …and this process reaches the guest at `127.0.0.1:FORWARD_BASE+k`.
const FORWARD_BASE: u16 = 15600;
const NICS: usize = 2;
const STEP: Duration = Duration::from_secs(60);

/// Runs the flow with everything under `dir` (normally `target/aarch64`).
pub(crate) fn run(dir: &Path) -> Result<()> {
    let mut times = Times::default();
    let cache = dir.join("cache");
    toolchain::ensure()?;
    times.mark("host packages");
    let kernel = kernel::fetch(&cache)?;
    let busybox = kernel::busybox(&cache)?;
    times.mark("kernel and busybox");
    modules::build(&kernel, &cache)?;
    times.mark("MTD modules");
    let work = dir.join("smoke");
    let program = build_guest_program(dir, &work)?;
    times.mark("guest program (static, build-std)");
    let initrd = work.join("initramfs.cpio.gz");
    initramfs::build(&busybox, &initramfs::board_modules(&kernel)?, &program, &initrd)?;
    times.mark("initramfs");

    let netns = Arc::new(Netns::create()?);
    let sockets = (0..NICS)
        .map(|k| netns.bind_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, HOST_BASE + port(k)))))
        .collect::<Result<Vec<_>>>()?;
    let flash = work.join("flash.img");
    let console_log = work.join("console.log");
    for old in [&flash, &console_log] {
        if old.exists() {
            std::fs::remove_file(old).with_context(|| format!("removing {}", old.display()))?;
        }
    }
    // mtd0: pflash bank 1 (the file); mtd1: mtdram with NOR semantics.
    let mut args = vec!["/dev/mtd0,/dev/mtd1".to_owned(), GUEST_PORT.to_string()];
    args.extend((0..NICS).map(|k| format!("{}:{}", guest::nic_host_ip(k), HOST_BASE + port(k))));
    let config = GuestConfig {
        kernel: kernel.image(),
        initrd,
        flash: flash.clone(),
        nics: (0..NICS).map(|k| Nic { host_port: FORWARD_BASE + port(k), guest_port: GUEST_PORT }).collect(),
        args,
        kernel_params: Vec::new(),
        console_log: console_log.clone(),
        memory_mib: 256,
    };
    times.mark("namespace, sockets");

    // Boot 1: the whole run, to power-off.
    let mut g = Guest::start(config, Arc::clone(&netns))?;
    let boot = boot_until_program(&g, 1)?;
    times.add("boot 1: QEMU start to /init", boot.0);
    times.add("boot 1: QEMU start to the program", boot.1);
    exchange(&g, &sockets)?;
    finish(&mut g)?;
    times.add("boot 1: QEMU start to power-off", g.uptime());
    let console1 = g.console_text();

    // Boot 2: killed right after its counter is written.
    g.restart()?;
    g.wait_for("smoke: previous boot counter 1 ", STEP)?;
    g.wait_for("smoke: boot counter 2 written", STEP)?;
    g.kill()?;
    times.add("boot 2: QEMU start to SIGKILL", g.uptime());

    // Boot 3: the counter survived the kill.
    g.restart()?;
    g.wait_for("smoke: previous boot counter 2 ", STEP)?;
    g.wait_for("smoke: boot counter 3 written", STEP)?;
    exchange(&g, &sockets)?;
    finish(&mut g)?;
    times.add("boot 3: QEMU start to power-off", g.uptime());
    drop(g);
    times.mark("three boots");

    println!("smoke: boot 1's console (all boots in {}):", console_log.display());
    for line in console1.lines().filter(|l| interesting(l)) {
        println!("  | {line}");
    }
    times.print();
    Ok(())
}

fn port(k: usize) -> u16 {
    u16::try_from(k).unwrap_or(u16::MAX)
}

/// Lines worth showing in the summary.
fn interesting(line: &str) -> bool {
    ["init:", "smoke:", "dev:", "mtd", "physmap", "0.flash", "cfi", "qemu:"].iter().any(|w| line.contains(w))
        || line.starts_with("mtd")
}

/// Writes the throwaway crate under `work/guest` (only what changed, so
/// cargo's cache holds) and builds it static into the cargo target dir `dir`.
fn build_guest_program(dir: &Path, work: &Path) -> Result<std::path::PathBuf> {
    let krate = work.join("guest");
    write_if_changed(&krate.join("Cargo.toml"), GUEST_MANIFEST)?;
    write_if_changed(&krate.join("src/main.rs"), GUEST_MAIN)?;
    toolchain::build_static_in(&krate, dir, "a64-smoke", "a64-smoke")
}

fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Waits for `/init` and for the program's first line; their times since QEMU started.
fn boot_until_program(g: &Guest, boot: u32) -> Result<(Duration, Duration)> {
    g.wait_for("init: up ", STEP).with_context(|| format!("boot {boot}: /init did not start"))?;
    let init = g.uptime();
    g.wait_for("smoke: start", STEP).with_context(|| format!("boot {boot}: the program did not start"))?;
    let program = g.uptime();
    g.wait_for(&format!("smoke: boot counter {boot} written"), STEP)?;
    Ok((init, program))
}

/// The UDP exchange on every NIC: answer the guest's hello (guest to host
/// through NIC k's NAT), then ping it through the port forward and read
/// the echo.
fn exchange(g: &Guest, sockets: &[UdpSocket]) -> Result<()> {
    let mut buf = [0u8; 1500];
    for (k, socket) in sockets.iter().enumerate() {
        socket.set_read_timeout(Some(STEP))?;
        let (n, from) = socket.recv_from(&mut buf).with_context(|| format!("no hello on path {k}"))?;
        let hello = String::from_utf8_lossy(&buf[..n]).into_owned();
        if hello != format!("hello {k} from the guest") {
            bail!("path {k}: unexpected datagram {hello:?} from {from}");
        }
        socket.send_to(format!("reply {k} from the host").as_bytes(), from)?;
        println!("smoke: path {k}: {hello:?} from {from}, answered");
    }
    g.wait_for("smoke: waiting on udp", STEP)?;
    for (k, socket) in sockets.iter().enumerate() {
        let to = SocketAddr::from((Ipv4Addr::LOCALHOST, FORWARD_BASE + port(k)));
        let ping = format!("ping {k}");
        socket.send_to(ping.as_bytes(), to)?;
        let (n, from) = socket.recv_from(&mut buf).with_context(|| format!("no echo through {to}"))?;
        let echo = String::from_utf8_lossy(&buf[..n]).into_owned();
        if echo != format!("echo {ping}") {
            bail!("path {k}: unexpected echo {echo:?} from {from}");
        }
        println!("smoke: path {k}: {ping:?} to {to}, {echo:?} back from {from}");
    }
    Ok(())
}

/// Waits for the program's success, its exit status 0 and QEMU's exit.
fn finish(g: &mut Guest) -> Result<()> {
    g.wait_until("smoke: done (or FAILED)", |l| l.starts_with("smoke: done") || l.contains("FAILED"), STEP)
        .and_then(|l| if l.contains("FAILED") { bail!("the guest program failed: {l}") } else { Ok(()) })?;
    g.wait_for("exited with status 0", STEP)?;
    let status = g.wait_exit(STEP)?;
    if !status.success() {
        bail!("qemu exited with {status} after the guest powered off");
    }
    Ok(())
}

/// Step durations, in order.
#[derive(Debug)]
struct Times {
    since: Instant,
    start: Instant,
    steps: Vec<(String, Duration)>,
}

impl Default for Times {
    fn default() -> Self {
        Self { since: Instant::now(), start: Instant::now(), steps: Vec::new() }
    }
}

impl Times {
    /// The time since the last mark, as `what`.
    fn mark(&mut self, what: &str) {
        self.steps.push((what.to_owned(), self.since.elapsed()));
        self.since = Instant::now();
    }

    /// A measured time that is not a step of its own.
    fn add(&mut self, what: &str, took: Duration) {
        self.steps.push((format!("  ({what})"), took));
    }

    fn print(&self) {
        println!("smoke: passed; times:");
        for (what, took) in &self.steps {
            println!("  {what:<42} {:>7.2} s", took.as_secs_f64());
        }
        println!("  {:<42} {:>7.2} s", "total", self.start.elapsed().as_secs_f64());
    }
}
