//! The config stores and the settings area mounted on a flash holding any
//! contents (`msm_fuzz::flash`): a store or a named error, never a panic;
//! a save after that is what the next mount finds. The same bytes as a
//! saved-configuration stream from a master: read whole and cut, the two
//! readers agree, and a refusal is a named error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| msm_fuzz::flash::run(data));
