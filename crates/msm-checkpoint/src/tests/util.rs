//! A pair of engines in one test, on a virtual clock: a host of tables
//! (records `key=value`, `key=` deletes), a wire that a test can filter,
//! and steps of one millisecond. The sender's and the receiver's tests run
//! through it, as quinn's and smoltcp's run theirs.

extern crate std;

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::vec;
use std::vec::Vec;

use msm_time::Instant;

use crate::wire::{self, Body};
use crate::{
    AppId, AppRegistry, Config, Event, Host, HostError, ItemKind, Node, Role, Slot, Stream, SyncState,
    config_chunks, read_config_chunk,
};

/// Small on purpose: 2 applications, 8 frames in flight, 4 KiB of backlog.
pub type Engine = Node<2, 8, 4096>;

/// One module's tables; `refuse` makes its next apply fail (a full
/// table), `refusing` every apply of an application record while set.
#[derive(Debug, Default)]
pub struct Tables {
    pub active_config: Vec<u8>,
    pub apps: Vec<BTreeMap<Vec<u8>, Vec<u8>>>,
    pub refuse: bool,
    pub refusing: bool,
    views: HashMap<Stream, Vec<Vec<u8>>>,
    staged: HashMap<Stream, Vec<u8>>,
    refreshed: HashMap<Stream, BTreeSet<Vec<u8>>>,
}

impl Tables {
    fn table(&mut self, stream: Stream) -> Result<&mut BTreeMap<Vec<u8>, Vec<u8>>, HostError> {
        match stream {
            Stream::App(id) => self.apps.get_mut(id.index()).ok_or(HostError::BadRecord),
            _ => Err(HostError::BadRecord),
        }
    }
}

impl Host for Tables {
    fn bulk_start(&mut self, stream: Stream) -> u64 {
        let view: Vec<Vec<u8>> = match stream {
            Stream::SavedConfig => vec![Vec::new()],
            Stream::ActiveConfig => vec![self.active_config.clone()],
            Stream::App(id) => self.apps[id.index()]
                .iter()
                .map(|(k, v)| [k.as_slice(), b"=", v.as_slice()].concat())
                .collect(),
        };
        let total =
            if matches!(stream, Stream::App(_)) { view.len() as u64 } else { config_chunks(view[0].len()) };
        self.views.insert(stream, view);
        total
    }

    fn bulk_read(
        &mut self,
        stream: Stream,
        cursor: &mut u64,
        buf: &mut [u8],
    ) -> Result<Option<usize>, HostError> {
        let view = self.views.get(&stream).ok_or(HostError::Storage)?;
        if !matches!(stream, Stream::App(_)) {
            return read_config_chunk(&view[0], cursor, buf);
        }
        let Some(record) = view.get(*cursor as usize) else { return Ok(None) };
        buf.get_mut(..record.len()).ok_or(HostError::RecordTooLarge)?.copy_from_slice(record);
        *cursor += 1;
        Ok(Some(record.len()))
    }

    fn bulk_begin(&mut self, stream: Stream, _total: u64) -> Result<(), HostError> {
        match stream {
            Stream::App(_) => drop(self.refreshed.insert(stream, BTreeSet::new())),
            _ => drop(self.staged.insert(stream, Vec::new())),
        }
        Ok(())
    }

    fn apply(&mut self, stream: Stream, kind: ItemKind, item: &[u8]) -> Result<(), HostError> {
        if core::mem::take(&mut self.refuse) || (self.refusing && matches!(stream, Stream::App(_))) {
            return Err(HostError::Full);
        }
        match (stream, kind) {
            (Stream::App(_), _) => {
                let eq = item.iter().position(|&b| b == b'=').ok_or(HostError::BadRecord)?;
                let (key, value) = (item[..eq].to_vec(), item[eq + 1..].to_vec());
                if let Some(keys) = self.refreshed.get_mut(&stream) {
                    keys.insert(key.clone());
                }
                let table = self.table(stream)?;
                if value.is_empty() {
                    table.remove(&key);
                } else {
                    table.insert(key, value);
                }
            }
            (_, ItemKind::Bulk) => {
                self.staged.get_mut(&stream).ok_or(HostError::BadRecord)?.extend_from_slice(item)
            }
            (_, ItemKind::Dynamic) => {
                let config = self.staged.get_mut(&stream).unwrap_or(&mut self.active_config);
                config.extend_from_slice(item);
            }
        }
        Ok(())
    }

    fn bulk_end(&mut self, stream: Stream) -> Result<(), HostError> {
        match stream {
            Stream::App(_) => {
                let keys = self.refreshed.remove(&stream).unwrap_or_default();
                self.table(stream)?.retain(|k, _| keys.contains(k));
            }
            Stream::ActiveConfig => self.active_config = self.staged.remove(&stream).unwrap_or_default(),
            Stream::SavedConfig => drop(self.staged.remove(&stream)),
        }
        Ok(())
    }

    fn bulk_abort(&mut self, stream: Stream) {
        self.staged.remove(&stream);
        self.refreshed.remove(&stream);
    }
}

/// What the wire does with a frame from `from` with this body: `true` drops it.
pub type Filter = fn(from: usize, body: &Body) -> bool;

/// Two modules, A (index 0) and B (1), on one wire.
pub struct Pair {
    pub node: [Engine; 2],
    pub host: [Tables; 2],
    pub events: [Vec<Event>; 2],
    pub now: Instant,
    /// Frames dropped while it says so.
    pub filter: Option<Filter>,
    pub dropped: u64,
    /// Every frame is delivered twice while set (a path that duplicates).
    pub duplicate: bool,
    wire: Vec<(usize, Vec<u8>)>,
}

pub const A: usize = 0;
pub const B: usize = 1;
pub const VLAN: AppId = AppId::new(0);

fn engine(slot: Slot, now: Instant) -> Engine {
    let mut apps = AppRegistry::new();
    let _ = apps.register("vlan", 1, &[]);
    let _ = apps.register("fdb", 1, &["vlan"]);
    let cfg = Config { heartbeat_interval: Duration::from_millis(10), ..Config::new(slot) };
    match Engine::new(cfg, apps, now) {
        Ok(e) => e,
        Err(e) => panic!("test settings refused: {e:?}"),
    }
}

impl Pair {
    /// A master, B its backup, in sync, each application holding `rows` rows on A.
    pub fn synced(rows: usize) -> Pair {
        let mut host = [Tables { apps: vec![BTreeMap::new(); 2], ..Tables::default() }, Tables::default()];
        host[B].apps = vec![BTreeMap::new(); 2];
        host[A].active_config = b"create vlan corp tag 100\n".to_vec();
        for r in 0..rows {
            host[A].apps[0].insert(std::format!("k{r}").into_bytes(), b"v".to_vec());
        }
        let mut p = Pair {
            node: [engine(Slot::A, Instant::ZERO), engine(Slot::B, Instant::ZERO)],
            host,
            events: [Vec::new(), Vec::new()],
            now: Instant::ZERO,
            filter: None,
            dropped: 0,
            duplicate: false,
            wire: Vec::new(),
        };
        // B stays silent until A is master: A elects itself alone.
        p.filter = Some(|from, _| from == B);
        p.run_until("A master", 2_000, |p| p.node[A].role() == Role::Master);
        p.filter = None;
        p.run_until("in sync", 5_000, |p| p.node[A].sync_state() == SyncState::InSync);
        p
    }

    /// One millisecond: deliver, timers, transmit (through the filter), events.
    pub fn step(&mut self) {
        for (to, frame) in core::mem::take(&mut self.wire) {
            let _ = self.node[to].handle_frame(self.now, &frame, &mut self.host[to]);
        }
        let mut buf = [0u8; 1024];
        for i in [A, B] {
            let (node, host) = (&mut self.node[i], &mut self.host[i]);
            if node.poll_timeout().is_some_and(|t| t <= self.now) {
                node.handle_timeout(self.now, host);
            }
            while let Some(n) = node.poll_transmit(self.now, host, &mut buf) {
                let drop = match (self.filter, wire::decode(&buf[..n])) {
                    (Some(f), Ok(frame)) => f(i, &frame.body),
                    _ => false,
                };
                if drop {
                    self.dropped += 1;
                } else {
                    let copies = if self.duplicate { 2 } else { 1 };
                    for _ in 0..copies {
                        self.wire.push((1 - i, buf[..n].to_vec()));
                    }
                }
            }
            while let Some(e) = node.poll_event() {
                self.events[i].push(e);
            }
        }
        self.now = self.now + Duration::from_millis(1);
    }

    pub fn run(&mut self, ms: u64) {
        for _ in 0..ms {
            self.step();
        }
    }

    /// Step until `done`; fails naming `what` after `limit_ms`.
    pub fn run_until(&mut self, what: &str, limit_ms: u64, done: impl Fn(&Pair) -> bool) {
        let start = self.now;
        while !done(self) {
            assert!(
                self.now.saturating_since(start) < Duration::from_millis(limit_ms),
                "{what}: not within {limit_ms} ms"
            );
            self.step();
        }
    }

    /// A changes `key` of vlan to `value` (its table, then the engine): the change id.
    pub fn change(&mut self, key: &str, value: &str) -> u64 {
        self.host[A].apps[0].insert(key.as_bytes().to_vec(), value.as_bytes().to_vec());
        let record = [key.as_bytes(), b"=", value.as_bytes()].concat();
        match self.node[A].record_change(VLAN, &record) {
            Ok(id) => id,
            Err(e) => panic!("change refused: {e:?}"),
        }
    }
}
