//! The chassis key file, as `msm keygen` writes it and `msm-node --key-file`
//! reads it: exactly 64 hex digits (32 bytes), an optional trailing newline,
//! in a regular file (not a symlink) that group and others cannot access
//! (mode & 0o077 == 0).
//! Anything else is refused with a message naming the file and the fault.
//!
//! xtask depends on the Linux board already, but its reader
//! (`msm_runtime::key_file::load`) returns the engine's `Key`, which never
//! gives its secret back, and the SD card image needs the 32 bytes: hence
//! this reader of the same format (the format is the contract).

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{Result, bail};

/// Bytes of a chassis key.
pub(crate) const KEY_BYTES: usize = 32;
const HEX_DIGITS: usize = 2 * KEY_BYTES;

/// Reads and checks the key file at `path`.
pub(crate) fn read(path: &Path) -> Result<[u8; KEY_BYTES]> {
    let shown = path.display();
    // The path itself, not what a symlink points at (as msm-node checks it).
    let meta =
        std::fs::symlink_metadata(path).map_err(|e| anyhow::anyhow!("key file {shown}: cannot stat: {e}"))?;
    if let Err(why) = check_file(meta.file_type().is_file(), meta.permissions().mode()) {
        bail!("key file {shown}: {why}");
    }
    let file =
        std::fs::File::open(path).map_err(|e| anyhow::anyhow!("key file {shown}: cannot open: {e}"))?;
    // What we checked is what we read: not replaced in between.
    let opened = file.metadata().map_err(|e| anyhow::anyhow!("key file {shown}: cannot stat: {e}"))?;
    if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
        bail!("key file {shown}: replaced while being read");
    }
    // One byte more than the longest valid file, so a longer one is seen as such.
    let mut text = Vec::with_capacity(HEX_DIGITS + 2);
    file.take(HEX_DIGITS as u64 + 2)
        .read_to_end(&mut text)
        .map_err(|e| anyhow::anyhow!("key file {shown}: cannot read: {e}"))?;
    parse(&text).map_err(|why| anyhow::anyhow!("key file {shown}: {why}"))
}

/// A regular file, no access for group or others.
fn check_file(is_file: bool, mode: u32) -> Result<(), String> {
    if !is_file {
        return Err("not a regular file (a symlink, directory or device)".into());
    }
    if mode & 0o077 != 0 {
        return Err(format!(
            "mode {:04o} lets group or others access the key; it must be 0600 or stricter (chmod 600 the file)",
            mode & 0o7777
        ));
    }
    Ok(())
}

/// The key in a key file's bytes. Messages name positions, never key digits.
fn parse(text: &[u8]) -> Result<[u8; KEY_BYTES], String> {
    let digits = text.strip_suffix(b"\n").unwrap_or(text);
    if digits.len() != HEX_DIGITS {
        return Err(format!(
            "{} bytes{}; expected exactly {HEX_DIGITS} hex digits ({KEY_BYTES} bytes) and an optional \
             trailing newline",
            text.len(),
            if text.len() > HEX_DIGITS + 1 { " or more" } else { "" }
        ));
    }
    let nibble = |at: usize| {
        char::from(digits[at])
            .to_digit(16)
            .map(|d| d as u8)
            .ok_or_else(|| format!("byte {} is not a hex digit (expected {HEX_DIGITS} of 0-9, a-f)", at + 1))
    };
    let mut key = [0u8; KEY_BYTES];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = (nibble(2 * i)? << 4) | nibble(2 * i + 1)?;
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::OpenOptionsExt;

    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn key() -> [u8; KEY_BYTES] {
        std::array::from_fn(|i| i as u8)
    }

    fn file(dir: &Path, name: &str, mode: u32, text: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&path).unwrap();
        std::io::Write::write_all(&mut f, text).unwrap();
        // The umask may have cleared bits of `mode`; set it exactly.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn sixty_four_hex_digits_with_or_without_a_newline() {
        assert_eq!(parse(HEX.as_bytes()), Ok(key()));
        assert_eq!(parse(format!("{HEX}\n").as_bytes()), Ok(key()));
        assert_eq!(parse(HEX.to_uppercase().as_bytes()), Ok(key()));
    }

    #[test]
    fn anything_else_is_refused_by_what_is_wrong() {
        let short = &HEX[..62];
        assert!(parse(short.as_bytes()).unwrap_err().starts_with("62 bytes; expected exactly 64 hex digits"));
        assert!(parse(format!("{HEX}00").as_bytes()).unwrap_err().starts_with("66 bytes or more;"));
        assert!(parse(format!("{HEX}\n\n").as_bytes()).unwrap_err().starts_with("66 bytes or more;"));
        assert!(parse(format!("{HEX}\r\n").as_bytes()).unwrap_err().starts_with("66 bytes or more;"));
        assert!(parse(format!("{HEX} ").as_bytes()).unwrap_err().starts_with("65 bytes;"));
        assert!(parse(b"").unwrap_err().starts_with("0 bytes;"));
        let bad = format!("{}g{}", &HEX[..9], &HEX[10..]);
        assert_eq!(
            parse(bad.as_bytes()).unwrap_err(),
            "byte 10 is not a hex digit (expected 64 of 0-9, a-f)"
        );
        let spaced = format!(" {}", &HEX[1..]);
        assert!(parse(spaced.as_bytes()).unwrap_err().starts_with("byte 1 is not a hex digit"));
    }

    #[test]
    fn the_file_must_be_private_and_regular() {
        assert_eq!(check_file(true, 0o100600), Ok(()));
        assert_eq!(check_file(true, 0o100400), Ok(()));
        assert!(check_file(true, 0o100640).unwrap_err().starts_with("mode 0640 lets group or others"));
        assert!(check_file(true, 0o100604).unwrap_err().starts_with("mode 0604 lets group or others"));
        assert!(check_file(false, 0o040700).unwrap_err().starts_with("not a regular file"));
    }

    #[test]
    fn read_names_the_file_in_every_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let good = file(dir.path(), "good.key", 0o600, format!("{HEX}\n").as_bytes());
        assert_eq!(read(&good).unwrap(), key());
        let open = file(dir.path(), "open.key", 0o644, HEX.as_bytes());
        let e = read(&open).unwrap_err().to_string();
        assert!(e.starts_with(&format!("key file {}: mode 0644", open.display())), "{e}");
        let long = file(dir.path(), "long.key", 0o600, &[b'a'; 4096]);
        let e = read(&long).unwrap_err().to_string();
        assert!(e.starts_with(&format!("key file {}: 66 bytes or more", long.display())), "{e}");
        let e = read(dir.path()).unwrap_err().to_string();
        assert!(e.starts_with(&format!("key file {}: not a regular file", dir.path().display())), "{e}");
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        let e = read(&link).unwrap_err().to_string();
        assert!(e.starts_with(&format!("key file {}: not a regular file", link.display())), "{e}");
        let missing = dir.path().join("missing.key");
        let e = read(&missing).unwrap_err().to_string();
        assert!(e.starts_with(&format!("key file {}: cannot stat", missing.display())), "{e}");
    }
}
