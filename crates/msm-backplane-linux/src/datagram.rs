//! One frame per datagram: Unix-domain datagram and UDP sockets.
//!
//! The kernel keeps datagram boundaries, so no framing is added: a frame is
//! a datagram. Integrity is the upper layer's (the checkpoint core checks a
//! CRC-32C of its own; UDP has its checksum).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixDatagram;

use msm_backplane::{ErrorType, Link};

use crate::error::Error;

/// A connected datagram socket.
pub trait Datagram: AsFd {
    /// Whether "connection refused" is a lost datagram (UDP: an ICMP port
    /// unreachable while the peer is not up yet) rather than a closed peer
    /// (a Unix socket whose peer is gone).
    const REFUSED_IS_LOSS: bool;
    fn send(&self, buf: &[u8]) -> io::Result<usize>;
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
}

impl Datagram for UnixDatagram {
    const REFUSED_IS_LOSS: bool = false;
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        UnixDatagram::send(self, buf)
    }
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        UnixDatagram::recv(self, buf)
    }
}

impl Datagram for UdpSocket {
    const REFUSED_IS_LOSS: bool = true;
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        UdpSocket::send(self, buf)
    }
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        UdpSocket::recv(self, buf)
    }
}

/// A link over a connected datagram socket `S`, non-blocking.
#[derive(Debug)]
pub struct DatagramLink<S> {
    sock: S,
    max_frame: usize,
    /// One byte more than the maximum, to see oversize datagrams.
    rx: Box<[u8]>,
    oversize: u64,
}

/// A link over a connected Unix-domain datagram socket.
pub type UnixDatagramLink = DatagramLink<UnixDatagram>;
/// A link over a connected UDP socket.
pub type UdpLink = DatagramLink<UdpSocket>;

/// Two connected Unix datagram links (`socketpair(2)`).
pub fn unix_datagram_pair(max_frame: usize) -> io::Result<(UnixDatagramLink, UnixDatagramLink)> {
    let (a, b) = UnixDatagram::pair()?;
    Ok((DatagramLink::new(a, max_frame)?, DatagramLink::new(b, max_frame)?))
}

impl UdpLink {
    /// Bind `local`, connect to `peer` (only its datagrams are received).
    pub fn bind_connect(local: SocketAddr, peer: SocketAddr, max_frame: usize) -> io::Result<UdpLink> {
        let sock = UdpSocket::bind(local)?;
        sock.connect(peer)?;
        DatagramLink::new(sock, max_frame)
    }
}

impl<S: Datagram> DatagramLink<S> {
    /// A link over `sock` (already connected), switched to non-blocking.
    pub fn new(sock: S, max_frame: usize) -> io::Result<Self> {
        crate::set_nonblocking(sock.as_fd())?;
        Ok(DatagramLink { sock, max_frame, rx: vec![0; max_frame + 1].into_boxed_slice(), oversize: 0 })
    }
}

impl<S> DatagramLink<S> {
    /// Datagrams dropped for exceeding the maximum frame.
    pub fn oversize(&self) -> u64 {
        self.oversize
    }

    pub fn get_ref(&self) -> &S {
        &self.sock
    }
}

impl<S> ErrorType for DatagramLink<S> {
    type Error = Error;
}

impl<S: Datagram> Link for DatagramLink<S> {
    fn max_frame(&self) -> usize {
        self.max_frame
    }

    fn send(&mut self, frame: &[u8]) -> Result<(), Error> {
        if frame.len() > self.max_frame {
            return Err(Error::FrameTooLarge { len: frame.len(), max: self.max_frame });
        }
        loop {
            return match self.sock.send(frame) {
                Ok(n) if n == frame.len() => Ok(()),
                Ok(n) => Err(Error::Io(io::Error::other(format!("datagram cut to {n} bytes")))),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    if S::REFUSED_IS_LOSS {
                        Ok(())
                    } else {
                        Err(Error::PeerLost)
                    }
                }
                Err(e) => Err(Error::from_io(e)),
            };
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        loop {
            match self.sock.recv(&mut self.rx) {
                Ok(n) if n > self.max_frame => {
                    self.oversize += 1;
                    return Err(Error::FrameTooLarge { len: n, max: self.max_frame });
                }
                Ok(n) => {
                    let max = buf.len();
                    let dst = buf.get_mut(..n).ok_or(Error::FrameTooLarge { len: n, max })?;
                    dst.copy_from_slice(&self.rx[..n]);
                    return Ok(Some(n));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && S::REFUSED_IS_LOSS => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Err(Error::PeerLost),
                Err(e) => {
                    return match Error::from_io(e) {
                        Error::WouldBlock => Ok(None),
                        e => Err(e),
                    };
                }
            }
        }
    }
}

impl<S: AsFd> AsFd for DatagramLink<S> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl<S: AsRawFd> AsRawFd for DatagramLink<S> {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}
