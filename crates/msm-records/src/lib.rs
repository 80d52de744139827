//! The record of the built-in applications (`devmgr`, `cfgmgr`, `vlan`,
//! `fdb`, `stp`, `ospf`), as every board and the Linux runtime carry it
//! through the checkpoint engine: one key's whole state, so applying a
//! record twice, or after a newer bulk, is harmless.
//!
//! ```text
//! offset 0   op     u8       1 set, 0 delete
//! offset 1   key    u64 LE
//! offset 9   value  the rest (set only; a delete has none)
//! ```
//!
//! `no_std`, no allocation: a record is decoded borrowing its bytes and
//! encoded into the caller's buffer. Written down in docs/wire-protocol.md
//! ("Application records").
#![no_std]

use core::fmt;

/// Offset of the op byte.
pub const OP: usize = 0;
/// Offset of the key (u64, little-endian).
pub const KEY: usize = 1;
/// Offset of the value.
pub const VALUE: usize = KEY + 8;
/// The op of a set.
pub const SET: u8 = 1;
/// The op of a delete.
pub const DELETE: u8 = 0;

/// One key's change, borrowing its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// The key now holds this value.
    Set(u64, &'a [u8]),
    /// The key is gone.
    Delete(u64),
}

/// Why bytes are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// Shorter than an op and a key.
    Short,
    /// An op other than set or delete.
    UnknownOp(u8),
    /// A delete with a value after its key.
    DeleteWithValue,
    /// The buffer given to [`Record::encode`] is smaller than [`Record::len`].
    BufferTooSmall,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Short => f.write_str("record shorter than an op and a key"),
            RecordError::UnknownOp(op) => write!(f, "record op {op} (1 set, 0 delete)"),
            RecordError::DeleteWithValue => f.write_str("a delete record with a value"),
            RecordError::BufferTooSmall => f.write_str("buffer smaller than the record"),
        }
    }
}

impl core::error::Error for RecordError {}

impl<'a> Record<'a> {
    /// The record in `b`.
    pub fn decode(b: &'a [u8]) -> Result<Record<'a>, RecordError> {
        let key: [u8; 8] = b.get(KEY..VALUE).and_then(|k| k.try_into().ok()).ok_or(RecordError::Short)?;
        let key = u64::from_le_bytes(key);
        let value = &b[VALUE..];
        match b[OP] {
            SET => Ok(Record::Set(key, value)),
            DELETE if value.is_empty() => Ok(Record::Delete(key)),
            DELETE => Err(RecordError::DeleteWithValue),
            op => Err(RecordError::UnknownOp(op)),
        }
    }

    /// Its key.
    pub fn key(&self) -> u64 {
        match self {
            Record::Set(k, _) | Record::Delete(k) => *k,
        }
    }

    /// Bytes it takes encoded.
    pub fn len(&self) -> usize {
        match self {
            Record::Set(_, v) => VALUE + v.len(),
            Record::Delete(_) => VALUE,
        }
    }

    /// Never empty (a record has at least an op and a key).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Encode into the start of `out`; the bytes written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, RecordError> {
        let n = self.len();
        let out = out.get_mut(..n).ok_or(RecordError::BufferTooSmall)?;
        out[KEY..VALUE].copy_from_slice(&self.key().to_le_bytes());
        match self {
            Record::Set(_, v) => {
                out[OP] = SET;
                out[VALUE..].copy_from_slice(v);
            }
            Record::Delete(_) => out[OP] = DELETE,
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_delete_round_trip() {
        let mut buf = [0u8; 32];
        for r in [Record::Set(7, b"v10 tag 10"), Record::Set(u64::MAX, b""), Record::Delete(42)] {
            let n = r.encode(&mut buf).unwrap();
            assert_eq!(n, r.len());
            assert_eq!(Record::decode(&buf[..n]), Ok(r));
        }
        assert_eq!(Record::Delete(1).encode(&mut buf[..8]), Err(RecordError::BufferTooSmall));
    }

    #[test]
    fn bytes_that_are_not_a_record_are_named() {
        assert_eq!(Record::decode(&[]), Err(RecordError::Short));
        assert_eq!(Record::decode(&[1, 0, 0]), Err(RecordError::Short));
        assert_eq!(Record::decode(&[2, 0, 0, 0, 0, 0, 0, 0, 0]), Err(RecordError::UnknownOp(2)));
        assert_eq!(Record::decode(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 9]), Err(RecordError::DeleteWithValue));
        // The layout: op, key LE, value.
        assert_eq!(Record::decode(&[1, 5, 0, 0, 0, 0, 0, 0, 0, b'x']), Ok(Record::Set(5, b"x")));
    }
}
