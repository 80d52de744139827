//! Volatile access to memory-mapped registers: the only `unsafe` of the board.

/// Reads the 32-bit register at `addr`.
#[inline]
pub fn read(addr: usize) -> u32 {
    // SAFETY: only called with addresses of LM3S6965 peripheral registers
    // (constants in this crate), which are always mapped and 4-byte aligned.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

/// Writes the 32-bit register at `addr`.
#[inline]
pub fn write(addr: usize, value: u32) {
    // SAFETY: as for `read`.
    unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
}

/// Sets `bits` in the register at `addr` (read-modify-write).
#[inline]
pub fn set_bits(addr: usize, bits: u32) {
    write(addr, read(addr) | bits);
}

/// System control: peripheral clock gating.
pub const SYSCTL_RCGC1: usize = 0x400F_E104;
pub const SYSCTL_RCGC2: usize = 0x400F_E108;
