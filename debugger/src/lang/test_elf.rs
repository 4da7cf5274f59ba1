//! Test and fuzzing helper: a minimal ELF64 file whose `.symtab` holds given symbols, for tests of
//! symbol features through `Target::kernel_symbol_file` (what `symbols::load` reads).
//! Layout (ELF-64 gABI): header, .symtab, .strtab, .shstrtab, then the section headers
//! null, .text (NOBITS, covering the symbols), .symtab, .strtab, .shstrtab.

use alloc::vec;
use alloc::vec::Vec;

use crate::symbols::SymbolKind;

fn push_u16(bytes: &mut Vec<u8>, value: u16) {
    bytes.extend_from_slice(&value.to_le_bytes());
}
fn push_u32(bytes: &mut Vec<u8>, value: u32) {
    bytes.extend_from_slice(&value.to_le_bytes());
}
fn push_u64(bytes: &mut Vec<u8>, value: u64) {
    bytes.extend_from_slice(&value.to_le_bytes());
}

/// An ELF file with `symbols` (name, address, size, kind), all global.
pub fn elf_with_symbols(symbols: &[(&str, u64, u64, SymbolKind)]) -> Vec<u8> {
    const HEADER: usize = 64;
    const SYMBOL_ENTRY: usize = 24;
    let mut strtab = vec![0u8];
    let mut symtab = vec![0u8; SYMBOL_ENTRY];
    for (name, address, size, kind) in symbols {
        let name_offset = strtab.len() as u32;
        strtab.extend_from_slice(name.as_bytes());
        strtab.push(0);
        let elf_type = match kind {
            SymbolKind::Function => 2,
            SymbolKind::Object => 1,
            SymbolKind::Other => 0,
        };
        push_u32(&mut symtab, name_offset);
        symtab.push((1 << 4) | elf_type); // STB_GLOBAL
        symtab.push(0);
        push_u16(&mut symtab, 1); // .text
        push_u64(&mut symtab, *address);
        push_u64(&mut symtab, *size);
    }
    let shstrtab = b"\0.text\0.symtab\0.strtab\0.shstrtab\0".to_vec();
    let symtab_offset = HEADER;
    let strtab_offset = symtab_offset + symtab.len();
    let shstrtab_offset = strtab_offset + strtab.len();
    let section_headers = (shstrtab_offset + shstrtab.len()).next_multiple_of(8);
    let low = symbols.iter().map(|symbol| symbol.1).min().unwrap_or(0);
    let high = symbols.iter().map(|symbol| symbol.1 + symbol.2).max().unwrap_or(0);

    let mut file = Vec::new();
    file.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    file.extend_from_slice(&[0; 8]);
    push_u16(&mut file, 2); // ET_EXEC
    push_u16(&mut file, 62); // EM_X86_64
    push_u32(&mut file, 1);
    push_u64(&mut file, 0); // entry
    push_u64(&mut file, 0); // phoff
    push_u64(&mut file, section_headers as u64);
    push_u32(&mut file, 0); // flags
    push_u16(&mut file, HEADER as u16);
    push_u16(&mut file, 56);
    push_u16(&mut file, 0); // phnum
    push_u16(&mut file, 64);
    push_u16(&mut file, 5); // shnum
    push_u16(&mut file, 4); // shstrndx
    file.extend_from_slice(&symtab);
    file.extend_from_slice(&strtab);
    file.extend_from_slice(&shstrtab);
    file.resize(section_headers, 0);

    #[allow(clippy::too_many_arguments)]
    fn section(
        file: &mut Vec<u8>,
        name: u32,
        kind: u32,
        flags: u64,
        address: u64,
        offset: u64,
        size: u64,
        link: u32,
        info: u32,
        entry_size: u64,
    ) {
        push_u32(file, name);
        push_u32(file, kind);
        push_u64(file, flags);
        push_u64(file, address);
        push_u64(file, offset);
        push_u64(file, size);
        push_u32(file, link);
        push_u32(file, info);
        push_u64(file, 8);
        push_u64(file, entry_size);
    }
    file.extend_from_slice(&[0; 64]);
    section(&mut file, 1, 8, 0x6, low, shstrtab_offset as u64, high - low, 0, 0, 0); // .text NOBITS
    section(&mut file, 7, 2, 0, 0, symtab_offset as u64, symtab.len() as u64, 3, 1, SYMBOL_ENTRY as u64);
    section(&mut file, 15, 3, 0, 0, strtab_offset as u64, strtab.len() as u64, 0, 0, 0);
    section(&mut file, 23, 3, 0, 0, shstrtab_offset as u64, shstrtab.len() as u64, 0, 0, 0);
    file
}
