//! Symbols of the guest kernel: one sorted table, whatever it was loaded from — the
//! kernel file's ELF `.symtab` (`elf`), or for Linux kernels without one, kallsyms read
//! from guest memory (`kallsyms`, found through vmcoreinfo or by its shape).
//!
//! Invariants: the table is sorted by address (ties by name) once at construction, so
//! address lookup is a binary search; names are kept as loaded (no demangling).

use alloc::string::String;
use alloc::vec::Vec;

pub mod elf;
pub mod kallsyms;

/// What a symbol names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolKind {
    /// Code (ELF STT_FUNC, kallsyms 't'/'T').
    Function,
    /// Data (ELF STT_OBJECT, kallsyms 'd'/'D'/'b'/'B'/'r'/'R').
    Object,
    /// Anything else (section, linker symbol, absolute).
    Other,
}

/// One symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    pub name: String,
    pub address: u64,
    /// Size in bytes, 0 if unknown (kallsyms has no sizes).
    pub size: u64,
    pub kind: SymbolKind,
}

/// A kernel's symbols, sorted by address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SymbolTable {
    symbols: Vec<Symbol>,
    /// Where the symbols came from, for `::status` ("ELF .symtab of the kernel file",
    /// "kallsyms in guest memory").
    pub source: String,
}

/// How far past a symbol's start an address may be and still be shown as
/// `symbol+offset` when the symbol's size is unknown.
const MAXIMUM_UNSIZED_OFFSET: u64 = 1 << 20;

impl SymbolTable {
    /// A table of `symbols` (any order), labelled with where they came from.
    pub fn new(mut symbols: Vec<Symbol>, source: &str) -> SymbolTable {
        symbols.sort_by(|left, right| left.address.cmp(&right.address).then_with(|| left.name.cmp(&right.name)));
        SymbolTable { symbols, source: String::from(source) }
    }

    /// True if there are no symbols.
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// All symbols, by address.
    pub fn iter(&self) -> impl Iterator<Item = &Symbol> + '_ {
        self.symbols.iter()
    }

    /// The symbol called `name` (the first by address if several share it).
    pub fn by_name(&self, name: &str) -> Option<&Symbol> {
        self.symbols.iter().find(|symbol| symbol.name == name)
    }

    /// The symbol containing `address` and the offset into it. A sized symbol contains
    /// `[address, address + size)`; an unsized one (size 0) extends to the next
    /// symbol, at most 1 MiB. Functions and objects win over other kinds at the
    /// same address.
    pub fn by_address(&self, address: u64) -> Option<(&Symbol, u64)> {
        let end = self.symbols.partition_point(|symbol| symbol.address <= address);
        let candidates = &self.symbols[..end];
        let last_address = candidates.last()?.address;
        let first_at_address = candidates.partition_point(|symbol| symbol.address < last_address);
        let at_address = &candidates[first_at_address..];
        let symbol =
            at_address.iter().find(|symbol| symbol.kind != SymbolKind::Other).or_else(|| at_address.first())?;
        let offset = address - symbol.address;
        let inside = if symbol.size != 0 {
            offset < symbol.size
        } else {
            let next = self.symbols.get(end).map(|next| next.address).unwrap_or(u64::MAX);
            address < next && offset < MAXIMUM_UNSIZED_OFFSET
        };
        inside.then_some((symbol, offset))
    }

    /// `name+0xoffset` (or `name` at offset 0) for `address`, if a symbol contains it.
    pub fn describe(&self, address: u64) -> Option<String> {
        let (symbol, offset) = self.by_address(address)?;
        Some(if offset == 0 { symbol.name.clone() } else { alloc::format!("{}+{offset:#x}", symbol.name) })
    }
}

/// Loads the best symbol table the target offers: the kernel file's ELF `.symtab`,
/// else (Linux) kallsyms from guest memory, else an empty table.
///
/// Cheap when there is nothing: the vmcoreinfo scan reads a few bytes per page, and the
/// kallsyms search runs only for a guest that has vmcoreinfo.
pub fn load(target: &dyn crate::target::Target) -> SymbolTable {
    if let Some(table) = load_from_file(target) {
        return table;
    }
    load_with_vmcoreinfo(target, crate::linux::vmcoreinfo::find(target).as_ref())
}

/// [`load`] with the guest's vmcoreinfo already found (or known absent).
pub fn load_with_vmcoreinfo(
    target: &dyn crate::target::Target,
    vmcoreinfo: Option<&crate::linux::VmcoreInfo>,
) -> SymbolTable {
    if let Some(table) = load_from_file(target) {
        return table;
    }
    let Some(info) = vmcoreinfo else {
        return SymbolTable::new(Vec::new(), "no symbols");
    };
    let Ok(registers) = target.registers(0) else {
        return SymbolTable::new(Vec::new(), "no symbols");
    };
    let read = |address: u64, buffer: &mut [u8]| crate::paging::read_virtual(target, &registers, address, buffer);
    match kallsyms::load(&read, Some(info), kallsyms::search_start(Some(info))) {
        Ok(symbols) if !symbols.is_empty() => SymbolTable::new(symbols, "kallsyms in guest memory"),
        _ => SymbolTable::new(Vec::new(), "no symbols (Linux guest, kallsyms not found)"),
    }
}

fn load_from_file(target: &dyn crate::target::Target) -> Option<SymbolTable> {
    let symbols = elf::parse_symbols(target.kernel_symbol_file()?).ok()?;
    (!symbols.is_empty()).then(|| SymbolTable::new(symbols, "ELF .symtab of the kernel file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symbol(name: &str, address: u64, size: u64, kind: SymbolKind) -> Symbol {
        Symbol { name: String::from(name), address, size, kind }
    }

    #[test]
    fn lookup_by_address_respects_sizes_and_kinds() {
        let table = SymbolTable::new(
            alloc::vec![
                symbol("c", 0x3000, 0x10, SymbolKind::Function),
                symbol("a", 0x1000, 0x100, SymbolKind::Function),
                symbol("_text", 0x1000, 0, SymbolKind::Other),
                symbol("unsized", 0x2000, 0, SymbolKind::Object),
            ],
            "test",
        );
        assert_eq!(table.describe(0x1000).as_deref(), Some("a"));
        assert_eq!(table.describe(0x1010).as_deref(), Some("a+0x10"));
        assert_eq!(table.describe(0x1100), None);
        assert_eq!(table.describe(0x2fff).as_deref(), Some("unsized+0xfff"));
        assert_eq!(table.describe(0x3010), None);
        assert_eq!(table.describe(0x10), None);
        assert_eq!(table.by_name("c").map(|symbol| symbol.address), Some(0x3000));
    }
}
