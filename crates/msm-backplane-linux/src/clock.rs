//! The board's clock: `CLOCK_MONOTONIC` as the sans-IO layers' [`Instant`].

use std::time::Duration;

use msm_time::Instant;

/// Microseconds since the clock was made, from `std::time::Instant`
/// (`CLOCK_MONOTONIC`).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: std::time::Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        Clock { start: std::time::Instant::now() }
    }

    pub fn now(&self) -> Instant {
        Instant::from_micros(u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// Time left until `deadline` (zero if past): a poll timeout.
    pub fn until(&self, deadline: Instant) -> Duration {
        deadline.saturating_since(self.now())
    }
}
