//! A chassis of three modules with real processes (a Unix datagram bus
//! between them): the standby holds the master's saved configuration in its
//! flash and its active configuration; the master is killed, the backup
//! takes over, the standby becomes its backup with the configuration already
//! in place (no configuration bulk) and reaches In Sync, and the old master
//! returns as a standby and gets the configuration. Every wait has a deadline.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

mod common;

use common::{HB, chassis, digests, log, switch};
use msm_control::{AppTable, Churning, Configuration, Configured, Request, Saved, Selected};
use msm_testkit::chassis::Chassis;

/// A master, B its backup in sync, C a standby, all with churn on.
fn three(c: &mut Chassis, wait: Duration) {
    c.start('A', &["--churn", "500"]).unwrap();
    c.wait("A master", wait, |c| Ok(role(c, 'A') == "MASTER")).unwrap();
    c.start('B', &["--churn", "500"]).unwrap();
    c.wait("B backup in sync", wait, |c| Ok(role(c, 'B') == "BACKUP" && c.in_sync('A'))).unwrap();
    c.start('C', &["--churn", "500"]).unwrap();
    c.wait("C standby", wait, |c| Ok(role(c, 'C') == "STANDBY")).unwrap();
}

fn role(c: &Chassis, slot: char) -> String {
    c.role(slot).unwrap_or_default()
}

/// How `master` sees `standby`'s copy of the configuration.
fn copy(c: &Chassis, master: char, standby: char) -> String {
    let s = switch(c, master);
    s.peers.into_iter().find(|p| p.slot == standby.to_string()).and_then(|p| p.config).unwrap_or_default()
}

fn running(c: &Chassis, slot: char) -> String {
    c.ask::<Configuration>(slot, &Request::ShowConfiguration).unwrap().text
}

/// The saved configurations in `slot`'s flash: name and size of each (the
/// time is when that module wrote it).
fn flash(c: &Chassis, slot: char) -> Vec<(String, u64)> {
    switch(c, slot).saved.into_iter().map(|f| (f.file, f.bytes)).collect()
}

/// Bulk transfers `slot` received of the two configuration streams.
fn config_bulks(c: &Chassis, slot: char) -> Vec<u64> {
    c.checkpoint(slot, None).unwrap()[..2].iter().map(|r| r.bulks).collect()
}

/// `standby` holds `master`'s configuration, saved (in flash) and active,
/// and the master says so.
fn holds_config(c: &Chassis, master: char, standby: char) -> bool {
    copy(c, master, standby) == "In Sync"
        && running(c, master) == running(c, standby)
        && flash(c, master) == flash(c, standby)
}

/// Wait until `standby` holds `master`'s configuration; on a timeout, say what differs.
fn wait_for_config(c: &Chassis, master: char, standby: char) {
    let what = format!("{standby} holds {master}'s configuration");
    if let Err(e) = c.wait(&what, Duration::from_secs(20), |c| Ok(holds_config(c, master, standby))) {
        panic!(
            "{e}\n{master} sees the copy as {:?}; running configurations equal: {}\nflash {master}: {:?}\nflash {standby}: {:?}\n{standby}'s log:\n{}",
            copy(c, master, standby),
            running(c, master) == running(c, standby),
            flash(c, master),
            flash(c, standby),
            log(c, standby)
        );
    }
}

#[test]
fn kill_the_master_of_three_the_standby_becomes_backup_and_the_old_master_a_standby() {
    let (_d, mut c) = chassis(HB);
    c.nodes = 3;
    let wait = Duration::from_secs(20);
    three(&mut c, wait);
    c.wait("the master hears both others", wait, |c| Ok(switch(c, 'A').peers.len() == 2)).unwrap();

    // The configuration, and changes to it, reach the standby.
    let lines = (0..50).map(|i| format!("create vlan v{i}")).collect();
    c.ask::<Configured>('A', &Request::Configure { lines, wait: Some(5_000) }).unwrap();
    c.ask::<Saved>('A', &Request::Save { which: None, wait: Some(5_000) }).unwrap();
    c.ask::<Configured>('A', &Request::Configure { lines: vec!["create vlan v99".into()], wait: None })
        .unwrap();
    wait_for_config(&c, 'A', 'C');
    assert!(running(&c, 'C').contains("v99"), "{}", running(&c, 'C'));
    let before = config_bulks(&c, 'C');

    c.kill('A').unwrap();
    c.wait("B takes over", wait, |c| Ok(role(c, 'B') == "MASTER")).unwrap();
    c.wait("C becomes B's backup, in sync", wait, |c| Ok(role(c, 'C') == "BACKUP" && c.in_sync('B')))
        .unwrap();
    // Only application state was bulked: the configuration was in place.
    assert_eq!(config_bulks(&c, 'C'), before, "C's log:\n{}", log(&c, 'C'));
    let continued = log(&c, 'C');
    assert!(continued.contains("StreamContinued(SavedConfig)"), "{continued}");
    assert!(continued.contains("StreamContinued(ActiveConfig)"), "{continued}");

    c.start('A', &["--churn", "500"]).unwrap();
    c.wait("A returns as a standby", wait, |c| Ok(role(c, 'A') == "STANDBY")).unwrap();
    wait_for_config(&c, 'B', 'A');
    assert_eq!((role(&c, 'B'), role(&c, 'C')), ("MASTER".into(), "BACKUP".into()));
    c.ask::<Churning>('B', &Request::Churn { rate: 0 }).unwrap();
    c.wait("B and C hold the same state", wait, |c| Ok(c.in_sync('B') && digests(c, 'B') == digests(c, 'C')))
        .unwrap();
}

/// Issue 25, item 2: the backup dies while the master lives; the standby
/// that replaces it continues both configuration streams from their kept
/// points (only application state is bulked), with three and four modules.
#[test]
fn a_standby_that_replaces_a_lost_backup_gets_no_configuration_bulk() {
    for modules in [3usize, 4] {
        let (_d, mut c) = chassis(HB);
        c.nodes = modules;
        let wait = Duration::from_secs(20);
        c.start('A', &["--churn", "500"]).unwrap();
        c.wait("A master", wait, |c| Ok(role(c, 'A') == "MASTER")).unwrap();
        c.start('B', &["--churn", "500"]).unwrap();
        c.wait("B backup in sync", wait, |c| Ok(role(c, 'B') == "BACKUP" && c.in_sync('A'))).unwrap();
        let standbys = &['C', 'D'][..modules - 2];
        for &s in standbys {
            c.start(s, &["--churn", "500"]).unwrap();
        }
        let lines = (0..20).map(|i| format!("create vlan s{i}")).collect();
        c.ask::<Configured>('A', &Request::Configure { lines, wait: Some(5_000) }).unwrap();
        c.ask::<Saved>('A', &Request::Save { which: None, wait: Some(5_000) }).unwrap();
        for &s in standbys {
            wait_for_config(&c, 'A', s);
        }
        let before: Vec<Vec<u64>> = standbys.iter().map(|&s| config_bulks(&c, s)).collect();
        c.kill('B').unwrap();
        c.wait("a standby becomes A's backup, in sync", wait, |c| {
            Ok(standbys.iter().any(|&s| role(c, s) == "BACKUP") && c.in_sync('A'))
        })
        .unwrap();
        assert_eq!(role(&c, 'A'), "MASTER");
        let (i, nb) = standbys.iter().enumerate().find(|(_, s)| role(&c, **s) == "BACKUP").unwrap();
        assert_eq!(
            config_bulks(&c, *nb),
            before[i],
            "{modules} modules: MSM-{nb} was bulked its configuration; its log:\n{}",
            log(&c, *nb)
        );
    }
}

fn signal(c: &Chassis, slot: char, sig: nix::sys::signal::Signal) {
    let pid = c.children[msm_testkit::chassis::slot_index(slot)].as_ref().unwrap().id() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
}

/// Rows of every application on `slot`.
fn rows(c: &Chassis, slot: char) -> u64 {
    msm_runtime::apps::APPS
        .iter()
        .map(|(n, _, _)| {
            let t: AppTable =
                c.ask(slot, &Request::ShowApp { app: (*n).into(), rows: false, from: 0 }).unwrap();
            t.entries
        })
        .sum()
}

/// Issue 25, item 3: the backup is stopped long enough for the master to
/// make the standby its backup; when it runs again one module that was
/// master or backup is made a standby, and drops the tables of that time
/// (they stopped being a copy of anything). After a double failure it is
/// elected and says its applications start fresh.
#[test]
fn a_backup_made_standby_drops_its_tables_and_after_a_double_failure_starts_fresh() {
    use nix::sys::signal::Signal;
    let (_d, mut c) = chassis(HB);
    c.nodes = 3;
    let wait = Duration::from_secs(20);
    three(&mut c, wait);
    assert!(rows(&c, 'B') > 0, "the backup holds the tables");
    assert_eq!(rows(&c, 'C'), 0, "a standby holds none");

    signal(&c, 'B', Signal::SIGSTOP);
    let made = c.wait("A makes C its backup", wait, |c| Ok(switch(c, 'A').backup.as_deref() == Some("C")));
    signal(&c, 'B', Signal::SIGCONT);
    made.unwrap();
    // Running again, B is made a standby of A (whose backup is now C); or,
    // if it took its master for lost while it was stopped and took over,
    // A loses the split brain to it and one of A and C is made a standby.
    // Either way the standby was master or backup earlier in its boot.
    let all = ['A', 'B', 'C'];
    let settled = |c: &Chassis| {
        let roles: Vec<String> = all.iter().map(|&s| role(c, s)).collect();
        let master = all.iter().zip(&roles).find(|(_, r)| *r == "MASTER").map(|(s, _)| *s);
        let one_standby = roles.iter().filter(|r| *r == "STANDBY").count() == 1;
        let backup = roles.iter().filter(|r| *r == "BACKUP").count() == 1;
        master.is_some_and(|m| c.in_sync(m)) && one_standby && backup
    };
    c.wait("a master in sync, a backup, a standby", wait, |c| Ok(settled(c)))
        .unwrap_or_else(|e| panic!("{e}\nB's log:\n{}", log(&c, 'B')));
    let standby = all.into_iter().find(|&s| role(&c, s) == "STANDBY").unwrap();
    let others: Vec<char> = all.into_iter().filter(|&s| s != standby).collect();
    let its_log = log(&c, standby);
    assert_eq!(
        rows(&c, standby),
        0,
        "MSM-{standby} kept the tables of its earlier role; its log:\n{its_log}"
    );
    assert!(its_log.contains("application state dropped"), "{its_log}");

    for s in others {
        c.kill(s).unwrap();
    }
    c.wait("the standby elected", wait, |c| Ok(role(c, standby) == "MASTER")).unwrap();
    let s = switch(&c, standby);
    assert_eq!(s.applications.as_deref(), Some("fresh"), "{s:?}");
    assert!(log(&c, standby).contains("applications start fresh"), "{}", log(&c, standby));
}

/// The size of saved configuration `w` in `slot`'s flash, as `show switch` says.
fn saved_size(c: &Chassis, slot: char, w: msm_flash::ConfigName) -> Option<u64> {
    switch(c, slot).saved.into_iter().find(|f| f.file == w.file_name()).map(|f| f.bytes)
}

/// Issue 25, item 6: both saved configurations reach the backup's and the
/// standby's flash, into the same file, with the master's selection;
/// `save secondary --wait` answers "on the backup" only when it is; with no
/// backup the answer says so.
#[test]
fn both_saved_configurations_and_the_selection_reach_every_module() {
    use msm_flash::ConfigName::{Primary, Secondary};
    let (_d, mut c) = chassis(HB);
    c.nodes = 3;
    let wait = Duration::from_secs(20);
    c.start('A', &[]).unwrap();
    c.wait("A master", wait, |c| Ok(role(c, 'A') == "MASTER")).unwrap();
    // Alone: a save waited for says there is no backup.
    let r: Saved = c.ask('A', &Request::Save { which: None, wait: Some(300) }).unwrap();
    assert_eq!((r.on_backup.checkpointed, r.on_backup.backup), (false, false), "{r:?}");
    c.start('B', &[]).unwrap();
    c.wait("B backup in sync", wait, |c| Ok(role(c, 'B') == "BACKUP" && c.in_sync('A'))).unwrap();
    c.start('C', &[]).unwrap();
    c.wait("C standby", wait, |c| Ok(role(c, 'C') == "STANDBY")).unwrap();

    let lines = vec!["create vlan only_primary".to_string()];
    c.ask::<Configured>('A', &Request::Configure { lines, wait: Some(5_000) }).unwrap();
    let r: Saved = c.ask('A', &Request::Save { which: Some(Primary), wait: Some(5_000) }).unwrap();
    assert!(r.on_backup.checkpointed, "{r:?}");
    let lines = vec!["create vlan also_secondary".to_string()];
    c.ask::<Configured>('A', &Request::Configure { lines, wait: Some(5_000) }).unwrap();
    let r: Saved = c.ask('A', &Request::Save { which: Some(Secondary), wait: Some(5_000) }).unwrap();
    assert!(r.on_backup.checkpointed, "{r:?}");
    // The backup already holds it when the answer says so.
    assert_eq!(saved_size(&c, 'B', Secondary), saved_size(&c, 'A', Secondary), "{:?}", switch(&c, 'B'));
    assert_eq!(saved_size(&c, 'B', Primary), saved_size(&c, 'A', Primary));
    assert_ne!(saved_size(&c, 'A', Primary), saved_size(&c, 'A', Secondary));
    c.wait("the standby holds both files", wait, |c| {
        Ok(saved_size(c, 'C', Secondary) == saved_size(c, 'A', Secondary)
            && saved_size(c, 'C', Primary) == saved_size(c, 'A', Primary))
    })
    .unwrap();

    // The selection travels too, and a save after it lands in the same file everywhere.
    c.ask::<Selected>('A', &Request::UseConfiguration { which: Secondary }).unwrap();
    let lines = vec!["create vlan third".to_string()];
    c.ask::<Configured>('A', &Request::Configure { lines, wait: Some(5_000) }).unwrap();
    let primary_before = saved_size(&c, 'B', Primary);
    let r: Saved = c.ask('A', &Request::Save { which: None, wait: Some(5_000) }).unwrap();
    assert_eq!((r.saved.as_str(), r.on_backup.checkpointed), ("secondary", true), "{r:?}");
    for s in ['B', 'C'] {
        c.wait("the selection and the file", wait, |c| {
            let j = switch(c, s);
            Ok(j.config_selected == "secondary.cfg"
                && saved_size(c, s, Secondary) == saved_size(c, 'A', Secondary))
        })
        .unwrap_or_else(|e| panic!("MSM-{s}: {e}\n{:?}", switch(&c, s)));
        assert_eq!(saved_size(&c, s, Primary), primary_before, "MSM-{s}'s primary.cfg was overwritten");
    }
    // The texts, read from the images once the modules are stopped.
    for s in ['A', 'B', 'C'] {
        c.stop(s).unwrap();
    }
    let files = |s: char| {
        let mut f = msm_runtime::flash::BoardFlash::open(&c.path(s, "img")).unwrap();
        (f.load(Primary).unwrap(), f.load(Secondary).unwrap(), f.selected())
    };
    let a = files('A');
    assert!(a.1.as_deref().is_some_and(|t| t.contains("third")), "{a:?}");
    assert!(a.0.as_deref().is_some_and(|t| !t.contains("also_secondary")), "{a:?}");
    for s in ['B', 'C'] {
        assert_eq!(files(s), a, "MSM-{s}'s flash");
    }
}
