//! Host tests of the MMIO instruction emulator: the forms Linux and compilers emit for
//! MMIO in 64-, 32- and 16-bit code, register-write semantics, and the refusals.

use super::*;

fn registers() -> GuestGprs {
    GuestGprs {
        rax: 0xaaaa_aaaa_aaaa_aaaa,
        rcx: 0xdead_beef_1234_5678,
        rdx: 0xfee0_0000,
        rbx: 0xbbbb_bbbb_bbbb_bbbb,
        rdi: 0xfee0_0000,
        r9: 0x9999_9999_9999_9999,
        r10: 0x0102_0304_0506_07c8,
        ..GuestGprs::default()
    }
}

fn decode64(bytes: &[u8]) -> Result<DecodedMmio, MmioError> {
    decode_mmio(bytes, CodeSize::Bits64, &registers())
}

fn read(size: u8, gpr: Gpr, register_size: u8, extension: Extension) -> MmioAccess {
    MmioAccess::Read { size, destination: GprOperand { gpr, size: register_size, high_byte: false }, extension }
}

/// The registers after completing `bytes` (a load) with `value` from the device.
fn after_load(bytes: &[u8], code_size: CodeSize, value: u64) -> GuestGprs {
    let mut gprs = registers();
    let decoded = decode_mmio(bytes, code_size, &gprs).unwrap();
    complete_read(&decoded, &mut gprs, value);
    gprs
}

#[test]
fn linux_readl_and_writel() {
    // mov eax, [rdi+0x20]: reading the APIC ID.
    let decoded = decode64(&[0x8b, 0x47, 0x20, 0x90]).unwrap();
    assert_eq!(decoded, DecodedMmio { access: read(4, Gpr::Rax, 4, Extension::Zero), length: 3 });
    assert_eq!(decoded.size(), 4);
    let mut gprs = registers();
    complete_read(&decoded, &mut gprs, 0xffff_ffff_0300_0000);
    assert_eq!(gprs.rax, 0x0300_0000, "a 32-bit load zero-extends and ignores bits above the access");
    assert_eq!(gprs, GuestGprs { rax: 0x0300_0000, ..registers() });
    // mov [rdx+0xb0], ecx: an EOI write.
    assert_eq!(
        decode64(&[0x89, 0x8a, 0xb0, 0x00, 0x00, 0x00]),
        Ok(DecodedMmio { access: MmioAccess::Write { size: 4, value: 0x1234_5678 }, length: 6 })
    );
    // mov dword [rax+0x300], 0x000c4500 (an ICR write with an immediate).
    assert_eq!(
        decode64(&[0xc7, 0x80, 0x00, 0x03, 0x00, 0x00, 0x00, 0x45, 0x0c, 0x00]),
        Ok(DecodedMmio { access: MmioAccess::Write { size: 4, value: 0x000c_4500 }, length: 10 })
    );
}

#[test]
fn stores_of_every_width() {
    // mov [rdi], cl / cx / rcx / r10b / ch
    let stores: [(&[u8], u8, u64); 7] = [
        (&[0x88, 0x0f], 1, 0x78),
        (&[0x66, 0x89, 0x0f], 2, 0x5678),
        (&[0x48, 0x89, 0x0f], 8, 0xdead_beef_1234_5678),
        (&[0x44, 0x88, 0x17], 1, 0xc8),
        (&[0x88, 0x2f], 1, 0x56),
        // mov byte [rdi], 0x80; mov qword [rdi], -2 (imm32 sign-extended)
        (&[0xc6, 0x07, 0x80], 1, 0x80),
        (&[0x48, 0xc7, 0x07, 0xfe, 0xff, 0xff, 0xff], 8, 0xffff_ffff_ffff_fffe),
    ];
    for (bytes, size, value) in stores {
        let length = bytes.len() as u8;
        assert_eq!(
            decode64(bytes),
            Ok(DecodedMmio { access: MmioAccess::Write { size, value }, length }),
            "{bytes:02x?}"
        );
    }
    // mov word [rdi], 0x1234
    assert_eq!(decode64(&[0x66, 0xc7, 0x07, 0x34, 0x12]).unwrap().access, MmioAccess::Write { size: 2, value: 0x1234 });
}

#[test]
fn loads_merge_or_extend() {
    let bits64 = CodeSize::Bits64;
    // mov al, [rdi]: merges the low byte.
    assert_eq!(after_load(&[0x8a, 0x07], bits64, 0x1122_3344).rax, 0xaaaa_aaaa_aaaa_aa44);
    // mov ah, [rdi]: bits 15:8.
    let decoded = decode64(&[0x8a, 0x27]).unwrap();
    assert_eq!(
        decoded.access,
        MmioAccess::Read {
            size: 1,
            destination: GprOperand { gpr: Gpr::Rax, size: 1, high_byte: true },
            extension: Extension::Zero
        }
    );
    assert_eq!(after_load(&[0x8a, 0x27], bits64, 0x44).rax, 0xaaaa_aaaa_aaaa_44aa);
    // mov ax, [rdi]: merges 16 bits.
    assert_eq!(after_load(&[0x66, 0x8b, 0x07], bits64, 0x1122_3344).rax, 0xaaaa_aaaa_aaaa_3344);
    // mov rbx, [rdi] and mov r9, [rdi]: replace.
    assert_eq!(after_load(&[0x48, 0x8b, 0x1f], bits64, 0x0123_4567_89ab_cdef).rbx, 0x0123_4567_89ab_cdef);
    assert_eq!(after_load(&[0x4c, 0x8b, 0x0f], bits64, 7).r9, 7);
    // mov r10d, [rdi]: zero-extends.
    assert_eq!(after_load(&[0x44, 0x8b, 0x17], bits64, 0x8000_0000).r10, 0x8000_0000);
    // mov sil, [rdi] (REX): the low byte of RSI, not DH.
    let sil = after_load(&[0x40, 0x8a, 0x37], bits64, 0x5a);
    assert_eq!((sil.rsi, sil.rdx), (0x5a, registers().rdx));
}

#[test]
fn movzx_movsx_movsxd() {
    let bits64 = CodeSize::Bits64;
    // movzx eax, byte [rdi]
    assert_eq!(decode64(&[0x0f, 0xb6, 0x07]).unwrap().access, read(1, Gpr::Rax, 4, Extension::Zero));
    assert_eq!(after_load(&[0x0f, 0xb6, 0x07], bits64, 0xfff0).rax, 0xf0);
    // movzx ecx, word [rsi+2]
    assert_eq!(
        decode64(&[0x0f, 0xb7, 0x4e, 0x02]).unwrap(),
        DecodedMmio { access: read(2, Gpr::Rcx, 4, Extension::Zero), length: 4 }
    );
    // movsx eax, byte [rdi]: sign-extends to 32 bits, then zero-extends to 64.
    assert_eq!(after_load(&[0x0f, 0xbe, 0x07], bits64, 0x80).rax, 0xffff_ff80);
    // movsx rax, word [rdi]
    assert_eq!(after_load(&[0x48, 0x0f, 0xbf, 0x07], bits64, 0x8000).rax, 0xffff_ffff_ffff_8000);
    // movsx ax, byte [rdi]: merges 16 bits.
    assert_eq!(after_load(&[0x66, 0x0f, 0xbe, 0x07], bits64, 0xfe).rax, 0xaaaa_aaaa_aaaa_fffe);
    // movsxd rax, dword [rdi]
    assert_eq!(decode64(&[0x48, 0x63, 0x07]).unwrap().access, read(4, Gpr::Rax, 8, Extension::Sign));
    assert_eq!(after_load(&[0x48, 0x63, 0x07], bits64, 0x8000_0000).rax, 0xffff_ffff_8000_0000);
    assert_eq!(after_load(&[0x48, 0x63, 0x07], bits64, 0x7fff_ffff).rax, 0x7fff_ffff);
}

#[test]
fn moffs_forms() {
    // mov eax, [0xfee00030] (A1 with a 64-bit absolute address)
    let bytes = [0xa1, 0x30, 0x00, 0xe0, 0xfe, 0x00, 0x00, 0x00, 0x00];
    assert_eq!(decode64(&bytes), Ok(DecodedMmio { access: read(4, Gpr::Rax, 4, Extension::Zero), length: 9 }));
    // mov [0xfee000b0], eax in 32-bit code (A3 with a 32-bit address)
    let bytes = [0xa3, 0xb0, 0x00, 0xe0, 0xfe];
    assert_eq!(
        decode_mmio(&bytes, CodeSize::Bits32, &registers()),
        Ok(DecodedMmio { access: MmioAccess::Write { size: 4, value: 0xaaaa_aaaa }, length: 5 })
    );
}

#[test]
fn thirty_two_and_sixteen_bit_code() {
    let bits32 = CodeSize::Bits32;
    // mov eax, [edi+0x20]
    assert_eq!(
        decode_mmio(&[0x8b, 0x47, 0x20], bits32, &registers()),
        Ok(DecodedMmio { access: read(4, Gpr::Rax, 4, Extension::Zero), length: 3 })
    );
    assert_eq!(after_load(&[0x8b, 0x47, 0x20], bits32, 0x14).rax, 0x14);
    // mov [eax+0x300], ecx
    assert_eq!(
        decode_mmio(&[0x89, 0x88, 0x00, 0x03, 0x00, 0x00], bits32, &registers()).unwrap().access,
        MmioAccess::Write { size: 4, value: 0x1234_5678 }
    );
    // In 32-bit code 0x66 makes it 16 bits; 0x48 is DEC EAX, not REX.
    assert_eq!(
        decode_mmio(&[0x66, 0x89, 0x08], bits32, &registers()).unwrap().access,
        MmioAccess::Write { size: 2, value: 0x5678 }
    );
    assert_eq!(decode_mmio(&[0x48, 0x8b, 0x07], bits32, &registers()), Err(MmioError::Unsupported(Mnemonic::Dec)));
    // 16-bit code: mov ax, [bx] is 16 bits; with 0x66 it is 32.
    let bits16 = CodeSize::Bits16;
    assert_eq!(decode_mmio(&[0x8b, 0x07], bits16, &registers()).unwrap().access, read(2, Gpr::Rax, 2, Extension::Zero));
    assert_eq!(
        decode_mmio(&[0x66, 0x8b, 0x07], bits16, &registers()).unwrap().access,
        read(4, Gpr::Rax, 4, Extension::Zero)
    );
}

#[test]
fn unsupported_instructions_and_operands() {
    let unsupported: [(&[u8], Mnemonic); 7] = [
        (&[0x87, 0x07], Mnemonic::Xchg),
        (&[0xf3, 0xab], Mnemonic::Stosd),
        (&[0x01, 0x07], Mnemonic::Add),
        (&[0x83, 0x0f, 0x01], Mnemonic::Or),
        (&[0xff, 0x37], Mnemonic::Push),
        (&[0x0f, 0x10, 0x07], Mnemonic::Movups),
        (&[0x0f, 0x0b], Mnemonic::Ud2),
    ];
    for (bytes, mnemonic) in unsupported {
        assert_eq!(decode64(bytes), Err(MmioError::Unsupported(mnemonic)), "{bytes:02x?}");
    }
    let operand = |bytes: &[u8]| match decode64(bytes) {
        Err(MmioError::UnsupportedOperand { mnemonic, what }) => (mnemonic, what),
        other => panic!("{bytes:02x?}: {other:?}"),
    };
    // RSP (and its parts) as the data register.
    assert_eq!(operand(&[0x48, 0x8b, 0x27]), (Mnemonic::Mov, "RSP as the data register"));
    assert_eq!(operand(&[0x89, 0x27]), (Mnemonic::Mov, "RSP as the data register"));
    assert_eq!(operand(&[0x40, 0x88, 0x27]), (Mnemonic::Mov, "RSP as the data register"));
    assert_eq!(operand(&[0x0f, 0xb6, 0x27]).1, "RSP as the data register");
    // Segment registers and register-to-register moves.
    assert_eq!(operand(&[0x8c, 0x1f]).0, Mnemonic::Mov);
    assert_eq!(operand(&[0x8e, 0x1f]).0, Mnemonic::Mov);
    assert_eq!(operand(&[0x89, 0xc8]), (Mnemonic::Mov, "no memory operand"));
    assert_eq!(operand(&[0x0f, 0xb6, 0xc1]), (Mnemonic::Movzx, "no memory source"));
}

#[test]
fn truncated_and_invalid_bytes() {
    let truncated: [&[u8]; 5] = [&[], &[0x8b], &[0x8b, 0x47], &[0xc7, 0x80, 0x00, 0x03, 0x00], &[0x48]];
    for bytes in truncated {
        assert_eq!(decode64(bytes), Err(MmioError::Decode(DecodeError::Truncated)), "{bytes:02x?}");
    }
    assert_eq!(decode64(&[0xff, 0xff]), Err(MmioError::Decode(DecodeError::Invalid)));
    // LOCK MOV is #UD.
    assert_eq!(decode64(&[0xf0, 0x89, 0x07]), Err(MmioError::Decode(DecodeError::Invalid)));
    // More than 15 bytes is never one instruction; only 15 are looked at.
    let mut long = [0x66u8; 20];
    long[14..17].copy_from_slice(&[0x89, 0x07, 0x90]);
    assert!(decode64(&long).is_err());
}

#[test]
fn complete_read_ignores_stores() {
    let decoded = decode64(&[0x89, 0x07]).unwrap();
    let mut gprs = registers();
    complete_read(&decoded, &mut gprs, u64::MAX);
    assert_eq!(gprs, registers());
}

#[test]
fn errors_print_a_clear_line() {
    extern crate std;
    use std::string::ToString;
    assert_eq!(decode64(&[0x87, 0x07]).unwrap_err().to_string(), "MMIO access by unsupported instruction Xchg");
    assert_eq!(
        decode64(&[0x89, 0x27]).unwrap_err().to_string(),
        "MMIO access by Mov with unsupported operand: RSP as the data register"
    );
    assert_eq!(decode64(&[0x8b]).unwrap_err().to_string(), "MMIO instruction: instruction bytes end early");
}

/// The fuzz target's body over xorshift-random inputs, often led by the opcodes and
/// prefixes of the forms this module emulates.
#[test]
fn fuzz_body_over_random_inputs() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let leads: [&[u8]; 12] = [
        &[],
        &[0x8b],
        &[0x89],
        &[0x8a],
        &[0x88],
        &[0xc7],
        &[0xc6],
        &[0x0f, 0xb6],
        &[0x0f, 0xbf],
        &[0x48, 0x63],
        &[0x66],
        &[0x44, 0x8b],
    ];
    for _ in 0..20_000 {
        let lead = leads[(next() % 12) as usize];
        let length = lead.len() + (next() % 16) as usize;
        let mut input = lead.to_vec();
        while input.len() < length {
            input.extend_from_slice(&next().to_le_bytes());
        }
        input.truncate(length);
        fuzz_one(&input);
    }
}
