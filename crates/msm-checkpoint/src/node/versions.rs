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
//! which every peer still reads. What decides more than that (a backup
//! declaring the release before's schema versions to its master) waits for
//! a heartbeat of a proven boot ([`Versions::proven`]).

use core::time::Duration;

use msm_time::Instant;

use crate::role::{MAX_NODES, Slot};
use crate::status::PeerProtocol;
use crate::wire::{HeartbeatExt, OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION};

#[derive(Debug, Clone, Copy)]
struct Heard {
    /// The boot it was heard from.
    incarnation: u32,
    /// The version of its last frame.
    version: u8,
    /// The newest it speaks: its first frame's version until a heartbeat says.
    newest: u8,
    /// The newest it speaks, as a heartbeat of this boot, proven alive, said.
    proven: Option<u8>,
    release: u32,
    at: Instant,
}

/// Per slot, what its last authenticated frames said.
#[derive(Debug, Default)]
pub(crate) struct Versions {
    heard: [Option<Heard>; MAX_NODES],
}

impl Versions {
    /// A frame of `version` from boot `incarnation` of `slot`, its tag
    /// checked (its boot maybe not yet proven alive).
    pub(crate) fn heard(&mut self, now: Instant, slot: Slot, incarnation: u32, version: u8) {
        let h = &mut self.heard[slot.index()];
        match h {
            Some(h) if h.incarnation == incarnation => {
                h.version = version;
                h.newest = h.newest.max(version);
                h.at = now;
            }
            // Another boot: nothing it said before holds (a module
            // downgraded in its slot must be heard in its version).
            _ => {
                *h = Some(Heard { incarnation, version, newest: version, proven: None, release: 0, at: now })
            }
        }
    }

    /// A heartbeat of `slot`'s proven boot, in `version`, with its
    /// extension or without (an older module's).
    pub(crate) fn heartbeat(&mut self, slot: Slot, version: u8, ext: Option<HeartbeatExt>) {
        if let Some(h) = &mut self.heard[slot.index()] {
            h.newest = ext.map_or(version, |e| e.newest.max(version));
            h.proven = Some(h.newest);
            h.release = ext.map_or(0, |e| e.release);
        }
    }

    /// The newest version `slot` speaks, as a heartbeat of its proven boot said.
    pub(crate) fn proven(&self, slot: Slot) -> Option<u8> {
        self.heard[slot.index()].and_then(|h| h.proven)
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
        v.heard(ms(0), b, 1, PROTOCOL_VERSION);
        v.heartbeat(b, PROTOCOL_VERSION, newer);
        // C: an older module, version 4 without an extension.
        v.heard(ms(0), c, 1, OLDEST_PROTOCOL_VERSION);
        v.heartbeat(c, OLDEST_PROTOCOL_VERSION, None);
        assert_eq!(v.speak(ms(100), DETECT), OLDEST_PROTOCOL_VERSION);
        // B speaks 4 meanwhile but says it speaks 5: it does not hold the chassis at 4.
        v.heard(ms(350), b, 1, OLDEST_PROTOCOL_VERSION);
        v.heartbeat(b, OLDEST_PROTOCOL_VERSION, newer);
        assert_eq!(v.speak(ms(350), DETECT), PROTOCOL_VERSION, "C silent for the detection time");
        let s = v.status();
        assert_eq!(s[b.index()], PeerProtocol { version: OLDEST_PROTOCOL_VERSION, release: 0x001D00 });
        assert_eq!((s[c.index()].version, s[c.index()].release), (OLDEST_PROTOCOL_VERSION, 0));
        assert_eq!(s[3], PeerProtocol::default());
        // C comes back upgraded: its first frame in 5 and its heartbeat say so.
        v.heard(ms(400), c, 2, PROTOCOL_VERSION);
        assert_eq!(v.proven(c), None, "a new boot: nothing proven of it yet");
        v.heartbeat(c, PROTOCOL_VERSION, newer);
        assert_eq!(v.speak(ms(400), DETECT), PROTOCOL_VERSION);
        assert_eq!(v.proven(c), Some(PROTOCOL_VERSION));
    }

    /// A module downgraded in its slot (a new boot of the older release) is
    /// spoken to in its version from its first frame, before it is proven:
    /// it could not prove itself otherwise. A frame of another boot of a
    /// newer module changes what is spoken, not what is proven.
    #[test]
    fn a_new_boot_is_heard_in_its_own_version() {
        let (mut v, b) = (Versions::default(), Slot::B);
        let newer = Some(HeartbeatExt { newest: PROTOCOL_VERSION, release: 1 });
        v.heard(ms(0), b, 1, PROTOCOL_VERSION);
        v.heartbeat(b, PROTOCOL_VERSION, newer);
        v.heard(ms(10), b, 2, OLDEST_PROTOCOL_VERSION);
        assert_eq!(v.speak(ms(10), DETECT), OLDEST_PROTOCOL_VERSION);
        assert_eq!(v.proven(b), None);
        v.heartbeat(b, OLDEST_PROTOCOL_VERSION, None);
        assert_eq!(v.proven(b), Some(OLDEST_PROTOCOL_VERSION));
        assert_eq!(v.status()[b.index()].release, 0);
    }
}
