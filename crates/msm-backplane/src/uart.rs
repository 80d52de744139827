//! A link over a byte stream with `embedded-io` traits: an MCU's UART.
//!
//! Frames are encoded with [`crate::framing`] into a transmit buffer and
//! written only as far as the device reports [`WriteReady`]; received bytes
//! are read only while it reports [`ReadReady`], so no call ever blocks and
//! the driver fits a poll loop (or an interrupt-fed ring buffer that
//! implements the same traits).

use core::fmt;

use embedded_io::{Read, ReadReady, Write, WriteReady};

use crate::framing::{self, FrameDecoder, FrameReader};
use crate::link::{self, ErrorKind, ErrorType, Link};

/// Bytes read from the device per `read` call.
const RX_CHUNK: usize = 64;
/// Device reads per [`Link::recv`] call at most, so a babbling line cannot
/// hold the poll loop.
const MAX_READS_PER_RECV: usize = 16;

/// Errors of a [`UartLink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum UartError<E> {
    /// The device failed.
    Io(E),
    /// The transmit buffer has no room for this frame now.
    WouldBlock,
    /// The frame exceeds the link's maximum, or the caller's buffer.
    FrameTooLarge,
    /// The device reported end of stream.
    Closed,
}

impl<E: fmt::Debug> link::Error for UartError<E> {
    fn kind(&self) -> ErrorKind {
        match self {
            UartError::Io(_) => ErrorKind::Io,
            UartError::WouldBlock => ErrorKind::WouldBlock,
            UartError::FrameTooLarge => ErrorKind::FrameTooLarge,
            UartError::Closed => ErrorKind::PeerLost,
        }
    }
}

impl<E: fmt::Debug> fmt::Display for UartError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UartError::Io(e) => write!(f, "UART error: {e:?}"),
            UartError::WouldBlock => f.write_str("UART transmit buffer full"),
            UartError::FrameTooLarge => f.write_str("frame too large"),
            UartError::Closed => f.write_str("UART stream closed"),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for UartError<E> {}

/// A framed link over a UART. `MAX` is the largest frame (payload) in bytes;
/// `TX` the transmit buffer, which must hold at least one encoded frame of
/// `MAX` bytes ([`framing::max_encoded_len`]); more lets frames queue.
///
/// RAM: `MAX + TX + 64` bytes plus the device.
#[derive(Debug)]
pub struct UartLink<U, const MAX: usize, const TX: usize> {
    uart: U,
    reader: FrameReader<[u8; MAX], [u8; RX_CHUNK]>,
    tx: [u8; TX],
    tx_pos: usize,
    tx_len: usize,
}

impl<U, const MAX: usize, const TX: usize> UartLink<U, MAX, TX> {
    const TX_HOLDS_A_FRAME: () =
        assert!(TX >= framing::max_encoded_len(MAX), "UartLink: TX must hold one encoded MAX frame");

    /// A link over `uart` (already configured: baud rate, 8N1, FIFOs).
    pub fn new(uart: U) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::TX_HOLDS_A_FRAME;
        UartLink {
            uart,
            reader: FrameReader::new(FrameDecoder::new(), [0; RX_CHUNK]),
            tx: [0; TX],
            tx_pos: 0,
            tx_len: 0,
        }
    }

    /// Framing counters of the receive side (bad CRC, oversize, resyncs).
    pub fn counters(&self) -> framing::FramingCounters {
        self.reader.decoder().counters()
    }

    /// The device.
    pub fn inner(&self) -> &U {
        &self.uart
    }

    /// The device, mutably (e.g. to clear an interrupt).
    pub fn inner_mut(&mut self) -> &mut U {
        &mut self.uart
    }

    /// The device back.
    pub fn into_inner(self) -> U {
        self.uart
    }
}

impl<U: embedded_io::ErrorType, const MAX: usize, const TX: usize> ErrorType for UartLink<U, MAX, TX> {
    type Error = UartError<U::Error>;
}

impl<U, const MAX: usize, const TX: usize> Link for UartLink<U, MAX, TX>
where
    U: Read + ReadReady + Write + WriteReady,
{
    fn max_frame(&self) -> usize {
        MAX
    }

    fn send(&mut self, frame: &[u8]) -> Result<(), Self::Error> {
        if frame.len() > MAX {
            return Err(UartError::FrameTooLarge);
        }
        self.flush()?;
        if self.tx_pos > 0 {
            self.tx.copy_within(self.tx_pos..self.tx_len, 0);
            self.tx_len -= self.tx_pos;
            self.tx_pos = 0;
        }
        // A burst starts with a delimiter: cuts off noise from the idle line.
        let lead = self.tx_len == 0;
        let room = &mut self.tx[self.tx_len..];
        let n = framing::encode(frame, room, lead).map_err(|_| UartError::WouldBlock)?;
        self.tx_len += n;
        self.flush()
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Self::Error> {
        self.flush()?;
        let mut reads = 0;
        loop {
            match self.reader.next_frame(buf) {
                Some(Ok(n)) => return Ok(Some(n)),
                Some(Err(_)) => return Err(UartError::FrameTooLarge),
                None => {}
            }
            if reads == MAX_READS_PER_RECV || !self.uart.read_ready().map_err(UartError::Io)? {
                return Ok(None);
            }
            reads += 1;
            let uart = &mut self.uart;
            if self.reader.fill(|rx| uart.read(rx)).map_err(UartError::Io)? == 0 {
                return Err(UartError::Closed);
            }
        }
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        while self.tx_pos < self.tx_len && self.uart.write_ready().map_err(UartError::Io)? {
            let n = self.uart.write(&self.tx[self.tx_pos..self.tx_len]).map_err(UartError::Io)?;
            if n == 0 {
                return Err(UartError::Closed);
            }
            self.tx_pos = (self.tx_pos + n).min(self.tx_len);
        }
        if self.tx_pos == self.tx_len {
            self.tx_pos = 0;
            self.tx_len = 0;
        }
        Ok(())
    }

    fn tx_pending(&self) -> bool {
        self.tx_pos < self.tx_len
    }
}
