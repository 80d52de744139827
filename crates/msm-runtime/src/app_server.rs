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
use crate::backup_wait::BackupWait;
use crate::client_limits::{self, Clock};
use crate::control_access::{Access, Guarded};
use crate::forward_log::ForwardLog;
use crate::host::Forward;
use crate::node::MsmNode;
use crate::process_apps::ProcessApp;
use crate::socket_path::Refused;

/// Output the node holds for one client (besides the kernel's socket
/// buffer): its snapshot and what it follows of the [`ForwardLog`] are
/// encoded only while less than `OUT_HIGH` (256 KiB) waits, so this bounds it with
/// room for one message more. Every byte counted is held for that client
/// alone; the forward log is shared (`forward_log::MAX_BYTES`).
pub const MAX_OUTPUT: usize = 512 << 10;
/// A client's output is filled up to this, a loop turn at a time.
const OUT_HIGH: usize = 256 << 10;
/// A client with output pending that takes none of it for this long is dropped.
pub const STALL: Duration = Duration::from_secs(5);
/// Time a turn spends on requests, over all clients: protocol first.
const SLICE: Duration = Duration::from_millis(2);
/// A client's replies wait this long for the answer to its wait, so that a
/// change, its acceptance and its wait's answer cost the client one wake-up
/// and the node one write (the backup answers within a round trip when in
/// sync); a longer wait gets its replies at this time.
const COALESCE: Duration = Duration::from_millis(2);
/// Snapshot rows written a turn to one client, at most.
const SNAPSHOT_ROWS: usize = 4096;
/// Backpressure: above this share of the engine's backlog in use, changes
/// from clients are held (not read) until it is below [`RELEASE`]: a writer
/// that outruns the backup waits instead of overflowing the backlog into a
/// re-bulk (DRBD's `on-congestion block`).
const HOLD: f64 = 0.5;
const RELEASE: f64 = 0.25;

#[derive(Debug)]
struct Client {
    stream: UnixStream,
    framer: Framer,
    out: Vec<u8>,
    sent: usize,
    /// The process application it registered as.
    app: Option<ProcessApp>,
    /// A wait being answered: the sequence number it waits for. Requests after it wait.
    waiting: Option<(u64, BackupWait<Instant>)>,
    /// A snapshot being sent: the next key.
    snapshot: Option<u64>,
    /// Its position in the forward log: what it has been sent of it.
    follow: u64,
    /// The role last told.
    role: Option<Role>,
    moved: Instant,
    /// Set when it is to be dropped once its output (an error) is written.
    closing: bool,
    /// The sequence number of its last change taken: what `WAIT 0` waits for.
    last_seq: u64,
    /// Its deadlines: registration, half-sent messages (`client_limits`).
    clock: Clock,
    /// The socket may have input: poll said so, or it was not asked, or the
    /// last read filled the buffer. False saves a read that would block.
    may_read: bool,
}

impl Client {
    fn new(stream: UnixStream, now: Instant) -> Client {
        Client {
            stream,
            framer: Framer::default(),
            out: Vec::new(),
            sent: 0,
            app: None,
            waiting: None,
            snapshot: None,
            follow: 0,
            role: None,
            moved: now,
            closing: false,
            last_seq: 0,
            clock: Clock::new(now),
            may_read: true,
        }
    }

    /// Its output waits for its wait's answer (see [`COALESCE`]).
    fn holds_output(&self, now: Instant) -> bool {
        !self.closing && self.waiting.is_some_and(|(_, w)| now < w.started + COALESCE)
    }

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
    /// Of those, dropped by the limits (no registration in time, a
    /// half-sent message, closed to make room), for the log's rate.
    pub idle_dropped: u64,
    /// What the node applied to process applications, for their followers.
    log: ForwardLog,
    /// Changes from clients are held: the backup is behind (backpressure).
    holding: bool,
    /// The listener may have a connection waiting: poll said so, or was not asked.
    may_accept: bool,
}

impl AppServer {
    /// Bind `path` for the users `access` admits (as the control socket).
    pub fn bind(path: &Path, access: Access) -> Result<AppServer, Refused> {
        Ok(AppServer {
            socket: Guarded::bind(path, access, "application")?,
            clients: Vec::new(),
            dropped: 0,
            idle_dropped: 0,
            log: ForwardLog::default(),
            holding: false,
            may_accept: true,
        })
    }

    /// Descriptors to poll: the listener, clients to read, clients to write.
    pub fn poll_set(&self) -> Vec<(BorrowedFd<'_>, bool, bool)> {
        // At the cap with every client busy, new ones wait unpolled (no spin).
        let take = client_limits::taking(self.clients.iter().map(|c| &c.clock));
        let mut v = vec![(self.socket.listener.as_fd(), take, false)];
        v.extend(self.clients.iter().map(|c| {
            // A writer's changes wait in its socket while the node holds them.
            let held = self.holding && c.app.is_some();
            let read = c.waiting.is_none() && !c.closing && !held;
            (c.stream.as_fd(), read, c.sent < c.out.len() && !c.holds_output(Instant::now()))
        }));
        v
    }

    /// What the poll found, one flag per entry of [`poll_set`](Self::poll_set)
    /// in its order (nothing changed between): accept and read only where
    /// there is something, saving a system call that would block.
    pub fn polled(&mut self, ready: &[bool]) {
        self.may_accept = ready.first().copied().unwrap_or(true);
        for (c, r) in self.clients.iter_mut().zip(ready.iter().skip(1)) {
            c.may_read = *r;
        }
    }

    /// The earliest wait deadline or stall check.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.clients
            .iter()
            .filter_map(|c| {
                let held = c.holds_output(Instant::now());
                let stall = (c.sent < c.out.len() && !held).then(|| c.moved + STALL);
                // Held replies go out at the hold's end, or the wait's if sooner.
                let wait = c
                    .waiting
                    .map(|w| if held { w.1.deadline.min(w.1.started + COALESCE) } else { w.1.deadline });
                // A snapshot goes on next turn, unless the client's unread
                // output holds it back (then its writability wakes us).
                let more = c.snapshot.is_some() || c.app.is_some_and(|p| self.log.has_for(p, c.follow));
                let snap = (more && c.out.len() - c.sent <= OUT_HIGH).then(Instant::now);
                [stall, wait, snap, c.clock.deadline()].into_iter().flatten().min()
            })
            .min()
    }

    /// Take waiting connections (`client_limits::accept`); tell those
    /// closed to make room.
    fn accept(&mut self) {
        if !std::mem::replace(&mut self.may_accept, true) {
            return;
        }
        let evicted = client_limits::accept(&mut self.socket, &mut self.clients, |c| &c.clock, Client::new);
        for mut c in evicted {
            self.drop_idle(&mut c, client_limits::room_made());
        }
    }

    /// Hold changes from clients while the engine's backlog is more than
    /// [`HOLD`] full; take them again below [`RELEASE`]. Each application
    /// whose writer is held counts one hold (`show checkpoint-data`).
    fn backpressure<L: Link>(&mut self, node: &mut MsmNode<L>) {
        let used = backlog_share(node);
        let was = self.holding;
        self.holding = node.engine.role() == Role::Master && if was { used > RELEASE } else { used > HOLD };
        if self.holding && !was {
            for p in self.clients.iter().filter_map(|c| c.app) {
                node.note_held(p);
            }
            log::debug!("changes from application clients held: backlog {:.0} % in use", used * 100.0);
        }
    }

    /// Drop `c` for a limit: tell it why (one try, it may not read), log
    /// the first and every hundredth.
    fn drop_idle(&mut self, c: &mut Client, why: String) {
        self.idle_dropped += 1;
        self.dropped += 1;
        if client_limits::log_drop(self.idle_dropped) {
            log::warn!(
                "application client dropped: {why} ({} dropped so far by the limits)",
                self.idle_dropped
            );
        }
        c.reply(&Reply::Error(why));
        write_out(c, Instant::now());
    }

    /// Accept, read and answer, forward, write: all without blocking.
    /// True when changes were taken: the node should send them now rather
    /// than at its next deadline.
    pub fn serve<L: Link>(&mut self, node: &mut MsmNode<L>) -> bool {
        let mut taken = 0;
        self.accept();
        let start = Instant::now();
        self.backpressure(node);
        // One live registration an application: those held now.
        let mut held: Vec<ProcessApp> =
            self.clients.iter().filter(|c| !c.closing).filter_map(|c| c.app).collect();
        let end = self.log.end();
        for c in &mut self.clients {
            if self.holding && c.app.is_some() || c.waiting.is_some() {
                c.clock.not_read(start);
            } else if start.elapsed() < SLICE {
                taken += read_requests(c, node, start, end, &mut held);
            }
        }
        for (p, f) in node.take_forwarded() {
            self.log.push(p, f);
        }
        let role = node.engine.role();
        let now = Instant::now();
        for c in &mut self.clients {
            if let (Some(p), Some((seq, wait))) = (c.app, c.waiting) {
                let done = node.process_checkpointed(p);
                if wait.over(now, seq.saturating_sub(done), role == Role::Master) {
                    c.waiting = None;
                    c.reply(&Reply::Waited { ok: done >= seq, checkpointed: done });
                    // Requests that came behind the wait (unpolled while it waited).
                    c.may_read = true;
                    if !self.holding {
                        taken += read_requests(c, node, start, end, &mut held);
                    }
                }
            }
            if let Some(p) = c.app.filter(|_| !c.closing) {
                if c.snapshot.is_some() {
                    continue_snapshot(c, node, p);
                }
                follow_log(c, &self.log, node, p);
                // A new role only once the client holds the table whole: a
                // follower is never told it is master in the middle of a transfer.
                let whole = c.snapshot.is_none() && !self.log.has_for(p, c.follow);
                if c.role != Some(role) && whole {
                    c.role = Some(role);
                    c.reply(&Reply::Role(wire_role(role)));
                }
            }
            if !c.holds_output(now) {
                write_out(c, now);
            }
        }
        // Entries every follower has are dropped; a follower behind the
        // oldest one kept (the log is bounded) is dropped as too slow.
        let keep = self.clients.iter().filter(|c| c.app.is_some() && !c.closing).map(|c| c.follow).min();
        self.log.trim(keep.unwrap_or(self.log.end()));
        for c in
            self.clients.iter_mut().filter(|c| c.app.is_some() && !c.closing && c.follow < self.log.base())
        {
            log::warn!(
                "application client dropped: it fell behind the node by more than {} MiB of changes",
                crate::forward_log::MAX_BYTES >> 20
            );
            c.out.clear();
            c.sent = 0;
            c.closing = true;
            self.dropped += 1;
        }
        let expired =
            client_limits::take_expired(&mut self.clients, now, |c| (!c.closing).then_some(&c.clock));
        for (mut c, why) in expired {
            self.drop_idle(&mut c, why);
        }
        let dropped = &mut self.dropped;
        self.clients.retain(|c| {
            let keep = if c.closing {
                c.sent < c.out.len() && now.duration_since(c.moved) < STALL
            } else if c.out.len() - c.sent > MAX_OUTPUT {
                log::warn!("application client dropped: {} bytes it does not read", c.out.len() - c.sent);
                false
            } else if c.sent < c.out.len() && !c.holds_output(now) && now.duration_since(c.moved) >= STALL {
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
/// The share of the engine's backlog in use.
fn backlog_share<L: Link>(node: &MsmNode<L>) -> f64 {
    node.engine.backlog_used() as f64 / node.engine.backlog_capacity().max(1) as f64
}

fn read_requests<L: Link>(
    c: &mut Client,
    node: &mut MsmNode<L>,
    start: Instant,
    end: u64,
    held: &mut Vec<ProcessApp>,
) -> usize {
    let mut taken = 0;
    let mut chunk = [0u8; 64 * 1024];
    while !c.closing && c.waiting.is_none() {
        // Messages already here first.
        match c.framer.next_message() {
            Ok(Some(msg)) => {
                let req = Request::decode(msg);
                match req {
                    Ok(r) => taken += usize::from(handle(c, node, r, end, held)),
                    Err(e) => c.refuse(format!("{e}")),
                }
                // The backlog is checked as it fills, not once a turn: one
                // turn's reading of a fast writer could overflow it (a re-bulk)
                // before the next turn holds the writers back.
                if start.elapsed() >= SLICE
                    || (node.engine.role() == Role::Master && backlog_share(node) > HOLD)
                {
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
        if c.framer.pending() > proto::MAX_MESSAGE + 4 || !c.may_read {
            break;
        }
        match c.stream.read(&mut chunk) {
            Ok(0) => {
                // Gone: its output too.
                c.closing = true;
                c.out.clear();
                c.sent = 0;
            }
            Ok(n) => {
                // A stream read short of the buffer took all there was.
                c.may_read = n == chunk.len();
                c.framer.push(&chunk[..n]);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                c.may_read = false;
                break;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                c.closing = true;
                c.out.clear();
                c.sent = 0;
            }
        }
    }
    c.clock.partial(c.framer.pending() > 0, Instant::now());
    if c.closing {
        // Its application is free for another registration.
        if let Some(i) = c.app.and_then(|p| held.iter().position(|&h| h == p)) {
            held.swap_remove(i);
        }
    }
    taken
}

/// Carry out one request; true when it was a change taken.
fn handle<L: Link>(
    c: &mut Client,
    node: &mut MsmNode<L>,
    r: Request,
    end: u64,
    held: &mut Vec<ProcessApp>,
) -> bool {
    match (c.app, r) {
        (None, Request::Register { version, name, schema, deps }) => {
            if version != proto::VERSION {
                c.refuse(format!("client protocol version {version}; this node speaks {}", proto::VERSION));
                return false;
            }
            let found =
                node.processes.find(&name).and_then(|(p, spec, _)| spec.matches(schema, &deps).map(|()| p));
            match found {
                Ok(p) if held.contains(&p) => {
                    c.refuse(format!(
                        "{name}: registered already by another connection to this node (one process an application)"
                    ));
                }
                Ok(p) => {
                    held.push(p);
                    c.app = Some(p);
                    // It follows what the node applies from now on, after its snapshot.
                    c.follow = end;
                    c.clock.served();
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
            let now = Instant::now();
            c.waiting = Some((seq, BackupWait::new(now, now + Duration::from_millis(u64::from(timeout_ms)))));
            false
        }
    }
}

fn start_snapshot<L: Link>(c: &mut Client, node: &MsmNode<L>, p: ProcessApp) {
    let entries = node.process_table(p).map_or(0, |t| t.len() as u64);
    c.reply(&Reply::State { begin: true, entries });
    c.snapshot = Some(0);
    continue_snapshot(c, node, p);
}

/// A slice of the table to the client, below its output bound.
fn continue_snapshot<L: Link>(c: &mut Client, node: &MsmNode<L>, p: ProcessApp) {
    let (Some(from), Some(table)) = (c.snapshot, node.process_table(p)) else { return };
    let mut next = None;
    for (i, (k, v)) in table.rows().range(from..).enumerate() {
        if i >= SNAPSHOT_ROWS || c.out.len() - c.sent > OUT_HIGH {
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

/// What the node applied to `c`'s application since its position in the
/// log, while its output is below [`OUT_HIGH`] (a client that does not
/// read gets nothing more encoded).
fn follow_log<L: Link>(c: &mut Client, log: &ForwardLog, node: &MsmNode<L>, p: ProcessApp) {
    while c.out.len() - c.sent < OUT_HIGH {
        let Some((app, f)) = log.get(c.follow) else { return };
        c.follow += 1;
        if *app != p {
            continue;
        }
        match f {
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
    } else if c.sent > OUT_HIGH / 2 {
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
