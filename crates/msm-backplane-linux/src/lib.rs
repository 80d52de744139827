//! # msm-backplane-linux
//!
//! Backplane links on Linux kernel objects, behind the same
//! [`msm_backplane::Link`] trait as the MCU drivers:
//!
//! | driver | kernel object | frames |
//! |---|---|---|
//! | [`SerialLink`] | a serial port or pty (`/dev/ttyS*`, `/dev/ttyUSB*`, `/dev/pts/*`), opened and set raw 8N1 with the `serialport` crate | COBS + CRC-32C framing |
//! | [`UnixStreamLink`] | a Unix-domain stream socket | COBS + CRC-32C framing |
//! | [`UnixDatagramLink`] | a connected Unix-domain datagram socket | one frame per datagram |
//! | [`UdpLink`] | a connected UDP socket | one frame per datagram |
//!
//! Every driver is non-blocking and exposes its file descriptor ([`AsFd`] /
//! `AsRawFd`), so a poll loop waits for readiness with `poll(2)` and then
//! calls `recv`/`flush`; [`wait`] does that for a set of links, [`Clock`]
//! gives the [`Instant`]s the sans-IO layers want.
//!
//! A link pair: two connected Unix stream links exchange framed frames (COBS
//! + CRC-32C on the wire), waiting with [`wait`] rather than spinning.
//!
//! ```
//! use std::os::fd::AsFd;
//! use std::time::Duration;
//!
//! use msm_backplane::Link;
//! use msm_backplane_linux::{Clock, unix_stream_pair, wait};
//!
//! let (mut a, mut b) = unix_stream_pair(1024)?; // or pty_pair, unix_datagram_pair, UdpLink
//! a.send(b"heartbeat 1")?;
//! a.send(b"heartbeat 2")?;
//! a.flush()?; // both frames leave in one write(2)
//!
//! let clock = Clock::new();
//! let deadline = clock.now() + Duration::from_secs(5);
//! let mut got = Vec::new();
//! let mut buf = [0u8; 1024];
//! while got.len() < 2 {
//!     while let Some(n) = b.recv(&mut buf)? {
//!         got.push(buf[..n].to_vec());
//!     }
//!     if got.len() < 2 && wait(&[(b.as_fd(), false)], Some(clock.until(deadline)))? == 0 {
//!         return Err(std::io::ErrorKind::TimedOut.into());
//!     }
//! }
//! assert_eq!(got, [b"heartbeat 1".to_vec(), b"heartbeat 2".to_vec()]);
//! assert_eq!(b.counters().frames, 2);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! [`AsFd`]: std::os::fd::AsFd
//! [`Instant`]: msm_time::Instant

mod clock;
mod datagram;
mod error;
mod serial;
mod stream;

use std::os::fd::AsFd;
use std::time::Duration;

pub use clock::Clock;
pub use datagram::{Datagram, DatagramLink, UdpLink, UnixDatagramLink, unix_datagram_pair};
pub use error::Error;
pub use serial::{SerialLink, open_serial, pty_pair};
pub use stream::{StreamLink, UnixStreamLink, unix_stream_pair};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// Put a file descriptor into non-blocking mode.
pub(crate) fn set_nonblocking(fd: impl AsFd) -> std::io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Wait until one of `fds` is readable (or, where its flag says the link has
/// bytes queued, writable), at most `timeout` (`None`: forever). Returns
/// how many are ready (0 on timeout). For a board's poll loop:
///
/// ```no_run
/// # use msm_backplane::Link;
/// # use std::os::fd::AsFd;
/// # fn f(link: &msm_backplane_linux::UnixStreamLink) -> std::io::Result<()> {
/// msm_backplane_linux::wait(&[(link.as_fd(), link.tx_pending())], Some(std::time::Duration::from_millis(5)))?;
/// # Ok(()) }
/// ```
pub fn wait(
    fds: &[(std::os::fd::BorrowedFd<'_>, bool)],
    timeout: Option<Duration>,
) -> std::io::Result<usize> {
    let mut pfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|&(fd, write)| {
            let flags = if write { PollFlags::POLLIN | PollFlags::POLLOUT } else { PollFlags::POLLIN };
            PollFd::new(fd, flags)
        })
        .collect();
    let timeout = match timeout {
        None => PollTimeout::NONE,
        // Round up so a deadline in 0.4 ms does not spin at 0 ms.
        Some(t) => PollTimeout::try_from(t.as_micros().div_ceil(1000)).unwrap_or(PollTimeout::MAX),
    };
    loop {
        match poll(&mut pfds, timeout) {
            Ok(n) => return Ok(usize::try_from(n).unwrap_or(0)),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
