//! Frames over a byte-stream descriptor (serial port, pty, Unix stream
//! socket): COBS + CRC-32C framing from `msm_backplane::framing`.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;

use bytes::{Buf, BytesMut};
use msm_backplane::framing::{self, FrameDecoder, FrameReader, FramingCounters};
use msm_backplane::{ErrorType, Link};

use crate::error::Error;

/// Bytes read per `read(2)`.
const RX_CHUNK: usize = 16 * 1024;
/// Queued bytes that make `send` write without waiting for `flush`.
const WRITE_AT: usize = 32 * 1024;
/// `read(2)` calls per `recv` at most, so a flood cannot hold the loop.
const MAX_READS_PER_RECV: usize = 16;

/// A framed link over a non-blocking byte stream `T`.
///
/// Frames queue in a transmit buffer (16 largest frames, at least 64 KiB)
/// and go out on [`Link::flush`] (also called by `recv`, and by `send` once
/// 32 KiB are queued), so the frames of one poll-loop iteration leave in one
/// `write(2)`. A poll loop calls `flush` every iteration and waits for
/// writability while [`Link::tx_pending`].
#[derive(Debug)]
pub struct StreamLink<T> {
    io: T,
    max_frame: usize,
    reader: FrameReader<Box<[u8]>, Box<[u8]>>,
    tx: BytesMut,
    tx_limit: usize,
}

/// A framed link over a Unix-domain stream socket.
pub type UnixStreamLink = StreamLink<UnixStream>;

/// Two connected Unix stream links (`socketpair(2)`).
pub fn unix_stream_pair(max_frame: usize) -> io::Result<(UnixStreamLink, UnixStreamLink)> {
    let (a, b) = UnixStream::pair()?;
    Ok((StreamLink::new(a, max_frame)?, StreamLink::new(b, max_frame)?))
}

impl<T: Read + Write + AsFd> StreamLink<T> {
    /// Frames of up to `max_frame` bytes over `io`, which is switched to
    /// non-blocking mode. The transmit buffer holds 16 largest frames (or
    /// 64 KiB, whichever is more).
    pub fn new(io: T, max_frame: usize) -> io::Result<Self> {
        crate::set_nonblocking(io.as_fd())?;
        let tx_limit = (16 * framing::max_encoded_len(max_frame)).max(64 * 1024);
        Ok(StreamLink {
            io,
            max_frame,
            reader: FrameReader::new(
                FrameDecoder::with_buffer(vec![0; max_frame].into_boxed_slice()),
                vec![0; RX_CHUNK].into_boxed_slice(),
            ),
            tx: BytesMut::with_capacity(tx_limit),
            tx_limit,
        })
    }
}

impl<T> StreamLink<T> {
    /// Receive-side framing counters (bad CRC, oversize, resyncs).
    pub fn counters(&self) -> FramingCounters {
        self.reader.decoder().counters()
    }

    /// Bytes queued for the descriptor.
    pub fn tx_queued(&self) -> usize {
        self.tx.len()
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }

    pub fn get_mut(&mut self) -> &mut T {
        &mut self.io
    }

    pub fn into_inner(self) -> T {
        self.io
    }
}

impl<T> ErrorType for StreamLink<T> {
    type Error = Error;
}

impl<T: Read + Write> Link for StreamLink<T> {
    fn max_frame(&self) -> usize {
        self.max_frame
    }

    fn send(&mut self, frame: &[u8]) -> Result<(), Error> {
        if frame.len() > self.max_frame {
            return Err(Error::FrameTooLarge { len: frame.len(), max: self.max_frame });
        }
        self.flush()?;
        let need = framing::max_encoded_len(frame.len());
        if !self.tx.is_empty() && self.tx.len() + need > self.tx_limit {
            return Err(Error::WouldBlock);
        }
        // A burst starts with a delimiter: cuts off noise from an idle line.
        let lead = self.tx.is_empty();
        let start = self.tx.len();
        self.tx.resize(start + need, 0);
        match framing::encode(frame, &mut self.tx[start..], lead) {
            Ok(n) => self.tx.truncate(start + n),
            Err(_) => {
                self.tx.truncate(start);
                return Err(Error::Io(io::Error::other("frame encoder: buffer too small")));
            }
        }
        // Frames sent in one loop iteration leave in one write(2) at flush;
        // a large batch starts moving before then.
        if self.tx.len() >= WRITE_AT {
            self.flush()?;
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        match self.flush() {
            Ok(()) | Err(Error::WouldBlock) => {}
            Err(e) => return Err(e),
        }
        let mut reads = 0;
        loop {
            match self.reader.next_frame(buf) {
                Some(Ok(n)) => return Ok(Some(n)),
                Some(Err(len)) => return Err(Error::FrameTooLarge { len, max: buf.len() }),
                None => {}
            }
            if reads == MAX_READS_PER_RECV {
                return Ok(None);
            }
            reads += 1;
            let io = &mut self.io;
            match self.reader.fill(|rx| io.read(rx)) {
                Ok(0) => return Err(Error::PeerLost),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return match Error::from_io(e) {
                        Error::WouldBlock => Ok(None),
                        e => Err(e),
                    };
                }
            }
        }
    }

    fn flush(&mut self) -> Result<(), Error> {
        while !self.tx.is_empty() {
            match self.io.write(&self.tx) {
                Ok(0) => return Err(Error::PeerLost),
                Ok(n) => self.tx.advance(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return match Error::from_io(e) {
                        Error::WouldBlock => Ok(()),
                        e => Err(e),
                    };
                }
            }
        }
        Ok(())
    }

    fn tx_pending(&self) -> bool {
        !self.tx.is_empty()
    }
}

impl<T: AsFd> AsFd for StreamLink<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.as_fd()
    }
}

impl<T: AsRawFd> AsRawFd for StreamLink<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.io.as_raw_fd()
    }
}
