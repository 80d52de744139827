//! A checkpoint node fed any frames on a 1 ms clock (`msm_fuzz::engine`):
//! `handle_frame`, `handle_timeout` and `poll_transmit` never panic, and
//! the node's status renders afterwards.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let d = msm_fuzz::engine::run(data);
    let mut text = String::new();
    let _ = msm_checkpoint::render_switch(&d.node.switch_status(), &mut text);
});
