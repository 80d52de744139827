//! A small register-level driver for the LM3S6965's PL011-like UARTs.
//!
//! UART0 is not used (logs go out over semihosting, see `log.rs`). UART1 and
//! UART2 are the two backplane paths, one [`BoardUart`] each: its receive
//! interrupt drains the 16-byte hardware FIFO into the UART's own heapless
//! ring, so no byte is lost while the main loop is busy, and it implements
//! the `embedded-io` traits the `msm-backplane` UART link is written against.
//! One type for both, so `Redundant` holds two links of one type.

use core::cell::RefCell;
use core::convert::Infallible;

use critical_section::Mutex;
use heapless::Deque;
use lm3s6965::interrupt;

use crate::regs::{self, SYSCTL_RCGC1};

const UART1: usize = 0x4000_D000;
const UART2: usize = 0x4000_E000;

const DR: usize = 0x000;
const FR: usize = 0x018;
const IBRD: usize = 0x024;
const FBRD: usize = 0x028;
const LCRH: usize = 0x02C;
const CTL: usize = 0x030;
const IM: usize = 0x038;
const ICR: usize = 0x044;

const FR_RXFE: u32 = 1 << 4;
const FR_TXFF: u32 = 1 << 5;
const IM_RX: u32 = 1 << 4;
const IM_RT: u32 = 1 << 6;

/// Receive ring of each backplane UART: 1.5 KiB, three maximum frames
/// (130 ms of bytes at 115 200 baud while the main loop is busy).
pub const RX_RING: usize = 1536;

struct RxState {
    ring: Deque<u8, RX_RING>,
    /// Bytes dropped because the ring was full (never expected: the main
    /// loop drains it far faster than 46 KiB/s).
    overruns: u32,
}

/// A UART's receive ring, filled by its interrupt handler.
type Rx = Mutex<RefCell<RxState>>;

static RX1: Rx = Mutex::new(RefCell::new(RxState { ring: Deque::new(), overruns: 0 }));
static RX2: Rx = Mutex::new(RefCell::new(RxState { ring: Deque::new(), overruns: 0 }));

fn init(base: usize, clock_bit: u32) {
    regs::set_bits(SYSCTL_RCGC1, clock_bit);
    regs::write(base + CTL, 0);
    // 115200 baud at 12 MHz (QEMU ignores it; real silicon does not).
    regs::write(base + IBRD, 6);
    regs::write(base + FBRD, 33);
    regs::write(base + LCRH, 0x70); // 8N1, FIFOs on
    regs::write(base + CTL, 0x301); // enable, TX, RX
}

fn put(base: usize, byte: u8) {
    while regs::read(base + FR) & FR_TXFF != 0 {}
    regs::write(base + DR, u32::from(byte));
}

/// A backplane UART (UART1 or UART2) and its receive ring.
pub struct BoardUart {
    base: usize,
    rx: &'static Rx,
}

impl core::fmt::Debug for BoardUart {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BoardUart").field("base", &self.base).finish_non_exhaustive()
    }
}

impl BoardUart {
    /// Configures UART1 (backplane path 1) and unmasks its receive interrupts.
    pub fn uart1() -> BoardUart {
        BoardUart::init(UART1, 1 << 1, lm3s6965::Interrupt::UART1, &RX1)
    }

    /// Configures UART2 (backplane path 2) and unmasks its receive interrupts.
    pub fn uart2() -> BoardUart {
        BoardUart::init(UART2, 1 << 2, lm3s6965::Interrupt::UART2, &RX2)
    }

    fn init(base: usize, clock_bit: u32, irq: lm3s6965::Interrupt, rx: &'static Rx) -> BoardUart {
        init(base, clock_bit);
        regs::write(base + ICR, 0x7FF);
        regs::write(base + IM, IM_RX | IM_RT);
        crate::unmask(irq);
        BoardUart { base, rx }
    }

    /// Bytes the receive ring had to drop.
    pub fn overruns(&self) -> u32 {
        critical_section::with(|cs| self.rx.borrow_ref(cs).overruns)
    }

    /// A received byte waits in the ring.
    pub fn rx_ready(&self) -> bool {
        critical_section::with(|cs| !self.rx.borrow_ref(cs).ring.is_empty())
    }
}

/// The receive interrupt of the UART at `base`: its FIFO into its ring.
fn drain(base: usize, rx: &Rx) {
    critical_section::with(|cs| {
        let mut rx = rx.borrow_ref_mut(cs);
        while regs::read(base + FR) & FR_RXFE == 0 {
            // Low 8 bits are data; the error bits above are ignored (CRC catches damage).
            let byte = (regs::read(base + DR) & 0xFF) as u8;
            if rx.ring.push_back(byte).is_err() {
                rx.overruns = rx.overruns.wrapping_add(1);
            }
        }
        regs::write(base + ICR, IM_RX | IM_RT);
    });
}

#[interrupt]
fn UART1() {
    drain(UART1, &RX1);
}

#[interrupt]
fn UART2() {
    drain(UART2, &RX2);
}

impl embedded_io::ErrorType for BoardUart {
    type Error = Infallible;
}

impl embedded_io::ReadReady for BoardUart {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.rx_ready())
    }
}

impl embedded_io::Read for BoardUart {
    /// Blocks (sleeping) until at least one byte is there, as `Read` requires.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let n = critical_section::with(|cs| {
                let mut rx = self.rx.borrow_ref_mut(cs);
                let mut n = 0;
                for slot in buf.iter_mut() {
                    match rx.ring.pop_front() {
                        Some(b) => {
                            *slot = b;
                            n += 1;
                        }
                        None => break,
                    }
                }
                n
            });
            if n > 0 {
                return Ok(n);
            }
            cortex_m::asm::wfi();
        }
    }
}

impl embedded_io::WriteReady for BoardUart {
    fn write_ready(&mut self) -> Result<bool, Infallible> {
        Ok(regs::read(self.base + FR) & FR_TXFF == 0)
    }
}

impl embedded_io::Write for BoardUart {
    /// Writes what the transmit FIFO takes now (at least one byte: waits for room).
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        let mut n = 0;
        for &b in buf {
            if n > 0 && regs::read(self.base + FR) & FR_TXFF != 0 {
                break;
            }
            put(self.base, b);
            n += 1;
        }
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}
