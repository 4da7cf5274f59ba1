//! VMCS field encodings Basalt uses (Intel SDM vol. 3, appendix B), control bits
//! (§25.6, §25.7, §25.8), exit reasons (appendix C), and VMREAD/VMWRITE with the
//! VM-instruction error reported instead of ignored (§31.4).

use core::arch::asm;

// 16-bit fields.
pub const VIRTUAL_PROCESSOR_ID: u64 = 0x0000;
pub const GUEST_ES_SELECTOR: u64 = 0x0800;
pub const GUEST_CS_SELECTOR: u64 = 0x0802;
pub const GUEST_SS_SELECTOR: u64 = 0x0804;
pub const GUEST_DS_SELECTOR: u64 = 0x0806;
pub const GUEST_FS_SELECTOR: u64 = 0x0808;
pub const GUEST_GS_SELECTOR: u64 = 0x080a;
pub const GUEST_LDTR_SELECTOR: u64 = 0x080c;
pub const GUEST_TR_SELECTOR: u64 = 0x080e;
pub const HOST_ES_SELECTOR: u64 = 0x0c00;
pub const HOST_CS_SELECTOR: u64 = 0x0c02;
pub const HOST_SS_SELECTOR: u64 = 0x0c04;
pub const HOST_DS_SELECTOR: u64 = 0x0c06;
pub const HOST_FS_SELECTOR: u64 = 0x0c08;
pub const HOST_GS_SELECTOR: u64 = 0x0c0a;
pub const HOST_TR_SELECTOR: u64 = 0x0c0c;
// 64-bit fields.
pub const IO_BITMAP_A: u64 = 0x2000;
pub const IO_BITMAP_B: u64 = 0x2002;
pub const MSR_BITMAP: u64 = 0x2004;
pub const TSC_OFFSET: u64 = 0x2010;
pub const EPT_POINTER: u64 = 0x201a;
pub const GUEST_PHYSICAL_ADDRESS: u64 = 0x2400;
pub const VMCS_LINK_POINTER: u64 = 0x2800;
pub const GUEST_IA32_DEBUGCTL: u64 = 0x2802;
pub const GUEST_IA32_PAT: u64 = 0x2804;
pub const GUEST_IA32_EFER: u64 = 0x2806;
pub const HOST_IA32_PAT: u64 = 0x2c00;
pub const HOST_IA32_EFER: u64 = 0x2c02;
// 32-bit fields.
pub const PIN_BASED_CONTROLS: u64 = 0x4000;
pub const PRIMARY_PROCESSOR_CONTROLS: u64 = 0x4002;
pub const EXCEPTION_BITMAP: u64 = 0x4004;
pub const CR3_TARGET_COUNT: u64 = 0x400a;
pub const EXIT_CONTROLS: u64 = 0x400c;
pub const EXIT_MSR_STORE_COUNT: u64 = 0x400e;
pub const EXIT_MSR_LOAD_COUNT: u64 = 0x4010;
pub const ENTRY_CONTROLS: u64 = 0x4012;
pub const ENTRY_MSR_LOAD_COUNT: u64 = 0x4014;
pub const ENTRY_INTERRUPTION_INFO: u64 = 0x4016;
pub const ENTRY_EXCEPTION_ERROR_CODE: u64 = 0x4018;
pub const ENTRY_INSTRUCTION_LENGTH: u64 = 0x401a;
pub const SECONDARY_PROCESSOR_CONTROLS: u64 = 0x401e;
pub const VM_INSTRUCTION_ERROR: u64 = 0x4400;
pub const EXIT_REASON: u64 = 0x4402;
pub const EXIT_INTERRUPTION_INFO: u64 = 0x4404;
pub const IDT_VECTORING_INFO: u64 = 0x4408;
pub const IDT_VECTORING_ERROR_CODE: u64 = 0x440a;
pub const EXIT_INSTRUCTION_LENGTH: u64 = 0x440c;
pub const GUEST_ES_LIMIT: u64 = 0x4800;
pub const GUEST_CS_LIMIT: u64 = 0x4802;
pub const GUEST_SS_LIMIT: u64 = 0x4804;
pub const GUEST_DS_LIMIT: u64 = 0x4806;
pub const GUEST_FS_LIMIT: u64 = 0x4808;
pub const GUEST_GS_LIMIT: u64 = 0x480a;
pub const GUEST_LDTR_LIMIT: u64 = 0x480c;
pub const GUEST_TR_LIMIT: u64 = 0x480e;
pub const GUEST_GDTR_LIMIT: u64 = 0x4810;
pub const GUEST_IDTR_LIMIT: u64 = 0x4812;
pub const GUEST_ES_ACCESS_RIGHTS: u64 = 0x4814;
pub const GUEST_CS_ACCESS_RIGHTS: u64 = 0x4816;
pub const GUEST_SS_ACCESS_RIGHTS: u64 = 0x4818;
pub const GUEST_DS_ACCESS_RIGHTS: u64 = 0x481a;
pub const GUEST_FS_ACCESS_RIGHTS: u64 = 0x481c;
pub const GUEST_GS_ACCESS_RIGHTS: u64 = 0x481e;
pub const GUEST_LDTR_ACCESS_RIGHTS: u64 = 0x4820;
pub const GUEST_TR_ACCESS_RIGHTS: u64 = 0x4822;
pub const GUEST_INTERRUPTIBILITY: u64 = 0x4824;
pub const GUEST_ACTIVITY_STATE: u64 = 0x4826;
pub const GUEST_SYSENTER_CS: u64 = 0x482a;
pub const GUEST_VMX_PREEMPTION_TIMER: u64 = 0x482e;
pub const HOST_SYSENTER_CS: u64 = 0x4c00;
// Natural-width fields.
pub const CR0_GUEST_HOST_MASK: u64 = 0x6000;
pub const CR4_GUEST_HOST_MASK: u64 = 0x6002;
pub const CR0_READ_SHADOW: u64 = 0x6004;
pub const CR4_READ_SHADOW: u64 = 0x6006;
pub const EXIT_QUALIFICATION: u64 = 0x6400;
pub const GUEST_CR0: u64 = 0x6800;
pub const GUEST_CR3: u64 = 0x6802;
pub const GUEST_CR4: u64 = 0x6804;
pub const GUEST_ES_BASE: u64 = 0x6806;
pub const GUEST_CS_BASE: u64 = 0x6808;
pub const GUEST_SS_BASE: u64 = 0x680a;
pub const GUEST_DS_BASE: u64 = 0x680c;
pub const GUEST_FS_BASE: u64 = 0x680e;
pub const GUEST_GS_BASE: u64 = 0x6810;
pub const GUEST_LDTR_BASE: u64 = 0x6812;
pub const GUEST_TR_BASE: u64 = 0x6814;
pub const GUEST_GDTR_BASE: u64 = 0x6816;
pub const GUEST_IDTR_BASE: u64 = 0x6818;
pub const GUEST_DR7: u64 = 0x681a;
pub const GUEST_RSP: u64 = 0x681c;
pub const GUEST_RIP: u64 = 0x681e;
pub const GUEST_RFLAGS: u64 = 0x6820;
pub const GUEST_PENDING_DEBUG_EXCEPTIONS: u64 = 0x6822;
pub const GUEST_SYSENTER_ESP: u64 = 0x6824;
pub const GUEST_SYSENTER_EIP: u64 = 0x6826;
pub const HOST_CR0: u64 = 0x6c00;
pub const HOST_CR3: u64 = 0x6c02;
pub const HOST_CR4: u64 = 0x6c04;
pub const HOST_FS_BASE: u64 = 0x6c06;
pub const HOST_GS_BASE: u64 = 0x6c08;
pub const HOST_TR_BASE: u64 = 0x6c0a;
pub const HOST_GDTR_BASE: u64 = 0x6c0c;
pub const HOST_IDTR_BASE: u64 = 0x6c0e;
pub const HOST_SYSENTER_ESP: u64 = 0x6c10;
pub const HOST_SYSENTER_EIP: u64 = 0x6c12;
pub const HOST_RSP: u64 = 0x6c14;
pub const HOST_RIP: u64 = 0x6c16;

/// Pin-based controls.
pub const PIN_EXTERNAL_INTERRUPT_EXITING: u32 = 1 << 0;
pub const PIN_NMI_EXITING: u32 = 1 << 3;
pub const PIN_ACTIVATE_PREEMPTION_TIMER: u32 = 1 << 6;
/// Primary processor-based controls.
pub const PROC_INTERRUPT_WINDOW_EXITING: u32 = 1 << 2;
pub const PROC_HLT_EXITING: u32 = 1 << 7;
pub const PROC_MWAIT_EXITING: u32 = 1 << 10;
pub const PROC_UNCONDITIONAL_IO_EXITING: u32 = 1 << 24;
pub const PROC_USE_MSR_BITMAPS: u32 = 1 << 28;
pub const PROC_MONITOR_EXITING: u32 = 1 << 29;
pub const PROC_ACTIVATE_SECONDARY: u32 = 1 << 31;
/// Secondary processor-based controls.
pub const SECONDARY_ENABLE_EPT: u32 = 1 << 1;
pub const SECONDARY_ENABLE_RDTSCP: u32 = 1 << 3;
pub const SECONDARY_ENABLE_VPID: u32 = 1 << 5;
pub const SECONDARY_WBINVD_EXITING: u32 = 1 << 6;
pub const SECONDARY_UNRESTRICTED_GUEST: u32 = 1 << 7;
/// VM-exit controls.
pub const EXIT_HOST_ADDRESS_SPACE_SIZE: u32 = 1 << 9;
pub const EXIT_SAVE_PAT: u32 = 1 << 18;
pub const EXIT_LOAD_PAT: u32 = 1 << 19;
pub const EXIT_SAVE_EFER: u32 = 1 << 20;
pub const EXIT_LOAD_EFER: u32 = 1 << 21;
/// VM-entry controls.
pub const ENTRY_IA32E_MODE_GUEST: u32 = 1 << 9;
pub const ENTRY_LOAD_PAT: u32 = 1 << 14;
pub const ENTRY_LOAD_EFER: u32 = 1 << 15;

/// Exit reasons (appendix C), basic reason in bits 15:0.
pub const EXIT_EXCEPTION_OR_NMI: u32 = 0;
pub const EXIT_EXTERNAL_INTERRUPT: u32 = 1;
pub const EXIT_TRIPLE_FAULT: u32 = 2;
pub const EXIT_INIT: u32 = 3;
pub const EXIT_SIPI: u32 = 4;
pub const EXIT_INTERRUPT_WINDOW: u32 = 7;
pub const EXIT_CPUID: u32 = 10;
pub const EXIT_GETSEC: u32 = 11;
pub const EXIT_HLT: u32 = 12;
pub const EXIT_INVD: u32 = 13;
pub const EXIT_VMCALL: u32 = 18;
pub const EXIT_VMCLEAR: u32 = 19;
pub const EXIT_VMXON: u32 = 27;
pub const EXIT_CR_ACCESS: u32 = 28;
pub const EXIT_IO_INSTRUCTION: u32 = 30;
pub const EXIT_RDMSR: u32 = 31;
pub const EXIT_WRMSR: u32 = 32;
pub const EXIT_ENTRY_FAIL_GUEST_STATE: u32 = 33;
pub const EXIT_ENTRY_FAIL_MSR_LOADING: u32 = 34;
pub const EXIT_MWAIT: u32 = 36;
pub const EXIT_MONITOR: u32 = 39;
pub const EXIT_PAUSE: u32 = 40;
pub const EXIT_ENTRY_FAIL_MACHINE_CHECK: u32 = 41;
pub const EXIT_EPT_VIOLATION: u32 = 48;
pub const EXIT_EPT_MISCONFIGURATION: u32 = 49;
pub const EXIT_INVEPT: u32 = 50;
pub const EXIT_INVVPID: u32 = 53;
pub const EXIT_WBINVD: u32 = 54;
pub const EXIT_XSETBV: u32 = 55;
pub const EXIT_VMFUNC: u32 = 59;
pub const EXIT_PREEMPTION_TIMER: u32 = 52;

/// A VMX instruction failed: VMfailInvalid (no current VMCS) or VMfailValid with the
/// VM-instruction error number (SDM vol. 3 §31.4, table 31-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmInstructionError {
    Invalid,
    Valid(u32),
}

impl core::fmt::Display for VmInstructionError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VmInstructionError::Invalid => formatter.write_str("VMfailInvalid (no current VMCS)"),
            VmInstructionError::Valid(number) => write!(formatter, "VM-instruction error {number}"),
        }
    }
}

/// The error of a failed VMX instruction, from RFLAGS.CF/ZF.
fn instruction_result(carry: u8, zero: u8) -> Result<(), VmInstructionError> {
    if carry != 0 {
        Err(VmInstructionError::Invalid)
    } else if zero != 0 {
        Err(VmInstructionError::Valid(vmread(VM_INSTRUCTION_ERROR).unwrap_or(0) as u32))
    } else {
        Ok(())
    }
}

/// VMREAD of the current VMCS.
pub fn vmread(field: u64) -> Result<u64, VmInstructionError> {
    let value: u64;
    let (carry, zero): (u8, u8);
    // SAFETY: VMREAD only reads the current VMCS; failure is reported through the flags.
    unsafe {
        asm!("vmread {value}, {field}", "setc {carry}", "setz {zero}", field = in(reg) field,
             value = out(reg) value, carry = out(reg_byte) carry, zero = out(reg_byte) zero, options(nostack));
    }
    if carry != 0 {
        return Err(VmInstructionError::Invalid);
    }
    if zero != 0 {
        return Err(VmInstructionError::Valid(0));
    }
    Ok(value)
}

/// VMWRITE to the current VMCS.
pub fn vmwrite(field: u64, value: u64) -> Result<(), VmInstructionError> {
    let (carry, zero): (u8, u8);
    // SAFETY: VMWRITE only changes the current VMCS, which belongs to the vCPU being
    // set up on this CPU; failure is reported through the flags.
    unsafe {
        asm!("vmwrite {field}, {value}", "setc {carry}", "setz {zero}", field = in(reg) field,
             value = in(reg) value, carry = out(reg_byte) carry, zero = out(reg_byte) zero, options(nostack));
    }
    instruction_result(carry, zero)
}

/// VMPTRLD: makes the VMCS at `physical` current on this CPU.
pub fn vmptrld(physical: u64) -> Result<(), VmInstructionError> {
    let (carry, zero): (u8, u8);
    // SAFETY: `physical` is a VMCS region with the right revision id, owned by a vCPU
    // that is not current on any other CPU (it is VMCLEARed after every time slice).
    unsafe {
        asm!("vmptrld [{pointer}]", "setc {carry}", "setz {zero}", pointer = in(reg) &physical,
             carry = out(reg_byte) carry, zero = out(reg_byte) zero, options(nostack));
    }
    instruction_result(carry, zero)
}

/// VMCLEAR: writes the VMCS at `physical` back to memory and makes it inactive.
pub fn vmclear(physical: u64) -> Result<(), VmInstructionError> {
    let (carry, zero): (u8, u8);
    // SAFETY: `physical` is a VMCS region owned by the caller.
    unsafe {
        asm!("vmclear [{pointer}]", "setc {carry}", "setz {zero}", pointer = in(reg) &physical,
             carry = out(reg_byte) carry, zero = out(reg_byte) zero, options(nostack));
    }
    instruction_result(carry, zero)
}

/// INVEPT single-context (type 1) for `eptp`, or all contexts (type 2).
pub fn invept(single_context: Option<u64>) -> Result<(), VmInstructionError> {
    let descriptor: [u64; 2] = [single_context.unwrap_or(0), 0];
    let kind: u64 = if single_context.is_some() { 1 } else { 2 };
    let (carry, zero): (u8, u8);
    // SAFETY: INVEPT only drops cached EPT translations.
    unsafe {
        asm!("invept {kind}, [{descriptor}]", "setc {carry}", "setz {zero}", kind = in(reg) kind,
             descriptor = in(reg) descriptor.as_ptr(), carry = out(reg_byte) carry, zero = out(reg_byte) zero,
             options(nostack));
    }
    instruction_result(carry, zero)
}

/// INVVPID single-context (type 1) for `vpid`.
pub fn invvpid(vpid: u16) -> Result<(), VmInstructionError> {
    let descriptor: [u64; 2] = [u64::from(vpid), 0];
    let kind: u64 = 1;
    let (carry, zero): (u8, u8);
    // SAFETY: INVVPID only drops cached linear translations tagged with `vpid`.
    unsafe {
        asm!("invvpid {kind}, [{descriptor}]", "setc {carry}", "setz {zero}", kind = in(reg) kind,
             descriptor = in(reg) descriptor.as_ptr(), carry = out(reg_byte) carry, zero = out(reg_byte) zero,
             options(nostack));
    }
    instruction_result(carry, zero)
}
