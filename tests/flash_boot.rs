//! Damaged flash at boot, with real `msm-node` processes: a stopped node's
//! image is damaged (offsets from the partition table in
//! `boards/linux-emu/src/flash.rs`), the node is started again; it boots,
//! answers `show switch`, and its log names the damaged part and what it
//! booted instead. Every wait has a deadline; no fixed sleeps.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::os::unix::fs::FileExt;
use std::time::Duration;

use msm_control::{Configuration, Request, Response, Saved, Switch};
use msm_flash::ConfigName;
use msm_runtime::flash::{PRIMARY, SETTINGS};
use msm_testkit::chassis::Chassis;
use rand::{RngCore, SeedableRng};

mod common;

fn chassis() -> (tempfile::TempDir, Chassis) {
    common::chassis(common::HB)
}

/// Start MSM-A alone and wait until it is master.
fn start_master(c: &mut Chassis) {
    c.start('A', &[]).unwrap();
    c.wait("MSM-A master", Duration::from_secs(10), |c| Ok(c.role('A').as_deref() == Some("MASTER")))
        .unwrap();
}

fn configure(c: &Chassis, lines: &[&str]) {
    let r = c
        .call('A', &Request::Configure { lines: lines.iter().map(|s| s.to_string()).collect(), wait: None })
        .unwrap();
    assert!(matches!(r, Response::Ok { .. }), "{r:?}");
}

/// A node with `primary` saved to primary.cfg and, if given, `secondary` to
/// secondary.cfg, and priority 7 in its settings; stopped.
fn stopped_node(c: &mut Chassis, primary: &str, secondary: Option<&str>) {
    start_master(c);
    configure(c, &[primary, "configure node slot A priority 7"]);
    c.ask::<Saved>('A', &Request::Save { which: Some(ConfigName::Primary), wait: None }).unwrap();
    if let Some(line) = secondary {
        configure(c, &[line]);
        c.ask::<Saved>('A', &Request::Save { which: Some(ConfigName::Secondary), wait: None }).unwrap();
    }
    assert!(c.stop('A').unwrap().success());
}

/// Overwrite `bytes` at `at` in MSM-A's flash image.
fn scribble(c: &Chassis, at: u32, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(c.path('A', "img")).unwrap();
    f.write_all_at(bytes, u64::from(at)).unwrap();
    f.sync_all().unwrap();
}

fn random(len: u32) -> Vec<u8> {
    let mut v = vec![0; len as usize];
    rand_pcg::Pcg64Mcg::seed_from_u64(10).fill_bytes(&mut v);
    v
}

/// Start MSM-A again; it must boot and answer `show switch`. Returns its
/// `show switch`, its configuration text, and the log of this boot.
fn boot_again(c: &mut Chassis) -> (Switch, String, String) {
    let before = std::fs::read_to_string(c.path('A', "log")).map_or(0, |l| l.len());
    c.start('A', &[]).unwrap();
    c.wait("MSM-A answering show switch", Duration::from_secs(10), |c| Ok(c.switch('A').is_ok())).unwrap();
    assert!(c.exited('A').unwrap().is_none(), "MSM-A exited");
    let switch = c.switch('A').unwrap();
    let text = c.ask::<Configuration>('A', &Request::ShowConfiguration).unwrap().text;
    let log = std::fs::read_to_string(c.path('A', "log")).unwrap()[before..].to_string();
    (switch, text, log)
}

fn warned(log: &str, what: &[&str]) -> bool {
    log.lines().any(|l| l.contains("WARN") && what.iter().all(|w| l.contains(w)))
}

#[test]
fn destroyed_primary_cfg_boots_secondary_cfg_and_the_log_says_so() {
    let (_d, mut c) = chassis();
    stopped_node(&mut c, "create vlan prim tag 10", Some("create vlan sec tag 20"));
    scribble(&c, PRIMARY.0, &random(PRIMARY.1));
    let (switch, text, log) = boot_again(&mut c);
    assert!(warned(&log, &["primary.cfg damaged (", "): booting secondary.cfg"]), "{log}");
    assert_eq!(switch.config_booted, "secondary.cfg", "{switch:?}");
    assert!(text.contains("create vlan sec tag 20"), "{text}");
}

#[test]
fn damaged_primary_cfg_without_secondary_boots_the_factory_default_and_the_log_says_so() {
    let (_d, mut c) = chassis();
    stopped_node(&mut c, "create vlan prim tag 10", None);
    // One byte of the saved text (after the 64-byte record header).
    scribble(&c, PRIMARY.0 + 64 + 5, b"~");
    let (switch, text, log) = boot_again(&mut c);
    assert!(
        warned(
            &log,
            &["primary.cfg damaged (committed record whose data fails its CRC-32C", "factory default"]
        ),
        "{log}"
    );
    assert_eq!(switch.config_booted, "primary.cfg", "{switch:?}");
    assert!(!text.contains("prim") && text.contains("create vlan Default tag 1"), "{text}");
}

#[test]
fn zeroed_settings_area_boots_with_default_settings_and_the_log_says_so() {
    let (_d, mut c) = chassis();
    stopped_node(&mut c, "create vlan prim tag 10", None);
    scribble(&c, SETTINGS.0, &vec![0; SETTINGS.1 as usize]);
    let (switch, text, log) = boot_again(&mut c);
    assert!(warned(&log, &["settings area damaged (", "booting with default settings"]), "{log}");
    // The configurations are separate and still good.
    assert_eq!(switch.config_booted, "primary.cfg", "{switch:?}");
    assert!(text.contains("create vlan prim tag 10"), "{text}");
    // The area was reformatted: the next boot is clean and counts from there.
    assert!(c.stop('A').unwrap().success());
    let (_, _, log) = boot_again(&mut c);
    assert!(!log.contains("settings area"), "{log}");
}

#[test]
fn random_settings_area_boots_with_default_settings_and_the_log_says_so() {
    let (_d, mut c) = chassis();
    stopped_node(&mut c, "create vlan prim tag 10", None);
    scribble(&c, SETTINGS.0, &random(SETTINGS.1));
    let (_, text, log) = boot_again(&mut c);
    assert!(warned(&log, &["settings area", "damaged ("]), "{log}");
    assert!(text.contains("create vlan prim tag 10"), "{text}");
}

/// The highest term a module saw is kept in its flash's settings: killed
/// and started again alone, MSM-A is master in a new term, never in the one
/// it held before (a standby's or backup's points name terms).
#[test]
fn a_master_killed_and_started_alone_takes_a_new_term() {
    let (_d, mut c) = chassis();
    start_master(&mut c);
    let first = c.switch('A').unwrap().term;
    c.kill('A').unwrap();
    start_master(&mut c);
    let again = c.switch('A').unwrap().term;
    assert_eq!((first.as_str(), again.as_str()), ("1.A", "2.A"));
    // The operator's recovery when terms near their limit: the kept term cleared.
    c.kill('A').unwrap();
    c.start('A', &["--forget-term"]).unwrap();
    c.wait("A master", std::time::Duration::from_secs(5), |c| Ok(c.role('A').as_deref() == Some("MASTER")))
        .unwrap();
    let fresh = c.switch('A').unwrap().term;
    assert_eq!(fresh, "1.A");
    let log = std::fs::read_to_string(c.path('A', "log")).unwrap();
    assert!(log.contains("--forget-term: the kept term 2.A is cleared"), "{log}");
}
