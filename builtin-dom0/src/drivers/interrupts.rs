//! Message-signalled interrupts for dom0's storage devices: MSI-X when the function
//! has it (every table entry gets the platform's message), else MSI with one vector,
//! else none (the driver polls; INTx stays off).
//!
//! Why every MSI-X entry the same: completions are polled, the interrupt only wakes
//! the polling CPU, so whichever vector a device picks must reach that CPU. Entries
//! beyond [`MAX_MSIX_ENTRIES`] stay masked.

use super::Platform;
use crate::pci::{disable_intx, CapabilityKind, ConfigSpace, PciFunction, PCI_MSIX_ENTRY_SIZE};
use core::fmt;

/// MSI-X table entries programmed at most.
pub const MAX_MSIX_ENTRIES: u16 = 64;

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

/// Programs MSI-X (preferred) or MSI to the platform's message and turns INTx off.
/// Call after the function's BARs are decoded and before the device is told to
/// raise interrupts; bus mastering must be on for messages to be sent.
pub fn enable_message_interrupts(
    function: &PciFunction,
    config: &mut dyn ConfigSpace,
    platform: &dyn Platform,
) -> InterruptMode {
    let Some((message_address, data)) = platform.interrupt_message() else { return InterruptMode::Polled };
    let address = function.address;
    let msix = function.capabilities.iter().find_map(|capability| match capability.kind {
        CapabilityKind::MsiX(msix) => Some(msix),
        _ => None,
    });
    if let Some(msix) = msix {
        let table_bar = function.bars.iter().find(|bar| bar.index == msix.table_bir && bar.is_memory());
        if let Some(registers) = table_bar.and_then(|bar| platform.map_bar(bar)) {
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
                    registers.write32(entry + 12, crate::pci::PCI_MSIX_ENTRY_CTRL_MASKBIT);
                }
            }
            msix.set_enabled(config, address, true, false);
            disable_intx(config, address);
            return InterruptMode::MsiX { entries };
        }
    }
    let msi = function.capabilities.iter().find_map(|capability| match capability.kind {
        CapabilityKind::Msi(msi) => Some(msi),
        _ => None,
    });
    if let Some(msi) = msi {
        if msi.program(config, address, message_address, data as u16, 1).is_ok() {
            disable_intx(config, address);
            return InterruptMode::Msi;
        }
    }
    InterruptMode::Polled
}
