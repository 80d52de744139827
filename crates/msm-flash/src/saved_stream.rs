//! The saved-configuration stream: what a master sends of its flash to its
//! backup and standbys (the checkpoint engine's `SavedConfig` stream). Both
//! saved configurations travel, with the name of the one selected, so a
//! module that takes over boots what the master would have booted. The
//! layout is written in `docs/flash-format.md` ("The saved-configuration
//! stream"); every board reads and writes it here.
//!
//! ```text
//! header (8 bytes):  magic "MSCF" | version 2 | selected (ConfigName code) | files (bit 0 primary, bit 1 secondary) | 0
//! then each file present, primary first:  length u32 LE | 0 u32 | the file's bytes
//! ```
//!
//! Version 1 (the stream before both files travelled) was one file: its
//! length as a u64 LE, then its bytes, for the receiver's selected file. It is
//! still read: its first four bytes, a length below 2^32, cannot be the magic.

use core::fmt;

use crate::config_store::ConfigName;

/// The stream's first bytes.
pub const MAGIC: [u8; 4] = *b"MSCF";
/// The version this build writes.
pub const VERSION: u8 = 2;
/// Bytes of the stream header, and of each file's header.
pub const HEADER_LEN: usize = 8;

// Offsets in the stream header.
const AT_VERSION: usize = 4;
const AT_SELECTED: usize = 5;
const AT_FILES: usize = 6;
const AT_RESERVED: usize = 7;

/// The two files, in stream order.
const FILES: [ConfigName; 2] = [ConfigName::Primary, ConfigName::Secondary];

fn bit(w: ConfigName) -> u8 {
    match w {
        ConfigName::Primary => 1,
        ConfigName::Secondary => 2,
    }
}

fn code(w: ConfigName) -> u8 {
    w as u8
}

/// Why a saved-configuration stream cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StreamError {
    /// A version this build does not know.
    Version(u8),
    /// The selected file's code names no file.
    Selected(u8),
    /// Unknown bits in the file set, or a reserved byte not 0.
    Reserved,
    /// The stream ended inside a header or a file.
    Truncated,
    /// Bytes after the last file.
    Trailing,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Version(v) => {
                write!(f, "saved-configuration stream version {v} (this build reads 1 and 2)")
            }
            StreamError::Selected(c) => {
                write!(f, "saved-configuration stream selects file code {c}, which names no file")
            }
            StreamError::Reserved => {
                f.write_str("saved-configuration stream: unknown file bits or reserved bytes set")
            }
            StreamError::Truncated => {
                f.write_str("saved-configuration stream ends inside a header or a file")
            }
            StreamError::Trailing => f.write_str("saved-configuration stream has bytes after its last file"),
        }
    }
}

/// The stream header: which file is selected, which files follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub selected: ConfigName,
    /// Bit 0: primary.cfg follows; bit 1: secondary.cfg.
    pub files: u8,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..AT_VERSION].copy_from_slice(&MAGIC);
        h[AT_VERSION] = VERSION;
        h[AT_SELECTED] = code(self.selected);
        h[AT_FILES] = self.files;
        h
    }

    /// A version 2 header; `Ok(None)`: not one (no magic: a version 1 stream).
    pub fn decode(h: &[u8; HEADER_LEN]) -> Result<Option<Self>, StreamError> {
        if h[..AT_VERSION] != MAGIC {
            return Ok(None);
        }
        if h[AT_VERSION] != VERSION {
            return Err(StreamError::Version(h[AT_VERSION]));
        }
        let selected = ConfigName::from_code(h[AT_SELECTED]).ok_or(StreamError::Selected(h[AT_SELECTED]))?;
        if h[AT_FILES] & !3 != 0 || h[AT_RESERVED] != 0 {
            return Err(StreamError::Reserved);
        }
        Ok(Some(Header { selected, files: h[AT_FILES] }))
    }

    /// Whether file `w` follows.
    pub fn has(&self, w: ConfigName) -> bool {
        self.files & bit(w) != 0
    }
}

/// A file's header: its length.
fn file_header(len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&len.to_le_bytes());
    h
}

/// A file's length from its header.
fn decode_file_header(h: &[u8; HEADER_LEN]) -> Result<u32, StreamError> {
    if h[4..] != [0; 4] {
        return Err(StreamError::Reserved);
    }
    Ok(u32::from_le_bytes([h[0], h[1], h[2], h[3]]))
}

/// The sender's view: where a byte offset of the stream falls, given the
/// selected file and each file's length (`None`: absent). Reads stop at
/// the end of each header and file, so every header goes out whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub selected: ConfigName,
    /// Lengths of primary.cfg and secondary.cfg.
    pub lens: [Option<u32>; 2],
}

/// What is at an offset of the stream (see [`Layout::at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// The stream header, or a file's, whole.
    Header([u8; HEADER_LEN]),
    /// Bytes of file `0` from offset `1`, at most `2` of them.
    File(ConfigName, u32, u32),
    /// The end of the stream.
    End,
}

impl Layout {
    fn header(&self) -> Header {
        let files = FILES.iter().zip(self.lens).filter(|(_, l)| l.is_some()).fold(0, |m, (w, _)| m | bit(*w));
        Header { selected: self.selected, files }
    }

    /// Bytes of the whole stream.
    pub fn len(&self) -> u64 {
        HEADER_LEN as u64 + self.lens.iter().flatten().map(|&l| HEADER_LEN as u64 + u64::from(l)).sum::<u64>()
    }

    /// Never: a stream has at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// What is at `offset`; `None` inside a header (reads stop only at
    /// the ends of headers and files).
    pub fn at(&self, offset: u64) -> Option<Segment> {
        if offset == 0 {
            return Some(Segment::Header(self.header().encode()));
        }
        let mut start = HEADER_LEN as u64;
        for (w, len) in FILES.iter().zip(self.lens) {
            let Some(len) = len else { continue };
            if offset == start {
                return Some(Segment::Header(file_header(len)));
            }
            let body = start + HEADER_LEN as u64;
            let end = body + u64::from(len);
            if offset >= body && offset < end {
                let at = (offset - body) as u32;
                return Some(Segment::File(*w, at, len - at));
            }
            if offset < body {
                return None;
            }
            start = end;
        }
        (offset == start).then_some(Segment::End)
    }
}

/// What the receiver gets from [`Parser::push`], in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// The stream header (for a version 1 stream: `None`, the receiver's
    /// selected file follows).
    Header(Option<Header>),
    /// File `0` of `1` bytes starts (`None`: version 1, the receiver's selected file).
    FileStart(Option<ConfigName>, u32),
    /// The next bytes of the file started.
    Data(&'a [u8]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting the stream header.
    Head,
    /// Collecting the header of the next file present after index `0`.
    FileHead(usize),
    /// Inside file `0` (index; 2 for version 1), `1` bytes to go.
    Body(usize, u32),
    /// Every file read.
    Done,
}

/// The receiver's parser: takes the stream in pieces of any size (a peer
/// may cut it anywhere) and hands out headers and data as they complete.
#[derive(Debug, Clone)]
pub struct Parser {
    state: State,
    head: Option<Header>,
    buf: [u8; HEADER_LEN],
    n: usize,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl Parser {
    pub const fn new() -> Self {
        Parser { state: State::Head, head: None, buf: [0; HEADER_LEN], n: 0 }
    }

    /// The next file present at index `from` or after: its index.
    fn next_file(&self, from: usize) -> Option<usize> {
        let h = self.head?;
        (from..FILES.len()).find(|&i| h.has(FILES[i]))
    }

    /// Parse `chunk`, handing each piece to `sink`. A sink error stops the
    /// parse and is returned as `Err(Ok(e))`; a stream error as `Err(Err(e))`.
    pub fn push<'a, E>(
        &mut self,
        mut chunk: &'a [u8],
        mut sink: impl FnMut(Piece<'a>) -> Result<(), E>,
    ) -> Result<(), Result<E, StreamError>> {
        while !chunk.is_empty() {
            match self.state {
                State::Head | State::FileHead(_) => {
                    let take = (HEADER_LEN - self.n).min(chunk.len());
                    self.buf[self.n..self.n + take].copy_from_slice(&chunk[..take]);
                    self.n += take;
                    chunk = &chunk[take..];
                    if self.n < HEADER_LEN {
                        continue;
                    }
                    self.n = 0;
                    self.header_complete(&mut sink)?;
                }
                State::Body(i, left) => {
                    let take = (left as usize).min(chunk.len());
                    sink(Piece::Data(&chunk[..take])).map_err(Ok)?;
                    chunk = &chunk[take..];
                    let left = left - take as u32;
                    self.state = match (left, i) {
                        (0, 2) => State::Done,
                        (0, i) => self.after(i),
                        (l, i) => State::Body(i, l),
                    };
                }
                State::Done => return Err(Err(StreamError::Trailing)),
            }
        }
        Ok(())
    }

    fn after(&self, i: usize) -> State {
        match self.next_file(i + 1) {
            Some(_) => State::FileHead(i + 1),
            None => State::Done,
        }
    }

    fn header_complete<'a, E>(
        &mut self,
        sink: &mut impl FnMut(Piece<'a>) -> Result<(), E>,
    ) -> Result<(), Result<E, StreamError>> {
        match self.state {
            State::Head => match Header::decode(&self.buf).map_err(Err)? {
                Some(h) => {
                    self.head = Some(h);
                    sink(Piece::Header(Some(h))).map_err(Ok)?;
                    self.state = match self.next_file(0) {
                        Some(_) => State::FileHead(0),
                        None => State::Done,
                    };
                }
                None => {
                    // Version 1: a u64 length, then the file.
                    let len = u32::try_from(u64::from_le_bytes(self.buf))
                        .map_err(|_| Err(StreamError::Reserved))?;
                    sink(Piece::Header(None)).map_err(Ok)?;
                    sink(Piece::FileStart(None, len)).map_err(Ok)?;
                    self.state = if len == 0 { State::Done } else { State::Body(2, len) };
                }
            },
            State::FileHead(from) => {
                let i = self.next_file(from).ok_or(Err(StreamError::Trailing))?;
                let len = decode_file_header(&self.buf).map_err(Err)?;
                sink(Piece::FileStart(Some(FILES[i]), len)).map_err(Ok)?;
                self.state = if len == 0 { self.after(i) } else { State::Body(i, len) };
            }
            State::Body(..) | State::Done => {}
        }
        Ok(())
    }

    /// The stream ended: was it whole? (An empty stream is: the master
    /// had nothing to send.)
    pub fn finish(&self) -> Result<(), StreamError> {
        match self.state {
            State::Done => Ok(()),
            State::Head if self.n == 0 => Ok(()),
            _ => Err(StreamError::Truncated),
        }
    }
}

/// In a whole stream held in memory: the bytes of file `w` (`None`: the
/// selected one), or `Ok(None)` if the stream does not carry it. A version
/// 1 stream carries only the selected file; an empty stream nothing.
pub fn file_in(stream: &[u8], w: Option<ConfigName>) -> Result<Option<&[u8]>, StreamError> {
    if stream.is_empty() {
        return Ok(None);
    }
    let header = |at: usize| -> Result<[u8; HEADER_LEN], StreamError> {
        let b = stream.get(at..at + HEADER_LEN).ok_or(StreamError::Truncated)?;
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(b);
        Ok(h)
    };
    let body = |at: usize, len: u64| -> Result<&[u8], StreamError> {
        let end = usize::try_from(len).ok().and_then(|l| at.checked_add(l)).ok_or(StreamError::Truncated)?;
        stream.get(at..end).ok_or(StreamError::Truncated)
    };
    let head = header(0)?;
    let Some(h) = Header::decode(&head)? else {
        let file = body(HEADER_LEN, u64::from_le_bytes(head))?;
        if HEADER_LEN + file.len() != stream.len() {
            return Err(StreamError::Trailing);
        }
        return Ok(w.is_none().then_some(file));
    };
    let want = w.unwrap_or(h.selected);
    let (mut at, mut found) = (HEADER_LEN, None);
    for f in FILES.into_iter().filter(|&f| h.has(f)) {
        let file = body(at + HEADER_LEN, u64::from(decode_file_header(&header(at)?)?))?;
        if f == want {
            found = Some(file);
        }
        at += HEADER_LEN + file.len();
    }
    if at != stream.len() {
        return Err(StreamError::Trailing);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    /// The stream `layout` describes, with `files` as the contents, read
    /// as a sender does (segment by segment, `step` bytes at most).
    fn send(layout: &Layout, files: [&[u8]; 2], step: u32) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            match layout.at(out.len() as u64).expect("reads stop only at segment ends") {
                Segment::Header(h) => out.extend_from_slice(&h),
                Segment::File(w, at, left) => {
                    let f = files[w as usize - 1];
                    let n = left.min(step);
                    out.extend_from_slice(&f[at as usize..(at + n) as usize]);
                }
                Segment::End => return out,
            }
        }
    }

    /// Each file received: its name (`None`: version 1) and bytes.
    type Files = Vec<(Option<ConfigName>, Vec<u8>)>;

    /// Parse `stream` cut every `cut` bytes: (header, each file with its bytes).
    fn receive(stream: &[u8], cut: usize) -> (Option<Header>, Files) {
        let mut p = Parser::new();
        let (mut head, mut files) = (None, Files::new());
        for c in stream.chunks(cut) {
            p.push(c, |piece| -> Result<(), ()> {
                match piece {
                    Piece::Header(h) => head = h,
                    Piece::FileStart(w, len) => files.push((w, Vec::with_capacity(len as usize))),
                    Piece::Data(d) => files.last_mut().unwrap().1.extend_from_slice(d),
                }
                Ok(())
            })
            .unwrap();
        }
        p.finish().unwrap();
        (head, files)
    }

    #[test]
    fn both_files_and_the_selection_survive_any_cut() {
        let (p, s) = (&b"create vlan a\n"[..], &b"create vlan b tag 2\nsave\n"[..]);
        for (lens, selected) in [
            ([Some(p.len() as u32), Some(s.len() as u32)], ConfigName::Secondary),
            ([None, Some(s.len() as u32)], ConfigName::Primary),
            ([Some(p.len() as u32), None], ConfigName::Primary),
            ([Some(0), None], ConfigName::Primary),
            ([None, None], ConfigName::Secondary),
        ] {
            let layout = Layout { selected, lens };
            let stream = send(&layout, [p, s], 5);
            assert_eq!(stream.len() as u64, layout.len());
            for cut in [1, 3, 8, 100] {
                let (head, files) = receive(&stream, cut);
                let head = head.unwrap();
                assert_eq!(head.selected, selected);
                let want: Vec<_> = FILES
                    .iter()
                    .zip(lens)
                    .zip([p, s])
                    .filter_map(|((w, l), b)| l.map(|l| (Some(*w), b[..l as usize].to_vec())))
                    .collect();
                assert_eq!(files, want, "{lens:?} cut {cut}");
            }
            let sel = file_in(&stream, None).unwrap();
            let expect = match selected {
                ConfigName::Primary => lens[0].map(|l| &p[..l as usize]),
                ConfigName::Secondary => lens[1].map(|_| s),
            };
            assert_eq!(sel, expect);
        }
    }

    #[test]
    fn a_version_1_stream_is_the_selected_file() {
        let mut v1 = 14u64.to_le_bytes().to_vec();
        v1.extend_from_slice(b"create vlan a\n");
        let (head, files) = receive(&v1, 3);
        assert_eq!(head, None);
        assert_eq!(files, [(None, b"create vlan a\n".to_vec())]);
        assert_eq!(file_in(&v1, None).unwrap(), Some(&b"create vlan a\n"[..]));
        assert_eq!(file_in(&[], None).unwrap(), None, "an empty stream carries nothing");
    }

    #[test]
    fn bad_streams_are_named() {
        let good = send(&Layout { selected: ConfigName::Primary, lens: [Some(4), None] }, [b"abcd", b""], 8);
        let mut v3 = good.clone();
        v3[AT_VERSION] = 3;
        let mut sel = good.clone();
        sel[AT_SELECTED] = 9;
        let mut bits = good.clone();
        bits[AT_FILES] = 4;
        let mut trailing = good.clone();
        trailing.push(0);
        for (s, e) in [
            (&v3[..], StreamError::Version(3)),
            (&sel[..], StreamError::Selected(9)),
            (&bits[..], StreamError::Reserved),
            (&trailing[..], StreamError::Trailing),
            (&good[..good.len() - 1], StreamError::Truncated),
            (&good[..5], StreamError::Truncated),
        ] {
            assert_eq!(file_in(s, None), Err(e), "{s:?}");
        }
        let layout = Layout { selected: ConfigName::Primary, lens: [Some(4), None] };
        assert_eq!(layout.at(3), None, "inside the header");
        assert_eq!(layout.at(layout.len()), Some(Segment::End));
    }
}
