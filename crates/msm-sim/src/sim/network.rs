//! The backplane between the simulated nodes: what each node transmits is
//! put on the links (delivered later, or not, as the fault model decides),
//! partitions and cut paths, and each node's judgement of its paths.

use super::*;

impl Sim {
    /// Cut path `path` (of two) between `a` and `b` for `d`; the other stays up.
    pub fn cut_path(&mut self, a: usize, b: usize, path: usize, d: Duration) {
        self.links.cut_path(a, b, path, self.instant() + d);
        let (a, b) = (slot(a).letter(), slot(b).letter());
        self.log(None, format_args!("CUT path {} between {a} and {b} for {d:?}", path + 1));
    }

    /// Cut the link between `a` and `b` for `d`.
    pub fn partition(&mut self, a: usize, b: usize, d: Duration) {
        self.links.partition(a, b, self.instant() + d);
        self.log(None, format_args!("PARTITION {} | {} for {:?}", slot(a).letter(), slot(b).letter(), d));
    }

    /// End every partition now.
    pub fn heal(&mut self) {
        self.links.heal();
    }

    /// The faults and timing every link runs now.
    pub fn faults(&self) -> &FaultConfig {
        self.links.config()
    }

    /// Change every link's faults and timing from the next frame on.
    pub fn set_faults(&mut self, cfg: FaultConfig) {
        self.links.set_config(cfg);
    }

    /// Node `i` judges its paths now, as a board does once a loop turn;
    /// when data moves to another path, the engine resends what was in
    /// flight at once.
    pub(super) fn judge_paths(&mut self, i: usize) {
        if self.cfg.paths < 2 {
            return;
        }
        let now = self.instant();
        let n = self.nodes.len();
        let mut moved = false;
        for h in &mut self.health[i * n..(i + 1) * n] {
            moved |= h.tick(now);
        }
        if moved {
            self.stats.path_moves += 1;
            self.log(Some(i), format_args!("data moves to another backplane path"));
            if let Some(e) = self.nodes[i].engine.as_deref_mut() {
                e.link_changed(now);
            }
        }
    }

    /// Send everything node `i` has to send.
    pub(super) fn flush(&mut self, i: usize) {
        let mut buf = vec![0u8; self.cfg.max_frame];
        self.judge_paths(i);
        if self.cfg.keep_terms {
            // Durable before a frame in it goes out, as on a board.
            let st = &mut self.nodes[i];
            if let Some(e) = st.engine.as_deref() {
                st.host.last_term = st.host.last_term.max(e.max_term().raw());
            }
        }
        for _ in 0..100_000 {
            let now = self.instant();
            let st = &mut self.nodes[i];
            let Some(e) = st.engine.as_deref_mut() else {
                return;
            };
            let Some(n) = e.poll_transmit(now, &mut st.host, &mut buf) else {
                break;
            };
            let frame = &buf[..n];
            let every_path = msm_checkpoint::wire::is_heartbeat(frame);
            let nodes = self.nodes.len();
            for to in 0..nodes {
                if to == i {
                    continue;
                }
                let data = self.health[i * nodes + to].data_path();
                for path in 0..self.links.paths() {
                    if !every_path && path != data {
                        continue;
                    }
                    let Fate::Delivered(d) = self.links.model(i, to, path).decide(now, n) else {
                        continue;
                    };
                    let mut bytes = frame.to_vec();
                    d.flips.apply(&mut bytes);
                    for _ in 0..1 + usize::from(d.duplicate) {
                        self.seq += 1;
                        let at = d.at.as_micros();
                        let f = InFlight { at, seq: self.seq, to, from: i, path, bytes: bytes.clone() };
                        self.queue.push(Reverse(f));
                    }
                }
            }
        }
        // Anything sent may have changed state worth checking (bulk reads).
        let seen = std::mem::take(&mut self.nodes[i].host.seen);
        if !seen.is_empty() {
            let term = self.engine(i).map_or(Term::NONE, |e| e.term());
            if let Err(v) = self.checker.seen(i, term, &seen) {
                self.violation.get_or_insert(v);
            }
        }
    }
}
