//! The saved configuration on the SD card: `msm-flash`'s config store on
//! [`SdNor`], a 64 KiB region (128 blocks) 1 MiB into the card, holding
//! `primary.cfg`. What the master's saved-config stream carries (its store's
//! framing: an 8-byte length, then the text) is stored as is, so this node
//! sends the same bytes when it is master.

use msm_flash::{ConfigName, ConfigStore, SaveInfo};

use crate::host::FirmwareHost;
use crate::log;
use crate::sd::{self, SdNor};

/// First block of the config region, and its length in blocks.
const REGION_FIRST: u32 = 2048;
const REGION_BLOCKS: u32 = 128;
const SW_VERSION: &str = concat!("msm-lm3s6965evb ", env!("CARGO_PKG_VERSION"));

pub type Store = ConfigStore<SdNor>;

/// Mounts the store and loads the saved configuration into `host`; `None`
/// (logged) without a card or with an unusable one: the node then keeps the
/// saved configuration in RAM only.
///
/// Also counts boots in the block before the region: the count is the
/// node's incarnation (0 without a card), so a restarted node never resumes
/// an old checkpoint session.
pub fn mount(host: &mut FirmwareHost, incarnation: &mut u32) -> Option<Store> {
    let card = sd::Card::new(sd::SdSpi::init(), sd::Delay);
    let mut nor = match SdNor::new(card, REGION_FIRST, REGION_BLOCKS) {
        Ok(nor) => nor,
        Err(e) => {
            log!("sd: no usable card ({}): saved configuration kept in RAM only", e);
            return None;
        }
    };
    match nor.bump_boot_count() {
        Ok(n) => *incarnation = n,
        Err(e) => log!("sd: boot counter not updated ({})", e),
    }
    log!(
        "sd: card of {=u32} blocks, config region blocks {=u32}..{=u32}",
        nor.card_blocks(),
        REGION_FIRST,
        REGION_FIRST + REGION_BLOCKS
    );
    let mut store = match ConfigStore::mount(nor, ConfigName::Primary) {
        Ok(s) => s,
        Err(e) => {
            log!("sd: config store refused to mount: {}", e);
            return None;
        }
    };
    let Some(info) = store.current().copied() else {
        log!("sd: primary.cfg empty");
        return Some(store);
    };
    host.saved.clear();
    if host.saved.resize(info.len as usize, 0).is_err() {
        log!("sd: primary.cfg is {=u32} bytes, more than this node holds: not loaded", info.len);
        return Some(store);
    }
    match store.read(0, &mut host.saved) {
        Ok(n) if n == info.len as usize => {
            log!(
                "sd: primary.cfg generation {=u32} loaded, {=u32} bytes, crc {=u32:08x}",
                info.generation,
                info.len,
                info.crc
            );
            let text = host.saved.get(8..).unwrap_or(&[]);
            for line in core::str::from_utf8(text).unwrap_or("<not utf-8>").lines() {
                log!("saved> {=str}", line);
            }
        }
        Ok(n) => {
            log!("sd: primary.cfg short read ({=usize} of {=u32} bytes): not loaded", n, info.len);
            host.saved.clear();
        }
        Err(e) => {
            log!("sd: reading primary.cfg failed: {}", e);
            host.saved.clear();
        }
    }
    Some(store)
}

/// Writes a newly received saved configuration to the card.
pub fn save(store: &mut Option<Store>, data: &[u8]) {
    let Some(store) = store.as_mut() else {
        log!("saved configuration: {=usize} bytes (held in RAM: no SD card)", data.len());
        return;
    };
    match store.save(data, &SaveInfo { saved_at: 0, sw_version: SW_VERSION }) {
        Ok(info) => log!(
            "sd: primary.cfg generation {=u32} stored, {=u32} bytes, crc {=u32:08x}",
            info.generation,
            info.len,
            info.crc
        ),
        Err(e) => log!("sd: storing primary.cfg failed: {}", e),
    }
}
