//! Logs on UART0: one line per event, `[  seconds.millis] text`. The line
//! format is what `tests/qemu_interop.rs` and the expected-output check read.

use core::fmt::Write;

use crate::uart::Console;

pub fn line(args: core::fmt::Arguments<'_>) {
    let ms = crate::clock::now().as_millis();
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
