//! What the system tests of a two-node chassis share: a chassis in a fresh
//! directory, a synced pair, `show switch`, and the no-failover check.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use msm_control::{AppTable, Request, SlotErrors, Switch};
use msm_testkit::chassis::Chassis;

/// Heartbeats of the tests: 20 ms.
pub const HB: u64 = 20;

/// Heartbeats missed before a peer is lost in the tests. A debug build on a
/// loaded two-core machine can be descheduled for tens of milliseconds; a
/// detection time of ten intervals keeps such a stall from being a failure,
/// which would fail the test for a reason it does not test. How fast a
/// failover is, is measured by `cargo xtask bench`, not here.
pub const MISS: u64 = 10;

/// A chassis in a fresh directory, `hb_ms` heartbeats, [`MISS`] missed declare a peer lost.
pub fn chassis(hb_ms: u64) -> (tempfile::TempDir, Chassis) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Chassis::new(dir.path(), Chassis::built_bin_dir().unwrap());
    c.common = vec!["--heartbeat-ms".into(), hb_ms.to_string(), "--miss".into(), MISS.to_string()];
    (dir, c)
}

/// A and B running, in sync, A master.
pub fn pair(c: &mut Chassis, extra: &[&str]) {
    c.start('A', extra).unwrap();
    c.wait("A master", Duration::from_secs(5), |c| Ok(c.role('A').as_deref() == Some("MASTER"))).unwrap();
    c.start('B', extra).unwrap();
    c.wait("in sync", Duration::from_secs(20), |c| Ok(c.in_sync('A'))).unwrap();
}

pub fn switch(c: &Chassis, slot: char) -> Switch {
    c.switch(slot).unwrap()
}

pub fn log(c: &Chassis, slot: char) -> String {
    std::fs::read_to_string(c.path(slot, "log")).unwrap_or_default()
}

/// Entries and digest of every application on `slot`, for comparing two nodes.
pub fn digests(c: &Chassis, slot: char) -> Vec<String> {
    msm_runtime::apps::APPS
        .iter()
        .map(|(n, _, _)| {
            let t: AppTable =
                c.ask(slot, &Request::ShowApp { app: (*n).into(), rows: false, from: 0 }).unwrap();
            format!("{n}:{}:{}", t.entries, t.digest)
        })
        .collect()
}

/// Bulk transfers the master started again after the first (all streams).
pub fn rebulks(c: &Chassis) -> u64 {
    c.checkpoint('A', None).unwrap().iter().map(|r| u64::from(r.rebulks)).sum()
}

/// Frames refused from `slot`, the count `what` picks (`|r| r.auth`), as
/// `show switch` `j` counts them (0 when none from it).
pub fn by_slot(j: &Switch, slot: &str, what: impl Fn(&SlotErrors) -> u64) -> u64 {
    j.frame_errors.by_slot.iter().find(|r| r.slot == slot).map_or(0, what)
}

/// A and B in sync (`pair` with `extra`), every datagram A sends to B
/// recorded on the way.
pub fn tapped_pair(c: &mut Chassis, extra: &[&str]) -> Tap {
    let tap_path = c.dir.join("tap.sock");
    let tap = Tap::start(&tap_path, &c.path('B', "sock"));
    c.taps[0] = Some(tap_path);
    pair(c, extra);
    tap
}

/// Neither node changed role or term since `term` (no failover happened).
pub fn no_failover(c: &Chassis, term: &str) {
    let a = switch(c, 'A');
    assert_eq!((a.role.as_str(), a.term.as_str()), ("MASTER", term), "A: {a:?}");
    let b = switch(c, 'B');
    assert_eq!(b.role, "BACKUP", "B: {b:?}\nA log:\n{}\nB log:\n{}", log(c, 'A'), log(c, 'B'));
}

/// Records every datagram one node sends the other, and forwards it.
pub struct Tap {
    pub frames: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tap {
    pub fn start(at: &Path, to: &Path) -> Tap {
        let sock = UnixDatagram::bind(at).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let (frames, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (f, s, to) = (frames.clone(), stop.clone(), to.to_path_buf());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let _ = sock.send_to(&buf[..n], &to);
                    let mut f = f.lock().unwrap();
                    if f.len() < 5000 {
                        f.push(buf[..n].to_vec());
                    }
                }
            }
        });
        Tap { frames, stop, thread: Some(thread) }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `slot`'s vlan table is exactly what its running configuration derives
/// (`apps::vlan_rows`); otherwise what differs.
pub fn vlans_derived(c: &Chassis, slot: char) -> Result<(), String> {
    let config = c.running_config(slot).map_err(|e| e.to_string())?;
    let hex = |v: &[u8]| v.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let want: std::collections::BTreeMap<u64, String> =
        msm_runtime::apps::vlan_rows(&config).into_iter().map(|(k, v)| (k, hex(&v))).collect();
    let state = c.app_state(slot).map_err(|e| e.to_string())?;
    let have = &state[msm_runtime::apps::VLAN.index()];
    if *have == want {
        return Ok(());
    }
    let missing = want.keys().filter(|k| !have.contains_key(k)).count();
    let stale = have.keys().filter(|k| !want.contains_key(k)).count();
    Err(format!(
        "MSM-{slot}: {} VLANs configured, {} vlan rows: {missing} missing, {stale} not configured",
        want.len(),
        have.len()
    ))
}
