//! This build's software release as heartbeats say it (protocol version 5:
//! `major << 16 | minor << 8 | patch`), and a peer's as the operator reads it.

use msm_checkpoint::PeerProtocol;

/// This build's release, e.g. "0.29.0".
pub const RELEASE: &str = env!("CARGO_PKG_VERSION");

/// `version` ("major.minor.patch", anything after a `-` or `+` ignored) as
/// the heartbeat's number; 0 when it does not parse or a part is over 255.
pub fn code(version: &str) -> u32 {
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<Option<u8>> = core.split('.').map(|p| p.parse().ok()).collect();
    match parts[..] {
        [Some(major), Some(minor), Some(patch)] => {
            (u32::from(major) << 16) | (u32::from(minor) << 8) | u32::from(patch)
        }
        _ => 0,
    }
}

/// A peer's release and protocol as `show switch` says them.
pub fn describe(p: PeerProtocol) -> String {
    match (p.release, p.version) {
        (_, 0) => "never heard".into(),
        (0, p) => format!("release not said (protocol v{p})"),
        (r, p) => format!("{}.{}.{} (protocol v{p})", r >> 16, (r >> 8) & 0xFF, r & 0xFF),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_read_as_numbers_and_back() {
        assert_eq!(code("0.29.0"), 0x00_1D_00);
        assert_eq!(code("1.2.3-rc1"), 0x01_02_03);
        assert_eq!(code("1.2"), 0);
        assert_eq!(code("1.2.300"), 0);
        assert_eq!(describe(PeerProtocol { release: code("0.29.1"), version: 5 }), "0.29.1 (protocol v5)");
        assert_eq!(describe(PeerProtocol { release: 0, version: 4 }), "release not said (protocol v4)");
        assert_ne!(code(RELEASE), 0, "this build's own version parses");
    }
}
