//! Who may use the control socket. The socket file's mode keeps other
//! users from connecting (0600, or 0660 for an operator group); the peer's
//! credentials, taken from the kernel at accept (`SO_PEERCRED`), are checked
//! again so that a socket whose mode was widened by hand, or a descriptor
//! passed to another process, still serves only the operators named here.
//!
//! Group members are resolved once, at start-up: the accept path never
//! calls into NSS (an LDAP lookup there would stall heartbeats), and a user
//! added to the group later needs a node restart, as a login session needs
//! a new login to get the group.

use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr, sockopt};
use nix::unistd::{Gid, Group, Uid, User};

use crate::socket_path::{self, Refused};

/// A connected client as the kernel saw it at `connect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// The operator group named by `msm-node --socket-group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorGroup {
    pub name: String,
    pub gid: u32,
    /// Users listed as members (`/etc/group`), as uids.
    pub members: Vec<u32>,
}

/// The control socket's admission rule: the node's own user, root, and,
/// with an operator group, a peer whose effective gid is the group or whose
/// user is a listed member of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// Admitted by uid: the node's own user, and root.
    users: [u32; 2],
    group: Option<OperatorGroup>,
}

impl Access {
    /// The node's own (effective) user and root only: socket mode 0600.
    pub fn owner_only() -> Access {
        Access::new(Uid::effective().as_raw(), None)
    }

    /// The node's user, root and the members of `name`: socket mode 0660,
    /// group `name`. An unknown group is an error naming it.
    pub fn with_group(name: &str) -> Result<Access, String> {
        let group = Group::from_name(name)
            .map_err(|e| format!("--socket-group {name}: looking up the group: {e}"))?
            .ok_or_else(|| format!("--socket-group {name}: no such group"))?;
        // A listed member without a passwd entry cannot log in: skip it.
        let members = group
            .mem
            .iter()
            .filter_map(|m| User::from_name(m).ok().flatten())
            .map(|u| u.uid.as_raw())
            .collect();
        Ok(Access::new(
            Uid::effective().as_raw(),
            Some(OperatorGroup { name: name.to_owned(), gid: group.gid.as_raw(), members }),
        ))
    }

    /// The rule for a node running as `owner` (root is always admitted).
    pub fn new(owner: u32, group: Option<OperatorGroup>) -> Access {
        Access { users: [owner, 0], group }
    }

    /// A rule no process passes (`(uid_t)-1` is nobody's uid), so tests
    /// running as root can see a refusal too.
    #[cfg(test)]
    pub(crate) fn refusing_everyone() -> Access {
        Access { users: [u32::MAX; 2], group: None }
    }

    /// The operator group, if any.
    pub fn group(&self) -> Option<&OperatorGroup> {
        self.group.as_ref()
    }

    /// The socket file's permission bits.
    pub fn mode(&self) -> u32 {
        if self.group.is_some() { 0o660 } else { 0o600 }
    }

    /// The group the socket file is given, if any.
    pub fn gid(&self) -> Option<Gid> {
        self.group.as_ref().map(|g| Gid::from_raw(g.gid))
    }

    /// Whether `peer` may use the control socket.
    pub fn admits(&self, peer: Peer) -> bool {
        self.users.contains(&peer.uid)
            || self.group.as_ref().is_some_and(|g| peer.gid == g.gid || g.members.contains(&peer.uid))
    }
}

/// Refusals are logged on the first and then every `LOG_EVERY`th, so a
/// local process connecting in a loop cannot flood the log.
pub const LOG_EVERY: u64 = 100;

/// Whether the `nth` refusal (counting from 1) is logged.
pub fn log_refusal(nth: u64) -> bool {
    nth == 1 || nth.is_multiple_of(LOG_EVERY)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const NODE: u32 = 1000;
    const OTHER: u32 = 1001;
    const OPS: u32 = 2000;

    fn peer(uid: u32, gid: u32) -> Peer {
        Peer { pid: 42, uid, gid }
    }

    fn ops(members: &[u32]) -> Option<OperatorGroup> {
        Some(OperatorGroup { name: "msm-ops".into(), gid: OPS, members: members.to_vec() })
    }

    #[test]
    fn owner_and_root_are_admitted_other_users_refused() {
        let a = Access::new(NODE, None);
        assert!(a.admits(peer(NODE, 1000)));
        assert!(a.admits(peer(NODE, 5555)), "any gid of the node's own user");
        assert!(a.admits(peer(0, 0)));
        assert!(!a.admits(peer(OTHER, 1001)));
        assert!(!a.admits(peer(OTHER, OPS)), "no group given: a gid admits nobody");
        assert_eq!(a.mode(), 0o600);
        assert_eq!(a.gid(), None);
    }

    #[test]
    fn group_admits_by_effective_gid_or_listed_membership() {
        let a = Access::new(NODE, ops(&[1002]));
        assert!(a.admits(peer(NODE, 1000)));
        assert!(a.admits(peer(0, 0)));
        assert!(a.admits(peer(OTHER, OPS)), "egid is the group");
        assert!(a.admits(peer(1002, 1002)), "a listed member with another primary group");
        assert!(!a.admits(peer(OTHER, 1001)), "neither");
        assert_eq!(a.mode(), 0o660);
        assert_eq!(a.gid(), Some(Gid::from_raw(OPS)));
    }

    #[test]
    fn unknown_group_is_an_error_naming_it() {
        let e = Access::with_group("no-such-group-msm-test").unwrap_err();
        assert!(e.contains("no-such-group-msm-test") && e.contains("no such group"), "{e}");
    }

    #[test]
    fn the_groups_listed_members_are_resolved_to_uids() {
        // The group of our own effective gid exists wherever the tests run.
        let name = Group::from_gid(Gid::effective()).unwrap().unwrap().name;
        let a = Access::with_group(&name).unwrap();
        let g = a.group().unwrap();
        assert_eq!(g.gid, Gid::effective().as_raw());
        let listed = Group::from_gid(Gid::effective()).unwrap().unwrap().mem;
        assert!(g.members.len() <= listed.len());
    }

    #[test]
    fn refusals_are_logged_first_then_every_hundredth() {
        let logged: Vec<u64> = (1..=250).filter(|n| log_refusal(*n)).collect();
        assert_eq!(logged, [1, 100, 200]);
    }
}

/// A listening Unix stream socket only the users of an [`Access`] may use:
/// bound, given its group and mode, and only then listening, so nobody
/// connects before the mode is final. Removed when dropped.
#[derive(Debug)]
pub struct Guarded {
    pub listener: UnixListener,
    path: PathBuf,
    access: Access,
    /// What it serves, for errors and the log ("control", "application").
    what: &'static str,
    /// Clients closed unread: not admitted.
    pub refused: u64,
}

impl Guarded {
    /// Bind `path`: refused if a live process holds it (another node), a
    /// stale socket is replaced.
    pub fn bind(path: &Path, access: Access, what: &'static str) -> Result<Guarded, Refused> {
        socket_path::claim(path, socket_path::Kind::Stream)?;
        let unusable = |step: &str, e: &dyn std::fmt::Display| {
            Refused::Unusable(format!("{what} socket {}: {step}: {e}", path.display()))
        };
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| unusable("socket", &e))?;
        let addr = UnixAddr::new(path).map_err(|e| unusable("path", &e))?;
        socket::bind(fd.as_raw_fd(), &addr).map_err(|e| unusable("bind", &e))?;
        // The file exists from here on: remove it again if the rest fails.
        let restricted = restrict(path, &access, what).and_then(|()| {
            let backlog = Backlog::new(128).map_err(|e| unusable("listen", &e))?;
            socket::listen(&fd, backlog).map_err(|e| unusable("listen", &e))
        });
        if let Err(e) = restricted {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        Ok(Guarded { listener: UnixListener::from(fd), path: path.to_path_buf(), access, what, refused: 0 })
    }

    /// Up to `max` admitted clients, non-blocking; the others are closed
    /// unread, counted and logged (the first and every [`LOG_EVERY`]th). At
    /// most `max` a turn, so a process connecting in a loop cannot keep the
    /// node here.
    pub fn accept(&mut self, max: usize) -> Vec<UnixStream> {
        let mut out = Vec::new();
        for _ in 0..max {
            let Ok((stream, _)) = self.listener.accept() else { break };
            let peer = socket::getsockopt(&stream, sockopt::PeerCredentials).map(|c| Peer {
                pid: c.pid(),
                uid: c.uid(),
                gid: c.gid(),
            });
            match peer {
                Ok(p) if self.access.admits(p) => {
                    if stream.set_nonblocking(true).is_ok() {
                        out.push(stream);
                    }
                }
                refused => {
                    self.refused += 1;
                    if log_refusal(self.refused) {
                        let who = match refused {
                            Ok(p) => format!("pid {} uid {} gid {}", p.pid, p.uid, p.gid),
                            Err(e) => format!("no peer credentials ({e})"),
                        };
                        log::warn!(
                            "{} client refused: {who}: not the node's user, root{} ({} refused so far; \
                             logged on the first and every {LOG_EVERY}th)",
                            self.what,
                            self.access.group().map(|g| format!(" or group {}", g.name)).unwrap_or_default(),
                            self.refused,
                        );
                    }
                }
            }
        }
        out
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Give the freshly bound socket file its mode and group, before `listen`.
/// Give the socket file at `path` the group and mode of `access`.
pub(crate) fn restrict(path: &Path, access: &Access, what: &str) -> Result<(), Refused> {
    let shown = path.display();
    if let Some(gid) = access.gid() {
        let name = access.group().map(|g| g.name.as_str()).unwrap_or_default();
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            path,
            None,
            Some(gid),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| {
            Refused::Unusable(format!(
                "{what} socket {shown}: giving it to group {name}: {e} (the node's user must be a member)"
            ))
        })?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(access.mode()))
        .map_err(|e| Refused::Unusable(format!("{what} socket {shown}: chmod {:o}: {e}", access.mode())))
}
