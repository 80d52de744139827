//! Application processes checkpointing through their nodes (`msm-client`,
//! `msm-node --process ... --app-socket ...`), with real processes: two
//! client processes per MSM, one with a dependency on a built-in
//! application; the master is SIGKILLed mid-writing, and every change a
//! writer's `wait` reported as on the backup is in the table the client on
//! the new master holds. Every wait has a deadline.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use msm_linux_emu::chassis::Chassis;
use msm_linux_emu::control::Request;

static SERIAL: Mutex<()> = Mutex::new(());

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The process applications both nodes declare.
const PROCESSES: [(&str, &str); 2] = [("acl", "acl:1:vlan"), ("stats", "stats:1")];

fn chassis() -> (tempfile::TempDir, Chassis) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Chassis::new(dir.path(), Chassis::built_bin_dir().unwrap());
    c.common = vec!["--heartbeat-ms".into(), "20".into(), "--miss".into(), "3".into()];
    for (_, spec) in PROCESSES {
        c.common.extend(["--process".to_string(), spec.to_string()]);
    }
    (dir, c)
}

fn start(c: &mut Chassis, slot: char) {
    let app = c.path(slot, "app").display().to_string();
    c.start(slot, &["--app-socket", &app]).unwrap();
}

fn app(c: &Chassis, slot: char, name: &str, extra: &[&str]) -> Reaped {
    let mut cmd = Command::new(c.bin.join("msm-app"));
    cmd.arg("--socket").arg(c.path(slot, "app")).args(["--name", name]);
    if name == "acl" {
        cmd.args(["--dep", "vlan"]);
    }
    Reaped(cmd.args(extra).stdin(Stdio::null()).spawn().unwrap())
}

/// `key value` lines: the last value of each key.
fn table(text: &str) -> BTreeMap<u64, u64> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
        .collect()
}

#[test]
fn every_change_a_client_waited_for_is_on_the_new_master_after_a_sigkill() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, mut c) = chassis();
    start(&mut c, 'A');
    c.wait("A master", Duration::from_secs(5), |c| Ok(c.role('A').as_deref() == Some("MASTER"))).unwrap();
    start(&mut c, 'B');
    c.wait("in sync", Duration::from_secs(20), |c| Ok(c.in_sync('A'))).unwrap();
    // Backup side first: they follow from the start.
    let mut followers = Vec::new();
    for (name, _) in PROCESSES {
        let dump = c.dir.join(format!("{name}.dump"));
        followers.push(app(&c, 'B', name, &["--dump", dump.to_str().unwrap()]));
    }
    let mut writers = Vec::new();
    for (name, _) in PROCESSES {
        let acked = c.dir.join(format!("{name}.acked"));
        writers.push(app(
            &c,
            'A',
            name,
            &["--acked", acked.to_str().unwrap(), "--keys", "500", "--inflight", "8"],
        ));
    }
    // Writing under way on both, each checkpointed through its node.
    c.wait("acknowledged writes", Duration::from_secs(20), |c| {
        Ok(PROCESSES.iter().all(|(name, _)| {
            std::fs::read_to_string(c.dir.join(format!("{name}.acked"))).map_or(0, |t| t.lines().count())
                > 2000
        }))
    })
    .unwrap();
    let j = c.ask('A', &Request::ShowCheckpointData { process: Some("acl".into()) }).unwrap();
    assert_eq!(j[0]["process"], "acl", "the process application is listed like the others: {j}");
    c.kill('A').unwrap();
    c.wait("B took over", Duration::from_secs(5), |c| Ok(c.role('B').as_deref() == Some("MASTER"))).unwrap();
    for (name, _) in PROCESSES {
        let dump = c.dir.join(format!("{name}.dump"));
        c.wait("the client on B dumps its table", Duration::from_secs(5), |_| Ok(dump.exists())).unwrap();
        let held = table(&std::fs::read_to_string(&dump).unwrap());
        let acked = table(&std::fs::read_to_string(c.dir.join(format!("{name}.acked"))).unwrap());
        assert!(acked.len() >= 500, "{name}: every key written and acknowledged");
        for (k, v) in &acked {
            let got = held.get(k).copied();
            assert!(
                got.is_some_and(|g| g >= *v),
                "{name}: key {k} acknowledged at {v}, the new master's client has {got:?}"
            );
        }
    }
    drop(writers);
    drop(followers);
}
