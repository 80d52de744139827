//! Logs on UART0: one line per event, `[  seconds.millis] text`. The line
//! format is what `tests/qemu_interop.rs` and the expected-output check read.

use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::uart::Console;

/// Microseconds of the last timestamp (so the panic handler can stamp too).
static NOW_US: AtomicU64 = AtomicU64::new(0);

pub fn set_now(us: u64) {
    NOW_US.store(us, Ordering::Relaxed);
}

pub fn line(args: core::fmt::Arguments<'_>) {
    let us = NOW_US.load(Ordering::Relaxed);
    let mut c = Console;
    let _ = write!(c, "[{:>6}.{:03}] ", us / 1_000_000, (us / 1000) % 1000);
    let _ = c.write_fmt(args);
    let _ = c.write_str("\n");
}

/// `log!("fmt", args..)`: one line on the console.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => { $crate::log::line(format_args!($($arg)*)) };
}
