//! A node's settings and the checks that refuse ones that cannot work.

use core::time::Duration;

use crate::error::ConfigError;
use crate::role::Slot;

/// Settings of one node. [`Config::new`] gives XOS-like defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// The slot this module sits in.
    pub slot: Slot,
    /// Lower wins the election (XOS `configure node slot <s> priority <n>`).
    pub priority: u8,
    /// Higher is healthier; breaks priority ties.
    pub health: u8,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
    /// Heartbeats missed before a peer is declared lost.
    pub miss_count: u8,
    /// Largest frame this node sends ([`MIN_MAX_FRAME`](crate::wire::MIN_MAX_FRAME)..=65535).
    pub max_frame: usize,
    /// First retransmission timeout; doubles on each expiry up to `rto_max`.
    pub rto: Duration,
    /// Ceiling of the retransmission backoff.
    pub rto_max: Duration,
    /// Boot counter: a restarted node is a new incarnation and never resumes
    /// an old session.
    pub incarnation: u32,
    /// How long `run msm-failover` may take before it is abandoned.
    pub handover_timeout: Duration,
    /// Backplane paths to each peer (1, or more with redundant links). With
    /// one, a copy of a heartbeat already taken can only be a replay; with
    /// more, each heartbeat arrives once per path and its copies are
    /// counted as duplicates, apart from replays.
    pub paths: u8,
    /// A random number drawn at boot (0: derived from `incarnation`): the
    /// base of this boot's challenges, so that no frame of an earlier boot
    /// of any peer can answer them.
    pub boot_nonce: u32,
    /// The software release, `major << 16 | minor << 8 | patch`, said in
    /// heartbeats from protocol version 5 (0: not said).
    pub release: u32,
}

impl Config {
    /// Defaults for `slot`: 100 ms heartbeats, 3 missed make a peer lost.
    pub fn new(slot: Slot) -> Self {
        Config {
            slot,
            priority: 0,
            health: 100,
            heartbeat_interval: Duration::from_millis(100),
            miss_count: 3,
            max_frame: 1024,
            rto: Duration::from_millis(40),
            rto_max: Duration::from_millis(320),
            incarnation: 0,
            handover_timeout: Duration::from_secs(5),
            paths: 1,
            boot_nonce: 0,
            release: 0,
        }
    }

    /// Refuse settings that cannot work, naming the one at fault.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat_interval.is_zero() {
            return Err(ConfigError::ZeroHeartbeat);
        }
        if self.miss_count == 0 {
            return Err(ConfigError::ZeroMissCount);
        }
        if !(crate::wire::MIN_MAX_FRAME..=65535).contains(&self.max_frame) {
            return Err(ConfigError::MaxFrame(self.max_frame));
        }
        Ok(())
    }

    /// Silence after which a peer is lost.
    pub(crate) fn detect(&self) -> Duration {
        self.heartbeat_interval * u32::from(self.miss_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_setting() {
        let ok = Config::new(Slot::A);
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.detect(), Duration::from_millis(300));
        let c = Config { heartbeat_interval: Duration::ZERO, ..ok.clone() };
        assert_eq!(c.validate(), Err(ConfigError::ZeroHeartbeat));
        let c = Config { miss_count: 0, ..ok.clone() };
        assert_eq!(c.validate(), Err(ConfigError::ZeroMissCount));
        for bad in [127, 65536] {
            let c = Config { max_frame: bad, ..ok.clone() };
            assert_eq!(c.validate(), Err(ConfigError::MaxFrame(bad)));
        }
    }
}
