//! A private network namespace (`ip netns add`, needs root) for QEMU and the
//! host processes that talk to its guests, so nothing leaves the machine and
//! any port is free.
//!
//! QEMU's user networking forwards `hostfwd=udp:127.0.0.1:H-:G` on the
//! loopback of the namespace QEMU runs in, and the guest's packets to the
//! host (10.0.2.2) come out of that same loopback. A process outside the
//! namespace cannot reach either, so the host side runs inside it too:
//! [`Netns::command`] for a program (`ip netns exec NAME program`), or
//! [`Netns::bind_udp`] for a socket of this process (created by a thread
//! that entered the namespace; a socket keeps its namespace). A named
//! namespace outlives each QEMU, so a guest restarted after SIGKILL finds
//! the host side where it was. It is deleted on drop; namespaces left by a
//! process that no longer runs are deleted by [`Netns::create`].

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, anyhow};
use nix::sched::{CloneFlags, setns};

use crate::cmd;

/// Names are `msm-a64-<pid>-<n>`.
const PREFIX: &str = "msm-a64-";

/// A named network namespace with its loopback up.
#[derive(Debug)]
pub(crate) struct Netns {
    name: String,
}

impl Netns {
    /// Creates `msm-a64-<pid>-<n>` and sets its `lo` up.
    pub(crate) fn create() -> Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        remove_stale();
        let name = format!("{PREFIX}{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        cmd::run(Command::new("ip").args(["netns", "add", &name]))
            .with_context(|| format!("creating network namespace {name} (needs root)"))?;
        let ns = Self { name };
        cmd::run(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]))
            .with_context(|| format!("setting lo up in {}", ns.name))?;
        Ok(ns)
    }

    /// `program` to run inside the namespace: `ip netns exec NAME program`
    /// (which execs it: the child's pid is the program's).
    pub(crate) fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// A UDP socket of this process bound to `addr` inside the namespace.
    pub(crate) fn bind_udp(&self, addr: SocketAddr) -> Result<UdpSocket> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| -> Result<UdpSocket> {
                    // setns changes this thread only; it ends right after.
                    let ns = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
                    setns(&ns, CloneFlags::CLONE_NEWNET).with_context(|| format!("entering {path}"))?;
                    UdpSocket::bind(addr).with_context(|| format!("binding UDP {addr} in {}", self.name))
                })
                .join()
                .map_err(|_| anyhow!("the thread entering {} panicked", self.name))?
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let status = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("warning: could not delete network namespace {}", self.name);
        }
    }
}

/// Deletes `msm-a64-<pid>-*` namespaces whose process is gone.
fn remove_stale() {
    let Ok(list) = cmd::output(Command::new("ip").args(["netns", "list"])) else { return };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|rest| rest.split('-').next()) else { continue };
        if !std::path::Path::new("/proc").join(pid).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}
