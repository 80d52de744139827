//! Test kit for chassis of real MSM processes (not published): the chassis
//! harness that starts, kills and asks nodes ([`chassis`]), and the change
//! journal a node writes when a test asks for it (`msm-node --journal`,
//! through the runtime's `Watcher` hook) with the verifier that checks a
//! new master holds every acknowledged change ([`journal`]).

pub mod chassis;
pub mod journal;
