//! Serial ports and ptys through `serialport`, as framed stream links.
//!
//! `serialport` opens and configures the port (raw mode via `cfmakeraw`, 8N1,
//! no flow control, exclusive access, baud rate) and hands back a blocking
//! descriptor; we take the descriptor over as a `File`, switch it to
//! non-blocking and frame it like any byte stream.
// `serialport` gives the descriptor as a RawFd only; adopting it as an
// OwnedFd is the one unsafe operation of this crate.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};

use serialport::{DataBits, FlowControl, Parity, StopBits, TTYPort};

use crate::stream::StreamLink;

/// A framed link over a serial port or pty.
pub type SerialLink = StreamLink<File>;

fn from_tty(port: TTYPort, max_frame: usize) -> io::Result<SerialLink> {
    let raw = port.into_raw_fd();
    // SAFETY: `into_raw_fd` releases the TTYPort's ownership of `raw` (it
    // forgets itself without closing), so this OwnedFd is its only owner.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    StreamLink::new(File::from(fd), max_frame)
}

/// Open a serial device (`/dev/ttyS1`, `/dev/ttyUSB0`, a QEMU `/dev/pts/N`)
/// at `baud`, 8N1, raw, no flow control, exclusively.
pub fn open_serial(path: &str, baud: u32, max_frame: usize) -> io::Result<SerialLink> {
    let port = serialport::new(path, baud)
        .data_bits(DataBits::Eight)
        .parity(Parity::None)
        .stop_bits(StopBits::One)
        .flow_control(FlowControl::None)
        .open_native()
        .map_err(io::Error::from)?;
    from_tty(port, max_frame)
}

/// A connected pseudo-terminal pair (`TTYPort::pair`: the master, and the
/// slave in raw mode): a real kernel tty for tests and emulation.
pub fn pty_pair(max_frame: usize) -> io::Result<(SerialLink, SerialLink)> {
    let (master, slave) = TTYPort::pair().map_err(io::Error::from)?;
    Ok((from_tty(master, max_frame)?, from_tty(slave, max_frame)?))
}
