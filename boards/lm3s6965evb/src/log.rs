//! Logs on UART0: one line per event, `[  seconds.millis] text`. The line
//! format is what `tests/qemu_interop.rs` and the expected-output check read.

use core::fmt::Write;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::uart::Console;

/// Milliseconds of the last timestamp (so the panic handler can stamp too).
static NOW_MS: AtomicU32 = AtomicU32::new(0);

pub fn set_now(us: u64) {
    NOW_MS.store((us / 1000) as u32, Ordering::Relaxed);
}

pub fn line(args: core::fmt::Arguments<'_>) {
    let ms = NOW_MS.load(Ordering::Relaxed);
    let mut c = Console;
    let _ = write!(c, "[{:>6}.{:03}] ", ms / 1000, ms % 1000);
    let _ = c.write_fmt(args);
    let _ = c.write_str("\n");
}

/// `log!("fmt", args..)`: one line on the console.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => { $crate::log::line(format_args!($($arg)*)) };
}
