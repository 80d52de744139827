//! The MSM's flash, on a file-backed NOR image: node settings (a key-value
//! area), `primary.cfg` and `secondary.cfg` (power-fail-safe config stores).
//!
//! ```text
//! 0        64 KiB                                   2 MiB + 32 KiB          4 MiB
//! | settings | primary.cfg (ring of erase blocks)   | secondary.cfg          |
//! ```

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use anyhow::{Context, Result, anyhow};
use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use msm_checkpoint::HostError;
use msm_flash::{ConfigName, ConfigStore, Durable, NodeSettings, Partition, SaveInfo};
use msm_flash_linux::FileFlash;

use crate::host::SavedStore;

pub const IMAGE_SIZE: u32 = 4 * 1024 * 1024;
const SETTINGS: (u32, u32) = (0, 64 * 1024);
const PRIMARY: (u32, u32) = (64 * 1024, 2016 * 1024);
const SECONDARY: (u32, u32) = (2080 * 1024, 2016 * 1024);
pub const SW_VERSION: &str = env!("CARGO_PKG_VERSION");

type Dev = FileFlash<4, 4096>;
type Part = Partition<Shared>;

/// The one image, shared by the three partitions; the image (and its lock)
/// closes when the last partition is dropped.
#[derive(Debug, Clone)]
struct Shared(Rc<RefCell<Dev>>);

impl ErrorType for Shared {
    type Error = <Dev as ErrorType>::Error;
}

impl ReadNorFlash for Shared {
    const READ_SIZE: usize = Dev::READ_SIZE;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.0.borrow_mut().read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.0.borrow().capacity()
    }
}

impl NorFlash for Shared {
    const WRITE_SIZE: usize = Dev::WRITE_SIZE;
    const ERASE_SIZE: usize = Dev::ERASE_SIZE;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.0.borrow_mut().erase(from, to)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.0.borrow_mut().write(offset, bytes)
    }
}

impl Durable for Shared {
    fn sync(&mut self) -> Result<(), Self::Error> {
        self.0.borrow_mut().sync()
    }
}

/// What `show switch` prints about a saved configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedInfo {
    pub len: u32,
    pub saved_at: u64,
    pub version: String,
}

/// A saved configuration arriving from the master, chunk by chunk.
#[derive(Debug)]
enum Incoming {
    /// The stream starts with the config's length, 8 bytes little endian;
    /// `n` of them arrived. A peer may cut its stream anywhere (the firmware
    /// sends the length and the first text in one chunk).
    AwaitLength {
        len: [u8; 8],
        n: usize,
    },
    Writing,
    /// The master has no saved configuration: keep ours.
    Nothing,
}

pub struct BoardFlash {
    primary: ConfigStore<Part>,
    secondary: ConfigStore<Part>,
    settings: NodeSettings<Part>,
    boot_count: u32,
    incoming: Option<Incoming>,
}

impl std::fmt::Debug for BoardFlash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BoardFlash(boot {})", self.boot_count)
    }
}

impl BoardFlash {
    /// Open (creating if missing) and mount the image; a second process on the
    /// same image is refused by the lock, naming the image.
    pub fn open(path: &Path) -> Result<BoardFlash> {
        let dev = Shared(Rc::new(RefCell::new(Dev::open(path, IMAGE_SIZE).map_err(|e| anyhow!("{e}"))?)));
        let part = |name, (start, size): (u32, u32)| {
            Partition::new(dev.clone(), name, start, size).map_err(|e| anyhow!("{name}: {e}"))
        };
        let mut settings = NodeSettings::new(part("settings", SETTINGS)?)
            .map_err(|e| anyhow!("{}: settings area: {e}", path.display()))?;
        let boot_count =
            settings.increment_boot_count().map_err(|e| anyhow!("{}: boot count: {e}", path.display()))?;
        let primary = ConfigStore::mount(part("primary.cfg", PRIMARY)?, ConfigName::Primary)
            .map_err(|e| anyhow!("{}: primary.cfg: {e}", path.display()))?;
        let secondary = ConfigStore::mount(part("secondary.cfg", SECONDARY)?, ConfigName::Secondary)
            .map_err(|e| anyhow!("{}: secondary.cfg: {e}", path.display()))?;
        Ok(BoardFlash { primary, secondary, settings, boot_count, incoming: None })
    }

    fn store(&mut self, w: ConfigName) -> &mut ConfigStore<Part> {
        match w {
            ConfigName::Primary => &mut self.primary,
            ConfigName::Secondary => &mut self.secondary,
        }
    }

    pub fn boot_count(&self) -> u32 {
        self.boot_count
    }

    /// The configuration the next boot loads (primary if the setting is unreadable).
    pub fn selected(&mut self) -> ConfigName {
        self.settings.selected_config().unwrap_or(ConfigName::Primary)
    }

    pub fn select(&mut self, w: ConfigName) -> std::result::Result<(), String> {
        self.settings.set_selected_config(w).map_err(|e| e.to_string())
    }

    pub fn priority(&mut self) -> Option<u8> {
        self.settings.priority().ok().flatten()
    }

    pub fn set_priority(&mut self, p: u8) -> std::result::Result<(), String> {
        self.settings.set_priority(p).map_err(|e| e.to_string())
    }

    pub fn info(&mut self, w: ConfigName) -> Option<SavedInfo> {
        self.store(w).current().map(|i| SavedInfo {
            len: i.len,
            saved_at: i.saved_at,
            version: i.sw_version().to_string(),
        })
    }

    /// The whole saved configuration `w` (configs are text of a few hundred KiB at most).
    pub fn load(&mut self, w: ConfigName) -> Result<Option<String>> {
        let Some(len) = self.store(w).current().map(|i| i.len as usize) else { return Ok(None) };
        let mut out = vec![0u8; len];
        let mut at = 0;
        while at < len {
            let n = self
                .store(w)
                .read(at as u32, &mut out[at..])
                .map_err(|e| anyhow!("{}: {e}", w.file_name()))?;
            if n == 0 {
                break;
            }
            at += n;
        }
        out.truncate(at);
        String::from_utf8(out).map(Some).with_context(|| format!("{} is not text", w.file_name()))
    }

    /// `save`: replace `w` atomically. Returns the bytes saved.
    pub fn save(&mut self, w: ConfigName, text: &str, unix_time: u64) -> std::result::Result<usize, String> {
        let info = SaveInfo { saved_at: unix_time, sw_version: SW_VERSION };
        self.store(w).save(text.as_bytes(), &info).map(|i| i.len as usize).map_err(|e| e.to_string())
    }
}

/// The saved-config checkpoint stream: the master sends an 8-byte length
/// first (a store commits a declared length), then the bytes in chunks; the
/// backup writes them into its selected configuration and commits at the end.
impl SavedStore for BoardFlash {
    fn saved_len(&mut self) -> usize {
        let w = self.selected();
        self.store(w).current().map_or(0, |i| i.len as usize)
    }

    fn read_saved(&mut self, offset: usize, buf: &mut [u8]) -> std::result::Result<usize, HostError> {
        let w = self.selected();
        let len = self.store(w).current().map_or(0, |i| i.len as usize);
        if offset == 0 {
            let out = buf.get_mut(..8).ok_or(HostError::RecordTooLarge)?;
            out.copy_from_slice(&(len as u64).to_le_bytes());
            return Ok(8);
        }
        let at = offset - 8;
        if at >= len {
            return Ok(0);
        }
        self.store(w).read(at as u32, buf).map_err(|_| HostError::Storage)
    }

    fn begin_save(&mut self) -> std::result::Result<(), HostError> {
        let w = self.selected();
        self.store(w).abort_save();
        self.incoming = Some(Incoming::AwaitLength { len: [0; 8], n: 0 });
        Ok(())
    }

    fn write_save(&mut self, chunk: &[u8]) -> std::result::Result<(), HostError> {
        let w = self.selected();
        match self.incoming {
            Some(Incoming::AwaitLength { mut len, n }) => {
                let take = (8 - n).min(chunk.len());
                len[n..n + take].copy_from_slice(&chunk[..take]);
                let rest = &chunk[take..];
                if n + take < 8 {
                    self.incoming = Some(Incoming::AwaitLength { len, n: n + take });
                    return Ok(());
                }
                let len = u32::try_from(u64::from_le_bytes(len)).map_err(|_| HostError::Full)?;
                if len == 0 {
                    self.incoming = Some(Incoming::Nothing);
                    return if rest.is_empty() { Ok(()) } else { Err(HostError::BadRecord) };
                }
                let info = SaveInfo { saved_at: unix_now(), sw_version: SW_VERSION };
                self.store(w).begin_save(len, &info).map_err(|_| HostError::Full)?;
                self.incoming = Some(Incoming::Writing);
                if rest.is_empty() {
                    Ok(())
                } else {
                    self.store(w).write(rest).map_err(|_| HostError::Storage)
                }
            }
            Some(Incoming::Writing) => self.store(w).write(chunk).map_err(|_| HostError::Storage),
            Some(Incoming::Nothing) | None => Err(HostError::BadRecord),
        }
    }

    fn commit_save(&mut self) -> std::result::Result<(), HostError> {
        let w = self.selected();
        match self.incoming.take() {
            Some(Incoming::Nothing) => Ok(()),
            _ => self.store(w).commit().map(|_| ()).map_err(|_| HostError::Storage),
        }
    }

    fn abort_save(&mut self) {
        let w = self.selected();
        self.incoming = None;
        self.store(w).abort_save();
    }
}

/// Seconds since the Unix epoch, the time a save records (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The firmware cuts its saved config (length, then text) into
    /// `CONFIG_CHUNK` pieces with no boundary after the length.
    #[test]
    fn saved_stream_cut_anywhere_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let text = "create vlan v7 tag 7\n".repeat(40);
        let mut stream = (text.len() as u64).to_le_bytes().to_vec();
        stream.extend_from_slice(text.as_bytes());
        for cut in [3usize, 8, 200, msm_checkpoint::CONFIG_CHUNK] {
            let mut b = BoardFlash::open(&dir.path().join(format!("b{cut}.img"))).unwrap();
            b.begin_save().unwrap();
            for piece in stream.chunks(cut) {
                b.write_save(piece).unwrap();
            }
            b.commit_save().unwrap();
            assert_eq!(b.load(ConfigName::Primary).unwrap().unwrap(), text, "cut every {cut} bytes");
        }
    }

    #[test]
    fn saved_stream_round_trips_into_another_flash() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = BoardFlash::open(&dir.path().join("a.img")).unwrap();
        let mut b = BoardFlash::open(&dir.path().join("b.img")).unwrap();
        let text = "create vlan v1 tag 1\n".repeat(100);
        assert_eq!(a.save(ConfigName::Primary, &text, 1).unwrap(), text.len());
        b.begin_save().unwrap();
        let mut at = 0;
        let mut buf = [0u8; 512];
        loop {
            let n = a.read_saved(at, &mut buf).unwrap();
            if n == 0 {
                break;
            }
            b.write_save(&buf[..n]).unwrap();
            at += n;
        }
        b.commit_save().unwrap();
        assert_eq!(b.load(ConfigName::Primary).unwrap().unwrap(), text);
        // A second process on the same image is refused, naming it.
        let e = BoardFlash::open(&dir.path().join("a.img")).unwrap_err().to_string();
        assert!(e.contains("a.img"), "{e}");
    }
}
