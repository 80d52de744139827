//! The streams a node replicates, by local id: 0 the saved configuration,
//! 1 the active configuration, 2.. the registered applications, in
//! registration order. Owns each stream's state (both halves: roles change),
//! its name, schema and dependencies, and what the backup has acknowledged
//! ([`Acked`]), which the backlog consults to know what is still live.

use core::ops::{Deref, DerefMut, Range};

use crate::app::{AppRegistry, AppSpec, MAX_APPS};
use crate::host::{AppId, Stream};
use crate::stream::{Phase, StreamState};

/// Streams per node: stream sets are `u32` bit masks.
pub(crate) const MAX_STREAMS: usize = 32;
/// Local id of the saved-configuration stream.
pub(crate) const SAVED: usize = 0;
/// Local id of the active-configuration stream.
pub(crate) const ACTIVE: usize = 1;
pub(crate) const CONFIG_STREAMS: usize = 2;
const SAVED_NAME: &str = "saved-config";
const ACTIVE_NAME: &str = "active-config";
const CONFIG_SCHEMA: u16 = 1;

const _: () = assert!(MAX_APPS + CONFIG_STREAMS <= MAX_STREAMS);

/// What the backup acknowledged, by stream: a backlog entry stays live
/// while its sequence number is above its stream's acknowledged one.
pub(crate) trait Acked {
    /// The last sequence number of `stream` the backup acknowledged in the current epoch.
    fn acked(&self, stream: usize) -> u64;

    /// The record `seq` of `stream` still waits for its acknowledgement.
    fn live(&self, stream: u8, seq: u64) -> bool {
        seq > self.acked(usize::from(stream))
    }
}

/// An application's stream: what was registered, and its state.
#[derive(Debug, Clone)]
pub(crate) struct AppStream {
    spec: AppSpec,
    state: StreamState,
}

/// Every stream of this node. `S` holds the applications' streams:
/// `[AppStream; N]` in the node that owns them, `[AppStream]` (the
/// [`Streams`] view) everywhere else, so no function carries the count.
#[derive(Debug)]
pub(crate) struct StreamSet<S: ?Sized> {
    config: [StreamState; CONFIG_STREAMS],
    /// Applications registered: the first `registered` of `app`.
    registered: usize,
    app: S,
}

/// The streams as every engine function takes them, whatever their number.
pub(crate) type Streams = StreamSet<[AppStream]>;

/// The streams of a node of `APPS` applications, as it owns them.
pub(crate) type StreamStore<const APPS: usize> = StreamSet<[AppStream; APPS]>;

impl<const APPS: usize> StreamStore<APPS> {
    /// The streams of the applications of `apps` (validated), in registration order.
    pub(crate) fn new(apps: AppRegistry<APPS>) -> Self {
        let registered = apps.len();
        let mut specs = apps.apps.into_iter();
        StreamSet {
            config: core::array::from_fn(|_| StreamState::new()),
            registered,
            app: core::array::from_fn(|_| AppStream {
                spec: specs.next().unwrap_or(AppSpec {
                    name: heapless::String::new(),
                    schema: 0,
                    previous: 0,
                    deps: 0,
                }),
                state: StreamState::new(),
            }),
        }
    }
}

impl<const APPS: usize> Deref for StreamStore<APPS> {
    type Target = Streams;
    fn deref(&self) -> &Streams {
        self
    }
}

impl<const APPS: usize> DerefMut for StreamStore<APPS> {
    fn deref_mut(&mut self) -> &mut Streams {
        self
    }
}

impl Streams {
    /// What was registered as `app`.
    pub(crate) fn spec(&self, app: AppId) -> Option<&AppSpec> {
        self.app[..self.registered].get(app.index()).map(|a| &a.spec)
    }

    fn app_spec(&self, sid: usize) -> Option<&AppSpec> {
        self.spec(AppId(sid.checked_sub(CONFIG_STREAMS)? as u8))
    }

    pub(crate) fn len(&self) -> usize {
        CONFIG_STREAMS + self.registered
    }

    /// Every local stream id, in order.
    pub(crate) fn ids(&self) -> Range<usize> {
        0..self.len()
    }

    pub(crate) fn get(&self, sid: usize) -> &StreamState {
        if sid < CONFIG_STREAMS { &self.config[sid] } else { &self.app[sid - CONFIG_STREAMS].state }
    }

    pub(crate) fn get_mut(&mut self, sid: usize) -> &mut StreamState {
        if sid < CONFIG_STREAMS { &mut self.config[sid] } else { &mut self.app[sid - CONFIG_STREAMS].state }
    }

    /// The stream as the board's [`Host`](crate::Host) knows it.
    pub(crate) const fn stream(sid: usize) -> Stream {
        match sid {
            SAVED => Stream::SavedConfig,
            ACTIVE => Stream::ActiveConfig,
            n => Stream::App(AppId((n - CONFIG_STREAMS) as u8)),
        }
    }

    pub(crate) const fn sid(s: Stream) -> usize {
        match s {
            Stream::SavedConfig => SAVED,
            Stream::ActiveConfig => ACTIVE,
            Stream::App(a) => CONFIG_STREAMS + a.index(),
        }
    }

    /// The local id of the application `app`, if registered.
    pub(crate) fn app_sid(&self, app: AppId) -> Option<usize> {
        (app.index() < self.registered).then(|| Self::sid(Stream::App(app)))
    }

    pub(crate) fn name(&self, sid: usize) -> &str {
        match sid {
            SAVED => SAVED_NAME,
            ACTIVE => ACTIVE_NAME,
            n => self.app_spec(n).map_or("?", |a| a.name.as_str()),
        }
    }

    /// The stream called `name`, as a process is named in `show checkpoint-data`.
    pub(crate) fn find(&self, name: &str) -> Option<usize> {
        self.ids().find(|&i| self.name(i) == name)
    }

    pub(crate) fn schema(&self, sid: usize) -> u16 {
        if sid < CONFIG_STREAMS { CONFIG_SCHEMA } else { self.app_spec(sid).map_or(0, |a| a.schema) }
    }

    /// The schema version a backup declares for `sid`: the release before's
    /// when `older` (its master speaks only an older protocol) and it had another.
    pub(crate) fn declared_schema(&self, sid: usize, older: bool) -> u16 {
        match self.app_spec(sid) {
            Some(a) if older && a.previous != 0 => a.previous,
            _ => self.schema(sid),
        }
    }

    /// Streams `sid` waits for: config before apps, saved before active.
    pub(crate) fn deps(&self, sid: usize) -> u32 {
        match sid {
            SAVED => 0,
            ACTIVE => 1 << SAVED,
            n => (1 << ACTIVE) | (self.app_spec(n).map_or(0, |a| a.deps) << CONFIG_STREAMS),
        }
    }

    /// Streams whose bulk has finished.
    pub(crate) fn synced_mask(&self) -> u32 {
        self.ids().filter(|&i| self.get(i).tx.phase == Phase::Synced).fold(0, |m, i| m | 1 << i)
    }

    #[cfg(test)]
    pub(crate) fn set_acked(&mut self, sid: usize, seq: u64) {
        self.get_mut(sid).tx.acknowledged(seq, None);
    }

    /// A new epoch for `sid`: nothing of it is acknowledged.
    pub(crate) fn restart(&mut self, sid: usize) {
        self.get_mut(sid).tx.restart();
    }

    /// This node becomes master: the changes it hands out from now on are
    /// the ones [`unacknowledged`](Self::unacknowledged) can count.
    /// Becoming master after following `term`: every stream holding records
    /// of that term goes on numbering changes from the last one it holds
    /// (`Rx::change`), so an id names one change chassis-wide across
    /// takeovers through the backup (an elected standby or a fresh module
    /// holds no application state and counts from its own).
    pub(crate) fn continue_ids(&mut self, term: u64) {
        for sid in self.ids() {
            let st = self.get_mut(sid);
            if term != 0 && st.rx.term == term {
                let held = st.rx.change;
                st.tx.continue_ids(held);
            }
        }
    }

    pub(crate) fn begin_mastership(&mut self) {
        for sid in self.ids() {
            self.get_mut(sid).tx.begin_mastership();
        }
    }

    /// Changes of the active configuration and of every application made
    /// in this mastership (what a split brain weighs).
    pub(crate) fn made(&self) -> u64 {
        self.ids().filter(|&sid| sid != SAVED).map(|sid| self.get(sid).tx.made()).sum()
    }

    /// Of those, the changes a backup acknowledged.
    pub(crate) fn acked_made(&self) -> u64 {
        self.ids().filter(|&sid| sid != SAVED).map(|sid| self.get(sid).tx.acked()).sum()
    }

    /// The highest change id any backup acknowledged, summed over the
    /// streams: each term only grows and ids are consecutive, so its growth
    /// since a point counts exactly the changes acknowledged beyond it.
    pub(crate) fn acked_ever(&self) -> u64 {
        self.ids().filter(|&sid| sid != SAVED).map(|sid| self.get(sid).tx.acked_high).sum()
    }

    /// Changes of the active configuration and of every application made
    /// in this mastership that no backup acknowledged: what a master that
    /// steps down for a rival discards. (`save`s are not counted: the
    /// saved configuration is one file, replaced whole by the winner's.)
    pub(crate) fn unacknowledged(&self) -> u64 {
        self.ids().filter(|&sid| sid != SAVED).map(|sid| self.get(sid).tx.unacknowledged()).sum()
    }

    /// Records of `term` held here are of another boot of its master: the
    /// streams hold nothing a master could resume or continue from. (The
    /// host keeps its state; only a bulk replaces it.)
    pub(crate) fn forget_term(&mut self, term: u64) {
        for sid in self.ids() {
            self.get_mut(sid).rx.forget_term(term);
        }
    }

    /// No backup any more: every stream stops sending; change ids continue.
    /// `keep`: this node stays master in that term, and each stream's exact
    /// point is kept for a new backup to continue from (see `Tx::continues`).
    pub(crate) fn stop_all(&mut self, keep: Option<u64>) {
        for sid in self.ids() {
            let tx = &mut self.get_mut(sid).tx;
            match keep {
                Some(term) => tx.stop_keeping_point(term),
                None => tx.stop(),
            }
        }
    }
}

impl Acked for Streams {
    /// No such stream: nothing of it can be live.
    fn acked(&self, stream: usize) -> u64 {
        if stream < self.len() { self.get(stream).tx.acked } else { u64::MAX }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streams() -> StreamStore<4> {
        let mut apps = AppRegistry::new();
        apps.register("vlan", 3, &[]).unwrap();
        apps.register("fdb", 1, &["vlan"]).unwrap();
        apps.validate().unwrap();
        StreamStore::new(apps)
    }

    #[test]
    fn ids_names_and_dependencies() {
        let s = streams();
        assert_eq!(s.len(), 4);
        assert_eq!(s.find("fdb"), Some(3));
        assert_eq!(s.name(SAVED), "saved-config");
        assert_eq!(s.schema(2), 3);
        assert_eq!(Streams::stream(3), Stream::App(AppId(1)));
        assert_eq!(Streams::sid(Stream::App(AppId(1))), 3);
        // fdb waits for the active config and vlan; vlan only for the active config.
        assert_eq!(s.deps(3), (1 << ACTIVE) | (1 << 2));
        assert_eq!(s.deps(2), 1 << ACTIVE);
        assert_eq!(s.app_sid(AppId(2)), None);
    }

    #[test]
    fn acknowledgements_decide_liveness_and_reset_per_epoch() {
        let mut s = streams();
        s.set_acked(2, 5);
        assert!(!s.live(2, 5));
        assert!(s.live(2, 6));
        s.restart(2);
        assert!(s.live(2, 1));
        s.set_acked(3, 9);
        s.stop_all(None);
        assert_eq!(s.acked(3), 0);
        assert!(!s.live(40, 1), "no such stream: nothing of it is live");
    }

    #[test]
    fn unacknowledged_counts_this_mastership_above_the_checkpoint() {
        let mut s = streams();
        // Changes of an earlier mastership are not this one's to discard.
        let make = |s: &mut Streams, sid: usize, n: usize| {
            (0..n).for_each(|_| {
                s.get_mut(sid).tx.next_change();
            })
        };
        make(&mut s, 2, 10);
        make(&mut s, ACTIVE, 4);
        s.begin_mastership();
        assert_eq!(s.unacknowledged(), 0);
        make(&mut s, 2, 5);
        make(&mut s, ACTIVE, 2);
        make(&mut s, SAVED, 3);
        assert_eq!(s.unacknowledged(), 5 + 2, "saves are not counted");
        s.get_mut(2).tx.checkpoint(12);
        assert_eq!(s.unacknowledged(), 3 + 2);
        assert_eq!((s.acked_made(), s.acked_ever()), (2, 12));
        // A session ends: what was checkpointed to it is gone, the mastership's start is not,
        // nor what a backup of it ever acknowledged (split brains weigh that).
        s.stop_all(None);
        assert_eq!(s.unacknowledged(), 5 + 2);
        assert_eq!(s.get(2).tx.since, 10);
        assert_eq!((s.acked_made(), s.acked_ever()), (2, 12));
        s.get_mut(2).tx.checkpoint(14);
        assert_eq!((s.acked_made(), s.acked_ever()), (4, 14), "a later backup's acknowledgements add");
    }
}
