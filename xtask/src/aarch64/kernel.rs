//! Debian's arm64 kernel (the image package `linux-image-arm64:arm64` depends
//! on) and `busybox-static:arm64`, downloaded into `cache/debs` and unpacked
//! privately under the cache, never installed on the host. Both are keyed by
//! package version: a second run downloads and unpacks nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::deb::{self, Package};
use crate::cmd;

/// The metapackage that names the current kernel ABI.
const KERNEL_META: &str = "linux-image-arm64";

/// An unpacked kernel image package.
#[derive(Debug, Clone)]
pub(crate) struct Kernel {
    /// `6.1.0-57-arm64`: the guest's `uname -r`, the directory under `lib/modules`.
    pub(crate) release: String,
    /// Debian's version of the kernel packages (`6.1.192-3`); the headers
    /// and source used for out-of-tree modules must have the same one.
    pub(crate) version: String,
    /// Where the package is unpacked (`boot/`, `lib/modules/`).
    pub(crate) root: PathBuf,
}

impl Kernel {
    /// The image QEMU boots (`-kernel`).
    pub(crate) fn image(&self) -> PathBuf {
        self.root.join("boot").join(format!("vmlinuz-{}", self.release))
    }

    /// `lib/modules/<release>` of the unpacked package.
    pub(crate) fn modules_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }

    /// A cache key: release and package version (`6.1.0-57-arm64_6.1.192-3`).
    pub(crate) fn key(&self) -> String {
        format!("{}_{}", self.release, self.version)
    }
}

/// The kernel `linux-image-arm64:arm64` depends on, unpacked under `cache`
/// (downloaded and depmod'ed the first time only).
pub(crate) fn fetch(cache: &Path) -> Result<Kernel> {
    let (package, release) = current_image(cache)?;
    let key = format!("{release}_{}", package.version);
    let root = cache.join(format!("kernel-{key}"));
    let kernel = Kernel { release, version: package.version.clone(), root };
    // depmod writes modules.dep (the package has none): the mark of a finished fetch.
    if kernel.modules_dir().join("modules.dep").is_file() {
        return Ok(kernel);
    }
    let start = Instant::now();
    if !kernel.root.is_dir() {
        let deb = package.download(&cache.join("debs"))?;
        deb::unpack_once(&[deb], &kernel.root)?;
    }
    if !kernel.image().is_file() {
        bail!("{} has no {}", package.name, kernel.image().display());
    }
    depmod(&kernel)?;
    println!("aarch64: kernel {} unpacked in {:.1} s", kernel.key(), start.elapsed().as_secs_f64());
    Ok(kernel)
}

/// The image package the metapackage depends on, and its release.
fn current_image(cache: &Path) -> Result<(Package, String)> {
    let show = deb::show(cache, &format!("{KERNEL_META}:arm64"))?;
    let depends = deb::field(&show, "Depends").context("linux-image-arm64:arm64 has no Depends")?;
    let name = depends
        .split([',', '|'])
        .map(|d| d.split_whitespace().next().unwrap_or_default())
        .find(|d| d.starts_with("linux-image-"))
        .with_context(|| format!("no linux-image-* among linux-image-arm64's dependencies `{depends}`"))?;
    let release = name.trim_start_matches("linux-image-").trim_end_matches("-unsigned").to_owned();
    Ok((Package::candidate(cache, name, "arm64")?, release))
}

/// `depmod -b <root> <release>`: `modules.dep` for the load order, with any
/// modules added under `lib/modules/<release>/extra`.
pub(crate) fn depmod(kernel: &Kernel) -> Result<()> {
    let mut c = Command::new(depmod_program());
    c.arg("-b").arg(&kernel.root).arg(&kernel.release).stdout(Stdio::null());
    cmd::run(&mut c).with_context(|| format!("depmod for {} failed", kernel.root.display()))
}

/// `depmod` from `PATH`, else `/usr/sbin` or `/sbin` (not on a user's `PATH`).
fn depmod_program() -> PathBuf {
    ["/usr/sbin/depmod", "/sbin/depmod"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("depmod"))
}

/// The static arm64 busybox (`busybox-static:arm64`), unpacked under `cache`.
pub(crate) fn busybox(cache: &Path) -> Result<PathBuf> {
    let package = Package::candidate(cache, "busybox-static", "arm64")?;
    let root = cache.join(format!("busybox-{}", package.version.replace(':', "_")));
    let bin = root.join("bin/busybox");
    if bin.is_file() {
        return Ok(bin);
    }
    let deb = package.download(&cache.join("debs"))?;
    deb::unpack_once(&[deb], &root)?;
    if !bin.is_file() {
        bail!("busybox-static:arm64 has no {}", bin.display());
    }
    Ok(bin)
}
