//! The client protocol, version 1: messages over a Unix stream socket, each
//! `[u32 LE length of what follows][u8 op][payload]`. Integers are little
//! endian; a string is `[u8 length][UTF-8 bytes]`. See `docs/client-protocol.md`.

use std::fmt;

/// The protocol version a REGISTER carries.
pub const VERSION: u16 = 1;
/// Largest message (op and payload); a longer one ends the connection.
pub const MAX_MESSAGE: usize = 1 << 20;

/// A role as the node reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Init,
    Master,
    Backup,
    Standby,
}

impl Role {
    fn to_u8(self) -> u8 {
        match self {
            Role::Init => 0,
            Role::Master => 1,
            Role::Backup => 2,
            Role::Standby => 3,
        }
    }

    fn from_u8(v: u8) -> Result<Role, ProtoError> {
        Ok(match v {
            0 => Role::Init,
            1 => Role::Master,
            2 => Role::Backup,
            3 => Role::Standby,
            _ => return Err(ProtoError::Malformed("role")),
        })
    }
}

/// A change to one key of the application's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Set(u64, Vec<u8>),
    Delete(u64),
}

/// Client to node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The first message: which application this process is.
    Register { version: u16, name: String, schema: u16, deps: Vec<String> },
    /// Master only: one change; answered `Accepted { seq }` or `Error`.
    Change(Change),
    /// Answered `Waited` once the backup has every change up to `seq`, or after `timeout_ms`.
    Wait { seq: u64, timeout_ms: u32 },
}

/// Node to client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Registration taken: the node's role, and how far the application is checkpointed.
    Registered { role: Role, checkpointed: u64 },
    /// A change was taken under this sequence number.
    Accepted { seq: u64 },
    /// A request refused, or why the node ends the connection.
    Error(String),
    /// The answer to a wait: every change up to `checkpointed` is on the backup.
    Waited { ok: bool, checkpointed: u64 },
    /// The application's state is sent whole from here (`begin`), then ends.
    State { begin: bool, entries: u64 },
    /// One entry of the state, or a change to apply (backup).
    Record(Change),
    /// The node's role changed (takeover, step-down).
    Role(Role),
}

/// A message that does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// Longer than [`MAX_MESSAGE`].
    TooLong(usize),
    /// An unknown op code.
    UnknownOp(u8),
    /// A field missing, cut short or out of range.
    Malformed(&'static str),
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::TooLong(n) => write!(f, "message of {n} bytes is longer than {MAX_MESSAGE}"),
            ProtoError::UnknownOp(op) => write!(f, "unknown op 0x{op:02x}"),
            ProtoError::Malformed(what) => write!(f, "malformed message: {what}"),
        }
    }
}

impl std::error::Error for ProtoError {}

const REGISTER: u8 = 0x01;
const SET: u8 = 0x02;
const DELETE: u8 = 0x03;
const WAIT: u8 = 0x04;
const REGISTERED: u8 = 0x81;
const ACCEPTED: u8 = 0x82;
const ERROR: u8 = 0x83;
const WAITED: u8 = 0x84;
const STATE: u8 = 0x85;
const RECORD_SET: u8 = 0x86;
const RECORD_DELETE: u8 = 0x87;
const ROLE: u8 = 0x88;

fn frame(out: &mut Vec<u8>, op: u8, body: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(op);
    body(out);
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(255)];
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

fn put_change(out: &mut Vec<u8>, set: u8, delete: u8, c: &Change) {
    match c {
        Change::Set(k, v) => frame(out, set, |o| {
            o.extend_from_slice(&k.to_le_bytes());
            o.extend_from_slice(v);
        }),
        Change::Delete(k) => frame(out, delete, |o| o.extend_from_slice(&k.to_le_bytes())),
    }
}

impl Request {
    /// Append the message's bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Request::Register { version, name, schema, deps } => frame(out, REGISTER, |o| {
                o.extend_from_slice(&version.to_le_bytes());
                o.extend_from_slice(&schema.to_le_bytes());
                put_str(o, name);
                o.push(deps.len().min(255) as u8);
                for d in deps.iter().take(255) {
                    put_str(o, d);
                }
            }),
            Request::Change(c) => put_change(out, SET, DELETE, c),
            Request::Wait { seq, timeout_ms } => frame(out, WAIT, |o| {
                o.extend_from_slice(&seq.to_le_bytes());
                o.extend_from_slice(&timeout_ms.to_le_bytes());
            }),
        }
    }

    /// Decode one message's op and payload (without its length).
    pub fn decode(msg: &[u8]) -> Result<Request, ProtoError> {
        let mut r = Reader(msg);
        Ok(match r.u8("op")? {
            REGISTER => {
                let version = r.u16("version")?;
                let schema = r.u16("schema")?;
                let name = r.string("name")?;
                let n = r.u8("dependency count")?;
                let deps = (0..n).map(|_| r.string("dependency")).collect::<Result<_, _>>()?;
                r.end()?;
                Request::Register { version, name, schema, deps }
            }
            SET => Request::Change(Change::Set(r.u64("key")?, r.rest().to_vec())),
            DELETE => {
                let k = r.u64("key")?;
                r.end()?;
                Request::Change(Change::Delete(k))
            }
            WAIT => {
                let seq = r.u64("seq")?;
                let timeout_ms = r.u32("timeout")?;
                r.end()?;
                Request::Wait { seq, timeout_ms }
            }
            op => return Err(ProtoError::UnknownOp(op)),
        })
    }
}

impl Reply {
    /// Append the message's bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Registered { role, checkpointed } => frame(out, REGISTERED, |o| {
                o.push(role.to_u8());
                o.extend_from_slice(&checkpointed.to_le_bytes());
            }),
            Reply::Accepted { seq } => frame(out, ACCEPTED, |o| o.extend_from_slice(&seq.to_le_bytes())),
            Reply::Error(m) => frame(out, ERROR, |o| o.extend_from_slice(m.as_bytes())),
            Reply::Waited { ok, checkpointed } => frame(out, WAITED, |o| {
                o.push(u8::from(*ok));
                o.extend_from_slice(&checkpointed.to_le_bytes());
            }),
            Reply::State { begin, entries } => frame(out, STATE, |o| {
                o.push(u8::from(!*begin));
                o.extend_from_slice(&entries.to_le_bytes());
            }),
            Reply::Record(c) => put_change(out, RECORD_SET, RECORD_DELETE, c),
            Reply::Role(role) => frame(out, ROLE, |o| o.push(role.to_u8())),
        }
    }

    /// Decode one message's op and payload (without its length).
    pub fn decode(msg: &[u8]) -> Result<Reply, ProtoError> {
        let mut r = Reader(msg);
        let reply = match r.u8("op")? {
            REGISTERED => Reply::Registered {
                role: Role::from_u8(r.u8("role")?)?,
                checkpointed: r.u64("checkpointed")?,
            },
            ACCEPTED => Reply::Accepted { seq: r.u64("seq")? },
            ERROR => return Ok(Reply::Error(String::from_utf8_lossy(r.rest()).into_owned())),
            WAITED => Reply::Waited { ok: r.u8("ok")? != 0, checkpointed: r.u64("checkpointed")? },
            STATE => Reply::State { begin: r.u8("phase")? == 0, entries: r.u64("entries")? },
            RECORD_SET => return Ok(Reply::Record(Change::Set(r.u64("key")?, r.rest().to_vec()))),
            RECORD_DELETE => Reply::Record(Change::Delete(r.u64("key")?)),
            ROLE => Reply::Role(Role::from_u8(r.u8("role")?)?),
            op => return Err(ProtoError::UnknownOp(op)),
        };
        r.end()?;
        Ok(reply)
    }
}

/// Splits a byte stream into messages: feed bytes, take whole messages.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    start: usize,
}

impl Framer {
    /// Bytes received.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that are not yet a whole message.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole message (op and payload), if one is there.
    pub fn next_message(&mut self) -> Result<Option<&[u8]>, ProtoError> {
        let rest = &self.buf[self.start..];
        if rest.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len > MAX_MESSAGE {
            return Err(ProtoError::TooLong(len));
        }
        if len == 0 {
            return Err(ProtoError::Malformed("empty message"));
        }
        if rest.len() < 4 + len {
            return Ok(None);
        }
        let from = self.start + 4;
        self.start += 4 + len;
        Ok(Some(&self.buf[from..from + len]))
    }

    /// Drop consumed bytes (call when no message borrow is alive).
    pub fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ProtoError> {
        if self.0.len() < n {
            return Err(ProtoError::Malformed(what));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, ProtoError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, ProtoError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, ProtoError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, ProtoError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn string(&mut self, what: &'static str) -> Result<String, ProtoError> {
        let n = self.u8(what)? as usize;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| ProtoError::Malformed(what))
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
    fn end(&self) -> Result<(), ProtoError> {
        if self.0.is_empty() { Ok(()) } else { Err(ProtoError::Malformed("trailing bytes")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02X}")).collect::<Vec<_>>().join(" ")
    }

    /// The worked example of `docs/client-protocol.md`, byte for byte.
    #[test]
    fn worked_example_of_the_docs() {
        let mut out = Vec::new();
        Request::Register { version: 1, name: "acl".into(), schema: 2, deps: vec!["vlan".into()] }
            .encode(&mut out);
        assert_eq!(hex(&out), "0F 00 00 00 01 01 00 02 00 03 61 63 6C 01 04 76 6C 61 6E");
        out.clear();
        Request::Change(Change::Set(7, b"permit".to_vec())).encode(&mut out);
        assert_eq!(hex(&out), "0F 00 00 00 02 07 00 00 00 00 00 00 00 70 65 72 6D 69 74");
        out.clear();
        Request::Wait { seq: 1, timeout_ms: 500 }.encode(&mut out);
        assert_eq!(hex(&out), "0D 00 00 00 04 01 00 00 00 00 00 00 00 F4 01 00 00");
        out.clear();
        Reply::Accepted { seq: 1 }.encode(&mut out);
        assert_eq!(hex(&out), "09 00 00 00 82 01 00 00 00 00 00 00 00");
        out.clear();
        Reply::Waited { ok: true, checkpointed: 1 }.encode(&mut out);
        assert_eq!(hex(&out), "0A 00 00 00 84 01 01 00 00 00 00 00 00 00");
    }

    #[test]
    fn every_message_round_trips_and_garbage_is_named() {
        let reqs = [
            Request::Register {
                version: 1,
                name: "ospfd".into(),
                schema: 3,
                deps: vec!["vlan".into(), "x".into()],
            },
            Request::Change(Change::Set(u64::MAX, vec![0; 300])),
            Request::Change(Change::Delete(9)),
            Request::Wait { seq: 5, timeout_ms: 0 },
        ];
        let replies = [
            Reply::Registered { role: Role::Backup, checkpointed: 4 },
            Reply::Accepted { seq: 8 },
            Reply::Error("not master".into()),
            Reply::Waited { ok: false, checkpointed: 3 },
            Reply::State { begin: true, entries: 10 },
            Reply::State { begin: false, entries: 10 },
            Reply::Record(Change::Set(1, b"v".to_vec())),
            Reply::Record(Change::Delete(2)),
            Reply::Role(Role::Master),
        ];
        let mut f = Framer::default();
        let mut all = Vec::new();
        for r in &reqs {
            r.encode(&mut all);
        }
        // Fed a byte at a time: whole messages come out in order.
        let mut got = Vec::new();
        for b in &all {
            f.push(std::slice::from_ref(b));
            while let Some(m) = f.next_message().unwrap() {
                got.push(Request::decode(m).unwrap());
            }
        }
        assert_eq!(got, reqs);
        for r in &replies {
            let mut b = Vec::new();
            r.encode(&mut b);
            assert_eq!(&Reply::decode(&b[4..]).unwrap(), r);
        }
        assert_eq!(Request::decode(&[0x7F]), Err(ProtoError::UnknownOp(0x7F)));
        assert_eq!(Request::decode(&[WAIT, 1, 2]), Err(ProtoError::Malformed("seq")));
        assert_eq!(
            Request::decode(&[DELETE, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
            Err(ProtoError::Malformed("trailing bytes"))
        );
        let mut f = Framer::default();
        f.push(&(MAX_MESSAGE as u32 + 1).to_le_bytes());
        assert_eq!(f.next_message(), Err(ProtoError::TooLong(MAX_MESSAGE + 1)));
    }
}
