//! An aarch64 Linux MSM board under QEMU (`qemu-system-aarch64 -M virt`), built
//! from Debian's packages on a machine without rustup targets (see
//! `boards/aarch64-msm/README.md`):
//!
//! - [`toolchain`]: host packages (apt-get when missing and root) and
//!   [`build_static`]: a workspace binary for `aarch64-unknown-linux-gnu`,
//!   static, with Debian's rustc and `-Zbuild-std=std,panic_abort`.
//! - [`kernel`]: Debian's arm64 kernel and `busybox-static`, downloaded and
//!   unpacked privately (never installed on the host).
//! - [`modules`]: the MTD drivers the guest needs (CFI flash on QEMU's pflash
//!   through `physmap`, `cmdlinepart`, `mtdram` with NOR semantics) built out
//!   of tree from `linux-source-6.1`; module load order from `depmod`.
//! - [`initramfs`]: busybox, modules and one binary; `/init` passes the kernel
//!   command line after `--` to the binary and powers off when it exits.
//! - [`netns`] and [`guest`]: QEMU in a private network namespace with one or
//!   two user-net NICs (the backplane paths), the flash bank on a host file
//!   that survives restarts, the serial console captured and waited on.
//! - [`smoke`]: all of the above end to end with a throwaway guest program.
//! - [`flash_soak`]: power cuts (SIGKILL of QEMU) during saves on the
//!   board's MTD flash.
//! - [`interop`]: the board (`boards/aarch64-msm`) and the x86 node as one
//!   chassis; the board alone; provisioning its chassis key.
//!
//! Everything is cached under `target/aarch64` (`cache/` for Debian's
//! packages and the built modules; the cargo target dir for the builds).

pub(crate) mod cpio;
pub(crate) mod deb;
pub(crate) mod flash_soak;
pub(crate) mod guest;
pub(crate) mod initramfs;
pub(crate) mod interop;
pub(crate) mod kernel;
pub(crate) mod modules;
pub(crate) mod netns;
pub(crate) mod smoke;
pub(crate) mod toolchain;

use std::path::PathBuf;

use crate::cross;

pub(crate) use toolchain::build_static;

/// `target/aarch64` (under `$CARGO_TARGET_DIR` when set): the cargo target
/// dir of [`build_static`]; its `cache/` holds Debian's packages, the
/// unpacked kernel and the built modules (what [`kernel::fetch`] and
/// [`modules::build`] take as `cache`).
pub(crate) fn dir() -> PathBuf {
    cross::cross_target_dir().with_file_name("aarch64")
}
