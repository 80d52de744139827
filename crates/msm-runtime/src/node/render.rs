//! What the operator reads: each `show` command as text, and the same as
//! JSON for `msm --json` and the tests. Pure functions of what the node
//! gathered; the engine's own tables come from its status renderers.

use std::fmt::Write as _;

use msm_backplane::{PathState, PathStats};
use msm_checkpoint::{KeyStatus, SecondKey, Slot, StreamStatus, SwitchStatus, SyncState, Term};
use msm_checkpoint::{render_checkpoint, render_switch, state_label};
use msm_flash::ConfigName;

use crate::apps::{Table, describe, hex};
use crate::flash::SavedInfo;
use crate::split_brain;
use crate::wall_clock::ctime;
use msm_control::Response;

/// The configuration files, as `show switch` lists them below the engine's table.
#[derive(Debug)]
pub struct ConfigFiles {
    pub sysname: String,
    pub selected: ConfigName,
    pub booted: ConfigName,
    /// Primary, then secondary; `None`: empty.
    pub saved: [(ConfigName, Option<SavedInfo>); 2],
    /// The running configuration differs from the selected file.
    pub unsaved: bool,
}

/// The keys a node holds, by fingerprint: "a1b2c3d4 (sending), 5e6f7a8b (next, accepted)".
pub fn keys(k: &KeyStatus) -> String {
    let name = |fp: Option<u32>| fp.map_or("none (unauthenticated)".to_string(), |f| format!("{f:08x}"));
    let mut out = format!("{} (sending)", name(k.sending));
    if let Some((fp, which)) = k.also {
        let which = match which {
            SecondKey::Next => "next",
            SecondKey::Previous => "previous",
        };
        out.push_str(&format!(", {} ({which}, accepted)", name(fp)));
    }
    out
}

/// One backplane path, as `show switch` lists it.
#[derive(Debug, Clone)]
pub struct PathRow {
    /// Its `--backplane` spec.
    pub name: String,
    pub state: PathState,
    /// Data goes on it.
    pub data: bool,
    /// Since the last frame from it.
    pub silent_for: Option<std::time::Duration>,
    pub stats: PathStats,
}

/// `show switch`. `oversize`: datagrams the link refused as larger than a frame.
/// `split`: the last split brain this node lost, with its file.
pub fn switch(
    s: &SwitchStatus,
    keys: &KeyStatus,
    files: &ConfigFiles,
    oversize: u64,
    paths: &[PathRow],
    split: Option<&split_brain::Report>,
    history: &crate::failover_history::History,
) -> Response {
    let mut t = String::new();
    let _ = writeln!(t, "SysName:          {}", files.sysname);
    let _ = render_switch(s, &mut t);
    if let Some(r) = split {
        let _ = writeln!(t, "                  on {} UTC", ctime(r.at_unix));
        let _ = match &r.file {
            Ok(p) => writeln!(t, "                  {} of them listed in {}", r.listed, p.display()),
            Err(e) => writeln!(t, "                  not written: {e}"),
        };
    }
    let last = history.last();
    let _ = match &last {
        Some(f) => writeln!(
            t,
            "Failovers:        {}, last: {}",
            history.failovers(),
            crate::failover_history::line(f)
        ),
        None => writeln!(t, "Failovers:        0"),
    };
    let _ = writeln!(
        t,
        "Software:         {} {}, speaking protocol v{}",
        s.slot,
        crate::release::RELEASE,
        s.protocol
    );
    for (i, p) in s.protocols.iter().enumerate() {
        let Some(slot) = Slot::new(i as u8).filter(|&x| x != s.slot && p.version != 0) else { continue };
        let _ = writeln!(t, "                  {slot} {}", crate::release::describe(*p));
    }
    let _ = writeln!(t, "Config Selected:  {}", files.selected.file_name());
    let _ = writeln!(t, "Config Booted:    {}", files.booted.file_name());
    let mut saved = Vec::new();
    for (w, info) in &files.saved {
        match info {
            Some(i) => {
                let _ = writeln!(t, "{:<18}Created by msm-ha version {}", w.file_name(), i.version);
                let _ = writeln!(t, "{:<18}{} bytes saved on {}", "", i.len, ctime(i.saved_at));
                saved.push(msm_control::SavedFile {
                    file: w.file_name().into(),
                    bytes: i.len as u64,
                    saved_at: i.saved_at,
                    version: i.version.to_string(),
                    crc32c: Some(format!("{:08x}", i.crc)),
                });
            }
            None => {
                let _ = writeln!(t, "{:<18}Empty", w.file_name());
            }
        }
    }
    let _ = writeln!(t, "Unsaved changes:  {}", if files.unsaved { "yes" } else { "no" });
    let _ = writeln!(t, "Backplane key:    {}", self::keys(keys));
    let e = &s.errors;
    let reasons = [
        ("crc", e.bad_crc),
        ("malformed", e.malformed),
        ("version", e.version),
        ("auth", e.auth),
        ("replay", e.replay),
        ("term range", e.term_range),
        ("counter jump", e.counter_jump),
        ("stale term", e.stale_term),
        ("own slot", e.own_slot),
        ("unexpected", e.unexpected),
        ("unknown stream", e.unknown_stream),
        ("oversize", oversize),
    ];
    // The reasons that occurred, so the line stays short.
    let seen: Vec<String> = reasons.iter().filter(|(_, n)| *n > 0).map(|(r, n)| format!("{r} {n}")).collect();
    let _ = write!(t, "Refused frames:   {}", e.total() + oversize);
    let _ =
        writeln!(t, "{}", if seen.is_empty() { String::new() } else { format!(" ({})", seen.join(", ")) });
    // Before authentication the sender is only claimed: say so per slot.
    let mut by_slot = Vec::new();
    for (i, r) in e.by_slot.iter().enumerate() {
        let Some(slot) = Slot::new(i as u8) else { continue };
        if r.auth > 0 {
            let _ = writeln!(
                t,
                "                  {} frames from {slot} failed authentication: {slot} uses a key this module does not hold, or someone forges its frames",
                r.auth
            );
        }
        if r.replay > 0 {
            let _ = writeln!(t, "                  {} frames from {slot} refused as replays", r.replay);
        }
        if r.unproven > 0 {
            let _ = writeln!(
                t,
                "                  {} frames from {slot} of a boot not proven alive (its boot handshake, or replays of an earlier boot)",
                r.unproven
            );
        }
        if r.version > 0 {
            let _ = writeln!(
                t,
                "                  {} frames from {slot} in protocol v{} (this node speaks v{} to v{})",
                r.version,
                r.last_version,
                msm_checkpoint::wire::OLDEST_PROTOCOL_VERSION,
                msm_checkpoint::wire::PROTOCOL_VERSION
            );
        }
        if r.auth + r.replay + r.version + r.unproven > 0 {
            by_slot.push(msm_control::SlotErrors {
                slot: slot.letter().to_string(),
                auth: r.auth,
                replay: r.replay,
                unproven: r.unproven,
                version: r.version,
                last_version: r.last_version,
            });
        }
    }
    let mut path_json = Vec::new();
    if paths.len() > 1 {
        let _ = writeln!(t, "Backplane paths:");
    }
    for (i, p) in paths.iter().enumerate() {
        let state = match p.state {
            PathState::Up => "up",
            PathState::Down => "DOWN",
            PathState::Unknown => "never heard",
        };
        let heard =
            p.silent_for.map_or("never".to_string(), |d| format!("{:.1} ms ago", d.as_secs_f64() * 1e3));
        if paths.len() > 1 {
            let _ = writeln!(
                t,
                "  {}. {:<8}{}{}, last heard {heard}, {} frames in, {} out, {} refused",
                i + 1,
                state,
                p.name,
                if p.data { " (data)" } else { "" },
                p.stats.rx,
                p.stats.tx,
                p.stats.refused
            );
        }
        path_json.push(msm_control::Path {
            path: p.name.clone(),
            state: state.into(),
            data: p.data,
            silent_for_us: p.silent_for.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            rx: p.stats.rx,
            tx: p.stats.tx,
            refused: p.stats.refused,
            tx_errors: p.stats.tx_errors,
            rx_bytes: p.stats.rx_bytes,
            tx_bytes: p.stats.tx_bytes,
        });
    }
    if e.duplicate > 0 {
        let _ = writeln!(t, "Heartbeat copies: {} (one per extra path: expected)", e.duplicate);
    }
    let mut label = String::new();
    let _ = state_label(s.role, &s.sync, &mut label);
    let peers: Vec<_> = s
        .peers
        .iter()
        .flatten()
        .map(|p| msm_control::Peer {
            slot: p.slot.letter().to_string(),
            alive: p.alive,
            role: p.role.as_str().into(),
            term: p.term.to_string(),
            priority: p.priority,
            max_heartbeat_gap_us: u64::try_from(p.max_heartbeat_gap.as_micros()).unwrap_or(u64::MAX),
            keys: p.keys.iter().filter(|&&k| k != 0).map(|k| format!("{k:08x}")).collect(),
            holds: (p.holds != Term::NONE).then(|| p.holds.to_string()),
            config: s.standby_config[p.slot.index()].map(|c| c.as_str().into()),
            protocol: s.protocols[p.slot.index()].version,
            release: crate::release::describe(s.protocols[p.slot.index()]),
        })
        .collect();
    let j = msm_control::Switch {
        release: crate::release::RELEASE.into(),
        protocol: s.protocol,
        slot: s.slot.letter().to_string(),
        role: s.role.as_str().into(),
        state: label,
        term: s.term.to_string(),
        master: s.master.map(|m| m.letter().to_string()),
        backup: s.backup.map(|m| m.letter().to_string()),
        in_sync: s.sync == SyncState::InSync,
        sync: s.sync.to_string(),
        peers,
        config_selected: files.selected.file_name().into(),
        config_booted: files.booted.file_name().into(),
        saved,
        unsaved_changes: files.unsaved,
        slot_conflict: s.slot_conflict.map(|c| c.letter().to_string()),
        applications: s.apps.map(|a| a.as_str().into()),
        paths: path_json,
        split_brain: split.map(|r| msm_control::SplitBrain {
            at: r.at_unix,
            uptime_ms: s.last_split_brain.map(|e| e.at.as_millis()),
            winner: r.winner.letter().to_string(),
            winner_term: r.winner_term.to_string(),
            our_term: r.our_term.to_string(),
            discarded: r.discarded,
            listed: r.listed,
            file: r.file.as_ref().ok().map(|p| p.display().to_string()),
            error: r.file.as_ref().err().cloned(),
        }),
        failovers: history.failovers(),
        last_failover: last,
        failovers_since_start: history.since_start().clone(),
        keys: msm_control::Keys {
            sending: keys.sending.map(|f| format!("{f:08x}")),
            also: keys.also.map(|(f, w)| msm_control::AlsoKey {
                fingerprint: f.map(|f| format!("{f:08x}")),
                role: if w == SecondKey::Next { "next" } else { "previous" }.into(),
            }),
            authenticated: keys.authenticated(),
        },
        frame_errors: msm_control::FrameErrors {
            total: e.total() + oversize,
            bad_crc: e.bad_crc,
            malformed: e.malformed,
            version: e.version,
            auth: e.auth,
            replay: e.replay,
            term_range: e.term_range,
            counter_jump: e.counter_jump,
            unproven: e.unproven,
            duplicate: e.duplicate,
            by_slot,
            stale_term: e.stale_term,
            own_slot: e.own_slot,
            unexpected: e.unexpected,
            unknown_stream: e.unknown_stream,
            oversize,
        },
    };
    Response::ok(t, &j)
}

/// `show checkpoint-data [process]`.
/// `show checkpoint-data`; `held`: per process application, the times its
/// writer's changes were held back for the backup (backpressure).
pub fn checkpoint(rows: &[StreamStatus], held: &[(String, u64)]) -> Response {
    let mut t = String::new();
    let _ = render_checkpoint(rows.iter(), &mut t);
    let held_of = |name: &str| held.iter().find(|(n, _)| n == name).map(|h| h.1);
    let shown: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            held_of(r.name.as_str()).filter(|&n| n > 0).map(|n| format!("{} {n}", r.name.as_str()))
        })
        .collect();
    if !shown.is_empty() {
        let _ = writeln!(t, "Writers held back for the backup (times): {}", shown.join(", "));
    }
    let j: Vec<_> = rows
        .iter()
        .map(|r| msm_control::CheckpointRow {
            held_back: held_of(r.name.as_str()),
            process: r.name.as_str().into(),
            tx: r.counters.tx,
            rx: r.counters.rx,
            errors: r.counters.errors,
            sent: r.sent,
            total: r.total,
            percent: r.percent(),
            status: r.phase.as_str().into(),
            changes: r.changes,
            checkpointed: r.checkpointed,
            rebulks: r.rebulks,
            bulks: r.counters.bulks,
            mismatch: r.mismatch.map(|m| msm_control::Mismatch { ours: m.ours, theirs: m.theirs }),
        })
        .collect();
    Response::ok(t, &j)
}

/// `show node`: both slots of the chassis, a silent peer as DOWN.
pub fn nodes(s: &SwitchStatus) -> Response {
    let mut t = format!("{:<10} {:<10} {:<10} {:<10}\n", "Node", "State", "Priority", "Health");
    let mut j = Vec::new();
    for i in 0..2u8 {
        let Some(slot) = Slot::new(i) else { continue };
        let (state, prio, health) = if slot == s.slot {
            (s.role.as_str(), s.priority.to_string(), s.health.to_string())
        } else {
            match s.peers[i as usize] {
                Some(p) if p.alive => (p.role.as_str(), p.priority.to_string(), p.health.to_string()),
                _ => ("DOWN", "-".into(), "-".into()),
            }
        };
        let _ = writeln!(t, "{:<10} {:<10} {:<10} {:<10}", slot.to_string(), state, prio, health);
        j.push(msm_control::NodeRow { node: slot.to_string(), state: state.into(), priority: prio, health });
    }
    Response::ok(t, &j)
}

/// `show configuration`: the running configuration as text.
pub fn configuration(text: String) -> Response {
    Response::ok(text.clone(), &msm_control::Configuration { text })
}

/// `show app <name> [--rows]`: application `app` (index in `APPS`) and its table.
pub fn app(name: &str, app: Option<crate::apps::BuiltinApp>, table: &Table, rows: bool) -> Response {
    let mut t = format!("{name}: {} entries, digest {:016x}\n", table.len(), table.digest());
    let mut entries = Vec::new();
    if rows {
        for (k, v) in table.rows() {
            let _ = writeln!(t, "  {}", describe(app, *k, v));
            entries.push(msm_control::AppRow { key: *k, value: hex(v) });
        }
    }
    let digest = format!("{:016x}", table.digest());
    Response::ok(
        t,
        &msm_control::AppTable {
            app: name.into(),
            entries: table.len() as u64,
            digest,
            rows: entries,
            next: None,
        },
    )
}

#[cfg(test)]
mod tests {
    use crate::apps::Change;

    use super::*;

    #[test]
    fn app_rows_are_shown_only_when_asked() {
        let mut table = Table::default();
        table.apply(Change::Set(7, b"v7 tag 7 ports 1".to_vec()));
        let Response::Ok { text, json } = app("vlan", Some(crate::apps::VLAN), &table, true) else {
            panic!()
        };
        assert!(
            text.starts_with("vlan: 1 entries, digest ") && text.ends_with("  vlan v7 tag 7 ports 1\n"),
            "{text}"
        );
        assert_eq!(json["rows"][0]["value"], hex(b"v7 tag 7 ports 1"));
        let Response::Ok { text, json } = app("vlan", Some(crate::apps::VLAN), &table, false) else {
            panic!()
        };
        assert_eq!((text.lines().count(), json["rows"].as_array().map(Vec::len)), (1, Some(0)));
    }
}
