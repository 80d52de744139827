//! Node settings in a small key-value area, over `sequential-storage`'s map.
//!
//! [`NodeSettings`] keeps the few values a node must remember across reboots: its priority, the
//! selected config (primary or secondary), a boot counter and the last election term it saw.
//! `sequential-storage` stores the items (append-only with CRCs, garbage-collecting pages); this
//! module adds typed accessors, skips writes of unchanged values (no flash wear for a `set` that
//! changes nothing), calls [`Durable::sync`] after each change, and maps every failure to a named
//! [`Error`].
//!
//! **Two mirrored maps.** The area is split in two halves, each a `sequential-storage` map; every
//! change goes to half A, sync, then to half B, sync. Measured reason: with the mock's power cuts,
//! a cut that tears the erase of the page `sequential-storage` has just migrated away from (its
//! garbage collection) can make the whole map read as empty: every setting lost, including the
//! last term (`tests/kv.rs` sweeps those cut points). With the mirror a cut can damage only the
//! half being written; reads take A, or B when A has lost the key or fails, and the first access
//! after a mount reconciles the halves (a damaged half is erased and refilled from the other, an
//! interrupted double write is completed). Cost: twice the bytes and erases of a single map.
//!
//! Flash requirement (from `sequential-storage`): after a power cut it may program a word a second
//! time, clearing more bits (re-closing a page whose closing word was torn). NOR flash without ECC
//! words allows that; flashes that forbid any second program of a word (ECC words, e.g. STM32H7)
//! need `sequential-storage`'s own guidance. The config store never does it.
//!
//! `sequential-storage` 8 is async-only; the flash traits here are blocking. [`Blocking`] gives a
//! blocking flash the async traits, and `block_on` polls the resulting future, which never waits,
//! with a no-op waker. No executor, no allocation.

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use sequential_storage::cache::{Cache, Uncached};
use sequential_storage::map::{MapConfig, MapStorage};

use crate::config_store::ConfigName;
use crate::durable::Durable;
use crate::error::Error;
/// Failover records kept: a ring, record `seq` under key
/// [`HISTORY_KEY`]` + seq % HISTORY` (the oldest is overwritten).
pub const HISTORY: usize = 8;
/// The key of the ring's first entry (keys 16..24; part of the format).
pub const HISTORY_KEY: u8 = 16;

/// The settings kept, with their key in the map. Keys are part of the on-flash format: never
/// reuse one for another meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Setting {
    /// `configure node slot <A|B> priority <n>` (u8; lower wins; unset = slot order).
    Priority = 1,
    /// The config the node boots from (u8: 1 primary, 2 secondary).
    SelectedConfig = 2,
    /// Boots counted so far (u32).
    BootCount = 3,
    /// The highest election term seen (u64): a node never goes back to an older term.
    LastTerm = 4,
}

/// Data buffer for `sequential-storage`: key + value rounded up to the word size, with room for
/// any `WRITE_SIZE` up to 32 (its own limit).
const BUF_LEN: usize = 64;
/// A blocking flash never returns `Pending`; bound the polls anyway so nothing can spin forever.
const MAX_POLLS: u32 = 16;

/// A blocking `embedded-storage` flash seen through the `embedded-storage-async` traits that
/// `sequential-storage` requires. Every method completes on the first poll.
#[derive(Debug)]
pub struct Blocking<F>(pub F);

impl<F: ErrorType> ErrorType for Blocking<F> {
    type Error = F::Error;
}

impl<F: ReadNorFlash> embedded_storage_async::nor_flash::ReadNorFlash for Blocking<F> {
    const READ_SIZE: usize = F::READ_SIZE;
    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.0.read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

impl<F: NorFlash> embedded_storage_async::nor_flash::NorFlash for Blocking<F> {
    const WRITE_SIZE: usize = F::WRITE_SIZE;
    const ERASE_SIZE: usize = F::ERASE_SIZE;
    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.0.erase(from, to)
    }
    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.0.write(offset, bytes)
    }
}

/// Run a future that never waits (all I/O below it is blocking). `None` if it did wait.
pub fn block_on<T>(fut: impl Future<Output = T>) -> Option<T> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..MAX_POLLS {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return Some(v);
        }
    }
    None
}

type Map<F> = MapStorage<u8, Blocking<F>, Cache<Uncached, Uncached, Uncached, u8>>;

/// Map a `sequential-storage` error to ours.
fn map_err<E>(e: sequential_storage::Error<E>, key: u8) -> Error<E> {
    use sequential_storage::Error as S;
    match e {
        S::Storage { value, .. } => Error::Flash(value),
        S::FullStorage => Error::KvFull,
        S::Corrupted { .. } => Error::KvCorrupt,
        S::SerializationError(_) => Error::KvBadValue { key },
        _ => Error::KvInternal,
    }
}

/// The value types of the settings, and their form in the RAM cache.
trait SettingValue: for<'a> sequential_storage::map::Value<'a> + PartialEq + Copy {
    fn to_u64(self) -> u64;
    fn from_u64(v: u64) -> Self;
}

macro_rules! setting_value {
    ($($t:ty),*) => {$(
        impl SettingValue for $t {
            fn to_u64(self) -> u64 {
                u64::from(self)
            }
            fn from_u64(v: u64) -> Self {
                // Only values of this type are cached under its key.
                v as $t
            }
        }
    )*};
}
setting_value!(u8, u32, u64);

/// Number of keys (`Setting` discriminants 1..=4), for the cache.
const KEYS: usize = 5;

/// Why a half of the key-value area was erased when it was first read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KvDamage {
    /// `sequential-storage` found the map corrupt.
    Corrupt,
    /// A stored value could not be decoded (setting `key`).
    BadValue {
        /// Key of the setting.
        key: u8,
    },
    /// Reading it failed (a flash error, or `sequential-storage` could not make sense of it).
    Unreadable,
    /// It is not erased, yet holds no readable setting: zeros, random bytes, another format.
    NoSettings,
    /// It refused the writes that would have brought it in line with the other half.
    RefusedWrites,
}

impl core::fmt::Display for KvDamage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Corrupt => f.write_str("corrupt key-value map"),
            Self::BadValue { key } => write!(f, "setting {key} has an undecodable value"),
            Self::Unreadable => f.write_str("unreadable"),
            Self::NoSettings => f.write_str("written, but no readable setting (zeros, random bytes?)"),
            Self::RefusedWrites => f.write_str("refused writes"),
        }
    }
}

impl KvDamage {
    fn of<E>(e: &Error<E>) -> Self {
        match e {
            Error::KvCorrupt => Self::Corrupt,
            Error::KvBadValue { key } => Self::BadValue { key: *key },
            _ => Self::Unreadable,
        }
    }
}

/// What the first read of the area found ([`NodeSettings::mount`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SettingsReport {
    /// Both halves hold no setting and are erased (0xFF): a new area, every setting its default.
    pub blank: bool,
    /// Per half (A, B): why it was erased and rebuilt from the other, if it was.
    pub rebuilt: [Option<KvDamage>; 2],
}

impl SettingsReport {
    /// Both halves were damaged: the area was reformatted and every setting is its default.
    pub fn reformatted(&self) -> bool {
        self.rebuilt[0].is_some() && self.rebuilt[1].is_some()
    }

    /// The first reason a half was rebuilt.
    pub fn damage(&self) -> Option<KvDamage> {
        self.rebuilt[0].or(self.rebuilt[1])
    }
}

/// Node settings in a key-value area of at least four erase blocks, an even number (usually a
/// [`Partition`](crate::Partition)); see the module docs.
///
/// Values read or written are cached in RAM (the area has no other writer while this owns the
/// flash), so reads after the first and unchanged `set`s cost no flash access.
pub struct NodeSettings<F: NorFlash> {
    flash: F,
    halves: [core::ops::Range<u32>; 2],
    buf: [u8; BUF_LEN],
    /// `Some(None)`: known unset; `Some(Some(v))`: known value; `None`: not read yet.
    cache: [Option<Option<u64>>; KEYS],
    /// The halves were reconciled since this was created.
    reconciled: bool,
    /// What the reconciliation found.
    report: SettingsReport,
}

impl<F: NorFlash> core::fmt::Debug for NodeSettings<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NodeSettings").field("halves", &self.halves).finish_non_exhaustive()
    }
}

/// All keys, in order.
const ALL: [Setting; 4] = [Setting::Priority, Setting::SelectedConfig, Setting::BootCount, Setting::LastTerm];

impl<F: NorFlash + Durable> NodeSettings<F> {
    /// Use `flash` (its whole capacity) as the key-value area. Nothing is read or written yet;
    /// the first access reconciles the two halves (and `sequential-storage` repairs each).
    pub fn new(flash: F) -> Result<Self, Error<F::Error>> {
        let geometry = |reason| Error::Geometry { reason };
        let capacity = u32::try_from(flash.capacity()).map_err(|_| geometry("area over 4 GiB"))?;
        let block = F::ERASE_SIZE as u32;
        if block == 0
            || capacity % block != 0
            || capacity / block < 4
            || !(capacity / block).is_multiple_of(2)
        {
            return Err(geometry("key-value area: needs an even number of erase blocks, at least 4"));
        }
        let half = capacity / 2;
        let halves = [0..half, half..capacity];
        for range in &halves {
            MapConfig::<Blocking<F>>::try_new(range.clone())
                .map_err(|_| geometry("key-value area: erase blocks too small or WRITE_SIZE over 32"))?;
        }
        Ok(Self {
            flash,
            halves,
            buf: [0; BUF_LEN],
            cache: [None; KEYS],
            reconciled: false,
            report: SettingsReport::default(),
        })
    }

    /// Run `op` on the map of half `h`.
    fn with_map<T>(
        &mut self,
        h: usize,
        key: u8,
        op: impl AsyncFnOnce(&mut Map<&mut F>, &mut [u8]) -> Result<T, sequential_storage::Error<F::Error>>,
    ) -> Result<T, Error<F::Error>> {
        let config = MapConfig::try_new(self.halves[h].clone()).map_err(|_| Error::KvInternal)?;
        let mut map = MapStorage::new(Blocking(&mut self.flash), config, Cache::new_uncached());
        match block_on(op(&mut map, &mut self.buf)) {
            Some(r) => r.map_err(|e| map_err(e, key)),
            None => Err(Error::KvInternal),
        }
    }

    fn fetch_half<V: SettingValue>(&mut self, h: usize, key: Setting) -> Result<Option<V>, Error<F::Error>> {
        let k = key as u8;
        self.with_map(h, k, async |map, buf| map.fetch_item::<V>(buf, &k).await)
    }

    fn store_half<V: SettingValue>(
        &mut self,
        h: usize,
        key: Setting,
        value: V,
    ) -> Result<(), Error<F::Error>> {
        let k = key as u8;
        self.with_map(h, k, async |map, buf| map.store_item(buf, &k, &value).await)?;
        self.flash.sync()?;
        Ok(())
    }

    /// A setting of either type, as u64 (`half` = which map).
    fn fetch_any(&mut self, h: usize, key: Setting) -> Result<Option<u64>, Error<F::Error>> {
        Ok(match key {
            Setting::Priority | Setting::SelectedConfig => self.fetch_half::<u8>(h, key)?.map(u64::from),
            Setting::BootCount => self.fetch_half::<u32>(h, key)?.map(u64::from),
            Setting::LastTerm => self.fetch_half::<u64>(h, key)?,
        })
    }

    fn store_any(&mut self, h: usize, key: Setting, value: u64) -> Result<(), Error<F::Error>> {
        match key {
            Setting::Priority | Setting::SelectedConfig => self.store_half(h, key, value as u8),
            Setting::BootCount => self.store_half(h, key, value as u32),
            Setting::LastTerm => self.store_half(h, key, value),
        }
    }

    fn erase_half(&mut self, h: usize) -> Result<(), Error<F::Error>> {
        self.with_map(h, 0, async |map, _| map.erase_all().await)?;
        self.flash.sync()?;
        Ok(())
    }

    /// Whether every byte of half `h` is erased (0xFF).
    fn half_erased(&mut self, h: usize) -> Result<bool, Error<F::Error>> {
        let range = self.halves[h].clone();
        let mut at = range.start;
        while at < range.end {
            let n = (range.end - at).min(BUF_LEN as u32);
            let chunk = &mut self.buf[..n as usize];
            self.flash.read(at, chunk)?;
            if chunk.iter().any(|b| *b != 0xFF) {
                return Ok(false);
            }
            at += n;
        }
        Ok(true)
    }

    /// Make both halves hold the same values: a half that fails, or that holds no setting
    /// although it is not erased (zeros, random bytes), is erased and refilled from the other; a
    /// key missing or older in B (a double write cut short) is copied from A, a key A lost is
    /// copied from B. If both halves fail, both are erased and `KvCorrupt` is returned once (the
    /// settings are then unset). What was found goes to [`report`](Self::report).
    fn reconcile(&mut self) -> Result<(), Error<F::Error>> {
        if self.reconciled {
            return Ok(());
        }
        let mut values = [[None; 4]; 2];
        // The failover records' ordinals, per half and ring entry.
        let mut seqs = [[None; HISTORY]; 2];
        let mut bad: [Option<KvDamage>; 2] = [None; 2];
        for h in 0..2 {
            for (i, key) in ALL.iter().enumerate() {
                match self.fetch_any(h, *key) {
                    Ok(v) => values[h][i] = v,
                    Err(e) => {
                        warn!("node settings: half {} unreadable at key {}, rebuilding it", h, *key as u8);
                        bad[h] = Some(KvDamage::of(&e));
                        break;
                    }
                }
            }
            for (i, seq) in seqs[h].iter_mut().enumerate() {
                if bad[h].is_some() {
                    break;
                }
                match self.fetch_record(h, i) {
                    Ok(r) => *seq = r.map(|r| r.seq),
                    Err(e) => {
                        warn!("node settings: half {} unreadable at failover record {}, rebuilding it", h, i);
                        bad[h] = Some(KvDamage::of(&e));
                    }
                }
            }
            // Garbage may read as an empty map; an empty map on flash is erased. Nothing to lose
            // by erasing it, and writes into it would fail (bits already 0).
            let empty = values[h] == [None; 4] && seqs[h] == [None; HISTORY];
            if bad[h].is_none() && empty && !self.half_erased(h).unwrap_or(false) {
                warn!("node settings: half {} holds no setting but is not erased, rebuilding it", h);
                bad[h] = Some(KvDamage::NoSettings);
            }
        }
        let blank = bad == [None; 2] && values == [[None; 4]; 2] && seqs == [[None; HISTORY]; 2];
        self.report = SettingsReport { blank, rebuilt: bad };
        for h in 0..2 {
            if bad[h].is_some() {
                self.erase_half(h)?;
                values[h] = [None; 4];
                seqs[h] = [None; HISTORY];
            }
        }
        self.reconciled = true;
        if bad[0].is_some() && bad[1].is_some() {
            self.cache = [Some(None); KEYS];
            return Err(Error::KvCorrupt);
        }
        // A is written first, so A's value wins; B fills keys A lost.
        let merged: [Option<u64>; 4] = core::array::from_fn(|i| values[0][i].or(values[1][i]));
        for (h, has) in values.iter().enumerate() {
            if *has == merged {
                continue;
            }
            // A half that reads as empty after a torn erase may still refuse writes: then erase
            // it and write every setting again.
            if self.fill_half(h, has, &merged).is_err() {
                self.report.rebuilt[h].get_or_insert(KvDamage::RefusedWrites);
                self.erase_half(h)?;
                self.fill_half(h, &[None; 4], &merged)?;
            }
        }
        for (i, key) in ALL.iter().enumerate() {
            self.cache[*key as usize] = Some(merged[i]);
        }
        self.reconcile_records(&seqs, &merged)
    }

    /// Store into half `h` every value of `want` that `has` lacks or differs from.
    fn fill_half(
        &mut self,
        h: usize,
        has: &[Option<u64>; 4],
        want: &[Option<u64>; 4],
    ) -> Result<(), Error<F::Error>> {
        for (i, key) in ALL.iter().enumerate() {
            if let Some(v) = want[i] {
                if has[i] != Some(v) {
                    self.store_any(h, *key, v)?;
                }
            }
        }
        Ok(())
    }

    fn fetch<V: SettingValue>(&mut self, key: Setting) -> Result<Option<V>, Error<F::Error>> {
        if let Err(e) = self.reconcile() {
            self.reconciled = false;
            return Err(e);
        }
        if let Some(known) = self.cache[key as usize] {
            return Ok(known.map(V::from_u64));
        }
        // Not cached (after an error): A, else B.
        let value = match self.fetch_half::<V>(0, key) {
            Ok(Some(v)) => Some(v),
            Ok(None) => self.fetch_half::<V>(1, key)?,
            Err(e) => self.fetch_half::<V>(1, key).map_err(|_| e)?,
        };
        self.cache[key as usize] = Some(value.map(V::to_u64));
        Ok(value)
    }

    fn store<V: SettingValue>(&mut self, key: Setting, value: V) -> Result<(), Error<F::Error>> {
        if self.fetch::<V>(key)? == Some(value) {
            return Ok(());
        }
        // Whatever happens below, the flash may now hold the old or the new value.
        self.cache[key as usize] = None;
        self.store_half(0, key, value)?;
        self.store_half(1, key, value)?;
        self.cache[key as usize] = Some(Some(value.to_u64()));
        Ok(())
    }

    /// Read the area once (reconciling the halves, see the module docs) and say what was found:
    /// blank, intact, a half rebuilt from the other, or both halves damaged and the area
    /// reformatted (every setting then its default; `Ok` with
    /// [`SettingsReport::reformatted`], where the first `get` would return `KvCorrupt`). Call it
    /// at boot to log what happened; an `Err` is a flash error while erasing.
    pub fn mount(&mut self) -> Result<SettingsReport, Error<F::Error>> {
        match self.reconcile() {
            Ok(()) => Ok(self.report),
            Err(Error::KvCorrupt) if self.reconciled => Ok(self.report),
            Err(e) => Err(e),
        }
    }

    /// What the first read of the area found (all clear before it).
    pub fn report(&self) -> SettingsReport {
        self.report
    }

    /// The node priority, `None` when never configured.
    pub fn priority(&mut self) -> Result<Option<u8>, Error<F::Error>> {
        self.fetch::<u8>(Setting::Priority)
    }

    /// Set the node priority.
    pub fn set_priority(&mut self, priority: u8) -> Result<(), Error<F::Error>> {
        self.store(Setting::Priority, priority)
    }

    /// The selected config; primary when never set.
    pub fn selected_config(&mut self) -> Result<ConfigName, Error<F::Error>> {
        match self.fetch::<u8>(Setting::SelectedConfig)? {
            None => Ok(ConfigName::Primary),
            Some(code) => {
                ConfigName::from_code(code).ok_or(Error::KvBadValue { key: Setting::SelectedConfig as u8 })
            }
        }
    }

    /// Select the config to boot from.
    pub fn set_selected_config(&mut self, name: ConfigName) -> Result<(), Error<F::Error>> {
        self.store(Setting::SelectedConfig, name as u8)
    }

    /// Boots counted so far (0 when never counted).
    pub fn boot_count(&mut self) -> Result<u32, Error<F::Error>> {
        Ok(self.fetch::<u32>(Setting::BootCount)?.unwrap_or(0))
    }

    /// Count one more boot; returns the new count.
    pub fn increment_boot_count(&mut self) -> Result<u32, Error<F::Error>> {
        self.advance_boot_count(0)
    }

    /// Count a boot, at least to `at_least`: a board with a clock passes
    /// the time, so a wiped or replaced flash still counts above every boot
    /// before it (the count is the node's incarnation, which peers require
    /// to grow). Durable when this returns.
    pub fn advance_boot_count(&mut self, at_least: u32) -> Result<u32, Error<F::Error>> {
        let n = self.boot_count()?.saturating_add(1).max(at_least);
        self.store(Setting::BootCount, n)?;
        Ok(n)
    }

    /// The last election term seen (0 when none).
    pub fn last_term(&mut self) -> Result<u64, Error<F::Error>> {
        Ok(self.fetch::<u64>(Setting::LastTerm)?.unwrap_or(0))
    }

    /// Record the election term; durable when this returns.
    pub fn set_last_term(&mut self, term: u64) -> Result<(), Error<F::Error>> {
        self.store(Setting::LastTerm, term)
    }

    /// Erase the whole area (every setting back to unset).
    pub fn erase_all(&mut self) -> Result<(), Error<F::Error>> {
        self.cache = [None; KEYS];
        self.erase_half(0)?;
        self.erase_half(1)?;
        self.cache = [Some(None); KEYS];
        self.reconciled = true;
        Ok(())
    }

    /// Give the flash back.
    pub fn into_inner(self) -> F {
        self.flash
    }
}

mod history;

#[cfg(all(test, feature = "mock"))]
mod tests;
