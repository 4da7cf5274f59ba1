//! Symbols from an ELF file's `.symtab` (ELF64 or ELF32, little-endian): the kernel
//! file a domain was built from, or the symbol-only ELF a Basalt core carries.
//!
//! The file is untrusted (a core file may come from anywhere): every header, section
//! and string is bounds-checked against the byte slice, counts are derived from sizes
//! the slice actually holds, and a symbol whose name is out of range is skipped rather
//! than failing the whole table.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::{Symbol, SymbolKind};

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const CLASS_32: u8 = 1;
const CLASS_64: u8 = 2;
const DATA_LITTLE_ENDIAN: u8 = 1;
const SECTION_TYPE_SYMTAB: u32 = 2;
const SYMBOL_TYPE_NOTYPE: u8 = 0;
const SYMBOL_TYPE_OBJECT: u8 = 1;
const SYMBOL_TYPE_FUNC: u8 = 2;
const SECTION_INDEX_UNDEFINED: u16 = 0;
/// Names longer than this are cut: no real symbol is this long, and a hostile string
/// table should not make one name the size of the file.
const MAXIMUM_NAME_LENGTH: usize = 1024;

/// Why an ELF file gave no symbols.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElfError {
    /// Not an ELF file.
    NotElf,
    /// An ELF this parser does not read (big-endian, unknown class).
    Unsupported(&'static str),
    /// A header or table points outside the file; the text names which.
    Truncated(&'static str),
    /// The file has no `.symtab` section.
    NoSymbolTable,
}

impl fmt::Display for ElfError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::NotElf => formatter.write_str("not an ELF file"),
            ElfError::Unsupported(what) => write!(formatter, "unsupported ELF: {what}"),
            ElfError::Truncated(what) => write!(formatter, "ELF {what} lies outside the file"),
            ElfError::NoSymbolTable => formatter.write_str("ELF file has no .symtab"),
        }
    }
}

/// One section header, widened to 64 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    pub name_offset: u32,
    pub kind: u32,
    pub address: u64,
    pub offset: u64,
    pub size: u64,
    pub link: u32,
    pub entry_size: u64,
}

/// An ELF file's header facts the symbol reader needs.
struct Layout<'a> {
    bytes: &'a [u8],
    wide: bool,
    section_offset: u64,
    section_entry_size: u64,
    section_count: u64,
    section_names_index: u64,
}

fn slice(bytes: &[u8], offset: u64, length: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let length = usize::try_from(length).ok()?;
    bytes.get(start..start.checked_add(length)?)
}

fn u16_at(bytes: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(offset..offset + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(offset..offset + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(offset..offset + 8)?.try_into().ok()?))
}

impl<'a> Layout<'a> {
    fn read(bytes: &'a [u8]) -> Result<Layout<'a>, ElfError> {
        if bytes.get(..4) != Some(&ELF_MAGIC[..]) {
            return Err(ElfError::NotElf);
        }
        let header_too_short = ElfError::Truncated("header");
        let class = *bytes.get(4).ok_or(ElfError::NotElf)?;
        if bytes.get(5) != Some(&DATA_LITTLE_ENDIAN) {
            return Err(ElfError::Unsupported("not little-endian"));
        }
        let (wide, section_offset, entry_size_at, count_at, names_at) = match class {
            CLASS_64 => (true, u64_at(bytes, 40).ok_or(header_too_short.clone())?, 58, 60, 62),
            CLASS_32 => (false, u64::from(u32_at(bytes, 32).ok_or(header_too_short.clone())?), 46, 48, 50),
            _ => return Err(ElfError::Unsupported("unknown class")),
        };
        let read16 = |at| u16_at(bytes, at).map(u64::from).ok_or(header_too_short.clone());
        let layout = Layout {
            bytes,
            wide,
            section_offset,
            section_entry_size: read16(entry_size_at)?,
            section_count: read16(count_at)?,
            section_names_index: read16(names_at)?,
        };
        let table_end = layout
            .section_count
            .checked_mul(layout.section_entry_size)
            .and_then(|size| size.checked_add(layout.section_offset));
        if table_end.is_none_or(|end| end > bytes.len() as u64) {
            return Err(ElfError::Truncated("section header table"));
        }
        Ok(layout)
    }

    fn section(&self, index: u64) -> Result<Section, ElfError> {
        let minimum = if self.wide { 64 } else { 40 };
        if self.section_entry_size < minimum || index >= self.section_count {
            return Err(ElfError::Truncated("section header"));
        }
        let at = index
            .checked_mul(self.section_entry_size)
            .and_then(|offset| offset.checked_add(self.section_offset))
            .ok_or(ElfError::Truncated("section header"))?;
        let header = slice(self.bytes, at, minimum).ok_or(ElfError::Truncated("section header"))?;
        let missing = ElfError::Truncated("section header");
        Ok(if self.wide {
            Section {
                name_offset: u32_at(header, 0).ok_or(missing.clone())?,
                kind: u32_at(header, 4).ok_or(missing.clone())?,
                address: u64_at(header, 16).ok_or(missing.clone())?,
                offset: u64_at(header, 24).ok_or(missing.clone())?,
                size: u64_at(header, 32).ok_or(missing.clone())?,
                link: u32_at(header, 40).ok_or(missing.clone())?,
                entry_size: u64_at(header, 56).ok_or(missing)?,
            }
        } else {
            let word = |at| u32_at(header, at).map(u64::from).ok_or(missing.clone());
            Section {
                name_offset: word(0)? as u32,
                kind: word(4)? as u32,
                address: word(12)?,
                offset: word(16)?,
                size: word(20)?,
                link: word(24)? as u32,
                entry_size: word(36)?,
            }
        })
    }

    fn data(&self, section: &Section) -> Result<&'a [u8], ElfError> {
        slice(self.bytes, section.offset, section.size).ok_or(ElfError::Truncated("section contents"))
    }

    fn symbol_table(&self) -> Result<Option<Section>, ElfError> {
        for index in 0..self.section_count {
            let section = self.section(index)?;
            if section.kind == SECTION_TYPE_SYMTAB {
                return Ok(Some(section));
            }
        }
        Ok(None)
    }
}

/// A NUL-terminated string at `offset` of a string table, if it is valid UTF-8 (cut at
/// [`MAXIMUM_NAME_LENGTH`]).
fn string_at(table: &[u8], offset: u32) -> Option<&str> {
    let rest = table.get(usize::try_from(offset).ok()?..)?;
    let end = rest.iter().take(MAXIMUM_NAME_LENGTH).position(|&byte| byte == 0)?;
    core::str::from_utf8(&rest[..end]).ok()
}

/// The sections of an ELF file with their names (for tools and host checks that need
/// `.rodata`, `.orc_unwind_ip` and the like).
pub fn sections(bytes: &[u8]) -> Result<Vec<(String, Section)>, ElfError> {
    let layout = Layout::read(bytes)?;
    let names = layout.section(layout.section_names_index).and_then(|section| layout.data(&section)).ok();
    let mut result = Vec::new();
    for index in 0..layout.section_count {
        let section = layout.section(index)?;
        let name = names.and_then(|table| string_at(table, section.name_offset)).unwrap_or("");
        result.push((String::from(name), section));
    }
    Ok(result)
}

/// The defined function, object and untyped symbols with a non-zero value of the
/// file's `.symtab`.
pub fn parse_symbols(bytes: &[u8]) -> Result<Vec<Symbol>, ElfError> {
    let layout = Layout::read(bytes)?;
    let table = layout.symbol_table()?.ok_or(ElfError::NoSymbolTable)?;
    let entries = layout.data(&table)?;
    let strings = layout.section(u64::from(table.link)).and_then(|section| layout.data(&section))?;
    let entry_size = if layout.wide { 24 } else { 16 };
    let mut symbols = Vec::new();
    // chunks_exact bounds the count by what the file holds, whatever sh_size claims.
    for entry in entries.chunks_exact(entry_size) {
        let (name_offset, info, section_index, value, size) = if layout.wide {
            (u32_at(entry, 0), entry.get(4).copied(), u16_at(entry, 6), u64_at(entry, 8), u64_at(entry, 16))
        } else {
            (
                u32_at(entry, 0),
                entry.get(12).copied(),
                u16_at(entry, 14),
                u32_at(entry, 4).map(u64::from),
                u32_at(entry, 8).map(u64::from),
            )
        };
        let (Some(name_offset), Some(info), Some(section_index), Some(value), Some(size)) =
            (name_offset, info, section_index, value, size)
        else {
            continue;
        };
        let kind = match info & 0xf {
            SYMBOL_TYPE_FUNC => SymbolKind::Function,
            SYMBOL_TYPE_OBJECT => SymbolKind::Object,
            SYMBOL_TYPE_NOTYPE => SymbolKind::Other,
            _ => continue,
        };
        if value == 0 || section_index == SECTION_INDEX_UNDEFINED {
            continue;
        }
        let Some(name) = string_at(strings, name_offset).filter(|name| !name.is_empty()) else { continue };
        symbols.push(Symbol { name: String::from(name), address: value, size, kind });
    }
    Ok(symbols)
}

/// True if `bytes` is an ELF file whose `.symtab` yields at least one symbol.
pub fn is_elf_with_symbols(bytes: &[u8]) -> bool {
    parse_symbols(bytes).is_ok_and(|symbols| !symbols.is_empty())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::vec;

    /// A minimal ELF64 with sections: null, .strtab, .symtab, .shstrtab. `symbols` are
    /// (name, value, size, type).
    pub(crate) fn build_elf64(symbols: &[(&str, u64, u64, u8)]) -> Vec<u8> {
        let mut strings = vec![0u8];
        let mut entries = vec![0u8; 24]; // symbol 0 is the null symbol
        for (name, value, size, kind) in symbols {
            let name_offset = strings.len() as u32;
            strings.extend_from_slice(name.as_bytes());
            strings.push(0);
            entries.extend_from_slice(&name_offset.to_le_bytes());
            entries.push(0x10 | kind); // global binding
            entries.push(0);
            entries.extend_from_slice(&1u16.to_le_bytes());
            entries.extend_from_slice(&value.to_le_bytes());
            entries.extend_from_slice(&size.to_le_bytes());
        }
        let section_names = b"\0.strtab\0.symtab\0.shstrtab\0";
        let mut file = vec![0u8; 64];
        let strings_offset = file.len() as u64;
        file.extend_from_slice(&strings);
        while !file.len().is_multiple_of(8) {
            file.push(0);
        }
        let entries_offset = file.len() as u64;
        file.extend_from_slice(&entries);
        let names_offset = file.len() as u64;
        file.extend_from_slice(section_names);
        while !file.len().is_multiple_of(8) {
            file.push(0);
        }
        let section_offset = file.len() as u64;
        let mut header = |name: u32, kind: u32, offset: u64, size: u64, link: u32, entry_size: u64| {
            let mut bytes = vec![0u8; 64];
            bytes[0..4].copy_from_slice(&name.to_le_bytes());
            bytes[4..8].copy_from_slice(&kind.to_le_bytes());
            bytes[24..32].copy_from_slice(&offset.to_le_bytes());
            bytes[32..40].copy_from_slice(&size.to_le_bytes());
            bytes[40..44].copy_from_slice(&link.to_le_bytes());
            bytes[56..64].copy_from_slice(&entry_size.to_le_bytes());
            file.extend_from_slice(&bytes);
        };
        header(0, 0, 0, 0, 0, 0);
        header(1, 3, strings_offset, strings.len() as u64, 0, 0);
        header(9, 2, entries_offset, entries.len() as u64, 1, 24);
        header(17, 3, names_offset, section_names.len() as u64, 0, 0);
        file[0..4].copy_from_slice(ELF_MAGIC);
        file[4] = CLASS_64;
        file[5] = DATA_LITTLE_ENDIAN;
        file[6] = 1;
        file[16..18].copy_from_slice(&2u16.to_le_bytes());
        file[18..20].copy_from_slice(&62u16.to_le_bytes());
        file[40..48].copy_from_slice(&section_offset.to_le_bytes());
        file[52..54].copy_from_slice(&64u16.to_le_bytes());
        file[58..60].copy_from_slice(&64u16.to_le_bytes());
        file[60..62].copy_from_slice(&4u16.to_le_bytes());
        file[62..64].copy_from_slice(&3u16.to_le_bytes());
        file
    }

    /// The same as [`build_elf64`] as ELF32 (40-byte section headers, 16-byte symbols).
    fn build_elf32(symbols: &[(&str, u32, u32, u8)]) -> Vec<u8> {
        let mut strings = vec![0u8];
        let mut entries = vec![0u8; 16];
        for (name, value, size, kind) in symbols {
            let name_offset = strings.len() as u32;
            strings.extend_from_slice(name.as_bytes());
            strings.push(0);
            entries.extend_from_slice(&name_offset.to_le_bytes());
            entries.extend_from_slice(&value.to_le_bytes());
            entries.extend_from_slice(&size.to_le_bytes());
            entries.push(0x10 | kind);
            entries.push(0);
            entries.extend_from_slice(&1u16.to_le_bytes());
        }
        let mut file = vec![0u8; 52];
        let strings_offset = file.len() as u32;
        file.extend_from_slice(&strings);
        while !file.len().is_multiple_of(4) {
            file.push(0);
        }
        let entries_offset = file.len() as u32;
        file.extend_from_slice(&entries);
        let section_offset = file.len() as u32;
        let mut header = |kind: u32, offset: u32, size: u32, link: u32| {
            let mut bytes = vec![0u8; 40];
            bytes[4..8].copy_from_slice(&kind.to_le_bytes());
            bytes[16..20].copy_from_slice(&offset.to_le_bytes());
            bytes[20..24].copy_from_slice(&size.to_le_bytes());
            bytes[24..28].copy_from_slice(&link.to_le_bytes());
            file.extend_from_slice(&bytes);
        };
        header(0, 0, 0, 0);
        header(3, strings_offset, strings.len() as u32, 0);
        header(2, entries_offset, entries.len() as u32, 1);
        file[0..4].copy_from_slice(ELF_MAGIC);
        file[4] = CLASS_32;
        file[5] = DATA_LITTLE_ENDIAN;
        file[32..36].copy_from_slice(&section_offset.to_le_bytes());
        file[46..48].copy_from_slice(&40u16.to_le_bytes());
        file[48..50].copy_from_slice(&3u16.to_le_bytes());
        file
    }

    #[test]
    fn symtab_of_a_built_elf32() {
        let file = build_elf32(&[
            ("start32", 0x10_0000, 0x20, SYMBOL_TYPE_FUNC),
            ("table", 0x10_2000, 64, SYMBOL_TYPE_OBJECT),
        ]);
        let symbols = parse_symbols(&file).unwrap();
        assert_eq!(symbols.len(), 2);
        assert_eq!((symbols[0].name.as_str(), symbols[0].address, symbols[0].size), ("start32", 0x10_0000, 0x20));
        assert_eq!((symbols[1].name.as_str(), symbols[1].kind), ("table", SymbolKind::Object));
        for length in 0..file.len() {
            let _ = parse_symbols(&file[..length]);
        }
    }

    fn sample() -> Vec<u8> {
        build_elf64(&[
            ("main", 0x1000, 0x40, SYMBOL_TYPE_FUNC),
            ("counter", 0x2000, 8, SYMBOL_TYPE_OBJECT),
            ("_text", 0x1000, 0, SYMBOL_TYPE_NOTYPE),
            ("zero", 0, 0, SYMBOL_TYPE_FUNC),
            ("file.c", 0x5, 0, 4), // STT_FILE: dropped
        ])
    }

    #[test]
    fn symtab_of_a_built_elf64() {
        let symbols = parse_symbols(&sample()).unwrap();
        let names: Vec<(&str, u64, SymbolKind)> =
            symbols.iter().map(|symbol| (symbol.name.as_str(), symbol.address, symbol.kind)).collect();
        assert_eq!(
            names,
            vec![
                ("main", 0x1000, SymbolKind::Function),
                ("counter", 0x2000, SymbolKind::Object),
                ("_text", 0x1000, SymbolKind::Other)
            ]
        );
        assert_eq!(symbols[0].size, 0x40);
        assert!(is_elf_with_symbols(&sample()));
        let names: Vec<String> = sections(&sample()).unwrap().into_iter().map(|(name, _)| name).collect();
        assert_eq!(names, vec!["", ".strtab", ".symtab", ".shstrtab"]);
    }

    #[test]
    fn hostile_files_fail_cleanly() {
        let file = sample();
        assert_eq!(parse_symbols(b"MZ"), Err(ElfError::NotElf));
        assert!(!is_elf_with_symbols(&[]));
        // Every truncation either errors or yields a subset; none panics.
        for length in 0..file.len() {
            let _ = parse_symbols(&file[..length]);
        }
        assert!(parse_symbols(&file[..file.len() - 2 * 64]).is_err());

        // Bad string index: the symbol is skipped, the others stay.
        let mut bad_name = file.clone();
        let symtab = sections(&file).unwrap()[2].1;
        let first = symtab.offset as usize + 24;
        bad_name[first..first + 4].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        let symbols = parse_symbols(&bad_name).unwrap();
        assert_eq!(symbols.len(), 2);
        assert!(symbols.iter().all(|symbol| symbol.name != "main"));

        // Huge section count and huge symbol-table size point outside the file.
        let mut huge_count = file.clone();
        huge_count[60..62].copy_from_slice(&0xffffu16.to_le_bytes());
        assert!(matches!(parse_symbols(&huge_count), Err(ElfError::Truncated(_))));
        let mut huge_size = file.clone();
        let header = u64::from_le_bytes(file[40..48].try_into().unwrap()) as usize + 2 * 64;
        huge_size[header + 32..header + 40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(parse_symbols(&huge_size), Err(ElfError::Truncated(_))));

        // Big-endian and unknown class.
        let mut big = file.clone();
        big[5] = 2;
        assert!(matches!(parse_symbols(&big), Err(ElfError::Unsupported(_))));
        let mut class = file;
        class[4] = 9;
        assert!(matches!(parse_symbols(&class), Err(ElfError::Unsupported(_))));
    }
}
