//! The hypercall page: the 4 KiB of call stubs a guest asks for by writing the
//! hypercall-page MSR (CPUID leaf 0x40000002 EBX; see [`super::msr`]).
//!
//! Why it exists: guests from before XSA-466 (Linux < the Dec-2024 stable releases,
//! older BSDs) call `hypercall_page + N * 32` instead of issuing VMCALL/VMMCALL
//! themselves, so the stubs carry the vendor's instruction and the guest need not know
//! it.
//!
//! Layout (Xen `xen/arch/x86/hvm/svm/svm.c` `svm_init_hypercall_page`, `vmx.c`
//! `vmx_init_hypercall_page`): the page is first filled with `int3` (0xCC); entry N at
//! byte N * 32 is `mov eax, N` (B8 imm32), the 3-byte VMCALL (0F 01 C1) or VMMCALL
//! (0F 01 D9), `ret` (C3). Entry 23 (`__HYPERVISOR_iret`, PV only) is `ud2` (0F 0B).
//! The caller writes the page into guest memory; nothing here touches the guest.

use basalt_xen_abi::hypercall::{iret, HYPERCALL_PAGE_ENTRIES, HYPERCALL_PAGE_ENTRY_SIZE};

/// Size of the hypercall page.
pub const HYPERCALL_PAGE_SIZE: usize = 4096;

/// Which hypercall instruction the stubs use; it must be the one the vendor backend
/// intercepts (the CPU's own: VMMCALL on AMD, VMCALL on Intel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HypercallInstruction {
    /// Intel VMX `vmcall` (0F 01 C1).
    Vmcall,
    /// AMD SVM `vmmcall` (0F 01 D9).
    Vmmcall,
}

impl HypercallInstruction {
    /// The instruction's encoding.
    pub const fn bytes(self) -> [u8; 3] {
        match self {
            HypercallInstruction::Vmcall => [0x0f, 0x01, 0xc1],
            HypercallInstruction::Vmmcall => [0x0f, 0x01, 0xd9],
        }
    }
}

const INT3: u8 = 0xcc;
const MOV_EAX_IMM32: u8 = 0xb8;
const RET: u8 = 0xc3;
const UD2: [u8; 2] = [0x0f, 0x0b];

/// Writes the hypercall page's contents into `page`.
pub fn fill(page: &mut [u8; HYPERCALL_PAGE_SIZE], instruction: HypercallInstruction) {
    page.fill(INT3);
    for (number, entry) in page.chunks_exact_mut(HYPERCALL_PAGE_ENTRY_SIZE).take(HYPERCALL_PAGE_ENTRIES).enumerate() {
        if number as u64 == iret {
            entry[..2].copy_from_slice(&UD2);
            continue;
        }
        entry[0] = MOV_EAX_IMM32;
        entry[1..5].copy_from_slice(&(number as u32).to_le_bytes());
        entry[5..8].copy_from_slice(&instruction.bytes());
        entry[8] = RET;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_xen_abi::hypercall;

    fn page(instruction: HypercallInstruction) -> [u8; HYPERCALL_PAGE_SIZE] {
        let mut page = [0u8; HYPERCALL_PAGE_SIZE];
        fill(&mut page, instruction);
        page
    }

    /// Decodes entry `number` as `mov eax, imm32; <3 bytes>; ret` and returns the
    /// immediate and the instruction bytes.
    fn decode(page: &[u8; HYPERCALL_PAGE_SIZE], number: usize) -> (u32, [u8; 3]) {
        let entry = &page[number * 32..number * 32 + 32];
        assert_eq!(entry[0], 0xb8, "entry {number} starts with mov eax, imm32");
        let immediate = u32::from_le_bytes(entry[1..5].try_into().unwrap());
        assert_eq!(entry[8], 0xc3, "entry {number} returns");
        assert!(entry[9..].iter().all(|&byte| byte == 0xcc), "entry {number} padded with int3");
        (immediate, entry[5..8].try_into().unwrap())
    }

    #[test]
    fn vmmcall_entries_load_their_number() {
        let page = page(HypercallInstruction::Vmmcall);
        for number in [0usize, 1, 12, 17, 18, 24, 29, 32, 34, 127] {
            assert_eq!(decode(&page, number), (number as u32, [0x0f, 0x01, 0xd9]));
        }
    }

    #[test]
    fn vmcall_entries_load_their_number() {
        let page = page(HypercallInstruction::Vmcall);
        assert_eq!(decode(&page, hypercall::sched_op as usize), (29, [0x0f, 0x01, 0xc1]));
        assert_eq!(decode(&page, hypercall::xen_version as usize), (17, [0x0f, 0x01, 0xc1]));
    }

    #[test]
    fn iret_entry_is_ud2_and_every_byte_is_defined() {
        let page = page(HypercallInstruction::Vmmcall);
        let iret_entry = &page[23 * 32..24 * 32];
        assert_eq!(&iret_entry[..2], &[0x0f, 0x0b]);
        assert!(iret_entry[2..].iter().all(|&byte| byte == 0xcc));
        // 127 regular entries of 9 bytes plus one ud2; the rest is int3.
        let stub_bytes = page.iter().filter(|&&byte| byte != 0xcc).count();
        assert!(stub_bytes <= 127 * 9 + 2);
    }
}
