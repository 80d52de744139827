//! The simulated board: application tables, the active configuration in RAM
//! and the saved configuration in "flash" (which survives a crash).

use std::collections::{BTreeMap, BTreeSet};

use msm_checkpoint::{ConfigStaging, Host, HostError, ItemKind, Stream, config_chunks, read_config_chunk};

use crate::record::{Op, Rec, Stamp};

/// A stream named by the simulator's own application index (nodes may
/// register applications in different orders).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimStream {
    Saved,
    Active,
    App(usize),
}

/// Something the host saw, for the checkers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    BulkBegin(SimStream),
    BulkEnd(SimStream),
    Applied {
        app: usize,
        kind: ItemKind,
        rec: Rec,
    },
    /// The host emptied an application (the node became a standby).
    Forgot(SimStream),
    /// Bytes that do not decode as a record reached the host.
    Garbage {
        app: usize,
    },
}

#[derive(Debug, Default)]
pub struct SimHost {
    /// Per application: key -> stamp of its current value.
    pub apps: Vec<BTreeMap<u32, Stamp>>,
    /// Keys refreshed by the bulk in progress, per application.
    refresh: Vec<Option<BTreeSet<u32>>>,
    /// Flash: survives crashes.
    pub saved_config: Vec<u8>,
    /// Flash too: the highest term the node saw (kept when `keep_terms`).
    pub last_term: u64,
    staged_saved: Option<Vec<u8>>,
    pub active_config: Vec<u8>,
    /// Backup: a copy being received, and changes that arrived during it.
    staged_active: ConfigStaging<Vec<u8>>,
    /// Master: the active config as it was when its bulk began.
    snapshot_active: Vec<u8>,
    saved_for_bulk: Vec<u8>,
    /// What happened, drained by the simulator after each step.
    pub seen: Vec<Seen>,
    /// AppId index -> simulator app index.
    pub map: Vec<usize>,
    /// Fault injection: refuse every n-th application record (table full).
    pub refuse_every: Option<u64>,
    applies: u64,
}

impl SimHost {
    pub fn new(apps: usize, saved_config: Vec<u8>) -> Self {
        SimHost {
            apps: vec![BTreeMap::new(); apps],
            refresh: vec![None; apps],
            active_config: saved_config.clone(),
            saved_config,
            ..Default::default()
        }
    }

    /// A reboot: RAM is gone, flash stays; the node boots its saved config.
    pub fn reboot(&mut self, map: Vec<usize>) {
        let saved = std::mem::take(&mut self.saved_config);
        let (refuse, last_term) = (self.refuse_every, self.last_term);
        *self = SimHost::new(self.apps.len(), saved);
        self.map = map;
        self.refuse_every = refuse;
        self.last_term = last_term;
    }

    fn idx(&self, a: msm_checkpoint::AppId) -> Result<usize, HostError> {
        self.map.get(a.index()).copied().ok_or(HostError::BadRecord)
    }

    pub fn sim_stream(&self, s: Stream) -> Result<SimStream, HostError> {
        Ok(match s {
            Stream::SavedConfig => SimStream::Saved,
            Stream::ActiveConfig => SimStream::Active,
            Stream::App(a) => SimStream::App(self.idx(a)?),
        })
    }

    /// Master-side state change of one key.
    pub fn set(&mut self, app: usize, rec: Rec) {
        match rec.op {
            Op::Set => self.apps[app].insert(rec.key, rec.stamp),
            Op::Delete => self.apps[app].remove(&rec.key),
        };
    }
}

impl Host for SimHost {
    fn bulk_start(&mut self, stream: Stream) -> u64 {
        match stream {
            Stream::SavedConfig => {
                self.saved_for_bulk = self.saved_config.clone();
                config_chunks(self.saved_for_bulk.len())
            }
            Stream::ActiveConfig => {
                self.snapshot_active = self.active_config.clone();
                config_chunks(self.snapshot_active.len())
            }
            Stream::App(a) => self.idx(a).ok().and_then(|i| self.apps.get(i)).map_or(0, |m| m.len() as u64),
        }
    }

    fn bulk_read(
        &mut self,
        stream: Stream,
        cursor: &mut u64,
        buf: &mut [u8],
    ) -> Result<Option<usize>, HostError> {
        match stream {
            Stream::SavedConfig => read_config_chunk(&self.saved_for_bulk, cursor, buf),
            Stream::ActiveConfig => read_config_chunk(&self.snapshot_active, cursor, buf),
            Stream::App(a) => {
                let map = self.apps.get(self.idx(a)?).ok_or(HostError::BadRecord)?;
                let Some((&key, &stamp)) =
                    map.range(*cursor as u32..).next().filter(|_| *cursor <= u32::MAX as u64)
                else {
                    return Ok(None);
                };
                let n = Rec { op: Op::Set, key, stamp }.encode(buf).ok_or(HostError::RecordTooLarge)?;
                *cursor = key as u64 + 1;
                Ok(Some(n))
            }
        }
    }

    fn bulk_begin(&mut self, stream: Stream, _total: u64) -> Result<(), HostError> {
        self.seen.push(Seen::BulkBegin(self.sim_stream(stream)?));
        match stream {
            Stream::SavedConfig => self.staged_saved = Some(Vec::new()),
            Stream::ActiveConfig => self.staged_active.begin(),
            Stream::App(a) => {
                let i = self.idx(a)?;
                *self.refresh.get_mut(i).ok_or(HostError::BadRecord)? = Some(BTreeSet::new());
            }
        }
        Ok(())
    }

    fn apply(&mut self, stream: Stream, kind: ItemKind, item: &[u8]) -> Result<(), HostError> {
        match stream {
            Stream::SavedConfig => {
                self.staged_saved.as_mut().ok_or(HostError::BadRecord)?.extend_from_slice(item);
            }
            Stream::ActiveConfig => match kind {
                ItemKind::Bulk => self.staged_active.bulk(item)?,
                ItemKind::Dynamic if self.staged_active.change(item)? => {}
                ItemKind::Dynamic => self.active_config.extend_from_slice(item),
            },
            Stream::App(a) => {
                let app = self.idx(a)?;
                self.applies += 1;
                if self.refuse_every.is_some_and(|n| self.applies.is_multiple_of(n)) {
                    return Err(HostError::Full);
                }
                let Some(rec) = Rec::decode(item) else {
                    self.seen.push(Seen::Garbage { app });
                    return Err(HostError::BadRecord);
                };
                let map = self.apps.get_mut(app).ok_or(HostError::BadRecord)?;
                match rec.op {
                    Op::Set => map.insert(rec.key, rec.stamp),
                    Op::Delete => map.remove(&rec.key),
                };
                if let Some(Some(r)) = self.refresh.get_mut(app) {
                    r.insert(rec.key);
                }
                self.seen.push(Seen::Applied { app, kind, rec });
            }
        }
        Ok(())
    }

    fn bulk_end(&mut self, stream: Stream) -> Result<(), HostError> {
        match stream {
            Stream::SavedConfig => {
                self.saved_config = self.staged_saved.take().ok_or(HostError::BadRecord)?;
            }
            Stream::ActiveConfig => {
                self.staged_active.finish_into(&mut self.active_config)?;
            }
            Stream::App(a) => {
                let app = self.idx(a)?;
                let refreshed =
                    self.refresh.get_mut(app).and_then(Option::take).ok_or(HostError::BadRecord)?;
                self.apps[app].retain(|k, _| refreshed.contains(k));
            }
        }
        self.seen.push(Seen::BulkEnd(self.sim_stream(stream)?));
        Ok(())
    }

    fn bulk_abort(&mut self, stream: Stream) {
        match stream {
            Stream::SavedConfig => self.staged_saved = None,
            Stream::ActiveConfig => self.staged_active.abort(),
            Stream::App(a) => {
                if let Some(r) = self.idx(a).ok().and_then(|i| self.refresh.get_mut(i)) {
                    *r = None;
                }
            }
        }
    }

    fn forget(&mut self, stream: Stream) -> Result<(), HostError> {
        let st = self.sim_stream(stream)?;
        let Stream::App(a) = stream else { return Err(HostError::BadRecord) };
        let i = self.idx(a)?;
        self.apps.get_mut(i).ok_or(HostError::BadRecord)?.clear();
        *self.refresh.get_mut(i).ok_or(HostError::BadRecord)? = None;
        self.seen.push(Seen::Forgot(st));
        Ok(())
    }
}
