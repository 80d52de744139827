//! The node's log: the `log` facade written by `env_logger`, every line
//! with the wall-clock time (RFC 3339, milliseconds, UTC), so the logs of
//! two modules line up, and the time since the process started, labelled
//! in seconds:
//!
//! ```text
//! 2026-12-07T23:10:04.512Z +12.345s INFO  MSM-B: peer MSM-A lost
//! ```
//!
//! When stderr is not a terminal (a service manager, a file), each line
//! starts with its syslog priority as `<6>`, which journald and
//! `systemd-cat` read as the level and strip (sd-daemon(3)).
//!
//! The level: `--log-level` or `MSM_LOG` at start (default info), and
//! `msm debug LEVEL` at run time ([`set_level`]).

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime};

use log::{Level, LevelFilter};

/// When the log began: the offset of every line.
static STARTED: OnceLock<Instant> = OnceLock::new();

/// Set up the log at `level` (`None`: `MSM_LOG`, else info). A second call
/// changes nothing.
pub fn init(level: Option<LevelFilter>) {
    let started = *STARTED.get_or_init(Instant::now);
    let priorities = !std::io::stderr().is_terminal();
    let level = level
        .or_else(|| std::env::var("MSM_LOG").ok().and_then(|l| l.parse().ok()))
        .unwrap_or(LevelFilter::Info);
    let built = env_logger::Builder::new()
        // The logger lets everything through; `log`'s own maximum is the
        // level, so `set_level` can raise and lower it while running.
        .filter_level(LevelFilter::Trace)
        .format(move |out, record| {
            let line = line(SystemTime::now(), started.elapsed().as_secs_f64(), record.level(), priorities);
            writeln!(out, "{line}{}", record.args())
        })
        .try_init();
    if built.is_ok() {
        log::set_max_level(level);
    }
}

/// Change the level while running; the level before.
pub fn set_level(level: LevelFilter) -> LevelFilter {
    let was = log::max_level();
    log::set_max_level(level);
    was
}

/// The start of a line, up to its message.
fn line(wall: SystemTime, offset_s: f64, level: Level, priority: bool) -> String {
    let prefix = if priority { format!("<{}>", syslog_priority(level)) } else { String::new() };
    let wall = humantime::format_rfc3339_millis(wall);
    format!("{prefix}{wall} +{offset_s:.3}s {level:<5} ")
}

/// syslog(3)'s priority of a level: err, warning, info, debug.
fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_line_has_the_wall_clock_the_offset_in_seconds_and_the_level() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_685_004_512);
        assert_eq!(line(at, 12.3454, Level::Info, false), "2026-12-07T23:10:04.512Z +12.345s INFO  ");
        assert_eq!(line(at, 0.0, Level::Warn, true), "<4>2026-12-07T23:10:04.512Z +0.000s WARN  ");
        assert_eq!(syslog_priority(Level::Error), 3);
        assert_eq!(syslog_priority(Level::Trace), 7);
    }
}
