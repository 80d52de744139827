//! `msm_checkpoint::wire::decode` on any bytes: an error or a frame, never a
//! panic. The input is tried as it is and with a valid frame check added
//! (`engine::seal`), so the body decoder is reached, not only the CRC.
//! A decoded frame's body written again decodes to the same values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msm_checkpoint::wire::{self, FrameWriter};
use msm_fuzz::engine::seal;

fuzz_target!(|data: &[u8]| {
    check(data);
    check(&seal(data));
});

fn check(bytes: &[u8]) {
    let Ok(f) = wire::decode(bytes) else { return };
    assert!(f.tail.len() < bytes.len());
    // The tail's items have no public decoder: the engine walks them (node_frame).
    let mut buf = [0u8; 256];
    let Ok(w) = FrameWriter::new(&mut buf, f.from, f.to, f.term, &f.body) else { return };
    let n = w.finish();
    wire::seal(&mut buf[..n], None, 1, 1);
    let again = wire::decode(&buf[..n]).expect("a frame written from a decoded one decodes");
    assert_eq!((again.from, again.to, again.term, again.body), (f.from, f.to, f.term, f.body));
    assert!(again.tail.is_empty());
}
