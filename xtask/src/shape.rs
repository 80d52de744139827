//! `cargo xtask shape`: rules of the code's shape that a compiler does not
//! check, kept by CI so they do not drift back: no file of the core crates
//! above 600 lines, and each half of a stream's state (`Tx`, `Rx` in
//! `msm-checkpoint/src/stream/`) assigned only by its own methods.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// Source directories whose files stay at most [`MAX_LINES`] long.
const SHORT_FILES: &[&str] =
    &["crates/msm-checkpoint/src", "crates/msm-flash/src", "crates/msm-backplane/src", "crates/msm-sim/src"];
const MAX_LINES: usize = 600;
/// The only file that may assign a field of each half of a stream's state.
const OWNERS: &[(&str, &str)] =
    &[("tx", "crates/msm-checkpoint/src/stream/tx.rs"), ("rx", "crates/msm-checkpoint/src/stream/rx.rs")];
const ENGINE: &str = "crates/msm-checkpoint/src";

pub(crate) fn run() -> Result<()> {
    let root = crate::cmd::workspace_root();
    let mut faults = Vec::new();
    for dir in SHORT_FILES {
        for file in rust_files(&root.join(dir))? {
            let lines = fs::read_to_string(&file)?.lines().count();
            if lines > MAX_LINES {
                faults.push(format!(
                    "{}: {lines} lines (at most {MAX_LINES}): split it by concept",
                    rel(&root, &file)
                ));
            }
        }
    }
    for file in rust_files(&root.join(ENGINE))? {
        let text = fs::read_to_string(&file)?;
        for (n, line) in text.lines().enumerate() {
            for &(half, owner) in OWNERS {
                if file == root.join(owner) {
                    continue;
                }
                if let Some(field) = field_assigned(line, half) {
                    faults.push(format!(
                        "{}:{}: assigns `{half}.{field}`: add a method to {owner}",
                        rel(&root, &file),
                        n + 1
                    ));
                }
            }
        }
    }
    if !faults.is_empty() {
        bail!("shape:\n  {}", faults.join("\n  "));
    }
    println!("shape: files at most {MAX_LINES} lines; stream state assigned only by its owner");
    Ok(())
}

fn rel(root: &Path, file: &Path) -> String {
    file.strip_prefix(root).unwrap_or(file).display().to_string()
}

fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The field of `half` (`tx` or `rx`) this line assigns (`tx.phase = …`,
/// `st.rx.applied += 1`, `(tx.a, tx.b) = …`), if any. Comparisons and match
/// arms are not assignments.
fn field_assigned(line: &str, half: &str) -> Option<String> {
    let code = line.split("//").next()?;
    let bytes = code.as_bytes();
    let half = format!("{half}.");
    let mut from = 0;
    while let Some(i) = code[from..].find(&half).map(|i| i + from) {
        from = i + half.len();
        // A whole word `tx`/`rx` (not `ctx.` or `mtx.`).
        if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_') {
            continue;
        }
        let field: String =
            code[from..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if field.is_empty() {
            continue;
        }
        let rest = &code[from + field.len()..];
        if is_assignment(rest) || (code.trim_start().starts_with('(') && tuple_assignment(code)) {
            return Some(field);
        }
    }
    None
}

/// `rest` (after a place expression) starts an assignment: `=`, `+=`, `|=`…, not `==` or `=>`.
fn is_assignment(rest: &str) -> bool {
    let r = rest.trim_start();
    let op = ["+=", "-=", "|=", "&=", "*=", "^=", "<<=", ">>="];
    if op.iter().any(|o| r.starts_with(o)) {
        return true;
    }
    r.starts_with('=') && !r.starts_with("==") && !r.starts_with("=>")
}

/// `(a, b) = …`: a destructuring assignment of a tuple of places.
fn tuple_assignment(code: &str) -> bool {
    let t = code.trim_start();
    let Some(close) = t.find(')') else { return false };
    !t.starts_with("(let") && is_assignment(&t[close + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_field_assigned(line: &str) -> Option<String> {
        field_assigned(line, "tx").or_else(|| field_assigned(line, "rx"))
    }

    #[test]
    fn finds_assignments_of_a_streams_state() {
        assert_eq!(stream_field_assigned("        tx.phase = Phase::Synced;").as_deref(), Some("phase"));
        assert_eq!(stream_field_assigned("    st.rx.applied += 1;").as_deref(), Some("applied"));
        assert_eq!(
            stream_field_assigned("  streams.get_mut(2).tx.changes = 10;").as_deref(),
            Some("changes")
        );
        assert_eq!(
            stream_field_assigned("        (tx.origin, tx.phase) = (None, Phase::Bulk);").as_deref(),
            Some("origin")
        );
        assert_eq!(stream_field_assigned("    rx.ack_due |= due;").as_deref(), Some("ack_due"));
    }

    #[test]
    fn reads_comparisons_and_calls_are_not_assignments() {
        for line in [
            "        if tx.phase == Phase::Synced {",
            "            Phase::Synced if tx.unconfirmed => {",
            "        let x = tx.phase;",
            "        tx.restart();",
            "        ctx.phase = 3;",
            "        // tx.phase = Phase::Off is done by the owner",
            "        let (a, b) = (tx.epoch, rx.epoch);",
        ] {
            assert_eq!(stream_field_assigned(line), None, "{line}");
        }
    }
}
