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
    pub skipped: Vec<SkippedTable>,
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
mod tests {
    use super::*;

    /// Physical memory made of (address, bytes) chunks; reads must fall in one chunk.
    #[derive(Default)]
    struct FakeMemory {
        chunks: Vec<(u64, Vec<u8>)>,
    }

    impl FakeMemory {
        fn place(&mut self, address: u64, bytes: Vec<u8>) {
            self.chunks.push((address, bytes));
        }
    }

    impl PhysMemory for FakeMemory {
        fn read(&self, phys: u64, buf: &mut [u8]) -> bool {
            for (start, bytes) in &self.chunks {
                let Some(offset) = phys.checked_sub(*start) else {
                    continue;
                };
                let Ok(offset) = usize::try_from(offset) else {
                    continue;
                };
                if let Some(source) = offset.checked_add(buf.len()).and_then(|end| bytes.get(offset..end)) {
                    buf.copy_from_slice(source);
                    return true;
                }
            }
            false
        }
    }

    fn fix_checksum(bytes: &mut [u8], checksum_offset: usize, length: usize) {
        bytes[checksum_offset] = 0;
        let sum = checksum(&bytes[..length]);
        bytes[checksum_offset] = 0u8.wrapping_sub(sum);
    }

    /// A table: header with `signature` and a correct checksum, then `body`.
    fn table(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
        let length = TABLE_HEADER_LENGTH + body.len();
        let mut bytes = vec![0u8; TABLE_HEADER_LENGTH];
        bytes[..4].copy_from_slice(signature);
        bytes[4..8].copy_from_slice(&(length as u32).to_le_bytes());
        bytes[8] = revision;
        bytes[10..16].copy_from_slice(b"BOCHS ");
        bytes[16..24].copy_from_slice(b"BXPC    ");
        bytes.extend_from_slice(body);
        fix_checksum(&mut bytes, 9, length);
        bytes
    }

    fn rsdp_v1(rsdt: u32) -> Vec<u8> {
        let mut bytes = vec![0u8; 20];
        bytes[..8].copy_from_slice(&RSDP_SIGNATURE);
        bytes[9..15].copy_from_slice(b"BOCHS ");
        bytes[16..20].copy_from_slice(&rsdt.to_le_bytes());
        fix_checksum(&mut bytes, 8, 20);
        bytes
    }

    fn rsdp_v2(rsdt: u32, xsdt: u64) -> Vec<u8> {
        let mut bytes = vec![0u8; 36];
        bytes[..8].copy_from_slice(&RSDP_SIGNATURE);
        bytes[9..15].copy_from_slice(b"OEMOEM");
        bytes[15] = 2;
        bytes[16..20].copy_from_slice(&rsdt.to_le_bytes());
        bytes[20..24].copy_from_slice(&36u32.to_le_bytes());
        bytes[24..32].copy_from_slice(&xsdt.to_le_bytes());
        fix_checksum(&mut bytes, 8, 20);
        fix_checksum(&mut bytes, 32, 36);
        bytes
    }

    fn madt_body() -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&0xFEE0_0000u32.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT
        body.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]); // CPU uid 0 apic 0 enabled
        body.extend_from_slice(&[0, 8, 1, 1, 0, 0, 0, 0]); // CPU uid 1 apic 1 disabled
        body.extend_from_slice(&[0, 8, 2, 2, 2, 0, 0, 0]); // CPU uid 2 online capable
        body.extend_from_slice(&[1, 12, 0, 0]); // I/O APIC id 0
        body.extend_from_slice(&0xFEC0_0000u32.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        // QEMU's overrides: IRQ0 -> GSI2; IRQ9 -> GSI9 level, active high.
        body.extend_from_slice(&[2, 10, 0, 0, 2, 0, 0, 0, 0, 0]);
        body.extend_from_slice(&[2, 10, 0, 9, 9, 0, 0, 0, 0x0D, 0]);
        body.extend_from_slice(&[2, 10, 0, 11, 11, 0, 0, 0, 0x0F, 0]); // level, active low
        body.extend_from_slice(&[9, 16, 0, 0]); // x2APIC id 300 uid 7 enabled
        body.extend_from_slice(&300u32.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&7u32.to_le_bytes());
        body.extend_from_slice(&[4, 6, 0xFF, 0, 0, 1]); // local APIC NMI: ignored
        body.extend_from_slice(&[0, 4, 9, 9]); // truncated type 0: ignored
        body
    }

    fn fadt_body(dsdt: u32, x_dsdt: u64, length: usize) -> Vec<u8> {
        let mut full = vec![0u8; 276];
        full[40..44].copy_from_slice(&dsdt.to_le_bytes());
        full[46..48].copy_from_slice(&9u16.to_le_bytes());
        full[48..52].copy_from_slice(&0xB2u32.to_le_bytes());
        full[52] = 0xF1;
        full[64..68].copy_from_slice(&0x604u32.to_le_bytes());
        full[112..116].copy_from_slice(&(FADT_FLAG_RESET_REG_SUP | 1).to_le_bytes());
        full[116..128].copy_from_slice(&[1, 8, 0, 1, 0xF9, 0x0C, 0, 0, 0, 0, 0, 0]);
        full[128] = 0x06;
        full[140..148].copy_from_slice(&x_dsdt.to_le_bytes());
        // X_PM1a_CNT_BLK: system I/O 0xB004.
        full[172..184].copy_from_slice(&[1, 16, 0, 2, 0x04, 0xB0, 0, 0, 0, 0, 0, 0]);
        full.truncate(length);
        full.drain(..TABLE_HEADER_LENGTH);
        full
    }

    /// A DSDT body with filler AML, a decoy method named _S5_ and the real Name.
    fn dsdt_body(package: &[u8]) -> Vec<u8> {
        let mut body = vec![0x10, 0x05, b'\\', b'_', b'S', b'B', b'_'];
        body.extend_from_slice(&[0x14, 0x06, b'_', b'S', b'5', b'_', 0x00, 0xA4]); // Method
        body.push(AML_NAME_OP);
        body.push(b'\\');
        body.extend_from_slice(b"_S5_");
        body.extend_from_slice(package);
        body.extend_from_slice(&[0xA3, 0xA3]);
        body
    }

    struct Machine {
        memory: FakeMemory,
        rsdp: Rsdp,
    }

    /// A QEMU-like machine: RSDP v2 -> XSDT (and RSDT) -> FACP, APIC, HPET; FACP -> DSDT.
    fn machine(dsdt_package: &[u8]) -> Machine {
        let mut memory = FakeMemory::default();
        let fadt_address = 0x7FE_1000u64;
        let madt_address = 0x7FE_2000u64;
        let hpet_address = 0x7FE_3000u64;
        let dsdt_address = 0x7FE_0000u64;
        memory.place(dsdt_address, table(b"DSDT", 1, &dsdt_body(dsdt_package)));
        memory.place(fadt_address, table(b"FACP", 3, &fadt_body(0, dsdt_address, 244)));
        memory.place(madt_address, table(b"APIC", 1, &madt_body()));
        memory.place(hpet_address, table(b"HPET", 1, &[0; 20]));
        let mut xsdt_body = Vec::new();
        for address in [fadt_address, madt_address, hpet_address] {
            xsdt_body.extend_from_slice(&address.to_le_bytes());
        }
        memory.place(0x7FE_4000, table(b"XSDT", 1, &xsdt_body));
        let mut rsdt_body = Vec::new();
        for address in [fadt_address, madt_address] {
            rsdt_body.extend_from_slice(&(address as u32).to_le_bytes());
        }
        memory.place(0x7FE_5000, table(b"RSDT", 1, &rsdt_body));
        let rsdp = Rsdp::parse(&rsdp_v2(0x7FE_5000, 0x7FE_4000)).unwrap();
        Machine { memory, rsdp }
    }

    #[test]
    fn rsdp_versions_and_errors() {
        let v1 = Rsdp::parse(&rsdp_v1(0x1234)).unwrap();
        assert_eq!(v1, Rsdp { revision: 0, oem_id: *b"BOCHS ", rsdt_address: 0x1234, xsdt_address: None });
        let v2 = Rsdp::parse(&rsdp_v2(1, 0x1_0000_0000)).unwrap();
        assert_eq!(v2.xsdt_address, Some(0x1_0000_0000));
        assert_eq!(v2.revision, 2);

        assert_eq!(Rsdp::parse(&rsdp_v1(1)[..19]), Err(AcpiError::RsdpTooShort));
        assert_eq!(Rsdp::parse(&rsdp_v2(1, 2)[..35]), Err(AcpiError::RsdpTooShort));
        let mut bad = rsdp_v1(1);
        bad[0] = b'r';
        assert_eq!(Rsdp::parse(&bad), Err(AcpiError::BadRsdpSignature));
        let mut bad = rsdp_v1(1);
        bad[16] ^= 1;
        assert_eq!(Rsdp::parse(&bad), Err(AcpiError::BadRsdpChecksum));
        let mut bad = rsdp_v2(1, 2);
        bad[24] ^= 1;
        assert_eq!(Rsdp::parse(&bad), Err(AcpiError::BadRsdpExtendedChecksum));
        let mut bad = rsdp_v2(1, 2);
        bad[20] = 20;
        fix_checksum(&mut bad, 8, 20);
        assert_eq!(Rsdp::parse(&bad), Err(AcpiError::BadRsdpLength(20)));
    }

    #[test]
    fn find_rsdp_in_bios_area() {
        let mut area = vec![0u8; 0x400];
        // A stray signature with a bad checksum, then an unaligned valid one, then the real one.
        area[0x10..0x18].copy_from_slice(&RSDP_SIGNATURE);
        area[0x28..0x28 + 20].copy_from_slice(&rsdp_v1(5));
        area[0x3E0..0x3E0 + 20].copy_from_slice(&rsdp_v1(7)[..]);
        assert_eq!(find_rsdp(&area), Some(0x3E0));
        // Cut so the last candidate is truncated.
        assert_eq!(find_rsdp(&area[..0x3E0 + 19]), None);
        let mut v2_area = vec![0u8; 0x40];
        v2_area[..36].copy_from_slice(&rsdp_v2(1, 2));
        assert_eq!(find_rsdp(&v2_area), Some(0));
        assert_eq!(find_rsdp(&[]), None);
    }

    #[test]
    fn loads_a_qemu_like_machine() {
        let machine = machine(&[AML_PACKAGE_OP, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00]);
        let tables = load(&machine.memory, &machine.rsdp).unwrap();
        let signatures: Vec<[u8; 4]> = tables.tables.iter().map(|t| t.signature).collect();
        assert_eq!(signatures, [*b"FACP", *b"APIC", *b"HPET", *b"DSDT"]);
        assert!(tables.skipped.is_empty(), "{:?}", tables.skipped);
        assert_eq!(tables.tables[0].oem_id, *b"BOCHS ");
        assert_eq!(tables.tables[0].revision, 3);

        let madt = tables.madt.as_ref().unwrap();
        assert_eq!(madt.local_apic_address, 0xFEE0_0000);
        assert!(madt.pcat_compat);
        assert_eq!(
            madt.cpus,
            [
                MadtCpu { processor_uid: 0, apic_id: 0, enabled: true, online_capable: false, x2apic: false },
                MadtCpu { processor_uid: 1, apic_id: 1, enabled: false, online_capable: false, x2apic: false },
                MadtCpu { processor_uid: 2, apic_id: 2, enabled: false, online_capable: true, x2apic: false },
                MadtCpu { processor_uid: 7, apic_id: 300, enabled: true, online_capable: false, x2apic: true },
            ]
        );
        assert_eq!(madt.ioapics, [MadtIoApic { id: 0, address: 0xFEC0_0000, gsi_base: 0 }]);
        assert_eq!(madt.overrides.len(), 3);
        assert_eq!(madt.isa_irq_to_gsi(0), (2, false, false));
        assert_eq!(madt.isa_irq_to_gsi(9), (9, false, true));
        assert_eq!(madt.isa_irq_to_gsi(11), (11, true, true));
        assert_eq!(madt.isa_irq_to_gsi(4), (4, false, false));

        let fadt = tables.fadt.unwrap();
        assert_eq!(fadt.sci_interrupt, 9);
        assert_eq!(fadt.smi_command_port, 0xB2);
        assert_eq!(fadt.acpi_enable, 0xF1);
        assert_eq!(fadt.pm1a_control_block, 0xB004, "X_PM1a_CNT_BLK preferred");
        assert_eq!(fadt.pm1b_control_block, 0);
        assert_eq!(fadt.dsdt_address, 0x7FE_0000, "X_DSDT used");
        assert_eq!(
            fadt.reset_register,
            Some(GenericAddress { address_space: 1, bit_width: 8, bit_offset: 0, access_size: 1, address: 0xCF9 })
        );
        assert_eq!(fadt.reset_value, 6);
        assert_eq!(tables.s5, Some(SleepTypes { slp_typ_a: 0, slp_typ_b: 0 }));
    }

    #[test]
    fn s5_encodings() {
        // BytePrefix elements, 2-byte PkgLength.
        let body = dsdt_body(&[AML_PACKAGE_OP, 0x40, 0x00, 0x04, 0x0A, 0x05, 0x0A, 0x07, 0x00, 0x00]);
        assert_eq!(find_s5(&body), Some(SleepTypes { slp_typ_a: 5, slp_typ_b: 7 }));
        // Mixed OneOp and BytePrefix, 4-byte PkgLength, no root prefix.
        let aml = [AML_NAME_OP, b'_', b'S', b'5', b'_', AML_PACKAGE_OP, 0xC0, 0, 0, 0, 2, AML_ONE_OP, 0x0A, 3];
        assert_eq!(find_s5(&aml), Some(SleepTypes { slp_typ_a: 1, slp_typ_b: 3 }));
        // No NameOp before it: only the decoy method.
        assert_eq!(find_s5(&[0x14, 0x06, b'_', b'S', b'5', b'_', 0x12, 0x04, 0x02, 0, 0]), None);
        // Truncated package.
        assert_eq!(find_s5(&[AML_NAME_OP, b'_', b'S', b'5', b'_', AML_PACKAGE_OP, 0x04, 0x02, 0x0A]), None);
        assert_eq!(find_s5(&[]), None);
        assert_eq!(find_s5(b"_S5_"), None);
    }

    #[test]
    fn fadt_versions() {
        // ACPI 1.0 FADT: no reset register, no X_ fields.
        let fadt = Fadt::parse(&table(b"FACP", 1, &fadt_body(0x1234, 0x5678, 116))).unwrap();
        assert_eq!(fadt.reset_register, None);
        assert_eq!(fadt.dsdt_address, 0x1234);
        assert_eq!(fadt.pm1a_control_block, 0x604);
        // X_DSDT zero: DSDT used.
        let fadt = Fadt::parse(&table(b"FACP", 3, &fadt_body(0x1234, 0, 244))).unwrap();
        assert_eq!(fadt.dsdt_address, 0x1234);
        // Reset register not supported by flags.
        let mut body = fadt_body(1, 0, 244);
        body[112 - 36] = 0;
        body[113 - 36] = 0;
        let fadt = Fadt::parse(&table(b"FACP", 3, &body)).unwrap();
        assert_eq!(fadt.reset_register, None);
        assert_eq!(fadt.reset_value, 0);
        // X_PM1a_CNT_BLK in memory space is not used.
        let mut body = fadt_body(1, 0, 244);
        body[172 - 36] = ADDRESS_SPACE_SYSTEM_MEMORY;
        assert_eq!(Fadt::parse(&table(b"FACP", 3, &body)).unwrap().pm1a_control_block, 0x604);
        assert_eq!(Fadt::parse(&table(b"FACP", 1, &fadt_body(1, 0, 115))), None);
    }

    #[test]
    fn bad_tables_are_skipped_not_fatal() {
        let mut machine = machine(&[AML_PACKAGE_OP, 0x04, 0x02, 0x0A, 0x05, 0x0A, 0x05]);
        // Corrupt the HPET's checksum, add a null entry, an unreadable one and a huge one.
        let hpet = machine.memory.chunks.iter_mut().find(|(a, _)| *a == 0x7FE_3000).unwrap();
        hpet.1[20] ^= 0xFF;
        let mut huge = table(b"SSDT", 1, &[]);
        huge[4..8].copy_from_slice(&(MAX_TABLE_LENGTH + 1).to_le_bytes());
        machine.memory.place(0x900_0000, huge);
        let mut xsdt_body = Vec::new();
        for address in [0u64, 0x7FE_3000, 0xDEAD_0000, 0x900_0000, 0x7FE_1000, 0x7FE_2000] {
            xsdt_body.extend_from_slice(&address.to_le_bytes());
        }
        machine.memory.place(0x800_0000, table(b"XSDT", 1, &xsdt_body));
        machine.rsdp.xsdt_address = Some(0x800_0000);
        let tables = load(&machine.memory, &machine.rsdp).unwrap();
        let reasons: Vec<SkipReason> = tables.skipped.iter().map(|s| s.reason).collect();
        assert_eq!(
            reasons,
            [
                SkipReason::NullAddress,
                SkipReason::BadChecksum,
                SkipReason::Unreadable,
                SkipReason::BadLength(MAX_TABLE_LENGTH + 1),
            ]
        );
        assert_eq!(tables.skipped[1].signature, *b"HPET");
        assert!(tables.madt.is_some() && tables.fadt.is_some());
        assert_eq!(tables.s5, Some(SleepTypes { slp_typ_a: 5, slp_typ_b: 5 }));
    }

    #[test]
    fn root_table_choice_and_errors() {
        let mut machine = machine(&[AML_PACKAGE_OP, 0x04, 0x02, 0x00, 0x00]);
        // RSDT only (ACPI 1.0): no HPET in the RSDT.
        let v1 = Rsdp { revision: 0, oem_id: *b"BOCHS ", rsdt_address: 0x7FE_5000, xsdt_address: None };
        let tables = load(&machine.memory, &v1).unwrap();
        assert_eq!(tables.tables.len(), 3);
        // XSDT address 0 falls to the RSDT too.
        let zero_xsdt = Rsdp { xsdt_address: Some(0), ..v1 };
        assert_eq!(load(&machine.memory, &zero_xsdt).unwrap().tables.len(), 3);
        // A corrupt XSDT falls back to the RSDT.
        let xsdt = machine.memory.chunks.iter_mut().find(|(a, _)| *a == 0x7FE_4000).unwrap();
        xsdt.1[40] ^= 1;
        assert_eq!(load(&machine.memory, &machine.rsdp).unwrap().tables.len(), 3);
        // ...but with no RSDT the XSDT's error is reported.
        let xsdt_only = Rsdp { rsdt_address: 0, ..machine.rsdp };
        assert_eq!(load(&machine.memory, &xsdt_only), Err(AcpiError::BadRootTableChecksum));
        let nothing = Rsdp { rsdt_address: 0, xsdt_address: None, ..v1 };
        assert_eq!(load(&machine.memory, &nothing), Err(AcpiError::NoRootTable));
        let unreadable = Rsdp { rsdt_address: 0x10, ..v1 };
        assert_eq!(load(&machine.memory, &unreadable), Err(AcpiError::RootTableUnreadable(0x10)));
        let wrong = Rsdp { rsdt_address: 0x7FE_2000, ..v1 };
        assert_eq!(load(&machine.memory, &wrong), Err(AcpiError::BadRootTableSignature(*b"APIC")));
    }

    #[test]
    fn madt_walk_stops_safely() {
        let mut body = madt_body();
        body.truncate(8 + 8 + 3); // one CPU, then a cut entry
        let madt = Madt::parse(&table(b"APIC", 1, &body)).unwrap();
        assert_eq!(madt.cpus.len(), 1);
        let mut body = madt_body();
        body[8 + 8 + 1] = 0; // second entry has length 0
        let madt = Madt::parse(&table(b"APIC", 1, &body)).unwrap();
        assert_eq!(madt.cpus.len(), 1);
        assert!(madt.ioapics.is_empty());
        assert_eq!(Madt::parse(&table(b"APIC", 1, &[0; 7])), None);
        // Local APIC address override (type 5).
        let mut body = madt_body();
        body.extend_from_slice(&[5, 12, 0, 0]);
        body.extend_from_slice(&0x1_FEE0_0000u64.to_le_bytes());
        let madt = Madt::parse(&table(b"APIC", 1, &body)).unwrap();
        assert_eq!(madt.local_apic_address, 0x1_FEE0_0000);
    }

    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn random_and_truncated_inputs_never_panic() {
        let mut state = 0x5151_7777_abcd_0001u64;
        for _ in 0..2000 {
            let length = (xorshift(&mut state) % 400) as usize;
            let mut bytes: Vec<u8> = (0..length).map(|_| xorshift(&mut state) as u8).collect();
            let _ = Rsdp::parse(&bytes);
            let _ = find_rsdp(&bytes);
            let _ = find_s5(&bytes);
            let _ = Fadt::parse(&bytes);
            if let Some(madt) = Madt::parse(&bytes) {
                let _ = madt.isa_irq_to_gsi(xorshift(&mut state) as u8);
            }
            // Sprinkle _S5_ patterns so the package decoder sees random tails.
            if bytes.len() > 8 {
                let at = (xorshift(&mut state) as usize) % (bytes.len() - 6);
                bytes[at..at + 6].copy_from_slice(&[AML_NAME_OP, b'_', b'S', b'5', b'_', AML_PACKAGE_OP]);
                let _ = find_s5(&bytes);
            }
        }
        // Whole machines with random tables behind valid root tables.
        for _ in 0..300 {
            let mut memory = FakeMemory::default();
            let mut xsdt_body = Vec::new();
            for index in 0..4u64 {
                let address = 0x10_0000 * (index + 1);
                let signature = [*b"APIC", *b"FACP", *b"DSDT", *b"SSDT"][index as usize];
                let length = (xorshift(&mut state) % 300) as usize;
                let body: Vec<u8> = (0..length).map(|_| xorshift(&mut state) as u8).collect();
                let mut bytes = table(&signature, 1, &body);
                if index == 1 && bytes.len() >= 148 {
                    // Point X_DSDT at the random DSDT and keep the checksum valid.
                    bytes[140..148].copy_from_slice(&0x30_0000u64.to_le_bytes());
                    let total = bytes.len();
                    fix_checksum(&mut bytes, 9, total);
                }
                if xorshift(&mut state).is_multiple_of(4) {
                    // Random length field: truncated or overlong tables.
                    let bogus = xorshift(&mut state) as u32 % 600;
                    bytes[4..8].copy_from_slice(&bogus.to_le_bytes());
                    let total = bytes.len();
                    fix_checksum(&mut bytes, 9, total);
                }
                memory.place(address, bytes);
                xsdt_body.extend_from_slice(&address.to_le_bytes());
            }
            memory.place(0x1000, table(b"XSDT", 1, &xsdt_body));
            let rsdp = Rsdp { revision: 2, oem_id: [0; 6], rsdt_address: 0, xsdt_address: Some(0x1000) };
            let tables = load(&memory, &rsdp).unwrap();
            assert!(tables.tables.len() + tables.skipped.len() >= 4);
        }
    }
}
