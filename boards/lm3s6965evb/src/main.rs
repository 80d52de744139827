//! MSM firmware for the TI Stellaris LM3S6965 evaluation board, as QEMU's
//! `lm3s6965evb` machine emulates it: the `msm-checkpoint` engine with the
//! `devmgr <- cfgmgr <- vlan` applications, UART1 as the backplane (`msm-backplane`'s
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
mod auth;
mod card;
mod clock;
mod host;
mod log;
mod regs;
mod sd;
mod storage;
mod uart;

use core::convert::Infallible;
use core::mem::MaybeUninit;
use core::time::Duration;

use cortex_m_rt::entry;
use msm_backplane::Link;
use msm_backplane::{UartError, UartLink};
use msm_checkpoint::{AppRegistry, Config, ConfigChoice, Event, Node, Role, Slot};

use crate::apps::APPS;
use crate::host::FirmwareHost;
use crate::log::{KeyName, SlotName, TermName};

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

/// Everything large lives in statics (`&'static mut` from cortex-m-rt's
/// entry), not on the 64 KiB RAM's stack.
struct Statics {
    engine: &'static mut Engine,
    host: &'static mut FirmwareHost,
    link: &'static mut Backplane,
    rx: &'static mut [u8; MAX_FRAME],
    tx: &'static mut [u8; MAX_FRAME],
}

#[entry]
fn main() -> ! {
    static mut HOST: FirmwareHost = FirmwareHost::new();
    // MaybeUninit, not Option: a `None` with a niche is not all zeros and
    // would put 8 KiB in .data (flash and RAM); these go to .bss.
    static mut ENGINE: MaybeUninit<Engine> = MaybeUninit::uninit();
    static mut LINK: MaybeUninit<Backplane> = MaybeUninit::uninit();
    static mut RX_FRAME: [u8; MAX_FRAME] = [0; MAX_FRAME];
    static mut TX_FRAME: [u8; MAX_FRAME] = [0; MAX_FRAME];
    log!("msm-lm3s6965evb {=str} booting", env!("CARGO_PKG_VERSION"));
    let Some(core) = cortex_m::Peripherals::take() else {
        log!("fatal: core peripherals already taken");
        fatal()
    };
    let clock = clock::Clock::start(core.SYST);
    let uart1 = uart::Uart1::init();
    let host: &'static mut FirmwareHost = HOST;
    // The boot count is on the card from here on: before any frame goes out.
    let boot = storage::mount(host);
    let (incarnation, mut store) = (boot.incarnation, boot.store);
    let key = auth::from_card(boot.key);
    auth::time_tag(&clock);

    let mut reg = AppRegistry::<{ APPS.len() }>::new();
    for (name, schema, deps) in APPS {
        if let Err(e) = reg.register(name, schema, deps) {
            log!("fatal: registering {=str}: {}", name, defmt::Debug2Format(&e));
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
    cfg.incarnation = incarnation;

    // Wait for the chassis link (any byte), then start the engine.
    let link: &'static mut Backplane = LINK.write(Backplane::new(uart1));
    let start = clock.now();
    loop {
        let now = clock.now();
        if embedded_io::ReadReady::read_ready(link.inner_mut()).unwrap_or(false) {
            log!("backplane up after {=u128} ms", now.saturating_since(start).as_millis());
            break;
        }
        if now.saturating_since(start) >= Duration::from_millis(LINK_WAIT_MS) {
            log!("backplane silent for {=u64} ms: starting alone", LINK_WAIT_MS);
            break;
        }
        cortex_m::asm::wfi();
    }

    let engine: &'static mut Engine = match Engine::new(cfg, reg, clock.now()) {
        Ok(e) => ENGINE.write(e),
        Err(e) => {
            log!("fatal: engine configuration refused: {}", defmt::Display2Format(&e));
            fatal()
        }
    };
    // Before the first poll_transmit: not one frame goes out untagged.
    if let Some(key) = &key {
        engine.set_key(key);
    }
    log!(
        "node {} up: incarnation {=u32}, key {}, apps devmgr <- cfgmgr <- vlan, max frame {=usize}, \
         heartbeat 100 ms x 3, engine {=usize} bytes",
        SlotName(slot),
        incarnation,
        KeyName(engine.key_status().sending),
        MAX_FRAME,
        core::mem::size_of::<Engine>()
    );
    let mut s = Statics { engine, host, link, rx: RX_FRAME, tx: TX_FRAME };
    run(&clock, &mut s, &mut store)
}

fn run(clock: &clock::Clock, s: &mut Statics, store: &mut Option<storage::Store>) -> ! {
    let mut pending: Option<usize> = None;
    let mut last_bad = 0u64;
    let mut refused = 0u64;
    loop {
        let now = clock.now();
        let mut busy = false;

        // Receive every complete frame.
        loop {
            match s.link.recv(&mut s.rx[..]) {
                Ok(Some(n)) => {
                    busy = true;
                    if let Err(e) = s.engine.handle_frame(now, &s.rx[..n], s.host) {
                        // The first and every 100th: a module with another key
                        // would otherwise fill the log ten lines a second.
                        refused += 1;
                        if refused == 1 || refused % 100 == 0 {
                            log!("frame refused ({=u64} so far): {}", refused, defmt::Display2Format(&e));
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    log!("backplane receive error: {}", e);
                    break;
                }
            }
        }
        let bad = framing_errors(s.link);
        if bad != last_bad {
            log!(
                "backplane: {=u64} damaged frame(s) dropped so far, {=u32} byte(s) lost at the receive ring",
                bad,
                s.link.inner().overruns()
            );
            last_bad = bad;
        }

        if s.engine.poll_timeout().is_some_and(|t| t <= now) {
            s.engine.handle_timeout(now, s.host);
        }

        // Transmit: one frame may wait for room in the link's buffer.
        loop {
            let n = match pending.take() {
                Some(n) => n,
                None => match s.engine.poll_transmit(now, s.host, &mut s.tx[..]) {
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
            report(s.engine, s.host, ev);
        }
        if s.host.saved_dirty {
            s.host.saved_dirty = false;
            storage::save(store, &s.host.saved);
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
    log!("backplane send error: {}", e);
}

fn report(engine: &Engine, host: &mut FirmwareHost, ev: Event) {
    match ev {
        Event::RoleChanged { role, term } => log!("role {=str} term {}", role.as_str(), TermName(term)),
        Event::Promoted { term, config, in_sync } => {
            log!("promoted to MASTER term {} config {} in_sync {=bool}", TermName(term), config, in_sync);
            if config == ConfigChoice::OwnSaved {
                host.run_saved();
            }
            for (i, (name, _, _)) in APPS.iter().enumerate() {
                if let Some(t) = host.tables.get(i) {
                    log!("app {=str} rows={=usize} digest={=u64:016x}", name, t.len(), t.digest());
                    // Every row, so a takeover can be checked against the old master's journal.
                    for (key, value) in t.rows() {
                        log!("row {=str} {=u64} {}", name, key, apps::Hex(value));
                    }
                }
            }
            log!("active configuration: {=usize} bytes", host.active.len());
        }
        Event::StreamSynced(stream) => log!("synced {=str}", crate::host::name(stream)),
        Event::InSync(b) => log!("in-sync {=bool}", b),
        Event::PeerUp(slot) => log!("peer {} up", SlotName(slot)),
        Event::PeerLost(slot) => log!("peer {} lost", SlotName(slot)),
        other => log!("event {}", other),
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
    // The message only when it is a plain string: formatting it would link
    // core::fmt, which nothing else on the device needs.
    let message = info.message().as_str().unwrap_or("<formatted message>");
    match info.location() {
        Some(l) => defmt::error!("PANIC: {=str} at {=str}:{=u32}", message, l.file(), l.line()),
        None => defmt::error!("PANIC: {=str}", message),
    }
    fatal()
}
