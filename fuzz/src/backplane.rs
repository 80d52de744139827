//! The backplane's byte-stream framing and reliable channel under fuzzing.
//!
//! Input of `backplane_frame`: byte 0, bit 0 picks the part.
//! - 0, framing: byte 1 is the decoder's largest frame, byte 2 seeds the
//!   chunk sizes, the rest is a received byte stream. It is decoded whole,
//!   in chunks, and through a `FrameReader` with a small read buffer: the
//!   three must give the same frames, none over the limit. Each frame then
//!   reaches a channel as a packet.
//! - 1, channel: records `[dt: u8] [len: u8] [len bytes]`: `dt` ms pass,
//!   then the bytes with their CRC-32C ([`seal_packet`]) arrive as a packet.
//!
//! Memory is bounded by construction (fixed buffers, no allocation in the
//! crate); the checks here are that nothing panics, lengths stay within the
//! configured limits, and the decoder does not depend on how reads split
//! the stream.

use core::time::Duration;

use msm_backplane::channel::{Channel, ChannelConfig};
use msm_backplane::framing::{FrameDecoder, FrameReader};
use msm_time::Instant;

/// Channel under test: a window of 4, packets of at most 128 bytes.
pub type FuzzChannel = Channel<WINDOW, PACKET>;
pub const WINDOW: usize = 4;
pub const PACKET: usize = 128;
/// The decoder's buffer; byte 1 of the input lowers the limit below it.
pub const DECODER: usize = 256;
/// Read buffer of the `FrameReader`: small, so frames span reads.
const READ: usize = 17;
/// Messages the side under test sends in a run.
const MESSAGES: u32 = 16;
/// Milliseconds run after the last packet.
pub const TAIL_MS: u32 = 50;
/// The epoch of the side under test.
pub const EPOCH: u32 = 1;

/// A packet the channel accepts: `body` and its CRC-32C.
pub fn seal_packet(body: &[u8]) -> Vec<u8> {
    let mut p = body.to_vec();
    p.extend_from_slice(&crate::CRC32C.checksum(body).to_le_bytes());
    p
}

/// One side of a channel on a 1 ms clock, sending [`MESSAGES`] messages.
#[derive(Debug)]
pub struct Side {
    pub ch: Box<FuzzChannel>,
    pub now: Instant,
    sent: u32,
}

impl Side {
    pub fn new(epoch: u32) -> Side {
        Side {
            ch: Box::new(FuzzChannel::new(ChannelConfig::new(epoch), Instant::ZERO)),
            now: Instant::ZERO,
            sent: 0,
        }
    }

    /// A packet arrives now; refusals are the channel's to count.
    pub fn deliver(&mut self, packet: &[u8]) {
        let _ = self.ch.handle(self.now, packet);
    }

    /// This millisecond's work: timers, read every message, keep the window
    /// busy, send every packet (`out` sees them); then the clock moves on.
    pub fn tick(&mut self, out: &mut dyn FnMut(&[u8])) {
        let ch = &mut self.ch;
        if ch.poll_timeout().is_some_and(|t| t <= self.now) {
            ch.handle_timeout(self.now);
        }
        let mut msg = [0u8; PACKET];
        while let Ok(Some(n)) = ch.recv(&mut msg) {
            assert!(n <= FuzzChannel::MAX_MESSAGE, "message of {n} bytes");
        }
        while self.sent < MESSAGES && ch.can_send() && ch.send(&self.sent.to_le_bytes()).is_ok() {
            self.sent += 1;
        }
        let mut packet = [0u8; PACKET];
        while let Some(n) = ch.poll_transmit(self.now, &mut packet) {
            assert!(n <= PACKET, "packet of {n} bytes");
            out(&packet[..n]);
        }
        assert!(ch.unacked() <= WINDOW, "{} unacknowledged, window {WINDOW}", ch.unacked());
        self.now = self.now + Duration::from_millis(1);
    }
}

/// Chunk sizes 1..=32 from a seed (an LCG: any sequence will do, the same
/// one on replay).
fn chunks(stream: &[u8], seed: u8) -> impl Iterator<Item = &[u8]> {
    let (mut rest, mut x) = (stream, u32::from(seed));
    core::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let (chunk, r) = rest.split_at(rest.len().min(1 + (x >> 16) as usize % 32));
        rest = r;
        Some(chunk)
    })
}

/// The frames of `stream` decoded in `pieces`, each checked against `max`.
fn decode_pieces<'a>(max: usize, pieces: impl Iterator<Item = &'a [u8]>) -> (Vec<Vec<u8>>, u64) {
    let mut dec = FrameDecoder::<[u8; DECODER]>::new();
    dec.set_max_frame(max);
    let mut frames = Vec::new();
    for piece in pieces {
        let mut input = piece;
        while let Some(f) = dec.decode(&mut input) {
            assert!(f.len() <= max, "frame of {} bytes, limit {max}", f.len());
            frames.push(f.to_vec());
        }
        assert!(input.is_empty(), "decode stopped before the end of its input");
    }
    (frames, u64::from(dec.counters().frames))
}

/// The frames of `stream` through a `FrameReader` reading [`READ`] bytes at a time.
fn read_frames(max: usize, stream: &[u8]) -> Vec<Vec<u8>> {
    let mut dec = FrameDecoder::<[u8; DECODER]>::new();
    dec.set_max_frame(max);
    let mut reader = FrameReader::new(dec, [0u8; READ]);
    let mut rest = stream;
    let mut frames = Vec::new();
    let mut out = [0u8; DECODER];
    while !rest.is_empty() {
        let _ = reader.fill(|buf| -> Result<usize, ()> {
            let n = buf.len().min(rest.len());
            buf[..n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            Ok(n)
        });
        while let Some(r) = reader.next_frame(&mut out) {
            match r {
                Ok(n) => frames.push(out[..n].to_vec()),
                Err(n) => panic!("a frame of {n} bytes passed a decoder limited to {max}"),
            }
        }
    }
    frames
}

/// The whole `backplane_frame` run.
pub fn run(data: &[u8]) {
    match data {
        [mode, max, seed, stream @ ..] if mode & 1 == 0 => framing(usize::from(*max), *seed, stream),
        [mode, rest @ ..] if mode & 1 == 1 => drop(channel(rest)),
        _ => {}
    }
}

fn framing(max: usize, seed: u8, stream: &[u8]) {
    let (whole, counted) = decode_pieces(max, core::iter::once(stream));
    assert_eq!(counted, whole.len() as u64, "frames counted and delivered differ");
    let (chunked, _) = decode_pieces(max, chunks(stream, seed));
    assert_eq!(whole, chunked, "the frames depend on how the stream was split");
    assert_eq!(whole, read_frames(max, stream), "FrameReader gives other frames");
    let mut side = Side::new(EPOCH);
    for f in &whole {
        side.deliver(f);
        side.tick(&mut |_| {});
    }
}

/// The records of channel input.
pub fn packets(mut input: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    core::iter::from_fn(move || {
        let (&dt, rest) = input.split_first()?;
        let (&len, rest) = rest.split_first().unwrap_or((&0, &[]));
        let (body, rest) = rest.split_at(usize::from(len).min(rest.len()));
        input = rest;
        Some((dt, body))
    })
}

/// Append a channel record: `dt` ms pass (split when longer than 255), then
/// `packet` arrives (its body, sealed again on replay).
pub fn push_packet(out: &mut Vec<u8>, mut dt: u64, packet: &[u8]) {
    while dt > 255 {
        // An empty body is refused as malformed: time passes, nothing changes.
        out.extend_from_slice(&[255, 0]);
        dt -= 255;
    }
    let body = &packet[..packet.len().saturating_sub(4)];
    out.push(dt as u8);
    out.push(body.len() as u8);
    out.extend_from_slice(body);
}

/// The channel part of the run; the side, for the seed generator's check.
pub fn channel(input: &[u8]) -> Side {
    let mut side = Side::new(EPOCH);
    for (dt, body) in packets(input) {
        for _ in 0..dt {
            side.tick(&mut |_| {});
        }
        side.deliver(&seal_packet(body));
    }
    for _ in 0..TAIL_MS {
        side.tick(&mut |_| {});
    }
    side
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_stream_in_order() {
        let s: Vec<u8> = (0..=255).collect();
        assert_eq!(chunks(&s, 9).flatten().copied().collect::<Vec<_>>(), s);
        assert!(chunks(&s, 9).all(|c| (1..=32).contains(&c.len())));
    }
}
