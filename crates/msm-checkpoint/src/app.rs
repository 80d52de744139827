//! Application registry: names, schema versions and the dependency DAG that
//! orders bulk checkpoints (an application starts only after everything it
//! depends on has transferred its state).

use core::fmt;
use heapless::{String, Vec};

use crate::host::AppId;

/// Longest application name (XOS process names are short: "devmgr", "ospf").
pub const MAX_NAME: usize = 16;
/// Applications per node: dependencies are a 32-bit set including the two
/// configuration streams.
pub const MAX_APPS: usize = 30;

/// Why an application table was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// The registry is full.
    TooManyApps {
        /// How many applications it holds.
        capacity: usize,
    },
    /// A name longer than [`MAX_NAME`] bytes.
    NameTooLong {
        /// The name, cut to fit.
        name: String<MAX_NAME>,
    },
    /// An empty application or dependency name.
    EmptyName,
    /// Two applications of one name.
    DuplicateName {
        /// The name.
        name: String<MAX_NAME>,
    },
    /// More dependencies than an application may list.
    TooManyDependencies {
        /// The application.
        app: String<MAX_NAME>,
    },
    /// A dependency on a name nobody registered.
    UnknownDependency {
        /// The application.
        app: String<MAX_NAME>,
        /// The name it depends on.
        dependency: String<MAX_NAME>,
    },
    /// `app` is part of a dependency cycle.
    DependencyCycle {
        /// One application of the cycle.
        app: String<MAX_NAME>,
    },
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::TooManyApps { capacity } => {
                write!(f, "too many applications (capacity {capacity})")
            }
            RegisterError::NameTooLong { name } => {
                write!(f, "application name '{name}...' longer than {MAX_NAME} bytes")
            }
            RegisterError::EmptyName => f.write_str("empty application name"),
            RegisterError::DuplicateName { name } => {
                write!(f, "application '{name}' registered twice")
            }
            RegisterError::TooManyDependencies { app } => {
                write!(f, "application '{app}' has too many dependencies")
            }
            RegisterError::UnknownDependency { app, dependency } => {
                write!(f, "application '{app}' depends on unknown application '{dependency}'")
            }
            RegisterError::DependencyCycle { app } => {
                write!(f, "application '{app}' is part of a dependency cycle")
            }
        }
    }
}

/// One registered application.
#[derive(Debug, Clone)]
pub struct AppSpec {
    /// Its process name, as `show checkpoint-data` prints it.
    pub name: String<MAX_NAME>,
    /// Version of its record format; peers must agree to checkpoint it.
    pub schema: u16,
    /// The version the release before used (0: the same), which a backup
    /// declares to a master that speaks only an older protocol, converting
    /// the records it receives ([`AppRegistry::previous_schema`]).
    pub previous: u16,
    /// Dependencies as a set of app indexes.
    pub(crate) deps: u32,
}

const MAX_DEPS: usize = 8;

/// Collects applications with their dependencies by name, in any order;
/// [`AppRegistry::validate`] (called by `Node::new`) checks the graph.
#[derive(Debug, Clone)]
pub struct AppRegistry<const APPS: usize> {
    pub(crate) apps: Vec<AppSpec, APPS>,
    dep_names: Vec<Vec<String<MAX_NAME>, MAX_DEPS>, APPS>,
}

impl<const APPS: usize> Default for AppRegistry<APPS> {
    fn default() -> Self {
        Self::new()
    }
}

fn name_of(s: &str) -> Result<String<MAX_NAME>, RegisterError> {
    if s.is_empty() {
        return Err(RegisterError::EmptyName);
    }
    String::try_from(s).map_err(|_| {
        let mut cut = String::new();
        for c in s.chars() {
            if cut.push(c).is_err() {
                break;
            }
        }
        RegisterError::NameTooLong { name: cut }
    })
}

impl<const APPS: usize> AppRegistry<APPS> {
    const FITS: () = assert!(APPS <= MAX_APPS, "APPS exceeds MAX_APPS");

    /// An empty registry.
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::FITS;
        AppRegistry { apps: Vec::new(), dep_names: Vec::new() }
    }

    /// Register `name` with its schema version and the names it depends on.
    pub fn register(&mut self, name: &str, schema: u16, depends_on: &[&str]) -> Result<AppId, RegisterError> {
        let n = name_of(name)?;
        if self.apps.iter().any(|a| a.name == n) {
            return Err(RegisterError::DuplicateName { name: n });
        }
        let mut deps = Vec::new();
        for d in depends_on {
            deps.push(name_of(d)?).map_err(|_| RegisterError::TooManyDependencies { app: n.clone() })?;
        }
        let id = AppId(self.apps.len() as u8);
        self.apps
            .push(AppSpec { name: n, schema, previous: 0, deps: 0 })
            .map_err(|_| RegisterError::TooManyApps { capacity: APPS })?;
        // Same length as `apps`, so this cannot fail after the push above.
        let _ = self.dep_names.push(deps);
        Ok(id)
    }

    /// Application `id`'s records were in schema version `previous` in the
    /// release before. As the backup of a master that speaks only an older
    /// protocol version (that release), this node declares `previous` for
    /// it, and its host converts what it receives
    /// ([`Node::declared_schema`](crate::Node::declared_schema) says which).
    /// As master it converts nothing: a backup of the release before lacks
    /// the application's state (a named loss in a failover check).
    pub fn previous_schema(&mut self, id: AppId, previous: u16) {
        if let Some(a) = self.apps.get_mut(id.index()) {
            a.previous = previous;
        }
    }

    /// Applications registered.
    pub fn len(&self) -> usize {
        self.apps.len()
    }
    /// None registered.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }
    /// The application called `name`.
    pub fn find(&self, name: &str) -> Option<AppId> {
        self.apps.iter().position(|a| a.name == name).map(|i| AppId(i as u8))
    }
    /// What was registered under `id`.
    pub fn spec(&self, id: AppId) -> Option<&AppSpec> {
        self.apps.get(id.index())
    }
    /// Does `app` directly depend on `dep`?
    pub fn depends_on(&self, app: AppId, dep: AppId) -> bool {
        self.apps.get(app.index()).is_some_and(|a| a.deps & (1 << dep.0) != 0)
    }

    /// Resolve dependency names and refuse unknown names and cycles.
    pub fn validate(&mut self) -> Result<(), RegisterError> {
        for (i, names) in self.dep_names.iter().enumerate() {
            let mut set = 0u32;
            for d in names {
                let j = self.apps.iter().position(|a| a.name == *d).ok_or_else(|| {
                    RegisterError::UnknownDependency { app: self.apps[i].name.clone(), dependency: d.clone() }
                })?;
                set |= 1 << j;
            }
            self.apps[i].deps = set;
        }
        // Kahn's algorithm on the bit sets: whatever cannot be ordered is in a cycle.
        let n = self.apps.len();
        let mut done = 0u32;
        loop {
            let mut progressed = false;
            for i in 0..n {
                if done & (1 << i) == 0 && self.apps[i].deps & !done == 0 {
                    done |= 1 << i;
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        match (0..n).find(|i| done & (1 << i) == 0) {
            Some(i) => Err(RegisterError::DependencyCycle { app: self.apps[i].name.clone() }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_references_resolve() {
        let mut r = AppRegistry::<4>::new();
        let fdb = r.register("fdb", 1, &["vlan"]).unwrap();
        let vlan = r.register("vlan", 1, &[]).unwrap();
        r.validate().unwrap();
        assert!(r.depends_on(fdb, vlan));
        assert!(!r.depends_on(vlan, fdb));
    }

    #[test]
    fn cycle_is_named() {
        let mut r = AppRegistry::<4>::new();
        r.register("devmgr", 1, &[]).unwrap();
        r.register("vlan", 1, &["stp"]).unwrap();
        r.register("stp", 1, &["vlan"]).unwrap();
        let e = r.validate().unwrap_err();
        assert_eq!(e, RegisterError::DependencyCycle { app: String::try_from("vlan").unwrap() });
    }

    #[test]
    fn self_dependency_is_a_cycle() {
        let mut r = AppRegistry::<2>::new();
        r.register("ospf", 1, &["ospf"]).unwrap();
        assert!(matches!(r.validate(), Err(RegisterError::DependencyCycle { .. })));
    }

    #[test]
    fn unknown_dependency_is_named() {
        let mut r = AppRegistry::<4>::new();
        r.register("fdb", 1, &["vlan"]).unwrap();
        let e = r.validate().unwrap_err();
        let mut text: heapless::String<80> = heapless::String::new();
        core::fmt::write(&mut text, format_args!("{e}")).unwrap();
        assert_eq!(text, "application 'fdb' depends on unknown application 'vlan'");
    }

    #[test]
    fn capacity_names_and_duplicates() {
        let mut r = AppRegistry::<1>::new();
        r.register("a", 1, &[]).unwrap();
        assert_eq!(r.register("b", 1, &[]), Err(RegisterError::TooManyApps { capacity: 1 }));
        assert_eq!(
            r.register("a", 1, &[]),
            Err(RegisterError::DuplicateName { name: String::try_from("a").unwrap() })
        );
        assert!(matches!(
            r.register("a-very-long-application-name", 1, &[]),
            Err(RegisterError::NameTooLong { .. })
        ));
        assert_eq!(r.register("", 1, &[]), Err(RegisterError::EmptyName));
    }
}
