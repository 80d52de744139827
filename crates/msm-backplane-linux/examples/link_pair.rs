//! A backplane link pair on Linux: two modules' ends of a Unix stream socket
//! exchange framed frames (COBS + CRC-32C) through the `msm_backplane::Link`
//! trait, in a `poll(2)` loop; then what the framing does with a damaged byte
//! stream, and the same exchange over a datagram pair.
//!
//! ```sh
//! cargo run -p msm-backplane-linux --example link_pair
//! ```
//!
//! The example asserts each step, so a regression makes it exit non-zero.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use msm_backplane::{Link, framing};
use msm_backplane_linux::{Clock, StreamLink, unix_datagram_pair, unix_stream_pair, wait};

const MAX_FRAME: usize = 1024;

/// Receive one frame on `link`, sleeping in `poll(2)` until it is readable (at most 5 s).
fn recv_one<L: Link + AsFd>(link: &mut L, buf: &mut [u8]) -> std::io::Result<usize>
where
    std::io::Error: From<L::Error>,
{
    let clock = Clock::new();
    let deadline = clock.now() + Duration::from_secs(5);
    loop {
        if let Some(n) = link.recv(buf)? {
            return Ok(n);
        }
        if wait(&[(link.as_fd(), link.tx_pending())], Some(clock.until(deadline)))? == 0 {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
    }
}

/// Module A sends `count` frames of growing size; module B echoes each; A checks every echo.
fn ping_pong<L: Link + AsFd>(name: &str, a: &mut L, b: &mut L, count: usize) -> std::io::Result<()>
where
    std::io::Error: From<L::Error>,
{
    let clock = Clock::new();
    let start = clock.now();
    let (mut buf_a, mut buf_b) = ([0u8; MAX_FRAME], [0u8; MAX_FRAME]);
    let mut bytes = 0;
    for i in 0..count {
        // Every byte value, zeros included: the framing must carry them all.
        let frame: Vec<u8> = (0..(i * 37) % MAX_FRAME + 1).map(|k| (k * 7 + i) as u8).collect();
        a.send(&frame)?;
        a.flush()?;
        let n = recv_one(b, &mut buf_b)?;
        assert_eq!(&buf_b[..n], frame.as_slice(), "frame {i} reached B intact");
        b.send(&buf_b[..n])?;
        b.flush()?;
        let n = recv_one(a, &mut buf_a)?;
        assert_eq!(&buf_a[..n], frame.as_slice(), "echo {i} reached A intact");
        bytes += 2 * n;
    }
    println!(
        "  {name}: {count} frames echoed, {} KiB of payload in {} ms",
        bytes / 1024,
        clock.now().saturating_since(start).as_millis()
    );
    Ok(())
}

fn main() -> std::io::Result<()> {
    println!("1. a Unix stream link pair (what msm-node --backplane unix:... uses)");
    let (mut a, mut b) = unix_stream_pair(MAX_FRAME)?;
    ping_pong("stream", &mut a, &mut b, 200)?;
    let counters = b.counters();
    assert_eq!((counters.frames, counters.bad_crc, counters.resyncs), (200, 0, 0));

    println!("2. a damaged byte stream: garbage, a frame with one bit flipped, then a good frame");
    let (mut raw, theirs) = UnixStream::pair()?;
    let mut b = StreamLink::new(theirs, MAX_FRAME)?;
    let mut wire = [0u8; framing::max_encoded_len(MAX_FRAME)];
    raw.write_all(b"\x13\x37 line noise")?;
    let n = framing::encode(b"heartbeat 1", &mut wire, true).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    wire[4] ^= 0x10;
    raw.write_all(&wire[..n])?;
    let n = framing::encode(b"heartbeat 2", &mut wire, true).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    raw.write_all(&wire[..n])?;
    let mut buf = [0u8; MAX_FRAME];
    let n = recv_one(&mut b, &mut buf)?;
    assert_eq!(&buf[..n], b"heartbeat 2", "the first good frame after the damage");
    let c = b.counters();
    println!(
        "  received {:?}; dropped: {} bad CRC, {} resync(s), {} runt(s)",
        String::from_utf8_lossy(&buf[..n]),
        c.bad_crc,
        c.resyncs,
        c.runts
    );
    assert_eq!(c.frames, 1);
    assert!(c.bad_crc + c.resyncs + c.runts >= 2, "the garbage and the damaged frame were counted");

    println!("3. a Unix datagram link pair: one frame per datagram, no framing needed");
    let (mut a, mut b) = unix_datagram_pair(MAX_FRAME)?;
    ping_pong("datagram", &mut a, &mut b, 200)?;

    println!("every frame arrived intact and in order; damage was dropped and counted");
    Ok(())
}
