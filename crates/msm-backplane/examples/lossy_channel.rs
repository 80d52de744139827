//! The link stack of msm-backplane on a bad wire: a reliable `ChannelLink`
//! over a `FaultInjector` (drops, duplicates, reorders, corrupts, delays)
//! over an in-memory frame pipe, on a virtual clock. Module A sends 500
//! numbered messages; module B must read each exactly once, in order.
//!
//! ```sh
//! cargo run -p msm-backplane --example lossy_channel
//! ```
//!
//! On a board the pipe is a real link (`UartLink`, or a `msm-backplane-linux`
//! driver) and the injector is left out. The example asserts its outcome, so
//! a regression makes it exit non-zero.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use msm_backplane::channel::{ChannelConfig, ChannelLink};
use msm_backplane::{Error as _, ErrorKind, ErrorType, Link};
use msm_backplane::{FaultConfig, FaultInjector, Rate};
use msm_time::Instant;

const FRAME: usize = 256;
type Frames = Rc<RefCell<VecDeque<Vec<u8>>>>;

/// One end of an in-memory frame pipe (what a wire between the modules would be).
struct MemLink {
    tx: Frames,
    rx: Frames,
}

fn mem_pair() -> (MemLink, MemLink) {
    let (a, b): (Frames, Frames) = (Rc::default(), Rc::default());
    (MemLink { tx: a.clone(), rx: b.clone() }, MemLink { tx: b, rx: a })
}

impl ErrorType for MemLink {
    type Error = ErrorKind;
}

impl Link for MemLink {
    fn max_frame(&self) -> usize {
        FRAME
    }
    fn send(&mut self, frame: &[u8]) -> Result<(), ErrorKind> {
        self.tx.borrow_mut().push_back(frame.to_vec());
        Ok(())
    }
    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, ErrorKind> {
        let Some(f) = self.rx.borrow_mut().pop_front() else { return Ok(None) };
        buf.get_mut(..f.len()).ok_or(ErrorKind::FrameTooLarge)?.copy_from_slice(&f);
        Ok(Some(f.len()))
    }
}

/// A module's end: reliable channel (window 8) over the fault injector over the pipe.
type End = ChannelLink<FaultInjector<MemLink, 32, FRAME>, 8, FRAME>;

fn main() {
    let faults = FaultConfig {
        drop: Rate::percent(10),
        duplicate: Rate::percent(5),
        reorder: Rate::percent(10),
        corrupt: Rate::percent(5),
        latency: Duration::from_micros(500),
        jitter: Duration::from_micros(200),
        ..FaultConfig::NONE
    };
    let (wire_a, wire_b) = mem_pair();
    let mut now = Instant::ZERO;
    let mut a: End = ChannelLink::new(FaultInjector::new(wire_a, faults, 1), ChannelConfig::new(1), now);
    let mut b: End = ChannelLink::new(FaultInjector::new(wire_b, faults, 2), ChannelConfig::new(2), now);
    println!(
        "A sends 500 messages to B over a wire that drops 10 %, duplicates 5 %, reorders 10 %, corrupts 5 %"
    );

    const COUNT: u32 = 500;
    let (mut sent, mut received) = (0u32, 0u32);
    let mut buf = [0u8; FRAME];
    while received < COUNT {
        assert!(now < Instant::from_millis(60_000), "stuck after {received} messages");
        // A queues what its window takes.
        while sent < COUNT {
            let msg = format!("change {sent}: fdb 00:04:96:00:{:02x}:{:02x} port 7", sent / 256, sent % 256);
            match a.send(msg.as_bytes()) {
                Ok(()) => sent += 1,
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::WouldBlock, "A: {e:?}"); // the window is full
                    break;
                }
            }
        }
        // Both modules run their loop: the wire's clock, then the channel.
        for end in [&mut a, &mut b] {
            end.link_mut().set_now(now);
            end.poll(now).expect("the peer is alive");
        }
        while let Some(n) = b.recv(&mut buf).expect("the peer is alive") {
            let want = format!("change {received}: ");
            assert!(buf[..n].starts_with(want.as_bytes()), "message {received} out of order or duplicated");
            received += 1;
        }
        now = now + Duration::from_micros(250);
    }

    let (fa, fb) = (a.link().stats(), b.link().stats());
    let wire_dropped = fa.dropped + fb.dropped;
    let wire_faults = wire_dropped
        + fa.duplicated
        + fb.duplicated
        + fa.reordered
        + fb.reordered
        + fa.corrupted
        + fb.corrupted;
    let retransmits = a.channel().stats().retransmits;
    println!("B read all {received} messages exactly once, in order, after {} ms", now.as_millis());
    println!(
        "the wire: {wire_faults} faults ({wire_dropped} dropped, {} duplicated, {} reordered, {} corrupted); A retransmitted {retransmits}",
        fa.duplicated + fb.duplicated,
        fa.reordered + fb.reordered,
        fa.corrupted + fb.corrupted
    );
    assert!(wire_dropped > 0 && retransmits > 0, "the faults were exercised");
}
