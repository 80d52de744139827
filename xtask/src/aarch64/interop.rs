//! The aarch64 board and the x86 Linux node as one chassis
//! (`cargo xtask qemu-test --board aarch64-msm`, a CI step), and the board
//! alone (`cargo xtask qemu --board aarch64-msm`).
//!
//! The board (`msm-aarch64`, slot B) runs in QEMU with its flash on pflash
//! bank 1 (a host file: it survives the guest's restarts) and the chassis
//! key provisioned into that flash's last erase block; the x86 node
//! (`msm-node` of the emulation, slot A, with the change journal) runs in
//! the same network namespace. Two backplane paths: UDP over each of the
//! guest's two NICs. In order, each with a deadline:
//!
//! 1. A is master with a saved configuration and churn; the board boots
//!    and syncs (bulk, then every change): A says In Sync, and the board's
//!    log says the saved configuration reached its MTD flash.
//! 2. A is SIGKILLed: the board takes over. A restarts as its backup and
//!    syncs from it; every change A's journal reported checkpointed is in
//!    A's tables, which now come from the board.
//! 3. The guest is killed: A takes over. The guest restarts, boots the
//!    saved configuration from its flash, and A is In Sync again.
//! 4. One NIC's link goes down (QEMU's `set_link`): nothing fails over, the
//!    path shows DOWN, and A stays In Sync; the link comes back.
//!
//! It prints the failover times, with the board as backup and as master.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use msm_control::Request;
use msm_testkit::chassis::Chassis;

use super::guest::{self, Guest, GuestConfig, Nic};
use super::netns::Netns;
use super::{initramfs, kernel, modules, toolchain};

/// The board's package and binary.
const PACKAGE: &str = "msm-aarch64";
/// The guest's UDP port, the same on both NICs.
const GUEST_PORT: u16 = 7000;
/// The x86 node's UDP port for path k is `NODE_BASE + k`; it reaches the
/// guest's path k at `127.0.0.1:FORWARD_BASE + k`.
const NODE_BASE: u16 = 15500;
const FORWARD_BASE: u16 = 15600;
const PATHS: usize = 2;
/// The chassis' heartbeat interval in CI, and misses before a peer is lost.
const HEARTBEAT_MS: u64 = 100;
const MISS: u8 = 3;
/// Bytes of one erase block of the board's flash: the last one holds the key.
const ERASE: u64 = 256 * 1024;
const STEP: Duration = Duration::from_secs(120);

/// What every run of the board needs, built or taken from the cache.
pub(crate) struct Board {
    kernel: PathBuf,
    initrd: PathBuf,
    pub(crate) work: PathBuf,
}

/// Toolchain, kernel, MTD modules, the board's binary and its initramfs.
pub(crate) fn prepare(dir: &Path) -> Result<Board> {
    let cache = dir.join("cache");
    toolchain::ensure()?;
    let kernel = kernel::fetch(&cache)?;
    let busybox = kernel::busybox(&cache)?;
    modules::build(&kernel, &cache)?;
    let binary = toolchain::build_static(PACKAGE, PACKAGE)?;
    let size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);
    println!("aarch64 board: {} ({size} bytes, static, before stripping)", binary.display());
    let work = dir.join("board");
    std::fs::create_dir_all(&work)?;
    let initrd = work.join("initramfs.cpio.gz");
    initramfs::build(&busybox, &initramfs::board_modules(&kernel)?, &binary, &initrd)?;
    Ok(Board { kernel: kernel.image(), initrd, work })
}

/// Write the chassis key into the last erase block of the board's flash
/// file (created erased if missing), as the board reads it at boot.
pub(crate) fn provision(flash: &Path, key: &[u8; msm_flash::key_block::KEY_BYTES]) -> Result<()> {
    use std::io::{Seek, SeekFrom};
    guest::ensure_flash(flash)?;
    let mut f = std::fs::OpenOptions::new().write(true).open(flash)?;
    f.seek(SeekFrom::Start(guest::FLASH_BYTES - ERASE))?;
    f.write_all(&msm_flash::key_block::encode(key))?;
    f.sync_all().with_context(|| format!("writing the key block of {}", flash.display()))
}

/// The board's command line: slot B, both paths, the key from its flash.
fn board_args(heartbeat_ms: u64) -> Vec<String> {
    let mut args: Vec<String> =
        ["--slot", "B", "--control", "/msm.ctl", "--require-auth"].into_iter().map(String::from).collect();
    args.extend(["--heartbeat-ms".into(), heartbeat_ms.to_string(), "--miss".into(), MISS.to_string()]);
    for k in 0..PATHS {
        let (own, host) = (guest::nic_guest_ip(k), guest::nic_host_ip(k));
        args.extend(["--backplane".into(), format!("udp:{own}:{GUEST_PORT},{host}:{}", NODE_BASE + port(k))]);
    }
    args
}

fn port(k: usize) -> u16 {
    u16::try_from(k).unwrap_or(u16::MAX)
}

/// A guest of the board on `flash`, its console in `console` (under the board's work dir).
pub(crate) fn guest_config_for(board: &Board, flash: &Path, console: &str) -> GuestConfig {
    let config =
        GuestConfig { console_log: board.work.join(console), ..guest_config(board, flash, HEARTBEAT_MS) };
    let _ = std::fs::remove_file(&config.console_log);
    config
}

fn guest_config(board: &Board, flash: &Path, heartbeat_ms: u64) -> GuestConfig {
    GuestConfig {
        kernel: board.kernel.clone(),
        initrd: board.initrd.clone(),
        flash: flash.to_path_buf(),
        nics: (0..PATHS).map(|k| Nic { host_port: FORWARD_BASE + port(k), guest_port: GUEST_PORT }).collect(),
        args: board_args(heartbeat_ms),
        kernel_params: vec!["quiet".into()],
        console_log: board.work.join("console.log"),
        memory_mib: 256,
    }
}

/// `cargo xtask qemu --board aarch64-msm`: the board alone, its console
/// here, until it powers off (Ctrl-C stops it).
pub(crate) fn run_alone(dir: &Path, key_file: Option<&Path>) -> Result<()> {
    let board = prepare(dir)?;
    let flash = board.work.join("flash.img");
    if let Some(k) = key_file {
        provision(&flash, &crate::keyfile::read(k)?)?;
    }
    let netns = Arc::new(Netns::create()?);
    let mut g = Guest::start(guest_config(&board, &flash, HEARTBEAT_MS), netns)?;
    println!("console: {} (flash {})", board.work.join("console.log").display(), flash.display());
    let status = g.wait_exit(Duration::from_secs(24 * 3600))?;
    print!("{}", g.console_text());
    println!("guest exited: {status}");
    Ok(())
}

/// `cargo xtask qemu-test --board aarch64-msm`: the flow at 100 ms heartbeats.
pub(crate) fn interop(dir: &Path) -> Result<()> {
    let board = prepare(dir)?;
    flash_checks(&board, true)?;
    interop_at(&board, HEARTBEAT_MS).map(drop)
}

/// The board's flash in the guest, before any chassis: the bench on each
/// MTD device, then (`soak`) power cuts during saves.
fn flash_checks(board: &Board, soak: bool) -> Result<()> {
    let netns = Arc::new(Netns::create()?);
    flash_bench(board, &netns)?;
    if soak {
        super::flash_soak::run(board, &netns, 6, 1)?;
    }
    Ok(())
}

/// `cargo xtask bench --board aarch64-msm`: the flow at 10 ms and at 100 ms
/// heartbeats; the failover times of each.
pub(crate) fn bench(dir: &Path) -> Result<()> {
    let board = prepare(dir)?;
    flash_checks(&board, false)?;
    let mut rows = Vec::new();
    for hb in [10, HEARTBEAT_MS] {
        rows.push((hb, interop_at(&board, hb)?));
    }
    println!("aarch64 board, failover (SIGKILL to the other module MASTER), heartbeats x {MISS}:");
    for (hb, (as_backup, as_master)) in rows {
        println!(
            "  {hb:>3} ms heartbeats: board as backup takes over in {:.0} ms; as master, the x86 node in {:.0} ms",
            as_backup.as_secs_f64() * 1e3,
            as_master.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// The flow with `heartbeat_ms` heartbeats: the failover times with the
/// board as backup and as master.
fn interop_at(board: &Board, heartbeat_ms: u64) -> Result<(Duration, Duration)> {
    let t0 = Instant::now();
    let bin = crate::soak::release_bins()?;
    let netns = Arc::new(Netns::create()?);
    let chassis_dir = board.work.join("chassis");
    let _ = std::fs::remove_dir_all(&chassis_dir);
    std::fs::create_dir_all(&chassis_dir)?;
    let mut c = Chassis::new(&chassis_dir, &bin);
    c.launcher = launcher(&netns);
    c.common = vec![
        "--heartbeat-ms".into(),
        heartbeat_ms.to_string(),
        "--miss".into(),
        MISS.to_string(),
        "--churn".into(),
        "200".into(),
        "--fdb".into(),
        "2000".into(),
    ];
    c.backplanes[0] = (0..PATHS)
        .map(|k| format!("udp:127.0.0.1:{},127.0.0.1:{}", NODE_BASE + port(k), FORWARD_BASE + port(k)))
        .collect();
    let flash = board.work.join("flash.img");
    let _ = std::fs::remove_file(&flash);
    let _ = std::fs::remove_file(board.work.join("console.log"));

    // 1. A master with a saved configuration; the board boots and syncs.
    c.start('A', &[])?;
    c.wait("A master", STEP, |c| Ok(c.role('A').as_deref() == Some("MASTER")))?;
    let lines: Vec<String> = (0..400).map(|i| format!("create vlan board{i:03} tag {}", 100 + i)).collect();
    let _: msm_control::Configured = c.ask('A', &Request::Configure { lines, wait: None })?;
    let saved: msm_control::Saved = c.ask('A', &Request::Save { which: None, wait: None })?;
    provision(&flash, &crate::keyfile::read(&c.key_path())?)?;
    let mut g = Guest::start(guest_config(board, &flash, heartbeat_ms), Arc::clone(&netns))?;
    g.wait_for("chassis key from /dev/mtd0", STEP).context("the board did not read the provisioned key")?;
    g.wait_for("MSM-B up", STEP).context("the board's node did not start")?;
    c.wait("A in sync with the board", STEP, |c| Ok(c.in_sync('A')))?;
    g.wait_for(
        &format!("primary.cfg: the master's saved configuration, {} bytes, on flash", saved.bytes),
        STEP,
    )
    .context("the saved configuration did not reach the board's MTD flash")?;
    println!("  1. the board synced: bulk and changes; primary.cfg ({} bytes) on its MTD flash", saved.bytes);

    // 2. A killed: the board takes over with every acknowledged change.
    // Churn goes on: kill A with changes checkpointed and some not yet.
    let made = c.stream('A', "fdb")?.changes;
    c.wait("churn after the sync", STEP, |c| Ok(c.stream('A', "fdb")?.changes >= made + 200))?;
    c.kill('A')?;
    let killed = Instant::now();
    g.wait_for("MSM-B: Promoted", STEP).context("the board did not take over")?;
    let board_took_over = killed.elapsed();
    let journal = c.journal('A')?;
    c.start('A', &[])?;
    c.wait("A backup of the board, in sync", STEP, |c| {
        let s = c.switch('A')?;
        Ok(s.role == "BACKUP" && s.master.as_deref() == Some("B") && s.state.contains("In Sync"))
    })?;
    let state = c.app_state('A')?;
    let verified = journal.verify(&state).map_err(anyhow::Error::msg)?;
    println!(
        "  2. A SIGKILLed: the board was master {:.0} ms later; all {verified} checkpointed changes held",
        board_took_over.as_secs_f64() * 1e3
    );

    // 3. The guest killed: A takes over; the guest restarts from its flash and resyncs.
    g.kill()?;
    let killed = Instant::now();
    c.wait("A master", STEP, |c| Ok(c.role('A').as_deref() == Some("MASTER")))?;
    let a_took_over = killed.elapsed();
    g.restart()?;
    g.wait_for(&format!("booting primary.cfg ({} bytes)", saved.bytes), STEP)
        .context("the board did not boot its saved configuration from flash")?;
    c.wait("A in sync with the restarted board", STEP, |c| Ok(c.in_sync('A')))?;
    println!(
        "  3. guest SIGKILLed: A was master {:.0} ms later; the guest rebooted primary.cfg from its flash and resynced",
        a_took_over.as_secs_f64() * 1e3
    );

    // 4. One of two paths cut: nothing fails over.
    let term = c.switch('A')?.term;
    g.set_link(1, false)?;
    c.wait("path 2 DOWN", STEP, |c| Ok(c.switch('A')?.paths.get(1).is_some_and(|p| p.state == "DOWN")))?;
    let until = Instant::now() + Duration::from_millis(10 * heartbeat_ms);
    c.wait("ten heartbeats with one path", STEP, |_| Ok(Instant::now() >= until))?;
    let s = c.switch('A')?;
    if s.term != term || !s.in_sync || s.role != "MASTER" {
        bail!("one path cut changed the chassis: {s:?}");
    }
    g.set_link(1, true)?;
    c.wait("path 2 up again", STEP, |c| Ok(c.switch('A')?.paths.get(1).is_some_and(|p| p.state == "up")))?;
    println!("  4. one of two paths cut for {} ms: no failover, still In Sync", 10 * heartbeat_ms);
    println!(
        "aarch64 interop passed in {:.0} s; heartbeats {heartbeat_ms} ms x {MISS}; \
         failover: board as backup {:.0} ms, board as master {:.0} ms",
        t0.elapsed().as_secs_f64(),
        board_took_over.as_secs_f64() * 1e3,
        a_took_over.as_secs_f64() * 1e3
    );
    Ok((board_took_over, a_took_over))
}

/// The board's flash, measured: save and mount times of a 300 KB
/// configuration on each MTD device the guest has (`--bench-flash`).
fn flash_bench(board: &Board, netns: &Arc<Netns>) -> Result<()> {
    // pflash (bank 1 on a file; QEMU overwrites on program), then the
    // patched mtdram (RAM-backed; programs AND as NOR does, so a word
    // programmed twice would show).
    for (mtd, what) in [("/dev/mtd0", "pflash"), ("/dev/mtd1", "NOR-semantics mtdram")] {
        let scratch = board.work.join("bench-flash.img");
        let _ = std::fs::remove_file(&scratch);
        let mut config = guest_config_for(board, &scratch, "bench-console.log");
        config.args.extend(["--mtd".into(), mtd.into(), "--bench-flash".into(), (300 * 1000).to_string()]);
        let mut g = Guest::start(config, Arc::clone(netns))?;
        let line =
            g.wait_for("flash bench:", STEP).with_context(|| format!("the board's flash bench on {mtd}"))?;
        g.wait_exit(STEP)?;
        println!("  0. {mtd} ({what}): {}", line.trim().trim_start_matches("flash bench: "));
    }
    Ok(())
}

/// `ip netns exec NAME`: what the x86 node runs under, so it shares the
/// guest's loopback.
fn launcher(netns: &Netns) -> Vec<String> {
    let c = netns.command("msm-node");
    std::iter::once(c.get_program().to_string_lossy().into_owned())
        .chain(c.get_args().map(|a| a.to_string_lossy().into_owned()))
        .take_while(|a| a != "msm-node")
        .collect()
}
