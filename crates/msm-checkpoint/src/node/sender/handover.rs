//! `run msm-failover` on the master's side, and streams continued across a
//! switchover without a bulk: the new master continues every stream it held
//! whole from the old master under a new epoch (`continue_for_old_master`),
//! the old master takes what its backup acknowledged as its receive state
//! (`hand_over_streams`), and its hello offering exactly that point
//! continues the stream (`continue_stream`; Redis' PSYNC2).

use super::*;
use crate::stream::Rx;

impl<const WINDOW: usize, const BACKLOG: usize> Sender<WINDOW, BACKLOG> {
    /// `run msm-failover [force]` starts: drain, then tell the backup.
    pub(crate) fn start_handover(
        &mut self,
        now: Instant,
        force: bool,
        deadline: Instant,
        timers: &mut TimerTable,
    ) {
        self.handover = Some(force);
        timers.set(Timer::HandoverDeadline, deadline);
        timers.set(Timer::HandoverResend, now);
    }

    /// True when there was one to cancel.
    pub(crate) fn cancel_handover(&mut self, timers: &mut TimerTable) -> bool {
        timers.stop(Timer::HandoverDeadline);
        timers.stop(Timer::HandoverResend);
        self.handover.take().is_some()
    }

    /// A stream that continues the old master's after `run msm-failover`:
    /// the backup (that old master) offers exactly the point it continues
    /// from, with its state whole, so it takes the new epoch without a bulk.
    /// False: it offers anything else (another module, or state that moved
    /// on), and the stream starts over as any other would.
    pub(super) fn continue_stream(
        &mut self,
        sid: usize,
        h: &StreamHello<'_>,
        point: (u64, u32, u64),
        streams: &mut Streams,
    ) -> bool {
        let tx = &mut streams.get_mut(sid).tx;
        tx.forget_continuation();
        if !(h.complete && (h.term, h.epoch, h.seq) == point) {
            debug!("stream diverged from the switchover point: bulk");
            return false;
        }
        debug!("stream continues across the switchover");
        tx.continued_by_backup(point);
        self.continued |= 1 << sid;
        true
    }

    /// This node just became master in place of `slot` (`run msm-failover`,
    /// or its master fell silent): continue every stream whose state this
    /// node held whole from the old master, each under a new epoch that
    /// records from now on, and hold a session open for the old master
    /// (`slot`, `incarnation`) to come back to. It continues a stream only
    /// if it offers exactly the point we hold (see `continue_stream`); a
    /// crashed and restarted one is another incarnation and gets none.
    pub(crate) fn continue_for_old_master(
        &mut self,
        slot: Slot,
        incarnation: u32,
        old_term: u64,
        streams: &mut Streams,
    ) {
        for sid in streams.ids() {
            let st = streams.get_mut(sid);
            let rx = &st.rx;
            let whole = rx.complete && rx.term == old_term && !rx.in_bulk && !rx.resync;
            if !whole {
                continue;
            }
            let point = (rx.term, rx.epoch, rx.applied);
            st.tx.continue_for_old_master(point);
        }
        self.session = Some(Session { slot, incarnation, hello_id: 0, seen: 0, total: 0 });
        self.attached = false;
        self.continued = 0;
    }

    /// The old master's side, as it steps down (after `run msm-failover`, or
    /// a partition that made another master): every stream the backup
    /// acknowledged to its last record is, from now on, what this node holds
    /// as a backup would (term, epoch, last sequence number), so its hello
    /// offers the new master exactly the point it may continue from. A
    /// stream with a change the backup never acknowledged is not: its state
    /// here has moved on from anything the new master holds.
    pub(crate) fn hand_over_streams(&self, term: u64, streams: &mut Streams) {
        for sid in streams.ids() {
            let st = streams.get_mut(sid);
            let tx = &st.tx;
            if !(tx.recording && tx.phase == Phase::Synced && tx.acked + 1 == tx.next_seq) {
                continue;
            }
            // Every change it made is on the backup: the new master's ids go on from here.
            st.rx = Rx::handed_over(term, tx);
        }
    }

    /// Once a heartbeat interval: while the backup has not acknowledged a
    /// continued stream (its acknowledgement can be lost, and a quiet stream
    /// sends nothing that would bring another), the `HelloAck` naming the
    /// continued streams goes again.
    pub(crate) fn repeat_continuation(&mut self, streams: &Streams) {
        if self.attached && streams.ids().any(|i| streams.get(i).tx.unconfirmed) {
            self.hello_ack_due = true;
        }
    }

    /// Every record made has been acknowledged: the Handover may go.
    pub(super) fn drained(&self, streams: &Streams) -> bool {
        streams.ids().all(|i| {
            let tx = &streams.get(i).tx;
            !tx.recording || streams.acked(i) + 1 == tx.next_seq
        })
    }
}
