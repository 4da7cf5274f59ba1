//! The bytes of a dump-core: ELF64 header and section headers, the `.note.Xen` notes,
//! x86_64 `vcpu_guest_context` (the `.xen_prstatus` entries), and the versioned
//! encodings of the `.basalt_*` sections. Reader and writer both go through here so
//! the two cannot disagree about a layout.
//!
//! Facts from Xen's public headers and tools/libs/guest/xg_core.h (names kept where
//! they are the spec's): the note types of xen/include/public/elfnote.h, the header
//! descriptor, `XC_CORE_MAGIC(_HVM)`, the 1280-byte `xen_version` descriptor
//! (version.h's fixed-size strings), and the 5168-byte x86_64 guest context whose
//! offsets are checked at compile time against a `#[repr(C)]` mirror below.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::mem::{offset_of, size_of};

use crate::target::{ChannelBinding, EventChannel, GrantEntry, Registers, TargetInfo, VcpuRunState, XenstoreNode};

pub const PAGE_SIZE: u64 = 4096;
pub const PAGE_SHIFT: u32 = 12;

// ---- ELF ----------------------------------------------------------------------------

pub const ELF_HEADER_SIZE: usize = 64;
pub const SECTION_HEADER_SIZE: usize = 64;
pub const ELF_MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];
pub const ELF_CLASS_32: u8 = 1;
pub const ELF_CLASS_64: u8 = 2;
pub const ELF_DATA_LITTLE_ENDIAN: u8 = 1;
pub const ELF_VERSION_CURRENT: u8 = 1;
pub const ELF_TYPE_CORE: u16 = 4;
pub const MACHINE_X86_64: u16 = 62;
pub const MACHINE_I386: u16 = 3;
pub const SECTION_TYPE_PROGBITS: u32 = 1;
pub const SECTION_TYPE_STRTAB: u32 = 3;
pub const SECTION_TYPE_NOTE: u32 = 7;
/// Size of an Elf64_Phdr; Xen fills e_phentsize although a dump-core has none.
const PROGRAM_HEADER_SIZE: u16 = 56;

/// The fields of the ELF header a dump-core reader needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfHeader {
    pub class: u8,
    pub data: u8,
    pub file_type: u16,
    pub machine: u16,
    pub section_headers_offset: u64,
    pub section_header_size: u16,
    pub section_count: u16,
    pub section_names_index: u16,
}

/// Writes a little-endian ELF64 ET_CORE header for EM_X86_64 (no program headers).
pub fn encode_elf_header(section_headers_offset: u64, section_count: u16, section_names_index: u16) -> [u8; 64] {
    let mut bytes = [0u8; ELF_HEADER_SIZE];
    bytes[0..4].copy_from_slice(&ELF_MAGIC);
    bytes[4] = ELF_CLASS_64;
    bytes[5] = ELF_DATA_LITTLE_ENDIAN;
    bytes[6] = ELF_VERSION_CURRENT;
    // EI_OSABI stays ELFOSABI_SYSV (0); Xen writes EV_CURRENT into EI_ABIVERSION.
    bytes[8] = ELF_VERSION_CURRENT;
    put_u16(&mut bytes, 16, ELF_TYPE_CORE);
    put_u16(&mut bytes, 18, MACHINE_X86_64);
    put_u32(&mut bytes, 20, u32::from(ELF_VERSION_CURRENT));
    put_u64(&mut bytes, 40, section_headers_offset);
    put_u16(&mut bytes, 52, ELF_HEADER_SIZE as u16);
    put_u16(&mut bytes, 54, PROGRAM_HEADER_SIZE);
    put_u16(&mut bytes, 58, SECTION_HEADER_SIZE as u16);
    put_u16(&mut bytes, 60, section_count);
    put_u16(&mut bytes, 62, section_names_index);
    bytes
}

/// Decodes the header; `None` if the magic is wrong.
pub fn decode_elf_header(bytes: &[u8; 64]) -> Option<ElfHeader> {
    if bytes[0..4] != ELF_MAGIC {
        return None;
    }
    Some(ElfHeader {
        class: bytes[4],
        data: bytes[5],
        file_type: get_u16(bytes, 16),
        machine: get_u16(bytes, 18),
        section_headers_offset: get_u64(bytes, 40),
        section_header_size: get_u16(bytes, 58),
        section_count: get_u16(bytes, 60),
        section_names_index: get_u16(bytes, 62),
    })
}

/// One Elf64_Shdr (the fields a dump-core uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SectionHeader {
    pub name: u32,
    pub section_type: u32,
    pub offset: u64,
    pub size: u64,
    pub alignment: u64,
    pub entry_size: u64,
}

pub fn encode_section_header(header: &SectionHeader) -> [u8; 64] {
    let mut bytes = [0u8; SECTION_HEADER_SIZE];
    put_u32(&mut bytes, 0, header.name);
    put_u32(&mut bytes, 4, header.section_type);
    put_u64(&mut bytes, 24, header.offset);
    put_u64(&mut bytes, 32, header.size);
    put_u64(&mut bytes, 48, header.alignment);
    put_u64(&mut bytes, 56, header.entry_size);
    bytes
}

pub fn decode_section_header(bytes: &[u8; 64]) -> SectionHeader {
    SectionHeader {
        name: get_u32(bytes, 0),
        section_type: get_u32(bytes, 4),
        offset: get_u64(bytes, 24),
        size: get_u64(bytes, 32),
        alignment: get_u64(bytes, 48),
        entry_size: get_u64(bytes, 56),
    }
}

// ---- section names ------------------------------------------------------------------

pub const SECTION_NAMES: &str = ".shstrtab";
pub const SECTION_NOTE: &str = ".note.Xen";
pub const SECTION_PRSTATUS: &str = ".xen_prstatus";
pub const SECTION_SHARED_INFO: &str = ".xen_shared_info";
pub const SECTION_P2M: &str = ".xen_p2m";
pub const SECTION_PFN: &str = ".xen_pfn";
pub const SECTION_PAGES: &str = ".xen_pages";
pub const SECTION_BASALT_DOMAIN: &str = ".basalt_domain";
pub const SECTION_BASALT_VCPUS: &str = ".basalt_vcpus";
pub const SECTION_BASALT_EVTCHNS: &str = ".basalt_evtchns";
pub const SECTION_BASALT_GRANTS: &str = ".basalt_grants";
pub const SECTION_BASALT_XENSTORE: &str = ".basalt_xenstore";
pub const SECTION_BASALT_SYMBOLS: &str = ".basalt_symbols";

// ---- .note.Xen ----------------------------------------------------------------------

/// The note name of every dump-core note ("Xen" and its NUL).
pub const NOTE_NAME: [u8; 4] = *b"Xen\0";
pub const XEN_ELFNOTE_DUMPCORE_NONE: u32 = 0x0200_0000;
pub const XEN_ELFNOTE_DUMPCORE_HEADER: u32 = 0x0200_0001;
pub const XEN_ELFNOTE_DUMPCORE_XEN_VERSION: u32 = 0x0200_0002;
pub const XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION: u32 = 0x0200_0003;
/// A paravirtualized (not auto-translated) domain: pages indexed by `.xen_p2m`.
pub const XC_CORE_MAGIC: u64 = 0xF00F_EBED;
/// A fully virtualized (HVM, PVH) domain: pages indexed by `.xen_pfn`.
pub const XC_CORE_MAGIC_HVM: u64 = 0xF00F_EBEE;
/// Format version (major 0, minor 1): the only one Xen has written.
pub const FORMAT_VERSION_CURRENT: u64 = 1;
/// The filler pfn/gmfn of a page slot that holds no page (XC_CORE_INVALID_PFN).
pub const INVALID_FRAME: u64 = u64::MAX;
/// namesz, descsz, type and the 4-byte name.
pub const NOTE_HEADER_SIZE: usize = 16;
pub const HEADER_DESCRIPTOR_SIZE: usize = 32;
/// major, minor (u64 each), `extraversion[16]`, compile_info (64+16+32+32),
/// `capabilities[1024]`, `changeset[64]`, platform_parameters (one unsigned long),
/// pagesize (u64).
pub const XEN_VERSION_DESCRIPTOR_SIZE: usize = 8 + 8 + 16 + 144 + 1024 + 64 + 8 + 8;
const XEN_VERSION_EXTRA_OFFSET: usize = 16;
const XEN_VERSION_EXTRA_SIZE: usize = 16;
const XEN_VERSION_CAPABILITIES_OFFSET: usize = 16 + 16 + 144;
const XEN_VERSION_PLATFORM_OFFSET: usize = XEN_VERSION_CAPABILITIES_OFFSET + 1024 + 64;
const XEN_VERSION_PAGE_SIZE_OFFSET: usize = XEN_VERSION_PLATFORM_OFFSET + 8;
const _: () = assert!(XEN_VERSION_PAGE_SIZE_OFFSET + 8 == XEN_VERSION_DESCRIPTOR_SIZE);
const _: () = assert!(XEN_VERSION_DESCRIPTOR_SIZE == 1280);

/// The header note's descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreHeader {
    pub magic: u64,
    pub vcpus: u64,
    pub pages: u64,
    pub page_size: u64,
}

/// Appends one "Xen" note (header, name, descriptor padded to 4 bytes).
pub fn push_note(out: &mut Vec<u8>, note_type: u32, descriptor: &[u8]) {
    out.extend_from_slice(&(NOTE_NAME.len() as u32).to_le_bytes());
    out.extend_from_slice(&(descriptor.len() as u32).to_le_bytes());
    out.extend_from_slice(&note_type.to_le_bytes());
    out.extend_from_slice(&NOTE_NAME);
    out.extend_from_slice(descriptor);
    out.resize(out.len() + padding_to(descriptor.len() as u64, 4) as usize, 0);
}

pub fn encode_core_header(header: &CoreHeader) -> [u8; HEADER_DESCRIPTOR_SIZE] {
    let mut bytes = [0u8; HEADER_DESCRIPTOR_SIZE];
    put_u64(&mut bytes, 0, header.magic);
    put_u64(&mut bytes, 8, header.vcpus);
    put_u64(&mut bytes, 16, header.pages);
    put_u64(&mut bytes, 24, header.page_size);
    bytes
}

pub fn decode_core_header(descriptor: &[u8]) -> Option<CoreHeader> {
    let bytes: &[u8; HEADER_DESCRIPTOR_SIZE] = descriptor.get(..HEADER_DESCRIPTOR_SIZE)?.try_into().ok()?;
    Some(CoreHeader {
        magic: get_u64(bytes, 0),
        vcpus: get_u64(bytes, 8),
        pages: get_u64(bytes, 16),
        page_size: get_u64(bytes, 24),
    })
}

/// The xen_version descriptor with what a reader shows: version, extraversion,
/// capabilities and page size (compile info and changeset left empty).
pub fn encode_xen_version(major: u64, minor: u64, extra: &str, capabilities: &str) -> Vec<u8> {
    let mut bytes = vec![0u8; XEN_VERSION_DESCRIPTOR_SIZE];
    put_u64(&mut bytes, 0, major);
    put_u64(&mut bytes, 8, minor);
    let extra = extra.as_bytes();
    let extra_length = extra.len().min(XEN_VERSION_EXTRA_SIZE - 1);
    bytes[XEN_VERSION_EXTRA_OFFSET..XEN_VERSION_EXTRA_OFFSET + extra_length].copy_from_slice(&extra[..extra_length]);
    let capabilities = capabilities.as_bytes();
    let capabilities_length = capabilities.len().min(1023);
    bytes[XEN_VERSION_CAPABILITIES_OFFSET..XEN_VERSION_CAPABILITIES_OFFSET + capabilities_length]
        .copy_from_slice(&capabilities[..capabilities_length]);
    // platform_parameters.virt_start: HYPERVISOR_VIRT_START of 64-bit Xen.
    put_u64(&mut bytes, XEN_VERSION_PLATFORM_OFFSET, 0xFFFF_8000_0000_0000);
    put_u64(&mut bytes, XEN_VERSION_PAGE_SIZE_OFFSET, PAGE_SIZE);
    bytes
}

/// "Xen 4.17.3" from a xen_version descriptor (`None` if it is too short).
pub fn describe_xen_version(descriptor: &[u8]) -> Option<String> {
    if descriptor.len() < XEN_VERSION_EXTRA_OFFSET + XEN_VERSION_EXTRA_SIZE {
        return None;
    }
    let major = get_u64(descriptor, 0);
    let minor = get_u64(descriptor, 8);
    let extra =
        printable_c_string(&descriptor[XEN_VERSION_EXTRA_OFFSET..XEN_VERSION_EXTRA_OFFSET + XEN_VERSION_EXTRA_SIZE]);
    Some(alloc::format!("Xen {major}.{minor}{extra}"))
}

/// The NUL-terminated text at the start of `bytes`, with anything unprintable as `?`
/// (it comes from a file and ends up on a terminal).
pub fn printable_c_string(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take_while(|&&byte| byte != 0)
        .map(|&byte| if (0x20..0x7f).contains(&byte) { byte as char } else { '?' })
        .collect()
}

// ---- vcpu_guest_context (x86_64) ----------------------------------------------------

/// `struct trap_info` of arch-x86/xen.h.
#[repr(C)]
#[allow(dead_code)]
struct TrapInfo {
    vector: u8,
    flags: u8,
    cs: u16,
    address: u64,
}

/// `struct cpu_user_regs` of arch-x86/xen-x86_64.h.
#[repr(C)]
#[allow(dead_code)]
struct CpuUserRegs {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    rbp: u64,
    rbx: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rax: u64,
    rcx: u64,
    rdx: u64,
    rsi: u64,
    rdi: u64,
    error_code: u32,
    entry_vector: u32,
    rip: u64,
    cs: u16,
    pad0: u16,
    saved_upcall_mask: u8,
    pad1: [u8; 3],
    rflags: u64,
    rsp: u64,
    ss: u16,
    pad2: [u16; 3],
    es: u16,
    pad3: [u16; 3],
    ds: u16,
    pad4: [u16; 3],
    fs: u16,
    pad5: [u16; 3],
    gs: u16,
    pad6: [u16; 3],
}

/// `struct vcpu_guest_context` of arch-x86/xen.h as a 64-bit tool sees it. Never
/// built: it exists so the compiler computes the offsets the byte codec uses.
#[repr(C)]
#[allow(dead_code)]
struct VcpuGuestContext {
    fpu_ctxt: [u8; 512],
    flags: u64,
    user_regs: CpuUserRegs,
    trap_ctxt: [TrapInfo; 256],
    ldt_base: u64,
    ldt_ents: u64,
    gdt_frames: [u64; 16],
    gdt_ents: u64,
    kernel_ss: u64,
    kernel_sp: u64,
    ctrlreg: [u64; 8],
    debugreg: [u64; 8],
    event_callback_eip: u64,
    failsafe_callback_eip: u64,
    syscall_callback_eip: u64,
    vm_assist: u64,
    fs_base: u64,
    gs_base_kernel: u64,
    gs_base_user: u64,
}

/// sizeof(vcpu_guest_context_t) on x86_64 (and of vcpu_guest_context_any_t, the
/// `.xen_prstatus` entry, since the 32-bit variant is smaller).
pub const CONTEXT_SIZE: usize = 5168;
const _: () = assert!(size_of::<VcpuGuestContext>() == CONTEXT_SIZE);
const _: () = assert!(size_of::<CpuUserRegs>() == 200);
const _: () = assert!(size_of::<TrapInfo>() == 16);
const _: () = assert!(offset_of!(VcpuGuestContext, flags) == 512);
const _: () = assert!(offset_of!(VcpuGuestContext, user_regs) == 520);
const _: () = assert!(offset_of!(VcpuGuestContext, trap_ctxt) == 720);
const _: () = assert!(offset_of!(VcpuGuestContext, ldt_base) == 4816);
const _: () = assert!(offset_of!(VcpuGuestContext, gdt_frames) == 4832);
const _: () = assert!(offset_of!(VcpuGuestContext, kernel_ss) == 4968);
const _: () = assert!(offset_of!(VcpuGuestContext, ctrlreg) == 4984);
const _: () = assert!(offset_of!(VcpuGuestContext, debugreg) == 5048);
const _: () = assert!(offset_of!(VcpuGuestContext, event_callback_eip) == 5112);
const _: () = assert!(offset_of!(VcpuGuestContext, vm_assist) == 5136);
const _: () = assert!(offset_of!(VcpuGuestContext, fs_base) == 5144);
const _: () = assert!(offset_of!(VcpuGuestContext, gs_base_kernel) == 5152);
const _: () = assert!(offset_of!(VcpuGuestContext, gs_base_user) == 5160);

const CONTEXT_FLAGS: usize = offset_of!(VcpuGuestContext, flags);
const USER_REGS: usize = offset_of!(VcpuGuestContext, user_regs);
const CONTEXT_CONTROL_REGISTERS: usize = offset_of!(VcpuGuestContext, ctrlreg);
const CONTEXT_FS_BASE: usize = offset_of!(VcpuGuestContext, fs_base);
const CONTEXT_GS_BASE_KERNEL: usize = offset_of!(VcpuGuestContext, gs_base_kernel);
const CONTEXT_GS_BASE_USER: usize = offset_of!(VcpuGuestContext, gs_base_user);

/// VGCF_i387_valid: arch_get_info_guest (xen/arch/x86/domctl.c) sets it on every
/// context it returns, HVM included.
pub const VGCF_I387_VALID: u64 = 1 << 0;
/// VGCF_in_kernel: a PV vCPU was in its kernel (PV contexts only).
pub const VGCF_IN_KERNEL: u64 = 1 << 2;
/// VGCF_online: the vCPU is up.
pub const VGCF_ONLINE: u64 = 1 << 5;
const CR0_PAGING: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LONG_MODE_ENABLE: u64 = 1 << 8;
const EFER_LONG_MODE_ACTIVE: u64 = 1 << 10;

/// Where a field lives in [`Registers`] (so encode and decode share one list).
type U64Field = fn(&mut Registers) -> &mut u64;
type U16Field = fn(&mut Registers) -> &mut u16;

macro_rules! user_register_offset {
    ($field:ident) => {
        USER_REGS + offset_of!(CpuUserRegs, $field)
    };
}

/// The 64-bit general registers of `cpu_user_regs` and where each lives in
/// [`Registers`], so encode and decode walk one list.
const GENERAL_REGISTERS: [(usize, U64Field); 18] = [
    (user_register_offset!(r15), |r| &mut r.r15),
    (user_register_offset!(r14), |r| &mut r.r14),
    (user_register_offset!(r13), |r| &mut r.r13),
    (user_register_offset!(r12), |r| &mut r.r12),
    (user_register_offset!(rbp), |r| &mut r.rbp),
    (user_register_offset!(rbx), |r| &mut r.rbx),
    (user_register_offset!(r11), |r| &mut r.r11),
    (user_register_offset!(r10), |r| &mut r.r10),
    (user_register_offset!(r9), |r| &mut r.r9),
    (user_register_offset!(r8), |r| &mut r.r8),
    (user_register_offset!(rax), |r| &mut r.rax),
    (user_register_offset!(rcx), |r| &mut r.rcx),
    (user_register_offset!(rdx), |r| &mut r.rdx),
    (user_register_offset!(rsi), |r| &mut r.rsi),
    (user_register_offset!(rdi), |r| &mut r.rdi),
    (user_register_offset!(rip), |r| &mut r.rip),
    (user_register_offset!(rflags), |r| &mut r.rflags),
    (user_register_offset!(rsp), |r| &mut r.rsp),
];

const SELECTORS: [(usize, U16Field); 6] = [
    (user_register_offset!(cs), |r| &mut r.cs),
    (user_register_offset!(ss), |r| &mut r.ss),
    (user_register_offset!(es), |r| &mut r.es),
    (user_register_offset!(ds), |r| &mut r.ds),
    (user_register_offset!(fs), |r| &mut r.fs),
    (user_register_offset!(gs), |r| &mut r.gs),
];

/// The control registers of `ctrlreg[]` that [`Registers`] has.
const CONTROL_REGISTERS: [(usize, U64Field); 4] =
    [(0, |r| &mut r.cr0), (2, |r| &mut r.cr2), (3, |r| &mut r.cr3), (4, |r| &mut r.cr4)];

/// A guest context as `XEN_DOMCTL_getvcpucontext` fills it for an HVM/PVH vCPU
/// (arch_get_info_guest): general registers, selectors, `ctrlreg[0,2,3,4]` as the
/// guest sees them, `fs_base`, the GS bases split by the ring of CS, and flags
/// `VGCF_i387_valid` plus `VGCF_online` unless the vCPU is down. The FPU area, debug
/// registers and `vm_assist` stay zero: [`Registers`] does not carry them.
pub fn encode_context(registers: &Registers) -> Vec<u8> {
    let mut bytes = vec![0u8; CONTEXT_SIZE];
    let mut copy = *registers;
    for (offset, field) in GENERAL_REGISTERS {
        put_u64(&mut bytes, offset, *field(&mut copy));
    }
    for (offset, field) in SELECTORS {
        put_u16(&mut bytes, offset, *field(&mut copy));
    }
    for (index, field) in CONTROL_REGISTERS {
        put_u64(&mut bytes, CONTEXT_CONTROL_REGISTERS + index * 8, *field(&mut copy));
    }
    let online = if registers.state == VcpuRunState::Down { 0 } else { VGCF_ONLINE };
    put_u64(&mut bytes, CONTEXT_FLAGS, VGCF_I387_VALID | online);
    put_u64(&mut bytes, CONTEXT_FS_BASE, registers.fs_base);
    // Xen names the GS bases by privilege, not by which is loaded: in ring 0 the
    // loaded base is the kernel's and the swapped one (KERNEL_GS_BASE) the user's.
    let (kernel, user) = if in_ring_0(registers.cs) {
        (registers.gs_base, registers.kernel_gs_base)
    } else {
        (registers.kernel_gs_base, registers.gs_base)
    };
    put_u64(&mut bytes, CONTEXT_GS_BASE_KERNEL, kernel);
    put_u64(&mut bytes, CONTEXT_GS_BASE_USER, user);
    bytes
}

/// Xen's `ring_0()`: the RPL of CS is 0.
fn in_ring_0(cs: u16) -> bool {
    cs & 3 == 0
}

/// Registers from one `.xen_prstatus` entry (`context` is [`CONTEXT_SIZE`] bytes);
/// `paravirtualized` for a PV core (magic `XC_CORE_MAGIC`), whose context Xen fills
/// differently.
///
/// Which GS base is loaded: for HVM/PVH Xen put the loaded one in `gs_base_kernel`
/// when CS is in ring 0 and in `gs_base_user` otherwise; for PV the two are the
/// kernel's and the user's, and `VGCF_in_kernel` says which one runs. Xen's context
/// has no EFER: a PV x86_64 guest is always in long mode; an HVM context with CR0.PG
/// and CR4.PAE is taken to be in long mode (EFER.LME|LMA), anything else gets 0. The
/// run state is `Running` for an online vCPU (Xen does not record whether it was
/// blocked), `Down` otherwise.
pub fn decode_context(context: &[u8], paravirtualized: bool) -> Registers {
    let mut registers = Registers::default();
    if context.len() < CONTEXT_SIZE {
        return registers;
    }
    for (offset, field) in GENERAL_REGISTERS {
        *field(&mut registers) = get_u64(context, offset);
    }
    for (offset, field) in SELECTORS {
        *field(&mut registers) = get_u16(context, offset);
    }
    for (index, field) in CONTROL_REGISTERS {
        *field(&mut registers) = get_u64(context, CONTEXT_CONTROL_REGISTERS + index * 8);
    }
    let flags = get_u64(context, CONTEXT_FLAGS);
    registers.fs_base = get_u64(context, CONTEXT_FS_BASE);
    let kernel = get_u64(context, CONTEXT_GS_BASE_KERNEL);
    let user = get_u64(context, CONTEXT_GS_BASE_USER);
    let kernel_loaded = if paravirtualized { flags & VGCF_IN_KERNEL != 0 } else { in_ring_0(registers.cs) };
    (registers.gs_base, registers.kernel_gs_base) = if kernel_loaded { (kernel, user) } else { (user, kernel) };
    registers.state = if flags & VGCF_ONLINE != 0 { VcpuRunState::Running } else { VcpuRunState::Down };
    let paged_pae = registers.cr0 & CR0_PAGING != 0 && registers.cr4 & CR4_PAE != 0;
    if paravirtualized || paged_pae {
        registers.efer = EFER_LONG_MODE_ENABLE | EFER_LONG_MODE_ACTIVE;
    }
    registers
}

// ---- Basalt sections ----------------------------------------------------------------

/// The version every `.basalt_*` section (except `.basalt_symbols`) starts with.
pub const BASALT_SECTION_VERSION: u32 = 1;
/// Bytes of one `.basalt_vcpus` record in version 1.
pub const BASALT_VCPU_RECORD_SIZE: u32 = 80;
/// A string length that means "absent".
const ABSENT: u32 = u32::MAX;
/// The largest `.basalt_symbols` a core carries (and a reader accepts).
pub const MAX_SYMBOL_FILE: u64 = 64 << 20;

/// What `.basalt_domain` carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRecord {
    pub domain_id: u16,
    pub vcpus: u32,
    pub memory_bytes: u64,
    pub name: String,
    pub state: String,
    pub hypervisor: String,
    pub vcpu_snapshot: String,
    pub host: Option<String>,
}

impl DomainRecord {
    pub fn from_info(info: &TargetInfo) -> DomainRecord {
        DomainRecord {
            domain_id: info.domain_id,
            vcpus: info.vcpus,
            memory_bytes: info.memory_bytes,
            name: info.domain_name.clone(),
            state: info.state.clone(),
            hypervisor: info.hypervisor.clone(),
            vcpu_snapshot: info.vcpu_snapshot.clone(),
            host: info.host.clone(),
        }
    }
}

pub fn encode_domain(record: &DomainRecord) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&BASALT_SECTION_VERSION.to_le_bytes());
    out.extend_from_slice(&record.domain_id.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&record.vcpus.to_le_bytes());
    out.extend_from_slice(&record.memory_bytes.to_le_bytes());
    for text in [&record.name, &record.state, &record.hypervisor, &record.vcpu_snapshot] {
        push_string(&mut out, Some(text));
    }
    push_string(&mut out, record.host.as_deref());
    out
}

pub fn decode_domain(bytes: &[u8]) -> Result<DomainRecord, String> {
    let mut cursor = Cursor::new(bytes);
    cursor.version()?;
    let domain_id = cursor.u16()?;
    cursor.u16()?;
    let vcpus = cursor.u32()?;
    let memory_bytes = cursor.u64()?;
    let name = cursor.required_string()?;
    let state = cursor.required_string()?;
    let hypervisor = cursor.required_string()?;
    let vcpu_snapshot = cursor.required_string()?;
    let host = cursor.string()?;
    Ok(DomainRecord { domain_id, vcpus, memory_bytes, name, state, hypervisor, vcpu_snapshot, host })
}

fn run_state_code(state: VcpuRunState) -> u8 {
    match state {
        VcpuRunState::Running => 0,
        VcpuRunState::Blocked => 1,
        VcpuRunState::Down => 2,
    }
}

/// `.basalt_vcpus`: what [`Registers`] has beyond `vcpu_guest_context`, per vCPU.
pub fn encode_vcpus(registers: &[Registers]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&BASALT_SECTION_VERSION.to_le_bytes());
    out.extend_from_slice(&(registers.len() as u32).to_le_bytes());
    out.extend_from_slice(&BASALT_VCPU_RECORD_SIZE.to_le_bytes());
    for vcpu in registers {
        for value in
            [vcpu.efer, vcpu.cr0, vcpu.cr2, vcpu.cr3, vcpu.cr4, vcpu.fs_base, vcpu.gs_base, vcpu.kernel_gs_base]
        {
            out.extend_from_slice(&value.to_le_bytes());
        }
        for selector in [vcpu.cs, vcpu.ss, vcpu.ds, vcpu.es, vcpu.fs, vcpu.gs] {
            out.extend_from_slice(&selector.to_le_bytes());
        }
        out.extend_from_slice(&[run_state_code(vcpu.state), 0, 0, 0]);
    }
    out
}

/// Overlays `.basalt_vcpus` on the registers decoded from `.xen_prstatus`; the record
/// count must match.
pub fn apply_vcpus(bytes: &[u8], registers: &mut [Registers]) -> Result<(), String> {
    let mut cursor = Cursor::new(bytes);
    cursor.version()?;
    let count = cursor.u32()?;
    let record_size = cursor.u32()?;
    if count as usize != registers.len() {
        return Err(alloc::format!("{count} vCPU records for {} vCPU contexts", registers.len()));
    }
    if record_size < BASALT_VCPU_RECORD_SIZE {
        return Err(alloc::format!("vCPU record size {record_size} is below {BASALT_VCPU_RECORD_SIZE}"));
    }
    for vcpu in registers.iter_mut() {
        let record = cursor.bytes(u64::from(record_size))?;
        let mut fields = Cursor::new(record);
        vcpu.efer = fields.u64()?;
        vcpu.cr0 = fields.u64()?;
        vcpu.cr2 = fields.u64()?;
        vcpu.cr3 = fields.u64()?;
        vcpu.cr4 = fields.u64()?;
        vcpu.fs_base = fields.u64()?;
        vcpu.gs_base = fields.u64()?;
        vcpu.kernel_gs_base = fields.u64()?;
        vcpu.cs = fields.u16()?;
        vcpu.ss = fields.u16()?;
        vcpu.ds = fields.u16()?;
        vcpu.es = fields.u16()?;
        vcpu.fs = fields.u16()?;
        vcpu.gs = fields.u16()?;
        vcpu.state = match fields.u8()? {
            0 => VcpuRunState::Running,
            1 => VcpuRunState::Blocked,
            2 => VcpuRunState::Down,
            other => return Err(alloc::format!("unknown vCPU run state {other}")),
        };
    }
    Ok(())
}

/// Bytes of an event channel record without its owner string.
const EVENT_CHANNEL_FIXED_SIZE: u64 = 24;

fn encode_flag(flag: Option<bool>) -> u8 {
    match flag {
        None => 0,
        Some(false) => 1,
        Some(true) => 2,
    }
}

fn decode_flag(code: u8) -> Result<Option<bool>, String> {
    match code {
        0 => Ok(None),
        1 => Ok(Some(false)),
        2 => Ok(Some(true)),
        other => Err(alloc::format!("bad pending/masked code {other}")),
    }
}

pub fn encode_event_channels(channels: &[EventChannel]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&BASALT_SECTION_VERSION.to_le_bytes());
    out.extend_from_slice(&(channels.len() as u32).to_le_bytes());
    for channel in channels {
        let (kind, remote_domain, value) = match channel.binding {
            ChannelBinding::Unbound { remote_domain } => (0u8, remote_domain, 0u32),
            ChannelBinding::Interdomain { remote_domain, remote_port } => (1, remote_domain, remote_port),
            ChannelBinding::Virq(virq) => (2, 0, virq),
            ChannelBinding::Ipi => (3, 0, 0),
            ChannelBinding::Pirq(pirq) => (4, 0, pirq),
            ChannelBinding::Unknown => (5, 0, 0),
        };
        out.extend_from_slice(&channel.port.to_le_bytes());
        out.extend_from_slice(&channel.vcpu.to_le_bytes());
        out.extend_from_slice(&[kind, encode_flag(channel.pending), encode_flag(channel.masked), 0]);
        out.extend_from_slice(&remote_domain.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&value.to_le_bytes());
        push_string(&mut out, channel.owner.as_deref());
    }
    out
}

pub fn decode_event_channels(bytes: &[u8]) -> Result<Vec<EventChannel>, String> {
    let mut cursor = Cursor::new(bytes);
    cursor.version()?;
    let count = cursor.count(EVENT_CHANNEL_FIXED_SIZE)?;
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        let port = cursor.u32()?;
        let vcpu = cursor.u32()?;
        let kind = cursor.u8()?;
        let pending = decode_flag(cursor.u8()?)?;
        let masked = decode_flag(cursor.u8()?)?;
        cursor.u8()?;
        let remote_domain = cursor.u16()?;
        cursor.u16()?;
        let value = cursor.u32()?;
        let owner = cursor.string()?;
        let binding = match kind {
            0 => ChannelBinding::Unbound { remote_domain },
            1 => ChannelBinding::Interdomain { remote_domain, remote_port: value },
            2 => ChannelBinding::Virq(value),
            3 => ChannelBinding::Ipi,
            4 => ChannelBinding::Pirq(value),
            5 => ChannelBinding::Unknown,
            other => return Err(alloc::format!("unknown binding kind {other} on port {port}")),
        };
        channels.push(EventChannel { port, binding, vcpu, pending, masked, owner });
    }
    Ok(channels)
}

const GRANT_RECORD_SIZE: u64 = 16;

pub fn encode_grants(grants: &[GrantEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&BASALT_SECTION_VERSION.to_le_bytes());
    out.extend_from_slice(&(grants.len() as u32).to_le_bytes());
    for grant in grants {
        out.extend_from_slice(&grant.reference.to_le_bytes());
        out.extend_from_slice(&grant.flags.to_le_bytes());
        out.extend_from_slice(&grant.domain.to_le_bytes());
        out.extend_from_slice(&grant.frame.to_le_bytes());
    }
    out
}

pub fn decode_grants(bytes: &[u8]) -> Result<Vec<GrantEntry>, String> {
    let mut cursor = Cursor::new(bytes);
    cursor.version()?;
    let count = cursor.count(GRANT_RECORD_SIZE)?;
    let mut grants = Vec::with_capacity(count);
    for _ in 0..count {
        let reference = cursor.u32()?;
        let flags = cursor.u16()?;
        let domain = cursor.u16()?;
        let frame = cursor.u64()?;
        grants.push(GrantEntry { reference, flags, domain, frame });
    }
    Ok(grants)
}

/// Two length words: the smallest xenstore record.
const XENSTORE_RECORD_MINIMUM: u64 = 8;

pub fn encode_xenstore(nodes: &[XenstoreNode]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&BASALT_SECTION_VERSION.to_le_bytes());
    out.extend_from_slice(&(nodes.len() as u32).to_le_bytes());
    for node in nodes {
        push_string(&mut out, Some(&node.path));
        out.extend_from_slice(&(node.value.len() as u32).to_le_bytes());
        out.extend_from_slice(&node.value);
    }
    out
}

pub fn decode_xenstore(bytes: &[u8]) -> Result<Vec<XenstoreNode>, String> {
    let mut cursor = Cursor::new(bytes);
    cursor.version()?;
    let count = cursor.count(XENSTORE_RECORD_MINIMUM)?;
    let mut nodes = Vec::with_capacity(count);
    for _ in 0..count {
        let path = cursor.required_string()?;
        let length = cursor.u32()?;
        let value = cursor.bytes(u64::from(length))?.to_vec();
        nodes.push(XenstoreNode { path, value });
    }
    Ok(nodes)
}

fn push_string(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => {
            // A string longer than 4 GiB cannot come from a domain's metadata; cut it
            // rather than write a length that lies.
            let bytes = &text.as_bytes()[..text.len().min(ABSENT as usize - 1)];
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        None => out.extend_from_slice(&ABSENT.to_le_bytes()),
    }
}

/// Reads little-endian fields from a section's bytes; every read is bounds-checked
/// and fails with a message instead of panicking.
pub struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor { bytes, position: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    pub fn bytes(&mut self, length: u64) -> Result<&'a [u8], String> {
        let remaining = self.bytes.len() - self.position;
        if length > remaining as u64 {
            return Err(alloc::format!(
                "a {length}-byte field at offset {} runs past the section's end ({} bytes)",
                self.position,
                self.bytes.len()
            ));
        }
        let start = self.position;
        self.position += length as usize;
        Ok(&self.bytes[start..self.position])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let slice = self.bytes(N as u64)?;
        let mut array = [0u8; N];
        array.copy_from_slice(slice);
        Ok(array)
    }

    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn version(&mut self) -> Result<(), String> {
        match self.u32()? {
            BASALT_SECTION_VERSION => Ok(()),
            other => Err(alloc::format!("version {other} (this reader knows {BASALT_SECTION_VERSION})")),
        }
    }

    /// A record count, refused when even the smallest records could not fit in what is
    /// left (so a forged count cannot make the reader reserve memory).
    fn count(&mut self, minimum_record: u64) -> Result<usize, String> {
        let count = self.u32()?;
        let remaining = (self.bytes.len() - self.position) as u64;
        if u64::from(count).saturating_mul(minimum_record) > remaining {
            return Err(alloc::format!("{count} records cannot fit in {remaining} bytes"));
        }
        Ok(count as usize)
    }

    fn string(&mut self) -> Result<Option<String>, String> {
        let length = self.u32()?;
        if length == ABSENT {
            return Ok(None);
        }
        let bytes = self.bytes(u64::from(length))?;
        Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
    }

    fn required_string(&mut self) -> Result<String, String> {
        self.string()?.ok_or_else(|| String::from("a required string is absent"))
    }
}

// ---- little-endian helpers ----------------------------------------------------------

/// Bytes to add to `value` to reach a multiple of `alignment` (a power of two).
pub fn padding_to(value: u64, alignment: u64) -> u64 {
    (alignment - value % alignment) % alignment
}

fn put_u16(bytes: &mut [u8], offset: usize, value: u16) {
    bytes[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
}

fn put_u32(bytes: &mut [u8], offset: usize, value: u32) {
    bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

pub fn put_u64(bytes: &mut [u8], offset: usize, value: u64) {
    bytes[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

// The getters take slices whose length the caller has checked (fixed-size headers,
// a context of CONTEXT_SIZE bytes); an out-of-range offset reads as 0 rather than
// panicking.
pub fn get_u16(bytes: &[u8], offset: usize) -> u16 {
    bytes.get(offset..offset.saturating_add(2)).and_then(|b| b.try_into().ok()).map_or(0, u16::from_le_bytes)
}

pub fn get_u32(bytes: &[u8], offset: usize) -> u32 {
    bytes.get(offset..offset.saturating_add(4)).and_then(|b| b.try_into().ok()).map_or(0, u32::from_le_bytes)
}

pub fn get_u64(bytes: &[u8], offset: usize) -> u64 {
    bytes.get(offset..offset.saturating_add(8)).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes)
}
