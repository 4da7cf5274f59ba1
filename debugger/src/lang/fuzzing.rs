//! The body of the `mdb_line` fuzz target (debugger/fuzz), kept here so a host test
//! runs it too: any UTF-8 line through a [`Session`] on a [`FakeTarget`] with a
//! little memory mapped must return (no panic, no hang) and report each failure as
//! one `error: ` line.

use alloc::boxed::Box;
use alloc::string::String;

use super::test_elf::elf_with_symbols;
use crate::engine::Session;
use crate::symbols::SymbolKind;
use crate::target::testing::FakeTarget;

/// Virtual address of the fixture's mapped page of data.
pub const DATA: u64 = 0xffff_8000_0010_0000;
/// Virtual address of the fixture's mapped page of code.
pub const TEXT: u64 = 0xffff_ffff_8100_0000;

/// A target with a page of text (a few instructions) and a page of data (numbers and
/// a string) mapped through 4-level page tables, rip and rsp pointing into them.
pub fn fixture() -> FakeTarget {
    let mut target = FakeTarget::new();
    // push %rbp; mov %rsp,%rbp; call +0; nop; pop %rbp; ret
    let code = [0x55, 0x48, 0x89, 0xe5, 0xe8, 0x00, 0x00, 0x00, 0x00, 0x90, 0x5d, 0xc3];
    target.write_virtual(TEXT, 0x20_0000, &code);
    let mut data = [0u8; 64];
    data[..8].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
    data[8..16].copy_from_slice(&DATA.to_le_bytes());
    data[16..22].copy_from_slice(b"hello\0");
    target.write_virtual(DATA, 0x30_0000, &data);
    target.registers[0].rip = TEXT;
    target.registers[0].rsp = DATA + 0x20;
    target
}

/// [`fixture`] with a symbol file naming its code and data: `start_kernel` (the
/// 12 bytes of code), `marker` (the u64 at DATA), `self_pointer` (DATA + 8, holding
/// DATA) and `greeting` (DATA + 16, "hello").
pub fn fixture_with_symbols() -> FakeTarget {
    let mut target = fixture();
    target.kernel_symbol_file = Some(elf_with_symbols(&[
        ("start_kernel", TEXT, 12, SymbolKind::Function),
        ("marker", DATA, 8, SymbolKind::Object),
        ("self_pointer", DATA + 8, 8, SymbolKind::Object),
        ("greeting", DATA + 16, 6, SymbolKind::Object),
    ]));
    target
}

/// Runs `data` (if UTF-8) as one line on [`fixture_with_symbols`]; returns the output.
pub fn fuzz_one(data: &[u8]) -> String {
    fuzz_on(fixture_with_symbols(), data)
}

/// Runs `data` (if UTF-8) as one line on `target`; returns the output.
pub fn fuzz_on(target: FakeTarget, data: &[u8]) -> String {
    let mut output = String::new();
    if let Ok(line) = core::str::from_utf8(data) {
        let mut session = Session::new(Box::new(target));
        let _ = session.execute(line, &mut output);
    }
    output
}
