//! Kernel modules for the guest: the MTD drivers Debian's arm64 kernel lacks,
//! built out of tree, and the load order of any set of modules.
//!
//! Debian builds MTD core (`mtd`, `chipreg`) as modules but none of the device
//! drivers a VM can use. They are built here from Debian's own
//! `linux-source-<major.minor>` against `linux-headers-<release>` (+ `-common`,
//! and the host's `linux-kbuild-<major.minor>`), all of the kernel's exact
//! version, unpacked privately:
//! - `cfi_probe`, `cfi_util`, `gen_probe`, `cfi_cmdset_0001`: the Intel/Sharp
//!   CFI command set QEMU's `pflash_cfi01` speaks;
//! - `physmap` with `CONFIG_MTD_PHYSMAP_OF`, so it binds to the `cfi-flash`
//!   node of QEMU virt's device tree;
//! - `cmdlinepart`, so `mtdparts=` splits that node into the two banks;
//! - `mtdram` patched to NOR semantics: type `MTD_NORFLASH`, erasable, and a
//!   write ANDs into the old contents (a 0 bit never becomes 1 but by erase).
//!
//! Unsigned modules load (the kernel only marks itself tainted). The built
//! `.ko` files are cached per kernel (release and version) and copied into
//! the unpacked kernel's `lib/modules/<release>/extra`, so `depmod` knows
//! their dependencies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::deb::{self, Package};
use super::kernel::{self, Kernel};
use super::toolchain;
use crate::cmd;

/// Bumped when the build below changes, so a cached build is not reused.
const RECIPE: &str = "mtd1";

/// Sources copied from `drivers/mtd` into the build directory.
const SOURCES: &[&str] = &[
    "chips/cfi_probe.c",
    "chips/cfi_util.c",
    "chips/gen_probe.c",
    "chips/cfi_cmdset_0001.c",
    "chips/fwh_lock.h",
    "maps/physmap-core.c",
    "maps/physmap-bt1-rom.h",
    "maps/physmap-gemini.h",
    "maps/physmap-ixp4xx.h",
    "maps/physmap-versatile.h",
    "parsers/cmdlinepart.c",
    "devices/mtdram.c",
];

/// The out-of-tree build: every module, and the options the kernel's
/// configuration leaves unset.
const KBUILD: &str = "\
obj-m := cfi_probe.o cfi_util.o gen_probe.o cfi_cmdset_0001.o physmap.o cmdlinepart.o mtdram.o
physmap-y := physmap-core.o
ccflags-y := -DCONFIG_MTD_PHYSMAP_OF=1 -DCONFIG_MTD_CFI_INTELEXT=1 \\
	-DCONFIG_MTDRAM_TOTAL_SIZE=4096 -DCONFIG_MTDRAM_ERASE_SIZE=128
";

/// The modules built here (file stems of the `.ko` files).
pub(crate) const MTD_MODULES: &[&str] =
    &["cfi_probe", "cfi_util", "gen_probe", "cfi_cmdset_0001", "physmap", "cmdlinepart", "mtdram"];

/// `mtdram.c` edits for NOR semantics: (what, the original text, the new text).
const MTDRAM_NOR: &[(&str, &str, &str)] = &[
    ("type", "mtd->type = MTD_RAM;", "mtd->type = MTD_NORFLASH;"),
    ("flags", "mtd->flags = MTD_CAP_RAM;", "mtd->flags = MTD_CAP_NORFLASH;"),
    (
        "write",
        "memcpy((char *)mtd->priv + to, buf, len);",
        "{ size_t i; u8 *p = (u8 *)mtd->priv + to; for (i = 0; i < len; i++) p[i] &= buf[i]; }",
    ),
    ("name", "\"mtdram test device\"", "\"mtdram NOR test device\""),
];

/// Builds the MTD modules for `kernel` (once per kernel and [`RECIPE`]),
/// installs them into its `lib/modules/<release>/extra` and re-runs depmod;
/// returns the directory of the `.ko` files.
pub(crate) fn build(kernel: &Kernel, cache: &Path) -> Result<PathBuf> {
    let out = cache.join(format!("mtd-modules-{}-{RECIPE}", kernel.key()));
    if !MTD_MODULES.iter().all(|m| out.join(format!("{m}.ko")).is_file()) {
        let start = Instant::now();
        toolchain::ensure()?;
        let source = mtd_source(kernel, cache)?;
        let headers = headers(kernel, cache)?;
        compile(&source, &headers, &out)?;
        println!("aarch64: MTD modules built in {:.1} s: {}", start.elapsed().as_secs_f64(), out.display());
    }
    install(kernel, &out)?;
    Ok(out)
}

/// `<major>.<minor>` of a release (`6.1` of `6.1.0-57-arm64`).
fn series(release: &str) -> Result<String> {
    let mut parts = release.split(['.', '-']);
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => Ok(format!("{major}.{minor}")),
        _ => bail!("cannot read a version from the kernel release `{release}`"),
    }
}

/// `drivers/mtd` of `linux-source-<series>` at the kernel's version.
fn mtd_source(kernel: &Kernel, cache: &Path) -> Result<PathBuf> {
    let series = series(&kernel.release)?;
    let dest = cache.join(format!("linux-source-{}", kernel.version));
    let mtd = dest.join("drivers/mtd");
    if mtd.is_dir() {
        return Ok(mtd);
    }
    let deb = Package::exact(&format!("linux-source-{series}"), "all", &kernel.version)
        .download(&cache.join("debs"))?;
    // The package holds one tarball of the whole tree: unpack it aside, take drivers/mtd.
    let unpacked = deb::suffixed(&dest, ".deb.partial");
    if unpacked.exists() {
        std::fs::remove_dir_all(&unpacked)?;
    }
    deb::unpack_once(&[deb], &unpacked)?;
    let tarball = unpacked.join(format!("usr/src/linux-source-{series}.tar.xz"));
    let partial = deb::partial_of(&dest);
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    std::fs::create_dir_all(&partial)?;
    let mut c = Command::new("tar");
    c.arg("-xJf")
        .arg(&tarball)
        .arg("-C")
        .arg(&partial)
        .arg("--strip-components=1")
        .arg(format!("linux-source-{series}/drivers/mtd"));
    cmd::run(&mut c).with_context(|| format!("extracting drivers/mtd from {} failed", tarball.display()))?;
    std::fs::remove_dir_all(&unpacked).with_context(|| format!("removing {}", unpacked.display()))?;
    std::fs::rename(&partial, &dest)?;
    Ok(mtd)
}

/// The kernel's build tree: `linux-headers-<release>` (arm64), its `-common`
/// (the source side) and the host's `linux-kbuild-<series>` (fixdep, modpost),
/// unpacked together so the headers' relative `scripts` link resolves; the
/// Makefile's absolute `/usr/src/...` include is pointed at the private copy.
fn headers(kernel: &Kernel, cache: &Path) -> Result<PathBuf> {
    let series = series(&kernel.release)?;
    let root = cache.join(format!("headers-{}", kernel.key()));
    let tree = root.join("usr/src").join(format!("linux-headers-{}", kernel.release));
    let common = kernel.release.rsplit_once('-').map_or(kernel.release.as_str(), |(abi, _)| abi);
    if !tree.join("Makefile").is_file() {
        let debs = cache.join("debs");
        let packages = [
            Package::exact(&format!("linux-headers-{}", kernel.release), "arm64", &kernel.version),
            Package::exact(&format!("linux-headers-{common}-common"), "all", &kernel.version),
            Package::exact(&format!("linux-kbuild-{series}"), &deb::host_arch()?, &kernel.version),
        ];
        let files = packages.iter().map(|p| p.download(&debs)).collect::<Result<Vec<_>>>()?;
        deb::unpack_once(&files, &root)?;
    }
    let makefile = tree.join("Makefile");
    let text =
        std::fs::read_to_string(&makefile).with_context(|| format!("reading {}", makefile.display()))?;
    if text.contains("include /usr/src/") {
        let private = format!("include {}/usr/src/", root.display());
        std::fs::write(&makefile, text.replace("include /usr/src/", &private))
            .with_context(|| format!("writing {}", makefile.display()))?;
    }
    Ok(tree)
}

/// Copies [`SOURCES`], writes the Kbuild file, patches `mtdram.c` and runs
/// kbuild; the `.ko` files end up in `out`.
fn compile(mtd: &Path, headers: &Path, out: &Path) -> Result<()> {
    let build = deb::suffixed(out, ".build");
    if build.exists() {
        std::fs::remove_dir_all(&build)?;
    }
    std::fs::create_dir_all(&build)?;
    for source in SOURCES {
        let from = mtd.join(source);
        let name = from.file_name().context("a source without a file name")?;
        std::fs::copy(&from, build.join(name)).with_context(|| format!("copying {}", from.display()))?;
    }
    patch_mtdram(&build.join("mtdram.c"))?;
    std::fs::write(build.join("Kbuild"), KBUILD)?;
    let mut c = Command::new("make");
    c.arg("-C").arg(headers).arg(format!("M={}", build.display())).args([
        "ARCH=arm64",
        "CROSS_COMPILE=aarch64-linux-gnu-",
        "-j2",
        "modules",
    ]);
    cmd::run(&mut c).context("building the MTD modules failed")?;
    let partial = deb::partial_of(out);
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    std::fs::create_dir_all(&partial)?;
    for module in MTD_MODULES {
        let ko = build.join(format!("{module}.ko"));
        std::fs::copy(&ko, partial.join(format!("{module}.ko")))
            .with_context(|| format!("the build left no {}", ko.display()))?;
    }
    if out.exists() {
        std::fs::remove_dir_all(out)?;
    }
    std::fs::rename(&partial, out)?;
    std::fs::remove_dir_all(&build)?;
    Ok(())
}

/// Applies [`MTDRAM_NOR`]; each edit must match exactly once.
fn patch_mtdram(path: &Path) -> Result<()> {
    let mut text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    for (what, from, to) in MTDRAM_NOR {
        let found = text.matches(from).count();
        if found != 1 {
            bail!("mtdram.c: the {what} edit expects `{from}` once, found it {found} times");
        }
        text = text.replace(from, to);
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Copies the `.ko` files of `dir` into the kernel's `lib/modules/<release>/extra`
/// and re-runs depmod when any changed.
fn install(kernel: &Kernel, dir: &Path) -> Result<()> {
    let extra = kernel.modules_dir().join("extra");
    std::fs::create_dir_all(&extra)?;
    let mut changed = false;
    for module in MTD_MODULES {
        let (from, to) = (dir.join(format!("{module}.ko")), extra.join(format!("{module}.ko")));
        let same =
            std::fs::read(&to).ok().is_some_and(|old| std::fs::read(&from).is_ok_and(|new| new == old));
        if !same {
            std::fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
            changed = true;
        }
    }
    if changed {
        kernel::depmod(kernel)?;
    }
    Ok(())
}

/// The module files to load for `wanted` (names, `-` and `_` alike), each
/// after its dependencies (from `modules.dep`); built-in modules are skipped.
pub(crate) fn load_order(kernel: &Kernel, wanted: &[&str]) -> Result<Vec<PathBuf>> {
    let dir = kernel.modules_dir();
    let dep_file = dir.join("modules.dep");
    let deps = parse_modules_dep(
        &std::fs::read_to_string(&dep_file).with_context(|| format!("reading {}", dep_file.display()))?,
    );
    let builtin = std::fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
    let builtin: Vec<String> = builtin.lines().map(module_name).collect();
    let by_name: BTreeMap<String, &String> = deps.keys().map(|path| (module_name(path), path)).collect();
    let mut order: Vec<&String> = Vec::new();
    for name in wanted {
        let name = name.replace('-', "_");
        if builtin.contains(&name) {
            continue;
        }
        let path =
            by_name.get(&name).with_context(|| format!("no module `{name}` in {}", dep_file.display()))?;
        visit(path, &deps, &mut order, &mut Vec::new())?;
    }
    Ok(order.into_iter().map(|p| dir.join(p)).collect())
}

/// Depth first: the dependencies of `path`, then `path`.
fn visit<'a>(
    path: &'a String,
    deps: &'a BTreeMap<String, Vec<String>>,
    order: &mut Vec<&'a String>,
    stack: &mut Vec<&'a String>,
) -> Result<()> {
    if order.contains(&path) {
        return Ok(());
    }
    if stack.contains(&path) {
        bail!("modules.dep has a dependency cycle through {path}");
    }
    stack.push(path);
    for dep in deps.get(path).into_iter().flatten() {
        let (key, _) =
            deps.get_key_value(dep).with_context(|| format!("{path} needs {dep}, not in modules.dep"))?;
        visit(key, deps, order, stack)?;
    }
    stack.pop();
    order.push(path);
    Ok(())
}

/// `path: dep dep` lines of `modules.dep`.
fn parse_modules_dep(text: &str) -> BTreeMap<String, Vec<String>> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(path, deps)| (path.trim().to_owned(), deps.split_whitespace().map(str::to_owned).collect()))
        .collect()
}

/// `virtio_net` of `kernel/drivers/net/virtio_net.ko`.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split('.').next().unwrap_or(file).replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_load_first_and_once() {
        let deps = parse_modules_dep(
            "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\n\
             kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
             kernel/net/core/failover.ko:\n",
        );
        let mut order = Vec::new();
        for path in ["kernel/drivers/net/virtio_net.ko", "kernel/net/core/failover.ko"] {
            let (key, _) = deps.get_key_value(path).unwrap();
            visit(key, &deps, &mut order, &mut Vec::new()).unwrap();
        }
        let names: Vec<String> = order.iter().map(|p| module_name(p)).collect();
        assert_eq!(names, ["failover", "net_failover", "virtio_net"]);
        assert_eq!(series("6.1.0-57-arm64").unwrap(), "6.1");
    }
}
