//! Frames on their way to the backplane: paced by the [`Throttle`], and a
//! frame the throttle or the link refused is held and goes first next round
//! (the engine has already counted it as sent).

use msm_backplane::{Error as _, ErrorKind, Link};
use msm_time::Instant;

use super::throttle::Throttle;

#[derive(Debug)]
pub struct Outbox {
    throttle: Throttle,
    /// A frame the link could not take yet.
    held: Option<Vec<u8>>,
}

impl Outbox {
    /// `rate`: bytes per second, `None` for as fast as the link goes.
    pub fn new(rate: Option<u64>) -> Self {
        Outbox { throttle: Throttle::new(rate), held: None }
    }

    /// Whether a frame waits for the throttle or the link.
    pub fn holding(&self) -> bool {
        self.held.is_some()
    }

    /// Send the held frame, if any; `false` while it is still held.
    pub fn send_held<L: Link>(&mut self, link: &mut L, now: Instant) -> bool {
        match self.held.take() {
            Some(frame) => self.send(link, now, &frame),
            None => true,
        }
    }

    /// Send `frame`, or hold a copy and return `false`: then take no more
    /// frames from the engine this round. A frame the link refuses for
    /// another reason than `WouldBlock` is lost, as on a real backplane.
    pub fn send<L: Link>(&mut self, link: &mut L, now: Instant, frame: &[u8]) -> bool {
        if !self.throttle.allow(now, frame.len()) {
            self.held = Some(frame.to_vec());
            return false;
        }
        match link.send(frame) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                self.held = Some(frame.to_vec());
                false
            }
            Err(e) => {
                log::debug!("link send: {e:?}");
                true
            }
            Ok(()) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use msm_backplane::ErrorType;

    use super::*;

    /// A link that takes frames until it is told it is full.
    #[derive(Default)]
    struct Wire {
        sent: Vec<Vec<u8>>,
        full: bool,
    }

    impl ErrorType for Wire {
        type Error = ErrorKind;
    }

    impl Link for Wire {
        fn max_frame(&self) -> usize {
            1024
        }
        fn send(&mut self, frame: &[u8]) -> Result<(), ErrorKind> {
            if self.full {
                return Err(ErrorKind::WouldBlock);
            }
            self.sent.push(frame.to_vec());
            Ok(())
        }
        fn recv(&mut self, _: &mut [u8]) -> Result<Option<usize>, ErrorKind> {
            Ok(None)
        }
    }

    #[test]
    fn a_refused_frame_is_held_and_goes_first() {
        let (mut out, mut wire, now) = (Outbox::new(None), Wire::default(), Instant::ZERO);
        assert!(out.send(&mut wire, now, b"one"));
        wire.full = true;
        assert!(!out.send(&mut wire, now, b"two"));
        assert!(out.holding());
        assert!(!out.send_held(&mut wire, now), "still full");
        wire.full = false;
        assert!(out.send_held(&mut wire, now));
        assert!(!out.holding());
        assert_eq!(wire.sent, [b"one".to_vec(), b"two".to_vec()]);
    }

    #[test]
    fn the_throttle_holds_a_frame_until_its_budget_comes() {
        let (mut out, mut wire) = (Outbox::new(Some(1000)), Wire::default());
        assert!(!out.send(&mut wire, Instant::ZERO, &[0; 10]));
        assert!(!out.send_held(&mut wire, Instant::from_millis(5)));
        assert!(out.send_held(&mut wire, Instant::from_millis(10)));
        assert_eq!(wire.sent.len(), 1);
    }
}
