//! Stack unwinding for `::cpustack`: from a vCPU's registers to its chain of frames,
//! innermost first.
//!
//! Which unwinder: ORC (`orc`) when the guest is a Linux kernel whose ORC tables the
//! symbol table names and the vCPU is in kernel code; otherwise the frame-pointer chain
//! (`frame_pointer`); if neither gets past the first frame on a symbolized guest, a scan
//! of the stack for words that point into functions, labelled as a guess.
//!
//! Invariants: at most [`MAXIMUM_FRAMES`] frames; every unwinder stops on an unmapped
//! read, a zero return address, a stack pointer that does not move up, or a repeated
//! frame, and says why.

use alloc::string::String;
use alloc::vec::Vec;

use crate::dcmd::Debuggee;
use crate::target::{Registers, TargetError};

pub mod frame_pointer;
pub mod orc;

/// At most this many frames are shown.
pub const MAXIMUM_FRAMES: usize = 64;
/// How many bytes above the stack pointer the fallback scan reads.
const SCAN_BYTES: u64 = 4096;

/// One frame: where it executes, its stack pointer and frame pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub pc: u64,
    pub sp: u64,
    pub frame_pointer: u64,
}

/// How the frames were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Orc,
    FramePointer,
    /// Words on the stack that point into functions: may include stale frames.
    Scan,
}

impl Method {
    /// The name `::cpustack` prints.
    pub fn name(self) -> &'static str {
        match self {
            Method::Orc => "ORC",
            Method::FramePointer => "frame pointers",
            Method::Scan => "stack scan (heuristic: words that point into functions)",
        }
    }
}

/// An unwinding's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwinding {
    pub frames: Vec<Frame>,
    /// Why the walk stopped before running out of stack, if it did.
    pub stopped: Option<String>,
    pub method: Method,
}

/// Reads guest memory through one vCPU's page tables.
pub(crate) struct Memory<'a> {
    pub(crate) debuggee: &'a Debuggee<'a>,
    pub(crate) registers: &'a Registers,
}

impl Memory<'_> {
    pub(crate) fn read(&self, address: u64, buffer: &mut [u8]) -> Result<(), TargetError> {
        crate::paging::read_virtual(self.debuggee.target(), self.registers, address, buffer)
    }

    pub(crate) fn u64(&self, address: u64) -> Result<u64, TargetError> {
        let mut bytes = [0u8; 8];
        self.read(address, &mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }
}

/// Unwinds the stack `registers` describe: the frames, and why the walk stopped.
pub fn unwind(debuggee: &Debuggee, registers: &Registers) -> (Vec<Frame>, Option<String>) {
    let unwinding = unwind_with_method(debuggee, registers);
    (unwinding.frames, unwinding.stopped)
}

/// [`unwind`], also saying which unwinder found the frames.
pub fn unwind_with_method(debuggee: &Debuggee, registers: &Registers) -> Unwinding {
    let memory = Memory { debuggee, registers };
    let symbols = debuggee.symbols();
    if let Some(tables) = orc::Tables::from_symbols(symbols) {
        let format = orc::Format::for_release(debuggee.vmcoreinfo().and_then(|info| info.version()));
        if let Some((frames, stopped)) = orc::unwind(&memory, &tables, format, registers) {
            return Unwinding { frames, stopped, method: Method::Orc };
        }
    }
    let (frames, stopped) = frame_pointer::unwind(&memory, registers);
    if frames.len() > 1 || symbols.is_empty() {
        return Unwinding { frames, stopped, method: Method::FramePointer };
    }
    let frames = scan(&memory, registers, symbols);
    Unwinding { frames, stopped: Some(String::from("end of the scanned stack")), method: Method::Scan }
}

/// The current pc, then every word of the stack's first page above `rsp` that points
/// inside (not at the start of) a function.
fn scan(memory: &Memory<'_>, registers: &Registers, symbols: &crate::symbols::SymbolTable) -> Vec<Frame> {
    let mut frames = alloc::vec![Frame { pc: registers.rip, sp: registers.rsp, frame_pointer: registers.rbp }];
    let mut bytes = alloc::vec![0u8; SCAN_BYTES as usize];
    let length = SCAN_BYTES - (registers.rsp & (SCAN_BYTES - 1));
    let Some(window) = bytes.get_mut(..length as usize) else { return frames };
    if memory.read(registers.rsp & !7, window).is_err() {
        return frames;
    }
    for (slot, word) in window.chunks_exact(8).enumerate() {
        if frames.len() >= MAXIMUM_FRAMES {
            break;
        }
        let value = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
        let inside_function = symbols
            .by_address(value)
            .is_some_and(|(symbol, offset)| offset != 0 && symbol.kind == crate::symbols::SymbolKind::Function);
        if inside_function {
            frames.push(Frame { pc: value, sp: (registers.rsp & !7) + slot as u64 * 8, frame_pointer: 0 });
        }
    }
    frames
}

#[cfg(test)]
mod tests;
