//! Mounting a store: the geometry it needs, reading records across the
//! region's end, and finding the newest committed record whose CRCs hold
//! (`probe` each block start, `recover` the newest). Never writes.

use super::format::{Header, Trailer};
use super::*;

/// What one block start holds.
pub(super) enum Probe {
    /// Erased (the first bytes are all 0xFF).
    Erased,
    /// Not a record header (data of a record spanning blocks, garbage).
    Nothing,
    Damaged(CorruptReason),
    Uncommitted(Header),
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

/// CRC-32C of the `len` data bytes of the record starting at `block`.
pub(super) fn data_crc<F: NorFlash>(flash: &mut F, geo: &Geo, block: u32, len: u32) -> Result<u32, F::Error> {
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
pub(super) fn recover<F: NorFlash>(
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
