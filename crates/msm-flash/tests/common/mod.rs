//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use msm_flash::mock::MockFlash;
use msm_flash::{ConfigStore, Durable, Error};
use rand::{RngCore, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// A mock flash of `blocks` erase blocks, erased.
pub type Mock<const W: usize, const B: usize> = MockFlash<Vec<u8>, Vec<u32>, W, B>;

pub fn mock<const W: usize, const B: usize>(blocks: usize) -> Mock<W, B> {
    MockFlash::new_erased(vec![0; blocks * B], vec![0; blocks]).unwrap()
}

pub fn rng(seed: u64) -> Pcg64Mcg {
    Pcg64Mcg::seed_from_u64(seed)
}

/// A config of `len` bytes of text-like content, different for every `tag`.
pub fn config(len: usize, tag: u64) -> Vec<u8> {
    let mut r = rng(tag ^ 0xC0FF_EE00);
    let mut v = vec![0; len];
    r.fill_bytes(&mut v);
    // Mostly printable like a real config, with the occasional 0x00 / 0xFF byte kept.
    for b in &mut v {
        if *b != 0 && *b != 0xFF {
            *b = b' ' + *b % 95;
        }
    }
    v
}

/// Read the whole current config in chunks of `chunk` bytes.
pub fn read_all<F: embedded_storage::nor_flash::NorFlash + Durable>(
    store: &mut ConfigStore<F>,
    chunk: usize,
) -> Result<Vec<u8>, Error<F::Error>> {
    let len = store.current_or_err()?.len as usize;
    let mut out = vec![0; len];
    let mut off = 0;
    while off < len {
        let end = (off + chunk).min(len);
        let n = store.read(off as u32, &mut out[off..end])?;
        assert!(n > 0, "read returned 0 before the end");
        off += n;
    }
    Ok(out)
}

/// Save `data` streamed in chunks of `chunk` bytes.
pub fn save_chunked<F: embedded_storage::nor_flash::NorFlash + Durable>(
    store: &mut ConfigStore<F>,
    data: &[u8],
    chunk: usize,
    saved_at: u64,
) -> Result<(), Error<F::Error>> {
    store.begin_save(data.len() as u32, &msm_flash::SaveInfo { saved_at, sw_version: "16.2.5.4" })?;
    for c in data.chunks(chunk.max(1)) {
        store.write(c)?;
    }
    store.commit()?;
    Ok(())
}
