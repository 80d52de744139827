//! The master's bounded backlog: every record sent to the backup and not yet
//! acknowledged, in the order made. It is the retransmission buffer, and after a
//! link blip it is what lets the backup resume without a new bulk. When it is
//! full, the stream using most of it is dropped and re-bulked (the caller's
//! policy), so a busy application never costs a quiet one its backlog.
//!
//! Layout: a byte array of entries `[header | payload]`, appended at `end`,
//! consumed at `start`; compacted in place when the tail is reached. The send
//! cursor (next entry to transmit) lives here too, so every move of the
//! entries keeps it on an entry boundary.

use core::ops::{Deref, DerefMut};

use super::stream_set::Acked;

/// Header: stream u8, flags u8, len u16, seq u64, change u64 (little endian).
pub(crate) const HEADER: usize = 20;
const DEAD: u8 = 0x80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Begin,
    Bulk,
    Change,
    End,
}

impl Kind {
    fn to_bits(self) -> u8 {
        match self {
            Kind::Begin => 0,
            Kind::Bulk => 1,
            Kind::Change => 2,
            Kind::End => 3,
        }
    }
    fn from_bits(b: u8) -> Kind {
        match b & 3 {
            0 => Kind::Begin,
            1 => Kind::Bulk,
            2 => Kind::Change,
            _ => Kind::End,
        }
    }
}

/// A view of one stored entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry<'a> {
    pub next: usize,
    pub stream: u8,
    pub kind: Kind,
    pub dead: bool,
    pub seq: u64,
    /// Change id for dynamic items; for `Begin`, the last change the bulk covers.
    pub change: u64,
    pub data: &'a [u8],
}

/// The backlog over its bytes `S`: `[u8; N]` in the sender that owns it,
/// `[u8]` (the [`Backlog`] view) everywhere else, so no function carries
/// its size.
#[derive(Debug)]
pub(crate) struct BacklogBuf<S: ?Sized> {
    start: usize,
    end: usize,
    send: usize,
    buf: S,
}

/// The backlog as every function takes it, whatever its size.
pub(crate) type Backlog = BacklogBuf<[u8]>;

/// A backlog of `N` bytes, as its owner holds it.
pub(crate) type BacklogStore<const N: usize> = BacklogBuf<[u8; N]>;

impl<const N: usize> BacklogStore<N> {
    pub(crate) const fn new() -> Self {
        BacklogBuf { buf: [0; N], start: 0, end: 0, send: 0 }
    }
}

impl<const N: usize> Deref for BacklogStore<N> {
    type Target = Backlog;
    fn deref(&self) -> &Backlog {
        self
    }
}

impl<const N: usize> DerefMut for BacklogStore<N> {
    fn deref_mut(&mut self) -> &mut Backlog {
        self
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

impl Backlog {
    /// Offset of the next entry to transmit (may be dead; skip those).
    pub(crate) fn send_cursor(&self) -> usize {
        self.send
    }

    /// Move the send cursor to `off`, an entry boundary returned by [`get`](Self::get).
    pub(crate) fn set_send_cursor(&mut self, off: usize) {
        self.send = off.clamp(self.start, self.end);
    }

    /// Retransmit everything unacknowledged: back to the oldest entry.
    pub(crate) fn rewind(&mut self) {
        self.send = self.start;
    }

    #[cfg(test)]
    pub(crate) fn start(&self) -> usize {
        self.start
    }
    pub(crate) fn used(&self) -> usize {
        self.end - self.start
    }

    /// The entry at `off`, if `off` is an entry boundary before `end`.
    pub(crate) fn get(&self, off: usize) -> Option<Entry<'_>> {
        if off < self.start || off + HEADER > self.end {
            return None;
        }
        let h = &self.buf[off..off + HEADER];
        let len = u16::from_le_bytes([h[2], h[3]]) as usize;
        let next = off + HEADER + len;
        if next > self.end {
            return None;
        }
        Some(Entry {
            next,
            stream: h[0],
            kind: Kind::from_bits(h[1]),
            dead: h[1] & DEAD != 0,
            seq: u64_at(h, 4),
            change: u64_at(h, 12),
            data: &self.buf[off + HEADER..next],
        })
    }

    /// Room for a payload of up to `max` bytes, compacting if needed.
    pub(crate) fn reserve(&mut self, max: usize, acked: &(impl Acked + ?Sized)) -> Option<&mut [u8]> {
        let need = HEADER + max.min(u16::MAX as usize);
        if self.end + need > self.buf.len() {
            self.compact(acked);
        }
        if self.end + need > self.buf.len() {
            return None;
        }
        Some(&mut self.buf[self.end + HEADER..self.end + need])
    }

    /// Store an entry whose payload (`len` bytes) was written into the space
    /// [`reserve`](Self::reserve) returned. Returns its offset.
    pub(crate) fn commit(&mut self, stream: u8, kind: Kind, seq: u64, change: u64, len: usize) -> usize {
        let off = self.end;
        let h = &mut self.buf[off..off + HEADER];
        h[0] = stream;
        h[1] = kind.to_bits();
        h[2..4].copy_from_slice(&(len as u16).to_le_bytes());
        h[4..12].copy_from_slice(&seq.to_le_bytes());
        h[12..20].copy_from_slice(&change.to_le_bytes());
        self.end = off + HEADER + len;
        off
    }

    /// Mark every entry of `stream` dead (its epoch ended).
    pub(crate) fn kill_stream(&mut self, stream: u8) {
        let mut off = self.start;
        while let Some(e) = self.get(off) {
            let (next, mine) = (e.next, e.stream == stream);
            if mine {
                self.buf[off + 1] |= DEAD;
            }
            off = next;
        }
    }

    /// Bytes held by live entries of each stream (for the overflow policy).
    pub(crate) fn usage(&self, acked: &(impl Acked + ?Sized), out: &mut [usize]) {
        out.iter_mut().for_each(|u| *u = 0);
        let mut off = self.start;
        while let Some(e) = self.get(off) {
            if !e.dead && acked.live(e.stream, e.seq) {
                if let Some(u) = out.get_mut(e.stream as usize) {
                    *u += e.next - off;
                }
            }
            off = e.next;
        }
    }

    /// The first entry at or after `off` still waiting for its
    /// acknowledgement, or the end of the backlog.
    pub(crate) fn skip_acknowledged(&self, mut off: usize, acked: &(impl Acked + ?Sized)) -> usize {
        while let Some(e) = self.get(off) {
            if !e.dead && acked.live(e.stream, e.seq) {
                break;
            }
            off = e.next;
        }
        off
    }

    /// Where `stream`'s record `seq` is, if the backlog still holds it
    /// (acknowledged or not): a standby's mirror is sent from here.
    pub(crate) fn find(&self, stream: u8, seq: u64) -> Option<usize> {
        let mut off = self.start;
        while let Some(e) = self.get(off) {
            if e.stream == stream && !e.dead && e.seq >= seq {
                return (e.seq == seq).then_some(off);
            }
            off = e.next;
        }
        None
    }

    /// The highest change id among `stream`'s live entries up to `seq`.
    pub(crate) fn max_change(&self, stream: u8, seq: u64) -> Option<u64> {
        let mut max = None;
        let mut off = self.start;
        while let Some(e) = self.get(off) {
            if e.stream == stream && !e.dead {
                if e.seq > seq {
                    break;
                }
                if e.kind == Kind::Change {
                    max = max.max(Some(e.change));
                }
            }
            off = e.next;
        }
        max
    }

    /// Drop entries at the front that are acknowledged or dead.
    pub(crate) fn trim(&mut self, acked: &(impl Acked + ?Sized)) {
        while let Some(e) = self.get(self.start) {
            if !e.dead && acked.live(e.stream, e.seq) {
                break;
            }
            self.start = e.next;
        }
        if self.start == self.end {
            self.clear();
        } else if self.send < self.start {
            self.send = self.start;
        }
    }

    /// Forget everything.
    pub(crate) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
        self.send = 0;
    }

    /// Move live entries to the front, preserving order. The send cursor
    /// moves to where the first live entry at or after it went.
    fn compact(&mut self, acked: &(impl Acked + ?Sized)) {
        let mut read = self.start;
        let mut write = 0;
        let mut send = None;
        while let Some(e) = self.get(read) {
            let next = e.next;
            let alive = !e.dead && acked.live(e.stream, e.seq);
            if send.is_none() && self.send <= read {
                send = Some(write);
            }
            if alive {
                self.buf.copy_within(read..next, write);
                write += next - read;
            }
            read = next;
        }
        self.send = send.unwrap_or(write);
        self.start = 0;
        self.end = write;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(b: &mut Backlog, stream: u8, seq: u64, data: &[u8]) -> Option<usize> {
        let slot = b.reserve(data.len(), &acked(&[]))?;
        slot[..data.len()].copy_from_slice(data);
        Some(b.commit(stream, Kind::Change, seq, seq, data.len()))
    }

    /// Acknowledged sequence numbers by stream, for tests.
    struct Table([u64; 4]);

    impl Acked for Table {
        fn acked(&self, stream: usize) -> u64 {
            self.0.get(stream).copied().unwrap_or(u64::MAX)
        }
    }

    fn acked(pairs: &[(usize, u64)]) -> Table {
        let mut t = Table([0; 4]);
        for &(sid, seq) in pairs {
            t.0[sid] = seq;
        }
        t
    }

    #[test]
    fn append_read_trim() {
        let mut b = BacklogStore::<256>::new();
        let o1 = push(&mut b, 1, 1, b"abc").unwrap();
        let o2 = push(&mut b, 2, 1, b"de").unwrap();
        let e = b.get(o1).unwrap();
        assert_eq!((e.stream, e.seq, e.data, e.next), (1, 1, &b"abc"[..], o2));
        b.trim(&acked(&[(1, 1)]));
        assert_eq!(b.start(), o2);
        b.trim(&acked(&[(1, 1), (2, 1)]));
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn compaction_keeps_live_entries_in_order_and_remaps_cursor() {
        let mut b = BacklogStore::<128>::new();
        for seq in 1..=4 {
            push(&mut b, (seq % 2) as u8, seq, &[seq as u8; 8]).unwrap();
        }
        // Stream 1 acked through seq 3: only stream 0's entries (2, 4) stay live.
        let table = acked(&[(1, 3)]);
        let next = b.get(b.start()).unwrap().next;
        b.set_send_cursor(next); // at seq 2
        let slot = b.reserve(40, &table).unwrap();
        slot[0] = 9;
        b.commit(1, Kind::Change, 5, 5, 1);
        let e = b.get(b.send_cursor()).unwrap();
        assert_eq!(e.seq, 2);
        let e2 = b.get(e.next).unwrap();
        assert_eq!(e2.seq, 4);
        assert_eq!(b.get(e2.next).unwrap().seq, 5);
    }

    #[test]
    fn full_is_refused_not_overwritten() {
        let mut b = BacklogStore::<64>::new();
        push(&mut b, 0, 1, &[0; 30]).unwrap();
        assert!(push(&mut b, 0, 2, &[0; 30]).is_none());
        assert_eq!(b.get(0).unwrap().seq, 1);
    }

    #[test]
    fn skip_acknowledged_stops_at_live_entries_or_the_end() {
        let mut b = BacklogStore::<256>::new();
        let o1 = push(&mut b, 0, 1, b"a").unwrap();
        let o2 = push(&mut b, 1, 1, b"b").unwrap();
        let o3 = push(&mut b, 0, 2, b"c").unwrap();
        assert_eq!(b.skip_acknowledged(o1, &acked(&[(0, 1)])), o2);
        b.kill_stream(1);
        assert_eq!(b.skip_acknowledged(o1, &acked(&[(0, 1)])), o3);
        let end = b.skip_acknowledged(o1, &acked(&[(0, 2)]));
        assert!(b.get(end).is_none());
    }

    #[test]
    fn max_change_covers_the_acknowledged_prefix_of_one_stream() {
        let mut b = BacklogStore::<256>::new();
        for (stream, seq, change) in [(0u8, 1, 10), (1, 1, 11), (0, 2, 12), (0, 3, 13)] {
            let slot = b.reserve(1, &acked(&[])).unwrap();
            slot[0] = 0;
            b.commit(stream, Kind::Change, seq, change, 1);
        }
        assert_eq!(b.max_change(0, 2), Some(12));
        assert_eq!(b.max_change(1, 5), Some(11));
        assert_eq!(b.max_change(2, 5), None);
    }
}
