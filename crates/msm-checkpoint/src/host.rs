//! The board's side of checkpointing: where state and configuration live.
//!
//! The engine holds no application state. It pulls bulk records from the
//! master's [`Host`] and pushes received records into the backup's. On an MCU the
//! host is a few heapless tables; on Linux, maps with millions of entries.
//!
//! Records must be *idempotent upserts or deletes of one key* (the full state
//! of that key, not a delta): a bulk read after a change and the change itself
//! may both reach the backup, in either order relative to other keys, and the
//! result must be the same.

use core::fmt;

/// Index of a registered application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AppId(pub(crate) u8);

impl AppId {
    /// The application registered `index`-th (as returned by `AppRegistry::register`).
    pub const fn new(index: u8) -> AppId {
        AppId(index)
    }
    /// Its registration index.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// What a stream carries. Configuration travels first, as two streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Stream {
    /// The master's saved configuration, to be written to the backup's flash.
    /// Items are consecutive chunks; `bulk_end` on the backup commits them.
    SavedConfig,
    /// The master's active configuration: the bulk is a snapshot in chunks,
    /// later items are single configuration changes, in order.
    ActiveConfig,
    /// An application's run-time state.
    App(AppId),
}

/// Whether an item arrives as part of a bulk transfer or as a later change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ItemKind {
    /// Part of a bulk transfer.
    Bulk,
    /// A change after the bulk (a dynamic checkpoint).
    Dynamic,
}

/// A host refused or failed an operation. The engine counts it against the
/// stream, does not acknowledge the item, and asks the master for a new bulk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum HostError {
    /// The record bytes do not decode as this application's state.
    BadRecord,
    /// No room left for the state (heapless table full, flash full).
    Full,
    /// Flash or other storage failed.
    Storage,
    /// The output buffer is too small for the next record.
    RecordTooLarge,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostError::BadRecord => "record does not decode",
            HostError::Full => "no room for state",
            HostError::Storage => "storage failure",
            HostError::RecordTooLarge => "record larger than a frame",
        })
    }
}

/// Implemented by every board (and the simulator).
pub trait Host {
    // ---- master side -------------------------------------------------------
    /// A bulk transfer of `stream` starts: take a stable view if the stream
    /// needs one (the active config must not shift under the byte cursor) and
    /// say how many items it will have (for progress display only).
    fn bulk_start(&mut self, stream: Stream) -> u64;

    /// Write the next bulk item at `cursor` into `buf`, advance `cursor`, and
    /// return its length; `Ok(None)` when the stream is exhausted. The cursor
    /// starts at 0 and is the host's to interpret (byte offset, next key).
    fn bulk_read(
        &mut self,
        stream: Stream,
        cursor: &mut u64,
        buf: &mut [u8],
    ) -> Result<Option<usize>, HostError>;

    // ---- backup side -------------------------------------------------------
    /// A new bulk of `stream` begins. Keep the current state until
    /// `bulk_end`: records overwrite it, and `bulk_end` removes keys the bulk
    /// did not mention. (So a takeover in the middle of a re-bulk still has
    /// everything that was checkpointed before.)
    fn bulk_begin(&mut self, stream: Stream, total: u64) -> Result<(), HostError>;

    /// Apply one item, in order.
    fn apply(&mut self, stream: Stream, kind: ItemKind, item: &[u8]) -> Result<(), HostError>;

    /// The bulk completed and its digest matched: commit (saved config: write
    /// it to flash atomically) and drop keys the bulk did not refresh.
    fn bulk_end(&mut self, stream: Stream) -> Result<(), HostError>;

    /// The bulk in progress will not complete (digest mismatch, new master):
    /// discard staged data; the state from before `bulk_begin` stays.
    fn bulk_abort(&mut self, stream: Stream);

    // ---- standby side ------------------------------------------------------
    /// This node holds no copy of application `stream`'s state any more (the
    /// master made another module its backup; a standby serves no
    /// application state): empty it. By default an empty bulk, which by
    /// the contract above leaves no key.
    fn forget(&mut self, stream: Stream) -> Result<(), HostError> {
        self.bulk_begin(stream, 0)?;
        self.bulk_end(stream)
    }
}

/// Bytes of configuration per bulk item. Every board cuts its saved and
/// active configuration the same way, so progress totals agree between peers.
pub const CONFIG_CHUNK: usize = 256;

/// Bulk items a configuration of `len` bytes takes (for [`Host::bulk_start`]).
pub const fn config_chunks(len: usize) -> u64 {
    len.div_ceil(CONFIG_CHUNK) as u64
}

/// [`Host::bulk_read`] for a configuration held as bytes: the chunk at
/// `cursor` (a byte offset) into `buf`, at most [`CONFIG_CHUNK`] bytes.
/// `Ok(None)` at the end; `RecordTooLarge` if `buf` is empty.
pub fn read_config_chunk(
    config: &[u8],
    cursor: &mut u64,
    buf: &mut [u8],
) -> Result<Option<usize>, HostError> {
    let at = usize::try_from(*cursor).unwrap_or(usize::MAX).min(config.len());
    let rest = &config[at..];
    if rest.is_empty() {
        return Ok(None);
    }
    let n = rest.len().min(CONFIG_CHUNK).min(buf.len());
    if n == 0 {
        return Err(HostError::RecordTooLarge);
    }
    buf[..n].copy_from_slice(&rest[..n]);
    *cursor += n as u64;
    Ok(Some(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_chunks_cover_the_config_once() {
        let config: [u8; 600] = core::array::from_fn(|i| i as u8);
        let mut out = [0u8; 600];
        let (mut cursor, mut filled, mut items) = (0u64, 0usize, 0u64);
        let mut buf = [0u8; 300];
        while let Some(n) = read_config_chunk(&config, &mut cursor, &mut buf).unwrap() {
            out[filled..filled + n].copy_from_slice(&buf[..n]);
            filled += n;
            items += 1;
        }
        assert_eq!((filled, items), (600, config_chunks(600)));
        assert_eq!(out, config);
        assert_eq!(read_config_chunk(&config, &mut 0, &mut []), Err(HostError::RecordTooLarge));
    }
}
