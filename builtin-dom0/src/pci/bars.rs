//! Base address registers: decoding and sizing.
//!
//! Sizing follows PCI Local Bus Specification 3.0 §6.2.5.1: with decoding turned off
//! in the command register, write all ones to the BAR, read back which address bits
//! stick, restore the original value, then restore the command register. A 64-bit
//! memory BAR takes two slots (the high half is the next BAR) and both halves are
//! sized together. The size is the lowest writable address bit (as Linux computes it),
//! so a device that reports a non-contiguous mask still yields a power of two.
//! Invariants of every returned [`Bar`]: `size` is a non-zero power of two, `index`
//! is below the header's BAR count, and no two BARs share an index.

use alloc::vec::Vec;

use super::config::{
    read_command, read_dword, write_command, write_dword, ConfigSpace, PciAddress, PCI_BASE_ADDRESS_0, PCI_COMMAND_IO,
    PCI_COMMAND_MEMORY,
};

/// BAR bit 0: this is an I/O space BAR.
const PCI_BASE_ADDRESS_SPACE_IO: u32 = 1 << 0;
/// Memory BAR bits 2:1: locatable anywhere in 32 bits, below 1 MiB (legacy), or 64-bit.
const PCI_BASE_ADDRESS_MEM_TYPE_MASK: u32 = 0b110;
const PCI_BASE_ADDRESS_MEM_TYPE_32: u32 = 0b000;
const PCI_BASE_ADDRESS_MEM_TYPE_1M: u32 = 0b010;
const PCI_BASE_ADDRESS_MEM_TYPE_64: u32 = 0b100;
/// Memory BAR bit 3: reads have no side effects.
const PCI_BASE_ADDRESS_MEM_PREFETCH: u32 = 1 << 3;
const PCI_BASE_ADDRESS_MEM_MASK: u32 = !0xF;
const PCI_BASE_ADDRESS_IO_MASK: u32 = !0x3;

/// Which space a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// Memory below 4 GiB (including the legacy "below 1 MiB" type).
    Memory32,
    /// Memory anywhere in 64 bits; this BAR and the next slot form one register.
    Memory64,
    /// I/O ports.
    Io,
}

/// One implemented BAR, as found at enumeration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// Slot number (0..6 for endpoints, 0..2 for bridges). A 64-bit BAR also occupies
    /// `index + 1`.
    pub index: u8,
    pub kind: BarKind,
    /// Base address (physical memory or I/O port) firmware assigned; 0 = unassigned.
    pub address: u64,
    /// Bytes decoded, a power of two.
    pub size: u64,
    /// Memory only: reads have no side effects (may be mapped write-combining).
    pub prefetchable: bool,
}

impl Bar {
    /// One past the last byte, saturating (a hostile address near the top of memory).
    pub fn end(&self) -> u64 {
        self.address.saturating_add(self.size)
    }

    /// True for memory BARs (32- or 64-bit).
    pub fn is_memory(&self) -> bool {
        self.kind != BarKind::Io
    }
}

/// Writes all ones to the BAR at `offset`, returns what reads back, restores `original`.
fn probe<C: ConfigSpace + ?Sized>(config: &mut C, address: PciAddress, offset: u16, original: u32) -> u32 {
    write_dword(config, address, offset, u32::MAX);
    let readback = read_dword(config, address, offset);
    write_dword(config, address, offset, original);
    readback
}

/// The lowest set bit of `mask` (the decoded size), or `None` if no bit is writable.
fn lowest_bit(mask: u64) -> Option<u64> {
    (mask != 0).then(|| mask & mask.wrapping_neg())
}

/// Decodes and sizes the first `count` BARs of `address` (6 for a type-0 header, 2 for
/// type 1). Memory and I/O decoding are disabled in the command register during the
/// probe and the command register is restored afterwards; every BAR is restored to the
/// value it had. Unimplemented BARs (no writable address bits) and reserved memory
/// types are left out.
pub fn size_bars<C: ConfigSpace + ?Sized>(config: &mut C, address: PciAddress, count: u8) -> Vec<Bar> {
    let mut bars = Vec::new();
    let command = read_command(config, address);
    let decoding = command & (PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
    if decoding != 0 {
        write_command(config, address, command & !decoding);
    }

    let mut index = 0u8;
    while index < count {
        let offset = PCI_BASE_ADDRESS_0 + 4 * u16::from(index);
        let original = read_dword(config, address, offset);
        let this_index = index;
        index += 1;

        if original & PCI_BASE_ADDRESS_SPACE_IO != 0 {
            let readback = probe(config, address, offset, original);
            let mut mask = readback & PCI_BASE_ADDRESS_IO_MASK;
            // A 16-bit I/O decoder may read its upper half as zero (Linux does the same).
            if mask != 0 && mask & 0xFFFF_0000 == 0 {
                mask |= 0xFFFF_0000;
            }
            if let Some(size) = lowest_bit(u64::from(mask)) {
                bars.push(Bar {
                    index: this_index,
                    kind: BarKind::Io,
                    address: u64::from(original & PCI_BASE_ADDRESS_IO_MASK),
                    size,
                    prefetchable: false,
                });
            }
            continue;
        }

        let prefetchable = original & PCI_BASE_ADDRESS_MEM_PREFETCH != 0;
        match original & PCI_BASE_ADDRESS_MEM_TYPE_MASK {
            PCI_BASE_ADDRESS_MEM_TYPE_32 | PCI_BASE_ADDRESS_MEM_TYPE_1M => {
                let readback = probe(config, address, offset, original);
                let mask = u64::from(readback & PCI_BASE_ADDRESS_MEM_MASK);
                if let Some(size) = lowest_bit(mask) {
                    bars.push(Bar {
                        index: this_index,
                        kind: BarKind::Memory32,
                        address: u64::from(original & PCI_BASE_ADDRESS_MEM_MASK),
                        size,
                        prefetchable,
                    });
                }
            }
            PCI_BASE_ADDRESS_MEM_TYPE_64 => {
                if index >= count {
                    // The high half would be past the last slot: malformed, ignored.
                    break;
                }
                let high_offset = offset + 4;
                let original_high = read_dword(config, address, high_offset);
                index += 1;
                write_dword(config, address, offset, u32::MAX);
                write_dword(config, address, high_offset, u32::MAX);
                let readback_low = read_dword(config, address, offset);
                let readback_high = read_dword(config, address, high_offset);
                write_dword(config, address, offset, original);
                write_dword(config, address, high_offset, original_high);
                let mask = (u64::from(readback_high) << 32) | u64::from(readback_low & PCI_BASE_ADDRESS_MEM_MASK);
                if let Some(size) = lowest_bit(mask) {
                    bars.push(Bar {
                        index: this_index,
                        kind: BarKind::Memory64,
                        address: (u64::from(original_high) << 32) | u64::from(original & PCI_BASE_ADDRESS_MEM_MASK),
                        size,
                        prefetchable,
                    });
                }
            }
            _ => {} // Reserved memory type: not decoded.
        }
    }

    if decoding != 0 {
        write_command(config, address, command);
    }
    bars
}
