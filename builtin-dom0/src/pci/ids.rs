//! Human names for class codes and a few vendors, and the device-ID tests drivers use
//! to claim a function. A small table, not the pci.ids database: enough for the `pci`
//! command to say what QEMU's and common servers' devices are.
//!
//! Spec: PCI Code and ID Assignment Specification 1.11 §1 (base class, sub-class,
//! programming interface); the virtio IDs are from Virtio 1.1 §4.1.2.

/// A row of the class table: `subclass`/`prog_if` of `None` match anything.
struct ClassName {
    class: u8,
    subclass: Option<u8>,
    prog_if: Option<u8>,
    name: &'static str,
}

const fn row(class: u8, subclass: Option<u8>, prog_if: Option<u8>, name: &'static str) -> ClassName {
    ClassName { class, subclass, prog_if, name }
}

/// Most specific rows first within a class; [`class_name`] takes the best match.
static CLASS_NAMES: &[ClassName] = &[
    row(0x00, None, None, "Unclassified device"),
    row(0x01, Some(0x00), None, "SCSI storage controller"),
    row(0x01, Some(0x01), None, "IDE interface"),
    row(0x01, Some(0x04), None, "RAID bus controller"),
    row(0x01, Some(0x05), None, "ATA controller"),
    row(0x01, Some(0x06), Some(0x01), "SATA controller (AHCI)"),
    row(0x01, Some(0x06), None, "SATA controller"),
    row(0x01, Some(0x07), None, "Serial Attached SCSI controller"),
    row(0x01, Some(0x08), Some(0x02), "NVM Express"),
    row(0x01, Some(0x08), None, "Non-volatile memory controller"),
    row(0x01, None, None, "Mass storage controller"),
    row(0x02, Some(0x00), None, "Ethernet"),
    row(0x02, None, None, "Network controller"),
    row(0x03, Some(0x00), None, "VGA"),
    row(0x03, None, None, "Display controller"),
    row(0x04, None, None, "Multimedia controller"),
    row(0x05, None, None, "Memory controller"),
    row(0x06, Some(0x00), None, "Host bridge"),
    row(0x06, Some(0x01), None, "ISA bridge"),
    row(0x06, Some(0x04), None, "PCI bridge"),
    row(0x06, None, None, "Bridge"),
    row(0x07, None, None, "Communication controller"),
    row(0x08, None, None, "System peripheral"),
    row(0x0C, Some(0x03), Some(0x00), "USB UHCI"),
    row(0x0C, Some(0x03), Some(0x10), "USB OHCI"),
    row(0x0C, Some(0x03), Some(0x20), "USB EHCI"),
    row(0x0C, Some(0x03), Some(0x30), "USB xHCI"),
    row(0x0C, Some(0x03), None, "USB controller"),
    row(0x0C, Some(0x05), None, "SMBus"),
    row(0x0C, None, None, "Serial bus controller"),
];

/// The name of a class code, from the most specific matching row; "Unknown class" if
/// none matches.
pub fn class_name(class: u8, subclass: u8, prog_if: u8) -> &'static str {
    CLASS_NAMES
        .iter()
        .filter(|row| {
            row.class == class
                && row.subclass.is_none_or(|value| value == subclass)
                && row.prog_if.is_none_or(|value| value == prog_if)
        })
        .max_by_key(|row| (row.subclass.is_some(), row.prog_if.is_some()))
        .map_or("Unknown class", |row| row.name)
}

pub const PCI_VENDOR_ID_INTEL: u16 = 0x8086;
pub const PCI_VENDOR_ID_AMD: u16 = 0x1022;
pub const PCI_VENDOR_ID_REDHAT_QUMRANET: u16 = 0x1AF4;
pub const PCI_VENDOR_ID_REDHAT: u16 = 0x1B36;

static VENDOR_NAMES: &[(u16, &str)] = &[
    (PCI_VENDOR_ID_INTEL, "Intel"),
    (PCI_VENDOR_ID_AMD, "AMD"),
    (PCI_VENDOR_ID_REDHAT_QUMRANET, "Red Hat (virtio)"),
    (PCI_VENDOR_ID_REDHAT, "Red Hat (QEMU)"),
    (0x15AD, "VMware"),
    (0x10DE, "NVIDIA"),
    (0x144D, "Samsung"),
];

/// The vendor's name, if it is in the small table.
pub fn vendor_name(vendor_id: u16) -> Option<&'static str> {
    VENDOR_NAMES.iter().find(|(id, _)| *id == vendor_id).map(|(_, name)| *name)
}

/// Transitional (legacy) virtio-blk device ID.
pub const VIRTIO_BLK_LEGACY_DEVICE_ID: u16 = 0x1001;
/// Modern virtio-blk device ID (0x1040 + virtio device type 2).
pub const VIRTIO_BLK_MODERN_DEVICE_ID: u16 = 0x1042;

/// True for a virtio block device, transitional or modern.
pub fn is_virtio_blk(vendor_id: u16, device_id: u16) -> bool {
    vendor_id == PCI_VENDOR_ID_REDHAT_QUMRANET
        && matches!(device_id, VIRTIO_BLK_LEGACY_DEVICE_ID | VIRTIO_BLK_MODERN_DEVICE_ID)
}
