//! A reliable, ordered channel over a link that drops, duplicates, reorders
//! or corrupts frames. Sans-IO, like the checkpoint core:
//!
//! - input: [`Channel::handle`] (a received packet), [`Channel::handle_timeout`],
//!   [`Channel::send`] (a message from the layer above);
//! - output: [`Channel::poll_transmit`] (the next packet), [`Channel::recv`]
//!   (the next message, in order, exactly once), [`Channel::poll_timeout`].
//!
//! Protocol (byte layout in `docs/backplane.md`): every message gets a
//! sequence number; every packet carries a cumulative ack (the next sequence
//! the receiver's application will read), a selective-ack bitmap of the 32
//! after it, and the receiver's window. A sender keeps up to `WINDOW`
//! messages unacknowledged, retransmits a message when three later
//! transmissions were acknowledged before it (fast retransmit) or when the
//! retransmission timer expires (RTO from smoothed RTT, doubling on each
//! expiry up to a maximum). Each side sends a keepalive when it has sent
//! nothing for a while; a side that hears nothing valid for the give-up time
//! declares the peer lost. A CRC-32C protects every packet.
//!
//! Each side has an epoch (a boot counter or random number, never reused):
//! packets carry the sender's epoch and the epoch it believes the receiver
//! has. A side that learns its peer restarted after they exchanged anything
//! reports [`LostReason::PeerRestarted`]; the application then calls
//! [`Channel::reset`] with a new epoch. Exactly-once, in-order delivery holds
//! within one connection (between resets); a [`ChannelError::PeerLost`]
//! marks the boundary, and messages unacknowledged at that point may or may
//! not have reached the peer.

use core::fmt;
use core::time::Duration;

use heapless::Vec;

use crate::Instant;
use crate::crc32c;
use crate::link::{self, ErrorKind, ErrorType, Link};

const KIND_ACK: u8 = 0xA1;
const KIND_DATA: u8 = 0xA2;
/// Kind, source epoch, destination epoch, ack, selective acks, window.
pub const HEADER_LEN: usize = 1 + 4 + 4 + 4 + 4 + 1;
/// Sequence number of a data packet.
pub const SEQ_LEN: usize = 4;
pub const CRC_LEN: usize = 4;
/// Bytes a data packet adds to its message.
pub const OVERHEAD: usize = HEADER_LEN + SEQ_LEN + CRC_LEN;
/// Transmissions acknowledged after a message before it counts as lost.
const REORDER_THRESHOLD: u64 = 3;

/// Settings of one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ChannelConfig {
    /// This incarnation's epoch: nonzero, different after every restart and
    /// reset (a boot counter, or a random number).
    pub epoch: u32,
    /// Retransmission timeout before any RTT sample, and its floor.
    pub rto_min: Duration,
    /// Ceiling of the retransmission timeout's exponential backoff.
    pub rto_max: Duration,
    /// Send a keepalive after this long without sending anything.
    pub keepalive: Duration,
    /// Declare the peer lost after this long without a valid packet from it.
    pub give_up: Duration,
}

impl ChannelConfig {
    /// Defaults for a backplane: RTO 20 ms..1 s, keepalive 100 ms, give up
    /// after 1 s of silence.
    pub const fn new(epoch: u32) -> Self {
        ChannelConfig {
            epoch,
            rto_min: Duration::from_millis(20),
            rto_max: Duration::from_secs(1),
            keepalive: Duration::from_millis(100),
            give_up: Duration::from_secs(1),
        }
    }
}

/// Why the channel gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LostReason {
    /// Nothing valid heard from the peer for the give-up time.
    Silence,
    /// The peer came back with a new epoch: it restarted or reset.
    PeerRestarted,
}

/// Errors of [`Channel`] calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ChannelError {
    /// The connection is over; [`Channel::reset`] starts a new one.
    PeerLost(LostReason),
    /// The send window is full: retry after acks arrive.
    WouldBlock,
    /// The message exceeds [`Channel::max_message`].
    MessageTooLarge,
    /// The caller's buffer cannot hold the next message (it stays queued).
    BufferTooSmall,
}

impl link::Error for ChannelError {
    fn kind(&self) -> ErrorKind {
        match self {
            ChannelError::PeerLost(_) => ErrorKind::PeerLost,
            ChannelError::WouldBlock => ErrorKind::WouldBlock,
            ChannelError::MessageTooLarge | ChannelError::BufferTooSmall => ErrorKind::FrameTooLarge,
        }
    }
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelError::PeerLost(LostReason::Silence) => {
                f.write_str("peer lost: silent for the give-up time")
            }
            ChannelError::PeerLost(LostReason::PeerRestarted) => f.write_str("peer lost: it restarted"),
            ChannelError::WouldBlock => f.write_str("send window full"),
            ChannelError::MessageTooLarge => f.write_str("message too large"),
            ChannelError::BufferTooSmall => f.write_str("buffer too small for the next message"),
        }
    }
}

impl core::error::Error for ChannelError {}

/// Why a received packet was not used. Counted in [`ChannelStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PacketError {
    /// Too short, unknown kind, or a message too large for this side.
    Malformed,
    BadCrc,
    /// Addressed to an earlier epoch of this side.
    Stale,
    /// The connection is already lost, or this packet ended it.
    Lost,
}

/// What the channel did so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ChannelStats {
    pub packets_sent: u64,
    pub data_sent: u64,
    pub retransmits: u64,
    pub timeouts: u64,
    pub packets_received: u64,
    pub delivered: u64,
    pub duplicates: u64,
    pub out_of_window: u64,
    pub bad_crc: u64,
    pub malformed: u64,
    pub stale: u64,
}

#[derive(Debug)]
struct TxSlot<const FRAME: usize> {
    msg: Vec<u8, FRAME>,
    sent_at: Instant,
    /// Transmission order of the latest transmission.
    order: u64,
    retransmitted: bool,
    /// The peer holds it (selective ack).
    sacked: bool,
    /// Due for retransmission.
    lost: bool,
}

#[derive(Debug)]
struct RxSlot<const FRAME: usize> {
    full: bool,
    msg: Vec<u8, FRAME>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Lost(LostReason),
}

/// `a - b` in sequence space (serial number arithmetic).
fn seq_diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn le32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// One side of a reliable channel. `WINDOW` (1..=32) messages may be in
/// flight and as many buffered out of order; `FRAME` is the largest packet
/// the link below carries, so messages hold up to `FRAME - OVERHEAD` bytes.
///
/// RAM: about `2 * WINDOW * FRAME` bytes.
///
/// Two sides joined by a link that loses the first packet: the
/// retransmission timer resends it and the message arrives once.
///
/// ```
/// use core::time::Duration;
/// use msm_backplane::channel::{Channel, ChannelConfig};
/// use msm_time::Instant;
///
/// type Side = Channel<4, 128>;
/// /// The link: move packets both ways until neither side has one to send.
/// fn exchange(now: Instant, a: &mut Side, b: &mut Side) {
///     let mut packet = [0u8; 128];
///     for _ in 0..8 {
///         let mut moved = false;
///         while let Some(n) = a.poll_transmit(now, &mut packet) {
///             let _ = b.handle(now, &packet[..n]); // Err: a duplicate, dropped and counted
///             moved = true;
///         }
///         while let Some(n) = b.poll_transmit(now, &mut packet) {
///             let _ = a.handle(now, &packet[..n]);
///             moved = true;
///         }
///         if !moved {
///             return;
///         }
///     }
/// }
///
/// let t0 = Instant::ZERO;
/// let mut a = Side::new(ChannelConfig::new(1), t0);
/// let mut b = Side::new(ChannelConfig::new(2), t0);
/// a.send(b"create vlan corp tag 100").unwrap();
/// let mut lost = [0u8; 128];
/// assert!(a.poll_transmit(t0, &mut lost).is_some()); // never arrives
///
/// // Past the first retransmission timeout (20 ms): A sends it again.
/// let t1 = t0 + Duration::from_millis(25);
/// exchange(t1, &mut a, &mut b);
/// let mut msg = [0u8; 128];
/// let n = b.recv(&mut msg).unwrap().unwrap();
/// assert_eq!(&msg[..n], b"create vlan corp tag 100");
/// assert_eq!(b.recv(&mut msg), Ok(None)); // exactly once
/// exchange(t1, &mut a, &mut b);
/// assert_eq!(a.unacked(), 0); // acknowledged: A's window is free
/// assert!(a.stats().retransmits >= 1);
/// /// ```
#[derive(Debug)]
pub struct Channel<const WINDOW: usize, const FRAME: usize> {
    cfg: ChannelConfig,
    state: State,
    peer_epoch: Option<u32>,
    /// Oldest unacknowledged sequence.
    tx_base: u32,
    /// Sequences in `tx_base..tx_sent` went out at least once.
    tx_sent: u32,
    /// Next sequence to assign.
    tx_next: u32,
    tx: [TxSlot<FRAME>; WINDOW],
    peer_window: u32,
    order: u64,
    srtt: Option<u64>,
    rttvar: u64,
    backoff: u32,
    rto_at: Option<Instant>,
    /// Next sequence the application reads.
    rx_read: u32,
    rx: [RxSlot<FRAME>; WINDOW],
    ack_pending: bool,
    /// Anything exchanged in this connection (sent and acked, or received).
    engaged: bool,
    last_heard: Instant,
    last_sent: Instant,
    stats: ChannelStats,
}

impl<const WINDOW: usize, const FRAME: usize> Channel<WINDOW, FRAME> {
    const VALID: () = {
        assert!(WINDOW >= 1 && WINDOW <= 32, "Channel: WINDOW must be 1..=32 (selective-ack bitmap)");
        assert!(FRAME > OVERHEAD, "Channel: FRAME must exceed OVERHEAD");
    };

    /// Largest message, in bytes.
    pub const MAX_MESSAGE: usize = FRAME.saturating_sub(OVERHEAD);

    pub fn new(cfg: ChannelConfig, now: Instant) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::VALID;
        Channel {
            cfg,
            state: State::Open,
            peer_epoch: None,
            tx_base: 0,
            tx_sent: 0,
            tx_next: 0,
            tx: core::array::from_fn(|_| TxSlot {
                msg: Vec::new(),
                sent_at: Instant::ZERO,
                order: 0,
                retransmitted: false,
                sacked: false,
                lost: false,
            }),
            peer_window: WINDOW as u32,
            order: 0,
            srtt: None,
            rttvar: 0,
            backoff: 0,
            rto_at: None,
            rx_read: 0,
            rx: core::array::from_fn(|_| RxSlot { full: false, msg: Vec::new() }),
            ack_pending: false,
            engaged: false,
            last_heard: now,
            last_sent: now,
            stats: ChannelStats::default(),
        }
    }

    /// Start a new connection with a new epoch, forgetting everything queued.
    pub fn reset(&mut self, now: Instant, epoch: u32) {
        let stats = self.stats;
        *self = Self::new(ChannelConfig { epoch, ..self.cfg }, now);
        self.stats = stats;
    }

    pub fn config(&self) -> &ChannelConfig {
        &self.cfg
    }

    /// Largest message, in bytes.
    pub fn max_message(&self) -> usize {
        Self::MAX_MESSAGE
    }

    pub fn stats(&self) -> ChannelStats {
        self.stats
    }

    /// Why the connection ended, if it did.
    pub fn lost(&self) -> Option<LostReason> {
        match self.state {
            State::Open => None,
            State::Lost(r) => Some(r),
        }
    }

    /// The peer's epoch, once heard.
    pub fn peer_epoch(&self) -> Option<u32> {
        self.peer_epoch
    }

    /// Messages sent but not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.tx_next.wrapping_sub(self.tx_base) as usize
    }

    /// Whether [`send`](Channel::send) would take a message now.
    pub fn can_send(&self) -> bool {
        self.state == State::Open && self.unacked() < WINDOW
    }

    /// Queue a message. It is delivered to the peer's application exactly
    /// once and in order, or the channel reports [`ChannelError::PeerLost`].
    pub fn send(&mut self, msg: &[u8]) -> Result<(), ChannelError> {
        if let State::Lost(r) = self.state {
            return Err(ChannelError::PeerLost(r));
        }
        if msg.len() > Self::MAX_MESSAGE {
            return Err(ChannelError::MessageTooLarge);
        }
        if self.unacked() >= WINDOW {
            return Err(ChannelError::WouldBlock);
        }
        let slot = &mut self.tx[self.tx_next as usize % WINDOW];
        slot.msg.clear();
        slot.msg.extend_from_slice(msg).map_err(|_| ChannelError::MessageTooLarge)?;
        slot.retransmitted = false;
        slot.sacked = false;
        slot.lost = false;
        self.tx_next = self.tx_next.wrapping_add(1);
        Ok(())
    }

    /// The next message in order: `Ok(Some(len))`, `Ok(None)` when none is
    /// ready. Messages received before the connection was lost are still
    /// delivered, then `Err(PeerLost)`.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, ChannelError> {
        let slot = &mut self.rx[self.rx_read as usize % WINDOW];
        if slot.full {
            let n = slot.msg.len();
            buf.get_mut(..n).ok_or(ChannelError::BufferTooSmall)?.copy_from_slice(&slot.msg);
            slot.full = false;
            self.rx_read = self.rx_read.wrapping_add(1);
            self.stats.delivered += 1;
            // The window moved: tell the sender.
            self.ack_pending = true;
            return Ok(Some(n));
        }
        match self.state {
            State::Open => Ok(None),
            State::Lost(r) => Err(ChannelError::PeerLost(r)),
        }
    }

    /// The next time [`handle_timeout`](Channel::handle_timeout) (or
    /// `poll_transmit`) has work; `None` once lost.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state != State::Open {
            return None;
        }
        let mut t = self.last_heard + self.cfg.give_up;
        t = t.min(self.last_sent + self.cfg.keepalive);
        if let Some(r) = self.rto_at {
            t = t.min(r);
        }
        Some(t)
    }

    /// Time-driven work: give up on a silent peer; retransmission timer.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state != State::Open {
            return;
        }
        if now.saturating_since(self.last_heard) >= self.cfg.give_up {
            warn!("channel: peer silent for the give-up time");
            self.state = State::Lost(LostReason::Silence);
            self.rto_at = None;
            return;
        }
        if self.rto_at.is_some_and(|t| now >= t) {
            let rto = self.rto();
            let mut any = false;
            let mut seq = self.tx_base;
            while seq != self.tx_sent {
                let slot = &mut self.tx[seq as usize % WINDOW];
                // Messages sent within the last RTO still have time.
                if !slot.sacked && now.saturating_since(slot.sent_at) >= rto {
                    slot.lost = true;
                    any = true;
                }
                seq = seq.wrapping_add(1);
            }
            if any {
                self.stats.timeouts += 1;
                self.backoff = (self.backoff + 1).min(16);
                self.rto_at = Some(now + self.rto());
            } else if self.outstanding() {
                self.rto_at = Some(now + rto);
            } else {
                self.rto_at = None;
            }
        }
    }

    fn rto(&self) -> Duration {
        let base = match self.srtt {
            Some(srtt) => srtt + 4 * self.rttvar,
            None => micros(self.cfg.rto_min),
        };
        let base = base.max(micros(self.cfg.rto_min));
        let backed = base.saturating_mul(1u64 << self.backoff.min(16));
        Duration::from_micros(backed.min(micros(self.cfg.rto_max)))
    }

    fn rtt_sample(&mut self, rtt: u64) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                self.rttvar = (3 * self.rttvar + srtt.abs_diff(rtt)) / 4;
                self.srtt = Some((7 * srtt + rtt) / 8);
            }
        }
    }

    /// Handle one packet from the link. Errors only say why it was ignored.
    pub fn handle(&mut self, now: Instant, packet: &[u8]) -> Result<(), PacketError> {
        if self.state != State::Open {
            return Err(PacketError::Lost);
        }
        if packet.len() < HEADER_LEN + CRC_LEN {
            self.stats.malformed += 1;
            return Err(PacketError::Malformed);
        }
        let (body, crc) = packet.split_at(packet.len() - CRC_LEN);
        if crc32c::checksum(body) != le32(crc, 0) {
            self.stats.bad_crc += 1;
            return Err(PacketError::BadCrc);
        }
        let kind = body[0];
        let data = match kind {
            KIND_ACK if body.len() == HEADER_LEN => None,
            KIND_DATA if body.len() >= HEADER_LEN + SEQ_LEN => {
                let msg = &body[HEADER_LEN + SEQ_LEN..];
                if msg.len() > Self::MAX_MESSAGE {
                    self.stats.malformed += 1;
                    return Err(PacketError::Malformed);
                }
                Some((le32(body, HEADER_LEN), msg))
            }
            _ => {
                self.stats.malformed += 1;
                return Err(PacketError::Malformed);
            }
        };
        let src = le32(body, 1);
        let dst = le32(body, 5);
        if dst != 0 && dst != self.cfg.epoch {
            self.stats.stale += 1;
            return Err(PacketError::Stale);
        }
        match self.peer_epoch {
            Some(e) if e == src => {}
            Some(_) if self.engaged => {
                warn!("channel: peer restarted");
                self.state = State::Lost(LostReason::PeerRestarted);
                self.rto_at = None;
                return Err(PacketError::Lost);
            }
            _ => self.adopt_peer(src),
        }
        self.stats.packets_received += 1;
        self.last_heard = now;
        if dst == self.cfg.epoch {
            self.on_ack(now, le32(body, 9), le32(body, 13), u32::from(body[17]));
        }
        if let Some((seq, msg)) = data {
            self.on_data(seq, msg);
        }
        Ok(())
    }

    /// A (new) peer that has exchanged nothing with us yet: start clean.
    fn adopt_peer(&mut self, epoch: u32) {
        debug!("channel: peer epoch {}", epoch);
        self.peer_epoch = Some(epoch);
        self.rx_read = 0;
        for s in self.rx.iter_mut() {
            s.full = false;
        }
        // Nothing was acknowledged: send everything to the new peer.
        let mut seq = self.tx_base;
        while seq != self.tx_next {
            let slot = &mut self.tx[seq as usize % WINDOW];
            slot.sacked = false;
            slot.lost = false;
            slot.retransmitted = false;
            seq = seq.wrapping_add(1);
        }
        self.tx_sent = self.tx_base;
        self.rto_at = None;
    }

    fn on_ack(&mut self, now: Instant, ack: u32, sack: u32, window: u32) {
        self.peer_window = window.clamp(1, WINDOW as u32);
        // A valid ack lies in tx_base..=tx_sent; anything else is old.
        let advance = seq_diff(ack, self.tx_base);
        if advance < 0 || seq_diff(self.tx_sent, ack) < 0 {
            return;
        }
        let mut newest_order = 0;
        while self.tx_base != ack {
            let slot = &mut self.tx[self.tx_base as usize % WINDOW];
            // Karn: only messages sent once give an RTT sample.
            let sample = (!slot.retransmitted && !slot.sacked).then(|| now.saturating_since(slot.sent_at));
            newest_order = newest_order.max(slot.order);
            slot.msg.clear();
            self.tx_base = self.tx_base.wrapping_add(1);
            if let Some(rtt) = sample {
                self.rtt_sample(micros(rtt));
            }
        }
        if advance > 0 {
            self.engaged = true;
            self.backoff = 0;
        }
        for bit in 0..32u32 {
            if sack & (1 << bit) == 0 {
                continue;
            }
            let seq = ack.wrapping_add(bit);
            if seq_diff(seq, self.tx_sent) >= 0 {
                break;
            }
            let slot = &mut self.tx[seq as usize % WINDOW];
            if !slot.sacked {
                slot.sacked = true;
                slot.lost = false;
                newest_order = newest_order.max(slot.order);
                self.engaged = true;
            }
        }
        // Fast retransmit: a message sent well before one that arrived is lost.
        let mut seq = self.tx_base;
        while seq != self.tx_sent {
            let slot = &mut self.tx[seq as usize % WINDOW];
            if !slot.sacked && !slot.lost && slot.order + REORDER_THRESHOLD <= newest_order {
                slot.lost = true;
            }
            seq = seq.wrapping_add(1);
        }
        if advance > 0 {
            self.rto_at = if self.outstanding() { Some(now + self.rto()) } else { None };
        }
    }

    /// Sent messages the peer does not hold yet.
    fn outstanding(&self) -> bool {
        let mut seq = self.tx_base;
        while seq != self.tx_sent {
            if !self.tx[seq as usize % WINDOW].sacked {
                return true;
            }
            seq = seq.wrapping_add(1);
        }
        false
    }

    fn on_data(&mut self, seq: u32, msg: &[u8]) {
        // Every data packet is acknowledged, duplicates too (the ack was lost).
        self.ack_pending = true;
        let offset = seq_diff(seq, self.rx_read);
        if offset < 0 {
            self.stats.duplicates += 1;
            return;
        }
        if offset as usize >= WINDOW {
            self.stats.out_of_window += 1;
            return;
        }
        let slot = &mut self.rx[seq as usize % WINDOW];
        if slot.full {
            self.stats.duplicates += 1;
            return;
        }
        slot.msg.clear();
        if slot.msg.extend_from_slice(msg).is_err() {
            self.stats.malformed += 1;
            return;
        }
        slot.full = true;
        self.engaged = true;
    }

    fn write_header(&mut self, buf: &mut [u8], kind: u8) {
        let mut sack = 0u32;
        for i in 0..WINDOW as u32 {
            if self.rx[self.rx_read.wrapping_add(i) as usize % WINDOW].full {
                sack |= 1 << i;
            }
        }
        buf[0] = kind;
        buf[1..5].copy_from_slice(&self.cfg.epoch.to_le_bytes());
        buf[5..9].copy_from_slice(&self.peer_epoch.unwrap_or(0).to_le_bytes());
        buf[9..13].copy_from_slice(&self.rx_read.to_le_bytes());
        buf[13..17].copy_from_slice(&sack.to_le_bytes());
        buf[17] = WINDOW as u8;
        self.ack_pending = false;
    }

    fn finish(&mut self, now: Instant, buf: &mut [u8], len: usize) -> Option<usize> {
        let crc = crc32c::checksum(buf.get(..len)?);
        buf.get_mut(len..len + CRC_LEN)?.copy_from_slice(&crc.to_le_bytes());
        self.last_sent = now;
        self.stats.packets_sent += 1;
        Some(len + CRC_LEN)
    }

    /// The next packet to send, written into `buf` (give it `FRAME` bytes);
    /// `None` when nothing is due. Call until `None` after every input.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        self.handle_timeout(now);
        if self.state != State::Open || buf.len() < HEADER_LEN + CRC_LEN {
            return None;
        }
        // Retransmissions first, oldest first; then new messages in the window.
        let mut pick = None;
        let mut seq = self.tx_base;
        while seq != self.tx_sent {
            if self.tx[seq as usize % WINDOW].lost {
                pick = Some((seq, true));
                break;
            }
            seq = seq.wrapping_add(1);
        }
        let window = self.peer_window.min(WINDOW as u32);
        if pick.is_none() && self.tx_sent != self.tx_next && self.tx_sent.wrapping_sub(self.tx_base) < window
        {
            pick = Some((self.tx_sent, false));
        }
        if let Some((seq, retransmit)) = pick {
            let i = seq as usize % WINDOW;
            let len = HEADER_LEN + SEQ_LEN + self.tx[i].msg.len();
            if buf.len() >= len + CRC_LEN {
                self.write_header(buf, KIND_DATA);
                buf[HEADER_LEN..HEADER_LEN + SEQ_LEN].copy_from_slice(&seq.to_le_bytes());
                buf[HEADER_LEN + SEQ_LEN..len].copy_from_slice(&self.tx[i].msg);
                self.order += 1;
                let slot = &mut self.tx[i];
                slot.order = self.order;
                slot.sent_at = now;
                slot.lost = false;
                if retransmit {
                    slot.retransmitted = true;
                    self.stats.retransmits += 1;
                } else {
                    self.tx_sent = self.tx_sent.wrapping_add(1);
                }
                self.stats.data_sent += 1;
                if self.rto_at.is_none() {
                    self.rto_at = Some(now + self.rto());
                }
                return self.finish(now, buf, len);
            }
        }
        if self.ack_pending || now.saturating_since(self.last_sent) >= self.cfg.keepalive {
            self.write_header(buf, KIND_ACK);
            return self.finish(now, buf, HEADER_LEN);
        }
        None
    }
}

/// Errors of a [`ChannelLink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ChannelLinkError<E> {
    /// The link below failed.
    Link(E),
    Channel(ChannelError),
}

impl<E: link::Error> link::Error for ChannelLinkError<E> {
    fn kind(&self) -> ErrorKind {
        match self {
            ChannelLinkError::Link(e) => e.kind(),
            ChannelLinkError::Channel(e) => e.kind(),
        }
    }
}

/// A [`Channel`] stacked on a link: itself a [`Link`] whose frames arrive
/// exactly once and in order, or fail with [`ErrorKind::PeerLost`].
///
/// `send` and `recv` only queue and dequeue; [`poll`](ChannelLink::poll)
/// moves packets between channel and link and must run every loop iteration
/// with the current time (and by [`poll_timeout`](ChannelLink::poll_timeout)).
#[derive(Debug)]
pub struct ChannelLink<L, const WINDOW: usize, const FRAME: usize> {
    link: L,
    channel: Channel<WINDOW, FRAME>,
    rx_buf: [u8; FRAME],
    tx_buf: [u8; FRAME],
    /// A packet the link refused (would block), to offer again.
    tx_held: usize,
}

impl<L: Link, const WINDOW: usize, const FRAME: usize> ChannelLink<L, WINDOW, FRAME> {
    pub fn new(link: L, cfg: ChannelConfig, now: Instant) -> Self {
        ChannelLink {
            link,
            channel: Channel::new(cfg, now),
            rx_buf: [0; FRAME],
            tx_buf: [0; FRAME],
            tx_held: 0,
        }
    }

    pub fn channel(&self) -> &Channel<WINDOW, FRAME> {
        &self.channel
    }

    pub fn channel_mut(&mut self) -> &mut Channel<WINDOW, FRAME> {
        &mut self.channel
    }

    pub fn link(&self) -> &L {
        &self.link
    }

    pub fn link_mut(&mut self) -> &mut L {
        &mut self.link
    }

    /// When to call [`poll`](ChannelLink::poll) at the latest.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.channel.poll_timeout()
    }

    /// Receive every packet the link has, then send every packet due.
    pub fn poll(&mut self, now: Instant) -> Result<(), ChannelLinkError<L::Error>> {
        use link::Error as _;
        self.channel.handle_timeout(now);
        loop {
            match self.link.recv(&mut self.rx_buf) {
                Ok(Some(n)) => {
                    let _ = self.channel.handle(now, &self.rx_buf[..n]);
                }
                Ok(None) => break,
                // Not one of ours: skip it.
                Err(e) if e.kind() == ErrorKind::FrameTooLarge => {}
                Err(e) => return Err(ChannelLinkError::Link(e)),
            }
        }
        loop {
            if self.tx_held == 0 {
                match self.channel.poll_transmit(now, &mut self.tx_buf) {
                    Some(n) => self.tx_held = n,
                    None => break,
                }
            }
            match self.link.send(&self.tx_buf[..self.tx_held]) {
                Ok(()) => self.tx_held = 0,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(ChannelLinkError::Link(e)),
            }
        }
        self.link.flush().map_err(ChannelLinkError::Link)
    }
}

impl<L: Link, const WINDOW: usize, const FRAME: usize> ErrorType for ChannelLink<L, WINDOW, FRAME> {
    type Error = ChannelLinkError<L::Error>;
}

impl<L: Link, const WINDOW: usize, const FRAME: usize> Link for ChannelLink<L, WINDOW, FRAME> {
    fn max_frame(&self) -> usize {
        self.channel.max_message().min(self.link.max_frame().saturating_sub(OVERHEAD))
    }

    fn send(&mut self, frame: &[u8]) -> Result<(), Self::Error> {
        if frame.len() > self.max_frame() {
            return Err(ChannelLinkError::Channel(ChannelError::MessageTooLarge));
        }
        self.channel.send(frame).map_err(ChannelLinkError::Channel)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Self::Error> {
        self.channel.recv(buf).map_err(ChannelLinkError::Channel)
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        self.link.flush().map_err(ChannelLinkError::Link)
    }

    fn tx_pending(&self) -> bool {
        self.tx_held > 0 || self.link.tx_pending()
    }
}
