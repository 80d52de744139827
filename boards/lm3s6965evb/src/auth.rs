//! The chassis key at boot: what the card gave (a key, or why there is
//! none, said loudly), and how long this MCU takes to authenticate a frame.
//!
//! The key itself is never logged, only its fingerprint (the first 4 bytes
//! of its SHA-256, as `msm-node` and `cargo xtask sd-image` show it).

use hmac::{Hmac, KeyInit, Mac};
use msm_checkpoint::Key;
use sha2::Sha256;

use crate::card;
use crate::clock::Clock;
use crate::log;
use crate::storage::NoKey;

/// Tags timed at boot: 20-40 ms under QEMU (a tag takes 20-35 µs there),
/// so the clock's 1 µs steps, the SysTick interrupts and QEMU's
/// translation of the code on first use are noise, and the boot is not
/// delayed noticeably (100 runs varied by 40 % from boot to boot). With
/// `cargo xtask qemu --icount` the time reads as instructions: 26.4 µs is
/// 26 400 instructions a tag.
const TIMED_RUNS: u32 = 1000;
/// The largest frame the firmware sends.
const TIMED_LEN: usize = crate::MAX_FRAME;

/// The key from the card's bytes, logged by fingerprint; or `None`, logged
/// at warning level with the reason.
pub fn from_card(key: Result<[u8; card::KEY_BYTES], NoKey>) -> Option<Key> {
    match key {
        Ok(bytes) => {
            let key = Key::new(bytes);
            log!(
                "auth: chassis key {=u32:08x} from the card (block {=u32}): backplane authenticated",
                key.fingerprint(),
                card::KEY_BLOCK
            );
            Some(key)
        }
        Err(why) => {
            match why {
                NoKey::NoCard => {
                    defmt::warn!("auth: backplane UNAUTHENTICATED: no SD card, so no chassis key")
                }
                NoKey::Unreadable => defmt::warn!(
                    "auth: backplane UNAUTHENTICATED: the key block (block {=u32}) could not be read",
                    card::KEY_BLOCK
                ),
                NoKey::Block(card::KeyBlockError::UnknownVersion(v)) => defmt::warn!(
                    "auth: backplane UNAUTHENTICATED: key block version {=u32} unknown (this firmware reads \
                     version {=u32})",
                    v,
                    card::KEY_VERSION
                ),
                NoKey::Block(e) => defmt::warn!(
                    "auth: backplane UNAUTHENTICATED: {=str} (block {=u32})",
                    e.reason(),
                    card::KEY_BLOCK
                ),
            }
            defmt::warn!(
                "auth: frames go out untagged and only untagged frames are taken; provision a key with \
                 `cargo xtask sd-image --key-file PATH`"
            );
            None
        }
    }
}

/// Times [`TIMED_RUNS`] tags of a [`TIMED_LEN`]-byte frame as the engine
/// makes them (HMAC-SHA256 with the key already absorbed, cloned per
/// frame), under a fixed key, and logs the time per tag. Under QEMU this is
/// the host's speed at emulating the MCU, not the silicon's.
pub fn time_tag(clock: &Clock) {
    let Ok(prepared) = <Hmac<Sha256> as KeyInit>::new_from_slice(&[0x5A; card::KEY_BYTES]) else {
        return;
    };
    let mut frame = [0u8; TIMED_LEN];
    for (i, b) in frame.iter_mut().enumerate() {
        *b = i as u8;
    }
    let start = clock.now();
    for run in 0..TIMED_RUNS {
        // A different frame each run, so nothing is computed once.
        frame[0] = run as u8;
        let mut mac = prepared.clone();
        mac.update(core::hint::black_box(&frame));
        core::hint::black_box(mac.finalize().into_bytes());
    }
    let us = clock.now().saturating_since(start).as_micros();
    let tenths = u64::try_from(us * 10 / u128::from(TIMED_RUNS)).unwrap_or(u64::MAX);
    log!(
        "auth: {=usize}-byte frame tagged in {=u64}.{=u64} us ({=u32} runs)",
        TIMED_LEN,
        tenths / 10,
        tenths % 10,
        TIMED_RUNS
    );
}
