//! The simulated backplane: every directed link between two nodes has its
//! own [`FaultModel`], the one msm-backplane's `FaultInjector` runs, so the
//! sweep and the link tests share one set of decisions. The simulator's
//! event queue carries the fates out in virtual time.

use std::time::Duration;

use msm_backplane::{FaultConfig, FaultModel, Rate};
use msm_time::Instant;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// The link of the named scenarios: 100 µs one way, no faults.
pub const CLEAN: FaultConfig = FaultConfig { latency: Duration::from_micros(100), ..FaultConfig::NONE };

/// The faulty link of one random seed: drop up to 5 %, duplicate up to 3 %,
/// reorder up to 5 %, corrupt up to 1 %, 50-500 µs one way plus up to
/// 300 µs of jitter; a reordered frame is held up to 3 ms more.
pub fn random_faults(rng: &mut Pcg64Mcg) -> FaultConfig {
    FaultConfig {
        drop: Rate::per_million(rng.random_range(0..50_000)),
        duplicate: Rate::per_million(rng.random_range(0..30_000)),
        reorder: Rate::per_million(rng.random_range(0..50_000)),
        corrupt: Rate::per_million(rng.random_range(0..10_000)),
        latency: Duration::from_micros(rng.random_range(50..500)),
        jitter: Duration::from_micros(rng.random_range(0..300)),
        reorder_delay: Duration::from_millis(3),
    }
}

/// One fault model per path of each directed link between `n` nodes (one
/// path, or two when the chassis has redundant backplane paths), all with
/// one config; each path fails on its own.
#[derive(Debug)]
pub struct Links {
    n: usize,
    paths: usize,
    cfg: FaultConfig,
    /// Indexed `(from * n + to) * paths + path`; the diagonal is never used.
    models: Vec<FaultModel>,
}

impl Links {
    /// Each path's model gets its own seed, drawn from `seed`.
    pub fn new(n: usize, paths: usize, cfg: FaultConfig, seed: u64) -> Links {
        let mut seeds = Pcg64Mcg::seed_from_u64(seed);
        let models = (0..n * n * paths).map(|_| FaultModel::new(cfg, seeds.random())).collect();
        Links { n, paths, cfg, models }
    }

    pub fn paths(&self) -> usize {
        self.paths
    }

    /// The model of path `path` from node `from` to node `to`.
    pub fn model(&mut self, from: usize, to: usize, path: usize) -> &mut FaultModel {
        &mut self.models[(from * self.n + to) * self.paths + path]
    }

    /// The config every link runs.
    pub fn config(&self) -> &FaultConfig {
        &self.cfg
    }

    /// Changes every link's config from the next frame on.
    pub fn set_config(&mut self, cfg: FaultConfig) {
        self.cfg = cfg;
        self.models.iter_mut().for_each(|m| m.set_config(cfg));
    }

    /// Cuts every path, both directions, between `a` and `b` until `until`.
    pub fn partition(&mut self, a: usize, b: usize, until: Instant) {
        for p in 0..self.paths {
            self.cut_path(a, b, p, until);
        }
    }

    /// Cuts one path, both directions, between `a` and `b` until `until`.
    pub fn cut_path(&mut self, a: usize, b: usize, path: usize, until: Instant) {
        self.model(a, b, path).partition_until(until);
        self.model(b, a, path).partition_until(until);
    }

    /// Ends every partition now.
    pub fn heal(&mut self) {
        self.models.iter_mut().for_each(FaultModel::heal);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use msm_backplane::Fate;

    use super::*;

    #[test]
    fn a_partition_cuts_both_directions_of_one_pair_only() {
        let mut l = Links::new(3, 1, CLEAN, 1);
        let now = Instant::ZERO;
        l.partition(0, 1, Instant::from_millis(5));
        assert_eq!(l.model(0, 1, 0).decide(now, 8), Fate::Partitioned);
        assert_eq!(l.model(1, 0, 0).decide(now, 8), Fate::Partitioned);
        assert!(matches!(l.model(0, 2, 0).decide(now, 8), Fate::Delivered(_)));
        assert!(matches!(l.model(2, 1, 0).decide(now, 8), Fate::Delivered(_)));
        l.heal();
        assert!(matches!(l.model(0, 1, 0).decide(now, 8), Fate::Delivered(_)));
    }

    #[test]
    fn a_cut_path_leaves_the_other_path_of_the_pair_up() {
        let mut l = Links::new(2, 2, CLEAN, 1);
        let now = Instant::ZERO;
        l.cut_path(0, 1, 0, Instant::from_millis(5));
        assert_eq!(l.model(0, 1, 0).decide(now, 8), Fate::Partitioned);
        assert_eq!(l.model(1, 0, 0).decide(now, 8), Fate::Partitioned);
        assert!(matches!(l.model(0, 1, 1).decide(now, 8), Fate::Delivered(_)));
        l.partition(0, 1, Instant::from_millis(5));
        assert_eq!(l.model(0, 1, 1).decide(now, 8), Fate::Partitioned, "a partition cuts every path");
    }

    #[test]
    fn random_faults_stay_within_the_profile() {
        let mut rng = Pcg64Mcg::seed_from_u64(3);
        for _ in 0..1000 {
            let f = random_faults(&mut rng);
            assert!(f.drop <= Rate::percent(5) && f.duplicate <= Rate::percent(3));
            assert!(f.reorder <= Rate::percent(5) && f.corrupt <= Rate::percent(1));
            assert!((50..500).contains(&f.latency.as_micros()) && f.jitter.as_micros() < 300);
        }
    }

    #[test]
    fn each_link_draws_its_own_faults() {
        let cfg = FaultConfig { drop: Rate::percent(50), ..CLEAN };
        let mut l = Links::new(2, 1, cfg, 9);
        let fates = |l: &mut Links, from, to| {
            (0..64)
                .map(|_| l.model(from, to, 0).decide(Instant::ZERO, 8) == Fate::Dropped)
                .collect::<Vec<_>>()
        };
        assert_ne!(fates(&mut l, 0, 1), fates(&mut l, 1, 0));
    }
}
