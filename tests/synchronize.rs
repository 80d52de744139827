//! `synchronize` with real nodes: the master copies both saved
//! configurations and the selection to the backup's flash, answers once the
//! backup's flash holds them (the same CRC-32C there), and refuses with the
//! reason when it cannot: not the master, unsaved changes, no backup.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use msm_control::{Configured, Request, Response, Saved, Synchronized};

mod common;

use common::{HB, chassis, log, pair, switch};

fn refused(r: Response) -> String {
    match r {
        Response::Error { message } => message,
        ok => panic!("not refused: {ok:?}"),
    }
}

/// Each saved file's (name, CRC-32C) on `slot`, from `show switch`.
fn files(c: &msm_testkit::chassis::Chassis, slot: char) -> Vec<(String, Option<String>)> {
    switch(c, slot).saved.into_iter().map(|f| (f.file, f.crc32c)).collect()
}

#[test]
fn synchronize_copies_both_saved_configurations_and_refuses_with_the_reason() {
    let (_d, mut c) = chassis(HB);
    pair(&mut c, &[]);
    let sync = Request::Synchronize { wait: 10_000 };

    // Not on the backup.
    let why = refused(c.call('B', &sync).unwrap());
    assert!(why.contains("only the master") && why.contains("MSM-A"), "{why}");

    // Not with unsaved changes: it copies saved files, and says so.
    let line = vec!["create vlan v10 tag 10".to_string()];
    c.ask::<Configured>('A', &Request::Configure { lines: line, wait: None }).unwrap();
    let why = refused(c.call('A', &sync).unwrap());
    assert!(why.contains("unsaved changes") && why.contains("'save' first"), "{why}");

    // Saved into both files (different contents), the secondary selected.
    c.ask::<Saved>('A', &Request::Save { which: Some(msm_flash::ConfigName::Secondary), wait: Some(5000) })
        .unwrap();
    let line = vec!["create vlan v20 tag 20".to_string()];
    c.ask::<Configured>('A', &Request::Configure { lines: line, wait: None }).unwrap();
    c.ask::<Saved>('A', &Request::Save { which: Some(msm_flash::ConfigName::Primary), wait: Some(5000) })
        .unwrap();
    c.wait("in sync", Duration::from_secs(20), |c| Ok(c.in_sync('A'))).unwrap();
    let bulks = |c: &msm_testkit::chassis::Chassis| c.stream('A', "saved-config").unwrap().bulks;
    let before = bulks(&c);

    let done: Synchronized = c.ask('A', &sync).unwrap_or_else(|e| panic!("{e}\n{}", log(&c, 'A')));
    assert_eq!((done.backup.as_str(), done.verified, done.selected.as_str()), ("B", true, "primary"));
    let sent: Vec<_> = done.files.iter().map(|f| (f.file.clone(), f.crc32c.clone())).collect();
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|(_, crc)| crc.is_some()), "both files hold a configuration: {done:?}");
    assert_ne!(sent[0].1, sent[1].1, "the two files differ: {done:?}");
    assert_eq!(sent, files(&c, 'A'), "what it reports is what A's flash holds");
    assert_eq!(files(&c, 'B'), sent, "B's flash holds the same bytes");
    assert_eq!(bulks(&c), before + 1, "the files went over the backplane again");
    let text = c.text('A', &sync).unwrap();
    assert!(text.contains("Synchronizing with MSM-B ... done") && text.contains("digest matched"), "{text}");

    // No backup: refused at once.
    c.kill('B').unwrap();
    c.wait("B lost", Duration::from_secs(10), |c| Ok(switch(c, 'A').backup.is_none())).unwrap();
    let why = refused(c.call('A', &sync).unwrap());
    assert!(why.contains("no backup"), "{why}");
}
