//! Two checkpoint engines in one process: MSM-A (master) and MSM-B (backup)
//! exchange frames through a `Vec` queue, on a virtual clock. A boots and
//! becomes master; B boots, receives the configuration and every
//! application's state in a bulk checkpoint; a change on A is checkpointed
//! (acknowledged by B); then A stops and B takes over with that change.
//!
//! ```sh
//! cargo run -p msm-checkpoint --example two_nodes
//! ```
//!
//! The example asserts each step, so a regression makes it exit non-zero.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use msm_checkpoint::{
    AppId, AppRegistry, Config, ConfigStaging, Event, Host, HostError, ItemKind, Node, Role, Slot, Stream,
    SyncState, config_chunks, read_config_chunk,
};
use msm_time::Instant;

/// Node capacities: 4 applications, 16 frames in flight, 16 KiB of backlog.
type Engine = Node<4, 16, { 16 * 1024 }>;

/// The active configuration's text (fixed capacity, as a board would hold it).
type ConfigText = heapless::Vec<u8, 4096>;

/// One module's state: the configuration and each application's table. An
/// application record is `key=value`, the whole state of one key (records must
/// be idempotent upserts); `key=` deletes the key.
#[derive(Debug, Default)]
struct Tables {
    saved_config: Vec<u8>,
    active_config: ConfigText,
    apps: Vec<BTreeMap<Vec<u8>, Vec<u8>>>,
    // Master side: the stable view of each stream in bulk.
    views: HashMap<Stream, Vec<Vec<u8>>>,
    // Backup side: the staged saved configuration, the active one (with the
    // lines that come during its bulk), and the keys a bulk refreshed.
    staged: HashMap<Stream, Vec<u8>>,
    staged_active: ConfigStaging<ConfigText, heapless::Vec<u8, 1024>>,
    refreshed: HashMap<Stream, BTreeSet<Vec<u8>>>,
}

impl Tables {
    fn new(apps: usize) -> Self {
        Tables { apps: vec![BTreeMap::new(); apps], ..Tables::default() }
    }

    fn app(&mut self, stream: Stream) -> Result<&mut BTreeMap<Vec<u8>, Vec<u8>>, HostError> {
        match stream {
            Stream::App(id) => self.apps.get_mut(id.index()).ok_or(HostError::BadRecord),
            _ => Err(HostError::BadRecord),
        }
    }

    fn upsert(&mut self, stream: Stream, record: &[u8]) -> Result<Vec<u8>, HostError> {
        let eq = record.iter().position(|&b| b == b'=').ok_or(HostError::BadRecord)?;
        let (key, value) = (record[..eq].to_vec(), record[eq + 1..].to_vec());
        let table = self.app(stream)?;
        if value.is_empty() {
            table.remove(&key);
        } else {
            table.insert(key.clone(), value);
        }
        Ok(key)
    }

    fn get(&self, app: AppId, key: &str) -> Option<&str> {
        self.apps.get(app.index())?.get(key.as_bytes()).and_then(|v| std::str::from_utf8(v).ok())
    }
}

impl Host for Tables {
    fn bulk_start(&mut self, stream: Stream) -> u64 {
        let view: Vec<Vec<u8>> = match stream {
            Stream::SavedConfig => vec![self.saved_config.clone()],
            Stream::ActiveConfig => vec![self.active_config.to_vec()],
            Stream::App(id) => self.apps[id.index()]
                .iter()
                .map(|(k, v)| [k.as_slice(), b"=", v.as_slice()].concat())
                .collect(),
        };
        let total = match stream {
            Stream::App(_) => view.len() as u64,
            _ => config_chunks(view[0].len()),
        };
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
        match stream {
            // Configuration: 256-byte chunks, the cursor is a byte offset.
            Stream::SavedConfig | Stream::ActiveConfig => read_config_chunk(&view[0], cursor, buf),
            // Applications: one record per item, the cursor is an index.
            Stream::App(_) => {
                let Some(record) = view.get(*cursor as usize) else { return Ok(None) };
                let out = buf.get_mut(..record.len()).ok_or(HostError::RecordTooLarge)?;
                out.copy_from_slice(record);
                *cursor += 1;
                Ok(Some(record.len()))
            }
        }
    }

    fn bulk_begin(&mut self, stream: Stream, _total: u64) -> Result<(), HostError> {
        match stream {
            Stream::SavedConfig => drop(self.staged.insert(stream, Vec::new())),
            Stream::ActiveConfig => self.staged_active.begin(),
            Stream::App(_) => {
                self.refreshed.insert(stream, BTreeSet::new());
            }
        }
        Ok(())
    }

    fn apply(&mut self, stream: Stream, kind: ItemKind, item: &[u8]) -> Result<(), HostError> {
        match (stream, kind) {
            (Stream::SavedConfig, _) => {
                self.staged.get_mut(&stream).ok_or(HostError::BadRecord)?.extend_from_slice(item);
            }
            (Stream::ActiveConfig, ItemKind::Bulk) => self.staged_active.bulk(item)?,
            // One configuration line: during a bulk it waits behind the staged copy.
            (Stream::ActiveConfig, ItemKind::Dynamic) if self.staged_active.change(item)? => {}
            (Stream::ActiveConfig, ItemKind::Dynamic) => {
                self.active_config.extend_from_slice(item).map_err(|_| HostError::Full)?;
            }
            (Stream::App(_), _) => {
                let key = self.upsert(stream, item)?;
                if let Some(keys) = self.refreshed.get_mut(&stream) {
                    keys.insert(key);
                }
            }
        }
        Ok(())
    }

    fn bulk_end(&mut self, stream: Stream) -> Result<(), HostError> {
        match stream {
            Stream::SavedConfig => self.saved_config = self.staged.remove(&stream).unwrap_or_default(),
            Stream::ActiveConfig => self.staged_active.finish_into(&mut self.active_config)?,
            Stream::App(_) => {
                // Sweep: keys the bulk did not mention are gone on the master.
                let keys = self.refreshed.remove(&stream).unwrap_or_default();
                self.app(stream)?.retain(|k, _| keys.contains(k));
            }
        }
        Ok(())
    }

    fn bulk_abort(&mut self, stream: Stream) {
        if stream == Stream::ActiveConfig {
            self.staged_active.abort();
        }
        self.staged.remove(&stream);
        self.refreshed.remove(&stream);
    }
}

/// A module: the engine, its tables, and whether it is powered.
struct Msm {
    name: &'static str,
    node: Engine,
    host: Tables,
    up: bool,
    /// `Promoted { in_sync }` once this module took over.
    promoted: Option<bool>,
}

/// The chassis: two modules, the backplane as a queue of (destination, frame), virtual time.
struct Chassis {
    msm: Vec<Msm>,
    wire: Vec<(usize, Vec<u8>)>,
    now: Instant,
}

impl Chassis {
    /// One millisecond: deliver queued frames, run due timers, collect frames and events.
    fn step(&mut self) {
        for (to, frame) in std::mem::take(&mut self.wire) {
            let m = &mut self.msm[to];
            if m.up {
                // A refused frame is counted in the engine's status; nothing to do here.
                let _ = m.node.handle_frame(self.now, &frame, &mut m.host);
            }
        }
        let mut buf = [0u8; 1024];
        for (i, m) in self.msm.iter_mut().enumerate().filter(|(_, m)| m.up) {
            if m.node.poll_timeout().is_some_and(|t| t <= self.now) {
                m.node.handle_timeout(self.now, &mut m.host);
            }
            while let Some(n) = m.node.poll_transmit(self.now, &mut m.host, &mut buf) {
                self.wire.push((1 - i, buf[..n].to_vec()));
            }
            while let Some(event) = m.node.poll_event() {
                match event {
                    Event::RoleChanged { role, .. } => println!("  {}: {:?}", m.name, role),
                    Event::Promoted { in_sync, .. } => {
                        println!("  {}: promoted, in sync: {in_sync}", m.name);
                        m.promoted = Some(in_sync);
                    }
                    Event::InSync(true) => println!("  {}: the backup is in sync", m.name),
                    _ => {}
                }
            }
        }
        self.now = self.now + Duration::from_millis(1);
    }

    /// Step until `done`, at most `limit_ms` of virtual time.
    fn run_until(&mut self, what: &str, limit_ms: u64, done: impl Fn(&Chassis) -> bool) {
        let start = self.now;
        while !done(self) {
            assert!(
                self.now.saturating_since(start) < Duration::from_millis(limit_ms),
                "{what}: not within {limit_ms} ms"
            );
            self.step();
        }
    }
}

fn registry() -> AppRegistry<4> {
    let mut apps = AppRegistry::new();
    apps.register("vlan", 1, &[]).expect("registry has room");
    apps.register("fdb", 1, &["vlan"]).expect("registry has room");
    apps
}

fn module(name: &'static str, slot: Slot, priority: u8, now: Instant) -> Msm {
    let cfg = Config { priority, heartbeat_interval: Duration::from_millis(10), ..Config::new(slot) };
    let node = Engine::new(cfg, registry(), now).expect("valid settings");
    Msm { name, node, host: Tables::new(2), up: true, promoted: None }
}

fn main() {
    let (vlan, fdb) = (AppId::new(0), AppId::new(1));
    const A: usize = 0;
    const B: usize = 1;

    println!("MSM-A boots alone");
    let mut a = module("MSM-A", Slot::A, 0, Instant::ZERO);
    a.host.saved_config = b"create vlan corp tag 100\n".to_vec();
    a.host
        .active_config
        .extend_from_slice(b"create vlan corp tag 100\nconfigure vlan corp add ports 1-24\n")
        .expect("fits");
    a.host.apps[vlan.index()].insert(b"corp".to_vec(), b"tag 100, ports 1-24".to_vec());
    for port in 1..=200u32 {
        a.host.apps[fdb.index()].insert(
            format!("00:04:96:00:{:02x}:{:02x}", port / 256, port % 256).into_bytes(),
            format!("corp port {}", port % 24 + 1).into_bytes(),
        );
    }
    // MSM-B is in the chassis but powered off: its frames go nowhere yet.
    let mut b = module("MSM-B", Slot::B, 1, Instant::ZERO);
    b.up = false;
    let mut c = Chassis { msm: vec![a, b], wire: Vec::new(), now: Instant::ZERO };
    c.run_until("MSM-A elected", 1_000, |c| c.msm[A].node.role() == Role::Master);

    println!("MSM-B boots: configuration sync, then the bulk checkpoint of vlan and fdb");
    c.msm[B] = module("MSM-B", Slot::B, 1, c.now);
    c.run_until("MSM-B in sync", 5_000, |c| c.msm[A].node.sync_state() == SyncState::InSync);
    let (ma, mb) = (&c.msm[A].host, &c.msm[B].host);
    assert_eq!(mb.saved_config, ma.saved_config, "the saved config reached B's flash");
    assert_eq!(mb.active_config, ma.active_config, "the active config reached B");
    assert_eq!(mb.apps, ma.apps, "every application's state reached B");
    println!(
        "  MSM-B holds {} vlan and {} fdb entries",
        mb.apps[vlan.index()].len(),
        mb.apps[fdb.index()].len()
    );

    println!("Dynamic checkpoint: one configuration line and one MAC move on MSM-A");
    let m = &mut c.msm[A];
    m.host.active_config.extend_from_slice(b"create vlan lab tag 200\n").expect("fits");
    let line = m.node.config_change(b"create vlan lab tag 200\n").expect("master");
    let record = b"00:04:96:00:00:07=corp port 24";
    m.host.upsert(Stream::App(fdb), record).expect("a key=value record");
    let change = m.node.record_change(fdb, record).expect("master");
    c.run_until("change acknowledged", 1_000, |c| {
        c.msm[A].node.checkpointed(fdb) >= change && c.msm[A].node.config_checkpointed() >= line
    });
    println!("  change #{change} of fdb acknowledged by MSM-B at t={} ms", c.now.as_millis());

    println!("MSM-A fails; MSM-B takes over");
    c.msm[A].up = false;
    let failed = c.now;
    c.run_until("MSM-B master", 1_000, |c| c.msm[B].node.role() == Role::Master);
    assert_eq!(c.msm[B].promoted, Some(true), "MSM-B took over as an in-sync backup");
    let mb = &c.msm[B].host;
    println!(
        "  MSM-B is MASTER {} ms later; fdb 00:04:96:00:00:07 -> {}",
        c.now.saturating_since(failed).as_millis(),
        mb.get(fdb, "00:04:96:00:00:07").unwrap_or("(missing)")
    );
    assert_eq!(mb.get(fdb, "00:04:96:00:00:07"), Some("corp port 24"), "the checkpointed change survived");
    assert!(mb.active_config.ends_with(b"create vlan lab tag 200\n"), "the config line survived");
    assert_eq!(mb.apps[fdb.index()].len(), 200);
    println!("every checkpointed change is on the new master");
}
