//! Mounting a store: the geometry it needs, reading records across the
//! region's end and across their continuation markers, and what each block
//! start holds (`probe`; `recover.rs` chooses the record). Never writes.

use super::format::{Continuation, Header, Trailer};
use super::*;

/// What one block start holds.
pub(super) enum Probe {
    /// Erased (the first bytes are all 0xFF).
    Erased,
    /// A continuation marker: a later block of a format-2 record.
    Continuation,
    /// Neither a record header nor a marker (format-1 data, garbage, a torn erase).
    Nothing,
    Damaged(CorruptReason),
    Uncommitted(Header),
    /// A committed record and the CRC-32C its trailer gives for its data.
    Committed(Header, u32),
}

pub(super) fn check_geometry<F: NorFlash>(capacity: usize) -> Result<Geo, Error<F::Error>> {
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
pub(super) fn read_ring<F: NorFlash>(
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

/// Read `buf.len()` content bytes (data, trailer, commit marker) from content offset `c` of the
/// record of `format` starting at `block`, skipping its header and continuation markers.
pub(super) fn read_content<F: NorFlash>(
    flash: &mut F,
    geo: &Geo,
    format: Format,
    block: u32,
    c: u64,
    buf: &mut [u8],
) -> Result<(), F::Error> {
    let mut done = 0;
    while done < buf.len() {
        let raw = geo.raw(format, c + done as u64);
        // Content bytes are contiguous up to the end of the block.
        let room = u64::from(geo.block_size) - raw % u64::from(geo.block_size);
        let n = (buf.len() - done).min(room as usize);
        read_ring(flash, geo, block, raw, &mut buf[done..done + n])?;
        done += n;
    }
    Ok(())
}

/// CRC-32C of the `len` data bytes of the record of `format` starting at `block`.
pub(super) fn data_crc<F: NorFlash>(
    flash: &mut F,
    geo: &Geo,
    format: Format,
    block: u32,
    len: u32,
) -> Result<u32, F::Error> {
    let mut digest = CRC32C.digest();
    let mut buf = [0; SCAN_CHUNK];
    let mut off = 0u32;
    while off < len {
        let n = (len - off).min(SCAN_CHUNK as u32) as usize;
        read_content(flash, geo, format, block, u64::from(off), &mut buf[..n])?;
        digest.update(&buf[..n]);
        off += n as u32;
    }
    Ok(digest.finalize())
}

/// Whether the first bytes of `block` are erased (0xFF): nothing there for a save to clean.
pub(super) fn erased_start<F: NorFlash>(flash: &mut F, geo: &Geo, block: u32) -> Result<bool, F::Error> {
    let mut h = [0; HEADER_LEN as usize];
    read_ring(flash, geo, block, 0, &mut h)?;
    Ok(h.iter().all(|b| *b == 0xFF))
}

/// Look at the start of `block`.
pub(super) fn probe<F: NorFlash>(
    flash: &mut F,
    name: ConfigName,
    geo: &Geo,
    block: u32,
) -> Result<Probe, F::Error> {
    let mut h = [0; HEADER_LEN as usize];
    read_ring(flash, geo, block, 0, &mut h)?;
    if !Header::magic(&h) {
        return Ok(if h.iter().all(|b| *b == 0xFF) {
            Probe::Erased
        } else if Continuation::decode(&h).is_some() {
            Probe::Continuation
        } else {
            Probe::Nothing
        });
    }
    let (header, crc) = match Header::decode(&h, name, geo) {
        Ok(d) => d,
        Err(reason) => return Ok(Probe::Damaged(reason)),
    };
    let format = header.format;
    if geo.footprint(format, header.len) > u64::from(geo.region()) {
        return Ok(Probe::Damaged(CorruptReason::BadLength));
    }
    let trailer_at = geo.align(header.len);
    let mut marker = [0; MAX_WRITE_SIZE];
    let marker = &mut marker[..geo.commit_len() as usize];
    read_content(flash, geo, format, block, trailer_at + u64::from(geo.trailer_len()), marker)?;
    if marker.iter().enumerate().any(|(i, b)| *b != COMMIT[i % COMMIT.len()]) {
        return Ok(Probe::Uncommitted(header));
    }
    let mut t = [0; TRAILER_LEN as usize];
    read_content(flash, geo, format, block, trailer_at, &mut t)?;
    let data_crc = match Trailer::decode(&t, crc) {
        Some(tr) if tr.len == header.len && tr.generation == header.generation => tr.data_crc,
        _ => return Ok(Probe::Damaged(CorruptReason::TrailerCrc)),
    };
    if format == Format::V2 {
        // Every later block must carry this record's marker: it was written by this save.
        for index in 1..geo.blocks_for(format, header.len) {
            let mut m = [0; format::CONTINUATION_LEN as usize];
            read_ring(flash, geo, block, index * u64::from(geo.block_size), &mut m)?;
            let want = Continuation { generation: header.generation, index: index as u32, header_crc: crc };
            if Continuation::decode(&m) != Some(want) {
                return Ok(Probe::Damaged(CorruptReason::Continuation));
            }
        }
    }
    Ok(Probe::Committed(header, data_crc))
}
