//! Serial ports and ptys as framed stream links, configured with `nix`'s
//! termios: raw mode (`cfmakeraw`), 8N1, no flow control, the baud rate,
//! exclusive access (`TIOCEXCL`), non-blocking.
// `TIOCEXCL` has no safe wrapper in nix: the one unsafe call of this crate.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use nix::fcntl::OFlag;
use nix::pty::openpty;
use nix::sys::termios::{self, BaudRate, ControlFlags, SetArg, Termios};

use crate::stream::StreamLink;

/// A framed link over a serial port or pty.
pub type SerialLink = StreamLink<File>;

nix::ioctl_none_bad!(tiocexcl, nix::libc::TIOCEXCL);

fn baud_rate(baud: u32) -> io::Result<BaudRate> {
    Ok(match baud {
        9_600 => BaudRate::B9600,
        19_200 => BaudRate::B19200,
        38_400 => BaudRate::B38400,
        57_600 => BaudRate::B57600,
        115_200 => BaudRate::B115200,
        230_400 => BaudRate::B230400,
        460_800 => BaudRate::B460800,
        921_600 => BaudRate::B921600,
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unsupported baud rate {other}"),
            ));
        }
    })
}

/// Raw 8N1, no flow control, at `baud`.
fn raw_8n1(t: &mut Termios, baud: BaudRate) -> io::Result<()> {
    termios::cfmakeraw(t);
    t.control_flags &=
        !(ControlFlags::PARENB | ControlFlags::CSTOPB | ControlFlags::CSIZE | ControlFlags::CRTSCTS);
    t.control_flags |= ControlFlags::CS8 | ControlFlags::CLOCAL | ControlFlags::CREAD;
    termios::cfsetspeed(t, baud)?;
    Ok(())
}

fn configure(file: &File, baud: BaudRate) -> io::Result<()> {
    let mut t = termios::tcgetattr(file)?;
    raw_8n1(&mut t, baud)?;
    termios::tcsetattr(file, SetArg::TCSANOW, &t)?;
    Ok(())
}

/// Open a serial device (`/dev/ttyS1`, `/dev/ttyUSB0`, a QEMU `/dev/pts/N`)
/// at `baud`, 8N1, raw, no flow control, exclusively.
pub fn open_serial(path: &str, baud: u32, max_frame: usize) -> io::Result<SerialLink> {
    let baud = baud_rate(baud)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags((OFlag::O_NOCTTY | OFlag::O_NONBLOCK).bits())
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
    // SAFETY: TIOCEXCL takes no argument; `file` is an open descriptor for the call's duration.
    unsafe { tiocexcl(file.as_raw_fd()) }
        .map_err(|e| io::Error::other(format!("{path}: exclusive access: {e}")))?;
    configure(&file, baud)?;
    StreamLink::new(file, max_frame)
}

/// A connected pseudo-terminal pair (the master, and the slave in raw
/// mode): a real kernel tty for tests and emulation.
pub fn pty_pair(max_frame: usize) -> io::Result<(SerialLink, SerialLink)> {
    let pty = openpty(None, None)?;
    let (master, slave) = (File::from(pty.master), File::from(pty.slave));
    configure(&slave, BaudRate::B115200)?;
    Ok((StreamLink::new(master, max_frame)?, StreamLink::new(slave, max_frame)?))
}
