// The guest program of `aarch64::smoke` (not a module of the xtask: the smoke
// flow writes it out as the `main.rs` of a throwaway crate and builds it for
// aarch64). std only, so it builds offline.
//
// Usage: a64-smoke MTD_DEVICE[,MTD_DEVICE...] LISTEN_PORT HOST:PORT...
// 1. MEMGETINFO on each MTD_DEVICE: type, flags, size, erase and write size.
// 2. On the first one, the boot counter in the last erase block: read it
//    (erased = 0), erase the block, write counter+1, read it back
//    ("smoke: boot counter N written").
// 3. On each, program semantics on the block before the last: erase, write
//    0xF0, write 0x0F over it, read: 0x00 is NOR (AND), 0x0F is overwrite.
// 4. UDP from LISTEN_PORT: a hello to each HOST:PORT, waiting for each reply;
//    then "smoke: waiting on udp" and one echo per HOST:PORT of datagrams
//    received on LISTEN_PORT (through the host's port forward).
// Prints "smoke: done" and exits 0, or "smoke: FAILED ..." and exits 1.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::Duration;

unsafe extern "C" {
    fn ioctl(fd: i32, request: u64, ...) -> i32;
}

// _IOR('M', 1, struct mtd_info_user) and _IOW('M', 2, struct erase_info_user).
const MEMGETINFO: u64 = 0x8020_4d01;
const MEMERASE: u64 = 0x4008_4d02;

#[repr(C)]
#[derive(Default, Debug)]
struct MtdInfoUser {
    kind: u8,
    flags: u32,
    size: u32,
    erasesize: u32,
    writesize: u32,
    oobsize: u32,
    padding: u64,
}

#[repr(C)]
struct EraseInfoUser {
    start: u32,
    length: u32,
}

const MAGIC: &[u8; 4] = b"MSMB";

fn main() {
    if let Err(e) = run() {
        println!("smoke: FAILED {e}");
        std::process::exit(1);
    }
    println!("smoke: done");
}

fn run() -> Result<(), String> {
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    println!("smoke: start, {} s after boot", uptime.split_whitespace().next().unwrap_or("?"));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [devices, listen, peers @ ..] = args.as_slice() else {
        return Err("usage: a64-smoke MTD_DEVICE[,MTD_DEVICE...] LISTEN_PORT HOST:PORT...".into());
    };
    for (i, device) in devices.split(',').enumerate() {
        flash(device, i == 0)?;
    }
    udp(listen, peers)
}

fn flash(device: &str, count_boots: bool) -> Result<(), String> {
    let mut f =
        OpenOptions::new().read(true).write(true).open(device).map_err(|e| format!("open {device}: {e}"))?;
    let mut info = MtdInfoUser::default();
    // SAFETY: MEMGETINFO fills a struct mtd_info_user, which MtdInfoUser mirrors.
    if unsafe { ioctl(f.as_raw_fd(), MEMGETINFO, &mut info as *mut MtdInfoUser) } != 0 {
        return Err(format!("MEMGETINFO on {device}: {}", std::io::Error::last_os_error()));
    }
    let kind = match info.kind {
        1 => "RAM",
        2 => "ROM",
        3 => "NOR",
        4 => "NAND",
        _ => "other",
    };
    println!(
        "smoke: {device} type {} ({kind}) flags {:#x} size {} erasesize {} writesize {}",
        info.kind, info.flags, info.size, info.erasesize, info.writesize
    );
    let block = info.erasesize;
    let last = info.size - block;
    if count_boots {
        boot_counter(&mut f, last, block)?;
    }
    semantics(&mut f, device, last - block, block)
}

fn boot_counter(f: &mut File, last: u32, block: u32) -> Result<(), String> {
    let mut old = [0u8; 8];
    read_at(f, last, &mut old)?;
    let counter = if old[..4] == *MAGIC { u32::from_le_bytes([old[4], old[5], old[6], old[7]]) } else { 0 };
    println!("smoke: previous boot counter {counter} (block at {last:#x} starts {old:02x?})");
    erase(f, last, block)?;
    let mut new = [0u8; 8];
    new[..4].copy_from_slice(MAGIC);
    new[4..].copy_from_slice(&(counter + 1).to_le_bytes());
    write_at(f, last, &new)?;
    let mut back = [0u8; 8];
    read_at(f, last, &mut back)?;
    if back != new {
        return Err(format!("read back {back:02x?} after writing {new:02x?}"));
    }
    println!("smoke: boot counter {} written", counter + 1);
    Ok(())
}

fn semantics(f: &mut File, device: &str, test: u32, block: u32) -> Result<(), String> {
    erase(f, test, block)?;
    let mut erased = [0u8; 4];
    read_at(f, test, &mut erased)?;
    write_at(f, test, &[0xF0; 4])?;
    let second = write_at(f, test, &[0x0F; 4]);
    let mut got = [0u8; 4];
    read_at(f, test, &mut got)?;
    let semantics = match got[0] {
        0x00 => "AND (NOR)",
        0x0F => "overwrite",
        _ => "unexpected",
    };
    println!(
        "smoke: {device}: erased reads {erased:02x?}; 0xF0 then 0x0F ({}) reads {got:02x?}: {semantics}",
        if second.is_ok() { "second write ok" } else { "second write refused" }
    );
    Ok(())
}

fn erase(f: &File, start: u32, length: u32) -> Result<(), String> {
    let e = EraseInfoUser { start, length };
    // SAFETY: MEMERASE reads a struct erase_info_user, which EraseInfoUser mirrors.
    if unsafe { ioctl(f.as_raw_fd(), MEMERASE, &e as *const EraseInfoUser) } != 0 {
        return Err(format!("MEMERASE at {start:#x}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn read_at(f: &mut File, at: u32, buf: &mut [u8]) -> Result<(), String> {
    f.seek(SeekFrom::Start(at.into()))
        .and_then(|_| f.read_exact(buf))
        .map_err(|e| format!("read at {at:#x}: {e}"))
}

fn write_at(f: &mut File, at: u32, buf: &[u8]) -> Result<(), String> {
    f.seek(SeekFrom::Start(at.into()))
        .and_then(|_| f.write_all(buf))
        .map_err(|e| format!("write at {at:#x}: {e}"))
}

fn udp(listen: &str, peers: &[String]) -> Result<(), String> {
    let sock = UdpSocket::bind(format!("0.0.0.0:{listen}")).map_err(|e| format!("bind :{listen}: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_secs(20))).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    for (k, peer) in peers.iter().enumerate() {
        let hello = format!("hello {k} from the guest");
        sock.send_to(hello.as_bytes(), peer.as_str()).map_err(|e| format!("send to {peer}: {e}"))?;
        let (n, from) = sock.recv_from(&mut buf).map_err(|e| format!("no reply from {peer}: {e}"))?;
        println!(
            "smoke: path {k}: sent to {peer}, reply from {from}: {:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    println!("smoke: waiting on udp :{listen}");
    for _ in peers {
        let (n, from) = sock.recv_from(&mut buf).map_err(|e| format!("no datagram on :{listen}: {e}"))?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        println!("smoke: received {text:?} from {from}, echoing");
        sock.send_to(format!("echo {text}").as_bytes(), from).map_err(|e| format!("echo to {from}: {e}"))?;
    }
    Ok(())
}
