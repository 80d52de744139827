//! The workload: state changes at a chosen rate, so bulk and dynamic
//! checkpoint have real work (MACs learnt and aged, STP port states, OSPF
//! routes, module status, config objects).

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use msm_runtime::apps::{BuiltinApp, CFGMGR, Change, DEVMGR, FDB, OSPF, STP, mac_key};
use msm_runtime::hooks::Workload;

/// The largest `msm-node --fdb`. A fresh master records its whole initial
/// table in one turn of the node loop when it is promoted (and the backup
/// takes it in one bulk), so the bound keeps that turn and each node's memory
/// (two tables of ~100 B an entry) within what the chassis is measured at:
/// `cargo xtask bench` bulks 1 M records. Also well inside the MAC key space
/// ([`MAC_SPACE`]). Larger values are refused at start (exit code 1).
pub const MAX_FDB: u32 = 1_000_000;

/// Distinct MACs the workload can make: 00:04:96 followed by 24 bits.
pub const MAC_SPACE: u32 = 1 << 24;

const _: () = assert!(MAX_FDB <= MAC_SPACE);

/// `--fdb n` if it is at most [`MAX_FDB`], else the error naming the flag and the maximum.
pub fn check_fdb(n: u32) -> Result<u32, String> {
    if n > MAX_FDB {
        Err(format!("--fdb {n}: at most {MAX_FDB} MAC table entries (see MAX_FDB in churn.rs)"))
    } else {
        Ok(n)
    }
}

#[derive(Debug)]
pub struct Churn {
    rng: Pcg64Mcg,
    /// Changes per second.
    pub rate: u32,
    /// Virtual changes owed (fractional accumulation between polls).
    owed: f64,
    last_us: u64,
    /// Distinct MACs the table cycles through (at least the initial table's
    /// size, at most [`MAC_SPACE`]).
    pub mac_space: u32,
}

fn mac(i: u32) -> u64 {
    let b = i.to_be_bytes();
    mac_key([0x00, 0x04, 0x96, b[1], b[2], b[3]])
}

impl Churn {
    pub fn new(seed: u64, rate: u32, mac_space: u32) -> Self {
        Churn {
            rng: Pcg64Mcg::seed_from_u64(seed),
            rate,
            owed: 0.0,
            last_us: 0,
            mac_space: mac_space.clamp(1, MAC_SPACE),
        }
    }

    /// The state a freshly booted master starts with: `fdb` MAC entries (at
    /// most [`MAX_FDB`]; the churn then cycles through at least those).
    pub fn initial(&mut self, fdb: u32) -> Vec<(BuiltinApp, Change)> {
        let fdb = fdb.min(MAX_FDB);
        self.mac_space = self.mac_space.max(fdb);
        let mut v = Vec::with_capacity(8 + 16 + 48 + 64 + fdb as usize);
        for slot in 1..=8u64 {
            v.push((DEVMGR, Change::Set(slot, b"operational".to_vec())));
        }
        for obj in 1..=16u64 {
            v.push((CFGMGR, Change::Set(obj, format!("policy-{obj}").into_bytes())));
        }
        for port in 1..=48u64 {
            // Forwarding, designated (schema 2: state, role).
            v.push((STP, Change::Set(port, vec![3, 2])));
        }
        for r in 0..64u64 {
            let key = (10u64 << 32) | ((r & 0xff) << 16) | 24; // 10.0.r.0/24 packed as a.b.c.d/len
            v.push((
                OSPF,
                Change::Set(key, [(r % 48 + 1) as u16, 10].iter().flat_map(|x| x.to_le_bytes()).collect()),
            ));
        }
        for i in 0..fdb {
            v.push((FDB, self.fdb_entry(i)));
        }
        v
    }

    fn fdb_entry(&mut self, i: u32) -> Change {
        let vlan: u16 = 1;
        let port: u16 = self.rng.random_range(1..=48);
        Change::Set(mac(i), [vlan, port].iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    /// The changes due by `now_us`, at `rate` per second.
    pub fn due(&mut self, now_us: u64) -> Vec<(BuiltinApp, Change)> {
        let dt = now_us.saturating_sub(self.last_us);
        self.last_us = now_us;
        self.owed += self.rate as f64 * dt as f64 / 1e6;
        let n = (self.owed as usize).min(100_000);
        self.owed -= n as f64;
        (0..n).map(|_| self.one()).collect()
    }

    /// One random change.
    pub fn one(&mut self) -> (BuiltinApp, Change) {
        let r: f64 = self.rng.random();
        if r < 0.70 {
            let i = self.rng.random_range(0..self.mac_space);
            if self.rng.random_bool(0.8) { (FDB, self.fdb_entry(i)) } else { (FDB, Change::Delete(mac(i))) }
        } else if r < 0.80 {
            let port = self.rng.random_range(1..=48u64);
            (STP, Change::Set(port, vec![self.rng.random_range(0..4), self.rng.random_range(1..4)]))
        } else if r < 0.95 {
            let net = self.rng.random_range(0..256u64);
            let key = (10u64 << 32) | (net << 16) | 24;
            if self.rng.random_bool(0.9) {
                let hop: u16 = self.rng.random_range(1..=48);
                let metric: u16 = self.rng.random_range(1..100);
                (OSPF, Change::Set(key, [hop, metric].iter().flat_map(|x| x.to_le_bytes()).collect()))
            } else {
                (OSPF, Change::Delete(key))
            }
        } else if r < 0.97 {
            let slot = self.rng.random_range(1..=8u64);
            (
                DEVMGR,
                Change::Set(
                    slot,
                    if self.rng.random_bool(0.9) { b"operational".to_vec() } else { b"booting".to_vec() },
                ),
            )
        } else {
            let obj = self.rng.random_range(1..=64u64);
            (
                CFGMGR,
                Change::Set(obj, format!("policy-{obj}-rev{}", self.rng.random_range(0..1000)).into_bytes()),
            )
        }
    }
}

/// The emulation's workload for the runtime: the churn at its rate, and
/// `fdb` MAC entries (with the other applications' rows) for a master that
/// holds no state.
#[derive(Debug)]
pub struct ChurnWorkload {
    pub churn: Churn,
    pub fdb: u32,
}

impl Workload for ChurnWorkload {
    fn rate(&self) -> u32 {
        self.churn.rate
    }
    fn set_rate(&mut self, rate: u32) {
        self.churn.rate = rate;
    }
    fn due(&mut self, now_us: u64) -> Vec<(BuiltinApp, Change)> {
        self.churn.due(now_us)
    }
    fn initial(&mut self) -> Vec<(BuiltinApp, Change)> {
        self.churn.initial(self.fdb)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn fdb_of_a_million_entries_has_a_million_distinct_macs() {
        let mut c = Churn::new(1, 0, 50_000);
        let init = c.initial(MAX_FDB);
        let macs: BTreeSet<u64> =
            init.iter().filter(|(app, _)| *app == FDB).map(|(_, ch)| ch.key()).collect();
        assert_eq!(macs.len(), MAX_FDB as usize);
        assert_eq!(c.mac_space, MAX_FDB, "the churn cycles through the whole table");
        // The key space itself: every index below MAC_SPACE is its own MAC.
        assert_eq!(mac(0), mac_key([0, 4, 0x96, 0, 0, 0]));
        assert_eq!(mac(MAC_SPACE - 1), mac_key([0, 4, 0x96, 0xFF, 0xFF, 0xFF]));
    }

    #[test]
    fn fdb_above_the_maximum_is_refused_naming_the_flag_and_the_maximum() {
        assert_eq!(check_fdb(MAX_FDB), Ok(MAX_FDB));
        assert_eq!(check_fdb(0), Ok(0));
        let e = check_fdb(MAX_FDB + 1).unwrap_err();
        assert!(e.contains("--fdb 1000001") && e.contains("at most 1000000"), "{e}");
        // A small table keeps the churn's own space.
        let mut c = Churn::new(1, 0, 50_000);
        assert_eq!(c.initial(3000).iter().filter(|(app, _)| *app == FDB).count(), 3000);
        assert_eq!(c.mac_space, 50_000);
    }
}
