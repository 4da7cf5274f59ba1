//! Reading a Xen PVH kernel: the ELF program headers to load and the entry point from
//! the `XEN_ELFNOTE_PHYS32_ENTRY` note.
//!
//! What is checked (the file comes from the user, so every field is untrusted): ELF
//! magic, class (32- or 64-bit), little-endian, x86 machine, an executable; every
//! program header inside the file; each `PT_LOAD` with `p_filesz <= p_memsz`, its file
//! bytes inside the file and its guest-physical range `[p_paddr, p_paddr + p_memsz)`
//! below 4 GiB (PVH enters in 32-bit mode) and overlapping no other segment; the note
//! present (it is what marks a kernel as PVH-capable) and its entry inside a loaded
//! segment's file-backed bytes. Segments load at `p_paddr`, never `p_vaddr` (Linux's
//! per-CPU segment has `p_vaddr = 0`).
//!
//! Specification: Xen `docs/misc/pvh.pandoc`, `xen/include/public/elfnote.h`
//! (XEN_ELFNOTE_PHYS32_ENTRY = 18, XEN_ELFNOTE_PHYS32_RELOC = 19; numeric descriptors
//! of 1, 2, 4 or 8 bytes), and the ELF gABI for headers and notes.

use alloc::vec::Vec;
use core::fmt;

use super::le::{read_u16, read_u32, read_u64};

/// `XEN_ELFNOTE_PHYS32_ENTRY`: the 32-bit physical entry point of a PVH kernel.
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// `XEN_ELFNOTE_PHYS32_RELOC`: the kernel may be loaded elsewhere (alignment, bounds).
pub const XEN_ELFNOTE_PHYS32_RELOC: u32 = 19;
/// Most program headers accepted (Linux has a handful).
pub const MAX_PROGRAM_HEADERS: usize = 64;
/// PVH guests enter in 32-bit protected mode without paging.
pub const PHYSICAL_LIMIT: u64 = 1 << 32;

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const ET_EXEC: u16 = 2;
const EM_386: u16 = 3;
const EM_X86_64: u16 = 62;

/// Why a file is not a loadable PVH kernel. Each names the first problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PvhElfError {
    /// Shorter than an ELF header, or not starting with the ELF magic.
    NotElf,
    /// Neither 32- nor 64-bit, or not little-endian.
    UnsupportedClass,
    /// Not built for x86 (`e_machine`).
    WrongMachine(u16),
    /// Not an executable (`e_type`).
    NotExecutable(u16),
    /// The program header table lies outside the file or is malformed.
    BadProgramHeaders,
    /// More program headers than [`MAX_PROGRAM_HEADERS`].
    TooManyProgramHeaders(usize),
    /// Segment `index` is inconsistent: file bytes outside the file, or more file bytes
    /// than memory bytes.
    BadSegment { index: usize },
    /// Segment `index` reaches past 4 GiB.
    SegmentAboveFourGiB { index: usize },
    /// Segments `first` and `second` overlap in guest-physical memory.
    OverlappingSegments { first: usize, second: usize },
    /// Nothing to load.
    NoLoadableSegments,
    /// No `XEN_ELFNOTE_PHYS32_ENTRY` note: not a PVH kernel.
    NotPvh,
    /// The entry note's descriptor is not a 1/2/4/8-byte number, or exceeds 32 bits.
    BadEntryNote,
    /// The entry point is not inside a loaded segment's file bytes.
    EntryOutsideImage(u64),
}

impl fmt::Display for PvhElfError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PvhElfError::NotElf => formatter.write_str("not an ELF file"),
            PvhElfError::UnsupportedClass => formatter.write_str("not a little-endian 32- or 64-bit ELF file"),
            PvhElfError::WrongMachine(machine) => write!(formatter, "built for machine {machine}, not x86"),
            PvhElfError::NotExecutable(kind) => write!(formatter, "ELF type {kind} is not an executable"),
            PvhElfError::BadProgramHeaders => formatter.write_str("program header table is malformed"),
            PvhElfError::TooManyProgramHeaders(count) => {
                write!(formatter, "{count} program headers (at most {MAX_PROGRAM_HEADERS})")
            }
            PvhElfError::BadSegment { index } => write!(formatter, "segment {index} is malformed"),
            PvhElfError::SegmentAboveFourGiB { index } => write!(formatter, "segment {index} reaches past 4 GiB"),
            PvhElfError::OverlappingSegments { first, second } => {
                write!(formatter, "segments {first} and {second} overlap")
            }
            PvhElfError::NoLoadableSegments => formatter.write_str("no loadable segments"),
            PvhElfError::NotPvh => formatter.write_str("no XEN_ELFNOTE_PHYS32_ENTRY note: not a PVH kernel"),
            PvhElfError::BadEntryNote => formatter.write_str("malformed XEN_ELFNOTE_PHYS32_ENTRY note"),
            PvhElfError::EntryOutsideImage(entry) => write!(formatter, "entry point {entry:#x} is outside the image"),
        }
    }
}

/// One piece of the kernel to place in guest memory: `data` at `physical_address`,
/// then zeros up to `memory_size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadSegment<'a> {
    pub physical_address: u64,
    pub data: &'a [u8],
    pub memory_size: u64,
}

impl LoadSegment<'_> {
    /// One past the last guest-physical byte.
    pub fn end(&self) -> u64 {
        self.physical_address + self.memory_size
    }
}

/// A checked PVH kernel image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvhKernel<'a> {
    /// `PT_LOAD` segments, sorted by guest-physical address, non-overlapping.
    pub segments: Vec<LoadSegment<'a>>,
    /// Guest-physical entry point for vCPU 0 (32-bit protected mode).
    pub entry: u32,
    /// Whether the kernel carries `XEN_ELFNOTE_PHYS32_RELOC`.
    pub relocatable: bool,
    /// Whether the file is ELF64 (else ELF32).
    pub is_64_bit: bool,
}

impl PvhKernel<'_> {
    /// The guest-physical range the image occupies, `[lowest, highest)`.
    pub fn physical_extent(&self) -> (u64, u64) {
        let start = self.segments.first().map_or(0, |s| s.physical_address);
        let end = self.segments.iter().map(LoadSegment::end).max().unwrap_or(0);
        (start, end)
    }
}

/// Little-endian field reads that fail instead of panicking.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u16(&self, offset: usize) -> Option<u16> {
        read_u16(self.0, offset)
    }
    fn u32(&self, offset: usize) -> Option<u32> {
        read_u32(self.0, offset)
    }
    fn u64(&self, offset: usize) -> Option<u64> {
        read_u64(self.0, offset)
    }
    /// A 32- or 64-bit "address/offset" field, by ELF class.
    fn word(&self, offset: usize, is_64_bit: bool) -> Option<u64> {
        if is_64_bit {
            self.u64(offset)
        } else {
            self.u32(offset).map(u64::from)
        }
    }
}

struct ProgramHeader {
    kind: u32,
    offset: u64,
    physical_address: u64,
    file_size: u64,
    memory_size: u64,
}

fn program_header(file: &Bytes<'_>, at: usize, is_64_bit: bool) -> Option<ProgramHeader> {
    // Elf64_Phdr: type u32, flags u32, offset, vaddr, paddr, filesz, memsz, align (u64 each).
    // Elf32_Phdr: type, offset, vaddr, paddr, filesz, memsz, flags, align (u32 each).
    let (offset, paddr, filesz, memsz) = if is_64_bit { (8, 24, 32, 40) } else { (4, 12, 16, 20) };
    Some(ProgramHeader {
        kind: file.u32(at)?,
        offset: file.word(at + offset, is_64_bit)?,
        physical_address: file.word(at + paddr, is_64_bit)?,
        file_size: file.word(at + filesz, is_64_bit)?,
        memory_size: file.word(at + memsz, is_64_bit)?,
    })
}

/// Reads and checks a PVH kernel ELF file.
pub fn parse(image: &[u8]) -> Result<PvhKernel<'_>, PvhElfError> {
    let file = Bytes(image);
    if image.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err(PvhElfError::NotElf);
    }
    let is_64_bit = match (image.get(4), image.get(5)) {
        (Some(2), Some(1)) => true,
        (Some(1), Some(1)) => false,
        (None, _) | (_, None) => return Err(PvhElfError::NotElf),
        _ => return Err(PvhElfError::UnsupportedClass),
    };
    let kind = file.u16(16).ok_or(PvhElfError::NotElf)?;
    let machine = file.u16(18).ok_or(PvhElfError::NotElf)?;
    if machine != EM_386 && machine != EM_X86_64 {
        return Err(PvhElfError::WrongMachine(machine));
    }
    if kind != ET_EXEC {
        return Err(PvhElfError::NotExecutable(kind));
    }
    let (phoff_at, phentsize_at, phnum_at, minimum_entry) = if is_64_bit { (32, 54, 56, 56) } else { (28, 42, 44, 32) };
    let table_offset = file.word(phoff_at, is_64_bit).ok_or(PvhElfError::NotElf)?;
    let entry_size = usize::from(file.u16(phentsize_at).ok_or(PvhElfError::NotElf)?);
    let count = usize::from(file.u16(phnum_at).ok_or(PvhElfError::NotElf)?);
    if count > MAX_PROGRAM_HEADERS {
        return Err(PvhElfError::TooManyProgramHeaders(count));
    }
    if entry_size < minimum_entry {
        return Err(PvhElfError::BadProgramHeaders);
    }
    let table_offset = usize::try_from(table_offset).map_err(|_| PvhElfError::BadProgramHeaders)?;
    let table_end = entry_size.checked_mul(count).and_then(|size| size.checked_add(table_offset));
    if table_end.is_none_or(|end| end > image.len()) {
        return Err(PvhElfError::BadProgramHeaders);
    }

    let mut segments: Vec<(usize, LoadSegment<'_>)> = Vec::new();
    let mut entry_note: Option<Result<u64, PvhElfError>> = None;
    let mut relocatable = false;
    for index in 0..count {
        let header = program_header(&file, table_offset + index * entry_size, is_64_bit)
            .ok_or(PvhElfError::BadProgramHeaders)?;
        let file_bytes = usize::try_from(header.offset)
            .ok()
            .zip(usize::try_from(header.file_size).ok())
            .and_then(|(start, size)| image.get(start..start.checked_add(size)?));
        match header.kind {
            PT_LOAD => {
                let data = file_bytes.ok_or(PvhElfError::BadSegment { index })?;
                if header.file_size > header.memory_size {
                    return Err(PvhElfError::BadSegment { index });
                }
                let end = header.physical_address.checked_add(header.memory_size);
                if end.is_none_or(|end| end > PHYSICAL_LIMIT) {
                    return Err(PvhElfError::SegmentAboveFourGiB { index });
                }
                if header.memory_size > 0 {
                    segments.push((
                        index,
                        LoadSegment {
                            physical_address: header.physical_address,
                            data,
                            memory_size: header.memory_size,
                        },
                    ));
                }
            }
            PT_NOTE => {
                // A note segment outside the file is skipped, not fatal: only note 18 matters.
                for (note_type, descriptor) in XenNotes::new(file_bytes.unwrap_or(&[])) {
                    match note_type {
                        XEN_ELFNOTE_PHYS32_ENTRY => {
                            entry_note.get_or_insert(numeric(descriptor).ok_or(PvhElfError::BadEntryNote));
                        }
                        XEN_ELFNOTE_PHYS32_RELOC => relocatable = true,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if segments.is_empty() {
        return Err(PvhElfError::NoLoadableSegments);
    }
    segments.sort_by_key(|(_, segment)| segment.physical_address);
    for pair in segments.windows(2) {
        if pair[1].1.physical_address < pair[0].1.end() {
            return Err(PvhElfError::OverlappingSegments { first: pair[0].0, second: pair[1].0 });
        }
    }
    let entry = entry_note.ok_or(PvhElfError::NotPvh)??;
    let inside =
        segments.iter().any(|(_, s)| entry >= s.physical_address && entry - s.physical_address < s.data.len() as u64);
    if !inside {
        return Err(PvhElfError::EntryOutsideImage(entry));
    }
    let entry = u32::try_from(entry).map_err(|_| PvhElfError::BadEntryNote)?;
    Ok(PvhKernel { segments: segments.into_iter().map(|(_, s)| s).collect(), entry, relocatable, is_64_bit })
}

/// A numeric note descriptor: 1, 2, 4 or 8 bytes, little-endian.
fn numeric(descriptor: &[u8]) -> Option<u64> {
    match descriptor.len() {
        1 | 2 | 4 | 8 => {
            let mut bytes = [0u8; 8];
            bytes[..descriptor.len()].copy_from_slice(descriptor);
            Some(u64::from_le_bytes(bytes))
        }
        _ => None,
    }
}

/// Iterates over the notes named "Xen" in a note segment: (type, descriptor). Stops at
/// the first malformed note.
struct XenNotes<'a> {
    notes: &'a [u8],
}

impl<'a> XenNotes<'a> {
    fn new(notes: &'a [u8]) -> Self {
        Self { notes }
    }
}

fn align4(value: usize) -> Option<usize> {
    value.checked_add(3).map(|v| v & !3)
}

impl<'a> Iterator for XenNotes<'a> {
    type Item = (u32, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let notes = Bytes(self.notes);
            let name_size = usize::try_from(notes.u32(0)?).ok()?;
            let descriptor_size = usize::try_from(notes.u32(4)?).ok()?;
            let note_type = notes.u32(8)?;
            let name_end = 12usize.checked_add(name_size)?;
            let descriptor_start = align4(name_end)?;
            let descriptor_end = descriptor_start.checked_add(descriptor_size)?;
            let next = align4(descriptor_end)?.min(self.notes.len());
            let name = self.notes.get(12..name_end)?;
            let descriptor = self.notes.get(descriptor_start..descriptor_end)?;
            self.notes = self.notes.get(next..)?;
            if name == b"Xen\0" || name == b"Xen" {
                return Some((note_type, descriptor));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// (type, paddr, file bytes, memsz)
    type Segment = (u32, u64, Vec<u8>, u64);

    fn note(name: &[u8], note_type: u32, descriptor: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(name.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(descriptor.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&note_type.to_le_bytes());
        bytes.extend_from_slice(name);
        while bytes.len() % 4 != 0 {
            bytes.push(0);
        }
        bytes.extend_from_slice(descriptor);
        while bytes.len() % 4 != 0 {
            bytes.push(0);
        }
        bytes
    }

    /// Builds an ELF file: header, program headers, then each segment's bytes.
    fn elf(is_64_bit: bool, segments: &[Segment]) -> Vec<u8> {
        let (header_size, entry_size) = if is_64_bit { (64, 56) } else { (52, 32) };
        let mut file = vec![0u8; header_size];
        file[..4].copy_from_slice(b"\x7fELF");
        file[4] = if is_64_bit { 2 } else { 1 };
        file[5] = 1;
        file[6] = 1;
        file[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        file[18..20].copy_from_slice(&(if is_64_bit { EM_X86_64 } else { EM_386 }).to_le_bytes());
        let count = segments.len() as u16;
        if is_64_bit {
            file[32..40].copy_from_slice(&(header_size as u64).to_le_bytes());
            file[54..56].copy_from_slice(&(entry_size as u16).to_le_bytes());
            file[56..58].copy_from_slice(&count.to_le_bytes());
        } else {
            file[28..32].copy_from_slice(&(header_size as u32).to_le_bytes());
            file[42..44].copy_from_slice(&(entry_size as u16).to_le_bytes());
            file[44..46].copy_from_slice(&count.to_le_bytes());
        }
        let mut data_offset = header_size + entry_size * segments.len();
        let mut data = Vec::new();
        for (kind, paddr, bytes, memsz) in segments {
            let mut header = vec![0u8; entry_size];
            header[0..4].copy_from_slice(&kind.to_le_bytes());
            if is_64_bit {
                header[8..16].copy_from_slice(&(data_offset as u64).to_le_bytes());
                header[16..24].copy_from_slice(&0xffff_ffff_8000_0000u64.to_le_bytes()); // vaddr: ignored
                header[24..32].copy_from_slice(&paddr.to_le_bytes());
                header[32..40].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
                header[40..48].copy_from_slice(&memsz.to_le_bytes());
            } else {
                header[4..8].copy_from_slice(&(data_offset as u32).to_le_bytes());
                header[12..16].copy_from_slice(&(*paddr as u32).to_le_bytes());
                header[16..20].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
                header[20..24].copy_from_slice(&(*memsz as u32).to_le_bytes());
            }
            file.extend_from_slice(&header);
            data.extend_from_slice(bytes);
            data_offset += bytes.len();
        }
        file.extend_from_slice(&data);
        file
    }

    fn linux_like(is_64_bit: bool, entry_descriptor: &[u8]) -> Vec<u8> {
        let mut notes = note(b"Xen\0", 6, b"linux\0");
        notes.extend(note(b"GNU\0", XEN_ELFNOTE_PHYS32_ENTRY, &[0xde, 0xad, 0xbe, 0xef])); // other owner: ignored
        notes.extend(note(b"Xen\0", XEN_ELFNOTE_PHYS32_ENTRY, entry_descriptor));
        elf(
            is_64_bit,
            &[
                (PT_LOAD, 0x0100_0000, vec![0x90; 0x1000], 0x2000),
                (PT_NOTE, 0, notes, 0),
                (PT_LOAD, 0x0301_a000, vec![0xcc; 0x100], 0x100),
            ],
        )
    }

    #[test]
    fn reads_a_linux_like_kernel_in_both_classes() {
        for is_64_bit in [true, false] {
            let file = linux_like(is_64_bit, &0x0100_0850u64.to_le_bytes());
            let kernel = parse(&file).unwrap();
            assert_eq!(kernel.entry, 0x0100_0850);
            assert_eq!(kernel.is_64_bit, is_64_bit);
            assert!(!kernel.relocatable);
            assert_eq!(kernel.segments.len(), 2);
            assert_eq!(kernel.segments[0].physical_address, 0x0100_0000);
            assert_eq!(kernel.segments[0].data, &[0x90; 0x1000][..]);
            assert_eq!(kernel.segments[0].memory_size, 0x2000);
            assert_eq!(kernel.physical_extent(), (0x0100_0000, 0x0301_a100));
        }
    }

    #[test]
    fn numeric_descriptors_of_every_size() {
        for descriptor in [&[0x50u8, 0x08, 0x00, 0x01][..], &[0x50, 0x08, 0x00, 0x01, 0, 0, 0, 0]] {
            assert_eq!(parse(&linux_like(true, descriptor)).unwrap().entry, 0x0100_0850);
        }
        assert_eq!(parse(&linux_like(true, &[1, 2, 3])).unwrap_err(), PvhElfError::BadEntryNote);
        // A 1- or 2-byte entry lies below the image.
        assert_eq!(parse(&linux_like(true, &[0x50])).unwrap_err(), PvhElfError::EntryOutsideImage(0x50));
    }

    #[test]
    fn rejects_what_cannot_be_loaded() {
        let load = |paddr: u64, size: usize, memsz: u64| (PT_LOAD, paddr, vec![0u8; size], memsz);
        let entry_note = |entry: u32| (PT_NOTE, 0, note(b"Xen\0", XEN_ELFNOTE_PHYS32_ENTRY, &entry.to_le_bytes()), 0);
        let cases: [(Vec<Segment>, PvhElfError); 6] = [
            (vec![load(0x10_0000, 0x100, 0x100)], PvhElfError::NotPvh),
            (vec![load(0x10_0000, 0x100, 0x80), entry_note(0x10_0000)], PvhElfError::BadSegment { index: 0 }),
            (
                vec![load(0xffff_f000, 0x100, 0x2000), entry_note(0xffff_f000)],
                PvhElfError::SegmentAboveFourGiB { index: 0 },
            ),
            (
                vec![load(0x10_0000, 0x100, 0x1000), load(0x10_0800, 0x10, 0x10), entry_note(0x10_0000)],
                PvhElfError::OverlappingSegments { first: 0, second: 1 },
            ),
            // The entry lies in the zero-filled tail, which holds no code.
            (vec![load(0x10_0000, 0x100, 0x1000), entry_note(0x10_0200)], PvhElfError::EntryOutsideImage(0x10_0200)),
            (vec![entry_note(0x10_0000)], PvhElfError::NoLoadableSegments),
        ];
        for (segments, expected) in cases {
            assert_eq!(parse(&elf(true, &segments)).unwrap_err(), expected, "{segments:?}");
        }
    }

    #[test]
    fn rejects_bad_headers() {
        let good = linux_like(true, &0x0100_0850u32.to_le_bytes());
        assert_eq!(parse(b"").unwrap_err(), PvhElfError::NotElf);
        assert_eq!(parse(b"MZ\x90\x00").unwrap_err(), PvhElfError::NotElf);
        let mut big_endian = good.clone();
        big_endian[5] = 2;
        assert_eq!(parse(&big_endian).unwrap_err(), PvhElfError::UnsupportedClass);
        let mut arm = good.clone();
        arm[18..20].copy_from_slice(&183u16.to_le_bytes());
        assert_eq!(parse(&arm).unwrap_err(), PvhElfError::WrongMachine(183));
        let mut shared_object = good.clone();
        shared_object[16..18].copy_from_slice(&3u16.to_le_bytes());
        assert_eq!(parse(&shared_object).unwrap_err(), PvhElfError::NotExecutable(3));
        let mut many = good.clone();
        many[56..58].copy_from_slice(&1000u16.to_le_bytes());
        assert_eq!(parse(&many).unwrap_err(), PvhElfError::TooManyProgramHeaders(1000));
        let mut table_outside = good.clone();
        table_outside[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(parse(&table_outside).unwrap_err(), PvhElfError::BadProgramHeaders);
        // Every truncation of a good file is an error, never a panic.
        for length in 0..good.len() {
            assert!(parse(&good[..length]).is_err(), "truncated to {length}");
        }
    }

    #[test]
    fn random_and_mutated_files_never_panic() {
        let good = linux_like(true, &0x0100_0850u32.to_le_bytes());
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut file = good.clone();
            for _ in 0..1 + next() % 8 {
                let at = (next() % file.len() as u64) as usize;
                file[at] = next() as u8;
            }
            if let Ok(kernel) = parse(&file) {
                // Whatever is accepted satisfies the documented invariants.
                assert!(kernel
                    .segments
                    .iter()
                    .all(|s| s.end() <= PHYSICAL_LIMIT && s.data.len() as u64 <= s.memory_size));
                assert!(kernel.segments.windows(2).all(|pair| pair[0].end() <= pair[1].physical_address));
            }
            let random: Vec<u8> = (0..next() % 256).map(|_| next() as u8).collect();
            let _ = parse(&random);
        }
    }
}
