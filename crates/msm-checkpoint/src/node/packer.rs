//! Packs one data frame from the backlog: consecutive records of a stream
//! form a run behind a run header; a frame carries as many runs as fit and
//! the window allows. Reads the backlog, never changes it.

use heapless::Vec;

use super::backlog::{Backlog, Entry, Kind};
use super::stream_set::{Acked, Streams};
use crate::wire::{self, FrameWriter, Record};

/// One run sent and not yet acknowledged: its stream and last record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    pub sid: u8,
    pub last_seq: u64,
}

/// Write records from `off` into `w` as runs, at most `room` of them, each
/// headed with the backup's id for the stream (`peer_sid`). Returns the runs
/// written and the backlog offset after the last record packed.
pub(crate) fn pack<const W: usize>(
    w: &mut FrameWriter<'_>,
    backlog: &Backlog,
    off: usize,
    streams: &Streams,
    peer_sid: &[u8],
    room: usize,
) -> (Vec<Run, W>, usize) {
    let mut runs: Vec<Run, W> = Vec::new();
    let mut cur = off;
    let mut expect = 0u64;
    while let Some(e) = backlog.get(cur) {
        let sid = usize::from(e.stream);
        if e.dead || !streams.live(e.stream, e.seq) {
            cur = e.next;
            continue;
        }
        let rec = record(&e);
        let same_run = runs.last().is_some_and(|r| r.sid == e.stream && expect == e.seq);
        if !same_run {
            // Begin/End carry a u64 as a varint: up to 11 bytes with the tag.
            let need = wire::RUN_LEN + wire::bytes_record_len(e.data.len()).max(11);
            if runs.len() >= room || w.remaining() < need {
                break;
            }
            let epoch = streams.get(sid).tx.epoch;
            let stream = peer_sid.get(sid).copied().unwrap_or(wire::NO_SLOT);
            let run = Record::Run { stream, epoch, first_seq: e.seq };
            if w.push(&run).is_err() || runs.push(Run { sid: e.stream, last_seq: e.seq }).is_err() {
                break;
            }
        }
        if w.push(&rec).is_err() {
            break;
        }
        if let Some(r) = runs.last_mut() {
            r.last_seq = e.seq;
        }
        expect = e.seq + 1;
        cur = e.next;
    }
    (runs, cur)
}

/// One run of `sid` (epoch `epoch`) from the entry at `off`, for a
/// standby's mirror: every record of the stream that follows in order and
/// fits, acknowledged by the backup or not, under the stream id `sid` (the
/// configuration streams have the same ids on every module). Returns the
/// last sequence number written, if any.
pub(crate) fn pack_stream(
    w: &mut FrameWriter<'_>,
    backlog: &Backlog,
    off: usize,
    sid: u8,
    epoch: u32,
) -> Option<u64> {
    let first = backlog.get(off)?;
    let run = Record::Run { stream: sid, epoch, first_seq: first.seq };
    w.push(&run).ok()?;
    let (mut cur, mut expect, mut last) = (off, first.seq, None);
    while let Some(e) = backlog.get(cur) {
        cur = e.next;
        if e.stream != sid {
            continue;
        }
        if e.dead || e.seq != expect || w.push(&record(&e)).is_err() {
            break;
        }
        last = Some(e.seq);
        expect += 1;
    }
    last
}

/// The wire record of a backlog entry.
fn record<'a>(e: &Entry<'a>) -> Record<'a> {
    let word = |d: &[u8]| d.get(..8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
    match e.kind {
        Kind::Begin => Record::Begin { total: word(e.data), covers: e.change },
        Kind::Bulk => Record::Bulk(e.data),
        Kind::Change => Record::Change(e.data),
        Kind::End => Record::End { digest: word(e.data) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::AppRegistry;
    use crate::node::backlog::BacklogStore;
    use crate::node::stream_set::StreamStore;
    use crate::wire::{Body, decode, take};

    fn commit(b: &mut Backlog, streams: &Streams, sid: u8, seq: u64, data: &[u8]) {
        let slot = b.reserve(data.len(), streams).unwrap();
        slot[..data.len()].copy_from_slice(data);
        b.commit(sid, Kind::Change, seq, seq, data.len());
    }

    #[test]
    fn consecutive_records_share_a_run_and_the_window_bounds_runs() {
        let streams = StreamStore::<2>::new(AppRegistry::new());
        let mut b = BacklogStore::<512>::new();
        commit(&mut b, &streams, 0, 1, b"a");
        commit(&mut b, &streams, 0, 2, b"b");
        commit(&mut b, &streams, 1, 1, b"c");
        commit(&mut b, &streams, 0, 3, b"d");
        let peer = [7u8, 8];
        let mut buf = [0u8; 256];
        let mut w = FrameWriter::new(&mut buf, 0, 1, 0x1FF, &Body::Data).unwrap();
        let (runs, end) = pack::<4>(&mut w, &b, 0, &streams, &peer, 4);
        assert_eq!(runs.iter().map(|r| (r.sid, r.last_seq)).collect::<Vec<_, 4>>(), [(0, 2), (1, 1), (0, 3)]);
        assert!(b.get(end).is_none(), "everything packed");
        let n = w.finish();
        crate::wire::seal(&mut buf[..n], None, 1, 1);
        let f = decode(&buf[..n]).unwrap();
        let mut tail = f.tail;
        assert_eq!(take::<Record<'_>>(&mut tail).unwrap(), Record::Run { stream: 7, epoch: 0, first_seq: 1 });
        assert_eq!(take::<Record<'_>>(&mut tail).unwrap(), Record::Change(b"a"));
        assert_eq!(take::<Record<'_>>(&mut tail).unwrap(), Record::Change(b"b"));
        assert_eq!(take::<Record<'_>>(&mut tail).unwrap(), Record::Run { stream: 8, epoch: 0, first_seq: 1 });

        let mut buf = [0u8; 256];
        let mut w = FrameWriter::new(&mut buf, 0, 1, 0x1FF, &Body::Data).unwrap();
        let (runs, end) = pack::<4>(&mut w, &b, 0, &streams, &peer, 1);
        assert_eq!(runs.len(), 1, "a window of one run");
        assert_eq!(b.get(end).map(|e| (e.stream, e.seq)), Some((1, 1)), "the next run waits");
    }
}
