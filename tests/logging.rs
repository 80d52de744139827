//! The node's log, with a real process writing to a file: every line
//! carries its syslog priority (stderr is not a terminal), the wall-clock
//! time and the offset in seconds; `debug LEVEL` changes the level while it
//! runs, so a refused frame is logged at debug only while asked for.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

mod common;

use msm_control::{LogLevel, Request};

/// Frames the node refused so far.
fn refused(c: &msm_testkit::chassis::Chassis) -> u64 {
    common::switch(c, 'A').frame_errors.total
}

/// One garbage datagram to A's backplane socket; waits until A counted it.
fn garbage(c: &msm_testkit::chassis::Chassis) {
    let before = refused(c);
    let s = UnixDatagram::unbound().unwrap();
    s.send_to(b"not a frame at all, just bytes", c.path('A', "sock")).unwrap();
    c.wait("the garbage refused", Duration::from_secs(5), |c| Ok(refused(c) > before)).unwrap();
}

#[test]
fn lines_carry_priority_wall_clock_and_offset_and_the_level_moves_at_run_time() {
    let (_d, mut c) = common::chassis(common::HB);
    c.start('A', &[]).unwrap();
    c.wait("A master", Duration::from_secs(5), |c| Ok(c.role('A').as_deref() == Some("MASTER"))).unwrap();

    let log = common::log(&c, 'A');
    for l in log.lines() {
        let want = if l.contains(" WARN ") { "<4>" } else { "<6>" };
        assert!(l.starts_with(want), "a line starts with its syslog priority: {l:?}");
    }
    let first = log.lines().find(|l| l.contains(" INFO ")).unwrap_or_default();
    // <6>2026-12-07T23:10:04.512Z +0.012s INFO  ...
    let rest = &first[3..];
    let (wall, rest) = rest.split_once(' ').unwrap();
    assert!(
        humantime::parse_rfc3339(wall).is_ok() && wall.len() == 24,
        "RFC 3339 with milliseconds: {wall:?}"
    );
    let (offset, _) = rest.split_once(' ').unwrap();
    assert!(offset.starts_with('+') && offset.ends_with('s'), "the offset in seconds: {offset:?}");
    assert!(offset[1..offset.len() - 1].parse::<f64>().is_ok(), "{offset:?}");

    // At info, a refused frame is counted, not logged.
    garbage(&c);
    assert!(!common::log(&c, 'A').contains("DEBUG"), "nothing at debug yet");

    let l: LogLevel = c.ask('A', &Request::Debug { level: "debug".into() }).unwrap();
    assert_eq!((l.was.as_str(), l.level.as_str()), ("info", "debug"));
    garbage(&c);
    c.wait("the refusal logged at debug", Duration::from_secs(5), |c| {
        Ok(common::log(c, 'A')
            .lines()
            .any(|l| l.starts_with("<7>") && l.contains("DEBUG") && l.contains("refused")))
    })
    .unwrap();

    let l: LogLevel = c.ask('A', &Request::Debug { level: "info".into() }).unwrap();
    assert_eq!((l.was.as_str(), l.level.as_str()), ("debug", "info"));
    let debug_lines = |c: &msm_testkit::chassis::Chassis| common::log(c, 'A').matches("DEBUG").count();
    let before = debug_lines(&c);
    garbage(&c);
    assert_eq!(debug_lines(&c), before, "back at info: the refusal is not logged");

    // A level that is none is refused by name, and changes nothing.
    let r = c.call('A', &Request::Debug { level: "loud".into() }).unwrap();
    assert!(format!("{r:?}").contains("loud"), "{r:?}");
}

/// `--log-level` sets the level from the start.
#[test]
fn the_level_flag_takes_effect_at_start() {
    let (_d, mut c) = common::chassis(common::HB);
    c.start('A', &["--log-level", "debug"]).unwrap();
    c.wait("A master", Duration::from_secs(5), |c| Ok(c.role('A').as_deref() == Some("MASTER"))).unwrap();
    garbage(&c);
    c.wait("the refusal logged at debug", Duration::from_secs(5), |c| {
        Ok(common::log(c, 'A').lines().any(|l| l.contains("DEBUG") && l.contains("refused")))
    })
    .unwrap();
}
