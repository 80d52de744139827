//! One management module as a Linux process: the board that binds the
//! checkpoint engine to file-backed flash and a socket or pty backplane.

pub mod apps;
pub mod churn;
pub mod config;
pub mod control;
pub mod host;
pub mod journal;
