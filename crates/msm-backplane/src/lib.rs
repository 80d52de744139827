//! # msm-backplane
//!
//! The backplane between two management modules, below the checkpoint engine:
//!
//! - [`Link`]: the small trait every driver implements and every board hands
//!   to the checkpoint core: send and receive whole frames, never blocking.
//! - [`framing`]: frames over byte streams (UARTs, ptys, stream sockets):
//!   COBS with a CRC-32C trailer and `0x00` delimiters, resynchronising after
//!   garbage or a lost byte.
//! - [`Redundant`]: two or more paths to one peer as one link: heartbeats on
//!   every path, data on the first one alive, moving when it dies.
//! - [`UartLink`]: a link driver over `embedded-io` byte streams (an MCU's UART).
//! - [`FaultModel`]: one seeded fault model (drop, duplicate, corrupt, delay,
//!   reorder, partition) and [`FaultInjector`], a link wrapper that applies
//!   it; the simulator uses the same model.
//!
//! Every type has one public path: the crate root, except the wire format,
//! [`framing`], whose types live in its module beside its constants and
//! functions. (Reliability, ordering and retransmission are the checkpoint
//! engine's, end to end across reconnects and failovers; a reliable channel
//! that stood here was used by no board and went in issue 22.)
//!
//! `no_std`, no allocation, no `unsafe`. Time is an argument (`msm_time::Instant`,
//! shared with the checkpoint core), never read from a clock. See
//! `docs/backplane.md` for the byte layouts and which layer does what.
#![no_std]
#![forbid(unsafe_code)]

#[macro_use]
mod fmt;

mod crc32c;
mod fault;
pub mod framing;
mod link;
mod redundant;
mod uart;

pub use fault::{BitFlips, Delivery, Fate, FaultConfig, FaultInjector, FaultModel, FaultStats, Rate};
pub use link::{Error, ErrorKind, ErrorType, Link};
use msm_time::Instant;
pub use redundant::{FrameClass, PathHealth, PathState, PathStats, Redundant};
pub use uart::{UartError, UartLink};
