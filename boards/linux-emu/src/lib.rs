//! One management module as a Linux process on a development machine: the
//! emulation board. The node service is `msm-runtime`; this crate adds what
//! only the emulation has: the workload that keeps the applications busy
//! ([`churn`]), and the binaries `msm-node` (file-backed flash, Unix, UDP or
//! serial backplane), `msm` (the operator CLI) and `msm-chassis` (the demo).

pub mod churn;
