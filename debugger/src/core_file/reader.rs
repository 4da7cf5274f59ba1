//! [`CoreFile`]: a dump-core opened as a [`Target`]. `open` validates the whole
//! structure (headers, notes, section bounds, frame table) and decodes the small
//! sections; page contents stay in the source and are read on demand.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use super::format::{
    self, CoreHeader, Cursor, DomainRecord, SectionHeader, CONTEXT_SIZE, ELF_CLASS_32, ELF_CLASS_64,
    ELF_DATA_LITTLE_ENDIAN, ELF_HEADER_SIZE, ELF_TYPE_CORE, INVALID_FRAME, MACHINE_I386, MACHINE_X86_64,
    MAX_SYMBOL_FILE, PAGE_SHIFT, PAGE_SIZE, SECTION_HEADER_SIZE,
};
use super::{CoreError, CoreSource};
use crate::target::{
    AddressSpace, EventChannel, GrantEntry, Registers, Target, TargetError, TargetInfo, TargetKind, XenstoreNode,
};

/// Bounds on sections that are read whole into memory: far above what Xen or
/// Basalt write, far below what would hurt.
const MAX_NAMES_SIZE: u64 = 1 << 20;
const MAX_NOTES_SIZE: u64 = 1 << 20;
const MAX_METADATA_SIZE: u64 = 256 << 20;
/// More vCPUs than any x86 domain can have (HVM_MAX_VCPUS is 128; leave room).
const MAX_VCPUS: u64 = 4096;
/// Guest frames above 2^52 bytes of physical memory cannot exist on x86_64.
const MAX_FRAME: u64 = (1 << 52) >> PAGE_SHIFT;
/// Frame-table entries read per source read at open.
const FRAME_TABLE_CHUNK: u64 = 4096;

/// One dumped page: its frame number and its slot in `.xen_pages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct PageSlot {
    frame: u64,
    slot: u64,
}

/// A section the reader knows, once found and bounds-checked.
#[derive(Debug, Clone, Copy)]
struct Located {
    name: &'static str,
    header: SectionHeader,
}

/// The sections the reader knows, by name.
const KNOWN_SECTIONS: [&str; 12] = [
    format::SECTION_NOTE,
    format::SECTION_PRSTATUS,
    format::SECTION_SHARED_INFO,
    format::SECTION_P2M,
    format::SECTION_PFN,
    format::SECTION_PAGES,
    format::SECTION_BASALT_DOMAIN,
    format::SECTION_BASALT_VCPUS,
    format::SECTION_BASALT_EVTCHNS,
    format::SECTION_BASALT_GRANTS,
    format::SECTION_BASALT_XENSTORE,
    format::SECTION_BASALT_SYMBOLS,
];

/// An opened dump-core.
pub struct CoreFile<S: CoreSource> {
    source: S,
    info: TargetInfo,
    registers: Vec<Registers>,
    /// File offset of `.xen_pages`.
    pages_offset: u64,
    /// Sorted by guest frame; no duplicates.
    physical: Vec<PageSlot>,
    /// Sorted by machine frame (PV cores with `.xen_p2m` only).
    machine: Vec<PageSlot>,
    /// File offset of `.xen_p2m`, for a PV core.
    p2m_offset: Option<u64>,
    /// Whether `.basalt_domain` was present (Basalt wrote the core).
    basalt: bool,
    ranges: Vec<(u64, u64)>,
    shared_info: Option<Vec<u8>>,
    event_channels: Option<Vec<EventChannel>>,
    grants: Option<Vec<GrantEntry>>,
    xenstore: Option<Vec<XenstoreNode>>,
    symbols: Option<Vec<u8>>,
}

fn read(source: &impl CoreSource, offset: u64, buffer: &mut [u8]) -> Result<(), CoreError> {
    source.read_at(offset, buffer).map_err(CoreError::Read)
}

/// Reads a whole section that was checked to lie in the file, refusing one over `limit`.
fn read_section(source: &impl CoreSource, section: &Located, limit: u64) -> Result<Vec<u8>, CoreError> {
    if section.header.size > limit {
        return Err(CoreError::Damaged(format!(
            "section {} is {} bytes, more than the {limit} a reader accepts",
            section.name, section.header.size
        )));
    }
    let mut bytes = vec![0u8; section.header.size as usize];
    read(source, section.header.offset, &mut bytes)?;
    Ok(bytes)
}

fn damaged_section(name: &str) -> impl Fn(String) -> CoreError + '_ {
    move |why| CoreError::Damaged(format!("{name}: {why}"))
}

impl<S: CoreSource> CoreFile<S> {
    /// Opens the core in `source`; `name` labels it in `::status` (a path, `disk@offset`).
    pub fn open(source: S, name: &str) -> Result<CoreFile<S>, CoreError> {
        let file_length = source.len();
        let mut elf_header = [0u8; ELF_HEADER_SIZE];
        if file_length < ELF_HEADER_SIZE as u64 {
            return Err(
                if file_length >= 4 && {
                    let mut magic = [0u8; 4];
                    read(&source, 0, &mut magic)?;
                    magic == format::ELF_MAGIC
                } {
                    CoreError::Truncated(String::from("the ELF header ends past the end of the file"))
                } else {
                    CoreError::NotElf
                },
            );
        }
        read(&source, 0, &mut elf_header)?;
        let header = format::decode_elf_header(&elf_header).ok_or(CoreError::NotElf)?;
        match header.class {
            ELF_CLASS_64 => {}
            ELF_CLASS_32 => return Err(CoreError::Unsupported(String::from("32-bit core"))),
            other => return Err(CoreError::Damaged(format!("ELF class {other}"))),
        }
        if header.data != ELF_DATA_LITTLE_ENDIAN {
            return Err(CoreError::Unsupported(String::from("big-endian core")));
        }
        if header.file_type != ELF_TYPE_CORE {
            return Err(CoreError::NotDumpCore(format!("ELF type {} is not ET_CORE", header.file_type)));
        }
        match header.machine {
            MACHINE_X86_64 => {}
            MACHINE_I386 => return Err(CoreError::Unsupported(String::from("32-bit core"))),
            other => return Err(CoreError::Unsupported(format!("ELF machine {other} (only x86_64)"))),
        }
        let sections = read_section_table(&source, file_length, &header)?;

        let find = |name: &str| sections.iter().find(|section| section.name == name);
        let notes_section =
            find(format::SECTION_NOTE).ok_or_else(|| CoreError::NotDumpCore(String::from("no .note.Xen section")))?;
        let notes = parse_notes(&read_section(&source, notes_section, MAX_NOTES_SIZE)?)?;
        let core_header = notes.header;
        if core_header.magic != format::XC_CORE_MAGIC && core_header.magic != format::XC_CORE_MAGIC_HVM {
            return Err(CoreError::NotDumpCore(format!("header magic {:#x}", core_header.magic)));
        }
        if core_header.page_size != PAGE_SIZE {
            return Err(CoreError::Unsupported(format!("page size {}", core_header.page_size)));
        }
        if core_header.vcpus > MAX_VCPUS {
            return Err(CoreError::Damaged(format!(
                "the header says {} vCPUs (at most {MAX_VCPUS})",
                core_header.vcpus
            )));
        }

        let prstatus = find(format::SECTION_PRSTATUS)
            .ok_or_else(|| CoreError::NotDumpCore(String::from("no .xen_prstatus section")))?;
        let contexts_size = core_header.vcpus * CONTEXT_SIZE as u64;
        if prstatus.header.size < contexts_size {
            return Err(CoreError::Truncated(format!(
                "section .xen_prstatus holds {} bytes, fewer than {} vCPU contexts of {CONTEXT_SIZE}",
                prstatus.header.size, core_header.vcpus
            )));
        }
        // Xen fills a PV context differently (GS bases by mode, not by ring).
        let paravirtualized = core_header.magic == format::XC_CORE_MAGIC;
        let mut registers = Vec::with_capacity(core_header.vcpus as usize);
        let mut context = vec![0u8; CONTEXT_SIZE];
        for vcpu in 0..core_header.vcpus {
            read(&source, prstatus.header.offset + vcpu * CONTEXT_SIZE as u64, &mut context)?;
            registers.push(format::decode_context(&context, paravirtualized));
        }

        let pages =
            find(format::SECTION_PAGES).ok_or_else(|| CoreError::NotDumpCore(String::from("no .xen_pages section")))?;
        let pages_size = core_header
            .pages
            .checked_mul(PAGE_SIZE)
            .ok_or_else(|| CoreError::Damaged(format!("the header says {} pages", core_header.pages)))?;
        if pages.header.size < pages_size {
            return Err(CoreError::Truncated(format!(
                "section .xen_pages holds {} bytes, fewer than the header's {} pages",
                pages.header.size, core_header.pages
            )));
        }
        let (physical, machine) = match (find(format::SECTION_PFN), find(format::SECTION_P2M)) {
            (Some(_), Some(_)) => {
                return Err(CoreError::Damaged(String::from("both .xen_pfn and .xen_p2m are present")))
            }
            (Some(table), None) => (read_frame_table(&source, table, core_header.pages, false)?, Vec::new()),
            (None, Some(table)) => {
                let physical = read_frame_table(&source, table, core_header.pages, false)?;
                let machine = read_frame_table(&source, table, core_header.pages, true)?;
                (physical, machine)
            }
            (None, None) => return Err(CoreError::NotDumpCore(String::from("no .xen_pfn or .xen_p2m section"))),
        };
        let ranges = coalesce(&physical);
        let p2m_offset = find(format::SECTION_P2M).map(|section| section.header.offset);

        let shared_info = match find(format::SECTION_SHARED_INFO) {
            None => None,
            Some(section) if section.header.size < PAGE_SIZE => {
                return Err(CoreError::Truncated(format!(
                    "section .xen_shared_info holds {} bytes, less than a page",
                    section.header.size
                )))
            }
            Some(section) => {
                let mut page = vec![0u8; PAGE_SIZE as usize];
                read(&source, section.header.offset, &mut page)?;
                Some(page)
            }
        };

        let metadata = |name: &'static str| -> Result<Option<Vec<u8>>, CoreError> {
            match find(name) {
                Some(section) => Ok(Some(read_section(&source, section, MAX_METADATA_SIZE)?)),
                None => Ok(None),
            }
        };
        let domain = match metadata(format::SECTION_BASALT_DOMAIN)? {
            Some(bytes) => Some(format::decode_domain(&bytes).map_err(damaged_section(format::SECTION_BASALT_DOMAIN))?),
            None => None,
        };
        if let Some(bytes) = metadata(format::SECTION_BASALT_VCPUS)? {
            format::apply_vcpus(&bytes, &mut registers).map_err(damaged_section(format::SECTION_BASALT_VCPUS))?;
        }
        let event_channels = match metadata(format::SECTION_BASALT_EVTCHNS)? {
            Some(bytes) => {
                Some(format::decode_event_channels(&bytes).map_err(damaged_section(format::SECTION_BASALT_EVTCHNS))?)
            }
            None => None,
        };
        let grants = match metadata(format::SECTION_BASALT_GRANTS)? {
            Some(bytes) => Some(format::decode_grants(&bytes).map_err(damaged_section(format::SECTION_BASALT_GRANTS))?),
            None => None,
        };
        let xenstore = match metadata(format::SECTION_BASALT_XENSTORE)? {
            Some(bytes) => {
                Some(format::decode_xenstore(&bytes).map_err(damaged_section(format::SECTION_BASALT_XENSTORE))?)
            }
            None => None,
        };
        let symbols = match find(format::SECTION_BASALT_SYMBOLS) {
            Some(section) => Some(read_section(&source, section, MAX_SYMBOL_FILE)?),
            None => None,
        };

        let basalt = domain.is_some();
        let info = build_info(name, &core_header, domain, notes.hypervisor, physical.len() as u64);
        Ok(CoreFile {
            source,
            info,
            registers,
            pages_offset: pages.header.offset,
            physical,
            machine,
            p2m_offset,
            basalt,
            ranges,
            shared_info,
            event_channels,
            grants,
            xenstore,
            symbols,
        })
    }

    /// The source the core is read from.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// Whether the core carries Basalt's sections (written by Basalt, not by Xen).
    pub fn is_basalt_core(&self) -> bool {
        self.basalt
    }

    fn read_slots(
        &self,
        table: &[PageSlot],
        space: AddressSpace,
        address: u64,
        buffer: &mut [u8],
    ) -> Result<(), TargetError> {
        let mut done = 0usize;
        while done < buffer.len() {
            let at = address.checked_add(done as u64).ok_or(TargetError::Unmapped { space, address: u64::MAX })?;
            let frame = at >> PAGE_SHIFT;
            let slot = table
                .binary_search_by_key(&frame, |entry| entry.frame)
                .map(|index| table[index].slot)
                .map_err(|_| TargetError::Unmapped { space, address: at })?;
            let within = at % PAGE_SIZE;
            let length = ((PAGE_SIZE - within) as usize).min(buffer.len() - done);
            // Slots are below the header's page count, whose pages were checked to lie
            // inside the file at open.
            let offset = self.pages_offset + slot * PAGE_SIZE + within;
            self.source
                .read_at(offset, &mut buffer[done..done + length])
                .map_err(|why| TargetError::Damaged(format!("reading the core at {offset:#x}: {why}")))?;
            done += length;
        }
        Ok(())
    }
}

/// The section table, with the known sections found by name and bounds-checked.
fn read_section_table(
    source: &impl CoreSource,
    file_length: u64,
    header: &format::ElfHeader,
) -> Result<Vec<Located>, CoreError> {
    if header.section_count == 0 {
        return Err(CoreError::NotDumpCore(String::from("no section headers")));
    }
    if usize::from(header.section_header_size) != SECTION_HEADER_SIZE {
        return Err(CoreError::Damaged(format!("section header size {}", header.section_header_size)));
    }
    let table_size = u64::from(header.section_count) * SECTION_HEADER_SIZE as u64;
    match header.section_headers_offset.checked_add(table_size) {
        Some(end) if end <= file_length => {}
        _ => return Err(CoreError::Truncated(String::from("the section header table ends past the end of the file"))),
    }
    let mut table = vec![0u8; table_size as usize];
    read(source, header.section_headers_offset, &mut table)?;
    let headers: Vec<SectionHeader> = table
        .chunks_exact(SECTION_HEADER_SIZE)
        .map(|chunk| {
            let mut entry = [0u8; SECTION_HEADER_SIZE];
            entry.copy_from_slice(chunk);
            format::decode_section_header(&entry)
        })
        .collect();

    let names_header = headers.get(usize::from(header.section_names_index)).ok_or_else(|| {
        CoreError::Damaged(format!(
            "section name table index {} is past the {} section headers",
            header.section_names_index, header.section_count
        ))
    })?;
    check_bounds(".shstrtab", names_header, file_length)?;
    let names = read_section(source, &Located { name: format::SECTION_NAMES, header: *names_header }, MAX_NAMES_SIZE)?;

    let mut located: Vec<Located> = Vec::new();
    for (index, section) in headers.iter().enumerate().skip(1) {
        let name_bytes = usize::try_from(section.name)
            .ok()
            .and_then(|start| names.get(start..))
            .and_then(|rest| rest.iter().position(|&byte| byte == 0).map(|end| &rest[..end]))
            .ok_or_else(|| CoreError::Damaged(format!("section {index} has a bad name offset {}", section.name)))?;
        let Some(&name) = KNOWN_SECTIONS.iter().find(|known| known.as_bytes() == name_bytes) else {
            continue;
        };
        if located.iter().any(|other| other.name == name) {
            return Err(CoreError::Damaged(format!("two {name} sections")));
        }
        check_bounds(name, section, file_length)?;
        located.push(Located { name, header: *section });
    }

    // Sections the reader uses must not share bytes: a forged table could otherwise
    // make the frame table read from the pages it indexes.
    let mut by_offset: Vec<&Located> = located.iter().filter(|section| section.header.size > 0).collect();
    by_offset.sort_by_key(|section| section.header.offset);
    for pair in by_offset.windows(2) {
        if let [first, second] = pair {
            if first.header.offset + first.header.size > second.header.offset {
                return Err(CoreError::Damaged(format!("sections {} and {} overlap", first.name, second.name)));
            }
        }
    }
    Ok(located)
}

fn check_bounds(name: &str, section: &SectionHeader, file_length: u64) -> Result<(), CoreError> {
    match section.offset.checked_add(section.size) {
        Some(end) if end <= file_length => Ok(()),
        _ => Err(CoreError::Truncated(format!("section {name} ends past the end of the file"))),
    }
}

/// What the notes say.
struct Notes {
    header: CoreHeader,
    hypervisor: Option<String>,
}

fn parse_notes(bytes: &[u8]) -> Result<Notes, CoreError> {
    let damaged = |why: String| CoreError::Damaged(format!(".note.Xen: {why}"));
    let mut cursor = Cursor::new(bytes);
    let mut header = None;
    let mut hypervisor = None;
    while cursor.remaining() > 0 {
        let name_size = cursor.u32().map_err(damaged)?;
        let descriptor_size = cursor.u32().map_err(damaged)?;
        let note_type = cursor.u32().map_err(damaged)?;
        let name = cursor.bytes(u64::from(name_size)).map_err(damaged)?;
        cursor.bytes(format::padding_to(u64::from(name_size), 4)).map_err(damaged)?;
        let descriptor = cursor.bytes(u64::from(descriptor_size)).map_err(damaged)?;
        cursor.bytes(format::padding_to(u64::from(descriptor_size), 4)).map_err(damaged)?;
        if name != format::NOTE_NAME {
            continue;
        }
        match note_type {
            format::XEN_ELFNOTE_DUMPCORE_HEADER => {
                header = Some(
                    format::decode_core_header(descriptor)
                        .ok_or_else(|| damaged(format!("header note descriptor of {descriptor_size} bytes")))?,
                );
            }
            format::XEN_ELFNOTE_DUMPCORE_XEN_VERSION => hypervisor = format::describe_xen_version(descriptor),
            format::XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION => {
                let version = format::get_u64(descriptor, 0);
                if descriptor.len() < 8 {
                    return Err(damaged(String::from("short format version note")));
                }
                if version >> 32 != 0 {
                    return Err(CoreError::Unsupported(format!(
                        "dump-core format version {}.{}",
                        version >> 32,
                        version & 0xffff_ffff
                    )));
                }
            }
            _ => {}
        }
    }
    let header = header.ok_or_else(|| CoreError::NotDumpCore(String::from("no dump-core header note")))?;
    Ok(Notes { header, hypervisor })
}

/// `.xen_pfn` (u64 per slot) or `.xen_p2m` (pfn, gmfn per slot) as a table sorted by
/// frame, skipping filler slots; `machine` picks the gmfn column of `.xen_p2m`.
fn read_frame_table(
    source: &impl CoreSource,
    section: &Located,
    pages: u64,
    machine: bool,
) -> Result<Vec<PageSlot>, CoreError> {
    let entry_size: u64 = if section.name == format::SECTION_P2M { 16 } else { 8 };
    let needed = pages.saturating_mul(entry_size);
    if section.header.size < needed {
        return Err(CoreError::Truncated(format!(
            "section {} holds {} bytes, fewer than {pages} entries of {entry_size}",
            section.name, section.header.size
        )));
    }
    // `pages` pages were checked to fit in the file, so this allocation is bounded by
    // the file's size (16 bytes of table per 4096 bytes of file).
    let mut slots = Vec::with_capacity(pages as usize);
    let mut chunk = vec![0u8; (FRAME_TABLE_CHUNK * entry_size) as usize];
    let mut slot = 0u64;
    while slot < pages {
        let count = (pages - slot).min(FRAME_TABLE_CHUNK);
        let bytes = &mut chunk[..(count * entry_size) as usize];
        read(source, section.header.offset + slot * entry_size, bytes)?;
        for entry in bytes.chunks_exact(entry_size as usize) {
            let frame = if machine { format::get_u64(entry, 8) } else { format::get_u64(entry, 0) };
            if frame != INVALID_FRAME {
                if frame >= MAX_FRAME {
                    return Err(CoreError::Damaged(format!(
                        "{}: frame {frame:#x} is beyond the physical address space",
                        section.name
                    )));
                }
                slots.push(PageSlot { frame, slot });
            }
            slot += 1;
        }
    }
    // Xen writes the table in ascending pfn order (xg_core.c walks its memory map
    // upward), but readers are told not to rely on layout; sorting costs little.
    slots.sort_unstable();
    if machine {
        // A PV guest keeps its own p2m and xg_core.c copies it unchecked (with
        // `xl dump-core -L`, while it changes), so one machine frame can turn up under
        // two pfns; both slots are copies of that frame, so keep the first.
        slots.dedup_by_key(|entry| entry.frame);
        return Ok(slots);
    }
    for pair in slots.windows(2) {
        if let [first, second] = pair {
            if first.frame == second.frame {
                return Err(CoreError::Damaged(format!(
                    "{}: frame {:#x} appears twice (slots {} and {})",
                    section.name, first.frame, first.slot, second.slot
                )));
            }
        }
    }
    Ok(slots)
}

fn coalesce(slots: &[PageSlot]) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for entry in slots {
        let start = entry.frame << PAGE_SHIFT;
        match ranges.last_mut() {
            Some(last) if last.1 == start => last.1 = start + PAGE_SIZE,
            _ => ranges.push((start, start + PAGE_SIZE)),
        }
    }
    ranges
}

fn build_info(
    name: &str,
    header: &CoreHeader,
    domain: Option<DomainRecord>,
    xen_version: Option<String>,
    pages: u64,
) -> TargetInfo {
    let kind = TargetKind::CoreFile { source: name.to_string() };
    match domain {
        Some(domain) => TargetInfo {
            kind,
            domain_id: domain.domain_id,
            domain_name: domain.name,
            vcpus: header.vcpus as u32,
            memory_bytes: domain.memory_bytes,
            state: domain.state,
            vcpu_snapshot: domain.vcpu_snapshot,
            hypervisor: domain.hypervisor,
            host: domain.host,
        },
        None => TargetInfo {
            kind,
            // Xen's format records neither the domain's id nor its name.
            domain_id: 0,
            domain_name: String::from("unknown"),
            vcpus: header.vcpus as u32,
            memory_bytes: pages * PAGE_SIZE,
            state: String::from("dumped"),
            vcpu_snapshot: String::from(
                "vcpu_guest_context per vCPU as Xen's dump-core saved it (no EFER: long mode inferred)",
            ),
            hypervisor: xen_version.unwrap_or_else(|| String::from("Xen (version unknown)")),
            host: None,
        },
    }
}

impl<S: CoreSource> Target for CoreFile<S> {
    fn info(&self) -> TargetInfo {
        self.info.clone()
    }

    fn registers(&self, vcpu: u32) -> Result<Registers, TargetError> {
        self.registers.get(vcpu as usize).copied().ok_or(TargetError::NoSuchVcpu(vcpu))
    }

    fn read_physical(&self, address: u64, buffer: &mut [u8]) -> Result<(), TargetError> {
        self.read_slots(&self.physical, AddressSpace::Physical, address, buffer)
    }

    fn memory_ranges(&self) -> Vec<(u64, u64)> {
        self.ranges.clone()
    }

    fn physical_to_machine(&self, address: u64) -> Option<u64> {
        let p2m_offset = self.p2m_offset?;
        let frame = address >> PAGE_SHIFT;
        let index = self.physical.binary_search_by_key(&frame, |entry| entry.frame).ok()?;
        let slot = self.physical[index].slot;
        // The gmfn column of the slot's `.xen_p2m` entry (the table was bounds-checked
        // at open).
        let mut entry = [0u8; 8];
        self.source.read_at(p2m_offset + slot * 16 + 8, &mut entry).ok()?;
        let machine = u64::from_le_bytes(entry);
        (machine != INVALID_FRAME).then_some((machine << PAGE_SHIFT) | (address % PAGE_SIZE))
    }

    fn read_machine(&self, address: u64, buffer: &mut [u8]) -> Result<(), TargetError> {
        if self.machine.is_empty() {
            return Err(TargetError::Unsupported("machine addresses (an auto-translated guest's core)"));
        }
        self.read_slots(&self.machine, AddressSpace::Machine, address, buffer)
    }

    fn event_channels(&self) -> Result<Vec<EventChannel>, TargetError> {
        self.event_channels.clone().ok_or(TargetError::Unsupported("event channel table"))
    }

    fn grants(&self) -> Result<Vec<GrantEntry>, TargetError> {
        self.grants.clone().ok_or(TargetError::Unsupported("grant table"))
    }

    fn xenstore(&self) -> Result<Vec<XenstoreNode>, TargetError> {
        self.xenstore.clone().ok_or(TargetError::Unsupported("xenstore"))
    }

    fn shared_info(&self) -> Result<Option<Vec<u8>>, TargetError> {
        Ok(self.shared_info.clone())
    }

    fn kernel_symbol_file(&self) -> Option<&[u8]> {
        self.symbols.as_deref()
    }
}
