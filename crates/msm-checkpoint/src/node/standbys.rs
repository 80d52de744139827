//! The master's side of its standbys' configuration mirrors (the standby's
//! side is `mirror`). Each standby reports where its copy of each
//! configuration stream is; the master answers one frame per report (stop
//! and wait: a standby never costs the backup's window or backlog) with
//! what the copy lacks:
//! - the stream's records from the backlog, as the backup got them, while
//!   the backlog still holds them (acknowledged or not);
//! - else a snapshot of the stream's state at its exact point (the host's
//!   bulk view, read again), after which records follow;
//! - or, for a copy at the point a switchover continued the stream from, a
//!   rebase onto the new epoch.
//!
//! The saved configuration first, then the active one, as for the backup.
//!
//! Nothing here holds records: the backlog and the host do.

use heapless::Vec;

use super::backlog::Backlog;
use super::packer::pack_stream;
use super::stream_set::{CONFIG_STREAMS, Streams};
use crate::error::FrameError;
use crate::host::{CONFIG_CHUNK, Host};
use crate::role::{MAX_NODES, Slot};
use crate::status::ConfigCopy;
use crate::wire::{self, Body, MirrorItem, MirrorPoint, NO_CURSOR, Origin, Outgoing, SnapshotItem};

/// Bytes of a [`SnapshotItem`] besides its data: two varints at most.
const ITEM_OVERHEAD: usize = 10 + 3;
/// A frame with less room than this for an item's data goes as it is.
const MIN_ITEM: usize = 16;

/// The host's bulk view of a configuration stream, taken for snapshots:
/// the stream's point then, and its digest there.
#[derive(Debug, Clone, Copy)]
struct View {
    epoch: u32,
    seq: u64,
    digest: u64,
}

/// One standby, as its last report describes it.
#[derive(Debug, Clone, Copy)]
struct Follower {
    slot: Slot,
    incarnation: u32,
    copies: [MirrorItem; CONFIG_STREAMS],
    /// Per stream, the read positions the last snapshot frame sent to it
    /// started at and ended at: the only ones its report may name (a
    /// position is the host's to interpret; none from the wire reaches it).
    sent: [[u64; 2]; CONFIG_STREAMS],
    /// A frame is due (a report came, or a change while not waiting).
    due: bool,
    /// A frame went out; the next waits for its report.
    waiting: bool,
}

/// What a standby's copy of one stream lacks.
#[derive(Debug, PartialEq, Eq)]
enum Lack {
    Nothing,
    /// Records from this backlog offset.
    Records(usize),
    /// A snapshot, from this read position (0: a new one).
    Snapshot(u64),
    /// The copy is at the point the stream was continued from.
    Rebase(MirrorPoint),
    /// Nothing can be sent now (a bulk to the backup is in progress).
    Wait,
}

/// The master's standbys (at most `N`: a chassis of `N` + 2 modules).
#[derive(Debug)]
pub(crate) struct Standbys<const N: usize> {
    list: Vec<Follower, N>,
    views: [Option<View>; CONFIG_STREAMS],
}

impl<const N: usize> Standbys<N> {
    pub(crate) const fn new() -> Self {
        Standbys { list: Vec::new(), views: [None; CONFIG_STREAMS] }
    }

    /// Not master any more: no standby is ours.
    pub(crate) fn clear(&mut self) {
        self.list.clear();
        self.views = [None; CONFIG_STREAMS];
    }

    /// `slot` is lost or became the backup.
    pub(crate) fn forget(&mut self, slot: Slot) {
        self.list.retain(|f| f.slot != slot);
    }

    /// A configuration change was recorded: standbys in step get it now.
    pub(crate) fn changed(&mut self) {
        for f in self.list.iter_mut().filter(|f| !f.waiting) {
            f.due = true;
        }
    }

    /// A standby's report (already checked to be from a live non-backup
    /// peer in our term).
    pub(crate) fn on_report(
        &mut self,
        from: Slot,
        incarnation: u32,
        mut tail: &[u8],
    ) -> Result<(), FrameError> {
        let unknown =
            MirrorItem { stream: 0, point: MirrorPoint::default(), complete: false, cursor: NO_CURSOR };
        let i = match self.list.iter().position(|f| f.slot == from) {
            Some(i) => i,
            None => {
                let fresh = Follower {
                    slot: from,
                    incarnation,
                    copies: [unknown; CONFIG_STREAMS],
                    sent: [[0; 2]; CONFIG_STREAMS],
                    due: true,
                    waiting: false,
                };
                self.list.push(fresh).map_err(|_| FrameError::Unexpected { from })?;
                self.list.len() - 1
            }
        };
        let f = &mut self.list[i];
        if f.incarnation != incarnation {
            f.incarnation = incarnation;
            f.copies = [unknown; CONFIG_STREAMS];
            f.sent = [[0; 2]; CONFIG_STREAMS];
        }
        while !tail.is_empty() {
            let mut item: MirrorItem = wire::take(&mut tail).map_err(|_| FrameError::BadRecord)?;
            let sid = usize::from(item.stream);
            let Some(c) = f.copies.get_mut(sid) else { continue };
            if item.cursor != NO_CURSOR && !f.sent[sid].contains(&item.cursor) {
                // Not where a frame of ours left it: the snapshot starts over.
                item.cursor = 0;
            }
            *c = item;
        }
        f.due = true;
        f.waiting = false;
        Ok(())
    }

    /// What `copy` lacks of stream `sid` on this master (term `term`).
    fn lack(&self, copy: &MirrorItem, sid: usize, term: u64, streams: &Streams, backlog: &Backlog) -> Lack {
        let tx = &streams.get(sid).tx;
        let p = copy.point;
        let ours = p.term == term && p.epoch == tx.epoch && tx.recording;
        if copy.cursor != NO_CURSOR {
            let view = self.views[sid].filter(|v| (v.epoch, v.seq) == (p.epoch, p.seq));
            if ours && view.is_some() {
                return Lack::Snapshot(copy.cursor);
            }
        } else if ours {
            let last = tx.next_seq - 1;
            if copy.complete && p.seq == last {
                return Lack::Nothing;
            }
            if p.seq < last {
                if let Some(off) = backlog.find(sid as u8, p.seq + 1) {
                    return Lack::Records(off);
                }
            }
        } else if copy.complete && tx.recording && tx.origin == Some((p.term, p.epoch, p.seq)) {
            return Lack::Rebase(p);
        }
        if tx.exact_point(term).is_some() { Lack::Snapshot(0) } else { Lack::Wait }
    }

    /// The next frame for a standby, if one is due.
    pub(crate) fn poll_transmit<H: Host>(
        &mut self,
        from: Origin,
        host: &mut H,
        streams: &Streams,
        backlog: &Backlog,
        buf: &mut [u8],
    ) -> Option<usize> {
        let term = from.term.raw();
        for i in 0..self.list.len() {
            if !self.list[i].due {
                continue;
            }
            self.list[i].due = false;
            let f = self.list[i];
            for (sid, copy) in f.copies.iter().enumerate() {
                let to = f.slot.raw();
                let epoch = streams.get(sid).tx.epoch;
                // In order: the active configuration only once the saved one is in step.
                let n = match self.lack(copy, sid, term, streams, backlog) {
                    Lack::Nothing => continue,
                    Lack::Wait => break,
                    Lack::Records(off) => {
                        let mut w = from.writer(buf, to, &Body::Data)?;
                        match pack_stream(&mut w, backlog, off, sid as u8, epoch) {
                            Some(_) => w.finish(),
                            None => break,
                        }
                    }
                    Lack::Rebase(p) => {
                        from.writer(buf, to, &Body::Rebase { stream: sid as u8, from: p, epoch })?.finish()
                    }
                    Lack::Snapshot(cursor) => {
                        let out = Outgoing { from, to, buf: &mut *buf };
                        let (n, next) = self.snapshot(out, sid, cursor, host, streams)?;
                        self.list[i].sent[sid] = [cursor, next];
                        n
                    }
                };
                self.list[i].waiting = true;
                return Some(n);
            }
        }
        None
    }

    /// One frame of a snapshot of `sid` from `cursor` (0: take a new view
    /// of the host's state, at the stream's exact point): its length, and
    /// the read position after it.
    fn snapshot<H: Host>(
        &mut self,
        out: Outgoing<'_>,
        sid: usize,
        mut cursor: u64,
        host: &mut H,
        streams: &Streams,
    ) -> Option<(usize, u64)> {
        let stream = Streams::stream(sid);
        let tx = &streams.get(sid).tx;
        if cursor == 0 {
            let seq = tx.next_seq - 1;
            if self.views[sid].is_none_or(|v| (v.epoch, v.seq) != (tx.epoch, seq)) {
                // Safe: at an exact point no bulk of the stream is reading the view.
                host.bulk_start(stream);
                self.views[sid] = Some(View { epoch: tx.epoch, seq, digest: tx.digest.value() });
            }
        }
        let v = self.views[sid]?;
        let body = Body::Snapshot { stream: sid as u8, epoch: v.epoch, seq: v.seq, cursor, digest: v.digest };
        let mut w = out.writer(&body)?;
        let mut chunk = [0u8; CONFIG_CHUNK];
        loop {
            // An item's own bytes: its read position and length, as varints.
            let room = w.remaining().saturating_sub(ITEM_OVERHEAD).min(CONFIG_CHUNK);
            if room < MIN_ITEM {
                break;
            }
            match host.bulk_read(stream, &mut cursor, &mut chunk[..room]) {
                Ok(Some(n)) => w.push(&SnapshotItem { next: cursor, data: &chunk[..n] }).ok()?,
                Ok(None) => {
                    w.push(&SnapshotItem::END).ok()?;
                    break;
                }
                Err(_) => {
                    // The view is unreadable: the next report starts a new one.
                    warn!("standby snapshot: the host failed a read");
                    self.views[sid] = None;
                    return None;
                }
            }
        }
        Some((w.finish(), cursor))
    }

    /// Where `slot`'s copy of the configuration is, for `show switch`.
    pub(crate) fn copy_state(
        &self,
        slot: Slot,
        term: u64,
        streams: &Streams,
        backlog: &Backlog,
    ) -> Option<ConfigCopy> {
        let f = self.list.iter().find(|f| f.slot == slot)?;
        let mut state = ConfigCopy::InSync;
        for (sid, copy) in f.copies.iter().enumerate() {
            match self.lack(copy, sid, term, streams, backlog) {
                Lack::Nothing => {}
                Lack::Wait => state = state.min(ConfigCopy::Waiting),
                _ => state = state.min(ConfigCopy::Copying),
            }
        }
        Some(state)
    }

    /// Every standby with a report, by slot.
    pub(crate) fn copies(
        &self,
        term: u64,
        streams: &Streams,
        backlog: &Backlog,
    ) -> [Option<ConfigCopy>; MAX_NODES] {
        let mut out = [None; MAX_NODES];
        for f in &self.list {
            out[f.slot.index()] = self.copy_state(f.slot, term, streams, backlog);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::AppRegistry;
    use crate::node::backlog::{BacklogStore, Kind};
    use crate::node::stream_set::ACTIVE;
    use crate::node::stream_set::StreamStore;
    use crate::stream::Tx;

    const TERM: u64 = 0x1FF;

    /// The active configuration in epoch 3 with records 1..=5 made; the
    /// backlog still holds 4 and 5 (acknowledged or not).
    fn master() -> (StreamStore<0>, BacklogStore<512>) {
        let mut streams = StreamStore::<0>::new(AppRegistry::new());
        streams.get_mut(ACTIVE).tx = Tx::synced_at(3, 6, 3);
        let mut backlog = BacklogStore::<512>::new();
        for seq in [4u64, 5] {
            let slot = backlog.reserve(8, &*streams).unwrap();
            slot[..8].copy_from_slice(b"vlan 10\n");
            backlog.commit(ACTIVE as u8, Kind::Change, seq, seq, 8);
        }
        (streams, backlog)
    }

    fn copy(term: u64, epoch: u32, seq: u64, complete: bool) -> MirrorItem {
        MirrorItem {
            stream: ACTIVE as u8,
            point: MirrorPoint { term, epoch, seq },
            complete,
            cursor: NO_CURSOR,
        }
    }

    #[test]
    fn a_copy_gets_records_while_the_backlog_has_them_else_a_snapshot() {
        let (streams, backlog) = master();
        let s = Standbys::<2>::new();
        let lack = |c: MirrorItem| s.lack(&c, ACTIVE, TERM, &streams, &backlog);
        assert_eq!(lack(copy(TERM, 3, 5, true)), Lack::Nothing);
        assert_eq!(lack(copy(TERM, 3, 3, true)), Lack::Records(backlog.find(ACTIVE as u8, 4).unwrap()));
        assert_eq!(lack(copy(TERM, 3, 2, true)), Lack::Snapshot(0), "record 3 left the backlog");
        assert_eq!(lack(copy(TERM, 3, 5, false)), Lack::Snapshot(0), "at the point but not whole");
        assert_eq!(lack(copy(TERM, 2, 9, true)), Lack::Snapshot(0), "an older epoch");
        assert_eq!(lack(copy(0x2FE, 3, 5, true)), Lack::Snapshot(0), "another master's term");
    }

    #[test]
    fn a_snapshot_goes_on_only_from_the_view_its_point_names() {
        let (streams, backlog) = master();
        let mut s = Standbys::<2>::new();
        s.views[ACTIVE] = Some(View { epoch: 3, seq: 5, digest: 7 });
        let mut c = copy(TERM, 3, 5, false);
        c.cursor = 512;
        assert_eq!(s.lack(&c, ACTIVE, TERM, &streams, &backlog), Lack::Snapshot(512));
        s.views[ACTIVE] = Some(View { epoch: 3, seq: 4, digest: 7 });
        assert_eq!(
            s.lack(&c, ACTIVE, TERM, &streams, &backlog),
            Lack::Snapshot(0),
            "another view: start over"
        );
    }

    #[test]
    fn a_copy_at_the_continued_point_is_rebased_and_nothing_goes_during_a_bulk() {
        let (mut streams, backlog) = master();
        let s = Standbys::<2>::new();
        let old = copy(0x1FE, 8, 40, true);
        streams.get_mut(ACTIVE).tx.continue_from((0x1FE, 8, 40));
        assert_eq!(s.lack(&old, ACTIVE, TERM, &streams, &backlog), Lack::Rebase(old.point));
        // Still after the new backup took the point: the epoch began there.
        streams.get_mut(ACTIVE).tx.forget_continuation();
        assert_eq!(s.lack(&old, ACTIVE, TERM, &streams, &backlog), Lack::Rebase(old.point));
        let tx = &mut streams.get_mut(ACTIVE).tx;
        tx.restart();
        tx.begin_bulk(0);
        assert_eq!(
            s.lack(&old, ACTIVE, TERM, &streams, &backlog),
            Lack::Wait,
            "no exact point for a snapshot"
        );
    }

    #[test]
    fn reports_make_a_frame_due_and_a_reboot_forgets_the_copies() {
        let mut s = Standbys::<1>::new();
        let a = Slot::new(2).unwrap();
        let mut buf = [0u8; 64];
        let item = copy(TERM, 3, 5, true);
        let n = postcard::to_slice(&item, &mut buf).unwrap().len();
        s.on_report(a, 7, &buf[..n]).unwrap();
        assert!(s.list[0].due && s.list[0].copies[ACTIVE] == item);
        s.list[0].waiting = true;
        s.changed();
        s.list[0].due = false;
        s.changed();
        assert!(!s.list[0].due, "waiting for the answer to the last frame");
        s.on_report(a, 8, &[]).unwrap();
        assert_eq!(s.list[0].copies[ACTIVE].point, MirrorPoint::default(), "another boot holds nothing");
        // A read position no frame of ours ended at is not passed to the host.
        s.list[0].sent[ACTIVE] = [256, 512];
        for (cursor, taken) in [(512, 512), (256, 256), (3, 0)] {
            let item = MirrorItem { cursor, ..copy(TERM, 3, 5, false) };
            let n = postcard::to_slice(&item, &mut buf).unwrap().len();
            s.on_report(a, 8, &buf[..n]).unwrap();
            assert_eq!(s.list[0].copies[ACTIVE].cursor, taken, "reported {cursor}");
        }
        let b = Slot::new(3).unwrap();
        assert!(matches!(s.on_report(b, 1, &[]), Err(FrameError::Unexpected { .. })), "room for one standby");
        s.forget(a);
        assert!(s.list.is_empty());
    }
}
