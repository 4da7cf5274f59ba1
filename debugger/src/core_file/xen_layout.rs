//! Compatibility tests against the layout Xen's own writer produces
//! (tools/libs/guest/xg_core.c `xc_domain_dumpcore_via_callback`, the contexts of
//! xen/arch/x86/domctl.c `arch_get_info_guest`). [`XenCore`] builds such a core byte
//! by byte from raw offsets, without the codecs in `format.rs`, so a mistake shared by
//! Basalt's reader and writer shows up here: Basalt's cores must equal it (plus the
//! `.basalt_*` sections after Xen's), and everything it can produce must open.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::tests::{find_section, page_pattern, section_names};
use super::*;
use crate::target::testing::FakeTarget;
use crate::target::{AddressSpace, Registers, Target, TargetError, VcpuRunState};

const PAGE: usize = 4096;
const FILLER: u64 = u64::MAX;
const MAGIC_PV: u64 = 0xF00F_EBED;
const MAGIC_HVM: u64 = 0xF00F_EBEE;
const NOTE_NONE: u32 = 0x0200_0000;
const NOTE_HEADER: u32 = 0x0200_0001;
const NOTE_XEN_VERSION: u32 = 0x0200_0002;
const NOTE_FORMAT_VERSION: u32 = 0x0200_0003;
const SHT_PROGBITS: u32 = 1;
const SHT_STRTAB: u32 = 3;
const SHT_NOTE: u32 = 7;
const CONTEXT: usize = 5168;
const VGCF_I387_VALID: u64 = 1;
const VGCF_IN_KERNEL: u64 = 1 << 2;
const VGCF_ONLINE: u64 = 1 << 5;

fn put(bytes: &mut [u8], offset: usize, value: &[u8]) {
    bytes[offset..offset + value.len()].copy_from_slice(value);
}

fn read_u16(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes(bytes[offset..offset + 2].try_into().unwrap())
}

fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
}

fn read_u64(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
}

/// `vcpu_guest_context` (arch-x86/xen.h, x86_64) as arch_get_info_guest fills it.
/// Offsets: flags 512; user_regs 520 (r15 +0 ... rdi +112, rip +128, cs +136,
/// rflags +144, rsp +152, ss +160, es +168, ds +176, fs +184, gs +192); ctrlreg 4984;
/// fs_base 5144; gs_base_kernel 5152; gs_base_user 5160.
fn context(registers: &Registers, flags: u64, gs_base_kernel: u64, gs_base_user: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; CONTEXT];
    put(&mut bytes, 512, &flags.to_le_bytes());
    let general = [
        registers.r15,
        registers.r14,
        registers.r13,
        registers.r12,
        registers.rbp,
        registers.rbx,
        registers.r11,
        registers.r10,
        registers.r9,
        registers.r8,
        registers.rax,
        registers.rcx,
        registers.rdx,
        registers.rsi,
        registers.rdi,
    ];
    for (index, value) in general.iter().enumerate() {
        put(&mut bytes, 520 + index * 8, &value.to_le_bytes());
    }
    put(&mut bytes, 520 + 128, &registers.rip.to_le_bytes());
    put(&mut bytes, 520 + 136, &registers.cs.to_le_bytes());
    put(&mut bytes, 520 + 144, &registers.rflags.to_le_bytes());
    put(&mut bytes, 520 + 152, &registers.rsp.to_le_bytes());
    for (offset, selector) in
        [(160, registers.ss), (168, registers.es), (176, registers.ds), (184, registers.fs), (192, registers.gs)]
    {
        put(&mut bytes, 520 + offset, &selector.to_le_bytes());
    }
    for (index, value) in [(0, registers.cr0), (2, registers.cr2), (3, registers.cr3), (4, registers.cr4)] {
        put(&mut bytes, 4984 + index * 8, &value.to_le_bytes());
    }
    put(&mut bytes, 5144, &registers.fs_base.to_le_bytes());
    put(&mut bytes, 5152, &gs_base_kernel.to_le_bytes());
    put(&mut bytes, 5160, &gs_base_user.to_le_bytes());
    bytes
}

/// An HVM/PVH vCPU's context: `VGCF_i387_valid`, `VGCF_online` unless down, and the
/// loaded GS base in `gs_base_kernel` when `ring_0(cs)`, else in `gs_base_user`.
pub(super) fn hvm_context(registers: &Registers) -> Vec<u8> {
    let online = if registers.state == VcpuRunState::Down { 0 } else { VGCF_ONLINE };
    let (kernel, user) = if registers.cs & 3 == 0 {
        (registers.gs_base, registers.kernel_gs_base)
    } else {
        (registers.kernel_gs_base, registers.gs_base)
    };
    context(registers, VGCF_I387_VALID | online, kernel, user)
}

/// A 64-bit PV vCPU's context: the kernel's and the user's GS base whatever the mode,
/// `VGCF_in_kernel` when it was in its kernel (which runs in ring 3).
fn pv_context(registers: &Registers, kernel_gs: u64, user_gs: u64, in_kernel: bool) -> Vec<u8> {
    let flags = VGCF_I387_VALID | VGCF_ONLINE | if in_kernel { VGCF_IN_KERNEL } else { 0 };
    context(registers, flags, kernel_gs, user_gs)
}

/// `xen_dumpcore_elfnote_xen_version_desc`: major 0, minor 8, extra_version[16] 16,
/// compile_info (64+16+32+32) 32, capabilities[1024] 176, changeset[64] 1200,
/// platform_parameters 1264, pagesize 1272; 1280 bytes.
pub(super) fn xen_version(major: u64, minor: u64, extra: &str, capabilities: &str, virt_start: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; 1280];
    put(&mut bytes, 0, &major.to_le_bytes());
    put(&mut bytes, 8, &minor.to_le_bytes());
    put(&mut bytes, 16, extra.as_bytes());
    put(&mut bytes, 176, capabilities.as_bytes());
    put(&mut bytes, 1264, &virt_start.to_le_bytes());
    put(&mut bytes, 1272, &4096u64.to_le_bytes());
    bytes
}

/// One extra section: name, type, sh_addralign, sh_entsize, contents.
pub(super) type Extra = (String, u32, u64, u64, Vec<u8>);

/// A dump-core as xg_core.c lays it out. Sections, in the table and in the file:
/// null, `.shstrtab` (data last), `.note.Xen`, `.xen_prstatus`, `arch` (where
/// xg_core.c asks the architecture for its own sections; none on x86), then
/// `.xen_shared_info`, `.xen_pages` (page-aligned), `.xen_pfn`/`.xen_p2m`, and
/// `trailing` (where Basalt puts its own).
pub(super) struct XenCore {
    pub magic: u64,
    pub machine: u16,
    /// (note type, descriptor) in file order.
    pub notes: Vec<(u32, Vec<u8>)>,
    pub contexts: Vec<Vec<u8>>,
    /// One entry per `.xen_pages` slot; [`FILLER`] is a zero page.
    pub frames: Vec<u64>,
    /// The gmfn column of `.xen_p2m`; `None` writes `.xen_pfn`.
    pub machine_frames: Option<Vec<u64>>,
    pub shared_info: Option<Vec<u8>>,
    pub arch: Vec<Extra>,
    pub trailing: Vec<Extra>,
    /// Contents of a dumped page.
    pub page: fn(u64) -> Vec<u8>,
}

impl XenCore {
    /// What `xl dump-core` writes for an HVM/PVH guest on Xen 4.17.3: notes in
    /// xg_core.c's order, `nr_pages` = the slots, shared info mapped.
    pub fn hvm(registers: &[Registers], frames: &[u64]) -> XenCore {
        let mut core = XenCore {
            magic: MAGIC_HVM,
            machine: 62,
            notes: Vec::new(),
            contexts: registers.iter().map(hvm_context).collect(),
            frames: frames.to_vec(),
            machine_frames: None,
            shared_info: Some((0..PAGE).map(|index| index as u8 ^ 0x5a).collect()),
            arch: Vec::new(),
            trailing: Vec::new(),
            page: page_pattern,
        };
        core.notes = core.standard_notes(
            frames.len() as u64,
            xen_version(
                4,
                17,
                ".3",
                "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64",
                0xFFFF_8000_0000_0000,
            ),
        );
        core
    }

    /// NONE, HEADER, XEN_VERSION, FORMAT_VERSION (0.1), as xg_core.c:762-780 writes them.
    pub fn standard_notes(&self, pages: u64, version: Vec<u8>) -> Vec<(u32, Vec<u8>)> {
        let mut header = Vec::new();
        for value in [self.magic, self.contexts.len() as u64, pages, 4096] {
            header.extend_from_slice(&value.to_le_bytes());
        }
        vec![
            (NOTE_NONE, Vec::new()),
            (NOTE_HEADER, header),
            (NOTE_XEN_VERSION, version),
            (NOTE_FORMAT_VERSION, 1u64.to_le_bytes().to_vec()),
        ]
    }

    pub fn build(&self) -> Vec<u8> {
        let mut notes = Vec::new();
        for (note_type, descriptor) in &self.notes {
            // struct elfnote: namesz 4, descsz, type, "Xen\0"; every descriptor is a
            // multiple of 4 bytes, so nothing pads it.
            notes.extend_from_slice(&4u32.to_le_bytes());
            notes.extend_from_slice(&(descriptor.len() as u32).to_le_bytes());
            notes.extend_from_slice(&note_type.to_le_bytes());
            notes.extend_from_slice(b"Xen\0");
            notes.extend_from_slice(descriptor);
        }
        let mut pages = Vec::new();
        let mut table = Vec::new();
        for (slot, &frame) in self.frames.iter().enumerate() {
            if frame == FILLER {
                pages.extend_from_slice(&[0u8; PAGE]);
            } else {
                pages.extend_from_slice(&(self.page)(frame));
            }
            table.extend_from_slice(&frame.to_le_bytes());
            if let Some(machine) = &self.machine_frames {
                table.extend_from_slice(&machine[slot].to_le_bytes());
            }
        }

        // (name, type, align, entsize, contents, page-align first)
        let mut sections: Vec<(String, u32, u64, u64, Vec<u8>, bool)> = vec![
            (String::from(".note.Xen"), SHT_NOTE, 0, 0, notes, false),
            (String::from(".xen_prstatus"), SHT_PROGBITS, 8, CONTEXT as u64, self.contexts.concat(), false),
        ];
        for (name, section_type, align, entry_size, bytes) in &self.arch {
            sections.push((name.clone(), *section_type, *align, *entry_size, bytes.clone(), false));
        }
        if let Some(shared) = &self.shared_info {
            sections.push((String::from(".xen_shared_info"), SHT_PROGBITS, 8, PAGE as u64, shared.clone(), false));
        }
        sections.push((String::from(".xen_pages"), SHT_PROGBITS, PAGE as u64, PAGE as u64, pages, true));
        match self.machine_frames {
            Some(_) => sections.push((String::from(".xen_p2m"), SHT_PROGBITS, 8, 16, table, false)),
            None => sections.push((String::from(".xen_pfn"), SHT_PROGBITS, 8, 8, table, false)),
        }
        for (name, section_type, align, entry_size, bytes) in &self.trailing {
            sections.push((name.clone(), *section_type, *align, *entry_size, bytes.clone(), false));
        }

        let mut names = vec![0u8];
        let mut name_offsets = Vec::new();
        for name in core::iter::once(".shstrtab").chain(sections.iter().map(|section| section.0.as_str())) {
            name_offsets.push(names.len() as u32);
            names.extend_from_slice(name.as_bytes());
            names.push(0);
        }
        let count = sections.len() + 2;
        // xg_core.c: data starts right after the ELF header and the section table;
        // only .xen_pages is rounded up (to a page); Basalt's trailing sections keep
        // their own alignment.
        let mut offset = 64 + count * 64;
        let mut placed = Vec::new();
        for (_, _, align, _, bytes, page_aligned) in &sections {
            if *page_aligned {
                offset = offset.div_ceil(PAGE) * PAGE;
            } else if *align > 1 {
                offset = offset.div_ceil(*align as usize) * *align as usize;
            }
            placed.push(offset);
            offset += bytes.len();
        }
        let names_offset = offset;

        let mut file = vec![0u8; 64];
        // e_ident: ELFCLASS64, ELFDATA2LSB, EV_CURRENT, ELFOSABI_SYSV, EI_ABIVERSION =
        // EV_CURRENT (xc_core_ehdr_init).
        put(&mut file, 0, &[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 1]);
        put(&mut file, 16, &4u16.to_le_bytes()); // ET_CORE
        put(&mut file, 18, &self.machine.to_le_bytes());
        put(&mut file, 20, &1u32.to_le_bytes()); // e_version
        put(&mut file, 40, &64u64.to_le_bytes()); // e_shoff; e_entry, e_phoff, e_flags 0
        put(&mut file, 52, &64u16.to_le_bytes()); // e_ehsize
        put(&mut file, 54, &56u16.to_le_bytes()); // e_phentsize; e_phnum 0
        put(&mut file, 58, &64u16.to_le_bytes()); // e_shentsize
        put(&mut file, 60, &(count as u16).to_le_bytes());
        put(&mut file, 62, &1u16.to_le_bytes()); // e_shstrndx
        let section_header = |name: u32, section_type: u32, offset: usize, size: usize, align: u64, entry: u64| {
            let mut header = vec![0u8; 64];
            put(&mut header, 0, &name.to_le_bytes());
            put(&mut header, 4, &section_type.to_le_bytes());
            put(&mut header, 24, &(offset as u64).to_le_bytes());
            put(&mut header, 32, &(size as u64).to_le_bytes());
            put(&mut header, 48, &align.to_le_bytes());
            put(&mut header, 56, &entry.to_le_bytes());
            header
        };
        file.extend_from_slice(&[0u8; 64]);
        file.extend_from_slice(&section_header(name_offsets[0], SHT_STRTAB, names_offset, names.len(), 0, 0));
        for (index, (_, section_type, align, entry_size, bytes, _)) in sections.iter().enumerate() {
            file.extend_from_slice(&section_header(
                name_offsets[index + 1],
                *section_type,
                placed[index],
                bytes.len(),
                *align,
                *entry_size,
            ));
        }
        for (index, section) in sections.iter().enumerate() {
            file.resize(placed[index], 0);
            file.extend_from_slice(&section.4);
        }
        file.extend_from_slice(&names);
        file
    }
}

/// Registers of a Linux kernel stopped in kernel mode (CS 0x10, ring 0), long mode.
fn kernel_mode_registers(seed: u64) -> Registers {
    Registers {
        rax: seed,
        rbx: seed + 1,
        rcx: seed + 2,
        rdx: seed + 3,
        rsi: seed + 4,
        rdi: seed + 5,
        rbp: seed + 6,
        rsp: 0xffff_c900_0000_0000 + seed,
        r8: seed + 8,
        r9: seed + 9,
        r10: seed + 10,
        r11: seed + 11,
        r12: seed + 12,
        r13: seed + 13,
        r14: seed + 14,
        r15: seed + 15,
        rip: 0xffff_ffff_8100_0000 + seed,
        rflags: 0x246,
        cr0: 0x8005_0033,
        cr2: 0x7f00_0000_0000 + seed,
        cr3: 0x0010_a000 + (seed << 12),
        cr4: 0x0036_06f0,
        efer: 0x500,
        cs: 0x10,
        ss: 0x18,
        ds: 0,
        es: 0,
        fs: 0,
        gs: 0,
        fs_base: 0x7f12_3456_0000 + seed,
        gs_base: 0xffff_8880_3fc0_0000 + (seed << 16),
        kernel_gs_base: 0x7f65_4321_0000 + seed,
        state: VcpuRunState::Running,
    }
}

fn user_mode_registers(seed: u64) -> Registers {
    Registers { cs: 0x33, ss: 0x2b, rip: 0x40_1000 + seed, ..kernel_mode_registers(seed) }
}

fn open(bytes: &[u8]) -> CoreFile<&[u8]> {
    match CoreFile::open(bytes, "xl.core") {
        Ok(core) => core,
        Err(error) => panic!("a core in Xen's layout did not open: {error}"),
    }
}

fn read_page(core: &dyn Target, frame: u64) -> Result<Vec<u8>, TargetError> {
    let mut page = vec![0u8; PAGE];
    core.read_physical(frame << 12, &mut page).map(|()| page)
}

// ---- Basalt writes Xen's layout ------------------------------------------------------

/// A FakeTarget in kernel mode with pages at `frames` (contents `page_pattern`).
fn target_with(frames: &[u64], registers: Vec<Registers>) -> FakeTarget {
    let mut target = FakeTarget::new();
    target.info.vcpus = registers.len() as u32;
    target.registers = registers;
    for &frame in frames {
        target.write_physical(frame << 12, &page_pattern(frame));
    }
    target
}

/// Basalt's own sections, copied out of a Basalt core with their headers' values.
fn basalt_sections(bytes: &[u8]) -> Vec<Extra> {
    section_names(bytes)
        .into_iter()
        .filter(|name| name.starts_with(".basalt_"))
        .map(|name| {
            let (_, header) = find_section(bytes, &name);
            let contents = bytes[header.offset as usize..(header.offset + header.size) as usize].to_vec();
            (name, header.section_type, header.alignment, header.entry_size, contents)
        })
        .collect()
}

fn write(target: &dyn Target) -> Vec<u8> {
    let mut sink = Vec::new();
    write_core(target, &mut sink, &mut |_, _| {}).unwrap();
    sink
}

/// What Basalt's writer says in the XEN_VERSION note.
fn basalt_version() -> Vec<u8> {
    xen_version(4, 17, "-basalt", "hvm-3.0-x86_64", 0xFFFF_8000_0000_0000)
}

#[test]
fn a_basalt_core_is_xens_layout_followed_by_basalt_sections() {
    let frames = [0, 1, 2, 0x100, 0x7fff0];
    let mut down = user_mode_registers(2);
    down.state = VcpuRunState::Down;
    let mut target = target_with(&frames, vec![kernel_mode_registers(1), user_mode_registers(3), down]);
    target.shared_info = Some((0..PAGE).map(|index| index as u8 ^ 0x5a).collect());
    target.kernel_symbol_file = Some(b"\x7fELF symbols".to_vec());
    let bytes = write(&target);

    let mut xen = XenCore::hvm(&target.registers, &frames);
    xen.notes = xen.standard_notes(frames.len() as u64, basalt_version());
    xen.trailing = basalt_sections(&bytes);
    let expected = xen.build();
    // Section by section first, so a failure says where.
    assert_eq!(
        section_names(&bytes)[..7],
        ["", ".shstrtab", ".note.Xen", ".xen_prstatus", ".xen_shared_info", ".xen_pages", ".xen_pfn"]
    );
    assert_eq!(bytes[..64], expected[..64], "ELF header");
    for name in section_names(&expected).iter().skip(1) {
        let (index, want) = find_section(&expected, name);
        let (found_index, got) = find_section(&bytes, name);
        assert_eq!((found_index, got), (index, want), "section header of {name}");
        let range = want.offset as usize..(want.offset + want.size) as usize;
        assert!(bytes[range.clone()] == expected[range], "contents of {name}");
    }
    assert_eq!(bytes.len(), expected.len());
    assert!(bytes == expected, "padding differs");
}

#[test]
fn a_basalt_core_of_a_guest_without_shared_info_has_no_such_section() {
    // xg_core.c:672 writes .xen_shared_info only when the page could be mapped, which
    // for an HVM guest means the guest placed it in its physmap.
    let frames = [3, 4];
    let target = target_with(&frames, vec![kernel_mode_registers(7)]);
    let bytes = write(&target);
    let mut xen = XenCore::hvm(&target.registers, &frames);
    xen.shared_info = None;
    xen.notes = xen.standard_notes(2, basalt_version());
    xen.trailing = basalt_sections(&bytes);
    assert!(bytes == xen.build());
    assert!(!section_names(&bytes).iter().any(|name| name == ".xen_shared_info"));
}

/// Lists a frame it cannot read, as a page that vanished during a dump.
struct LosesPages {
    inner: FakeTarget,
    lost: Vec<u64>,
}

impl Target for LosesPages {
    fn info(&self) -> crate::target::TargetInfo {
        self.inner.info()
    }
    fn registers(&self, vcpu: u32) -> Result<Registers, TargetError> {
        self.inner.registers(vcpu)
    }
    fn read_physical(&self, address: u64, buffer: &mut [u8]) -> Result<(), TargetError> {
        self.inner.read_physical(address, buffer)
    }
    fn memory_ranges(&self) -> Vec<(u64, u64)> {
        let mut ranges = self.inner.memory_ranges();
        ranges.extend(self.lost.iter().map(|&frame| (frame << 12, (frame + 1) << 12)));
        ranges
    }
}

#[test]
fn unreadable_pages_become_filler_at_the_end_as_xen_pads() {
    // xg_core.c:868-870 skips a page it cannot map without using a slot, and
    // :900-918 pads the missing slots at the end with zero pages and ~0 pfns, so the
    // table stays ascending (crash's xendump.c depends on that).
    let readable: Vec<u64> = (0..40).filter(|frame| frame % 7 != 3).chain([0x200]).collect();
    let lost: Vec<u64> = (0..40).filter(|frame| frame % 7 == 3).collect();
    let target = LosesPages { inner: target_with(&readable, vec![kernel_mode_registers(1)]), lost: lost.clone() };
    let bytes = write(&target);

    let mut slots = readable.clone();
    slots.extend(lost.iter().map(|_| FILLER));
    let mut xen = XenCore::hvm(&target.inner.registers, &slots);
    xen.shared_info = None;
    xen.notes = xen.standard_notes(slots.len() as u64, basalt_version());
    xen.trailing = basalt_sections(&bytes);
    assert!(bytes == xen.build());

    let (_, table) = find_section(&bytes, ".xen_pfn");
    let entries: Vec<u64> = (0..slots.len()).map(|slot| read_u64(&bytes, table.offset as usize + slot * 8)).collect();
    assert_eq!(entries, slots);
    let core = open(&bytes);
    assert_eq!(read_page(&core, 0x200), Ok(page_pattern(0x200)));
    assert!(matches!(read_page(&core, 3), Err(TargetError::Unmapped { .. })));
    assert_eq!(core.info().memory_bytes, 4096 * readable.len() as u64);
    assert_eq!(core_size(&target), Ok(bytes.len() as u64));
}

#[test]
fn contexts_follow_arch_get_info_guest_for_hvm() {
    let kernel = kernel_mode_registers(1);
    let user = user_mode_registers(2);
    let mut down = kernel_mode_registers(3);
    down.state = VcpuRunState::Down;
    let mut blocked = kernel_mode_registers(4);
    blocked.state = VcpuRunState::Blocked;
    for registers in [kernel, user, down, blocked] {
        let written = format::encode_context(&registers);
        assert!(written == hvm_context(&registers), "cs {:#x} state {:?}", registers.cs, registers.state);
    }
    // In ring 0 the loaded GS base is gs_base_kernel (5152).
    assert_eq!(read_u64(&format::encode_context(&kernel), 5152), kernel.gs_base);
    assert_eq!(read_u64(&format::encode_context(&kernel), 5160), kernel.kernel_gs_base);
    assert_eq!(read_u64(&format::encode_context(&user), 5160), user.gs_base);
    assert_eq!(read_u64(&format::encode_context(&down), 512), VGCF_I387_VALID);
}

#[test]
fn elf_header_fields_are_xens() {
    let bytes = write(&target_with(&[1], vec![kernel_mode_registers(1)]));
    assert_eq!(bytes[..9], [0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 1]);
    assert_eq!(read_u16(&bytes, 16), 4, "e_type ET_CORE");
    assert_eq!(read_u16(&bytes, 18), 62, "e_machine EM_X86_64");
    assert_eq!(read_u32(&bytes, 20), 1, "e_version");
    assert_eq!((read_u64(&bytes, 24), read_u64(&bytes, 32)), (0, 0), "e_entry, e_phoff");
    assert_eq!(read_u64(&bytes, 40), 64, "e_shoff");
    assert_eq!(read_u32(&bytes, 48), 0, "e_flags");
    assert_eq!((read_u16(&bytes, 52), read_u16(&bytes, 54), read_u16(&bytes, 56)), (64, 56, 0));
    assert_eq!((read_u16(&bytes, 58), read_u16(&bytes, 62)), (64, 1), "e_shentsize, e_shstrndx");
}

// ---- Basalt reads what Xen writes ----------------------------------------------------

fn expected_from_xen(registers: &Registers) -> Registers {
    // Xen records neither EFER nor "blocked"; long mode is inferred from CR0/CR4.
    let mut expected = *registers;
    expected.efer = 0x500;
    if expected.state == VcpuRunState::Blocked {
        expected.state = VcpuRunState::Running;
    }
    expected
}

#[test]
fn an_xl_dump_core_of_an_hvm_guest_opens() {
    let mut down = user_mode_registers(5);
    down.state = VcpuRunState::Down;
    let registers = [kernel_mode_registers(1), user_mode_registers(2), down];
    // tot_pages counted special pages that sit in the MMIO hole xg_core.c skips, so
    // the header's nr_pages includes two filler slots at the end.
    let frames = [0, 1, 2, 0x9f, 0xc0, 0xc1, 0x10_0000, FILLER, FILLER];
    let bytes = XenCore::hvm(&registers, &frames).build();
    let core = open(&bytes);
    assert!(!core.is_basalt_core());
    let info = core.info();
    assert_eq!(info.hypervisor, "Xen 4.17.3");
    assert_eq!(info.vcpus, 3);
    assert_eq!(info.memory_bytes, 7 * 4096);
    for (vcpu, registers) in registers.iter().enumerate() {
        assert_eq!(core.registers(vcpu as u32), Ok(expected_from_xen(registers)), "vCPU {vcpu}");
    }
    assert_eq!(
        core.memory_ranges(),
        vec![(0, 0x3000), (0x9f000, 0xa0000), (0xc0000, 0xc2000), (1 << 32, (1 << 32) + 0x1000)]
    );
    for frame in [0, 2, 0x9f, 0xc1, 0x10_0000] {
        assert_eq!(read_page(&core, frame), Ok(page_pattern(frame)), "frame {frame:#x}");
    }
    assert_eq!(read_page(&core, 0xa0), Err(TargetError::Unmapped { space: AddressSpace::Physical, address: 0xa0000 }));
    assert_eq!(core.shared_info().unwrap().map(|page| page[1]), Some(1 ^ 0x5a));
    assert!(matches!(core.read_machine(0, &mut [0u8; 8]), Err(TargetError::Unsupported(_))));
}

#[test]
fn an_hvm_core_without_shared_info_opens() {
    let mut xen = XenCore::hvm(&[kernel_mode_registers(1)], &[5, 6]);
    xen.shared_info = None;
    let bytes = xen.build();
    let core = open(&bytes);
    assert_eq!(core.shared_info(), Ok(None));
    assert_eq!(read_page(&core, 6), Ok(page_pattern(6)));
}

#[test]
fn notes_in_any_order_open() {
    let base = XenCore::hvm(&[kernel_mode_registers(1)], &[5, 6, FILLER]);
    let orders: [[usize; 4]; 3] = [[3, 2, 1, 0], [1, 0, 3, 2], [2, 3, 0, 1]];
    for order in orders {
        let mut xen = XenCore::hvm(&[kernel_mode_registers(1)], &[5, 6, FILLER]);
        xen.notes = order.iter().map(|&index| base.notes[index].clone()).collect();
        let bytes = xen.build();
        let core = open(&bytes);
        assert_eq!(core.info().hypervisor, "Xen 4.17.3", "order {order:?}");
        assert_eq!(core.info().memory_bytes, 2 * 4096);
        assert_eq!(read_page(&core, 5), Ok(page_pattern(5)));
    }
    // Without the optional-looking ones (only the header is needed to read).
    let mut minimal = XenCore::hvm(&[kernel_mode_registers(1)], &[5]);
    minimal.notes.retain(|(note_type, _)| *note_type == NOTE_HEADER);
    let bytes = minimal.build();
    let core = open(&bytes);
    assert_eq!(core.info().hypervisor, "Xen (version unknown)");
}

#[test]
fn extra_sections_where_xen_puts_arch_context_are_skipped() {
    // xg_core.c:665 lets the architecture add sections after .xen_prstatus (ia64 had
    // .xen_ia64_mapped_regs; x86 adds none): an empty one and a full one.
    let mut xen = XenCore::hvm(&[kernel_mode_registers(1)], &[5, 6]);
    xen.arch = vec![
        (String::from(".xen_arch_empty"), SHT_PROGBITS, 8, 0, Vec::new()),
        (String::from(".xen_ia64_mapped_regs"), SHT_PROGBITS, 8, 64, vec![0xee; 128]),
    ];
    let bytes = xen.build();
    let core = open(&bytes);
    assert_eq!(read_page(&core, 6), Ok(page_pattern(6)));
    assert_eq!(core.registers(0), Ok(expected_from_xen(&kernel_mode_registers(1))));
}

#[test]
fn an_unsorted_pfn_table_with_filler_anywhere_opens() {
    // Xen writes ascending pfns with filler last; docs/misc/dump-core-format.txt
    // tells readers to follow the headers, so nothing here relies on the order.
    let frames = [FILLER, 0x30, 2, FILLER, 0x10, 1, 0x31];
    let bytes = XenCore::hvm(&[kernel_mode_registers(1)], &frames).build();
    let core = open(&bytes);
    assert_eq!(core.memory_ranges(), vec![(0x1000, 0x3000), (0x10000, 0x11000), (0x30000, 0x32000)]);
    for frame in [1, 2, 0x10, 0x30, 0x31] {
        assert_eq!(read_page(&core, frame), Ok(page_pattern(frame)), "frame {frame:#x}");
    }
    let mut straddle = [0u8; 16];
    core.read_physical(0x31000 - 8, &mut straddle).unwrap();
    assert_eq!(straddle[..8], page_pattern(0x30)[4088..]);
    assert_eq!(straddle[8..], page_pattern(0x31)[..8]);
}

#[test]
fn a_pv_core_takes_gs_from_vgcf_in_kernel_and_tolerates_a_shared_machine_frame() {
    // A 64-bit PV kernel runs in ring 3, so the ring says nothing: Xen keeps the
    // kernel's GS base in gs_base_kernel and flags VGCF_in_kernel.
    let mut registers = kernel_mode_registers(1);
    registers.cs = 0xe033;
    let (kernel_gs, user_gs) = (0xffff_8880_0000_0000, 0x7f00_0000_1000);
    let frames = [0, 1, 2, FILLER];
    let mut xen = XenCore::hvm(&[registers], &frames);
    xen.magic = MAGIC_PV;
    xen.contexts =
        vec![pv_context(&registers, kernel_gs, user_gs, true), pv_context(&registers, kernel_gs, user_gs, false)];
    xen.notes = xen.standard_notes(frames.len() as u64, xen_version(4, 17, ".3", "xen-3.0-x86_64", 0));
    // pfns 1 and 2 share machine frame 0x900 (the guest's own p2m said so).
    xen.machine_frames = Some(vec![0x800, 0x900, 0x900, FILLER]);
    let bytes = xen.build();
    let core = open(&bytes);
    let in_kernel = core.registers(0).unwrap();
    assert_eq!((in_kernel.gs_base, in_kernel.kernel_gs_base), (kernel_gs, user_gs));
    assert_eq!(in_kernel.efer, 0x500);
    let in_user = core.registers(1).unwrap();
    assert_eq!((in_user.gs_base, in_user.kernel_gs_base), (user_gs, kernel_gs));
    assert_eq!(core.physical_to_machine(0x2010), Some(0x90_0010));
    let mut word = [0u8; 8];
    core.read_machine(0x90_0000, &mut word).unwrap();
    assert_eq!(word[..], page_pattern(1)[..8]);
    core.read_machine(0x80_0008, &mut word).unwrap();
    assert_eq!(word[..], page_pattern(0)[8..16]);
}
