//! Writing a target's core: [`core_size`] plans the layout (so a caller can check
//! the disk), [`write_core`] emits it front to back in one pass, hashing as it goes.
//! The layout is in the module doc of `core_file`.

use alloc::vec;
use alloc::vec::Vec;

use sha2::{Digest, Sha256};

use super::format::{
    self, CoreHeader, DomainRecord, SectionHeader, CONTEXT_SIZE, INVALID_FRAME, MAX_SYMBOL_FILE, PAGE_SHIFT, PAGE_SIZE,
    SECTION_HEADER_SIZE,
};
use super::{CoreSink, CoreSummary, CoreWriteError};
use crate::target::{Registers, Target, TargetError};

/// The Xen interface version Basalt reports to guests (kernel/src/xen/mod.rs).
const XEN_VERSION_MAJOR: u64 = 4;
const XEN_VERSION_MINOR: u64 = 17;
/// Pages per sink write.
const PAGES_PER_WRITE: usize = 16;
/// More than any domain has; a target claiming more is refused before allocating.
const MAX_VCPUS: u32 = 4096;
/// 1 TiB of pages: a bound on what a target may list before the frame list is built.
const MAX_FRAMES: u64 = 1 << 28;
/// Progress is reported at most this many times (plus once at the end).
const PROGRESS_STEPS: u64 = 100;

/// One section before its offset is known.
struct PlannedSection<'a> {
    name: &'static str,
    section_type: u32,
    alignment: u64,
    entry_size: u64,
    contents: Contents<'a>,
}

enum Contents<'a> {
    Bytes(Vec<u8>),
    Borrowed(&'a [u8]),
    /// `.xen_pages`: read from the target while writing.
    Pages,
    /// `.xen_pfn`: known only after the pages are read (unreadable ones become filler).
    FrameTable,
}

/// Everything about the core except the page contents.
struct Plan<'a> {
    sections: Vec<PlannedSection<'a>>,
    /// Guest frames to dump, ascending.
    frames: Vec<u64>,
    names: Vec<u8>,
    name_offsets: Vec<u32>,
    /// File offset of each section in `sections`.
    offsets: Vec<u64>,
    sizes: Vec<u64>,
    section_headers_offset: u64,
    total: u64,
}

/// Reads a metadata table, treating "the target has none" as absent.
fn optional<T>(result: Result<T, TargetError>) -> Result<Option<T>, CoreWriteError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(TargetError::Unsupported(_)) => Ok(None),
        Err(error) => Err(CoreWriteError::Target(error)),
    }
}

fn plan(target: &dyn Target) -> Result<Plan<'_>, CoreWriteError> {
    let info = target.info();
    if info.vcpus > MAX_VCPUS {
        return Err(CoreWriteError::Target(TargetError::Damaged(alloc::format!(
            "the target reports {} vCPUs",
            info.vcpus
        ))));
    }
    let registers: Vec<Registers> =
        (0..info.vcpus).map(|vcpu| target.registers(vcpu)).collect::<Result<_, TargetError>>()?;

    let mut frames: Vec<u64> = Vec::new();
    for (start, end) in target.memory_ranges() {
        let first = start >> PAGE_SHIFT;
        let last = end.div_ceil(PAGE_SIZE).max(first);
        if last - first > MAX_FRAMES - (frames.len() as u64).min(MAX_FRAMES) {
            return Err(CoreWriteError::Target(TargetError::Damaged(alloc::format!(
                "the target lists more than {MAX_FRAMES} pages of memory"
            ))));
        }
        frames.extend(first..last);
    }
    frames.sort_unstable();
    frames.dedup();

    let mut notes = Vec::new();
    format::push_note(&mut notes, format::XEN_ELFNOTE_DUMPCORE_NONE, &[]);
    let header = CoreHeader {
        magic: format::XC_CORE_MAGIC_HVM,
        vcpus: u64::from(info.vcpus),
        pages: frames.len() as u64,
        page_size: PAGE_SIZE,
    };
    format::push_note(&mut notes, format::XEN_ELFNOTE_DUMPCORE_HEADER, &format::encode_core_header(&header));
    format::push_note(
        &mut notes,
        format::XEN_ELFNOTE_DUMPCORE_XEN_VERSION,
        &format::encode_xen_version(XEN_VERSION_MAJOR, XEN_VERSION_MINOR, "-basalt", "hvm-3.0-x86_64"),
    );
    format::push_note(
        &mut notes,
        format::XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION,
        &format::FORMAT_VERSION_CURRENT.to_le_bytes(),
    );

    let mut contexts = Vec::with_capacity(registers.len() * CONTEXT_SIZE);
    for vcpu in &registers {
        contexts.extend_from_slice(&format::encode_context(vcpu));
    }

    let progbits = |name: &'static str, alignment: u64, entry_size: u64, contents: Contents<'static>| PlannedSection {
        name,
        section_type: format::SECTION_TYPE_PROGBITS,
        alignment,
        entry_size,
        contents,
    };
    // Xen's sections in xg_core.c's order with its alignments and entry sizes, so
    // they get the indices and relative layout `xl dump-core` gives them; Basalt's
    // come after them (in the table and in the file), which Xen's readers skip.
    let mut sections = vec![
        PlannedSection {
            name: format::SECTION_NOTE,
            section_type: format::SECTION_TYPE_NOTE,
            alignment: 0,
            entry_size: 0,
            contents: Contents::Bytes(notes),
        },
        progbits(format::SECTION_PRSTATUS, 8, CONTEXT_SIZE as u64, Contents::Bytes(contexts)),
    ];
    if let Some(mut page) = target.shared_info()? {
        page.resize(PAGE_SIZE as usize, 0);
        sections.push(progbits(format::SECTION_SHARED_INFO, 8, PAGE_SIZE, Contents::Bytes(page)));
    }
    sections.push(progbits(format::SECTION_PAGES, PAGE_SIZE, PAGE_SIZE, Contents::Pages));
    sections.push(progbits(format::SECTION_PFN, 8, 8, Contents::FrameTable));
    sections.push(progbits(
        format::SECTION_BASALT_DOMAIN,
        8,
        0,
        Contents::Bytes(format::encode_domain(&DomainRecord::from_info(&info))),
    ));
    sections.push(progbits(format::SECTION_BASALT_VCPUS, 8, 0, Contents::Bytes(format::encode_vcpus(&registers))));
    if let Some(channels) = optional(target.event_channels())? {
        sections.push(progbits(
            format::SECTION_BASALT_EVTCHNS,
            8,
            0,
            Contents::Bytes(format::encode_event_channels(&channels)),
        ));
    }
    if let Some(grants) = optional(target.grants())? {
        sections.push(progbits(format::SECTION_BASALT_GRANTS, 8, 0, Contents::Bytes(format::encode_grants(&grants))));
    }
    if let Some(nodes) = optional(target.xenstore())? {
        sections.push(progbits(
            format::SECTION_BASALT_XENSTORE,
            8,
            0,
            Contents::Bytes(format::encode_xenstore(&nodes)),
        ));
    }
    let symbols = target.kernel_symbol_file().filter(|file| file.len() as u64 <= MAX_SYMBOL_FILE);
    if let Some(file) = symbols {
        sections.push(PlannedSection {
            name: format::SECTION_BASALT_SYMBOLS,
            section_type: format::SECTION_TYPE_PROGBITS,
            alignment: 8,
            entry_size: 0,
            contents: Contents::Borrowed(file),
        });
    }

    // Names: index 0 is the empty name of the null section, then .shstrtab.
    let mut names = vec![0u8];
    let mut name_offsets = Vec::with_capacity(sections.len() + 1);
    for name in core::iter::once(format::SECTION_NAMES).chain(sections.iter().map(|section| section.name)) {
        name_offsets.push(names.len() as u32);
        names.extend_from_slice(name.as_bytes());
        names.push(0);
    }

    // Null + .shstrtab + the planned sections.
    let section_count = sections.len() as u64 + 2;
    let section_headers_offset = format::ELF_HEADER_SIZE as u64;
    let mut offset = section_headers_offset + section_count * SECTION_HEADER_SIZE as u64;
    let mut offsets = Vec::with_capacity(sections.len());
    let mut sizes = Vec::with_capacity(sections.len());
    for section in &sections {
        if section.alignment > 1 {
            offset += format::padding_to(offset, section.alignment);
        }
        let size = match &section.contents {
            Contents::Bytes(bytes) => bytes.len() as u64,
            Contents::Borrowed(bytes) => bytes.len() as u64,
            Contents::Pages => frames.len() as u64 * PAGE_SIZE,
            Contents::FrameTable => frames.len() as u64 * 8,
        };
        offsets.push(offset);
        sizes.push(size);
        offset += size;
    }
    let total = offset + names.len() as u64;
    Ok(Plan { sections, frames, names, name_offsets, offsets, sizes, section_headers_offset, total })
}

/// Size of the core write_core would produce (so the caller can check the disk first).
pub fn core_size(target: &dyn Target) -> Result<u64, CoreWriteError> {
    Ok(plan(target)?.total)
}

/// Writes the sink front to back, hashing and reporting progress.
struct Emitter<'s, 'p> {
    sink: &'s mut dyn CoreSink,
    progress: &'p mut dyn FnMut(u64, u64),
    hasher: Sha256,
    offset: u64,
    total: u64,
    next_report: u64,
}

impl Emitter<'_, '_> {
    fn emit(&mut self, bytes: &[u8]) -> Result<(), CoreWriteError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.sink.write_at(self.offset, bytes).map_err(CoreWriteError::Sink)?;
        self.hasher.update(bytes);
        self.offset += bytes.len() as u64;
        if self.offset >= self.next_report && self.offset < self.total {
            (self.progress)(self.offset, self.total);
            let step = (self.total / PROGRESS_STEPS).max(1);
            self.next_report = (self.offset / step + 1) * step;
        }
        Ok(())
    }

    fn pad_to(&mut self, offset: u64) -> Result<(), CoreWriteError> {
        const ZEROS: [u8; 4096] = [0; 4096];
        while self.offset < offset {
            let length = (offset - self.offset).min(ZEROS.len() as u64) as usize;
            self.emit(&ZEROS[..length])?;
        }
        Ok(())
    }
}

/// Writes the core of `target` to `sink` from offset 0, calling `progress(done_bytes, total_bytes)` now and then (at most ~100 times); sha256 is over the whole written core.
///
/// A page the target lists but cannot read (`Unmapped`) is left out, and as many
/// zero pages with the filler frame number close `.xen_pages`, as xg_core.c does for
/// pages that vanish during a dump: the table stays ascending with filler only at its
/// end. Any other target error aborts the write.
pub fn write_core(
    target: &dyn Target,
    sink: &mut dyn CoreSink,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<CoreSummary, CoreWriteError> {
    let plan = plan(target)?;
    let step = (plan.total / PROGRESS_STEPS).max(1);
    let mut out = Emitter { sink, progress, hasher: Sha256::new(), offset: 0, total: plan.total, next_report: step };

    let section_count = plan.sections.len() + 2;
    let names_index = 1u16;
    out.emit(&format::encode_elf_header(plan.section_headers_offset, section_count as u16, names_index))?;
    out.emit(&[0u8; SECTION_HEADER_SIZE])?;
    out.emit(&format::encode_section_header(&SectionHeader {
        name: plan.name_offsets[0],
        section_type: format::SECTION_TYPE_STRTAB,
        offset: plan.total - plan.names.len() as u64,
        size: plan.names.len() as u64,
        alignment: 0,
        entry_size: 0,
    }))?;
    for (index, section) in plan.sections.iter().enumerate() {
        out.emit(&format::encode_section_header(&SectionHeader {
            name: plan.name_offsets[index + 1],
            section_type: section.section_type,
            offset: plan.offsets[index],
            size: plan.sizes[index],
            alignment: section.alignment,
            entry_size: section.entry_size,
        }))?;
    }

    let mut frame_table: Vec<u64> = Vec::new();
    for (index, section) in plan.sections.iter().enumerate() {
        out.pad_to(plan.offsets[index])?;
        match &section.contents {
            Contents::Bytes(bytes) => out.emit(bytes)?,
            Contents::Borrowed(bytes) => out.emit(bytes)?,
            Contents::Pages => frame_table = write_pages(target, &plan.frames, &mut out)?,
            Contents::FrameTable => {
                let mut bytes = Vec::with_capacity(frame_table.len() * 8);
                for frame in &frame_table {
                    bytes.extend_from_slice(&frame.to_le_bytes());
                }
                out.emit(&bytes)?;
            }
        }
    }
    out.emit(&plan.names)?;
    (out.progress)(out.offset, out.total);
    Ok(CoreSummary { bytes: out.offset, sha256: out.hasher.finalize().into() })
}

/// Emits the pages of `frames` that the target can read, packed in order, then one
/// zero page per unreadable frame; returns the frame table (readable frames, then
/// filler), one entry per emitted page.
fn write_pages(target: &dyn Target, frames: &[u64], out: &mut Emitter<'_, '_>) -> Result<Vec<u64>, CoreWriteError> {
    let page_size = PAGE_SIZE as usize;
    let mut table = Vec::with_capacity(frames.len());
    let mut buffer = vec![0u8; PAGES_PER_WRITE * page_size];
    let mut filled = 0usize;
    for &frame in frames {
        let page = &mut buffer[filled * page_size..(filled + 1) * page_size];
        match target.read_physical(frame << PAGE_SHIFT, page) {
            Ok(()) => {
                table.push(frame);
                filled += 1;
            }
            Err(TargetError::Unmapped { .. }) => continue,
            Err(error) => return Err(CoreWriteError::Target(error)),
        }
        if filled == PAGES_PER_WRITE {
            out.emit(&buffer)?;
            filled = 0;
        }
    }
    out.emit(&buffer[..filled * page_size])?;
    let missing = frames.len() - table.len();
    buffer.fill(0);
    for _ in 0..missing {
        out.emit(&buffer[..page_size])?;
        table.push(INVALID_FRAME);
    }
    Ok(table)
}
