//! The byte layout of a record's header, trailer and continuation marker,
//! encoded and decoded side by side with named offsets (docs/flash-format.md,
//! "Header", "Trailer", "Continuation marker"). Nothing here touches flash.

use core::ops::Range;

use super::{ConfigName, SW_VERSION_LEN};
use crate::CRC32C;
use crate::error::CorruptReason;

pub(super) const MAGIC: [u8; 4] = *b"MSMc";
/// Magic of a continuation marker. Its last byte has a bit set (0x08) that `MAGIC`'s lacks, so
/// a marker torn while being programmed (bits go from 1 to 0 only) never reads as `MAGIC`.
pub(super) const CONTINUATION_MAGIC: [u8; 4] = *b"MSMk";
pub(super) const HEADER_LEN: u32 = 64;
pub(super) const TRAILER_LEN: u32 = 16;
pub(super) const CONTINUATION_LEN: u32 = 16;
pub(super) const COMMIT: [u8; 8] = *b"COMMIT:)";

/// The format of a record, from its header's version byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// Content right after the header, across blocks (the previous release; read only).
    V1,
    /// A continuation marker at the start of every block after the first (what a save writes).
    V2,
}

impl Format {
    pub fn version(self) -> u8 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }

    pub fn from_version(version: u8) -> Option<Self> {
        match version {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            _ => None,
        }
    }
}

/// Region geometry, fixed at mount (the offsets of a record's parts in it:
/// `layout.rs`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Geo {
    pub block_size: u32,
    pub blocks: u32,
    pub write_size: u32,
}

/// Header flag (format 2): the save that wrote this record cleaned the region (it held format-1
/// records or unknown blocks): every block outside this record is erased after its commit, and
/// no record older than it is ever taken.
pub(super) const FLAG_CLEANS: u8 = 1;

/// Offsets in the header.
mod h {
    use core::ops::Range;
    pub const MAGIC: Range<usize> = 0..4;
    pub const VERSION: usize = 4;
    pub const NAME: usize = 5;
    /// Format 1: u16. Format 2: u8, then the flags.
    pub const WRITE_SIZE_V1: Range<usize> = 6..8;
    pub const WRITE_SIZE: usize = 6;
    pub const FLAGS: usize = 7;
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

/// Offsets in a continuation marker (format 2; padded with 0xFF to `WRITE_SIZE`).
mod c {
    use core::ops::Range;
    pub const MAGIC: Range<usize> = 0..4;
    pub const GENERATION: Range<usize> = 4..8;
    /// Index of the block in its record: 1 for the second block, and so on.
    pub const INDEX: Range<usize> = 8..12;
    /// CRC of the record's header: ties the block to its record.
    pub const HEADER_CRC: Range<usize> = 12..16;
}

/// A record header's fields.
#[derive(Clone, Copy)]
pub(super) struct Header {
    pub format: Format,
    /// Format 2 only ([`FLAG_CLEANS`]); 0 in format 1.
    pub flags: u8,
    pub generation: u32,
    pub len: u32,
    pub saved_at: u64,
    pub sw_version: [u8; SW_VERSION_LEN],
}

impl Header {
    pub fn encode(&self, name: ConfigName, geo: &Geo) -> [u8; HEADER_LEN as usize] {
        let mut b = [0xFF; HEADER_LEN as usize];
        b[h::MAGIC].copy_from_slice(&MAGIC);
        b[h::VERSION] = self.format.version();
        b[h::NAME] = name as u8;
        match self.format {
            Format::V1 => b[h::WRITE_SIZE_V1].copy_from_slice(&(geo.write_size as u16).to_le_bytes()),
            Format::V2 => {
                b[h::WRITE_SIZE] = geo.write_size as u8;
                b[h::FLAGS] = self.flags;
            }
        }
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
        let version = b[h::VERSION];
        let format = Format::from_version(version).ok_or(CorruptReason::UnsupportedVersion(version))?;
        let (write_size, flags) = match format {
            Format::V1 => {
                (u32::from(u16::from_le_bytes([b[h::WRITE_SIZE_V1.start], b[h::WRITE_SIZE_V1.start + 1]])), 0)
            }
            Format::V2 => (u32::from(b[h::WRITE_SIZE]), b[h::FLAGS]),
        };
        if flags & !FLAG_CLEANS != 0 {
            // A flag this code does not know: a later format, not to be misread.
            return Err(CorruptReason::UnsupportedVersion(version));
        }
        if ConfigName::from_code(b[h::NAME]) != Some(name) {
            return Err(CorruptReason::WrongName);
        }
        if write_size != geo.write_size || word(b, h::BLOCK_SIZE) != geo.block_size {
            return Err(CorruptReason::WrongGeometry);
        }
        let mut sw_version = [0; SW_VERSION_LEN];
        sw_version.copy_from_slice(&b[h::SW_VERSION]);
        let mut saved_at = [0; 8];
        saved_at.copy_from_slice(&b[h::SAVED_AT]);
        let header = Header {
            format,
            flags,
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

    /// Whether the save that wrote this record cleaned the region ([`FLAG_CLEANS`]).
    pub fn cleans(&self) -> bool {
        self.flags & FLAG_CLEANS != 0
    }
}

/// A continuation marker's fields (format 2): the first bytes of every block of a record after
/// its first.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Continuation {
    pub generation: u32,
    pub index: u32,
    pub header_crc: u32,
}

impl Continuation {
    /// Into `b` (at least [`CONTINUATION_LEN`] bytes, the rest left as it is).
    pub fn encode(&self, b: &mut [u8]) {
        b[c::MAGIC].copy_from_slice(&CONTINUATION_MAGIC);
        b[c::GENERATION].copy_from_slice(&self.generation.to_le_bytes());
        b[c::INDEX].copy_from_slice(&self.index.to_le_bytes());
        b[c::HEADER_CRC].copy_from_slice(&self.header_crc.to_le_bytes());
    }

    /// The marker at the start of `b`, if `b` starts with its magic.
    pub fn decode(b: &[u8]) -> Option<Continuation> {
        (b.len() >= CONTINUATION_LEN as usize && b[c::MAGIC] == CONTINUATION_MAGIC).then(|| Continuation {
            generation: word(b, c::GENERATION),
            index: word(b, c::INDEX),
            header_crc: word(b, c::HEADER_CRC),
        })
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
        let header = Header {
            format: Format::V2,
            flags: FLAG_CLEANS,
            generation: 7,
            len: 1234,
            saved_at: 1_764_000_000,
            sw_version: [b'v'; SW_VERSION_LEN],
        };
        let b = header.encode(ConfigName::Primary, &geo);
        assert!(Header::magic(&b));
        assert_eq!((b[h::VERSION], b[h::WRITE_SIZE], b[h::FLAGS]), (2, 4, 1));
        let (back, crc) = Header::decode(&b, ConfigName::Primary, &geo).unwrap();
        assert_eq!(
            (back.format, back.cleans(), back.generation, back.len, back.saved_at, crc),
            (Format::V2, true, 7, 1234, 1_764_000_000, Header::crc_of(&b))
        );
        // Format 1 (the previous release): WRITE_SIZE on two bytes, no flags.
        let v1 = Header { format: Format::V1, flags: 0, ..header }.encode(ConfigName::Primary, &geo);
        assert_eq!((v1[h::VERSION], &v1[h::WRITE_SIZE_V1]), (1, &[4u8, 0][..]));
        let (back, _) = Header::decode(&v1, ConfigName::Primary, &geo).unwrap();
        assert_eq!((back.format, back.cleans(), back.generation), (Format::V1, false, 7));
        // A flag this code does not know, or another version: refused, never misread.
        for (at, value) in [(h::FLAGS, 2), (h::VERSION, 3)] {
            let mut other = b;
            other[at] = value;
            let crc = CRC32C.checksum(&other[..h::CRC.start]);
            other[h::CRC].copy_from_slice(&crc.to_le_bytes());
            assert!(matches!(
                Header::decode(&other, ConfigName::Primary, &geo),
                Err(CorruptReason::UnsupportedVersion(_))
            ));
        }
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

        let marker = Continuation { generation: 7, index: 3, header_crc: crc };
        let mut mb = [0xFF; CONTINUATION_LEN as usize];
        marker.encode(&mut mb);
        assert_eq!(Continuation::decode(&mb), Some(marker));
        assert!(!Header::magic(&mb), "a marker is never taken for a header");
        assert_eq!(Continuation::decode(&b), None);
    }

    /// However much of a marker's magic is programmed before a cut, it never reads as a
    /// header's magic: programming only clears bits, and the marker's magic has a bit set that
    /// the header's lacks.
    #[test]
    fn a_torn_continuation_magic_is_never_a_header_magic() {
        assert!(CONTINUATION_MAGIC.iter().zip(MAGIC).any(|(m, h)| m & !h != 0));
    }
}
