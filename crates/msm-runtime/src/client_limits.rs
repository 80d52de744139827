//! What the node's sockets (control and application) allow one client, so
//! that no number of idle, slow or half-sending clients locks anyone out
//! or makes the node spin:
//! - at most [`MAX_CLIENTS`] connections a socket;
//! - a client's first whole request (an application's registration, an
//!   operator's command) within [`FIRST_REQUEST`] of its connection, and
//!   every message it begins whole within [`HALF_SENT`]; else it is dropped
//!   with an error naming which;
//! - at the cap a new connection is still taken: the client that connected
//!   first among those that have not sent a whole request yet is closed to
//!   make room. Only when every client is busy (registered, or its command
//!   being answered) do new connections wait in the listen queue, and then
//!   the listener is not polled, so the node does not spin on it.

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::control_access::Guarded;

/// Connections each socket serves at once.
pub const MAX_CLIENTS: usize = 64;
/// A client's first whole request comes within this of its connection.
pub const FIRST_REQUEST: Duration = Duration::from_secs(2);
/// A message begun is whole within this.
pub const HALF_SENT: Duration = Duration::from_secs(2);
/// Drops of one kind are logged the first time and every this many after.
const LOG_EVERY: u64 = 100;

/// One client's timing, as the limits see it.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    accepted: Instant,
    /// Its first whole request arrived.
    served: bool,
    /// Bytes of an unfinished message are held since then.
    partial_since: Option<Instant>,
}

impl Clock {
    pub fn new(now: Instant) -> Self {
        Clock { accepted: now, served: false, partial_since: None }
    }

    /// Its first whole request arrived.
    pub fn served(&mut self) {
        self.served = true;
    }

    /// After reading: whether bytes of an unfinished message are held.
    pub fn partial(&mut self, held: bool, now: Instant) {
        self.partial_since = match held {
            true => self.partial_since.or(Some(now)),
            false => None,
        };
    }

    /// The node is not reading this client now (it holds its requests, or
    /// answers a wait first): a message it began is not overdue meanwhile.
    pub fn not_read(&mut self, now: Instant) {
        if self.partial_since.is_some() {
            self.partial_since = Some(now);
        }
    }

    /// No whole request yet: such a client makes room for a new one at the cap.
    pub fn idle(&self) -> bool {
        !self.served
    }

    /// Why it is dropped now, if it is.
    pub fn expired(&self, now: Instant) -> Option<String> {
        if !self.served && now >= self.accepted + FIRST_REQUEST {
            return Some(format!("no whole request within {} s of connecting", FIRST_REQUEST.as_secs()));
        }
        match self.partial_since {
            Some(t) if now >= t + HALF_SENT => {
                Some(format!("a message half-sent for {} s", HALF_SENT.as_secs()))
            }
            _ => None,
        }
    }

    /// When [`expired`](Self::expired) next may say so.
    pub fn deadline(&self) -> Option<Instant> {
        let first = (!self.served).then_some(self.accepted + FIRST_REQUEST);
        let half = self.partial_since.map(|t| t + HALF_SENT);
        first.into_iter().chain(half).min()
    }
}

/// At the cap: which client to close for a new one (the idle client that
/// connected first), given each client's clock.
pub fn make_room<'a>(clocks: impl Iterator<Item = &'a Clock>) -> Option<usize> {
    clocks.enumerate().filter(|(_, c)| c.idle()).min_by_key(|(_, c)| c.accepted).map(|(i, _)| i)
}

/// Whether the socket takes a new connection now: below the cap, or with an
/// idle client to close for it. (Otherwise it is not polled: no spin.)
pub fn taking<'a>(mut clocks: impl ExactSizeIterator<Item = &'a Clock>) -> bool {
    clocks.len() < MAX_CLIENTS || clocks.any(Clock::idle)
}

/// What a client closed to make room is told.
pub fn room_made() -> String {
    format!("closed to make room for a new connection ({MAX_CLIENTS} at most)")
}

/// Take waiting connections from `socket` into `clients` (`new` makes one):
/// into free slots, or at the cap in place of the client [`make_room`]
/// names. Returns the clients closed to make room, for the caller to tell
/// ([`room_made`]) and count. Stops when the queue is empty or every client is busy.
pub fn accept<C>(
    socket: &mut Guarded,
    clients: &mut Vec<C>,
    clock: impl Fn(&C) -> &Clock,
    mut new: impl FnMut(UnixStream, Instant) -> C,
) -> Vec<C> {
    let mut evicted = Vec::new();
    loop {
        let full = clients.len() >= MAX_CLIENTS;
        let room = if full { make_room(clients.iter().map(&clock)) } else { None };
        if full && room.is_none() {
            return evicted;
        }
        let Some(stream) = socket.accept(1).pop() else { return evicted };
        if let Some(i) = room {
            evicted.push(clients.swap_remove(i));
        }
        clients.push(new(stream, Instant::now()));
    }
}

/// Take out of `clients` those the limits drop now, each with why.
/// `judged` gives a client's clock, or `None` for one not judged now
/// (closing, or busy being answered).
pub fn take_expired<C>(
    clients: &mut Vec<C>,
    now: Instant,
    judged: impl Fn(&C) -> Option<&Clock>,
) -> Vec<(C, String)> {
    let expired: Vec<(usize, String)> = clients
        .iter()
        .enumerate()
        .filter_map(|(i, c)| judged(c).and_then(|k| k.expired(now)).map(|why| (i, why)))
        .collect();
    // From the back: a swap_remove moves the last client into the gap.
    expired.into_iter().rev().map(|(i, why)| (clients.swap_remove(i), why)).collect()
}

/// Whether the `n`-th drop of a kind is logged.
pub fn log_drop(n: u64) -> bool {
    n == 1 || n.is_multiple_of(LOG_EVERY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_request_and_half_sent_deadlines() {
        let t0 = Instant::now();
        let mut c = Clock::new(t0);
        assert_eq!(c.deadline(), Some(t0 + FIRST_REQUEST));
        assert!(c.expired(t0 + FIRST_REQUEST - Duration::from_millis(1)).is_none());
        assert!(c.expired(t0 + FIRST_REQUEST).unwrap().contains("no whole request"));
        c.served();
        assert_eq!(c.deadline(), None);
        c.partial(true, t0 + Duration::from_secs(10));
        c.partial(true, t0 + Duration::from_secs(11));
        assert!(
            c.expired(t0 + Duration::from_secs(12)).unwrap().contains("half-sent"),
            "from the first byte"
        );
        c.partial(false, t0 + Duration::from_secs(12));
        assert!(c.expired(t0 + Duration::from_secs(60)).is_none());
        // Time the node did not read it does not count.
        c.partial(true, t0 + Duration::from_secs(70));
        c.not_read(t0 + Duration::from_secs(80));
        assert!(c.expired(t0 + Duration::from_secs(81)).is_none());
        assert!(c.expired(t0 + Duration::from_secs(82)).is_some());
    }

    #[test]
    fn the_idle_client_that_came_first_makes_room() {
        let t0 = Instant::now();
        let mut busy = Clock::new(t0);
        busy.served();
        let clocks =
            [busy, Clock::new(t0 + Duration::from_millis(2)), Clock::new(t0 + Duration::from_millis(1))];
        assert_eq!(make_room(clocks.iter()), Some(2));
        assert_eq!(make_room([busy].iter()), None, "every client busy: none");
        assert!(log_drop(1) && !log_drop(2) && log_drop(200));
    }
}
