//! What a board or a test plugs into the node's loop, beside the engine,
//! flash and backplane: a [`Workload`] that changes the applications' state
//! while the node is master (the emulation's churn; a real board's
//! applications change their tables themselves), and a [`Watcher`] that
//! sees every change the master makes and how far each is checkpointed
//! (the test kit's journal, which verifies takeovers). The loop calls the
//! watcher only when one is given: a product node runs without.

use msm_checkpoint::{ConfigChoice, Slot};

use crate::apps::{BuiltinApp, Change};

/// Changes to the built-in applications, made while master.
pub trait Workload {
    /// Changes a second (0: none).
    fn rate(&self) -> u32;
    /// The operator's `churn RATE`.
    fn set_rate(&mut self, rate: u32);
    /// The changes due by `now_us` (microseconds of the node's clock), by application.
    fn due(&mut self, now_us: u64) -> Vec<(BuiltinApp, Change)>;
    /// The state a master that holds none starts with.
    fn initial(&mut self) -> Vec<(BuiltinApp, Change)>;
}

/// No workload: the state changes only by the operator and process applications.
#[derive(Debug, Default, Clone, Copy)]
pub struct Idle;

impl Workload for Idle {
    fn rate(&self) -> u32 {
        0
    }
    fn set_rate(&mut self, _: u32) {}
    fn due(&mut self, _: u64) -> Vec<(BuiltinApp, Change)> {
        Vec::new()
    }
    fn initial(&mut self) -> Vec<(BuiltinApp, Change)> {
        Vec::new()
    }
}

/// Sees what the master does: every change with its id, promotions, and
/// how far each application and the configuration are checkpointed.
pub trait Watcher {
    /// This node became master, from `config`; `in_sync`: its backup's copy was whole.
    fn promoted(&mut self, config: ConfigChoice, in_sync: bool);
    /// A change of application `app` got id `id`.
    fn change(&mut self, app: BuiltinApp, id: u64, change: &Change);
    /// A configuration line got change id `id`.
    fn config_change(&mut self, id: u64, line: &str);
    /// Every change of `app` up to `id` is on `peer`.
    fn checkpointed(&mut self, app: BuiltinApp, id: u64, peer: Option<Slot>);
    /// Every configuration change up to `id` is on `peer`.
    fn config_checkpointed(&mut self, id: u64, peer: Option<Slot>);
    /// End of a loop turn: make what was seen durable.
    fn flush(&mut self);
}
