//! Symbolizing hypervisor addresses: the symbol table of the hypervisor's own ELF file.
//!
//! Why: an exception backtrace of raw addresses is useless on a serial console. GRUB loads
//! the hypervisor's ELF file a second time as a multiboot2 module; this module reads its
//! `SHT_SYMTAB` section so a backtrace can say `basalt_kernel::mm::frames::...+0x1c`.
//!
//! Spec: System V ABI, "Object Files" (ELF-64 Object File Format, version 1.5): the ELF
//! header, section header table, `SHT_SYMTAB` and the string table named by its `sh_link`.
//! Only ELF64 little-endian files are accepted; the machine is not checked.
//!
//! Invariants: the input is untrusted bytes; every offset and size read from it is checked
//! before use, and a symbol with a bad name (out of bounds, not UTF-8, empty) is skipped
//! rather than failing the table. Names borrow the ELF bytes, so the table lives no longer
//! than the module's memory. Symbols are kept sorted by address.

use alloc::vec::Vec;
use core::fmt;

const ELF_MAGIC: [u8; 4] = [0x7F, b'E', b'L', b'F'];
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const ELF64_HEADER_BYTES: usize = 64;
const ELF64_SECTION_HEADER_BYTES: usize = 64;
const ELF64_SYMBOL_BYTES: usize = 24;
const SHT_SYMTAB: u32 = 2;
const SHT_STRTAB: u32 = 3;
const SHN_UNDEF: u16 = 0;
/// Section indexes from here up are reserved (SHN_ABS, SHN_COMMON, ...).
const SHN_LORESERVE: u16 = 0xFF00;
const STT_NOTYPE: u8 = 0;
const STT_OBJECT: u8 = 1;
const STT_FUNC: u8 = 2;

/// Why an ELF file cannot be used as a symbol table.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum SymbolError {
    /// Shorter than an ELF64 header.
    TooShort,
    /// Does not start with `\x7fELF`.
    BadMagic,
    /// `EI_CLASS` is not ELFCLASS64.
    Not64Bit,
    /// `EI_DATA` is not ELFDATA2LSB.
    NotLittleEndian,
    /// The section header table (or its entry size) does not fit the file.
    SectionTableOutOfBounds,
    /// No `SHT_SYMTAB` section (the file was stripped).
    NoSymbolTable,
    /// The symbol table's data lies outside the file or has a bad entry size.
    SymbolTableOutOfBounds,
    /// The symbol table's linked string table is missing or lies outside the file.
    StringTableOutOfBounds,
}

impl fmt::Display for SymbolError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            SymbolError::TooShort => "file too short for an ELF64 header",
            SymbolError::BadMagic => "not an ELF file",
            SymbolError::Not64Bit => "not a 64-bit ELF file",
            SymbolError::NotLittleEndian => "not a little-endian ELF file",
            SymbolError::SectionTableOutOfBounds => "section header table out of bounds",
            SymbolError::NoSymbolTable => "no symbol table",
            SymbolError::SymbolTableOutOfBounds => "symbol table out of bounds",
            SymbolError::StringTableOutOfBounds => "symbol string table out of bounds",
        })
    }
}

/// One kept symbol.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
struct SymbolEntry<'a> {
    address: u64,
    size: u64,
    name: &'a str,
    is_function: bool,
}

/// The function and data symbols of an ELF file, sorted by address.
#[derive(Clone, Debug)]
pub struct SymbolTable<'a> {
    symbols: Vec<SymbolEntry<'a>>,
    skipped: usize,
}

/// An address resolved to a symbol: `name + offset`.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct Symbolized<'a> {
    /// The symbol's name as stored (mangled).
    pub name: &'a str,
    /// Bytes from the symbol's start.
    pub offset: u64,
}

impl<'a> Symbolized<'a> {
    /// The demangled name without the Rust hash (`rustc_demangle` with `{:#}`); names that
    /// are not Rust-mangled are shown as they are.
    pub fn demangled(&self) -> impl fmt::Display + 'a {
        Demangled(self.name)
    }
}

impl fmt::Display for Symbolized<'_> {
    /// `demangled_name+0xoffset`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}+{:#x}", Demangled(self.name), self.offset)
    }
}

/// Displays a symbol name demangled, without the hash.
struct Demangled<'a>(&'a str);

impl fmt::Display for Demangled<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:#}", rustc_demangle::demangle(self.0))
    }
}

impl<'a> SymbolTable<'a> {
    /// Reads the symbol table of an ELF64 little-endian file.
    pub fn parse(elf: &'a [u8]) -> Result<SymbolTable<'a>, SymbolError> {
        let header = elf.get(..ELF64_HEADER_BYTES).ok_or(SymbolError::TooShort)?;
        if header.get(..4) != Some(&ELF_MAGIC[..]) {
            return Err(SymbolError::BadMagic);
        }
        if header.get(4) != Some(&ELFCLASS64) {
            return Err(SymbolError::Not64Bit);
        }
        if header.get(5) != Some(&ELFDATA2LSB) {
            return Err(SymbolError::NotLittleEndian);
        }
        let section_table_offset = read_u64(header, 0x28).ok_or(SymbolError::TooShort)?;
        let section_entry_size = read_u16(header, 0x3A).ok_or(SymbolError::TooShort)?;
        let mut section_count = u64::from(read_u16(header, 0x3C).ok_or(SymbolError::TooShort)?);

        if usize::from(section_entry_size) < ELF64_SECTION_HEADER_BYTES {
            return Err(SymbolError::SectionTableOutOfBounds);
        }
        let sections = Sections { elf, table_offset: section_table_offset, entry_size: u64::from(section_entry_size) };
        // Extended numbering: with more than 0xFF00 sections, e_shnum is 0 and the count is
        // in section 0's sh_size.
        if section_count == 0 && section_table_offset != 0 {
            section_count = sections.header(0).ok_or(SymbolError::SectionTableOutOfBounds)?.size;
        }
        let table_bytes = section_count
            .checked_mul(u64::from(section_entry_size))
            .and_then(|bytes| bytes.checked_add(section_table_offset))
            .ok_or(SymbolError::SectionTableOutOfBounds)?;
        if table_bytes > elf.len() as u64 {
            return Err(SymbolError::SectionTableOutOfBounds);
        }

        let symbol_section = (0..section_count)
            .filter_map(|index| sections.header(index))
            .find(|section| section.kind == SHT_SYMTAB)
            .ok_or(SymbolError::NoSymbolTable)?;
        let symbol_bytes = section_bytes(elf, symbol_section.offset, symbol_section.size)
            .ok_or(SymbolError::SymbolTableOutOfBounds)?;
        let symbol_entry_size = match symbol_section.entry_size {
            0 => ELF64_SYMBOL_BYTES,
            size if size >= ELF64_SYMBOL_BYTES as u64 && size <= 1024 => size as usize,
            _ => return Err(SymbolError::SymbolTableOutOfBounds),
        };
        let string_section = sections
            .header(u64::from(symbol_section.link))
            .filter(|section| section.kind == SHT_STRTAB && u64::from(symbol_section.link) < section_count)
            .ok_or(SymbolError::StringTableOutOfBounds)?;
        let strings = section_bytes(elf, string_section.offset, string_section.size)
            .ok_or(SymbolError::StringTableOutOfBounds)?;

        let mut symbols = Vec::new();
        let mut skipped = 0;
        for raw in symbol_bytes.chunks_exact(symbol_entry_size) {
            match parse_symbol(raw, strings) {
                SymbolVerdict::Keep(entry) => symbols.push(entry),
                SymbolVerdict::Ignore => {}
                SymbolVerdict::BadName => skipped += 1,
            }
        }
        // Same address: functions first, then sized symbols, so lookup prefers them.
        symbols.sort_unstable_by(|left, right| {
            left.address
                .cmp(&right.address)
                .then(right.is_function.cmp(&left.is_function))
                .then((right.size != 0).cmp(&(left.size != 0)))
                .then(left.name.cmp(right.name))
        });
        symbols.dedup_by(|later, earlier| later.address == earlier.address && later.name == earlier.name);
        Ok(SymbolTable { symbols, skipped })
    }

    /// The symbol containing `addr`: the one with the greatest start at or below it, if
    /// `addr` is within its size (a symbol of size 0 contains everything up to the next).
    pub fn lookup(&self, addr: u64) -> Option<Symbolized<'a>> {
        let after = self.symbols.partition_point(|symbol| symbol.address <= addr);
        let start = self.symbols.get(after.checked_sub(1)?)?.address;
        let first_at_start = self.symbols.partition_point(|symbol| symbol.address < start);
        let offset = addr - start;
        self.symbols
            .get(first_at_start..after)?
            .iter()
            .find(|symbol| symbol.size == 0 || offset < symbol.size)
            .map(|symbol| Symbolized { name: symbol.name, offset })
    }

    /// Number of symbols kept.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// Whether no symbol was kept.
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// Symbols skipped because their name was out of bounds, not UTF-8 or empty.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// All kept symbols as (address, size, mangled name), by address.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64, &'a str)> + '_ {
        self.symbols.iter().map(|symbol| (symbol.address, symbol.size, symbol.name))
    }

    /// The first symbol whose mangled or demangled (hash-less) name equals `name`.
    pub fn find_by_name(&self, name: &str) -> Option<(u64, u64)> {
        let mut demangled = alloc::string::String::new();
        self.symbols
            .iter()
            .find(|symbol| {
                if symbol.name == name {
                    return true;
                }
                demangled.clear();
                fmt::write(&mut demangled, format_args!("{}", Demangled(symbol.name))).is_ok() && demangled == name
            })
            .map(|symbol| (symbol.address, symbol.size))
    }
}

enum SymbolVerdict<'a> {
    Keep(SymbolEntry<'a>),
    /// Not a symbol we keep (undefined, section, file, zero-valued data...).
    Ignore,
    /// A symbol we would keep, but its name is unusable.
    BadName,
}

/// Decodes one `Elf64_Sym`: st_name u32, st_info u8, st_other u8, st_shndx u16,
/// st_value u64, st_size u64.
fn parse_symbol<'a>(raw: &[u8], strings: &'a [u8]) -> SymbolVerdict<'a> {
    let (Some(name_offset), Some(&info), Some(section_index), Some(value), Some(size)) =
        (read_u32(raw, 0), raw.get(4), read_u16(raw, 6), read_u64(raw, 8), read_u64(raw, 16))
    else {
        return SymbolVerdict::Ignore;
    };
    let symbol_type = info & 0xF;
    let defined = section_index != SHN_UNDEF && section_index < SHN_LORESERVE;
    let wanted = match symbol_type {
        STT_FUNC => true,
        STT_NOTYPE | STT_OBJECT => value != 0,
        _ => false,
    };
    if !defined || !wanted {
        return SymbolVerdict::Ignore;
    }
    match string_at(strings, name_offset) {
        Some(name) if !name.is_empty() => {
            SymbolVerdict::Keep(SymbolEntry { address: value, size, name, is_function: symbol_type == STT_FUNC })
        }
        _ => SymbolVerdict::BadName,
    }
}

/// The NUL-terminated UTF-8 string at `offset` in a string table.
fn string_at(strings: &[u8], offset: u32) -> Option<&str> {
    let tail = strings.get(usize::try_from(offset).ok()?..)?;
    let length = tail.iter().position(|&byte| byte == 0)?;
    core::str::from_utf8(tail.get(..length)?).ok()
}

/// The fields of an `Elf64_Shdr` this module needs.
#[derive(Copy, Clone, Debug)]
struct SectionHeader {
    kind: u32,
    offset: u64,
    size: u64,
    link: u32,
    entry_size: u64,
}

struct Sections<'a> {
    elf: &'a [u8],
    table_offset: u64,
    entry_size: u64,
}

impl Sections<'_> {
    fn header(&self, index: u64) -> Option<SectionHeader> {
        let start = index.checked_mul(self.entry_size)?.checked_add(self.table_offset)?;
        let raw = section_bytes(self.elf, start, ELF64_SECTION_HEADER_BYTES as u64)?;
        Some(SectionHeader {
            kind: read_u32(raw, 4)?,
            offset: read_u64(raw, 24)?,
            size: read_u64(raw, 32)?,
            link: read_u32(raw, 40)?,
            entry_size: read_u64(raw, 56)?,
        })
    }
}

/// `elf[offset..offset + size]`, if it is inside the file.
fn section_bytes(elf: &[u8], offset: u64, size: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    elf.get(start..end)
}

fn read_u16(bytes: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(offset..offset.checked_add(2)?)?.try_into().ok()?))
}

fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(offset..offset.checked_add(4)?)?.try_into().ok()?))
}

fn read_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(offset..offset.checked_add(8)?)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::ToString;
    use alloc::vec;

    #[inline(never)]
    fn marker_function_for_symbol_lookup() -> u32 {
        core::hint::black_box(0x5eed)
    }

    #[inline(never)]
    fn second_marker_function() -> u32 {
        core::hint::black_box(7)
    }

    fn own_executable() -> Vec<u8> {
        std::fs::read(std::env::current_exe().unwrap()).unwrap()
    }

    #[test]
    fn finds_functions_of_the_test_binary() {
        let bytes = own_executable();
        let table = SymbolTable::parse(&bytes).unwrap();
        assert!(table.len() > 100);
        let marker_name = "basalt_kernel::symbols::tests::marker_function_for_symbol_lookup";
        let (marker_value, marker_size) = table.find_by_name(marker_name).unwrap();
        let found = table.lookup(marker_value + 1).unwrap();
        assert_eq!(found.offset, 1);
        assert_eq!(found.demangled().to_string(), marker_name);
        assert_eq!(format!("{found}"), format!("{marker_name}+0x1"));
        if marker_size != 0 {
            // Just past the end is not inside this function.
            assert_ne!(table.lookup(marker_value + marker_size).map(|s| s.name), Some(found.name));
        }

        // The binary is position independent: the load bias maps runtime addresses to
        // symbol values, and is the same for every function.
        let runtime_marker = marker_function_for_symbol_lookup as fn() -> u32 as usize as u64;
        let bias = runtime_marker.wrapping_sub(marker_value);
        let runtime_second = second_marker_function as fn() -> u32 as usize as u64;
        let second = table.lookup(runtime_second.wrapping_sub(bias)).unwrap();
        assert_eq!(second.demangled().to_string(), "basalt_kernel::symbols::tests::second_marker_function");
        assert_eq!(second.offset, 0);
        assert_eq!(marker_function_for_symbol_lookup() + second_marker_function(), 0x5eed + 7);
        assert!(table.lookup(0).is_none());
    }

    /// A minimal ELF64 image: header, a symtab, its strtab and the section table.
    fn synthetic_elf(symbols: &[(u32, u8, u16, u64, u64)], strings: &[u8]) -> Vec<u8> {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(&ELF_MAGIC);
        elf[4] = ELFCLASS64;
        elf[5] = ELFDATA2LSB;
        elf[6] = 1;
        let symtab_offset = elf.len() as u64;
        elf.extend_from_slice(&[0u8; 24]); // the null symbol
        for &(name, info, section, value, size) in symbols {
            elf.extend_from_slice(&name.to_le_bytes());
            elf.push(info);
            elf.push(0);
            elf.extend_from_slice(&section.to_le_bytes());
            elf.extend_from_slice(&value.to_le_bytes());
            elf.extend_from_slice(&size.to_le_bytes());
        }
        let symtab_size = elf.len() as u64 - symtab_offset;
        let strtab_offset = elf.len() as u64;
        elf.extend_from_slice(strings);
        while !elf.len().is_multiple_of(8) {
            elf.push(0);
        }
        let section_table = elf.len() as u64;
        let section = |kind: u32, offset: u64, size: u64, link: u32, entry: u64| {
            let mut raw = vec![0u8; 64];
            raw[4..8].copy_from_slice(&kind.to_le_bytes());
            raw[24..32].copy_from_slice(&offset.to_le_bytes());
            raw[32..40].copy_from_slice(&size.to_le_bytes());
            raw[40..44].copy_from_slice(&link.to_le_bytes());
            raw[56..64].copy_from_slice(&entry.to_le_bytes());
            raw
        };
        elf.extend(section(0, 0, 0, 0, 0));
        elf.extend(section(SHT_SYMTAB, symtab_offset, symtab_size, 2, 24));
        elf.extend(section(SHT_STRTAB, strtab_offset, strings.len() as u64, 0, 0));
        elf[0x28..0x30].copy_from_slice(&section_table.to_le_bytes());
        elf[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3C..0x3E].copy_from_slice(&3u16.to_le_bytes());
        elf
    }

    fn sample_elf() -> Vec<u8> {
        let strings = b"\0_ZN6basalt4main17h0123456789abcdefE\0helper\0data\0\xff\xfe\0";
        synthetic_elf(
            &[
                (1, STT_FUNC | 0x10, 1, 0x1000, 0x80), // basalt::main
                (37, STT_FUNC, 1, 0x1100, 0x10),       // helper
                (44, STT_OBJECT, 2, 0x2000, 0),        // data, size 0
                (49, STT_FUNC, 1, 0x3000, 4),          // not UTF-8: skipped
                (999, STT_FUNC, 1, 0x4000, 4),         // name out of bounds: skipped
                (37, STT_FUNC, 0, 0x5000, 4),          // undefined: ignored
                (37, 4, 1, 0x6000, 0),                 // STT_FILE: ignored
            ],
            strings,
        )
    }

    #[test]
    fn synthetic_table_lookup_rules() {
        let elf = sample_elf();
        let table = SymbolTable::parse(&elf).unwrap();
        assert_eq!(table.len(), 3);
        assert_eq!(table.skipped(), 2);
        let main = table.lookup(0x1010).unwrap();
        assert_eq!(main.offset, 0x10);
        assert_eq!(main.demangled().to_string(), "basalt::main");
        assert_eq!(format!("{main}"), "basalt::main+0x10");
        assert!(table.lookup(0x1080).is_none(), "past the end of a sized symbol");
        assert!(table.lookup(0xfff).is_none());
        assert_eq!(table.lookup(0x1100).unwrap().name, "helper");
        // Size 0 extends to the next symbol.
        assert_eq!(table.lookup(0x2fff_ffff).unwrap().name, "data");
        assert_eq!(table.find_by_name("basalt::main"), Some((0x1000, 0x80)));
    }

    #[test]
    fn header_errors() {
        let elf = sample_elf();
        assert_eq!(SymbolTable::parse(&elf[..63]).unwrap_err(), SymbolError::TooShort);
        let mut bad = elf.clone();
        bad[1] = b'X';
        assert_eq!(SymbolTable::parse(&bad).unwrap_err(), SymbolError::BadMagic);
        let mut bad = elf.clone();
        bad[4] = 1;
        assert_eq!(SymbolTable::parse(&bad).unwrap_err(), SymbolError::Not64Bit);
        let mut bad = elf.clone();
        bad[5] = 2;
        assert_eq!(SymbolTable::parse(&bad).unwrap_err(), SymbolError::NotLittleEndian);
        let mut bad = elf.clone();
        bad[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(SymbolTable::parse(&bad).unwrap_err(), SymbolError::SectionTableOutOfBounds);
        // Cut inside the section table.
        assert_eq!(SymbolTable::parse(&elf[..elf.len() - 1]).unwrap_err(), SymbolError::SectionTableOutOfBounds);
        let table_offset = u64::from_le_bytes(elf[0x28..0x30].try_into().unwrap()) as usize;
        let mut bad = elf.clone();
        bad[table_offset + 64 + 4] = SHT_STRTAB as u8; // the symtab is no longer one
        assert_eq!(SymbolTable::parse(&bad).unwrap_err(), SymbolError::NoSymbolTable);
        let mut bad = elf.clone();
        bad[table_offset + 64 + 32..table_offset + 64 + 40].copy_from_slice(&0x10_0000u64.to_le_bytes());
        assert_eq!(SymbolTable::parse(&bad).unwrap_err(), SymbolError::SymbolTableOutOfBounds);
        let mut bad = elf.clone();
        bad[table_offset + 64 + 40] = 7; // sh_link to a section that does not exist
        assert_eq!(SymbolTable::parse(&bad).unwrap_err(), SymbolError::StringTableOutOfBounds);
    }

    #[test]
    fn truncated_and_random_inputs_never_panic() {
        let elf = sample_elf();
        for length in 0..elf.len() {
            let _ = SymbolTable::parse(&elf[..length]);
        }
        let mut state = 0xdead_beef_cafe_f00du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let mut mutated = elf.clone();
            for _ in 0..(next() % 8 + 1) {
                let index = (next() % mutated.len() as u64) as usize;
                mutated[index] = next() as u8;
            }
            if let Ok(table) = SymbolTable::parse(&mutated) {
                for address in [0, 0x1000, 0x1100, next()] {
                    if let Some(found) = table.lookup(address) {
                        let _ = format!("{found}");
                    }
                }
            }
            let random: Vec<u8> = (0..(next() % 512)).map(|_| next() as u8).collect();
            let _ = SymbolTable::parse(&random);
        }
    }
}
