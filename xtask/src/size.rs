//! `cargo xtask size`: text, data and bss of the firmware, and how much of
//! it each part of the stack accounts for.
//!
//! Reads the ELF itself (no binutils needed on a fresh machine). The totals
//! are Berkeley `size`'s: text = allocated read-only sections (vector table,
//! code, rodata), data = allocated, written and initialised (`.data`, which
//! also occupies flash), bss = allocated and zeroed. The per-crate split sums
//! the symbol table by the crate in each (mangled) name: `msm_checkpoint`
//! (the core), `msm_backplane` (the link), `msm_flash` (the config store),
//! the board crate, and everything else (`core`, heapless, embedded-sdmmc,
//! cortex-m). With LTO, code inlined into a caller counts for the caller, so
//! the split is approximate; the totals are exact.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::board;

const SHT_NOBITS: u32 = 8;
const SHT_SYMTAB: u32 = 2;
const SHF_WRITE: u32 = 0x1;
const SHF_ALLOC: u32 = 0x2;
const STT_OBJECT: u8 = 1;
const STT_FUNC: u8 = 2;

/// The parts of the stack, by the crate name in symbol names, in report order.
const PARTS: &[(&str, &str)] = &[
    ("core (msm-checkpoint)", "msm_checkpoint"),
    ("link (msm-backplane)", "msm_backplane"),
    ("flash store (msm-flash)", "msm_flash"),
    ("board (msm-lm3s6965evb)", "msm_lm3s6965evb"),
];

#[derive(Debug, Default, Clone, Copy)]
struct Sizes {
    text: u64,
    data: u64,
    bss: u64,
}

struct Section {
    kind: u32,
    flags: u32,
    offset: u32,
    size: u32,
    link: u32,
    entsize: u32,
}

fn u16_at(b: &[u8], at: usize) -> Result<u16> {
    Ok(u16::from_le_bytes(b.get(at..at + 2).context("ELF truncated")?.try_into()?))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32> {
    Ok(u32::from_le_bytes(b.get(at..at + 4).context("ELF truncated")?.try_into()?))
}

fn sections(elf: &[u8]) -> Result<Vec<Section>> {
    if elf.get(..4) != Some(b"\x7fELF") || elf.get(4) != Some(&1) || elf.get(5) != Some(&1) {
        bail!("not a 32-bit little-endian ELF file");
    }
    let shoff = u32_at(elf, 0x20)? as usize;
    let shentsize = usize::from(u16_at(elf, 0x2E)?);
    let shnum = usize::from(u16_at(elf, 0x30)?);
    (0..shnum)
        .map(|i| {
            let at = shoff + i * shentsize;
            Ok(Section {
                kind: u32_at(elf, at + 4)?,
                flags: u32_at(elf, at + 8)?,
                offset: u32_at(elf, at + 16)?,
                size: u32_at(elf, at + 20)?,
                link: u32_at(elf, at + 24)?,
                entsize: u32_at(elf, at + 36)?,
            })
        })
        .collect()
}

fn class(s: &Section) -> Option<u8> {
    if s.flags & SHF_ALLOC == 0 || s.size == 0 {
        None
    } else if s.kind == SHT_NOBITS {
        Some(2)
    } else if s.flags & SHF_WRITE != 0 {
        Some(1)
    } else {
        Some(0)
    }
}

fn add(sizes: &mut Sizes, class: u8, n: u64) {
    match class {
        0 => sizes.text += n,
        1 => sizes.data += n,
        _ => sizes.bss += n,
    }
}

/// Totals and the per-part split of `path`.
/// Totals, the per-part split, and every RAM object (size, name), largest first.
type Measured = (Sizes, Vec<Sizes>, Vec<(u32, String)>);

fn measure(path: &Path) -> Result<Measured> {
    let elf = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let secs = sections(&elf)?;
    let mut total = Sizes::default();
    for s in &secs {
        if let Some(c) = class(s) {
            add(&mut total, c, u64::from(s.size));
        }
    }
    let mut parts = vec![Sizes::default(); PARTS.len() + 1];
    let mut ram = Vec::new();
    let symtab = secs.iter().find(|s| s.kind == SHT_SYMTAB).context("the ELF has no symbol table")?;
    let strtab = secs.get(symtab.link as usize).context("symbol table without strings")?;
    let strings = elf
        .get(strtab.offset as usize..(strtab.offset + strtab.size) as usize)
        .context("string table outside the file")?;
    let entsize = (symtab.entsize as usize).max(16);
    for i in 0..symtab.size as usize / entsize {
        let at = symtab.offset as usize + i * entsize;
        let name_off = u32_at(&elf, at)? as usize;
        let size = u32_at(&elf, at + 8)?;
        let info = *elf.get(at + 12).context("ELF truncated")?;
        let shndx = usize::from(u16_at(&elf, at + 14)?);
        if size == 0 || !matches!(info & 0xF, STT_OBJECT | STT_FUNC) {
            continue;
        }
        let Some(c) = secs.get(shndx).and_then(class) else { continue };
        let name = strings.get(name_off..).and_then(|s| s.split(|b| *b == 0).next()).unwrap_or(&[]);
        let name = String::from_utf8_lossy(name);
        let part = PARTS.iter().position(|(_, krate)| name.contains(krate)).unwrap_or(PARTS.len());
        add(&mut parts[part], c, u64::from(size));
        if c > 0 {
            ram.push((size, demangle(&name)));
        }
    }
    ram.sort_by(|a, b| b.cmp(a));
    Ok((total, parts, ram))
}

/// Builds the firmware and prints its sizes.
pub(crate) fn run() -> Result<()> {
    let b = board::find("lm3s6965evb")?;
    let elf = board::build(&b)?;
    let (total, parts, ram) = measure(&elf)?;
    println!("\n{} ({})", b.name, elf.display());
    println!("  {:<26} {:>8} {:>8} {:>8}", "", "text", "data", "bss");
    println!("  {:<26} {:>8} {:>8} {:>8}", "firmware (total)", total.text, total.data, total.bss);
    for (i, p) in parts.iter().enumerate() {
        let name = PARTS.get(i).map_or("other (core, heapless, sdmmc, cortex-m)", |p| p.0);
        println!("  {:<26} {:>8} {:>8} {:>8}", name, p.text, p.data, p.bss);
    }
    println!(
        "  (RAM = data + bss + stack; data also takes flash. Split by symbol name, approximate under LTO.)"
    );
    println!("\nlargest statics (RAM):");
    for (size, name) in ram.iter().take(8) {
        println!("  {size:>8}  {name}");
    }
    Ok(())
}

/// `msm_lm3s6965evb::uart::RX` from a legacy-mangled `_ZN...E` name (other
/// names are returned as they are).
fn demangle(name: &str) -> String {
    if let Some(v0) = name.strip_prefix("_R") {
        return demangle_v0(v0).unwrap_or_else(|| name.to_owned());
    }
    let Some(mut rest) = name.strip_prefix("_ZN") else { return name.to_owned() };
    let mut parts = Vec::new();
    while let Some(digits) = rest.find(|c: char| !c.is_ascii_digit()).filter(|&d| d > 0) {
        let Ok(len) = rest[..digits].parse::<usize>() else { break };
        let Some(ident) = rest.get(digits..digits + len) else { break };
        let is_hash = ident.len() == 17 && ident.starts_with('h');
        if !is_hash {
            parts.push(
                ident.replace("$LT$", "<").replace("$GT$", ">").replace("$u20$", " ").replace("..", "::"),
            );
        }
        rest = &rest[digits + len..];
    }
    if parts.is_empty() { name.to_owned() } else { parts.join("::") }
}

/// The identifiers of a v0-mangled path (`_R` stripped), joined by `::`;
/// crate hashes (`Cs<hash>_`) are skipped. Good enough for a size report.
fn demangle_v0(mut rest: &str) -> Option<String> {
    let mut parts = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("Cs") {
            rest = &after[after.find('_')? + 1..];
            continue;
        }
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            rest = &rest[rest.chars().next()?.len_utf8()..];
            continue;
        }
        let len: usize = rest[..digits].parse().ok()?;
        let after = &rest[digits..];
        let after = after.strip_prefix('_').unwrap_or(after);
        let ident = after.get(..len)?;
        if !ident.is_empty() {
            parts.push(ident.trim_start_matches("__").to_owned());
        }
        rest = &after[len..];
    }
    (!parts.is_empty()).then(|| parts.join("::"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demangles_legacy_names() {
        assert_eq!(demangle("_ZN15msm_lm3s6965evb4uart2RX17h0123456789abcdefE"), "msm_lm3s6965evb::uart::RX");
        assert_eq!(demangle("main"), "main");
        assert_eq!(demangle("_RNvNtCsbZwJXL5pmSc_15msm_lm3s6965evb4uart2RX"), "msm_lm3s6965evb::uart::RX");
    }
}
