//! Decoding the instruction a guest exit stopped at: its length, so the exit handler
//! can step past it, and what it is.
//!
//! Why: QEMU's SVM emulation has no next-RIP save and no decode assists, and MMIO exits
//! never say which instruction caused them on either vendor, so the hypervisor fetches
//! the bytes at the guest's RIP (walking the guest's page tables, elsewhere) and decodes
//! them here. The decoding itself is iced-x86; this module picks the bitness from the
//! vCPU's mode and names the instructions exit handling cares about.
//!
//! Bytes are untrusted: a truncated or invalid instruction is an error, never a panic,
//! and nothing reads past the 15-byte architectural limit.

use iced_x86::{Code, Decoder, DecoderOptions, Instruction, MemorySize, Mnemonic, OpKind, Register};

/// Builds iced-x86's decoder tables now. They are made on first use (a few hundred KiB
/// of heap, kept for good); the hypervisor calls this at boot so that the first guest
/// exit does not allocate memory that looks, in `mem`, like a leak of the first domain.
pub fn prepare() {
    // A one-byte NOP decodes in every mode; the result itself does not matter.
    let _ = decode(&[0x90], CodeSize::Bits64);
}

/// Longest x86 instruction (SDM vol. 2, §2.3.11).
pub const MAX_INSTRUCTION_LENGTH: usize = 15;

/// The default operand/address size the vCPU executes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeSize {
    /// Real mode, virtual-8086 mode, or a 16-bit code segment.
    Bits16,
    /// A 32-bit code segment (compatibility mode included).
    Bits32,
    /// 64-bit mode.
    Bits64,
}

/// The instructions exits are taken on, and everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestInstruction {
    Cpuid,
    /// AMD's hypercall instruction.
    Vmmcall,
    /// Intel's hypercall instruction.
    Vmcall,
    Hlt,
    Rdmsr,
    Wrmsr,
    /// IN / INS: `port` is the immediate, or None when it comes from DX.
    In {
        port: Option<u8>,
        size: u8,
        string: bool,
    },
    /// OUT / OUTS.
    Out {
        port: Option<u8>,
        size: u8,
        string: bool,
    },
    /// A MOV between a register or immediate and memory (the MMIO case): `size` bytes,
    /// `store` when memory is the destination.
    MemoryMove {
        size: u8,
        store: bool,
    },
    /// Anything else, by iced-x86's mnemonic.
    Other(Mnemonic),
}

/// A decoded guest instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodedInstruction {
    /// Length in bytes (1..=15): the next RIP is RIP + length.
    pub length: u8,
    pub kind: GuestInstruction,
}

/// Why the bytes are not one instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end before the instruction does (fetch more, or the guest's code page
    /// ends there).
    Truncated,
    /// Not a valid instruction in this mode.
    Invalid,
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.write_str(match self {
            DecodeError::Truncated => "instruction bytes end early",
            DecodeError::Invalid => "invalid instruction",
        })
    }
}

/// The first instruction of `bytes` (at most 15 are looked at), as iced-x86 decodes
/// it in `code_size`; also what the MMIO emulator works from.
pub(crate) fn decode_instruction(bytes: &[u8], code_size: CodeSize) -> Result<Instruction, DecodeError> {
    let window = bytes.get(..MAX_INSTRUCTION_LENGTH).unwrap_or(bytes);
    let bitness = match code_size {
        CodeSize::Bits16 => 16,
        CodeSize::Bits32 => 32,
        CodeSize::Bits64 => 64,
    };
    let mut decoder = Decoder::new(bitness, window, DecoderOptions::NONE);
    let instruction = decoder.decode();
    match decoder.last_error() {
        iced_x86::DecoderError::None => {}
        iced_x86::DecoderError::NoMoreBytes => return Err(DecodeError::Truncated),
        _ => return Err(DecodeError::Invalid),
    }
    if instruction.code() == Code::INVALID {
        return Err(DecodeError::Invalid);
    }
    Ok(instruction)
}

/// Decodes the first instruction of `bytes` (at most 15 are looked at).
pub fn decode(bytes: &[u8], code_size: CodeSize) -> Result<DecodedInstruction, DecodeError> {
    let instruction = decode_instruction(bytes, code_size)?;
    let length = u8::try_from(instruction.len()).map_err(|_| DecodeError::Invalid)?;
    let immediate_port = || match instruction.op_kind(1) {
        OpKind::Immediate8 => Some(instruction.immediate8()),
        _ => None,
    };
    let out_port = || match instruction.op_kind(0) {
        OpKind::Immediate8 => Some(instruction.immediate8()),
        _ => None,
    };
    let kind = match instruction.mnemonic() {
        Mnemonic::Cpuid => GuestInstruction::Cpuid,
        Mnemonic::Vmmcall => GuestInstruction::Vmmcall,
        Mnemonic::Vmcall => GuestInstruction::Vmcall,
        Mnemonic::Hlt => GuestInstruction::Hlt,
        Mnemonic::Rdmsr => GuestInstruction::Rdmsr,
        Mnemonic::Wrmsr => GuestInstruction::Wrmsr,
        Mnemonic::In => GuestInstruction::In {
            port: immediate_port(),
            size: accumulator_size(instruction.op0_register()),
            string: false,
        },
        Mnemonic::Out => GuestInstruction::Out {
            port: out_port(),
            size: accumulator_size(instruction.op1_register()),
            string: false,
        },
        Mnemonic::Insb | Mnemonic::Insw | Mnemonic::Insd => {
            GuestInstruction::In { port: None, size: string_size(instruction.mnemonic()), string: true }
        }
        Mnemonic::Outsb | Mnemonic::Outsw | Mnemonic::Outsd => {
            GuestInstruction::Out { port: None, size: string_size(instruction.mnemonic()), string: true }
        }
        Mnemonic::Mov if instruction.op0_kind() == OpKind::Memory || instruction.op1_kind() == OpKind::Memory => {
            let store = instruction.op0_kind() == OpKind::Memory;
            GuestInstruction::MemoryMove { size: memory_operand_size(instruction.memory_size()), store }
        }
        other => GuestInstruction::Other(other),
    };
    Ok(DecodedInstruction { length, kind })
}

/// Width of IN/OUT's accumulator operand.
fn accumulator_size(register: Register) -> u8 {
    match register {
        Register::AL => 1,
        Register::AX => 2,
        _ => 4,
    }
}

/// Width of a MOV's memory operand (0 for forms MOV cannot have).
fn memory_operand_size(size: MemorySize) -> u8 {
    match size {
        MemorySize::UInt8 | MemorySize::Int8 => 1,
        MemorySize::UInt16 | MemorySize::Int16 | MemorySize::WordOffset => 2,
        MemorySize::UInt32 | MemorySize::Int32 | MemorySize::DwordOffset => 4,
        MemorySize::UInt64 | MemorySize::Int64 | MemorySize::QwordOffset => 8,
        _ => 0,
    }
}

fn string_size(mnemonic: Mnemonic) -> u8 {
    match mnemonic {
        Mnemonic::Insb | Mnemonic::Outsb => 1,
        Mnemonic::Insw | Mnemonic::Outsw => 2,
        _ => 4,
    }
}

/// The fuzz target's body (kernel/fuzz/fuzz_targets/exit_decode.rs), shared with a host
/// test: the input as instruction bytes at each code size, and every prefix of the
/// first 15 bytes. Decoding never panics; a decoded instruction is 1–15 bytes and no
/// longer than the input; a shorter prefix of a decoded instruction is never itself
/// that instruction; the bytes after it never change it.
/// Panics (by `assert!`) only when an invariant is broken — for fuzzing and tests.
#[doc(hidden)]
#[cfg(not(target_os = "none"))]
pub fn fuzz_one(data: &[u8]) {
    for code_size in [CodeSize::Bits16, CodeSize::Bits32, CodeSize::Bits64] {
        let full = decode(data, code_size);
        if let Ok(decoded) = full {
            let length = usize::from(decoded.length);
            assert!((1..=MAX_INSTRUCTION_LENGTH).contains(&length) && length <= data.len(), "{decoded:?}");
            assert_eq!(decode(&data[..length], code_size), full, "trailing bytes changed the instruction");
        }
        for end in 0..data.len().min(MAX_INSTRUCTION_LENGTH) {
            match decode(&data[..end], code_size) {
                Ok(decoded) => {
                    assert!(usize::from(decoded.length) <= end, "{decoded:?} from {end} bytes");
                    assert_eq!(full, Ok(decoded), "a prefix decodes differently");
                }
                Err(_) => {
                    if let Ok(decoded) = full {
                        assert!(end < usize::from(decoded.length), "prefix of {end} bytes failed");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(bytes: &[u8], code_size: CodeSize) -> (u8, GuestInstruction) {
        let decoded = decode(bytes, code_size).unwrap();
        (decoded.length, decoded.kind)
    }

    #[test]
    fn exit_instructions_and_their_lengths() {
        for code_size in [CodeSize::Bits16, CodeSize::Bits32, CodeSize::Bits64] {
            assert_eq!(kind(&[0x0f, 0xa2, 0x90], code_size), (2, GuestInstruction::Cpuid));
            assert_eq!(kind(&[0x0f, 0x01, 0xd9], code_size), (3, GuestInstruction::Vmmcall));
            assert_eq!(kind(&[0x0f, 0x01, 0xc1], code_size), (3, GuestInstruction::Vmcall));
            assert_eq!(kind(&[0xf4], code_size), (1, GuestInstruction::Hlt));
            assert_eq!(kind(&[0x0f, 0x32], code_size), (2, GuestInstruction::Rdmsr));
            assert_eq!(kind(&[0x0f, 0x30], code_size), (2, GuestInstruction::Wrmsr));
            // A redundant segment prefix is part of the length.
            assert_eq!(kind(&[0x2e, 0x0f, 0xa2], code_size), (3, GuestInstruction::Cpuid));
        }
    }

    #[test]
    fn port_io_forms() {
        let bits32 = CodeSize::Bits32;
        assert_eq!(kind(&[0xe4, 0x71], bits32), (2, GuestInstruction::In { port: Some(0x71), size: 1, string: false }));
        assert_eq!(kind(&[0xec], bits32), (1, GuestInstruction::In { port: None, size: 1, string: false }));
        assert_eq!(kind(&[0xed], bits32), (1, GuestInstruction::In { port: None, size: 4, string: false }));
        // The operand-size prefix means 16 bits in 32-bit code and 32 bits in 16-bit code.
        assert_eq!(kind(&[0x66, 0xed], bits32), (2, GuestInstruction::In { port: None, size: 2, string: false }));
        assert_eq!(
            kind(&[0x66, 0xed], CodeSize::Bits16),
            (2, GuestInstruction::In { port: None, size: 4, string: false })
        );
        assert_eq!(
            kind(&[0xe6, 0x80], bits32),
            (2, GuestInstruction::Out { port: Some(0x80), size: 1, string: false })
        );
        assert_eq!(kind(&[0xef], bits32), (1, GuestInstruction::Out { port: None, size: 4, string: false }));
        assert_eq!(kind(&[0xf3, 0x6e], bits32), (2, GuestInstruction::Out { port: None, size: 1, string: true }));
        assert_eq!(kind(&[0x6d], bits32), (1, GuestInstruction::In { port: None, size: 4, string: true }));
    }

    #[test]
    fn memory_moves_for_mmio() {
        // mov dword [rax+0x300], ecx (a LAPIC ICR write), 64-bit: 89 88 00 03 00 00
        assert_eq!(
            kind(&[0x89, 0x88, 0x00, 0x03, 0x00, 0x00], CodeSize::Bits64),
            (6, GuestInstruction::MemoryMove { size: 4, store: true })
        );
        // mov eax, [rbx] ; 8b 03
        assert_eq!(kind(&[0x8b, 0x03], CodeSize::Bits64), (2, GuestInstruction::MemoryMove { size: 4, store: false }));
        // REX.W mov qword [rdi], imm32: 48 c7 07 01 00 00 00
        assert_eq!(
            kind(&[0x48, 0xc7, 0x07, 1, 0, 0, 0], CodeSize::Bits64),
            (7, GuestInstruction::MemoryMove { size: 8, store: true })
        );
        // Register-to-register moves are not memory moves.
        assert_eq!(kind(&[0x89, 0xc8], CodeSize::Bits64), (2, GuestInstruction::Other(Mnemonic::Mov)));
    }

    #[test]
    fn bad_bytes_are_errors() {
        assert_eq!(decode(&[], CodeSize::Bits64), Err(DecodeError::Truncated));
        assert_eq!(decode(&[0x0f], CodeSize::Bits64), Err(DecodeError::Truncated));
        assert_eq!(decode(&[0x0f, 0x01], CodeSize::Bits32), Err(DecodeError::Truncated));
        // 0F 0B is UD2: valid, just not one exit handling cares about.
        assert_eq!(kind(&[0x0f, 0x0b], CodeSize::Bits64), (2, GuestInstruction::Other(Mnemonic::Ud2)));
        // More than 15 bytes of prefixes is never an instruction.
        assert!(decode(&[0x66; 20], CodeSize::Bits32).is_err());
        // Random bytes: errors or valid lengths, never a panic.
        let mut state = 0x1234_5678_9abc_def0u64;
        for _ in 0..50_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bytes = state.to_le_bytes();
            let tail = (state >> 8).to_le_bytes();
            let input = [bytes, tail].concat();
            for code_size in [CodeSize::Bits16, CodeSize::Bits32, CodeSize::Bits64] {
                if let Ok(decoded) = decode(&input[..(state % 16) as usize], code_size) {
                    assert!((1..=MAX_INSTRUCTION_LENGTH as u8).contains(&decoded.length));
                }
            }
        }
    }

    /// The fuzz target's body over xorshift-random inputs: random bytes, often led by
    /// prefixes and the opcodes exits stop at.
    #[test]
    fn fuzz_body_over_random_inputs() {
        let mut seed = 0xd1b5_4a32_d192_ed03u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let leads: [&[u8]; 8] =
            [&[], &[0x66], &[0x67], &[0xf3], &[0x48], &[0x0f], &[0x0f, 0x01], &[0x26, 0x66, 0x67, 0xf2, 0x40]];
        for _ in 0..5_000 {
            let lead = leads[(next() % 8) as usize];
            let length = lead.len() + (next() % 20) as usize;
            let mut input = lead.to_vec();
            while input.len() < length {
                input.extend_from_slice(&next().to_le_bytes());
            }
            input.truncate(length);
            fuzz_one(&input);
        }
    }
}
