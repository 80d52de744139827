//! A seeded, deterministic simulator of MSM chassis for tests, the demo and
//! benchmarks: virtual time, a faulty backplane, crashes, and invariant
//! checkers after every step. A failing seed prints the command that replays it.

pub mod attacker;
pub mod check;
pub mod facts;
pub mod host;
pub mod insider;
pub mod link;
pub mod record;
pub mod scenario;
pub mod sim;
pub mod violation;

pub use scenario::{Failure, run};
pub use sim::{Sim, SimConfig};
