//! The ORC unwinder for Linux guests (arch/x86/kernel/unwind_orc.c's model): for every
//! kernel text address objtool recorded how to find the caller's stack pointer (the
//! CFA: a register plus an offset, maybe dereferenced), where the caller's rbp was
//! saved, and whether the frame is a call frame or a `pt_regs` frame of an interrupt or
//! exception.
//!
//! Tables: `__start_orc_unwind_ip`..`__stop_orc_unwind_ip` holds sorted s32 offsets, each
//! relative to its own address; `__start_orc_unwind` holds the 6-byte entries in the
//! same order (`s16 sp_offset, s16 bp_offset`, then bit fields: `sp_reg:4, bp_reg:4`,
//! and up to 6.2 `type:2, end:1`; 6.3 puts a `signal` bit before `end`; 6.4 has
//! `type:3, signal:1` with type 0 undefined and 1 end of stack). An address is looked
//! up by binary search, reading only the entries the search touches.
//!
//! Invariants: at most [`super::MAXIMUM_FRAMES`] frames and [`MAXIMUM_ENTRIES`] table
//! entries; the walk stops on anything it cannot read, an address without an entry, a
//! register it does not know, user mode, or a stack pointer that moves down outside an
//! interrupt frame.

use alloc::string::String;
use alloc::vec::Vec;

use super::{Frame, Memory, MAXIMUM_FRAMES};
use crate::symbols::SymbolTable;
use crate::target::Registers;

/// Tables larger than this are taken to be damaged (6.1 has ~370 000 entries).
pub const MAXIMUM_ENTRIES: u64 = 4 << 20;
const ENTRY_SIZE: u64 = 6;

const REGISTER_UNDEFINED: u8 = 0;
const REGISTER_PREVIOUS_SP: u8 = 1;
const REGISTER_DX: u8 = 2;
const REGISTER_DI: u8 = 3;
const REGISTER_BP: u8 = 4;
const REGISTER_SP: u8 = 5;
const REGISTER_R10: u8 = 6;
const REGISTER_R13: u8 = 7;
const REGISTER_BP_INDIRECT: u8 = 8;
const REGISTER_SP_INDIRECT: u8 = 9;

/// struct pt_regs (x86-64) offsets.
const PT_REGS_R13: u64 = 16;
const PT_REGS_BP: u64 = 32;
const PT_REGS_R10: u64 = 56;
const PT_REGS_DX: u64 = 96;
const PT_REGS_DI: u64 = 112;
const PT_REGS_IP: u64 = 128;
const PT_REGS_CS: u64 = 136;
const PT_REGS_SP: u64 = 152;
/// A partial `pt_regs` frame's CFA points at the hardware iret frame (ip, cs, flags,
/// sp, ss), which is `pt_regs` from `ip` on.
const IRET_FRAME_OFFSET: u64 = PT_REGS_IP;

/// The ORC tables' addresses, from the symbol table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tables {
    pub ip_table: u64,
    pub entry_count: u64,
    pub entries: u64,
}

impl Tables {
    /// The tables if `symbols` names them and their size is sane.
    pub fn from_symbols(symbols: &SymbolTable) -> Option<Tables> {
        let start = symbols.by_name("__start_orc_unwind_ip")?.address;
        let stop = symbols.by_name("__stop_orc_unwind_ip")?.address;
        let entries = symbols.by_name("__start_orc_unwind")?.address;
        let entry_count = stop.checked_sub(start)? / 4;
        (entry_count > 0 && entry_count <= MAXIMUM_ENTRIES).then_some(Tables { ip_table: start, entry_count, entries })
    }
}

/// The bit layout of `struct orc_entry`, which changed in 6.3 and 6.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Up to 6.2: type:2 (call 0, regs 1, partial 2), end:1.
    Before6_3,
    /// 6.3: type:2, signal:1, end:1.
    Linux6_3,
    /// 6.4 on: type:3 (undefined 0, end of stack 1, call 2, regs 3, partial 4), signal:1.
    From6_4,
}

impl Format {
    /// The format of a kernel `(major, minor)`; 6.1 when unknown.
    pub fn for_release(version: Option<(u32, u32)>) -> Format {
        match version {
            Some((major, minor)) if major > 6 || (major == 6 && minor >= 4) => Format::From6_4,
            Some((6, 3)) => Format::Linux6_3,
            _ => Format::Before6_3,
        }
    }
}

/// What kind of frame an entry describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Call,
    Registers,
    PartialRegisters,
    End,
    Undefined,
}

/// One decoded `orc_entry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub sp_offset: i16,
    pub bp_offset: i16,
    pub sp_register: u8,
    pub bp_register: u8,
    pub kind: FrameKind,
}

impl Entry {
    /// Decodes the 6 bytes of an entry in `format`.
    pub fn decode(bytes: [u8; 6], format: Format) -> Entry {
        let flags = bytes[5];
        let kind = match format {
            Format::Before6_3 | Format::Linux6_3 => {
                let end_bit = if format == Format::Before6_3 { 2 } else { 3 };
                if flags & (1 << end_bit) != 0 {
                    FrameKind::End
                } else {
                    match flags & 3 {
                        0 => FrameKind::Call,
                        1 => FrameKind::Registers,
                        2 => FrameKind::PartialRegisters,
                        _ => FrameKind::Undefined,
                    }
                }
            }
            Format::From6_4 => match flags & 7 {
                1 => FrameKind::End,
                2 => FrameKind::Call,
                3 => FrameKind::Registers,
                4 => FrameKind::PartialRegisters,
                _ => FrameKind::Undefined,
            },
        };
        Entry {
            sp_offset: i16::from_le_bytes([bytes[0], bytes[1]]),
            bp_offset: i16::from_le_bytes([bytes[2], bytes[3]]),
            sp_register: bytes[4] & 0xf,
            bp_register: bytes[4] >> 4,
            kind,
        }
    }
}

/// The ORC entry covering `address` in `debuggee`'s kernel (for diagnostics and host
/// checks), reading through `registers`' page tables.
pub fn entry_for(debuggee: &crate::dcmd::Debuggee, registers: &Registers, address: u64) -> Option<Entry> {
    let tables = Tables::from_symbols(debuggee.symbols())?;
    let format = Format::for_release(debuggee.vmcoreinfo().and_then(|info| info.version()));
    lookup(&Memory { debuggee, registers }, &tables, format, address)
}

fn read_i32(memory: &Memory<'_>, address: u64) -> Option<i32> {
    let mut bytes = [0u8; 4];
    memory.read(address, &mut bytes).ok()?;
    Some(i32::from_le_bytes(bytes))
}

fn ip_at(memory: &Memory<'_>, tables: &Tables, index: u64) -> Option<u64> {
    let slot = tables.ip_table.checked_add(index.checked_mul(4)?)?;
    Some(slot.wrapping_add(i64::from(read_i32(memory, slot)?) as u64))
}

/// The entry covering `address`: the last whose ip is <= it.
pub(crate) fn lookup(memory: &Memory<'_>, tables: &Tables, format: Format, address: u64) -> Option<Entry> {
    let (mut low, mut high) = (0u64, tables.entry_count);
    if ip_at(memory, tables, 0)? > address {
        return None;
    }
    // Invariant: ip(low) <= address, and every index >= high has ip > address.
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if ip_at(memory, tables, middle)? <= address {
            low = middle;
        } else {
            high = middle;
        }
    }
    let mut bytes = [0u8; 6];
    memory.read(tables.entries.checked_add(low.checked_mul(ENTRY_SIZE)?)?, &mut bytes).ok()?;
    Some(Entry::decode(bytes, format))
}

/// What the walk knows about the registers of the frame it is in.
struct State {
    ip: u64,
    sp: u64,
    bp: u64,
    /// The full register set: the vCPU's (first frame) or a `pt_regs` on the stack.
    registers: Option<RegisterSource>,
    /// The ip is an interrupted instruction (look it up as is), not a return address
    /// (look up ip - 1, the call).
    interrupted: bool,
}

enum RegisterSource {
    Vcpu(alloc::boxed::Box<Registers>),
    Stack(u64),
}

impl State {
    fn register(&self, memory: &Memory<'_>, number: u8) -> Option<u64> {
        let (from_vcpu, offset): (fn(&Registers) -> u64, u64) = match number {
            REGISTER_DX => (|registers| registers.rdx, PT_REGS_DX),
            REGISTER_DI => (|registers| registers.rdi, PT_REGS_DI),
            REGISTER_R10 => (|registers| registers.r10, PT_REGS_R10),
            REGISTER_R13 => (|registers| registers.r13, PT_REGS_R13),
            _ => return None,
        };
        match self.registers.as_ref()? {
            RegisterSource::Vcpu(registers) => Some(from_vcpu(registers)),
            RegisterSource::Stack(base) => memory.u64(base.checked_add(offset)?).ok(),
        }
    }
}

fn is_kernel_address(address: u64) -> bool {
    address >= 0xffff_8000_0000_0000
}

/// Unwinds with ORC, or None when ORC does not cover the first frame (user mode, no
/// entry) so another unwinder should try.
pub(crate) fn unwind(
    memory: &Memory<'_>,
    tables: &Tables,
    format: Format,
    registers: &Registers,
) -> Option<(Vec<Frame>, Option<String>)> {
    if !is_kernel_address(registers.rip) || lookup(memory, tables, format, registers.rip).is_none() {
        return None;
    }
    let mut state = State {
        ip: registers.rip,
        sp: registers.rsp,
        bp: registers.rbp,
        registers: Some(RegisterSource::Vcpu(alloc::boxed::Box::new(*registers))),
        interrupted: true,
    };
    let mut frames = alloc::vec![Frame { pc: state.ip, sp: state.sp, frame_pointer: state.bp }];
    while frames.len() < MAXIMUM_FRAMES {
        match step(memory, tables, format, &mut state) {
            Ok(true) => frames.push(Frame { pc: state.ip, sp: state.sp, frame_pointer: state.bp }),
            Ok(false) => return Some((frames, None)),
            Err(why) => return Some((frames, Some(why))),
        }
    }
    Some((frames, Some(alloc::format!("stopped after {MAXIMUM_FRAMES} frames"))))
}

/// Moves `state` to the caller's frame: Ok(true) if there is one, Ok(false) at the end
/// of the kernel stack, Err(why) when the walk cannot go on.
fn step(memory: &Memory<'_>, tables: &Tables, format: Format, state: &mut State) -> Result<bool, String> {
    let lookup_address = if state.interrupted { state.ip } else { state.ip.wrapping_sub(1) };
    let entry = lookup(memory, tables, format, lookup_address)
        .ok_or_else(|| alloc::format!("no ORC entry for {:#x}", state.ip))?;
    let unreadable = |address: u64| alloc::format!("cannot read the stack at {address:#x}");
    match entry.kind {
        FrameKind::End => return Ok(false),
        FrameKind::Undefined => return Err(alloc::format!("ORC entry for {:#x} is undefined", state.ip)),
        _ => {}
    }
    if entry.sp_register == REGISTER_UNDEFINED {
        return Ok(false);
    }
    let offset = |base: u64, offset: i16| base.wrapping_add(i64::from(offset) as u64);
    let cfa = match entry.sp_register {
        REGISTER_SP => offset(state.sp, entry.sp_offset),
        REGISTER_BP => offset(state.bp, entry.sp_offset),
        REGISTER_SP_INDIRECT => offset(memory.u64(state.sp).map_err(|_| unreadable(state.sp))?, entry.sp_offset),
        REGISTER_BP_INDIRECT => {
            let slot = offset(state.bp, entry.sp_offset);
            memory.u64(slot).map_err(|_| unreadable(slot))?
        }
        REGISTER_DX | REGISTER_DI | REGISTER_R10 | REGISTER_R13 => {
            let value = state
                .register(memory, entry.sp_register)
                .ok_or_else(|| alloc::format!("ORC needs a register not saved at {:#x}", state.ip))?;
            offset(value, entry.sp_offset)
        }
        other => return Err(alloc::format!("unknown ORC sp register {other} at {:#x}", state.ip)),
    };
    let previous_sp = state.sp;
    match entry.kind {
        FrameKind::Call => {
            let slot = cfa.wrapping_sub(8);
            state.ip = memory.u64(slot).map_err(|_| unreadable(slot))?;
            state.sp = cfa;
            state.interrupted = false;
            state.registers = None;
            if cfa <= previous_sp {
                return Err(alloc::format!("stack pointer {cfa:#x} does not move up the stack"));
            }
        }
        FrameKind::Registers | FrameKind::PartialRegisters => {
            let base = if entry.kind == FrameKind::Registers { cfa } else { cfa.wrapping_sub(IRET_FRAME_OFFSET) };
            let read =
                |field: u64| memory.u64(base.wrapping_add(field)).map_err(|_| unreadable(base.wrapping_add(field)));
            let code_segment = read(PT_REGS_CS)?;
            state.ip = read(PT_REGS_IP)?;
            state.sp = read(PT_REGS_SP)?;
            state.interrupted = true;
            if code_segment & 3 != 0 || !is_kernel_address(state.ip) {
                // The interrupt came from user mode: the kernel stack ends here.
                return Ok(false);
            }
            if entry.kind == FrameKind::Registers {
                state.registers = Some(RegisterSource::Stack(base));
                if entry.bp_register == REGISTER_UNDEFINED {
                    state.bp = read(PT_REGS_BP)?;
                }
            } else {
                state.registers = None;
            }
        }
        FrameKind::End | FrameKind::Undefined => return Ok(false),
    }
    match entry.bp_register {
        REGISTER_PREVIOUS_SP => {
            let slot = offset(cfa, entry.bp_offset);
            state.bp = memory.u64(slot).map_err(|_| unreadable(slot))?;
        }
        REGISTER_BP => {
            let slot = offset(state.bp, entry.bp_offset);
            state.bp = memory.u64(slot).map_err(|_| unreadable(slot))?;
        }
        _ => {}
    }
    if state.ip == 0 {
        return Ok(false);
    }
    Ok(true)
}
