//! Emulating the guest instruction that touched an emulated MMIO page (the xAPIC page at
//! 0xfee00000): what it reads or writes, how wide, from or into which register.
//!
//! Why: a nested page fault gives the guest-physical address but not the data. The
//! hypervisor fetches the instruction bytes at RIP (elsewhere), [`decode_mmio`] says what
//! the access is — for a store, the value, taken from the registers or the immediate —
//! the device model performs it, and for a load [`complete_read`] puts the result where
//! the instruction would have, before RIP steps past `length` bytes.
//!
//! Scope: what compilers and Linux's MMIO accessors emit — `mov` between memory and a
//! general-purpose register in both directions (8, 16, 32 and 64 bits, AH–BH included,
//! the `moffs` forms too), `mov` of an immediate to memory, and the `movzx`/`movsx`/
//! `movsxd` loads. Linux's `readl`/`writel` are 32-bit `mov`s. Anything else (xchg, ALU
//! operations on memory, string instructions, SSE moves, segment registers, a `mov`
//! without a memory operand) is [`MmioError::Unsupported`] or
//! [`MmioError::UnsupportedOperand`], which the caller turns into a crashed domain with
//! a clear line. RSP is not in [`GuestGprs`] (it lives in the control structure), so an
//! access with RSP/ESP/SP/SPL as its data register is unsupported too.
//!
//! Semantics (SDM vol. 1 §3.4.1.1): a 32-bit destination register is zero-extended to 64
//! bits; an 8- or 16-bit destination merges into the register, AH/CH/DH/BH into bits
//! 15:8. The same rule is applied in 32- and 16-bit code (the upper half of a register is
//! not architecturally visible there).
//!
//! Bytes are untrusted: truncated or invalid bytes are errors, never panics; at most 15
//! bytes are looked at. The decoder is iced-x86 with the workspace's features (`decoder`
//! only): register and memory sizes come from this module's own tables.
#![forbid(unsafe_code)]

use iced_x86::{Instruction, MemorySize, Mnemonic, OpKind, Register};

use super::decode::{decode_instruction, CodeSize, DecodeError};
use super::GuestGprs;

/// A general-purpose register an MMIO instruction may use as data: every one but RSP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gpr {
    Rax,
    Rcx,
    Rdx,
    Rbx,
    Rbp,
    Rsi,
    Rdi,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
}

impl Gpr {
    /// The register's 64-bit value.
    pub fn value(self, gprs: &GuestGprs) -> u64 {
        match self {
            Gpr::Rax => gprs.rax,
            Gpr::Rcx => gprs.rcx,
            Gpr::Rdx => gprs.rdx,
            Gpr::Rbx => gprs.rbx,
            Gpr::Rbp => gprs.rbp,
            Gpr::Rsi => gprs.rsi,
            Gpr::Rdi => gprs.rdi,
            Gpr::R8 => gprs.r8,
            Gpr::R9 => gprs.r9,
            Gpr::R10 => gprs.r10,
            Gpr::R11 => gprs.r11,
            Gpr::R12 => gprs.r12,
            Gpr::R13 => gprs.r13,
            Gpr::R14 => gprs.r14,
            Gpr::R15 => gprs.r15,
        }
    }

    fn slot(self, gprs: &mut GuestGprs) -> &mut u64 {
        match self {
            Gpr::Rax => &mut gprs.rax,
            Gpr::Rcx => &mut gprs.rcx,
            Gpr::Rdx => &mut gprs.rdx,
            Gpr::Rbx => &mut gprs.rbx,
            Gpr::Rbp => &mut gprs.rbp,
            Gpr::Rsi => &mut gprs.rsi,
            Gpr::Rdi => &mut gprs.rdi,
            Gpr::R8 => &mut gprs.r8,
            Gpr::R9 => &mut gprs.r9,
            Gpr::R10 => &mut gprs.r10,
            Gpr::R11 => &mut gprs.r11,
            Gpr::R12 => &mut gprs.r12,
            Gpr::R13 => &mut gprs.r13,
            Gpr::R14 => &mut gprs.r14,
            Gpr::R15 => &mut gprs.r15,
        }
    }
}

/// The general-purpose registers by width: 8-bit (low byte), 16, 32, 64 bits.
const GPR_TABLE: [(Gpr, [Register; 4]); 15] = {
    use Register::*;
    [
        (Gpr::Rax, [AL, AX, EAX, RAX]),
        (Gpr::Rcx, [CL, CX, ECX, RCX]),
        (Gpr::Rdx, [DL, DX, EDX, RDX]),
        (Gpr::Rbx, [BL, BX, EBX, RBX]),
        (Gpr::Rbp, [BPL, BP, EBP, RBP]),
        (Gpr::Rsi, [SIL, SI, ESI, RSI]),
        (Gpr::Rdi, [DIL, DI, EDI, RDI]),
        (Gpr::R8, [R8L, R8W, R8D, R8]),
        (Gpr::R9, [R9L, R9W, R9D, R9]),
        (Gpr::R10, [R10L, R10W, R10D, R10]),
        (Gpr::R11, [R11L, R11W, R11D, R11]),
        (Gpr::R12, [R12L, R12W, R12D, R12]),
        (Gpr::R13, [R13L, R13W, R13D, R13]),
        (Gpr::R14, [R14L, R14W, R14D, R14]),
        (Gpr::R15, [R15L, R15W, R15D, R15]),
    ]
};

/// The legacy high-byte registers: bits 15:8 of RAX, RCX, RDX, RBX.
const HIGH_BYTE_TABLE: [(Register, Gpr); 4] =
    [(Register::AH, Gpr::Rax), (Register::CH, Gpr::Rcx), (Register::DH, Gpr::Rdx), (Register::BH, Gpr::Rbx)];

const STACK_POINTER: [Register; 4] = [Register::SPL, Register::SP, Register::ESP, Register::RSP];

/// A register operand: `size` bytes (1, 2, 4, 8) of `gpr` from bit 0, or, with
/// `high_byte`, bits 15:8 (AH, CH, DH, BH; `size` is 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GprOperand {
    pub gpr: Gpr,
    pub size: u8,
    pub high_byte: bool,
}

impl GprOperand {
    /// The operand's current value, zero-extended.
    pub fn value(self, gprs: &GuestGprs) -> u64 {
        let full = self.gpr.value(gprs);
        if self.high_byte {
            (full >> 8) & 0xff
        } else {
            truncate(full, self.size)
        }
    }

    /// Stores `value` with x86 register-write semantics: 64 bits replace, 32 bits
    /// zero-extend, 16 and 8 bits (and the high byte) merge.
    fn store(self, gprs: &mut GuestGprs, value: u64) {
        let slot = self.gpr.slot(gprs);
        *slot = match (self.size, self.high_byte) {
            (_, true) => (*slot & !0xff00) | ((value & 0xff) << 8),
            (1, false) => (*slot & !0xff) | (value & 0xff),
            (2, false) => (*slot & !0xffff) | (value & 0xffff),
            (4, false) => value & 0xffff_ffff,
            _ => value,
        };
    }
}

/// How a load narrower than its destination fills the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extension {
    /// `mov` (same width) and `movzx`.
    Zero,
    /// `movsx` and `movsxd`.
    Sign,
}

/// What the instruction does to the MMIO address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmioAccess {
    /// Load `size` bytes into `destination`, extended as `extension` says.
    Read { size: u8, destination: GprOperand, extension: Extension },
    /// Store the low `size` bytes of `value` (already truncated to `size`).
    Write { size: u8, value: u64 },
}

/// One decoded MMIO instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodedMmio {
    pub access: MmioAccess,
    /// Instruction length in bytes (1..=15): the next RIP is RIP + length.
    pub length: u8,
}

impl DecodedMmio {
    /// Bytes accessed at the MMIO address (1, 2, 4 or 8).
    pub fn size(&self) -> u8 {
        match self.access {
            MmioAccess::Read { size, .. } | MmioAccess::Write { size, .. } => size,
        }
    }
}

/// Why an MMIO access cannot be emulated. The domain is crashed with this line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmioError {
    /// The bytes are not one instruction (truncated or invalid).
    Decode(DecodeError),
    /// An instruction this emulator does not do.
    Unsupported(Mnemonic),
    /// A supported instruction with an operand it cannot handle (RSP as data, a segment
    /// register, no memory operand).
    UnsupportedOperand { mnemonic: Mnemonic, what: &'static str },
}

impl core::fmt::Display for MmioError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MmioError::Decode(error) => write!(formatter, "MMIO instruction: {error}"),
            MmioError::Unsupported(mnemonic) => {
                write!(formatter, "MMIO access by unsupported instruction {mnemonic:?}")
            }
            MmioError::UnsupportedOperand { mnemonic, what } => {
                write!(formatter, "MMIO access by {mnemonic:?} with unsupported operand: {what}")
            }
        }
    }
}

impl From<DecodeError> for MmioError {
    fn from(error: DecodeError) -> Self {
        MmioError::Decode(error)
    }
}

/// Decodes the instruction at the start of `bytes` (at most 15 are looked at) as an MMIO
/// access. A store's value is read from `gprs` now.
pub fn decode_mmio(bytes: &[u8], code_size: CodeSize, gprs: &GuestGprs) -> Result<DecodedMmio, MmioError> {
    let instruction = decode_instruction(bytes, code_size)?;
    let length = u8::try_from(instruction.len()).map_err(|_| DecodeError::Invalid)?;
    let mnemonic = instruction.mnemonic();
    let operand_error = |what| MmioError::UnsupportedOperand { mnemonic, what };
    let memory_size = memory_operand_size(instruction.memory_size());
    let access = match mnemonic {
        Mnemonic::Mov if instruction.op0_kind() == OpKind::Memory => {
            let size = memory_size.ok_or(operand_error("memory operand size"))?;
            let value = match instruction.op1_kind() {
                OpKind::Register => gpr_operand(instruction.op1_register()).map_err(operand_error)?.value(gprs),
                _ => instruction.try_immediate(1).map_err(|_| operand_error("source"))?,
            };
            MmioAccess::Write { size, value: truncate(value, size) }
        }
        Mnemonic::Mov if instruction.op1_kind() == OpKind::Memory => load(&instruction, memory_size, Extension::Zero)?,
        Mnemonic::Mov => return Err(operand_error("no memory operand")),
        Mnemonic::Movzx => load(&instruction, memory_size, Extension::Zero)?,
        Mnemonic::Movsx | Mnemonic::Movsxd => load(&instruction, memory_size, Extension::Sign)?,
        other => return Err(MmioError::Unsupported(other)),
    };
    Ok(DecodedMmio { access, length })
}

/// Finishes a load: `value` (what the device returned; bits above the access size are
/// ignored) is extended and written to the destination register. Does nothing for a
/// store.
pub fn complete_read(decoded: &DecodedMmio, gprs: &mut GuestGprs, value: u64) {
    if let MmioAccess::Read { size, destination, extension } = decoded.access {
        let loaded = truncate(value, size);
        let extended = match extension {
            Extension::Zero => loaded,
            Extension::Sign => sign_extend(loaded, size),
        };
        destination.store(gprs, extended);
    }
}

/// A load from memory (operand 1) into a register (operand 0).
fn load(instruction: &Instruction, memory_size: Option<u8>, extension: Extension) -> Result<MmioAccess, MmioError> {
    let mnemonic = instruction.mnemonic();
    let operand_error = |what| MmioError::UnsupportedOperand { mnemonic, what };
    if instruction.op0_kind() != OpKind::Register || instruction.op1_kind() != OpKind::Memory {
        return Err(operand_error("no memory source"));
    }
    let size = memory_size.ok_or(operand_error("memory operand size"))?;
    let destination = gpr_operand(instruction.op0_register()).map_err(operand_error)?;
    Ok(MmioAccess::Read { size, destination, extension })
}

/// The general-purpose register operand `register` names.
fn gpr_operand(register: Register) -> Result<GprOperand, &'static str> {
    if STACK_POINTER.contains(&register) {
        return Err("RSP as the data register");
    }
    if let Some(&(_, gpr)) = HIGH_BYTE_TABLE.iter().find(|(high, _)| *high == register) {
        return Ok(GprOperand { gpr, size: 1, high_byte: true });
    }
    for (gpr, widths) in GPR_TABLE {
        if let Some(index) = widths.iter().position(|&candidate| candidate == register) {
            return Ok(GprOperand { gpr, size: 1 << index, high_byte: false });
        }
    }
    Err("not a general-purpose register")
}

/// Width of an integer memory operand; `None` for anything else (far pointers, vectors,
/// segment-register stores).
fn memory_operand_size(size: MemorySize) -> Option<u8> {
    match size {
        MemorySize::UInt8 | MemorySize::Int8 => Some(1),
        MemorySize::UInt16 | MemorySize::Int16 => Some(2),
        MemorySize::UInt32 | MemorySize::Int32 => Some(4),
        MemorySize::UInt64 | MemorySize::Int64 => Some(8),
        _ => None,
    }
}

/// The low `size` bytes of `value`.
fn truncate(value: u64, size: u8) -> u64 {
    match size {
        1 => value & 0xff,
        2 => value & 0xffff,
        4 => value & 0xffff_ffff,
        _ => value,
    }
}

/// `value`'s low `size` bytes, sign-extended to 64 bits.
fn sign_extend(value: u64, size: u8) -> u64 {
    match size {
        1 => value as u8 as i8 as i64 as u64,
        2 => value as u16 as i16 as i64 as u64,
        4 => value as u32 as i32 as i64 as u64,
        _ => value,
    }
}

/// The fuzz target's body (kernel/fuzz/fuzz_targets/mmio_decode.rs), shared with a host
/// test: the input as instruction bytes at each code size. Decoding never panics; a
/// decoded access is 1–15 bytes long and within the input, 1, 2, 4 or 8 bytes wide, a
/// store's value fits its size, and completing a load changes only the destination
/// register (and only its low `size` bytes, unless it is a 32- or 64-bit destination).
/// Panics (by `assert!`) only when an invariant is broken — for fuzzing and tests.
#[doc(hidden)]
#[cfg(not(target_os = "none"))]
pub fn fuzz_one(data: &[u8]) {
    // Every register distinct, every byte non-zero, so a wrong merge shows.
    let gprs = GuestGprs {
        rax: 0x8877_6655_4433_2211,
        rcx: 0x0102_0304_0506_0708,
        rdx: 0xf0e0_d0c0_b0a0_9080,
        rbx: 0x1234_5678_9abc_def0,
        rsp_unused: 0x5555_5555_5555_5555,
        rbp: 0x7f7f_7f7f_8181_8181,
        rsi: 0x0f0f_0f0f_f0f0_f0f0,
        rdi: 0xfee0_0300_fee0_0300,
        r8: 0x0808_0808_0808_0808,
        r9: 0x0909_0909_0909_0909,
        r10: 0x1010_1010_1010_1010,
        r11: 0x1111_1111_1111_1111,
        r12: 0x1212_1212_1212_1212,
        r13: 0x1313_1313_1313_1313,
        r14: 0x1414_1414_1414_1414,
        r15: 0x1515_1515_1515_1515,
    };
    for code_size in [CodeSize::Bits16, CodeSize::Bits32, CodeSize::Bits64] {
        let Ok(decoded) = decode_mmio(data, code_size, &gprs) else { continue };
        let length = usize::from(decoded.length);
        assert!((1..=super::decode::MAX_INSTRUCTION_LENGTH).contains(&length) && length <= data.len(), "{decoded:?}");
        assert!(matches!(decoded.size(), 1 | 2 | 4 | 8), "{decoded:?}");
        assert_eq!(decode_mmio(&data[..length], code_size, &gprs), Ok(decoded), "trailing bytes changed it");
        match decoded.access {
            MmioAccess::Write { size, value } => assert_eq!(value, truncate(value, size), "{decoded:?}"),
            MmioAccess::Read { destination, .. } => {
                let mut after = gprs;
                complete_read(&decoded, &mut after, u64::MAX);
                let mut expected = gprs;
                *destination.gpr.slot(&mut expected) = destination.gpr.value(&after);
                assert_eq!(after, expected, "only the destination changes: {decoded:?}");
                let unchanged = match (destination.size, destination.high_byte) {
                    (_, true) => !0xff00,
                    (1, false) => !0xff,
                    (2, false) => !0xffff,
                    _ => 0,
                };
                let before = destination.gpr.value(&gprs);
                assert_eq!(destination.gpr.value(&after) & unchanged, before & unchanged, "{decoded:?}");
            }
        }
    }
}

#[cfg(test)]
#[path = "mmio_tests.rs"]
mod tests;
