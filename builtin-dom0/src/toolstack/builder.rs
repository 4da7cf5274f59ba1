//! The domain builder: a checked [`DomainConfig`] plus the kernel and ramdisk module
//! bytes → a [`BootImage`], everything the hypervisor must put into a new PVH domain.
//!
//! Why separate from the manager: it is pure (bytes in, plan out), so every layout rule
//! is tested on the host. Invariants of a built image: every chunk lies inside one
//! backing range, no two chunks overlap (so the kernel does not overlap the boot block,
//! the ACPI tables or the initrd), the entry point and the start info lie below 4 GiB.
//!
//! Contract with the hypervisor: it backs every [`BackingRange`] with zeroed memory
//! before writing the chunks. The image therefore carries only the file-backed bytes
//! of each kernel segment; the rest of a segment (`p_memsz > p_filesz`, the kernel's
//! .bss) is never sent as zeros.
//!
//! Kernel formats: a Linux bzImage (its payload unpacked, at most the guest's memory)
//! holding a PVH ELF, or a PVH ELF itself (Xen `docs/misc/pvh.pandoc`).
//!
//! Memory: building happens on the hypervisor heap, which is not much larger than a
//! distribution kernel unpacked (Debian's cloud kernel: 53 MiB of ELF). So it takes two
//! steps: [`unpack_kernel`] makes the ELF once (a bzImage's payload, allocated fallibly)
//! or borrows the module, and [`build_pvh_image`] borrows every kernel segment from that
//! [`KernelElf`], never copying one. The peak is the unpacked ELF plus the small
//! platform blobs; the caller keeps the `KernelElf` alive while it writes the chunks and
//! drops it after. Lists sized by the file (the chunks, one per segment) are reserved
//! fallibly too: running out of heap is [`BuildError::OutOfMemory`] or
//! [`BzImageError::OutOfMemory`], never a panic.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::bzimage::{self, BzImageError};
use super::config::DomainConfig;
use super::pvh_elf::{self, PvhElfError, PvhKernel};
use super::pvh_platform::{
    self, MemmapEntry, MemoryType, PlatformConfig, PlatformError, LOW_RAM_LIMIT, SPECIAL_PAGES_START,
};

/// What a guest-physical range that needs memory is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackingKind {
    /// Guest RAM (memory map type RAM).
    Ram,
    /// The ACPI tables (memory map type ACPI).
    AcpiTables,
    /// The special pages: xenstore and console rings (reserved in the memory map).
    SpecialPages,
}

/// A guest-physical range `[start, end)` the hypervisor must back with zeroed memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackingRange {
    pub start: u64,
    pub end: u64,
    pub kind: BackingKind,
}

/// What a chunk of the image holds (for messages and the debugger).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    /// File bytes of the kernel's `PT_LOAD` segment `index` (in address order).
    KernelSegment(usize),
    /// `hvm_start_info`, module list, memory map and command line.
    StartInfo,
    AcpiTables,
    Ramdisk,
}

/// Bytes to copy into the new domain at `gpa`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk<'a> {
    pub gpa: u64,
    /// Kernel segments are borrowed from the [`KernelElf`], the ramdisk from its module;
    /// only the platform blobs (start info, ACPI tables: a few KiB) are owned.
    pub bytes: Cow<'a, [u8]>,
    pub kind: ChunkKind,
}

impl Chunk<'_> {
    /// One past the last guest-physical byte.
    pub fn end(&self) -> u64 {
        self.gpa.saturating_add(self.bytes.len() as u64)
    }
}

/// Everything to put into a new PVH domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootImage<'a> {
    /// Guest RAM in bytes (sum of the RAM backing ranges).
    pub memory_bytes: u64,
    /// vCPUs the MADT lists (all online at boot).
    pub vcpus: u32,
    /// Bytes to write, sorted by address and disjoint.
    pub chunks: Vec<Chunk<'a>>,
    /// vCPU 0's 32-bit protected-mode entry point (%eip).
    pub entry: u32,
    /// Guest-physical address of `hvm_start_info` (vCPU 0's %ebx).
    pub start_info_gpa: u32,
    /// The memory map, also the answer to `XENMEM_memory_map`.
    pub memory_map: Vec<MemmapEntry>,
    /// Every range that needs backing memory, sorted and disjoint.
    pub backing: Vec<BackingRange>,
}

/// Why a boot image could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    /// The module is neither a bzImage nor an ELF.
    UnknownKernelFormat { kernel: String },
    /// A bzImage that cannot be unpacked.
    BzImage { kernel: String, error: BzImageError },
    /// An ELF that is not a loadable PVH kernel, or a bzImage whose payload is not one.
    Elf { kernel: String, error: PvhElfError },
    /// The memory map, start info or ACPI tables cannot be laid out.
    Platform(PlatformError),
    /// A kernel segment lies outside the domain's RAM.
    SegmentOutsideRam { kernel: String, start: u64, end: u64, memory_mib: u64 },
    /// Two pieces of the image overlap (a layout bug or a hostile kernel).
    Overlap { first: ChunkKind, second: ChunkKind },
    /// A piece of the image outside every backing range (a layout bug).
    OutsideMemory { kind: ChunkKind, start: u64, end: u64 },
    /// An entry point or start info that does not fit the 32-bit boot registers.
    AboveFourGiB(u64),
    /// The hypervisor heap has no room for the image's `needed`-byte chunk list.
    OutOfMemory { needed: usize },
}

impl fmt::Display for BuildError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::UnknownKernelFormat { kernel } => {
                write!(formatter, "kernel '{kernel}' is neither an ELF with a PVH entry note nor a bzImage")
            }
            BuildError::BzImage { kernel, error } => write!(formatter, "kernel '{kernel}': {error}"),
            BuildError::Elf { kernel, error } => write!(formatter, "kernel '{kernel}': {error}"),
            BuildError::Platform(error) => write!(formatter, "guest platform: {error}"),
            BuildError::SegmentOutsideRam { kernel, start, end, memory_mib } => write!(
                formatter,
                "kernel '{kernel}' loads at {start:#x}..{end:#x}, outside the domain's {memory_mib} MiB of RAM"
            ),
            BuildError::Overlap { first, second } => write!(formatter, "{first:?} overlaps {second:?}"),
            BuildError::OutsideMemory { kind, start, end } => {
                write!(formatter, "{kind:?} at {start:#x}..{end:#x} lies outside the domain's memory")
            }
            BuildError::AboveFourGiB(address) => write!(formatter, "boot address {address:#x} is above 4 GiB"),
            BuildError::OutOfMemory { needed } => write!(
                formatter,
                "not enough hypervisor memory for the boot image's chunk list ({} KiB needed)",
                needed.div_ceil(1 << 10)
            ),
        }
    }
}

/// A kernel module as the ELF the builder lays out: the module itself, or the ELF
/// unpacked from its bzImage payload. A [`BootImage`] borrows its kernel segments from
/// it, so it lives until the chunks are written; dropping it then frees the unpacked ELF.
pub enum KernelElf<'m> {
    /// The module is an ELF (or not a kernel at all; [`build_pvh_image`] says which).
    Module(&'m [u8]),
    /// The ELF unpacked from a bzImage, on the heap.
    Unpacked(Vec<u8>),
}

impl KernelElf<'_> {
    /// The ELF's bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            KernelElf::Module(bytes) => bytes,
            KernelElf::Unpacked(bytes) => bytes,
        }
    }
}

impl fmt::Debug for KernelElf<'_> {
    /// The length only: an unpacked kernel is tens of MiB.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            KernelElf::Module(_) => "Module",
            KernelElf::Unpacked(_) => "Unpacked",
        };
        write!(formatter, "KernelElf::{kind}({} bytes)", self.bytes().len())
    }
}

/// The first step of building: a bzImage's payload unpacked (at most the guest's
/// memory, allocated fallibly), or any other module borrowed as it is.
pub fn unpack_kernel<'m>(config: &DomainConfig, module: &'m [u8]) -> Result<KernelElf<'m>, BuildError> {
    match bzimage::parse(module) {
        Ok(image) => {
            let limit = usize::try_from(config.memory_bytes()).unwrap_or(usize::MAX);
            let elf = image
                .decompress(limit)
                .map_err(|error| BuildError::BzImage { kernel: config.kernel.clone(), error })?;
            Ok(KernelElf::Unpacked(elf))
        }
        Err(BzImageError::NotBzImage) => Ok(KernelElf::Module(module)),
        Err(error) => Err(BuildError::BzImage { kernel: config.kernel.clone(), error }),
    }
}

/// The second step: the boot image of a PVH domain from its config, its kernel's ELF
/// (from [`unpack_kernel`]) and its ramdisk. Every chunk borrows; nothing large is copied.
pub fn build_pvh_image<'a>(
    config: &DomainConfig,
    kernel: &'a KernelElf<'_>,
    ramdisk: Option<&'a [u8]>,
) -> Result<BootImage<'a>, BuildError> {
    let name = || config.kernel.clone();
    let parsed = pvh_elf::parse(kernel.bytes()).map_err(|error| match (kernel, error) {
        // A module that is neither a bzImage nor an ELF.
        (KernelElf::Module(_), PvhElfError::NotElf) => BuildError::UnknownKernelFormat { kernel: name() },
        (_, error) => BuildError::Elf { kernel: name(), error },
    })?;
    assemble(config, &parsed, ramdisk)
}

/// Lays out a parsed kernel with the platform and the ramdisk.
fn assemble<'a>(
    config: &DomainConfig,
    kernel: &PvhKernel<'a>,
    ramdisk: Option<&'a [u8]>,
) -> Result<BootImage<'a>, BuildError> {
    // Segments lie below 4 GiB (the ELF reader checks), so in the RAM below the hole.
    let low_ram = config.memory_bytes().min(LOW_RAM_LIMIT);
    if let Some(segment) = kernel.segments.iter().find(|segment| segment.end() > low_ram) {
        return Err(BuildError::SegmentOutsideRam {
            kernel: config.kernel.clone(),
            start: segment.physical_address,
            end: segment.end(),
            memory_mib: config.memory_mib,
        });
    }
    let (_, kernel_end) = kernel.physical_extent();
    let platform = pvh_platform::build(&PlatformConfig {
        memory_bytes: config.memory_bytes(),
        vcpus: config.vcpus,
        kernel_end,
        command_line: &config.cmdline,
        initrd_size: ramdisk.map(|bytes| bytes.len() as u64),
    })
    .map_err(BuildError::Platform)?;

    let backing = backing_ranges(&platform.memory_map);
    // One chunk per segment (the ELF says how many) plus the blobs and the ramdisk.
    let count = kernel.segments.len().saturating_add(platform.blobs.len()).saturating_add(1);
    let mut chunks = Vec::new();
    chunks
        .try_reserve_exact(count)
        .map_err(|_| BuildError::OutOfMemory { needed: count.saturating_mul(core::mem::size_of::<Chunk<'_>>()) })?;
    for (index, segment) in kernel.segments.iter().enumerate() {
        if !segment.data.is_empty() {
            // Only file bytes, borrowed: the hypervisor's zeroed memory is the rest (.bss).
            let bytes = Cow::Borrowed(segment.data);
            chunks.push(Chunk { gpa: segment.physical_address, bytes, kind: ChunkKind::KernelSegment(index) });
        }
    }
    for (gpa, bytes) in platform.blobs {
        let kind = if gpa == platform.start_info_address { ChunkKind::StartInfo } else { ChunkKind::AcpiTables };
        chunks.push(Chunk { gpa, bytes: Cow::Owned(bytes), kind });
    }
    if let (Some(gpa), Some(bytes)) = (platform.initrd_address, ramdisk) {
        chunks.push(Chunk { gpa, bytes: Cow::Borrowed(bytes), kind: ChunkKind::Ramdisk });
    }
    check_layout(&mut chunks, &backing)?;

    let start_info_gpa = u32::try_from(platform.start_info_address)
        .map_err(|_| BuildError::AboveFourGiB(platform.start_info_address))?;
    Ok(BootImage {
        memory_bytes: config.memory_bytes(),
        vcpus: config.vcpus,
        chunks,
        entry: kernel.entry,
        start_info_gpa,
        memory_map: platform.memory_map,
        backing,
    })
}

/// The ranges needing memory, from the memory map (empty entries dropped), sorted.
fn backing_ranges(memory_map: &[MemmapEntry]) -> Vec<BackingRange> {
    let mut ranges: Vec<BackingRange> = memory_map
        .iter()
        .filter(|entry| entry.size > 0)
        .filter_map(|entry| {
            let kind = match entry.kind {
                MemoryType::Ram => BackingKind::Ram,
                MemoryType::Acpi => BackingKind::AcpiTables,
                MemoryType::Reserved if entry.address == SPECIAL_PAGES_START => BackingKind::SpecialPages,
                MemoryType::Reserved => return None,
            };
            Some(BackingRange { start: entry.address, end: entry.address.saturating_add(entry.size), kind })
        })
        .collect();
    ranges.sort_by_key(|range| range.start);
    ranges
}

/// Sorts the chunks and checks each lies in one backing range and none overlap.
fn check_layout(chunks: &mut [Chunk<'_>], backing: &[BackingRange]) -> Result<(), BuildError> {
    chunks.sort_by_key(|chunk| chunk.gpa);
    for pair in chunks.windows(2) {
        if let [first, second] = pair {
            if first.end() > second.gpa {
                return Err(BuildError::Overlap { first: first.kind, second: second.kind });
            }
        }
    }
    for chunk in chunks.iter() {
        if !backing.iter().any(|range| range.start <= chunk.gpa && chunk.end() <= range.end) {
            return Err(BuildError::OutsideMemory { kind: chunk.kind, start: chunk.gpa, end: chunk.end() });
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
