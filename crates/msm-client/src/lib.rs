//! # msm-client
//!
//! An application process checkpoints its state through the checkpoint
//! engine of its management module (MSM): it connects to the node's
//! application socket (`msm-node --app-socket PATH`) and registers as one of
//! the process applications the node declares (`--process NAME:SCHEMA:DEPS`).
//!
//! - On the master it publishes changes ([`Client::set`], [`Client::delete`],
//!   or pipelined with [`Client::send`] and [`Client::accepted`]), each
//!   numbered, and can wait until the backup has them ([`Client::wait`], the
//!   Redis `WAIT` of this system).
//! - On the backup it receives the state the master's application holds and
//!   every later change, in order ([`Client::next_event`]), and learns when
//!   its node takes over or steps down ([`Event::Role`]).
//! - After its own restart it gets its state back from the node (a
//!   [`Event::StateBegin`] .. [`Event::StateEnd`] after registering): the node
//!   keeps each process application's table, so nothing chassis-wide is
//!   re-sent.
//!
//! The bytes are in `docs/client-protocol.md` ([`proto`]); a client in
//! another language is a socket and a struct packer (`examples/python/`).

pub mod proto;

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

pub use proto::{Change, Role};
use proto::{Framer, ProtoError, Reply, Request};

/// Something the node sent on its own: state to apply, a role change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The application's state follows whole: clear yours, then apply the records up to `StateEnd`.
    StateBegin { entries: u64 },
    /// The whole state has been sent.
    StateEnd,
    /// One entry of the state, or (backup) a change the master made.
    Record(Change),
    /// The node's role changed: `Master` after a takeover, `Backup` after a step-down.
    Role(Role),
}

/// Why a call failed.
#[derive(Debug)]
pub enum Error {
    /// The socket failed, or a timeout passed.
    Io(io::Error),
    /// The node sent bytes that are not a message.
    Proto(ProtoError),
    /// The node refused the request, saying why.
    Refused(String),
    /// The node closed the connection.
    Closed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "application socket: {e}"),
            Error::Proto(e) => write!(f, "from the node: {e}"),
            Error::Refused(m) => write!(f, "refused by the node: {m}"),
            Error::Closed => f.write_str("the node closed the connection"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// A registered application process.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    framer: Framer,
    out: Vec<u8>,
    events: VecDeque<Event>,
    role: Role,
    checkpointed: u64,
}

impl Client {
    /// Connect to the node's application socket and register as `name`
    /// (schema version, dependencies: as the node declares them).
    pub fn connect(path: impl AsRef<Path>, name: &str, schema: u16, deps: &[&str]) -> Result<Client, Error> {
        let stream = UnixStream::connect(path)?;
        let mut c = Client {
            stream,
            framer: Framer::default(),
            out: Vec::new(),
            events: VecDeque::new(),
            role: Role::Init,
            checkpointed: 0,
        };
        let deps = deps.iter().map(|d| d.to_string()).collect();
        Request::Register { version: proto::VERSION, name: name.into(), schema, deps }.encode(&mut c.out);
        c.flush()?;
        match c.reply(None)? {
            Reply::Registered { role, checkpointed } => {
                c.role = role;
                c.checkpointed = checkpointed;
                Ok(c)
            }
            other => Err(Error::Proto(ProtoError::Malformed(reply_name(&other)))),
        }
    }

    /// The node's role, as last reported.
    pub fn role(&self) -> Role {
        self.role
    }

    /// How far the application was checkpointed when it registered.
    pub fn checkpointed_at_start(&self) -> u64 {
        self.checkpointed
    }

    /// Set one key; its sequence number once the master took it.
    pub fn set(&mut self, key: u64, value: &[u8]) -> Result<u64, Error> {
        self.send(Change::Set(key, value.to_vec()));
        self.flush()?;
        self.accepted()
    }

    /// Delete one key; its sequence number.
    pub fn delete(&mut self, key: u64) -> Result<u64, Error> {
        self.send(Change::Delete(key));
        self.flush()?;
        self.accepted()
    }

    /// Queue a change without waiting (pipelining): [`flush`](Self::flush),
    /// then one [`accepted`](Self::accepted) per change, in order.
    pub fn send(&mut self, change: Change) {
        Request::Change(change).encode(&mut self.out);
    }

    /// Write what [`send`](Self::send) queued.
    pub fn flush(&mut self) -> Result<(), Error> {
        self.stream.write_all(&self.out)?;
        self.out.clear();
        Ok(())
    }

    /// The sequence number of the oldest change not yet answered.
    pub fn accepted(&mut self) -> Result<u64, Error> {
        match self.reply(None)? {
            Reply::Accepted { seq } => Ok(seq),
            other => Err(Error::Proto(ProtoError::Malformed(reply_name(&other)))),
        }
    }

    /// Wait until the backup has every change up to `seq` (true), or
    /// `timeout` passed (false). Send nothing else meanwhile.
    pub fn wait(&mut self, seq: u64, timeout: Duration) -> Result<bool, Error> {
        let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        Request::Wait { seq, timeout_ms: ms }.encode(&mut self.out);
        self.flush()?;
        match self.reply(None)? {
            Reply::Waited { ok, checkpointed } => {
                self.checkpointed = self.checkpointed.max(checkpointed);
                Ok(ok)
            }
            other => Err(Error::Proto(ProtoError::Malformed(reply_name(&other)))),
        }
    }

    /// Set one key and wait until the backup has it, in one round trip (the
    /// change and `WAIT 0`, "every change I sent", in one write): its
    /// sequence number, and whether it is on the backup within `timeout`.
    pub fn set_and_wait(&mut self, key: u64, value: &[u8], timeout: Duration) -> Result<(u64, bool), Error> {
        self.send(Change::Set(key, value.to_vec()));
        self.send_wait_all(timeout);
        self.flush()?;
        let seq = self.accepted()?;
        Ok((seq, self.waited()?))
    }

    /// Queue `WAIT 0`: every change sent before it (pipelining, as Redis
    /// `WAIT` after a pipeline of writes). Answered by [`waited`](Self::waited).
    pub fn send_wait_all(&mut self, timeout: Duration) {
        let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        Request::Wait { seq: 0, timeout_ms: ms }.encode(&mut self.out);
    }

    /// The answer to a queued wait: every change it covers is on the backup.
    pub fn waited(&mut self) -> Result<bool, Error> {
        match self.reply(None)? {
            Reply::Waited { ok, checkpointed } => {
                self.checkpointed = self.checkpointed.max(checkpointed);
                Ok(ok)
            }
            other => Err(Error::Proto(ProtoError::Malformed(reply_name(&other)))),
        }
    }

    /// The next thing the node sent on its own, waiting at most `timeout`
    /// (`None`: until one comes). `Ok(None)`: the timeout passed.
    pub fn next_event(&mut self, timeout: Option<Duration>) -> Result<Option<Event>, Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            // What already arrived behind a reply comes first.
            self.drain_events()?;
            if let Some(e) = self.events.pop_front() {
                return Ok(Some(e));
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(l) if !l.is_zero() => Some(l),
                    _ => return Ok(None),
                },
                None => None,
            };
            match self.read_some(left) {
                Ok(()) => {}
                Err(Error::Io(e))
                    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The next reply to a request; events that come first are queued.
    fn reply(&mut self, timeout: Option<Duration>) -> Result<Reply, Error> {
        loop {
            while let Some(msg) = self.framer.next_message().map_err(Error::Proto)? {
                match Reply::decode(msg).map_err(Error::Proto)? {
                    Reply::Error(m) => return Err(Error::Refused(m)),
                    r @ (Reply::Registered { .. } | Reply::Accepted { .. } | Reply::Waited { .. }) => {
                        return Ok(r);
                    }
                    r => queue_event(&mut self.events, &mut self.role, r),
                }
            }
            self.framer.compact();
            self.read_some(timeout)?;
        }
    }

    fn drain_events(&mut self) -> Result<(), Error> {
        while let Some(msg) = self.framer.next_message().map_err(Error::Proto)? {
            match Reply::decode(msg).map_err(Error::Proto)? {
                Reply::Error(m) => return Err(Error::Refused(m)),
                r => queue_event(&mut self.events, &mut self.role, r),
            }
        }
        self.framer.compact();
        Ok(())
    }

    fn read_some(&mut self, timeout: Option<Duration>) -> Result<(), Error> {
        self.stream.set_read_timeout(timeout)?;
        let mut buf = [0u8; 64 * 1024];
        let n = self.stream.read(&mut buf)?;
        if n == 0 {
            return Err(Error::Closed);
        }
        self.framer.push(&buf[..n]);
        Ok(())
    }
}

fn queue_event(events: &mut VecDeque<Event>, role: &mut Role, r: Reply) {
    let e = match r {
        Reply::State { begin: true, entries } => Event::StateBegin { entries },
        Reply::State { begin: false, .. } => Event::StateEnd,
        Reply::Record(c) => Event::Record(c),
        Reply::Role(r) => {
            *role = r;
            Event::Role(r)
        }
        // Replies to requests never get here.
        _ => return,
    };
    events.push_back(e);
}

fn reply_name(r: &Reply) -> &'static str {
    match r {
        Reply::Registered { .. } => "unexpected Registered",
        Reply::Accepted { .. } => "unexpected Accepted",
        Reply::Waited { .. } => "unexpected Waited",
        _ => "unexpected reply",
    }
}
