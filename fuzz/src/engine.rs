//! The checkpoint engine under fuzzing: one `Node` with a fixed host, on a
//! virtual clock stepped a millisecond at a time, fed frames from the input.
//!
//! Input of `node_frame`: byte 0, bit 0 picks the node under test (slot A or
//! B); then records `[dt: u8] [len: u16 LE] [len & 0x7FFF bytes]`: `dt`
//! milliseconds pass, then the bytes arrive as a frame, made valid with
//! [`seal`] unless bit 15 of `len` is set (then as they are). An unsealed
//! empty record only lets time pass. A short last record delivers what there is.
//!
//! The engine only accepts frames that pass its CRC and its tag, so only
//! [`seal`] and [`unseal`] know how a frame is protected: when the wire
//! format changes, they and the seeds (`cargo run --example seeds`) change.

use core::time::Duration;

use msm_checkpoint::wire;
use msm_checkpoint::{
    AppRegistry, Config, Host, HostError, ItemKind, Key, Node, Slot, Stream, config_chunks, read_config_chunk,
};
use msm_time::Instant;

/// Small capacities: the fuzzer finds the limits sooner.
pub type FuzzNode = Node<4, 8, 4096>;
/// Largest frame a fuzzed node sends.
pub const MAX_FRAME: usize = 512;
/// Heartbeat interval: the tail of a run covers a few.
pub const HEARTBEAT: Duration = Duration::from_millis(10);
/// Milliseconds run after the last record: timers the frames set run out.
pub const TAIL_MS: u32 = 50;
/// Length bit: deliver the bytes as they are, without [`seal`].
pub const RAW: u16 = 0x8000;

/// The saved and active configuration of the fixed host.
const CONFIG: &[u8] = b"create vlan corp tag 100\nconfigure vlan corp add ports 1-8\n";
/// Records of each application on the fixed host.
const RECORDS: u64 = 5;

/// The chassis key of the fuzzed node: `seal` tags with it, so the fuzzer
/// reaches everything behind the tag (the replay windows, the body).
pub const KEY: Key = Key::new([0x46; 32]);

/// Make frame contents (everything before the tag) a frame the engine
/// accepts: key id, tag under [`KEY`] and CRC-32C, keeping the contents'
/// own incarnation and counter so the fuzzer drives the replay windows.
/// Contents shorter than the header get only the trailer's room and CRC.
pub fn seal(content: &[u8]) -> Vec<u8> {
    let mut f = content.to_vec();
    f.resize(content.len() + wire::TRAILER_LEN, 0);
    if content.len() >= wire::HEADER_LEN {
        let mut inc = [0u8; 4];
        inc.copy_from_slice(&content[5..9]);
        let mut counter = [0u8; 8];
        counter.copy_from_slice(&content[9..17]);
        wire::seal(&mut f, Some(&KEY), u32::from_le_bytes(inc), u64::from_le_bytes(counter));
    } else {
        let n = f.len() - wire::CRC_LEN;
        let crc = crate::CRC32C.checksum(&f[..n]);
        f[n..].copy_from_slice(&crc.to_le_bytes());
    }
    f
}

/// The contents of a frame [`seal`] made: it without its tag and CRC.
pub fn unseal(frame: &[u8]) -> &[u8] {
    &frame[..frame.len().saturating_sub(wire::TRAILER_LEN)]
}

/// A board with a fixed state as master and counters as backup: the
/// targets test the engine, and a bounded host keeps runs fast.
#[derive(Debug, Default)]
pub struct FuzzHost {
    pub applied: u64,
    pub bulks: u64,
}

impl Host for FuzzHost {
    fn bulk_start(&mut self, stream: Stream) -> u64 {
        match stream {
            Stream::SavedConfig | Stream::ActiveConfig => config_chunks(CONFIG.len()),
            Stream::App(_) => RECORDS,
        }
    }

    fn bulk_read(
        &mut self,
        stream: Stream,
        cursor: &mut u64,
        buf: &mut [u8],
    ) -> Result<Option<usize>, HostError> {
        match stream {
            Stream::SavedConfig | Stream::ActiveConfig => read_config_chunk(CONFIG, cursor, buf),
            Stream::App(app) => {
                if *cursor >= RECORDS {
                    return Ok(None);
                }
                let record = [b'k', app.index() as u8, *cursor as u8, b'=', b'v'];
                buf.get_mut(..record.len()).ok_or(HostError::RecordTooLarge)?.copy_from_slice(&record);
                *cursor += 1;
                Ok(Some(record.len()))
            }
        }
    }

    fn bulk_begin(&mut self, _: Stream, _: u64) -> Result<(), HostError> {
        self.bulks += 1;
        Ok(())
    }

    fn apply(&mut self, _: Stream, _: ItemKind, item: &[u8]) -> Result<(), HostError> {
        // Refuse something now and then, as a full table would.
        if item.first() == Some(&0xFF) {
            return Err(HostError::Full);
        }
        self.applied += 1;
        Ok(())
    }

    fn bulk_end(&mut self, _: Stream) -> Result<(), HostError> {
        Ok(())
    }

    fn bulk_abort(&mut self, _: Stream) {}
}

/// One node, its host and its clock.
#[derive(Debug)]
pub struct Driver {
    pub node: Box<FuzzNode>,
    pub host: FuzzHost,
    pub now: Instant,
}

impl Driver {
    /// A node in `slot` (A has the better priority), booting at time 0.
    pub fn new(slot: Slot) -> Driver {
        let mut apps = AppRegistry::new();
        // Cannot fail: two names, room for four, no cycle.
        let _ = apps.register("vlan", 1, &[]);
        let _ = apps.register("fdb", 1, &["vlan"]);
        let cfg = Config {
            priority: slot.raw(),
            heartbeat_interval: HEARTBEAT,
            max_frame: MAX_FRAME,
            ..Config::new(slot)
        };
        let mut node = match FuzzNode::new(cfg, apps, Instant::ZERO) {
            Ok(n) => Box::new(n),
            Err(e) => panic!("the fuzz node's settings are refused: {e:?}"),
        };
        node.set_key(&KEY);
        Driver { node, host: FuzzHost::default(), now: Instant::ZERO }
    }

    /// A frame arrives now; refusals are the engine's to count.
    pub fn deliver(&mut self, frame: &[u8]) {
        let _ = self.node.handle_frame(self.now, frame, &mut self.host);
    }

    /// This millisecond's own work (timers due, frames out, events), then the
    /// clock moves on. `out` sees every frame sent.
    pub fn tick(&mut self, out: &mut dyn FnMut(&[u8])) {
        if self.node.poll_timeout().is_some_and(|t| t <= self.now) {
            self.node.handle_timeout(self.now, &mut self.host);
        }
        let mut buf = [0u8; MAX_FRAME];
        while let Some(n) = self.node.poll_transmit(self.now, &mut self.host, &mut buf) {
            assert!(n <= MAX_FRAME, "frame of {n} bytes, max_frame {MAX_FRAME}");
            out(&buf[..n]);
        }
        while self.node.poll_event().is_some() {}
        self.now = self.now + Duration::from_millis(1);
    }
}

/// One record of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub dt: u8,
    pub sealed: bool,
    pub bytes: &'a [u8],
}

/// The records of `input` (after byte 0).
pub fn records(mut input: &[u8]) -> impl Iterator<Item = Record<'_>> {
    core::iter::from_fn(move || {
        let (&dt, rest) = input.split_first()?;
        let (len, rest) = match rest {
            [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]), rest),
            _ => (0, &[][..]),
        };
        let n = usize::from(len & !RAW).min(rest.len());
        let (bytes, rest) = rest.split_at(n);
        input = rest;
        Some(Record { dt, sealed: len & RAW == 0, bytes })
    })
}

/// Append a record: `dt` ms pass (split into several when longer than 255),
/// then `frame` arrives (its contents, sealed again on replay).
pub fn push_record(out: &mut Vec<u8>, mut dt: u64, frame: &[u8]) {
    while dt > 255 {
        out.push(255);
        out.extend_from_slice(&RAW.to_le_bytes());
        dt -= 255;
    }
    let content = unseal(frame);
    out.push(dt as u8);
    out.extend_from_slice(&(content.len() as u16).to_le_bytes());
    out.extend_from_slice(content);
}

/// The whole `node_frame` run: what the fuzz target does with `data`.
pub fn run(data: &[u8]) -> Driver {
    let Some((&first, rest)) = data.split_first() else { return Driver::new(Slot::A) };
    let mut d = Driver::new(if first & 1 == 0 { Slot::A } else { Slot::B });
    for r in records(rest) {
        for _ in 0..r.dt {
            d.tick(&mut |_| {});
        }
        match (r.sealed, r.bytes.is_empty()) {
            (true, _) => d.deliver(&seal(r.bytes)),
            (false, false) => d.deliver(r.bytes),
            (false, true) => {} // time only
        }
    }
    for _ in 0..TAIL_MS {
        d.tick(&mut |_| {});
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_long_gaps_split() {
        let mut v = vec![1];
        push_record(&mut v, 3, &seal(b"abc"));
        push_record(&mut v, 600, &seal(b"de"));
        let r: Vec<_> = records(&v[1..]).collect();
        assert_eq!(r.len(), 4);
        assert_eq!(r[0], Record { dt: 3, sealed: true, bytes: b"abc" });
        assert_eq!(r[1], Record { dt: 255, sealed: false, bytes: b"" });
        assert_eq!(r[3], Record { dt: 90, sealed: true, bytes: b"de" });
    }
}
