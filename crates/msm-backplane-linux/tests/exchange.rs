//! The same two-node request/echo exchange over every real kernel object:
//! a pty pair, a serial device opened by path, Unix stream and datagram
//! sockets, UDP on loopback. One thread drives both ends with `poll(2)`.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::time::{Duration, Instant as StdInstant};

use msm_backplane::Link;
use msm_backplane::{Error as _, ErrorKind};
use msm_backplane_linux::{
    Error, StreamLink, UdpLink, open_serial, pty_pair, unix_datagram_pair, unix_stream_pair, wait,
};
use rand::{Rng, RngCore};
use rand_pcg::Pcg64Mcg;

const MAX: usize = 1024;
const FRAMES: usize = 400;
/// Requests in flight at most: keeps datagram sockets far from overflowing.
const IN_FLIGHT: usize = 8;

/// A sends `FRAMES` requests of 1..=MAX bytes; B echoes each; A checks that
/// every echo comes back whole and in order.
fn request_echo<A, B>(name: &str, mut a: A, mut b: B)
where
    A: Link<Error = Error> + AsFd,
    B: Link<Error = Error> + AsFd,
{
    let seed = 0xEC40 + name.len() as u128;
    let mut rng = Pcg64Mcg::new(seed);
    let requests: Vec<Vec<u8>> = (0..FRAMES)
        .map(|i| {
            // Sizes cover the extremes and everything between.
            let len = match i % 4 {
                0 => 1,
                1 => MAX,
                _ => rng.random_range(1..=MAX),
            };
            let mut f = vec![0; len];
            rng.fill_bytes(&mut f);
            f
        })
        .collect();
    let (mut next_send, mut next_echo) = (0, 0);
    let mut echo_queue: VecDeque<Vec<u8>> = VecDeque::new();
    let mut buf = vec![0u8; MAX];
    let deadline = StdInstant::now() + Duration::from_secs(30);
    while next_echo < FRAMES {
        let before = (next_send, next_echo, echo_queue.len());
        while next_send < FRAMES && next_send - next_echo < IN_FLIGHT {
            match a.send(&requests[next_send]) {
                Ok(()) => next_send += 1,
                Err(Error::WouldBlock) => break,
                Err(e) => panic!("{name}: send: {e}"),
            }
        }
        while let Some(n) = b.recv(&mut buf).unwrap_or_else(|e| panic!("{name}: B recv: {e}")) {
            echo_queue.push_back(buf[..n].to_vec());
        }
        while let Some(f) = echo_queue.front() {
            match b.send(f) {
                Ok(()) => {
                    echo_queue.pop_front();
                }
                Err(Error::WouldBlock) => break,
                Err(e) => panic!("{name}: echo: {e}"),
            }
        }
        b.flush().unwrap();
        a.flush().unwrap();
        while let Some(n) = a.recv(&mut buf).unwrap_or_else(|e| panic!("{name}: A recv: {e}")) {
            assert!(
                buf[..n] == requests[next_echo][..],
                "{name} (seed {seed:#x}): echo {next_echo} differs ({n} bytes)"
            );
            next_echo += 1;
        }
        if (next_send, next_echo, echo_queue.len()) != before {
            continue;
        }
        // No progress: sleep until something is readable (or writable where
        // bytes wait).
        let left = deadline.checked_duration_since(StdInstant::now()).unwrap_or_else(|| {
            panic!("{name} (seed {seed:#x}): timed out with {next_echo} of {FRAMES} echoes")
        });
        wait(
            &[(a.as_fd(), a.tx_pending()), (b.as_fd(), b.tx_pending() || !echo_queue.is_empty())],
            Some(left),
        )
        .unwrap();
    }
}

#[test]
fn request_echo_over_a_pty_pair() {
    let (a, b) = pty_pair(MAX).unwrap();
    request_echo("pty", a, b);
}

#[test]
fn request_echo_over_a_serial_device_opened_by_path() {
    // A pty slave is a real /dev/pts/N tty, like the one QEMU gives a UART.
    use nix::fcntl::OFlag;
    use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let path = ptsname_r(&master).unwrap();
    let slave = open_serial(&path, 115_200, MAX).unwrap();
    let master = StreamLink::new(master, MAX).unwrap();
    request_echo("serial", master, slave);
}

#[test]
fn request_echo_over_a_unix_stream_socket() {
    let (a, b) = unix_stream_pair(MAX).unwrap();
    request_echo("unix-stream", a, b);
}

#[test]
fn request_echo_over_a_unix_datagram_socket() {
    let (a, b) = unix_datagram_pair(MAX).unwrap();
    request_echo("unix-datagram", a, b);
}

#[test]
fn request_echo_over_udp_on_loopback() {
    let sa = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let sb = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sa.connect(sb.local_addr().unwrap()).unwrap();
    sb.connect(sa.local_addr().unwrap()).unwrap();
    let a = msm_backplane_linux::DatagramLink::new(sa, MAX).unwrap();
    let b = msm_backplane_linux::DatagramLink::new(sb, MAX).unwrap();
    request_echo("udp", a, b);
    // The convenience constructor works the same way.
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer = probe.local_addr().unwrap();
    drop(probe);
    let mut c = UdpLink::bind_connect("127.0.0.1:0".parse().unwrap(), peer, MAX).unwrap();
    // Nobody listens: a lost datagram, not an error.
    c.send(b"anyone?").unwrap();
}

#[test]
fn a_closed_peer_is_reported_as_peer_lost() {
    let mut buf = [0u8; MAX];
    let (mut a, b) = unix_stream_pair(MAX).unwrap();
    drop(b);
    assert_eq!(a.recv(&mut buf).unwrap_err().kind(), ErrorKind::PeerLost);

    let (mut a, b) = unix_datagram_pair(MAX).unwrap();
    drop(b);
    assert_eq!(a.send(b"x").unwrap_err().kind(), ErrorKind::PeerLost);

    let (mut a, b) = pty_pair(MAX).unwrap();
    drop(b);
    assert_eq!(a.recv(&mut buf).unwrap_err().kind(), ErrorKind::PeerLost);

    let (mut a, _b) = unix_stream_pair(MAX).unwrap();
    assert_eq!(a.send(&[0; MAX + 1]).unwrap_err().kind(), ErrorKind::FrameTooLarge);
}
