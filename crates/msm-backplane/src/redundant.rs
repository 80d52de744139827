//! Two or more backplane paths to the same peer, as one [`Link`]. With one
//! path a cut cable looks like a dead module, and a backup that promotes
//! itself while the master lives is a split brain; with two, the peer is
//! lost only when every path is silent.
//!
//! - Frames the classifier calls [`FrameClass::EveryPath`] (heartbeats) go on
//!   every path, so each path's health is known all the time.
//! - Everything else goes on one path: the lowest-numbered one heard from
//!   within `dead_after` (the primary while it lives, and again once it heals).
//!   When that choice changes, [`Link::tick`] says so, and the layer above
//!   retransmits what was in flight on the old path at once rather than
//!   after its retransmission timeout.
//! - Receiving takes from every path in turn, so a flood on one does not
//!   starve the other.
//!
//! The peer receives each heartbeat once per path; the copies are for the
//! layer above to recognise (the checkpoint engine counts them as
//! duplicates, not as replays).

use core::time::Duration;

use heapless::Vec;
use msm_time::Instant;

use crate::link::{ErrorKind, ErrorType, Link};

/// Where a frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameClass {
    /// On every path (heartbeats: they prove each path alive).
    EveryPath,
    /// On the data path only.
    DataPath,
}

/// A path's health, as `show switch` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    /// Heard from within `dead_after`.
    Up,
    /// Heard from once, silent since for longer than `dead_after`.
    Down,
    /// Never heard from.
    Unknown,
}

/// One path's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathStats {
    pub rx: u64,
    pub tx: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Frames the layer above refused (see [`Link::refused`]).
    pub refused: u64,
    /// Sends the path's driver failed (other than "would block").
    pub tx_errors: u64,
}

/// Which of `N` paths data takes, from when each was last heard: the
/// policy of [`Redundant`], apart from any link so the simulator runs the
/// same decisions.
#[derive(Debug, Clone)]
pub struct PathHealth<const N: usize> {
    last_heard: [Option<Instant>; N],
    paths: usize,
    dead_after: Duration,
    now: Instant,
    /// The path data goes on.
    data: usize,
    /// Times the data path moved.
    moves: u64,
}

impl<const N: usize> PathHealth<N> {
    /// `paths` (at most `N`) in order of preference; a path silent for
    /// `dead_after` is down.
    pub fn new(paths: usize, dead_after: Duration) -> Self {
        PathHealth {
            last_heard: [None; N],
            paths: paths.min(N),
            dead_after,
            now: Instant::ZERO,
            data: 0,
            moves: 0,
        }
    }

    /// A frame came on path `i`.
    pub fn heard(&mut self, i: usize, now: Instant) {
        if let Some(t) = self.last_heard.get_mut(i) {
            *t = Some(now);
        }
    }

    /// Judge the paths at `now`: true when data moved to another path.
    pub fn tick(&mut self, now: Instant) -> bool {
        self.now = self.now.max(now);
        let best = (0..self.paths).find(|&i| self.state(i) == PathState::Up).unwrap_or(self.data);
        if best == self.data {
            return false;
        }
        self.data = best;
        self.moves += 1;
        true
    }

    /// Path `i`'s health at the last [`tick`](Self::tick).
    pub fn state(&self, i: usize) -> PathState {
        match self.last_heard.get(i).copied().flatten() {
            None => PathState::Unknown,
            Some(t) if self.now.saturating_since(t) <= self.dead_after => PathState::Up,
            Some(_) => PathState::Down,
        }
    }

    /// The path data goes on.
    pub fn data_path(&self) -> usize {
        self.data
    }

    /// Times data moved from one path to another.
    pub fn moves(&self) -> u64 {
        self.moves
    }

    /// Path `i` was last heard at.
    pub fn last_heard(&self, i: usize) -> Option<Instant> {
        self.last_heard.get(i).copied().flatten()
    }
}

/// `N` paths to one peer, as one [`Link`].
#[derive(Debug)]
pub struct Redundant<L, const N: usize> {
    paths: Vec<(L, PathStats), N>,
    classify: fn(&[u8]) -> FrameClass,
    health: PathHealth<N>,
    /// The path the last received frame came on.
    last_rx: usize,
    /// Where the next receive starts looking.
    next_rx: usize,
}

impl<L: Link, const N: usize> Redundant<L, N> {
    /// The paths in order of preference (the first is the primary).
    /// `dead_after`: a path silent this long is down (two heartbeat intervals
    /// or less: the layer above retransmits on the next path when it moves).
    /// `None` without a path or with more than `N`.
    pub fn new(
        links: impl IntoIterator<Item = L>,
        classify: fn(&[u8]) -> FrameClass,
        dead_after: Duration,
    ) -> Option<Self> {
        let mut paths = Vec::new();
        for l in links {
            paths.push((l, PathStats::default())).ok()?;
        }
        if paths.is_empty() {
            return None;
        }
        let health = PathHealth::new(paths.len(), dead_after);
        Some(Redundant { paths, classify, health, last_rx: 0, next_rx: 0 })
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Always false: a `Redundant` has at least one path.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The links, in order (for a poll loop's descriptors).
    pub fn links(&self) -> impl Iterator<Item = &L> {
        self.paths.iter().map(|(l, _)| l)
    }

    /// Path `i`'s health at the last [`tick`](Link::tick).
    pub fn state(&self, i: usize) -> PathState {
        self.health.state(i)
    }

    pub fn stats(&self, i: usize) -> Option<PathStats> {
        self.paths.get(i).map(|p| p.1)
    }

    /// When path `i` was last heard from.
    pub fn last_heard(&self, i: usize) -> Option<Instant> {
        self.health.last_heard(i)
    }

    /// The path data goes on.
    pub fn data_path(&self) -> usize {
        self.health.data_path()
    }

    /// Times data moved from one path to another.
    pub fn moves(&self) -> u64 {
        self.health.moves()
    }
}

impl<L: Link, const N: usize> ErrorType for Redundant<L, N> {
    type Error = L::Error;
}

impl<L: Link, const N: usize> Link for Redundant<L, N> {
    fn max_frame(&self) -> usize {
        self.paths.iter().map(|p| p.0.max_frame()).min().unwrap_or(0)
    }

    fn send(&mut self, frame: &[u8]) -> Result<(), Self::Error> {
        if (self.classify)(frame) == FrameClass::DataPath || self.paths.len() == 1 {
            let (l, s) = &mut self.paths[self.health.data_path()];
            l.send(frame)?;
            s.tx += 1;
            s.tx_bytes += frame.len() as u64;
            return Ok(());
        }
        // Best effort on each path: a path that cannot take it now misses
        // this heartbeat, as a path that lost it would; only when none took
        // it is the frame offered again.
        let mut taken = false;
        let mut last_err = None;
        for (l, s) in self.paths.iter_mut() {
            match l.send(frame) {
                Ok(()) => {
                    s.tx += 1;
                    s.tx_bytes += frame.len() as u64;
                    taken = true;
                }
                Err(e) => {
                    use crate::link::Error as _;
                    if e.kind() != ErrorKind::WouldBlock {
                        s.tx_errors += 1;
                    }
                    last_err = Some(e);
                }
            }
        }
        match (taken, last_err) {
            (false, Some(e)) => Err(e),
            _ => Ok(()),
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Self::Error> {
        let n = self.paths.len();
        for k in 0..n {
            let i = (self.next_rx + k) % n;
            let (l, s) = &mut self.paths[i];
            match l.recv(buf) {
                Ok(Some(len)) => {
                    s.rx += 1;
                    s.rx_bytes += len as u64;
                    self.health.heard(i, self.health.now);
                    self.last_rx = i;
                    self.next_rx = (i + 1) % n;
                    return Ok(Some(len));
                }
                Ok(None) => {}
                Err(e) => {
                    self.last_rx = i;
                    self.next_rx = (i + 1) % n;
                    return Err(e);
                }
            }
        }
        Ok(None)
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        let mut r = Ok(());
        for (l, _) in self.paths.iter_mut() {
            if let Err(e) = l.flush() {
                r = Err(e);
            }
        }
        r
    }

    fn tx_pending(&self) -> bool {
        self.paths.iter().any(|p| p.0.tx_pending())
    }

    fn tick(&mut self, now: Instant) -> bool {
        for (l, _) in self.paths.iter_mut() {
            l.tick(now);
        }
        let moved = self.health.tick(now);
        if moved {
            info!("backplane: data moves to path {}", self.health.data_path());
        }
        moved
    }

    fn refused(&mut self) {
        if let Some(p) = self.paths.get_mut(self.last_rx) {
            p.1.refused += 1;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::link::Error;

    /// A path that records what it sent and hands out what it was given.
    #[derive(Debug, Default)]
    struct Path {
        sent: std::vec::Vec<std::vec::Vec<u8>>,
        inbox: std::collections::VecDeque<std::vec::Vec<u8>>,
        full: bool,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Full;
    impl Error for Full {
        fn kind(&self) -> ErrorKind {
            ErrorKind::WouldBlock
        }
    }
    impl ErrorType for Path {
        type Error = Full;
    }
    impl Link for Path {
        fn max_frame(&self) -> usize {
            64
        }
        fn send(&mut self, frame: &[u8]) -> Result<(), Full> {
            if self.full {
                return Err(Full);
            }
            self.sent.push(frame.to_vec());
            Ok(())
        }
        fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Full> {
            Ok(self.inbox.pop_front().map(|f| {
                buf[..f.len()].copy_from_slice(&f);
                f.len()
            }))
        }
    }

    extern crate std;

    /// Heartbeats start with `H`.
    fn classify(f: &[u8]) -> FrameClass {
        if f.first() == Some(&b'H') { FrameClass::EveryPath } else { FrameClass::DataPath }
    }

    const DEAD: Duration = Duration::from_millis(20);

    fn two() -> Redundant<Path, 2> {
        Redundant::new([Path::default(), Path::default()], classify, DEAD).unwrap()
    }

    fn hear(r: &mut Redundant<Path, 2>, path: usize, at_ms: u64) -> bool {
        let moved = r.tick(Instant::from_millis(at_ms));
        r.paths[path].0.inbox.push_back(b"H".to_vec());
        let mut buf = [0u8; 64];
        assert_eq!(r.recv(&mut buf).unwrap(), Some(1));
        moved
    }

    #[test]
    fn heartbeats_go_on_every_path_and_data_on_one() {
        let mut r = two();
        r.send(b"Hb").unwrap();
        r.send(b"data").unwrap();
        assert_eq!(r.paths[0].0.sent, [b"Hb".to_vec(), b"data".to_vec()]);
        assert_eq!(r.paths[1].0.sent, [b"Hb".to_vec()]);
    }

    #[test]
    fn data_moves_when_its_path_falls_silent_and_back_when_it_heals() {
        let mut r = two();
        hear(&mut r, 0, 0);
        hear(&mut r, 1, 0);
        assert_eq!((r.state(0), r.state(1)), (PathState::Up, PathState::Up));
        // Path 0 falls silent; path 1 goes on.
        for t in (10..=40).step_by(10) {
            hear(&mut r, 1, t);
        }
        assert!(r.tick(Instant::from_millis(40)) || r.data_path() == 1, "moved by now");
        assert_eq!((r.state(0), r.data_path()), (PathState::Down, 1));
        r.send(b"data").unwrap();
        assert_eq!(r.paths[1].0.sent.last().unwrap(), b"data");
        // Path 0 heals: data goes back to the primary, and the move is reported.
        hear(&mut r, 0, 50);
        assert!(r.tick(Instant::from_millis(50)));
        assert_eq!(r.data_path(), 0);
        assert_eq!(r.moves(), 2);
    }

    #[test]
    fn with_no_path_heard_data_stays_where_it_was() {
        let mut r = two();
        assert!(!r.tick(Instant::from_millis(100)));
        assert_eq!((r.state(0), r.data_path()), (PathState::Unknown, 0));
    }

    #[test]
    fn a_heartbeat_one_path_cannot_take_goes_on_the_other_and_is_not_offered_again() {
        let mut r = two();
        r.paths[0].0.full = true;
        r.send(b"Hb").unwrap();
        assert_eq!(r.paths[1].0.sent.len(), 1);
        r.paths[1].0.full = true;
        assert_eq!(r.send(b"Hb").unwrap_err().kind(), ErrorKind::WouldBlock);
    }

    #[test]
    fn receiving_takes_from_every_path_in_turn_and_refusals_count_on_their_path() {
        let mut r = two();
        for _ in 0..3 {
            r.paths[0].0.inbox.push_back(b"a".to_vec());
            r.paths[1].0.inbox.push_back(b"b".to_vec());
        }
        let mut buf = [0u8; 8];
        let mut order = std::vec::Vec::new();
        while let Some(n) = r.recv(&mut buf).unwrap() {
            order.push(buf[..n][0]);
            if buf[0] == b'b' {
                r.refused();
            }
        }
        assert_eq!(order, b"ababab");
        assert_eq!((r.stats(0).unwrap().refused, r.stats(1).unwrap().refused), (0, 3));
    }

    #[test]
    fn no_path_or_too_many_is_refused() {
        assert!(Redundant::<Path, 2>::new([], classify, DEAD).is_none());
        assert!(Redundant::<Path, 1>::new([Path::default(), Path::default()], classify, DEAD).is_none());
    }
}
