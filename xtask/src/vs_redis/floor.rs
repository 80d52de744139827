//! The physical floor of each path, measured in the same run and with the
//! same placement as the systems: what the sockets alone cost, with no
//! work done.
//!
//! - The bulk's floor: the same records (length, key, value) copied through
//!   a Unix stream socket from a thread on the master's CPU to one on the
//!   backup's.
//! - An acknowledged write's floor: a bare ping-pong through the four hops
//!   of one (client -> master -> backup -> master -> client) over the socket
//!   kinds msm uses (a Unix stream socket from the client, Unix datagrams on
//!   the backplane), a thread per part pinned as that part. Threads, not
//!   processes: a floor may only be lower than what it bounds.

use std::io::{Read, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};

use super::placement::{Part, Placement};
use super::{Shape, Writes, value};

/// Bytes of the client's request, the backplane frame, its acknowledgement
/// and the reply: about what msm sends for one 100-byte change.
const REQUEST: usize = 124;
const FRAME: usize = 160;
const ACK: usize = 48;
const REPLY: usize = 24;

/// The raw copy of the bulk's bytes.
pub(crate) fn raw_copy(shape: &Shape, place: &Placement) -> Result<Duration> {
    let record = 4 + 8 + shape.value;
    let mut records = Vec::with_capacity(shape.records as usize * record);
    for i in 0..shape.records {
        records.extend_from_slice(&((8 + shape.value) as u32).to_le_bytes());
        records.extend_from_slice(&i.to_le_bytes());
        records.extend_from_slice(&value(i, shape.value));
    }
    let want = records.len() as u64;
    let (mut a, mut b) = UnixStream::pair()?;
    let reader_place = place.clone();
    place.pin_here(Part::Master)?;
    let start = Instant::now();
    let reader = std::thread::spawn(move || -> Result<u64> {
        reader_place.pin_here(Part::Backup)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0u64;
        while got < want {
            let n = b.read(&mut buf)?;
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        Ok(got)
    });
    for chunk in records.chunks(1 << 20) {
        a.write_all(chunk)?;
    }
    drop(a);
    let got = reader.join().map_err(|_| anyhow!("the copy's reader panicked"))??;
    let took = start.elapsed();
    place.unpin_here()?;
    if got != want {
        bail!("raw copy: {got} of {want} bytes arrived");
    }
    Ok(took)
}

/// `writes` bare four-hop round trips, each timed.
pub(crate) fn four_hops(writes: u64, place: &Placement) -> Result<Writes> {
    let (client, mut master_in) = UnixStream::pair()?;
    let (master_bp, backup_bp) = UnixDatagram::pair()?;
    let backup_place = place.clone();
    let backup = std::thread::spawn(move || -> Result<()> {
        backup_place.pin_here(Part::Backup)?;
        let mut frame = [0u8; FRAME];
        let ack = [1u8; ACK];
        loop {
            match backup_bp.recv(&mut frame)? {
                0 => return Ok(()), // the master's "done"
                _ => backup_bp.send(&ack)?,
            };
        }
    });
    let master_place = place.clone();
    let master = std::thread::spawn(move || -> Result<()> {
        master_place.pin_here(Part::Master)?;
        let mut request = [0u8; REQUEST];
        let frame = [2u8; FRAME];
        let mut ack = [0u8; ACK];
        let reply = [3u8; REPLY];
        loop {
            if let Err(e) = master_in.read_exact(&mut request) {
                master_bp.send(&[])?;
                return if e.kind() == std::io::ErrorKind::UnexpectedEof { Ok(()) } else { Err(e.into()) };
            }
            master_bp.send(&frame)?;
            master_bp.recv(&mut ack)?;
            master_in.write_all(&reply)?;
        }
    });
    place.pin_here(Part::Client)?;
    let mut client = client;
    let request = [4u8; REQUEST];
    let mut reply = [0u8; REPLY];
    let mut lat = Vec::with_capacity(writes as usize);
    let t = Instant::now();
    for _ in 0..writes {
        let s = Instant::now();
        client.write_all(&request)?;
        client.read_exact(&mut reply)?;
        lat.push(s.elapsed());
    }
    let total = t.elapsed();
    drop(client);
    place.unpin_here()?;
    master.join().map_err(|_| anyhow!("the floor's master panicked"))??;
    backup.join().map_err(|_| anyhow!("the floor's backup panicked"))??;
    Ok(Writes::of(&mut lat, writes, total))
}
