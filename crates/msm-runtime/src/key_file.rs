//! The chassis key on Linux: a file of exactly 64 hexadecimal characters
//! (32 bytes), optionally followed by one newline, that only its owner may
//! read (mode `0600` or stricter). `msm keygen PATH` creates one.
//!
//! The checks refuse the mistakes that leak or garble a key: a key other
//! local users can read, a symlink or device where a file was meant, a
//! truncated copy, a passphrase typed where a key belongs.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use msm_checkpoint::{KEY_LEN, Key};

/// Characters in a key file (without the optional newline).
pub const HEX_LEN: usize = 2 * KEY_LEN;

/// Read and check a key file; the error names the file and what is wrong.
pub fn load(path: &Path) -> Result<Key, String> {
    let name = path.display();
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("key file {name}: {e}"))?;
    if !meta.file_type().is_file() {
        return Err(format!("key file {name}: not a regular file (a symlink, directory or device)"));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "key file {name}: mode {:04o} lets group or others access it; run: chmod 600 {name}",
            meta.mode() & 0o7777
        ));
    }
    let mut text = String::new();
    File::open(path)
        .and_then(|f| f.take(HEX_LEN as u64 + 2).read_to_string(&mut text))
        .map_err(|e| format!("key file {name}: {e}"))?;
    parse(&text).map_err(|why| format!("key file {name}: {why}"))
}

/// The key in a key file's text.
pub fn parse(text: &str) -> Result<Key, String> {
    let hex = text.strip_suffix('\n').unwrap_or(text);
    if hex.len() != HEX_LEN {
        return Err(format!("expected exactly {HEX_LEN} hexadecimal characters, found {}", hex.len()));
    }
    // Byte by byte: `from_str_radix` takes a leading '+', and slicing text
    // that is not ASCII could cut a character (and the panic would print the key).
    if let Some(i) = hex.bytes().position(|c| !c.is_ascii_hexdigit()) {
        return Err(format!("character {} is not hexadecimal", i + 1));
    }
    let digit = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
    let mut bytes = [0u8; KEY_LEN];
    for (b, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        *b = digit(pair[0]) << 4 | digit(pair[1]);
    }
    Key::from_secret(bytes).map_err(|e| e.to_string())
}

/// Create a new key file at `path` (never overwrites), mode 0600, from the
/// kernel's CSPRNG. Returns the key's fingerprint.
pub fn generate(path: &Path) -> Result<u32, String> {
    let name = path.display();
    let mut bytes = [0u8; KEY_LEN];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    let mut text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    text.push('\n');
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("key file {name}: {e}"))?;
    f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(|e| format!("key file {name}: {e}"))?;
    Ok(Key::new(bytes).fingerprint())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn generated_keys_load_and_differ() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.key"), dir.path().join("b.key"));
        let fa = generate(&a).unwrap();
        let fb = generate(&b).unwrap();
        assert_ne!(fa, fb);
        assert_eq!(load(&a).unwrap().fingerprint(), fa);
        assert_eq!(std::fs::metadata(&a).unwrap().mode() & 0o777, 0o600);
        assert!(generate(&a).unwrap_err().contains("exists"), "never overwrites a key");
    }

    #[test]
    fn unsafe_or_garbled_key_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        generate(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = load(&p).unwrap_err();
        assert!(e.contains("mode 0640") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(load(&link).unwrap_err().contains("not a regular file"));
        assert!(load(&dir.path().join("none")).unwrap_err().contains("No such file"));
        assert!(parse("abc").unwrap_err().contains("found 3"));
        assert!(parse(&"g".repeat(64)).unwrap_err().contains("character 1 is not hexadecimal"));
        assert!(parse(&format!("{}\n\n", "0".repeat(64))).is_err(), "one newline at most");
        for weak in ["0".repeat(64), "ab".repeat(32), "FF".repeat(32)] {
            let e = parse(&weak).unwrap_err();
            assert!(e.contains("all bytes of the key are equal"), "{weak}: {e}");
        }
        let mut good = "ab".repeat(32);
        good.replace_range(62.., "cd");
        let mut want = [0xAB; 32];
        want[31] = 0xCD;
        assert_eq!(parse(&good).unwrap(), Key::new(want));
        assert!(parse(&"+a".repeat(32)).unwrap_err().contains("character 1 is not hexadecimal"));
        let euros = format!("a{}", "\u{20ac}".repeat(21));
        assert_eq!(euros.len(), 64);
        assert!(parse(&euros).unwrap_err().contains("character 2 is not hexadecimal"), "no panic");
    }
}
