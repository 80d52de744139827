//! The guest's initramfs: a gzip'ed newc cpio with the static busybox, the
//! modules (loaded by `/init` in the given order with `insmod`) and one
//! binary, `/bin/<name>` (its debug info stripped).
//!
//! `/init` (generated, see [`init_script`]) mounts proc, sys and devtmpfs,
//! loads the modules, configures each NIC from its MAC address (NIC k, as
//! [`guest`] wires it: 10.0.(2+k).15/24, the host at
//! 10.0.(2+k).2, the default route on NIC 0), prints `/proc/mtd`, then runs
//! the binary with the arguments the kernel command line has after `--` (so
//! one initramfs serves runs with different arguments), prints
//! `init: <name> exited with status N` and powers off. Everything goes to
//! the console (`console=ttyAMA0`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::cpio::Cpio;
use super::guest;
use super::kernel::Kernel;
use super::modules;
use crate::cmd;

/// A module to load, with its `insmod` parameters (e.g. `total_size=4096`).
#[derive(Debug, Clone)]
pub(crate) struct Module {
    pub(crate) path: PathBuf,
    pub(crate) params: Vec<String>,
}

/// The board's modules, each after its dependencies: virtio-mmio and
/// virtio-net for the NICs; CFI on QEMU's pflash through `physmap`, with
/// `cmdlinepart` leaving only the file-backed bank (see
/// [`guest::MTDPARTS`]), so it is `/dev/mtd0`; then `mtdram` with NOR
/// semantics (`/dev/mtd1`, 4 MiB, 256 KiB blocks like the pflash).
pub(crate) fn board_modules(kernel: &Kernel) -> Result<Vec<Module>> {
    let mtdparts = format!("mtdparts={}", guest::MTDPARTS);
    let params: &[(&str, &[&str])] = &[
        ("virtio_mmio", &[]),
        ("virtio_net", &[]),
        ("cfi_probe", &[]),
        ("cmdlinepart", &[&mtdparts]),
        ("physmap", &[]),
        ("mtdram", &["total_size=4096", "erase_size=256"]),
    ];
    let names: Vec<&str> = params.iter().map(|(name, _)| *name).collect();
    let order = modules::load_order(kernel, &names)?;
    Ok(order
        .into_iter()
        .map(|path| {
            let stem = path.file_stem().map(|s| s.to_string_lossy().replace('-', "_")).unwrap_or_default();
            let params = params.iter().find(|(name, _)| *name == stem).map_or(&[][..], |(_, p)| *p);
            Module { path, params: params.iter().map(|p| (*p).to_owned()).collect() }
        })
        .collect())
}

/// Writes the initramfs for `binary` (installed as `/bin/<its file name>`)
/// with `busybox` and `modules` to `out` (gzip'ed).
pub(crate) fn build(busybox: &Path, modules: &[Module], binary: &Path, out: &Path) -> Result<()> {
    let name = binary
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no usable file name", binary.display()))?;
    let mut cpio = Cpio::new();
    for dir in ["bin", "dev", "proc", "sys", "tmp", "run", "lib", "lib/modules"] {
        cpio.dir(dir);
    }
    // The kernel opens /dev/console for init before devtmpfs is mounted.
    cpio.char_device("dev/console", 0o600, 5, 1);
    cpio.file("bin/busybox", 0o755, &read(busybox)?);
    cpio.symlink("bin/sh", "busybox");
    let mut loaded = Vec::new();
    for module in modules {
        let file =
            module.path.file_name().and_then(|n| n.to_str()).context("a module without a file name")?;
        cpio.file(&format!("lib/modules/{file}"), 0o644, &read(&module.path)?);
        loaded.push((file.to_owned(), module.params.clone()));
    }
    cpio.file(&format!("bin/{name}"), 0o755, &without_debug_info(binary, out)?);
    cpio.file("init", 0o755, init_script(&loaded, name).as_bytes());
    gzip(&cpio.finish(), out)
}

/// `binary` without its DWARF (`aarch64-linux-gnu-strip --strip-debug`,
/// symbols kept for backtraces): the release profile's debug info is most
/// of a binary (25 MB of msm-node's 28), and the guest unpacks it into RAM.
fn without_debug_info(binary: &Path, out: &Path) -> Result<Vec<u8>> {
    let stripped = super::deb::suffixed(out, ".bin");
    let mut c = Command::new("aarch64-linux-gnu-strip");
    c.arg("--strip-debug").arg("-o").arg(&stripped).arg(binary);
    cmd::output(&mut c).with_context(|| format!("stripping {} failed", binary.display()))?;
    let bytes = read(&stripped)?;
    std::fs::remove_file(&stripped).with_context(|| format!("removing {}", stripped.display()))?;
    Ok(bytes)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// `gzip -n` of `bytes` into `out` (through `out.cpio`, removed after).
fn gzip(bytes: &[u8], out: &Path) -> Result<()> {
    let raw = super::deb::suffixed(out, ".cpio");
    std::fs::write(&raw, bytes).with_context(|| format!("writing {}", raw.display()))?;
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut c = Command::new("gzip");
    c.args(["-n", "-c"]).arg(&raw).stdout(Stdio::from(file));
    let status = c.status().context("starting gzip")?;
    std::fs::remove_file(&raw).with_context(|| format!("removing {}", raw.display()))?;
    if !status.success() {
        bail!("`{}` failed with {status}", cmd::display(&c));
    }
    Ok(())
}

/// The `/init` shell script: `modules` are (file name under
/// `/lib/modules`, insmod parameters), in load order; `binary` is under `/bin`.
pub(crate) fn init_script(modules: &[(String, Vec<String>)], binary: &str) -> String {
    let mut s = String::from(
        "#!/bin/sh\n\
         /bin/busybox --install -s /bin\n\
         export PATH=/bin\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         mount -t devtmpfs devtmpfs /dev\n\
         echo \"init: up $(cut -d' ' -f1 /proc/uptime) s after boot; loading modules\"\n",
    );
    for (file, params) in modules {
        let params: String = params.iter().map(|p| format!(" '{}'", p.replace('\'', r"'\''"))).collect();
        let _ = writeln!(s, "insmod /lib/modules/{file}{params} || echo \"init: insmod {file} failed\"");
    }
    s.push_str("ip link set lo up\nfor dev in /sys/class/net/eth*; do\n  [ -e \"$dev\" ] || continue\n");
    s.push_str("  name=${dev##*/}\n  mac=$(cat \"$dev/address\")\n  case \"$mac\" in\n");
    for k in 0..guest::MAX_NICS {
        let (mac, ip, host) = (guest::nic_mac(k), guest::nic_guest_ip(k), guest::nic_host_ip(k));
        let route = if k == 0 { format!("; ip route add default via {host}") } else { String::new() };
        let _ = writeln!(
            s,
            "    {mac}) ip addr add {ip}/24 dev \"$name\"; ip link set \"$name\" up{route}\n      \
             echo \"init: $name ($mac) is {ip}/24, host {host}\";;"
        );
    }
    s.push_str("    *) echo \"init: $name ($mac) unknown MAC, left down\";;\n  esac\ndone\n");
    let _ = write!(
        s,
        "echo \"init: /proc/mtd:\"\n\
         cat /proc/mtd\n\
         echo \"init: running /bin/{binary} $*\"\n\
         /bin/{binary} \"$@\"\n\
         echo \"init: {binary} exited with status $?\"\n\
         poweroff -f\n"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_loads_modules_in_order_and_passes_the_command_line_on() {
        let script = init_script(
            &[
                ("failover.ko".into(), vec![]),
                ("mtdram.ko".into(), vec!["total_size=4096".into(), "a(b)".into()]),
            ],
            "msm-node",
        );
        let failover = script.find("insmod /lib/modules/failover.ko").unwrap();
        let mtdram = script.find("insmod /lib/modules/mtdram.ko 'total_size=4096' 'a(b)' ||").unwrap();
        assert!(failover < mtdram);
        assert!(script.contains("/bin/msm-node \"$@\"\n"));
        assert!(script.contains("52:54:00:a6:40:00) ip addr add 10.0.2.15/24"));
        assert!(script.contains("ip route add default via 10.0.2.2"));
        assert!(script.contains("52:54:00:a6:40:01) ip addr add 10.0.3.15/24"));
        assert!(script.ends_with("poweroff -f\n"));
    }
}
