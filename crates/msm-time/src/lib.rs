//! # msm-time
//!
//! Time is an argument: the checkpoint engine, the backplane's paths and the
//! fault injector never read a clock. Boards pass an [`Instant`] from
//! whatever monotonic source they have (SysTick, `CLOCK_MONOTONIC`, the
//! simulator's virtual clock). A crate of its own, as embassy-time is, so the
//! link layer does not depend on the engine to share a notion of time.
//!
//! ```
//! use core::time::Duration;
//! use msm_time::Instant;
//!
//! let boot = Instant::from_millis(5);
//! let deadline = boot + Duration::from_millis(300);
//! assert_eq!(deadline.as_millis(), 305);
//! assert_eq!(deadline.saturating_since(boot), Duration::from_millis(300));
//! assert_eq!(boot.saturating_since(deadline), Duration::ZERO);
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use core::ops::{Add, Sub};
use core::time::Duration;

/// Microseconds since an arbitrary, board-chosen epoch. Monotonic; arithmetic
/// saturates rather than wraps, so a far deadline is "never", not "now".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant(u64);

impl Instant {
    /// The board's epoch.
    pub const ZERO: Instant = Instant(0);

    /// `us` microseconds after the epoch.
    pub const fn from_micros(us: u64) -> Self {
        Instant(us)
    }
    /// `ms` milliseconds after the epoch (saturating).
    pub const fn from_millis(ms: u64) -> Self {
        Instant(ms.saturating_mul(1000))
    }
    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }
    /// Whole milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0 / 1000
    }
    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(micros(d)))
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(micros(d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_at_both_ends() {
        assert_eq!(
            Instant::from_micros(u64::MAX - 1) + Duration::from_secs(1),
            Instant::from_micros(u64::MAX)
        );
        assert_eq!(Instant::from_micros(5) - Duration::from_secs(1), Instant::ZERO);
        assert_eq!(Instant::from_millis(u64::MAX).as_micros(), u64::MAX);
        assert_eq!(Instant::ZERO + Duration::MAX, Instant::from_micros(u64::MAX));
    }
}
