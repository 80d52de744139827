//! The framer under garbage, damage and arbitrary input.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::HashMap;

use msm_backplane::framing::{self, FrameDecoder};
use proptest::prelude::*;
use rand::{Rng, RngCore};
use rand_pcg::Pcg64Mcg;

const MAX: usize = 1024;

fn encode_vec(payload: &[u8], lead: bool) -> Vec<u8> {
    let mut out = vec![0; framing::max_encoded_len(payload.len())];
    let n = framing::encode(payload, &mut out, lead).unwrap();
    out.truncate(n);
    out
}

/// Decode `stream` fed in random chunks; every frame out.
fn decode_all(dec: &mut FrameDecoder<Box<[u8]>>, stream: &[u8], rng: &mut Pcg64Mcg) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let cut = rng.random_range(1..=4096).min(rest.len());
        let (chunk, tail) = rest.split_at(cut);
        rest = tail;
        let mut input = chunk;
        while let Some(f) = dec.decode(&mut input) {
            frames.push(f.to_vec());
        }
    }
    frames
}

#[test]
fn megabytes_of_garbage_interleaved_with_frames_let_every_intact_frame_through_and_no_other() {
    let seed = 0x6A7B_A6E5;
    let mut rng = Pcg64Mcg::new(seed);
    let mut stream = Vec::new();
    // id -> (payload, intact)
    let mut sent: HashMap<u64, (Vec<u8>, bool)> = HashMap::new();
    let mut id = 0u64;
    // Whether the line is in sync (the last thing sent was an intact frame).
    let mut in_sync = true;
    let (mut garbage_bytes, mut damaged) = (0usize, 0usize);
    while stream.len() < 6 << 20 {
        match rng.random_range(0..10) {
            0..=2 => {
                let len = rng.random_range(0..3000);
                let start = stream.len();
                stream.resize(start + len, 0);
                rng.fill_bytes(&mut stream[start..]);
                garbage_bytes += len;
                in_sync = len == 0 && in_sync;
            }
            k => {
                id += 1;
                let len = rng.random_range(8..=MAX);
                let mut payload = vec![0; len];
                rng.fill_bytes(&mut payload);
                payload[..8].copy_from_slice(&id.to_le_bytes());
                // Back-to-back frames share a delimiter; after anything else
                // the frame starts with its own, as a stream driver does.
                let lead = !in_sync || rng.random_bool(0.5);
                let mut wire = encode_vec(&payload, lead);
                let intact = k != 9;
                if !intact {
                    damaged += 1;
                    // Damage the COBS body, not a delimiter: a frame that
                    // only lost its trailing delimiter is restored by the
                    // next leading one.
                    let i = rng.random_range(usize::from(lead)..wire.len() - 1);
                    match rng.random_range(0..3) {
                        0 => wire[i] ^= 1 << rng.random_range(0..8),
                        1 => {
                            wire.remove(i);
                        }
                        _ => wire.truncate(i),
                    }
                }
                stream.extend_from_slice(&wire);
                sent.insert(id, (payload, intact));
                in_sync = intact;
            }
        }
    }
    let mut dec = FrameDecoder::with_buffer(vec![0u8; MAX].into_boxed_slice());
    let frames = decode_all(&mut dec, &stream, &mut rng);
    let mut seen = HashMap::new();
    for f in &frames {
        assert!(f.len() >= 8, "seed {seed:#x}: a frame that was never sent came out: {f:02x?}");
        let fid = u64::from_le_bytes(f[..8].try_into().unwrap());
        let Some((payload, intact)) = sent.get(&fid) else {
            panic!("seed {seed:#x}: a frame that was never sent came out: {f:02x?}")
        };
        assert!(*intact, "seed {seed:#x}: damaged frame {fid} came out");
        assert_eq!(f, payload, "seed {seed:#x}: frame {fid} came out altered");
        *seen.entry(fid).or_insert(0) += 1;
    }
    for (fid, (_, intact)) in &sent {
        if *intact {
            assert_eq!(seen.get(fid), Some(&1), "seed {seed:#x}: intact frame {fid} did not come out once");
        }
    }
    let c = dec.counters();
    println!(
        "{} bytes: {} frames sent ({} damaged), {} garbage bytes; counters {c:?}",
        stream.len(),
        sent.len(),
        damaged,
        garbage_bytes
    );
    assert_eq!(c.frames as usize, frames.len());
    assert!(c.bad_crc + c.resyncs + c.oversize > 0);
}

#[test]
fn a_lost_delimiter_merges_back_to_back_frames_and_a_leading_one_restores_it() {
    let a = encode_vec(&[1; 30], true);
    let b = encode_vec(&[2; 30], false);
    let c = encode_vec(&[3; 30], true);
    let mut dec = FrameDecoder::<[u8; 64]>::new();
    // Frame a loses its trailing delimiter: a and b (no leading delimiter)
    // merge, both lost. The second time, c's leading delimiter ends a.
    let mut stream = a[..a.len() - 1].to_vec();
    stream.extend_from_slice(&b);
    stream.extend_from_slice(&a[..a.len() - 1]);
    stream.extend_from_slice(&c);
    let mut input = &stream[..];
    let mut out = Vec::new();
    while let Some(f) = dec.decode(&mut input) {
        out.push(f.to_vec());
    }
    assert_eq!(out, vec![vec![1; 30], vec![3; 30]]);
}

#[test]
fn decoder_with_small_buffer_drops_oversize_frames_and_counts_them() {
    let big = encode_vec(&[0x55; 600], true);
    let small = encode_vec(&[0x66; 100], true);
    let mut dec = FrameDecoder::<[u8; 128]>::new();
    let stream = [big.clone(), small.clone(), big, small].concat();
    let mut input = &stream[..];
    let mut n = 0;
    while let Some(f) = dec.decode(&mut input) {
        assert_eq!(f, &[0x66; 100][..]);
        n += 1;
    }
    assert_eq!(n, 2);
    assert_eq!(dec.counters().oversize, 2);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Arbitrary bytes never panic the decoder, and whatever comes out is a
    /// frame whose exact encoding is in the input (never a made-up one).
    #[test]
    fn arbitrary_input_yields_only_frames_encoded_in_it(
        input in prop::collection::vec(any::<u8>(), 0..4096),
        max in 0usize..600,
    ) {
        let mut dec = FrameDecoder::with_buffer(vec![0u8; 512]);
        dec.set_max_frame(max);
        let mut rest = &input[..];
        while let Some(f) = dec.decode(&mut rest) {
            prop_assert!(f.len() <= max.min(512));
            let body = encode_vec(f, false);
            prop_assert!(input.windows(body.len()).any(|w| w == &body[..]));
        }
        prop_assert!(rest.is_empty());
    }

    /// Any payload encodes within `max_encoded_len`, with no delimiter inside,
    /// and decodes back.
    #[test]
    fn arbitrary_payload_round_trips(payload in prop::collection::vec(any::<u8>(), 0..1100), lead: bool) {
        let wire = encode_vec(&payload, lead);
        prop_assert!(wire.len() <= framing::max_encoded_len(payload.len()));
        prop_assert!(!wire[usize::from(lead)..wire.len() - 1].contains(&0));
        let mut dec = FrameDecoder::with_buffer(vec![0u8; 1100]);
        let mut input = &wire[..];
        prop_assert_eq!(dec.decode(&mut input), Some(&payload[..]));
    }

    /// A frame with its delimiters survives any garbage around it and any
    /// way the stream is cut into reads.
    #[test]
    fn a_frame_between_arbitrary_garbage_comes_out(
        before in prop::collection::vec(any::<u8>(), 0..2000),
        payload in prop::collection::vec(any::<u8>(), 0..700),
        after in prop::collection::vec(any::<u8>(), 0..2000),
        cuts in prop::collection::vec(1usize..512, 1..20),
    ) {
        let stream = [before, encode_vec(&payload, true), after].concat();
        let mut dec = FrameDecoder::<[u8; 700]>::new();
        let mut found = false;
        let mut rest = &stream[..];
        let mut cuts = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*cuts.next().unwrap()).min(rest.len());
            let (mut chunk, tail) = rest.split_at(n);
            rest = tail;
            while let Some(f) = dec.decode(&mut chunk) {
                found |= f == &payload[..];
            }
        }
        prop_assert!(found);
    }
}
