//! What the PVH boot hands vCPU 0: `hvm_start_info` (xen/include/public/arch-x86/hvm/
//! start_info.h), and from it the command line.
//!
//! The hypervisor wrote these bytes before the guest started and nothing changes them
//! afterwards; they are still read with volatile copies (never as references into
//! memory the guest did not write) and checked: the magic, and addresses inside the
//! 4 GiB identity map.

use core::sync::atomic::{AtomicU64, Ordering};

use basalt_xen_abi::start_info::{HvmStartInfo, XEN_HVM_START_MAGIC_VALUE};

/// Longest command line kept.
pub const COMMAND_LINE_MAX: usize = 1024;

/// `sizeof(struct hvm_start_info)`, version 1.
const START_INFO_SIZE: usize = core::mem::size_of::<HvmStartInfo>();

/// Addresses the boot page tables map.
const IDENTITY_MAP_LIMIT: u64 = 1 << 32;

/// Guest-physical address of `hvm_start_info` (vCPU 0's %ebx), 0 if none.
static START_INFO_ADDRESS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn record(address: u32) {
    START_INFO_ADDRESS.store(u64::from(address), Ordering::Relaxed);
}

/// A copy of `hvm_start_info`, if %ebx pointed at one with the right magic.
pub fn start_info() -> Option<HvmStartInfo> {
    let address = START_INFO_ADDRESS.load(Ordering::Relaxed);
    if address == 0 || address.checked_add(START_INFO_SIZE as u64)? > IDENTITY_MAP_LIMIT {
        return None;
    }
    // SAFETY: the range lies in the identity map; a byte array has no alignment or
    // validity requirement, and the copy keeps no reference into that memory.
    let raw = unsafe { core::ptr::read_volatile(address as *const [u8; START_INFO_SIZE]) };
    let u32_at = |at: usize| u32::from_le_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
    let u64_at = |at: usize| u64::from(u32_at(at)) | (u64::from(u32_at(at + 4)) << 32);
    // Field offsets as in start_info.h (and asserted by the struct's size).
    let info = HvmStartInfo {
        magic: u32_at(0),
        version: u32_at(4),
        flags: u32_at(8),
        nr_modules: u32_at(12),
        modlist_paddr: u64_at(16),
        cmdline_paddr: u64_at(24),
        rsdp_paddr: u64_at(32),
        memmap_paddr: u64_at(40),
        memmap_entries: u32_at(48),
        reserved: u32_at(52),
    };
    (info.magic == XEN_HVM_START_MAGIC_VALUE).then_some(info)
}

/// The domain's command line (a copy, up to [`COMMAND_LINE_MAX`] bytes).
#[derive(Clone)]
pub struct CommandLine {
    bytes: [u8; COMMAND_LINE_MAX],
    length: usize,
}

impl CommandLine {
    /// The text up to the first byte that is not UTF-8.
    pub fn as_str(&self) -> &str {
        let bytes = &self.bytes[..self.length];
        match core::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => core::str::from_utf8(&bytes[..error.valid_up_to()]).unwrap_or(""),
        }
    }

    /// The value of the first whitespace-separated word `key=value`.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.as_str().split_whitespace().find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
    }
}

/// Copies the command line from `hvm_start_info.cmdline_paddr` (NUL-terminated);
/// empty if there is none.
pub fn command_line() -> CommandLine {
    let mut line = CommandLine { bytes: [0; COMMAND_LINE_MAX], length: 0 };
    let Some(address) = start_info().map(|info| info.cmdline_paddr).filter(|&a| a != 0) else { return line };
    while line.length < COMMAND_LINE_MAX {
        let byte_address = address + line.length as u64;
        if byte_address >= IDENTITY_MAP_LIMIT {
            break;
        }
        // SAFETY: the address is inside the identity map; one byte is copied, no
        // reference kept.
        let byte = unsafe { core::ptr::read_volatile(byte_address as *const u8) };
        if byte == 0 {
            break;
        }
        line.bytes[line.length] = byte;
        line.length += 1;
    }
    line
}
