//! ELF dump-core files in Xen's format (docs/misc/dump-core-format.txt): reading one
//! as a [`Target`](crate::target::Target) ([`CoreFile`]) and writing one from any
//! target ([`write_core`]). A core Basalt writes opens in Xen's tools and a core from
//! `xl dump-core` opens here, because both are the same layout; Basalt adds sections
//! Xen readers skip (they look sections up by name).
//!
//! # Layout of a core Basalt writes
//!
//! Xen's layout (tools/libs/guest/xg_core.c) with Basalt's sections appended: a
//! little-endian ELF64 `ET_CORE` file for `EM_X86_64` (`EI_OSABI` 0, `EI_ABIVERSION`
//! 1, `e_flags` 0), no program headers (`e_phnum` 0, `e_phentsize` 56), section
//! headers right after the ELF header, `e_shstrndx` 1, in this order:
//!
//! | section | type, align, entsize | contents |
//! | --- | --- | --- |
//! | (null) | | |
//! | `.shstrtab` | STRTAB, 0, 0 | section names in this order (stored last in the file, as Xen does) |
//! | `.note.Xen` | NOTE, 0, 0 | notes named "Xen": DUMPCORE_NONE, DUMPCORE_HEADER (magic `XC_CORE_MAGIC_HVM`, vCPU count, page count including filler, page size 4096), DUMPCORE_XEN_VERSION (4.17 "-basalt", the interface Basalt reports to guests; capabilities "hvm-3.0-x86_64"), DUMPCORE_FORMAT_VERSION (0.1) |
//! | `.xen_prstatus` | PROGBITS, 8, 5168 | one x86_64 `vcpu_guest_context` per vCPU, as `XEN_DOMCTL_getvcpucontext` fills it for an HVM/PVH vCPU: general registers, selectors, `ctrlreg[0,2,3,4]`, `fs_base`, the loaded GS base in `gs_base_kernel` when CS is in ring 0 (else in `gs_base_user`) and the swapped one in the other, flags `VGCF_i387_valid` plus `VGCF_online` unless the vCPU is down; FPU area and debug registers zero (not captured) |
//! | `.xen_shared_info` | PROGBITS, 8, 4096 | the shared_info page, when the guest registered one |
//! | `.xen_pages` | PROGBITS, 4096, 4096 | page-aligned; every dumped page, 4096 bytes each |
//! | `.xen_pfn` | PROGBITS, 8, 8 | one u64 guest frame number per page of `.xen_pages` (Basalt guests are auto-translated PVH), ascending; a page the target could not read is left out and as many zero pages with frame `u64::MAX` end the section, as Xen pads |
//! | `.basalt_*` | PROGBITS, 8, 0 | see below |
//!
//! Xen's sections thus get the indices, name offsets and relative placement
//! `xl dump-core` gives them; every offset is shifted by the extra section headers.
//! Xen's writer leaves out guest frames 0xa0-0xbf and 0xf0000-0xfffff (the VGA and
//! MMIO holes of xg_core_x86.c) whatever the guest has there; Basalt dumps exactly
//! what the target lists.
//!
//! # Basalt sections (version 1, all little-endian)
//!
//! Every one but `.basalt_symbols` starts with `u32 version` (1); a reader refuses a
//! version it does not know. A *string* is `u32 length` + UTF-8 bytes, and length
//! `0xFFFF_FFFF` means absent.
//!
//! - `.basalt_domain`: `u16 domain_id, u16 0, u32 vcpus, u64 memory_bytes`, then the
//!   strings name, state, hypervisor, vcpu_snapshot (how vCPU state was captured) and
//!   host (may be absent).
//! - `.basalt_vcpus`: `u32 count, u32 record_size` (80 in version 1; a reader skips
//!   any bytes past the fields it knows), then per vCPU: `u64 efer, cr0, cr2, cr3, cr4,
//!   fs_base, gs_base, kernel_gs_base; u16 cs, ss, ds, es, fs, gs; u8 run_state`
//!   (0 running, 1 blocked, 2 down) and 3 zero bytes. These override what the context
//!   says: Xen's context has no EFER and no blocked state.
//! - `.basalt_evtchns`: `u32 count`, then per channel `u32 port, u32 vcpu, u8 kind`
//!   (0 unbound, 1 interdomain, 2 virq, 3 ipi, 4 pirq, 5 unknown), `u8 pending, u8
//!   masked` (0 unknown, 1 no, 2 yes), `u8 0, u16 remote_domain, u16 0, u32 value`
//!   (remote port, VIRQ or PIRQ number), string owner.
//! - `.basalt_grants`: `u32 count`, then `u32 reference, u16 flags, u16 domain,
//!   u64 frame` per in-use entry.
//! - `.basalt_xenstore`: `u32 count`, then per node string path, `u32 length` and the
//!   value bytes.
//! - `.basalt_symbols`: the raw bytes of the guest kernel's symbol file (an ELF with
//!   `.symtab`), at most 64 MiB; a larger file is left out.
//!
//! A missing metadata section means the target did not have that table; the reader
//! then answers `Unsupported` as the target did.
//!
//! # Reading
//!
//! Sections are found by name, so order does not matter, and unknown ones (Xen's
//! per-architecture sections, empty ones) are skipped; notes may come in any order
//! and only the header note is required; program headers are ignored. Required:
//! `.note.Xen` with a header note, `.xen_prstatus`, `.xen_pages` and exactly one of
//! `.xen_pfn` and `.xen_p2m` (a PV core: then machine addresses read through the
//! gmfns too). Either magic is accepted. `.xen_pfn`/`.xen_p2m` are read once at open
//! into a table sorted by frame (Xen writes them ascending, but nothing relies on
//! it), skipping filler entries (`u64::MAX`, which the header's page count includes);
//! reads binary-search it and fetch the bytes from the source (nothing GB-sized is
//! loaded). A pfn listed twice is damage; a gmfn listed twice (a PV guest's own p2m
//! can say so) keeps its first slot.
//!
//! For a core without `.basalt_vcpus` (one from Xen) registers come from the context
//! alone. The loaded GS base is `gs_base_kernel` when CS is in ring 0 for an HVM core,
//! or when `VGCF_in_kernel` is set for a PV one (a 64-bit PV kernel runs in ring 3).
//! EFER is LME|LMA for a PV core, and for an HVM core when CR0.PG and CR4.PAE are set
//! (the core is 64-bit, so a paged PAE context is taken as long mode; a 32-bit PAE
//! guest would be misread); a vCPU is running or down, never blocked. Event channels,
//! grants and xenstore are unsupported on a Xen core. Every offset, size and count in
//! the file is checked against the file's length before use; a damaged file is a
//! [`CoreError`] at open or a `TargetError::Damaged` on a read, never a panic.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::target::TargetError;

pub mod format;
mod reader;
mod writer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod xen_layout;

pub use reader::CoreFile;
pub use writer::{core_size, write_core};

/// Random access to the bytes of a core (a file, a disk region, memory).
pub trait CoreSource {
    /// Length in bytes.
    fn len(&self) -> u64;

    /// Whether the source is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buffer` from `offset`; an error if any of it is past the end or the
    /// read fails.
    fn read_at(&self, offset: u64, buffer: &mut [u8]) -> Result<(), String>;
}

fn read_from_slice(bytes: &[u8], offset: u64, buffer: &mut [u8]) -> Result<(), String> {
    let start = usize::try_from(offset).map_err(|_| String::from("offset out of range"))?;
    let end = start.checked_add(buffer.len()).ok_or_else(|| String::from("offset out of range"))?;
    let source = bytes.get(start..end).ok_or_else(|| {
        alloc::format!("read of {} bytes at {offset:#x} is past the end ({} bytes)", buffer.len(), bytes.len())
    })?;
    buffer.copy_from_slice(source);
    Ok(())
}

impl CoreSource for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_at(&self, offset: u64, buffer: &mut [u8]) -> Result<(), String> {
        read_from_slice(self, offset, buffer)
    }
}

impl CoreSource for Vec<u8> {
    fn len(&self) -> u64 {
        Vec::len(self) as u64
    }

    fn read_at(&self, offset: u64, buffer: &mut [u8]) -> Result<(), String> {
        read_from_slice(self, offset, buffer)
    }
}

/// Why a file did not open as a core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// The ELF magic is missing.
    NotElf,
    /// An ELF file, but not a Xen dump-core (the text says why).
    NotDumpCore(String),
    /// A dump-core this reader cannot read (32-bit, big-endian, another page size...).
    Unsupported(String),
    /// Something ends past the end of the file.
    Truncated(String),
    /// Inconsistent contents (bad counts, duplicate frames, overlapping sections...).
    Damaged(String),
    /// The source could not be read.
    Read(String),
}

impl fmt::Display for CoreError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::NotElf => formatter.write_str("not an ELF file"),
            CoreError::NotDumpCore(why) => write!(formatter, "not a Xen dump-core: {why}"),
            CoreError::Unsupported(what) => write!(formatter, "unsupported: {what}"),
            CoreError::Truncated(what) => write!(formatter, "truncated: {what}"),
            CoreError::Damaged(what) => write!(formatter, "damaged core: {what}"),
            CoreError::Read(why) => write!(formatter, "read error: {why}"),
        }
    }
}

/// Where [`write_core`] puts the bytes (a file, a disk region, memory).
pub trait CoreSink {
    /// Writes all of `bytes` at `offset`.
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<(), String>;
}

impl CoreSink for Vec<u8> {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<(), String> {
        let start = usize::try_from(offset).map_err(|_| String::from("offset out of range"))?;
        let end = start.checked_add(bytes.len()).ok_or_else(|| String::from("offset out of range"))?;
        if self.len() < end {
            self.resize(end, 0);
        }
        self[start..end].copy_from_slice(bytes);
        Ok(())
    }
}

/// What [`write_core`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreSummary {
    /// Bytes written (the core's size).
    pub bytes: u64,
    /// SHA-256 of the whole core.
    pub sha256: [u8; 32],
}

/// Why [`write_core`] (or [`core_size`]) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreWriteError {
    /// The target could not answer.
    Target(TargetError),
    /// The sink refused a write.
    Sink(String),
}

impl From<TargetError> for CoreWriteError {
    fn from(error: TargetError) -> Self {
        CoreWriteError::Target(error)
    }
}

impl fmt::Display for CoreWriteError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreWriteError::Target(error) => write!(formatter, "reading the domain: {error}"),
            CoreWriteError::Sink(why) => write!(formatter, "writing the core: {why}"),
        }
    }
}
