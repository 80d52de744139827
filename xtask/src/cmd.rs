//! Running child commands: locating cargo and the workspace root, echoing
//! commands, and turning failures into errors that name the command.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

/// Path of the Debian compiler used by the cross fallback. If a developer
/// exported it as `RUSTC` (following the manual recipe), host builds must not
/// pick it up: see [`cargo`].
pub(crate) const DEBIAN_RUSTC: &str = "/usr/bin/rustc";

/// The workspace root: the parent of this crate's manifest directory.
pub(crate) fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().map_or_else(|| manifest_dir.to_path_buf(), Path::to_path_buf)
}

/// The cargo that runs us (`$CARGO`, set by `cargo run`), else `cargo` from `PATH`.
pub(crate) fn cargo_path() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

/// A `cargo` command for a host build, run from the workspace root.
///
/// `cargo run` sets no `RUSTC` for the xtask, so host builds normally inherit
/// the developer's toolchain untouched. The one exception is a leftover
/// `RUSTC=/usr/bin/rustc` from the manual cross recipe: it is dropped (with
/// `RUSTC_BOOTSTRAP`) so host builds use the normal toolchain.
pub(crate) fn cargo() -> Command {
    let mut c = Command::new(cargo_path());
    c.current_dir(workspace_root());
    if std::env::var_os("RUSTC").is_some_and(|r| Path::new(&r) == Path::new(DEBIAN_RUSTC)) {
        eprintln!("note: ignoring RUSTC={DEBIAN_RUSTC} (Debian's compiler is for `cargo xtask cross` only)");
        c.env_remove("RUSTC").env_remove("RUSTC_BOOTSTRAP");
    }
    c
}

/// Commit `rev`'s tree in `dir`: a detached git worktree of this
/// repository, made once (kept while it holds a `Cargo.toml`; a partial one
/// is made again). Earlier commits are built from there
/// (`bench --core-against`, `upgrade-test`).
pub(crate) fn worktree(rev: &str, dir: &Path) -> Result<()> {
    if dir.join("Cargo.toml").exists() {
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let git = |args: &[&str]| {
        let mut c = Command::new("git");
        c.current_dir(workspace_root()).args(args);
        c
    };
    // A worktree removed by hand is still registered until pruned.
    run(&mut git(&["worktree", "prune"]))?;
    run(git(&["worktree", "add", "--detach"]).arg(dir).arg(rev))
}

/// A child command failed to run to a successful exit.
#[derive(Debug)]
pub(crate) struct CommandFailed {
    command: String,
    code: Option<i32>,
}

impl fmt::Display for CommandFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "`{}` failed with exit code {code}", self.command),
            None => write!(f, "`{}` was killed by a signal", self.command),
        }
    }
}

impl std::error::Error for CommandFailed {}

/// The process exit code for an error: the child's own code when a child
/// command failed (anywhere in the error chain), else 1.
pub(crate) fn exit_code_of(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|e| e.downcast_ref::<CommandFailed>())
        .and_then(|failed| failed.code)
        .and_then(|code| u8::try_from(code).ok())
        .filter(|&code| code != 0)
        .unwrap_or(1)
}

/// Echoes `c`, runs it with inherited stdio and fails unless it exits with 0.
pub(crate) fn run(c: &mut Command) -> Result<()> {
    let shown = display(c);
    eprintln!("$ {shown}");
    let status = c.status().with_context(|| format!("failed to start `{shown}`"))?;
    if status.success() { Ok(()) } else { Err(CommandFailed { command: shown, code: status.code() }.into()) }
}

/// Runs `c` quietly and returns its trimmed stdout; fails unless it exits with 0.
pub(crate) fn output(c: &mut Command) -> Result<String> {
    let shown = display(c);
    let out = c
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("failed to start `{shown}`"))?;
    if !out.status.success() {
        return Err(CommandFailed { command: shown, code: out.status.code() }.into());
    }
    String::from_utf8(out.stdout)
        .map(|s| s.trim().to_owned())
        .with_context(|| format!("`{shown}` printed non-UTF-8 output"))
}

/// Whether `program` can be started at all (e.g. `rustup`, `apt-get`).
pub(crate) fn exists(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The command as a copy-pasteable shell line: variables it sets, the program
/// (`cargo` when it is the cargo we run), then the arguments.
pub(crate) fn display(c: &Command) -> String {
    let mut parts: Vec<String> =
        c.get_envs().filter_map(|(k, v)| v.map(|v| format!("{}={}", quote(k), quote(v)))).collect();
    let program = c.get_program();
    parts.push(if Path::new(program) == cargo_path() { "cargo".to_owned() } else { quote(program) });
    parts.extend(c.get_args().map(quote));
    parts.join(" ")
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c));
    if plain { s.into_owned() } else { format!("'{}'", s.replace('\'', r"'\''")) }
}
