//! The serial driver's line settings, read back from the kernel: raw 8N1, no
//! flow control, the baud rate, non-blocking, exclusive; on ptys, the same
//! kernel ttys the Linux node opens when QEMU's UARTs are ptys.
// One `ioctl(TCGETS2)` to read the line speed as the kernel keeps it.
#![allow(clippy::unwrap_used, clippy::panic, unsafe_code)]

use std::fs::File;
use std::io;

use msm_backplane::Link;
use msm_backplane_linux::{SerialLink, StreamLink, open_serial, pty_pair};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::libc;
use nix::pty::{PtyMaster, grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::termios::{ControlFlags, InputFlags, LocalFlags, OutputFlags, tcgetattr};

const MAX: usize = 256;

nix::ioctl_read_bad!(tcgets2, libc::TCGETS2, libc::termios2);

/// The (input, output) speed of `file`'s line in baud.
fn speed(file: &File) -> (u32, u32) {
    use std::os::fd::AsRawFd;
    let mut t = std::mem::MaybeUninit::<libc::termios2>::zeroed();
    // SAFETY: TCGETS2 fills one `termios2`; `file` is open for the call.
    unsafe { tcgets2(file.as_raw_fd(), t.as_mut_ptr()) }.unwrap();
    // SAFETY: zero-initialised, then filled by the kernel; every field is an integer.
    let t = unsafe { t.assume_init() };
    (t.c_ispeed, t.c_ospeed)
}

/// Raw 8N1, no flow control, non-blocking, at `baud`.
fn assert_line(name: &str, link: &SerialLink, baud: u32) {
    let file = link.get_ref();
    let t = tcgetattr(file).unwrap();
    let c = t.control_flags;
    assert!(c & ControlFlags::CSIZE == ControlFlags::CS8, "{name}: not 8 data bits: {c:?}");
    assert!(c.contains(ControlFlags::CREAD | ControlFlags::CLOCAL), "{name}: {c:?}");
    for off in [ControlFlags::PARENB, ControlFlags::CSTOPB, ControlFlags::CRTSCTS] {
        assert!(!c.intersects(off), "{name}: {off:?} set: {c:?}");
    }
    let i = t.input_flags;
    let i_off =
        InputFlags::IXON | InputFlags::IXOFF | InputFlags::ICRNL | InputFlags::ISTRIP | InputFlags::INPCK;
    assert!(!i.intersects(i_off), "{name}: input processing left on: {i:?}");
    assert!(!t.output_flags.contains(OutputFlags::OPOST), "{name}: output processing left on");
    let l = t.local_flags;
    let l_off = LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG | LocalFlags::IEXTEN;
    assert!(!l.intersects(l_off), "{name}: not raw: {l:?}");
    assert_eq!(speed(file), (baud, baud), "{name}: line speed");
    let fl = OFlag::from_bits_truncate(fcntl(file, FcntlArg::F_GETFL).unwrap());
    assert!(fl.contains(OFlag::O_NONBLOCK), "{name}: blocking descriptor");
}

/// A pty master and its slave's path, like QEMU's `-serial pty`.
fn qemu_like_pty() -> (PtyMaster, String) {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let path = ptsname_r(&master).unwrap();
    (master, path)
}

#[test]
fn a_pty_pair_slave_is_raw_8n1() {
    let (mut master, mut slave) = pty_pair(MAX).unwrap();
    assert_line("pty_pair slave", &slave, 115_200);
    // Non-blocking: nothing to read is `None` at once, on both ends.
    let mut buf = [0u8; MAX];
    assert_eq!(slave.recv(&mut buf).unwrap(), None);
    assert_eq!(master.recv(&mut buf).unwrap(), None);
}

#[test]
fn open_serial_sets_the_line_and_any_baud_rate() {
    let (_master, path) = qemu_like_pty();
    let link = open_serial(&path, 115_200, MAX).unwrap();
    assert_line(&path, &link, 115_200);
    drop(link);
    // A rate without a B constant: termios2 carries it (BOTHER).
    let (_master, path) = qemu_like_pty();
    let link = open_serial(&path, 250_000, MAX).unwrap();
    assert_line(&path, &link, 250_000);
}

#[test]
fn open_serial_holds_the_device_exclusively() {
    let (master, path) = qemu_like_pty();
    let _link = open_serial(&path, 115_200, MAX).unwrap();
    // Refused even to root (who passes TIOCEXCL): the exclusive flock.
    let e = open_serial(&path, 115_200, MAX).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ResourceBusy, "{e}");
    assert!(e.to_string().contains(&path), "{e}");
    // The master side is a plain pty, framed the same way.
    StreamLink::new(master, MAX).unwrap();
}

#[test]
fn open_serial_errors_name_the_device() {
    let e = open_serial("/dev/no-such-tty", 115_200, MAX).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("/dev/no-such-tty"), "{e}");
    let (_master, path) = qemu_like_pty();
    let e = open_serial(&path, 0, MAX).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
}
