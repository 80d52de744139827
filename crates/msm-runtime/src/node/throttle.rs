//! The backplane throttle: a token bucket that paces sends to a byte rate,
//! so a fast socket can stand in for a slow serial backplane.

use msm_time::Instant;

/// At most this much of the rate may be saved up for a burst.
const BURST_SECS: f64 = 0.05;

/// A send budget topped up at `rate` bytes per second.
#[derive(Debug, Clone)]
pub struct Throttle {
    /// `None`: no limit, as fast as the link takes frames.
    rate: Option<u64>,
    /// Bytes that may be sent now.
    tokens: f64,
    /// When `tokens` was last topped up.
    refilled: Instant,
}

impl Throttle {
    pub fn new(rate: Option<u64>) -> Self {
        Throttle { rate, tokens: 0.0, refilled: Instant::ZERO }
    }

    /// Whether `len` bytes may go at `now` (and if so, spend them).
    pub fn allow(&mut self, now: Instant, len: usize) -> bool {
        let Some(rate) = self.rate else { return true };
        let dt = now.saturating_since(self.refilled).as_secs_f64();
        self.refilled = now;
        // A frame larger than the burst still goes once the burst is saved up.
        self.tokens = (self.tokens + dt * rate as f64).min(rate as f64 * BURST_SECS + len as f64);
        if self.tokens >= len as f64 {
            self.tokens -= len as f64;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn no_rate_never_holds_back() {
        let mut t = Throttle::new(None);
        assert!((0..1000).all(|_| t.allow(at(0), 1 << 20)));
    }

    #[test]
    fn sends_at_the_rate_with_a_bounded_burst() {
        // 10 000 bytes/s: 100 bytes per 10 ms, a burst of 500 bytes.
        let mut t = Throttle::new(Some(10_000));
        assert!(!t.allow(at(0), 100), "nothing saved up at start");
        assert!(t.allow(at(10), 100));
        assert!(!t.allow(at(10), 1), "the 10 ms were spent");
        // After a long idle spell: one frame plus 50 ms worth, no more.
        assert!(t.allow(at(10_000), 600));
        assert!(t.allow(at(10_000), 500));
        assert!(!t.allow(at(10_000), 1));
    }
}
