//! Frames over byte streams: COBS with a CRC-32C trailer, `0x00` delimited.
//!
//! ```text
//! wire:     [0x00]  COBS( payload | CRC-32C(payload), 4 bytes LE )  0x00
//!           leading                                                 trailing
//! ```
//!
//! COBS (consistent overhead byte stuffing) removes every `0x00` from the
//! frame at a cost of one byte per started 254 bytes, so `0x00` marks frame
//! boundaries unambiguously. The trailing delimiter ends every frame; the
//! leading one is written only at the start of a burst (the transmit buffer
//! was empty), so back-to-back frames share one delimiter and a frame sent
//! after an idle line is still cut off from any noise that came before it.
//!
//! The decoder resynchronises at every `0x00`: garbage, a lost byte or a
//! corrupted byte costs the frame it hits (and, if the lost byte was a
//! delimiter, the frame after it) and never more. A frame is delivered only
//! when its COBS structure is intact, it fits the configured maximum and its
//! CRC-32C matches; everything else is counted in [`FramingCounters`].

use crate::crc32c;

/// The frame delimiter.
pub const DELIMITER: u8 = 0x00;
/// Bytes of the CRC-32C trailer inside the COBS body.
pub const CRC_LEN: usize = 4;

/// Wire bytes of one frame of `payload_len` bytes in the worst case (no zero
/// byte in it), with both delimiters.
pub const fn max_encoded_len(payload_len: usize) -> usize {
    // COBS adds one code byte per started 254 bytes (at least one).
    let body = payload_len + CRC_LEN;
    let codes = if body == 0 { 1 } else { body.div_ceil(254) };
    1 + body + codes + 1
}

/// Why a frame could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BufferTooSmall;

/// Encode `payload` into `out` as one wire frame: a leading delimiter if
/// `lead`, the COBS body (payload and CRC-32C), the trailing delimiter.
/// Returns the bytes written. `out` must hold [`max_encoded_len`] bytes.
///
/// The COBS encoding is byte-for-byte the `cobs` crate's (a test checks it),
/// done a run at a time rather than a byte at a time; decoding uses the
/// crate's state machine.
pub fn encode(payload: &[u8], out: &mut [u8], lead: bool) -> Result<usize, BufferTooSmall> {
    if out.len() < max_encoded_len(payload.len()) {
        return Err(BufferTooSmall);
    }
    let mut w = 0;
    if lead {
        out[0] = DELIMITER;
        w = 1;
    }
    let crc = crc32c::checksum(payload).to_le_bytes();
    let mut enc = Cobs { code_at: w, w: w + 1 };
    enc.push(payload, out);
    enc.push(&crc, out);
    let n = enc.finish(out);
    out[n] = DELIMITER;
    Ok(n + 1)
}

/// A COBS encoder writing into a buffer already checked to be large enough.
struct Cobs {
    /// Where the current block's code byte goes.
    code_at: usize,
    /// Next write position.
    w: usize,
}

impl Cobs {
    fn push(&mut self, mut data: &[u8], out: &mut [u8]) {
        while !data.is_empty() {
            // Bytes the current block can still take (a block holds 254).
            let room = 254 - (self.w - self.code_at - 1);
            let run = &data[..data.len().min(room)];
            match run.iter().position(|&b| b == 0) {
                Some(z) => {
                    out[self.w..self.w + z].copy_from_slice(&run[..z]);
                    self.w += z;
                    // The zero ends the block: its code is the distance to it.
                    out[self.code_at] = (self.w - self.code_at) as u8;
                    self.code_at = self.w;
                    self.w += 1;
                    data = &data[z + 1..];
                }
                None => {
                    out[self.w..self.w + run.len()].copy_from_slice(run);
                    self.w += run.len();
                    data = &data[run.len()..];
                    if self.w - self.code_at - 1 == 254 && !data.is_empty() {
                        // A full block without a zero: code 0xFF, next block.
                        out[self.code_at] = 0xFF;
                        self.code_at = self.w;
                        self.w += 1;
                    }
                }
            }
        }
    }

    /// Close the last block; returns the encoded end.
    fn finish(self, out: &mut [u8]) -> usize {
        out[self.code_at] = (self.w - self.code_at) as u8;
        self.w
    }
}

/// What the decoder saw, since it was made. Counters saturate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FramingCounters {
    /// Good frames delivered.
    pub frames: u32,
    /// Well-formed COBS, wrong CRC-32C: a corrupted frame or garbage.
    pub bad_crc: u32,
    /// Frames longer than the maximum, dropped up to the next delimiter.
    pub oversize: u32,
    /// Partial frames abandoned because a delimiter came where the COBS
    /// structure wanted data (a lost byte, or garbage): the decoder started
    /// over at that delimiter.
    pub resyncs: u32,
    /// Complete frames too short to hold a CRC.
    pub runts: u32,
}

/// A streaming frame decoder fed byte slices of any size.
///
/// `B` is the frame buffer (`[u8; N]` on an MCU, `Box<[u8]>` or `Vec<u8>` on
/// a host); its length is the largest payload accepted unless lowered with
/// [`set_max_frame`](FrameDecoder::set_max_frame). The CRC trailer needs no
/// room in it.
///
/// ```
/// use msm_backplane::framing::{self, FrameDecoder};
/// let mut wire = [0u8; 64];
/// let n = framing::encode(b"hello", &mut wire, true).unwrap();
/// let mut dec = FrameDecoder::<[u8; 32]>::new();
/// let mut input = &wire[..n];
/// assert_eq!(dec.decode(&mut input), Some(&b"hello"[..]));
/// assert!(input.is_empty());
/// ```
#[derive(Debug)]
pub struct FrameDecoder<B> {
    buf: B,
    max: usize,
    /// Payload bytes in `buf`.
    len: usize,
    /// The last (up to) four decoded bytes, the CRC once the frame ends;
    /// they reach `buf` only when newer bytes push them out.
    tail: [u8; CRC_LEN],
    held: u8,
    state: cobs::DecoderState,
    /// Dropping bytes up to the next delimiter (oversize frame).
    discarding: bool,
    counters: FramingCounters,
}

impl<const N: usize> FrameDecoder<[u8; N]> {
    /// A decoder for payloads of up to `N` bytes.
    pub const fn new() -> Self {
        Self::from_parts([0; N], N)
    }
}

impl<const N: usize> Default for FrameDecoder<[u8; N]> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B> FrameDecoder<B> {
    const fn from_parts(buf: B, max: usize) -> Self {
        FrameDecoder {
            buf,
            max,
            len: 0,
            tail: [0; CRC_LEN],
            held: 0,
            state: cobs::DecoderState::Idle,
            discarding: false,
            counters: FramingCounters { frames: 0, bad_crc: 0, oversize: 0, resyncs: 0, runts: 0 },
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> FramingCounters {
        self.counters
    }

    /// Largest payload accepted.
    pub fn max_frame(&self) -> usize {
        self.max
    }

    /// Forget any partial frame; the next byte starts a new one.
    pub fn reset(&mut self) {
        self.len = 0;
        self.held = 0;
        self.tail = [0; CRC_LEN];
        self.state = cobs::DecoderState::Idle;
        self.discarding = false;
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> FrameDecoder<B> {
    /// A decoder using `buf` for frames of up to `buf.len()` bytes.
    pub fn with_buffer(buf: B) -> Self {
        let max = buf.as_ref().len();
        Self::from_parts(buf, max)
    }

    /// Lower (or restore) the largest payload accepted; capped at the buffer
    /// length. Takes effect from the next frame.
    pub fn set_max_frame(&mut self, max: usize) {
        self.max = max.min(self.buf.as_ref().len());
    }

    /// Consume bytes from the front of `input` until a good frame completes
    /// (returned; `input` then starts after its delimiter) or `input` is
    /// empty (`None`). Call again with the rest of the input.
    ///
    /// ```text
    /// let mut input = &rx[..n];
    /// while let Some(frame) = decoder.decode(&mut input) { handle(frame) }
    /// ```
    pub fn decode(&mut self, input: &mut &[u8]) -> Option<&[u8]> {
        let bytes: &[u8] = input;
        let max = self.max.min(self.buf.as_ref().len());
        let mut done = None;
        let mut i = 0;
        while i < bytes.len() {
            if self.discarding {
                match bytes[i..].iter().position(|&b| b == DELIMITER) {
                    Some(j) => {
                        self.reset();
                        i += j + 1;
                        continue;
                    }
                    None => break,
                }
            }
            // Fast path: inside a COBS block the next `n` bytes are data,
            // copied as a run up to the first (misplaced) delimiter, if any.
            let run = match self.state {
                cobs::DecoderState::Grab(n) | cobs::DecoderState::GrabChain(n) => usize::from(n),
                cobs::DecoderState::Idle => 0,
            };
            if run > 0 {
                let chunk = &bytes[i..bytes.len().min(i + run)];
                let k = chunk.iter().position(|&b| b == DELIMITER).unwrap_or(chunk.len());
                if k > 0 {
                    if !self.push_run(&chunk[..k], max) {
                        self.counters.oversize = self.counters.oversize.saturating_add(1);
                        self.reset();
                        self.discarding = true;
                        i += k;
                        continue;
                    }
                    let left = (run - k) as u8;
                    self.state = match self.state {
                        cobs::DecoderState::GrabChain(_) => cobs::DecoderState::GrabChain(left),
                        _ => cobs::DecoderState::Grab(left),
                    };
                    i += k;
                    continue;
                }
            }
            let b = bytes[i];
            i += 1;
            match self.state.feed(b) {
                Ok(cobs::DecodeResult::NoData) => {}
                Ok(cobs::DecodeResult::DataContinue(x)) => {
                    if !self.push_run(&[x], max) {
                        self.counters.oversize = self.counters.oversize.saturating_add(1);
                        self.reset();
                        self.discarding = true;
                    }
                }
                Ok(cobs::DecodeResult::DataComplete) => {
                    let (len, held, crc) = (self.len, self.held, u32::from_le_bytes(self.tail));
                    self.reset();
                    if usize::from(held) < CRC_LEN {
                        self.counters.runts = self.counters.runts.saturating_add(1);
                        continue;
                    }
                    if crc32c::checksum(&self.buf.as_ref()[..len]) != crc {
                        self.counters.bad_crc = self.counters.bad_crc.saturating_add(1);
                        continue;
                    }
                    self.counters.frames = self.counters.frames.saturating_add(1);
                    done = Some((i, len));
                    break;
                }
                Err(_) => {
                    // A delimiter inside a COBS block: the frame lost bytes.
                    // The delimiter itself starts the next frame.
                    self.counters.resyncs = self.counters.resyncs.saturating_add(1);
                    self.reset();
                }
            }
        }
        match done {
            Some((used, len)) => {
                *input = &bytes[used..];
                Some(&self.buf.as_ref()[..len])
            }
            None => {
                *input = &[];
                None
            }
        }
    }

    /// Append decoded bytes: all but the last four end up in the payload
    /// buffer, the last four wait in `tail` (they are the CRC if the frame
    /// ends here). `false` when the payload would exceed `max`.
    fn push_run(&mut self, run: &[u8], max: usize) -> bool {
        let held = usize::from(self.held);
        let total = held + run.len();
        if total <= CRC_LEN {
            self.tail[held..total].copy_from_slice(run);
            self.held = total as u8;
            return true;
        }
        let out = total - CRC_LEN;
        if self.len + out > max {
            return false;
        }
        let from_tail = held.min(out);
        let from_run = out - from_tail;
        let buf = self.buf.as_mut();
        buf[self.len..self.len + from_tail].copy_from_slice(&self.tail[..from_tail]);
        buf[self.len + from_tail..self.len + out].copy_from_slice(&run[..from_run]);
        self.len += out;
        // The new tail: what is left of the old one, then the run's end.
        let mut tail = [0u8; CRC_LEN];
        let keep = held - from_tail;
        tail[..keep].copy_from_slice(&self.tail[from_tail..held]);
        tail[keep..].copy_from_slice(&run[from_run..]);
        self.tail = tail;
        self.held = CRC_LEN as u8;
        true
    }
}

/// The receive half of every byte-stream link (UART, pty, stream socket):
/// bytes read from the device and not yet decoded, and the decoder.
#[derive(Debug)]
pub struct FrameReader<B, R> {
    decoder: FrameDecoder<B>,
    rx: R,
    pos: usize,
    len: usize,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>, R: AsRef<[u8]> + AsMut<[u8]>> FrameReader<B, R> {
    /// `rx` is the read buffer: any size, one device read at a time.
    pub fn new(decoder: FrameDecoder<B>, rx: R) -> Self {
        FrameReader { decoder, rx, pos: 0, len: 0 }
    }

    /// The next frame from the bytes already read, copied into `out`:
    /// `Some(Ok(len))`; `Some(Err(len))` when it is larger than `out` (the
    /// frame is dropped); `None` when the buffered bytes are used up.
    pub fn next_frame(&mut self, out: &mut [u8]) -> Option<Result<usize, usize>> {
        while self.pos < self.len {
            let mut input = &self.rx.as_ref()[self.pos..self.len];
            let frame = self.decoder.decode(&mut input);
            self.pos = self.len - input.len();
            if let Some(frame) = frame {
                return Some(match out.get_mut(..frame.len()) {
                    Some(dst) => {
                        dst.copy_from_slice(frame);
                        Ok(frame.len())
                    }
                    None => Err(frame.len()),
                });
            }
        }
        None
    }

    /// Refill the read buffer with one `read` of the device; returns what
    /// `read` returned (0 bytes: the device reported end of stream).
    pub fn fill<E>(&mut self, read: impl FnOnce(&mut [u8]) -> Result<usize, E>) -> Result<usize, E> {
        let n = read(self.rx.as_mut())?;
        self.pos = 0;
        self.len = n.min(self.rx.as_ref().len());
        Ok(n)
    }

    pub fn decoder(&self) -> &FrameDecoder<B> {
        &self.decoder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(payload: &[u8]) {
        let mut wire = [0u8; 1200];
        let n = encode(payload, &mut wire, true).unwrap();
        assert!(n <= max_encoded_len(payload.len()));
        assert!(!wire[1..n - 1].contains(&0), "no delimiter inside a frame");
        let mut dec = FrameDecoder::<[u8; 1024]>::new();
        let mut input = &wire[..n];
        assert_eq!(dec.decode(&mut input), Some(payload));
        assert!(input.is_empty());
    }

    #[test]
    fn every_length_round_trips_through_cobs_block_boundaries() {
        for len in 0..=1024 {
            let zeros: [u8; 1024] = [0; 1024];
            let ones: [u8; 1024] = [0xFF; 1024];
            let mut mixed = [0u8; 1024];
            for (i, b) in mixed.iter_mut().enumerate() {
                *b = (i % 7) as u8;
            }
            roundtrip(&zeros[..len]);
            roundtrip(&ones[..len]);
            roundtrip(&mixed[..len]);
        }
    }

    #[test]
    fn worst_case_length_is_exact_for_zero_free_payloads() {
        let ones = [0xFFu8; 1024];
        let mut wire = [0u8; 1200];
        for len in [0, 1, 249, 250, 251, 500, 1024] {
            let n = encode(&ones[..len], &mut wire, true).unwrap();
            // The CRC may contain zero bytes, which only shortens the body.
            assert!(n <= max_encoded_len(len) && n + 2 >= max_encoded_len(len), "len {len}: {n}");
        }
    }

    #[test]
    fn encoder_matches_the_cobs_crate_byte_for_byte() {
        let mut data = [0u8; 1100];
        let mut x = 12345u32;
        for density in [0u32, 1, 8, 64, 256] {
            for len in (0..1100).step_by(7).chain(250..262).chain(505..512) {
                for b in data[..len].iter_mut() {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    *b =
                        if density > 0 && (x >> 8).is_multiple_of(density) { 0 } else { (x >> 16) as u8 | 1 };
                }
                let payload = &data[..len];
                let mut ours = [0u8; 1200];
                let n = encode(payload, &mut ours, false).unwrap();
                let mut body = [0u8; 1104];
                body[..len].copy_from_slice(payload);
                body[len..len + 4].copy_from_slice(&crc32c::checksum(payload).to_le_bytes());
                let mut theirs = [0u8; 1200];
                let m = cobs::try_encode(&body[..len + 4], &mut theirs).unwrap();
                assert_eq!(&ours[..n - 1], &theirs[..m], "len {len} density {density}");
            }
        }
    }

    #[test]
    fn oversize_frame_is_dropped_and_the_next_one_delivered() {
        let mut wire = [0u8; 256];
        let n = encode(&[7; 40], &mut wire, true).unwrap();
        let m = encode(&[8; 10], &mut wire[n..], false).unwrap();
        let mut dec = FrameDecoder::<[u8; 32]>::new();
        let mut input = &wire[..n + m];
        assert_eq!(dec.decode(&mut input), Some(&[8u8; 10][..]));
        assert_eq!(dec.counters().oversize, 1);
        dec.set_max_frame(5);
        let mut input = &wire[n..n + m];
        assert_eq!(dec.decode(&mut input), None);
        assert_eq!(dec.counters().oversize, 2);
    }

    #[test]
    fn lost_byte_costs_one_frame() {
        let mut wire = [0u8; 256];
        let n = encode(&[1, 2, 0, 3, 4, 5], &mut wire, true).unwrap();
        let m = encode(&[9; 20], &mut wire[n..], false).unwrap();
        let mut stream = [0u8; 256];
        // Drop the third byte of the first frame.
        stream[..2].copy_from_slice(&wire[..2]);
        stream[2..n + m - 1].copy_from_slice(&wire[3..n + m]);
        let mut dec = FrameDecoder::<[u8; 64]>::new();
        let mut input = &stream[..n + m - 1];
        assert_eq!(dec.decode(&mut input), Some(&[9u8; 20][..]));
        let c = dec.counters();
        assert_eq!(c.frames, 1);
        assert_eq!(c.resyncs + c.bad_crc + c.runts, 1, "{c:?}");
    }

    #[test]
    fn split_input_at_every_point_gives_the_same_frames() {
        let mut wire = [0u8; 512];
        let n = encode(&[0xAB; 300], &mut wire, true).unwrap();
        let m = encode(&[0, 0, 1], &mut wire[n..], false).unwrap();
        for cut in 0..n + m {
            let mut dec = FrameDecoder::<[u8; 300]>::new();
            let mut got = 0;
            for part in [&wire[..cut], &wire[cut..n + m]] {
                let mut input = part;
                while let Some(f) = dec.decode(&mut input) {
                    assert!(f == &[0xAB; 300][..] || f == &[0, 0, 1][..]);
                    got += 1;
                }
            }
            assert_eq!(got, 2, "cut at {cut}");
        }
    }
}
