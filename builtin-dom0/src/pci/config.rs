//! Configuration-space access: the [`ConfigSpace`] trait that the hypervisor side
//! implements (port I/O at 0xCF8/0xCFC, or ECAM memory from ACPI MCFG), the
//! [`PciAddress`] of one function, the type-0/type-1 header register offsets, and the
//! command-register helpers.
//!
//! Why a trait: only image/ can touch ports and MMIO; everything above it is portable
//! and tested on the host with a fake. Access is 32-bit and dword-aligned only (the
//! lowest common denominator of mechanism #1 and ECAM); 8- and 16-bit reads here are
//! derived from one dword read. Offsets are always below [`ConfigSpace::limit`]:
//! callers in this module check that before every access, so an implementation may
//! assume it. Values read are untrusted (a device, or firmware, may report anything).
//!
//! Spec: PCI Local Bus Specification 3.0 §6.1–§6.2 (header layout, command register);
//! PCI-to-PCI Bridge Architecture Specification 1.2 §3.2 (type-1 header).

use core::fmt;

/// Vendor ID register (16 bits); 0xFFFF means "no function here".
pub const PCI_VENDOR_ID: u16 = 0x00;
/// Device ID register (16 bits).
pub const PCI_DEVICE_ID: u16 = 0x02;
/// Command register (16 bits, read-write).
pub const PCI_COMMAND: u16 = 0x04;
/// Status register (16 bits, bits are RW1C: write 0 to leave them alone).
pub const PCI_STATUS: u16 = 0x06;
/// Revision ID (8 bits), then prog-if, subclass, class code.
pub const PCI_REVISION_ID: u16 = 0x08;
/// Header type (8 bits): layout in bits 6:0, multi-function in bit 7.
pub const PCI_HEADER_TYPE: u16 = 0x0E;
/// First base address register; BAR n is at `PCI_BASE_ADDRESS_0 + 4 * n`.
pub const PCI_BASE_ADDRESS_0: u16 = 0x10;
/// Type 1: primary, secondary, subordinate bus numbers, secondary latency timer.
pub const PCI_PRIMARY_BUS: u16 = 0x18;
/// Type 0: subsystem vendor ID (16 bits), then subsystem ID.
pub const PCI_SUBSYSTEM_VENDOR_ID: u16 = 0x2C;
/// Capabilities pointer (8 bits, low two bits reserved) in type-0 and type-1 headers.
pub const PCI_CAPABILITY_LIST: u16 = 0x34;
/// Interrupt line (8 bits, written by firmware), then interrupt pin (1 = INTA#).
pub const PCI_INTERRUPT_LINE: u16 = 0x3C;

/// Command register: respond to I/O space accesses.
pub const PCI_COMMAND_IO: u16 = 1 << 0;
/// Command register: respond to memory space accesses.
pub const PCI_COMMAND_MEMORY: u16 = 1 << 1;
/// Command register: may master the bus (DMA, and MSI writes).
pub const PCI_COMMAND_MASTER: u16 = 1 << 2;
/// Command register: INTx# assertion disabled.
pub const PCI_COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Status register: a capabilities list is present at [`PCI_CAPABILITY_LIST`].
pub const PCI_STATUS_CAP_LIST: u16 = 1 << 4;

/// Size of the legacy (mechanism #1) configuration space of one function.
pub const LEGACY_CONFIG_SIZE: u16 = 256;
/// Size of the PCI Express (ECAM) configuration space of one function.
pub const EXTENDED_CONFIG_SIZE: u16 = 4096;

/// One function's place in the hierarchy. `device` is below 32 and `function` below 8
/// (checked by [`PciAddress::new`]; the fields are public for matching and tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    /// PCI segment group (ACPI MCFG); 0 on machines with one host bridge.
    pub segment: u16,
    pub bus: u8,
    /// Device number, 0..32.
    pub device: u8,
    /// Function number, 0..8.
    pub function: u8,
}

impl PciAddress {
    /// `None` if `device` ≥ 32 or `function` ≥ 8.
    pub fn new(segment: u16, bus: u8, device: u8, function: u8) -> Option<Self> {
        (device < 32 && function < 8).then_some(Self { segment, bus, device, function })
    }
}

impl fmt::Display for PciAddress {
    /// Linux's spelling: `0000:00:1f.2`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:04x}:{:02x}:{:02x}.{:x}", self.segment, self.bus, self.device, self.function)
    }
}

/// Reads and writes one function's configuration space, 32 bits at a time.
///
/// Contract: `offset` is a multiple of 4 and below [`ConfigSpace::limit`] (the callers
/// in this module guarantee it). A read of a function that does not exist returns
/// all ones (what the hardware does: a master abort). Implementations never panic.
pub trait ConfigSpace {
    /// The dword at `offset` of `address`'s configuration space.
    fn read32(&mut self, address: PciAddress, offset: u16) -> u32;
    /// Writes the dword at `offset`. Writes to read-only bits are ignored by devices.
    fn write32(&mut self, address: PciAddress, offset: u16, value: u32);
    /// True for 4 KiB PCI Express configuration spaces (ECAM), false for 256-byte
    /// legacy ones (port I/O): extended capabilities live at 0x100 and above.
    fn extended(&self) -> bool;

    /// One past the last valid offset.
    fn limit(&self) -> u16 {
        if self.extended() {
            EXTENDED_CONFIG_SIZE
        } else {
            LEGACY_CONFIG_SIZE
        }
    }
}

/// The dword containing `offset`, or all ones if it lies outside the space.
pub(crate) fn read_dword<C: ConfigSpace + ?Sized>(config: &mut C, address: PciAddress, offset: u16) -> u32 {
    let aligned = offset & !3;
    if aligned >= config.limit() {
        return u32::MAX;
    }
    config.read32(address, aligned)
}

/// The 16-bit register at `offset` (must be 2-byte aligned; low bit is ignored).
pub(crate) fn read16<C: ConfigSpace + ?Sized>(config: &mut C, address: PciAddress, offset: u16) -> u16 {
    let shift = u32::from(offset & 2) * 8;
    (read_dword(config, address, offset) >> shift) as u16
}

/// The 8-bit register at `offset`.
pub(crate) fn read8<C: ConfigSpace + ?Sized>(config: &mut C, address: PciAddress, offset: u16) -> u8 {
    let shift = u32::from(offset & 3) * 8;
    (read_dword(config, address, offset) >> shift) as u8
}

/// Writes the dword at `offset` if it lies inside the space (silently dropped otherwise).
pub(crate) fn write_dword<C: ConfigSpace + ?Sized>(config: &mut C, address: PciAddress, offset: u16, value: u32) {
    let aligned = offset & !3;
    if aligned < config.limit() {
        config.write32(address, aligned, value);
    }
}

/// The command register.
pub fn read_command<C: ConfigSpace + ?Sized>(config: &mut C, address: PciAddress) -> u16 {
    read16(config, address, PCI_COMMAND)
}

/// Writes the command register. The status register shares the dword; its bits are
/// RW1C, so it is written as zero, which leaves it unchanged.
pub fn write_command<C: ConfigSpace + ?Sized>(config: &mut C, address: PciAddress, command: u16) {
    write_dword(config, address, PCI_COMMAND, u32::from(command));
}

/// Sets `bits` in the command register (read-modify-write); returns the new value.
pub fn set_command_bits<C: ConfigSpace + ?Sized>(config: &mut C, address: PciAddress, bits: u16) -> u16 {
    let command = read_command(config, address) | bits;
    write_command(config, address, command);
    command
}

/// Clears `bits` in the command register; returns the new value.
pub fn clear_command_bits<C: ConfigSpace + ?Sized>(config: &mut C, address: PciAddress, bits: u16) -> u16 {
    let command = read_command(config, address) & !bits;
    write_command(config, address, command);
    command
}

/// Lets the function do DMA (and send MSI writes).
pub fn enable_bus_mastering<C: ConfigSpace + ?Sized>(config: &mut C, address: PciAddress) {
    set_command_bits(config, address, PCI_COMMAND_MASTER);
}

/// Makes the function answer accesses to its memory BARs.
pub fn enable_memory_decoding<C: ConfigSpace + ?Sized>(config: &mut C, address: PciAddress) {
    set_command_bits(config, address, PCI_COMMAND_MEMORY);
}

/// Makes the function answer accesses to its I/O BARs.
pub fn enable_io_decoding<C: ConfigSpace + ?Sized>(config: &mut C, address: PciAddress) {
    set_command_bits(config, address, PCI_COMMAND_IO);
}

/// Stops INTx# (after MSI or MSI-X is enabled).
pub fn disable_intx<C: ConfigSpace + ?Sized>(config: &mut C, address: PciAddress) {
    set_command_bits(config, address, PCI_COMMAND_INTX_DISABLE);
}
