//! The config store: XOS `save` semantics on NOR flash.
//!
//! One [`ConfigStore`] owns a region (usually a [`Partition`](crate::Partition)) for one config,
//! `primary.cfg` or `secondary.cfg`. The region is a ring of erase blocks; each save appends a
//! record starting on the erase block after the current config's record, erasing blocks just
//! before it programs them and never touching the blocks of the current config. A record is
//! `header | data | trailer | commit marker`, and every block of it after the first starts with a
//! continuation marker, so the data never lies at the start of a block: a config cannot hold
//! something the mount would take for a record. The commit marker is programmed last, after a
//! [`Durable::sync`], so a power cut at any byte of a save leaves the old config or the new one,
//! never neither and never a mix. [`ConfigStore::mount`] finds the newest committed record whose
//! CRC-32C matches; it only reads, so a cut during mount is harmless. Records of the previous
//! format (version 1) are still read; the first save in a region holding them cleans the region.
//! The format is in `docs/flash-format.md`.
//!
//! Saves and reads are streamed: [`ConfigStore::begin_save`] (length, time, software version),
//! [`ConfigStore::write`] any number of chunks, [`ConfigStore::commit`]; [`ConfigStore::read`]
//! reads at an offset into the caller's buffer. RAM use is a few hundred bytes whatever the config
//! size.
//!
//! Requirements on the flash: `READ_SIZE` 1, `WRITE_SIZE` a power of two up to
//! [`MAX_WRITE_SIZE`], `ERASE_SIZE` a multiple of `WRITE_SIZE` and at least 128 bytes, at least
//! two erase blocks in the region. The largest config a save can take is the region minus the
//! blocks of the current config minus the record overhead (88 bytes plus a 16-byte continuation
//! marker per block after the first, `WRITE_SIZE`-padded: [`ConfigStore::max_len`]), so size the
//! region to at least twice the largest config; more blocks spread wear further.

use core::fmt;

use crc::Digest;
use embedded_storage::nor_flash::NorFlash;

#[cfg(all(test, feature = "mock"))]
mod forgery;
mod format;
mod layout;
mod mount;
mod recover;
mod save;
#[cfg(all(test, feature = "mock"))]
mod tests;

use format::{COMMIT, Format, Geo, HEADER_LEN, TRAILER_LEN};
use mount::{check_geometry, data_crc, read_content};
use recover::recover;
use save::Save;

use crate::CRC32C;
use crate::durable::Durable;
use crate::error::{CorruptReason, Error};

/// On-flash format version written in every record header. Records of version 1 (the previous
/// release) are still read; the first save in a region holding them cleans it.
pub const FORMAT_VERSION: u8 = 2;
/// Largest `WRITE_SIZE` supported.
pub const MAX_WRITE_SIZE: usize = 64;
/// Bytes of software version kept per record (UTF-8, longer strings are cut at a char boundary).
pub const SW_VERSION_LEN: usize = 32;

/// Chunk used to stream data through the CRC when verifying.
const SCAN_CHUNK: usize = 256;

/// Which config a store holds (XOS `primary.cfg` / `secondary.cfg`). Written in each record so a
/// region mixed up with the other one is detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConfigName {
    /// `primary.cfg`
    Primary = 1,
    /// `secondary.cfg`
    Secondary = 2,
}

impl ConfigName {
    /// The XOS file name.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Primary => "primary.cfg",
            Self::Secondary => "secondary.cfg",
        }
    }

    /// From the code stored on flash.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Primary),
            2 => Some(Self::Secondary),
            _ => None,
        }
    }
}

/// What the caller tells a save besides the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaveInfo<'a> {
    /// Time of the save, seconds since the Unix epoch (the store has no clock).
    pub saved_at: u64,
    /// Software version that saves ("16.2.5.4"); cut to [`SW_VERSION_LEN`] bytes.
    pub sw_version: &'a str,
}

/// A committed config as recorded on flash (what `show switch` prints).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ConfigInfo {
    /// Which config.
    pub name: ConfigName,
    /// Increases by at least one with every save in this region.
    pub generation: u32,
    /// Length of the config in bytes.
    pub len: u32,
    /// CRC-32C of the config bytes.
    pub crc: u32,
    /// Time of the save, seconds since the Unix epoch, as given by the caller.
    pub saved_at: u64,
    /// Erase block (index in the region) where the record starts.
    pub block: u32,
    sw_version: [u8; SW_VERSION_LEN],
    format: Format,
}

impl ConfigInfo {
    /// Format version of the record (1: written by the previous release, 2: [`FORMAT_VERSION`]).
    pub fn format_version(&self) -> u8 {
        self.format.version()
    }

    /// Erase blocks the record spans.
    fn blocks(&self, geo: &Geo) -> u64 {
        geo.blocks_for(self.format, self.len)
    }

    /// Software version that saved the config.
    pub fn sw_version(&self) -> &str {
        let end = self.sw_version.iter().position(|b| *b == 0).unwrap_or(SW_VERSION_LEN);
        let bytes = &self.sw_version[..end];
        match core::str::from_utf8(bytes) {
            Ok(s) => s,
            // Valid on save; a damaged byte can only come from a record whose CRCs still match,
            // which a CRC collision would take. Show the valid prefix rather than fail.
            Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

impl fmt::Debug for ConfigInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigInfo")
            .field("name", &self.name)
            .field("generation", &self.generation)
            .field("len", &self.len)
            .field("crc", &format_args!("{:#010x}", self.crc))
            .field("saved_at", &self.saved_at)
            .field("block", &self.block)
            .field("sw_version", &self.sw_version())
            .field("format_version", &self.format_version())
            .finish()
    }
}

/// What [`ConfigStore::mount`] found besides the current config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MountReport {
    /// Committed records with matching header, trailer and data CRCs (the current one and older
    /// ones not yet overwritten). Older records are only counted when their data was checked,
    /// which happens only when a newer one failed.
    pub valid_records: u32,
    /// Records with a valid header and no (complete) commit marker: saves interrupted by a power
    /// cut or a crash. Harmless: the next save reuses their blocks.
    pub torn_records: u32,
    /// Damaged records (see [`CorruptReason`]).
    pub corrupt_records: u32,
    /// The first damaged record seen: a `DataCrc` one (a committed config was lost) in preference
    /// to others.
    pub first_corrupt: Option<(u32, CorruptReason)>,
    /// Erase blocks whose first bytes are neither erased (0xFF) nor a record header nor a
    /// continuation marker: data of format-1 records (the previous release's), a torn erase, or
    /// damage. With no record at all, any such block means the region was overwritten (see
    /// [`Damage::Unrecognised`]).
    pub foreign_blocks: u32,
}

/// Why a store's config is missing or older than its newest save, after [`ConfigStore::mount`]
/// ([`ConfigStore::damage`]). A region that was never written (all erased) has no damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Damage {
    /// No committed config survived; this record was found damaged.
    Lost {
        /// Erase block where the damaged record starts.
        block: u32,
        /// What is wrong with it.
        reason: CorruptReason,
    },
    /// No record header anywhere, yet `blocks` erase blocks hold data: the region was overwritten
    /// (zeros, random bytes, another format).
    Unrecognised {
        /// Blocks that are neither erased nor a record header.
        blocks: u32,
    },
    /// No committed config; only `records` interrupted saves (a power cut during a save, with no
    /// older config left beside it).
    Interrupted {
        /// Torn records found.
        records: u32,
    },
    /// The newest save is damaged; the current config is an older save still intact in the ring.
    FellBack {
        /// Erase block of the damaged newer record.
        block: u32,
        /// What is wrong with it.
        reason: CorruptReason,
    },
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Lost { block, reason } => write!(f, "{reason} at block {block}, no intact save left"),
            Self::Unrecognised { blocks } => {
                write!(f, "no record found, yet {blocks} erase block(s) hold data (overwritten?)")
            }
            Self::Interrupted { records } => {
                write!(f, "only {records} interrupted save(s), no committed config")
            }
            Self::FellBack { block, reason } => write!(f, "newest save damaged ({reason} at block {block})"),
        }
    }
}

impl MountReport {
    fn note_corrupt(&mut self, block: u32, reason: CorruptReason) {
        self.corrupt_records += 1;
        match self.first_corrupt {
            None => self.first_corrupt = Some((block, reason)),
            Some((_, r)) if r != CorruptReason::DataCrc && reason == CorruptReason::DataCrc => {
                self.first_corrupt = Some((block, reason))
            }
            Some(_) => {}
        }
    }
}

/// A power-fail-safe store of one config; see the module docs.
///
/// Save, stream a second save, and survive a power cut during a third: the
/// store then mounts the last committed config. (On Linux the flash is
/// `msm_flash_linux::FileFlash`; here the in-RAM `MockFlash`, feature `mock`.)
///
/// ```
/// use msm_flash::mock::MockFlash;
/// use msm_flash::{ConfigName, ConfigStore, SaveInfo};
///
/// // 32 KiB of NOR flash: 4-byte words, 4 KiB erase blocks.
/// let flash = MockFlash::<_, _, 4, 4096>::new_erased([0u8; 8 * 4096], [0u32; 8]).unwrap();
/// let mut store = ConfigStore::mount(flash, ConfigName::Primary).unwrap();
/// assert!(store.current().is_none()); // a blank flash holds no config
///
/// let info = SaveInfo { saved_at: 1_764_000_000, sw_version: "0.1.0" };
/// let first = *store.save(b"create vlan corp tag 100\n", &info).unwrap();
///
/// // A large config is streamed in chunks: RAM use does not grow with it.
/// let lines: [&[u8]; 2] = [b"create vlan lab tag 200\n", b"configure vlan lab add ports 25-40\n"];
/// let len = lines.iter().map(|l| l.len() as u32).sum();
/// store.begin_save(len, &info).unwrap();
/// for line in lines {
///     store.write(line).unwrap();
/// }
/// let second = *store.commit().unwrap();
/// assert!(second.generation > first.generation);
///
/// // Power fails 100 bytes into the next save: the mount finds the second config intact.
/// store.flash().cut_after(100, 7);
/// assert!(store.save(&[b'#'; 2000], &info).is_err());
/// let mut flash = store.into_inner();
/// flash.reboot();
/// let mut store = ConfigStore::mount(flash, ConfigName::Primary).unwrap();
/// assert_eq!(store.current().map(|c| c.generation), Some(second.generation));
/// let mut buf = [0u8; 64];
/// let n = store.read(0, &mut buf).unwrap();
/// assert_eq!(&buf[..n], b"create vlan lab tag 200\nconfigure vlan lab add ports 25-40\n");
/// ```
#[derive(Debug)]
pub struct ConfigStore<F> {
    flash: F,
    name: ConfigName,
    geo: Geo,
    current: Option<ConfigInfo>,
    report: MountReport,
    /// What the mount found wrong; cleared by the next commit.
    damage: Option<Damage>,
    next_block: u32,
    next_gen: u64,
    /// The region holds blocks the next save must clean (format-1 records, unknown or damaged
    /// blocks, or leftovers of a cleaning save cut short): see `save.rs`.
    dirty: bool,
    save: Option<Save>,
}

impl<F: NorFlash + Durable> ConfigStore<F> {
    /// Mount the store of config `name` on `flash` (its whole capacity is the region): find the
    /// newest committed record whose CRCs match. Never writes. Fails only on a flash error or an
    /// unsuitable geometry; corrupt or torn records are counted in [`report`](Self::report).
    pub fn mount(mut flash: F, name: ConfigName) -> Result<Self, Error<F::Error>> {
        let geo = check_geometry::<F>(flash.capacity())?;
        let found = recover(&mut flash, name, &geo)?;
        let (current, report, next_gen, dirty) = (found.current, found.report, found.next_gen, found.dirty);
        let next_block = match &current {
            Some(c) => ((u64::from(c.block) + c.blocks(&geo)) % u64::from(geo.blocks)) as u32,
            None => 0,
        };
        match &current {
            Some(c) => info!(
                "config store {}: generation {}, {} bytes at block {}",
                name.file_name(),
                c.generation,
                c.len,
                c.block
            ),
            None => info!("config store {}: no valid config", name.file_name()),
        }
        let damage = report.damage(current.is_some());
        if let Some((block, reason)) = report.first_corrupt {
            warn!(
                "config store {}: {} corrupt record(s), first at block {}: {}",
                name.file_name(),
                report.corrupt_records,
                block,
                reason
            );
        }
        if dirty {
            info!("config store {}: the next save cleans the region", name.file_name());
        }
        Ok(Self { flash, name, geo, current, report, damage, next_block, next_gen, dirty, save: None })
    }

    /// Which config this store holds.
    pub fn name(&self) -> ConfigName {
        self.name
    }

    /// The current config, if any survived.
    pub fn current(&self) -> Option<&ConfigInfo> {
        self.current.as_ref()
    }

    /// What the mount found.
    pub fn report(&self) -> &MountReport {
        &self.report
    }

    /// Why the config is missing or older than the newest save, as the mount found it (`None`: the
    /// newest save is current, or nothing was ever written). For the boot log: a board names the
    /// config file and this, and what it boots instead.
    pub fn damage(&self) -> Option<Damage> {
        self.damage
    }
}

impl MountReport {
    /// See [`ConfigStore::damage`]; `found`: a committed config survived.
    fn damage(&self, found: bool) -> Option<Damage> {
        let r = self;
        match (found, r.first_corrupt) {
            (true, Some((block, reason))) if reason == CorruptReason::DataCrc => {
                Some(Damage::FellBack { block, reason })
            }
            (true, _) => None,
            (false, Some((block, reason))) => Some(Damage::Lost { block, reason }),
            (false, None) if r.torn_records > 0 => Some(Damage::Interrupted { records: r.torn_records }),
            (false, None) if r.foreign_blocks > 0 => Some(Damage::Unrecognised { blocks: r.foreign_blocks }),
            (false, None) => None,
        }
    }
}

impl<F: NorFlash + Durable> ConfigStore<F> {
    /// Blocks the next record may use: the blocks not holding the current record.
    fn free_blocks(&self) -> u64 {
        let used = self.current.map_or(0, |c| c.blocks(&self.geo));
        u64::from(self.geo.blocks).saturating_sub(used)
    }

    /// Largest config the next save can take without touching the current one (0 also when not
    /// even an empty config fits: then every save is refused with `TooLarge`): the free blocks
    /// minus the header, a continuation marker per block after the first, trailer and commit
    /// marker, rounded down to `WRITE_SIZE`.
    pub fn max_len(&self) -> u32 {
        self.geo.max_len_in(self.free_blocks())
    }

    /// The current config's info, or the named error saying why there is none.
    pub fn current_or_err(&self) -> Result<&ConfigInfo, Error<F::Error>> {
        match (&self.current, self.report.first_corrupt) {
            (Some(c), _) => Ok(c),
            (None, Some((block, reason))) => Err(Error::Corrupt { block, reason }),
            (None, None) => Err(Error::NoValidConfig),
        }
    }

    /// Read the current config from `offset` into `buf`; returns the bytes read (0 at the end).
    pub fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<usize, Error<F::Error>> {
        let cur = *self.current_or_err()?;
        if offset >= cur.len {
            return Ok(0);
        }
        let n = buf.len().min((cur.len - offset) as usize);
        read_content(&mut self.flash, &self.geo, cur.format, cur.block, u64::from(offset), &mut buf[..n])?;
        Ok(n)
    }

    /// Re-read the current config and check its CRC-32C (for example before sending it to the
    /// backup).
    pub fn verify(&mut self) -> Result<(), Error<F::Error>> {
        let cur = *self.current_or_err()?;
        if data_crc(&mut self.flash, &self.geo, cur.format, cur.block, cur.len)? == cur.crc {
            Ok(())
        } else {
            Err(Error::Corrupt { block: cur.block, reason: CorruptReason::DataCrc })
        }
    }

    /// The flash below.
    pub fn flash(&mut self) -> &mut F {
        &mut self.flash
    }

    /// Unmount: give the flash back (a save in progress is abandoned).
    pub fn into_inner(self) -> F {
        self.flash
    }
}
