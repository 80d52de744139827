//! The node service of a Linux MSM: everything a Linux management module
//! runs around the checkpoint engine, whatever its board. A board crate
//! binds it to its flash (a file image or a kernel MTD device) and its
//! backplane (Unix or UDP sockets, serial ports) and starts the loop; see
//! `docs/porting.md`.

pub mod app_server;
pub mod apps;
pub mod backplane;
pub mod backup_wait;
pub mod client_limits;
pub mod config;
pub mod control_access;
pub mod control_server;
pub mod failover_check;
pub mod failover_history;
pub mod flash;
pub mod forward_log;
pub mod hooks;
pub mod host;
pub mod key_file;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod notify;
pub mod process_apps;
pub mod release;
pub mod service;
pub mod socket_path;
pub mod split_brain;
pub mod wall_clock;
