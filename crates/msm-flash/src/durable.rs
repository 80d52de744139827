//! Commit points: the hook a store calls when what it has programmed must survive a power loss.
//!
//! Raw NOR flash is durable as soon as a program or erase returns, so [`Durable::sync`] does
//! nothing there. A file-backed image (msm-flash-linux's `FileFlash`) goes through the page
//! cache, so its `sync` is an `fsync`. [`ConfigStore`](crate::ConfigStore) calls it twice per
//! save: after the data and trailer (so they are on the medium before the commit marker) and after
//! the commit marker (so a `commit` that returned is durable). [`NodeSettings`](crate::NodeSettings)
//! calls it after every change.

use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};

/// A flash that can make everything programmed so far durable.
pub trait Durable: NorFlash {
    /// Returns when every completed `write` and `erase` survives a power loss.
    fn sync(&mut self) -> Result<(), Self::Error>;
}

impl<T: Durable> Durable for &mut T {
    fn sync(&mut self) -> Result<(), Self::Error> {
        T::sync(self)
    }
}

/// Wraps a flash whose writes are durable when they return (raw NOR: internal flash, SPI NOR), so
/// it can be used where a [`Durable`] flash is required. Needed for types from other crates, which
/// cannot implement [`Durable`] themselves.
#[derive(Debug)]
pub struct NoSync<F>(pub F);

impl<F: ErrorType> ErrorType for NoSync<F> {
    type Error = F::Error;
}

impl<F: ReadNorFlash> ReadNorFlash for NoSync<F> {
    const READ_SIZE: usize = F::READ_SIZE;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.0.read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

impl<F: NorFlash> NorFlash for NoSync<F> {
    const WRITE_SIZE: usize = F::WRITE_SIZE;
    const ERASE_SIZE: usize = F::ERASE_SIZE;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.0.erase(from, to)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.0.write(offset, bytes)
    }
}

impl<F: NorFlash> Durable for NoSync<F> {
    fn sync(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}
