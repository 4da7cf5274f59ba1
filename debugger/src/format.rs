//! The formats of `/`, `\` and `=` (illumos mdb(1), "Formatting dcmds"): how items
//! are read from memory (or taken from the value), printed and laid out, plus the
//! helpers other dcmds share: [`symbolic`] addresses and [`disassemble`].
//!
//! Layout follows mdb: a line starts with the address of its first item (symbolic when
//! a symbol contains it) and a colon, padded to a column, then the items; numbers of
//! one size share a line up to a fixed number per line, strings and instructions take
//! a line each. Hex is printed without `0x` and decimals plainly, as mdb does.
//!
//! Letters (a count may precede each, decimal: `/4X`): `B` `x` `X` `J` `K` hex of 1,
//! 2, 4, 8, 8 bytes; `b` `o` `O` octal of 1, 2, 4; `d` `D` `e` signed decimal of 2,
//! 4, 8; `u` `U` `E` unsigned decimal of 2, 4, 8; `c` a character; `s` a NUL-ended
//! string; `i` an instruction (AT&T syntax); `a` the address itself, symbolically;
//! `p` a pointer, symbolically.
//!
//! Invariants: one command formats at most [`MAXIMUM_ITEMS`] items and reads at most
//! [`MAXIMUM_BYTES_READ`] bytes, so no count a user types makes it run unbounded.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};

use iced_x86::{Decoder, DecoderOptions, Formatter, GasFormatter, OpKind};

use crate::dcmd::{DcmdError, Debuggee};
use crate::target::{Registers, TargetError};

/// Most items one `/`, `\` or `=` command prints.
pub const MAXIMUM_ITEMS: u64 = 0x10000;
/// Most bytes of memory one command reads (strings are the large ones).
pub const MAXIMUM_BYTES_READ: usize = 1 << 20;
/// Longest string `/s` prints.
pub const MAXIMUM_STRING: usize = 4096;
/// Column the items start at, after the address label.
const LABEL_WIDTH: usize = 16;
const EFER_LMA: u64 = 1 << 10;
const CR0_PE: u64 = 1;

/// `name+0xoffset` (or `name`) when a symbol contains `address`, else `0x...`.
pub fn symbolic(debuggee: &Debuggee<'_>, address: u64) -> String {
    debuggee.symbols().describe(address).unwrap_or_else(|| format!("{address:#x}"))
}

/// The bitness instructions are decoded with for a vCPU: 64 when long mode is active
/// (the code segment's L bit is not in [`Registers`], so 64-bit code is assumed),
/// 32 in protected mode, 16 in real mode.
pub fn code_bitness(registers: &Registers) -> u32 {
    if registers.efer & EFER_LMA != 0 {
        64
    } else if registers.cr0 & CR0_PE != 0 {
        32
    } else {
        16
    }
}

/// Which memory the items are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    Virtual,
    Physical,
}

impl Memory {
    /// Reads `buffer.len()` bytes at `address`.
    pub fn read(self, debuggee: &Debuggee<'_>, address: u64, buffer: &mut [u8]) -> Result<(), TargetError> {
        match self {
            Memory::Virtual => debuggee.read_virtual(address, buffer),
            Memory::Physical => debuggee.target().read_physical(address, buffer),
        }
    }
}

/// One decoded instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disassembled {
    /// AT&T text; the target of a near branch or a rip-relative operand is followed
    /// by `<symbol+offset>` when a symbol contains it.
    pub text: String,
    /// Length in bytes (1 for an undecodable byte, shown as `(bad)`).
    pub length: u64,
}

/// Decodes the instruction at `address` of `memory` with `bitness` (16, 32 or 64).
pub fn disassemble(
    debuggee: &Debuggee<'_>,
    memory: Memory,
    address: u64,
    bitness: u32,
) -> Result<Disassembled, DcmdError> {
    const LONGEST_INSTRUCTION: usize = 15;
    let mut bytes = [0u8; LONGEST_INSTRUCTION];
    // The next page may be unmapped: fall back to what the current page holds.
    let length = if memory.read(debuggee, address, &mut bytes).is_ok() {
        LONGEST_INSTRUCTION
    } else {
        let in_page = (0x1000 - (address & 0xfff)) as usize;
        let length = in_page.min(LONGEST_INSTRUCTION);
        let prefix = bytes.get_mut(..length).unwrap_or(&mut []);
        memory.read(debuggee, address, prefix)?;
        length
    };
    let code = bytes.get(..length).unwrap_or(&[]);
    let mut decoder = Decoder::with_ip(bitness, code, address, DecoderOptions::NONE);
    let instruction = decoder.decode();
    if instruction.is_invalid() {
        return Ok(Disassembled { text: String::from("(bad)"), length: 1 });
    }
    let mut text = String::new();
    let mut formatter = GasFormatter::new();
    // mdb's AT&T look: lower-case hex and size suffixes (pushq, movq).
    formatter.options_mut().set_uppercase_hex(false);
    formatter.options_mut().set_gas_show_mnemonic_size_suffix(true);
    formatter.format(&instruction, &mut text);
    let is_near_branch = instruction.op_count() > 0
        && matches!(instruction.op0_kind(), OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64);
    let referenced = if is_near_branch {
        Some(instruction.near_branch_target())
    } else if instruction.is_ip_rel_memory_operand() {
        Some(instruction.ip_rel_memory_address())
    } else {
        None
    };
    if let Some(name) = referenced.and_then(|address| debuggee.symbols().describe(address)) {
        let _ = write!(text, " <{name}>");
    }
    Ok(Disassembled { text, length: instruction.len() as u64 })
}

/// How one format letter reads and prints an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ItemKind {
    Hex(usize),
    Octal(usize),
    Signed(usize),
    Unsigned(usize),
    Character,
    String,
    Instruction,
    /// The address itself (reads nothing).
    Address,
    Pointer,
}

/// Every format letter, in one table.
const LETTERS: &[(char, ItemKind)] = &[
    ('B', ItemKind::Hex(1)),
    ('x', ItemKind::Hex(2)),
    ('X', ItemKind::Hex(4)),
    ('J', ItemKind::Hex(8)),
    ('K', ItemKind::Hex(8)),
    ('b', ItemKind::Octal(1)),
    ('o', ItemKind::Octal(2)),
    ('O', ItemKind::Octal(4)),
    ('d', ItemKind::Signed(2)),
    ('D', ItemKind::Signed(4)),
    ('e', ItemKind::Signed(8)),
    ('u', ItemKind::Unsigned(2)),
    ('U', ItemKind::Unsigned(4)),
    ('E', ItemKind::Unsigned(8)),
    ('c', ItemKind::Character),
    ('s', ItemKind::String),
    ('i', ItemKind::Instruction),
    ('a', ItemKind::Address),
    ('p', ItemKind::Pointer),
];

impl ItemKind {
    /// Items of this kind printed on one line before a new line starts (1: one each).
    fn per_line(self) -> usize {
        match self {
            ItemKind::Hex(size) | ItemKind::Octal(size) | ItemKind::Signed(size) | ItemKind::Unsigned(size) => {
                16 / size.max(1)
            }
            ItemKind::Character => 64,
            ItemKind::String | ItemKind::Instruction | ItemKind::Address | ItemKind::Pointer => 1,
        }
    }

    /// Column width of one item, so that lines of the same letter align.
    fn width(self) -> usize {
        match self {
            ItemKind::Hex(size) => size * 2,
            ItemKind::Octal(size) => (size * 8).div_ceil(3) + 1,
            ItemKind::Signed(size) | ItemKind::Unsigned(size) => match size {
                1 => 4,
                2 => 6,
                4 => 11,
                _ => 20,
            },
            _ => 0,
        }
    }
}

/// A parsed format: (count, letter, kind) per item group.
type Format = Vec<(u64, char, ItemKind)>;

fn parse_format(text: &str) -> Result<Format, DcmdError> {
    let mut items = Vec::new();
    let mut count: Option<u64> = None;
    for character in text.chars() {
        if let Some(digit) = character.to_digit(10) {
            let next = count.unwrap_or(0).checked_mul(10).and_then(|value| value.checked_add(u64::from(digit)));
            count = Some(next.ok_or_else(too_many)?);
            continue;
        }
        let Some((_, kind)) = LETTERS.iter().find(|(letter, _)| *letter == character) else {
            return Err(DcmdError::Failed(format!("unknown format letter '{character}'")));
        };
        items.push((count.take().unwrap_or(1), character, *kind));
    }
    if count.is_some() {
        return Err(DcmdError::Failed(String::from("format count without a letter")));
    }
    Ok(items)
}

fn too_many() -> DcmdError {
    DcmdError::Failed(format!("count too large (at most {MAXIMUM_ITEMS:#x} items per command)"))
}

/// Total items `repeat` times `format` prints, checked against the bound.
fn total_items(format: &Format, repeat: u64) -> Result<u64, DcmdError> {
    let per_repeat = format.iter().try_fold(0u64, |sum, (count, _, _)| sum.checked_add(*count)).ok_or_else(too_many)?;
    let total = per_repeat.checked_mul(repeat).ok_or_else(too_many)?;
    if total > MAXIMUM_ITEMS {
        return Err(too_many());
    }
    Ok(total)
}

fn sign_extend(value: u64, size: usize) -> i64 {
    let bits = (size.clamp(1, 8) * 8) as u32;
    let shift = 64 - bits;
    ((value << shift) as i64) >> shift
}

fn truncate(value: u64, size: usize) -> u64 {
    if size >= 8 {
        value
    } else {
        value & ((1u64 << (size * 8)) - 1)
    }
}

/// A number item's text.
fn number_text(kind: ItemKind, value: u64) -> String {
    match kind {
        ItemKind::Hex(size) => format!("{:x}", truncate(value, size)),
        ItemKind::Octal(size) => format!("{:o}", truncate(value, size)),
        ItemKind::Signed(size) => format!("{}", sign_extend(value, size)),
        ItemKind::Unsigned(size) => format!("{}", truncate(value, size)),
        _ => String::new(),
    }
}

/// A byte as a character: printable ASCII as itself, common escapes, else `\xNN`.
fn push_character(text: &mut String, byte: u8) {
    match byte {
        b'\n' => text.push_str("\\n"),
        b'\t' => text.push_str("\\t"),
        b'\r' => text.push_str("\\r"),
        b'\\' => text.push_str("\\\\"),
        0x20..=0x7e => text.push(char::from(byte)),
        other => {
            let _ = write!(text, "\\x{other:02x}");
        }
    }
}

/// Builds output lines: a label, then items; trailing spaces are trimmed at flush.
struct Lines<'o> {
    out: &'o mut dyn fmt::Write,
    current: String,
    open: bool,
    letter: char,
    items: usize,
}

impl Lines<'_> {
    fn flush(&mut self) -> fmt::Result {
        if self.open {
            writeln!(self.out, "{}", self.current.trim_end())?;
            self.current.clear();
            self.open = false;
        }
        Ok(())
    }

    /// Starts a new line for `letter` unless the open one still has room.
    fn item_slot(&mut self, label: &str, letter: char, per_line: usize) -> fmt::Result {
        if self.open && self.letter == letter && self.items < per_line {
            self.items += 1;
            return Ok(());
        }
        self.flush()?;
        let _ = write!(self.current, "{label}:");
        while self.current.len() < LABEL_WIDTH {
            self.current.push(' ');
        }
        if !self.current.ends_with(' ') {
            self.current.push(' ');
        }
        self.open = true;
        self.letter = letter;
        self.items = 1;
        Ok(())
    }
}

/// `address[,repeat]/format` (or `\format` for [`Memory::Physical`]): prints the items
/// and returns the address after the last one.
pub fn print_memory(
    debuggee: &Debuggee<'_>,
    memory: Memory,
    address: u64,
    repeat: u64,
    format: &str,
    out: &mut dyn fmt::Write,
) -> Result<u64, DcmdError> {
    let format = parse_format(format)?;
    total_items(&format, repeat)?;
    let mut printer = MemoryPrinter {
        debuggee,
        memory,
        address,
        bytes_read: 0,
        bitness: None,
        lines: Lines { out, current: String::new(), open: false, letter: ' ', items: 0 },
    };
    let result = printer.run(&format, repeat);
    printer.lines.flush()?;
    result.map(|()| printer.address)
}

struct MemoryPrinter<'d, 'a, 'o> {
    debuggee: &'d Debuggee<'a>,
    memory: Memory,
    address: u64,
    bytes_read: usize,
    bitness: Option<u32>,
    lines: Lines<'o>,
}

impl MemoryPrinter<'_, '_, '_> {
    fn run(&mut self, format: &Format, repeat: u64) -> Result<(), DcmdError> {
        for _ in 0..repeat {
            for (count, letter, kind) in format {
                for _ in 0..*count {
                    self.item(*letter, *kind)?;
                }
            }
        }
        Ok(())
    }

    fn label(&self) -> String {
        match self.memory {
            Memory::Virtual => symbolic(self.debuggee, self.address),
            Memory::Physical => format!("{:#x}", self.address),
        }
    }

    fn read(&mut self, buffer: &mut [u8]) -> Result<(), DcmdError> {
        self.bytes_read = self.bytes_read.saturating_add(buffer.len());
        if self.bytes_read > MAXIMUM_BYTES_READ {
            return Err(DcmdError::Failed(format!("output stopped: more than {MAXIMUM_BYTES_READ:#x} bytes read")));
        }
        self.memory.read(self.debuggee, self.address, buffer)?;
        Ok(())
    }

    fn read_number(&mut self, size: usize) -> Result<u64, DcmdError> {
        let mut bytes = [0u8; 8];
        let slot = bytes.get_mut(..size.min(8)).unwrap_or(&mut []);
        self.read(slot)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn advance(&mut self, length: u64) {
        self.address = self.address.wrapping_add(length);
    }

    fn item(&mut self, letter: char, kind: ItemKind) -> Result<(), DcmdError> {
        let label = self.label();
        match kind {
            ItemKind::Hex(size) | ItemKind::Octal(size) | ItemKind::Signed(size) | ItemKind::Unsigned(size) => {
                let value = self.read_number(size)?;
                self.lines.item_slot(&label, letter, kind.per_line())?;
                let _ = write!(self.lines.current, "{:<width$} ", number_text(kind, value), width = kind.width());
                self.advance(size as u64);
            }
            ItemKind::Character => {
                let mut byte = [0u8];
                self.read(&mut byte)?;
                self.lines.item_slot(&label, letter, kind.per_line())?;
                push_character(&mut self.lines.current, byte[0]);
                self.advance(1);
            }
            ItemKind::String => {
                let bytes = self.read_string()?;
                self.lines.item_slot(&label, letter, 1)?;
                for byte in &bytes {
                    push_character(&mut self.lines.current, *byte);
                }
                self.advance(bytes.len() as u64 + 1);
            }
            ItemKind::Instruction => {
                let bitness = match self.bitness {
                    Some(bitness) => bitness,
                    None => {
                        let bitness = code_bitness(&self.debuggee.registers()?);
                        self.bitness = Some(bitness);
                        bitness
                    }
                };
                self.bytes_read = self.bytes_read.saturating_add(16);
                let decoded = disassemble(self.debuggee, self.memory, self.address, bitness)?;
                self.lines.item_slot(&label, letter, 1)?;
                self.lines.current.push_str(&decoded.text);
                self.advance(decoded.length);
            }
            ItemKind::Address => {
                // mdb prints only the label for `a`: the address in symbolic form.
                self.lines.flush()?;
                writeln!(self.lines.out, "{label}:")?;
            }
            ItemKind::Pointer => {
                let value = self.read_number(8)?;
                self.lines.item_slot(&label, letter, 1)?;
                self.lines.current.push_str(&symbolic(self.debuggee, value));
                self.advance(8);
            }
        }
        Ok(())
    }

    /// The bytes before the first NUL, at most [`MAXIMUM_STRING`], read a page
    /// piece at a time so a string that ends before an unmapped page still prints.
    fn read_string(&mut self) -> Result<Vec<u8>, DcmdError> {
        let mut bytes = Vec::new();
        let start = self.address;
        while bytes.len() < MAXIMUM_STRING {
            let at = start.wrapping_add(bytes.len() as u64);
            let in_page = (0x1000 - (at & 0xfff)) as usize;
            let length = in_page.min(MAXIMUM_STRING - bytes.len());
            let mut chunk = alloc::vec![0u8; length];
            self.bytes_read = self.bytes_read.saturating_add(length);
            if self.bytes_read > MAXIMUM_BYTES_READ {
                return Err(DcmdError::Failed(format!("output stopped: more than {MAXIMUM_BYTES_READ:#x} bytes read")));
            }
            self.memory.read(self.debuggee, at, &mut chunk)?;
            match chunk.iter().position(|byte| *byte == 0) {
                Some(end) => {
                    bytes.extend_from_slice(chunk.get(..end).unwrap_or(&[]));
                    return Ok(bytes);
                }
                None => bytes.extend_from_slice(&chunk),
            }
        }
        Ok(bytes)
    }
}

/// `value[,repeat]=format`: prints the value itself in each format, on one line.
pub fn print_value(
    debuggee: &Debuggee<'_>,
    value: u64,
    repeat: u64,
    format: &str,
    out: &mut dyn fmt::Write,
) -> Result<(), DcmdError> {
    let format = parse_format(format)?;
    total_items(&format, repeat)?;
    let mut line = String::new();
    for _ in 0..repeat {
        for (count, letter, kind) in &format {
            for _ in 0..*count {
                match kind {
                    ItemKind::Hex(_) | ItemKind::Octal(_) | ItemKind::Signed(_) | ItemKind::Unsigned(_) => {
                        line.push_str(&number_text(*kind, value));
                    }
                    ItemKind::Character => push_character(&mut line, value as u8),
                    ItemKind::Address | ItemKind::Pointer => line.push_str(&symbolic(debuggee, value)),
                    ItemKind::String | ItemKind::Instruction => {
                        return Err(DcmdError::Failed(format!(
                            "format '{letter}' reads memory: use /{letter} (or \\{letter})"
                        )))
                    }
                }
                line.push(' ');
            }
        }
    }
    writeln!(out, "{}", line.trim_end())?;
    Ok(())
}
