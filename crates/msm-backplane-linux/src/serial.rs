//! Serial ports and ptys as framed stream links, opened and configured with
//! the `serialport` crate: raw mode, 8N1, no flow control, the baud rate,
//! exclusive access (`TIOCEXCL` and an exclusive `flock`). The configured
//! descriptor then leaves `serialport`'s `TTYPort` (whose reads and writes
//! `poll(2)` with a timeout first, and whose `flush` is a blocking
//! `tcdrain`) for a plain non-blocking `File`, so the link reads and writes
//! straight through to the kernel as the poll loop expects.
// Taking the descriptor out of `TTYPort` (`into_raw_fd` then `from_raw_fd`)
// is the one unsafe call of this crate.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd};

use serialport::{DataBits, FlowControl, Parity, SerialPort, StopBits, TTYPort};

use crate::stream::StreamLink;

/// A framed link over a serial port or pty.
pub type SerialLink = StreamLink<File>;

/// The baud rate `pty_pair` sets on its slave (a pty has no line speed; the
/// value is only reported back).
const PTY_BAUD: u32 = 115_200;

/// A `serialport` error as an `io::Error` whose message names `path`.
/// `serialport` reports a port held by another opener (`TIOCEXCL`'s `EBUSY`,
/// a taken `flock`) as `NoDevice`, which its own conversion turns into
/// `NotFound`: here it stays `ResourceBusy`, the kind the kernel's `EBUSY` has.
fn port_error(path: &str, e: serialport::Error) -> io::Error {
    let kind = match e.kind() {
        serialport::ErrorKind::NoDevice => io::ErrorKind::ResourceBusy,
        serialport::ErrorKind::InvalidInput => io::ErrorKind::InvalidInput,
        serialport::ErrorKind::Io(kind) => kind,
        serialport::ErrorKind::Unknown => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("{path}: {e}"))
}

/// The configured port's descriptor as a plain `File`: `TTYPort` neither
/// implements `AsFd` nor reads without polling first. Dropping the `File`
/// closes the descriptor, which also releases the `flock`; a `TIOCEXCL` set by
/// `open_serial` stays until the kernel releases the tty (a pty: once both
/// ends are closed), as it did with the hand-written termios code.
fn into_file(port: TTYPort) -> File {
    let fd = port.into_raw_fd();
    // SAFETY: `TTYPort::into_raw_fd` gives up the descriptor the port owned
    // (it forgets itself without closing it), so the `File` is its only owner.
    unsafe { File::from_raw_fd(fd) }
}

/// The settings of every serial link: 8N1, no flow control, `baud`.
fn settings(path: &str, baud: u32) -> serialport::SerialPortBuilder {
    serialport::new(path, baud)
        .data_bits(DataBits::Eight)
        .parity(Parity::None)
        .stop_bits(StopBits::One)
        .flow_control(FlowControl::None)
        // Leave DTR to the kernel (it raises it on open); a pty has no modem
        // lines to set.
        .preserve_dtr_on_open()
}

/// Open a serial device (`/dev/ttyS1`, `/dev/ttyUSB0`, a QEMU `/dev/pts/N`)
/// at `baud`, 8N1, raw, no flow control, exclusively.
///
/// Any baud rate above 0 that the device's driver takes is accepted (on
/// Linux `serialport` sets it with `termios2`/`BOTHER`); 0, which would hang
/// the line up, is `InvalidInput`. A device already held exclusively by
/// another opener is `ResourceBusy`.
pub fn open_serial(path: &str, baud: u32, max_frame: usize) -> io::Result<SerialLink> {
    if baud == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{path}: baud rate 0")));
    }
    // `TTYPort::open` rather than `builder.open()`: the concrete type gives
    // up its descriptor. It opens O_NOCTTY | O_CLOEXEC, takes the port
    // exclusively (TIOCEXCL, exclusive flock), sets raw mode (`cfmakeraw`,
    // CREAD, CLOCAL), then 8N1, no flow control and the baud rate; every
    // step works on a pty too.
    let port = TTYPort::open(&settings(path, baud).exclusive(true)).map_err(|e| port_error(path, e))?;
    StreamLink::new(into_file(port), max_frame)
}

/// A connected pseudo-terminal pair (the master, and the slave in raw
/// mode, 8N1, no flow control): a real kernel tty for tests and emulation.
pub fn pty_pair(max_frame: usize) -> io::Result<(SerialLink, SerialLink)> {
    let (master, slave) = TTYPort::pair().map_err(|e| port_error("pty pair", e))?;
    let name = slave.name().ok_or_else(|| io::Error::other("pty pair: the slave has no name"))?;
    // `pair` only makes the slave raw (`cfmakeraw`); as serialport's docs
    // show, the slave is opened again by name for the line settings, the
    // same ones `open_serial` sets (CREAD, CLOCAL, 8N1, ...). Not exclusive
    // (a shared flock, no TIOCEXCL), like the pair itself; `pair`'s own slave
    // descriptor is closed once the new one holds the tty.
    let configured =
        TTYPort::open(&settings(&name, PTY_BAUD).exclusive(false)).map_err(|e| port_error(&name, e))?;
    drop(slave);
    Ok((StreamLink::new(into_file(master), max_frame)?, StreamLink::new(into_file(configured), max_frame)?))
}
