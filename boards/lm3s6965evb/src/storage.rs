//! What the node keeps on the SD card (layout: [`card`]): the chassis key
//! and the boot counter, each in a block of its own, and the saved
//! configuration: `msm-flash`'s config store on [`SdNor`], a 64 KiB region
//! (128 blocks) 1 MiB into the card, holding `primary.cfg`. What the
//! master's saved-config stream carries (`msm_flash::saved_stream`: both
//! saved files and which is selected) is stored as is, so this node sends
//! the same bytes when it is master and runs the selected file from it.

use embedded_sdmmc::Block;
use msm_flash::{ConfigName, ConfigStore, SaveInfo};

use crate::card::{self, KeyBlockError, REGION_BLOCKS, REGION_FIRST};
use crate::host::FirmwareHost;
use crate::log;
use crate::sd::{self, SdNor};

const SW_VERSION: &str = concat!("msm-lm3s6965evb ", env!("CARGO_PKG_VERSION"));

pub type Store = ConfigStore<SdNor>;

/// What the card gave this boot.
pub struct Boot {
    /// The config store; `None` without a card or with an unusable one.
    pub store: Option<Store>,
    /// The engine's incarnation: the boot counter (0 without a card).
    pub incarnation: u32,
    /// The chassis key, or why there is none.
    pub key: Result<[u8; card::KEY_BYTES], NoKey>,
}

/// Why the backplane runs unauthenticated.
#[derive(Debug, Clone, Copy)]
pub enum NoKey {
    /// No usable card at all.
    NoCard,
    /// The key block could not be read.
    Unreadable,
    /// The key block is missing, damaged or of another version.
    Block(KeyBlockError),
}

/// Mounts the store and loads the saved configuration into `host`; reads
/// the chassis key and counts this boot. Without a card or with an
/// unusable one the node keeps the saved configuration in RAM only, runs
/// unauthenticated and has incarnation 0 on every boot (logged).
///
/// The boot count is the node's incarnation: it is written to the card
/// here, before the engine exists, so no frame goes out under a count that
/// a later boot could repeat (peers refuse a repeated or lower incarnation
/// as a replay once the backplane is authenticated).
pub fn mount(host: &mut FirmwareHost) -> Boot {
    let card = sd::Card::new(sd::SdSpi::init(), sd::Delay);
    let mut nor = match SdNor::new(card, REGION_FIRST, REGION_BLOCKS) {
        Ok(nor) => nor,
        Err(e) => {
            log!("sd: no usable card ({}): saved configuration kept in RAM only", e);
            defmt::warn!(
                "sd: no boot counter without a card: incarnation 0 on every boot, not monotonic \
                 (a peer cannot tell a reboot of this node from the boot before)"
            );
            return Boot { store: None, incarnation: 0, key: Err(NoKey::NoCard) };
        }
    };
    let incarnation = boot_count(&mut nor);
    let key = read_key(&mut nor);
    log!(
        "sd: card of {=u32} blocks, config region blocks {=u32}..{=u32}",
        nor.card_blocks(),
        REGION_FIRST,
        REGION_FIRST + REGION_BLOCKS
    );
    Boot { store: load(nor, host), incarnation, key }
}

/// Counts this boot on the card; the count, or 0 when the counter cannot
/// be read (logged).
fn boot_count(nor: &mut SdNor) -> u32 {
    match nor.bump_boot_count() {
        Ok(b) => {
            if !b.provisioned {
                defmt::warn!(
                    "sd: no boot counter on the card (block {=u32}): counting from 1; a card provisioned \
                     with `cargo xtask sd-image` starts from the provisioning time",
                    card::BOOT_BLOCK
                );
            }
            if let Err(e) = b.persisted {
                defmt::warn!(
                    "sd: boot count {=u32} NOT persisted ({}): a later boot may repeat this incarnation",
                    b.count,
                    e
                );
            }
            b.count
        }
        Err(e) => {
            defmt::warn!("sd: boot counter unreadable ({}): incarnation 0, not monotonic", e);
            0
        }
    }
}

/// The chassis key from its block on the card.
fn read_key(nor: &mut SdNor) -> Result<[u8; card::KEY_BYTES], NoKey> {
    let mut block = Block::new();
    if let Err(e) = nor.read_block(card::KEY_BLOCK, &mut block) {
        log!("sd: key block {=u32} unreadable: {}", card::KEY_BLOCK, e);
        return Err(NoKey::Unreadable);
    }
    card::decode_key(&block.contents).map_err(NoKey::Block)
}

/// Mounts the config store and loads `primary.cfg` into `host`.
fn load(nor: SdNor, host: &mut FirmwareHost) -> Option<Store> {
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
            match msm_flash::saved_stream::file_in(&host.saved, None) {
                Ok(text) => {
                    for line in core::str::from_utf8(text.unwrap_or(&[])).unwrap_or("<not utf-8>").lines() {
                        log!("saved> {=str}", line);
                    }
                }
                Err(e) => log!("sd: primary.cfg holds no saved configuration it can read: {}", e),
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
