//! The chassis key and frame authentication: HMAC-SHA256 over the whole
//! frame, truncated to 128 bits. See `docs/wire-protocol.md`.
//!
//! A node holds at most two keys: the one it sends under, and one more it
//! also accepts (the next key before a rotation switches to it, or the
//! previous one after). Either may be "no key" (an unauthenticated
//! backplane), which is how a running chassis moves to authentication, or
//! from one key to another, without refusing a single frame.

use core::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// Bytes of a chassis key.
pub const KEY_LEN: usize = 32;
/// Bytes of the tag every frame carries.
pub const TAG_LEN: usize = 16;
/// The key id of an unauthenticated frame (its tag is all zeros).
pub const NO_KEY: u8 = 0;

type HmacSha256 = Hmac<Sha256>;

/// A chassis key: 32 secret bytes shared by the modules of one chassis.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; KEY_LEN]);

impl Key {
    /// A key from its bytes (generate them with a CSPRNG: `msm keygen`).
    /// No check: boards take keys from outside through [`Key::from_secret`].
    pub const fn new(bytes: [u8; KEY_LEN]) -> Key {
        Key(bytes)
    }

    /// A key from secret bytes read from a file or an operator: refused
    /// when every byte is the same (an all-zero key file, a blank flash
    /// area), which no generator produces.
    pub fn from_secret(bytes: [u8; KEY_LEN]) -> Result<Key, KeyError> {
        if bytes.iter().all(|&b| b == bytes[0]) {
            return Err(KeyError::Weak);
        }
        Ok(Key(bytes))
    }

    /// First 4 bytes of SHA-256 of the key: safe to show, names the key in
    /// status and logs.
    pub fn fingerprint(&self) -> u32 {
        let d = Sha256::digest(self.0);
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }

    /// The key id frames carry: `1 + fingerprint[0] % 255`, never [`NO_KEY`].
    /// Two keys may share an id; a receiver then tries both.
    pub fn id(&self) -> u8 {
        1 + ((self.fingerprint() >> 24) as u8) % 255
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length: this cannot fail.
        match <HmacSha256 as KeyInit>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts 32-byte keys"),
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:08x})", self.fingerprint())
    }
}

fn tag_with(mut mac: HmacSha256, signed: &[u8]) -> [u8; TAG_LEN] {
    mac.update(signed);
    let full = mac.finalize().into_bytes();
    let mut t = [0u8; TAG_LEN];
    t.copy_from_slice(&full[..TAG_LEN]);
    t
}

/// A key ready to use: the HMAC state after the key is absorbed, cloned per
/// frame (saves two SHA-256 blocks a frame).
#[derive(Clone)]
struct Prepared {
    id: u8,
    fingerprint: u32,
    mac: HmacSha256,
}

impl Prepared {
    fn new(key: &Key) -> Prepared {
        Prepared { id: key.id(), fingerprint: key.fingerprint(), mac: key.mac() }
    }

    fn verify(&self, signed: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.mac.clone();
        mac.update(signed);
        // Constant time: a forger learns nothing from how long a refusal takes.
        mac.verify_truncated_left(tag).is_ok()
    }
}

/// What a node sends under or accepts: a key, or nothing (unauthenticated).
#[derive(Clone)]
enum Slot {
    Open,
    Keyed(Prepared),
}

impl Slot {
    fn fingerprint(&self) -> Option<u32> {
        match self {
            Slot::Open => None,
            Slot::Keyed(p) => Some(p.fingerprint),
        }
    }

    fn accepts(&self, key_id: u8, signed: &[u8], tag: &[u8]) -> bool {
        match self {
            Slot::Open => key_id == NO_KEY && tag.iter().all(|&b| b == 0),
            Slot::Keyed(p) => key_id == p.id && p.verify(signed, tag),
        }
    }
}

/// Which way the second key goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SecondKey {
    /// Installed, accepted, not yet sent under.
    Next,
    /// Sent under until the last switch; still accepted until retired.
    Previous,
}

/// The keys of a node, for `show switch`: fingerprints only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct KeyStatus {
    /// The key frames are sent under; `None`: unauthenticated.
    pub sending: Option<u32>,
    /// The other key accepted, if any (`Some(None)`: unauthenticated frames
    /// are still accepted, during a move to authentication).
    pub also: Option<(Option<u32>, SecondKey)>,
}

impl KeyStatus {
    /// Frames without a valid tag are refused.
    pub fn authenticated(&self) -> bool {
        self.sending.is_some() && !matches!(self.also, Some((None, _)))
    }
}

/// A key operation refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KeyError {
    /// Two keys are held already: retire one first.
    RingFull,
    /// That key is already held.
    AlreadyHeld,
    /// No next key to switch to.
    NoNextKey,
    /// No second key to retire.
    NothingToRetire,
    /// A live module does not hold the next key: switching would lose it.
    PeerLacksKey {
        /// The module.
        slot: crate::role::Slot,
        /// The key it lacks.
        fingerprint: u32,
    },
    /// A live module still sends under the key: retiring it would lose it.
    PeerSendsUnder {
        /// The module.
        slot: crate::role::Slot,
        /// The key it sends under.
        fingerprint: u32,
    },
    /// All bytes of the key are equal (all zero, say): not a secret.
    Weak,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyError::RingFull => "two keys are held already: retire the previous key first",
            KeyError::AlreadyHeld => "this key is already installed",
            KeyError::NoNextKey => "no next key installed to switch to",
            KeyError::NothingToRetire => "no second key to retire",
            KeyError::PeerLacksKey { slot, fingerprint } => {
                return write!(f, "{slot} does not hold key {fingerprint:08x}: install it there first");
            }
            KeyError::PeerSendsUnder { slot, fingerprint } => {
                return write!(f, "{slot} still sends under key {fingerprint:08x}: switch it first");
            }
            KeyError::Weak => "all bytes of the key are equal: generate one with `msm keygen`",
        })
    }
}

impl core::error::Error for KeyError {}

/// The keys of one node and the rotation steps.
#[derive(Clone)]
pub(crate) struct Keyring {
    send: Slot,
    also: Option<(Slot, SecondKey)>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyring({:?})", self.status())
    }
}

impl Keyring {
    /// Unauthenticated: sends untagged frames, accepts only those.
    pub(crate) const fn open() -> Keyring {
        Keyring { send: Slot::Open, also: None }
    }

    /// Exactly `key`, as at start.
    pub(crate) fn set(&mut self, key: &Key) {
        *self = Keyring { send: Slot::Keyed(Prepared::new(key)), also: None };
    }

    /// Rotation step 1: accept `key` as well.
    pub(crate) fn install(&mut self, key: &Key) -> Result<(), KeyError> {
        let fp = Some(key.fingerprint());
        if self.send.fingerprint() == fp || self.also.as_ref().is_some_and(|(s, _)| s.fingerprint() == fp) {
            return Err(KeyError::AlreadyHeld);
        }
        if self.also.is_some() {
            return Err(KeyError::RingFull);
        }
        self.also = Some((Slot::Keyed(Prepared::new(key)), SecondKey::Next));
        Ok(())
    }

    /// Rotation step 2: send under the next key; the old one stays accepted.
    pub(crate) fn switch(&mut self) -> Result<(), KeyError> {
        match self.also.take() {
            Some((next, SecondKey::Next)) => {
                let old = core::mem::replace(&mut self.send, next);
                self.also = Some((old, SecondKey::Previous));
                Ok(())
            }
            other => {
                self.also = other;
                Err(KeyError::NoNextKey)
            }
        }
    }

    /// Rotation step 3: stop accepting the second key.
    pub(crate) fn retire(&mut self) -> Result<(), KeyError> {
        self.also.take().map(|_| ()).ok_or(KeyError::NothingToRetire)
    }

    pub(crate) fn status(&self) -> KeyStatus {
        KeyStatus {
            sending: self.send.fingerprint(),
            also: self.also.as_ref().map(|(s, w)| (s.fingerprint(), *w)),
        }
    }

    /// The key id frames are sent with.
    pub(crate) fn send_id(&self) -> u8 {
        match &self.send {
            Slot::Open => NO_KEY,
            Slot::Keyed(p) => p.id,
        }
    }

    /// The tag for a frame whose authenticated bytes are `signed`.
    pub(crate) fn seal(&self, signed: &[u8]) -> [u8; TAG_LEN] {
        match &self.send {
            Slot::Open => [0; TAG_LEN],
            Slot::Keyed(p) => tag_with(p.mac.clone(), signed),
        }
    }

    /// The frame's tag is valid under a key we hold.
    pub(crate) fn verify(&self, key_id: u8, signed: &[u8], tag: &[u8]) -> bool {
        self.send.accepts(key_id, signed, tag)
            || self.also.as_ref().is_some_and(|(s, _)| s.accepts(key_id, signed, tag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Key {
        Key::new([b; KEY_LEN])
    }

    #[test]
    fn rfc4231_case_2_truncated() {
        // RFC 4231 test case 2 uses a short key; our keys are 32 bytes, so
        // check the HMAC core against it directly.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let full = mac.finalize().into_bytes();
        assert_eq!(
            full[..TAG_LEN],
            [0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75, 0xc7]
        );
    }

    #[test]
    fn seal_verifies_only_under_the_same_key() {
        let mut ring = Keyring::open();
        ring.set(&key(1));
        let (id, t) = (ring.send_id(), ring.seal(b"frame"));
        assert!(ring.verify(id, b"frame", &t));
        assert!(!ring.verify(id, b"frame!", &t), "other bytes");
        let mut other = Keyring::open();
        other.set(&key(2));
        assert!(!other.verify(id, b"frame", &t), "other key");
        assert!(!other.verify(NO_KEY, b"frame", &[0; TAG_LEN]), "a keyed node refuses untagged frames");
        assert!(Keyring::open().verify(NO_KEY, b"frame", &[0; TAG_LEN]));
        assert!(!Keyring::open().verify(id, b"frame", &t), "an open node cannot check tags");
    }

    #[test]
    fn rotation_never_refuses_a_frame_of_either_side() {
        let (old, new) = (key(1), key(2));
        let (mut a, mut b) = (Keyring::open(), Keyring::open());
        a.set(&old);
        b.set(&old);
        for step in 0..3 {
            // A moves first, B lags one step: each accepts what the other sends.
            match step {
                0 => a.install(&new).unwrap(),
                1 => {
                    b.install(&new).unwrap();
                    a.switch().unwrap();
                }
                _ => {
                    b.switch().unwrap();
                    assert_eq!(a.retire(), Ok(()));
                }
            }
            let (id, t) = (a.send_id(), a.seal(b"x"));
            assert!(b.verify(id, b"x", &t), "step {step}: B takes A's frame");
            let (id, t) = (b.send_id(), b.seal(b"x"));
            assert!(a.verify(id, b"x", &t), "step {step}: A takes B's frame");
        }
        assert_eq!(a.status(), KeyStatus { sending: Some(new.fingerprint()), also: None });
        assert_eq!(a.install(&new), Err(KeyError::AlreadyHeld));
        assert_eq!(a.switch(), Err(KeyError::NoNextKey));
        assert_eq!(a.retire(), Err(KeyError::NothingToRetire));
    }

    #[test]
    fn an_open_chassis_moves_to_a_key_without_refusals() {
        let mut a = Keyring::open();
        a.install(&key(3)).unwrap();
        assert!(a.verify(NO_KEY, b"x", &[0; TAG_LEN]));
        a.switch().unwrap();
        assert!(!a.status().authenticated(), "still accepts untagged frames");
        assert!(a.verify(NO_KEY, b"x", &[0; TAG_LEN]));
        a.retire().unwrap();
        assert!(a.status().authenticated());
        assert!(!a.verify(NO_KEY, b"x", &[0; TAG_LEN]));
    }

    #[test]
    fn debug_shows_no_secret() {
        let k = key(0xAB);
        let mut out = heapless::String::<32>::new();
        core::fmt::write(&mut out, format_args!("{k:?}")).unwrap();
        assert!(out.starts_with("Key(") && !out.contains("abab"), "{out}");
    }
}
