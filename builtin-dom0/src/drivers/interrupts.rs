//! Message-signalled interrupts for dom0's storage devices: MSI-X when the function
//! has it (every table entry gets the platform's message), else MSI with one vector,
//! else none (the driver polls). INTx is switched off in every case.
//!
//! Why every MSI-X entry the same: completions are polled, the interrupt only wakes
//! the polling CPU, so whichever vector a device picks must reach that CPU. Entries
//! beyond [`MAX_MSIX_ENTRIES`] stay masked.
//!
//! Why INTx off even when polling: nothing acknowledges a level-triggered line inside
//! an interrupt handler here, so an asserted INTx would either storm or be ignored;
//! polling covers the device either way. For the same reason a function left in MSI or
//! MSI-X mode by firmware is switched back off when no message is available: its
//! messages would go wherever firmware pointed them.
//!
//! Spec: PCI Local Bus 3.0 §6.8.1 (MSI), §6.8.2 (MSI-X: "the function must not have
//! both enabled", the table and its vector control mask bit), §6.2.2 (command register
//! Interrupt Disable).

use super::Platform;
use crate::pci::{
    disable_intx, CapabilityKind, ConfigSpace, MsiCapability, MsixCapability, PciAddress, PciFunction,
    PCI_MSIX_ENTRY_CTRL_MASKBIT, PCI_MSIX_ENTRY_SIZE,
};
use core::fmt;

/// MSI-X table entries programmed at most.
pub const MAX_MSIX_ENTRIES: u16 = 64;

/// MSI message control bit 0 (MSI Enable), in the capability's first dword at bit 16.
const MSI_CONTROL_ENABLE_IN_DWORD: u32 = 1 << 16;

/// How a function signals completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterruptMode {
    /// MSI-X with `entries` table entries programmed (vectors 0..entries).
    MsiX { entries: u16 },
    /// MSI with one vector.
    Msi,
    /// No message interrupts (none offered, or none available): polling only.
    Polled,
}

impl InterruptMode {
    /// MSI-X vector number `index` may be used by the device (always true for MSI:
    /// vector 0).
    pub fn has_vector(&self, index: u16) -> bool {
        match self {
            InterruptMode::MsiX { entries } => index < *entries,
            InterruptMode::Msi => index == 0,
            InterruptMode::Polled => false,
        }
    }

    /// The device may be told to raise interrupts (MSI-X or MSI is set up).
    pub fn signals(&self) -> bool {
        !matches!(self, InterruptMode::Polled)
    }
}

impl fmt::Display for InterruptMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InterruptMode::MsiX { .. } => f.write_str("msi-x"),
            InterruptMode::Msi => f.write_str("msi"),
            InterruptMode::Polled => f.write_str("polled"),
        }
    }
}

fn msix_capability(function: &PciFunction) -> Option<MsixCapability> {
    function.capabilities.iter().find_map(|capability| match capability.kind {
        CapabilityKind::MsiX(msix) => Some(msix),
        _ => None,
    })
}

fn msi_capability(function: &PciFunction) -> Option<MsiCapability> {
    function.capabilities.iter().find_map(|capability| match capability.kind {
        CapabilityKind::Msi(msi) => Some(msi),
        _ => None,
    })
}

/// Clears MSI Enable (message control bit 0) if it is set.
fn disable_msi(config: &mut dyn ConfigSpace, address: PciAddress, msi: &MsiCapability) {
    // Capability offsets are dword aligned (the list walk masks the low bits).
    let offset = u16::from(msi.offset);
    let dword = config.read32(address, offset);
    if dword & MSI_CONTROL_ENABLE_IN_DWORD != 0 {
        config.write32(address, offset, dword & !MSI_CONTROL_ENABLE_IN_DWORD);
    }
}

/// Programs MSI-X (preferred) or MSI to the platform's message and turns INTx off.
/// Call after the function's BARs are decoded and before the device is told to
/// raise interrupts; bus mastering must be on for messages to be sent.
///
/// MSI-X is used only if its table lies wholly inside a mappable memory BAR (a table
/// that does not fit is a malformed device: entries that cannot be written cannot be
/// masked either). With no platform message, MSI and MSI-X are switched off.
pub fn enable_message_interrupts(
    function: &PciFunction,
    config: &mut dyn ConfigSpace,
    platform: &dyn Platform,
) -> InterruptMode {
    let address = function.address;
    disable_intx(config, address);
    let msix = msix_capability(function);
    let msi = msi_capability(function);
    let Some((message_address, data)) = platform.interrupt_message() else {
        // `enabled` is what enumeration saw; the register is what counts.
        if let Some(msix) = msix {
            msix.set_enabled(config, address, false, false);
        }
        if let Some(msi) = msi {
            disable_msi(config, address, &msi);
        }
        return InterruptMode::Polled;
    };
    if let Some(msix) = msix {
        let table_bar = function.bars.iter().find(|bar| bar.index == msix.table_bir && bar.is_memory());
        let table_end = u64::from(msix.table_offset) + PCI_MSIX_ENTRY_SIZE * u64::from(msix.table_size);
        let registers = table_bar.and_then(|bar| platform.map_bar(bar)).filter(|table| table_end <= table.len());
        if let Some(registers) = registers {
            if let Some(msi) = msi {
                disable_msi(config, address, &msi);
            }
            let entries = msix.table_size.min(MAX_MSIX_ENTRIES);
            // Function-masked while the table changes.
            msix.set_enabled(config, address, true, true);
            for vector in 0..msix.table_size {
                let entry = u64::from(msix.table_offset) + PCI_MSIX_ENTRY_SIZE * u64::from(vector);
                if vector < entries {
                    registers.write32(entry, message_address as u32);
                    registers.write32(entry + 4, (message_address >> 32) as u32);
                    registers.write32(entry + 8, data);
                    registers.write32(entry + 12, 0);
                } else {
                    registers.write32(entry + 12, PCI_MSIX_ENTRY_CTRL_MASKBIT);
                }
            }
            msix.set_enabled(config, address, true, false);
            return InterruptMode::MsiX { entries };
        }
        msix.set_enabled(config, address, false, false);
    }
    if let (Some(msi), Ok(data)) = (msi, u16::try_from(data)) {
        if msi.program(config, address, message_address, data, 1).is_ok() {
            return InterruptMode::Msi;
        }
        disable_msi(config, address, &msi);
    }
    InterruptMode::Polled
}
