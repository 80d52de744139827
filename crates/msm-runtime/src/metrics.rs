//! Prometheus metrics (`msm-node --metrics ADDR`): the node's state in the
//! Prometheus text format, written with the `prometheus-client` crate from
//! the same typed answers `show switch` and `show checkpoint-data` give.
//!
//! The protocol first: a thread of its own serves HTTP `GET /metrics`, one
//! connection at a time with read and write timeouts, so no scraper, slow or
//! hostile, reaches the loop. A scrape asks the loop for a fresh snapshot
//! (the two answers, taken at most every [`EVERY`]) and waits for it at most
//! [`FRESH_WAIT`]; the thread, not the loop, turns it into text. No scraper:
//! the loop does nothing for metrics.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use msm_control::{CheckpointRow, Request, Response, Switch};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The loop takes a snapshot at most this often, however often it is asked.
pub const EVERY: Duration = Duration::from_millis(20);
/// A scrape waits this long for the loop's fresh snapshot, then is served the last one.
pub const FRESH_WAIT: Duration = Duration::from_millis(500);
/// A scraper gets this long to send its request and to take the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the loop hands the HTTP thread: the answers, as the control socket gives them.
#[derive(Debug)]
struct Snapshot {
    switch: Response,
    rows: Response,
    extra: Extra,
    /// Which request of the HTTP thread it answers.
    generation: u64,
}

/// Between the loop and the HTTP thread.
#[derive(Debug, Default)]
struct Shared {
    /// A scrape waits for a snapshot.
    wanted: AtomicBool,
    snapshot: Mutex<Option<Snapshot>>,
    fresh: Condvar,
}

/// The loop's side of the metrics endpoint.
#[derive(Debug)]
pub struct Metrics {
    shared: Arc<Shared>,
    taken: Option<Instant>,
    generation: u64,
}

impl Metrics {
    /// Listen on `addr` (loopback unless the operator says otherwise) and serve from a thread.
    pub fn serve(addr: SocketAddr) -> std::io::Result<(Metrics, SocketAddr)> {
        let listener = TcpListener::bind(addr)?;
        let bound = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let theirs = Arc::clone(&shared);
        std::thread::Builder::new().name("metrics".into()).spawn(move || {
            for conn in listener.incoming().flatten() {
                if let Err(e) = answer(conn, &theirs) {
                    log::debug!("metrics: a scraper: {e}");
                }
            }
        })?;
        Ok((Metrics { shared, taken: None, generation: 0 }, bound))
    }

    /// If a scrape is waiting (and [`EVERY`] has passed since the last
    /// snapshot), answer it: `ask` answers a control request as the control
    /// socket would. Otherwise nothing is done.
    pub fn update(&mut self, mut ask: impl FnMut(Request) -> Response, extra: Extra) {
        if !self.shared.wanted.load(Ordering::Acquire) || self.taken.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        self.taken = Some(Instant::now());
        self.shared.wanted.store(false, Ordering::Release);
        self.generation += 1;
        let snapshot = Snapshot {
            switch: ask(Request::ShowSwitch),
            rows: ask(Request::ShowCheckpointData { process: None }),
            extra,
            generation: self.generation,
        };
        if let Ok(mut s) = self.shared.snapshot.lock() {
            *s = Some(snapshot);
            self.shared.fresh.notify_all();
        }
    }
}

/// What the typed answers do not carry.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extra {
    pub backlog_used: u64,
    pub backlog_capacity: u64,
}

/// Ask the loop for a snapshot and wait for it, at most [`FRESH_WAIT`]:
/// the text of the newest one held.
fn scrape(shared: &Shared) -> String {
    let Ok(mut held) = shared.snapshot.lock() else { return String::new() };
    let before = held.as_ref().map_or(0, |s| s.generation);
    shared.wanted.store(true, Ordering::Release);
    let deadline = Instant::now() + FRESH_WAIT;
    while held.as_ref().map_or(0, |s| s.generation) == before {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        held = match shared.fresh.wait_timeout(held, left) {
            Ok((h, _)) => h,
            Err(_) => return String::new(),
        };
    }
    match held.as_ref() {
        Some(s) => render(&s.switch, &s.rows, s.extra),
        None => "# the node has not answered yet\n# EOF\n".into(),
    }
}

/// One scrape: the request line, then the text (or 404).
fn answer(mut conn: TcpStream, shared: &Shared) -> std::io::Result<()> {
    conn.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    conn.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&req);
    let ok = line.starts_with("GET /metrics ") || line.starts_with("GET / ");
    let text;
    let (status, body) = if ok {
        text = scrape(shared);
        ("200 OK", text.as_str())
    } else {
        ("404 Not Found", "only GET /metrics is served\n")
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(body.as_bytes())
}

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
}

/// A labelled gauge family of whole numbers, registered.
fn gauges(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let f = Family::default();
    reg.register(name, help, f.clone());
    f
}

/// A labelled gauge family of fractions (seconds, ratios), registered.
fn fractions(
    reg: &mut Registry,
    name: &str,
    help: &str,
) -> Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>> {
    let f = Family::default();
    reg.register(name, help, f.clone());
    f
}

/// An unlabelled gauge, registered, set to `v`.
fn gauge(reg: &mut Registry, name: &str, help: &str, v: i64) {
    let g: Gauge = Gauge::default();
    g.set(v);
    reg.register(name, help, g);
}

fn counters(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let f = Family::default();
    reg.register(name, help, f.clone());
    f
}

/// The text of one scrape.
fn render(switch: &Response, rows: &Response, extra: Extra) -> String {
    let mut reg = Registry::with_prefix("msm");
    let switch = switch.clone().answer::<Switch>().ok();
    let rows = rows.clone().answer::<Vec<CheckpointRow>>().ok();
    if let Some(s) = &switch {
        let role = gauges(&mut reg, "role", "This module's role: 1 on the label of the current one");
        role.get_or_create(&labels(&[("slot", &s.slot), ("role", &s.role)])).set(1);
        gauge(&mut reg, "term", "The master's term this module holds in (its count)", term_count(&s.term));
        gauge(
            &mut reg,
            "in_sync",
            "The master's backup holds every stream (1) or not (0)",
            i64::from(s.in_sync),
        );
        let alive = gauges(&mut reg, "peer_alive", "A peer module is heard (1) or silent (0)");
        let gap = fractions(
            &mut reg,
            "peer_max_heartbeat_gap_seconds",
            "The largest silence between two heartbeats of a peer since this module came up",
        );
        for p in &s.peers {
            let l = labels(&[("peer", &p.slot), ("role", &p.role)]);
            alive.get_or_create(&l).set(i64::from(p.alive));
            gap.get_or_create(&labels(&[("peer", &p.slot)])).set(p.max_heartbeat_gap_us as f64 / 1e6);
        }
        let path_up = gauges(&mut reg, "path_up", "A backplane path is alive (1) or dead (0)");
        let path_silent =
            fractions(&mut reg, "path_silent_seconds", "Time since a path last carried a frame");
        let path_frames = counters(&mut reg, "path_frames", "Frames on a backplane path, by direction");
        let path_refused =
            counters(&mut reg, "path_refused_frames", "Frames a path's link refused as damaged");
        for p in &s.paths {
            let l = labels(&[("path", &p.path)]);
            path_up.get_or_create(&l).set(i64::from(p.state.eq_ignore_ascii_case("up")));
            if let Some(us) = p.silent_for_us {
                path_silent.get_or_create(&l).set(us as f64 / 1e6);
            }
            path_frames.get_or_create(&labels(&[("path", &p.path), ("dir", "rx")])).inc_by(p.rx);
            path_frames.get_or_create(&labels(&[("path", &p.path), ("dir", "tx")])).inc_by(p.tx);
            path_refused.get_or_create(&l).inc_by(p.refused);
        }
        let refused = counters(&mut reg, "frames_refused", "Backplane frames the engine refused, by reason");
        let e = &s.frame_errors;
        for (reason, n) in [
            ("bad_crc", e.bad_crc),
            ("malformed", e.malformed),
            ("version", e.version),
            ("auth", e.auth),
            ("replay", e.replay),
            ("term_range", e.term_range),
            ("counter_jump", e.counter_jump),
            ("unproven", e.unproven),
            ("duplicate", e.duplicate),
            ("stale_term", e.stale_term),
            ("own_slot", e.own_slot),
            ("unexpected", e.unexpected),
            ("unknown_stream", e.unknown_stream),
        ] {
            refused.get_or_create(&labels(&[("reason", reason)])).inc_by(n);
        }
        let by_slot = counters(
            &mut reg,
            "frames_refused_by_slot",
            "Refused frames by the slot they claimed, by reason",
        );
        for s in &e.by_slot {
            for (reason, n) in
                [("auth", s.auth), ("replay", s.replay), ("unproven", s.unproven), ("version", s.version)]
            {
                by_slot.get_or_create(&labels(&[("slot", &s.slot), ("reason", reason)])).inc_by(n);
            }
        }
        let failovers: Counter = Counter::default();
        failovers.inc_by(u64::from(s.failovers));
        reg.register("failovers", "Failovers on this module (kept in its flash)", failovers);
        let by_cause = counters(
            &mut reg,
            "failovers_since_start",
            "Failovers (and elections) recorded since the node started, by cause",
        );
        for (cause, n) in &s.failovers_since_start {
            by_cause.get_or_create(&labels(&[("cause", cause)])).inc_by(*n);
        }
        if let Some(f) = &s.last_failover {
            let last = fractions(
                &mut reg,
                "last_failover_timestamp_seconds",
                "When the newest entry of the failover history happened, by its cause",
            );
            let hitless = if f.hitless { "yes" } else { "no" };
            let l = labels(&[("cause", &f.cause), ("module", &f.module), ("hitless", hitless)]);
            last.get_or_create(&l).set(f.unix_ms as f64 / 1e3);
        }
        let keys = gauges(&mut reg, "key", "Chassis keys in use, by fingerprint: sending, or also accepted");
        if let Some(fp) = &s.keys.sending {
            keys.get_or_create(&labels(&[("fingerprint", fp), ("use", "sending")])).set(1);
        }
        if let Some(a) = &s.keys.also {
            if let Some(fp) = &a.fingerprint {
                keys.get_or_create(&labels(&[("fingerprint", fp), ("use", &a.role)])).set(1);
            }
        }
    }
    if let Some(rows) = &rows {
        let phase = gauges(&mut reg, "stream_phase", "A stream's phase: 1 on the label of the current one");
        let lag = gauges(
            &mut reg,
            "stream_lag_records",
            "Changes made on the master not yet acknowledged by the backup",
        );
        let progress = fractions(&mut reg, "stream_bulk_progress_ratio", "Share of the current bulk sent");
        let bulks = counters(&mut reg, "stream_bulks", "Bulk transfers of a stream");
        let rebulks = counters(
            &mut reg,
            "stream_rebulks",
            "Bulk transfers started again (backlog overflow, backup request, ...)",
        );
        let frames = counters(&mut reg, "stream_frames", "Checkpoint frames of a stream, by direction");
        let held = counters(
            &mut reg,
            "stream_held_back",
            "Times a process application's writer was held back (backpressure)",
        );
        for r in rows {
            phase.get_or_create(&labels(&[("stream", &r.process), ("phase", &r.status)])).set(1);
            let l = labels(&[("stream", &r.process)]);
            lag.get_or_create(&l)
                .set(i64::try_from(r.changes.saturating_sub(r.checkpointed)).unwrap_or(i64::MAX));
            progress.get_or_create(&l).set(f64::from(r.percent) / 100.0);
            bulks.get_or_create(&l).inc_by(r.bulks);
            rebulks.get_or_create(&l).inc_by(u64::from(r.rebulks));
            frames.get_or_create(&labels(&[("stream", &r.process), ("dir", "tx")])).inc_by(r.tx);
            frames.get_or_create(&labels(&[("stream", &r.process), ("dir", "rx")])).inc_by(r.rx);
            if let Some(h) = r.held_back {
                held.get_or_create(&l).inc_by(h);
            }
        }
    }
    let backlog = gauges(
        &mut reg,
        "backlog_bytes",
        "The engine's backlog of changes kept for the backup, used and capacity",
    );
    let whole = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    backlog.get_or_create(&labels(&[("of", "used")])).set(whole(extra.backlog_used));
    backlog.get_or_create(&labels(&[("of", "capacity")])).set(whole(extra.backlog_capacity));
    let mut out = String::new();
    if encode(&mut out, &reg).is_err() {
        out = "# the metrics could not be encoded\n".into();
    }
    out
}

/// "12.A" -> 12; "-" (none) -> 0.
fn term_count(term: &str) -> i64 {
    term.split('.').next().and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_read_as_their_count() {
        assert_eq!(term_count("12.A"), 12);
        assert_eq!(term_count("-"), 0);
    }

    /// The text of a node with nothing to say still parses as metrics: the
    /// backlog, and a line a scraper can read.
    #[test]
    fn without_answers_the_backlog_is_still_served() {
        let no = Response::error("no");
        let text = render(&no, &no, Extra { backlog_used: 5, backlog_capacity: 10 });
        assert!(text.contains("msm_backlog_bytes{of=\"used\"} 5"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    /// A scrape asks the loop for a snapshot and gets the one taken after
    /// it asked; with no scrape the loop takes none.
    #[test]
    fn a_scrape_gets_a_snapshot_taken_after_it_asked() {
        let shared = Arc::new(Shared::default());
        let mut m = Metrics { shared: Arc::clone(&shared), taken: None, generation: 0 };
        let mut asked = 0;
        m.update(
            |_| {
                asked += 1;
                Response::error("no")
            },
            Extra::default(),
        );
        assert_eq!(asked, 0, "no scrape waits: no snapshot");
        let theirs = Arc::clone(&shared);
        let scraper = std::thread::spawn(move || scrape(&theirs));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !shared.wanted.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "the scrape never asked");
            std::thread::yield_now();
        }
        m.update(|_| Response::error("no"), Extra { backlog_used: 7, backlog_capacity: 9 });
        let text = scraper.join().unwrap();
        assert!(text.contains("msm_backlog_bytes{of=\"used\"} 7"), "{text}");
    }
}
