//! The config store: XOS `save` semantics on NOR flash.
//!
//! One [`ConfigStore`] owns a region (usually a [`Partition`](crate::Partition)) for one config,
//! `primary.cfg` or `secondary.cfg`. The region is a ring of erase blocks; each save appends a
//! record starting on the erase block after the current config's record, erasing blocks just
//! before it programs them and never touching the blocks of the current config. A record is
//! `header | data | trailer | commit marker`; the commit marker is programmed last, after a
//! [`Durable::sync`], so a power cut at any byte of a save leaves the old config or the new one,
//! never neither and never a mix. [`ConfigStore::mount`] finds the newest committed record whose
//! CRC-32C matches; it only reads, so a cut during mount is harmless. The format is in
//! `docs/flash-format.md`.
//!
//! Saves and reads are streamed: [`ConfigStore::begin_save`] (length, time, software version),
//! [`ConfigStore::write`] any number of chunks, [`ConfigStore::commit`]; [`ConfigStore::read`]
//! reads at an offset into the caller's buffer. RAM use is a few hundred bytes whatever the config
//! size.
//!
//! Requirements on the flash: `READ_SIZE` 1, `WRITE_SIZE` a power of two up to
//! [`MAX_WRITE_SIZE`], `ERASE_SIZE` a multiple of `WRITE_SIZE` and at least 128 bytes, at least
//! two erase blocks in the region. The largest config a save can take is the region minus the
//! blocks of the current config minus 96 bytes of record overhead ([`ConfigStore::max_len`]), so
//! size the region to at least twice the largest config; more blocks spread wear further.

use core::fmt;

use crc::Digest;
use embedded_storage::nor_flash::NorFlash;

mod format;

use format::{COMMIT, HEADER_LEN, Header, TRAILER_LEN, Trailer};

use crate::CRC32C;
use crate::durable::Durable;
use crate::error::{CorruptReason, Error};

/// On-flash format version written in every record header.
pub const FORMAT_VERSION: u8 = 1;
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
}

impl ConfigInfo {
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
    /// Erase blocks whose first bytes are neither erased (0xFF) nor a record header: the data of
    /// a record spanning blocks, the leftovers of older records, or damage. With no record at
    /// all, any such block means the region was overwritten (see [`Damage::Unrecognised`]).
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

/// Region geometry, fixed at mount.
#[derive(Debug, Clone, Copy)]
struct Geo {
    block_size: u32,
    blocks: u32,
    write_size: u32,
}

impl Geo {
    fn region(&self) -> u32 {
        self.block_size * self.blocks
    }
    fn align(&self, n: u32) -> u64 {
        u64::from(n).div_ceil(u64::from(self.write_size)) * u64::from(self.write_size)
    }
    fn trailer_len(&self) -> u32 {
        TRAILER_LEN.max(self.write_size)
    }
    fn commit_len(&self) -> u32 {
        (COMMIT.len() as u32).max(self.write_size)
    }
    fn overhead(&self) -> u32 {
        HEADER_LEN + self.trailer_len() + self.commit_len()
    }
    /// Record bytes for `len` bytes of data (u64: `len` may come from a damaged header).
    fn footprint(&self, len: u32) -> u64 {
        u64::from(self.overhead()) + self.align(len)
    }
    /// Erase blocks a record of `len` bytes spans.
    fn blocks_for(&self, len: u32) -> u64 {
        self.footprint(len).div_ceil(u64::from(self.block_size))
    }
    /// Region offset of byte `rel` of the record starting at `block` (wraps at the region end).
    fn at(&self, block: u32, rel: u64) -> u32 {
        ((u64::from(block) * u64::from(self.block_size) + rel) % u64::from(self.region())) as u32
    }
}

/// What one block start holds.
enum Probe {
    /// Erased (the first bytes are all 0xFF).
    Erased,
    /// Not a record header (data of a record spanning blocks, garbage).
    Nothing,
    Damaged(CorruptReason),
    Uncommitted(Header),
    Committed(Header, u32),
}

/// A save in progress.
struct Save {
    info: ConfigInfo,
    header_crc: u32,
    written: u32,
    /// Next record-relative offset to program (always `WRITE_SIZE`-aligned).
    pos: u64,
    /// Record-relative offset up to which blocks have been erased for this save.
    erased_to: u64,
    pending: [u8; MAX_WRITE_SIZE],
    pending_len: usize,
    digest: Digest<'static, u32>,
    /// A replacing save ([`ConfigStore::begin_replace`]): the record-relative offset of the
    /// current record's first block. Just before that block is erased the current config is
    /// forgotten.
    gives_up_at: Option<u64>,
}

impl fmt::Debug for Save {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Save")
            .field("info", &self.info)
            .field("written", &self.written)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
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
    save: Option<Save>,
}

impl<F: NorFlash + Durable> ConfigStore<F> {
    /// Mount the store of config `name` on `flash` (its whole capacity is the region): find the
    /// newest committed record whose CRCs match. Never writes. Fails only on a flash error or an
    /// unsuitable geometry; corrupt or torn records are counted in [`report`](Self::report).
    pub fn mount(mut flash: F, name: ConfigName) -> Result<Self, Error<F::Error>> {
        let geo = check_geometry::<F>(flash.capacity())?;
        let (current, report, next_gen) = recover(&mut flash, name, &geo)?;
        let next_block = match &current {
            Some(c) => ((u64::from(c.block) + geo.blocks_for(c.len)) % u64::from(geo.blocks)) as u32,
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
        Ok(Self { flash, name, geo, current, report, damage, next_block, next_gen, save: None })
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
    /// Bytes the next record may use: the blocks not holding the current record.
    fn free_bytes(&self) -> u64 {
        let used = self.current.map_or(0, |c| self.geo.blocks_for(c.len));
        u64::from(self.geo.blocks).saturating_sub(used) * u64::from(self.geo.block_size)
    }

    /// Largest config the next save can take without touching the current one (0 also when not
    /// even an empty config fits: then every save is refused with `TooLarge`).
    pub fn max_len(&self) -> u32 {
        let max = self.free_bytes().saturating_sub(u64::from(self.geo.overhead()));
        // Round down to WRITE_SIZE so that the padded data fits too.
        let max = max / u64::from(self.geo.write_size) * u64::from(self.geo.write_size);
        u32::try_from(max).unwrap_or(u32::MAX)
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
        read_ring(
            &mut self.flash,
            &self.geo,
            cur.block,
            u64::from(HEADER_LEN) + u64::from(offset),
            &mut buf[..n],
        )?;
        Ok(n)
    }

    /// Re-read the current config and check its CRC-32C (for example before sending it to the
    /// backup).
    pub fn verify(&mut self) -> Result<(), Error<F::Error>> {
        let cur = *self.current_or_err()?;
        if data_crc(&mut self.flash, &self.geo, cur.block, cur.len)? == cur.crc {
            Ok(())
        } else {
            Err(Error::Corrupt { block: cur.block, reason: CorruptReason::DataCrc })
        }
    }

    /// Start saving a config of exactly `len` bytes. Erases the first block of the new record and
    /// programs its header; the current config stays readable until [`commit`](Self::commit).
    pub fn begin_save(&mut self, len: u32, info: &SaveInfo<'_>) -> Result<(), Error<F::Error>> {
        if self.save.is_some() {
            return Err(Error::SaveInProgress);
        }
        let max = self.max_len();
        if len > max || self.geo.footprint(len) > self.free_bytes() {
            return Err(Error::TooLarge { len, max });
        }
        self.start_save(len, info, None)
    }

    /// Largest config [`begin_replace`](Self::begin_replace) can take: the whole region minus the
    /// record overhead (the current config may be given up for it).
    pub fn max_len_replacing(&self) -> u32 {
        let w = u64::from(self.geo.write_size);
        let max = u64::from(self.geo.region()).saturating_sub(u64::from(self.geo.overhead())) / w * w;
        u32::try_from(max).unwrap_or(u32::MAX)
    }

    /// Start a save that replaces the current config even when the two cannot both fit the region
    /// (a config arriving from elsewhere that must win, such as the master's saved configuration
    /// on a backup). When `len` fits beside the current config this is
    /// [`begin_save`](Self::begin_save) and returns `false`. Otherwise it returns `true`: the new
    /// record starts after the current one as usual and walks the ring into the current record's
    /// blocks; the current config stays readable (and is what a power cut leaves) until the save
    /// erases the current record's first block; from then on [`current`](Self::current) is `None`
    /// until the commit, and a power cut before the commit leaves no config of this generation
    /// (an older record still intact in the ring, if any, or none). `TooLarge` (with
    /// [`max_len_replacing`](Self::max_len_replacing)) only when `len` exceeds the region.
    pub fn begin_replace(&mut self, len: u32, info: &SaveInfo<'_>) -> Result<bool, Error<F::Error>> {
        if self.save.is_some() {
            return Err(Error::SaveInProgress);
        }
        if len <= self.max_len() && self.geo.footprint(len) <= self.free_bytes() {
            self.start_save(len, info, None)?;
            return Ok(false);
        }
        let max = self.max_len_replacing();
        if len > max || self.geo.footprint(len) > u64::from(self.geo.region()) {
            return Err(Error::TooLarge { len, max });
        }
        // Record-relative offset of the current record's first block: erased last of it.
        let gives_up_at = self.current.map(|c| {
            let blocks = self.geo.blocks;
            u64::from((c.block + blocks - self.next_block) % blocks) * u64::from(self.geo.block_size)
        });
        warn!(
            "config store {}: {} bytes do not fit beside the current {} bytes; replacing it",
            self.name.file_name(),
            len,
            self.current.map_or(0, |c| c.len)
        );
        self.start_save(len, info, gives_up_at)?;
        Ok(true)
    }

    /// `begin_save` once the room is checked; `gives_up_at`: see [`Save::gives_up_at`].
    fn start_save(
        &mut self,
        len: u32,
        info: &SaveInfo<'_>,
        gives_up_at: Option<u64>,
    ) -> Result<(), Error<F::Error>> {
        let generation = u32::try_from(self.next_gen).map_err(|_| Error::GenerationExhausted)?;
        // A failed save still used its generation: the next one must outrank its header.
        self.next_gen += 1;
        let mut sw_version = [0; SW_VERSION_LEN];
        let mut cut = info.sw_version.len().min(SW_VERSION_LEN);
        while !info.sw_version.is_char_boundary(cut) {
            cut -= 1;
        }
        sw_version[..cut].copy_from_slice(&info.sw_version.as_bytes()[..cut]);
        let header = Header { generation, len, saved_at: info.saved_at, sw_version };
        let bytes = header.encode(self.name, &self.geo);
        let header_crc = Header::crc_of(&bytes);
        let mut save = Save {
            info: ConfigInfo {
                name: self.name,
                generation,
                len,
                crc: 0,
                saved_at: info.saved_at,
                block: self.next_block,
                sw_version,
            },
            header_crc,
            written: 0,
            pos: 0,
            erased_to: 0,
            pending: [0xFF; MAX_WRITE_SIZE],
            pending_len: 0,
            digest: CRC32C.digest(),
            gives_up_at,
        };
        debug!("config store: save generation {} of {} bytes at block {}", generation, len, self.next_block);
        program(&mut self.flash, &self.geo, &mut save, &bytes, &mut self.current)?;
        self.save = Some(save);
        Ok(())
    }

    /// Append `chunk` to the save in progress. Any error abandons the save (the current config is
    /// untouched; begin again).
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), Error<F::Error>> {
        let Some(mut save) = self.save.take() else {
            return Err(Error::NoSaveInProgress);
        };
        let len = save.info.len;
        if u64::from(save.written) + chunk.len() as u64 > u64::from(len) {
            return Err(Error::Overflow { len });
        }
        save.digest.update(chunk);
        save.written += chunk.len() as u32;
        let w = self.geo.write_size as usize;
        let mut rest = chunk;
        if save.pending_len > 0 {
            let take = (w - save.pending_len).min(rest.len());
            save.pending[save.pending_len..save.pending_len + take].copy_from_slice(&rest[..take]);
            save.pending_len += take;
            rest = &rest[take..];
            if save.pending_len == w {
                let word = save.pending;
                program(&mut self.flash, &self.geo, &mut save, &word[..w], &mut self.current)?;
                save.pending_len = 0;
            }
        }
        if !rest.is_empty() {
            let bulk = rest.len() / w * w;
            program(&mut self.flash, &self.geo, &mut save, &rest[..bulk], &mut self.current)?;
            let tail = &rest[bulk..];
            save.pending[..tail.len()].copy_from_slice(tail);
            save.pending_len = tail.len();
        }
        self.save = Some(save);
        Ok(())
    }

    /// Finish the save: pad and program the last word, read the data back and check its CRC,
    /// program the trailer, sync, program the commit marker, sync. When this returns `Ok` the new
    /// config is current (and durable); on any error the previous config stays current.
    pub fn commit(&mut self) -> Result<&ConfigInfo, Error<F::Error>> {
        let Some(mut save) = self.save.take() else {
            return Err(Error::NoSaveInProgress);
        };
        let geo = self.geo;
        let len = save.info.len;
        if save.written != len {
            return Err(Error::LengthMismatch { len, written: save.written });
        }
        let w = geo.write_size as usize;
        if save.pending_len > 0 {
            let mut word = save.pending;
            word[save.pending_len..w].fill(0xFF);
            program(&mut self.flash, &geo, &mut save, &word[..w], &mut self.current)?;
        }
        let crc = save.digest.clone().finalize();
        if data_crc(&mut self.flash, &geo, save.info.block, len)? != crc {
            warn!("config store: read-back of the new record at block {} failed", save.info.block);
            return Err(Error::VerifyFailed { block: save.info.block });
        }
        let mut trailer = [0xFF; MAX_WRITE_SIZE];
        Trailer { data_crc: crc, len, generation: save.info.generation }
            .encode(save.header_crc, &mut trailer);
        program(&mut self.flash, &geo, &mut save, &trailer[..geo.trailer_len() as usize], &mut self.current)?;
        // Data and trailer must be on the medium before the marker that makes them current.
        self.flash.sync()?;
        let mut marker = [0; MAX_WRITE_SIZE];
        for (i, b) in marker.iter_mut().enumerate() {
            *b = COMMIT[i % COMMIT.len()];
        }
        program(&mut self.flash, &geo, &mut save, &marker[..geo.commit_len() as usize], &mut self.current)?;
        self.flash.sync()?;
        save.info.crc = crc;
        let info = save.info;
        self.next_block = ((u64::from(info.block) + geo.blocks_for(len)) % u64::from(geo.blocks)) as u32;
        self.report.valid_records += 1;
        self.damage = None;
        debug!("config store: committed generation {}", info.generation);
        Ok(self.current.insert(info))
    }

    /// Abandon the save in progress, if any. Nothing on flash needs undoing: the record has no
    /// commit marker, and the next save erases its blocks.
    pub fn abort_save(&mut self) {
        self.save = None;
    }

    /// True between `begin_save` and the end of `commit` (or an error).
    pub fn save_in_progress(&self) -> bool {
        self.save.is_some()
    }

    /// `begin_save`, one `write`, `commit`.
    pub fn save(&mut self, data: &[u8], info: &SaveInfo<'_>) -> Result<&ConfigInfo, Error<F::Error>> {
        let len =
            u32::try_from(data.len()).map_err(|_| Error::TooLarge { len: u32::MAX, max: self.max_len() })?;
        self.begin_save(len, info)?;
        self.write(data)?;
        self.commit()
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

fn check_geometry<F: NorFlash>(capacity: usize) -> Result<Geo, Error<F::Error>> {
    let bad = |reason| Err(Error::Geometry { reason });
    if F::READ_SIZE != 1 {
        return bad("READ_SIZE must be 1");
    }
    if !F::WRITE_SIZE.is_power_of_two() || F::WRITE_SIZE > MAX_WRITE_SIZE {
        return bad("WRITE_SIZE must be a power of two up to 64");
    }
    if F::ERASE_SIZE < 128 || F::ERASE_SIZE % F::WRITE_SIZE != 0 {
        return bad("ERASE_SIZE must be a multiple of WRITE_SIZE and at least 128");
    }
    let Ok(capacity) = u32::try_from(capacity) else {
        return bad("region larger than 4 GiB");
    };
    let block_size = F::ERASE_SIZE as u32;
    if capacity % block_size != 0 {
        return bad("region size must be a multiple of ERASE_SIZE");
    }
    let blocks = capacity / block_size;
    if blocks < 2 {
        return bad("region must have at least two erase blocks");
    }
    Ok(Geo { block_size, blocks, write_size: F::WRITE_SIZE as u32 })
}

/// Read `buf.len()` bytes at byte `rel` of the record starting at `block`, across the region end.
fn read_ring<F: NorFlash>(
    flash: &mut F,
    geo: &Geo,
    block: u32,
    rel: u64,
    buf: &mut [u8],
) -> Result<(), F::Error> {
    let mut done = 0;
    while done < buf.len() {
        let at = geo.at(block, rel + done as u64);
        let n = (buf.len() - done).min((geo.region() - at) as usize);
        flash.read(at, &mut buf[done..done + n])?;
        done += n;
    }
    Ok(())
}

/// CRC-32C of the `len` data bytes of the record starting at `block`.
fn data_crc<F: NorFlash>(flash: &mut F, geo: &Geo, block: u32, len: u32) -> Result<u32, F::Error> {
    let mut digest = CRC32C.digest();
    let mut buf = [0; SCAN_CHUNK];
    let mut off = 0u32;
    while off < len {
        let n = (len - off).min(SCAN_CHUNK as u32) as usize;
        read_ring(flash, geo, block, u64::from(HEADER_LEN) + u64::from(off), &mut buf[..n])?;
        digest.update(&buf[..n]);
        off += n as u32;
    }
    Ok(digest.finalize())
}

/// Program `bytes` (a multiple of `WRITE_SIZE`) at the save's position, erasing each block of the
/// record just before its first byte is programmed. Never crosses a block boundary in one write,
/// so never the region end either.
///
/// A replacing save forgets `current` just before it erases the current record's first block.
fn program<F: NorFlash>(
    flash: &mut F,
    geo: &Geo,
    save: &mut Save,
    bytes: &[u8],
    current: &mut Option<ConfigInfo>,
) -> Result<(), F::Error> {
    let mut rest = bytes;
    while !rest.is_empty() {
        if save.pos >= save.erased_to {
            if save.gives_up_at == Some(save.erased_to) {
                save.gives_up_at = None;
                if let Some(old) = current.take() {
                    warn!("config store: overwriting the previous config (generation {})", old.generation);
                }
            }
            let from = geo.at(save.info.block, save.erased_to);
            flash.erase(from, from + geo.block_size)?;
            save.erased_to += u64::from(geo.block_size);
        }
        let n = rest.len().min((save.erased_to - save.pos) as usize);
        flash.write(geo.at(save.info.block, save.pos), &rest[..n])?;
        save.pos += n as u64;
        rest = &rest[n..];
    }
    Ok(())
}

/// Look at the start of `block`.
fn probe<F: NorFlash>(flash: &mut F, name: ConfigName, geo: &Geo, block: u32) -> Result<Probe, F::Error> {
    let mut h = [0; HEADER_LEN as usize];
    read_ring(flash, geo, block, 0, &mut h)?;
    if !Header::magic(&h) {
        return Ok(if h.iter().all(|b| *b == 0xFF) { Probe::Erased } else { Probe::Nothing });
    }
    let (header, crc) = match Header::decode(&h, name, geo) {
        Ok(d) => d,
        Err(reason) => return Ok(Probe::Damaged(reason)),
    };
    if geo.footprint(header.len) > u64::from(geo.region()) {
        return Ok(Probe::Damaged(CorruptReason::BadLength));
    }
    let trailer_at = u64::from(HEADER_LEN) + geo.align(header.len);
    let mut marker = [0; MAX_WRITE_SIZE];
    let marker = &mut marker[..geo.commit_len() as usize];
    read_ring(flash, geo, block, trailer_at + u64::from(geo.trailer_len()), marker)?;
    if marker.iter().enumerate().any(|(i, b)| *b != COMMIT[i % COMMIT.len()]) {
        return Ok(Probe::Uncommitted(header));
    }
    let mut t = [0; TRAILER_LEN as usize];
    read_ring(flash, geo, block, trailer_at, &mut t)?;
    match Trailer::decode(&t, crc) {
        Some(tr) if tr.len == header.len && tr.generation == header.generation => {
            Ok(Probe::Committed(header, tr.data_crc))
        }
        _ => Ok(Probe::Damaged(CorruptReason::TrailerCrc)),
    }
}

/// Find the newest committed record whose data matches its CRC. Returns it, the report and the
/// generation for the next save (above every valid header seen, committed or not).
fn recover<F: NorFlash>(
    flash: &mut F,
    name: ConfigName,
    geo: &Geo,
) -> Result<(Option<ConfigInfo>, MountReport, u64), Error<F::Error>> {
    let mut report = MountReport::default();
    let mut max_gen: Option<u32> = None;
    // Only records older than `limit` are candidates: raised each time the newest fails its CRC.
    let mut limit: Option<u32> = None;
    let mut first_pass = true;
    let current = loop {
        let mut best: Option<(u32, Header, u32)> = None;
        for block in 0..geo.blocks {
            let header = match probe(flash, name, geo, block)? {
                Probe::Erased => continue,
                Probe::Nothing => {
                    if first_pass {
                        report.foreign_blocks += 1;
                    }
                    continue;
                }
                Probe::Damaged(reason) => {
                    if first_pass {
                        report.note_corrupt(block, reason);
                    }
                    continue;
                }
                Probe::Uncommitted(h) => {
                    if first_pass {
                        report.torn_records += 1;
                    }
                    max_gen = max_gen.max(Some(h.generation));
                    continue;
                }
                Probe::Committed(h, data_crc) => {
                    max_gen = max_gen.max(Some(h.generation));
                    (h, data_crc)
                }
            };
            let (h, data_crc) = header;
            let eligible = limit.is_none_or(|l| h.generation < l);
            if eligible && best.is_none_or(|(_, b, _)| h.generation > b.generation) {
                best = Some((block, h, data_crc));
            }
        }
        first_pass = false;
        let Some((block, h, crc)) = best else { break None };
        if data_crc(flash, geo, block, h.len)? == crc {
            report.valid_records += 1;
            break Some(ConfigInfo {
                name,
                generation: h.generation,
                len: h.len,
                crc,
                saved_at: h.saved_at,
                block,
                sw_version: h.sw_version,
            });
        }
        report.note_corrupt(block, CorruptReason::DataCrc);
        limit = Some(h.generation);
    };
    let next_gen = max_gen.map_or(1, |g| u64::from(g) + 1);
    Ok((current, report, next_gen))
}

#[cfg(all(test, feature = "mock"))]
mod tests {
    // `drop(store)` ends the borrow of the flash before the test looks at it again.
    #![allow(clippy::unwrap_used, clippy::panic, clippy::drop_non_drop)]
    use rand::{RngCore, SeedableRng};

    use super::*;
    use crate::mock::{MockError, MockFlash};

    /// Eight 256-byte blocks, 4-byte words.
    type Mock = MockFlash<[u8; 2048], [u32; 8], 4, 256>;
    const INFO: SaveInfo<'static> = SaveInfo { saved_at: 7, sw_version: "test" };

    fn erased() -> Mock {
        MockFlash::new_erased([0u8; 2048], [0u32; 8]).unwrap()
    }

    fn text(len: usize, tag: u8) -> [u8; 2048] {
        let mut t = [0u8; 2048];
        for (i, b) in t[..len].iter_mut().enumerate() {
            *b = b'a' + ((i as u8).wrapping_add(tag)) % 26;
        }
        t
    }

    fn damage_of(flash: &mut Mock) -> Option<Damage> {
        ConfigStore::mount(flash, ConfigName::Primary).unwrap().damage()
    }

    fn read(flash: &mut Mock, len: usize) -> Option<[u8; 2048]> {
        let mut s = ConfigStore::mount(flash, ConfigName::Primary).unwrap();
        let cur = *s.current()?;
        assert_eq!(cur.len as usize, len, "{cur:?}");
        let mut out = [0u8; 2048];
        assert_eq!(s.read(0, &mut out[..len]).unwrap(), len);
        Some(out)
    }

    #[test]
    fn damage_names_what_the_mount_found() {
        // Never written: nothing to report.
        assert_eq!(damage_of(&mut erased()), None);
        // Zeros, random bytes: no record, the region holds data.
        let mut zeros = erased();
        zeros.contents_mut().fill(0);
        assert_eq!(damage_of(&mut zeros), Some(Damage::Unrecognised { blocks: 8 }));
        let mut random = erased();
        rand_pcg::Pcg64Mcg::seed_from_u64(1).fill_bytes(random.contents_mut());
        assert_eq!(damage_of(&mut random), Some(Damage::Unrecognised { blocks: 8 }));
        // One save, its data damaged: lost.
        let mut one = erased();
        ConfigStore::mount(&mut one, ConfigName::Primary).unwrap().save(&text(300, 0)[..300], &INFO).unwrap();
        one.contents_mut()[100] ^= 0x40;
        let d = damage_of(&mut one);
        assert_eq!(d, Some(Damage::Lost { block: 0, reason: CorruptReason::DataCrc }));
        // Its header damaged instead.
        one.contents_mut()[100] ^= 0x40;
        one.contents_mut()[9] ^= 1;
        assert_eq!(damage_of(&mut one), Some(Damage::Lost { block: 0, reason: CorruptReason::HeaderCrc }));
        // Two saves, the newest damaged: the older one is current, and that is said.
        let mut two = erased();
        let mut s = ConfigStore::mount(&mut two, ConfigName::Primary).unwrap();
        s.save(&text(300, 0)[..300], &INFO).unwrap();
        s.save(&text(300, 1)[..300], &INFO).unwrap();
        assert_eq!(s.damage(), None);
        let newest = s.current().unwrap().block;
        drop(s);
        two.contents_mut()[newest as usize * 256 + 80] ^= 1;
        assert_eq!(
            damage_of(&mut two),
            Some(Damage::FellBack { block: newest, reason: CorruptReason::DataCrc })
        );
        // A first save cut short.
        let mut torn = erased();
        let mut s = ConfigStore::mount(&mut torn, ConfigName::Primary).unwrap();
        s.begin_save(300, &INFO).unwrap();
        s.write(&text(300, 0)[..100]).unwrap();
        drop(s);
        assert_eq!(damage_of(&mut torn), Some(Damage::Interrupted { records: 1 }));
        // A commit clears it.
        let mut s = ConfigStore::mount(&mut zeros, ConfigName::Primary).unwrap();
        s.save(&text(10, 0)[..10], &INFO).unwrap();
        assert_eq!(s.damage(), None);
    }

    /// A config that does not fit beside the current one replaces it; one larger than the region
    /// is refused naming the largest possible.
    #[test]
    fn replace_takes_a_config_that_does_not_fit_beside_the_current_one() {
        let mut flash = erased();
        let mut s = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
        let (big, small) = (1500, 700); // 6 blocks and 4 blocks of 8
        s.save(&text(big, 0)[..big], &INFO).unwrap();
        assert!(matches!(s.begin_save(small as u32, &INFO), Err(Error::TooLarge { .. })));
        let max = s.max_len_replacing();
        assert_eq!(s.begin_replace(max + 1, &INFO), Err(Error::TooLarge { len: max + 1, max }));
        assert_eq!(s.current().map(|c| c.len), Some(big as u32), "a refused replace keeps the config");
        assert_eq!(s.begin_replace(small as u32, &INFO), Ok(true));
        s.write(&text(small, 1)[..small]).unwrap();
        s.commit().unwrap();
        drop(s);
        assert_eq!(read(&mut flash, small).unwrap()[..small], text(small, 1)[..small]);
        // Beside the current one when it fits: an ordinary save (the current one is kept).
        let mut s = ConfigStore::mount(&mut flash, ConfigName::Primary).unwrap();
        assert_eq!(s.begin_replace(300, &INFO), Ok(false));
        assert_eq!(s.current().map(|c| c.len), Some(small as u32));
        s.abort_save();
        // The whole region at most.
        assert_eq!(s.begin_replace(max, &INFO), Ok(true));
    }

    /// A power cut at every point of a replacing save: the old config until the save reaches the
    /// old record's first block, then none (or the new one once committed); never a mix; a later
    /// replace always works.
    #[test]
    fn replace_cut_anywhere_leaves_the_old_none_or_the_new_config() {
        let (big, small) = (1500, 700);
        let mut base = erased();
        ConfigStore::mount(&mut base, ConfigName::Primary)
            .unwrap()
            .save(&text(big, 0)[..big], &INFO)
            .unwrap();
        let replace = |flash: &mut Mock| -> Result<(), Error<MockError>> {
            let mut s = ConfigStore::mount(flash, ConfigName::Primary)?;
            s.begin_replace(small as u32, &INFO)?;
            for c in text(small, 1)[..small].chunks(100) {
                s.write(c)?;
            }
            s.commit().map(|_| ())
        };
        let mut full = erased();
        full.contents_mut().copy_from_slice(base.contents());
        full.reset_stats();
        replace(&mut full).unwrap();
        let units = full.stats().units;
        let (mut old, mut none, mut new) = (0, 0, 0);
        for cut in 0..=units {
            let mut f = erased();
            f.contents_mut().copy_from_slice(base.contents());
            f.cut_after(cut, cut);
            let r = replace(&mut f);
            assert_eq!(r.is_ok(), cut == units, "cut {cut}: {r:?}");
            f.reboot();
            let s = ConfigStore::mount(&mut f, ConfigName::Primary).unwrap();
            match s.current().map(|c| c.len as usize) {
                Some(n) if n == big => {
                    assert!(none == 0 && new == 0, "cut {cut}: the old config came back");
                    old += 1;
                }
                None => {
                    assert!(s.damage().is_some(), "cut {cut}: a lost config is reported");
                    assert_eq!(new, 0, "cut {cut}: the new config was lost again");
                    none += 1;
                }
                Some(n) => {
                    assert_eq!(n, small, "cut {cut}");
                    new += 1;
                }
            }
            drop(s);
            if new > 0 {
                assert_eq!(
                    read(&mut f, small).unwrap()[..small],
                    text(small, 1)[..small],
                    "cut {cut}: a mix"
                );
            } else if none == 0 {
                assert_eq!(read(&mut f, big).unwrap()[..big], text(big, 0)[..big], "cut {cut}: a mix");
            }
            replace(&mut f).unwrap_or_else(|e| panic!("cut {cut}: a later replace failed: {e:?}"));
            assert_eq!(read(&mut f, small).unwrap()[..small], text(small, 1)[..small], "cut {cut}");
        }
        assert!(old > 0 && none > 0 && new > 0, "old {old}, none {none}, new {new}");
    }
}
