//! The platform a PVH domain boots into: its guest-physical memory map, the
//! `hvm_start_info` block vCPU 0 receives in %ebx, and the ACPI tables that describe its
//! vCPUs. Portable: the result is a list of (guest-physical address, bytes) for the
//! domain builder to copy into the new domain's memory.
//!
//! Layout (mirroring Xen's PVH domU, see shared/docs/pvh-abi.md §1.4–1.6):
//! - RAM from 0 (no 640K–1M hole; Linux needs low RAM for its real-mode trampoline) up
//!   to the 32-bit MMIO hole at [`LOW_RAM_LIMIT`], the rest above 4 GiB;
//! - the special pages (xenstore and console rings) reserved at
//!   [`SPECIAL_PAGES_START`]..[`SPECIAL_PAGES_END`], outside RAM;
//! - ACPI tables in an ACPI-typed range at [`ACPI_TABLES_ADDRESS`], RSDP last;
//! - the start info, module list, memory map and command line in one page-aligned
//!   block right above the kernel image (below 1 GiB, where Linux reads them before it
//!   maps more), then the initrd, page-aligned.
//!
//! ACPI content: RSDP rev 2 → XSDT and RSDT → FADT (rev 5, no VGA, no CMOS RTC, no
//! 8042, reset register 0xcf9/6), FACS, an empty DSDT (so no `\_S5`), and a MADT with
//! one local APIC per vCPU (ACPI processor UID = vCPU id, APIC id = 2 × vCPU id as Xen
//! does; x2APIC entries where the id exceeds 254), no I/O APIC.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// `hvm_start_info.magic` (xen/include/public/arch-x86/hvm/start_info.h).
pub const HVM_START_MAGIC: u32 = 0x336e_c578;
/// Size of `hvm_start_info` version 1.
pub const HVM_START_INFO_SIZE: usize = 56;
/// Size of one `hvm_memmap_table_entry`.
pub const MEMMAP_ENTRY_SIZE: usize = 24;
/// Size of one `hvm_modlist_entry`.
pub const MODLIST_ENTRY_SIZE: usize = 32;
/// RAM below 4 GiB stops here; the rest is MMIO, special pages and ACPI.
pub const LOW_RAM_LIMIT: u64 = 0xf000_0000;
/// Where the ACPI tables go (Xen's PVH: NVS/ACPI at 0xfc000000).
pub const ACPI_TABLES_ADDRESS: u64 = 0xfc00_0000;
/// First special page (xenstore ring at pfn 0xfeffc, console at 0xfefff).
pub const SPECIAL_PAGES_START: u64 = 0xfeff_8000;
/// End of the special pages (`X86_HVM_END_SPECIAL_REGION` << 12).
pub const SPECIAL_PAGES_END: u64 = 0xff00_0000;
/// Linux's COMMAND_LINE_SIZE, including the terminating NUL.
pub const MAX_COMMAND_LINE: usize = 2048;
/// Most vCPUs one MADT here describes (x2APIC ids 2 × id stay far below u32::MAX).
pub const MAX_VCPUS: u32 = 4096;
/// The boot block (start info, lists, command line) must end below this (Linux reads
/// it through its first 1 GiB mapping).
const BOOT_BLOCK_LIMIT: u64 = 1 << 30;
const PAGE: u64 = 4096;

/// E820 memory types as used by `hvm_memmap_table_entry.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MemoryType {
    Ram = 1,
    Reserved = 2,
    Acpi = 3,
}

/// One memory map entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemmapEntry {
    pub address: u64,
    pub size: u64,
    pub kind: MemoryType,
}

/// What the domain is made of.
#[derive(Debug, Clone)]
pub struct PlatformConfig<'a> {
    /// Guest RAM in bytes.
    pub memory_bytes: u64,
    /// Number of vCPUs (1..=[`MAX_VCPUS`]).
    pub vcpus: u32,
    /// One past the kernel image's last guest-physical byte.
    pub kernel_end: u64,
    /// Kernel command line (no NUL; shorter than [`MAX_COMMAND_LINE`]).
    pub command_line: &'a str,
    /// Size of the initial ramdisk, if any.
    pub initrd_size: Option<u64>,
}

/// Why a domain's platform cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformError {
    /// 0 vCPUs or more than [`MAX_VCPUS`].
    BadVcpuCount(u32),
    /// The command line is too long or contains a NUL.
    BadCommandLine,
    /// RAM does not hold the kernel, the boot block and the initrd.
    NotEnoughMemory { needed: u64, available: u64 },
    /// The kernel reaches so high that the boot block would lie above 1 GiB.
    KernelTooHigh(u64),
}

impl fmt::Display for PlatformError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlatformError::BadVcpuCount(count) => write!(formatter, "{count} vCPUs (1 to {MAX_VCPUS} allowed)"),
            PlatformError::BadCommandLine => {
                write!(formatter, "command line longer than {} bytes or containing NUL", MAX_COMMAND_LINE - 1)
            }
            PlatformError::NotEnoughMemory { needed, available } => {
                write!(formatter, "needs {} MiB of RAM below 4 GiB, has {} MiB", needed >> 20, available >> 20)
            }
            PlatformError::KernelTooHigh(end) => write!(formatter, "kernel image ends at {end:#x}, above 1 GiB"),
        }
    }
}

/// The built platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvhPlatform {
    /// Bytes to copy into guest memory at the given guest-physical addresses.
    pub blobs: Vec<(u64, Vec<u8>)>,
    /// Guest-physical address of `hvm_start_info` (vCPU 0's %ebx).
    pub start_info_address: u64,
    /// Where the initrd goes (the builder copies it there), if any.
    pub initrd_address: Option<u64>,
    /// The memory map given to the guest.
    pub memory_map: Vec<MemmapEntry>,
    /// Guest-physical address of the RSDP.
    pub rsdp_address: u64,
}

fn align_up(value: u64, alignment: u64) -> Option<u64> {
    value.checked_add(alignment - 1).map(|v| v & !(alignment - 1))
}

/// Builds the memory map, start info and ACPI tables for `config`.
pub fn build(config: &PlatformConfig<'_>) -> Result<PvhPlatform, PlatformError> {
    if config.vcpus == 0 || config.vcpus > MAX_VCPUS {
        return Err(PlatformError::BadVcpuCount(config.vcpus));
    }
    if config.command_line.len() >= MAX_COMMAND_LINE || config.command_line.contains('\0') {
        return Err(PlatformError::BadCommandLine);
    }
    let low_ram = config.memory_bytes.min(LOW_RAM_LIMIT);
    let high_ram = config.memory_bytes - low_ram;
    let mut memory_map = vec![MemmapEntry { address: 0, size: low_ram, kind: MemoryType::Ram }];
    memory_map.push(MemmapEntry { address: ACPI_TABLES_ADDRESS, size: 0, kind: MemoryType::Acpi }); // size set below
    memory_map.push(MemmapEntry {
        address: SPECIAL_PAGES_START,
        size: SPECIAL_PAGES_END - SPECIAL_PAGES_START,
        kind: MemoryType::Reserved,
    });
    if high_ram > 0 {
        memory_map.push(MemmapEntry { address: 1 << 32, size: high_ram, kind: MemoryType::Ram });
    }

    // The boot block: start info, module list, memory map, command line.
    let boot_block = align_up(config.kernel_end, PAGE).ok_or(PlatformError::KernelTooHigh(config.kernel_end))?;
    let modlist_offset = HVM_START_INFO_SIZE as u64;
    let modules = u64::from(config.initrd_size.is_some());
    let memmap_offset = modlist_offset + modules * MODLIST_ENTRY_SIZE as u64;
    let command_line_offset = memmap_offset + (memory_map.len() * MEMMAP_ENTRY_SIZE) as u64;
    let boot_block_size = command_line_offset + config.command_line.len() as u64 + 1;
    let boot_block_end = boot_block + boot_block_size;
    if boot_block_end > BOOT_BLOCK_LIMIT {
        return Err(PlatformError::KernelTooHigh(config.kernel_end));
    }
    let initrd_address = config.initrd_size.map(|_| align_up(boot_block_end, PAGE).unwrap_or(u64::MAX));
    let needed = match (initrd_address, config.initrd_size) {
        (Some(address), Some(size)) => address.saturating_add(size),
        _ => boot_block_end,
    };
    if needed > low_ram {
        return Err(PlatformError::NotEnoughMemory { needed, available: low_ram });
    }

    let acpi = AcpiTables::build(config.vcpus);
    memory_map[1].size = align_up(acpi.bytes.len() as u64, PAGE).unwrap_or(PAGE);

    let mut block = Vec::with_capacity(boot_block_size as usize);
    put_u32(&mut block, HVM_START_MAGIC);
    put_u32(&mut block, 1); // version: memory map fields valid
    put_u32(&mut block, 0); // flags: an unprivileged domU
    put_u32(&mut block, modules as u32);
    put_u64(&mut block, if modules > 0 { boot_block + modlist_offset } else { 0 });
    put_u64(&mut block, boot_block + command_line_offset);
    put_u64(&mut block, acpi.rsdp_address);
    put_u64(&mut block, boot_block + memmap_offset);
    put_u32(&mut block, memory_map.len() as u32);
    put_u32(&mut block, 0);
    if let (Some(address), Some(size)) = (initrd_address, config.initrd_size) {
        put_u64(&mut block, address);
        put_u64(&mut block, size);
        put_u64(&mut block, 0); // module command line: none
        put_u64(&mut block, 0);
    }
    for entry in &memory_map {
        put_u64(&mut block, entry.address);
        put_u64(&mut block, entry.size);
        put_u32(&mut block, entry.kind as u32);
        put_u32(&mut block, 0);
    }
    block.extend_from_slice(config.command_line.as_bytes());
    block.push(0);

    Ok(PvhPlatform {
        blobs: vec![(boot_block, block), (ACPI_TABLES_ADDRESS, acpi.bytes)],
        start_info_address: boot_block,
        initrd_address,
        memory_map,
        rsdp_address: acpi.rsdp_address,
    })
}

fn put_u32(bytes: &mut Vec<u8>, value: u32) {
    bytes.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(bytes: &mut Vec<u8>, value: u64) {
    bytes.extend_from_slice(&value.to_le_bytes());
}

/// The APIC id of a vCPU (as Xen numbers them).
pub fn apic_id_of_vcpu(vcpu: u32) -> u32 {
    vcpu * 2
}

/// All ACPI tables, laid out contiguously from [`ACPI_TABLES_ADDRESS`].
struct AcpiTables {
    bytes: Vec<u8>,
    rsdp_address: u64,
}

const OEM_ID: &[u8; 6] = b"BASALT";
const OEM_TABLE_ID: &[u8; 8] = b"BASALTVM";

/// A table header (ACPI 6.x §5.2.6) with `body`, checksum filled in.
fn table(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(36 + body.len());
    bytes.extend_from_slice(signature);
    put_u32(&mut bytes, (36 + body.len()) as u32);
    bytes.push(revision);
    bytes.push(0); // checksum, below
    bytes.extend_from_slice(OEM_ID);
    bytes.extend_from_slice(OEM_TABLE_ID);
    put_u32(&mut bytes, 1); // OEM revision
    bytes.extend_from_slice(b"BSLT"); // creator id
    put_u32(&mut bytes, 1); // creator revision
    bytes.extend_from_slice(body);
    bytes[9] = checksum(&bytes);
    bytes
}

/// The byte that makes `bytes` sum to zero (with the checksum byte itself at 0).
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |sum, &byte| sum.wrapping_add(byte)))
}

/// Generic address structure in system I/O space.
fn io_register(address: u64, bit_width: u8) -> [u8; 12] {
    let mut gas = [0u8; 12];
    gas[0] = 1; // system I/O
    gas[1] = bit_width;
    gas[3] = 1; // byte access
    gas[4..12].copy_from_slice(&address.to_le_bytes());
    gas
}

impl AcpiTables {
    fn build(vcpus: u32) -> AcpiTables {
        let base = ACPI_TABLES_ADDRESS;
        let mut bytes = Vec::new();
        let place = |table: Vec<u8>, bytes: &mut Vec<u8>| {
            while !bytes.len().is_multiple_of(16) {
                bytes.push(0);
            }
            let address = base + bytes.len() as u64;
            bytes.extend_from_slice(&table);
            address
        };

        // FACS (no header checksum; 64 bytes, 64-byte aligned).
        while !bytes.len().is_multiple_of(64) {
            bytes.push(0);
        }
        let facs_address = base + bytes.len() as u64;
        let mut facs = vec![0u8; 64];
        facs[..4].copy_from_slice(b"FACS");
        facs[4..8].copy_from_slice(&64u32.to_le_bytes());
        facs[32] = 2; // version
        bytes.extend_from_slice(&facs);

        let dsdt_address = place(table(b"DSDT", 2, &[]), &mut bytes);

        // FADT, revision 5 (268 bytes).
        let mut fadt = vec![0u8; 268 - 36];
        let field = |offset: usize| offset - 36;
        fadt[field(36)..field(40)].copy_from_slice(&(facs_address as u32).to_le_bytes());
        fadt[field(40)..field(44)].copy_from_slice(&(dsdt_address as u32).to_le_bytes());
        fadt[field(46)..field(48)].copy_from_slice(&9u16.to_le_bytes()); // SCI_INT
                                                                         // IAPC_BOOT_ARCH: VGA not present (bit 2), CMOS RTC not present (bit 5); no 8042.
        fadt[field(109)..field(111)].copy_from_slice(&((1u16 << 2) | (1 << 5)).to_le_bytes());
        // Flags: WBINVD, PROC_C1, PWR_BUTTON, SLP_BUTTON, FIX_RTC, TMR_VAL_EXT,
        // RESET_REG_SUP, USE_PLATFORM_CLOCK.
        let flags: u32 = (1 << 0) | (1 << 2) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 8) | (1 << 10) | (1 << 15);
        fadt[field(112)..field(116)].copy_from_slice(&flags.to_le_bytes());
        fadt[field(116)..field(128)].copy_from_slice(&io_register(0xcf9, 8));
        fadt[field(128)] = 6; // RESET_VALUE
        fadt[field(131)] = 1; // FADT minor version (5.1)
        fadt[field(132)..field(140)].copy_from_slice(&facs_address.to_le_bytes());
        fadt[field(140)..field(148)].copy_from_slice(&dsdt_address.to_le_bytes());
        let fadt_address = place(table(b"FACP", 5, &fadt), &mut bytes);

        // MADT: local APIC address, PCAT_COMPAT, one entry per vCPU.
        let mut madt = Vec::new();
        put_u32(&mut madt, 0xfee0_0000);
        put_u32(&mut madt, 1);
        for vcpu in 0..vcpus {
            let apic_id = apic_id_of_vcpu(vcpu);
            if apic_id < 0xff && vcpu < 0xff {
                madt.extend_from_slice(&[0, 8, vcpu as u8, apic_id as u8]);
                put_u32(&mut madt, 1); // enabled
            } else {
                madt.extend_from_slice(&[9, 16, 0, 0]);
                put_u32(&mut madt, apic_id);
                put_u32(&mut madt, 1); // enabled
                put_u32(&mut madt, vcpu); // ACPI processor UID
            }
        }
        let madt_address = place(table(b"APIC", 4, &madt), &mut bytes);

        let pointers = [fadt_address, madt_address];
        let mut xsdt = Vec::new();
        let mut rsdt = Vec::new();
        for pointer in pointers {
            put_u64(&mut xsdt, pointer);
            put_u32(&mut rsdt, pointer as u32);
        }
        let xsdt_address = place(table(b"XSDT", 1, &xsdt), &mut bytes);
        let rsdt_address = place(table(b"RSDT", 1, &rsdt), &mut bytes);

        // RSDP, revision 2, after the tables.
        let mut rsdp = Vec::with_capacity(36);
        rsdp.extend_from_slice(b"RSD PTR ");
        rsdp.push(0);
        rsdp.extend_from_slice(OEM_ID);
        rsdp.push(2);
        put_u32(&mut rsdp, rsdt_address as u32);
        put_u32(&mut rsdp, 36);
        put_u64(&mut rsdp, xsdt_address);
        rsdp.extend_from_slice(&[0, 0, 0, 0]);
        rsdp[8] = checksum(&rsdp[..20]);
        rsdp[32] = checksum(&rsdp);
        let rsdp_address = place(rsdp, &mut bytes);
        AcpiTables { bytes, rsdp_address }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn config(memory: u64, vcpus: u32) -> PlatformConfig<'static> {
        PlatformConfig {
            memory_bytes: memory,
            vcpus,
            kernel_end: 0x03e0_0000,
            command_line: "console=hvc0 root=/dev/xvda1",
            initrd_size: Some(20 * MIB),
        }
    }

    fn u32_at(bytes: &[u8], offset: usize) -> u32 {
        u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
    }

    fn u64_at(bytes: &[u8], offset: usize) -> u64 {
        u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
    }

    #[test]
    fn start_info_points_at_everything_it_describes() {
        let platform = build(&config(512 * MIB, 2)).unwrap();
        let (address, block) = &platform.blobs[0];
        assert_eq!(*address, platform.start_info_address);
        assert_eq!(*address, 0x03e0_0000);
        assert_eq!(u32_at(block, 0), HVM_START_MAGIC);
        assert_eq!(u32_at(block, 4), 1);
        assert_eq!(u32_at(block, 8), 0);
        assert_eq!(u32_at(block, 12), 1);
        let local = |paddr: u64| (paddr - address) as usize;
        // Module 0: the initrd, page-aligned right after the block.
        let modlist = local(u64_at(block, 16));
        let initrd = platform.initrd_address.unwrap();
        assert_eq!(u64_at(block, modlist), initrd);
        assert_eq!(u64_at(block, modlist + 8), 20 * MIB);
        assert_eq!(initrd % PAGE, 0);
        assert!(initrd >= address + block.len() as u64);
        // The command line, NUL-terminated.
        let command_line = local(u64_at(block, 24));
        assert_eq!(&block[command_line..], b"console=hvc0 root=/dev/xvda1\0");
        assert_eq!(u64_at(block, 32), platform.rsdp_address);
        // The memory map: RAM from 0, ACPI, the special pages reserved.
        let memmap = local(u64_at(block, 40));
        let entries = u32_at(block, 48) as usize;
        assert_eq!(entries, platform.memory_map.len());
        let read: Vec<(u64, u64, u32)> = (0..entries)
            .map(|i| {
                let at = memmap + i * MEMMAP_ENTRY_SIZE;
                (u64_at(block, at), u64_at(block, at + 8), u32_at(block, at + 16))
            })
            .collect();
        assert_eq!(read[0], (0, 512 * MIB, 1));
        assert_eq!(read[1].0, ACPI_TABLES_ADDRESS);
        assert_eq!(read[1].2, 3);
        assert_eq!(read[2], (SPECIAL_PAGES_START, SPECIAL_PAGES_END - SPECIAL_PAGES_START, 2));
        // Nothing RAM overlaps the LAPIC page, the ACPI tables or the special pages.
        assert!(platform.memory_map.iter().filter(|e| e.kind == MemoryType::Ram).all(|e| {
            let end = e.address + e.size;
            end <= ACPI_TABLES_ADDRESS || e.address >= 1 << 32
        }));
    }

    #[test]
    fn memory_above_the_hole_moves_to_4_gib() {
        let platform = build(&config(6 << 30, 1)).unwrap();
        let ram: Vec<_> = platform.memory_map.iter().filter(|e| e.kind == MemoryType::Ram).collect();
        assert_eq!((ram[0].address, ram[0].size), (0, LOW_RAM_LIMIT));
        assert_eq!((ram[1].address, ram[1].size), (1 << 32, (6 << 30) - LOW_RAM_LIMIT));
    }

    #[test]
    fn rejects_impossible_configurations() {
        assert_eq!(build(&config(512 * MIB, 0)).unwrap_err(), PlatformError::BadVcpuCount(0));
        assert_eq!(build(&config(512 * MIB, MAX_VCPUS + 1)).unwrap_err(), PlatformError::BadVcpuCount(MAX_VCPUS + 1));
        let long = "x".repeat(MAX_COMMAND_LINE);
        assert_eq!(
            build(&PlatformConfig { command_line: &long, ..config(512 * MIB, 1) }).unwrap_err(),
            PlatformError::BadCommandLine
        );
        assert_eq!(
            build(&PlatformConfig { command_line: "a\0b", ..config(512 * MIB, 1) }).unwrap_err(),
            PlatformError::BadCommandLine
        );
        assert!(matches!(build(&config(64 * MIB, 1)), Err(PlatformError::NotEnoughMemory { .. })));
        assert_eq!(
            build(&PlatformConfig { kernel_end: 2 << 30, ..config(8 << 30, 1) }).unwrap_err(),
            PlatformError::KernelTooHigh(2 << 30)
        );
        assert_eq!(
            build(&PlatformConfig { kernel_end: u64::MAX, ..config(8 << 30, 1) }).unwrap_err(),
            PlatformError::KernelTooHigh(u64::MAX)
        );
    }

    /// Guest memory for the kernel's own ACPI parser.
    struct GuestMemory<'a>(&'a [(u64, Vec<u8>)]);

    impl basalt_kernel::acpi::tables::PhysMemory for GuestMemory<'_> {
        fn read(&self, phys: u64, buf: &mut [u8]) -> bool {
            for (base, bytes) in self.0 {
                if phys >= *base && phys - base + buf.len() as u64 <= bytes.len() as u64 {
                    let start = (phys - base) as usize;
                    buf.copy_from_slice(&bytes[start..start + buf.len()]);
                    return true;
                }
            }
            false
        }
    }

    #[test]
    fn acpi_tables_read_back_through_the_hypervisors_own_parser() {
        use basalt_kernel::acpi::tables::{load, Rsdp};
        for vcpus in [1, 2, 4, 200] {
            let platform = build(&config(512 * MIB, vcpus)).unwrap();
            let memory = GuestMemory(&platform.blobs);
            let mut rsdp_bytes = [0u8; 36];
            assert!(basalt_kernel::acpi::tables::PhysMemory::read(&memory, platform.rsdp_address, &mut rsdp_bytes));
            let rsdp = Rsdp::parse(&rsdp_bytes).expect("both RSDP checksums valid");
            assert_eq!(rsdp.revision, 2);
            let tables = load(&memory, &rsdp).expect("tables load");
            assert!(tables.skipped.is_empty(), "bad tables: {:?}", tables.skipped);
            let madt = tables.madt.expect("a MADT");
            assert_eq!(madt.local_apic_address, 0xfee0_0000);
            assert!(madt.ioapics.is_empty() && madt.overrides.is_empty());
            assert_eq!(madt.cpus.len(), vcpus as usize);
            for (vcpu, cpu) in madt.cpus.iter().enumerate() {
                assert_eq!(cpu.processor_uid, vcpu as u32);
                assert_eq!(cpu.apic_id, apic_id_of_vcpu(vcpu as u32));
                assert!(cpu.enabled);
            }
            let fadt = tables.fadt.expect("a FADT");
            let reset = fadt.reset_register.expect("a reset register");
            assert_eq!((reset.address_space, reset.address, fadt.reset_value), (1, 0xcf9, 6));
            assert!(tables.s5.is_none(), "a PVH domU has no \\_S5");
            // Everything lies inside the ACPI range of the memory map.
            let acpi = platform.memory_map.iter().find(|e| e.kind == MemoryType::Acpi).unwrap();
            assert!(platform.blobs[1].1.len() as u64 <= acpi.size);
        }
    }
}
