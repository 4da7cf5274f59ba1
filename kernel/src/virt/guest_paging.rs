//! Guest-virtual → guest-physical translation: walking a guest's own page tables.
//!
//! Why: exit handling reads guest memory by guest-virtual address — hypercall arguments
//! are guest-virtual pointers, and without next-RIP save (QEMU's SVM) the instruction at
//! RIP is fetched and decoded. This module does what the MMU would have done for the
//! guest, over a narrow [`GuestPhysicalMemory`] interface, so it is host-testable and
//! never touches hardware.
//!
//! Specification: SDM vol. 3A chapter 4 (Paging: §4.3 32-bit, §4.4 PAE, §4.5 4-level,
//! §4.6 access rights, §4.7 page-fault error code) and APM vol. 2 chapter 5 (Page
//! Translation and Protection).
//!
//! Invariants and deliberate limits:
//! - Page-table entries are untrusted guest data: every walk is bounded by the number of
//!   levels (self-referencing tables cannot loop), every read goes through
//!   [`GuestPhysicalMemory`], and a table outside guest memory is
//!   [`TranslateError::NotGuestMemory`], never a panic.
//! - Protection follows the SDM: the effective R/W and U/S rights are the AND over all
//!   levels, NX is the OR (when EFER.NXE is set); a supervisor write to a read-only page
//!   faults only when CR0.WP is set. SMEP, SMAP and protection keys are not modelled
//!   (supervisor accesses to user pages are allowed).
//! - Reserved-bit checks (error code RSVD) cover what does not depend on the CPU's
//!   MAXPHYADDR: PS in a PML4E, NX with EFER.NXE clear, the must-be-zero bits of large
//!   page entries and of PAE PDPTEs. Physical addresses are taken as 52 bits wide.
//! - The walk is an inspection: accessed and dirty bits are not set.
//! - 5-level paging (CR4.LA57) is reported as [`TranslateError::UnsupportedPagingMode`].

/// CR0.PE: protection enabled.
pub const CR0_PE: u64 = 1 << 0;
/// CR0.WP: supervisor writes honour read-only pages.
pub const CR0_WP: u64 = 1 << 16;
/// CR0.PG: paging enabled.
pub const CR0_PG: u64 = 1 << 31;
/// CR4.PSE: 4 MiB pages in 32-bit paging.
pub const CR4_PSE: u64 = 1 << 4;
/// CR4.PAE: physical address extension (64-bit entries).
pub const CR4_PAE: u64 = 1 << 5;
/// CR4.LA57: 5-level paging.
pub const CR4_LA57: u64 = 1 << 12;
/// EFER.LMA: long mode active.
pub const EFER_LMA: u64 = 1 << 10;
/// EFER.NXE: the execute-disable bit (63) is honoured.
pub const EFER_NXE: u64 = 1 << 11;

/// Page-fault error code: the fault was a protection violation (0 = not present).
pub const PF_PRESENT: u32 = 1 << 0;
/// Page-fault error code: the access was a write.
pub const PF_WRITE: u32 = 1 << 1;
/// Page-fault error code: the access was made in user mode (CPL 3).
pub const PF_USER: u32 = 1 << 2;
/// Page-fault error code: a reserved bit was set in a paging-structure entry.
pub const PF_RESERVED: u32 = 1 << 3;
/// Page-fault error code: instruction fetch (reported only when NX is in effect).
pub const PF_INSTRUCTION: u32 = 1 << 4;

const PAGE_SIZE: u64 = 4096;
const PTE_PRESENT: u64 = 1 << 0;
const PTE_WRITABLE: u64 = 1 << 1;
const PTE_USER: u64 = 1 << 2;
const PTE_LARGE: u64 = 1 << 7;
const PTE_NO_EXECUTE: u64 = 1 << 63;
/// Address bits 51:12 of a 64-bit entry.
const ADDRESS_MASK_64: u64 = 0x000f_ffff_ffff_f000;
/// Address bits 31:12 of a 32-bit entry.
const ADDRESS_MASK_32: u64 = 0xffff_f000;
/// PAE PDPTE bits that must be zero: 2:1, 8:5 and 63:52 (NX included).
const PDPTE_RESERVED: u64 = 0xfff0_0000_0000_01e6;

/// Guest-physical memory as the walker sees it. Implementations check bounds; `false`
/// or `None` means (part of) the address range is not the guest's memory.
pub trait GuestPhysicalMemory {
    /// The little-endian u64 at `gpa`.
    fn read_u64(&self, gpa: u64) -> Option<u64>;
    /// Fill `buf` from `gpa`.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> bool;
    /// Store `data` at `gpa`.
    fn write(&mut self, gpa: u64, data: &[u8]) -> bool;
}

/// How the guest's linear addresses become physical ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagingMode {
    /// CR0.PE = 0: real mode, no paging (linear = physical, 32-bit wrap).
    Real,
    /// Protected mode with CR0.PG = 0: no paging.
    ProtectedFlat,
    /// 32-bit paging, two levels of 4-byte entries; `pse` (CR4.PSE) enables 4 MiB pages.
    Legacy32 { pse: bool },
    /// PAE paging: four PDPTEs at CR3, then two levels of 8-byte entries (2 MiB pages).
    Pae,
    /// 4-level paging (long mode): 2 MiB and 1 GiB pages.
    Long4,
}

impl PagingMode {
    /// The mode the control registers select (SDM vol. 3A §4.1.1, table 4-1).
    pub fn from_control_registers(cr0: u64, cr4: u64, efer: u64) -> Result<Self, TranslateError> {
        if cr0 & CR0_PG == 0 {
            return Ok(if cr0 & CR0_PE == 0 { Self::Real } else { Self::ProtectedFlat });
        }
        if efer & EFER_LMA != 0 {
            if cr4 & CR4_LA57 != 0 {
                return Err(TranslateError::UnsupportedPagingMode);
            }
            Ok(Self::Long4)
        } else if cr4 & CR4_PAE != 0 {
            Ok(Self::Pae)
        } else {
            Ok(Self::Legacy32 { pse: cr4 & CR4_PSE != 0 })
        }
    }

    /// Linear addresses are 64-bit (canonical) only in long mode; elsewhere they wrap
    /// at 4 GiB.
    fn linear(self, address: u64) -> u64 {
        match self {
            Self::Long4 => address,
            _ => address & 0xffff_ffff,
        }
    }
}

/// The kind of access being translated, as the guest would have made it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Access {
    pub write: bool,
    /// Made at CPL 3.
    pub user: bool,
    /// An instruction fetch.
    pub fetch: bool,
}

impl Access {
    /// A supervisor data read.
    pub const READ: Self = Self { write: false, user: false, fetch: false };
    /// A supervisor data write.
    pub const WRITE: Self = Self { write: true, user: false, fetch: false };
    /// A supervisor instruction fetch.
    pub const FETCH: Self = Self { write: false, user: false, fetch: true };
}

/// Why an address could not be translated or reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TranslateError {
    /// The guest's MMU would raise #PF: inject it with this error code and CR2 = `address`.
    PageFault { error_code: u32, address: u64 },
    /// A non-canonical address in long mode: the guest would get #GP(0) (#SS for stack
    /// accesses).
    NonCanonical { address: u64 },
    /// A page-table entry or the data lies outside the guest's memory.
    NotGuestMemory { gpa: u64 },
    /// 5-level paging, which Basalt does not translate.
    UnsupportedPagingMode,
}

/// The vCPU state a translation depends on, captured at an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TranslationContext {
    pub mode: PagingMode,
    pub cr3: u64,
    pub cr0: u64,
    pub cr4: u64,
    pub efer: u64,
    /// The vCPU runs at CPL 3: copies and fetches are checked as user accesses.
    pub user_mode: bool,
}

impl TranslationContext {
    /// From the raw control registers, as supervisor (`user_mode` false).
    pub fn from_control_registers(cr0: u64, cr3: u64, cr4: u64, efer: u64) -> Result<Self, TranslateError> {
        let mode = PagingMode::from_control_registers(cr0, cr4, efer)?;
        Ok(Self { mode, cr3, cr0, cr4, efer, user_mode: false })
    }

    /// The same context with accesses made at CPL 3 (`true`) or as supervisor.
    pub fn with_user_mode(self, user_mode: bool) -> Self {
        Self { user_mode, ..self }
    }

    /// EFER.NXE, which only PAE and 4-level paging honour.
    pub fn nx_enabled(&self) -> bool {
        self.efer & EFER_NXE != 0 && matches!(self.mode, PagingMode::Pae | PagingMode::Long4)
    }

    /// CR0.WP.
    pub fn write_protect(&self) -> bool {
        self.cr0 & CR0_WP != 0
    }

    /// Translate one address; see [`translate`].
    pub fn translate<M: GuestPhysicalMemory + ?Sized>(
        &self,
        mem: &M,
        gva: u64,
        access: Access,
    ) -> Result<u64, TranslateError> {
        translate(mem, self.mode, self.cr3, gva, access, self.nx_enabled(), self.write_protect())
    }

    fn access(&self, write: bool, fetch: bool) -> Access {
        Access { write, user: self.user_mode, fetch }
    }
}

/// Translate the guest-virtual (linear) address `gva` to a guest-physical address,
/// checking presence and the access rights of `access`. `nx_enabled` is EFER.NXE and
/// `wp` is CR0.WP. Without paging the address is returned unchanged (wrapped to 32 bits).
pub fn translate<M: GuestPhysicalMemory + ?Sized>(
    mem: &M,
    mode: PagingMode,
    cr3: u64,
    gva: u64,
    access: Access,
    nx_enabled: bool,
    wp: bool,
) -> Result<u64, TranslateError> {
    let gva = mode.linear(gva);
    let walk = |format: &Format, root: u64| {
        let walker = Walker { gva, access, nx_enabled: nx_enabled && format.nx_capable, wp };
        walker.walk(mem, format, root)
    };
    match mode {
        PagingMode::Real | PagingMode::ProtectedFlat => Ok(gva),
        PagingMode::Legacy32 { pse: true } => walk(&LEGACY32_PSE, cr3 & ADDRESS_MASK_32),
        PagingMode::Legacy32 { pse: false } => walk(&LEGACY32, cr3 & ADDRESS_MASK_32),
        PagingMode::Pae => {
            // The PDPTEs sit in a 32-byte aligned table at CR3 (SDM §4.4.1); the CPU
            // caches them at MOV to CR3, we read them now.
            let walker = Walker { gva, access, nx_enabled, wp };
            let pdpte_gpa = (cr3 & 0xffff_ffe0) + ((gva >> 30) & 3) * 8;
            let pdpte = mem.read_u64(pdpte_gpa).ok_or(TranslateError::NotGuestMemory { gpa: pdpte_gpa })?;
            if pdpte & PTE_PRESENT == 0 {
                return Err(walker.fault(0));
            }
            if pdpte & PDPTE_RESERVED != 0 {
                return Err(walker.fault(PF_PRESENT | PF_RESERVED));
            }
            walk(&PAE, pdpte & ADDRESS_MASK_64)
        }
        PagingMode::Long4 => {
            if ((gva as i64) << 16 >> 16) as u64 != gva {
                return Err(TranslateError::NonCanonical { address: gva });
            }
            walk(&LONG4, cr3 & ADDRESS_MASK_64)
        }
    }
}

/// What a PS bit means at one level.
#[derive(Clone, Copy)]
enum LargePage {
    /// PS is the PAT bit or ignored: the entry points to a table (or is the leaf).
    NotLarge,
    /// PS must be zero (PML4E).
    Reserved,
    /// PS maps a page of 2^`shift` bytes whose entry bits `reserved` must be zero.
    Page { shift: u32, reserved: u64 },
    /// 32-bit paging with CR4.PSE: a 4 MiB page, address bits 39:32 in entry bits 20:13
    /// (PSE-36), bit 21 reserved.
    Pse36,
}

struct Level {
    /// Bit position of this level's index in the linear address.
    shift: u32,
    large: LargePage,
}

struct Format {
    /// 4 (32-bit paging) or 8 bytes per entry; 1024 or 512 entries per table.
    entry_bytes: u64,
    index_mask: u64,
    address_mask: u64,
    /// Entries have an XD/NX bit.
    nx_capable: bool,
    /// From the root table down; the last level maps 4 KiB pages.
    levels: &'static [Level],
}

const LEAF: Level = Level { shift: 12, large: LargePage::NotLarge };
const LARGE_2M: LargePage = LargePage::Page { shift: 21, reserved: 0x001f_e000 };
const LARGE_1G: LargePage = LargePage::Page { shift: 30, reserved: 0x3fff_e000 };

static LEGACY32: Format = Format {
    entry_bytes: 4,
    index_mask: 0x3ff,
    address_mask: ADDRESS_MASK_32,
    nx_capable: false,
    levels: &[Level { shift: 22, large: LargePage::NotLarge }, LEAF],
};
static LEGACY32_PSE: Format = Format { levels: &[Level { shift: 22, large: LargePage::Pse36 }, LEAF], ..LEGACY32 };
/// PAE below the PDPTEs: page directory, page table.
static PAE: Format = Format {
    entry_bytes: 8,
    index_mask: 0x1ff,
    address_mask: ADDRESS_MASK_64,
    nx_capable: true,
    levels: &[Level { shift: 21, large: LARGE_2M }, LEAF],
};
static LONG4: Format = Format {
    levels: &[
        Level { shift: 39, large: LargePage::Reserved },
        Level { shift: 30, large: LARGE_1G },
        Level { shift: 21, large: LARGE_2M },
        LEAF,
    ],
    ..PAE
};

/// One translation in progress.
struct Walker {
    gva: u64,
    access: Access,
    /// NX is honoured (EFER.NXE and an NX-capable format).
    nx_enabled: bool,
    wp: bool,
}

impl Walker {
    fn fault(&self, bits: u32) -> TranslateError {
        let mut error_code = bits;
        if self.access.write {
            error_code |= PF_WRITE;
        }
        if self.access.user {
            error_code |= PF_USER;
        }
        if self.access.fetch && self.nx_enabled {
            error_code |= PF_INSTRUCTION;
        }
        TranslateError::PageFault { error_code, address: self.gva }
    }

    fn walk<M: GuestPhysicalMemory + ?Sized>(
        &self,
        mem: &M,
        format: &Format,
        root: u64,
    ) -> Result<u64, TranslateError> {
        let mut table = root;
        let mut writable = true;
        let mut user = true;
        let mut executable = true;
        for level in format.levels {
            let index = (self.gva >> level.shift) & format.index_mask;
            let entry_gpa = table + index * format.entry_bytes;
            let entry = read_entry(mem, entry_gpa, format.entry_bytes)?;
            if entry & PTE_PRESENT == 0 {
                return Err(self.fault(0));
            }
            if format.nx_capable && entry & PTE_NO_EXECUTE != 0 {
                if !self.nx_enabled {
                    return Err(self.fault(PF_PRESENT | PF_RESERVED));
                }
                executable = false;
            }
            writable &= entry & PTE_WRITABLE != 0;
            user &= entry & PTE_USER != 0;

            let page = if level.shift == 12 {
                Some((entry & format.address_mask, 12))
            } else if entry & PTE_LARGE == 0 {
                None
            } else {
                match level.large {
                    LargePage::NotLarge => None,
                    LargePage::Reserved => return Err(self.fault(PF_PRESENT | PF_RESERVED)),
                    LargePage::Page { shift, reserved } => {
                        if entry & reserved != 0 {
                            return Err(self.fault(PF_PRESENT | PF_RESERVED));
                        }
                        Some((entry & format.address_mask & !((1u64 << shift) - 1), shift))
                    }
                    LargePage::Pse36 => {
                        if entry & (1 << 21) != 0 {
                            return Err(self.fault(PF_PRESENT | PF_RESERVED));
                        }
                        Some(((entry & 0xffc0_0000) | (((entry >> 13) & 0xff) << 32), 22))
                    }
                }
            };
            if let Some((base, shift)) = page {
                if self.access.user && !user {
                    return Err(self.fault(PF_PRESENT));
                }
                if self.access.write && !writable && (self.access.user || self.wp) {
                    return Err(self.fault(PF_PRESENT));
                }
                if self.access.fetch && !executable {
                    return Err(self.fault(PF_PRESENT));
                }
                return Ok(base | (self.gva & ((1u64 << shift) - 1)));
            }
            table = entry & format.address_mask;
        }
        // Every format ends with a 4 KiB leaf level, which always returns above.
        Err(self.fault(0))
    }
}

fn read_entry<M: GuestPhysicalMemory + ?Sized>(mem: &M, gpa: u64, bytes: u64) -> Result<u64, TranslateError> {
    let entry = if bytes == 4 {
        let mut raw = [0u8; 4];
        mem.read(gpa, &mut raw).then(|| u64::from(u32::from_le_bytes(raw)))
    } else {
        mem.read_u64(gpa)
    };
    entry.ok_or(TranslateError::NotGuestMemory { gpa })
}

/// The pieces of the linear range `[gva, gva + len)` that lie within one 4 KiB page:
/// (linear address, offset into the caller's buffer, length).
fn page_chunks(mode: PagingMode, gva: u64, len: usize) -> impl Iterator<Item = (u64, usize, usize)> {
    let mut address = mode.linear(gva);
    let mut offset = 0usize;
    core::iter::from_fn(move || {
        if offset >= len {
            return None;
        }
        let in_page = (PAGE_SIZE - (address & (PAGE_SIZE - 1))) as usize;
        let chunk = in_page.min(len - offset);
        let item = (address, offset, chunk);
        address = mode.linear(address.wrapping_add(chunk as u64));
        offset += chunk;
        Some(item)
    })
}

/// Copy `buf.len()` bytes from the guest-virtual address `gva`, translating each page
/// (as a data read at the context's privilege). On error `buf` may be partly filled.
pub fn copy_from_guest<M: GuestPhysicalMemory + ?Sized>(
    mem: &M,
    ctx: &TranslationContext,
    gva: u64,
    buf: &mut [u8],
) -> Result<(), TranslateError> {
    let access = ctx.access(false, false);
    for (address, offset, len) in page_chunks(ctx.mode, gva, buf.len()) {
        let gpa = ctx.translate(mem, address, access)?;
        if !mem.read(gpa, &mut buf[offset..offset + len]) {
            return Err(TranslateError::NotGuestMemory { gpa });
        }
    }
    Ok(())
}

/// Copy `data` to the guest-virtual address `gva`. Every page of the range is first
/// translated (as a data write at the context's privilege) and probed as guest memory
/// (its first and last byte are read); only then is anything written, so a fault
/// writes nothing.
pub fn copy_to_guest<M: GuestPhysicalMemory + ?Sized>(
    mem: &mut M,
    ctx: &TranslationContext,
    gva: u64,
    data: &[u8],
) -> Result<(), TranslateError> {
    let access = ctx.access(true, false);
    // Translate every page first and write to those addresses: translating again while
    // writing could see page tables the first part of this very copy just changed.
    let mut targets = alloc::vec::Vec::new();
    for (address, offset, len) in page_chunks(ctx.mode, gva, data.len()) {
        let gpa = ctx.translate(mem, address, access)?;
        let last = gpa + (len as u64 - 1);
        let mut probe = [0u8; 1];
        if !mem.read(gpa, &mut probe) {
            return Err(TranslateError::NotGuestMemory { gpa });
        }
        if !mem.read(last, &mut probe) {
            return Err(TranslateError::NotGuestMemory { gpa: last });
        }
        targets.push((gpa, offset, len));
    }
    for (gpa, offset, len) in targets {
        if !mem.write(gpa, &data[offset..offset + len]) {
            return Err(TranslateError::NotGuestMemory { gpa });
        }
    }
    Ok(())
}

/// Fetch up to 15 instruction bytes at `cs_base + rip` into `buf`, as the guest's
/// instruction fetch would. Returns how many bytes were fetched: fetching stops at the
/// first page that cannot be translated or read, and an error is returned only when not
/// even the first byte could be fetched. (The decoder reports an instruction that
/// needs the missing bytes as truncated; the caller then injects this page's fault.)
pub fn fetch_instruction_bytes<M: GuestPhysicalMemory + ?Sized>(
    mem: &M,
    ctx: &TranslationContext,
    cs_base: u64,
    rip: u64,
    buf: &mut [u8; 15],
) -> Result<usize, TranslateError> {
    let access = ctx.access(false, true);
    let mut fetched = 0;
    for (address, offset, len) in page_chunks(ctx.mode, cs_base.wrapping_add(rip), buf.len()) {
        let result = ctx.translate(mem, address, access).and_then(|gpa| {
            if mem.read(gpa, &mut buf[offset..offset + len]) {
                Ok(())
            } else {
                Err(TranslateError::NotGuestMemory { gpa })
            }
        });
        match result {
            Ok(()) => fetched += len,
            Err(error) if fetched == 0 => return Err(error),
            Err(_) => break,
        }
    }
    Ok(fetched)
}

/// Fuzz input layout: a fixed header (zero-padded when the input is shorter), then the
/// start of guest-physical memory.
#[cfg(not(target_os = "none"))]
const FUZZ_HEADER: usize = 51;
/// Guest-physical memory in the fuzz body: four pages at GPA 0 (room for a 4-level walk
/// through distinct tables), zero beyond the input.
#[cfg(not(target_os = "none"))]
const FUZZ_MEMORY: usize = 4 * PAGE_SIZE as usize;
/// The longest copy the fuzz body makes: enough to span three pages.
#[cfg(not(target_os = "none"))]
const FUZZ_MAX_COPY: usize = 2 * PAGE_SIZE as usize + 16;

/// Guest-physical memory for the fuzz body: `bytes` at GPA 0, nothing else.
#[cfg(not(target_os = "none"))]
struct FuzzMemory {
    bytes: alloc::vec::Vec<u8>,
}

#[cfg(not(target_os = "none"))]
impl FuzzMemory {
    fn range(&self, gpa: u64, length: usize) -> Option<core::ops::Range<usize>> {
        let start = usize::try_from(gpa).ok()?;
        let end = start.checked_add(length)?;
        (end <= self.bytes.len()).then_some(start..end)
    }
}

#[cfg(not(target_os = "none"))]
impl GuestPhysicalMemory for FuzzMemory {
    fn read_u64(&self, gpa: u64) -> Option<u64> {
        let mut raw = [0u8; 8];
        self.read(gpa, &mut raw).then(|| u64::from_le_bytes(raw))
    }
    fn read(&self, gpa: u64, buf: &mut [u8]) -> bool {
        match self.range(gpa, buf.len()) {
            Some(range) => {
                buf.copy_from_slice(&self.bytes[range]);
                true
            }
            None => false,
        }
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        match self.range(gpa, data.len()) {
            Some(range) => {
                self.bytes[range].copy_from_slice(data);
                true
            }
            None => false,
        }
    }
}

/// The fuzz target's body (kernel/fuzz/fuzz_targets/guest_paging.rs), shared with a
/// host test: arbitrary control registers and page tables never panic, and whatever
/// succeeds agrees with a byte-by-byte translation into the guest's memory.
/// Panics (by `assert!`) only when an invariant is broken — for fuzzing and tests.
///
/// Input: after a `FUZZ_HEADER`-byte (51) header, the first bytes of a 16 KiB
/// guest-physical memory at GPA 0. Header (little-endian): CR0 `[0..8]`, CR3 `[8..16]`,
/// CR4 `[16..24]`, EFER `[24..32]`, the address `[32..40]`, CS base `[40..48]`; `[48]`
/// bit 0 write, 1 user, 2 fetch (the access [`translate`] checks), bit 3 the vCPU is at
/// CPL 3 (copies and fetches), bits 4–5 the fixed-argument walk's NX and WP;
/// `[49..51]` the copy length (mod 8208).
///
/// Checks: a successful translation keeps the page offset (and is the address itself
/// without paging); every byte a copy or fetch returns is the byte of guest memory at
/// that address's translation; `copy_to_guest` changes at most as many bytes as it was
/// given, and none when it fails.
#[doc(hidden)]
#[cfg(not(target_os = "none"))]
pub fn fuzz_one(data: &[u8]) {
    let mut header = [0u8; FUZZ_HEADER];
    let header_length = data.len().min(FUZZ_HEADER);
    header[..header_length].copy_from_slice(&data[..header_length]);
    let word = |offset: usize| {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&header[offset..offset + 8]);
        u64::from_le_bytes(raw)
    };
    let (cr0, cr3, cr4, efer, gva, cs_base) = (word(0), word(8), word(16), word(24), word(32), word(40));
    let flags = header[48];
    let access = Access { write: flags & 1 != 0, user: flags & 2 != 0, fetch: flags & 4 != 0 };
    let copy_length = usize::from(u16::from_le_bytes([header[49], header[50]])) % (FUZZ_MAX_COPY + 1);

    let mut mem = FuzzMemory { bytes: alloc::vec![0; FUZZ_MEMORY] };
    let image = data.get(FUZZ_HEADER..).unwrap_or(&[]);
    let image_length = image.len().min(FUZZ_MEMORY);
    mem.bytes[..image_length].copy_from_slice(&image[..image_length]);

    let Ok(ctx) = TranslationContext::from_control_registers(cr0, cr3, cr4, efer) else {
        assert!(cr0 & CR0_PG != 0 && efer & EFER_LMA != 0 && cr4 & CR4_LA57 != 0);
        return;
    };
    let ctx = ctx.with_user_mode(flags & 8 != 0);

    // translate, through the context and with the raw NX/WP arguments.
    let raw = translate(&mem, ctx.mode, cr3, gva, access, flags & 0x10 != 0, flags & 0x20 != 0);
    for gpa in [ctx.translate(&mem, gva, access), raw].into_iter().flatten() {
        assert_eq!(gpa & (PAGE_SIZE - 1), gva & (PAGE_SIZE - 1), "{ctx:?} {gva:#x}");
        if matches!(ctx.mode, PagingMode::Real | PagingMode::ProtectedFlat) {
            assert_eq!(gpa, gva & 0xffff_ffff);
        }
    }

    // Byte `index` of a copy or fetch from `start` must be guest memory at the
    // translation of `start + index`. Checked at the ends and at each page start.
    let agrees = |mem: &FuzzMemory, start: u64, bytes: &[u8], access: Access| {
        let last = bytes.len().saturating_sub(1);
        let first_page_start = (PAGE_SIZE - (start & (PAGE_SIZE - 1))) % PAGE_SIZE;
        let page_starts = (first_page_start as usize..bytes.len()).step_by(PAGE_SIZE as usize);
        for index in [0, last].into_iter().chain(page_starts) {
            let Some(&byte) = bytes.get(index) else { continue };
            let gpa = ctx.translate(mem, start.wrapping_add(index as u64), access);
            let in_memory = gpa.ok().and_then(|gpa| mem.range(gpa, 1)).map(|range| mem.bytes[range.start]);
            assert_eq!(in_memory, Some(byte), "byte {index} from {start:#x} in {ctx:?}");
        }
    };
    let read = ctx.access(false, false);
    let write = ctx.access(true, false);
    let fetch = ctx.access(false, true);

    let mut buffer = alloc::vec![0u8; copy_length];
    if copy_from_guest(&mem, &ctx, gva, &mut buffer).is_ok() {
        agrees(&mem, gva, &buffer, read);
    }

    let before = FuzzMemory { bytes: mem.bytes.clone() };
    // Bytes that differ from `before` (one memcmp when none do).
    let changed_bytes = |now: &[u8]| {
        if now == before.bytes.as_slice() {
            0
        } else {
            before.bytes.iter().zip(now).filter(|(old, new)| old != new).count()
        }
    };
    let pattern: alloc::vec::Vec<u8> = (0..copy_length).map(|index| !(index as u8)).collect();
    let result = copy_to_guest(&mut mem, &ctx, gva, &pattern);
    let changed = changed_bytes(&mem.bytes);
    assert!(changed <= copy_length, "{changed} bytes changed by a {copy_length}-byte copy");
    match result {
        Ok(()) => {
            // Unless the copy rewrote the page tables it went through, it reads back.
            let mut back = alloc::vec![0u8; copy_length];
            if copy_from_guest(&mem, &ctx, gva, &mut back).is_ok() && back == pattern {
                agrees(&mem, gva, &back, write);
            }
        }
        Err(error) => assert_eq!(changed, 0, "{error:?} but guest memory changed, in {ctx:?}"),
    }

    let mut instruction = [0u8; 15];
    if let Ok(fetched) = fetch_instruction_bytes(&mem, &ctx, cs_base, gva, &mut instruction) {
        assert!((1..=15).contains(&fetched));
        agrees(&mem, cs_base.wrapping_add(gva), &instruction[..fetched], fetch);
    }
}

#[cfg(test)]
mod tests;
