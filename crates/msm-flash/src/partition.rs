//! Partitions: a typed view of a range of one flash device, itself a NOR flash.
//!
//! ```
//! use core::cell::RefCell;
//! use msm_flash::{Partition, SharedFlash, mock::MockFlash};
//! let device = RefCell::new(MockFlash::<_, _, 4, 4096>::new_erased([0u8; 16 * 4096], [0u32; 16]).unwrap());
//! // Two partitions of one device, each usable on its own.
//! let kv = Partition::new(SharedFlash::new(&device), "kv", 0, 2 * 4096).unwrap();
//! let primary = Partition::new(SharedFlash::new(&device), "primary", 2 * 4096, 14 * 4096).unwrap();
//! # let _ = (kv, primary);
//! ```

use core::cell::RefCell;

use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};

use crate::durable::Durable;
use crate::error::{PartitionError, SharedError};

/// The bytes `[start, start + size)` of a device, addressed from 0. Every access outside the
/// partition is refused with [`PartitionError::OutOfRange`] before it reaches the device.
#[derive(Debug)]
pub struct Partition<F> {
    flash: F,
    name: &'static str,
    start: u32,
    size: u32,
}

impl<F: NorFlash> Partition<F> {
    /// A view of `[start, start + size)` of `flash`. `start` and `size` must be multiples of the
    /// device's erase size and the range must lie inside the device.
    pub fn new(
        flash: F,
        name: &'static str,
        start: u32,
        size: u32,
    ) -> Result<Self, PartitionError<F::Error>> {
        let erase_size = F::ERASE_SIZE as u32;
        if erase_size == 0
            || !start.is_multiple_of(erase_size)
            || !size.is_multiple_of(erase_size)
            || size == 0
        {
            return Err(PartitionError::Misaligned { partition: name, start, size, erase_size });
        }
        let end = u64::from(start) + u64::from(size);
        let capacity = flash.capacity() as u64;
        if end > capacity {
            return Err(PartitionError::BeyondDevice { partition: name, end, capacity });
        }
        Ok(Self { flash, name, start, size })
    }
}

impl<F> Partition<F> {
    /// Name given at creation (appears in errors).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Start on the device.
    pub fn start(&self) -> u32 {
        self.start
    }

    /// Size in bytes.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The device below.
    pub fn inner(&mut self) -> &mut F {
        &mut self.flash
    }

    /// Gives the device back.
    pub fn into_inner(self) -> F {
        self.flash
    }

    /// Device offset of `[offset, offset + len)`, or `OutOfRange`.
    fn map<E>(&self, offset: u32, len: usize) -> Result<u32, PartitionError<E>> {
        let out = || PartitionError::OutOfRange {
            partition: self.name,
            offset,
            len: u32::try_from(len).unwrap_or(u32::MAX),
            size: self.size,
        };
        let len = u32::try_from(len).map_err(|_| out())?;
        let end = offset.checked_add(len).ok_or_else(out)?;
        if end > self.size {
            return Err(out());
        }
        Ok(self.start + offset)
    }
}

impl<F: ErrorType> ErrorType for Partition<F> {
    type Error = PartitionError<F::Error>;
}

impl<F: ReadNorFlash> ReadNorFlash for Partition<F> {
    const READ_SIZE: usize = F::READ_SIZE;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let at = self.map(offset, bytes.len())?;
        if F::READ_SIZE > 1
            && (!(offset as usize).is_multiple_of(F::READ_SIZE) || !bytes.len().is_multiple_of(F::READ_SIZE))
        {
            return Err(PartitionError::NotAligned { partition: self.name, offset });
        }
        self.flash.read(at, bytes).map_err(PartitionError::Device)
    }

    fn capacity(&self) -> usize {
        self.size as usize
    }
}

impl<F: NorFlash> NorFlash for Partition<F> {
    const WRITE_SIZE: usize = F::WRITE_SIZE;
    const ERASE_SIZE: usize = F::ERASE_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        let len = to.checked_sub(from).ok_or(PartitionError::OutOfRange {
            partition: self.name,
            offset: from,
            len: 0,
            size: self.size,
        })?;
        let at = self.map(from, len as usize)?;
        if !(from as usize).is_multiple_of(F::ERASE_SIZE) || !(len as usize).is_multiple_of(F::ERASE_SIZE) {
            return Err(PartitionError::NotAligned { partition: self.name, offset: from });
        }
        self.flash.erase(at, at + len).map_err(PartitionError::Device)
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let at = self.map(offset, bytes.len())?;
        if !(offset as usize).is_multiple_of(F::WRITE_SIZE) || !bytes.len().is_multiple_of(F::WRITE_SIZE) {
            return Err(PartitionError::NotAligned { partition: self.name, offset });
        }
        self.flash.write(at, bytes).map_err(PartitionError::Device)
    }
}

impl<F: Durable> Durable for Partition<F> {
    fn sync(&mut self) -> Result<(), Self::Error> {
        self.flash.sync().map_err(PartitionError::Device)
    }
}

/// One device shared by several users (typically several [`Partition`]s) in one thread. Each
/// operation borrows the device for its duration only; a re-entrant use gets
/// [`SharedError::Busy`] instead of a panic.
#[derive(Debug)]
pub struct SharedFlash<'a, F> {
    flash: &'a RefCell<F>,
}

impl<'a, F> SharedFlash<'a, F> {
    /// A handle on `flash`; make as many as needed.
    pub fn new(flash: &'a RefCell<F>) -> Self {
        Self { flash }
    }

    fn with<T, E>(&self, op: impl FnOnce(&mut F) -> Result<T, E>) -> Result<T, SharedError<E>> {
        let mut flash = self.flash.try_borrow_mut().map_err(|_| SharedError::Busy)?;
        op(&mut flash).map_err(SharedError::Device)
    }
}

impl<F: ErrorType> ErrorType for SharedFlash<'_, F> {
    type Error = SharedError<F::Error>;
}

impl<F: ReadNorFlash> ReadNorFlash for SharedFlash<'_, F> {
    const READ_SIZE: usize = F::READ_SIZE;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.with(|f| f.read(offset, bytes))
    }

    fn capacity(&self) -> usize {
        // A borrowed device (only possible re-entrantly) reports 0: every access then fails.
        self.flash.try_borrow().map(|f| f.capacity()).unwrap_or(0)
    }
}

impl<F: NorFlash> NorFlash for SharedFlash<'_, F> {
    const WRITE_SIZE: usize = F::WRITE_SIZE;
    const ERASE_SIZE: usize = F::ERASE_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.with(|f| f.erase(from, to))
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.with(|f| f.write(offset, bytes))
    }
}

impl<F: Durable> Durable for SharedFlash<'_, F> {
    fn sync(&mut self) -> Result<(), Self::Error> {
        self.with(|f| f.sync())
    }
}
