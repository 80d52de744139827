//! The configuration language: a small, XOS-shaped subset. The running
//! configuration is a model; its text form (`show configuration`, the saved
//! file, the active-config checkpoint) is generated from the model in a
//! canonical order, so master and backup produce identical bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

pub const MAX_PORT: u16 = 64;

/// A line the configuration refused: which line, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub line_no: usize,
    pub line: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {}", self.line_no, self.reason, self.line)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vlan {
    pub tag: Option<u16>,
    pub ports: BTreeSet<u16>,
}

/// The running configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunningConfig {
    pub sysname: String,
    pub vlans: BTreeMap<String, Vlan>,
    /// Node priority per slot (A, B); lower wins the election.
    pub priority: [Option<u8>; 2],
    pub disabled_ports: BTreeSet<u16>,
    /// Which VLAN holds each tag: the index that keeps a line's check O(log n).
    tags: BTreeMap<u16, String>,
}

/// What a command did, for the node to reflect in application state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    None,
    /// A VLAN was created, changed or deleted (by name).
    Vlan(String),
    /// A slot's election priority changed.
    Priority(usize, u8),
}

fn parse_ports(s: &str) -> Result<BTreeSet<u16>, String> {
    let mut out = BTreeSet::new();
    for part in s.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let a: u16 = a.trim().parse().map_err(|_| format!("'{part}' is not a port or port range"))?;
        let b: u16 = b.trim().parse().map_err(|_| format!("'{part}' is not a port or port range"))?;
        if a == 0 || b > MAX_PORT || a > b {
            return Err(format!("port range '{part}' outside 1-{MAX_PORT}"));
        }
        out.extend(a..=b);
    }
    Ok(out)
}

/// "1-4,7": a port set as XOS prints it.
pub fn port_list(p: &BTreeSet<u16>) -> String {
    let mut out = String::new();
    let v: Vec<u16> = p.iter().copied().collect();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if j > i {
            let _ = write!(out, "{}-{}", v[i], v[j]);
        } else {
            let _ = write!(out, "{}", v[i]);
        }
        i = j + 1;
    }
    out
}

fn check_name(n: &str) -> Result<(), String> {
    let ok = !n.is_empty()
        && n.len() <= 32
        && n.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!("'{n}' is not a valid name (letter, then letters, digits, _ or -; 32 max)"))
    }
}

fn parse_tag(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(t) if (1..=4094).contains(&t) => Ok(t),
        _ => Err(format!("tag '{s}' outside 1-4094")),
    }
}

fn parse_slot(s: &str) -> Result<usize, String> {
    match s {
        "A" | "a" => Ok(0),
        "B" | "b" => Ok(1),
        _ => Err(format!("slot '{s}' is not A or B")),
    }
}

/// One validated command, ready to change the model.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    Nothing,
    SysName(String),
    CreateVlan(String, Option<u16>),
    DeleteVlan(String),
    VlanTag(String, u16),
    VlanPorts(String, bool, BTreeSet<u16>),
    Priority(usize, u8),
    Ports(bool, BTreeSet<u16>),
}

impl Command {
    fn effect(&self) -> Effect {
        match self {
            Command::CreateVlan(n, _)
            | Command::DeleteVlan(n)
            | Command::VlanTag(n, _)
            | Command::VlanPorts(n, ..) => Effect::Vlan(n.clone()),
            Command::Priority(slot, p) => Effect::Priority(*slot, *p),
            _ => Effect::None,
        }
    }
}

impl RunningConfig {
    /// What `line` would do, without doing it: the reason if it is refused.
    /// O(log n) in the number of VLANs, so a configure of many lines costs
    /// O(lines), never a copy of the whole configuration a line.
    pub fn check(&self, line: &str) -> Result<Effect, String> {
        self.command(line).map(|c| c.effect())
    }

    /// Apply one command. Validated first: on error nothing changes.
    pub fn apply(&mut self, line: &str) -> Result<Effect, String> {
        let cmd = self.command(line)?;
        let effect = cmd.effect();
        match cmd {
            Command::Nothing => {}
            Command::SysName(n) => self.sysname = n,
            Command::CreateVlan(name, tag) => {
                if let Some(t) = tag {
                    self.tags.insert(t, name.clone());
                }
                self.vlans.insert(name, Vlan { tag, ports: BTreeSet::new() });
            }
            Command::DeleteVlan(name) => {
                if let Some(t) = self.vlans.remove(&name).and_then(|v| v.tag) {
                    self.tags.remove(&t);
                }
            }
            Command::VlanTag(name, t) => {
                if let Some(v) = self.vlans.get_mut(&name) {
                    if let Some(old) = v.tag.replace(t) {
                        self.tags.remove(&old);
                    }
                    self.tags.insert(t, name);
                }
            }
            Command::VlanPorts(name, add, ports) => {
                if let Some(v) = self.vlans.get_mut(&name) {
                    if add {
                        v.ports.extend(ports);
                    } else {
                        v.ports.retain(|p| !ports.contains(p));
                    }
                }
            }
            Command::Priority(slot, p) => self.priority[slot] = Some(p),
            Command::Ports(disable, ports) => {
                if disable {
                    self.disabled_ports.extend(ports);
                } else {
                    self.disabled_ports.retain(|p| !ports.contains(p));
                }
            }
        }
        Ok(effect)
    }

    fn command(&self, line: &str) -> Result<Command, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let exists = |name: &str| {
            if self.vlans.contains_key(name) { Ok(()) } else { Err(format!("vlan '{name}' does not exist")) }
        };
        match words.as_slice() {
            [] => Ok(Command::Nothing),
            [w, ..] if w.starts_with('#') => Ok(Command::Nothing),
            ["configure", "snmp", "sysName", name] => {
                let name = name.trim_matches('"');
                if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_graphic()) {
                    return Err(format!("sysName '{name}' must be 1-64 printable characters"));
                }
                Ok(Command::SysName(name.to_string()))
            }
            ["create", "vlan", name, rest @ ..] => {
                check_name(name)?;
                if self.vlans.contains_key(*name) {
                    return Err(format!("vlan '{name}' already exists"));
                }
                let tag = match rest {
                    [] => None,
                    ["tag", t] => Some(parse_tag(t)?),
                    _ => return Err("expected 'create vlan <name> [tag <1-4094>]'".into()),
                };
                if let Some(t) = tag {
                    self.tag_free(t, name)?;
                }
                Ok(Command::CreateVlan(name.to_string(), tag))
            }
            ["delete", "vlan", name] => {
                exists(name)?;
                Ok(Command::DeleteVlan(name.to_string()))
            }
            ["configure", "vlan", name, "tag", t] => {
                let t = parse_tag(t)?;
                exists(name)?;
                self.tag_free(t, name)?;
                Ok(Command::VlanTag(name.to_string(), t))
            }
            ["configure", "vlan", name, op @ ("add" | "delete"), "ports", list] => {
                let ports = parse_ports(list)?;
                exists(name)?;
                Ok(Command::VlanPorts(name.to_string(), *op == "add", ports))
            }
            ["configure", "node", "slot", s, "priority", p] => {
                let slot = parse_slot(s)?;
                let p: u8 = p.parse().map_err(|_| format!("priority '{p}' outside 0-255"))?;
                Ok(Command::Priority(slot, p))
            }
            [op @ ("enable" | "disable"), "ports", list] => {
                Ok(Command::Ports(*op == "disable", parse_ports(list)?))
            }
            _ => Err("unknown command".into()),
        }
    }

    fn tag_free(&self, tag: u16, name: &str) -> Result<(), String> {
        match self.tags.get(&tag) {
            Some(other) if other != name => Err(format!("tag {tag} is already used by vlan '{other}'")),
            _ => Ok(()),
        }
    }

    /// Load a whole configuration text; the first bad line is named.
    pub fn parse(text: &str) -> Result<RunningConfig, ConfigError> {
        let mut c = RunningConfig::default();
        for (i, line) in text.lines().enumerate() {
            c.apply(line).map_err(|reason| ConfigError { line_no: i + 1, line: line.to_string(), reason })?;
        }
        Ok(c)
    }

    /// The canonical text, as `show configuration` prints and `save` stores it.
    pub fn to_text(&self) -> String {
        let mut s = String::from("# msm-ha configuration\n");
        if !self.sysname.is_empty() {
            let _ = writeln!(s, "configure snmp sysName {}", self.sysname);
        }
        for (slot, p) in self.priority.iter().enumerate() {
            if let Some(p) = p {
                let _ = writeln!(s, "configure node slot {} priority {p}", if slot == 0 { 'A' } else { 'B' });
            }
        }
        for (name, v) in &self.vlans {
            match v.tag {
                Some(t) => writeln!(s, "create vlan {name} tag {t}"),
                None => writeln!(s, "create vlan {name}"),
            }
            .ok();
            if !v.ports.is_empty() {
                let _ = writeln!(s, "configure vlan {name} add ports {}", port_list(&v.ports));
            }
        }
        if !self.disabled_ports.is_empty() {
            let _ = writeln!(s, "disable ports {}", port_list(&self.disabled_ports));
        }
        s
    }
}

/// The factory default configuration.
pub fn factory_default() -> RunningConfig {
    let mut c = RunningConfig { sysname: "msm-chassis".into(), ..Default::default() };
    let _ = c.apply("create vlan Default tag 1");
    let _ = c.apply("configure vlan Default add ports 1-48");
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_canonically() {
        let mut c = factory_default();
        for l in [
            "create vlan v10 tag 10",
            "configure vlan v10 add ports 1-4,7",
            "configure node slot B priority 5",
            "disable ports 9-10",
        ] {
            c.apply(l).unwrap();
        }
        let t = c.to_text();
        let back = RunningConfig::parse(&t).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.to_text(), t);
        assert!(t.contains("configure vlan v10 add ports 1-4,7\n"), "{t}");
    }

    #[test]
    fn check_agrees_with_apply_and_changes_nothing() {
        let mut c = factory_default();
        for line in
            ["create vlan v5 tag 5", "configure vlan v5 tag 6", "create vlan v7 tag 5", "delete vlan v5"]
        {
            let before = c.clone();
            let checked = c.check(line);
            assert_eq!(c, before);
            assert_eq!(checked, c.apply(line), "{line}");
        }
        assert_eq!(
            c.check("create vlan v8 tag 6").map_err(|e| e.contains("tag 6")),
            Ok(Effect::Vlan("v8".into()))
        );
        // The tag index follows deletes and re-tags: 5 went to v7, 6 was freed with v5.
        assert!(c.check("create vlan v9 tag 5").unwrap_err().contains("'v7'"));
    }

    #[test]
    fn bad_lines_are_refused_with_the_reason_and_change_nothing() {
        let mut c = factory_default();
        let before = c.clone();
        for (line, why) in [
            ("create vlan 10x", "not a valid name"),
            ("create vlan v2 tag 5000", "outside 1-4094"),
            ("create vlan v3 tag 1", "already used by vlan 'Default'"),
            ("configure vlan nope add ports 1", "does not exist"),
            ("configure vlan Default add ports 0-3", "outside 1-64"),
            ("configure vlan Default add ports x", "not a port"),
            ("configure node slot C priority 1", "not A or B"),
            ("configure node slot A priority 300", "outside 0-255"),
            ("frobnicate", "unknown command"),
        ] {
            let e = c.apply(line).unwrap_err();
            assert!(e.contains(why), "{line}: {e}");
        }
        assert_eq!(c, before);
        let e = RunningConfig::parse("create vlan a\nbogus line\n").unwrap_err();
        assert_eq!(e.line_no, 2);
        assert_eq!(e.to_string(), "line 2: unknown command: bogus line");
    }
}
