//! `msm-aarch64`: the MSM node on an aarch64 Linux module. Its flash is a
//! kernel MTD NOR device (`--mtd`, QEMU's pflash through the CFI and
//! physmap drivers under `cargo xtask qemu --board aarch64-msm`): the
//! settings and both configuration files in its partitions, the chassis
//! key in its last erase block (written by `cargo xtask provision`). The
//! backplane is UDP over the module's NICs (`--backplane udp:...`, twice for
//! two paths). Exit codes: `msm_runtime::service`.

mod flash_check;

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
/// The settings and configuration stores: the flash without its key block.
type Stores = Flash<Partition<Mtd>>;

#[derive(Parser, Debug)]
#[command(name = "msm-aarch64", about = "The MSM node on an aarch64 Linux module")]
struct Args {
    #[command(flatten)]
    node: NodeArgs,
    /// The MTD device of the module's flash.
    #[arg(long, default_value = "/dev/mtd0")]
    mtd: PathBuf,
    /// Measure the flash instead of running the node: mount it, save a
    /// configuration of this many bytes to primary.cfg, mount it again and
    /// read it back, print the times, exit (the board's xtask runs it on a
    /// scratch flash).
    #[arg(long, value_name = "BYTES")]
    bench_flash: Option<usize>,
    /// Instead of running the node: check primary.cfg (the last save of a
    /// previous soak must be whole), then save new configurations for ever
    /// (the board's xtask cuts the power, SIGKILLing QEMU, at random moments).
    #[arg(long)]
    soak_flash: bool,
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match service::begin::<Args>("msm-aarch64") {
        Ok(args) => service::exit_code("msm-aarch64", run(args)),
        Err(code) => code,
    }
}

/// The flash of the module without its key block: `Flash` on the rest.
pub(crate) fn open_stores(
    mtd_path: &std::path::Path,
) -> anyhow::Result<(Stores, Option<[u8; key_block::KEY_BYTES]>)> {
    let mut mtd = Mtd::open(mtd_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    // The last erase block holds the chassis key; the stores get the rest.
    let key_at = u32::try_from(mtd.capacity()).unwrap_or(u32::MAX).saturating_sub(ERASE);
    let mut block = [0u8; key_block::LEN];
    mtd.read(key_at, &mut block).map_err(|e| anyhow::anyhow!("{e}"))?;
    let key = match key_block::decode(&block) {
        Ok(k) => Some(k),
        Err(e) => {
            log::warn!("{}: {} at offset {key_at:#x}", mtd_path.display(), e.reason());
            None
        }
    };
    let stores = Partition::new(mtd, "stores", 0, key_at).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((Flash::mount(stores, mtd_path)?, key))
}

fn run(args: Args) -> Result<Option<Exit>, Failure> {
    let flash_err = |error: anyhow::Error| Failure { code: EXIT_FLASH, error };
    if let Some(bytes) = args.bench_flash {
        return flash_check::bench(&args.mtd, bytes).map(|()| None).map_err(flash_err);
    }
    if args.soak_flash {
        return flash_check::soak(&args.mtd).map(|()| None).map_err(flash_err);
    }
    let mask = service::block_stop_signals()?;
    let bound = Service::bind(&args.node)?;
    let (flash, key) = open_stores(&args.mtd).map_err(flash_err)?;
    let bound = match key.map(Key::from_secret) {
        Some(Ok(k)) => {
            log::info!("chassis key from {}", args.mtd.display());
            bound.with_key(k)
        }
        Some(Err(e)) => {
            return Err(flash_err(anyhow::anyhow!("{}: the chassis key: {e}", args.mtd.display())));
        }
        None => bound,
    };
    bound.start(flash, &mask)?.run()
}
