//! The MSM's flash, on any NOR device (`Flash<D>`): node settings (a
//! key-value area), `primary.cfg` and `secondary.cfg` (power-fail-safe
//! config stores), laid out by [`partitions`] from the device's size and
//! erase block. [`BoardFlash`] is the emulation's file-backed image; a
//! board on a kernel MTD device mounts `Flash<MtdFlash<..>>`. The node
//! holds either as a `Box<dyn NodeFlash>`.
//!
//! ```text
//! the 4 MiB file image (4 KiB blocks):
//! 0        64 KiB                                   2 MiB + 32 KiB          4 MiB
//! | settings | primary.cfg (ring of erase blocks)   | secondary.cfg          |
//! ```

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use anyhow::{Result, anyhow};
use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use msm_checkpoint::{HostError, config_chunks};
use msm_flash::saved_stream::{Layout, Parser, Piece, Segment};
use msm_flash::{
    ConfigName, ConfigStore, Damage, Durable, Error as FlashError, NodeSettings, Partition, SaveInfo,
};
use msm_flash_linux::FileFlash;

use crate::host::SavedStore;
use crate::wall_clock::unix_now;

pub const IMAGE_SIZE: u32 = 4 * 1024 * 1024;
/// The file image's partition table: (offset in the image, size) of each
/// partition, as [`partitions`] lays out 4 MiB of 4 KiB blocks.
pub const SETTINGS: (u32, u32) = (0, 64 * 1024);
pub const PRIMARY: (u32, u32) = (64 * 1024, 2016 * 1024);
pub const SECONDARY: (u32, u32) = (2080 * 1024, 2016 * 1024);

/// The partitions of a device of `capacity` bytes in blocks of `erase`:
/// settings (at least 64 KiB and four blocks, as the settings store needs),
/// then the rest halved between `primary.cfg` and `secondary.cfg`, each a
/// whole number of blocks. `None` when the device is too small for that
/// (each config store needs two blocks).
pub fn partitions(capacity: u32, erase: u32) -> Option<[(u32, u32); 3]> {
    let settings = (64 * 1024u32).max(4 * erase).next_multiple_of(erase);
    let half = (capacity.checked_sub(settings)? / 2) / erase * erase;
    (half >= 2 * erase).then_some([(0, settings), (settings, half), (settings + half, half)])
}

/// What the flash's partitions can sit on: a NOR device that can make what
/// it programmed durable.
pub trait Device: NorFlash + Durable + 'static {}
impl<D: NorFlash + Durable + 'static> Device for D {}
pub const SW_VERSION: &str = crate::release::RELEASE;

/// The emulation's image file.
pub type FileDev = FileFlash<4, 4096>;
type Part<D> = Partition<Shared<D>>;

/// The one image, shared by the three partitions; the image (and its lock)
/// closes when the last partition is dropped.
#[derive(Debug)]
struct Shared<D>(Rc<RefCell<D>>);

impl<D> Clone for Shared<D> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<D: Device> ErrorType for Shared<D> {
    type Error = <D as ErrorType>::Error;
}

impl<D: Device> ReadNorFlash for Shared<D> {
    const READ_SIZE: usize = D::READ_SIZE;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.0.borrow_mut().read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.0.borrow().capacity()
    }
}

impl<D: Device> NorFlash for Shared<D> {
    const WRITE_SIZE: usize = D::WRITE_SIZE;
    const ERASE_SIZE: usize = D::ERASE_SIZE;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.0.borrow_mut().erase(from, to)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.0.borrow_mut().write(offset, bytes)
    }
}

impl<D: Device> Durable for Shared<D> {
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
    /// CRC-32C of the file's bytes, as its record on flash says.
    pub crc: u32,
}

/// The master's saved configurations arriving, chunk by chunk, in the
/// saved-configuration stream (`msm_flash::saved_stream`).
#[derive(Debug, Default)]
struct Incoming {
    parser: Parser,
    /// The file being written now.
    file: Option<ConfigName>,
    /// Files begun, to commit at the end.
    begun: Vec<ConfigName>,
    /// The master's selected file (version 2 streams say).
    selected: Option<ConfigName>,
}

/// The emulation's flash: a 4 MiB file image.
pub type BoardFlash = Flash<FileDev>;

pub struct Flash<D: Device> {
    /// The image file or device.
    path: std::path::PathBuf,
    primary: ConfigStore<Part<D>>,
    secondary: ConfigStore<Part<D>>,
    settings: NodeSettings<Part<D>>,
    /// The largest config partition, for the refusal of a config too large.
    partition: u32,
    boot_count: u32,
    incoming: Option<Incoming>,
    /// The selected configuration was damaged at boot and this one was booted
    /// instead: this run treats it as selected (saves, the backup's incoming
    /// saved config). The setting on flash is unchanged, so the next boot tries
    /// the selected one again; `use configuration` ends this.
    boot_override: Option<ConfigName>,
    /// What [`open`](Self::open) found wrong, each also logged as a warning.
    boot_notes: Vec<String>,
}

/// The flash as the node holds it, whatever its device (`Box<dyn NodeFlash>`):
/// each method is [`Flash`]'s of the same name.
macro_rules! node_flash {
    (
        shared { $($(#[$sdoc:meta])* fn $sname:ident($($sarg:ident: $sty:ty),*) -> $sret:ty;)* }
        exclusive { $($(#[$edoc:meta])* fn $ename:ident($($earg:ident: $ety:ty),*) -> $eret:ty;)* }
    ) => {
        pub trait NodeFlash: SavedStore {
            $($(#[$sdoc])* fn $sname(&self $(, $sarg: $sty)*) -> $sret;)*
            $($(#[$edoc])* fn $ename(&mut self $(, $earg: $ety)*) -> $eret;)*
        }
        impl<D: Device> NodeFlash for Flash<D> {
            $(fn $sname(&self $(, $sarg: $sty)*) -> $sret {
                Flash::$sname(self $(, $sarg)*)
            })*
            $(fn $ename(&mut self $(, $earg: $ety)*) -> $eret {
                Flash::$ename(self $(, $earg)*)
            })*
        }
    };
}

node_flash! {
    shared {
        /// The image file or device.
        fn path() -> &Path;
        /// What the mount found wrong.
        fn boot_notes() -> &[String];
        fn damage(w: ConfigName) -> Option<Damage>;
        /// This boot's count: the node's incarnation.
        fn boot_count() -> u32;
    }
    exclusive {
        fn selected() -> ConfigName;
        fn select(w: ConfigName) -> std::result::Result<(), String>;
        fn last_term() -> u64;
        fn set_last_term(term: u64) -> std::result::Result<(), String>;
        fn failover_history() -> Vec<msm_flash::FailoverRecord>;
        fn record_failover(r: msm_flash::FailoverRecord) -> std::result::Result<(), String>;
        fn priority() -> Option<u8>;
        fn set_priority(p: u8) -> std::result::Result<(), String>;
        fn info(w: ConfigName) -> Option<SavedInfo>;
        fn load(w: ConfigName) -> Result<Option<String>>;
        fn save(w: ConfigName, text: &str, unix_time: u64) -> std::result::Result<usize, String>;
        fn begin_save_of(w: ConfigName, len: usize, unix_time: u64) -> std::result::Result<(), String>;
        fn write_piece(w: ConfigName, piece: &[u8]) -> std::result::Result<(), String>;
        fn commit_save_of(w: ConfigName) -> std::result::Result<usize, String>;
    }
}

/// The node's flash is a box of either kind; the host reads and writes the
/// saved-config stream through it.
impl<T: SavedStore + ?Sized> SavedStore for Box<T> {
    fn saved_items(&mut self) -> u64 {
        (**self).saved_items()
    }
    fn read_saved(&mut self, offset: usize, buf: &mut [u8]) -> std::result::Result<usize, HostError> {
        (**self).read_saved(offset, buf)
    }
    fn begin_save(&mut self) -> std::result::Result<(), HostError> {
        (**self).begin_save()
    }
    fn write_save(&mut self, chunk: &[u8]) -> std::result::Result<(), HostError> {
        (**self).write_save(chunk)
    }
    fn commit_save(&mut self) -> std::result::Result<(), HostError> {
        (**self).commit_save()
    }
    fn abort_save(&mut self) {
        (**self).abort_save()
    }
}

impl<D: Device> std::fmt::Debug for Flash<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BoardFlash(boot {})", self.boot_count)
    }
}

impl BoardFlash {
    /// Open (creating if missing) and mount the image; a second process on the
    /// same image is refused by the lock, naming the image.
    ///
    /// Damaged contents never stop the boot; each is logged as a warning naming
    /// the part and what is used instead ([`boot_notes`](Self::boot_notes)):
    /// a damaged or blank settings area gives the default settings (and is
    /// reformatted so later writes work); a damaged selected configuration
    /// boots the other configuration file if it is good, else the factory
    /// default. Only an unusable image (locked, wrong size, I/O errors on
    /// mount) is an error.
    pub fn open(path: &Path) -> Result<BoardFlash> {
        Flash::mount(FileDev::open(path, IMAGE_SIZE).map_err(|e| anyhow!("{e}"))?, path)
    }
}

impl<D: Device> Flash<D> {
    /// Mount the partitions of `dev` (called `path` in messages), as
    /// [`BoardFlash::open`] says.
    pub fn mount(dev: D, path: &Path) -> Result<Flash<D>> {
        let (capacity, erase) = (dev.capacity(), D::ERASE_SIZE);
        let [settings_at, primary_at, secondary_at] =
            u32::try_from(capacity).ok().zip(u32::try_from(erase).ok()).and_then(|(c, e)| partitions(c, e)).ok_or_else(
                || anyhow!("{}: {capacity} bytes in {erase}-byte blocks is too small for the settings and two configurations", path.display()),
            )?;
        let dev = Shared(Rc::new(RefCell::new(dev)));
        let part = |name, (start, size): (u32, u32)| {
            Partition::new(dev.clone(), name, start, size).map_err(|e| anyhow!("{name}: {e}"))
        };
        let mut notes = Vec::new();
        let mut settings = NodeSettings::new(part("settings", settings_at)?)
            .map_err(|e| anyhow!("{}: settings area: {e}", path.display()))?;
        let boot_count = open_settings(&mut settings, &mut notes);
        let primary = ConfigStore::mount(part("primary.cfg", primary_at)?, ConfigName::Primary)
            .map_err(|e| anyhow!("{}: primary.cfg: {e}", path.display()))?;
        let secondary = ConfigStore::mount(part("secondary.cfg", secondary_at)?, ConfigName::Secondary)
            .map_err(|e| anyhow!("{}: secondary.cfg: {e}", path.display()))?;
        let mut flash = Flash {
            path: path.to_path_buf(),
            primary,
            secondary,
            settings,
            partition: primary_at.1.max(secondary_at.1),
            boot_count,
            incoming: None,
            boot_override: None,
            boot_notes: notes,
        };
        flash.choose_boot_config();
        Ok(flash)
    }

    /// The image file this flash lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The warnings [`open`](Self::open) logged about damaged flash contents.
    pub fn boot_notes(&self) -> &[String] {
        &self.boot_notes
    }

    fn note(&mut self, message: String) {
        log::warn!("{message}");
        self.boot_notes.push(message);
    }

    /// Why configuration `w` cannot be booted (`Err`), or whether it holds one.
    fn check(&mut self, w: ConfigName) -> std::result::Result<bool, String> {
        let store = self.store(w);
        let damage = store.damage();
        let Some(info) = store.current().copied() else {
            return match damage {
                Some(d) => Err(d.to_string()),
                None => Ok(false),
            };
        };
        if let Some(d @ Damage::FellBack { .. }) = damage {
            self.note(format!(
                "{} damaged ({d}): booting its previous save (generation {}, {} bytes)",
                w.file_name(),
                info.generation,
                info.len
            ));
        }
        let text = self.read_all(w).map_err(|e| format!("{e:#}"))?;
        let text = String::from_utf8(text).map_err(|_| "not text".to_string())?;
        crate::config::RunningConfig::parse(&text).map_err(|e| format!("refused: {e}"))?;
        Ok(true)
    }

    /// Boot the selected configuration if it is good; if it is damaged, the
    /// other file if that one is good, else the factory default; say so.
    fn choose_boot_config(&mut self) {
        let selected = match self.settings.selected_config() {
            Ok(w) => w,
            Err(e) => {
                self.note(format!(
                    "settings area: selected configuration unreadable ({e}): using primary.cfg"
                ));
                ConfigName::Primary
            }
        };
        let other = match selected {
            ConfigName::Primary => ConfigName::Secondary,
            ConfigName::Secondary => ConfigName::Primary,
        };
        let (sel, alt) = (selected.file_name(), other.file_name());
        match self.check(selected) {
            Ok(_) => {
                if let Err(why) = self.check(other) {
                    self.note(format!("{alt} damaged ({why}); not selected, {sel} booted"));
                }
            }
            Err(why) => match self.check(other) {
                Ok(true) => {
                    self.note(format!("{sel} damaged ({why}): booting {alt}"));
                    self.boot_override = Some(other);
                }
                Ok(false) => self.note(format!(
                    "{sel} damaged ({why}): booting the factory default ({alt} holds no configuration)"
                )),
                Err(why2) => self.note(format!(
                    "{sel} damaged ({why}): booting the factory default ({alt} damaged too: {why2})"
                )),
            },
        }
    }

    /// Why configuration `w` has no usable config or an older one than saved,
    /// as the mount found it (`None` once a save has replaced it).
    pub fn damage(&self, w: ConfigName) -> Option<Damage> {
        match w {
            ConfigName::Primary => self.primary.damage(),
            ConfigName::Secondary => self.secondary.damage(),
        }
    }

    fn store(&mut self, w: ConfigName) -> &mut ConfigStore<Part<D>> {
        match w {
            ConfigName::Primary => &mut self.primary,
            ConfigName::Secondary => &mut self.secondary,
        }
    }

    pub fn boot_count(&self) -> u32 {
        self.boot_count
    }

    /// The selected configuration (primary if the setting is unreadable); for
    /// the run after a boot that found it damaged, the one booted instead.
    pub fn selected(&mut self) -> ConfigName {
        if let Some(w) = self.boot_override {
            return w;
        }
        self.settings.selected_config().unwrap_or(ConfigName::Primary)
    }

    pub fn select(&mut self, w: ConfigName) -> std::result::Result<(), String> {
        self.boot_override = None;
        self.settings.set_selected_config(w).map_err(|e| e.to_string())
    }

    /// The highest term this module saw, kept across restarts (0: none).
    pub fn last_term(&mut self) -> u64 {
        self.settings.last_term().unwrap_or(0)
    }

    pub fn set_last_term(&mut self, term: u64) -> std::result::Result<(), String> {
        self.settings.set_last_term(term).map_err(|e| e.to_string())
    }

    /// The failover history kept in the settings area, newest first (empty
    /// if it cannot be read: logged).
    pub fn failover_history(&mut self) -> Vec<msm_flash::FailoverRecord> {
        match self.settings.failover_history() {
            Ok(h) => h.into_iter().flatten().collect(),
            Err(e) => {
                log::warn!("settings area: failover history unreadable ({e})");
                Vec::new()
            }
        }
    }

    /// Keep a failover record; durable when this returns.
    pub fn record_failover(&mut self, r: msm_flash::FailoverRecord) -> std::result::Result<(), String> {
        self.settings.record_failover(&r).map_err(|e| e.to_string())
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
            crc: i.crc,
        })
    }

    /// The whole saved configuration `w` (configs are text of a few hundred KiB
    /// at most); `None` if there is none or it is not text (a warning, see
    /// [`open`](Self::open) for what boots then).
    pub fn load(&mut self, w: ConfigName) -> Result<Option<String>> {
        if self.store(w).current().is_none() {
            return Ok(None);
        }
        let bytes = self.read_all(w)?;
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Some(text)),
            Err(_) => {
                log::warn!("{} is not text: not loaded", w.file_name());
                Ok(None)
            }
        }
    }

    fn read_all(&mut self, w: ConfigName) -> Result<Vec<u8>> {
        let len = self.store(w).current().map_or(0, |i| i.len as usize);
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
        Ok(out)
    }

    /// `save`: replace `w` atomically. Returns the bytes saved.
    pub fn save(&mut self, w: ConfigName, text: &str, unix_time: u64) -> std::result::Result<usize, String> {
        let info = SaveInfo { saved_at: unix_time, sw_version: SW_VERSION };
        self.store(w).save(text.as_bytes(), &info).map(|i| i.len as usize).map_err(|e| e.to_string())
    }

    /// The operator's `save` in pieces, so a large configuration is written
    /// between loop turns: begin with its length, [`write_piece`](Self::write_piece)
    /// in order, [`commit_save_of`](Self::commit_save_of). The old copy stays
    /// current until the commit.
    pub fn begin_save_of(
        &mut self,
        w: ConfigName,
        len: usize,
        unix_time: u64,
    ) -> std::result::Result<(), String> {
        let len = u32::try_from(len).map_err(|_| format!("{len} bytes do not fit a configuration file"))?;
        let info = SaveInfo { saved_at: unix_time, sw_version: SW_VERSION };
        let store = self.store(w);
        store.abort_save();
        store.begin_save(len, &info).map_err(|e| e.to_string())
    }

    pub fn write_piece(&mut self, w: ConfigName, piece: &[u8]) -> std::result::Result<(), String> {
        self.store(w).write(piece).map_err(|e| e.to_string())
    }

    /// The bytes saved.
    pub fn commit_save_of(&mut self, w: ConfigName) -> std::result::Result<usize, String> {
        self.store(w).commit().map(|i| i.len as usize).map_err(|e| e.to_string())
    }
}

impl<D: Device> Flash<D> {
    /// Start writing the master's saved configuration of `len` bytes into `w`.
    /// It replaces this module's own copy even when the two do not fit the
    /// partition side by side (the own copy is then overwritten as the new one
    /// is written; see docs/flash-format.md). `Full`, logged with the sizes,
    /// only when it is larger than the partition can hold.
    fn begin_incoming(&mut self, w: ConfigName, len: u32) -> std::result::Result<(), HostError> {
        let info = SaveInfo { saved_at: unix_now(), sw_version: SW_VERSION };
        let own = self.store(w).current().map_or(0, |i| i.len);
        match self.store(w).begin_replace(len, &info) {
            Ok(false) => Ok(()),
            Ok(true) => {
                log::warn!(
                    "{}: the master's saved configuration ({len} bytes) does not fit beside this module's own \
                     ({own} bytes): replacing it in place",
                    w.file_name()
                );
                Ok(())
            }
            Err(FlashError::TooLarge { len, max }) => {
                log::warn!(
                    "{}: the master's saved configuration of {len} bytes cannot fit the {}-byte partition \
                     ({max} bytes at most): refused",
                    w.file_name(),
                    self.partition
                );
                Err(HostError::Full)
            }
            Err(e) => {
                log::warn!("{}: the master's saved configuration: {e}", w.file_name());
                Err(HostError::Storage)
            }
        }
    }
}

/// The saved-config checkpoint stream (layout: `msm_flash::saved_stream`,
/// docs/flash-format.md): the master sends both saved configurations and
/// which is selected; the backup (or standby) writes each into the same
/// file of its own flash, commits them at the end, and selects what the
/// master selects. A file the master lacks is left as it is here.
impl<D: Device> SavedStore for Flash<D> {
    fn saved_items(&mut self) -> u64 {
        let layout = self.layout();
        let files = layout.lens.iter().flatten().map(|&l| 1 + config_chunks(l as usize)).sum::<u64>();
        1 + files
    }

    fn read_saved(&mut self, offset: usize, buf: &mut [u8]) -> std::result::Result<usize, HostError> {
        match self.layout().at(offset as u64).ok_or(HostError::BadRecord)? {
            Segment::Header(h) => {
                buf.get_mut(..h.len()).ok_or(HostError::RecordTooLarge)?.copy_from_slice(&h);
                Ok(h.len())
            }
            Segment::File(w, at, left) => {
                let n = buf.len().min(left as usize);
                self.store(w).read(at, &mut buf[..n]).map_err(|_| HostError::Storage)
            }
            Segment::End => Ok(0),
        }
    }

    fn begin_save(&mut self) -> std::result::Result<(), HostError> {
        self.abort_save();
        self.incoming = Some(Incoming::default());
        Ok(())
    }

    fn write_save(&mut self, chunk: &[u8]) -> std::result::Result<(), HostError> {
        let mut inc = self.incoming.take().ok_or(HostError::BadRecord)?;
        let Incoming { parser, file, begun, selected } = &mut inc;
        let r = parser.push(chunk, |piece| match piece {
            Piece::Header(h) => {
                *selected = h.map(|h| h.selected);
                Ok(())
            }
            // (An empty file: nothing to write; ours stays.)
            Piece::FileStart(_, 0) => Ok(()),
            Piece::FileStart(name, len) => {
                let w = name.unwrap_or_else(|| self.selected());
                self.begin_incoming(w, len)?;
                *file = Some(w);
                begun.push(w);
                Ok(())
            }
            Piece::Data(d) => {
                let w = file.ok_or(HostError::BadRecord)?;
                self.store(w).write(d).map_err(|_| HostError::Storage)
            }
        });
        self.incoming = Some(inc);
        r.map_err(|e| match e {
            Ok(host) => host,
            Err(stream) => {
                log::warn!("the master's saved configurations: {stream}");
                HostError::BadRecord
            }
        })
    }

    fn commit_save(&mut self) -> std::result::Result<(), HostError> {
        let inc = self.incoming.take().ok_or(HostError::BadRecord)?;
        if let Err(e) = inc.parser.finish() {
            log::warn!("the master's saved configurations: {e}");
            for w in [ConfigName::Primary, ConfigName::Secondary] {
                self.store(w).abort_save();
            }
            return Err(HostError::BadRecord);
        }
        for w in inc.begun {
            match self.store(w).commit() {
                Ok(info) => log::info!(
                    "{}: the master's saved configuration, {} bytes, on flash",
                    w.file_name(),
                    info.len
                ),
                Err(e) => {
                    log::warn!("{}: the master's saved configuration not committed: {e}", w.file_name());
                    return Err(HostError::Storage);
                }
            }
        }
        if let Some(w) = inc.selected {
            if self.settings.selected_config().ok() != Some(w) || self.boot_override.is_some_and(|b| b != w) {
                log::info!("the master selects {}: selected here too", w.file_name());
                self.select(w).map_err(|e| {
                    log::warn!("selecting {}: {e}", w.file_name());
                    HostError::Storage
                })?;
            }
        }
        Ok(())
    }

    fn abort_save(&mut self) {
        self.incoming = None;
        for w in [ConfigName::Primary, ConfigName::Secondary] {
            self.store(w).abort_save();
        }
    }
}

impl<D: Device> Flash<D> {
    /// The saved-configuration stream this module would send now.
    fn layout(&mut self) -> Layout {
        let selected = self.selected();
        let lens =
            [ConfigName::Primary, ConfigName::Secondary].map(|w| self.store(w).current().map(|i| i.len));
        Layout { selected, lens }
    }
}

/// Mount the settings area and count this boot. Never fails: damage is a
/// warning (in `notes` too) and the area is reformatted so later writes work;
/// the settings are then their defaults. If the count cannot be stored it is
/// the clock's seconds since 2025, so incarnations still grow across boots.
fn open_settings<D: Device>(settings: &mut NodeSettings<Part<D>>, notes: &mut Vec<String>) -> u32 {
    let mut note = |m: String| {
        log::warn!("{m}");
        notes.push(m);
    };
    match settings.mount() {
        Ok(r) if r.blank => note("settings area blank (never written): booting with default settings".into()),
        Ok(r) => match r.damage() {
            Some(why) if r.reformatted() => note(format!(
                "settings area damaged ({why}): booting with default settings (area reformatted)"
            )),
            Some(why) => note(format!(
                "settings area: one of its two copies damaged ({why}), rebuilt from the other; settings kept"
            )),
            None => {}
        },
        Err(e) => {
            note(format!("settings area damaged ({e}): booting with default settings"));
            if let Err(e) = settings.erase_all() {
                note(format!("settings area: reformatting failed ({e})"));
            }
        }
    }
    // Seconds since 2025-01-01 UTC: a fresh flash starts its count there.
    let clock_floor = u32::try_from(unix_now().saturating_sub(EPOCH_2025)).unwrap_or(u32::MAX);
    match settings.advance_boot_count(clock_floor) {
        Ok(n) => n,
        Err(e) => {
            note(format!("settings area: boot count not stored ({e}): reformatting the area"));
            if let Ok(n) = settings.erase_all().and_then(|()| settings.advance_boot_count(clock_floor)) {
                return n;
            }
            note(
                "settings area unusable: settings are not kept this run; the incarnation is the clock's"
                    .into(),
            );
            clock_floor
        }
    }
}

/// 2025-01-01T00:00:00Z in Unix seconds: where boot counts of a fresh flash start.
pub const EPOCH_2025: u64 = 1_735_689_600;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_of_the_file_image_and_of_a_pflash_bank() {
        assert_eq!(partitions(IMAGE_SIZE, 4096), Some([SETTINGS, PRIMARY, SECONDARY]));
        // QEMU's pflash bank on the aarch64 board: 64 MiB less its key block, 256 KiB blocks.
        let bank = partitions(64 * 1024 * 1024 - 256 * 1024, 256 * 1024).unwrap();
        assert_eq!(bank[0], (0, 1024 * 1024), "four blocks of settings");
        assert_eq!(bank[1].1, bank[2].1);
        assert_eq!(bank[1].1 % (256 * 1024), 0);
        assert!(bank[2].0 + bank[2].1 <= 64 * 1024 * 1024 - 256 * 1024);
        assert_eq!(partitions(6 * 4096, 4096), None, "too small for two blocks a configuration");
    }

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

    /// Stream `text` as the master does (8-byte length, then chunks) into `b`.
    fn stream_in(b: &mut BoardFlash, text: &str) -> std::result::Result<(), HostError> {
        let mut stream = (text.len() as u64).to_le_bytes().to_vec();
        stream.extend_from_slice(text.as_bytes());
        b.begin_save()?;
        for piece in stream.chunks(msm_checkpoint::CONFIG_CHUNK) {
            b.write_save(piece)?;
        }
        b.commit_save()
    }

    /// Issue 10: a backup whose own primary.cfg holds 1.9 MB could not take a
    /// 300 KB saved config from the master (no room beside its own copy).
    #[test]
    fn incoming_saved_config_replaces_a_larger_own_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = BoardFlash::open(&dir.path().join("b.img")).unwrap();
        let text = |tag: &str, bytes: usize| {
            (0..bytes / 21).map(|i| format!("# {tag} {i:>14}\n")).collect::<String>()
        };
        let own = text("own", 1_900_000);
        b.save(ConfigName::Primary, &own, 1).unwrap();
        let master = text("mst", 300_000);
        stream_in(&mut b, &master).unwrap();
        assert_eq!(b.load(ConfigName::Primary).unwrap().unwrap(), master);
        drop(b);
        let mut b = BoardFlash::open(&dir.path().join("b.img")).unwrap();
        assert_eq!(b.load(ConfigName::Primary).unwrap().unwrap(), master, "after a reboot");
        assert!(b.boot_notes().is_empty(), "{:?}", b.boot_notes());
        // And the next one, of either size, too.
        stream_in(&mut b, &own).unwrap();
        assert_eq!(b.load(ConfigName::Primary).unwrap().unwrap(), own);
    }

    /// Larger than the partition: refused with `Full` on the length, nothing changed.
    #[test]
    fn incoming_saved_config_larger_than_the_partition_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = BoardFlash::open(&dir.path().join("b.img")).unwrap();
        let own = "create vlan own tag 1\n".repeat(100);
        b.save(ConfigName::Primary, &own, 1).unwrap();
        b.begin_save().unwrap();
        assert_eq!(b.write_save(&u64::from(PRIMARY.1).to_le_bytes()), Err(HostError::Full));
        b.abort_save();
        assert_eq!(b.load(ConfigName::Primary).unwrap().unwrap(), own);
    }

    /// Overwrite `len` bytes of the image at `at` (the node is stopped).
    fn scribble(image: &Path, at: u32, bytes: &[u8]) {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(image).unwrap();
        f.write_all_at(bytes, u64::from(at)).unwrap();
    }

    fn random(len: usize) -> Vec<u8> {
        use rand::RngCore;
        let mut v = vec![0; len];
        rand_pcg::Pcg64Mcg::new(0xDEAD_BEEF).fill_bytes(&mut v);
        v
    }

    fn image_with(dir: &Path, primary: Option<&str>, secondary: Option<&str>) -> std::path::PathBuf {
        let image = dir.join("n.img");
        let mut f = BoardFlash::open(&image).unwrap();
        for (w, text) in [(ConfigName::Primary, primary), (ConfigName::Secondary, secondary)] {
            if let Some(t) = text {
                f.save(w, t, 1).unwrap();
            }
        }
        image
    }

    const P: &str = "create vlan p tag 10\n";
    const S: &str = "create vlan s tag 20\n";

    #[test]
    fn destroyed_primary_boots_secondary_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let image = image_with(dir.path(), Some(P), Some(S));
        scribble(&image, PRIMARY.0, &random(PRIMARY.1 as usize));
        let mut f = BoardFlash::open(&image).unwrap();
        assert!(matches!(f.damage(ConfigName::Primary), Some(Damage::Unrecognised { .. })));
        let notes = f.boot_notes().join("\n");
        assert!(
            notes.contains("primary.cfg damaged (") && notes.contains("booting secondary.cfg"),
            "{notes}"
        );
        assert_eq!(f.selected(), ConfigName::Secondary);
        assert_eq!(f.load(ConfigName::Primary).unwrap(), None);
        let booted = f.selected();
        assert_eq!(f.load(booted).unwrap().as_deref(), Some(S));
        // The setting on flash is unchanged: an explicit choice ends the override.
        f.select(ConfigName::Primary).unwrap();
        assert_eq!(f.selected(), ConfigName::Primary);
    }

    #[test]
    fn damaged_primary_without_secondary_boots_the_factory_default_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let image = image_with(dir.path(), Some(P), None);
        // One flipped byte in the data of the only save.
        scribble(&image, PRIMARY.0 + 64 + 3, b"#");
        let mut f = BoardFlash::open(&image).unwrap();
        assert!(matches!(f.damage(ConfigName::Primary), Some(Damage::Lost { .. })));
        let notes = f.boot_notes().join("\n");
        assert!(
            notes.contains("primary.cfg damaged (committed record whose data fails its CRC-32C")
                && notes.contains("booting the factory default"),
            "{notes}"
        );
        assert_eq!(f.selected(), ConfigName::Primary);
        assert_eq!(f.load(ConfigName::Primary).unwrap(), None);
    }

    #[test]
    fn zeroed_primary_with_damaged_secondary_boots_the_factory_default() {
        let dir = tempfile::tempdir().unwrap();
        let image = image_with(dir.path(), Some(P), Some(S));
        scribble(&image, PRIMARY.0, &vec![0; PRIMARY.1 as usize]);
        scribble(&image, SECONDARY.0 + 64, b"#");
        let f = BoardFlash::open(&image).unwrap();
        let notes = f.boot_notes().join("\n");
        assert!(notes.contains("primary.cfg damaged (no record found"), "{notes}");
        assert!(notes.contains("booting the factory default (secondary.cfg damaged too"), "{notes}");
    }

    #[test]
    fn damaged_settings_area_boots_with_defaults_and_is_reformatted() {
        for (what, fill) in
            [("zeros", vec![0u8; SETTINGS.1 as usize]), ("random", random(SETTINGS.1 as usize))]
        {
            let dir = tempfile::tempdir().unwrap();
            let image = image_with(dir.path(), Some(P), Some(S));
            {
                let mut f = BoardFlash::open(&image).unwrap();
                f.set_priority(5).unwrap();
                f.select(ConfigName::Secondary).unwrap();
            }
            scribble(&image, SETTINGS.0, &fill);
            // Read before the open: the count it seeds from the clock is at least this.
            let floor = (unix_now() - EPOCH_2025) as u32;
            let mut f = BoardFlash::open(&image).unwrap();
            let notes = f.boot_notes().join("\n");
            assert!(
                notes.contains("settings area damaged (") && notes.contains("default settings"),
                "{what}: {notes}"
            );
            assert!(f.boot_count() >= floor, "{what}: a lost count restarts at the clock, above any before");
            let first = f.boot_count();
            assert_eq!((f.priority(), f.selected()), (None, ConfigName::Primary), "{what}");
            // The configurations are separate and still good.
            assert_eq!(f.load(ConfigName::Primary).unwrap().as_deref(), Some(P), "{what}");
            // Later writes work.
            f.set_priority(9).unwrap();
            drop(f);
            let mut f = BoardFlash::open(&image).unwrap();
            assert!(f.boot_notes().is_empty(), "{what}: {:?}", f.boot_notes());
            assert_eq!((f.boot_count(), f.priority()), (first + 1, Some(9)), "{what}");
        }
    }

    #[test]
    fn blank_settings_area_boots_with_defaults_and_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let floor = (unix_now() - EPOCH_2025) as u32;
        let f = BoardFlash::open(&dir.path().join("new.img")).unwrap();
        assert!((floor..floor + 5).contains(&f.boot_count()), "a fresh flash counts from the clock");
        assert!(f.boot_notes().iter().any(|n| n.contains("settings area blank")), "{:?}", f.boot_notes());
    }
}
