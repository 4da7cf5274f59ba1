//! Host tests of [`enable_message_interrupts`]: a configuration space made of bytes
//! ([`ByteConfigSpace`]) with MSI and/or MSI-X capabilities, capabilities decoded by
//! the real list walk, and the MSI-X table in a [`FakeMsixTable`] BAR handed out by
//! [`FakePlatform`].

use super::fake::{add_msi_capability, add_msix_capability, FakeMemory, FakeMsixTable, FakePlatform, TEST_MESSAGE};
use super::interrupts::{enable_message_interrupts, InterruptMode, MAX_MSIX_ENTRIES};
use crate::pci::{
    read_capabilities, read_command, Bar, BarKind, ByteConfigSpace, ClassCode, ConfigSpace, HeaderType, PciAddress,
    PciFunction, PCI_COMMAND_INTX_DISABLE, PCI_MSIX_ENTRY_CTRL_MASKBIT,
};
use alloc::vec;
use alloc::vec::Vec;

const MSIX_AT: u8 = 0x50;
const MSI_AT: u8 = 0x70;
/// The MSI-X table's BAR and where in it the table starts.
const TABLE_BAR: u8 = 2;
const TABLE_OFFSET: u32 = 0x100;
const TABLE_BAR_BYTES: u64 = 0x4000;

fn address() -> PciAddress {
    PciAddress::new(0, 0, 3, 0).unwrap()
}

/// A function, its configuration space and a platform; `table_entries` is the MSI-X
/// table size (`None`: no MSI-X), `msi` adds MSI (64-bit, per-vector masking).
struct Rig {
    function: PciFunction,
    config: ByteConfigSpace,
    platform: FakePlatform,
    table: FakeMsixTable,
}

fn rig(table_entries: Option<u16>, msi: bool) -> Rig {
    let mut bytes = vec![0u8; 256];
    bytes[0..4].copy_from_slice(&0x0010_1B36u32.to_le_bytes());
    bytes[0x04] = 0x06; // Memory decoding and bus mastering on.
    if msi {
        add_msi_capability(&mut bytes, MSI_AT, true, true);
    }
    if let Some(entries) = table_entries {
        add_msix_capability(&mut bytes, MSIX_AT, entries, TABLE_BAR, TABLE_OFFSET);
    }
    let mut config = ByteConfigSpace { functions: vec![(address(), bytes)], extended: false };
    let capabilities = read_capabilities(&mut config, address());
    let function = PciFunction {
        address: address(),
        vendor_id: 0x1B36,
        device_id: 0x0010,
        class: ClassCode { class: 1, subclass: 8, prog_if: 2 },
        revision: 0,
        header_type: HeaderType::Endpoint,
        multi_function: false,
        subsystem_vendor_id: 0,
        subsystem_id: 0,
        interrupt_line: 11,
        interrupt_pin: 1,
        bars: vec![Bar {
            index: TABLE_BAR,
            kind: BarKind::Memory32,
            address: 0xFEB0_0000,
            size: TABLE_BAR_BYTES,
            prefetchable: false,
        }],
        capabilities,
        extended_capabilities: Vec::new(),
        bridge: None,
    };
    let platform = FakePlatform::new(FakeMemory::new());
    platform.set_interrupt_message(Some(TEST_MESSAGE));
    let table = FakeMsixTable::new(TABLE_OFFSET.into(), table_entries.unwrap_or(0), TABLE_BAR_BYTES);
    let handle = table.clone();
    platform.set_bar(TABLE_BAR, move || alloc::boxed::Box::new(handle.clone()));
    Rig { function, config, platform, table }
}

impl Rig {
    fn enable(&mut self) -> InterruptMode {
        enable_message_interrupts(&self.function, &mut self.config, &self.platform)
    }

    fn dword(&mut self, offset: u8) -> u32 {
        self.config.read32(address(), u16::from(offset))
    }

    /// MSI-X message control (enable bit 15, function mask bit 14).
    fn msix_control(&mut self) -> u16 {
        (self.dword(MSIX_AT) >> 16) as u16
    }

    /// MSI message control (enable bit 0, multiple message enable bits 6:4).
    fn msi_control(&mut self) -> u16 {
        (self.dword(MSI_AT) >> 16) as u16
    }

    fn intx_disabled(&mut self) -> bool {
        read_command(&mut self.config, address()) & PCI_COMMAND_INTX_DISABLE != 0
    }

    /// The table entry `index` as the device would use it: programmed to the test
    /// message and unmasked.
    fn entry_is_programmed(&self, index: usize) -> bool {
        let [low, high, data, control] = self.table.entry(index);
        let (message_address, message_data) = TEST_MESSAGE;
        low == message_address as u32
            && high == (message_address >> 32) as u32
            && data == message_data
            && control & PCI_MSIX_ENTRY_CTRL_MASKBIT == 0
    }
}

const MSIX_ENABLE: u16 = 1 << 15;
const MSIX_FUNCTION_MASK: u16 = 1 << 14;
const MSI_ENABLE: u16 = 1;

#[test]
fn msix_is_preferred_over_msi_and_every_entry_is_programmed() {
    let mut rig = rig(Some(8), true);
    assert_eq!(rig.enable(), InterruptMode::MsiX { entries: 8 });
    for index in 0..8 {
        assert!(rig.entry_is_programmed(index), "entry {index}: {:x?}", rig.table.entry(index));
    }
    assert_eq!(rig.msix_control() & (MSIX_ENABLE | MSIX_FUNCTION_MASK), MSIX_ENABLE, "enabled, not function-masked");
    assert_eq!(rig.msi_control() & MSI_ENABLE, 0, "MSI stays off beside MSI-X");
    assert!(rig.intx_disabled());
    assert!(InterruptMode::MsiX { entries: 8 }.has_vector(7));
    assert!(!InterruptMode::MsiX { entries: 8 }.has_vector(8));
}

#[test]
fn msix_entries_beyond_the_limit_stay_masked() {
    let table_size = MAX_MSIX_ENTRIES + 6;
    let mut rig = rig(Some(table_size), false);
    assert_eq!(rig.enable(), InterruptMode::MsiX { entries: MAX_MSIX_ENTRIES });
    for index in 0..usize::from(MAX_MSIX_ENTRIES) {
        assert!(rig.entry_is_programmed(index), "entry {index}");
    }
    for index in usize::from(MAX_MSIX_ENTRIES)..usize::from(table_size) {
        assert_ne!(rig.table.entry(index)[3] & PCI_MSIX_ENTRY_CTRL_MASKBIT, 0, "entry {index} masked");
    }
}

#[test]
fn msix_firmware_left_enabled_with_msi_is_sorted_out() {
    let mut rig = rig(Some(2), true);
    // Firmware enabled MSI: the function must never have both on.
    let dword = rig.dword(MSI_AT);
    rig.config.write32(address(), u16::from(MSI_AT), dword | u32::from(MSI_ENABLE) << 16);
    assert_eq!(rig.enable(), InterruptMode::MsiX { entries: 2 });
    assert_eq!(rig.msi_control() & MSI_ENABLE, 0);
    assert_ne!(rig.msix_control() & MSIX_ENABLE, 0);
}

#[test]
fn msi_is_the_fallback_with_address_data_and_enable() {
    let mut rig = rig(None, true);
    assert_eq!(rig.enable(), InterruptMode::Msi);
    let (message_address, data) = TEST_MESSAGE;
    // 64-bit layout: address low +4, high +8, data +12, mask bits +16.
    assert_eq!(rig.dword(MSI_AT + 4), message_address as u32);
    assert_eq!(rig.dword(MSI_AT + 8), (message_address >> 32) as u32);
    assert_eq!(rig.dword(MSI_AT + 12) & 0xFFFF, data);
    assert_eq!(rig.dword(MSI_AT + 16) & 1, 0, "vector 0 unmasked");
    let control = rig.msi_control();
    assert_eq!(control & MSI_ENABLE, MSI_ENABLE);
    assert_eq!((control >> 4) & 0b111, 0, "one vector enabled");
    assert!(rig.intx_disabled());
    assert!(InterruptMode::Msi.has_vector(0) && !InterruptMode::Msi.has_vector(1));
}

#[test]
fn msix_table_outside_a_mappable_bar_falls_back_to_msi() {
    // No mapping for the table BAR.
    let mut unmapped = rig(Some(4), true);
    unmapped.function.bars.clear();
    assert_eq!(unmapped.enable(), InterruptMode::Msi);
    assert_eq!(unmapped.msix_control() & MSIX_ENABLE, 0);

    // A table that runs past the end of its BAR.
    let mut overrun = rig(Some(4), true);
    overrun.table = FakeMsixTable::new(TABLE_OFFSET.into(), 4, u64::from(TABLE_OFFSET) + 16 * 3);
    let handle = overrun.table.clone();
    overrun.platform.set_bar(TABLE_BAR, move || alloc::boxed::Box::new(handle.clone()));
    assert_eq!(overrun.enable(), InterruptMode::Msi);
    assert_eq!(overrun.msix_control() & MSIX_ENABLE, 0);
}

#[test]
fn polled_without_a_platform_message_and_firmware_modes_are_switched_off() {
    let mut rig = rig(Some(4), true);
    rig.platform.set_interrupt_message(None);
    let msix = rig.dword(MSIX_AT);
    rig.config.write32(address(), u16::from(MSIX_AT), msix | u32::from(MSIX_ENABLE) << 16);
    let msi = rig.dword(MSI_AT);
    rig.config.write32(address(), u16::from(MSI_AT), msi | u32::from(MSI_ENABLE) << 16);
    assert_eq!(rig.enable(), InterruptMode::Polled);
    assert_eq!(rig.msix_control() & MSIX_ENABLE, 0);
    assert_eq!(rig.msi_control() & MSI_ENABLE, 0);
    assert!(rig.intx_disabled(), "INTx is off even when polling");
    assert!((0..4).all(|index| !rig.entry_is_programmed(index)));
    assert!(!InterruptMode::Polled.has_vector(0));
    assert!(!InterruptMode::Polled.signals());
}

#[test]
fn polled_when_the_function_has_neither_capability() {
    let mut rig = rig(None, false);
    assert_eq!(rig.enable(), InterruptMode::Polled);
    assert!(rig.intx_disabled());
}

#[test]
fn msi_cannot_carry_data_wider_than_16_bits() {
    let mut rig = rig(None, true);
    rig.platform.set_interrupt_message(Some((TEST_MESSAGE.0, 0x1_0040)));
    assert_eq!(rig.enable(), InterruptMode::Polled);
    assert_eq!(rig.msi_control() & MSI_ENABLE, 0);
}
