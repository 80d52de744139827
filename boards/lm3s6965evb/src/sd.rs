//! Persistent storage: the SD card on SSI0, as NOR flash for `msm-flash`.
//!
//! Three layers, each small:
//! - [`SdSpi`]: an `embedded-hal` [`SpiDevice`] on the PL022 SSI0 with
//!   chip select on GPIO port D pin 0 (active low), carrying the two
//!   workarounds QEMU 7.2's SD-over-SPI model needs;
//! - `embedded-sdmmc`'s [`SdCard`]: the SD protocol, 512-byte blocks;
//! - [`SdNor`]: NOR rules (erase sets bytes to 0xFF, program only clears
//!   bits) on a range of blocks, so `msm-flash`'s [`ConfigStore`] runs on it
//!   unchanged. Writes go through to the card before returning, so
//!   [`Durable::sync`] has nothing left to do.
//!
//! [`ConfigStore`]: msm_flash::ConfigStore

use embedded_hal::delay::DelayNs;
use embedded_hal::spi::{self, Operation, SpiDevice};
use embedded_sdmmc::{Block, BlockCount, BlockDevice, BlockIdx, SdCard};
use embedded_storage::nor_flash::{ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash};
use msm_flash::Durable;

use crate::card;
use crate::regs::{self, SYSCTL_RCGC1, SYSCTL_RCGC2};

const SSI0: usize = 0x4000_8000;
const CR0: usize = 0x000;
const CR1: usize = 0x004;
const DR: usize = 0x008;
const SR: usize = 0x00C;
const CPSR: usize = 0x010;
const SR_TNF: u32 = 1 << 1;
const SR_RNE: u32 = 1 << 2;

const GPIOD: usize = 0x4000_7000;
/// Data register through the address mask of pin 0 only.
const GPIOD_PIN0: usize = GPIOD + (1 << 2);
const GPIO_DIR: usize = 0x400;
const GPIO_DEN: usize = 0x51C;

/// SD commands whose responses need QEMU workarounds.
const CMD24: u8 = 24;
const CMD25: u8 = 25;
const CMD58: u8 = 58;

/// SSI0 with GPIO D0 as chip select: an [`SpiDevice`] for `embedded-sdmmc`.
#[derive(Debug)]
pub struct SdSpi {
    /// The command of the last 6-byte command frame written.
    last_cmd: Option<u8>,
    /// Waiting for that command's R1 response.
    awaiting_r1: bool,
    /// A write command was answered: the next data byte needs a gap byte first.
    gap_needed: bool,
}

impl SdSpi {
    pub fn init() -> SdSpi {
        regs::set_bits(SYSCTL_RCGC1, 1 << 4); // SSI0
        regs::set_bits(SYSCTL_RCGC2, 1 << 3); // GPIO port D
        regs::set_bits(GPIOD + GPIO_DIR, 1);
        regs::set_bits(GPIOD + GPIO_DEN, 1);
        regs::write(GPIOD_PIN0, 1); // deselected
        regs::write(SSI0 + CR1, 0);
        regs::write(SSI0 + CPSR, 2);
        regs::write(SSI0 + CR0, 0x0007); // SPI mode 0, 8-bit frames
        regs::write(SSI0 + CR1, 0x2); // enable, master
        SdSpi { last_cmd: None, awaiting_r1: false, gap_needed: false }
    }

    fn exchange(&mut self, out: u8) -> u8 {
        // QEMU quirk 2: the first byte after a write command's response is
        // swallowed, so a data start token sent right after CMD24's R1 would
        // be lost. Send one 0xFF first (real cards expect that gap too).
        if self.gap_needed && out != 0xFF {
            self.gap_needed = false;
            let _ = raw_exchange(0xFF);
        }
        let mut r = raw_exchange(out);
        if self.awaiting_r1 && out == 0xFF && r & 0x80 == 0 {
            self.awaiting_r1 = false;
            match self.last_cmd {
                // QEMU quirk 1: CMD58 (READ_OCR) answers with the idle bit
                // still set after initialisation; embedded-sdmmc would report
                // Cmd58Error. The card is ready: clear it.
                Some(CMD58) => r &= !1,
                Some(CMD24 | CMD25) => self.gap_needed = true,
                _ => {}
            }
        } else if out == 0xFF && self.gap_needed {
            // The gap came from the driver itself (e.g. a busy poll).
            self.gap_needed = false;
        }
        r
    }

    fn note_write(&mut self, buf: &[u8]) {
        if let [first, _, _, _, _, _] = buf {
            if first & 0xC0 == 0x40 {
                self.last_cmd = Some(first & 0x3F);
                self.awaiting_r1 = true;
                self.gap_needed = false;
            }
        }
    }
}

fn raw_exchange(out: u8) -> u8 {
    while regs::read(SSI0 + SR) & SR_TNF == 0 {}
    regs::write(SSI0 + DR, u32::from(out));
    while regs::read(SSI0 + SR) & SR_RNE == 0 {}
    (regs::read(SSI0 + DR) & 0xFF) as u8
}

impl spi::ErrorType for SdSpi {
    type Error = spi::ErrorKind;
}

impl SpiDevice<u8> for SdSpi {
    fn transaction(&mut self, operations: &mut [Operation<'_, u8>]) -> Result<(), Self::Error> {
        regs::write(GPIOD_PIN0, 0);
        for op in operations {
            match op {
                Operation::Read(buf) => {
                    for b in buf.iter_mut() {
                        *b = self.exchange(0xFF);
                    }
                }
                Operation::Write(buf) => {
                    self.note_write(buf);
                    for &b in buf.iter() {
                        let _ = self.exchange(b);
                    }
                }
                Operation::Transfer(read, write) => {
                    self.note_write(write);
                    for i in 0..read.len().max(write.len()) {
                        let r = self.exchange(write.get(i).copied().unwrap_or(0xFF));
                        if let Some(slot) = read.get_mut(i) {
                            *slot = r;
                        }
                    }
                }
                Operation::TransferInPlace(buf) => {
                    for b in buf.iter_mut() {
                        *b = self.exchange(*b);
                    }
                }
                Operation::DelayNs(ns) => Delay.delay_ns(*ns),
            }
        }
        regs::write(GPIOD_PIN0, 1);
        Ok(())
    }
}

/// Busy-wait delays at the core clock.
#[derive(Debug, Clone, Copy)]
pub struct Delay;

impl DelayNs for Delay {
    fn delay_ns(&mut self, ns: u32) {
        let cycles = u64::from(ns) * u64::from(crate::clock::CORE_HZ) / 1_000_000_000;
        cortex_m::asm::delay(u32::try_from(cycles).unwrap_or(u32::MAX).max(1));
    }
}

pub type Card = SdCard<SdSpi, Delay>;

/// Errors of [`SdNor`].
#[derive(Debug, defmt::Format)]
pub enum SdNorError {
    /// The card failed (or is absent); logged through defmt.
    Card(#[allow(dead_code)] embedded_sdmmc::SdCardError),
    OutOfBounds,
    NotAligned,
    /// A written block read back different.
    Readback,
    /// The boot counter is at its maximum (2^32 - 1 boots).
    Exhausted,
}

impl NorFlashError for SdNorError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            SdNorError::Card(_) => NorFlashErrorKind::Other,
            SdNorError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            SdNorError::NotAligned => NorFlashErrorKind::NotAligned,
            SdNorError::Readback | SdNorError::Exhausted => NorFlashErrorKind::Other,
        }
    }
}

const BLOCK: usize = card::BLOCK;

/// What [`SdNor::bump_boot_count`] did.
#[derive(Debug)]
pub struct BootCount {
    /// This boot's count: the node's incarnation.
    pub count: u32,
    /// The card had a counter (provisioned, or booted before).
    pub provisioned: bool,
    /// The count is on the card; if not, a later boot may repeat it.
    pub persisted: Result<(), SdNorError>,
}

/// NOR flash rules on blocks `first .. first + blocks` of the card. One
/// block is cached for reads; writes go through.
pub struct SdNor {
    card: Card,
    /// The card's size in blocks, read once (QEMU 7.2 answers CMD9 after a
    /// write badly, so it is not asked again).
    card_blocks: u32,
    first: u32,
    blocks: u32,
    cache: Block,
    cached: Option<u32>,
}

impl SdNor {
    /// The region must lie inside the card.
    pub fn new(card: Card, first: u32, blocks: u32) -> Result<SdNor, SdNorError> {
        let BlockCount(n) = card.num_blocks().map_err(SdNorError::Card)?;
        if first.checked_add(blocks).is_none_or(|end| end > n) {
            return Err(SdNorError::OutOfBounds);
        }
        Ok(SdNor { card, card_blocks: n, first, blocks, cache: Block::new(), cached: None })
    }

    /// Adds one to the boot counter (block [`card::BOOT_BLOCK`]). The new
    /// count is written and read back before this returns, so it is on the
    /// card before the node sends a frame under it: a later boot never
    /// reuses an incarnation. `Err` only when the counter cannot be read.
    pub fn bump_boot_count(&mut self) -> Result<BootCount, SdNorError> {
        let mut block = Block::new();
        self.read_block(card::BOOT_BLOCK, &mut block)?;
        let old = card::decode_boot(&block.contents);
        let Some(count) = old.unwrap_or(0).checked_add(1) else {
            return Ok(BootCount {
                count: u32::MAX,
                provisioned: true,
                persisted: Err(SdNorError::Exhausted),
            });
        };
        block.contents = card::encode_boot(count);
        let persisted = self.write_block(card::BOOT_BLOCK, &block).and_then(|()| {
            let mut back = Block::new();
            self.read_block(card::BOOT_BLOCK, &mut back)?;
            if back.contents == block.contents { Ok(()) } else { Err(SdNorError::Readback) }
        });
        Ok(BootCount { count, provisioned: old.is_some(), persisted })
    }

    /// Reads block `idx` of the card (anywhere, not only in the region).
    pub fn read_block(&mut self, idx: u32, block: &mut Block) -> Result<(), SdNorError> {
        self.card.read(core::slice::from_mut(block), BlockIdx(idx)).map_err(SdNorError::Card)
    }

    /// Writes block `idx` of the card; done when it returns (the card has
    /// left its busy state and reported success).
    fn write_block(&mut self, idx: u32, block: &Block) -> Result<(), SdNorError> {
        if (self.first..self.first + self.blocks).contains(&idx) {
            // The region's cached block must not go stale.
            self.cached = None;
        }
        self.card.write(core::slice::from_ref(block), BlockIdx(idx)).map_err(SdNorError::Card)
    }

    pub fn card_blocks(&self) -> u32 {
        self.card_blocks
    }

    fn check(&self, offset: u32, len: usize) -> Result<(), SdNorError> {
        let end = u64::from(offset) + len as u64;
        if end > u64::from(self.blocks) * BLOCK as u64 { Err(SdNorError::OutOfBounds) } else { Ok(()) }
    }

    fn load(&mut self, block: u32) -> Result<(), SdNorError> {
        if self.cached != Some(block) {
            self.cached = None;
            self.card
                .read(core::slice::from_mut(&mut self.cache), BlockIdx(self.first + block))
                .map_err(SdNorError::Card)?;
            self.cached = Some(block);
        }
        Ok(())
    }

    fn store(&mut self, block: u32) -> Result<(), SdNorError> {
        let r = self.card.write(core::slice::from_ref(&self.cache), BlockIdx(self.first + block));
        if r.is_err() {
            self.cached = None;
        }
        r.map_err(SdNorError::Card)
    }
}

impl core::fmt::Debug for SdNor {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SdNor").field("first", &self.first).field("blocks", &self.blocks).finish()
    }
}

impl ErrorType for SdNor {
    type Error = SdNorError;
}

impl ReadNorFlash for SdNor {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SdNorError> {
        self.check(offset, bytes.len())?;
        let mut at = offset as usize;
        for chunk in bytes.chunks_mut(BLOCK) {
            let mut done = 0;
            while done < chunk.len() {
                let block = (at / BLOCK) as u32;
                let within = at % BLOCK;
                self.load(block)?;
                let n = (BLOCK - within).min(chunk.len() - done);
                chunk[done..done + n].copy_from_slice(&self.cache.contents[within..within + n]);
                done += n;
                at += n;
            }
        }
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.blocks as usize * BLOCK
    }
}

impl NorFlash for SdNor {
    const WRITE_SIZE: usize = 1;
    const ERASE_SIZE: usize = BLOCK;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), SdNorError> {
        if from % BLOCK as u32 != 0 || to % BLOCK as u32 != 0 || from > to {
            return Err(SdNorError::NotAligned);
        }
        self.check(from, (to - from) as usize)?;
        for block in from / BLOCK as u32..to / BLOCK as u32 {
            self.cache.contents.fill(0xFF);
            self.cached = Some(block);
            self.store(block)?;
        }
        Ok(())
    }

    /// Programs by AND-ing into the block: bits only go from 1 to 0, as on NOR.
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SdNorError> {
        self.check(offset, bytes.len())?;
        let mut at = offset as usize;
        let mut done = 0;
        while done < bytes.len() {
            let block = (at / BLOCK) as u32;
            let within = at % BLOCK;
            self.load(block)?;
            let n = (BLOCK - within).min(bytes.len() - done);
            for (dst, src) in self.cache.contents[within..within + n].iter_mut().zip(&bytes[done..done + n]) {
                *dst &= *src;
            }
            self.store(block)?;
            done += n;
            at += n;
        }
        Ok(())
    }
}

impl Durable for SdNor {
    /// Every write and erase reached the card before it returned.
    fn sync(&mut self) -> Result<(), SdNorError> {
        Ok(())
    }
}
