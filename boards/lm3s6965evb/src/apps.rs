//! The demo applications the firmware runs, `devmgr <- cfgmgr <- vlan`, with the
//! same names, schema versions and record (`msm-records`: op, key u64 LE,
//! value) as the Linux runtime. State lives in fixed-capacity tables sorted
//! by key, so the bulk cursor is "next key".

use heapless::Vec;
use msm_checkpoint::HostError;
use msm_records::Record;

/// Name, schema and dependencies, in registration order (a subset of the
/// Linux board's APPS: run the Linux peer with `--apps devmgr,cfgmgr,vlan`;
/// the Linux node drops dependencies on applications it does not run, so the
/// chain must be complete on both sides for the bulk order to be the same).
pub const APPS: [(&str, u16, &[&str]); 3] =
    [("devmgr", 1, &[]), ("cfgmgr", 1, &["devmgr"]), ("vlan", 1, &["cfgmgr"])];

/// Longest value of one key: a VLAN with a dozen ports; longer values are
/// refused as `HostError::Full` (the master then retries with a new bulk).
pub const VALUE: usize = 80;
/// Keys per application (the Linux chassis has 8 modules, 16..64 config
/// objects and a handful of VLANs in its demo).
pub const ROWS: usize = 64;

/// The change in a record's bytes.
pub fn decode(b: &[u8]) -> Result<Record<'_>, HostError> {
    Record::decode(b).map_err(|_| HostError::BadRecord)
}

#[derive(Debug)]
struct Row {
    key: u64,
    value: Vec<u8, VALUE>,
    /// Refreshed by the bulk in progress (backup side, mark and sweep).
    seen: bool,
}

/// One application's table.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Row, ROWS>,
    refreshing: bool,
}

impl Table {
    pub const fn new() -> Table {
        Table { rows: Vec::new(), refreshing: false }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn apply(&mut self, c: Record<'_>) -> Result<(), HostError> {
        let pos = self.rows.binary_search_by_key(&c.key(), |r| r.key);
        match (c, pos) {
            (Record::Set(_, v), Ok(i)) => {
                let row = self.rows.get_mut(i).ok_or(HostError::Full)?;
                row.value = Vec::from_slice(v).map_err(|_| HostError::Full)?;
                row.seen = true;
            }
            (Record::Set(k, v), Err(i)) => {
                let value = Vec::from_slice(v).map_err(|_| HostError::Full)?;
                self.rows.insert(i, Row { key: k, value, seen: true }).map_err(|_| HostError::Full)?;
            }
            (Record::Delete(_), Ok(i)) => {
                self.rows.remove(i);
            }
            (Record::Delete(_), Err(_)) => {}
        }
        Ok(())
    }

    /// Every row, in key order.
    pub fn rows(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.rows.iter().map(|r| (r.key, r.value.as_slice()))
    }

    pub fn begin_refresh(&mut self) {
        self.refreshing = true;
        for r in self.rows.iter_mut() {
            r.seen = false;
        }
    }

    /// End of a bulk: drop what it did not mention. Returns the rows dropped.
    pub fn end_refresh(&mut self) -> usize {
        if !core::mem::take(&mut self.refreshing) {
            return 0;
        }
        let before = self.rows.len();
        self.rows.retain(|r| r.seen);
        before - self.rows.len()
    }

    pub fn abort_refresh(&mut self) {
        self.refreshing = false;
    }

    /// Encodes the record of the first key at or after `cursor` into `buf`;
    /// returns its length and the next cursor.
    pub fn read_from(&self, cursor: u64, buf: &mut [u8]) -> Result<Option<(usize, u64)>, HostError> {
        let i = match self.rows.binary_search_by_key(&cursor, |r| r.key) {
            Ok(i) | Err(i) => i,
        };
        let Some(row) = self.rows.get(i) else { return Ok(None) };
        let len = 9 + row.value.len();
        let out = buf.get_mut(..len).ok_or(HostError::RecordTooLarge)?;
        out[0] = 1;
        out[1..9].copy_from_slice(&row.key.to_le_bytes());
        out[9..].copy_from_slice(&row.value);
        Ok(Some((len, row.key.saturating_add(1))))
    }

    /// The same order-independent digest as the Linux board's `Table::digest`:
    /// the sum modulo 2^64 of each row's CRC-64 after the splitmix64
    /// finaliser (equal changes to several rows do not cancel).
    pub fn digest(&self) -> u64 {
        let crc = crc::Crc::<u64>::new(&crc::CRC_64_XZ);
        self.rows.iter().fold(0u64, |sum, r| {
            let mut d = crc.digest();
            d.update(&r.key.to_le_bytes());
            d.update(&(r.value.len() as u32).to_le_bytes());
            d.update(&r.value);
            let mut z = d.finalize();
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            sum.wrapping_add(z ^ (z >> 31))
        })
    }
}

/// Bytes as lowercase hex, as the Linux board's journal and `show app` print them.
#[derive(Debug, Clone, Copy)]
pub struct Hex<'a>(pub &'a [u8]);

impl defmt::Format for Hex<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        for b in self.0 {
            defmt::write!(f, "{=u8:02x}", *b);
        }
    }
}
