//! The error of every Linux link.

use std::fmt;
use std::io;

use msm_backplane::ErrorKind;

/// Why a Linux link call failed.
#[derive(Debug)]
pub enum Error {
    /// The kernel buffer (or the link's transmit buffer) is full: offer the
    /// same frame again once the descriptor is writable.
    WouldBlock,
    /// A frame larger than the link's maximum (send), or than the caller's
    /// buffer or the maximum (receive; that frame is dropped).
    FrameTooLarge {
        len: usize,
        max: usize,
    },
    /// The other end closed (end of stream, hang-up, connection refused on a
    /// Unix socket).
    PeerLost,
    Io(io::Error),
}

impl Error {
    /// Classify an I/O error of a send or receive.
    pub(crate) fn from_io(e: io::Error) -> Error {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::WouldBlock,
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
            | io::ErrorKind::UnexpectedEof => Error::PeerLost,
            // A pty master reads EIO once the slave side is closed.
            _ if e.raw_os_error() == Some(nix::libc::EIO) => Error::PeerLost,
            _ => Error::Io(e),
        }
    }
}

impl msm_backplane::Error for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::WouldBlock => ErrorKind::WouldBlock,
            Error::FrameTooLarge { .. } => ErrorKind::FrameTooLarge,
            Error::PeerLost => ErrorKind::PeerLost,
            Error::Io(_) => ErrorKind::Io,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::WouldBlock => f.write_str("link cannot take a frame now"),
            Error::FrameTooLarge { len, max } => write!(f, "frame of {len} bytes exceeds {max}"),
            Error::PeerLost => f.write_str("peer closed the link"),
            Error::Io(e) => write!(f, "link I/O error: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io(e) => e,
            Error::WouldBlock => io::ErrorKind::WouldBlock.into(),
            Error::PeerLost => io::ErrorKind::BrokenPipe.into(),
            e @ Error::FrameTooLarge { .. } => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
        }
    }
}
