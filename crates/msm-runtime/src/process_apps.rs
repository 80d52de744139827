//! Applications that run as their own processes (`msm-node --process
//! NAME:SCHEMA[:DEP+DEP...]`): declared when the node starts, like XOS's
//! process list, so the engine registers them with the built-in ones and
//! orders their bulks by the same dependency graph. A process registers on
//! the application socket as one of them (`app_server`); until it does,
//! its table is empty on the master and kept on the backup.

use msm_checkpoint::AppId;

/// A declared process application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    pub name: String,
    pub schema: u16,
    pub deps: Vec<String>,
}

impl ProcessSpec {
    /// `NAME:SCHEMA` or `NAME:SCHEMA:DEP+DEP`, e.g. `acl:1:vlan`.
    pub fn parse(s: &str) -> Result<ProcessSpec, String> {
        let mut parts = s.split(':');
        let name = parts.next().unwrap_or_default();
        if name.is_empty()
            || name.len() > msm_checkpoint::MAX_NAME
            || !name.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(format!(
                "--process {s}: the name must be 1 to {} printable characters",
                msm_checkpoint::MAX_NAME
            ));
        }
        let schema = parts
            .next()
            .and_then(|v| v.parse::<u16>().ok())
            .ok_or_else(|| format!("--process {s}: expected NAME:SCHEMA[:DEP+DEP], SCHEMA a number"))?;
        let deps = match parts.next() {
            Some(d) if !d.is_empty() => d.split('+').map(str::to_string).collect(),
            _ => Vec::new(),
        };
        if parts.next().is_some() {
            return Err(format!("--process {s}: expected NAME:SCHEMA[:DEP+DEP]"));
        }
        if let Some(d) = deps.iter().enumerate().find(|(i, d)| deps[..*i].contains(d)).map(|(_, d)| d) {
            return Err(format!("--process {s}: dependency '{d}' named twice"));
        }
        if let Some(d) = deps.iter().find(|d| d.is_empty() || *d == name) {
            let why =
                if d.is_empty() { "an empty dependency name" } else { "the application depends on itself" };
            return Err(format!("--process {s}: {why}"));
        }
        Ok(ProcessSpec { name: name.to_string(), schema, deps })
    }

    /// Does a registration (name, schema, dependencies) match this
    /// declaration? `Err` says what differs.
    pub fn matches(&self, schema: u16, deps: &[String]) -> Result<(), String> {
        if schema != self.schema {
            return Err(format!(
                "{}: schema {schema} registered, the node declares schema {}",
                self.name, self.schema
            ));
        }
        let mut want = self.deps.clone();
        let mut got = deps.to_vec();
        want.sort();
        got.sort();
        if want != got {
            return Err(format!(
                "{}: dependencies [{}] registered, the node declares [{}]",
                self.name,
                deps.join(", "),
                self.deps.join(", ")
            ));
        }
        Ok(())
    }
}

/// The declared process applications and their engine ids.
#[derive(Debug, Clone, Default)]
pub struct ProcessApps(pub Vec<(ProcessSpec, AppId)>);

/// A process application: its place among those declared (`--process`, in
/// order). Its id in the engine is the `AppId` beside its declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcessApp(usize);

impl ProcessApp {
    pub const fn index(self) -> usize {
        self.0
    }

    /// The `index`-th declared (tests build logs without declarations).
    #[cfg(test)]
    pub(crate) const fn of(index: usize) -> Self {
        ProcessApp(index)
    }
}

impl ProcessApps {
    /// The index and declaration of `name`, or why not.
    pub fn find(&self, name: &str) -> Result<(ProcessApp, &ProcessSpec, AppId), String> {
        self.0
            .iter()
            .enumerate()
            .find(|(_, (p, _))| p.name == name)
            .map(|(i, (p, id))| (ProcessApp(i), p, *id))
            .ok_or_else(|| {
                let have: Vec<&str> = self.0.iter().map(|(p, _)| p.name.as_str()).collect();
                format!(
                    "no process application named '{name}' on this node (declared: {})",
                    if have.is_empty() { "none".to_string() } else { have.join(", ") }
                )
            })
    }

    /// The process application with engine id `id`, if it is one.
    pub fn by_table(&self, table: usize) -> Option<ProcessApp> {
        self.0.iter().position(|(_, id)| id.index() == table).map(ProcessApp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_parse_and_registrations_are_matched_by_name() {
        let p = ProcessSpec::parse("acl:2:vlan+fdb").unwrap();
        assert_eq!(p, ProcessSpec { name: "acl".into(), schema: 2, deps: vec!["vlan".into(), "fdb".into()] });
        assert_eq!(ProcessSpec::parse("bgp:1").unwrap().deps, Vec::<String>::new());
        assert!(ProcessSpec::parse("bgp").unwrap_err().contains("NAME:SCHEMA"));
        assert!(ProcessSpec::parse(":1").unwrap_err().contains("name"));
        assert!(ProcessSpec::parse("x:1:a:b").is_err());
        assert_eq!(
            ProcessSpec::parse("a:1:vlan+vlan").unwrap_err(),
            "--process a:1:vlan+vlan: dependency 'vlan' named twice"
        );
        assert!(ProcessSpec::parse("a:1:vlan++fdb").unwrap_err().contains("empty dependency"));
        assert!(ProcessSpec::parse("a:1:a").unwrap_err().contains("depends on itself"));
        assert_eq!(p.matches(2, &["fdb".into(), "vlan".into()]), Ok(()));
        assert!(p.matches(3, &[]).unwrap_err().contains("schema 3 registered, the node declares schema 2"));
        assert!(p.matches(2, &["vlan".into()]).unwrap_err().contains("dependencies [vlan] registered"));
    }
}
