//! Host tests for PCI: a fake configuration space built from a small table of
//! functions (a q35-like machine: host bridge, VGA, a root port with an NVMe behind
//! it, virtio-blk transitional and modern, and the ICH9 multi-function device with
//! its ISA bridge, AHCI and SMBus), then hostile spaces (capability and bridge loops,
//! pointers out of range, absurd bus numbers, all ones everywhere).
//!
//! The fake models what sizing relies on: BARs keep their read-only low bits and
//! only their writable address bits (the mask) change; the command register is the
//! low half of its dword and writing the status half counts as a violation; BAR
//! writes while decoding is on are counted too.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use super::*;

/// One fake function: its bytes and, per BAR slot, the writable address bits.
#[derive(Clone)]
struct FakeFunction {
    bytes: Vec<u8>,
    bar_masks: [u32; 6],
}

impl FakeFunction {
    fn new(vendor_id: u16, device_id: u16, class: [u8; 3], header_type: u8) -> Self {
        let mut function = Self { bytes: vec![0; 4096], bar_masks: [0; 6] };
        function.set16(0x00, vendor_id);
        function.set16(0x02, device_id);
        function.set8(0x08, 0x02); // revision
        function.set8(0x09, class[2]);
        function.set8(0x0A, class[1]);
        function.set8(0x0B, class[0]);
        function.set8(0x0E, header_type);
        function.set16(0x04, PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
        function
    }

    fn set8(&mut self, offset: usize, value: u8) {
        self.bytes[offset] = value;
    }

    fn set16(&mut self, offset: usize, value: u16) {
        self.bytes[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
    }

    fn set32(&mut self, offset: usize, value: u32) {
        self.bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }

    fn get32(&self, offset: usize) -> u32 {
        u32::from_le_bytes(self.bytes[offset..offset + 4].try_into().unwrap())
    }

    /// A BAR with initial `value` and writable bits `mask`.
    fn bar(mut self, index: usize, value: u32, mask: u32) -> Self {
        self.set32(0x10 + 4 * index, value);
        self.bar_masks[index] = mask;
        self
    }

    /// A capability at `offset` with `id`, pointing to `next`, then `body` from +2.
    fn capability(mut self, offset: usize, id: u8, next: u8, body: &[u8]) -> Self {
        let status = u16::from_le_bytes([self.bytes[6], self.bytes[7]]);
        self.set16(0x06, status | PCI_STATUS_CAP_LIST);
        if self.bytes[0x34] == 0 {
            self.set8(0x34, offset as u8);
        }
        self.set8(offset, id);
        self.set8(offset + 1, next);
        self.bytes[offset + 2..offset + 2 + body.len()].copy_from_slice(body);
        self
    }

    fn bridge(mut self, primary: u8, secondary: u8, subordinate: u8) -> Self {
        self.set32(0x18, u32::from_le_bytes([primary, secondary, subordinate, 0]));
        self
    }

    fn command(&self) -> u16 {
        self.get32(0x04) as u16
    }
}

#[derive(Clone)]
struct FakeConfig {
    functions: BTreeMap<PciAddress, FakeFunction>,
    extended: bool,
    bar_writes_while_decoding: u32,
    status_writes: u32,
}

impl FakeConfig {
    fn new(functions: impl IntoIterator<Item = (PciAddress, FakeFunction)>) -> Self {
        Self {
            functions: functions.into_iter().collect(),
            extended: false,
            bar_writes_while_decoding: 0,
            status_writes: 0,
        }
    }

    fn function(&self, text: &str) -> &FakeFunction {
        &self.functions[&address(text)]
    }
}

impl ConfigSpace for FakeConfig {
    fn read32(&mut self, address: PciAddress, offset: u16) -> u32 {
        assert!(offset.is_multiple_of(4) && offset < self.limit(), "read at {offset:#x}");
        self.functions.get(&address).map_or(u32::MAX, |function| function.get32(usize::from(offset)))
    }

    fn write32(&mut self, address: PciAddress, offset: u16, value: u32) {
        assert!(offset.is_multiple_of(4) && offset < self.limit(), "write at {offset:#x}");
        let Some(function) = self.functions.get_mut(&address) else {
            return;
        };
        let offset = usize::from(offset);
        let bar_count = match function.bytes[0x0E] & 0x7F {
            0 => 6,
            1 => 2,
            _ => 0,
        };
        match offset {
            0x04 => {
                if value >> 16 != 0 {
                    self.status_writes += 1;
                }
                function.set16(0x04, value as u16);
            }
            0x00 | 0x08 | 0x0C => {} // Read-only (in this fake).
            _ if (0x10..0x10 + 4 * bar_count).contains(&offset) => {
                if function.command() & (PCI_COMMAND_IO | PCI_COMMAND_MEMORY) != 0 {
                    self.bar_writes_while_decoding += 1;
                }
                let mask = function.bar_masks[(offset - 0x10) / 4];
                let current = function.get32(offset);
                function.set32(offset, (value & mask) | (current & !mask));
            }
            _ => function.set32(offset, value),
        }
    }

    fn extended(&self) -> bool {
        self.extended
    }
}

fn address(text: &str) -> PciAddress {
    // "bb:dd.f"
    let bus = u8::from_str_radix(&text[0..2], 16).unwrap();
    let device = u8::from_str_radix(&text[3..5], 16).unwrap();
    let function = u8::from_str_radix(&text[6..7], 16).unwrap();
    PciAddress::new(0, bus, device, function).unwrap()
}

/// MSI, 64-bit, one vector, no masking.
const AHCI_MSI: [u8; 2] = [0x80, 0x00];
/// MSI-X: 65 entries; table in BAR0 at 0x2000, PBA in BAR0 at 0x3000.
const NVME_MSIX: [u8; 10] = [64, 0x00, 0x00, 0x20, 0, 0, 0x00, 0x30, 0, 0];

/// A q35-like machine.
fn q35() -> FakeConfig {
    let nvme = FakeFunction::new(0x8086, 0x5845, [0x01, 0x08, 0x02], 0)
        .bar(0, 0xFE00_0004, 0xFFFF_C000)
        .bar(1, 0x0000_0008, 0xFFFF_FFFF)
        .capability(0x40, PCI_CAP_ID_MSIX, 0x60, &NVME_MSIX)
        .capability(0x60, PCI_CAP_ID_EXP, 0x80, &[0x02, 0x00])
        .capability(0x80, PCI_CAP_ID_PM, 0x00, &[0x03, 0x00, 0x00, 0x00]);
    let mut nvme = nvme;
    // Extended: AER (0x0001 v1) at 0x100 → ARI (0x000E v1) at 0x148 → end.
    nvme.set32(0x100, 0x0001 | (1 << 16) | (0x148 << 20));
    nvme.set32(0x148, 0x000E | (1 << 16));

    let mut virtio_legacy = FakeFunction::new(0x1AF4, 0x1001, [0x01, 0x00, 0x00], 0)
        .bar(0, 0x0000_C001, 0xFFFF_FFC0)
        .bar(1, 0xFEBD_2000, 0xFFFF_F000)
        .bar(4, 0xFE80_000C, 0xFFFF_C000)
        .bar(5, 0x0000_0000, 0xFFFF_FFFF);
    virtio_legacy.set32(0x2C, 0x0002_1AF4);
    virtio_legacy.set16(0x3C, 0x010B);

    let mut ahci = FakeFunction::new(0x8086, 0x2922, [0x01, 0x06, 0x01], 0)
        .bar(4, 0x0000_D041, 0xFFFF_FFE0)
        .bar(5, 0xFEBD_1000, 0xFFFF_F000)
        .capability(0x80, PCI_CAP_ID_MSI, 0xA8, &AHCI_MSI)
        .capability(0xA8, 0x12, 0x00, &[0x10, 0x00]);
    ahci.set16(0x3C, 0x010A);

    FakeConfig::new([
        (address("00:00.0"), FakeFunction::new(0x8086, 0x29C0, [0x06, 0x00, 0x00], 0)),
        (
            address("00:01.0"),
            FakeFunction::new(0x1234, 0x1111, [0x03, 0x00, 0x00], 0).bar(0, 0xFD00_0008, 0xFF00_0000).bar(
                2,
                0xFEBD_0000,
                0xFFFF_F000,
            ),
        ),
        (
            address("00:02.0"),
            FakeFunction::new(0x1B36, 0x000C, [0x06, 0x04, 0x00], 1)
                .bridge(0, 1, 1)
                .bar(0, 0xFEBD_3000, 0xFFFF_F000)
                .capability(0x40, PCI_CAP_ID_EXP, 0x00, &[0x42, 0x00]),
        ),
        (address("01:00.0"), nvme),
        (address("00:03.0"), virtio_legacy),
        (
            address("00:04.0"),
            FakeFunction::new(0x1AF4, 0x1042, [0x01, 0x00, 0x00], 0).bar(4, 0xFE84_000C, 0xFFFF_C000).bar(
                5,
                0,
                0xFFFF_FFFF,
            ),
        ),
        (address("00:1f.0"), FakeFunction::new(0x8086, 0x2918, [0x06, 0x01, 0x00], 0x80)),
        (address("00:1f.2"), ahci),
        (address("00:1f.3"), FakeFunction::new(0x8086, 0x2930, [0x0C, 0x05, 0x00], 0).bar(4, 0x0000_0701, 0xFFFF_FFC0)),
    ])
}

fn find<'a>(functions: &'a [PciFunction], text: &str) -> &'a PciFunction {
    functions.iter().find(|function| function.address == address(text)).unwrap()
}

fn addresses(functions: &[PciFunction]) -> Vec<alloc::string::String> {
    functions.iter().map(|function| function.address.to_string()).collect()
}

#[test]
fn address_display_and_validation() {
    let ahci = PciAddress::new(0, 0, 0x1F, 2).unwrap();
    assert_eq!(ahci.to_string(), "0000:00:1f.2");
    assert_eq!(PciAddress::new(0x10, 0xAB, 3, 7).unwrap().to_string(), "0010:ab:03.7");
    assert!(PciAddress::new(0, 0, 32, 0).is_none());
    assert!(PciAddress::new(0, 0, 0, 8).is_none());
}

#[test]
fn enumeration_is_depth_first_and_multi_function_aware() {
    let mut config = q35();
    let functions = enumerate(&mut config, 0);
    assert_eq!(
        addresses(&functions),
        [
            "0000:00:00.0",
            "0000:00:01.0",
            "0000:00:02.0",
            "0000:01:00.0", // Behind the root port, listed right after it.
            "0000:00:03.0",
            "0000:00:04.0",
            "0000:00:1f.0",
            "0000:00:1f.2", // 1f.1 is absent: scanning goes on past the gap.
            "0000:00:1f.3",
        ]
    );
    let isa = find(&functions, "00:1f.0");
    assert!(isa.multi_function);
    assert_eq!(isa.class.name(), "ISA bridge");
    let bridge = find(&functions, "00:02.0");
    assert_eq!(bridge.header_type, HeaderType::PciBridge);
    assert_eq!(bridge.bridge, Some(BridgeBuses { primary: 0, secondary: 1, subordinate: 1, scanned: true }));
}

#[test]
fn a_single_function_device_is_not_scanned_past_function_0() {
    let mut config = q35();
    // A function 1 behind a device whose function 0 says "single function" is a ghost
    // (some devices decode only the device number) and must not be listed.
    config.functions.insert(address("00:03.1"), FakeFunction::new(0x1AF4, 0x1001, [0x01, 0x00, 0x00], 0));
    let functions = enumerate(&mut config, 0);
    assert!(functions.iter().all(|function| function.address != address("00:03.1")));
}

#[test]
fn header_fields_are_decoded() {
    let mut config = q35();
    let functions = enumerate(&mut config, 0);
    let virtio = find(&functions, "00:03.0");
    assert_eq!((virtio.vendor_id, virtio.device_id), (0x1AF4, 0x1001));
    assert_eq!(virtio.class, ClassCode { class: 1, subclass: 0, prog_if: 0 });
    assert_eq!(virtio.revision, 2);
    assert_eq!(virtio.header_type, HeaderType::Endpoint);
    assert!(!virtio.multi_function);
    assert_eq!((virtio.subsystem_vendor_id, virtio.subsystem_id), (0x1AF4, 0x0002));
    assert_eq!((virtio.interrupt_line, virtio.interrupt_pin), (11, 1));
    assert!(virtio.is_virtio_blk());
    assert!(find(&functions, "00:04.0").is_virtio_blk());
    assert!(!find(&functions, "01:00.0").is_virtio_blk());
    assert_eq!(find(&functions, "00:02.0").subsystem_vendor_id, 0);
}

#[test]
fn bars_are_sized_with_kinds() {
    let mut config = q35();
    let functions = enumerate(&mut config, 0);

    let ahci = find(&functions, "00:1f.2");
    assert_eq!(
        ahci.bars,
        [
            Bar { index: 4, kind: BarKind::Io, address: 0xD040, size: 32, prefetchable: false },
            Bar { index: 5, kind: BarKind::Memory32, address: 0xFEBD_1000, size: 4096, prefetchable: false },
        ]
    );

    let nvme = find(&functions, "01:00.0");
    assert_eq!(
        nvme.bars,
        [Bar { index: 0, kind: BarKind::Memory64, address: 0x8_FE00_0000, size: 16 * 1024, prefetchable: false }],
        "a 64-bit BAR takes two slots and is listed once"
    );

    let vga = find(&functions, "00:01.0");
    assert_eq!(vga.bar(0).map(|bar| (bar.size, bar.prefetchable)), Some((16 << 20, true)));
    assert_eq!(vga.bar(2).map(|bar| bar.size), Some(4096));
    assert!(vga.bar(1).is_none(), "unimplemented BARs are left out");

    let virtio = find(&functions, "00:03.0");
    let kinds: Vec<_> = virtio.bars.iter().map(|bar| (bar.index, bar.kind, bar.size, bar.prefetchable)).collect();
    assert_eq!(
        kinds,
        [(0, BarKind::Io, 64, false), (1, BarKind::Memory32, 4096, false), (4, BarKind::Memory64, 16 * 1024, true),]
    );
    assert_eq!(virtio.bar(4).unwrap().end(), 0xFE80_4000);

    let bridge = find(&functions, "00:02.0");
    assert_eq!(bridge.bars.len(), 1, "a bridge has two BAR slots");
}

#[test]
fn sizing_restores_everything_and_disables_decoding() {
    let before = q35();
    let mut config = before.clone();
    let _ = enumerate(&mut config, 0);
    assert_eq!(config.bar_writes_while_decoding, 0);
    assert_eq!(config.status_writes, 0);
    for (address, function) in &before.functions {
        assert!(config.functions[address].bytes == function.bytes, "{address} changed by enumeration");
    }
}

#[test]
fn sizing_leaves_a_disabled_command_register_alone() {
    let mut config = q35();
    config.functions.get_mut(&address("00:1f.2")).unwrap().set16(0x04, PCI_COMMAND_MASTER);
    let before = config.clone();
    let bars = size_bars(&mut config, address("00:1f.2"), 6);
    assert_eq!(bars.len(), 2);
    assert!(config.function("00:1f.2").bytes == before.function("00:1f.2").bytes);
}

#[test]
fn a_64_bit_bar_in_the_last_slot_is_ignored() {
    let mut config = FakeConfig::new([(
        address("00:05.0"),
        FakeFunction::new(0x8086, 0x1234, [0x02, 0x00, 0x00], 0).bar(5, 0xFE00_0004, 0xFFFF_F000),
    )]);
    let functions = enumerate(&mut config, 0);
    assert!(functions[0].bars.is_empty());
}

#[test]
fn capabilities_are_parsed() {
    let mut config = q35();
    let functions = enumerate(&mut config, 0);

    let ahci = find(&functions, "00:1f.2");
    let ids: Vec<u8> = ahci.capabilities.iter().map(|capability| capability.id).collect();
    assert_eq!(ids, [PCI_CAP_ID_MSI, 0x12]);
    let Some(CapabilityKind::Msi(msi)) = ahci.capability(PCI_CAP_ID_MSI).map(|c| c.kind) else {
        panic!("no MSI");
    };
    assert_eq!(
        msi,
        MsiCapability {
            offset: 0x80,
            enabled: false,
            vectors_capable: 1,
            address_64bit: true,
            per_vector_masking: false
        }
    );
    assert_eq!(ahci.capabilities[1].kind, CapabilityKind::Other);

    let nvme = find(&functions, "01:00.0");
    let Some(CapabilityKind::MsiX(msix)) = nvme.capability(PCI_CAP_ID_MSIX).map(|c| c.kind) else {
        panic!("no MSI-X");
    };
    assert_eq!(
        msix,
        MsixCapability {
            offset: 0x40,
            enabled: false,
            function_masked: false,
            table_size: 65,
            table_bir: 0,
            table_offset: 0x2000,
            pba_bir: 0,
            pba_offset: 0x3000
        }
    );
    assert_eq!(
        nvme.capability(PCI_CAP_ID_EXP).map(|c| c.kind),
        Some(CapabilityKind::PciExpress(PciExpressCapability { version: 2, device_port_type: 0 }))
    );
    assert_eq!(
        nvme.capability(PCI_CAP_ID_PM).map(|c| c.kind),
        Some(CapabilityKind::PowerManagement(PowerManagementCapability { version: 3, power_state: 0 }))
    );
    assert!(nvme.extended_capabilities.is_empty(), "legacy access: no extended list");

    let root_port = find(&functions, "00:02.0");
    assert_eq!(
        root_port.capability(PCI_CAP_ID_EXP).map(|c| c.kind),
        Some(CapabilityKind::PciExpress(PciExpressCapability { version: 2, device_port_type: 4 }))
    );
}

#[test]
fn extended_capabilities_are_walked_with_ecam() {
    let mut config = q35();
    config.extended = true;
    let functions = enumerate(&mut config, 0);
    let nvme = find(&functions, "01:00.0");
    assert_eq!(
        nvme.extended_capabilities,
        [
            ExtendedCapability { offset: 0x100, id: 0x0001, version: 1 },
            ExtendedCapability { offset: 0x148, id: 0x000E, version: 1 },
        ]
    );
    assert!(find(&functions, "00:1f.2").extended_capabilities.is_empty());
}

#[test]
fn msi_is_programmed_in_config_space() {
    let mut config = q35();
    let functions = enumerate(&mut config, 0);
    let ahci = find(&functions, "00:1f.2");
    let Some(CapabilityKind::Msi(msi)) = ahci.capability(PCI_CAP_ID_MSI).map(|c| c.kind) else {
        panic!("no MSI");
    };
    assert_eq!(msi.program(&mut config, ahci.address, 0xFEE0_0000, 0x4041, 2), Err(InterruptError::VectorOutOfRange));
    assert_eq!(msi.program(&mut config, ahci.address, 0xFEE0_0000, 0x4041, 1), Ok(()));
    let function = config.function("00:1f.2");
    assert_eq!(function.get32(0x80) >> 16, 0x0081, "enabled, 64-bit, one vector");
    assert_eq!(function.get32(0x84), 0xFEE0_0000);
    assert_eq!(function.get32(0x88), 0);
    assert_eq!(function.get32(0x8C) & 0xFFFF, 0x4041);

    let thirty_two_bit = MsiCapability { address_64bit: false, ..msi };
    assert_eq!(thirty_two_bit.data_offset(), 0x88);
    assert_eq!(
        thirty_two_bit.program(&mut config, ahci.address, 0x1_0000_0000, 0, 1),
        Err(InterruptError::AddressNeeds64Bit)
    );
}

#[test]
fn msix_entries_are_described_not_written() {
    let mut config = q35();
    let functions = enumerate(&mut config, 0);
    let nvme = find(&functions, "01:00.0");
    let Some(CapabilityKind::MsiX(msix)) = nvme.capability(PCI_CAP_ID_MSIX).map(|c| c.kind) else {
        panic!("no MSI-X");
    };
    let entry = msix.table_entry(&nvme.bars, 3, 0xFEE0_1000, 0x31, false).unwrap();
    assert_eq!(
        entry,
        MsixTableEntry { bar: 0, physical_address: 0x8_FE00_0000 + 0x2000 + 3 * 16, dwords: [0xFEE0_1000, 0, 0x31, 0] }
    );
    let masked = msix.table_entry(&nvme.bars, 0, 0xFEE0_1000, 0x31, true).unwrap();
    assert_eq!(masked.dwords[3], PCI_MSIX_ENTRY_CTRL_MASKBIT);
    assert_eq!(msix.table_entry(&nvme.bars, 65, 0, 0, false), Err(InterruptError::VectorOutOfRange));
    assert_eq!(msix.pba_address(&nvme.bars), Ok(0x8_FE00_3000));
    assert_eq!(msix.table_entry(&[], 0, 0, 0, false), Err(InterruptError::BarNotImplemented));
    // A table offset past the end of its BAR is rejected too.
    let beyond = MsixCapability { table_offset: 0x4000, ..msix };
    assert_eq!(beyond.table_entry(&nvme.bars, 0, 0, 0, false), Err(InterruptError::BarNotImplemented));

    msix.set_enabled(&mut config, nvme.address, true, true);
    assert_eq!(config.function("01:00.0").get32(0x40) >> 16, 0xC000 | 64);
    msix.set_enabled(&mut config, nvme.address, true, false);
    assert_eq!(config.function("01:00.0").get32(0x40) >> 16, 0x8000 | 64);
}

#[test]
fn command_helpers_set_bits_without_touching_status() {
    let mut config = q35();
    let ahci = address("00:1f.2");
    config.functions.get_mut(&ahci).unwrap().set16(0x04, 0);
    config.functions.get_mut(&ahci).unwrap().set16(0x06, 0x0010 | 0x2000);
    enable_memory_decoding(&mut config, ahci);
    enable_bus_mastering(&mut config, ahci);
    assert_eq!(read_command(&mut config, ahci), PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    enable_io_decoding(&mut config, ahci);
    disable_intx(&mut config, ahci);
    assert_eq!(
        read_command(&mut config, ahci),
        PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_IO | PCI_COMMAND_INTX_DISABLE
    );
    clear_command_bits(&mut config, ahci, PCI_COMMAND_IO);
    assert_eq!(read_command(&mut config, ahci) & PCI_COMMAND_IO, 0);
    assert_eq!(config.status_writes, 0);
    assert_eq!(config.function("00:1f.2").get32(0x04) >> 16, 0x2010);
}

#[test]
fn class_and_vendor_names() {
    assert_eq!(class_name(0x01, 0x06, 0x01), "SATA controller (AHCI)");
    assert_eq!(class_name(0x01, 0x06, 0x00), "SATA controller");
    assert_eq!(class_name(0x01, 0x08, 0x02), "NVM Express");
    assert_eq!(class_name(0x01, 0x42, 0x00), "Mass storage controller");
    assert_eq!(class_name(0x02, 0x00, 0x00), "Ethernet");
    assert_eq!(class_name(0x03, 0x00, 0x00), "VGA");
    assert_eq!(class_name(0x06, 0x00, 0x00), "Host bridge");
    assert_eq!(class_name(0x06, 0x01, 0x00), "ISA bridge");
    assert_eq!(class_name(0x06, 0x04, 0x01), "PCI bridge");
    assert_eq!(class_name(0x0C, 0x03, 0x30), "USB xHCI");
    assert_eq!(class_name(0x0C, 0x03, 0x40), "USB controller");
    assert_eq!(class_name(0xFF, 0x00, 0x00), "Unknown class");
    assert_eq!(vendor_name(0x8086), Some("Intel"));
    assert_eq!(vendor_name(0x1022), Some("AMD"));
    assert_eq!(vendor_name(0x1AF4), Some("Red Hat (virtio)"));
    assert_eq!(vendor_name(0x1B36), Some("Red Hat (QEMU)"));
    assert_eq!(vendor_name(0x15AD), Some("VMware"));
    assert_eq!(vendor_name(0x10DE), Some("NVIDIA"));
    assert_eq!(vendor_name(0x144D), Some("Samsung"));
    assert_eq!(vendor_name(0x1234), None);
    assert!(is_virtio_blk(0x1AF4, 0x1001) && is_virtio_blk(0x1AF4, 0x1042));
    assert!(!is_virtio_blk(0x1AF4, 0x1000) && !is_virtio_blk(0x8086, 0x1001));
}

#[test]
fn listing_rows() {
    let mut config = q35();
    let functions = enumerate(&mut config, 0);
    let mut rows = listing(&functions);
    assert_eq!(rows.len(), functions.len());
    let ahci = rows.iter_mut().find(|row| row.address == address("00:1f.2")).unwrap();
    ahci.driver = Some("ahci".to_string());
    assert_eq!(ahci.to_string(), "0000:00:1f.2 8086:2922 SATA controller (AHCI) (Intel) [ahci]");
    assert_eq!(rows[1].to_string(), "0000:00:01.0 1234:1111 VGA");
    assert_eq!(rows[3].class_name, "NVM Express");
}

// --- Hostile configuration spaces -------------------------------------------------

#[test]
fn a_capability_loop_ends_the_walk() {
    let mut config = FakeConfig::new([(
        address("00:05.0"),
        FakeFunction::new(0x8086, 0x1234, [0x02, 0x00, 0x00], 0)
            .capability(0x40, PCI_CAP_ID_PM, 0x50, &[0x03, 0x00])
            .capability(0x50, 0x09, 0x40, &[]),
    )]);
    let functions = enumerate(&mut config, 0);
    let ids: Vec<u8> = functions[0].capabilities.iter().map(|c| c.id).collect();
    assert_eq!(ids, [PCI_CAP_ID_PM, 0x09]);

    // A capability pointing at itself.
    let mut config = FakeConfig::new([(
        address("00:05.0"),
        FakeFunction::new(0x8086, 0x1234, [0x02, 0x00, 0x00], 0).capability(0x40, 0x09, 0x40, &[]),
    )]);
    assert_eq!(enumerate(&mut config, 0)[0].capabilities.len(), 1);
}

#[test]
fn capability_pointers_out_of_range_end_the_walk() {
    // Into the standard header.
    let mut config = FakeConfig::new([(
        address("00:05.0"),
        FakeFunction::new(0x8086, 0x1234, [0x02, 0x00, 0x00], 0).capability(0x40, 0x09, 0x10, &[]),
    )]);
    assert_eq!(enumerate(&mut config, 0)[0].capabilities.len(), 1);

    // The first pointer itself into the header, and the status bit clear.
    let mut function = FakeFunction::new(0x8086, 0x1234, [0x02, 0x00, 0x00], 0);
    function.set16(0x06, PCI_STATUS_CAP_LIST);
    function.set8(0x34, 0x20);
    let mut config = FakeConfig::new([(address("00:05.0"), function.clone())]);
    assert!(enumerate(&mut config, 0)[0].capabilities.is_empty());
    function.set16(0x06, 0);
    function.set8(0x34, 0x40);
    function.set8(0x40, 0x05);
    let mut config = FakeConfig::new([(address("00:05.0"), function)]);
    assert!(enumerate(&mut config, 0)[0].capabilities.is_empty());

    // The last dword of the space: readable, then the list ends (its next is 0xFC,
    // itself).
    let mut config = FakeConfig::new([(
        address("00:05.0"),
        FakeFunction::new(0x8086, 0x1234, [0x02, 0x00, 0x00], 0).capability(0xFC, PCI_CAP_ID_MSI, 0xFF, &[0xFF, 0xFF]),
    )]);
    let functions = enumerate(&mut config, 0);
    assert_eq!(functions[0].capabilities.len(), 1);
    let CapabilityKind::Msi(msi) = functions[0].capabilities[0].kind else {
        panic!("no MSI");
    };
    assert_eq!(msi.vectors_capable, 32, "a reserved multiple-message value is clamped");
    // Programming it must stay inside the space (the fake asserts that).
    let _ = msi.program(&mut config, address("00:05.0"), 0xFEE0_0000, 0, 1);
}

#[test]
fn extended_capability_loops_and_bad_pointers_end_the_walk() {
    let mut function = FakeFunction::new(0x8086, 0x1234, [0x02, 0x00, 0x00], 0);
    function.set32(0x100, 0x0001 | (0x200 << 20));
    function.set32(0x200, 0x0002 | (0x100 << 20)); // Back to the first: a loop.
    let mut config = FakeConfig::new([(address("00:05.0"), function.clone())]);
    config.extended = true;
    assert_eq!(enumerate(&mut config, 0)[0].extended_capabilities.len(), 2);

    function.set32(0x200, 0x0002 | (0x0C0 << 20)); // Into the legacy space.
    let mut config = FakeConfig::new([(address("00:05.0"), function.clone())]);
    config.extended = true;
    assert_eq!(enumerate(&mut config, 0)[0].extended_capabilities.len(), 2);

    function.set32(0x200, 0x0002 | (0xFFC << 20)); // The last dword, then itself.
    function.set32(0xFFC, 0x0003 | (0xFFC << 20));
    let mut config = FakeConfig::new([(address("00:05.0"), function)]);
    config.extended = true;
    assert_eq!(enumerate(&mut config, 0)[0].extended_capabilities.len(), 3);
}

fn bridge(secondary: u8, subordinate: u8) -> FakeFunction {
    FakeFunction::new(0x8086, 0x244E, [0x06, 0x04, 0x00], 1).bridge(0, secondary, subordinate)
}

fn endpoint() -> FakeFunction {
    FakeFunction::new(0x8086, 0x10D3, [0x02, 0x00, 0x00], 0)
}

#[test]
fn bridge_loops_and_secondary_bus_0_are_not_followed() {
    let mut config = FakeConfig::new([
        (address("00:01.0"), bridge(0, 0)), // Secondary bus 0: itself.
        (address("00:02.0"), bridge(2, 2)),
        (address("02:00.0"), bridge(2, 2)), // Back to its own bus.
        (address("02:01.0"), bridge(0, 5)), // Back to the root.
        (address("02:02.0"), endpoint()),
    ]);
    let functions = enumerate(&mut config, 0);
    assert_eq!(addresses(&functions), ["0000:00:01.0", "0000:00:02.0", "0000:02:00.0", "0000:02:01.0", "0000:02:02.0"]);
    let scanned: Vec<bool> = functions.iter().filter_map(|f| f.bridge.map(|b| b.scanned)).collect();
    assert_eq!(scanned, [false, true, false, false]);
}

#[test]
fn two_bridges_claiming_one_bus_scan_it_once() {
    let mut config = FakeConfig::new([
        (address("00:01.0"), bridge(3, 3)),
        (address("00:02.0"), bridge(3, 3)),
        (address("03:00.0"), endpoint()),
    ]);
    let functions = enumerate(&mut config, 0);
    assert_eq!(addresses(&functions), ["0000:00:01.0", "0000:03:00.0", "0000:00:02.0"]);
}

#[test]
fn absurd_subordinate_numbers_are_clamped() {
    let mut config = FakeConfig::new([
        // Subordinate below secondary: bus 4 alone is scanned.
        (address("00:01.0"), bridge(4, 0)),
        (address("04:00.0"), bridge(5, 5)), // Outside the (clamped) window 4..=4.
        (address("05:00.0"), endpoint()),
        // Subordinate 255 below a parent whose window ends at 7.
        (address("00:02.0"), bridge(6, 7)),
        (address("06:00.0"), bridge(7, 255)),
        (address("07:00.0"), bridge(9, 9)), // Past the root port's window: not followed.
        (address("09:00.0"), endpoint()),
    ]);
    let functions = enumerate(&mut config, 0);
    assert_eq!(
        addresses(&functions),
        ["0000:00:01.0", "0000:04:00.0", "0000:00:02.0", "0000:06:00.0", "0000:07:00.0",]
    );
}

#[test]
fn all_ones_everywhere_finds_nothing() {
    struct AllOnes;
    impl ConfigSpace for AllOnes {
        fn read32(&mut self, _: PciAddress, _: u16) -> u32 {
            u32::MAX
        }
        fn write32(&mut self, _: PciAddress, _: u16, _: u32) {}
        fn extended(&self) -> bool {
            true
        }
    }
    assert!(enumerate(&mut AllOnes, 0).is_empty());
}

#[test]
fn a_bridge_at_every_address_still_terminates() {
    // Every function of every bus is a multi-function bridge to the next bus, with
    // every capability pointing at itself and every BAR all ones.
    struct BridgesEverywhere {
        reads: u64,
    }
    impl ConfigSpace for BridgesEverywhere {
        fn read32(&mut self, address: PciAddress, offset: u16) -> u32 {
            self.reads += 1;
            match offset {
                0x00 => 0x244E_8086,
                0x04 => u32::from(PCI_STATUS_CAP_LIST) << 16,
                0x08 => 0x0604_0000,
                0x0C => 0x0081_0000,
                0x18 => u32::from_le_bytes([address.bus, address.bus.wrapping_add(1), 255, 0]),
                0x34 => 0x40,
                0x40 => 0x0000_4005,
                _ => u32::MAX,
            }
        }
        fn write32(&mut self, _: PciAddress, _: u16, _: u32) {}
        fn extended(&self) -> bool {
            true
        }
    }
    let mut config = BridgesEverywhere { reads: 0 };
    let functions = enumerate(&mut config, 0);
    // 256 buses, 32 devices, 8 functions: the walk visits each bus once.
    assert_eq!(functions.len(), 256 * 32 * 8);
    let scanned = functions.iter().filter(|function| function.bridge.is_some_and(|buses| buses.scanned)).count();
    assert_eq!(scanned, 255);
    assert!(config.reads < 100 * functions.len() as u64);
}

#[test]
fn fuzz_body_survives_samples() {
    fuzz_one(&[]);
    fuzz_one(&[1]);
    fuzz_one(&[0; 300]);
    fuzz_one(&[0xFF; 1000]);
    // A bridge at 00:00.0 to bus 0 and a capability loop, as bytes.
    let mut record = vec![0u8; 258];
    record[2..4].copy_from_slice(&0x8086u16.to_le_bytes());
    record[2 + 0x06] = 0x10;
    record[2 + 0x0E] = 0x81;
    record[2 + 0x19] = 1;
    record[2 + 0x1A] = 0xFF;
    record[2 + 0x34] = 0x40;
    record[2 + 0x40] = 0x11;
    record[2 + 0x41] = 0x40;
    let mut data = vec![1u8];
    data.extend_from_slice(&record);
    let mut second = record.clone();
    second[0] = 1;
    data.extend_from_slice(&second);
    fuzz_one(&data);
    // Pseudo-random inputs.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..64 {
        let length = (state % 2000) as usize;
        let bytes: Vec<u8> = (0..length)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        fuzz_one(&bytes);
    }
    let _ = format!("{}", address("00:00.0"));
}
