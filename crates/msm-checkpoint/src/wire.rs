//! The backplane wire format, version 4: every frame authenticated, every
//! boot proven alive before its frames count. See
//! `docs/wire-protocol.md`.
//!
//! ```text
//! +-------+---------+------+----+--------+-------------+---------+------------------------+----------+-----------+
//! | magic | version | from | to | key id | incarnation | counter | postcard (term, Body)  | tag      | CRC-32C   |
//! |  u8   |   u8    |  u8  | u8 |   u8   |   u32 LE    | u64 LE  | + tail records         | 16 bytes | u32 LE    |
//! +-------+---------+------+----+--------+-------------+---------+------------------------+----------+-----------+
//! ```
//! The tag is HMAC-SHA256 under the chassis key of every byte before it,
//! truncated to 16 bytes. The CRC covers every byte before it, tag
//! included: a frame corrupted on the link is told apart from a forged one.
//! The magic, version and CRC sit where version 1 had them, so a version 1
//! peer is recognised and named rather than misparsed.
//! Decoding any byte string gives a frame or a [`WireError`], never a panic.

use core::fmt;
use serde::{Deserialize, Serialize};

use crate::auth::{Key, Keyring, TAG_LEN};
use crate::role::{MAX_NODES, Slot, Term};

/// The newest protocol version this build speaks: 5 adds [`HeartbeatExt`]
/// to heartbeats. A node speaks the oldest version a live peer speaks, down
/// to [`OLDEST_PROTOCOL_VERSION`] (a rolling upgrade: docs/wire-protocol.md).
pub const PROTOCOL_VERSION: u8 = 5;
/// The oldest protocol version this build still reads and speaks.
pub const OLDEST_PROTOCOL_VERSION: u8 = 4;
/// First byte of every frame.
pub const MAGIC: u8 = 0xC5;
/// `to` value addressing every module.
pub const BROADCAST: u8 = 0xFF;
/// Bytes before the postcard body: magic, version, from, to, key id,
/// incarnation, counter.
pub const HEADER_LEN: usize = 17;
/// Bytes of the trailing CRC-32C.
pub const CRC_LEN: usize = 4;
/// Bytes after the body: tag and CRC.
pub const TRAILER_LEN: usize = TAG_LEN + CRC_LEN;
/// No valid frame is shorter: header, a term and a body tag, trailer.
pub const MIN_FRAME: usize = HEADER_LEN + 2 + TRAILER_LEN;
/// The longest heartbeat frame: header, term (10), variant (1), the body's
/// worst case (role, priority, health, backup, in_sync 5; session and
/// incarnation 5 each; config 25; challenge 5; echo 8 x 5; holds 10; keys 2 x 5;
/// base, made, acked and overrules 10 each), its [`HeartbeatExt`] (newest 1,
/// release 5), trailer.
pub const MAX_HEARTBEAT: usize =
    HEADER_LEN + 10 + 1 + (5 + 5 + 5 + 25 + 5 + 40 + 10 + 10 + 40) + 6 + TRAILER_LEN;
/// The smallest `max_frame` a node accepts: a heartbeat always fits.
pub const MIN_MAX_FRAME: usize = 256;
const _: () = assert!(MAX_HEARTBEAT <= MIN_MAX_FRAME);
/// "No backup chosen" in a heartbeat.
pub const NO_SLOT: u8 = 0xFF;

#[cfg(not(feature = "fast-crc"))]
pub(crate) type CrcImpl = crc::Table<1>;
#[cfg(feature = "fast-crc")]
pub(crate) type CrcImpl = crc::Table<16>;

// With `hw-crc` the tables only check the instruction in tests.
#[cfg_attr(feature = "hw-crc", allow(dead_code))]
pub(crate) static CRC32C: crc::Crc<u32, CrcImpl> = crc::Crc::<u32, CrcImpl>::new(&crc::CRC_32_ISCSI);

/// The CRC-32C of `bytes`: the CPU's instruction with `hw-crc` (chosen at
/// run time), the tables otherwise; the same value either way.
pub(crate) fn crc32c(bytes: &[u8]) -> u32 {
    #[cfg(feature = "hw-crc")]
    return crc32c::crc32c(bytes);
    #[cfg(not(feature = "hw-crc"))]
    CRC32C.checksum(bytes)
}

/// Why a byte string is not a frame we can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WireError {
    /// Shorter than the smallest frame, or a record cut short.
    Truncated,
    /// First byte is not [`MAGIC`]: not one of our frames.
    BadMagic(u8),
    /// A peer speaking another protocol version (named so status can say who).
    UnsupportedVersion {
        /// The sender's slot byte.
        from: u8,
        /// The version it speaks.
        got: u8,
    },
    /// The CRC-32C does not match: corrupted on the link.
    BadCrc,
    /// The CRC matched but the contents do not decode.
    Malformed,
    /// A slot number outside the chassis.
    BadSlot(u8),
    /// The output buffer cannot hold the frame.
    BufferTooSmall,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => f.write_str("frame truncated"),
            WireError::BadMagic(m) => write!(f, "bad magic byte 0x{m:02x}"),
            WireError::UnsupportedVersion { from, got } => write!(
                f,
                "slot {from} speaks protocol v{got}, this node speaks v{OLDEST_PROTOCOL_VERSION} to v{PROTOCOL_VERSION}"
            ),
            WireError::BadCrc => f.write_str("CRC-32C mismatch"),
            WireError::Malformed => f.write_str("malformed frame body"),
            WireError::BadSlot(s) => write!(f, "slot {s} is outside the chassis"),
            WireError::BufferTooSmall => f.write_str("output buffer too small for frame"),
        }
    }
}

impl core::error::Error for WireError {}

/// A config-stream digest at a point of the stream, for the backup to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DigestMark {
    /// The stream's epoch.
    pub epoch: u32,
    /// The last record the digest covers.
    pub seq: u64,
    /// CRC-64/XZ over every record of the epoch up to `seq`.
    pub digest: u64,
}

/// Sent by every module every heartbeat interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Heartbeat {
    /// The sender's role: 0 INIT, 1 MASTER, 2 BACKUP, 3 STANDBY.
    pub role: u8,
    /// Its election priority (lower wins).
    pub priority: u8,
    /// Its health (higher wins ties).
    pub health: u8,
    /// The master's chosen backup, or [`NO_SLOT`].
    pub backup: u8,
    /// The master's view: its backup is in sync.
    pub in_sync: bool,
    /// Master: the hello id of the backup session it is sending to, 0 if none.
    /// A backup that sees another id says hello again.
    pub session: u32,
    /// Boot counter of the sender; a restart is a new incarnation. Equal
    /// to the header's incarnation (a frame where they differ is malformed).
    pub incarnation: u32,
    /// Master only: where its active-config stream is, with its digest.
    pub config: DigestMark,
    /// The sender's current challenge: a receiver that echoes it proves it
    /// sealed its frame after the challenge was sent (see `Freshness`).
    pub challenge: u32,
    /// Per slot (A..D), the challenges of the last two boots heard in that
    /// slot (its newest boot first; 0: none): the sender's answer to them.
    pub echo: [[u32; 2]; MAX_NODES],
    /// The term whose whole state the sender holds: its own as master, its
    /// master's as a backup in sync, else 0. The election prefers holders.
    pub holds: u64,
    /// Fingerprints of the keys the sender holds: the one it sends under,
    /// then the other it accepts (0: none). Key rotation checks them.
    pub keys: [u32; 2],
    /// Master: the term whose whole state it took over when it became
    /// master (0: none). A split brain is judged by it.
    pub base: u64,
    /// Master: changes it made as master.
    pub made: u64,
    /// Master: of those, the changes a backup acknowledged.
    pub acked: u64,
    /// Master: the rival's term it overruled in a split brain (0: none).
    pub overrules: u64,
}

/// The tail of a heartbeat from this build: in version 5 it is part of the
/// heartbeat; this build appends it to its version-4 heartbeats too, whose
/// tails a version-4 module does not read, so that a peer learns it can
/// speak 5 while an older module keeps the chassis at 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HeartbeatExt {
    /// The newest protocol version the sender speaks.
    pub newest: u8,
    /// The sender's software release, `major << 16 | minor << 8 | patch` (0: not said).
    pub release: u32,
}

/// Message bodies. Variants are only ever appended; a new field or a
/// changed meaning is a new [`PROTOCOL_VERSION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// Every module, every heartbeat interval, to every module.
    Heartbeat(Heartbeat),
    /// Backup to master: "I follow you"; tail: one [`StreamHello`] per stream.
    /// `total` is the backup's stream count; a long table spans several hellos.
    Hello {
        /// The backup's boot count.
        incarnation: u32,
        /// Names this session; a new id starts a new one.
        hello_id: u32,
        /// Streams the backup lists, over all parts.
        total: u8,
    },
    /// Master to backup: every part of the hello arrived; stop repeating it.
    HelloAck {
        /// The backup's boot count, echoed.
        incarnation: u32,
        /// The hello's id, echoed.
        hello_id: u32,
    },
    /// Master to backup: checkpoint records; tail: runs, each a [`Record::Run`]
    /// followed by consecutive records of that stream.
    Data,
    /// Backup to master: tail: one [`AckItem`] per stream with news.
    Ack,
    /// Backup to master: this stream's state is unusable, send a new bulk.
    Resync {
        /// The backup's stream id.
        stream: u8,
        /// The epoch whose state is unusable (a newer bulk already answers it).
        epoch: u32,
        /// Reserved; 0.
        reason: u8,
    },
    /// Master to backup: take over now (`run msm-failover`).
    Handover {
        /// `run msm-failover force`: the backup may not be in sync.
        force: bool,
    },
    /// Standby to master, every heartbeat interval and after every frame of
    /// its configuration mirror: where its copy of each configuration
    /// stream is; tail: one [`MirrorItem`] per configuration stream. The
    /// master answers with what the copy lacks: data runs of the stream
    /// (stream ids are the master's), a [`Body::Snapshot`] or a [`Body::Rebase`].
    Report {
        /// The standby's boot count.
        incarnation: u32,
    },
    /// Master to standby: a configuration stream's whole state at (the
    /// frame's term, `epoch`, `seq`), read from the master's `cursor` on;
    /// tail: [`SnapshotItem`]s, the last one [`SnapshotItem::END`] once the
    /// state is all sent.
    Snapshot {
        /// The stream (0 saved, 1 active configuration).
        stream: u8,
        /// The epoch of the point the snapshot is of.
        epoch: u32,
        /// The sequence number of that point.
        seq: u64,
        /// The master's read position of the first item (0: the snapshot starts).
        cursor: u64,
        /// The stream's running digest at the point (see [`DigestMark`]).
        digest: u64,
    },
    /// Master to standby: your `stream`, whole at `from`, is this master's
    /// `epoch` before its first record (the stream was continued across a
    /// switchover).
    Rebase {
        /// The stream (0 saved, 1 active configuration).
        stream: u8,
        /// The point the standby holds.
        from: MirrorPoint,
        /// The master's epoch that continues it, from sequence number 1.
        epoch: u32,
    },
}

/// A point of a stream: the master's term, the epoch and the last sequence number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorPoint {
    /// Term of the master whose records these are (0: nothing).
    pub term: u64,
    /// The epoch.
    pub epoch: u32,
    /// Last sequence number applied.
    pub seq: u64,
}

/// An item of a [`Body::Snapshot`]: a part of the state as the master's
/// host reads it (a configuration chunk), and the read position after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotItem<'a> {
    /// The master's read position after this item.
    pub next: u64,
    /// The item.
    pub data: &'a [u8],
}

impl SnapshotItem<'_> {
    /// The item after the last: the snapshot is whole.
    pub const END: SnapshotItem<'static> = SnapshotItem { next: NO_CURSOR, data: &[] };
}

/// A `cursor` of [`MirrorItem`] for a stream with no snapshot in progress.
pub const NO_CURSOR: u64 = u64::MAX;

/// An item of a [`Body::Report`]: one configuration stream as a standby holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorItem {
    /// The stream (0 saved, 1 active configuration).
    pub stream: u8,
    /// What it holds; during a snapshot, the point the snapshot is of.
    pub point: MirrorPoint,
    /// The state at `point` is whole.
    pub complete: bool,
    /// A snapshot in progress: the master's read position it continues
    /// from; else [`NO_CURSOR`].
    pub cursor: u64,
}

/// One stream as the backup has it, so the master can resume or re-bulk it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHello<'a> {
    /// The backup's id for the stream: data and acks use it.
    pub id: u8,
    /// The stream's (process) name: the master maps streams by name.
    pub name: &'a str,
    /// The backup's schema version of it.
    pub schema: u16,
    /// Term of the master whose records the backup holds (0: nothing).
    pub term: u64,
    /// Epoch of the records held.
    pub epoch: u32,
    /// Last sequence number applied.
    pub seq: u64,
    /// The stream's bulk completed at least once in that epoch.
    pub complete: bool,
}

/// "Everything of `stream` (the backup's id) up to `seq` in `epoch` is
/// applied." `gap` says a later record arrived first: resend promptly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckItem {
    /// The backup's stream id.
    pub stream: u8,
    /// The epoch acknowledged.
    pub epoch: u32,
    /// The last sequence number applied.
    pub seq: u64,
    /// A later record arrived before an earlier one.
    pub gap: bool,
}

/// An item of a `HelloAck`'s tail: "your `stream` (the backup's id) holds
/// what my `epoch` of it starts from." After `run msm-failover` the new
/// master continues the old one's streams under new epochs; the old master,
/// now backup, takes them without a bulk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinuedItem {
    /// The backup's stream id.
    pub stream: u8,
    /// The master's epoch that continues it, from sequence number 1.
    pub epoch: u32,
}

/// An item of a data frame's tail. A run header names the stream; the
/// records after it have sequence numbers `first_seq`, `first_seq + 1`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record<'a> {
    /// A bulk transfer starts; `total` items are expected (for progress only).
    Begin {
        /// Items announced.
        total: u64,
        /// The master's change id the bulk's state includes: each later
        /// `Change` of the epoch is the next id, so a backup knows the id
        /// of the last change it holds and continues the count when it
        /// takes over.
        covers: u64,
    },
    /// Part of the bulk: one application record, or a chunk of a config.
    Bulk(&'a [u8]),
    /// A later change: one application record, or one configuration line.
    Change(&'a [u8]),
    /// The bulk transfer ends; `digest` covers every item since `Begin`.
    End {
        /// CRC-64/XZ of the bulk's items.
        digest: u64,
    },
    /// The following records belong to `stream` (the backup's id) in `epoch`.
    Run {
        /// The backup's stream id.
        stream: u8,
        /// The stream's epoch on the master.
        epoch: u32,
        /// Sequence number of the run's first record.
        first_seq: u64,
    },
}

/// A decoded frame, borrowing from the input bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The protocol version it was written in.
    pub version: u8,
    /// The sender's slot.
    pub from: u8,
    /// The receiver's slot, or [`BROADCAST`].
    pub to: u8,
    /// The sender's view of the master's term.
    pub term: u64,
    /// The message.
    pub body: Body,
    /// Records or hello entries, decoded with `take`.
    pub tail: &'a [u8],
}

/// A frame whose envelope is whole (length, magic, CRC, version, slots),
/// not yet authenticated, its body not yet decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed<'a> {
    /// The protocol version it was written in (one this build speaks).
    pub version: u8,
    /// The slot the frame claims to come from (unauthenticated until checked).
    pub from: u8,
    /// The receiver's slot, or [`BROADCAST`].
    pub to: u8,
    /// Which key made the tag; [`NO_KEY`](crate::NO_KEY): none.
    pub key_id: u8,
    /// The sender's boot: a restart is a higher incarnation.
    pub incarnation: u32,
    /// The sender's frame counter within the incarnation, from 1.
    pub counter: u64,
    signed: &'a [u8],
    tag: &'a [u8],
}

impl<'a> Sealed<'a> {
    /// The bytes the tag covers: every byte before it.
    pub fn signed(&self) -> &'a [u8] {
        self.signed
    }

    /// The 16-byte tag.
    pub fn tag(&self) -> &'a [u8] {
        self.tag
    }

    /// Decode the term, body and tail. Only after the tag is checked.
    pub fn decode(&self) -> Result<Frame<'a>, WireError> {
        let ((term, body), tail): ((u64, Body), &[u8]) =
            postcard::take_from_bytes(&self.signed[HEADER_LEN..]).map_err(|_| WireError::Malformed)?;
        Ok(Frame { version: self.version, from: self.from, to: self.to, term, body, tail })
    }
}

/// Whether `frame` is a heartbeat, from its body's first bytes: a board
/// with redundant backplane paths sends heartbeats on every path and the
/// rest on one. Nothing is verified; a frame misjudged only takes another
/// path, and the receiver checks it as any other.
pub fn is_heartbeat(frame: &[u8]) -> bool {
    if frame.len() < MIN_FRAME || frame[0] != MAGIC {
        return false;
    }
    // The term (a varint of at most 10 bytes), then the body's variant.
    let body = &frame[HEADER_LEN..];
    match body.iter().take(10).position(|b| b & 0x80 == 0) {
        Some(end) => body.get(end + 1) == Some(&HEARTBEAT_VARIANT),
        None => false,
    }
}

/// [`Body::Heartbeat`]'s variant index on the wire.
const HEARTBEAT_VARIANT: u8 = 0;

/// Check a frame's envelope: length, magic, CRC, version, slots. Nothing of
/// the body is read.
pub fn open(bytes: &[u8]) -> Result<Sealed<'_>, WireError> {
    if bytes.len() < 10 {
        return Err(WireError::Truncated);
    }
    if bytes[0] != MAGIC {
        return Err(WireError::BadMagic(bytes[0]));
    }
    // The CRC before the version: a corrupted byte must not pass for a peer's version.
    let (content, crc) = bytes.split_at(bytes.len() - CRC_LEN);
    let want = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c(content) != want {
        return Err(WireError::BadCrc);
    }
    if !(OLDEST_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&bytes[1]) {
        return Err(WireError::UnsupportedVersion { from: bytes[2], got: bytes[1] });
    }
    if bytes.len() < MIN_FRAME {
        return Err(WireError::Truncated);
    }
    let (from, to) = (content[2], content[3]);
    if from as usize >= MAX_NODES {
        return Err(WireError::BadSlot(from));
    }
    if to != BROADCAST && to as usize >= MAX_NODES {
        return Err(WireError::BadSlot(to));
    }
    let (signed, tag) = content.split_at(content.len() - TAG_LEN);
    let mut inc = [0u8; 4];
    inc.copy_from_slice(&content[5..9]);
    let mut counter = [0u8; 8];
    counter.copy_from_slice(&content[9..17]);
    Ok(Sealed {
        version: bytes[1],
        from,
        to,
        key_id: content[4],
        incarnation: u32::from_le_bytes(inc),
        counter: u64::from_le_bytes(counter),
        signed,
        tag,
    })
}

/// Decode one frame without checking its tag: for tools and tests. A node
/// uses [`open`], authenticates, then [`Sealed::decode`].
pub fn decode(bytes: &[u8]) -> Result<Frame<'_>, WireError> {
    open(bytes)?.decode()
}

/// Fill in a written frame's header fields, tag and CRC. `frame` is what
/// [`FrameWriter::finish`] measured. `key`: `None` for an unauthenticated
/// backplane.
pub fn seal(frame: &mut [u8], key: Option<&Key>, incarnation: u32, counter: u64) {
    let mut ring = Keyring::open();
    if let Some(k) = key {
        ring.set(k);
    }
    seal_with(frame, &ring, incarnation, counter);
}

pub(crate) fn seal_with(frame: &mut [u8], keys: &Keyring, incarnation: u32, counter: u64) {
    let n = frame.len();
    frame[5..9].copy_from_slice(&incarnation.to_le_bytes());
    frame[9..17].copy_from_slice(&counter.to_le_bytes());
    let signed_end = n - TRAILER_LEN;
    // The key id is part of what the tag covers: write it first.
    frame[4] = keys.send_id();
    let tag = keys.seal(&frame[..signed_end]);
    frame[signed_end..n - CRC_LEN].copy_from_slice(&tag);
    let crc = crc32c(&frame[..n - CRC_LEN]);
    frame[n - CRC_LEN..].copy_from_slice(&crc.to_le_bytes());
}

/// Take the next item of a tail, advancing it.
pub(crate) fn take<'a, T: Deserialize<'a>>(tail: &mut &'a [u8]) -> Result<T, WireError> {
    let (v, rest) = postcard::take_from_bytes(tail).map_err(|e| match e {
        postcard::Error::DeserializeUnexpectedEnd => WireError::Truncated,
        _ => WireError::Malformed,
    })?;
    *tail = rest;
    Ok(v)
}

/// Bytes postcard uses for `v` as a varint.
pub(crate) const fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Bytes a record with a payload of `len` bytes takes in a tail
/// (variant tag, length varint, bytes), for packing without trial encoding.
pub(crate) const fn bytes_record_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// Worst-case bytes of a run header in a data frame's tail.
pub(crate) const RUN_LEN: usize = 1 + 1 + 5 + 10;
/// Worst-case bytes of a data frame with one run, without its records.
pub(crate) const DATA_OVERHEAD: usize = HEADER_LEN + 10 + 1 + RUN_LEN + TRAILER_LEN;

/// Largest record payload that always fits in one data frame of `max_frame`
/// bytes (at least 128).
pub(crate) const fn max_record(max_frame: usize) -> usize {
    let room = max_frame - DATA_OVERHEAD;
    room - 1 - varint_len(room as u64)
}

#[cfg(test)]
mod tests;
mod writer;

pub use writer::FrameWriter;
pub(crate) use writer::{Origin, Outgoing};
