//! MSM firmware for the TI Stellaris LM3S6965 evaluation board, as QEMU's
//! `lm3s6965evb` machine emulates it: the `msm-checkpoint` engine with the
//! `devmgr <- cfgmgr <- vlan` applications, UART1 and UART2 as two redundant
//! backplane paths (`msm-backplane`'s `Redundant` over two UART links, each
//! over an interrupt-fed PL011 driver), defmt logs over semihosting, SysTick for
//! time, and the saved configuration on the SD card (SSI0) through
//! `msm-flash`'s config store.
//!
//! Boot: the node waits up to [`LINK_WAIT_MS`] for the first byte on either
//! backplane path before it starts its engine, like a module that waits for the
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
use msm_backplane::{FrameClass, PathState, Redundant, UartError, UartLink};
use msm_checkpoint::{AppRegistry, Config, ConfigChoice, Event, FrameError, Node, Role, Slot};

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
/// The engine's heartbeat interval.
const HEARTBEAT_MS: u64 = 100;
/// Backplane paths: UART1 (the primary), UART2.
const PATHS: usize = 2;
/// A path silent this long is down (a heartbeat missed on it), as on Linux:
/// data then moves to the other path.
const DEAD_AFTER_MS: u64 = HEARTBEAT_MS * 3 / 2;

/// Standbys this board mirrors its configuration to as master: none, it
/// pairs with one peer (a standby's side of the mirror is always there).
const STANDBYS: usize = 0;

type Engine = Node<{ APPS.len() }, WINDOW, BACKLOG, STANDBYS>;
/// One backplane path: a UART link over UART1 or UART2.
type Path = UartLink<uart::BoardUart, MAX_FRAME, LINK_TX>;
/// The backplane: heartbeats on both paths, data on the first alive.
type Backplane = Redundant<Path, PATHS>;

/// Heartbeats go on every path, everything else on the data path.
fn classify(frame: &[u8]) -> FrameClass {
    match msm_checkpoint::wire::is_heartbeat(frame) {
        true => FrameClass::EveryPath,
        false => FrameClass::DataPath,
    }
}

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
    let (clock, mut s, mut store) = boot(HOST, ENGINE, LINK, RX_FRAME, TX_FRAME);
    run(&clock, &mut s, &mut store)
}

/// Everything up to the main loop. Not inlined: its frame (the engine and
/// the links as they are built, about 20 KiB) is gone before [`run`] starts,
/// which would otherwise run on what is left of the stack.
#[inline(never)]
fn boot(
    host: &'static mut FirmwareHost,
    engine: &'static mut MaybeUninit<Engine>,
    link: &'static mut MaybeUninit<Backplane>,
    rx: &'static mut [u8; MAX_FRAME],
    tx: &'static mut [u8; MAX_FRAME],
) -> (clock::Clock, Statics, Option<storage::Store>) {
    log!("msm-lm3s6965evb {=str} booting", env!("CARGO_PKG_VERSION"));
    let Some(core) = cortex_m::Peripherals::take() else {
        log!("fatal: core peripherals already taken");
        fatal()
    };
    let clock = clock::Clock::start(core.SYST);
    let uart1 = uart::BoardUart::uart1();
    let uart2 = uart::BoardUart::uart2();
    // The boot count is on the card from here on: before any frame goes out.
    let boot = storage::mount(host);
    let (incarnation, store) = (boot.incarnation, boot.store);
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
    cfg.heartbeat_interval = Duration::from_millis(HEARTBEAT_MS);
    cfg.miss_count = 3;
    cfg.rto = Duration::from_millis(50);
    cfg.rto_max = Duration::from_millis(400);
    cfg.incarnation = incarnation;
    cfg.paths = PATHS as u8;

    // Wait for the chassis link (any byte on either path), then start the engine.
    let link = make_link(link, uart1, uart2);
    log!(
        "backplane: {=usize} paths (UART1, UART2): heartbeats on both, data on the first alive; \
         a path silent {=u64} ms is down",
        PATHS,
        DEAD_AFTER_MS
    );
    let start = clock.now();
    loop {
        let now = clock.now();
        if let Some(i) = link.links().position(|l| l.inner().rx_ready()) {
            log!(
                "backplane up after {=u128} ms (first byte on path {=usize}, UART{=usize})",
                now.saturating_since(start).as_millis(),
                i + 1,
                i + 1
            );
            break;
        }
        if now.saturating_since(start) >= Duration::from_millis(LINK_WAIT_MS) {
            log!("backplane silent for {=u64} ms: starting alone", LINK_WAIT_MS);
            break;
        }
        cortex_m::asm::wfi();
    }

    // No RNG on this board: the base of this boot's challenges mixes the boot
    // counter with when the chassis link came up (the peers' timing, not
    // ours), so no capture of an earlier boot answers them.
    cfg.boot_nonce = boot_nonce(incarnation, clock.now().as_micros());
    let engine: &'static mut Engine = match make_engine(engine, cfg, reg, clock.now()) {
        Ok(e) => e,
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
         heartbeat {=u64} ms x 3, engine {=usize} bytes",
        SlotName(slot),
        incarnation,
        KeyName(engine.key_status().sending),
        MAX_FRAME,
        HEARTBEAT_MS,
        core::mem::size_of::<Engine>()
    );
    (clock, Statics { engine, host, link, rx, tx }, store)
}

/// A 32-bit mix (the splitmix64 finaliser) of the boot counter and a time.
fn boot_nonce(incarnation: u32, micros: u64) -> u32 {
    let mut z = (u64::from(incarnation) << 32 ^ micros).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as u32
}

/// The backplane, in its static. Not inlined, nor is [`make_engine`]: each
/// builds a large value on the stack, one after the other, not both at once.
#[inline(never)]
fn make_link(
    slot: &'static mut MaybeUninit<Backplane>,
    uart1: uart::BoardUart,
    uart2: uart::BoardUart,
) -> &'static mut Backplane {
    let paths = [Path::new(uart1), Path::new(uart2)];
    match Backplane::new(paths, classify, Duration::from_millis(DEAD_AFTER_MS)) {
        Some(b) => slot.write(b),
        None => fatal(),
    }
}

/// The engine, in its static.
#[inline(never)]
fn make_engine(
    slot: &'static mut MaybeUninit<Engine>,
    cfg: Config,
    reg: AppRegistry<{ APPS.len() }>,
    now: msm_time::Instant,
) -> Result<&'static mut Engine, msm_checkpoint::ConfigError> {
    Ok(slot.write(Engine::new(cfg, reg, now)?))
}

fn run(clock: &clock::Clock, s: &mut Statics, store: &mut Option<storage::Store>) -> ! {
    let mut pending: Option<usize> = None;
    let mut last_bad = 0u64;
    let mut refused = 0u64;
    let mut states = [PathState::Unknown; PATHS];
    loop {
        let now = clock.now();
        let mut busy = false;

        // The paths' health: when data moved to another path, what was in
        // flight on the old one goes again now.
        if s.link.tick(now) {
            let to = s.link.data_path() + 1;
            log!("backplane: data on path {=usize} (UART{=usize}) now", to, to);
            s.engine.link_changed(now);
        }
        for (i, was) in states.iter_mut().enumerate() {
            let state = s.link.state(i);
            if state != *was {
                log!("backplane path {=usize} (UART{=usize}) {=str}", i + 1, i + 1, state_name(state));
                *was = state;
            }
        }

        // Receive every complete frame.
        loop {
            match s.link.recv(&mut s.rx[..]) {
                Ok(Some(n)) => {
                    busy = true;
                    match s.engine.handle_frame(now, &s.rx[..n], s.host) {
                        // A heartbeat's copy from the other path.
                        Ok(()) | Err(FrameError::Duplicate { .. }) => {}
                        Err(e) => {
                            s.link.refused();
                            // The first and every 100th: a module with another key
                            // would otherwise fill the log ten lines a second.
                            refused += 1;
                            if refused == 1 || refused.is_multiple_of(100) {
                                log!("frame refused ({=u64} so far): {}", refused, defmt::Display2Format(&e));
                            }
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
                overruns(s.link)
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

/// Damaged frames dropped on both paths.
fn framing_errors(link: &Backplane) -> u64 {
    link.links()
        .map(|l| {
            let c = l.counters();
            u64::from(c.bad_crc) + u64::from(c.oversize) + u64::from(c.resyncs) + u64::from(c.runts)
        })
        .sum()
}

/// Bytes both receive rings dropped.
fn overruns(link: &Backplane) -> u32 {
    link.links().map(|l| l.inner().overruns()).fold(0, u32::wrapping_add)
}

fn state_name(state: PathState) -> &'static str {
    match state {
        // As the Linux node's `show switch` says them.
        PathState::Up => "up",
        PathState::Down => "DOWN",
        PathState::Unknown => "never heard",
    }
}

fn log_send_error(e: UartError<Infallible>) {
    log!("backplane send error: {}", e);
}

fn report(engine: &Engine, host: &mut FirmwareHost, ev: Event) {
    match ev {
        Event::RoleChanged { role, term } => log!("role {=str} term {}", role.as_str(), TermName(term)),
        Event::Promoted { term, config, in_sync, apps, .. } => {
            log!(
                "promoted to MASTER term {} config {} in_sync {=bool} apps {=str}",
                TermName(term),
                config,
                in_sync,
                apps.as_str()
            );
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
