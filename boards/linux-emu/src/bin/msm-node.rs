//! `msm-node`: one management module as a Linux process.
//!
//! Exit codes: 0 stopped by SIGTERM/SIGINT, 1 bad arguments or start-up
//! failure, 2 flash image unusable (in use by another process, wrong size,
//! corrupt beyond recovery) or `--socket-group` names no group, 3 the operator asked for a reboot, 4 the
//! control or backplane socket path is held by a running process (another
//! node started with the same paths).
// The argument docs below are clap's --help text, where `<peer>` is meant literally, not as HTML.
#![allow(rustdoc::invalid_html_tags)]

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use msm_backplane::Link;
use msm_checkpoint::Slot;
use msm_linux_emu::app_server::AppServer;
use msm_linux_emu::backplane::Backplane;
use msm_linux_emu::control_access::Access;
use msm_linux_emu::control_server::ControlServer;
use msm_linux_emu::flash::BoardFlash;
use msm_linux_emu::journal::JournalWriter;
use msm_linux_emu::node::{Exit, MAX_CHURN, MAX_PATHS, MsmNode, Options};
use msm_linux_emu::process_apps::ProcessSpec;
use msm_linux_emu::socket_path::{self, Refused};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

#[derive(Parser, Debug)]
#[command(name = "msm-node", about = "One emulated MSM (management module)")]
struct Args {
    /// Slot: A or B; C and D in a chassis of three or four modules.
    #[arg(long, value_parser = ["A", "B", "C", "D"])]
    slot: String,
    /// Election priority (lower wins); default: from the saved configuration or flash settings.
    #[arg(long)]
    priority: Option<u8>,
    #[arg(long, default_value_t = 100)]
    heartbeat_ms: u64,
    /// Heartbeats missed before the peer is declared lost.
    #[arg(long, default_value_t = 3)]
    miss: u8,
    /// The flash image (created, 4 MiB, if missing).
    #[arg(long)]
    flash: PathBuf,
    /// The control socket for the `msm` CLI.
    #[arg(long)]
    control: PathBuf,
    /// Let this group's members use the control socket too (mode 0660); default: only the node's user and root (0600).
    #[arg(long, value_name = "NAME")]
    socket_group: Option<String>,
    /// unix:<own>:<peer> | udp:<bind>,<peer> | serial:<device>. Give it twice
    /// for two paths to the peer (the first is the primary): heartbeats go on
    /// both, data on the first alive, and the peer is lost only when both are silent.
    #[arg(long, required = true)]
    backplane: Vec<String>,
    /// State changes per second while master.
    #[arg(long, default_value_t = 0)]
    churn: u32,
    /// MAC table entries a fresh master starts with (at most 1 000 000, MAX_FDB).
    #[arg(long, default_value_t = 1000)]
    fdb: u32,
    /// Append the change journal here (for verifying takeovers).
    #[arg(long)]
    journal: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 4096)]
    max_frame: usize,
    /// Throttle the backplane to this many bytes per second (emulates a slow serial link).
    #[arg(long)]
    link_rate: Option<u64>,
    /// Run only these applications, comma-separated (e.g. devmgr,vlan for an MCU peer).
    #[arg(long, value_delimiter = ',')]
    apps: Option<Vec<String>>,
    /// An application that runs as its own process: NAME:SCHEMA[:DEP+DEP], e.g. acl:1:vlan
    /// (repeatable; every module of the chassis declares the same).
    #[arg(long = "process", value_parser = ProcessSpec::parse)]
    processes: Vec<ProcessSpec>,
    /// The socket process applications connect to (msm-client; docs/client-protocol.md).
    #[arg(long)]
    app_socket: Option<PathBuf>,
    /// The chassis key: 64 hex characters, mode 0600 (create one with `msm keygen PATH`).
    /// Every backplane frame is authenticated with it.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Refuse to start without --key-file (an unauthenticated backplane is
    /// open to anything that can send it a datagram).
    #[arg(long)]
    require_auth: bool,
    /// Start as if this module had never seen a term (the kept term in the
    /// flash settings is cleared). The recovery when the chassis' terms near
    /// their limit: stop every module, start each with this flag.
    #[arg(long)]
    forget_term: bool,
}

/// Exit code: a socket path is held by a running process.
const EXIT_PATH_IN_USE: u8 = 4;

fn refused(e: Refused) -> (u8, anyhow::Error) {
    match e {
        Refused::InUse(m) => (EXIT_PATH_IN_USE, anyhow::anyhow!(m)),
        Refused::Unusable(m) => (1, anyhow::anyhow!(m)),
    }
}

/// mimalloc, not glibc's malloc: glibc keeps freed small blocks in fast
/// bins and merges them all at the next large allocation. After a backup
/// took a million-row bulk, that merge held one loop turn for 80-90 ms
/// (perf: `malloc_consolidate`), eight heartbeat intervals of 10 ms, and the
/// master declared its backup lost. mimalloc frees a page at a time, and
/// another thread's frees lazily, so no allocation pays for a million frees.
///
/// Without transparent huge pages: mimalloc asks for them (`MADV_HUGEPAGE`)
/// on its arenas, and the first touch of each 2 MiB then zeroes all of it
/// in one page fault. Reading one 400 KB `configure` request took 6-14 ms
/// of a loop turn that way (perf: `do_huge_pmd_anonymous_page`,
/// `clear_page_erms`), more than a 10 ms heartbeat interval; with 4 KiB
/// pages the same work is spread thin. `main` turns them off first thing.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Warns when one loop turn outlasts a heartbeat interval (the protocol
/// comes first: nothing in a turn may hold heartbeats back), naming the
/// part that took the time; at most once a second.
struct TurnWatch {
    interval: Duration,
    last_warned: Option<std::time::Instant>,
    slow: u64,
}

impl TurnWatch {
    fn new(interval: Duration) -> Self {
        TurnWatch { interval, last_warned: None, slow: 0 }
    }

    /// One turn's times, each from the turn's start: after the engine's
    /// pump, after the operator's requests, after the process applications.
    fn turn(&mut self, slot: Slot, pumped: Duration, controlled: Duration, total: Duration) {
        if total <= self.interval {
            return;
        }
        self.slow += 1;
        if self.last_warned.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        self.last_warned = Some(std::time::Instant::now());
        log::warn!(
            "{slot}: a loop turn took {:.1} ms, longer than the {} ms heartbeat interval (engine {:.1} ms, \
             operator requests {:.1} ms, process applications {:.1} ms; {} such turns so far)",
            ms(total),
            self.interval.as_millis(),
            ms(pumped),
            ms(controlled - pumped),
            ms(total - controlled),
            self.slow
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> ExitCode {
    // For the whole process, before the engine's tables grow (see GLOBAL).
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!("msm-node: transparent huge pages stay on ({e}): page faults may cost loop turns");
    }
    // Bad arguments exit 1, as the operator guide says (clap's own is 2,
    // which this node gives an unusable flash image); help and version 0.
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let level = std::env::var("MSM_LOG").unwrap_or_else(|_| "info".into());
    log_init(&level);
    // Block the stop signals before any thread exists: they are read from a signalfd.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    if let Err(e) = mask.thread_block() {
        eprintln!("msm-node: blocking signals: {e}");
        return ExitCode::from(1);
    }
    // The node runs on the main thread's normal stack: building the engine
    // (its backlog inline, a quarter MiB) before boxing it fits even a
    // spawned thread's 2 MiB default in a debug build.
    match run(args, mask) {
        Ok(Some(Exit::Reboot)) => ExitCode::from(3),
        Ok(None) => ExitCode::SUCCESS,
        Err((code, e)) => {
            eprintln!("msm-node: {e:#}");
            ExitCode::from(code)
        }
    }
}

/// A minimal `log` backend to stderr (timestamps in ms since start).
fn log_init(level: &str) {
    struct Stderr(std::time::Instant);
    impl log::Log for Stderr {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, r: &log::Record<'_>) {
            if self.enabled(r.metadata()) {
                eprintln!("[{:>9.3}] {:<5} {}", self.0.elapsed().as_secs_f64() * 1000.0, r.level(), r.args());
            }
        }
        fn flush(&self) {}
    }
    let max = level.parse().unwrap_or(log::LevelFilter::Info);
    if log::set_boxed_logger(Box::new(Stderr(std::time::Instant::now()))).is_ok() {
        log::set_max_level(max);
    }
}

fn run(args: Args, mask: SigSet) -> Result<Option<Exit>, (u8, anyhow::Error)> {
    let start = |e: anyhow::Error| (1u8, e);
    let slot = Slot::new(args.slot.as_bytes()[0] - b'A').ok_or_else(|| start(anyhow::anyhow!("bad slot")))?;
    msm_linux_emu::churn::check_fdb(args.fdb).map_err(|e| start(anyhow::anyhow!(e)))?;
    if args.churn > MAX_CHURN {
        return Err(start(anyhow::anyhow!("--churn {}: at most {MAX_CHURN} changes per second", args.churn)));
    }
    let key = match &args.key_file {
        Some(p) => Some(msm_linux_emu::key_file::load(p).map_err(|e| start(anyhow::anyhow!(e)))?),
        None if args.require_auth => {
            return Err(start(anyhow::anyhow!(
                "--require-auth: no --key-file given (create a chassis key with `msm keygen PATH`)"
            )));
        }
        None => None,
    };
    let access = match &args.socket_group {
        Some(name) => Access::with_group(name).map_err(|e| (2, anyhow::anyhow!(e)))?,
        None => Access::owner_only(),
    };
    // Both sockets before anything else: a second node with our paths stops here.
    let control = ControlServer::bind(&args.control, access.clone()).map_err(refused)?;
    let mut apps = match &args.app_socket {
        Some(p) => Some(AppServer::bind(p, access.clone()).map_err(refused)?),
        None => None,
    };
    if args.backplane.len() > MAX_PATHS {
        return Err((
            1,
            anyhow::anyhow!("--backplane given {} times: at most {MAX_PATHS} paths", args.backplane.len()),
        ));
    }
    for spec in &args.backplane {
        if let Some((own, _)) = spec.strip_prefix("unix:").and_then(|r| r.split_once(':')) {
            socket_path::claim(std::path::Path::new(own), socket_path::Kind::Datagram).map_err(refused)?;
        }
    }
    let flash = BoardFlash::open(&args.flash).map_err(|e| (2, e))?;
    let links = args
        .backplane
        .iter()
        .map(|spec| Backplane::open(spec, args.max_frame, &access))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| start(anyhow::anyhow!(e)))?;
    let journal = match &args.journal {
        Some(p) => Some(JournalWriter::open(p, flash.boot_count()).map_err(|e| start(e.into()))?),
        None => None,
    };
    let opts = Options {
        forget_term: args.forget_term,
        slot,
        priority: args.priority,
        heartbeat: Duration::from_millis(args.heartbeat_ms.max(1)),
        miss_count: args.miss.max(1),
        churn: args.churn,
        fdb: args.fdb,
        seed: args.seed ^ u64::from(slot.raw()),
        max_frame: args.max_frame,
        link_rate: args.link_rate,
        apps: args.apps.clone(),
        key,
        processes: args.processes.clone(),
    };
    let opts_heartbeat = opts.heartbeat;
    let mut node = MsmNode::with_paths(opts, flash, links, journal).map_err(start)?;
    node.path_names = args.backplane.clone();
    let mut control = control;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK).map_err(|e| start(e.into()))?;
    log::info!(
        "{} up: flash {}, backplane {}, control {}, incarnation {}",
        slot,
        args.flash.display(),
        args.backplane.join(" + "),
        args.control.display(),
        node.engine.config().incarnation
    );
    match node.engine.key_status().sending {
        Some(fp) => log::info!("{slot}: backplane authenticated, chassis key {fp:08x}"),
        None => log::warn!(
            "{slot}: THE BACKPLANE IS UNAUTHENTICATED: any process that can send a datagram to it \
             controls this chassis. Give --key-file (and --require-auth)."
        ),
    }

    let mut watch = TurnWatch::new(opts_heartbeat);
    loop {
        let turn = std::time::Instant::now();
        node.pump();
        let pumped = turn.elapsed();
        control.serve(&mut node);
        let controlled = turn.elapsed();
        if let Some(a) = &mut apps {
            if a.serve(&mut node) {
                // Changes a process made go out now, and their waits are answered sooner.
                node.pump();
            }
        }
        watch.turn(slot, pumped, controlled, turn.elapsed());
        if let Some(exit) = node.exit {
            return Ok(Some(exit));
        }
        // Sleep until a frame, a request, a signal, or the next deadline.
        let now = node.now();
        let engine =
            node.next_wakeup().map(|t| Duration::from_micros(t.as_micros().saturating_sub(now.as_micros())));
        let stall = [control.next_deadline(), apps.as_ref().and_then(AppServer::next_deadline)]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.saturating_duration_since(std::time::Instant::now()));
        let timeout = [engine, stall].into_iter().flatten().min().unwrap_or(Duration::from_millis(100));
        let ms = u16::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
        let signal_ready = {
            let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
            for l in node.link.links() {
                let out = if l.tx_pending() { PollFlags::POLLOUT } else { PollFlags::empty() };
                fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN | out));
            }
            let app_fds = apps.as_ref().map(AppServer::poll_set).unwrap_or_default();
            for (fd, read, write) in control.poll_set().into_iter().chain(app_fds) {
                let mut f = PollFlags::empty();
                f.set(PollFlags::POLLIN, read);
                f.set(PollFlags::POLLOUT, write);
                fds.push(PollFd::new(fd, f));
            }
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err((1, e.into())),
            }
            fds[0].revents().is_some_and(|r| !r.is_empty())
        };
        if signal_ready {
            if let Ok(Some(sig)) = signals.read_signal() {
                log::info!("{slot}: signal {}, shutting down", sig.ssi_signo);
                return Ok(None);
            }
        }
    }
}
