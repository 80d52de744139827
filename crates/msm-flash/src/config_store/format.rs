//! The byte layout of a record's header and trailer, encoded and decoded
//! side by side with named offsets (docs/flash-format.md, "Header" and
//! "Trailer"). Nothing here touches flash.

use core::ops::Range;

use super::{ConfigName, FORMAT_VERSION, Geo, SW_VERSION_LEN};
use crate::CRC32C;
use crate::error::CorruptReason;

pub(super) const MAGIC: [u8; 4] = *b"MSMc";
pub(super) const HEADER_LEN: u32 = 64;
pub(super) const TRAILER_LEN: u32 = 16;
pub(super) const COMMIT: [u8; 8] = *b"COMMIT:)";

/// Offsets in the header.
mod h {
    use core::ops::Range;
    pub const MAGIC: Range<usize> = 0..4;
    pub const VERSION: usize = 4;
    pub const NAME: usize = 5;
    pub const WRITE_SIZE: Range<usize> = 6..8;
    pub const GENERATION: Range<usize> = 8..12;
    pub const LEN: Range<usize> = 12..16;
    pub const SAVED_AT: Range<usize> = 16..24;
    pub const SW_VERSION: Range<usize> = 24..56;
    pub const BLOCK_SIZE: Range<usize> = 56..60;
    /// CRC-32C of every byte before it.
    pub const CRC: Range<usize> = 60..64;
}

/// Offsets in the trailer.
mod t {
    use core::ops::Range;
    /// CRC-32C of the data.
    pub const DATA_CRC: Range<usize> = 0..4;
    pub const LEN: Range<usize> = 4..8;
    pub const GENERATION: Range<usize> = 8..12;
    /// CRC-32C of the bytes before it and of the header's CRC.
    pub const CRC: Range<usize> = 12..16;
}

fn word(b: &[u8], r: Range<usize>) -> u32 {
    let mut w = [0; 4];
    w.copy_from_slice(&b[r]);
    u32::from_le_bytes(w)
}

/// A record header's fields.
#[derive(Clone, Copy)]
pub(super) struct Header {
    pub generation: u32,
    pub len: u32,
    pub saved_at: u64,
    pub sw_version: [u8; SW_VERSION_LEN],
}

impl Header {
    pub fn encode(&self, name: ConfigName, geo: &Geo) -> [u8; HEADER_LEN as usize] {
        let mut b = [0xFF; HEADER_LEN as usize];
        b[h::MAGIC].copy_from_slice(&MAGIC);
        b[h::VERSION] = FORMAT_VERSION;
        b[h::NAME] = name as u8;
        b[h::WRITE_SIZE].copy_from_slice(&(geo.write_size as u16).to_le_bytes());
        b[h::GENERATION].copy_from_slice(&self.generation.to_le_bytes());
        b[h::LEN].copy_from_slice(&self.len.to_le_bytes());
        b[h::SAVED_AT].copy_from_slice(&self.saved_at.to_le_bytes());
        b[h::SW_VERSION].copy_from_slice(&self.sw_version);
        b[h::BLOCK_SIZE].copy_from_slice(&geo.block_size.to_le_bytes());
        let crc = CRC32C.checksum(&b[..h::CRC.start]);
        b[h::CRC].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// The header in `b` (which starts with the magic) of a record of
    /// store `name` on geometry `geo`, and its CRC; or why it is not one.
    pub fn decode(
        b: &[u8; HEADER_LEN as usize],
        name: ConfigName,
        geo: &Geo,
    ) -> Result<(Header, u32), CorruptReason> {
        let crc = word(b, h::CRC);
        if CRC32C.checksum(&b[..h::CRC.start]) != crc {
            return Err(CorruptReason::HeaderCrc);
        }
        if b[h::VERSION] != FORMAT_VERSION {
            return Err(CorruptReason::UnsupportedVersion(b[h::VERSION]));
        }
        if ConfigName::from_code(b[h::NAME]) != Some(name) {
            return Err(CorruptReason::WrongName);
        }
        let write_size = u32::from(u16::from_le_bytes([b[h::WRITE_SIZE.start], b[h::WRITE_SIZE.start + 1]]));
        if write_size != geo.write_size || word(b, h::BLOCK_SIZE) != geo.block_size {
            return Err(CorruptReason::WrongGeometry);
        }
        let mut sw_version = [0; SW_VERSION_LEN];
        sw_version.copy_from_slice(&b[h::SW_VERSION]);
        let mut saved_at = [0; 8];
        saved_at.copy_from_slice(&b[h::SAVED_AT]);
        let header = Header {
            generation: word(b, h::GENERATION),
            len: word(b, h::LEN),
            saved_at: u64::from_le_bytes(saved_at),
            sw_version,
        };
        Ok((header, crc))
    }

    /// Whether `b` starts with the magic of a header.
    pub fn magic(b: &[u8]) -> bool {
        b.get(h::MAGIC) == Some(&MAGIC[..])
    }

    /// The CRC an encoded header carries.
    pub fn crc_of(b: &[u8; HEADER_LEN as usize]) -> u32 {
        word(b, h::CRC)
    }
}

/// A record trailer's fields: the data's CRC and what it repeats of the header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Trailer {
    pub data_crc: u32,
    pub len: u32,
    pub generation: u32,
}

impl Trailer {
    /// Into `b` (at least [`TRAILER_LEN`] bytes, the rest left as it is),
    /// bound to its header by the header's CRC.
    pub fn encode(&self, header_crc: u32, b: &mut [u8]) {
        b[t::DATA_CRC].copy_from_slice(&self.data_crc.to_le_bytes());
        b[t::LEN].copy_from_slice(&self.len.to_le_bytes());
        b[t::GENERATION].copy_from_slice(&self.generation.to_le_bytes());
        let crc = Self::crc(b, header_crc);
        b[t::CRC].copy_from_slice(&crc.to_le_bytes());
    }

    /// The trailer in `b` of the record whose header has CRC `header_crc`,
    /// if its own CRC holds.
    pub fn decode(b: &[u8; TRAILER_LEN as usize], header_crc: u32) -> Option<Trailer> {
        (Self::crc(b, header_crc) == word(b, t::CRC)).then(|| Trailer {
            data_crc: word(b, t::DATA_CRC),
            len: word(b, t::LEN),
            generation: word(b, t::GENERATION),
        })
    }

    fn crc(b: &[u8], header_crc: u32) -> u32 {
        let mut d = CRC32C.digest();
        d.update(&b[..t::CRC.start]);
        d.update(&header_crc.to_le_bytes());
        d.finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_trailer_round_trip_and_refuse_what_is_not_theirs() {
        let geo = Geo { block_size: 4096, blocks: 8, write_size: 4 };
        let header =
            Header { generation: 7, len: 1234, saved_at: 1_764_000_000, sw_version: [b'v'; SW_VERSION_LEN] };
        let b = header.encode(ConfigName::Primary, &geo);
        assert!(Header::magic(&b));
        let (back, crc) = Header::decode(&b, ConfigName::Primary, &geo).unwrap();
        assert_eq!(
            (back.generation, back.len, back.saved_at, crc),
            (7, 1234, 1_764_000_000, Header::crc_of(&b))
        );
        assert_eq!(Header::decode(&b, ConfigName::Secondary, &geo).err(), Some(CorruptReason::WrongName));
        let other = Geo { write_size: 8, ..geo };
        assert_eq!(Header::decode(&b, ConfigName::Primary, &other).err(), Some(CorruptReason::WrongGeometry));
        let mut bad = b;
        bad[h::LEN.start] ^= 1;
        assert_eq!(Header::decode(&bad, ConfigName::Primary, &geo).err(), Some(CorruptReason::HeaderCrc));

        let tr = Trailer { data_crc: 0xDEAD_BEEF, len: 1234, generation: 7 };
        let mut tb = [0xFF; TRAILER_LEN as usize];
        tr.encode(crc, &mut tb);
        assert_eq!(Trailer::decode(&tb, crc), Some(tr));
        assert_eq!(Trailer::decode(&tb, crc ^ 1), None, "bound to its header");
    }
}
