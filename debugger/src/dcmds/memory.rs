//! dcmds about addresses and memory: `::vtop` (a virtual address's page-table walk),
//! `::dis` (disassembly) and `::nm` (the symbol table). Formatting memory itself is
//! the language's `/`, `\` and `=` (crate::format).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::dcmd::{parse_number, Dcmd, DcmdCall, DcmdError, DcmdResult, Debuggee, Options, Walker};
use crate::format::{code_bitness, disassemble, symbolic, Memory};
use crate::paging::{self, PagingMode};
use crate::symbols::SymbolKind;

pub const DCMDS: &[Dcmd] = &[
    Dcmd {
        name: "vtop",
        usage: "[-c cpu]",
        summary: "translate a virtual address through the guest's page tables",
        help: "addr::vtop walks the page tables of the current vCPU (or of vCPU cpu with -c) \
for addr and prints the paging mode, each level's entry (its guest-physical address and \
value), the guest-physical address, and the machine address when the target knows it.",
        run: vtop,
    },
    Dcmd {
        name: "dis",
        usage: "[-n count]",
        summary: "disassemble instructions",
        help: "addr::dis disassembles the function containing addr (the line at addr is \
marked with >), or with -n count that many instructions from addr. Without a containing \
function, 16 instructions from addr. Without addr, the current vCPU's rip. AT&T syntax; \
64-bit code when the vCPU is in long mode.",
        run: dis,
    },
    Dcmd {
        name: "nm",
        usage: "[-n name | pattern]",
        summary: "list symbols",
        help: "Lists symbols as Value, Size, Type and Name: all of them, those whose name \
contains pattern, the one called name (-n), or with an address, the one containing it. \
Passes the symbols' addresses on to a pipeline.",
        run: nm,
    },
];

pub const WALKERS: &[Walker] = &[];

/// Most instructions one `::dis` prints.
const MAXIMUM_INSTRUCTIONS: u64 = 0x1000;
/// Instructions `::dis` prints without -n or a containing function.
const DEFAULT_INSTRUCTIONS: u64 = 16;
/// Largest function `::dis` disassembles whole.
const MAXIMUM_FUNCTION_BYTES: u64 = 0x10000;

fn needs_address(call: &DcmdCall<'_>, name: &str) -> Result<u64, DcmdError> {
    call.address.ok_or_else(|| DcmdError::Usage(alloc::format!("an address is needed: ADDR::{name}")))
}

fn vtop(debuggee: &Debuggee<'_>, call: &DcmdCall<'_>, out: &mut dyn fmt::Write) -> DcmdResult {
    let options = Options::parse(call.args, "c:")?;
    if !options.positional.is_empty() {
        return Err(DcmdError::Usage(String::from("unexpected argument")));
    }
    let address = needs_address(call, "vtop")?;
    let vcpu = match options.value('c') {
        Some(text) => {
            u32::try_from(parse_number(text)?).map_err(|_| DcmdError::Usage(alloc::format!("no vCPU {text}")))?
        }
        None => debuggee.current_vcpu(),
    };
    let target = debuggee.target();
    let registers = target.registers(vcpu)?;
    let mode = PagingMode::of(&registers);
    writeln!(out, "virtual {address:#x}: {} paging, vCPU {vcpu}, cr3 {:#x}", mode.name(), registers.cr3)?;
    let translation = paging::translate(target, &registers, address)?;
    for step in &translation.steps {
        writeln!(out, "  {:<6} at physical {:#x}: {:#x}", step.level, step.entry_address, step.entry)?;
    }
    writeln!(out, "physical {:#x} ({} KiB page)", translation.physical, translation.page_size / 1024)?;
    match target.physical_to_machine(translation.physical) {
        Some(machine) => writeln!(out, "machine {machine:#x}")?,
        None => writeln!(out, "machine address: not known to this target")?,
    }
    Ok(Vec::new())
}

fn dis(debuggee: &Debuggee<'_>, call: &DcmdCall<'_>, out: &mut dyn fmt::Write) -> DcmdResult {
    let options = Options::parse(call.args, "n:")?;
    if !options.positional.is_empty() {
        return Err(DcmdError::Usage(String::from("unexpected argument")));
    }
    let registers = debuggee.registers()?;
    let address = call.address.unwrap_or(registers.rip);
    let bitness = code_bitness(&registers);
    let containing = debuggee
        .symbols()
        .by_address(address)
        .filter(|(symbol, _)| symbol.size != 0 && symbol.size <= MAXIMUM_FUNCTION_BYTES)
        .map(|(symbol, _)| (symbol.address, symbol.address.saturating_add(symbol.size)));
    let (start, end, limit) = match (options.value('n'), containing) {
        (Some(count), _) => {
            let count = parse_number(count)?;
            if count > MAXIMUM_INSTRUCTIONS {
                return Err(DcmdError::Usage(alloc::format!("at most {MAXIMUM_INSTRUCTIONS:#x} instructions")));
            }
            (address, u64::MAX, count)
        }
        (None, Some((start, end))) => (start, end, MAXIMUM_INSTRUCTIONS),
        (None, None) => (address, u64::MAX, DEFAULT_INSTRUCTIONS),
    };
    let mut at = start;
    for _ in 0..limit {
        if at >= end {
            break;
        }
        let decoded = disassemble(debuggee, Memory::Virtual, at, bitness)?;
        let marker = if at == address && containing.is_some() && options.value('n').is_none() { ">" } else { " " };
        let label = alloc::format!("{}:", symbolic(debuggee, at));
        writeln!(out, "{marker}{label:<24} {}", decoded.text)?;
        at = at.wrapping_add(decoded.length);
    }
    Ok(Vec::new())
}

fn kind_name(kind: SymbolKind) -> &'static str {
    match kind {
        SymbolKind::Function => "FUNC",
        SymbolKind::Object => "OBJT",
        SymbolKind::Other => "NOTY",
    }
}

fn nm(debuggee: &Debuggee<'_>, call: &DcmdCall<'_>, out: &mut dyn fmt::Write) -> DcmdResult {
    let options = Options::parse(call.args, "n:")?;
    let pattern = match options.positional.as_slice() {
        [] => None,
        [pattern] => Some(pattern.as_str()),
        _ => return Err(DcmdError::Usage(String::from("one pattern at most"))),
    };
    let exact = options.value('n');
    if exact.is_some() && pattern.is_some() {
        return Err(DcmdError::Usage(String::from("-n and a pattern do not go together")));
    }
    let symbols = debuggee.symbols();
    if symbols.is_empty() {
        return Err(DcmdError::Failed(alloc::format!("no symbols ({})", symbols.source)));
    }
    let containing = call.address.and_then(|address| symbols.by_address(address).map(|(symbol, _)| symbol));
    if call.address.is_some() && containing.is_none() {
        return Err(DcmdError::Failed(alloc::format!("no symbol contains {:#x}", call.address.unwrap_or(0))));
    }
    writeln!(out, "{:<18} {:<10} {:<4} Name", "Value", "Size", "Type")?;
    let mut addresses = Vec::new();
    for symbol in symbols.iter() {
        let selected = match (containing, exact, pattern) {
            (Some(wanted), _, _) => core::ptr::eq(symbol, wanted),
            (None, Some(name), _) => symbol.name == name,
            (None, None, Some(pattern)) => symbol.name.contains(pattern),
            (None, None, None) => true,
        };
        if selected {
            writeln!(
                out,
                "{:<18} {:<10} {:<4} {}",
                alloc::format!("{:#x}", symbol.address),
                alloc::format!("{:#x}", symbol.size),
                kind_name(symbol.kind),
                symbol.name
            )?;
            addresses.push(symbol.address);
        }
    }
    if exact.is_some() && addresses.is_empty() {
        return Err(DcmdError::Failed(alloc::format!("no symbol '{}'", exact.unwrap_or(""))));
    }
    Ok(addresses)
}
