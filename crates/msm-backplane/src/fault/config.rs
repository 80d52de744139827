//! What a faulty link does and how often: the one configuration shared by
//! the [`FaultInjector`](super::FaultInjector) and the simulator.

use core::time::Duration;

/// A probability, in parts per million: integers, so a seed gives the same
/// faults on a Cortex-M3 without an FPU as on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Rate(u32);

impl Rate {
    /// Never happens.
    pub const NEVER: Rate = Rate(0);
    /// Always happens.
    pub const ALWAYS: Rate = Rate(1_000_000);

    /// `n` in a million, capped at [`Rate::ALWAYS`].
    pub const fn per_million(n: u32) -> Rate {
        Rate(if n > 1_000_000 { 1_000_000 } else { n })
    }

    /// `p` in a hundred, capped at [`Rate::ALWAYS`].
    pub const fn percent(p: u32) -> Rate {
        Rate::per_million(p.saturating_mul(10_000))
    }

    /// The rate in parts per million.
    pub const fn as_per_million(self) -> u32 {
        self.0
    }
}

/// Fault rates per frame and the link's timing.
///
/// Every frame that is not dropped arrives `latency` plus `0..=jitter` after
/// it was sent, in the order it was sent (serial lines and stream sockets
/// are FIFO), unless the reorder fault strikes: then it is held a further
/// `0..=reorder_delay` and frames sent after it may arrive first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FaultConfig {
    /// Lose the frame.
    pub drop: Rate,
    /// Deliver the frame, then a second copy right after it.
    pub duplicate: Rate,
    /// Take the frame out of order: held up to `reorder_delay` more, and
    /// later frames overtake it.
    pub reorder: Rate,
    /// Flip 1 to 3 distinct random bits.
    pub corrupt: Rate,
    /// One-way delay of every frame.
    pub latency: Duration,
    /// Uniform extra delay of every frame, up to this; order is kept.
    pub jitter: Duration,
    /// The longest extra hold of a reordered frame.
    pub reorder_delay: Duration,
}

impl FaultConfig {
    /// No faults, no delay: every frame arrives at once, in order.
    pub const NONE: FaultConfig = FaultConfig {
        drop: Rate::NEVER,
        duplicate: Rate::NEVER,
        reorder: Rate::NEVER,
        corrupt: Rate::NEVER,
        latency: Duration::ZERO,
        jitter: Duration::ZERO,
        reorder_delay: Duration::from_millis(3),
    };
}

impl FaultConfig {
    /// The same timing without faults: what a test keeps when it stops
    /// injecting them (time still passes on the wire).
    pub const fn fault_free(self) -> FaultConfig {
        FaultConfig {
            latency: self.latency,
            jitter: self.jitter,
            reorder_delay: self.reorder_delay,
            ..FaultConfig::NONE
        }
    }
}

impl Default for FaultConfig {
    /// [`FaultConfig::NONE`], so `..Default::default()` keeps a useful reorder delay.
    fn default() -> Self {
        FaultConfig::NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_capped_at_always() {
        assert_eq!(Rate::percent(100), Rate::ALWAYS);
        assert_eq!(Rate::percent(250), Rate::ALWAYS);
        assert_eq!(Rate::per_million(2_000_000), Rate::ALWAYS);
        assert_eq!(Rate::percent(u32::MAX), Rate::ALWAYS);
        assert_eq!(Rate::percent(5).as_per_million(), 50_000);
    }

    #[test]
    fn fault_free_keeps_the_timing_only() {
        let cfg = FaultConfig {
            drop: Rate::percent(1),
            duplicate: Rate::percent(2),
            reorder: Rate::percent(3),
            corrupt: Rate::percent(4),
            latency: Duration::from_micros(5),
            jitter: Duration::from_micros(6),
            reorder_delay: Duration::from_micros(7),
        };
        let quiet = FaultConfig {
            latency: Duration::from_micros(5),
            jitter: Duration::from_micros(6),
            reorder_delay: Duration::from_micros(7),
            ..FaultConfig::NONE
        };
        assert_eq!(cfg.fault_free(), quiet);
    }
}
