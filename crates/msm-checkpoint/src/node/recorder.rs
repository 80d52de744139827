//! What the master records for its backup: bulk records pulled from the
//! board's [`Host`] in dependency order, changes, and the backlog that holds
//! them until acknowledged, with its overflow policy (the stream holding the
//! most bytes is dropped and re-bulked, so a busy application never costs a
//! quiet one its backlog).

use super::backlog::{BacklogStore, Kind};
use super::stream_set::{MAX_STREAMS, Streams};
use crate::event::{Event, EventQueue, RebulkReason};
use crate::host::{Host, HostError};
use crate::stream::{Failure, Phase};
use crate::wire;
use msm_time::Instant;

/// Streams re-bulked by an operation, a bit per local id: their runs in
/// flight no longer count.
pub(crate) type Rebulked = u32;

/// The backlog and how records get into it.
#[derive(Debug)]
pub(crate) struct Recorder<const BACKLOG: usize> {
    pub(crate) backlog: BacklogStore<BACKLOG>,
    /// Next stream to pull bulk records from (round robin).
    bulk_rr: usize,
    max_record: usize,
    max_frame: usize,
}

impl<const BACKLOG: usize> Recorder<BACKLOG> {
    pub(crate) const fn new(max_record: usize, max_frame: usize) -> Self {
        Recorder { backlog: BacklogStore::new(), bulk_rr: 0, max_record, max_frame }
    }

    /// A change of `sid`: its id, and a record in the backlog once the
    /// stream's bulk has begun (before that, the bulk will carry it).
    pub(crate) fn change(
        &mut self,
        sid: usize,
        record: &[u8],
        streams: &mut Streams,
        events: &mut EventQueue,
    ) -> (u64, Rebulked) {
        let tx = &mut streams.get_mut(sid).tx;
        let id = tx.next_change();
        let rebulked =
            if tx.recording { self.append(sid, Kind::Change, id, record, streams, events).1 } else { 0 };
        (id, rebulked)
    }

    /// Start `sid` over with a new bulk (a new epoch); `Off` without a session.
    pub(crate) fn rebulk(
        &mut self,
        sid: usize,
        reason: RebulkReason,
        session: bool,
        streams: &mut Streams,
        events: &mut EventQueue,
    ) {
        warn!("stream re-bulk");
        self.backlog.kill_stream(sid as u8);
        streams.restart(sid);
        let tx = &mut streams.get_mut(sid).tx;
        tx.count_rebulk();
        if !session {
            tx.off();
        }
        events.push(Event::Rebulk { stream: Streams::stream(sid), reason });
    }

    /// Streams whose dependencies all finished their bulk begin theirs.
    pub(crate) fn start_ready_bulks<H: Host>(
        &mut self,
        now: Instant,
        host: &mut H,
        streams: &mut Streams,
        events: &mut EventQueue,
    ) -> Rebulked {
        let mut rebulked = 0;
        for sid in streams.ids() {
            let tx = &streams.get(sid).tx;
            let held = tx.hold_until > now;
            if tx.phase != Phase::Waiting || held || streams.deps(sid) & !streams.synced_mask() != 0 {
                continue;
            }
            let total = host.bulk_start(Streams::stream(sid));
            streams.get_mut(sid).counters.bulks += 1;
            let tx = &mut streams.get_mut(sid).tx;
            tx.begin_bulk(total);
            let covers = tx.covers;
            debug!("bulk starts");
            rebulked |= self.append(sid, Kind::Begin, covers, &total.to_le_bytes(), streams, events).1;
        }
        rebulked
    }

    /// Append a record under the overflow policy. False when the record
    /// itself was dropped (its stream re-bulked).
    fn append(
        &mut self,
        sid: usize,
        kind: Kind,
        change: u64,
        data: &[u8],
        streams: &mut Streams,
        events: &mut EventQueue,
    ) -> (bool, Rebulked) {
        let mut rebulked = 0;
        loop {
            if let Some(slot) = self.backlog.reserve(data.len(), &*streams) {
                slot[..data.len()].copy_from_slice(data);
                let tx = &mut streams.get_mut(sid).tx;
                let seq = match kind {
                    Kind::Bulk | Kind::Change => tx.record(data),
                    Kind::End => tx.record_end(),
                    Kind::Begin => tx.record_begin(),
                };
                self.backlog.commit(sid as u8, kind, seq, change, data.len());
                return (true, rebulked);
            }
            let mut usage = [0usize; MAX_STREAMS];
            self.backlog.usage(&*streams, &mut usage);
            let victim = overflow_victim(&usage[..streams.len()], sid);
            // No victim cannot happen for records within max_record and a backlog
            // of at least a few frames; drop to a re-bulk rather than lose order.
            let v = victim.unwrap_or(sid);
            self.rebulk(v, RebulkReason::BacklogOverflow, true, streams, events);
            rebulked |= 1 << v;
            if v == sid {
                return (false, rebulked);
            }
        }
    }

    /// Read bulk records from the host into the backlog, about one frame's
    /// worth, round-robin over streams in bulk. False when there is nothing.
    pub(crate) fn pull_bulk<H: Host>(
        &mut self,
        host: &mut H,
        streams: &mut Streams,
        events: &mut EventQueue,
    ) -> (bool, Rebulked) {
        let n = streams.len();
        let Some(sid) =
            (0..n).map(|k| (self.bulk_rr + k) % n).find(|&i| streams.get(i).tx.phase == Phase::Bulk)
        else {
            return (false, 0);
        };
        self.bulk_rr = (sid + 1) % n;
        let stream = Streams::stream(sid);
        let max = self.max_record;
        let mut budget = self.max_frame;
        let mut any = false;
        while budget > 0 && streams.get(sid).tx.phase == Phase::Bulk {
            let mut cursor = streams.get(sid).tx.cursor;
            let Some(slot) = self.backlog.reserve(max, &*streams) else {
                break; // full of unacknowledged records: wait for acks
            };
            let read = host.bulk_read(stream, &mut cursor, slot);
            let st = streams.get_mut(sid);
            match read {
                Ok(Some(len)) if len <= max => {
                    let seq = st.tx.record_bulk(&slot[..len], cursor);
                    self.backlog.commit(sid as u8, Kind::Bulk, seq, 0, len);
                    budget = budget.saturating_sub(len + wire::bytes_record_len(0));
                    any = true;
                }
                res @ (Ok(Some(_)) | Err(_)) => {
                    st.tx.fail(Failure::Host(res.err().unwrap_or(HostError::RecordTooLarge)));
                    st.counters.errors += 1;
                    break;
                }
                Ok(None) => {
                    let digest = st.tx.digest.value();
                    let (stored, rebulked) =
                        self.append(sid, Kind::End, 0, &digest.to_le_bytes(), streams, events);
                    if stored {
                        streams.get_mut(sid).tx.ending();
                    }
                    return (any || stored, rebulked);
                }
            }
        }
        (any, 0)
    }
}

/// The stream to drop and re-bulk when the backlog is full: the one holding
/// the most bytes (`usage`, by stream), the appending stream `sid` on a tie.
/// `None` when nothing can be freed that way.
fn overflow_victim(usage: &[usize], sid: usize) -> Option<usize> {
    let victim = (0..usage.len()).max_by_key(|&i| (usage[i], i == sid)).unwrap_or(sid);
    usage.get(victim).is_some_and(|&u| u > 0).then_some(victim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::AppRegistry;
    use crate::node::stream_set::StreamStore;

    #[test]
    fn overflow_victim_is_the_largest_user_and_the_appender_on_ties() {
        assert_eq!(overflow_victim(&[10, 300, 20], 2), Some(1));
        assert_eq!(overflow_victim(&[10, 300, 300], 2), Some(2), "a tie goes to the appending stream");
        assert_eq!(overflow_victim(&[10, 300, 300], 0), Some(2), "otherwise the later of equals");
        assert_eq!(overflow_victim(&[0, 0, 0], 1), None);
        assert_eq!(overflow_victim(&[], 0), None);
    }

    #[test]
    fn a_full_backlog_rebulks_the_busiest_stream_not_the_quiet_one() {
        let mut apps = AppRegistry::<2>::new();
        apps.register("busy", 1, &[]).unwrap();
        apps.register("quiet", 1, &[]).unwrap();
        apps.validate().unwrap();
        let mut streams = StreamStore::new(apps);
        let mut events = EventQueue::new();
        let mut rec = Recorder::<256>::new(64, 256);
        for sid in [2, 3] {
            streams.get_mut(sid).tx.continue_from((0, 0, 0));
        }
        rec.change(3, b"q", &mut streams, &mut events);
        let mut rebulked = 0;
        for _ in 0..12 {
            rebulked |= rec.change(2, &[0u8; 32], &mut streams, &mut events).1;
        }
        assert_eq!(rebulked, 1 << 2, "only the busy stream starts over");
        assert_eq!(streams.get(3).tx.next_seq, 2, "the quiet stream's record is still there");
        assert_eq!(streams.get(2).tx.phase, Phase::Waiting);
        assert!(matches!(events.pop(), Some(Event::Rebulk { reason: RebulkReason::BacklogOverflow, .. })));
    }
}
