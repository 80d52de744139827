//! The link trait: whole frames in, whole frames out, never blocking.
//!
//! Every backplane driver implements [`Link`] (a UART, a pty, a Unix or UDP
//! socket, the fault injector, redundant paths over other links),
//! and a board hands one to its poll loop:
//!
//! ```text
//! while let Some(n) = node.poll_transmit(now, host, &mut buf) { link.send(&buf[..n]) }
//! while let Some(n) = link.recv(&mut buf)? { node.handle_frame(now, &buf[..n], host) }
//! link.flush()?
//! ```
//!
//! Errors follow the embedded-hal pattern: each driver has its own error type
//! and maps it to a portable [`ErrorKind`] with [`Error::kind`].

use core::fmt;

use msm_time::Instant;

/// What went wrong, portable across drivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ErrorKind {
    /// The link cannot take this frame now (transmit buffer or window full);
    /// nothing was sent. Try the same frame again after the link made progress.
    WouldBlock,
    /// The frame is larger than [`Link::max_frame`] (send), or larger than the
    /// caller's buffer (recv; that frame is dropped).
    FrameTooLarge,
    /// The other end is gone: a closed socket or pty.
    PeerLost,
    /// The device or operating system reported an error.
    Io,
    /// Anything else.
    Other,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::WouldBlock => "link cannot take a frame now",
            ErrorKind::FrameTooLarge => "frame too large",
            ErrorKind::PeerLost => "peer lost",
            ErrorKind::Io => "I/O error",
            ErrorKind::Other => "link error",
        })
    }
}

impl core::error::Error for ErrorKind {}

/// A driver's error: anything that can say which [`ErrorKind`] it is.
pub trait Error: fmt::Debug {
    fn kind(&self) -> ErrorKind;
}

impl Error for ErrorKind {
    fn kind(&self) -> ErrorKind {
        *self
    }
}

/// The error type of a link.
pub trait ErrorType {
    type Error: Error;
}

impl<T: ErrorType + ?Sized> ErrorType for &mut T {
    type Error = T::Error;
}

/// A point-to-point link carrying whole frames. No method blocks.
///
/// A frame handed to [`send`](Link::send) arrives whole or not at all (links
/// may lose, duplicate, reorder or, without a CRC of their own, corrupt
/// frames; the layers above check). Frames never merge or split.
pub trait Link: ErrorType {
    /// Largest frame this link carries, in bytes.
    fn max_frame(&self) -> usize;

    /// Queue one frame for transmission. `Err` of kind
    /// [`ErrorKind::WouldBlock`] when the link cannot take it now (nothing was
    /// queued: offer the same frame again later), [`ErrorKind::FrameTooLarge`]
    /// when `frame` exceeds [`max_frame`](Link::max_frame).
    fn send(&mut self, frame: &[u8]) -> Result<(), Self::Error>;

    /// Take the next received frame into `buf`: `Ok(Some(len))`, or
    /// `Ok(None)` when none is complete now. A frame longer than `buf` is
    /// dropped with an error of kind [`ErrorKind::FrameTooLarge`].
    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Self::Error>;

    /// Push queued bytes towards the device without blocking. Drivers with a
    /// transmit buffer need this called every poll-loop iteration (`send` and
    /// `recv` also make progress); others do nothing.
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Whether queued bytes wait for the device to accept them: a poll loop
    /// then also waits for writability.
    fn tx_pending(&self) -> bool {
        false
    }

    /// The board's time, once a loop turn, for links that judge their
    /// paths' health ([`Redundant`](crate::Redundant)). True when the path
    /// data goes on changed: what was in flight on the old one may be lost,
    /// and the layer above should retransmit it now.
    fn tick(&mut self, _now: Instant) -> bool {
        false
    }

    /// The layer above refused the last frame received (corrupt, forged,
    /// replayed): links with several paths count it against that path.
    fn refused(&mut self) {}
}

impl<T: Link + ?Sized> Link for &mut T {
    fn max_frame(&self) -> usize {
        T::max_frame(self)
    }
    fn send(&mut self, frame: &[u8]) -> Result<(), Self::Error> {
        T::send(self, frame)
    }
    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Self::Error> {
        T::recv(self, buf)
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        T::flush(self)
    }
    fn tx_pending(&self) -> bool {
        T::tx_pending(self)
    }
    fn tick(&mut self, now: Instant) -> bool {
        T::tick(self, now)
    }
    fn refused(&mut self) {
        T::refused(self)
    }
}
