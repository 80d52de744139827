//! The firmware's [`Host`]: configuration held in RAM (the saved one is also
//! written to the SD card by the main loop), and the two applications'
//! tables. Every backup-side step is logged: the interop test reads these
//! lines to check dependency order.

use heapless::Vec;
use msm_checkpoint::{AppId, ConfigStaging, Host, HostError, ItemKind, Stream, config_chunks, read_config_chunk};
use msm_records::Record;

use crate::apps::{APPS, Table};
use crate::log;

/// Bytes of configuration text held per buffer.
pub const CONFIG: usize = 2048;

/// The engine's [`Host`] on this board: what the firmware checkpoints.
#[derive(Debug)]
pub struct FirmwareHost {
    /// The saved configuration (what the SD card holds).
    pub saved: Vec<u8, CONFIG>,
    saved_staged: Vec<u8, CONFIG>,
    /// A saved-config bulk is in progress (`saved_staged` collects it).
    saved_staging: bool,
    /// Set when a new saved configuration was committed; the main loop
    /// writes it to storage and clears it.
    pub saved_dirty: bool,
    /// The active configuration text.
    pub active: Vec<u8, CONFIG>,
    /// An active-config bulk's copy, and the changes received while it runs.
    active_staging: ConfigStaging<Vec<u8, CONFIG>, Vec<u8, 512>>,
    /// Master side: the stable view of a config stream under bulk.
    pub tables: [Table; APPS.len()],
    /// Records applied, per application (for the status line).
    pub applied: [u32; APPS.len()],
}

pub fn name(stream: Stream) -> &'static str {
    match stream {
        Stream::SavedConfig => "saved-config",
        Stream::ActiveConfig => "active-config",
        Stream::App(id) => APPS.get(id.index()).map_or("?", |a| a.0),
    }
}

fn push_all<const N: usize>(dst: &mut Vec<u8, N>, src: &[u8]) -> Result<(), HostError> {
    dst.extend_from_slice(src).map_err(|_| HostError::Full)
}

impl FirmwareHost {
    /// Empty (const, so it can live in a `static` instead of on the stack).
    pub const fn new() -> FirmwareHost {
        FirmwareHost {
            saved: Vec::new(),
            saved_staged: Vec::new(),
            saved_staging: false,
            saved_dirty: false,
            active: Vec::new(),
            active_staging: ConfigStaging::new(Vec::new(), Vec::new()),
            tables: [Table::new(), Table::new(), Table::new()],
            applied: [0; APPS.len()],
        }
    }

    /// A node that takes over without the master's active configuration
    /// runs its own saved one: the selected file of the saved-configuration
    /// stream it holds (`msm_flash::saved_stream`).
    pub fn run_saved(&mut self) {
        self.active.clear();
        let text = match msm_flash::saved_stream::file_in(&self.saved, None) {
            Ok(t) => t.unwrap_or(&[]),
            Err(e) => {
                log!("saved configuration unreadable: {}", e);
                &[]
            }
        };
        if self.active.extend_from_slice(text).is_err() {
            log!("saved configuration larger than the active buffer: not run");
        }
    }

    fn table(&mut self, id: AppId) -> Result<&mut Table, HostError> {
        self.tables.get_mut(id.index()).ok_or(HostError::BadRecord)
    }

    fn config_bytes(&self, stream: Stream) -> &[u8] {
        match stream {
            Stream::SavedConfig => &self.saved,
            _ => &self.active,
        }
    }
}

impl Host for FirmwareHost {
    fn bulk_start(&mut self, stream: Stream) -> u64 {
        match stream {
            Stream::SavedConfig | Stream::ActiveConfig => config_chunks(self.config_bytes(stream).len()),
            Stream::App(id) => self.tables.get(id.index()).map_or(0, |t| t.len() as u64),
        }
    }

    fn bulk_read(
        &mut self,
        stream: Stream,
        cursor: &mut u64,
        buf: &mut [u8],
    ) -> Result<Option<usize>, HostError> {
        match stream {
            Stream::SavedConfig | Stream::ActiveConfig => {
                read_config_chunk(self.config_bytes(stream), cursor, buf)
            }
            Stream::App(id) => {
                let t = self.tables.get(id.index()).ok_or(HostError::BadRecord)?;
                match t.read_from(*cursor, buf)? {
                    Some((n, next)) => {
                        *cursor = next;
                        Ok(Some(n))
                    }
                    None => Ok(None),
                }
            }
        }
    }

    fn bulk_begin(&mut self, stream: Stream, total: u64) -> Result<(), HostError> {
        log!("bulk-begin {=str} total={=u64}", name(stream), total);
        match stream {
            Stream::SavedConfig => {
                self.saved_staged.clear();
                self.saved_staging = true;
            }
            Stream::ActiveConfig => {
                self.active_staging.begin();
            }
            Stream::App(id) => self.table(id)?.begin_refresh(),
        }
        Ok(())
    }

    fn apply(&mut self, stream: Stream, kind: ItemKind, item: &[u8]) -> Result<(), HostError> {
        let kind_name = match kind {
            ItemKind::Bulk => "bulk",
            ItemKind::Dynamic => "dynamic",
        };
        match stream {
            Stream::SavedConfig => {
                if !self.saved_staging {
                    return Err(HostError::BadRecord);
                }
                push_all(&mut self.saved_staged, item)
            }
            Stream::ActiveConfig => match kind {
                ItemKind::Bulk => self.active_staging.bulk(item),
                ItemKind::Dynamic if self.active_staging.change(item)? => Ok(()),
                ItemKind::Dynamic => {
                    log!("config {=str}", core::str::from_utf8(item).unwrap_or("<not utf-8>").trim_end());
                    push_all(&mut self.active, item)
                }
            },
            Stream::App(id) => {
                let change = crate::apps::decode(item)?;
                let app = name(stream);
                self.table(id)?.apply(change)?;
                if let Some(n) = self.applied.get_mut(id.index()) {
                    *n = n.wrapping_add(1);
                }
                match change {
                    Record::Set(k, v) => log!(
                        "apply {=str} {=str} key={=u64} set {=str}",
                        app,
                        kind_name,
                        k,
                        core::str::from_utf8(v).unwrap_or("<binary>")
                    ),
                    Record::Delete(k) => log!("apply {=str} {=str} key={=u64} delete", app, kind_name, k),
                }
                Ok(())
            }
        }
    }

    fn bulk_end(&mut self, stream: Stream) -> Result<(), HostError> {
        match stream {
            Stream::SavedConfig => {
                if !core::mem::take(&mut self.saved_staging) {
                    return Err(HostError::BadRecord);
                }
                core::mem::swap(&mut self.saved, &mut self.saved_staged);
                self.saved_staged.clear();
                self.saved_dirty = true;
                log!("bulk-end saved-config bytes={=usize}", self.saved.len());
            }
            Stream::ActiveConfig => {
                self.active_staging.finish_into(&mut self.active)?;
                log!("bulk-end active-config bytes={=usize}", self.active.len());
            }
            Stream::App(id) => {
                let t = self.table(id)?;
                let dropped = t.end_refresh();
                let (rows, digest) = (t.len(), t.digest());
                log!(
                    "bulk-end {=str} rows={=usize} dropped={=usize} digest={=u64:016x}",
                    name(stream),
                    rows,
                    dropped,
                    digest
                );
            }
        }
        Ok(())
    }

    fn bulk_abort(&mut self, stream: Stream) {
        log!("bulk-abort {=str}", name(stream));
        match stream {
            Stream::SavedConfig => {
                self.saved_staging = false;
                self.saved_staged.clear();
            }
            Stream::ActiveConfig => {
                self.active_staging.abort();
            }
            Stream::App(id) => {
                if let Ok(t) = self.table(id) {
                    t.abort_refresh();
                }
            }
        }
    }
}
