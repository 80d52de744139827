//! Fault injection: one seeded model of a faulty link, used everywhere a
//! link is made to misbehave.
//!
//! - [`FaultConfig`] and [`Rate`]: what goes wrong and how often (rates in
//!   parts per million, delays as `Duration`).
//! - [`FaultModel`]: the decision per frame ([`Fate`]: partitioned, dropped,
//!   or delivered at a time, with [`BitFlips`], maybe twice, maybe out of
//!   order), from the config and a seeded PCG32.
//! - [`FaultInjector`]: a [`Link`](crate::Link) wrapper that carries the
//!   model's decisions out on a real link.
//!
//! The simulator (`msm-sim`) runs the same model per directed link in its
//! virtual-time queue, so the injector tests, the socket tests and the seed
//! sweeps all see the same faults.

mod config;
mod flips;
mod injector;
mod model;

pub use config::{FaultConfig, Rate};
pub use flips::BitFlips;
pub use injector::{FaultInjector, FaultStats};
pub use model::{Delivery, Fate, FaultModel};
