//! The demo applications' record: one key's full state, so applying it is
//! idempotent as the engine requires. The value is derived from the stamp, so
//! a checker can tell a genuine record from a corrupted one.

/// A globally unique change stamp, minted by whichever node is master.
pub type Stamp = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Set,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rec {
    pub op: Op,
    pub key: u32,
    pub stamp: Stamp,
}

/// Bytes of value carried per record (derived from the stamp).
pub const VALUE_LEN: usize = 16;
pub const LEN: usize = 1 + 4 + 8 + VALUE_LEN;

fn value_of(stamp: Stamp) -> [u8; VALUE_LEN] {
    let mut v = [0u8; VALUE_LEN];
    let mut x = stamp.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xA5A5;
    for b in v.iter_mut() {
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        *b = x as u8;
    }
    v
}

impl Rec {
    pub fn encode(&self, out: &mut [u8]) -> Option<usize> {
        let out = out.get_mut(..LEN)?;
        out[0] = match self.op {
            Op::Set => 1,
            Op::Delete => 0,
        };
        out[1..5].copy_from_slice(&self.key.to_le_bytes());
        out[5..13].copy_from_slice(&self.stamp.to_le_bytes());
        out[13..].copy_from_slice(&value_of(self.stamp));
        Some(LEN)
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; LEN];
        let _ = self.encode(&mut v);
        v
    }

    /// `None` for anything that is not a well-formed record.
    pub fn decode(b: &[u8]) -> Option<Rec> {
        if b.len() != LEN {
            return None;
        }
        let op = match b[0] {
            1 => Op::Set,
            0 => Op::Delete,
            _ => return None,
        };
        let key = u32::from_le_bytes(b[1..5].try_into().ok()?);
        let stamp = u64::from_le_bytes(b[5..13].try_into().ok()?);
        if b[13..] != value_of(stamp) {
            return None;
        }
        Some(Rec { op, key, stamp })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let r = Rec { op: Op::Set, key: 7, stamp: 99 };
        let mut b = r.to_vec();
        assert_eq!(Rec::decode(&b), Some(r));
        b[20] ^= 1;
        assert_eq!(Rec::decode(&b), None);
    }
}
