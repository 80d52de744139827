//! # msm-checkpoint
//!
//! The checkpoint engine of a management module (MSM) in a chassis switch,
//! after ExtremeWare XOS "Replicating Data Between Nodes": the master relays
//! its saved and active configuration to the backup, then each application's
//! run-time state in a bulk checkpoint (in dependency order), then every later
//! change as a dynamic checkpoint, so the backup can take over without loss.
//!
//! `no_std`, no allocation, sans-IO: see [`Node`]. Capacities are const
//! generics; application state lives behind the board's [`Host`].
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![allow(missing_docs)] // field-level docs where they say something; see docs/architecture.md

#[macro_use]
mod fmt;

pub mod app;
mod backlog;
pub mod error;
pub mod event;
pub mod host;
mod node;
pub mod role;
pub mod status;
mod stream;
pub mod time;
pub mod wire;

pub use app::{AppRegistry, RegisterError};
pub use error::{ConfigError, Error, FailoverError, FrameError};
pub use event::{ConfigChoice, Event, RebulkReason};
pub use host::{AppId, CONFIG_CHUNK, Host, HostError, ItemKind, Stream, config_chunks, read_config_chunk};
pub use node::{Config, Node};
pub use role::{MAX_NODES, Role, Slot, Term};
pub use status::{StreamStatus, SwitchStatus, SyncState};
pub use stream::{Counters, Mismatch, Phase};
pub use time::Instant;
