//! Choosing the record a mount takes (docs/flash-format.md, "Recovery at
//! mount"): the newest committed record whose CRCs hold, format 2 before
//! format 1; never one lying inside the data of an intact format-1 record;
//! never one older than a record whose save cleaned the region. And whether
//! the next save must clean the region. Never writes.

use super::format::Header;
use super::mount::{Probe, data_crc, probe};
use super::*;

/// What a mount found.
pub(super) struct Found {
    pub current: Option<ConfigInfo>,
    pub report: MountReport,
    /// Generation for the next save: above every valid header seen (either format, committed or
    /// torn), so a later save outranks every record on flash.
    pub next_gen: u64,
    /// The next save must clean the region: it holds format-1 records, blocks that are neither
    /// erased nor the store's own, damaged records, or the leftovers of a cleaning save whose
    /// cleanup was cut short.
    pub dirty: bool,
}

/// Find the current config; see the module docs.
pub(super) fn recover<F: NorFlash>(
    flash: &mut F,
    name: ConfigName,
    geo: &Geo,
) -> Result<Found, Error<F::Error>> {
    let mut report = MountReport::default();
    let mut max_gen: Option<u32> = None;
    // A format-1 header seen (with a valid CRC), and a committed one (a possible container).
    let (mut v1, mut v1_committed) = (false, false);
    // Blocks whose first bytes are not erased.
    let mut used = 0u64;
    // The newest committed record whose save cleaned the region: nothing older is taken.
    let mut floor: Option<u32> = None;
    // The newest committed format-2 record: generation, whether it cleaned, its blocks.
    let mut newest: Option<(u32, bool, u64)> = None;
    for block in 0..geo.blocks {
        let p = probe(flash, name, geo, block)?;
        if !matches!(p, Probe::Erased) {
            used += 1;
        }
        match p {
            Probe::Erased | Probe::Continuation => {}
            Probe::Nothing => report.foreign_blocks += 1,
            Probe::Damaged(reason) => report.note_corrupt(block, reason),
            Probe::Uncommitted(h) => {
                report.torn_records += 1;
                v1 |= h.format == Format::V1;
                max_gen = max_gen.max(Some(h.generation));
            }
            Probe::Committed(h, _) => {
                max_gen = max_gen.max(Some(h.generation));
                match h.format {
                    Format::V1 => (v1, v1_committed) = (true, true),
                    Format::V2 => {
                        if h.cleans() {
                            floor = floor.max(Some(h.generation));
                        }
                        if newest.is_none_or(|(g, ..)| h.generation > g) {
                            newest = Some((h.generation, h.cleans(), geo.blocks_for(Format::V2, h.len)));
                        }
                    }
                }
            }
        }
    }
    let mut pick = Pick { flash, name, geo, containers: v1_committed, memo: None };
    let mut current = pick.newest(Format::V2, floor, &mut report)?;
    // Format 1 only where no save of this release cleaned the region: after one did, format-1
    // headers are leftovers, whatever they hold.
    if current.is_none() && floor.is_none() {
        current = pick.newest(Format::V1, None, &mut report)?;
    }
    let dirty = v1
        || report.foreign_blocks > 0
        || report.corrupt_records > 0
        || newest.is_some_and(|(_, cleans, blocks)| cleans && used > blocks);
    let next_gen = max_gen.map_or(1, |g| u64::from(g) + 1);
    Ok(Found { current, report, next_gen, dirty })
}

/// The candidates' search.
struct Pick<'a, F> {
    flash: &'a mut F,
    name: ConfigName,
    geo: &'a Geo,
    /// Committed format-1 records exist: a record may lie inside one's data.
    containers: bool,
    /// The last container whose data CRC was checked, and whether it held.
    memo: Option<(u32, bool)>,
}

impl<F: NorFlash> Pick<'_, F> {
    /// The newest committed record of `format` (generation at least `floor`) that does not lie
    /// inside a format-1 record's data and whose data matches its CRC; each one passed over is
    /// reported.
    fn newest(
        &mut self,
        format: Format,
        floor: Option<u32>,
        report: &mut MountReport,
    ) -> Result<Option<ConfigInfo>, F::Error> {
        let (geo, name) = (self.geo, self.name);
        // Candidates in order of (generation, block), newest first; `limit` excludes the ones
        // already passed over (and only them: another record of the same generation stays one).
        let key = |h: &Header, block: u32| (u64::from(h.generation) << 32) | u64::from(block);
        let mut limit: Option<u64> = None;
        loop {
            let mut best: Option<(u32, Header, u32)> = None;
            for block in 0..geo.blocks {
                let Probe::Committed(h, crc) = probe(self.flash, name, geo, block)? else { continue };
                let eligible = h.format == format
                    && floor.is_none_or(|f| h.generation >= f)
                    && limit.is_none_or(|l| key(&h, block) < l);
                if eligible && best.as_ref().is_none_or(|(b, bh, _)| key(&h, block) > key(bh, *b)) {
                    best = Some((block, h, crc));
                }
            }
            let Some((block, h, crc)) = best else { return Ok(None) };
            limit = Some(key(&h, block));
            if self.containers && self.contained(block)? {
                report.note_corrupt(block, CorruptReason::InsideData);
                continue;
            }
            if data_crc(self.flash, geo, h.format, block, h.len)? == crc {
                report.valid_records += 1;
                return Ok(Some(ConfigInfo {
                    name,
                    generation: h.generation,
                    len: h.len,
                    crc,
                    saved_at: h.saved_at,
                    block,
                    sw_version: h.sw_version,
                    format: h.format,
                }));
            }
            report.note_corrupt(block, CorruptReason::DataCrc);
        }
    }

    /// Whether `block` lies inside the data of a format-1 record: the committed format-1 record
    /// whose header is the farthest before `block` among those whose blocks cover it, if its data
    /// CRC holds (one data check per container at most: bounded work on any contents).
    fn contained(&mut self, block: u32) -> Result<bool, F::Error> {
        let geo = self.geo;
        for back in (1..geo.blocks).rev() {
            let start = (block + geo.blocks - back) % geo.blocks;
            let Probe::Committed(h, crc) = probe(self.flash, self.name, geo, start)? else { continue };
            if h.format != Format::V1 || geo.blocks_for(Format::V1, h.len) <= u64::from(back) {
                continue;
            }
            let ok = match self.memo {
                Some((b, ok)) if b == start => ok,
                _ => data_crc(self.flash, geo, Format::V1, start, h.len)? == crc,
            };
            self.memo = Some((start, ok));
            return Ok(ok);
        }
        Ok(false)
    }
}
