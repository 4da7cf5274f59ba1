//! The symbol table read from the hypervisor's own ELF module: parsing arbitrary bytes
//! and looking addresses up never panics.
#![no_main]

use basalt_kernel::symbols::SymbolTable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(table) = SymbolTable::parse(data) {
        for address in [0, 1, 0x1000, 0x20_0000, u64::MAX] {
            if let Some(symbol) = table.lookup(address) {
                let _ = format!("{}", symbol.demangled());
            }
        }
    }
});
