//! Writing a frame: the header and body, tail items, the trailer's room
//! ([`FrameWriter`]); who writes it ([`Origin`]) and for whom ([`Outgoing`]).

use super::*;

/// Writes one frame into a caller's buffer: header and body, then tail
/// items, then [`FrameWriter::finish`] reserves the trailer; [`seal`] fills it.
#[derive(Debug)]
pub struct FrameWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> FrameWriter<'b> {
    /// Start a frame from slot `from` to `to` in `term` carrying `body`, in
    /// [`PROTOCOL_VERSION`].
    pub fn new(buf: &'b mut [u8], from: u8, to: u8, term: u64, body: &Body) -> Result<Self, WireError> {
        Self::with_version(buf, PROTOCOL_VERSION, from, to, term, body)
    }

    /// As [`new`](Self::new), in protocol `version` (the caller writes what
    /// that version's body and tail hold).
    pub fn with_version(
        buf: &'b mut [u8],
        version: u8,
        from: u8,
        to: u8,
        term: u64,
        body: &Body,
    ) -> Result<Self, WireError> {
        if buf.len() < MIN_FRAME {
            return Err(WireError::BufferTooSmall);
        }
        buf[..4].copy_from_slice(&[MAGIC, version, from, to]);
        buf[4..HEADER_LEN].fill(0);
        let mut w = FrameWriter { buf, len: HEADER_LEN };
        w.push(&(term, body))?;
        Ok(w)
    }

    /// A heartbeat from slot `from` in `term`, in [`PROTOCOL_VERSION`], with
    /// its [`HeartbeatExt`] saying release 0 (for tools and tests; a node
    /// writes its own).
    pub fn heartbeat(buf: &'b mut [u8], from: u8, term: u64, hb: &Heartbeat) -> Result<Self, WireError> {
        let mut w = Self::new(buf, from, BROADCAST, term, &Body::Heartbeat(*hb))?;
        w.push(&HeartbeatExt { newest: PROTOCOL_VERSION, release: 0 })?;
        Ok(w)
    }

    /// Append one tail item; on `BufferTooSmall` the frame is unchanged.
    pub fn push<T: Serialize + ?Sized>(&mut self, item: &T) -> Result<(), WireError> {
        let end = self.buf.len() - TRAILER_LEN;
        let room = self.buf.get_mut(self.len..end).ok_or(WireError::BufferTooSmall)?;
        let used = postcard::to_slice(item, room).map_err(|_| WireError::BufferTooSmall)?.len();
        self.len += used;
        Ok(())
    }

    /// Bytes still free for tail items.
    pub fn remaining(&self) -> usize {
        self.buf.len() - TRAILER_LEN - self.len
    }

    /// Reserve the trailer; returns the frame length. The frame is not
    /// valid until [`seal`]ed.
    pub fn finish(self) -> usize {
        self.len + TRAILER_LEN
    }
}

/// Who writes a frame: this node's slot, the term it holds, its boot count.
/// The node seals what they write.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    pub me: Slot,
    pub term: Term,
    pub incarnation: u32,
    /// The protocol version the node speaks now.
    pub version: u8,
}

impl Origin {
    /// A frame from us to `to` (a slot or [`BROADCAST`]); `None` when `buf`
    /// cannot hold even the header.
    pub(crate) fn writer<'b>(&self, buf: &'b mut [u8], to: u8, body: &Body) -> Option<FrameWriter<'b>> {
        FrameWriter::with_version(buf, self.version, self.me.raw(), to, self.term.raw(), body).ok()
    }
}

/// A frame about to be written: who writes it, the slot it is for, and the
/// buffer it goes into (what a part of the node is handed to send one).
#[derive(Debug)]
pub(crate) struct Outgoing<'b> {
    pub from: Origin,
    pub to: u8,
    pub buf: &'b mut [u8],
}

impl<'b> Outgoing<'b> {
    /// Start the frame with `body`; `None` when the buffer cannot hold even the header.
    pub(crate) fn writer(self, body: &Body) -> Option<FrameWriter<'b>> {
        self.from.writer(self.buf, self.to, body)
    }
}
