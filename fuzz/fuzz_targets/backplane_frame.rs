//! The backplane's COBS/CRC-32C decoder on any bytes
//! (`msm_fuzz::backplane`): no panic, frames within their limit, the same
//! frames however the stream is split.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| msm_fuzz::backplane::run(data));
