//! # msm-narrate
//!
//! The text both narrated demos print: the simulator's (`cargo xtask demo`,
//! `msm-sim`) and the chassis of processes (`cargo xtask emu`, `msm-chassis`).
//! One renderer, so the two tell the story in the same shape; a crate of its
//! own with no dependencies, so neither demo depends on the other's crate
//! (the simulator must not depend on the Linux board, and the board should
//! not pull in the simulator).
//!
//! ```
//! use msm_narrate::{Progress, WIDTH, heading, progress_bar};
//!
//! let h = heading("MSM-B boots");
//! assert!(h.starts_with("\n=== MSM-B boots ==="));
//! assert!(h.lines().all(|l| l.chars().count() <= WIDTH));
//!
//! let row = Progress { name: "fdb", percent: 50, sent: 10_000, total: 20_000, status: "bulk" };
//! assert_eq!(
//!     progress_bar(&row),
//!     "  fdb            [##########          ]  50%   10000/20000  bulk"
//! );
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt::Write as _;

/// Columns of a narration line: no heading is wider (a terminal of 80 does not wrap it).
pub const WIDTH: usize = 78;

/// Cells of a progress bar; each is 5 %.
const BAR: usize = 20;

/// A section heading: an empty line, then `=== title ===…` filled to [`WIDTH`].
/// A title too long for one line continues on indented lines below it, so no
/// line exceeds [`WIDTH`] and none runs into the output that follows.
pub fn heading(title: &str) -> String {
    // "=== " + text + " " + at least "===".
    let room = WIDTH - 8;
    let mut lines: Vec<String> = Vec::new();
    for word in title.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= room => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    let first = lines.first().map_or("", String::as_str);
    let fill = WIDTH.saturating_sub(first.chars().count() + 5).max(3);
    let mut out = format!("\n=== {first} {}", "=".repeat(fill));
    for line in lines.iter().skip(1) {
        let _ = write!(out, "\n    {line}");
    }
    out
}

/// One stream's bulk checkpoint, as `show checkpoint-data` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress<'a> {
    /// The stream (`saved-config`, `active-config`, an application).
    pub name: &'a str,
    /// How far its bulk is, 0..=100 (more is shown as 100).
    pub percent: u64,
    /// Items sent.
    pub sent: u64,
    /// Items in the bulk.
    pub total: u64,
    /// Its phase (`waiting`, `bulk`, `synced`, …).
    pub status: &'a str,
}

/// `  name           [#####               ]  25%     sent/total   status`
pub fn progress_bar(p: &Progress<'_>) -> String {
    let percent = p.percent.min(100);
    let fill = usize::try_from(percent).unwrap_or(100) * BAR / 100;
    format!(
        "  {:<14} [{}{}] {:>3}%  {:>6}/{:<6} {}",
        p.name,
        "#".repeat(fill),
        " ".repeat(BAR - fill),
        percent,
        p.sent,
        p.total,
        p.status
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_headings_wrap_within_the_width() {
        let h = heading(
            "MSM-B boots: its flash gets the saved config, then the active config, then bulk checkpoint",
        );
        let lines: Vec<&str> = h.lines().collect();
        assert_eq!(lines[0], "");
        assert!(lines[1].starts_with("=== MSM-B boots:") && lines[1].ends_with("==="));
        assert!(lines[2].starts_with("    ") && lines[2].ends_with("bulk checkpoint"));
        assert!(lines.iter().all(|l| l.chars().count() <= WIDTH));
        assert_eq!(heading("short").lines().nth(1).map(|l| l.chars().count()), Some(WIDTH));
    }

    #[test]
    fn bars_clamp_and_fill_by_five_percent() {
        let bar =
            |percent| progress_bar(&Progress { name: "vlan", percent, sent: 1, total: 1, status: "synced" });
        assert!(bar(0).contains(&format!("[{}]", " ".repeat(BAR))));
        assert!(bar(100).contains(&format!("[{}]", "#".repeat(BAR))));
        assert_eq!(bar(250), bar(100));
        assert!(bar(99).contains(&format!("[{} ]", "#".repeat(BAR - 1))));
    }
}
