//! `msm-aarch64`: the MSM node on an aarch64 Linux module. Its flash is a
//! kernel MTD NOR device (`--mtd`, QEMU's pflash through the CFI and
//! physmap drivers under `cargo xtask qemu --board aarch64-msm`): the
//! settings and both configuration files in its partitions, the chassis
//! key in its last erase block (written by `cargo xtask provision`). The
//! backplane is UDP over the module's NICs (`--backplane udp:...`, twice for
//! two paths). Exit codes: `msm_runtime::service`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use embedded_storage::nor_flash::ReadNorFlash;
use msm_checkpoint::Key;
use msm_flash::{Partition, key_block};
use msm_flash_linux::MtdFlash;
use msm_runtime::flash::Flash;
use msm_runtime::node::Exit;
use msm_runtime::service::{self, EXIT_FLASH, Failure, NodeArgs, Service};

/// The module's flash: NOR in 256 KiB erase blocks, programmed in aligned
/// 16-byte words. MEMGETINFO says a NOR chip programs single bytes, but the
/// kernel's CFI driver programs whole bus words, padding the other bytes
/// with 0xFF: on real NOR (AND) that leaves them as they were; QEMU's pflash
/// overwrites, so a lone byte would erase its programmed neighbours (a
/// commit marker after an unaligned trailer did: "bad trailer" at the next
/// boot). Whole aligned words never share a bus word with another write.
type Mtd = MtdFlash<16, { 256 * 1024 }>;
const ERASE: u32 = 256 * 1024;

#[derive(Parser, Debug)]
#[command(name = "msm-aarch64", about = "The MSM node on an aarch64 Linux module")]
struct Args {
    #[command(flatten)]
    node: NodeArgs,
    /// The MTD device of the module's flash.
    #[arg(long, default_value = "/dev/mtd0")]
    mtd: PathBuf,
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!("msm-aarch64: transparent huge pages stay on ({e})");
    }
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::from(e.use_stderr()));
        }
    };
    service::log_init();
    service::exit_code("msm-aarch64", run(args))
}

fn run(args: Args) -> Result<Option<Exit>, Failure> {
    let flash_err = |error: anyhow::Error| Failure { code: EXIT_FLASH, error };
    let mask = service::block_stop_signals()?;
    let bound = Service::bind(&args.node)?;
    let mut mtd = Mtd::open(&args.mtd).map_err(|e| flash_err(anyhow::anyhow!("{e}")))?;
    // The last erase block holds the chassis key; the stores get the rest.
    let key_at = u32::try_from(mtd.capacity()).unwrap_or(u32::MAX).saturating_sub(ERASE);
    let mut block = [0u8; key_block::LEN];
    mtd.read(key_at, &mut block).map_err(|e| flash_err(anyhow::anyhow!("{e}")))?;
    let bound = match key_block::decode(&block).map(Key::from_secret) {
        Ok(Ok(k)) => {
            log::info!("chassis key from {} (offset {key_at:#x})", args.mtd.display());
            bound.with_key(k)
        }
        Ok(Err(e)) => return Err(flash_err(anyhow::anyhow!("{}: the chassis key: {e}", args.mtd.display()))),
        Err(e) => {
            log::warn!("{}: {} at offset {key_at:#x}", args.mtd.display(), e.reason());
            bound
        }
    };
    let stores = Partition::new(mtd, "stores", 0, key_at).map_err(|e| flash_err(anyhow::anyhow!("{e}")))?;
    let flash = Flash::mount(stores, &args.mtd).map_err(flash_err)?;
    bound.start(flash, &mask)?.run()
}
