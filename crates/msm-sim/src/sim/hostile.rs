//! What arrives that no module of the chassis sent: the attacker's replays and forgeries, the
//! insider's frames (it holds the key), and frames a test forges (`seal_as`, `inject`). Each is
//! delivered and its fate checked.

use super::*;

impl Sim {
    /// The attacker's turn: maybe one frame, which must change nothing.
    pub(super) fn attack(&mut self) {
        if self.attacker.rate <= 0.0 {
            return;
        }
        let term =
            self.nodes.iter().filter_map(|n| n.engine.as_ref()).map(|e| e.term().raw()).max().unwrap_or(0);
        let Some((to, bytes, kind)) = self.attacker.next(self.nodes.len(), term) else { return };
        self.attack_with(to, &bytes, kind);
    }

    /// The insider's turn: maybe one misdeed, refused or harmless to the
    /// target's role, term and master.
    pub(super) fn misbehave(&mut self) {
        let Some(key) = self.cfg.key.clone() else { return };
        let Some((to, kind)) = self.insider.next(self.nodes.len()) else { return };
        let now = self.instant();
        let Some(challenge) = self.engine(to).map(|e| e.challenge(now)) else { return };
        let bytes = match kind {
            Misdeed::CounterJump => {
                let Some(taken) = self.attacker.taken_by(to) else { return };
                let Some(b) = self.insider.jump(&key, &taken) else { return };
                b
            }
            _ => {
                let max_term = self
                    .nodes
                    .iter()
                    .filter_map(|n| n.engine.as_ref())
                    .map(|e| e.max_term().raw())
                    .max()
                    .unwrap_or(0);
                self.insider.phantom(&key, kind, self.nodes.len(), to, challenge, max_term)
            }
        };
        let Some((r, [before, after], events)) = self.hostile(to, &bytes) else { return };
        let quiet = events.iter().all(|ev| matches!(ev, Event::PeerUp(_) | Event::PeerLost(_)));
        if !insider::refused(kind, &r) || before != after || !quiet {
            self.violation.get_or_insert(Violation {
                invariant: 7,
                message: format!(
                    "insider's {kind:?} frame to {}: {r:?}; (role, term, master) {before:?} -> {after:?}, events {events:?}",
                    slot(to)
                ),
            });
        }
        // A phantom taken may change what the node reports (a master may
        // take it for a backup): the checkers see the node as after any frame.
        for ev in events {
            self.nodes[to].events.push((self.now, ev));
        }
        self.check(to);
        self.flush(to);
    }

    /// Deliver one attacker frame to node `to` and check it changed nothing.
    pub(super) fn attack_with(&mut self, to: usize, bytes: &[u8], kind: Attack) {
        let Some((r, [before, after], events)) = self.hostile(to, bytes) else { return };
        if !attacker::refused_early(&r) || before != after || !events.is_empty() {
            self.violation.get_or_insert(Violation {
                invariant: 7,
                message: format!(
                    "attacker's {kind:?} frame to {} was not refused before authentication: {r:?}; \
                     (role, term, master) {before:?} -> {after:?}, events {events:?}",
                    slot(to)
                ),
            });
        }
    }

    /// Deliver one hostile frame to node `to` (if up): its fate, the
    /// node's (role, term, master) before and after, and the events it
    /// caused (those of earlier steps are drained first).
    pub(super) fn hostile(&mut self, to: usize, bytes: &[u8]) -> Option<Hostile> {
        self.after(to);
        let now = self.instant();
        let st = &mut self.nodes[to];
        let e = st.engine.as_deref_mut()?;
        let before = (e.role(), e.term(), e.master());
        let r = e.handle_frame(now, bytes, &mut st.host);
        let after = (e.role(), e.term(), e.master());
        let events = std::iter::from_fn(|| e.poll_event()).collect();
        Some((r, [before, after], events))
    }

    /// Seal a frame a test wrote as if `slot`'s boot `incarnation` sent it
    /// under the chassis key, with a counter no node has seen.
    pub fn seal_as(&mut self, frame: &mut [u8], incarnation: u32) {
        self.forged += 1;
        msm_checkpoint::wire::seal(frame, self.cfg.key.as_ref(), incarnation, self.forged);
    }

    /// Seal a frame a test wrote as if node `i` sent it next (its real next
    /// frame with that counter is then refused as a duplicate: a loss).
    pub fn seal_from(&mut self, frame: &mut [u8], i: usize) {
        let inc = self.nodes[i].incarnation;
        let counter = self.nodes[i].engine.as_ref().map_or(1, |e| e.frames_sent() + 1);
        msm_checkpoint::wire::seal(frame, self.cfg.key.as_ref(), inc, counter);
    }

    /// Deliver a raw frame to node `i` now, as if from the backplane.
    pub fn inject(&mut self, i: usize, bytes: &[u8]) {
        let now = self.instant();
        let st = &mut self.nodes[i];
        if let Some(e) = st.engine.as_deref_mut() {
            if e.handle_frame(now, bytes, &mut st.host).is_err() {
                self.stats.frame_errors += 1;
            }
        }
        self.after(i);
    }
}
