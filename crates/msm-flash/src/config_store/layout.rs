//! Where the bytes of a record lie (docs/flash-format.md, "Config store: a
//! ring of records"): the region's geometry, the record formats, and the
//! offset of every content byte (data, trailer, commit marker) from the
//! record's start. Nothing here touches flash.
//!
//! A record's *content* is `data | padding | trailer | commit`. Format 1 lays
//! it right after the header, across block boundaries. Format 2 starts every
//! block of a record after its first with a continuation marker, so content
//! never lies at the start of a block: only the store's own header, marker or
//! erased bytes do.

use super::format::{COMMIT, CONTINUATION_LEN, Format, Geo, HEADER_LEN, TRAILER_LEN};

impl Geo {
    pub fn region(&self) -> u32 {
        self.block_size * self.blocks
    }

    pub fn align(&self, n: u32) -> u64 {
        u64::from(n).div_ceil(u64::from(self.write_size)) * u64::from(self.write_size)
    }

    pub fn trailer_len(&self) -> u32 {
        TRAILER_LEN.max(self.write_size)
    }

    pub fn commit_len(&self) -> u32 {
        (COMMIT.len() as u32).max(self.write_size)
    }

    /// Bytes at the start of every block of a record after its first: 0 in format 1, the
    /// continuation marker (padded to `WRITE_SIZE`) in format 2.
    pub fn cont_len(&self, format: Format) -> u32 {
        match format {
            Format::V1 => 0,
            Format::V2 => CONTINUATION_LEN.max(self.write_size),
        }
    }

    /// Content bytes of a record of `len` data bytes: padded data, trailer, commit marker (u64:
    /// `len` may come from a damaged header).
    pub fn content_len(&self, len: u32) -> u64 {
        self.align(len) + u64::from(self.trailer_len()) + u64::from(self.commit_len())
    }

    /// Record-relative offset of content byte `c`.
    pub fn raw(&self, format: Format, c: u64) -> u64 {
        let block = u64::from(self.block_size);
        let first = block - u64::from(HEADER_LEN);
        if c < first {
            return u64::from(HEADER_LEN) + c;
        }
        let cont = u64::from(self.cont_len(format));
        let (k, r) = ((c - first) / (block - cont), (c - first) % (block - cont));
        (k + 1) * block + cont + r
    }

    /// Record-relative offset just past the commit marker of a record of `len` bytes.
    pub fn footprint(&self, format: Format, len: u32) -> u64 {
        self.raw(format, self.content_len(len) - 1) + 1
    }

    /// Erase blocks a record of `len` bytes spans.
    pub fn blocks_for(&self, format: Format, len: u32) -> u64 {
        self.footprint(format, len).div_ceil(u64::from(self.block_size))
    }

    /// Largest data length a format-2 record spanning at most `blocks` blocks can hold (0 when not
    /// even an empty one fits), rounded down to `WRITE_SIZE`.
    pub fn max_len_in(&self, blocks: u64) -> u32 {
        let Some(more) = blocks.checked_sub(1) else { return 0 };
        let block = u64::from(self.block_size);
        let content = (block - u64::from(HEADER_LEN)) + more * (block - u64::from(self.cont_len(Format::V2)));
        let w = u64::from(self.write_size);
        let max =
            content.saturating_sub(u64::from(self.trailer_len()) + u64::from(self.commit_len())) / w * w;
        u32::try_from(max).unwrap_or(u32::MAX)
    }

    /// Region offset of byte `rel` of the record starting at `block` (wraps at the region end).
    pub fn at(&self, block: u32, rel: u64) -> u32 {
        ((u64::from(block) * u64::from(self.block_size) + rel) % u64::from(self.region())) as u32
    }

    /// Whether block `b` is one of the `blocks` blocks from `start` (around the ring).
    pub fn within(&self, start: u32, blocks: u64, b: u32) -> bool {
        u64::from((b + self.blocks - start) % self.blocks) < blocks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_skips_the_header_and_in_format_2_every_continuation_marker() {
        let geo = Geo { block_size: 256, blocks: 8, write_size: 4 };
        // Format 1: contiguous after the header.
        assert_eq!(geo.raw(Format::V1, 0), 64);
        assert_eq!(geo.raw(Format::V1, 192), 256);
        assert_eq!(geo.raw(Format::V1, 1000), 1064);
        // Format 2: 192 bytes in the first block, 240 in each one after it.
        assert_eq!(geo.raw(Format::V2, 191), 255);
        assert_eq!(geo.raw(Format::V2, 192), 256 + 16);
        assert_eq!(geo.raw(Format::V2, 192 + 239), 511);
        assert_eq!(geo.raw(Format::V2, 192 + 240), 512 + 16);
        // Content never lands on a block's first bytes.
        for c in 0..4000 {
            assert!(geo.raw(Format::V2, c) % 256 >= 16, "content byte {c}");
        }
        // A record filling its blocks exactly, and the largest one that fits.
        for blocks in 1..=8 {
            let len = geo.max_len_in(blocks);
            assert_eq!(geo.blocks_for(Format::V2, len), blocks, "{blocks} blocks");
            assert_eq!(geo.blocks_for(Format::V2, len + 4), blocks + 1, "{blocks} blocks");
        }
        assert_eq!(geo.max_len_in(0), 0);
        // Format 1 footprint is header + content, as before.
        assert_eq!(geo.footprint(Format::V1, 100), 64 + 100 + 16 + 8);
        let wide = Geo { block_size: 4096, blocks: 4, write_size: 32 };
        assert_eq!(wide.cont_len(Format::V2), 32);
        assert_eq!(wide.raw(Format::V2, 4096 - 64), 4096 + 32);
    }
}
