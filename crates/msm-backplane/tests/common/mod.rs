//! In-memory links for the tests: a frame pipe ([`MemLink`]) and a byte pipe
//! with `embedded-io` traits and optional byte faults ([`BytePipe`]).
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use msm_backplane::{ErrorKind, ErrorType, Link};
use rand::Rng;
use rand_pcg::Pcg64Mcg;

type Frames = Rc<RefCell<VecDeque<Vec<u8>>>>;

/// One end of an in-memory frame pipe: FIFO, lossless, bounded.
#[derive(Debug)]
pub struct MemLink {
    tx: Frames,
    rx: Frames,
    max: usize,
    capacity: usize,
}

/// Two connected ends carrying frames of up to `max` bytes, at most
/// `capacity` frames queued per direction.
pub fn mem_pair(max: usize, capacity: usize) -> (MemLink, MemLink) {
    let a: Frames = Rc::default();
    let b: Frames = Rc::default();
    (MemLink { tx: a.clone(), rx: b.clone(), max, capacity }, MemLink { tx: b, rx: a, max, capacity })
}

impl ErrorType for MemLink {
    type Error = ErrorKind;
}

impl Link for MemLink {
    fn max_frame(&self) -> usize {
        self.max
    }
    fn send(&mut self, frame: &[u8]) -> Result<(), ErrorKind> {
        if frame.len() > self.max {
            return Err(ErrorKind::FrameTooLarge);
        }
        let mut q = self.tx.borrow_mut();
        if q.len() >= self.capacity {
            return Err(ErrorKind::WouldBlock);
        }
        q.push_back(frame.to_vec());
        Ok(())
    }
    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, ErrorKind> {
        let Some(f) = self.rx.borrow_mut().pop_front() else { return Ok(None) };
        buf.get_mut(..f.len()).ok_or(ErrorKind::FrameTooLarge)?.copy_from_slice(&f);
        Ok(Some(f.len()))
    }
}

type Bytes = Rc<RefCell<VecDeque<u8>>>;

/// Byte faults on the wire of a [`BytePipe`], per byte.
#[derive(Debug, Clone, Copy, Default)]
pub struct ByteFaults {
    pub drop: f64,
    pub flip: f64,
    pub insert: f64,
}

/// One end of an in-memory byte stream, like a UART: a transmit FIFO of
/// `fifo` bytes (writes beyond it must wait for `write_ready`).
#[derive(Debug)]
pub struct BytePipe {
    tx: Bytes,
    rx: Bytes,
    fifo: usize,
    faults: ByteFaults,
    rng: Pcg64Mcg,
}

pub fn byte_pair(fifo: usize, faults: ByteFaults, seed: u64) -> (BytePipe, BytePipe) {
    let a: Bytes = Rc::default();
    let b: Bytes = Rc::default();
    (
        BytePipe { tx: a.clone(), rx: b.clone(), fifo, faults, rng: Pcg64Mcg::new(u128::from(seed)) },
        BytePipe { tx: b, rx: a, fifo, faults, rng: Pcg64Mcg::new(u128::from(seed) + 1) },
    )
}

impl embedded_io::ErrorType for BytePipe {
    type Error = core::convert::Infallible;
}

impl embedded_io::Write for BytePipe {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        let mut q = self.tx.borrow_mut();
        let n = buf.len().min(self.fifo.saturating_sub(q.len()));
        for &b in &buf[..n] {
            if self.rng.random_bool(self.faults.drop) {
                continue;
            }
            if self.rng.random_bool(self.faults.insert) {
                q.push_back(self.rng.random());
            }
            let b = if self.rng.random_bool(self.faults.flip) {
                b ^ (1 << self.rng.random_range(0..8))
            } else {
                b
            };
            q.push_back(b);
        }
        Ok(n)
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl embedded_io::WriteReady for BytePipe {
    fn write_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(self.tx.borrow().len() < self.fifo)
    }
}

impl embedded_io::Read for BytePipe {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let mut q = self.rx.borrow_mut();
        let n = buf.len().min(q.len());
        for (dst, src) in buf.iter_mut().zip(q.drain(..n)) {
            *dst = src;
        }
        Ok(n)
    }
}

impl embedded_io::ReadReady for BytePipe {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(!self.rx.borrow().is_empty())
    }
}

/// Message `i` of a test stream: its index, then bytes derived from it;
/// 8 to `8 + spread` bytes long.
pub fn message(i: u64, spread: u64) -> Vec<u8> {
    let len = 8 + (i.wrapping_mul(2_654_435_761) % (spread + 1)) as usize;
    let mut m = i.to_le_bytes().to_vec();
    m.extend((0..len - 8).map(|k| (i as usize).wrapping_mul(31).wrapping_add(k * 7) as u8));
    m
}
