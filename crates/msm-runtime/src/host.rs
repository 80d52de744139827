//! The board's side of checkpointing ([`msm_checkpoint::Host`]): the six
//! applications' tables, the running configuration, and the saved
//! configuration in flash (through [`SavedStore`]).

use msm_checkpoint::{
    CONFIG_CHUNK, ConfigStaging, Host, HostError, ItemKind, Stream, config_chunks, read_config_chunk,
};

use crate::apps::{Change, Table};
use crate::config::RunningConfig;

/// Where the saved configuration lives: streamed in and out, never whole in RAM
/// on the backup's receiving side.
pub trait SavedStore {
    /// Items of the saved-configuration stream (for progress only).
    fn saved_items(&mut self) -> u64;
    /// Read the saved-config stream (`msm_flash::saved_stream`) at
    /// `offset`: each header whole, then at most `buf.len()` bytes of a
    /// file; 0 at its end.
    fn read_saved(&mut self, offset: usize, buf: &mut [u8]) -> Result<usize, HostError>;
    /// A new saved configuration arrives from the master (the items
    /// `read_saved` produced on the master): replace atomically at `commit`.
    fn begin_save(&mut self) -> Result<(), HostError>;
    fn write_save(&mut self, chunk: &[u8]) -> Result<(), HostError>;
    fn commit_save(&mut self) -> Result<(), HostError>;
    fn abort_save(&mut self);
}

/// What the backup applied to a process application's table, for its
/// process (`app_server` forwards it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forward {
    /// A bulk starts: the table is sent whole from here.
    Begin,
    Change(Change),
    /// The bulk is whole.
    End,
    /// The bulk was abandoned: the table is the old one with what arrived.
    Abort,
}

/// The application state of one MSM.
#[derive(Debug)]
pub struct ChassisHost<S> {
    pub tables: Vec<Table>,
    /// Tables from this index on belong to process applications.
    pub process_from: usize,
    /// What the backup applied to them since the app server last took it.
    pub forwarded: Vec<(usize, Forward)>,
    pub running: RunningConfig,
    pub flash: S,
    /// Master: the texts being bulk-transferred (stable while the bulk runs).
    active_snapshot: Vec<u8>,
    /// Backup: the active configuration being received, and changes that came during it.
    staged_active: ConfigStaging<Vec<u8>>,
    /// Per table: the conversion of the values it receives, while this
    /// node is the backup of a master of the release before whose schema
    /// version of the application differs (set by the node every turn).
    pub upgrades: Vec<Option<crate::apps::Upgrade>>,
}

impl<S: SavedStore> ChassisHost<S> {
    /// `apps`: how many applications run (tables are indexed by `AppId`);
    /// those from `process_from` on are process applications.
    pub fn new(flash: S, running: RunningConfig, apps: usize, process_from: usize) -> Self {
        ChassisHost {
            tables: vec![Table::default(); apps],
            process_from,
            forwarded: Vec::new(),
            running,
            flash,
            active_snapshot: Vec::new(),
            staged_active: ConfigStaging::default(),
            upgrades: vec![None; apps],
        }
    }
}

impl<S: SavedStore> Host for ChassisHost<S> {
    fn bulk_start(&mut self, stream: Stream) -> u64 {
        match stream {
            Stream::SavedConfig => self.flash.saved_items(),
            Stream::ActiveConfig => {
                self.active_snapshot = self.running.to_text().into_bytes();
                config_chunks(self.active_snapshot.len())
            }
            Stream::App(a) => self.tables.get(a.index()).map_or(0, |t| t.len() as u64),
        }
    }

    fn bulk_read(
        &mut self,
        stream: Stream,
        cursor: &mut u64,
        buf: &mut [u8],
    ) -> Result<Option<usize>, HostError> {
        match stream {
            Stream::SavedConfig => {
                // The stream's headers go whole; files in chunks.
                let want = CONFIG_CHUNK.min(buf.len());
                let n = self.flash.read_saved(*cursor as usize, &mut buf[..want])?;
                *cursor += n as u64;
                Ok((n > 0).then_some(n))
            }
            Stream::ActiveConfig => read_config_chunk(&self.active_snapshot, cursor, buf),
            Stream::App(a) => {
                let t = self.tables.get(a.index()).ok_or(HostError::BadRecord)?;
                match t.encode_from(*cursor, buf) {
                    None => Ok(None),
                    Some(Ok((len, next))) => {
                        *cursor = next;
                        Ok(Some(len))
                    }
                    Some(Err(_)) => Err(HostError::RecordTooLarge),
                }
            }
        }
    }

    fn bulk_begin(&mut self, stream: Stream, _total: u64) -> Result<(), HostError> {
        match stream {
            Stream::SavedConfig => self.flash.begin_save(),
            Stream::ActiveConfig => {
                self.staged_active.begin();
                Ok(())
            }
            Stream::App(a) => {
                self.tables.get_mut(a.index()).ok_or(HostError::BadRecord)?.begin_refresh();
                self.forward(a.index(), Forward::Begin);
                Ok(())
            }
        }
    }

    fn apply(&mut self, stream: Stream, kind: ItemKind, item: &[u8]) -> Result<(), HostError> {
        match stream {
            Stream::SavedConfig => self.flash.write_save(item),
            Stream::ActiveConfig => {
                match kind {
                    ItemKind::Bulk => self.staged_active.bulk(item),
                    ItemKind::Dynamic if self.staged_active.change(item)? => Ok(()),
                    ItemKind::Dynamic => {
                        let line = std::str::from_utf8(item).map_err(|_| HostError::BadRecord)?;
                        // Refused lines are counted by the engine as the stream's errors.
                        self.running.apply(line).map(drop).map_err(|_| HostError::BadRecord)
                    }
                }
            }
            Stream::App(a) => {
                let c = match (Change::decode(item)?, self.upgrades.get(a.index()).copied().flatten()) {
                    (Change::Set(k, v), Some(upgrade)) => Change::Set(k, upgrade(&v)),
                    (c, _) => c,
                };
                if a.index() >= self.process_from {
                    self.forward(a.index(), Forward::Change(c.clone()));
                }
                self.tables.get_mut(a.index()).ok_or(HostError::BadRecord)?.apply(c);
                Ok(())
            }
        }
    }

    fn bulk_end(&mut self, stream: Stream) -> Result<(), HostError> {
        match stream {
            Stream::SavedConfig => self.flash.commit_save(),
            Stream::ActiveConfig => {
                // The bulk's copy, then the lines that came during it.
                let mut text = Vec::new();
                self.staged_active.finish_into(&mut text)?;
                let text = String::from_utf8(text).map_err(|_| HostError::BadRecord)?;
                self.running = RunningConfig::parse(&text).map_err(|_| HostError::BadRecord)?;
                Ok(())
            }
            Stream::App(a) => {
                self.tables.get_mut(a.index()).ok_or(HostError::BadRecord)?.end_refresh();
                self.forward(a.index(), Forward::End);
                Ok(())
            }
        }
    }

    fn bulk_abort(&mut self, stream: Stream) {
        match stream {
            Stream::SavedConfig => self.flash.abort_save(),
            Stream::ActiveConfig => self.staged_active.abort(),
            Stream::App(a) => {
                if let Some(t) = self.tables.get_mut(a.index()) {
                    t.abort_refresh();
                }
                self.forward(a.index(), Forward::Abort);
            }
        }
    }
}

impl<S> ChassisHost<S> {
    fn forward(&mut self, table: usize, f: Forward) {
        if table >= self.process_from {
            self.forwarded.push((table, f));
        }
    }
}
