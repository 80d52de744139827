//! The backplane of an emulated MSM, chosen by a `--backplane` spec:
//!
//! - `unix:<own path>:<peer path>[+<peer path>...]` (default in `cargo xtask
//!   emu`): Unix datagram sockets by path; a peer that is down or restarting
//!   is a lost frame, not an error, so nodes can come and go. With several
//!   peers (a chassis of three or four modules) it is a bus: every frame goes
//!   to each, and each takes what is addressed to it.
//! - `udp:<bind addr>,<peer addr>`: UDP datagrams.
//! - `serial:<device>`: a serial port or a pty (e.g. the one QEMU prints for
//!   a board's UART), COBS/CRC-32C framed.
//!
//! A Unix socket is bound under a umask that leaves it the owner's alone,
//! then given the mode of the node's [`Access`] (`0600`, or `0660` with
//! `--socket-group`): whoever can write it can put frames on the backplane.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use msm_backplane::{ErrorType, Link};
use nix::sys::stat::{Mode, umask};

use crate::control_access::{Access, restrict};
use msm_backplane_linux::{Datagram, DatagramLink, Error, SerialLink, UdpLink};

/// A Unix datagram socket bound to its own path, sending to each peer's path.
#[derive(Debug)]
pub struct PathDatagram {
    sock: UnixDatagram,
    peers: Vec<PathBuf>,
}

impl AsFd for PathDatagram {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl Datagram for PathDatagram {
    /// A peer not bound yet (down, restarting) loses the frame, like a cable
    /// to an empty slot.
    const REFUSED_IS_LOSS: bool = true;
    /// On a bus, a peer that is down or full misses the frame, as on a
    /// shared backplane; only when no peer took it does the frame count as
    /// lost (or, all full, as "try again").
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let mut last = None;
        for peer in &self.peers {
            match self.sock.send_to(buf, peer) {
                Ok(n) if self.peers.len() == 1 => return Ok(n),
                Ok(_) => last = Some(Ok(buf.len())),
                Err(e) if last.as_ref().is_some_and(Result::is_ok) => drop(e),
                Err(e) => {
                    last = Some(Err(match e.kind() {
                        io::ErrorKind::NotFound => io::Error::from(io::ErrorKind::ConnectionRefused),
                        _ => e,
                    }))
                }
            }
        }
        last.unwrap_or_else(|| Err(io::Error::from(io::ErrorKind::ConnectionRefused)))
    }
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.recv(buf)
    }
}

#[derive(Debug)]
pub enum Backplane {
    Unix(DatagramLink<PathDatagram>),
    Udp(UdpLink),
    Serial(SerialLink),
}

impl Backplane {
    /// Open the backplane described by `spec`.
    pub fn open(spec: &str, max_frame: usize, access: &Access) -> Result<Backplane, String> {
        let bad = |why: &str| format!("backplane '{spec}': {why}");
        let (kind, rest) = spec.split_once(':').ok_or_else(|| bad("expected unix:, udp: or serial:"))?;
        match kind {
            "unix" => {
                let (own, peers) = rest
                    .split_once(':')
                    .ok_or_else(|| bad("expected unix:<own path>:<peer path>[+<peer path>...]"))?;
                let peers: Vec<PathBuf> = peers.split('+').map(PathBuf::from).collect();
                if peers.iter().any(|p| p.as_os_str().is_empty()) {
                    return Err(bad("an empty peer path"));
                }
                let _ = std::fs::remove_file(own);
                // Nobody else may write it from its first instant, whatever the umask.
                let old = umask(Mode::from_bits_truncate(0o177));
                let bound = UnixDatagram::bind(own);
                umask(old);
                let sock = bound.map_err(|e| bad(&format!("bind {own}: {e}")))?;
                restrict(std::path::Path::new(own), access, "backplane").map_err(|e| bad(&e.to_string()))?;
                let link = DatagramLink::new(PathDatagram { sock, peers }, max_frame)
                    .map_err(|e| bad(&e.to_string()))?;
                Ok(Backplane::Unix(link))
            }
            "udp" => {
                let (own, peer) =
                    rest.split_once(',').ok_or_else(|| bad("expected udp:<bind addr>,<peer addr>"))?;
                let own = own.parse().map_err(|_| bad(&format!("'{own}' is not an address")))?;
                let peer = peer.parse().map_err(|_| bad(&format!("'{peer}' is not an address")))?;
                UdpLink::bind_connect(own, peer, max_frame)
                    .map(Backplane::Udp)
                    .map_err(|e| bad(&e.to_string()))
            }
            "serial" => msm_backplane_linux::open_serial(rest, 115_200, max_frame)
                .map(Backplane::Serial)
                .map_err(|e| bad(&e.to_string())),
            _ => Err(bad("expected unix:, udp: or serial:")),
        }
    }
}

impl AsFd for Backplane {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Backplane::Unix(l) => l.as_fd(),
            Backplane::Udp(l) => l.as_fd(),
            Backplane::Serial(l) => l.as_fd(),
        }
    }
}

impl ErrorType for Backplane {
    type Error = Error;
}

impl Link for Backplane {
    fn max_frame(&self) -> usize {
        match self {
            Backplane::Unix(l) => l.max_frame(),
            Backplane::Udp(l) => l.max_frame(),
            Backplane::Serial(l) => l.max_frame(),
        }
    }
    fn send(&mut self, frame: &[u8]) -> Result<(), Error> {
        match self {
            Backplane::Unix(l) => l.send(frame),
            Backplane::Udp(l) => l.send(frame),
            Backplane::Serial(l) => l.send(frame),
        }
    }
    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        match self {
            Backplane::Unix(l) => l.recv(buf),
            Backplane::Udp(l) => l.recv(buf),
            Backplane::Serial(l) => l.recv(buf),
        }
    }
    fn flush(&mut self) -> Result<(), Error> {
        match self {
            Backplane::Unix(l) => l.flush(),
            Backplane::Udp(l) => l.flush(),
            Backplane::Serial(l) => l.flush(),
        }
    }
    fn tx_pending(&self) -> bool {
        match self {
            Backplane::Unix(l) => l.tx_pending(),
            Backplane::Udp(l) => l.tx_pending(),
            Backplane::Serial(l) => l.tx_pending(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_unix_bus_sends_each_frame_to_every_peer_and_a_missing_peer_loses_only_its_copy() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n).display().to_string();
        let b = UnixDatagram::bind(p("b")).unwrap();
        let c = UnixDatagram::bind(p("c")).unwrap();
        let spec = format!("unix:{}:{}+{}+{}", p("a"), p("b"), p("gone"), p("c"));
        let old = umask(Mode::empty());
        let opened = Backplane::open(&spec, 256, &Access::owner_only());
        umask(old);
        let mut a = opened.unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(p("a")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the backplane socket is the owner's alone under umask 000");
        a.send(b"frame").unwrap();
        let mut buf = [0u8; 16];
        for peer in [&b, &c] {
            let n = peer.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"frame");
        }
        let spec = format!("unix:{}:{}+", p("x"), p("b"));
        assert!(Backplane::open(&spec, 256, &Access::owner_only()).unwrap_err().contains("empty"));
    }
}
