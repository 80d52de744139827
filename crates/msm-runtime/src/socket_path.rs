//! A Unix socket path is part of a node's identity on this machine. A path
//! a live process holds is refused, never unlinked: a second node started
//! with the first one's paths must not take its sockets over (that split the
//! chassis into two masters). A path whose owner died is stale and removed.

use std::io::ErrorKind;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;

/// The kind of socket at a path, for the liveness probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stream,
    Datagram,
}

/// Why a path cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// A live process is bound to it.
    InUse(String),
    /// Something else: not a socket, no permission.
    Unusable(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::InUse(m) | Refused::Unusable(m) => f.write_str(m),
        }
    }
}

/// Make `path` free for binding: refuse it if a live process holds it,
/// remove it if it is a stale socket.
pub fn claim(path: &Path, kind: Kind) -> Result<(), Refused> {
    let shown = path.display();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Refused::Unusable(format!("{shown}: {e}"))),
    };
    if !meta.file_type().is_socket() {
        return Err(Refused::Unusable(format!("{shown} exists and is not a socket; not removing it")));
    }
    let probe = match kind {
        Kind::Stream => UnixStream::connect(path).map(drop),
        Kind::Datagram => UnixDatagram::unbound().and_then(|s| s.connect(path)),
    };
    match probe {
        Ok(()) => Err(Refused::InUse(format!(
            "{shown} is in use by a running process (another node with this path?)"
        ))),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => std::fs::remove_file(path)
            .map_err(|e| Refused::Unusable(format!("{shown}: removing a stale socket: {e}"))),
        Err(e) => Err(Refused::Unusable(format!("{shown}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn live_paths_are_refused_stale_ones_removed() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path().join("a.ctl");
        assert_eq!(claim(&s, Kind::Stream), Ok(()), "nothing there");
        let live = UnixListener::bind(&s).unwrap();
        assert!(matches!(claim(&s, Kind::Stream), Err(Refused::InUse(_))));
        drop(live); // the file stays, nobody listens: stale
        assert_eq!(claim(&s, Kind::Stream), Ok(()));
        assert!(!s.exists());

        let d = dir.path().join("a.bp");
        let live = UnixDatagram::bind(&d).unwrap();
        assert!(matches!(claim(&d, Kind::Datagram), Err(Refused::InUse(_))));
        drop(live);
        assert_eq!(claim(&d, Kind::Datagram), Ok(()));

        let f = dir.path().join("file");
        std::fs::write(&f, b"x").unwrap();
        assert!(matches!(claim(&f, Kind::Stream), Err(Refused::Unusable(_))));
        assert!(f.exists(), "not a socket: left alone");
    }
}
