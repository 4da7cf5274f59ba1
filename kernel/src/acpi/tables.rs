//! Reading the firmware's ACPI tables: RSDP, RSDT/XSDT, MADT, FADT and the DSDT's `\_S5_`.
//!
//! Why: the hypervisor needs the CPUs and I/O APICs (MADT) to start processors and route
//! interrupts, and the FADT plus the `\_S5_` sleep type to power the machine off or reset
//! it. Physical memory is reached only through the [`PhysMemory`] trait, so the hardware
//! glue supplies a direct-map reader and host tests supply synthetic tables.
//!
//! Spec: ACPI 6.5 §5.2 (§5.2.5 RSDP, §5.2.6 system description table header, §5.2.7 RSDT,
//! §5.2.8 XSDT, §5.2.9 FADT, §5.2.12 MADT, §5.2.3.2 Generic Address Structure) and §20.2
//! (AML encoding: NameOp, PackageOp, PkgLength, data objects).
//!
//! Invariants: everything read from firmware is untrusted. Every length and offset is
//! checked before use, a table with a bad checksum or an absurd length is recorded in
//! [`AcpiTables::skipped`] instead of being parsed, and a malformed MADT entry ends the
//! walk of that table without failing the rest. Nothing here panics on any input.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// Reads physical memory for the parser.
pub trait PhysMemory {
    /// Fills `buf` from physical address `phys`; false if any of it is not readable.
    fn read(&self, phys: u64, buf: &mut [u8]) -> bool;
}

/// Longest table accepted, in bytes; anything longer is firmware garbage.
pub const MAX_TABLE_LENGTH: u32 = 16 << 20;
/// Size of the common system description table header (§5.2.6).
pub const TABLE_HEADER_LENGTH: usize = 36;
/// The RSDP's signature.
pub const RSDP_SIGNATURE: [u8; 8] = *b"RSD PTR ";
/// Length of an ACPI 1.0 RSDP, covered by the first checksum.
pub const RSDP_V1_LENGTH: usize = 20;
/// Length of an ACPI 2.0+ RSDP.
pub const RSDP_V2_LENGTH: usize = 36;
/// Largest RSDP length we believe (the structure is 36 bytes; leave room for growth).
const RSDP_MAX_LENGTH: u32 = 4096;

/// Address space IDs of the Generic Address Structure (§5.2.3.2).
pub const ADDRESS_SPACE_SYSTEM_MEMORY: u8 = 0;
pub const ADDRESS_SPACE_SYSTEM_IO: u8 = 1;

/// FADT flag: the RESET_REG field is supported (§5.2.9.3, bit 10).
pub const FADT_FLAG_RESET_REG_SUP: u32 = 1 << 10;

/// Why the ACPI tables could not be used at all.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum AcpiError {
    /// Fewer bytes than the RSDP (20, or its declared length for revision 2+).
    RsdpTooShort,
    /// The RSDP does not start with "RSD PTR ".
    BadRsdpSignature,
    /// The checksum over the first 20 bytes is not zero.
    BadRsdpChecksum,
    /// The checksum over the whole revision 2+ RSDP is not zero.
    BadRsdpExtendedChecksum,
    /// A revision 2+ RSDP declares a length below 36 or absurdly large.
    BadRsdpLength(u32),
    /// Neither an XSDT nor an RSDT address is given.
    NoRootTable,
    /// The root table could not be read.
    RootTableUnreadable(u64),
    /// The root table's signature is not "XSDT"/"RSDT".
    BadRootTableSignature([u8; 4]),
    /// The root table's length is shorter than a header or absurd.
    BadRootTableLength(u32),
    /// The root table's checksum is not zero.
    BadRootTableChecksum,
}

impl fmt::Display for AcpiError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcpiError::RsdpTooShort => formatter.write_str("RSDP too short"),
            AcpiError::BadRsdpSignature => formatter.write_str("bad RSDP signature"),
            AcpiError::BadRsdpChecksum => formatter.write_str("bad RSDP checksum"),
            AcpiError::BadRsdpExtendedChecksum => formatter.write_str("bad RSDP extended checksum"),
            AcpiError::BadRsdpLength(length) => write!(formatter, "bad RSDP length {length}"),
            AcpiError::NoRootTable => formatter.write_str("RSDP names no RSDT or XSDT"),
            AcpiError::RootTableUnreadable(address) => {
                write!(formatter, "root table at {address:#x} is not readable")
            }
            AcpiError::BadRootTableSignature(signature) => {
                write!(formatter, "bad root table signature {}", Signature(signature))
            }
            AcpiError::BadRootTableLength(length) => {
                write!(formatter, "bad root table length {length}")
            }
            AcpiError::BadRootTableChecksum => formatter.write_str("bad root table checksum"),
        }
    }
}

/// Shows a 4-byte signature as text, with non-printable bytes as '.'.
pub struct Signature<'a>(pub &'a [u8; 4]);

impl fmt::Display for Signature<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &byte in self.0 {
            let shown = if byte.is_ascii_graphic() || byte == b' ' { char::from(byte) } else { '.' };
            fmt::Write::write_char(formatter, shown)?;
        }
        Ok(())
    }
}

/// The Root System Description Pointer (§5.2.5.3).
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct Rsdp {
    pub revision: u8,
    pub oem_id: [u8; 6],
    /// Physical address of the RSDT (32-bit, may be 0 on 64-bit-only firmware).
    pub rsdt_address: u32,
    /// Physical address of the XSDT; present for revision 2 and later.
    pub xsdt_address: Option<u64>,
}

impl Rsdp {
    /// Validates and decodes an RSDP (from low memory or a multiboot2 ACPI tag).
    pub fn parse(bytes: &[u8]) -> Result<Rsdp, AcpiError> {
        let v1 = bytes.get(..RSDP_V1_LENGTH).ok_or(AcpiError::RsdpTooShort)?;
        if v1.get(..8) != Some(&RSDP_SIGNATURE[..]) {
            return Err(AcpiError::BadRsdpSignature);
        }
        if checksum(v1) != 0 {
            return Err(AcpiError::BadRsdpChecksum);
        }
        let revision = v1.get(15).copied().unwrap_or(0);
        let oem_id = read_array::<6>(v1, 9).ok_or(AcpiError::RsdpTooShort)?;
        let rsdt_address = read_u32(v1, 16).ok_or(AcpiError::RsdpTooShort)?;
        let xsdt_address = if revision >= 2 {
            let length = read_u32(bytes, 20).ok_or(AcpiError::RsdpTooShort)?;
            if length < RSDP_V2_LENGTH as u32 || length > RSDP_MAX_LENGTH {
                return Err(AcpiError::BadRsdpLength(length));
            }
            let whole = bytes.get(..length as usize).ok_or(AcpiError::RsdpTooShort)?;
            if checksum(whole) != 0 {
                return Err(AcpiError::BadRsdpExtendedChecksum);
            }
            Some(read_u64(whole, 24).ok_or(AcpiError::RsdpTooShort)?)
        } else {
            None
        };
        Ok(Rsdp { revision, oem_id, rsdt_address, xsdt_address })
    }
}

/// Offset of the first valid RSDP in `area` (the EBDA's first KiB or 0xE0000..0x100000),
/// searching on 16-byte boundaries of the slice.
pub fn find_rsdp(area: &[u8]) -> Option<usize> {
    (0..area.len())
        .step_by(16)
        .find(|&offset| area.get(offset..).is_some_and(|candidate| Rsdp::parse(candidate).is_ok()))
}

/// The header fields of one table as found.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct TableInfo {
    pub signature: [u8; 4],
    /// Physical address of the table.
    pub address: u64,
    pub length: u32,
    pub revision: u8,
    pub oem_id: [u8; 6],
}

/// Why a table named by the root table was not used.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum SkipReason {
    /// The root table holds a zero address.
    NullAddress,
    /// The header or the body could not be read.
    Unreadable,
    /// The length is below a header or above [`MAX_TABLE_LENGTH`].
    BadLength(u32),
    /// The bytes do not sum to zero.
    BadChecksum,
    /// The table is too short for its fixed fields.
    TooShortForType,
    /// The FADT points at something that is not a "DSDT".
    NotADsdt,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NullAddress => formatter.write_str("null address"),
            SkipReason::Unreadable => formatter.write_str("not readable"),
            SkipReason::BadLength(length) => write!(formatter, "bad length {length}"),
            SkipReason::BadChecksum => formatter.write_str("bad checksum"),
            SkipReason::TooShortForType => formatter.write_str("too short for its type"),
            SkipReason::NotADsdt => formatter.write_str("not a DSDT"),
        }
    }
}

/// A table that was not used; `signature` is all zero when even the header was unreadable.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct SkippedTable {
    pub signature: [u8; 4],
    pub address: u64,
    pub reason: SkipReason,
}

/// Everything learned from the ACPI tables.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct AcpiTables {
    /// Every table with a valid header and checksum (root table entries, then the DSDT).
    pub tables: Vec<TableInfo>,
    pub madt: Option<Madt>,
    pub fadt: Option<Fadt>,
    /// `\_S5_` sleep types for soft-off, from the DSDT.
    pub s5: Option<SleepTypes>,
    /// PCI Express ECAM windows, from the MCFG (empty: configuration space by port I/O).
    pub ecam: Vec<EcamWindow>,
    pub skipped: Vec<SkippedTable>,
}

/// One MCFG allocation: the ECAM window of a PCI segment's bus range.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct EcamWindow {
    /// Physical address of bus 0's configuration space (even if `start_bus` > 0).
    pub base: u64,
    pub segment: u16,
    pub start_bus: u8,
    pub end_bus: u8,
}

/// The MCFG's allocations (PCI Firmware Specification 3.2 §4.1.2): after the 36-byte
/// header and 8 reserved bytes, 16-byte entries. Entries with a zero base or an end bus
/// below the start bus are dropped.
pub fn parse_mcfg(table: &[u8]) -> Vec<EcamWindow> {
    const FIRST_ENTRY: usize = TABLE_HEADER_LENGTH + 8;
    const ENTRY_LENGTH: usize = 16;
    let mut windows = Vec::new();
    let mut offset = FIRST_ENTRY;
    while offset + ENTRY_LENGTH <= table.len() {
        let base = read_u64(table, offset).unwrap_or(0);
        let segment = read_u16(table, offset + 8).unwrap_or(0);
        let start_bus = table[offset + 10];
        let end_bus = table[offset + 11];
        if base != 0 && end_bus >= start_bus {
            windows.push(EcamWindow { base, segment, start_bus, end_bus });
        }
        offset += ENTRY_LENGTH;
    }
    windows
}

/// A processor from a MADT Processor Local APIC (type 0) or Local x2APIC (type 9) entry.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct MadtCpu {
    pub processor_uid: u32,
    pub apic_id: u32,
    /// Usable now (flags bit 0).
    pub enabled: bool,
    /// Can be brought online later (flags bit 1, ACPI 6.3+).
    pub online_capable: bool,
    /// Came from a type 9 entry.
    pub x2apic: bool,
}

/// A MADT I/O APIC entry (type 1).
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct MadtIoApic {
    pub id: u8,
    pub address: u32,
    /// First global system interrupt this I/O APIC serves.
    pub gsi_base: u32,
}

/// A MADT Interrupt Source Override entry (type 2).
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct InterruptOverride {
    /// 0 = ISA.
    pub bus: u8,
    pub source_irq: u8,
    pub gsi: u32,
    /// MPS INTI flags: bits 0-1 polarity, bits 2-3 trigger mode.
    pub flags: u16,
}

/// The Multiple APIC Description Table (§5.2.12).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Madt {
    /// Local APIC physical address, after any type 5 address override.
    pub local_apic_address: u64,
    /// The machine also has dual 8259 PICs (flags bit 0).
    pub pcat_compat: bool,
    pub cpus: Vec<MadtCpu>,
    pub ioapics: Vec<MadtIoApic>,
    pub overrides: Vec<InterruptOverride>,
}

const MADT_PROCESSOR_LOCAL_APIC: u8 = 0;
const MADT_IO_APIC: u8 = 1;
const MADT_INTERRUPT_SOURCE_OVERRIDE: u8 = 2;
const MADT_LOCAL_APIC_ADDRESS_OVERRIDE: u8 = 5;
const MADT_PROCESSOR_LOCAL_X2APIC: u8 = 9;
/// Offset of the first interrupt controller structure.
const MADT_ENTRIES_OFFSET: usize = 44;

impl Madt {
    /// Decodes a whole MADT (header included); None if it is shorter than its fixed part.
    pub fn parse(table: &[u8]) -> Option<Madt> {
        let mut madt = Madt {
            local_apic_address: u64::from(read_u32(table, 36)?),
            pcat_compat: read_u32(table, 40)? & 1 != 0,
            cpus: Vec::new(),
            ioapics: Vec::new(),
            overrides: Vec::new(),
        };
        let mut offset = MADT_ENTRIES_OFFSET;
        while let Some(&[entry_type, length]) = table.get(offset..offset + 2) {
            let length = usize::from(length);
            let Some(entry) = (length >= 2).then(|| table.get(offset..offset + length)).flatten() else {
                break;
            };
            madt.add_entry(entry_type, entry);
            offset += length;
        }
        Some(madt)
    }

    /// Records one entry; entries shorter than their type needs are ignored.
    fn add_entry(&mut self, entry_type: u8, entry: &[u8]) {
        match entry_type {
            MADT_PROCESSOR_LOCAL_APIC => {
                if let (Some(&uid), Some(&apic_id), Some(flags)) = (entry.get(2), entry.get(3), read_u32(entry, 4)) {
                    self.cpus.push(MadtCpu {
                        processor_uid: u32::from(uid),
                        apic_id: u32::from(apic_id),
                        enabled: flags & 1 != 0,
                        online_capable: flags & 2 != 0,
                        x2apic: false,
                    });
                }
            }
            MADT_IO_APIC => {
                if let (Some(&id), Some(address), Some(gsi_base)) =
                    (entry.get(2), read_u32(entry, 4), read_u32(entry, 8))
                {
                    self.ioapics.push(MadtIoApic { id, address, gsi_base });
                }
            }
            MADT_INTERRUPT_SOURCE_OVERRIDE => {
                if let (Some(&bus), Some(&source_irq), Some(gsi), Some(flags)) =
                    (entry.get(2), entry.get(3), read_u32(entry, 4), read_u16(entry, 8))
                {
                    self.overrides.push(InterruptOverride { bus, source_irq, gsi, flags });
                }
            }
            MADT_LOCAL_APIC_ADDRESS_OVERRIDE => {
                if let Some(address) = read_u64(entry, 4) {
                    self.local_apic_address = address;
                }
            }
            MADT_PROCESSOR_LOCAL_X2APIC => {
                if let (Some(apic_id), Some(flags), Some(uid)) =
                    (read_u32(entry, 4), read_u32(entry, 8), read_u32(entry, 12))
                {
                    self.cpus.push(MadtCpu {
                        processor_uid: uid,
                        apic_id,
                        enabled: flags & 1 != 0,
                        online_capable: flags & 2 != 0,
                        x2apic: true,
                    });
                }
            }
            _ => {}
        }
    }

    /// Where ISA IRQ `irq` arrives: (GSI, active low, level triggered). Without an
    /// override an ISA IRQ is edge-triggered, active high, with GSI = IRQ (§5.2.12.5).
    pub fn isa_irq_to_gsi(&self, irq: u8) -> (u32, bool, bool) {
        match self.overrides.iter().find(|entry| entry.bus == 0 && entry.source_irq == irq) {
            // Polarity 0b11 = active low; trigger mode 0b11 = level. 0b00 "conforms to the
            // bus" means the ISA default (active high, edge).
            Some(entry) => (entry.gsi, entry.flags & 0b11 == 0b11, (entry.flags >> 2) & 0b11 == 0b11),
            None => (u32::from(irq), false, false),
        }
    }
}

/// A Generic Address Structure (§5.2.3.2).
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct GenericAddress {
    /// 0 = system memory, 1 = system I/O, ...
    pub address_space: u8,
    pub bit_width: u8,
    pub bit_offset: u8,
    /// 0 undefined, 1 byte, 2 word, 3 dword, 4 qword.
    pub access_size: u8,
    pub address: u64,
}

impl GenericAddress {
    fn parse(bytes: &[u8], offset: usize) -> Option<GenericAddress> {
        Some(GenericAddress {
            address_space: *bytes.get(offset)?,
            bit_width: *bytes.get(offset + 1)?,
            bit_offset: *bytes.get(offset + 2)?,
            access_size: *bytes.get(offset + 3)?,
            address: read_u64(bytes, offset + 4)?,
        })
    }
}

/// The Fixed ACPI Description Table (§5.2.9), the fields the hypervisor uses.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct Fadt {
    pub sci_interrupt: u16,
    pub smi_command_port: u32,
    /// Value written to the SMI command port to enter ACPI mode.
    pub acpi_enable: u8,
    /// I/O port of PM1a_CNT (X_PM1a_CNT_BLK's when it is a nonzero system I/O address).
    pub pm1a_control_block: u32,
    pub pm1b_control_block: u32,
    /// RESET_REG, when flags say it is supported and the table is long enough.
    pub reset_register: Option<GenericAddress>,
    pub reset_value: u8,
    /// X_DSDT when present and nonzero, else DSDT.
    pub dsdt_address: u64,
    pub flags: u32,
}

/// FADT field offsets (§5.2.9, table 5.9).
mod fadt_offset {
    pub const DSDT: usize = 40;
    pub const SCI_INT: usize = 46;
    pub const SMI_CMD: usize = 48;
    pub const ACPI_ENABLE: usize = 52;
    pub const PM1A_CNT_BLK: usize = 64;
    pub const PM1B_CNT_BLK: usize = 68;
    pub const FLAGS: usize = 112;
    /// ACPI 1.0 FADTs end here.
    pub const FLAGS_END: usize = 116;
    pub const RESET_REG: usize = 116;
    pub const RESET_VALUE: usize = 128;
    pub const X_DSDT: usize = 140;
    pub const X_PM1A_CNT_BLK: usize = 172;
    pub const X_PM1B_CNT_BLK: usize = 184;
}

impl Fadt {
    /// Decodes a whole FADT (header included); None if shorter than an ACPI 1.0 FADT.
    pub fn parse(table: &[u8]) -> Option<Fadt> {
        use fadt_offset::*;
        if table.len() < FLAGS_END {
            return None;
        }
        let flags = read_u32(table, FLAGS)?;
        let reset_register = if flags & FADT_FLAG_RESET_REG_SUP != 0 {
            GenericAddress::parse(table, RESET_REG).filter(|_| table.len() > RESET_VALUE)
        } else {
            None
        };
        let dsdt_address =
            read_u64(table, X_DSDT).filter(|&address| address != 0).unwrap_or(u64::from(read_u32(table, DSDT)?));
        let io_port_of = |offset: usize| {
            GenericAddress::parse(table, offset)
                .filter(|gas| gas.address_space == ADDRESS_SPACE_SYSTEM_IO && gas.address != 0)
                .and_then(|gas| u32::try_from(gas.address).ok())
        };
        Some(Fadt {
            sci_interrupt: read_u16(table, SCI_INT)?,
            smi_command_port: read_u32(table, SMI_CMD)?,
            acpi_enable: *table.get(ACPI_ENABLE)?,
            pm1a_control_block: io_port_of(X_PM1A_CNT_BLK).unwrap_or(read_u32(table, PM1A_CNT_BLK)?),
            pm1b_control_block: io_port_of(X_PM1B_CNT_BLK).unwrap_or(read_u32(table, PM1B_CNT_BLK)?),
            reset_register,
            reset_value: if reset_register.is_some() { table.get(RESET_VALUE).copied().unwrap_or(0) } else { 0 },
            dsdt_address,
            flags,
        })
    }
}

/// SLP_TYPa and SLP_TYPb for one sleep state, written to PM1x_CNT.SLP_TYP.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct SleepTypes {
    pub slp_typ_a: u8,
    pub slp_typ_b: u8,
}

const AML_ZERO_OP: u8 = 0x00;
const AML_ONE_OP: u8 = 0x01;
const AML_NAME_OP: u8 = 0x08;
const AML_BYTE_PREFIX: u8 = 0x0A;
const AML_WORD_PREFIX: u8 = 0x0B;
const AML_DWORD_PREFIX: u8 = 0x0C;
const AML_PACKAGE_OP: u8 = 0x12;
const AML_ONES_OP: u8 = 0xFF;
const AML_ROOT_CHAR: u8 = b'\\';
const AML_PARENT_PREFIX_CHAR: u8 = b'^';

/// Scans AML for `Name(_S5_, Package(){a, b, ...})` and returns (a, b).
///
/// This is the usual scan rather than an AML interpreter: it accepts an `_S5_` name
/// preceded by NameOp, optionally with `\` or `^` prefixes, followed by PackageOp,
/// PkgLength (1-4 bytes, §20.2.4), NumElements and two integer elements encoded as
/// BytePrefix+byte, ZeroOp, OneOp (or Word/DWord prefixes and OnesOp, taking the low byte).
pub fn find_s5(aml: &[u8]) -> Option<SleepTypes> {
    let mut search_from = 0;
    while let Some(position) = find_subslice(aml.get(search_from..)?, b"_S5_") {
        let name_at = search_from + position;
        search_from = name_at + 1;
        if !preceded_by_name_op(aml, name_at) {
            continue;
        }
        if let Some(sleep_types) = decode_s5_package(aml.get(name_at + 4..)?) {
            return Some(sleep_types);
        }
    }
    None
}

fn find_subslice(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// Whether the bytes before `name_at` are NameOp followed by optional `\` or `^`s.
fn preceded_by_name_op(aml: &[u8], name_at: usize) -> bool {
    let mut index = name_at;
    while let Some(before) = index.checked_sub(1) {
        match aml.get(before) {
            Some(&AML_NAME_OP) => return true,
            Some(&AML_ROOT_CHAR) | Some(&AML_PARENT_PREFIX_CHAR) => index = before,
            _ => return false,
        }
    }
    false
}

fn decode_s5_package(after_name: &[u8]) -> Option<SleepTypes> {
    if *after_name.first()? != AML_PACKAGE_OP {
        return None;
    }
    let lead = *after_name.get(1)?;
    let following_length_bytes = usize::from(lead >> 6);
    let mut offset = 2 + following_length_bytes;
    let element_count = *after_name.get(offset)?;
    offset += 1;
    if element_count < 2 {
        return None;
    }
    let (slp_typ_a, used) = decode_integer_byte(after_name.get(offset..)?)?;
    offset += used;
    let (slp_typ_b, _) = decode_integer_byte(after_name.get(offset..)?)?;
    Some(SleepTypes { slp_typ_a, slp_typ_b })
}

/// One AML integer data object, as (low byte, bytes consumed).
fn decode_integer_byte(aml: &[u8]) -> Option<(u8, usize)> {
    match *aml.first()? {
        AML_ZERO_OP => Some((0, 1)),
        AML_ONE_OP => Some((1, 1)),
        AML_ONES_OP => Some((0xFF, 1)),
        AML_BYTE_PREFIX => Some((*aml.get(1)?, 2)),
        AML_WORD_PREFIX => read_u16(aml, 1).map(|value| (value as u8, 3)),
        AML_DWORD_PREFIX => read_u32(aml, 1).map(|value| (value as u8, 5)),
        _ => None,
    }
}

/// Reads the root table and every table it names; see the module documentation.
pub fn load(mem: &dyn PhysMemory, rsdp: &Rsdp) -> Result<AcpiTables, AcpiError> {
    let xsdt = rsdp.xsdt_address.filter(|&address| address != 0);
    let rsdt = Some(u64::from(rsdp.rsdt_address)).filter(|&address| address != 0);
    let entries = match (xsdt, rsdt) {
        (Some(xsdt), rsdt) => match read_root_table(mem, xsdt, *b"XSDT", 8) {
            Ok(entries) => entries,
            // A broken XSDT with a usable RSDT: fall back rather than lose everything.
            Err(error) => match rsdt {
                Some(rsdt) => read_root_table(mem, rsdt, *b"RSDT", 4).map_err(|_| error)?,
                None => return Err(error),
            },
        },
        (None, Some(rsdt)) => read_root_table(mem, rsdt, *b"RSDT", 4)?,
        (None, None) => return Err(AcpiError::NoRootTable),
    };

    let mut result = AcpiTables::default();
    for address in entries {
        let Some((info, bytes)) = read_table(mem, address, &mut result.skipped) else {
            continue;
        };
        result.tables.push(info);
        match &info.signature {
            b"APIC" if result.madt.is_none() => match Madt::parse(&bytes) {
                Some(madt) => result.madt = Some(madt),
                None => result.skipped.push(skipped(&info, SkipReason::TooShortForType)),
            },
            b"FACP" if result.fadt.is_none() => match Fadt::parse(&bytes) {
                Some(fadt) => result.fadt = Some(fadt),
                None => result.skipped.push(skipped(&info, SkipReason::TooShortForType)),
            },
            b"MCFG" if result.ecam.is_empty() => result.ecam = parse_mcfg(&bytes),
            _ => {}
        }
    }

    if let Some(dsdt_address) = result.fadt.map(|fadt| fadt.dsdt_address) {
        if let Some((info, bytes)) = read_table(mem, dsdt_address, &mut result.skipped) {
            if &info.signature == b"DSDT" {
                result.tables.push(info);
                result.s5 = find_s5(bytes.get(TABLE_HEADER_LENGTH..).unwrap_or(&[]));
            } else {
                result.skipped.push(skipped(&info, SkipReason::NotADsdt));
            }
        }
    }
    Ok(result)
}

fn skipped(info: &TableInfo, reason: SkipReason) -> SkippedTable {
    SkippedTable { signature: info.signature, address: info.address, reason }
}

/// Reads and checks the RSDT or XSDT, returning the table addresses it lists.
fn read_root_table(
    mem: &dyn PhysMemory,
    address: u64,
    expected_signature: [u8; 4],
    entry_bytes: usize,
) -> Result<Vec<u64>, AcpiError> {
    let mut header = [0u8; TABLE_HEADER_LENGTH];
    if !mem.read(address, &mut header) {
        return Err(AcpiError::RootTableUnreadable(address));
    }
    let info = decode_header(&header, address).ok_or(AcpiError::RootTableUnreadable(address))?;
    if info.signature != expected_signature {
        return Err(AcpiError::BadRootTableSignature(info.signature));
    }
    if (info.length as usize) < TABLE_HEADER_LENGTH || info.length > MAX_TABLE_LENGTH {
        return Err(AcpiError::BadRootTableLength(info.length));
    }
    let mut table = vec![0u8; info.length as usize];
    if !mem.read(address, &mut table) {
        return Err(AcpiError::RootTableUnreadable(address));
    }
    if checksum(&table) != 0 {
        return Err(AcpiError::BadRootTableChecksum);
    }
    Ok(table
        .get(TABLE_HEADER_LENGTH..)
        .unwrap_or(&[])
        .chunks_exact(entry_bytes)
        .filter_map(|entry| match entry_bytes {
            4 => read_u32(entry, 0).map(u64::from),
            _ => read_u64(entry, 0),
        })
        .collect())
}

/// Reads one table with its header checks; failures are appended to `skipped`.
fn read_table(
    mem: &dyn PhysMemory,
    address: u64,
    skipped_tables: &mut Vec<SkippedTable>,
) -> Option<(TableInfo, Vec<u8>)> {
    let mut skip = |signature: [u8; 4], reason: SkipReason| {
        skipped_tables.push(SkippedTable { signature, address, reason });
        None
    };
    if address == 0 {
        return skip([0; 4], SkipReason::NullAddress);
    }
    let mut header = [0u8; TABLE_HEADER_LENGTH];
    if !mem.read(address, &mut header) {
        return skip([0; 4], SkipReason::Unreadable);
    }
    let Some(info) = decode_header(&header, address) else {
        return skip([0; 4], SkipReason::Unreadable);
    };
    if (info.length as usize) < TABLE_HEADER_LENGTH || info.length > MAX_TABLE_LENGTH {
        return skip(info.signature, SkipReason::BadLength(info.length));
    }
    let mut table = vec![0u8; info.length as usize];
    if !mem.read(address, &mut table) {
        return skip(info.signature, SkipReason::Unreadable);
    }
    if checksum(&table) != 0 {
        return skip(info.signature, SkipReason::BadChecksum);
    }
    Some((info, table))
}

/// Decodes the common header (§5.2.6): Signature, Length, Revision, Checksum, OEMID, ...
fn decode_header(header: &[u8], address: u64) -> Option<TableInfo> {
    Some(TableInfo {
        signature: read_array::<4>(header, 0)?,
        address,
        length: read_u32(header, 4)?,
        revision: *header.get(8)?,
        oem_id: read_array::<6>(header, 10)?,
    })
}

/// The byte sum; a valid ACPI structure sums to zero.
fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, &byte| sum.wrapping_add(byte))
}

fn read_array<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    bytes.get(offset..offset.checked_add(N)?)?.try_into().ok()
}

fn read_u16(bytes: &[u8], offset: usize) -> Option<u16> {
    read_array(bytes, offset).map(u16::from_le_bytes)
}

fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    read_array(bytes, offset).map(u32::from_le_bytes)
}

fn read_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    read_array(bytes, offset).map(u64::from_le_bytes)
}

#[cfg(test)]
mod tests;
