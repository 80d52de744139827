//! One aarch64 guest under `qemu-system-aarch64 -M virt -cpu cortex-a57`,
//! inside a [`Netns`], with:
//! - the kernel and initramfs, the binary's arguments after `--` on the
//!   kernel command line (`console=ttyAMA0 panic=-1 … -- ARGS`);
//! - flash: QEMU virt's second pflash bank (`-drive if=pflash,unit=1`) on a
//!   64 MiB host file, created erased (0xFF) if missing and kept, so it
//!   survives restarts and SIGKILL. Unit 0 is left without a drive: with one,
//!   QEMU takes it for firmware and boots from it instead of `-kernel`.
//!   The guest sees both banks as one 128 MiB CFI device `0.flash`;
//!   `cmdlinepart` ([`MTDPARTS`]) leaves only bank 1, so `/dev/mtd0` is the
//!   host file from offset 0 (NOR, 64 MiB, 256 KiB erase blocks);
//! - NIC k (0 or 1: the two backplane paths) is a virtio-net-device on its
//!   own user network 10.0.(2+k).0/24 ([`nic_guest_ip`], the host at
//!   [`nic_host_ip`]) with MAC [`nic_mac`] (how `/init` tells them apart),
//!   forwarding UDP `127.0.0.1:host_port` of the namespace to the guest's
//!   `guest_port`; the guest reaches the namespace's 127.0.0.1:P at host_ip:P;
//! - the serial console on QEMU's standard output, appended to a log file
//!   and waited on line by line ([`Guest::wait_for`]), with no fixed sleeps.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use super::netns::Netns;
use crate::cmd;

/// The size of one pflash bank of QEMU virt, and so of the flash file.
pub(crate) const FLASH_BYTES: u64 = 64 << 20;
/// `cmdlinepart`'s `mtdparts`: of the 128 MiB device `0.flash` (both banks)
/// only bank 1, the file, as partition `pflash1`.
pub(crate) const MTDPARTS: &str = "0.flash:64m@64m(pflash1)";
/// NICs the guest's `/init` knows how to configure.
pub(crate) const MAX_NICS: usize = 2;

/// `52:54:00:a6:40:0k`.
pub(crate) fn nic_mac(k: usize) -> String {
    format!("52:54:00:a6:40:{k:02x}")
}

/// 10.0.(2+k).15: the guest's address on NIC k.
pub(crate) fn nic_guest_ip(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, subnet(k), 15)
}

/// 10.0.(2+k).2: the host (the namespace's loopback) as NIC k's guest sees it.
pub(crate) fn nic_host_ip(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, subnet(k), 2)
}

fn subnet(k: usize) -> u8 {
    u8::try_from(2 + k).unwrap_or(u8::MAX)
}

/// One NIC: UDP `127.0.0.1:host_port` in the namespace goes to the guest's `guest_port`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Nic {
    pub(crate) host_port: u16,
    pub(crate) guest_port: u16,
}

/// Everything a guest boots with; kept for restarts.
#[derive(Debug, Clone)]
pub(crate) struct GuestConfig {
    pub(crate) kernel: PathBuf,
    pub(crate) initrd: PathBuf,
    /// The file of pflash bank 1 ([`FLASH_BYTES`]), created erased if missing.
    pub(crate) flash: PathBuf,
    /// At most [`MAX_NICS`].
    pub(crate) nics: Vec<Nic>,
    /// The binary's arguments (after `--` on the kernel command line; no `"`).
    pub(crate) args: Vec<String>,
    /// Kernel parameters added before `--` (e.g. `quiet`).
    pub(crate) kernel_params: Vec<String>,
    /// The serial console is appended here, each boot after a `=== boot N ===` line.
    pub(crate) console_log: PathBuf,
    pub(crate) memory_mib: u32,
}

/// A running (or ended) guest; killed when dropped.
#[derive(Debug)]
pub(crate) struct Guest {
    config: GuestConfig,
    netns: Arc<Netns>,
    child: Option<Child>,
    console: Arc<Console>,
    readers: Vec<JoinHandle<()>>,
    boots: u32,
    started: Instant,
}

impl Guest {
    /// Creates the flash file if missing and boots the guest in `netns`.
    pub(crate) fn start(config: GuestConfig, netns: Arc<Netns>) -> Result<Self> {
        if config.nics.len() > MAX_NICS {
            bail!("{} NICs asked for, the guest's /init configures at most {MAX_NICS}", config.nics.len());
        }
        ensure_flash(&config.flash)?;
        if let Some(dir) = config.console_log.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.console_log)
            .with_context(|| format!("opening {}", config.console_log.display()))?;
        let console =
            Arc::new(Console { state: Mutex::new(ConsoleState::new(log)), changed: Condvar::new() });
        let mut guest = Self {
            config,
            netns,
            child: None,
            console,
            readers: Vec::new(),
            boots: 0,
            started: Instant::now(),
        };
        guest.spawn()?;
        Ok(guest)
    }

    /// The QEMU command line (inside the namespace).
    fn command(&self) -> Result<std::process::Command> {
        let c = &self.config;
        let mut q = self.netns.command("qemu-system-aarch64");
        q.args(["-M", "virt", "-cpu", "cortex-a57", "-m", &format!("{}M", c.memory_mib)])
            .args(["-nographic", "-no-reboot"])
            .arg("-kernel")
            .arg(&c.kernel)
            .arg("-initrd")
            .arg(&c.initrd)
            .args(["-append", &kernel_command_line(&c.kernel_params, &c.args)?])
            .arg("-drive")
            .arg(format!("if=pflash,unit=1,format=raw,file={}", c.flash.display()));
        // The human monitor, to take a NIC's link down (`set_link`): a cut cable.
        q.arg("-monitor").arg(format!("unix:{},server,nowait", self.monitor_path().display()));
        for (k, nic) in c.nics.iter().enumerate() {
            let (net, host) = (Ipv4Addr::new(10, 0, subnet(k), 0), nic_host_ip(k));
            q.arg("-netdev")
                .arg(format!(
                    "user,id=n{k},net={net}/24,host={host},restrict=off,\
                     hostfwd=udp:127.0.0.1:{}-:{}",
                    nic.host_port, nic.guest_port
                ))
                .arg("-device")
                .arg(format!("virtio-net-device,netdev=n{k},mac={}", nic_mac(k)));
        }
        Ok(q)
    }

    fn spawn(&mut self) -> Result<()> {
        self.boots += 1;
        self.console.reset(self.boots)?;
        let mut c = self.command()?;
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        eprintln!("$ {}", cmd::display(&c));
        let mut child = c.spawn().context("starting qemu-system-aarch64 (ip netns exec)")?;
        let stdout = child.stdout.take().context("qemu's standard output")?;
        let stderr = child.stderr.take().context("qemu's standard error")?;
        self.readers = vec![
            Console::read_into(Arc::clone(&self.console), stdout, ""),
            Console::read_into(Arc::clone(&self.console), stderr, "qemu: "),
        ];
        self.child = Some(child);
        self.started = Instant::now();
        Ok(())
    }

    fn monitor_path(&self) -> PathBuf {
        self.config.console_log.with_extension("monitor")
    }

    /// Take NIC `k`'s link down (`up` false: a pulled cable) or up again,
    /// through QEMU's monitor.
    pub(crate) fn set_link(&self, k: usize, up: bool) -> Result<()> {
        let path = self.monitor_path();
        let mut m = std::os::unix::net::UnixStream::connect(&path)
            .with_context(|| format!("QEMU monitor {}", path.display()))?;
        m.set_read_timeout(Some(Duration::from_secs(5)))?;
        writeln!(m, "set_link n{k} {}", if up { "on" } else { "off" })?;
        // The monitor echoes the command and prompts again: read until the prompt after it.
        let (mut seen, mut buf) = (String::new(), [0u8; 512]);
        while seen.matches("(qemu)").count() < 2 {
            let n = m.read(&mut buf).context("reading QEMU's monitor")?;
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        if seen.contains("not found") || seen.contains("Error") {
            bail!("set_link n{k}: {seen}");
        }
        Ok(())
    }

    /// The next console line of this boot containing `pattern` (lines are
    /// consumed: the next call looks after the line found). Fails when
    /// `timeout` passes or the guest exits first, with the last lines.
    pub(crate) fn wait_for(&self, pattern: &str, timeout: Duration) -> Result<String> {
        self.console.wait_for(|l| l.contains(pattern), pattern, timeout)
    }

    /// As [`wait_for`](Self::wait_for) with any test of the line.
    pub(crate) fn wait_until(
        &self,
        what: &str,
        test: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<String> {
        self.console.wait_for(test, what, timeout)
    }

    /// Waits for QEMU to exit (the guest powered off) within `timeout`.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().context("the guest is not running")?;
        // The console closes when QEMU exits; then reap it.
        self.console.wait_closed(deadline)?;
        let status = child.wait().context("waiting for qemu")?;
        self.join_readers();
        Ok(status)
    }

    /// SIGKILL to QEMU (as a crash or power cut would stop the board), then reaps it.
    pub(crate) fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            if child.try_wait()?.is_none() {
                child.kill().context("killing qemu")?;
            }
            child.wait().context("reaping qemu")?;
        }
        self.join_readers();
        Ok(())
    }

    /// Kills the guest if running and boots it again with the same flash file.
    pub(crate) fn restart(&mut self) -> Result<()> {
        self.kill()?;
        self.spawn()
    }

    /// The console text of this boot so far.
    pub(crate) fn console_text(&self) -> String {
        self.console.lock().lines.join("\n")
    }

    /// Since this boot was started.
    pub(crate) fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// `console=ttyAMA0 panic=-1 PARAMS -- ARGS` (an argument with a space in
/// double quotes, which the kernel strips; `"` itself cannot be passed).
fn kernel_command_line(params: &[String], args: &[String]) -> Result<String> {
    let mut line = vec!["console=ttyAMA0".to_owned(), "panic=-1".to_owned()];
    line.extend(params.iter().cloned());
    line.push("--".to_owned());
    for arg in args {
        if arg.contains(['"', '\n']) || arg.is_empty() {
            bail!("cannot pass {arg:?} on the kernel command line (empty, or has a quote or newline)");
        }
        line.push(if arg.contains(char::is_whitespace) { format!("\"{arg}\"") } else { arg.clone() });
    }
    Ok(line.join(" "))
}

/// Creates `path` as an erased (all 0xFF) bank if missing; fails if it exists
/// with another size (QEMU needs exactly [`FLASH_BYTES`]).
pub(crate) fn ensure_flash(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() == FLASH_BYTES => Ok(()),
        Ok(m) => {
            bail!("{} is {} bytes; a pflash bank must be exactly {FLASH_BYTES}", path.display(), m.len())
        }
        Err(_) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            let partial = super::deb::partial_of(path);
            let mut f =
                std::fs::File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
            let erased = vec![0xFF_u8; 1 << 20];
            for _ in 0..(FLASH_BYTES >> 20) {
                f.write_all(&erased).with_context(|| format!("writing {}", partial.display()))?;
            }
            f.sync_all()?;
            std::fs::rename(&partial, path).with_context(|| format!("renaming to {}", path.display()))
        }
    }
}

/// The console of the current boot, shared with the threads reading QEMU.
#[derive(Debug)]
struct Console {
    state: Mutex<ConsoleState>,
    changed: Condvar,
}

#[derive(Debug)]
struct ConsoleState {
    /// Complete lines of this boot.
    lines: Vec<String>,
    /// The first line [`Console::wait_for`] looks at.
    cursor: usize,
    /// Readers (stdout, stderr) that reached end of file this boot.
    closed: usize,
    log: std::fs::File,
}

impl ConsoleState {
    fn new(log: std::fs::File) -> Self {
        Self { lines: Vec::new(), cursor: 0, closed: 0, log }
    }
}

impl Console {
    fn lock(&self) -> MutexGuard<'_, ConsoleState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn reset(&self, boot: u32) -> Result<()> {
        let mut s = self.lock();
        s.lines.clear();
        s.cursor = 0;
        s.closed = 0;
        writeln!(s.log, "=== boot {boot} ===").context("writing the console log")
    }

    /// A thread appending each line of `input` (with `prefix`) to the console.
    fn read_into(
        console: Arc<Self>,
        input: impl Read + Send + 'static,
        prefix: &'static str,
    ) -> JoinHandle<()> {
        std::thread::spawn(move || {
            let mut reader = BufReader::new(input);
            let mut raw = Vec::new();
            loop {
                raw.clear();
                match reader.read_until(b'\n', &mut raw) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&raw);
                        let line = format!("{prefix}{}", text.trim_end_matches(['\n', '\r']));
                        let mut s = console.lock();
                        let _ = writeln!(s.log, "{line}");
                        s.lines.push(line);
                        drop(s);
                        console.changed.notify_all();
                    }
                }
            }
            console.lock().closed += 1;
            console.changed.notify_all();
        })
    }

    fn wait_for(&self, test: impl Fn(&str) -> bool, what: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        loop {
            if let Some(i) = s.lines[s.cursor..].iter().position(|l| test(l)) {
                let at = s.cursor + i;
                s.cursor = at + 1;
                return Ok(s.lines[at].clone());
            }
            if s.closed == 2 {
                bail!(
                    "the guest exited before printing `{what}`; its console ended with:\n{}",
                    tail(&s.lines)
                );
            }
            let now = Instant::now();
            if now >= deadline {
                bail!(
                    "no `{what}` on the guest's console within {:.1} s; it ends with:\n{}",
                    timeout.as_secs_f64(),
                    tail(&s.lines)
                );
            }
            s = self.changed.wait_timeout(s, deadline - now).map_err(|_| anyhow!("console lock poisoned"))?.0;
        }
    }

    fn wait_closed(&self, deadline: Instant) -> Result<()> {
        let mut s = self.lock();
        while s.closed < 2 {
            let now = Instant::now();
            if now >= deadline {
                bail!("the guest did not exit in time; its console ends with:\n{}", tail(&s.lines));
            }
            s = self.changed.wait_timeout(s, deadline - now).map_err(|_| anyhow!("console lock poisoned"))?.0;
        }
        Ok(())
    }
}

/// The last 15 lines, indented.
fn tail(lines: &[String]) -> String {
    let from = lines.len().saturating_sub(15);
    lines[from..].iter().map(|l| format!("  | {l}")).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_follow_the_double_dash() {
        let line =
            kernel_command_line(&["quiet".into()], &["--slot".into(), "A".into(), "a b".into()]).unwrap();
        assert_eq!(line, "console=ttyAMA0 panic=-1 quiet -- --slot A \"a b\"");
        assert!(kernel_command_line(&[], &["a\"b".into()]).is_err());
    }

    #[test]
    fn nics_have_their_own_subnets() {
        assert_eq!(nic_mac(1), "52:54:00:a6:40:01");
        assert_eq!(nic_guest_ip(0), Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(nic_host_ip(1), Ipv4Addr::new(10, 0, 3, 2));
    }
}
