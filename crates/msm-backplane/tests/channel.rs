//! The reliable channel over faulty links, in virtual time.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::Duration;

use proptest::prelude::*;

use common::{ByteFaults, MemLink, byte_pair, mem_pair, message};
use msm_backplane::UartLink;
use msm_backplane::channel::{Channel, ChannelConfig, ChannelError, ChannelLink, LostReason};
use msm_backplane::{Error as _, ErrorKind, Link};
use msm_backplane::{FaultConfig, FaultInjector, Rate};
use msm_time::Instant;

const WINDOW: usize = 16;
const FRAME: usize = 256;
type Side = Channel<WINDOW, FRAME>;
type Faulty = FaultInjector<MemLink, 64, FRAME>;

fn faults() -> FaultConfig {
    FaultConfig {
        drop: Rate::percent(20),
        duplicate: Rate::percent(5),
        reorder: Rate::percent(5),
        corrupt: Rate::percent(1),
        ..FaultConfig::NONE
    }
}

/// One node of a test: its channel, its faulty link, what it sent and got.
struct Node {
    ch: Side,
    link: Faulty,
    next_send: u64,
    next_recv: u64,
}

impl Node {
    fn new(link: MemLink, cfg: FaultConfig, seed: u64, epoch: u32) -> Node {
        Node {
            ch: Channel::new(ChannelConfig::new(epoch), Instant::ZERO),
            link: FaultInjector::new(link, cfg, seed),
            next_send: 0,
            next_recv: 0,
        }
    }

    /// One poll-loop iteration: receive, deliver (checking order and
    /// content), queue up to `total` messages, transmit.
    fn step(&mut self, now: Instant, total: u64, seed: u64) -> Result<(), ChannelError> {
        let mut buf = [0u8; FRAME];
        self.link.set_now(now);
        while let Some(n) = self.link.recv(&mut buf).unwrap() {
            let _ = self.ch.handle(now, &buf[..n]);
        }
        while let Some(n) = self.ch.recv(&mut buf)? {
            let want = message(self.next_recv, 100);
            assert_eq!(&buf[..n], &want[..], "seed {seed}: message {} wrong or out of order", self.next_recv);
            self.next_recv += 1;
        }
        while self.next_send < total && self.ch.can_send() {
            self.ch.send(&message(self.next_send, 100))?;
            self.next_send += 1;
        }
        while let Some(n) = self.ch.poll_transmit(now, &mut buf) {
            self.link.send(&buf[..n]).unwrap();
        }
        Ok(())
    }
}

#[test]
fn hundred_thousand_messages_arrive_exactly_once_in_order_through_20pct_drop_5pct_dup_5pct_reorder_1pct_corruption()
 {
    let seed = 20_250_401;
    let total = 100_000;
    let (a, b) = mem_pair(FRAME, 1 << 20);
    let mut a = Node::new(a, faults(), seed, 1);
    let mut b = Node::new(b, faults(), seed + 1, 2);
    let step = Duration::from_micros(500);
    let mut now = Instant::ZERO;
    // Both directions carry a stream: A sends 100 000, B 20 000.
    while a.next_recv < 20_000 || b.next_recv < total {
        now = now + step;
        a.step(now, total, seed).unwrap_or_else(|e| panic!("seed {seed}: A at {now:?}: {e}"));
        b.step(now, 20_000, seed).unwrap_or_else(|e| panic!("seed {seed}: B at {now:?}: {e}"));
        assert!(now < Instant::from_millis(3_600_000), "seed {seed}: no progress");
    }
    // Let the last acks arrive; nothing more may be delivered.
    for _ in 0..2000 {
        now = now + step;
        a.step(now, total, seed).unwrap();
        b.step(now, 20_000, seed).unwrap();
    }
    assert_eq!((b.next_recv, a.next_recv), (total, 20_000), "seed {seed}");
    assert_eq!((a.ch.unacked(), b.ch.unacked()), (0, 0), "seed {seed}");
    let (fa, sa) = (a.link.stats(), a.ch.stats());
    let (fb, sb) = (b.link.stats(), b.ch.stats());
    println!("A faults {fa:?}\nA channel {sa:?}\nB faults {fb:?}\nB channel {sb:?}\nvirtual time {now:?}");
    // The faults really happened, in the configured proportions.
    let got = fb.received as f64;
    assert!((fb.dropped as f64 / got - 0.20).abs() < 0.01, "seed {seed}: {fb:?}");
    assert!(fb.duplicated > 1000 && fb.reordered > 1000 && fb.corrupted > 200, "seed {seed}: {fb:?}");
    assert!(sb.bad_crc > 200 && sb.duplicates > 1000, "seed {seed}: {sb:?}");
}

#[test]
fn partition_longer_than_give_up_time_yields_peer_lost_on_both_sides_then_reset_recovers() {
    let seed = 7;
    let (a, b) = mem_pair(FRAME, 1 << 16);
    let mut a = Node::new(a, FaultConfig::NONE, seed, 10);
    let mut b = Node::new(b, FaultConfig::NONE, seed + 1, 20);
    let step = Duration::from_millis(1);
    let mut now = Instant::ZERO;
    while b.next_recv < 500 {
        now = now + step;
        a.step(now, 1000, seed).unwrap();
        b.step(now, 0, seed).unwrap();
    }
    let give_up = a.ch.config().give_up;
    let cut = now;
    a.link.partition_until(cut + give_up * 3);
    b.link.partition_until(cut + give_up * 3);
    let mut lost = [None, None];
    while lost.iter().any(Option::is_none) {
        now = now + step;
        for (i, node) in [&mut a, &mut b].into_iter().enumerate() {
            match node.step(now, 1000, seed) {
                Ok(()) => {}
                Err(ChannelError::PeerLost(r)) => {
                    assert_eq!(r, LostReason::Silence);
                    lost[i].get_or_insert(now);
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(now < cut + give_up * 2, "no PeerLost by {now:?}");
    }
    for t in lost.into_iter().flatten() {
        let after = t.saturating_since(cut);
        assert!(after >= give_up && after <= give_up + Duration::from_millis(120), "lost after {after:?}");
    }
    assert_eq!(ErrorKind::PeerLost, ChannelError::PeerLost(LostReason::Silence).kind());
    // Heal, start a new connection on both sides: traffic flows again.
    a.link.heal();
    b.link.heal();
    a.ch.reset(now, 11);
    b.ch.reset(now, 21);
    (a.next_send, b.next_recv) = (0, 0);
    while b.next_recv < 300 {
        now = now + step;
        a.step(now, 300, seed).unwrap();
        b.step(now, 0, seed).unwrap();
    }
}

#[test]
fn a_restarted_peer_is_reported_and_the_new_connection_starts_clean() {
    let seed = 9;
    let (a, b) = mem_pair(FRAME, 1 << 16);
    let mut a = Node::new(a, FaultConfig::NONE, seed, 100);
    let b_link = b;
    let mut b = Node::new(b_link, FaultConfig::NONE, seed + 1, 200);
    let mut now = Instant::ZERO;
    let step = Duration::from_millis(1);
    while b.next_recv < 50 {
        now = now + step;
        a.step(now, 100, seed).unwrap();
        b.step(now, 0, seed).unwrap();
    }
    // B reboots: same link, new epoch, empty state.
    b.ch = Channel::new(ChannelConfig::new(201), now);
    b.next_recv = 0;
    let mut err = None;
    // B says something within its keepalive interval.
    for _ in 0..300 {
        now = now + step;
        if let Err(e) = a.step(now, 100, seed) {
            err = Some(e);
            break;
        }
        // B, fresh, adopts whatever it hears first and ignores A's old stream
        // addressed to its previous epoch.
        let _ = b.step(now, 0, seed);
    }
    assert_eq!(err, Some(ChannelError::PeerLost(LostReason::PeerRestarted)));
    a.ch.reset(now, 101);
    b.ch.reset(now, 202);
    (a.next_send, b.next_recv) = (0, 0);
    while b.next_recv < 100 {
        now = now + step;
        a.step(now, 100, seed).unwrap();
        b.step(now, 0, seed).unwrap();
        assert!(now < Instant::from_millis(100_000));
    }
}

#[test]
fn sender_window_and_message_size_are_enforced() {
    let mut ch: Channel<4, 64> = Channel::new(ChannelConfig::new(1), Instant::ZERO);
    assert_eq!(ch.max_message(), 64 - msm_backplane::channel::OVERHEAD);
    assert_eq!(ch.send(&[0; 64]), Err(ChannelError::MessageTooLarge));
    for _ in 0..4 {
        ch.send(&[1; 10]).unwrap();
    }
    assert_eq!(ch.send(&[1; 10]), Err(ChannelError::WouldBlock));
    // Garbage and truncated packets are refused, never a panic.
    for len in 0..80 {
        let junk: Vec<u8> = (0..len).map(|i| (i * 37) as u8).collect();
        assert!(ch.handle(Instant::ZERO, &junk).is_err());
    }
}

#[test]
fn channel_link_over_uart_framing_over_a_lossy_byte_stream_delivers_in_order() {
    let seed = 31;
    let faults = ByteFaults { drop: 0.0005, flip: 0.0005, insert: 0.0005 };
    let (ua, ub) = byte_pair(16, faults, seed);
    type Stack = ChannelLink<UartLink<common::BytePipe, FRAME, 1024>, 8, FRAME>;
    let mut a: Stack = ChannelLink::new(UartLink::new(ua), ChannelConfig::new(1), Instant::ZERO);
    let mut b: Stack = ChannelLink::new(UartLink::new(ub), ChannelConfig::new(2), Instant::ZERO);
    assert_eq!(a.max_frame(), FRAME - msm_backplane::channel::OVERHEAD);
    let total = 3000;
    let (mut sent, mut got) = (0u64, 0u64);
    let mut now = Instant::ZERO;
    let mut buf = [0u8; FRAME];
    while got < total {
        // About a UART's pace: 16 bytes per 100 µs each way.
        now = now + Duration::from_micros(100);
        while sent < total {
            match a.send(&message(sent, 200)) {
                Ok(()) => sent += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("seed {seed}: {e:?}"),
            }
        }
        a.poll(now).unwrap();
        b.poll(now).unwrap();
        while let Some(n) = b.recv(&mut buf).unwrap() {
            assert_eq!(&buf[..n], &message(got, 200)[..], "seed {seed}: message {got}");
            got += 1;
        }
        assert!(now < Instant::from_millis(600_000), "seed {seed}: stuck at {got}");
    }
    let c = b.link().counters();
    println!("receiver framing {c:?}, channel {:?}", b.channel().stats());
    assert!(c.bad_crc + c.resyncs > 0, "the byte faults struck");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Arbitrary packets, with a valid CRC so the parser behind it is
    /// exercised, never panic the channel, and it keeps working.
    #[test]
    fn arbitrary_packets_with_valid_crc_never_break_the_channel(
        kind in prop_oneof![Just(0xA1u8), Just(0xA2u8), any::<u8>()],
        body in prop::collection::vec(any::<u8>(), 0..300),
        epoch_known in any::<bool>(),
    ) {
        let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
        let mut ch: Channel<8, 128> = Channel::new(ChannelConfig::new(5), Instant::ZERO);
        let mut packet = vec![kind];
        packet.extend_from_slice(&body);
        if epoch_known && packet.len() >= 9 {
            packet[5..9].copy_from_slice(&5u32.to_le_bytes());
        }
        let sum = crc.checksum(&packet);
        packet.extend_from_slice(&sum.to_le_bytes());
        ch.send(b"still works").unwrap();
        let _ = ch.handle(Instant::from_millis(1), &packet);
        let mut buf = [0u8; 128];
        let mut n = 0;
        while ch.poll_transmit(Instant::from_millis(2), &mut buf).is_some() {
            n += 1;
            prop_assert!(n < 100);
        }
        let _ = ch.recv(&mut buf);
    }
}
