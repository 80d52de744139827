//! The control socket's server side: any number of `msm` clients, none able
//! to stall the node. A request is read into a bounded buffer; its answer
//! is written from a bounded buffer without blocking, a piece per loop
//! turn. A client that sends too much, or stops reading its answer, is
//! dropped and logged; the node goes on. A loop turn reads at most
//! [`READ_PER_TURN`] bytes of requests, and a long request (a `configure`
//! of thousands of lines) is parsed on a thread of its own: decoding grows
//! with the request (2-3 ms for 20 000 lines, up to the 1 MiB limit), and a
//! heartbeat interval can be shorter than that.
//!
//! Only the users [`Access`] names get in. The socket file is bound, given
//! its mode (0600, or 0660 and the operator group) and only then put in the
//! listening state: until `listen`, a `connect` is refused whatever the
//! mode, so no client can get in through the moment between `bind` (which
//! creates the file with the umask's mode) and the `chmod`. A process-wide
//! umask around `bind` would do the same but also changes the mode of files
//! other threads create meanwhile (the tests run in threads), and `fchmod` on
//! a socket descriptor does not reach the file. Each accepted client's
//! credentials are checked against [`Access`] before a byte is read.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use msm_backplane::Link;

use crate::client_limits::{self, Clock};
use crate::control_access::{Access, Guarded};
use crate::node::{Handled, MsmNode, Ticket};
use crate::socket_path::Refused;
use msm_control::{Request, Response, parse_request};

/// Largest request line.
pub const MAX_REQUEST: usize = 1 << 20;
/// Largest answer: `show app fdb --rows` of a million entries fits.
pub const MAX_ANSWER: usize = 256 << 20;
/// A client that takes no byte of its answer for this long is dropped.
pub const STALL: Duration = Duration::from_secs(5);
/// Request bytes read in one loop turn, over every client.
pub const READ_PER_TURN: usize = 64 << 10;
/// A request line longer than this is parsed off the loop.
const PARSE_INLINE: usize = 32 << 10;
/// How often the loop looks for a request parsed off it.
const PARSE_POLL: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Reading,
    /// Its request is being parsed on a thread of its own.
    Parsing,
    /// Its answer comes later (a configure in slices, a wait for the backup).
    Waiting(Ticket),
    Writing,
}

#[derive(Debug)]
struct Client {
    stream: UnixStream,
    state: State,
    input: Vec<u8>,
    output: Vec<u8>,
    sent: usize,
    /// Last time a byte moved, for the stall check.
    moved: Instant,
    /// The thread parsing a long request.
    parser: Option<JoinHandle<Result<Request, String>>>,
    /// Its deadlines: the request whole in time (`client_limits`).
    clock: Clock,
}

/// What happened to a client this turn, for the log and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    pub answered: u64,
    pub dropped: u64,
    /// Clients closed unread: not admitted by [`Access`].
    pub refused: u64,
    /// Clients dropped by the limits: no whole request in time, or closed
    /// to make room for a new connection.
    pub idle_dropped: u64,
}

/// The listening socket and its clients.
#[derive(Debug)]
pub struct ControlServer {
    socket: Guarded,
    clients: Vec<Client>,
    pub served: Served,
    /// The listener may have a connection waiting: poll said so, or was not asked.
    may_accept: bool,
}

impl ControlServer {
    /// Bind `path` for the users `access` admits: refused if a live process
    /// holds it (another node), a stale socket is replaced.
    pub fn bind(path: &Path, access: Access) -> Result<ControlServer, Refused> {
        Ok(ControlServer {
            socket: Guarded::bind(path, access, "control")?,
            clients: Vec::new(),
            served: Served::default(),
            may_accept: true,
        })
    }

    /// Descriptors to poll and for what: the listener for new clients,
    /// clients for their request or for room to write their answer.
    pub fn poll_set(&self) -> Vec<(BorrowedFd<'_>, bool, bool)> {
        // At the cap with every client busy, new ones wait unpolled (no spin).
        let take = client_limits::taking(self.clients.iter().map(|c| &c.clock));
        let mut v = vec![(self.socket.listener.as_fd(), take, false)];
        v.extend(
            self.clients
                .iter()
                .map(|c| (c.stream.as_fd(), c.state == State::Reading, c.state == State::Writing)),
        );
        v
    }

    /// What the poll found, one flag per entry of [`poll_set`](Self::poll_set):
    /// the listener is tried only when it has a connection (an accept that
    /// finds none still costs the kernel a socket made and freed).
    pub fn polled(&mut self, ready: &[bool]) {
        self.may_accept = ready.first().copied().unwrap_or(true);
    }

    /// The earliest time a stalled client must be dropped, or a parsed
    /// request looked for (a parser thread does not wake the loop).
    pub fn next_deadline(&self) -> Option<Instant> {
        let stall = self.clients.iter().filter(|c| c.state == State::Writing).map(|c| c.moved + STALL);
        let limits = self.clients.iter().filter_map(|c| c.clock.deadline());
        let stall = stall.chain(limits).min();
        match self.clients.iter().any(|c| c.state == State::Parsing) {
            true => Some(Instant::now() + PARSE_POLL),
            false => stall,
        }
    }

    /// Accept admitted clients (the socket closes the others unread, counted
    /// and logged), `client_limits::accept`; tell those closed to make room.
    fn accept(&mut self) {
        if !std::mem::replace(&mut self.may_accept, true) {
            return;
        }
        let evicted = client_limits::accept(
            &mut self.socket,
            &mut self.clients,
            |c| &c.clock,
            |stream, now| Client {
                stream,
                state: State::Reading,
                input: Vec::new(),
                output: Vec::new(),
                sent: 0,
                moved: now,
                parser: None,
                clock: Clock::new(now),
            },
        );
        for mut c in evicted {
            self.drop_idle(&mut c, client_limits::room_made());
        }
        self.served.refused = self.socket.refused;
    }

    /// Drop `c` for a limit: its answer says why (one try: it may not
    /// read); logged the first time and every hundredth.
    fn drop_idle(&mut self, c: &mut Client, why: String) {
        self.served.idle_dropped += 1;
        self.served.dropped += 1;
        if client_limits::log_drop(self.served.idle_dropped) {
            log::warn!(
                "control client dropped: {why} ({} dropped so far by the limits)",
                self.served.idle_dropped
            );
        }
        set_answer(c, &Response::error(why));
        write_answer(c, Instant::now());
    }

    /// Accept, read, submit, write: all without blocking.
    pub fn serve<L: Link>(&mut self, node: &mut MsmNode<L>) {
        self.accept();
        let mut budget = READ_PER_TURN;
        for c in &mut self.clients {
            match c.state {
                State::Reading => read_request(c, node, &mut budget),
                State::Parsing if c.parser.as_ref().is_some_and(JoinHandle::is_finished) => {
                    let parsed = match c.parser.take().map(JoinHandle::join) {
                        Some(Ok(parsed)) => parsed,
                        _ => Err("the request's parser failed".into()),
                    };
                    submit(c, node, parsed);
                }
                _ => {}
            }
        }
        while let Some((ticket, r)) = node.take_answer() {
            if let Some(c) = self.clients.iter_mut().find(|c| c.state == State::Waiting(ticket)) {
                set_answer(c, &r);
            }
        }
        let now = Instant::now();
        let expired = client_limits::take_expired(&mut self.clients, now, |c| {
            (c.state == State::Reading).then_some(&c.clock)
        });
        for (mut c, why) in expired {
            self.drop_idle(&mut c, why);
        }
        let served = &mut self.served;
        self.clients.retain_mut(|c| {
            if c.state == State::Writing {
                write_answer(c, now);
            }
            match c.state {
                State::Writing if c.output.is_empty() => false, // hung up, or gone before asking
                State::Writing if c.sent == c.output.len() => {
                    served.answered += 1;
                    false
                }
                State::Writing if now.duration_since(c.moved) >= STALL => {
                    log::warn!(
                        "control client dropped: it read {} of {} answer bytes in {} s",
                        c.sent,
                        c.output.len(),
                        STALL.as_secs()
                    );
                    served.dropped += 1;
                    false
                }
                _ => true,
            }
        });
    }
}

fn read_request<L: Link>(c: &mut Client, node: &mut MsmNode<L>, budget: &mut usize) {
    let mut chunk = [0u8; 4096];
    while *budget > 0 {
        let want = chunk.len().min(*budget);
        match c.stream.read(&mut chunk[..want]) {
            Ok(0) => {
                // Gone before asking: nothing to answer.
                c.state = State::Writing;
                c.output.clear();
                return;
            }
            Ok(n) => {
                c.input.extend_from_slice(&chunk[..n]);
                *budget -= n;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(_) => {
                c.state = State::Writing;
                c.output.clear();
                return;
            }
        }
        if c.input.len() > MAX_REQUEST {
            set_answer(c, &Response::error(format!("request larger than {} bytes", MAX_REQUEST)));
            return;
        }
    }
    let Some(end) = c.input.iter().position(|b| *b == b'\n') else {
        c.clock.partial(!c.input.is_empty(), Instant::now());
        return;
    };
    c.clock.served();
    c.clock.partial(false, Instant::now());
    c.moved = Instant::now();
    let mut input = std::mem::take(&mut c.input);
    input.truncate(end);
    let parse = move || parse_request(&String::from_utf8_lossy(&input));
    if end > PARSE_INLINE {
        match std::thread::Builder::new().name("msm-parse".into()).spawn(parse) {
            Ok(handle) => {
                c.parser = Some(handle);
                c.state = State::Parsing;
            }
            Err(e) => set_answer(c, &Response::error(format!("no thread to parse the request: {e}"))),
        }
        return;
    }
    submit(c, node, parse());
}

fn submit<L: Link>(c: &mut Client, node: &mut MsmNode<L>, parsed: Result<Request, String>) {
    match parsed {
        Ok(req) => match node.submit(req) {
            Handled::Now(r) => set_answer(c, &r),
            Handled::Later(t) => c.state = State::Waiting(t),
        },
        Err(e) => set_answer(c, &Response::error(e)),
    }
}

fn set_answer(c: &mut Client, r: &Response) {
    let mut line =
        serde_json::to_string(r).unwrap_or_else(|e| format!("{{\"status\":\"error\",\"message\":\"{e}\"}}"));
    if line.len() + 1 > MAX_ANSWER {
        line = serde_json::to_string(&Response::error(format!(
            "answer of {} bytes exceeds the {} MiB limit",
            line.len(),
            MAX_ANSWER >> 20
        )))
        .unwrap_or_default();
    }
    line.push('\n');
    c.output = line.into_bytes();
    c.sent = 0;
    c.state = State::Writing;
    c.moved = Instant::now();
}

fn write_answer(c: &mut Client, now: Instant) {
    while c.sent < c.output.len() {
        match c.stream.write(&c.output[c.sent..]) {
            Ok(0) => break,
            Ok(n) => {
                c.sent += n;
                c.moved = now;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(_) => {
                // Hung up: nothing more to send.
                c.output.clear();
                c.sent = 0;
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Accept until `want` clients were taken in or refused (the connect
    /// completed before; accept sees it at once, the deadline is a guard).
    fn accept_all(s: &mut ControlServer, want: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while (s.clients.len() as u64) + s.served.refused < want {
            assert!(Instant::now() < deadline, "connections not accepted");
            s.accept();
        }
    }

    #[test]
    fn the_socket_is_the_node_users_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.ctl");
        let mut s = ControlServer::bind(&path, Access::owner_only()).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(meta.uid(), nix::unistd::Uid::effective().as_raw());
        // We are the node's user: admitted.
        let _c = UnixStream::connect(&path).unwrap();
        accept_all(&mut s, 1);
        assert_eq!((s.clients.len(), s.served.refused), (1, 0));
        drop(s);
        assert!(!path.exists(), "removed on drop");
    }

    #[test]
    fn an_operator_group_gets_mode_0660_and_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.ctl");
        let own = nix::unistd::Group::from_gid(nix::unistd::Gid::effective()).unwrap().unwrap();
        let _s = ControlServer::bind(&path, Access::with_group(&own.name).unwrap()).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o660);
        assert_eq!(meta.gid(), own.gid.as_raw());
    }

    #[test]
    fn refused_clients_are_closed_unread_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.ctl");
        let mut s = ControlServer::bind(&path, Access::refusing_everyone()).unwrap();
        let mut c = UnixStream::connect(&path).unwrap();
        let _ = c.write_all(b"{\"op\":\"show-switch\"}\n");
        accept_all(&mut s, 1);
        assert_eq!((s.clients.len(), s.served.refused), (0, 1));
        // Closed by the node: end of stream, no answer.
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 16];
        match c.read(&mut buf) {
            Ok(n) => assert_eq!(n, 0, "no answer"),
            // Our request was left unread: Linux resets the connection.
            Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
        }
    }
}
