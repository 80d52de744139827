//! The backplane's byte-stream framing under fuzzing.
//!
//! Input of `backplane_frame`: byte 0 is kept for the corpus's sake (its
//! inputs from when a second part was fuzzed here) and not read; byte 1 is
//! the decoder's largest frame, byte 2 seeds the chunk sizes, the rest is a
//! received byte stream. It is decoded whole, in chunks, and through a
//! `FrameReader` with a small read buffer: the three must give the same
//! frames, none over the limit.
//!
//! Memory is bounded by construction (fixed buffers, no allocation in the
//! crate); the checks here are that nothing panics, lengths stay within the
//! configured limits, and the decoder does not depend on how reads split
//! the stream.

use msm_backplane::framing::{FrameDecoder, FrameReader};

/// The decoder's buffer; byte 1 of the input lowers the limit below it.
pub const DECODER: usize = 256;
/// Read buffer of the `FrameReader`: small, so frames span reads.
const READ: usize = 17;

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
    if let [_, max, seed, stream @ ..] = data {
        framing(usize::from(*max), *seed, stream);
    }
}

fn framing(max: usize, seed: u8, stream: &[u8]) {
    let (whole, counted) = decode_pieces(max, core::iter::once(stream));
    assert_eq!(counted, whole.len() as u64, "frames counted and delivered differ");
    let (chunked, _) = decode_pieces(max, chunks(stream, seed));
    assert_eq!(whole, chunked, "the frames depend on how the stream was split");
    assert_eq!(whole, read_frames(max, stream), "FrameReader gives other frames");
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
