//! MSM firmware for the TI Stellaris LM3S6965 evaluation board, as QEMU's
//! `lm3s6965evb` machine emulates it: the `msm-checkpoint` engine with the
//! `devmgr <- vlan` applications, UART1 as the backplane (`msm-backplane`'s
//! UART link over an interrupt-fed PL011 driver), UART0 for logs, SysTick for
//! time, and the saved configuration on the SD card (SSI0) through
//! `msm-flash`'s config store.
//!
//! Boot: the node waits up to [`LINK_WAIT_MS`] for the first byte on the
//! backplane before it starts its engine, like a module that waits for the
//! chassis link; then it elects or follows as any MSM does.
#![no_std]
#![no_main]

mod apps;
mod clock;
mod host;
mod log;
mod regs;
mod uart;

use core::convert::Infallible;
use core::time::Duration;

use cortex_m_rt::entry;
use msm_backplane::link::Link;
use msm_backplane::uart::{UartError, UartLink};
use msm_checkpoint::{AppRegistry, Config, Event, Node, Role, Slot};

use crate::apps::APPS;
use crate::host::Board;

/// Largest backplane frame (run the Linux peer with `--max-frame 512` or less).
pub const MAX_FRAME: usize = 512;
/// Transmit buffer of the link: one encoded maximum frame and some more.
const LINK_TX: usize = 1024;
/// Retransmission window (runs in flight) and backlog bytes of the engine.
const WINDOW: usize = 8;
const BACKLOG: usize = 4096;
/// How long a booting node waits for the backplane before it starts alone.
const LINK_WAIT_MS: u64 = 5000;

type Engine = Node<{ APPS.len() }, WINDOW, BACKLOG>;
type Backplane = UartLink<uart::Uart1, MAX_FRAME, LINK_TX>;

/// Unmasks an interrupt in the NVIC.
pub(crate) fn unmask(irq: lm3s6965::Interrupt) {
    // SAFETY: the handlers of this crate use `critical_section`, which (single
    // core) masks interrupts, so unmasking cannot break a critical section.
    unsafe { cortex_m::peripheral::NVIC::unmask(irq) }
}

struct Statics {
    engine: Engine,
    board: Board,
    link: Backplane,
    rx: [u8; MAX_FRAME],
    tx: [u8; MAX_FRAME],
}

#[entry]
fn main() -> ! {
    let _console = uart::Console::init();
    log!("msm-lm3s6965evb {} booting", env!("CARGO_PKG_VERSION"));
    let Some(core) = cortex_m::Peripherals::take() else {
        log!("fatal: core peripherals already taken");
        fatal()
    };
    let clock = clock::Clock::start(core.SYST);
    let uart1 = uart::Uart1::init();

    let mut reg = AppRegistry::<{ APPS.len() }>::new();
    for (name, schema, deps) in APPS {
        if let Err(e) = reg.register(name, schema, deps) {
            log!("fatal: registering {name}: {e:?}");
            fatal()
        }
    }
    let Some(slot) = Slot::new(1) else { fatal() };
    let mut cfg = Config::new(slot);
    cfg.priority = 1;
    cfg.max_frame = MAX_FRAME;
    cfg.heartbeat_interval = Duration::from_millis(100);
    cfg.miss_count = 3;
    cfg.rto = Duration::from_millis(50);
    cfg.rto_max = Duration::from_millis(400);

    // Wait for the chassis link (any byte), then start the engine.
    let mut link = Backplane::new(uart1);
    let start = clock.now();
    loop {
        let now = clock.now();
        if embedded_io::ReadReady::read_ready(link.inner_mut()).unwrap_or(false) {
            log::set_now(now.as_micros());
            log!("backplane up after {} ms", now.saturating_since(start).as_millis());
            break;
        }
        if now.saturating_since(start) >= Duration::from_millis(LINK_WAIT_MS) {
            log::set_now(now.as_micros());
            log!("backplane silent for {LINK_WAIT_MS} ms: starting alone");
            break;
        }
        cortex_m::asm::wfi();
    }

    let engine = match Engine::new(cfg, reg, clock.now()) {
        Ok(e) => e,
        Err(e) => {
            log!("fatal: engine configuration refused: {e}");
            fatal()
        }
    };
    log!(
        "node {slot} up: apps devmgr <- vlan, max frame {MAX_FRAME}, heartbeat 100 ms x 3, engine {} bytes",
        core::mem::size_of::<Engine>()
    );
    let mut s = Statics { engine, board: Board::default(), link, rx: [0; MAX_FRAME], tx: [0; MAX_FRAME] };
    run(&clock, &mut s)
}

fn run(clock: &clock::Clock, s: &mut Statics) -> ! {
    let mut pending: Option<usize> = None;
    let mut last_bad = 0u64;
    loop {
        let now = clock.now();
        log::set_now(now.as_micros());
        let mut busy = false;

        // Receive every complete frame.
        loop {
            match s.link.recv(&mut s.rx) {
                Ok(Some(n)) => {
                    busy = true;
                    if let Err(e) = s.engine.handle_frame(now, &s.rx[..n], &mut s.board) {
                        log!("frame refused: {e}");
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    log!("backplane receive error: {e}");
                    break;
                }
            }
        }
        let bad = framing_errors(&s.link);
        if bad != last_bad {
            log!("backplane: {} damaged frame(s) dropped so far", bad);
            last_bad = bad;
        }

        if s.engine.poll_timeout().is_some_and(|t| t <= now) {
            s.engine.handle_timeout(now, &mut s.board);
        }

        // Transmit: one frame may wait for room in the link's buffer.
        loop {
            let n = match pending.take() {
                Some(n) => n,
                None => match s.engine.poll_transmit(now, &mut s.board, &mut s.tx) {
                    Some(n) => n,
                    None => break,
                },
            };
            busy = true;
            match s.link.send(&s.tx[..n]) {
                Ok(()) => {}
                Err(UartError::WouldBlock) => {
                    pending = Some(n);
                    break;
                }
                Err(e) => log_send_error(e),
            }
        }
        let _ = s.link.flush();

        while let Some(ev) = s.engine.poll_event() {
            busy = true;
            report(&s.engine, &s.board, ev);
        }
        if s.board.saved_dirty {
            s.board.saved_dirty = false;
            log!("saved configuration: {} bytes (held in RAM)", s.board.saved.len());
        }

        if !busy && pending.is_none() && !s.link.tx_pending() {
            // SysTick (1 ms) or a received byte wakes us.
            cortex_m::asm::wfi();
        }
    }
}

fn framing_errors(link: &Backplane) -> u64 {
    let c = link.counters();
    u64::from(c.bad_crc) + u64::from(c.oversize) + u64::from(c.resyncs) + u64::from(c.runts)
}

fn log_send_error(e: UartError<Infallible>) {
    log!("backplane send error: {e}");
}

fn report(engine: &Engine, board: &Board, ev: Event) {
    match ev {
        Event::RoleChanged { role, term } => log!("role {role} term {term}"),
        Event::Promoted { term, config, in_sync } => {
            log!("promoted to MASTER term {term} config {config:?} in_sync {in_sync}");
            for (i, (name, _, _)) in APPS.iter().enumerate() {
                if let Some(t) = board.tables.get(i) {
                    log!("app {name} rows={} digest={:016x}", t.len(), t.digest());
                }
            }
            log!("active configuration: {} bytes", board.active.len());
        }
        Event::StreamSynced(stream) => log!("synced {}", host::name(stream)),
        Event::InSync(b) => log!("in-sync {b}"),
        Event::PeerUp(slot) => log!("peer {slot} up"),
        Event::PeerLost(slot) => log!("peer {slot} lost"),
        other => log!("event {other:?}"),
    }
    if engine.role() == Role::Master {
        // Nothing else to start: the tables are already the live state.
    }
}

/// Stops here for good: on QEMU, exits with a failure status.
fn fatal() -> ! {
    cortex_m_semihosting::debug::exit(cortex_m_semihosting::debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    cortex_m::interrupt::disable();
    log!("PANIC: {info}");
    fatal()
}
