//! One management module as a Linux process: the board that binds the
//! checkpoint engine to file-backed flash and a socket or pty backplane.

pub mod app_server;
pub mod apps;
pub mod backplane;
pub mod chassis;
pub mod churn;
pub mod client_limits;
pub mod config;
pub mod control;
pub mod control_access;
pub mod control_server;
pub mod flash;
pub mod forward_log;
pub mod host;
pub mod journal;
pub mod key_file;
pub mod node;
pub mod process_apps;
pub mod socket_path;
pub mod split_brain;
