//! # msm-backplane
//!
//! The backplane between two management modules, below the checkpoint engine:
//!
//! - [`link`]: the small trait every driver implements and every board hands
//!   to the checkpoint core: send and receive whole frames, never blocking.
//! - [`framing`]: frames over byte streams (UARTs, ptys, stream sockets):
//!   COBS with a CRC-32C trailer and `0x00` delimiters, resynchronising after
//!   garbage or a lost byte.
//! - [`channel`]: a sans-IO reliable, ordered channel (sequence numbers,
//!   cumulative and selective acks, retransmission with backoff, a bounded
//!   window) for links that drop, duplicate, reorder or corrupt frames, and
//!   [`channel::ChannelLink`], which stacks it on any link.
//! - [`uart`]: a link driver over `embedded-io` byte streams (an MCU's UART).
//! - [`fault`]: one seeded fault model (drop, duplicate, corrupt, delay,
//!   reorder, partition) and a link wrapper that applies it; the simulator
//!   uses the same model.
//!
//! `no_std`, no allocation, no `unsafe`. Time is an argument ([`Instant`],
//! the checkpoint core's type), never read from a clock. See
//! `docs/backplane.md` for the byte layouts and which layer does what.
#![no_std]
#![forbid(unsafe_code)]

#[macro_use]
mod fmt;

pub mod channel;
mod crc32c;
pub mod fault;
pub mod framing;
pub mod link;
pub mod uart;

pub use channel::{Channel, ChannelConfig, ChannelError, ChannelLink, LostReason};
pub use fault::{Fate, FaultConfig, FaultInjector, FaultModel, Rate};
pub use framing::{FrameDecoder, FrameReader, FramingCounters};
pub use link::{Error, ErrorKind, ErrorType, Link};
use msm_time::Instant;
pub use uart::UartLink;
