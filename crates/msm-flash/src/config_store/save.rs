//! Saving a configuration: a save in progress, streamed in chunks, each
//! block erased just before its first byte and started with a continuation
//! marker; the trailer and then the commit marker make it current. A save in
//! a region the mount found unclean cleans it (docs/flash-format.md, "A save,
//! in order", "Format 1").

use super::format::{Continuation, FLAG_CLEANS, Header, Trailer};
use super::mount::erased_start;
use super::*;

/// A save in progress.
pub(super) struct Save {
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

impl<F: NorFlash + Durable> ConfigStore<F> {
    /// Start saving a config of exactly `len` bytes. Erases the first block of the new record and
    /// programs its header; the current config stays readable until [`commit`](Self::commit).
    pub fn begin_save(&mut self, len: u32, info: &SaveInfo<'_>) -> Result<(), Error<F::Error>> {
        if self.save.is_some() {
            return Err(Error::SaveInProgress);
        }
        let max = self.max_len();
        if len > max || self.geo.blocks_for(Format::V2, len) > self.free_blocks() {
            return Err(Error::TooLarge { len, max });
        }
        self.start_save(len, info, None)
    }

    /// Largest config [`begin_replace`](Self::begin_replace) can take: the whole region minus the
    /// record overhead (the current config may be given up for it).
    pub fn max_len_replacing(&self) -> u32 {
        self.geo.max_len_in(u64::from(self.geo.blocks))
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
        if len <= self.max_len() && self.geo.blocks_for(Format::V2, len) <= self.free_blocks() {
            self.start_save(len, info, None)?;
            return Ok(false);
        }
        let max = self.max_len_replacing();
        if len > max || self.geo.blocks_for(Format::V2, len) > u64::from(self.geo.blocks) {
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
        // A save in a region the mount found unclean cleans it (`dirty` stays set until its
        // commit has cleaned): before its header it erases every block outside the current
        // record, so that nothing there that is not the store's own outlives this save.
        let cleans = self.dirty;
        if cleans {
            let keep = self.current.map(|c| (c.block, c.blocks(&self.geo)));
            self.erase_outside(self.next_block, keep)?;
        }
        let flags = if cleans { FLAG_CLEANS } else { 0 };
        let header =
            Header { format: Format::V2, flags, generation, len, saved_at: info.saved_at, sw_version };
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
                format: Format::V2,
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
        debug!(
            "config store: save generation {} of {} bytes at block {}{}",
            generation,
            len,
            self.next_block,
            if cleans { ", cleaning the region" } else { "" }
        );
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
    /// config is current (and durable); on an error before the commit marker the previous config
    /// stays current. A save that cleans the region then erases every block outside its record:
    /// an error there is returned, but the new config is committed and current (see
    /// [`current`](Self::current)), and the next save cleans again.
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
        if data_crc(&mut self.flash, &geo, Format::V2, save.info.block, len)? != crc {
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
        let blocks = info.blocks(&geo);
        self.next_block = ((u64::from(info.block) + blocks) % u64::from(geo.blocks)) as u32;
        self.report.valid_records += 1;
        self.damage = None;
        self.current = Some(info);
        debug!("config store: committed generation {}", info.generation);
        if self.dirty {
            // Whatever the region held besides this record goes: format-1 data, unknown blocks,
            // older records. Records older than this one are never taken again anyway.
            self.erase_outside(self.next_block, Some((info.block, blocks)))?;
            self.dirty = false;
            info!("config store {}: region cleaned", self.name.file_name());
        }
        Ok(self.current.insert(info))
    }

    /// Erase every block whose first bytes are not erased, except the `keep` blocks (first block,
    /// count), in ring order from `from`.
    fn erase_outside(&mut self, from: u32, keep: Option<(u32, u64)>) -> Result<(), Error<F::Error>> {
        let geo = self.geo;
        for i in 0..geo.blocks {
            let block = (from + i) % geo.blocks;
            if keep.is_some_and(|(start, n)| geo.within(start, n, block))
                || erased_start(&mut self.flash, &geo, block)?
            {
                continue;
            }
            let at = block * geo.block_size;
            self.flash.erase(at, at + geo.block_size)?;
        }
        Ok(())
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
}

/// Program `bytes` (a multiple of `WRITE_SIZE`) at the save's position, erasing each block of the
/// record just before its first byte is programmed and, in every block after the first, first
/// programming the continuation marker. Never crosses a block boundary in one write, so never the
/// region end either.
///
/// A replacing save forgets `current` just before it erases the current record's first block.
pub(super) fn program<F: NorFlash>(
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
            if save.pos > 0 {
                let mut marker = [0xFF; MAX_WRITE_SIZE];
                let index = (save.pos / u64::from(geo.block_size)) as u32;
                Continuation { generation: save.info.generation, index, header_crc: save.header_crc }
                    .encode(&mut marker);
                let n = geo.cont_len(Format::V2);
                flash.write(from, &marker[..n as usize])?;
                save.pos += u64::from(n);
            }
        }
        let n = rest.len().min((save.erased_to - save.pos) as usize);
        flash.write(geo.at(save.info.block, save.pos), &rest[..n])?;
        save.pos += n as u64;
        rest = &rest[n..];
    }
    Ok(())
}
