//! The application socket (`msm-node --app-socket PATH`): process
//! applications connect, register as one of the node's declared process
//! applications, and checkpoint through it (`msm-client`,
//! `docs/client-protocol.md`). Like the control socket, nothing here may
//! stall the node: reads and writes never block, each turn takes a bounded
//! slice of time, a client's unread output is bounded, and a client that
//! sends garbage, an oversized message or a registration the node does not
//! declare gets an error naming it and is dropped.
//!
//! The node keeps every process application's table (the engine's bulk
//! reads come from it), so a process that dies, even mid-bulk, disturbs
//! nothing, and one that comes back gets its state from the node.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use msm_backplane::Link;
use msm_checkpoint::Role;
use msm_client::proto::{self, Change as WireChange, Framer, Reply, Request, Role as WireRole};

use crate::apps::Change;
use crate::control_access::{Access, Guarded};
use crate::host::Forward;
use crate::node::MsmNode;
use crate::socket_path::Refused;

/// Clients at once; more wait in the listen queue.
pub const MAX_CLIENTS: usize = 64;
/// Unsent output a client may hold before it is dropped as one that does
/// not read (a snapshot is written in slices below this).
pub const MAX_OUTPUT: usize = 16 << 20;
/// A client with output pending that takes none of it for this long is dropped.
pub const STALL: Duration = Duration::from_secs(5);
/// Time a turn spends on requests, over all clients: protocol first.
const SLICE: Duration = Duration::from_millis(2);
/// Snapshot rows written a turn to one client, at most.
const SNAPSHOT_ROWS: usize = 4096;

#[derive(Debug)]
struct Client {
    stream: UnixStream,
    framer: Framer,
    out: Vec<u8>,
    sent: usize,
    /// The process application it registered as.
    app: Option<usize>,
    /// A wait being answered: (seq, deadline). Requests after it wait.
    waiting: Option<(u64, Instant)>,
    /// A snapshot being sent: the next key.
    snapshot: Option<u64>,
    /// The role last told.
    role: Option<Role>,
    moved: Instant,
    /// Set when it is to be dropped once its output (an error) is written.
    closing: bool,
    /// The sequence number of its last change taken: what `WAIT 0` waits for.
    last_seq: u64,
}

impl Client {
    fn reply(&mut self, r: &Reply) {
        r.encode(&mut self.out);
    }

    fn refuse(&mut self, why: String) {
        log::warn!("application client dropped: {why}");
        self.reply(&Reply::Error(why));
        self.closing = true;
    }
}

/// The listening socket and its clients.
#[derive(Debug)]
pub struct AppServer {
    socket: Guarded,
    clients: Vec<Client>,
    /// Clients dropped for misbehaving (garbage, oversize, not reading).
    pub dropped: u64,
}

impl AppServer {
    /// Bind `path` for the users `access` admits (as the control socket).
    pub fn bind(path: &Path, access: Access) -> Result<AppServer, Refused> {
        Ok(AppServer { socket: Guarded::bind(path, access, "application")?, clients: Vec::new(), dropped: 0 })
    }

    /// Descriptors to poll: the listener, clients to read, clients to write.
    pub fn poll_set(&self) -> Vec<(BorrowedFd<'_>, bool, bool)> {
        let mut v = vec![(self.socket.listener.as_fd(), true, false)];
        v.extend(self.clients.iter().map(|c| {
            let read = c.waiting.is_none() && !c.closing;
            (c.stream.as_fd(), read, c.sent < c.out.len())
        }));
        v
    }

    /// The earliest wait deadline or stall check.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.clients
            .iter()
            .filter_map(|c| {
                let stall = (c.sent < c.out.len()).then(|| c.moved + STALL);
                let wait = c.waiting.map(|w| w.1);
                // A snapshot goes on next turn, unless the client's unread
                // output holds it back (then its writability wakes us).
                let snap =
                    (c.snapshot.is_some() && c.out.len() - c.sent <= MAX_OUTPUT / 2).then(Instant::now);
                [stall, wait, snap].into_iter().flatten().min()
            })
            .min()
    }

    /// Accept, read and answer, forward, write: all without blocking.
    /// True when changes were taken: the node should send them now rather
    /// than at its next deadline.
    pub fn serve<L: Link>(&mut self, node: &mut MsmNode<L>) -> bool {
        let mut taken = 0;
        let room = MAX_CLIENTS.saturating_sub(self.clients.len());
        for stream in self.socket.accept(room) {
            self.clients.push(Client {
                stream,
                framer: Framer::default(),
                out: Vec::new(),
                sent: 0,
                app: None,
                waiting: None,
                snapshot: None,
                role: None,
                moved: Instant::now(),
                closing: false,
                last_seq: 0,
            });
        }
        let start = Instant::now();
        for c in &mut self.clients {
            if start.elapsed() < SLICE {
                taken += read_requests(c, node, start);
            }
        }
        let role = node.engine.role();
        for (p, f) in node.take_forwarded() {
            for c in self.clients.iter_mut().filter(|c| c.app == Some(p) && !c.closing) {
                match &f {
                    Forward::Begin => {
                        c.snapshot = None;
                        c.reply(&Reply::State { begin: true, entries: 0 });
                    }
                    Forward::Change(ch) => c.reply(&Reply::Record(wire_change(ch))),
                    Forward::End => c.reply(&Reply::State { begin: false, entries: 0 }),
                    // The table is whole on the node again: send it whole.
                    Forward::Abort => start_snapshot(c, node, p),
                }
            }
        }
        let now = Instant::now();
        for c in &mut self.clients {
            if c.app.is_some() && c.role != Some(role) && !c.closing {
                c.role = Some(role);
                c.reply(&Reply::Role(wire_role(role)));
            }
            if let (Some(p), Some((seq, deadline))) = (c.app, c.waiting) {
                let done = node.process_checkpointed(p);
                if done >= seq || now >= deadline {
                    c.waiting = None;
                    c.reply(&Reply::Waited { ok: done >= seq, checkpointed: done });
                    // Requests that came behind the wait.
                    taken += read_requests(c, node, start);
                }
            }
            if let (Some(p), Some(_)) = (c.app, c.snapshot) {
                continue_snapshot(c, node, p);
            }
            write_out(c, now);
        }
        let dropped = &mut self.dropped;
        self.clients.retain(|c| {
            let keep = if c.closing {
                c.sent < c.out.len() && now.duration_since(c.moved) < STALL
            } else if c.out.len() - c.sent > MAX_OUTPUT {
                log::warn!("application client dropped: {} bytes it does not read", c.out.len() - c.sent);
                false
            } else if c.sent < c.out.len() && now.duration_since(c.moved) >= STALL {
                log::warn!("application client dropped: it read nothing for {} s", STALL.as_secs());
                false
            } else {
                true
            };
            if !keep && !c.closing {
                *dropped += 1;
            }
            keep
        });
        taken > 0
    }
}

fn wire_role(r: Role) -> WireRole {
    match r {
        Role::Master => WireRole::Master,
        Role::Backup => WireRole::Backup,
        Role::Standby => WireRole::Standby,
        _ => WireRole::Init,
    }
}

fn wire_change(c: &Change) -> WireChange {
    match c {
        Change::Set(k, v) => WireChange::Set(*k, v.clone()),
        Change::Delete(k) => WireChange::Delete(*k),
    }
}

/// Read what arrived and carry out whole requests, until a wait, the end of
/// the input, or the turn's time is up. The number of changes taken.
fn read_requests<L: Link>(c: &mut Client, node: &mut MsmNode<L>, start: Instant) -> usize {
    let mut taken = 0;
    let mut chunk = [0u8; 64 * 1024];
    while !c.closing && c.waiting.is_none() {
        // Messages already here first.
        match c.framer.next_message() {
            Ok(Some(msg)) => {
                let req = Request::decode(msg);
                match req {
                    Ok(r) => taken += usize::from(handle(c, node, r)),
                    Err(e) => c.refuse(format!("{e}")),
                }
                if start.elapsed() >= SLICE {
                    break;
                }
                continue;
            }
            Ok(None) => c.framer.compact(),
            Err(e) => {
                c.refuse(format!("{e}"));
                break;
            }
        }
        if c.framer.pending() > proto::MAX_MESSAGE + 4 {
            break;
        }
        match c.stream.read(&mut chunk) {
            Ok(0) => {
                // Gone: its output too.
                c.closing = true;
                c.out.clear();
                c.sent = 0;
            }
            Ok(n) => c.framer.push(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                c.closing = true;
                c.out.clear();
                c.sent = 0;
            }
        }
    }
    taken
}

/// Carry out one request; true when it was a change taken.
fn handle<L: Link>(c: &mut Client, node: &mut MsmNode<L>, r: Request) -> bool {
    match (c.app, r) {
        (None, Request::Register { version, name, schema, deps }) => {
            if version != proto::VERSION {
                c.refuse(format!("client protocol version {version}; this node speaks {}", proto::VERSION));
                return false;
            }
            let found =
                node.processes.find(&name).and_then(|(p, spec, _)| spec.matches(schema, &deps).map(|()| p));
            match found {
                Ok(p) => {
                    c.app = Some(p);
                    let role = node.engine.role();
                    c.role = Some(role);
                    c.reply(&Reply::Registered {
                        role: wire_role(role),
                        checkpointed: node.process_checkpointed(p),
                    });
                    log::info!("process application {name} registered");
                    start_snapshot(c, node, p);
                }
                Err(why) => c.refuse(why),
            }
            false
        }
        (None, _) => {
            c.refuse("the first message must be a registration".into());
            false
        }
        (Some(_), Request::Register { .. }) => {
            c.refuse("registered already".into());
            false
        }
        (Some(p), Request::Change(ch)) => {
            let ch = match ch {
                WireChange::Set(k, v) => Change::Set(k, v),
                WireChange::Delete(k) => Change::Delete(k),
            };
            match node.process_change(p, ch) {
                Ok(seq) => {
                    c.reply(&Reply::Accepted { seq });
                    c.last_seq = seq;
                    true
                }
                // Refused, not dropped: the process may be waiting to take over.
                Err(why) => {
                    c.reply(&Reply::Error(why));
                    false
                }
            }
        }
        (Some(_), Request::Wait { seq, timeout_ms }) => {
            // 0: every change this client sent before (as Redis WAIT), so a
            // change and its wait go in one write.
            let seq = if seq == 0 { c.last_seq } else { seq };
            c.waiting = Some((seq, Instant::now() + Duration::from_millis(u64::from(timeout_ms))));
            false
        }
    }
}

fn start_snapshot<L: Link>(c: &mut Client, node: &MsmNode<L>, p: usize) {
    let entries = node.process_table(p).map_or(0, |t| t.len() as u64);
    c.reply(&Reply::State { begin: true, entries });
    c.snapshot = Some(0);
    continue_snapshot(c, node, p);
}

/// A slice of the table to the client, below its output bound.
fn continue_snapshot<L: Link>(c: &mut Client, node: &MsmNode<L>, p: usize) {
    let (Some(from), Some(table)) = (c.snapshot, node.process_table(p)) else { return };
    let mut next = None;
    for (i, (k, v)) in table.rows().range(from..).enumerate() {
        if i >= SNAPSHOT_ROWS || c.out.len() - c.sent > MAX_OUTPUT / 2 {
            next = Some(*k);
            break;
        }
        c.reply(&Reply::Record(WireChange::Set(*k, v.clone())));
    }
    c.snapshot = next;
    if next.is_none() {
        c.reply(&Reply::State { begin: false, entries: table.len() as u64 });
    }
}

fn write_out(c: &mut Client, now: Instant) {
    while c.sent < c.out.len() {
        match c.stream.write(&c.out[c.sent..]) {
            Ok(0) => break,
            Ok(n) => {
                c.sent += n;
                c.moved = now;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if c.sent == c.out.len() {
        c.out.clear();
        c.sent = 0;
        c.moved = now;
    } else if c.sent > (1 << 20) {
        c.out.drain(..c.sent);
        c.sent = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_map_one_to_one() {
        assert_eq!(wire_role(Role::Master), WireRole::Master);
        assert_eq!(wire_role(Role::Backup), WireRole::Backup);
        assert_eq!(wire_role(Role::Init), WireRole::Init);
    }
}
