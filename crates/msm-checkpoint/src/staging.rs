//! The active configuration as a backup (or standby) stages it: a bulk's
//! chunks collect into a copy while the running configuration stays as it
//! is (a takeover mid-bulk runs the old one whole), changes that arrive
//! during the bulk wait behind it, and at its end the copy with those
//! changes appended becomes the configuration. Every host does this the
//! same way, so it is written once; the buffers are the host's (heapless
//! on an MCU, `Vec` with the `alloc` feature).

use crate::host::HostError;

/// A growable byte buffer a host stages into.
pub trait StagingBuffer {
    /// Empty it.
    fn clear(&mut self);
    /// Append `bytes`; `HostError::Full` when they do not fit.
    fn push(&mut self, bytes: &[u8]) -> Result<(), HostError>;
    /// What it holds.
    fn bytes(&self) -> &[u8];
}

impl<const N: usize> StagingBuffer for heapless::Vec<u8, N> {
    fn clear(&mut self) {
        heapless::Vec::clear(self);
    }
    fn push(&mut self, bytes: &[u8]) -> Result<(), HostError> {
        self.extend_from_slice(bytes).map_err(|_| HostError::Full)
    }
    fn bytes(&self) -> &[u8] {
        self
    }
}

#[cfg(feature = "alloc")]
impl StagingBuffer for alloc::vec::Vec<u8> {
    fn clear(&mut self) {
        alloc::vec::Vec::clear(self);
    }
    fn push(&mut self, bytes: &[u8]) -> Result<(), HostError> {
        self.extend_from_slice(bytes);
        Ok(())
    }
    fn bytes(&self) -> &[u8] {
        self
    }
}

/// The staging of the active configuration: the bulk's copy `C`, and the
/// changes `P` that arrived during it.
#[derive(Debug, Default)]
pub struct ConfigStaging<C, P = C> {
    copy: C,
    pending: P,
    active: bool,
}

impl<C, P> ConfigStaging<C, P> {
    /// Staging into these (empty) buffers; `const`, for a board's statics.
    pub const fn new(copy: C, pending: P) -> Self {
        ConfigStaging { copy, pending, active: false }
    }
}

impl<C: StagingBuffer, P: StagingBuffer> ConfigStaging<C, P> {
    /// A bulk begins (`Host::bulk_begin`): nothing staged yet.
    pub fn begin(&mut self) {
        self.copy.clear();
        self.pending.clear();
        self.active = true;
    }

    /// A bulk chunk; refused when no bulk is in progress.
    pub fn bulk(&mut self, chunk: &[u8]) -> Result<(), HostError> {
        if !self.active {
            return Err(HostError::BadRecord);
        }
        self.copy.push(chunk)
    }

    /// A change (one configuration line): `Ok(true)` when it waits behind
    /// the bulk in progress, `Ok(false)` when there is none and the host
    /// applies it now.
    pub fn change(&mut self, line: &[u8]) -> Result<bool, HostError> {
        if !self.active {
            return Ok(false);
        }
        self.pending.push(line).map(|()| true)
    }

    /// The bulk is whole (`Host::bulk_end`): the copy with the changes that
    /// came during it becomes `running` (swapped, so no large value is
    /// moved through the stack); the old configuration is dropped.
    pub fn finish_into(&mut self, running: &mut C) -> Result<(), HostError> {
        if !core::mem::take(&mut self.active) {
            return Err(HostError::BadRecord);
        }
        self.copy.push(self.pending.bytes())?;
        self.pending.clear();
        core::mem::swap(running, &mut self.copy);
        self.copy.clear();
        Ok(())
    }

    /// The bulk will not complete (`Host::bulk_abort`).
    pub fn abort(&mut self) {
        self.active = false;
        self.copy.clear();
        self.pending.clear();
    }

    /// A bulk is in progress.
    pub fn active(&self) -> bool {
        self.active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Staging = ConfigStaging<heapless::Vec<u8, 64>, heapless::Vec<u8, 16>>;

    #[test]
    fn changes_during_a_bulk_follow_it() {
        let mut running: heapless::Vec<u8, 64> = heapless::Vec::new();
        let mut s = Staging::default();
        assert_eq!(s.change(b"a\n"), Ok(false), "no bulk: applied now");
        assert_eq!(s.bulk(b"x"), Err(HostError::BadRecord));
        s.begin();
        s.bulk(b"vlan 1\n").unwrap();
        assert_eq!(s.change(b"vlan 2\n"), Ok(true));
        s.bulk(b"vlan 3\n").unwrap();
        s.finish_into(&mut running).unwrap();
        assert_eq!(&running[..], b"vlan 1\nvlan 3\nvlan 2\n");
        assert_eq!(s.finish_into(&mut running), Err(HostError::BadRecord), "no bulk to finish");
        assert_eq!(s.change(b"b\n"), Ok(false));
    }

    #[test]
    fn an_abort_keeps_the_running_configuration_and_too_much_is_full() {
        let mut running: heapless::Vec<u8, 64> = heapless::Vec::from_slice(b"old\n").unwrap();
        let mut s = Staging::default();
        s.begin();
        s.bulk(b"new\n").unwrap();
        s.abort();
        assert!(!s.active());
        assert_eq!(&running[..], b"old\n");
        s.begin();
        assert_eq!(s.change(&[b'x'; 17]), Err(HostError::Full));
        assert_eq!(s.bulk(&[b'x'; 65]), Err(HostError::Full));
        running.clear();
    }
}
