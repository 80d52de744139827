//! The workload: state changes at a chosen rate, so bulk and dynamic
//! checkpoint have real work (MACs learnt and aged, STP port states, OSPF
//! routes, module status, config objects).

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::apps::{CFGMGR, Change, DEVMGR, FDB, OSPF, STP, mac_key};

#[derive(Debug)]
pub struct Churn {
    rng: Pcg64Mcg,
    /// Changes per second.
    pub rate: u32,
    /// Virtual changes owed (fractional accumulation between polls).
    owed: f64,
    last_us: u64,
    /// Distinct MACs the table cycles through.
    pub mac_space: u32,
}

fn mac(i: u32) -> u64 {
    let b = i.to_be_bytes();
    mac_key([0x00, 0x04, 0x96, b[1], b[2], b[3]])
}

impl Churn {
    pub fn new(seed: u64, rate: u32, mac_space: u32) -> Self {
        Churn { rng: Pcg64Mcg::seed_from_u64(seed), rate, owed: 0.0, last_us: 0, mac_space: mac_space.max(1) }
    }

    /// The state a freshly booted master starts with.
    pub fn initial(&mut self, fdb: u32) -> Vec<(usize, Change)> {
        let mut v = Vec::new();
        for slot in 1..=8u64 {
            v.push((DEVMGR, Change::Set(slot, b"operational".to_vec())));
        }
        for obj in 1..=16u64 {
            v.push((CFGMGR, Change::Set(obj, format!("policy-{obj}").into_bytes())));
        }
        for port in 1..=48u64 {
            v.push((STP, Change::Set(port, vec![3])));
        }
        for r in 0..64u64 {
            let key = (10u64 << 32) | ((r & 0xff) << 16) | 24; // 10.0.r.0/24 packed as a.b.c.d/len
            v.push((
                OSPF,
                Change::Set(key, [(r % 48 + 1) as u16, 10].iter().flat_map(|x| x.to_le_bytes()).collect()),
            ));
        }
        for i in 0..fdb.min(self.mac_space) {
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
    pub fn due(&mut self, now_us: u64) -> Vec<(usize, Change)> {
        let dt = now_us.saturating_sub(self.last_us);
        self.last_us = now_us;
        self.owed += self.rate as f64 * dt as f64 / 1e6;
        let n = (self.owed as usize).min(100_000);
        self.owed -= n as f64;
        (0..n).map(|_| self.one()).collect()
    }

    /// One random change.
    pub fn one(&mut self) -> (usize, Change) {
        let r: f64 = self.rng.random();
        if r < 0.70 {
            let i = self.rng.random_range(0..self.mac_space);
            if self.rng.random_bool(0.8) { (FDB, self.fdb_entry(i)) } else { (FDB, Change::Delete(mac(i))) }
        } else if r < 0.80 {
            let port = self.rng.random_range(1..=48u64);
            (STP, Change::Set(port, vec![self.rng.random_range(0..4)]))
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
