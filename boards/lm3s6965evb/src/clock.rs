//! Monotonic time from SysTick: a 1 kHz interrupt counts milliseconds, the
//! counter value gives the microseconds within one.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;
use msm_time::Instant;

/// Core clock of the LM3S6965 as QEMU runs it (and the RTIC examples assume).
pub const CORE_HZ: u32 = 12_000_000;
const TICKS_PER_MS: u32 = CORE_HZ / 1000;

/// Milliseconds since boot, low and high words (the high word changes every 49 days).
static MS_LO: AtomicU32 = AtomicU32::new(0);
static MS_HI: AtomicU32 = AtomicU32::new(0);

/// SysTick, owned.
pub struct Clock {
    /// Owned so nothing else reprograms it.
    _syst: SYST,
}

impl Clock {
    pub fn start(mut syst: SYST) -> Clock {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(TICKS_PER_MS - 1);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        Clock { _syst: syst }
    }

    /// Now, in microseconds since boot.
    pub fn now(&self) -> Instant {
        now()
    }
}

fn ms() -> u64 {
    loop {
        let hi = MS_HI.load(Ordering::Acquire);
        let lo = MS_LO.load(Ordering::Acquire);
        if MS_HI.load(Ordering::Acquire) == hi {
            return (u64::from(hi) << 32) | u64::from(lo);
        }
    }
}

/// Now, in microseconds since boot (SysTick must be started).
pub fn now() -> Instant {
    loop {
        let before = ms();
        let val = SYST::get_current();
        // A wrap between the two reads, or one whose interrupt is still
        // pending (COUNTFLAG is not usable: reading it clears it for the
        // handler too), shows as a changed millisecond count: read again.
        let pending = cortex_m::peripheral::SCB::is_pendst_pending();
        if ms() == before && !pending {
            let sub_us = (TICKS_PER_MS - 1).saturating_sub(val) / (TICKS_PER_MS / 1000);
            return Instant::from_micros(before * 1000 + u64::from(sub_us));
        }
        if pending && ms() == before {
            // Interrupts are masked (e.g. called from a critical section):
            // account for the pending tick ourselves.
            return Instant::from_micros((before + 1) * 1000);
        }
    }
}

#[exception]
fn SysTick() {
    let lo = MS_LO.load(Ordering::Relaxed).wrapping_add(1);
    if lo == 0 {
        MS_HI.fetch_add(1, Ordering::Release);
    }
    MS_LO.store(lo, Ordering::Release);
}
