//! PCI, the portable half: enumeration, BAR sizing, capabilities (MSI, MSI-X, PCI
//! Express, power management), class and vendor names, and the rows of the `pci`
//! shell command.
//!
//! Why here: dom0 owns the machine's devices (issue 6), and everything about PCI except
//! the access mechanism is logic that must be tested on the host. The hypervisor side
//! implements [`ConfigSpace`] (port I/O at 0xCF8/0xCFC, or ECAM found through ACPI
//! MCFG) and maps BAR memory; this module never touches hardware and never panics on
//! what a device or firmware reports. Every list the hardware links (capabilities,
//! bridges) is walked with a loop guard and bounds.
//!
//! Layout: `config` (access trait, addresses, command register), `enumerate` (the
//! bus walk), `bars` (sizing), `capabilities` (lists, MSI/MSI-X descriptors), `ids`
//! (names). Spec references are in each file.

mod bars;
mod capabilities;
mod config;
mod enumerate;
mod ids;
#[cfg(test)]
mod tests;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

pub use bars::{size_bars, Bar, BarKind};
pub use capabilities::{
    read_capabilities, read_extended_capabilities, Capability, CapabilityKind, ExtendedCapability, InterruptError,
    MsiCapability, MsixCapability, MsixTableEntry, PciExpressCapability, PowerManagementCapability, PCI_CAP_ID_EXP,
    PCI_CAP_ID_MSI, PCI_CAP_ID_MSIX, PCI_CAP_ID_PM, PCI_MSIX_ENTRY_CTRL_MASKBIT, PCI_MSIX_ENTRY_SIZE,
};
pub use config::{
    clear_command_bits, disable_intx, enable_bus_mastering, enable_io_decoding, enable_memory_decoding, read_command,
    set_command_bits, write_command, ConfigSpace, PciAddress, EXTENDED_CONFIG_SIZE, LEGACY_CONFIG_SIZE,
    PCI_BASE_ADDRESS_0, PCI_CAPABILITY_LIST, PCI_COMMAND, PCI_COMMAND_INTX_DISABLE, PCI_COMMAND_IO, PCI_COMMAND_MASTER,
    PCI_COMMAND_MEMORY, PCI_DEVICE_ID, PCI_HEADER_TYPE, PCI_INTERRUPT_LINE, PCI_PRIMARY_BUS, PCI_REVISION_ID,
    PCI_STATUS, PCI_STATUS_CAP_LIST, PCI_SUBSYSTEM_VENDOR_ID, PCI_VENDOR_ID,
};
pub use enumerate::{enumerate, BridgeBuses, ClassCode, HeaderType, PciFunction};
pub use ids::{
    class_name, is_virtio_blk, vendor_name, PCI_VENDOR_ID_AMD, PCI_VENDOR_ID_INTEL, PCI_VENDOR_ID_REDHAT,
    PCI_VENDOR_ID_REDHAT_QUMRANET, VIRTIO_BLK_LEGACY_DEVICE_ID, VIRTIO_BLK_MODERN_DEVICE_ID,
};

/// One line of the `pci` shell command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciListingRow {
    pub address: PciAddress,
    pub vendor_id: u16,
    pub device_id: u16,
    /// From the small vendor table, if known.
    pub vendor_name: Option<&'static str>,
    pub class_name: &'static str,
    /// The driver that claimed the function (filled in by the drivers).
    pub driver: Option<String>,
}

impl PciListingRow {
    /// The row for `function`, with no driver yet.
    pub fn new(function: &PciFunction) -> Self {
        Self {
            address: function.address,
            vendor_id: function.vendor_id,
            device_id: function.device_id,
            vendor_name: vendor_name(function.vendor_id),
            class_name: function.class.name(),
            driver: None,
        }
    }
}

impl fmt::Display for PciListingRow {
    /// `0000:00:1f.2 8086:2922 SATA controller (AHCI) (Intel) [ahci]`
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} {:04x}:{:04x} {}", self.address, self.vendor_id, self.device_id, self.class_name)?;
        if let Some(vendor) = self.vendor_name {
            write!(formatter, " ({vendor})")?;
        }
        match &self.driver {
            Some(driver) => write!(formatter, " [{driver}]"),
            None => Ok(()),
        }
    }
}

/// The rows of the `pci` command for an enumeration, without drivers.
pub fn listing(functions: &[PciFunction]) -> Vec<PciListingRow> {
    functions.iter().map(PciListingRow::new).collect()
}

/// A configuration space made of plain bytes, for the fuzz target and tests: each
/// function's space is a byte buffer that reads wrap around (so a short buffer still
/// fills a 4 KiB ECAM space) and writes land in like RAM. Absent functions read all
/// ones.
#[doc(hidden)]
pub struct ByteConfigSpace {
    pub functions: Vec<(PciAddress, Vec<u8>)>,
    pub extended: bool,
}

impl ByteConfigSpace {
    fn bytes_mut(&mut self, address: PciAddress) -> Option<&mut Vec<u8>> {
        self.functions
            .iter_mut()
            .find(|(candidate, bytes)| *candidate == address && !bytes.is_empty())
            .map(|(_, bytes)| bytes)
    }
}

impl ConfigSpace for ByteConfigSpace {
    fn read32(&mut self, address: PciAddress, offset: u16) -> u32 {
        assert!(offset.is_multiple_of(4) && offset < self.limit(), "bad offset {offset:#x}");
        let Some(bytes) = self.bytes_mut(address) else {
            return u32::MAX;
        };
        let length = bytes.len();
        let mut value = [0u8; 4];
        for (index, byte) in value.iter_mut().enumerate() {
            *byte = bytes[(usize::from(offset) + index) % length];
        }
        u32::from_le_bytes(value)
    }

    fn write32(&mut self, address: PciAddress, offset: u16, value: u32) {
        assert!(offset.is_multiple_of(4) && offset < self.limit(), "bad offset {offset:#x}");
        if let Some(bytes) = self.bytes_mut(address) {
            let length = bytes.len();
            for (index, byte) in value.to_le_bytes().into_iter().enumerate() {
                bytes[(usize::from(offset) + index) % length] = byte;
            }
        }
    }

    fn extended(&self) -> bool {
        self.extended
    }
}

/// The fuzz target's body (builtin-dom0/fuzz/fuzz_targets/pci_enumerate.rs), shared
/// with a host test. The first byte picks legacy or extended space; then each record
/// is a bus number, a device/function byte and 256 bytes of configuration space
/// (the last one may be short). Enumeration must terminate without panicking, every
/// offset accessed must be valid, and the result must keep the module's invariants.
/// Panics (by `assert!`) only when an invariant is broken — for fuzzing and tests.
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let mut functions = Vec::new();
    while let [bus, device_function, after @ ..] = rest {
        let length = after.len().min(256);
        let (bytes, after) = after.split_at(length);
        let address =
            PciAddress { segment: 0, bus: *bus, device: (device_function >> 3) & 0x1F, function: device_function & 7 };
        functions.push((address, bytes.to_vec()));
        rest = after;
        if functions.len() == 64 {
            break;
        }
    }
    let mut config = ByteConfigSpace { functions, extended: mode & 1 != 0 };
    let found = enumerate(&mut config, 0);
    for (position, function) in found.iter().enumerate() {
        assert!(function.address.device < 32 && function.address.function < 8);
        assert!(
            found[..position].iter().all(|earlier| earlier.address != function.address),
            "{} listed twice",
            function.address
        );
        let slots = function.header_type.bar_count();
        for (bar_position, bar) in function.bars.iter().enumerate() {
            assert!(bar.size.is_power_of_two());
            assert!(bar.index < slots);
            if bar.kind == BarKind::Memory64 {
                assert!(bar.index + 1 < slots);
            }
            assert!(function.bars[..bar_position].iter().all(|earlier| earlier.index != bar.index));
        }
        assert!(function.capabilities.len() <= 48);
        assert!(function.extended_capabilities.len() <= 960);
        let row = PciListingRow::new(function);
        assert!(!alloc::format!("{row}").contains('\n'));
    }
}
