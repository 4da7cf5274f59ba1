//! The capabilities lists: the legacy list in the first 256 bytes (PCI Local Bus
//! Specification 3.0 §6.7) and the PCI Express extended list from 0x100 (PCIe Base
//! Specification §7.6), with MSI (§6.8.1), MSI-X (§6.8.2), PCI Express (PCIe §7.5.3)
//! and power management (PCI PM 1.2 §3.2) decoded.
//!
//! The lists are linked by pointers the device supplies, so every walk is bounded:
//! a pointer outside the space (or into the header) ends it, a pointer already seen
//! ends it (loops), and at most one entry per dword is ever read. MSI is programmed in
//! configuration space here; the MSI-X table lives in BAR memory that only the
//! hypervisor maps, so for it this module only says where each entry is and what to
//! write there ([`MsixTableEntry`]).

use alloc::vec::Vec;

use super::bars::Bar;
use super::config::{
    read16, read_dword, write_dword, ConfigSpace, PciAddress, PCI_CAPABILITY_LIST, PCI_STATUS, PCI_STATUS_CAP_LIST,
};

/// Capability IDs (PCI Code and ID Assignment Specification §2).
pub const PCI_CAP_ID_PM: u8 = 0x01;
pub const PCI_CAP_ID_MSI: u8 = 0x05;
pub const PCI_CAP_ID_EXP: u8 = 0x10;
pub const PCI_CAP_ID_MSIX: u8 = 0x11;

/// The first offset after the standard header, where legacy capabilities may live.
const FIRST_CAPABILITY_OFFSET: u16 = 0x40;
/// Where the extended list starts.
const FIRST_EXTENDED_OFFSET: u16 = 0x100;

/// One entry of the legacy list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// Offset of the entry in configuration space.
    pub offset: u8,
    /// Capability ID (the `PCI_CAP_ID_*` values).
    pub id: u8,
    pub kind: CapabilityKind,
}

/// What is decoded of a capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapabilityKind {
    PowerManagement(PowerManagementCapability),
    Msi(MsiCapability),
    MsiX(MsixCapability),
    PciExpress(PciExpressCapability),
    /// Any other ID: only its place is recorded.
    Other,
}

/// Power management (PMC at +2, PMCSR at +4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PowerManagementCapability {
    /// PMC bits 2:0.
    pub version: u8,
    /// PMCSR bits 1:0: D0..D3hot.
    pub power_state: u8,
}

/// Message Signalled Interrupts. Layout: control at +2, address at +4, then (64-bit)
/// upper address at +8, data at +8 or +12, mask bits after the data when per-vector
/// masking is supported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiCapability {
    pub offset: u8,
    /// Message control bit 0.
    pub enabled: bool,
    /// Vectors the function can request: 1 << (control bits 3:1), at most 32.
    pub vectors_capable: u8,
    /// Control bit 7: the message address may be above 4 GiB.
    pub address_64bit: bool,
    /// Control bit 8: mask and pending bits exist.
    pub per_vector_masking: bool,
}

const PCI_MSI_FLAGS_ENABLE: u16 = 1 << 0;
const PCI_MSI_FLAGS_QMASK: u16 = 0b111 << 1;
const PCI_MSI_FLAGS_QSIZE: u16 = 0b111 << 4;
const PCI_MSI_FLAGS_64BIT: u16 = 1 << 7;
const PCI_MSI_FLAGS_MASKBIT: u16 = 1 << 8;

/// Why an interrupt could not be configured as asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptError {
    /// The message address is above 4 GiB and the MSI capability is 32-bit only.
    AddressNeeds64Bit,
    /// More vectors (or a vector number higher) than the function supports.
    VectorOutOfRange,
    /// The BAR that holds the MSI-X table (or PBA) was not found.
    BarNotImplemented,
}

impl MsiCapability {
    fn decode(offset: u8, control: u16) -> Self {
        let log2 = ((control & PCI_MSI_FLAGS_QMASK) >> 1).min(5);
        Self {
            offset,
            enabled: control & PCI_MSI_FLAGS_ENABLE != 0,
            vectors_capable: 1 << log2,
            address_64bit: control & PCI_MSI_FLAGS_64BIT != 0,
            per_vector_masking: control & PCI_MSI_FLAGS_MASKBIT != 0,
        }
    }

    /// Offset of the message data register.
    pub fn data_offset(&self) -> u16 {
        u16::from(self.offset) + if self.address_64bit { 0x0C } else { 0x08 }
    }

    /// Offset of the mask bits register (meaningful with per-vector masking).
    pub fn mask_offset(&self) -> u16 {
        self.data_offset() + 4
    }

    /// Programs `vectors` (a power of two, at most [`Self::vectors_capable`]) messages
    /// to `message_address` with data `data` (the function ORs the vector number into
    /// the low bits), unmasks them, and sets the enable bit. Bus mastering must also be
    /// on for the messages to be sent.
    pub fn program<C: ConfigSpace + ?Sized>(
        &self,
        config: &mut C,
        address: PciAddress,
        message_address: u64,
        data: u16,
        vectors: u8,
    ) -> Result<(), InterruptError> {
        if !self.address_64bit && message_address > u64::from(u32::MAX) {
            return Err(InterruptError::AddressNeeds64Bit);
        }
        if vectors == 0 || !vectors.is_power_of_two() || vectors > self.vectors_capable {
            return Err(InterruptError::VectorOutOfRange);
        }
        let base = u16::from(self.offset);
        let dword0 = read_dword(config, address, base);
        let control = (dword0 >> 16) as u16;
        // Disable while the address and data change, then enable with the vector count.
        let disabled = control & !(PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE);
        write_dword(config, address, base, (dword0 & 0xFFFF) | (u32::from(disabled) << 16));
        write_dword(config, address, base + 4, message_address as u32);
        if self.address_64bit {
            write_dword(config, address, base + 8, (message_address >> 32) as u32);
        }
        let data_dword = read_dword(config, address, self.data_offset());
        write_dword(config, address, self.data_offset(), (data_dword & 0xFFFF_0000) | u32::from(data));
        if self.per_vector_masking {
            write_dword(config, address, self.mask_offset(), 0);
        }
        let log2 = vectors.trailing_zeros() as u16;
        let enabled = disabled | (log2 << 4) | PCI_MSI_FLAGS_ENABLE;
        write_dword(config, address, base, (dword0 & 0xFFFF) | (u32::from(enabled) << 16));
        Ok(())
    }
}

/// MSI-X: control at +2, table offset/BIR at +4, PBA offset/BIR at +8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixCapability {
    pub offset: u8,
    /// Control bit 15.
    pub enabled: bool,
    /// Control bit 14: all vectors masked.
    pub function_masked: bool,
    /// Entries in the table: control bits 10:0 plus one (1..=2048).
    pub table_size: u16,
    /// BAR index (bits 2:0 of +4) holding the table; values 6 and 7 are reserved.
    pub table_bir: u8,
    /// Byte offset of the table inside that BAR (8-byte aligned).
    pub table_offset: u32,
    /// BAR index holding the pending-bit array.
    pub pba_bir: u8,
    /// Byte offset of the pending-bit array inside that BAR.
    pub pba_offset: u32,
}

const PCI_MSIX_FLAGS_QSIZE: u16 = 0x7FF;
const PCI_MSIX_FLAGS_MASKALL: u16 = 1 << 14;
const PCI_MSIX_FLAGS_ENABLE: u16 = 1 << 15;
/// Bytes per MSI-X table entry: address low, address high, data, vector control.
pub const PCI_MSIX_ENTRY_SIZE: u64 = 16;
/// Vector control bit 0: this entry is masked.
pub const PCI_MSIX_ENTRY_CTRL_MASKBIT: u32 = 1;

/// Where one MSI-X table entry is and what to write there (the hypervisor maps BAR
/// memory and performs the writes; nothing here touches it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixTableEntry {
    /// BAR index holding the table.
    pub bar: u8,
    /// Physical address of the entry (BAR base + table offset + 16 × vector).
    pub physical_address: u64,
    /// The four dwords, in order: address low, address high, data, vector control.
    pub dwords: [u32; 4],
}

impl MsixCapability {
    /// Where entry `vector` lives, given the function's sized BARs, and the dwords that
    /// program it to `message_address`/`data`, unmasked unless `masked`.
    pub fn table_entry(
        &self,
        bars: &[Bar],
        vector: u16,
        message_address: u64,
        data: u32,
        masked: bool,
    ) -> Result<MsixTableEntry, InterruptError> {
        if vector >= self.table_size {
            return Err(InterruptError::VectorOutOfRange);
        }
        let bar = bars
            .iter()
            .find(|bar| bar.index == self.table_bir && bar.is_memory())
            .ok_or(InterruptError::BarNotImplemented)?;
        let entry_offset = u64::from(self.table_offset) + PCI_MSIX_ENTRY_SIZE * u64::from(vector);
        if entry_offset + PCI_MSIX_ENTRY_SIZE > bar.size {
            return Err(InterruptError::BarNotImplemented);
        }
        Ok(MsixTableEntry {
            bar: self.table_bir,
            physical_address: bar.address.saturating_add(entry_offset),
            dwords: [
                message_address as u32,
                (message_address >> 32) as u32,
                data,
                if masked { PCI_MSIX_ENTRY_CTRL_MASKBIT } else { 0 },
            ],
        })
    }

    /// Physical address of the pending-bit array.
    pub fn pba_address(&self, bars: &[Bar]) -> Result<u64, InterruptError> {
        bars.iter()
            .find(|bar| bar.index == self.pba_bir && bar.is_memory())
            .map(|bar| bar.address.saturating_add(u64::from(self.pba_offset)))
            .ok_or(InterruptError::BarNotImplemented)
    }

    /// Sets MSI-X enable and the function mask as given, in configuration space.
    pub fn set_enabled<C: ConfigSpace + ?Sized>(
        &self,
        config: &mut C,
        address: PciAddress,
        enabled: bool,
        function_masked: bool,
    ) {
        let base = u16::from(self.offset);
        let dword0 = read_dword(config, address, base);
        let mut control = (dword0 >> 16) as u16 & !(PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
        if enabled {
            control |= PCI_MSIX_FLAGS_ENABLE;
        }
        if function_masked {
            control |= PCI_MSIX_FLAGS_MASKALL;
        }
        write_dword(config, address, base, (dword0 & 0xFFFF) | (u32::from(control) << 16));
    }
}

/// The PCI Express capability (capabilities register at +2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciExpressCapability {
    /// Bits 3:0.
    pub version: u8,
    /// Bits 7:4: 0 endpoint, 4 root port, 5/6 switch ports, 9 RC integrated endpoint…
    pub device_port_type: u8,
}

/// One entry of the extended list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtendedCapability {
    pub offset: u16,
    /// Extended capability ID (header bits 15:0), e.g. 0x0001 AER, 0x000E ARI.
    pub id: u16,
    /// Header bits 19:16.
    pub version: u8,
}

/// Walks the legacy capabilities list of `address` (empty when status bit 4 is clear).
pub fn read_capabilities<C: ConfigSpace + ?Sized>(config: &mut C, address: PciAddress) -> Vec<Capability> {
    let mut capabilities = Vec::new();
    if read16(config, address, PCI_STATUS) & PCI_STATUS_CAP_LIST == 0 {
        return capabilities;
    }
    // One bit per dword of the 256-byte space: never read an entry twice.
    let mut seen = [false; 64];
    let mut pointer = u16::from(super::config::read8(config, address, PCI_CAPABILITY_LIST) & !3);
    while (FIRST_CAPABILITY_OFFSET..0x100).contains(&pointer) {
        let slot = usize::from(pointer / 4);
        if seen[slot] {
            break;
        }
        seen[slot] = true;
        let header = read_dword(config, address, pointer);
        let id = header as u8;
        let offset = pointer as u8;
        let register = (header >> 16) as u16;
        let kind = match id {
            PCI_CAP_ID_PM => CapabilityKind::PowerManagement(PowerManagementCapability {
                version: (register & 0b111) as u8,
                power_state: (read_dword(config, address, pointer + 4) & 0b11) as u8,
            }),
            PCI_CAP_ID_MSI => CapabilityKind::Msi(MsiCapability::decode(offset, register)),
            PCI_CAP_ID_MSIX => {
                let table = read_dword(config, address, pointer + 4);
                let pba = read_dword(config, address, pointer + 8);
                CapabilityKind::MsiX(MsixCapability {
                    offset,
                    enabled: register & PCI_MSIX_FLAGS_ENABLE != 0,
                    function_masked: register & PCI_MSIX_FLAGS_MASKALL != 0,
                    table_size: (register & PCI_MSIX_FLAGS_QSIZE) + 1,
                    table_bir: (table & 0b111) as u8,
                    table_offset: table & !0b111,
                    pba_bir: (pba & 0b111) as u8,
                    pba_offset: pba & !0b111,
                })
            }
            PCI_CAP_ID_EXP => CapabilityKind::PciExpress(PciExpressCapability {
                version: (register & 0xF) as u8,
                device_port_type: ((register >> 4) & 0xF) as u8,
            }),
            _ => CapabilityKind::Other,
        };
        capabilities.push(Capability { offset, id, kind });
        pointer = u16::from((header >> 8) as u8 & !3);
    }
    capabilities
}

/// Walks the extended capabilities list (empty unless the space is extended). An
/// all-zero or all-ones header ends it, as do loops and pointers below 0x100.
pub fn read_extended_capabilities<C: ConfigSpace + ?Sized>(
    config: &mut C,
    address: PciAddress,
) -> Vec<ExtendedCapability> {
    let mut capabilities = Vec::new();
    if !config.extended() {
        return capabilities;
    }
    let limit = config.limit();
    let mut seen = [false; 1024];
    let mut pointer = FIRST_EXTENDED_OFFSET;
    while (FIRST_EXTENDED_OFFSET..limit).contains(&pointer) {
        let slot = usize::from(pointer / 4);
        if seen.get(slot).copied().unwrap_or(true) {
            break;
        }
        seen[slot] = true;
        let header = read_dword(config, address, pointer);
        if header == 0 || header == u32::MAX {
            break;
        }
        capabilities.push(ExtendedCapability {
            offset: pointer,
            id: header as u16,
            version: ((header >> 16) & 0xF) as u8,
        });
        pointer = (header >> 20) as u16 & !3;
    }
    capabilities
}
