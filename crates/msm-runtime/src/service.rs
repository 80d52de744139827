//! The node as a service, for a board's `main`: the options every Linux
//! MSM takes ([`NodeArgs`], flattened into the board's own clap parser),
//! the sockets bound before anything else ([`Service::bind`]: a second
//! node with our paths stops there), the node built on the board's flash
//! ([`Bound::start`]), and the loop ([`Service::run`]): the engine first,
//! then operator requests, then process applications, sleeping in `poll`
//! until a frame, a request, a signal or the next deadline.
//!
//! Exit codes a board's `main` returns (docs/operator-guide.md): 0 stopped
//! by SIGTERM/SIGINT, 1 bad arguments or start-up failure, 2 flash unusable
//! or `--socket-group` names no group, 3 the operator asked for a reboot,
//! 4 a socket path held by a running process.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use msm_backplane::Link;
use msm_checkpoint::Slot;
use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::time::TimeSpec;

use crate::app_server::AppServer;
use crate::backplane::Backplane;
use crate::control_access::Access;
use crate::control_server::ControlServer;
use crate::flash::NodeFlash;
use crate::node::{Exit, MAX_PATHS, MsmNode, Options};
use crate::process_apps::ProcessSpec;
use crate::socket_path::{self, Refused};

/// Exit code: bad arguments or a start-up failure.
pub const EXIT_START: u8 = 1;
/// Exit code: the flash is unusable, or `--socket-group` names no group.
pub const EXIT_FLASH: u8 = 2;
/// Exit code: the operator asked for a reboot.
pub const EXIT_REBOOT: u8 = 3;
/// Exit code: a socket path is held by a running process.
pub const EXIT_PATH_IN_USE: u8 = 4;

/// Why the service stopped before or while running: the exit code and the error.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn start(error: impl Into<anyhow::Error>) -> Failure {
        Failure { code: EXIT_START, error: error.into() }
    }
}

/// The options of every Linux MSM node (a board adds its flash and its own).
// The field docs are clap's --help text, where `<peer>` is meant literally.
#[allow(rustdoc::invalid_html_tags)]
#[derive(clap::Args, Debug, Clone)]
pub struct NodeArgs {
    /// Slot: A or B; C and D in a chassis of three or four modules.
    #[arg(long, value_parser = ["A", "B", "C", "D"])]
    pub slot: String,
    /// Election priority (lower wins); default: from the saved configuration or flash settings.
    #[arg(long)]
    pub priority: Option<u8>,
    #[arg(long, default_value_t = 100)]
    pub heartbeat_ms: u64,
    /// Heartbeats missed before the peer is declared lost.
    #[arg(long, default_value_t = 3)]
    pub miss: u8,
    /// The control socket for the `msm` CLI.
    #[arg(long)]
    pub control: PathBuf,
    /// Let this group's members use the control socket too (mode 0660); default: only the node's user and root (0600).
    #[arg(long, value_name = "NAME")]
    pub socket_group: Option<String>,
    /// unix:<own>:<peer> | udp:<bind>,<peer> | serial:<device>. Give it twice
    /// for two paths to the peer (the first is the primary): heartbeats go on
    /// both, data on the first alive, and the peer is lost only when both are silent.
    #[arg(long, required = true)]
    pub backplane: Vec<String>,
    #[arg(long, default_value_t = 4096)]
    pub max_frame: usize,
    /// Throttle the backplane to this many bytes per second (emulates a slow serial link).
    #[arg(long)]
    pub link_rate: Option<u64>,
    /// Run only these applications, comma-separated (e.g. devmgr,vlan for an MCU peer).
    #[arg(long, value_delimiter = ',')]
    pub apps: Option<Vec<String>>,
    /// An application that runs as its own process: NAME:SCHEMA[:DEP+DEP], e.g. acl:1:vlan
    /// (repeatable; every module of the chassis declares the same).
    #[arg(long = "process", value_parser = ProcessSpec::parse)]
    pub processes: Vec<ProcessSpec>,
    /// The socket process applications connect to (msm-client; docs/client-protocol.md).
    #[arg(long)]
    pub app_socket: Option<PathBuf>,
    /// The chassis key: 64 hex characters, mode 0600 (create one with `msm keygen PATH`).
    /// Every backplane frame is authenticated with it.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Refuse to start without --key-file (an unauthenticated backplane is
    /// open to anything that can send it a datagram).
    #[arg(long)]
    pub require_auth: bool,
    /// Start as if this module had never seen a term (the kept term in the
    /// flash settings is cleared). The recovery when the chassis' terms near
    /// their limit: stop every module, start each with this flag.
    #[arg(long)]
    pub forget_term: bool,
    /// The log's level at start: error, warn, info, debug or trace (default:
    /// MSM_LOG, else info); `msm debug LEVEL` changes it while running.
    #[arg(long, value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub log_level: Option<String>,
    /// Run this program (not through a shell) on role changes, in-sync
    /// changes, a peer lost and back, split brain and failover, the event in
    /// its environment (MSM_EVENT, MSM_SLOT, ...), off the loop, one at a time.
    #[arg(long, value_name = "CMD")]
    pub notify: Option<PathBuf>,
    /// A notify hook still running after this long is killed.
    #[arg(long, default_value_t = 10_000)]
    pub notify_timeout_ms: u64,
    /// Serve Prometheus metrics (GET /metrics) on this address, e.g.
    /// 127.0.0.1:9464 (keep it on loopback or a management network).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
}

impl NodeArgs {
    pub fn slot(&self) -> Result<Slot, Failure> {
        self.slot
            .bytes()
            .next()
            .and_then(|b| Slot::new(b.wrapping_sub(b'A')))
            .ok_or_else(|| Failure::start(anyhow::anyhow!("--slot {}: A, B, C or D", self.slot)))
    }
}

fn refused(e: Refused) -> Failure {
    match e {
        Refused::InUse(m) => Failure { code: EXIT_PATH_IN_USE, error: anyhow::anyhow!(m) },
        Refused::Unusable(m) => Failure::start(anyhow::anyhow!(m)),
    }
}

/// The start of every board's `main`: transparent huge pages off for the
/// whole process (a 2 MiB first touch must not hold a loop turn:
/// docs/performance.md), the arguments parsed (bad ones exit 1, as the
/// operator guide says, since clap's own 2 is the flash's code; help and
/// version 0), the log set up. `Err`: the process exits with that code.
pub fn begin<A: clap::Parser>(program: &str) -> Result<A, std::process::ExitCode> {
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!("{program}: transparent huge pages stay on ({e}): page faults may cost loop turns");
    }
    let args = A::try_parse().map_err(|e| {
        let _ = e.print();
        std::process::ExitCode::from(u8::from(e.use_stderr()))
    })?;
    crate::logging::init(None);
    Ok(args)
}

/// Block SIGTERM and SIGINT (before any thread exists: every thread
/// inherits the mask) so the loop reads them from a signalfd.
pub fn block_stop_signals() -> Result<SigSet, Failure> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.thread_block().map_err(|e| Failure::start(anyhow::anyhow!("blocking signals: {e}")))?;
    Ok(mask)
}

/// The sockets, bound: the board opens its flash next.
#[derive(Debug)]
pub struct Bound {
    args: NodeArgs,
    /// The chassis key the board read from its own storage (instead of `--key-file`).
    key: Option<msm_checkpoint::Key>,
    access: Access,
    control: ControlServer,
    apps: Option<AppServer>,
}

/// A running node with its control and application servers.
pub struct Service {
    pub node: MsmNode<Backplane>,
    control: ControlServer,
    apps: Option<AppServer>,
    signals: SignalFd,
    slot: Slot,
    heartbeat: Duration,
    metrics: Option<crate::metrics::Metrics>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Service({})", self.slot)
    }
}

impl Service {
    /// Bind the control socket, the application socket and the Unix
    /// backplane paths: a second node with our paths stops here, before
    /// it touches the flash.
    pub fn bind(args: &NodeArgs) -> Result<Bound, Failure> {
        args.slot()?;
        // clap admits only the level names.
        if let Some(level) = args.log_level.as_deref().and_then(|l| l.parse().ok()) {
            crate::logging::set_level(level);
        }
        let access = match &args.socket_group {
            Some(name) => Access::with_group(name)
                .map_err(|e| Failure { code: EXIT_FLASH, error: anyhow::anyhow!(e) })?,
            None => Access::owner_only(),
        };
        let control = ControlServer::bind(&args.control, access.clone()).map_err(refused)?;
        let apps = match &args.app_socket {
            Some(p) => Some(AppServer::bind(p, access.clone()).map_err(refused)?),
            None => None,
        };
        if args.backplane.len() > MAX_PATHS {
            return Err(Failure::start(anyhow::anyhow!(
                "--backplane given {} times: at most {MAX_PATHS} paths",
                args.backplane.len()
            )));
        }
        for spec in &args.backplane {
            if let Some((own, _)) = spec.strip_prefix("unix:").and_then(|r| r.split_once(':')) {
                socket_path::claim(Path::new(own), socket_path::Kind::Datagram).map_err(refused)?;
            }
        }
        Ok(Bound { args: args.clone(), key: None, access, control, apps })
    }
}

impl Bound {
    /// The chassis key is `key`, read by the board from its own storage
    /// (the aarch64 module's flash): `--key-file` is not needed.
    pub fn with_key(self, key: msm_checkpoint::Key) -> Bound {
        Bound { key: Some(key), ..self }
    }

    /// The node on `flash` (its boot count already taken), its backplane
    /// links open, the stop signals read from `mask`.
    pub fn start(self, flash: impl NodeFlash + 'static, mask: &SigSet) -> Result<Service, Failure> {
        let Bound { args, key, access, control, apps } = self;
        let slot = args.slot()?;
        let key = match (key, &args.key_file) {
            (Some(k), _) => Some(k),
            (None, Some(p)) => {
                Some(crate::key_file::load(p).map_err(|e| Failure::start(anyhow::anyhow!(e)))?)
            }
            (None, None) if args.require_auth => {
                return Err(Failure::start(anyhow::anyhow!(
                    "--require-auth: no --key-file given (create a chassis key with `msm keygen PATH`)"
                )));
            }
            (None, None) => None,
        };
        let links = args
            .backplane
            .iter()
            .map(|spec| Backplane::open(spec, args.max_frame, &access))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Failure::start(anyhow::anyhow!(e)))?;
        let opts = Options {
            forget_term: args.forget_term,
            slot,
            priority: args.priority,
            heartbeat: Duration::from_millis(args.heartbeat_ms.max(1)),
            miss_count: args.miss.max(1),
            max_frame: args.max_frame,
            link_rate: args.link_rate,
            apps: args.apps.clone(),
            key,
            processes: args.processes.clone(),
        };
        let heartbeat = opts.heartbeat;
        let flash_name = flash.path().display().to_string();
        let mut node = MsmNode::with_paths(opts, flash, links).map_err(Failure::start)?;
        node.path_names = args.backplane.clone();
        if let Some(cmd) = &args.notify {
            let timeout = Duration::from_millis(args.notify_timeout_ms);
            let n = crate::notify::Notifier::start(cmd.clone(), timeout).map_err(Failure::start)?;
            node.notify_with(n);
            log::info!("{slot}: notify hook {} (killed after {} ms)", cmd.display(), args.notify_timeout_ms);
        }
        let signals = SignalFd::with_flags(mask, SfdFlags::SFD_NONBLOCK).map_err(Failure::start)?;
        log::info!(
            "{} up: flash {flash_name}, backplane {}, control {}, incarnation {}",
            slot,
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
        let metrics = match args.metrics {
            Some(addr) => {
                let (m, bound) = crate::metrics::Metrics::serve(addr)
                    .map_err(|e| Failure::start(anyhow::anyhow!("--metrics {addr}: {e}")))?;
                log::info!("{slot}: metrics on http://{bound}/metrics");
                Some(m)
            }
            None => None,
        };
        Ok(Service { node, control, apps, signals, slot, heartbeat, metrics })
    }
}

impl Service {
    /// Run until a stop signal (`Ok(None)`) or the operator's reboot.
    pub fn run(mut self) -> Result<Option<Exit>, Failure> {
        let mut watch = TurnWatch::new(self.heartbeat);
        loop {
            let turn = std::time::Instant::now();
            self.node.pump();
            let pumped = turn.elapsed();
            self.control.serve(&mut self.node);
            let controlled = turn.elapsed();
            if let Some(a) = &mut self.apps {
                if a.serve(&mut self.node) {
                    // Changes a process made go out now, and their waits are answered sooner.
                    self.node.pump();
                }
            }
            if let Some(m) = &mut self.metrics {
                let node = &mut self.node;
                let extra = crate::metrics::Extra {
                    backlog_used: node.engine.backlog_used() as u64,
                    backlog_capacity: node.engine.backlog_capacity() as u64,
                };
                m.update(|r| node.handle(r), extra);
            }
            watch.turn(self.slot, pumped, controlled, turn.elapsed());
            if let Some(exit) = self.node.exit {
                return Ok(Some(exit));
            }
            if self.sleep()? {
                if let Ok(Some(sig)) = self.signals.read_signal() {
                    log::info!("{}: signal {}, shutting down", self.slot, sig.ssi_signo);
                    return Ok(None);
                }
            }
        }
    }

    /// Sleep until a frame, a request, a signal, or the next deadline.
    /// True: a signal is ready.
    fn sleep(&mut self) -> Result<bool, Failure> {
        let now = self.node.now();
        let engine = self
            .node
            .next_wakeup()
            .map(|t| Duration::from_micros(t.as_micros().saturating_sub(now.as_micros())));
        let stall = [self.control.next_deadline(), self.apps.as_ref().and_then(AppServer::next_deadline)]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.saturating_duration_since(std::time::Instant::now()));
        // To the microsecond (ppoll): a poll's whole milliseconds, rounded
        // up, held every heartbeat up to 1 ms past its time.
        let timeout = [engine, stall].into_iter().flatten().min().unwrap_or(Duration::from_millis(100));
        let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
        for l in self.node.link.links() {
            let out = if l.tx_pending() { PollFlags::POLLOUT } else { PollFlags::empty() };
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN | out));
        }
        let app_fds = self.apps.as_ref().map(AppServer::poll_set).unwrap_or_default();
        let control_fds = self.control.poll_set();
        let (servers, apps) = (fds.len(), control_fds.len());
        for (fd, read, write) in control_fds.into_iter().chain(app_fds) {
            let mut f = PollFlags::empty();
            f.set(PollFlags::POLLIN, read);
            f.set(PollFlags::POLLOUT, write);
            fds.push(PollFd::new(fd, f));
        }
        let ready = match ppoll(&mut fds, Some(TimeSpec::from_duration(timeout)), None) {
            Ok(_) => fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect(),
            // Interrupted: nothing known, everything tried.
            Err(nix::errno::Errno::EINTR) => vec![true; fds.len()],
            Err(e) => return Err(Failure::start(e)),
        };
        drop(fds);
        self.control.polled(&ready[servers..servers + apps]);
        if let Some(a) = &mut self.apps {
            a.polled(&ready[servers + apps..]);
        }
        Ok(ready[0])
    }
}

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
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
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

/// The exit code for how the service ended (printing the error).
pub fn exit_code(program: &str, result: Result<Option<Exit>, Failure>) -> std::process::ExitCode {
    match result {
        Ok(Some(Exit::Reboot)) => std::process::ExitCode::from(EXIT_REBOOT),
        Ok(None) => std::process::ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("{program}: {:#}", f.error);
            std::process::ExitCode::from(f.code)
        }
    }
}
