//! # msm-checkpoint
//!
//! The checkpoint engine of a management module (MSM) in a chassis switch,
//! after ExtremeWare XOS "Replicating Data Between Nodes": the master relays
//! its saved and active configuration to the backup, then each application's
//! run-time state in a bulk checkpoint (in dependency order), then every later
//! change as a dynamic checkpoint, so the backup can take over without loss.
//!
//! `no_std`, no allocation, sans-IO: see [`Node`]. Capacities are const
//! generics; application state lives behind the board's [`Host`]. Every
//! public type is reached from the crate root, except the frame format,
//! which is [`wire`].
//!
//! ```
//! use msm_checkpoint::{AppRegistry, Config, Node, Role, Slot};
//! use msm_time::Instant;
//!
//! let mut apps = AppRegistry::<4>::new();
//! let vlan = apps.register("vlan", 1, &[]).unwrap();
//! apps.register("fdb", 1, &["vlan"]).unwrap();
//! let mut node: Node<4, 16, 8192> = Node::new(Config::new(Slot::A), apps, Instant::ZERO).unwrap();
//! assert_eq!(node.role(), Role::Init);
//! // Nothing is heard for the detection interval: the node elects itself.
//! # struct NoState;
//! # impl msm_checkpoint::Host for NoState {
//! #     fn bulk_start(&mut self, _: msm_checkpoint::Stream) -> u64 { 0 }
//! #     fn bulk_read(&mut self, _: msm_checkpoint::Stream, _: &mut u64, _: &mut [u8])
//! #         -> Result<Option<usize>, msm_checkpoint::HostError> { Ok(None) }
//! #     fn bulk_begin(&mut self, _: msm_checkpoint::Stream, _: u64) -> Result<(), msm_checkpoint::HostError> { Ok(()) }
//! #     fn apply(&mut self, _: msm_checkpoint::Stream, _: msm_checkpoint::ItemKind, _: &[u8])
//! #         -> Result<(), msm_checkpoint::HostError> { Ok(()) }
//! #     fn bulk_end(&mut self, _: msm_checkpoint::Stream) -> Result<(), msm_checkpoint::HostError> { Ok(()) }
//! #     fn bulk_abort(&mut self, _: msm_checkpoint::Stream) {}
//! # }
//! let later = node.poll_timeout().unwrap();
//! let later = Instant::from_millis(later.as_millis() + 300);
//! node.handle_timeout(later, &mut NoState);
//! assert_eq!(node.role(), Role::Master);
//! // A change is numbered at once; it is checkpointed once a backup acknowledges it.
//! assert_eq!(node.record_change(vlan, b"vlan 10"), Ok(1));
//! assert_eq!(node.checkpointed(vlan), 0);
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

#[macro_use]
mod fmt;

mod app;
mod auth;
mod error;
mod event;
mod host;
mod node;
mod role;
mod staging;
mod status;
mod stream;
mod takeover;
pub mod wire;

#[cfg(test)]
mod tests;

pub use app::{AppRegistry, AppSpec, MAX_APPS, MAX_NAME, RegisterError};
pub use auth::{KEY_LEN, Key, KeyError, KeyStatus, NO_KEY, SecondKey, TAG_LEN};
pub use error::{ChangeError, ConfigError, FailoverError, FrameError};
pub use event::{ConfigChoice, Event, RebulkReason};
pub use host::{AppId, CONFIG_CHUNK, Host, HostError, ItemKind, Stream, config_chunks, read_config_chunk};
pub use node::{Config, MAX_COUNTER_JUMP, Node};
pub use role::{MAX_NODES, MAX_TERM_COUNT, MAX_TERM_JUMP, Role, Slot, Term};
pub use staging::{ConfigStaging, StagingBuffer};
pub use status::{
    AppsFrom, ConfigCopy, FrameErrors, Name, PeerProtocol, PeerStatus, SlotRefusals, SplitBrain,
    SplitBrainWon, SplitRule, StreamStatus, SwitchStatus, SyncState, render_checkpoint, render_switch,
    state_label,
};
pub use stream::{Counters, Failure, Mismatch, Phase};
pub use takeover::TakeoverCause;
