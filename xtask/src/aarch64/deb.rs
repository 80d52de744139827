//! Debian packages fetched with `apt-get download` into a private cache and
//! unpacked with `dpkg-deb -x`, never installed on the host. A package already
//! in the cache is not downloaded again; a directory already unpacked is kept.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::cmd;

/// One binary package: `name:arch` at `version`.
#[derive(Debug, Clone)]
pub(crate) struct Package {
    pub(crate) name: String,
    pub(crate) arch: String,
    pub(crate) version: String,
}

impl Package {
    /// `name:arch` at apt's candidate version (see [`show`] for `cache`).
    pub(crate) fn candidate(cache: &Path, name: &str, arch: &str) -> Result<Self> {
        let spec = format!("{name}:{arch}");
        let show = show(cache, &spec)?;
        let version =
            field(&show, "Version").with_context(|| format!("`apt-cache show {spec}` has no Version"))?;
        Ok(Self { name: name.to_owned(), arch: arch.to_owned(), version })
    }

    /// `name:arch` at exactly `version`.
    pub(crate) fn exact(name: &str, arch: &str, version: &str) -> Self {
        Self { name: name.to_owned(), arch: arch.to_owned(), version: version.to_owned() }
    }

    /// The file name `apt-get download` gives it (an epoch's `:` as `%3a`).
    fn file_name(&self) -> String {
        format!("{}_{}_{}.deb", self.name, self.version.replace(':', "%3a"), self.arch)
    }

    /// The `.deb` in `debs`, downloaded unless it is there already.
    pub(crate) fn download(&self, debs: &Path) -> Result<PathBuf> {
        let deb = debs.join(self.file_name());
        if deb.is_file() {
            return Ok(deb);
        }
        std::fs::create_dir_all(debs).with_context(|| format!("creating {}", debs.display()))?;
        let spec = format!("{}:{}={}", self.name, self.arch, self.version);
        // As root apt would drop to `_apt`, which cannot write here.
        let mut c = Command::new("apt-get");
        c.current_dir(debs).args(["-q", "-o", "APT::Sandbox::User=root", "download", &spec]);
        cmd::run(&mut c).with_context(|| format!("downloading {spec} failed"))?;
        if !deb.is_file() {
            bail!("`apt-get download {spec}` did not leave {}", deb.display());
        }
        Ok(deb)
    }
}

/// apt's package lists: their newest change is when apt's answers may change.
const APT_LISTS: &str = "/var/lib/apt/lists";

/// The text of `apt-cache show --no-all-versions spec` (the candidate only),
/// kept in `cache/apt/<spec>` until apt's lists change: without apt's binary
/// cache (Debian's docker images disable it) each `apt-cache` call parses
/// every list, about 3 s here.
pub(crate) fn show(cache: &Path, spec: &str) -> Result<String> {
    let memo = cache.join("apt").join(spec.replace(['/', ':'], "_"));
    let lists_changed = newest_change(Path::new(APT_LISTS));
    let memo_written = std::fs::metadata(&memo).and_then(|m| m.modified()).ok();
    if let (Some(lists), Some(memo_time)) = (lists_changed, memo_written) {
        if memo_time > lists {
            return std::fs::read_to_string(&memo).with_context(|| format!("reading {}", memo.display()));
        }
    }
    let mut c = Command::new("apt-cache");
    c.args(["show", "--no-all-versions", spec]);
    let text = cmd::output(&mut c).with_context(|| format!("apt knows no {spec} (try `apt-get update`)"))?;
    if let Some(dir) = memo.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&memo, &text).with_context(|| format!("writing {}", memo.display()))?;
    Ok(text)
}

/// The latest modification time of the files in `dir`, if any.
fn newest_change(dir: &Path) -> Option<std::time::SystemTime> {
    std::fs::read_dir(dir).ok()?.filter_map(|e| e.ok()?.metadata().ok()?.modified().ok()).max()
}

/// Whether apt has a package list for `arch` (after `dpkg --add-architecture`
/// and `apt-get update`).
pub(crate) fn has_lists_for(arch: &str) -> bool {
    let suffix = format!("_binary-{arch}_Packages");
    std::fs::read_dir(APT_LISTS).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| e.file_name().to_string_lossy().contains(&suffix))
    })
}

/// The value of `name: value` in a Debian control text (first stanza).
pub(crate) fn field(control: &str, name: &str) -> Option<String> {
    control
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(':')))
        .map(|v| v.trim().to_owned())
}

/// The host's dpkg architecture (`amd64`).
pub(crate) fn host_arch() -> Result<String> {
    cmd::output(Command::new("dpkg").arg("--print-architecture"))
}

/// Unpacks every `.deb` of `debs` into `dest` unless `dest` exists: into
/// `dest.partial` first, renamed when complete, so an interrupted unpack is
/// redone rather than half used. The `.deb` files are removed then: the
/// unpacked tree is the cache (the kernel's and the source's are big).
pub(crate) fn unpack_once(debs: &[PathBuf], dest: &Path) -> Result<()> {
    if dest.is_dir() {
        return Ok(());
    }
    let partial = partial_of(dest);
    if partial.exists() {
        std::fs::remove_dir_all(&partial).with_context(|| format!("removing {}", partial.display()))?;
    }
    std::fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    for deb in debs {
        let mut c = Command::new("dpkg-deb");
        c.arg("-x").arg(deb).arg(&partial).stdout(Stdio::null());
        cmd::run(&mut c).with_context(|| format!("unpacking {} failed", deb.display()))?;
    }
    std::fs::rename(&partial, dest)
        .with_context(|| format!("renaming {} to {}", partial.display(), dest.display()))?;
    for deb in debs {
        std::fs::remove_file(deb).with_context(|| format!("removing {}", deb.display()))?;
    }
    Ok(())
}

/// `dest` with `.partial` appended to its name: where a cache entry is built.
pub(crate) fn partial_of(dest: &Path) -> PathBuf {
    suffixed(dest, ".partial")
}

/// `path` with `suffix` appended to its name (`with_extension` would cut a
/// version's dots).
pub(crate) fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_file_names_are_apts() {
        let show = "Package: busybox-static\nVersion: 1:1.35.0-4+b1\nDepends: a, b\n\nVersion: 2\n";
        assert_eq!(field(show, "Version").as_deref(), Some("1:1.35.0-4+b1"));
        assert_eq!(field(show, "Depends").as_deref(), Some("a, b"));
        assert_eq!(field(show, "Missing"), None);
        let p = Package::exact("busybox-static", "arm64", "1:1.35.0-4+b1");
        assert_eq!(p.file_name(), "busybox-static_1%3a1.35.0-4+b1_arm64.deb");
    }
}
