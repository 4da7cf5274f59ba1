//! Tests of the dump-core writer and reader: a Basalt core of a FakeTarget reads back
//! exactly, a hand-built Xen-style core (only Xen's sections) opens, and damaged or
//! hostile files fail with an error instead of panicking.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use sha2::{Digest, Sha256};

use super::format::{self, SectionHeader, CONTEXT_SIZE, PAGE_SIZE};
use super::xen_layout::{xen_version, XenCore};
use super::*;
use crate::target::testing::FakeTarget;
use crate::target::{
    AddressSpace, ChannelBinding, EventChannel, GrantEntry, Registers, Target, TargetError, TargetKind, VcpuRunState,
    XenstoreNode,
};

/// Registers with every field distinct (so a swapped field shows), long mode on.
fn distinct_registers(seed: u64, state: VcpuRunState) -> Registers {
    let value = |index: u64| seed.wrapping_mul(0x1_0000_0001).wrapping_add(index * 0x1111);
    Registers {
        rax: value(1),
        rbx: value(2),
        rcx: value(3),
        rdx: value(4),
        rsi: value(5),
        rdi: value(6),
        rbp: value(7),
        rsp: value(8),
        r8: value(9),
        r9: value(10),
        r10: value(11),
        r11: value(12),
        r12: value(13),
        r13: value(14),
        r14: value(15),
        r15: value(16),
        rip: value(17),
        rflags: 0x246,
        cr0: 0x8005_0033,
        cr2: value(18),
        cr3: 0x1234_5000 + seed * 0x1000,
        cr4: 0x0036_06f0,
        efer: 0xd01,
        cs: 0x10 + seed as u16,
        ss: 0x18 + seed as u16,
        ds: 0x20 + seed as u16,
        es: 0x28 + seed as u16,
        fs: 0x30 + seed as u16,
        gs: 0x38 + seed as u16,
        fs_base: value(19),
        gs_base: value(20),
        kernel_gs_base: value(21),
        state,
    }
}

pub(super) fn page_pattern(frame: u64) -> Vec<u8> {
    (0..PAGE_SIZE).map(|index| (index as u8) ^ (frame as u8).wrapping_mul(31) ^ ((index >> 8) as u8)).collect()
}

const FRAMES: [u64; 5] = [0, 1, 0x100, 0x101, 0x7fff0];

fn fixture() -> FakeTarget {
    let mut target = FakeTarget::new();
    target.info.domain_id = 7;
    target.info.domain_name = String::from("guest");
    target.info.vcpus = 2;
    target.info.state = String::from("paused");
    target.info.vcpu_snapshot = String::from("domain paused; registers as saved at each vCPU's last exit");
    target.info.hypervisor = String::from("Basalt 0.1.0");
    target.info.host = Some(String::from("appliance-1"));
    target.registers = vec![distinct_registers(1, VcpuRunState::Running), distinct_registers(2, VcpuRunState::Blocked)];
    for frame in FRAMES {
        target.write_physical(frame * PAGE_SIZE, &page_pattern(frame));
    }
    target.info.memory_bytes = 256 << 20;
    target.event_channels = Some(vec![
        EventChannel {
            port: 1,
            binding: ChannelBinding::Interdomain { remote_domain: 0, remote_port: 9 },
            vcpu: 0,
            pending: Some(false),
            masked: Some(true),
            owner: Some(String::from("xenstore")),
        },
        EventChannel {
            port: 2,
            binding: ChannelBinding::Unbound { remote_domain: 3 },
            vcpu: 1,
            pending: None,
            masked: None,
            owner: None,
        },
        EventChannel {
            port: 3,
            binding: ChannelBinding::Virq(0),
            vcpu: 1,
            pending: Some(true),
            masked: Some(false),
            owner: Some(String::from("")),
        },
        EventChannel { port: 4, binding: ChannelBinding::Ipi, vcpu: 0, pending: None, masked: None, owner: None },
        EventChannel { port: 5, binding: ChannelBinding::Pirq(17), vcpu: 0, pending: None, masked: None, owner: None },
        EventChannel { port: 6, binding: ChannelBinding::Unknown, vcpu: 0, pending: None, masked: None, owner: None },
    ]);
    target.grants = Some(vec![
        GrantEntry { reference: 8, flags: 0x19, domain: 0, frame: 0x101 },
        GrantEntry { reference: 9, flags: 0x1, domain: 0, frame: u64::MAX },
    ]);
    target.xenstore = Some(vec![
        XenstoreNode { path: String::from("/local/domain/7/name"), value: b"guest".to_vec() },
        XenstoreNode { path: String::from("/local/domain/7/data"), value: vec![0, 0xff, 10] },
        XenstoreNode { path: String::from("/local/domain/7/empty"), value: Vec::new() },
    ]);
    target.shared_info = Some((0..PAGE_SIZE).map(|index| (index * 7) as u8).collect());
    target.kernel_symbol_file = Some(b"\x7fELF pretend symbol file".to_vec());
    target
}

fn write(target: &dyn Target) -> (Vec<u8>, CoreSummary, Vec<(u64, u64)>) {
    let mut sink = Vec::new();
    let mut reports = Vec::new();
    let summary = write_core(target, &mut sink, &mut |done, total| reports.push((done, total))).unwrap();
    (sink, summary, reports)
}

fn assert_same_target(core: &dyn Target, original: &FakeTarget) {
    let info = core.info();
    let mut expected = original.info.clone();
    expected.kind = TargetKind::CoreFile { source: String::from("test.core") };
    assert_eq!(info, expected);
    for vcpu in 0..original.registers.len() as u32 {
        let read = core.registers(vcpu).unwrap();
        let want = original.registers[vcpu as usize];
        // Field by field first, so a failure names the field.
        assert_eq!(read.rax, want.rax);
        assert_eq!(read.r15, want.r15);
        assert_eq!(read.rip, want.rip);
        assert_eq!(read.rsp, want.rsp);
        assert_eq!(read.rflags, want.rflags);
        assert_eq!(
            (read.cr0, read.cr2, read.cr3, read.cr4, read.efer),
            (want.cr0, want.cr2, want.cr3, want.cr4, want.efer)
        );
        assert_eq!(
            (read.cs, read.ss, read.ds, read.es, read.fs, read.gs),
            (want.cs, want.ss, want.ds, want.es, want.fs, want.gs)
        );
        assert_eq!(
            (read.fs_base, read.gs_base, read.kernel_gs_base),
            (want.fs_base, want.gs_base, want.kernel_gs_base)
        );
        assert_eq!(read.state, want.state);
        assert_eq!(read, want);
    }
    assert_eq!(core.registers(original.registers.len() as u32), Err(TargetError::NoSuchVcpu(2)));
    assert_eq!(core.memory_ranges(), original.memory_ranges());
    for frame in FRAMES {
        let mut page = vec![0u8; PAGE_SIZE as usize];
        core.read_physical(frame * PAGE_SIZE, &mut page).unwrap();
        assert_eq!(page, page_pattern(frame), "frame {frame:#x}");
    }
    assert_eq!(core.event_channels(), original.event_channels());
    assert_eq!(core.grants(), original.grants());
    assert_eq!(core.xenstore(), original.xenstore());
    assert_eq!(core.shared_info(), original.shared_info());
    assert_eq!(core.kernel_symbol_file(), original.kernel_symbol_file());
}

#[test]
fn a_written_core_reads_back_as_the_target() {
    let target = fixture();
    let (bytes, summary, _) = write(&target);
    let core = CoreFile::open(bytes.as_slice(), "test.core").unwrap();
    assert_same_target(&core, &target);
    assert!(core.is_basalt_core());

    // A read across the boundary of two adjacent dumped pages.
    let mut straddle = [0u8; 16];
    core.read_physical(0x1000 - 8, &mut straddle).unwrap();
    assert_eq!(straddle[..8], page_pattern(0)[4088..]);
    assert_eq!(straddle[8..], page_pattern(1)[..8]);
    // ... and into a page that is not there.
    assert_eq!(
        core.read_physical(0x2000 - 4, &mut straddle),
        Err(TargetError::Unmapped { space: AddressSpace::Physical, address: 0x2000 })
    );
    assert_eq!(
        core.read_physical(u64::MAX - 3, &mut straddle),
        Err(TargetError::Unmapped { space: AddressSpace::Physical, address: u64::MAX - 3 })
    );
    // An auto-translated core has no machine addresses.
    assert_eq!(core.physical_to_machine(0), None);
    assert!(matches!(core.read_machine(0, &mut straddle), Err(TargetError::Unsupported(_))));

    // The same through an owned buffer.
    let owned = CoreFile::open(bytes.clone(), "test.core").unwrap();
    assert_same_target(&owned, &target);
    assert_eq!(summary.bytes, bytes.len() as u64);
}

#[test]
fn size_checksum_and_progress_match_what_was_written() {
    let target = fixture();
    let expected_size = core_size(&target).unwrap();
    let (bytes, summary, reports) = write(&target);
    assert_eq!(summary.bytes, expected_size);
    assert_eq!(bytes.len() as u64, expected_size);
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    assert_eq!(summary.sha256, digest);

    assert!(!reports.is_empty() && reports.len() <= 101, "{} progress reports", reports.len());
    assert_eq!(reports.last(), Some(&(expected_size, expected_size)));
    assert!(reports.windows(2).all(|pair| pair[0].0 < pair[1].0));
    assert!(reports.iter().all(|&(done, total)| done <= total && total == expected_size));
}

#[test]
fn progress_is_bounded_for_a_large_core() {
    let mut target = FakeTarget::new();
    for frame in 0..1000u64 {
        target.write_physical(frame * PAGE_SIZE, &[frame as u8]);
    }
    let (bytes, summary, reports) = write(&target);
    assert!(reports.len() >= 50 && reports.len() <= 101, "{} progress reports", reports.len());
    assert_eq!(summary.bytes, bytes.len() as u64);
    let core = CoreFile::open(bytes.as_slice(), "big").unwrap();
    assert_eq!(core.memory_ranges(), vec![(0, 1000 * PAGE_SIZE)]);
    let mut byte = [0u8; 1];
    core.read_physical(999 * PAGE_SIZE, &mut byte).unwrap();
    assert_eq!(byte[0], (999u64 as u8));
}

#[test]
fn a_target_without_metadata_writes_a_core_without_those_sections() {
    let mut target = FakeTarget::new();
    target.write_physical(0x5000, b"hello");
    let (bytes, _, _) = write(&target);
    let core = CoreFile::open(bytes.as_slice(), "bare").unwrap();
    assert_eq!(core.event_channels(), Err(TargetError::Unsupported("event channel table")));
    assert_eq!(core.grants(), Err(TargetError::Unsupported("grant table")));
    assert_eq!(core.xenstore(), Err(TargetError::Unsupported("xenstore")));
    assert_eq!(core.shared_info(), Ok(None));
    assert_eq!(core.kernel_symbol_file(), None);
    let mut hello = [0u8; 5];
    core.read_physical(0x5000, &mut hello).unwrap();
    assert_eq!(&hello, b"hello");
    assert!(!section_names(&bytes).iter().any(|name| name == ".basalt_evtchns" || name == ".basalt_symbols"));
}

/// A target whose memory_ranges lists a page it cannot read (ballooned out while the
/// dump ran).
struct LosesAPage(FakeTarget);

impl Target for LosesAPage {
    fn info(&self) -> crate::target::TargetInfo {
        self.0.info()
    }
    fn registers(&self, vcpu: u32) -> Result<Registers, TargetError> {
        self.0.registers(vcpu)
    }
    fn read_physical(&self, address: u64, buffer: &mut [u8]) -> Result<(), TargetError> {
        self.0.read_physical(address, buffer)
    }
    fn memory_ranges(&self) -> Vec<(u64, u64)> {
        let mut ranges = self.0.memory_ranges();
        ranges.push((0x9000, 0xa000));
        ranges
    }
}

#[test]
fn an_unreadable_page_becomes_a_filler_slot() {
    let mut inner = FakeTarget::new();
    inner.write_physical(0x3000, b"kept");
    let (bytes, _, _) = write(&LosesAPage(inner));
    let core = CoreFile::open(bytes.as_slice(), "lossy").unwrap();
    assert_eq!(core.memory_ranges(), vec![(0x3000, 0x4000)]);
    let mut byte = [0u8; 1];
    assert!(matches!(core.read_physical(0x9000, &mut byte), Err(TargetError::Unmapped { .. })));
}

/// A target whose grant table read fails for real.
struct BrokenGrants(FakeTarget);

impl Target for BrokenGrants {
    fn info(&self) -> crate::target::TargetInfo {
        self.0.info()
    }
    fn registers(&self, vcpu: u32) -> Result<Registers, TargetError> {
        self.0.registers(vcpu)
    }
    fn read_physical(&self, address: u64, buffer: &mut [u8]) -> Result<(), TargetError> {
        self.0.read_physical(address, buffer)
    }
    fn memory_ranges(&self) -> Vec<(u64, u64)> {
        self.0.memory_ranges()
    }
    fn grants(&self) -> Result<Vec<GrantEntry>, TargetError> {
        Err(TargetError::Damaged(String::from("grant table frame went away")))
    }
}

struct FailingSink;

impl CoreSink for FailingSink {
    fn write_at(&mut self, offset: u64, _bytes: &[u8]) -> Result<(), String> {
        if offset > 0 {
            Err(String::from("disk full"))
        } else {
            Ok(())
        }
    }
}

#[test]
fn target_and_sink_failures_are_reported() {
    let error = core_size(&BrokenGrants(FakeTarget::new())).unwrap_err();
    assert_eq!(error, CoreWriteError::Target(TargetError::Damaged(String::from("grant table frame went away"))));
    let error = write_core(&fixture(), &mut FailingSink, &mut |_, _| {}).unwrap_err();
    assert_eq!(error, CoreWriteError::Sink(String::from("disk full")));
    assert_eq!(error.to_string(), "writing the core: disk full");
}

// ---- a core as Xen writes it ---------------------------------------------------------

/// A core with only Xen's sections in xg_core.c's layout (see `xen_layout`): pages
/// for `frames` (`INVALID_FRAME` = a filler slot); with `machine_frames` a PV core
/// (`.xen_p2m`).
fn xen_core(registers: &[Registers], frames: &[u64], machine_frames: Option<&[u64]>, shared_info: bool) -> Vec<u8> {
    let mut core = XenCore::hvm(registers, frames);
    if let Some(machine) = machine_frames {
        core.magic = format::XC_CORE_MAGIC;
        core.machine_frames = Some(machine.to_vec());
        core.notes = core.standard_notes(frames.len() as u64, xen_version(4, 17, ".3", "xen-3.0-x86_64", 0));
    }
    if !shared_info {
        core.shared_info = None;
    }
    core.build()
}

fn xen_registers() -> Vec<Registers> {
    let mut first = distinct_registers(3, VcpuRunState::Running);
    first.efer = 0x500;
    let mut second = distinct_registers(4, VcpuRunState::Down);
    // Real mode, not yet started: no long mode can be inferred.
    second.cr0 = 0x10;
    second.cr4 = 0;
    second.efer = 0;
    vec![first, second]
}

#[test]
fn a_xen_style_hvm_core_opens_and_reads() {
    let registers = xen_registers();
    let frames = [5, 2, format::INVALID_FRAME, 9, 3];
    let bytes = xen_core(&registers, &frames, None, true);
    let core = CoreFile::open(bytes.as_slice(), "xl.core").unwrap();
    assert!(!core.is_basalt_core());
    let info = core.info();
    assert_eq!(info.hypervisor, "Xen 4.17.3");
    assert_eq!(info.vcpus, 2);
    assert_eq!(info.memory_bytes, 4 * PAGE_SIZE);
    assert_eq!(info.kind, TargetKind::CoreFile { source: String::from("xl.core") });
    // The context lacks EFER: long mode comes from CR0.PG + CR4.PAE.
    assert_eq!(core.registers(0).unwrap(), registers[0]);
    assert_eq!(core.registers(1).unwrap(), registers[1]);
    assert_eq!(core.memory_ranges(), vec![(0x2000, 0x4000), (0x5000, 0x6000), (0x9000, 0xa000)]);
    for frame in [2, 3, 5, 9] {
        let mut page = vec![0u8; PAGE_SIZE as usize];
        core.read_physical(frame * PAGE_SIZE, &mut page).unwrap();
        assert_eq!(page, page_pattern(frame));
    }
    let shared = core.shared_info().unwrap().unwrap();
    assert_eq!(shared.len(), PAGE_SIZE as usize);
    assert_eq!(shared[1], 1 ^ 0x5a);
    assert!(matches!(core.event_channels(), Err(TargetError::Unsupported(_))));
    assert!(matches!(core.grants(), Err(TargetError::Unsupported(_))));
    assert!(matches!(core.xenstore(), Err(TargetError::Unsupported(_))));
    assert_eq!(core.kernel_symbol_file(), None);
}

#[test]
fn a_xen_style_pv_core_reads_machine_addresses_through_its_p2m() {
    let registers = xen_registers();
    let frames = [0, 1, format::INVALID_FRAME];
    let machine = [0x800, 0x123, format::INVALID_FRAME];
    let bytes = xen_core(&registers[..1], &frames, Some(&machine), false);
    let core = CoreFile::open(bytes.as_slice(), "pv.core").unwrap();
    assert_eq!(core.physical_to_machine(0x1008), Some(0x123_008));
    assert_eq!(core.physical_to_machine(0x5000), None);
    let mut word = [0u8; 8];
    core.read_machine(0x123_000, &mut word).unwrap();
    assert_eq!(word[..], page_pattern(1)[..8]);
    assert!(matches!(
        core.read_machine(0x124_000, &mut word),
        Err(TargetError::Unmapped { space: AddressSpace::Machine, address: 0x124_000 })
    ));
    assert_eq!(core.shared_info(), Ok(None));
}

#[test]
fn a_basalt_core_without_its_own_sections_is_a_consistent_xen_core() {
    // What a Xen tool sees: hide the .basalt_* sections by renaming them.
    let target = fixture();
    let (mut bytes, _, _) = write(&target);
    let names_offset = find_section(&bytes, ".shstrtab").1.name;
    for name in
        [".basalt_domain", ".basalt_vcpus", ".basalt_evtchns", ".basalt_grants", ".basalt_xenstore", ".basalt_symbols"]
    {
        let (index, mut header) = find_section(&bytes, name);
        header.name = names_offset;
        put_section_header(&mut bytes, index, &header);
    }
    let core = CoreFile::open(bytes.as_slice(), "as-xen").unwrap();
    assert!(!core.is_basalt_core());
    assert_eq!(core.info().hypervisor, "Xen 4.17-basalt");
    let mut expected = target.registers[0];
    expected.efer = 0x500;
    assert_eq!(core.registers(0).unwrap(), expected);
    // Xen does not record "blocked".
    assert_eq!(core.registers(1).unwrap().state, VcpuRunState::Running);
    assert_eq!(core.memory_ranges(), target.memory_ranges());
    assert!(matches!(core.event_channels(), Err(TargetError::Unsupported(_))));
}

// ---- hostile files -------------------------------------------------------------------

fn section_header_at(bytes: &[u8], index: usize) -> SectionHeader {
    let offset = format::get_u64(bytes, 40) as usize + index * 64;
    format::decode_section_header(bytes[offset..offset + 64].try_into().unwrap())
}

fn put_section_header(bytes: &mut [u8], index: usize, header: &SectionHeader) {
    let offset = format::get_u64(bytes, 40) as usize + index * 64;
    bytes[offset..offset + 64].copy_from_slice(&format::encode_section_header(header));
}

pub(super) fn section_names(bytes: &[u8]) -> Vec<String> {
    let count = format::get_u16(bytes, 60) as usize;
    let names = section_header_at(bytes, format::get_u16(bytes, 62) as usize);
    let table = &bytes[names.offset as usize..(names.offset + names.size) as usize];
    (0..count)
        .map(|index| {
            let start = section_header_at(bytes, index).name as usize;
            let end = start + table[start..].iter().position(|&byte| byte == 0).unwrap();
            String::from_utf8(table[start..end].to_vec()).unwrap()
        })
        .collect()
}

pub(super) fn find_section(bytes: &[u8], name: &str) -> (usize, SectionHeader) {
    let index = section_names(bytes).iter().position(|found| found == name).unwrap();
    (index, section_header_at(bytes, index))
}

fn open_error(bytes: &[u8]) -> CoreError {
    match CoreFile::open(bytes, "hostile") {
        Ok(_) => panic!("a damaged core opened"),
        Err(error) => error,
    }
}

#[test]
fn every_truncation_is_an_error() {
    let (basalt, _, _) = write(&fixture());
    let xen = xen_core(&xen_registers(), &[5, 2, format::INVALID_FRAME, 9], None, true);
    for bytes in [&basalt, &xen] {
        for cut in 0..bytes.len() {
            let error = open_error(&bytes[..cut]);
            // One line, no panics; the short ones say "not an ELF file".
            assert!(!error.to_string().contains('\n'));
            if cut < 4 {
                assert_eq!(error, CoreError::NotElf);
            }
        }
        assert!(CoreFile::open(bytes.as_slice(), "whole").is_ok());
    }
}

#[test]
fn messages_name_the_problem() {
    assert_eq!(open_error(b"hello world").to_string(), "not an ELF file");
    let (bytes, _, _) = write(&fixture());

    let mut elf32 = bytes.clone();
    elf32[4] = 1;
    assert_eq!(open_error(&elf32).to_string(), "unsupported: 32-bit core");
    let mut i386 = bytes.clone();
    i386[18..20].copy_from_slice(&3u16.to_le_bytes());
    assert_eq!(open_error(&i386).to_string(), "unsupported: 32-bit core");
    let mut big_endian = bytes.clone();
    big_endian[5] = 2;
    assert_eq!(open_error(&big_endian).to_string(), "unsupported: big-endian core");
    let mut executable = bytes.clone();
    executable[16] = 2;
    assert!(open_error(&executable).to_string().starts_with("not a Xen dump-core"));

    let (pages_index, mut pages) = find_section(&bytes, ".xen_pages");
    let mut long_pages = bytes.clone();
    pages.size = bytes.len() as u64;
    put_section_header(&mut long_pages, pages_index, &pages);
    assert_eq!(open_error(&long_pages).to_string(), "truncated: section .xen_pages ends past the end of the file");
}

/// The core header note's descriptor offset within the file.
fn core_header_offset(bytes: &[u8]) -> usize {
    let (_, notes) = find_section(bytes, ".note.Xen");
    // The NONE note (16 bytes) comes first, then the header note's own 16.
    notes.offset as usize + 16 + 16
}

#[test]
fn forged_counts_and_sizes_are_errors() {
    let (bytes, _, _) = write(&fixture());
    let header = core_header_offset(&bytes);
    assert_eq!(format::get_u64(&bytes, header), format::XC_CORE_MAGIC_HVM);

    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    for (field, value) in
        [(8usize, u64::MAX), (8, 3), (8, 4097), (16, u64::MAX), (16, 6), (16, 1 << 40), (24, 8192), (0, 7)]
    {
        let mut forged = bytes.clone();
        format::put_u64(&mut forged, header + field, value);
        cases.push(("header field", forged));
    }
    let mut many_sections = bytes.clone();
    many_sections[60..62].copy_from_slice(&0xffffu16.to_le_bytes());
    cases.push(("section count", many_sections));
    let mut no_sections = bytes.clone();
    no_sections[60..62].copy_from_slice(&0u16.to_le_bytes());
    cases.push(("no sections", no_sections));
    let mut bad_names_index = bytes.clone();
    bad_names_index[62..64].copy_from_slice(&99u16.to_le_bytes());
    cases.push(("names index", bad_names_index));
    let mut bad_table_offset = bytes.clone();
    format::put_u64(&mut bad_table_offset, 40, u64::MAX - 10);
    cases.push(("table offset", bad_table_offset));
    let mut bad_entry_size = bytes.clone();
    bad_entry_size[58..60].copy_from_slice(&40u16.to_le_bytes());
    cases.push(("section header size", bad_entry_size));

    for name in [".xen_pages", ".xen_pfn", ".xen_prstatus", ".note.Xen", ".basalt_vcpus", ".shstrtab"] {
        let (index, header) = find_section(&bytes, name);
        let mut huge = bytes.clone();
        put_section_header(&mut huge, index, &SectionHeader { size: u64::MAX, ..header });
        cases.push(("huge size", huge));
        let mut far = bytes.clone();
        put_section_header(&mut far, index, &SectionHeader { offset: u64::MAX, ..header });
        cases.push(("huge offset", far));
        let mut bad_name = bytes.clone();
        put_section_header(&mut bad_name, index, &SectionHeader { name: 0xffff_fff0, ..header });
        cases.push(("name offset", bad_name));
    }
    // A short prstatus, a short shared info page, a short frame table.
    for name in [".xen_prstatus", ".xen_shared_info", ".xen_pfn"] {
        let (index, header) = find_section(&bytes, name);
        let mut short = bytes.clone();
        put_section_header(&mut short, index, &SectionHeader { size: header.size - 8, ..header });
        cases.push(("short section", short));
    }
    // A missing required section: rename it away.
    let names_name = find_section(&bytes, ".shstrtab").1.name;
    for name in [".note.Xen", ".xen_prstatus", ".xen_pages", ".xen_pfn"] {
        let (index, header) = find_section(&bytes, name);
        let mut missing = bytes.clone();
        put_section_header(&mut missing, index, &SectionHeader { name: names_name, ..header });
        cases.push(("missing section", missing));
    }
    // Two sections named .xen_pages.
    let (pfn_index, pfn) = find_section(&bytes, ".xen_pfn");
    let (pages_index, pages) = find_section(&bytes, ".xen_pages");
    let mut duplicate = bytes.clone();
    put_section_header(&mut duplicate, pfn_index, &SectionHeader { name: pages.name, ..pfn });
    cases.push(("duplicate section", duplicate));
    // The frame table inside the pages it indexes.
    let mut overlap = bytes.clone();
    put_section_header(&mut overlap, pfn_index, &SectionHeader { offset: pages.offset + PAGE_SIZE, ..pfn });
    cases.push(("overlap", overlap));
    let mut overlap_prstatus = bytes.clone();
    let (prstatus_index, prstatus) = find_section(&bytes, ".xen_prstatus");
    put_section_header(&mut overlap_prstatus, prstatus_index, &SectionHeader { offset: pages.offset, ..prstatus });
    cases.push(("overlap", overlap_prstatus));
    let _ = pages_index;
    // Frame table contents: a duplicate frame, a frame past 2^52 bytes.
    let mut duplicate_frame = bytes.clone();
    let first = format::get_u64(&bytes, pfn.offset as usize);
    format::put_u64(&mut duplicate_frame, pfn.offset as usize + 8, first);
    cases.push(("duplicate frame", duplicate_frame));
    let mut huge_frame = bytes.clone();
    format::put_u64(&mut huge_frame, pfn.offset as usize, 1 << 60);
    cases.push(("huge frame", huge_frame));
    // Basalt sections: forged counts, versions, kinds.
    for name in [".basalt_evtchns", ".basalt_grants", ".basalt_xenstore", ".basalt_vcpus"] {
        let (_, header) = find_section(&bytes, name);
        let mut count = bytes.clone();
        count[header.offset as usize + 4..header.offset as usize + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        cases.push(("basalt count", count));
        let mut version = bytes.clone();
        version[header.offset as usize] = 2;
        cases.push(("basalt version", version));
    }
    let (_, channels) = find_section(&bytes, ".basalt_evtchns");
    let mut bad_kind = bytes.clone();
    bad_kind[channels.offset as usize + 8 + 8] = 77;
    cases.push(("binding kind", bad_kind));
    // A format version with another major number.
    let mut version = bytes.clone();
    let (_, notes) = find_section(&bytes, ".note.Xen");
    let format_note = notes.offset as usize + notes.size as usize - 8;
    format::put_u64(&mut version, format_note, 1 << 32);
    cases.push(("format version", version));

    for (what, forged) in cases {
        match CoreFile::open(forged.as_slice(), "forged") {
            Ok(_) => panic!("a core with a forged {what} opened"),
            Err(error) => assert!(!error.to_string().is_empty(), "{what}"),
        }
    }
}

/// A tiny deterministic generator, so the byte-flipping test is reproducible.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn random_corruption_never_panics() {
    let (basalt, _, _) = write(&fixture());
    let xen = xen_core(&xen_registers(), &[5, 2, 9], Some(&[1, 2, 3]), true);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for original in [&basalt, &xen] {
        // Headers, notes and small sections are where a flip matters most.
        let interesting = find_section(original, ".xen_pages").1.offset as usize;
        for _ in 0..3000 {
            let mut bytes = original.clone();
            for _ in 0..1 + next_random(&mut state) % 4 {
                let position = if next_random(&mut state).is_multiple_of(4) {
                    next_random(&mut state) as usize % bytes.len()
                } else {
                    next_random(&mut state) as usize % interesting
                };
                bytes[position] = next_random(&mut state) as u8;
            }
            if let Ok(core) = CoreFile::open(bytes.as_slice(), "flipped") {
                exercise(&core);
            }
        }
    }
}

/// Calls every Target method once (what the fuzz target does).
fn exercise(core: &dyn Target) {
    let info = core.info();
    for vcpu in 0..info.vcpus.min(4) {
        let _ = core.registers(vcpu);
    }
    let mut buffer = [0u8; 64];
    for (start, end) in core.memory_ranges().into_iter().take(4) {
        let _ = core.read_physical(start, &mut buffer);
        let _ = core.read_physical(end.saturating_sub(8), &mut buffer);
    }
    let _ = core.read_physical(u64::MAX - 8, &mut buffer);
    let _ = core.physical_to_machine(0);
    let _ = core.read_machine(0, &mut buffer);
    let _ = core.event_channels();
    let _ = core.grants();
    let _ = core.xenstore();
    let _ = core.shared_info();
    let _ = core.kernel_symbol_file();
}

#[test]
fn context_layout_matches_the_header() {
    // Spot-check offsets against arch-x86/xen.h by hand, independent of the mirror
    // struct: rip at 520 + 128, rsp at 520 + 152, ctrlreg[3] at 4984 + 24; in ring 0
    // the loaded GS base is gs_base_kernel (5152).
    let registers = Registers {
        rip: 0xffff_ffff_8100_0000,
        rsp: 0xffff_c900_0001_0000,
        cr3: 0x1a_b000,
        gs_base: 0x7777,
        ..Registers::default()
    };
    let context = format::encode_context(&registers);
    assert_eq!(context.len(), CONTEXT_SIZE);
    assert_eq!(format::get_u64(&context, 648), registers.rip);
    assert_eq!(format::get_u64(&context, 672), registers.rsp);
    assert_eq!(format::get_u64(&context, 5008), registers.cr3);
    assert_eq!(format::get_u64(&context, 5152), registers.gs_base);
    assert_eq!(format::get_u64(&context, 512), format::VGCF_I387_VALID | format::VGCF_ONLINE);
}

#[test]
fn exercise_helper_runs_on_a_good_core() {
    let (bytes, _, _) = write(&fixture());
    let core = CoreFile::open(bytes.as_slice(), "good").unwrap();
    exercise(&core);
    assert_eq!(core.source().len(), bytes.len() as u64);
}
