//! Tests of `wire`, beside it.

use super::*;

fn sample(buf: &mut [u8]) -> usize {
    let mut w = FrameWriter::new(buf, 0, 1, 0x105, &Body::Data).unwrap();
    w.push(&Record::Run { stream: 3, epoch: 2, first_seq: 7 }).unwrap();
    w.push(&Record::Begin { total: 2, covers: 9 }).unwrap();
    w.push(&Record::Bulk(b"vlan 10")).unwrap();
    w.push(&Record::End { digest: 99 }).unwrap();
    let n = w.finish();
    seal(&mut buf[..n], Some(&Key::new([7; 32])), 3, 1);
    n
}

#[test]
fn round_trip_with_records() {
    let mut buf = [0u8; 128];
    let n = sample(&mut buf);
    let f = decode(&buf[..n]).unwrap();
    assert_eq!((f.from, f.to, f.term), (0, 1, 0x105));
    assert_eq!(f.body, Body::Data);
    let mut tail = f.tail;
    assert_eq!(take::<Record<'_>>(&mut tail).unwrap(), Record::Run { stream: 3, epoch: 2, first_seq: 7 });
    assert_eq!(take::<Record<'_>>(&mut tail).unwrap(), Record::Begin { total: 2, covers: 9 });
    assert_eq!(take::<Record<'_>>(&mut tail).unwrap(), Record::Bulk(b"vlan 10"));
    assert_eq!(take::<Record<'_>>(&mut tail).unwrap(), Record::End { digest: 99 });
    assert!(tail.is_empty());
    let s = open(&buf[..n]).unwrap();
    assert_eq!((s.key_id, s.incarnation, s.counter), (Key::new([7; 32]).id(), 3, 1));
    assert_eq!(s.signed().len() + TRAILER_LEN, n);
}

#[test]
fn heartbeats_are_told_from_other_frames_whatever_the_term() {
    let hb = Heartbeat {
        role: 1,
        priority: 0,
        health: 100,
        backup: 1,
        in_sync: true,
        session: u32::MAX,
        incarnation: u32::MAX,
        config: DigestMark { epoch: u32::MAX, seq: u64::MAX, digest: u64::MAX },
        challenge: u32::MAX,
        echo: [[u32::MAX; 2]; MAX_NODES],
        holds: u64::MAX,
        keys: [u32::MAX; 2],
        base: u64::MAX,
        made: u64::MAX,
        acked: u64::MAX,
        overrules: u64::MAX,
    };
    for term in [0, 1, 0x7F, 0x80, u64::MAX] {
        let mut buf = [0u8; MAX_HEARTBEAT];
        let mut w = FrameWriter::new(&mut buf, 0, BROADCAST, term, &Body::Heartbeat(hb)).unwrap();
        w.push(&HeartbeatExt { newest: u8::MAX, release: u32::MAX }).unwrap();
        let n = w.finish();
        seal(&mut buf[..n], None, 1, 1);
        assert!(is_heartbeat(&buf[..n]), "term {term}");
        if term == u64::MAX {
            assert_eq!(n, MAX_HEARTBEAT, "the worst case is the constant");
        }
        let least = Heartbeat::default();
        let m = FrameWriter::new(&mut buf, 0, BROADCAST, 0, &Body::Heartbeat(least)).unwrap().finish();
        assert_eq!(m, 65, "the smallest heartbeat (of a version-4 module), as docs/wire-protocol.md says");
        let n = FrameWriter::new(&mut buf, 0, 1, term, &Body::Handover { force: false }).unwrap().finish();
        seal(&mut buf[..n], None, 1, 2);
        assert!(!is_heartbeat(&buf[..n]), "term {term}");
    }
    let mut buf = [0u8; 128];
    let n = sample(&mut buf);
    assert!(!is_heartbeat(&buf[..n]));
    assert!(!is_heartbeat(&[0xC5; 8]), "too short");
}

/// The example of `docs/wire-protocol.md`, byte for byte.
#[test]
fn worked_example_of_the_docs() {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = i as u8;
    }
    let key = Key::new(k);
    assert_eq!((key.fingerprint(), key.id()), (0x630d_cd29, 100));
    let mut buf = [0u8; 64];
    let n = FrameWriter::new(&mut buf, 0, 1, 0x1FF, &Body::Handover { force: false }).unwrap().finish();
    seal(&mut buf[..n], Some(&key), 7, 1);
    let want = [
        0xC5, 0x05, 0x00, 0x01, 0x64, 0x07, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0xFF, 0x03, 0x06, 0x00, 0xF4, 0x93, 0x04, 0x86, 0x1D, 0x58, 0x7F, 0xAE, 0x16, 0x3E, 0x86, 0x46, 0xD3,
        0xFF, 0x4B, 0x3F, 0xCB, 0xCD, 0x9D, 0x48,
    ];
    assert_eq!(&buf[..n], &want[..]);
}

#[test]
fn a_version_1_frame_is_named_not_parsed() {
    // Version 1: magic, 1, from, to, postcard body, CRC-32C; no tag.
    let mut v1 = [MAGIC, 1, 2, 0xFF, 0xFF, 0x03, 0x00, 0, 0, 0, 0];
    let crc = CRC32C.checksum(&v1[..7]);
    v1[7..].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(open(&v1), Err(WireError::UnsupportedVersion { from: 2, got: 1 }));
}

#[test]
fn garbage_frames_rejected_by_name() {
    let mut buf = [0u8; 128];
    let n = sample(&mut buf);
    assert_eq!(decode(&buf[..3]), Err(WireError::Truncated));
    let mut bad = buf;
    bad[0] = 0x00;
    assert_eq!(decode(&bad[..n]), Err(WireError::BadMagic(0)));
    let mut bad = buf;
    bad[1] = 9;
    assert_eq!(decode(&bad[..n]), Err(WireError::BadCrc), "a corrupted version byte is corruption");
    let crc = CRC32C.checksum(&bad[..n - CRC_LEN]);
    bad[n - CRC_LEN..n].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(decode(&bad[..n]), Err(WireError::UnsupportedVersion { from: 0, got: 9 }));
    for i in 1..n {
        let mut bad = buf;
        bad[i] ^= 0x40;
        assert_eq!(decode(&bad[..n]), Err(WireError::BadCrc), "flip at byte {i}");
    }
}

#[test]
fn crc_valid_but_malformed_body_is_named() {
    let mut buf = [0xEEu8; 48];
    buf[..4].copy_from_slice(&[MAGIC, PROTOCOL_VERSION, 0, 1]);
    seal(&mut buf, None, 1, 1);
    assert_eq!(decode(&buf), Err(WireError::Malformed));
}

#[test]
fn record_len_matches_postcard() {
    for len in [0usize, 1, 127, 128, 300, 16_384] {
        let data = [7u8; 16_384];
        let mut buf = [0u8; 16_400];
        let n = postcard::to_slice(&Record::Change(&data[..len]), &mut buf).unwrap().len();
        assert_eq!(n, bytes_record_len(len), "len {len}");
    }
}

#[test]
fn full_buffer_leaves_frame_intact() {
    let mut buf = [0u8; 48];
    let mut w = FrameWriter::new(&mut buf, 0, 1, 1, &Body::Handover { force: false }).unwrap();
    assert_eq!(w.push(&Record::Bulk(&[0u8; 64])), Err(WireError::BufferTooSmall));
    let n = w.finish();
    seal(&mut buf[..n], None, 1, 1);
    assert_eq!(decode(&buf[..n]).unwrap().body, Body::Handover { force: false });
}

/// Whichever CRC-32C is built (the instruction with `hw-crc`) agrees with
/// the tables at every length and alignment around its 8-byte steps.
#[test]
fn the_frame_check_agrees_with_the_tables() {
    let bytes: [u8; 300] = core::array::from_fn(|i| (i * 37 + 11) as u8);
    for start in 0..9 {
        for end in start..bytes.len() {
            assert_eq!(super::crc32c(&bytes[start..end]), CRC32C.checksum(&bytes[start..end]));
        }
    }
}
