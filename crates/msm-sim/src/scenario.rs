//! One random run per seed: a random chassis (2 or 3 nodes, a random
//! dependency DAG of applications), random churn, and with faults on: a lossy
//! link, crashes of master and backup, short and long partitions, handovers,
//! and in a third of them two backplane paths, one of which is cut at times.
//! Then faults stop, crashed nodes restart, and after a quiet period the
//! chassis must have converged.

use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::link;
use crate::sim::{APPS, AppDef, Sim, SimConfig, Stats};
use crate::violation::Violation;

/// A failed seed, printed with the command that replays it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub seed: u64,
    pub faults: bool,
    pub at_us: u64,
    pub violation: Violation,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} failed at t={:.3} ms: {}\n  replay: cargo xtask sim --seed {}{} --trace",
            self.seed,
            self.at_us as f64 / 1000.0,
            self.violation,
            self.seed,
            if self.faults { "" } else { " --no-faults" }
        )
    }
}

/// A random DAG over `n` applications: app i may depend on any j < i.
pub fn random_apps(rng: &mut Pcg64Mcg, n: usize) -> Vec<AppDef> {
    (0..n)
        .map(|i| {
            let deps = (0..i).filter(|_| rng.random_bool(0.35)).collect();
            AppDef { name: format!("app{i}"), schema: 1, deps }
        })
        .collect()
}

pub fn random_config(rng: &mut Pcg64Mcg, faults: bool) -> SimConfig {
    // Standbys in a quarter of the runs: three modules, or four.
    let modules = match rng.random_range(0..20) {
        0..=2 => 3,
        3..=4 => 4,
        _ => 2,
    };
    let mut cfg = SimConfig::chassis(modules);
    let n = rng.random_range(1..=APPS.min(6));
    cfg.apps = random_apps(rng, n);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    cfg.order = Some(order);
    cfg.max_frame = [256, 512, 1024][rng.random_range(0..3)];
    cfg.boot_gap = Duration::from_millis(rng.random_range(0..60));
    if faults {
        cfg.link = link::random_faults(rng);
        // The attacker is on in every faulty run, at a seeded rate.
        cfg.attack = rng.random_range(0.005..0.05);
        // Redundant backplane paths in a third of them, each failing on its own.
        if rng.random_bool(0.35) {
            cfg.paths = 2;
        }
        // In a fifth, nodes forget their term when they restart (as the
        // firmware may): a restarted master can claim its old term again.
        cfg.keep_terms = rng.random_bool(0.8);
    }
    cfg
}

/// Run one seed. `trace` prints every event.
pub fn run(seed: u64, faults: bool, trace: bool) -> Result<Stats, Failure> {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let mut cfg = random_config(&mut rng, faults);
    // An insider (a module holding the key that misbehaves) in a third of
    // the faulty runs; its own generator leaves every other choice as it was.
    let mut irng = Pcg64Mcg::seed_from_u64(seed ^ 0x1251_de42);
    if faults && irng.random_bool(0.3) {
        cfg.insider = irng.random_range(0.002..0.02);
    }
    let mut sim = Sim::new(cfg, seed ^ 0x5eed);
    sim.trace = trace;
    if faults && rng.random_bool(0.3) {
        // Backup hosts that sometimes cannot store a record: the stream must re-bulk.
        let n = rng.random_range(50..800);
        for node in &mut sim.nodes {
            node.host.refuse_every = Some(n);
        }
    }
    let wrap = |sim: &Sim, v: Violation| Failure { seed, faults, at_us: sim.now, violation: v };
    if trace {
        println!(
            "seed {seed}: {} nodes, {} backplane path(s), apps {:?}, link {:?}, backup refuses every {:?} records",
            sim.cfg.nodes,
            sim.cfg.paths,
            sim.cfg.apps,
            sim.faults(),
            sim.nodes[0].host.refuse_every
        );
    }

    let hb_us = sim.cfg.heartbeat.as_micros() as u64;
    let end_us = 1_500_000u64;
    let churn_gap = rng.random_range(200..3000u64);
    let keys = rng.random_range(8..300u32);
    let mut t = 0u64;
    // Boot the rest of the chassis on schedule.
    let gap = sim.cfg.boot_gap.as_micros() as u64;
    let mut to_boot: Vec<(u64, usize)> =
        (1..sim.nodes.len()).filter(|_| gap > 0).map(|i| (i as u64 * gap, i)).collect();
    let mut restarts: Vec<(u64, usize)> = Vec::new();
    while t < end_us {
        t += rng.random_range(churn_gap / 2..=churn_gap);
        sim.run_until(t).map_err(|v| wrap(&sim, v))?;
        to_boot.retain(|&(at, i)| {
            if at <= t {
                sim.boot(i);
                false
            } else {
                true
            }
        });
        let due: Vec<usize> = restarts.iter().filter(|(at, _)| *at <= t).map(|x| x.1).collect();
        restarts.retain(|(at, _)| *at > t);
        for i in due {
            sim.boot(i);
        }
        sim.random_change(keys);
        let roll: f64 = rng.random();
        if roll < 0.02 {
            let line = format!(
                "configure vlan v{} add ports {}\n",
                rng.random_range(1..40),
                rng.random_range(1..48)
            );
            sim.config_change(&line);
        } else if roll < 0.025 {
            sim.save();
        }
        if faults && to_boot.is_empty() {
            let r: f64 = rng.random();
            let n = sim.nodes.len();
            if r < 0.0015 {
                if let Some(m) = sim.master() {
                    sim.crash(m);
                    restarts.push((t + rng.random_range(hb_us..40 * hb_us), m));
                }
            } else if r < 0.002 {
                if let Some(b) = sim.backup() {
                    sim.crash(b);
                    restarts.push((t + rng.random_range(hb_us..40 * hb_us), b));
                }
            } else if r < 0.004 {
                let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
                if a != b {
                    // Short (below failure detection) or long.
                    let d = if rng.random_bool(0.7) {
                        rng.random_range(hb_us / 2..2 * hb_us)
                    } else {
                        rng.random_range(4 * hb_us..30 * hb_us)
                    };
                    sim.partition(a, b, Duration::from_micros(d));
                }
            } else if r < 0.0045 {
                let _ = sim.failover(rng.random_bool(0.3));
            } else if r < 0.0075 && sim.cfg.paths == 2 {
                // One path of a pair cut, for any length: the other carries on.
                let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
                if a != b {
                    let d = rng.random_range(hb_us / 2..200 * hb_us);
                    sim.cut_path(a, b, rng.random_range(0..2), Duration::from_micros(d));
                }
            }
        }
    }
    // Quiet period: heal, restart, no faults on the link but the usual
    // delay; the insider leaves.
    sim.heal();
    sim.insider.rate = 0.0;
    for i in 0..sim.nodes.len() {
        if !sim.is_up(i) {
            sim.boot(i);
        }
    }
    sim.set_faults(sim.faults().fault_free());
    for node in &mut sim.nodes {
        node.host.refuse_every = None;
    }
    sim.run_for(Duration::from_millis(800)).map_err(|v| wrap(&sim, v))?;
    sim.check_converged().map_err(|v| wrap(&sim, v))?;
    Ok(sim.finish_stats())
}
