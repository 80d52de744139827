//! Which protocol versions each peer speaks, and so which one this node
//! speaks: the newest every module heard within the detection time speaks,
//! never below [`OLDEST_PROTOCOL_VERSION`]. A module of the release before
//! (version 4 only) next to this one is how a rolling upgrade runs: the
//! chassis speaks 4 while it lives, and 5 again once it has been silent
//! for the detection time (upgraded, or gone).
//!
//! What a peer speaks is learnt from any frame whose tag checks out, even
//! of a boot not yet proven alive (an older module can answer our
//! challenge only once it hears us in its version); the newest it speaks,
//! from its heartbeat's [`HeartbeatExt`], which this build sends in either
//! version (a version-4 heartbeat without one is an older module's). A
//! replayed frame of an older module can at most make this node speak 4,
//! which every peer still reads.

use core::time::Duration;

use msm_time::Instant;

use crate::role::{MAX_NODES, Slot};
use crate::status::PeerProtocol;
use crate::wire::{HeartbeatExt, OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION};

#[derive(Debug, Clone, Copy)]
struct Heard {
    /// The version of its last frame.
    version: u8,
    /// The newest it speaks, as its last heartbeat said.
    newest: u8,
    release: u32,
    at: Instant,
}

/// Per slot, what its last authenticated frames said.
#[derive(Debug, Default)]
pub(crate) struct Versions {
    heard: [Option<Heard>; MAX_NODES],
}

impl Versions {
    /// A frame of `version` from `slot`, its tag checked.
    pub(crate) fn heard(&mut self, now: Instant, slot: Slot, version: u8) {
        let h = &mut self.heard[slot.index()];
        let (newest, release) = h.map_or((version, 0), |h| (h.newest.max(version), h.release));
        *h = Some(Heard { version, newest, release, at: now });
    }

    /// `slot`'s heartbeat, in `version`, with its extension or without.
    pub(crate) fn heartbeat(&mut self, slot: Slot, version: u8, ext: Option<HeartbeatExt>) {
        if let Some(h) = &mut self.heard[slot.index()] {
            h.newest = ext.map_or(version, |e| e.newest.max(version));
            h.release = ext.map_or(0, |e| e.release);
        }
    }

    /// The version to write frames in at `now`.
    pub(crate) fn speak(&self, now: Instant, detect: Duration) -> u8 {
        self.heard
            .iter()
            .flatten()
            .filter(|h| now.saturating_since(h.at) <= detect)
            .map(|h| h.newest)
            .min()
            .unwrap_or(PROTOCOL_VERSION)
            .clamp(OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION)
    }

    /// What each slot was last heard speaking (version 0: never).
    pub(crate) fn status(&self) -> [PeerProtocol; MAX_NODES] {
        self.heard.map(|h| {
            h.map_or(PeerProtocol::default(), |h| PeerProtocol { version: h.version, release: h.release })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DETECT: Duration = Duration::from_millis(300);

    fn ms(n: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(n)
    }

    #[test]
    fn an_older_module_keeps_the_chassis_at_its_version_while_it_lives() {
        let (mut v, b, c) = (Versions::default(), Slot::B, Slot::new(2).unwrap());
        assert_eq!(v.speak(ms(0), DETECT), PROTOCOL_VERSION, "nothing heard: the newest");
        let newer = Some(HeartbeatExt { newest: PROTOCOL_VERSION, release: 0x001D00 });
        v.heard(ms(0), b, PROTOCOL_VERSION);
        v.heartbeat(b, PROTOCOL_VERSION, newer);
        // C: an older module, version 4 without an extension.
        v.heard(ms(0), c, OLDEST_PROTOCOL_VERSION);
        v.heartbeat(c, OLDEST_PROTOCOL_VERSION, None);
        assert_eq!(v.speak(ms(100), DETECT), OLDEST_PROTOCOL_VERSION);
        // B speaks 4 meanwhile but says it speaks 5: it does not hold the chassis at 4.
        v.heard(ms(350), b, OLDEST_PROTOCOL_VERSION);
        v.heartbeat(b, OLDEST_PROTOCOL_VERSION, newer);
        assert_eq!(v.speak(ms(350), DETECT), PROTOCOL_VERSION, "C silent for the detection time");
        let s = v.status();
        assert_eq!(s[b.index()], PeerProtocol { version: OLDEST_PROTOCOL_VERSION, release: 0x001D00 });
        assert_eq!((s[c.index()].version, s[c.index()].release), (OLDEST_PROTOCOL_VERSION, 0));
        assert_eq!(s[3], PeerProtocol::default());
        // C comes back upgraded: its first frame in 5 and its heartbeat say so.
        v.heard(ms(400), c, PROTOCOL_VERSION);
        v.heartbeat(c, PROTOCOL_VERSION, newer);
        assert_eq!(v.speak(ms(400), DETECT), PROTOCOL_VERSION);
    }
}
