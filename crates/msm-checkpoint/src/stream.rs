//! Per-stream state: what the master has sent and had acknowledged, and what
//! the backup has applied. A node keeps both halves: roles change.

use crate::host::HostError;
use crate::wire::CrcImpl;

mod rx;
mod tx;

pub(crate) use rx::Rx;
pub(crate) use tx::Tx;

/// Config-stream and application digests: CRC-64/XZ over every item in order.
static CRC64: crc::Crc<u64, CrcImpl> = crc::Crc::<u64, CrcImpl>::new(&crc::CRC_64_XZ);

/// A running digest over a stream's items.
#[derive(Clone)]
pub(crate) struct Digest(crc::Digest<'static, u64, CrcImpl>);

impl Digest {
    pub(crate) fn new() -> Self {
        Digest(CRC64.digest())
    }
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    /// The digest so far; the running state continues.
    pub(crate) fn value(&self) -> u64 {
        self.0.clone().finalize()
    }
    /// A digest that continues from `value`, a running digest's
    /// [`value`](Self::value): a standby that received a stream's state as a
    /// snapshot goes on from the master's digest at that point.
    pub(crate) fn resume(value: u64) -> Self {
        // CRC-64/XZ is reflected in and out: the running register is the
        // finalized value without the final XOR; `digest_with_initial` takes
        // it bit-reversed, as it takes an algorithm's `init`.
        Digest(CRC64.digest_with_initial((value ^ crc::CRC_64_XZ.xorout).reverse_bits()))
    }
}

impl core::fmt::Debug for Digest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Digest({:016x})", self.value())
    }
}

/// Where a stream is on the master, in the order it goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Phase {
    /// No backup session.
    Off,
    /// Waiting for the streams it depends on to finish their bulk.
    Waiting,
    /// Bulk records are being read from the host and sent.
    Bulk,
    /// The last bulk record is sent; waiting for its acknowledgement.
    Ending,
    /// Bulk done; every change goes out as a dynamic checkpoint.
    Synced,
    /// The backup cannot take this stream (schema or protocol mismatch).
    Blocked,
    /// The host failed to produce a record; not in sync until re-bulked.
    Failed,
}

impl Phase {
    /// The status word `show checkpoint-data` prints.
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Off => "OFF",
            Phase::Waiting => "WAIT",
            Phase::Bulk | Phase::Ending => "BULK",
            Phase::Synced => "OK",
            Phase::Blocked => "MISMATCH",
            Phase::Failed => "ERROR",
        }
    }
}

/// Why a stream stopped: it waits for a new bulk transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Failure {
    /// The board's [`Host`](crate::Host) refused or failed an operation.
    Host(HostError),
    /// Backup: the bulk's digest differs from the master's (a record lost
    /// or altered on the way, or a host that stored something else).
    Digest,
    /// Master: the backup could not take the stream and asked for a new bulk.
    BackupRefused,
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Failure::Host(e) => write!(f, "host: {e}"),
            Failure::Digest => f.write_str("digest differs from the master's"),
            Failure::BackupRefused => f.write_str("the backup refused it and asked for a new bulk"),
        }
    }
}

/// The backup's schema for a stream differs from the master's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Mismatch {
    /// This node's schema version of the stream.
    pub ours: u16,
    /// `None`: the backup has no application of that name.
    pub theirs: Option<u16>,
}

/// Frame and error counters of one stream, for `show checkpoint-data`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Runs and acknowledgements sent for the stream.
    pub tx: u64,
    /// Runs and acknowledgements received for the stream.
    pub rx: u64,
    /// Records refused or failed.
    pub errors: u64,
    /// Bulk transfers begun: sent (master) or received (backup). A stream
    /// resumed or continued across a switchover adds none.
    pub bulks: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct StreamState {
    pub tx: Tx,
    pub rx: Rx,
    pub counters: Counters,
}

impl StreamState {
    pub(crate) fn new() -> Self {
        StreamState { tx: Tx::new(), rx: Rx::new(), counters: Counters::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_digest_continues_as_the_running_one() {
        let mut whole = Digest::new();
        whole.update(b"vlan 10 name red\n");
        let resumed_from = whole.value();
        whole.update(b"vlan 20 name blue\n");
        let mut resumed = Digest::resume(resumed_from);
        assert_eq!(resumed.value(), resumed_from);
        resumed.update(b"vlan 20 name blue\n");
        assert_eq!(resumed.value(), whole.value());
        assert_eq!(Digest::resume(Digest::new().value()).value(), Digest::new().value());
    }
}
