//! Orchestrating a chassis of node processes from outside: start, kill,
//! restart, ask over the control socket, and wait for a condition with a
//! deadline (never a fixed sleep). Used by `msm-chassis` (the `cargo xtask
//! emu` demo) and by the system tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::journal::Journal;
use msm_control::{Answer, AppTable, CheckpointRow, Configuration, Request, Response, Switch, call};
use msm_runtime::apps::APPS;
use msm_runtime::config::RunningConfig;

/// A process of the chassis' own (a client, an intruder, a server to compare
/// with) that is killed and reaped when dropped, whatever happened.
#[derive(Debug)]
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A chassis in a directory: per slot a flash image, a control socket, a
/// backplane socket and a journal.
#[derive(Debug)]
pub struct Chassis {
    pub dir: PathBuf,
    pub bin: PathBuf,
    /// Per slot: run the `msm-node` of this directory instead of `bin`'s
    /// (another build: a rolling upgrade).
    pub bins: [Option<PathBuf>; 4],
    /// By slot, A to D.
    pub children: [Option<Child>; 4],
    /// Modules in the chassis (2 to 4): each one's backplane reaches every other.
    pub nodes: usize,
    /// Extra flags every node gets (heartbeat, churn...).
    pub common: Vec<String>,
    /// Nodes get the chassis key ([`key_path`](Self::key_path), created at
    /// the first start) and `--require-auth`, unless `extra` names another
    /// `--key-file`. Off: an unauthenticated backplane (benchmarks compare).
    pub authenticated: bool,
    /// Per slot: send the backplane's datagrams here instead of to the
    /// peer's socket (a test's tap that records and forwards them).
    pub taps: [Option<PathBuf>; 2],
    /// A second backplane path between the nodes (`<slot>.sock2`), with its
    /// own taps: `Some` for two paths.
    pub second_path: Option<[Option<PathBuf>; 2]>,
    /// Nodes append to a change journal (for verifying takeovers); off in
    /// benchmarks, where its writes every loop turn would be measured too.
    pub journal: bool,
    /// Per slot: these `--backplane` specs instead of the chassis' Unix
    /// sockets (a node talking UDP to a module in a VM).
    pub backplanes: [Vec<String>; 4],
    /// A command the nodes run under (e.g. `ip netns exec NAME`): it must
    /// exec the node, so that the child's pid is the node's.
    pub launcher: Vec<String>,
}

pub fn slot_index(slot: char) -> usize {
    match slot {
        'B' => 1,
        'C' => 2,
        'D' => 3,
        _ => 0,
    }
}

impl Chassis {
    /// `bin`: the directory holding `msm-node`.
    pub fn new(dir: impl Into<PathBuf>, bin: impl Into<PathBuf>) -> Chassis {
        Chassis {
            dir: dir.into(),
            bin: bin.into(),
            bins: Default::default(),
            children: [None, None, None, None],
            nodes: 2,
            common: Vec::new(),
            authenticated: true,
            taps: [None, None],
            second_path: None,
            journal: true,
            backplanes: Default::default(),
            launcher: Vec::new(),
        }
    }

    /// The chassis key every node of this chassis holds.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join("chassis.key")
    }

    /// The flags that give a node the chassis key, creating it if needed.
    pub fn key_args(&self) -> Result<Vec<String>> {
        let key = self.key_path();
        if !key.exists() {
            msm_runtime::key_file::generate(&key).map_err(|e| anyhow!(e))?;
        }
        Ok(vec!["--key-file".into(), key.display().to_string(), "--require-auth".into()])
    }

    /// Where the binaries of this build are, next to the running executable
    /// (`target/<profile>/`, also from `target/<profile>/deps/` for tests).
    pub fn bin_dir() -> Result<PathBuf> {
        let exe = std::env::current_exe()?;
        let mut dir = exe.parent().context("executable has no directory")?.to_path_buf();
        if dir.ends_with("deps") {
            dir.pop();
        }
        Ok(dir)
    }

    /// [`bin_dir`](Self::bin_dir), with `msm-node`, `msm` and `msm-app`
    /// built there first: a test of another package runs before them, and a
    /// binary left by an older build must not stand in for this one (cargo
    /// does nothing when they are up to date).
    pub fn built_bin_dir() -> Result<PathBuf> {
        // Once per process: every test of a binary starts a chassis.
        static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
        let dir = Self::bin_dir()?;
        let built = BUILT.get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut c = Command::new(cargo);
            c.args(["build", "-q", "-p", "msm-linux-emu", "-p", "msm-client", "--bins"]);
            if dir.ends_with("release") {
                c.arg("--release");
            }
            match c.status() {
                Ok(s) if s.success() => Ok(()),
                Ok(s) => Err(format!("building the node binaries failed: {s}")),
                Err(e) => Err(format!("running cargo build: {e}")),
            }
        });
        built.clone().map_err(|e| anyhow!(e))?;
        Ok(dir)
    }

    pub fn path(&self, slot: char, ext: &str) -> PathBuf {
        self.dir.join(format!("{slot}.{ext}"))
    }

    /// The backplane of `slot`: a Unix datagram socket to the other slot's
    /// (or to its tap).
    pub fn backplane(&self, slot: char) -> String {
        if self.nodes > 2 {
            // A bus: every other module's socket.
            let peers: Vec<String> = ['A', 'B', 'C', 'D'][..self.nodes.min(4)]
                .iter()
                .filter(|&&s| s != slot)
                .map(|&s| self.path(s, "sock").display().to_string())
                .collect();
            return format!("unix:{}:{}", self.path(slot, "sock").display(), peers.join("+"));
        }
        let other = if slot == 'A' { 'B' } else { 'A' };
        let to = self.taps[slot_index(slot)].clone().unwrap_or_else(|| self.path(other, "sock"));
        format!("unix:{}:{}", self.path(slot, "sock").display(), to.display())
    }

    /// The second path of `slot`, if the chassis has one.
    pub fn second_backplane(&self, slot: char) -> Option<String> {
        let taps = self.second_path.as_ref()?;
        let other = if slot == 'A' { 'B' } else { 'A' };
        let to = taps[slot_index(slot)].clone().unwrap_or_else(|| self.path(other, "sock2"));
        Some(format!("unix:{}:{}", self.path(slot, "sock2").display(), to.display()))
    }

    /// The largest silence any running node heard between two heartbeats of
    /// a peer since it came up, in µs (0 when none answers).
    pub fn max_heartbeat_gap_us(&self) -> u64 {
        ['A', 'B', 'C', 'D'][..self.nodes.min(4)]
            .iter()
            .filter_map(|s| self.switch(*s).ok())
            .flat_map(|s| s.peers)
            .map(|p| p.max_heartbeat_gap_us)
            .max()
            .unwrap_or(0)
    }

    /// The address node `slot` logged for `--metrics` (given port 0, it names the one it took).
    pub fn metrics_address(&self, slot: char) -> Option<String> {
        let log = std::fs::read_to_string(self.path(slot, "log")).ok()?;
        let at = log.find("metrics on http://")? + "metrics on http://".len();
        Some(log[at..].split('/').next()?.to_string())
    }

    /// Start node `slot` with the chassis' common flags and `extra`.
    pub fn start(&mut self, slot: char, extra: &[&str]) -> Result<()> {
        let i = slot_index(slot);
        if self.children[i].is_some() {
            bail!("MSM-{slot} is already running");
        }
        let _ = std::fs::remove_file(self.path(slot, "ctl"));
        let auth = match self.authenticated && !extra.contains(&"--key-file") {
            true => self.key_args()?,
            false => Vec::new(),
        };
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.path(slot, "log"))?;
        let node = self.bins[i].as_ref().unwrap_or(&self.bin).join("msm-node");
        let mut cmd = match self.launcher.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&node);
                c
            }
            None => Command::new(&node),
        };
        let backplanes = match &self.backplanes[i] {
            given if !given.is_empty() => given.clone(),
            _ => std::iter::once(self.backplane(slot)).chain(self.second_backplane(slot)).collect(),
        };
        cmd.arg("--slot")
            .arg(slot.to_string())
            .arg("--flash")
            .arg(self.path(slot, "img"))
            .arg("--control")
            .arg(self.path(slot, "ctl"))
            .args(backplanes.iter().flat_map(|b| ["--backplane", b.as_str()]))
            .args(
                self.journal.then(|| ["--journal".into(), self.path(slot, "journal")]).into_iter().flatten(),
            )
            .args(&self.common)
            .args(&auth)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = cmd.spawn().with_context(|| format!("starting {}", node.display()))?;
        self.children[i] = Some(child);
        let ctl = self.path(slot, "ctl");
        self.wait(&format!("MSM-{slot} control socket"), Duration::from_secs(10), |c| {
            Ok(ctl.exists() && c.call(slot, &Request::ShowNode).is_ok())
        })
    }

    /// SIGKILL: the process dies mid-whatever, like a power loss.
    pub fn kill(&mut self, slot: char) -> Result<()> {
        let mut child =
            self.children[slot_index(slot)].take().with_context(|| format!("MSM-{slot} is not running"))?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self, slot: char) -> Result<ExitStatus> {
        let mut child =
            self.children[slot_index(slot)].take().with_context(|| format!("MSM-{slot} is not running"))?;
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = child.try_wait()? {
                return Ok(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("MSM-{slot} did not stop within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The exit status, if node `slot` has exited on its own.
    pub fn exited(&mut self, slot: char) -> Result<Option<ExitStatus>> {
        let i = slot_index(slot);
        let Some(child) = self.children[i].as_mut() else { return Ok(None) };
        let st = child.try_wait()?;
        if st.is_some() {
            self.children[i] = None;
        }
        Ok(st)
    }

    /// One request to node `slot`.
    pub fn call(&self, slot: char, req: &Request) -> Result<Response> {
        Ok(call(&self.path(slot, "ctl"), req)?)
    }

    /// A request that must succeed; its answer as `A` (the type of the
    /// request's answer: `Switch` for `ShowSwitch`, `Vec<CheckpointRow>`
    /// for `ShowCheckpointData`, ...).
    pub fn ask<A: Answer>(&self, slot: char, req: &Request) -> Result<A> {
        self.call(slot, req)?.answer().map_err(|e| anyhow!("MSM-{slot}: {e}"))
    }

    /// A request that must succeed; its text.
    pub fn text(&self, slot: char, req: &Request) -> Result<String> {
        self.call(slot, req)?.text().map_err(|e| anyhow!("MSM-{slot}: {e}"))
    }

    /// `show switch` of node `slot`.
    pub fn switch(&self, slot: char) -> Result<Switch> {
        self.ask(slot, &Request::ShowSwitch)
    }

    /// `show checkpoint-data [process]` of node `slot`.
    pub fn checkpoint(&self, slot: char, process: Option<&str>) -> Result<Vec<CheckpointRow>> {
        self.ask(slot, &Request::ShowCheckpointData { process: process.map(str::to_string) })
    }

    /// The row of one stream (`active-config`, `saved-config`, an application).
    pub fn stream(&self, slot: char, process: &str) -> Result<CheckpointRow> {
        self.checkpoint(slot, Some(process))?
            .into_iter()
            .next()
            .with_context(|| format!("MSM-{slot}: no stream {process}"))
    }

    pub fn role(&self, slot: char) -> Option<String> {
        self.switch(slot).ok().map(|s| s.role)
    }

    pub fn in_sync(&self, slot: char) -> bool {
        self.switch(slot).is_ok_and(|s| s.in_sync)
    }

    /// Every application's rows (key -> value in hex), in [`APPS`] order, as
    /// [`Journal::verify`] takes them.
    pub fn app_state(&self, slot: char) -> Result<Vec<BTreeMap<u64, String>>> {
        let mut out = Vec::new();
        for (name, _, _) in APPS {
            let mut rows = BTreeMap::new();
            let mut from = 0;
            loop {
                let t: AppTable = self.ask(slot, &Request::ShowApp { app: name.into(), rows: true, from })?;
                rows.extend(t.rows.into_iter().map(|r| (r.key, r.value)));
                match t.next {
                    Some(next) => from = next,
                    None => break,
                }
            }
            out.push(rows);
        }
        Ok(out)
    }

    /// The running configuration of node `slot` (`show configuration`, parsed).
    pub fn running_config(&self, slot: char) -> Result<RunningConfig> {
        let c: Configuration = self.ask(slot, &Request::ShowConfiguration)?;
        RunningConfig::parse(&c.text).map_err(|e| anyhow!("MSM-{slot}: show configuration: {e}"))
    }

    /// The last boot of node `slot`'s change journal.
    pub fn journal(&self, slot: char) -> Result<Journal> {
        let path = self.path(slot, "journal");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        Journal::parse(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
    }

    /// Poll `cond` every 2 ms until it holds; fail naming `what` at the deadline.
    pub fn wait(
        &self,
        what: &str,
        limit: Duration,
        cond: impl FnMut(&Chassis) -> Result<bool>,
    ) -> Result<()> {
        self.wait_every(what, limit, Duration::from_millis(2), cond)
    }

    /// [`wait`](Self::wait), asking every `every`: a benchmark asks less
    /// often, so its asking does not load the nodes it measures.
    pub fn wait_every(
        &self,
        what: &str,
        limit: Duration,
        every: Duration,
        mut cond: impl FnMut(&Chassis) -> Result<bool>,
    ) -> Result<()> {
        let deadline = Instant::now() + limit;
        let mut last_err = None;
        loop {
            match cond(self) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => last_err = Some(e),
            }
            if Instant::now() > deadline {
                return Err(anyhow!(
                    "timed out after {limit:?} waiting for {what}{}",
                    last_err.map(|e| format!(" (last error: {e})")).unwrap_or_default()
                ));
            }
            std::thread::sleep(every);
        }
    }
}

impl Drop for Chassis {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One direction of a backplane path through the harness: forwards the
/// datagrams sent to `at` on to `to` until it is cut, then drops them as a
/// pulled cable does (tests and benchmarks of redundant paths).
#[derive(Debug)]
pub struct Cable {
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Cable {
    pub fn lay(at: &Path, to: &Path) -> Result<Cable> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let sock = std::os::unix::net::UnixDatagram::bind(at)?;
        sock.set_read_timeout(Some(Duration::from_millis(20)))?;
        let (cut, stop) =
            (std::sync::Arc::new(AtomicBool::new(false)), std::sync::Arc::new(AtomicBool::new(false)));
        let (c, s, to) = (cut.clone(), stop.clone(), to.to_path_buf());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    if !c.load(Ordering::Relaxed) {
                        let _ = sock.send_to(&buf[..n], &to);
                    }
                }
            }
        });
        Ok(Cable { cut, stop, thread: Some(thread) })
    }

    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Cable {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Both directions of one backplane path of a two-node chassis, cabled.
#[derive(Debug)]
pub struct CabledPath(pub [Cable; 2]);

impl CabledPath {
    /// Lay path `path` (1 or 2) of `c` through cables: give the returned
    /// taps to [`Chassis::taps`] (path 1) or [`Chassis::second_path`] (path 2).
    pub fn lay(c: &Chassis, path: usize) -> Result<(CabledPath, [Option<PathBuf>; 2])> {
        let sock = if path == 1 { "sock" } else { "sock2" };
        let at = |s: char| c.dir.join(format!("cable{path}-{s}.sock"));
        let cables = [Cable::lay(&at('A'), &c.path('B', sock))?, Cable::lay(&at('B'), &c.path('A', sock))?];
        Ok((CabledPath(cables), [Some(at('A')), Some(at('B'))]))
    }

    pub fn set_cut(&self, cut: bool) {
        self.0.iter().for_each(|c| c.set_cut(cut));
    }
}
