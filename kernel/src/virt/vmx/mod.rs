//! Intel VMX with EPT: the [`VirtualCpu`] backend for Intel processors.
//!
//! What it owns: VMX operation per CPU (IA32_FEATURE_CONTROL, the CR0/CR4 fixed bits,
//! a VMXON region — SDM vol. 3 §24.7, §24.8), one VMCS per vCPU (§25), every control
//! derived from the IA32_VMX_* capability MSRs (true controls where offered, §A.2–A.5)
//! instead of constants, EPT pointers (§29.3), VPIDs (§29.1), unrestricted guest (PVH
//! starts in 32-bit protected mode with paging off), the VMLAUNCH/VMRESUME world switch
//! and turning exit reasons into [`Exit`] (appendix C). VMX instruction failures are
//! reported with the VM-instruction error number.
//!
//! VMCS discipline: a vCPU's VMCS is made current (VMPTRLD) when its time slice starts
//! and VMCLEARed when it ends ([`VirtualCpu::end_slice`]), so the next slice may run on
//! any CPU; each slice starts with VMLAUNCH, later entries of the slice with VMRESUME.
//! TLB discipline: VPIDs are unique per vCPU; when a vCPU runs on a different CPU than
//! last time its VPID-tagged and EPT-tagged translations there may be stale, so that
//! entry first does INVVPID and INVEPT (single context).
//!
//! What VMX does not switch and this backend does per slice: KERNEL_GS_BASE, STAR,
//! LSTAR, CSTAR and SFMASK (guest reads and writes go straight to the MSRs; the host
//! uses none of them). CR0.NE and CR4.VMXE must stay set in VMX operation: they are
//! owned by the host through the CR0/CR4 masks, the guest reads its own values from the
//! read shadows, and a guest write to them (MOV to CR0/CR4) is emulated here.

mod operation;
pub mod vmcs;

use super::{
    check_guest_efer, Exit, ExitReason, GuestGprs, GuestState, Injection, ReservedBitsSet, StartState, VirtError,
    VirtualCpu,
};
use crate::arch::instructions::{cpuid, disable_interrupts, enable_interrupts, interrupts_enabled, rdmsr, wrmsr};
use crate::cpu::percpu::{self, MAX_CPUS};
use crate::mm::{phys_to_virt, with_frames};
use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use vmcs::*;

const IA32_FEATURE_CONTROL: u32 = 0x3a;
const FEATURE_CONTROL_LOCKED: u64 = 1 << 0;
const FEATURE_CONTROL_VMXON_OUTSIDE_SMX: u64 = 1 << 2;
const IA32_VMX_BASIC: u32 = 0x480;
const IA32_VMX_PINBASED_CTLS: u32 = 0x481;
const IA32_VMX_PROCBASED_CTLS: u32 = 0x482;
const IA32_VMX_EXIT_CTLS: u32 = 0x483;
const IA32_VMX_ENTRY_CTLS: u32 = 0x484;
const IA32_VMX_MISC: u32 = 0x485;
const IA32_VMX_CR0_FIXED0: u32 = 0x486;
const IA32_VMX_CR0_FIXED1: u32 = 0x487;
const IA32_VMX_CR4_FIXED0: u32 = 0x488;
const IA32_VMX_CR4_FIXED1: u32 = 0x489;
const IA32_VMX_PROCBASED_CTLS2: u32 = 0x48b;
const IA32_VMX_EPT_VPID_CAP: u32 = 0x48c;
const IA32_VMX_TRUE_PINBASED_CTLS: u32 = 0x48d;
const IA32_VMX_TRUE_PROCBASED_CTLS: u32 = 0x48e;
const IA32_VMX_TRUE_EXIT_CTLS: u32 = 0x48f;
const IA32_VMX_TRUE_ENTRY_CTLS: u32 = 0x490;
const IA32_EFER: u32 = 0xc000_0080;
const IA32_PAT: u32 = 0x277;
const IA32_FS_BASE: u32 = 0xc000_0100;
const IA32_GS_BASE: u32 = 0xc000_0101;
const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;
const IA32_STAR: u32 = 0xc000_0081;
const IA32_LSTAR: u32 = 0xc000_0082;
const IA32_CSTAR: u32 = 0xc000_0083;
const IA32_FMASK: u32 = 0xc000_0084;
const CR0_PE: u64 = 1;
const CR0_PG: u64 = 1 << 31;
const CR4_VMXE: u64 = 1 << 13;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const PAGE: u64 = 4096;
/// The syscall MSRs VMX leaves alone, switched per time slice.
const SYSCALL_MSRS: [u32; 5] = [IA32_KERNEL_GS_BASE, IA32_STAR, IA32_LSTAR, IA32_CSTAR, IA32_FMASK];
/// MSRs guests use directly: VMCS guest fields (FS/GS base, SYSENTER_*) or switched
/// per slice (the syscall MSRs).
const PASSTHROUGH_MSRS: [u32; 10] = [
    IA32_FS_BASE,
    IA32_GS_BASE,
    IA32_KERNEL_GS_BASE,
    IA32_STAR,
    IA32_LSTAR,
    IA32_CSTAR,
    IA32_FMASK,
    0x174,
    0x175,
    0x176,
];

use operation::{allocate_zeroed_frame, controls, MSR_BITMAP_PHYSICAL, NEXT_VPID};
pub use operation::{enable_this_cpu, is_enabled_on, is_supported};

core::arch::global_asm!(
    ".global basalt_vmx_run",
    "basalt_vmx_run:",
    // rdi = &mut GuestGprs, rsi = 1 if the VMCS was launched on this CPU (VMRESUME).
    // Returns 0 after a VM exit, 1 for VMfailInvalid, 2 for VMfailValid.
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rdi",
    "mov rax, 0x6c14", // HOST_RSP
    "vmwrite rax, rsp",
    "lea rbx, [rip + 2f]",
    "mov rax, 0x6c16", // HOST_RIP
    "vmwrite rax, rbx",
    "test rsi, rsi",
    "mov rax, rdi",
    load_guest_gprs_from_rax!(),
    "mov rax, [rax]",
    "jnz 1f",
    "vmlaunch",
    "jmp 3f",
    "1:",
    "vmresume",
    "3:",
    // Entry failed; the flags say how. Neither LEA nor POP changes them.
    "lea rsp, [rsp + 8]",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "mov eax, 2",
    "jnc 4f",
    "mov eax, 1",
    "4:",
    "ret",
    "2:",
    // VM exit: RSP is HOST_RSP, whose top holds the GuestGprs pointer.
    "xchg rax, [rsp]",
    store_guest_gprs_to_rax!(),
    "pop qword ptr [rax]",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "xor eax, eax",
    "ret",
);

unsafe extern "C" {
    fn basalt_vmx_run(gprs: *mut GuestGprs, launched: u64) -> u64;
}

/// The host state a VM exit returns to, read from the running CPU.
fn write_host_state() -> Result<(), VmInstructionError> {
    let (cs, ss, ds, es, fs, gs, tr): (u16, u16, u16, u16, u16, u16, u16);
    // SAFETY: reading segment selectors and the task register has no side effects.
    unsafe {
        asm!("mov {0:x}, cs", "mov {1:x}, ss", "mov {2:x}, ds", "mov {3:x}, es", out(reg) cs, out(reg) ss,
             out(reg) ds, out(reg) es, options(nomem, nostack, preserves_flags));
        asm!("mov {0:x}, fs", "mov {1:x}, gs", "str {2:x}", out(reg) fs, out(reg) gs, out(reg) tr,
             options(nomem, nostack, preserves_flags));
    }
    let gdt = x86_64::instructions::tables::sgdt();
    let idt = x86_64::instructions::tables::sidt();
    // The TSS descriptor is 16 bytes in long mode: base 15:0 at byte 2, 23:16 at 4,
    // 31:24 at 7, 63:32 at 8.
    let descriptor = gdt.base.as_u64() + u64::from(tr & !7);
    // SAFETY: TR selects a descriptor of the live GDT, which the CPU itself uses.
    let (low, high) = unsafe { ((descriptor as *const u64).read(), ((descriptor + 8) as *const u64).read()) };
    let tr_base = ((low >> 16) & 0xff_ffff) | (((low >> 56) & 0xff) << 24) | ((high & 0xffff_ffff) << 32);
    let selector = |value: u16| u64::from(value & !7);
    vmwrite(HOST_CR0, crate::arch::instructions::read_cr0())?;
    vmwrite(HOST_CR3, crate::arch::instructions::read_cr3())?;
    vmwrite(HOST_CR4, crate::arch::instructions::read_cr4())?;
    vmwrite(HOST_CS_SELECTOR, selector(cs))?;
    vmwrite(HOST_SS_SELECTOR, selector(ss))?;
    vmwrite(HOST_DS_SELECTOR, selector(ds))?;
    vmwrite(HOST_ES_SELECTOR, selector(es))?;
    vmwrite(HOST_FS_SELECTOR, selector(fs))?;
    vmwrite(HOST_GS_SELECTOR, selector(gs))?;
    vmwrite(HOST_TR_SELECTOR, selector(tr))?;
    vmwrite(HOST_FS_BASE, rdmsr(IA32_FS_BASE))?;
    vmwrite(HOST_GS_BASE, rdmsr(IA32_GS_BASE))?;
    vmwrite(HOST_TR_BASE, tr_base)?;
    vmwrite(HOST_GDTR_BASE, gdt.base.as_u64())?;
    vmwrite(HOST_IDTR_BASE, idt.base.as_u64())?;
    vmwrite(HOST_SYSENTER_CS, 0)?;
    vmwrite(HOST_SYSENTER_ESP, 0)?;
    vmwrite(HOST_SYSENTER_EIP, 0)?;
    vmwrite(HOST_IA32_EFER, rdmsr(IA32_EFER))?;
    vmwrite(HOST_IA32_PAT, rdmsr(IA32_PAT))
}

/// One vCPU's VMCS and the state VMX does not switch.
pub struct VmxVcpu {
    vmcs_physical: u64,
    eptp: u64,
    vpid: u16,
    /// The CPU the VMCS is current on during this slice.
    current_on: Option<u32>,
    launched: bool,
    last_cpu: Option<u32>,
    syscall_msrs: [u64; 5],
    syscall_msrs_loaded: bool,
    /// The guest's view of CR0/CR4 (the read shadows).
    cr0_shadow: u64,
    cr4_shadow: u64,
    pending_injection: Option<(u32, u32)>,
    last_exit: (u64, u64, u64),
    initialised: bool,
}

impl VmxVcpu {
    /// A vCPU whose guest-physical space is the EPT at `ept_root`.
    pub fn new(ept_root: u64) -> Result<VmxVcpu, VirtError> {
        let controls = controls();
        let vmcs = allocate_zeroed_frame()?;
        // SAFETY: the frame was just allocated for this VMCS; its first dword is the
        // revision identifier VMPTRLD checks.
        unsafe { (phys_to_virt(vmcs) as *mut u32).write_volatile(controls.revision) };
        if let Err(error) = vmclear(vmcs) {
            let _ = with_frames(|frames| frames.free(vmcs));
            return Err(VirtError::Unsupported(vmx_error_text(error)));
        }
        let vpid = if controls.vpid {
            match NEXT_VPID.fetch_add(1, Ordering::Relaxed) {
                0 => NEXT_VPID.fetch_add(1, Ordering::Relaxed),
                vpid => vpid,
            }
        } else {
            0
        };
        Ok(VmxVcpu {
            vmcs_physical: vmcs,
            // Write-back paging structures, 4-level walk (SDM vol. 3 §25.6.11).
            eptp: ept_root | (3 << 3) | 6,
            vpid,
            current_on: None,
            launched: false,
            last_cpu: None,
            syscall_msrs: [0; 5],
            syscall_msrs_loaded: false,
            cr0_shadow: 0,
            cr4_shadow: 0,
            pending_injection: None,
            last_exit: (0, 0, 0),
            initialised: false,
        })
    }

    /// Makes the VMCS current on this CPU (once per slice) and refreshes the host state
    /// and stale translations.
    fn make_current(&mut self) -> Result<(), VmInstructionError> {
        let cpu = percpu::current_index();
        if self.current_on == Some(cpu) {
            return Ok(());
        }
        vmptrld(self.vmcs_physical)?;
        self.current_on = Some(cpu);
        self.launched = false;
        write_host_state()?;
        if self.last_cpu != Some(cpu) {
            let controls = controls();
            if controls.invept_single {
                invept(Some(self.eptp))?;
            } else {
                invept(None)?;
            }
            if controls.vpid && controls.invvpid_single {
                invvpid(self.vpid)?;
            }
            self.last_cpu = Some(cpu);
        }
        Ok(())
    }

    fn guest_cr0(&self, shadow: u64) -> u64 {
        let controls = controls();
        // Unrestricted guest: PE and PG are the guest's; the other fixed bits are forced.
        let forced_one = controls.cr0_fixed0 & !(CR0_PE | CR0_PG);
        (shadow | forced_one) & (controls.cr0_fixed1 | CR0_PE | CR0_PG)
    }

    fn guest_cr4(&self, shadow: u64) -> u64 {
        let controls = controls();
        (shadow | controls.cr4_fixed0 | CR4_VMXE) & controls.cr4_fixed1
    }

    fn write_controls(&mut self) -> Result<(), VmInstructionError> {
        let controls = controls();
        vmwrite(PIN_BASED_CONTROLS, u64::from(controls.pin))?;
        vmwrite(PRIMARY_PROCESSOR_CONTROLS, u64::from(controls.primary))?;
        vmwrite(SECONDARY_PROCESSOR_CONTROLS, u64::from(controls.secondary))?;
        vmwrite(EXIT_CONTROLS, u64::from(controls.exit))?;
        vmwrite(ENTRY_CONTROLS, u64::from(controls.entry))?;
        // #UD only: the other vendor's hypercall instruction (exit handling).
        vmwrite(EXCEPTION_BITMAP, 1 << super::VECTOR_UD)?;
        vmwrite(CR3_TARGET_COUNT, 0)?;
        vmwrite(EXIT_MSR_STORE_COUNT, 0)?;
        vmwrite(EXIT_MSR_LOAD_COUNT, 0)?;
        vmwrite(ENTRY_MSR_LOAD_COUNT, 0)?;
        vmwrite(ENTRY_INTERRUPTION_INFO, 0)?;
        vmwrite(MSR_BITMAP, MSR_BITMAP_PHYSICAL.load(Ordering::Acquire))?;
        vmwrite(TSC_OFFSET, 0)?;
        vmwrite(EPT_POINTER, self.eptp)?;
        if controls.vpid {
            vmwrite(VIRTUAL_PROCESSOR_ID, u64::from(self.vpid))?;
        }
        // The host owns the bits VMX forces (CR0.NE, CR4.VMXE) and the reserved ones.
        let cr0_mask = (controls.cr0_fixed0 & !(CR0_PE | CR0_PG)) | (!controls.cr0_fixed1 & 0xffff_ffff);
        let cr4_mask = controls.cr4_fixed0 | CR4_VMXE | (!controls.cr4_fixed1 & 0xffff_ffff);
        vmwrite(CR0_GUEST_HOST_MASK, cr0_mask)?;
        vmwrite(CR4_GUEST_HOST_MASK, cr4_mask)?;
        vmwrite(VMCS_LINK_POINTER, u64::MAX)?;
        vmwrite(GUEST_IA32_DEBUGCTL, 0)?;
        // Power-on PAT (SDM vol. 3 §13.12.4).
        vmwrite(GUEST_IA32_PAT, 0x0007_0406_0007_0406)?;
        vmwrite(GUEST_DR7, 0x400)?;
        vmwrite(GUEST_INTERRUPTIBILITY, 0)?;
        vmwrite(GUEST_ACTIVITY_STATE, 0)?;
        vmwrite(GUEST_PENDING_DEBUG_EXCEPTIONS, 0)?;
        vmwrite(GUEST_SYSENTER_CS, 0)?;
        vmwrite(GUEST_SYSENTER_ESP, 0)?;
        vmwrite(GUEST_SYSENTER_EIP, 0)
    }

    #[allow(clippy::too_many_arguments)]
    fn write_segment(
        selector_field: u64,
        selector: u16,
        base: u64,
        limit: u32,
        access_rights: u32,
    ) -> Result<(), VmInstructionError> {
        // Fields of one segment are at fixed distances from the selector's encoding.
        let index = selector_field - GUEST_ES_SELECTOR;
        vmwrite(selector_field, u64::from(selector))?;
        vmwrite(GUEST_ES_BASE + index, base)?;
        vmwrite(GUEST_ES_LIMIT + index, u64::from(limit))?;
        vmwrite(GUEST_ES_ACCESS_RIGHTS + index, u64::from(access_rights))
    }

    fn load_start_state(&mut self, state: &StartState) -> Result<(), VmInstructionError> {
        self.write_controls()?;
        const UNUSABLE: u32 = 1 << 16;
        let controls = controls();
        match state {
            StartState::Protected32(regs) => {
                let data = u32::from(regs.ds_ar);
                Self::write_segment(
                    GUEST_CS_SELECTOR,
                    0x08,
                    u64::from(regs.cs_base),
                    regs.cs_limit,
                    u32::from(regs.cs_ar),
                )?;
                Self::write_segment(GUEST_DS_SELECTOR, 0x10, u64::from(regs.ds_base), regs.ds_limit, data)?;
                Self::write_segment(
                    GUEST_ES_SELECTOR,
                    0x10,
                    u64::from(regs.es_base),
                    regs.es_limit,
                    u32::from(regs.es_ar),
                )?;
                Self::write_segment(
                    GUEST_SS_SELECTOR,
                    0x10,
                    u64::from(regs.ss_base),
                    regs.ss_limit,
                    u32::from(regs.ss_ar),
                )?;
                Self::write_segment(GUEST_FS_SELECTOR, 0x10, 0, regs.ds_limit, data)?;
                Self::write_segment(GUEST_GS_SELECTOR, 0x10, 0, regs.ds_limit, data)?;
                let tr_access = u32::from(regs.tr_ar | 0x8b);
                Self::write_segment(
                    GUEST_TR_SELECTOR,
                    0x18,
                    u64::from(regs.tr_base),
                    regs.tr_limit.max(0x67),
                    tr_access,
                )?;
                self.cr0_shadow = u64::from(regs.cr0) | 0x10;
                self.cr4_shadow = u64::from(regs.cr4);
                vmwrite(GUEST_CR3, u64::from(regs.cr3))?;
                vmwrite(GUEST_IA32_EFER, regs.efer)?;
                vmwrite(GUEST_RFLAGS, u64::from(regs.eflags) | 0x2)?;
                vmwrite(GUEST_RIP, u64::from(regs.eip))?;
                vmwrite(GUEST_RSP, u64::from(regs.esp))?;
                vmwrite(ENTRY_CONTROLS, u64::from(controls.entry & !ENTRY_IA32E_MODE_GUEST))?;
            }
            StartState::Long64(regs) => {
                Self::write_segment(GUEST_CS_SELECTOR, 0x08, 0, 0xffff_ffff, 0xa09b)?;
                for field in
                    [GUEST_DS_SELECTOR, GUEST_ES_SELECTOR, GUEST_SS_SELECTOR, GUEST_FS_SELECTOR, GUEST_GS_SELECTOR]
                {
                    Self::write_segment(field, 0x10, 0, 0xffff_ffff, 0xc093)?;
                }
                Self::write_segment(GUEST_TR_SELECTOR, 0x18, 0, 0x67, 0x8b)?;
                self.cr0_shadow = regs.cr0 | 0x10;
                self.cr4_shadow = regs.cr4;
                vmwrite(GUEST_CR3, regs.cr3)?;
                vmwrite(GUEST_IA32_EFER, regs.efer | EFER_LMA)?;
                vmwrite(GUEST_RFLAGS, regs.rflags | 0x2)?;
                vmwrite(GUEST_RIP, regs.rip)?;
                vmwrite(GUEST_RSP, regs.rsp)?;
                vmwrite(ENTRY_CONTROLS, u64::from(controls.entry | ENTRY_IA32E_MODE_GUEST))?;
            }
            StartState::StartupIpi { vector } => {
                let (selector, base) = super::startup_ipi_code_segment(*vector);
                Self::write_segment(GUEST_CS_SELECTOR, selector, base, 0xffff, 0x9b)?;
                for field in
                    [GUEST_DS_SELECTOR, GUEST_ES_SELECTOR, GUEST_SS_SELECTOR, GUEST_FS_SELECTOR, GUEST_GS_SELECTOR]
                {
                    Self::write_segment(field, 0, 0, 0xffff, 0x93)?;
                }
                Self::write_segment(GUEST_TR_SELECTOR, 0, 0, 0xffff, 0x8b)?;
                self.cr0_shadow = 0x10;
                self.cr4_shadow = 0;
                vmwrite(GUEST_CR3, 0)?;
                vmwrite(GUEST_IA32_EFER, 0)?;
                vmwrite(GUEST_RFLAGS, 0x2)?;
                vmwrite(GUEST_RIP, 0)?;
                vmwrite(GUEST_RSP, 0)?;
                vmwrite(ENTRY_CONTROLS, u64::from(controls.entry & !ENTRY_IA32E_MODE_GUEST))?;
            }
        }
        Self::write_segment(GUEST_LDTR_SELECTOR, 0, 0, 0, UNUSABLE)?;
        vmwrite(GUEST_GDTR_BASE, 0)?;
        vmwrite(GUEST_GDTR_LIMIT, 0xffff)?;
        vmwrite(GUEST_IDTR_BASE, 0)?;
        vmwrite(GUEST_IDTR_LIMIT, 0xffff)?;
        vmwrite(CR0_READ_SHADOW, self.cr0_shadow)?;
        vmwrite(CR4_READ_SHADOW, self.cr4_shadow)?;
        vmwrite(GUEST_CR0, self.guest_cr0(self.cr0_shadow))?;
        vmwrite(GUEST_CR4, self.guest_cr4(self.cr4_shadow))?;
        vmwrite(GUEST_FS_BASE, 0)?;
        vmwrite(GUEST_GS_BASE, 0)?;
        self.syscall_msrs = [0; 5];
        self.pending_injection = None;
        self.initialised = true;
        Ok(())
    }

    /// MOV to CR0 or CR4 touching a host-owned bit: the guest's value goes to the read
    /// shadow, the hardware value keeps the forced bits; enabling or disabling paging
    /// with EFER.LME switches IA-32e mode as the CPU would (SDM vol. 3 §10.8.5).
    fn emulate_cr_write(&mut self, qualification: u64, gprs: &GuestGprs) -> Result<bool, VmInstructionError> {
        let register = (qualification >> 8) & 0xf;
        let value = match register {
            4 => vmread(GUEST_RSP)?,
            index => gpr(gprs, index as usize),
        };
        match qualification & 0xf {
            0 => {
                let was_paging = self.cr0_shadow & CR0_PG != 0;
                self.cr0_shadow = value;
                vmwrite(CR0_READ_SHADOW, value)?;
                vmwrite(GUEST_CR0, self.guest_cr0(value))?;
                let paging = value & CR0_PG != 0;
                let efer = vmread(GUEST_IA32_EFER)?;
                if paging != was_paging && efer & EFER_LME != 0 {
                    let entry = vmread(ENTRY_CONTROLS)?;
                    if paging {
                        vmwrite(GUEST_IA32_EFER, efer | EFER_LMA)?;
                        vmwrite(ENTRY_CONTROLS, entry | u64::from(ENTRY_IA32E_MODE_GUEST))?;
                    } else {
                        vmwrite(GUEST_IA32_EFER, efer & !EFER_LMA)?;
                        vmwrite(ENTRY_CONTROLS, entry & !u64::from(ENTRY_IA32E_MODE_GUEST))?;
                    }
                }
                Ok(true)
            }
            4 => {
                let allowed = controls().cr4_fixed1 & !CR4_VMXE;
                if value & !allowed != 0 {
                    return Ok(false);
                }
                self.cr4_shadow = value;
                vmwrite(CR4_READ_SHADOW, value)?;
                vmwrite(GUEST_CR4, self.guest_cr4(value))?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn decode_exit(&mut self, gprs: &GuestGprs) -> Result<Option<Exit>, VmInstructionError> {
        let reason = vmread(EXIT_REASON)? as u32;
        let qualification = vmread(EXIT_QUALIFICATION)?;
        let length = vmread(EXIT_INSTRUCTION_LENGTH)? as u8;
        let gpa = vmread(GUEST_PHYSICAL_ADDRESS)?;
        self.last_exit = (u64::from(reason), qualification, gpa);
        let vectoring = vmread(IDT_VECTORING_INFO)? as u32;
        if vectoring & (1 << 31) != 0 {
            // An event was being delivered: deliver it again at the next entry.
            let error_code = vmread(IDT_VECTORING_ERROR_CODE)? as u32;
            self.pending_injection = Some((vectoring & !(1 << 12), error_code));
        }
        let basic = reason & 0xffff;
        let instruction = Some(length).filter(|length| (1..=15).contains(length));
        let (exit_reason, instruction_length) = if reason & (1 << 31) != 0 {
            (ExitReason::EntryFailed, None)
        } else {
            match basic {
                EXIT_EXCEPTION_OR_NMI => {
                    let info = vmread(EXIT_INTERRUPTION_INFO)? as u32;
                    if (info >> 8) & 0x7 == 2 {
                        (ExitReason::ExternalInterrupt, None)
                    } else {
                        let error_code =
                            (info & (1 << 11) != 0).then(|| vmread(0x4406).map(|code| code as u32)).transpose()?;
                        (ExitReason::Exception { vector: info as u8, error_code }, None)
                    }
                }
                EXIT_EXTERNAL_INTERRUPT | EXIT_INIT | EXIT_SIPI | EXIT_PREEMPTION_TIMER => {
                    (ExitReason::ExternalInterrupt, None)
                }
                EXIT_TRIPLE_FAULT => (ExitReason::TripleFault, None),
                EXIT_INTERRUPT_WINDOW => {
                    self.request_interrupt_window(false);
                    (ExitReason::InterruptWindow, None)
                }
                EXIT_CPUID => (ExitReason::Cpuid, instruction),
                EXIT_HLT => (ExitReason::Hlt, instruction),
                EXIT_VMCALL => (ExitReason::Hypercall, instruction),
                EXIT_RDMSR => (ExitReason::Rdmsr, instruction),
                EXIT_WRMSR => (ExitReason::Wrmsr, instruction),
                EXIT_IO_INSTRUCTION => (
                    ExitReason::Io {
                        port: (qualification >> 16) as u16,
                        size: ((qualification & 0x7) + 1) as u8,
                        write: qualification & (1 << 3) == 0,
                        string: qualification & (1 << 4) != 0,
                        rep: qualification & (1 << 5) != 0,
                    },
                    instruction,
                ),
                EXIT_EPT_VIOLATION => (
                    ExitReason::NestedPageFault {
                        gpa,
                        write: qualification & (1 << 1) != 0,
                        fetch: qualification & (1 << 2) != 0,
                    },
                    None,
                ),
                EXIT_CR_ACCESS if (qualification >> 4) & 0x3 == 0 => {
                    if self.emulate_cr_write(qualification, gprs)? {
                        let rip = vmread(GUEST_RIP)?;
                        vmwrite(GUEST_RIP, rip.wrapping_add(u64::from(length)))?;
                        return Ok(None);
                    }
                    self.inject(Injection::Exception { vector: super::VECTOR_GP, error_code: Some(0) });
                    return Ok(None);
                }
                EXIT_INVD | EXIT_WBINVD => (ExitReason::CacheFlush, instruction),
                EXIT_PAUSE => (ExitReason::Pause, instruction),
                EXIT_GETSEC
                | EXIT_VMCLEAR..=EXIT_VMXON
                | EXIT_MWAIT
                | EXIT_MONITOR
                | EXIT_INVEPT
                | EXIT_INVVPID
                | EXIT_XSETBV
                | EXIT_VMFUNC => (ExitReason::UndefinedInstruction, None),
                _ => (ExitReason::Unhandled, None),
            }
        };
        Ok(Some(Exit { reason: exit_reason, vendor_code: u64::from(reason), instruction_length }))
    }

    fn fail(&mut self, error: VmInstructionError) -> Exit {
        let number = match error {
            VmInstructionError::Invalid => u64::MAX,
            VmInstructionError::Valid(number) => u64::from(number),
        };
        self.last_exit = (u64::MAX, number, 0);
        Exit { reason: ExitReason::EntryFailed, vendor_code: number, instruction_length: None }
    }

    fn load_syscall_msrs(&mut self) {
        if !self.syscall_msrs_loaded {
            for (msr, value) in SYSCALL_MSRS.iter().zip(self.syscall_msrs) {
                wrmsr(*msr, value);
            }
            self.syscall_msrs_loaded = true;
        }
    }
}

fn gpr(gprs: &GuestGprs, index: usize) -> u64 {
    let registers = [
        gprs.rax, gprs.rcx, gprs.rdx, gprs.rbx, 0, gprs.rbp, gprs.rsi, gprs.rdi, gprs.r8, gprs.r9, gprs.r10, gprs.r11,
        gprs.r12, gprs.r13, gprs.r14, gprs.r15,
    ];
    registers.get(index).copied().unwrap_or(0)
}

fn vmx_error_text(error: VmInstructionError) -> &'static str {
    match error {
        VmInstructionError::Invalid => "VMX instruction failed (VMfailInvalid)",
        VmInstructionError::Valid(_) => "VMX instruction failed (VMfailValid)",
    }
}

impl Drop for VmxVcpu {
    fn drop(&mut self) {
        let physical = self.vmcs_physical;
        // The VMCS is VMCLEARed at the end of every slice, so it is current nowhere.
        let _ = with_frames(|frames| frames.free(physical));
    }
}

impl VirtualCpu for VmxVcpu {
    fn set_start_state(&mut self, state: &StartState) -> Result<(), VirtError> {
        state.validate()?;
        self.make_current()
            .and_then(|()| self.load_start_state(state))
            .map_err(|error| VirtError::InvalidState(vmx_error_text(error)))
    }

    fn run(&mut self, gprs: &mut GuestGprs) -> Exit {
        if !self.initialised {
            return self.fail(VmInstructionError::Invalid);
        }
        loop {
            if let Err(error) = self.make_current() {
                return self.fail(error);
            }
            self.load_syscall_msrs();
            if let Some(shift) = controls().preemption_timer_shift {
                // One time slice (10 ms) of TSC ticks, scaled to the timer's rate.
                let ticks = (crate::cpu::time::tsc_khz() * 10) >> shift;
                if vmwrite(GUEST_VMX_PREEMPTION_TIMER, ticks.clamp(1, u64::from(u32::MAX))).is_err() {
                    return self.fail(VmInstructionError::Invalid);
                }
            }
            let (info, error_code) = self.pending_injection.take().unwrap_or((0, 0));
            if vmwrite(ENTRY_INTERRUPTION_INFO, u64::from(info)).is_err()
                || vmwrite(ENTRY_EXCEPTION_ERROR_CODE, u64::from(error_code)).is_err()
            {
                return self.fail(VmInstructionError::Invalid);
            }
            let interrupts_were_on = interrupts_enabled();
            disable_interrupts();
            // SAFETY: the VMCS is current on this CPU with complete host and guest state;
            // `gprs` is an exclusive reference; interrupts stay off until the exit, and
            // the pending one is taken right after.
            let result = unsafe { basalt_vmx_run(gprs as *mut GuestGprs, u64::from(self.launched)) };
            if interrupts_were_on {
                enable_interrupts();
            }
            match result {
                0 => self.launched = true,
                1 => return self.fail(VmInstructionError::Invalid),
                _ => {
                    let number = vmread(VM_INSTRUCTION_ERROR).unwrap_or(0) as u32;
                    return self.fail(VmInstructionError::Valid(number));
                }
            }
            match self.decode_exit(gprs) {
                Ok(Some(exit)) => return exit,
                Ok(None) => continue,
                Err(error) => return self.fail(error),
            }
        }
    }

    fn state(&self) -> GuestState {
        let read = |field| vmread(field).unwrap_or(0);
        let cs_access = read(GUEST_CS_ACCESS_RIGHTS);
        GuestState {
            rip: read(GUEST_RIP),
            rsp: read(GUEST_RSP),
            rflags: read(GUEST_RFLAGS),
            cr0: self.cr0_shadow | (read(GUEST_CR0) & (CR0_PE | CR0_PG)),
            cr2: 0,
            cr3: read(GUEST_CR3),
            cr4: self.cr4_shadow,
            efer: read(GUEST_IA32_EFER),
            cs_selector: read(GUEST_CS_SELECTOR) as u16,
            cs_base: read(GUEST_CS_BASE),
            cs_long: cs_access & (1 << 13) != 0,
            cs_default_big: cs_access & (1 << 14) != 0,
            cpl: ((read(GUEST_SS_ACCESS_RIGHTS) >> 5) & 3) as u8,
        }
    }

    fn advance_rip(&mut self, length: u8) {
        let rip = vmread(GUEST_RIP).unwrap_or(0).wrapping_add(u64::from(length));
        let rip = if self.state().is_64bit() { rip } else { rip & 0xffff_ffff };
        let _ = vmwrite(GUEST_RIP, rip);
        // Completing an instruction ends STI / MOV SS blocking.
        let interruptibility = vmread(GUEST_INTERRUPTIBILITY).unwrap_or(0);
        let _ = vmwrite(GUEST_INTERRUPTIBILITY, interruptibility & !0x3);
    }

    fn inject(&mut self, event: Injection) {
        const VALID: u32 = 1 << 31;
        const DELIVER_ERROR_CODE: u32 = 1 << 11;
        self.pending_injection = Some(match event {
            Injection::Exception { vector, error_code: Some(code) } => {
                (VALID | DELIVER_ERROR_CODE | (3 << 8) | u32::from(vector), code)
            }
            Injection::Exception { vector, error_code: None } => (VALID | (3 << 8) | u32::from(vector), 0),
            Injection::Interrupt { vector } => (VALID | u32::from(vector), 0),
        });
    }

    fn interrupt_window_open(&mut self) -> bool {
        const RFLAGS_IF: u64 = 1 << 9;
        if self.pending_injection.is_some() || self.make_current().is_err() {
            return false;
        }
        vmread(GUEST_RFLAGS).unwrap_or(0) & RFLAGS_IF != 0 && vmread(GUEST_INTERRUPTIBILITY).unwrap_or(0) & 0x3 == 0
    }

    fn request_interrupt_window(&mut self, enable: bool) {
        if self.make_current().is_err() {
            return;
        }
        let primary = vmread(PRIMARY_PROCESSOR_CONTROLS).unwrap_or(u64::from(controls().primary));
        let wanted = if enable {
            primary | u64::from(PROC_INTERRUPT_WINDOW_EXITING)
        } else {
            primary & !u64::from(PROC_INTERRUPT_WINDOW_EXITING)
        };
        if wanted != primary {
            let _ = vmwrite(PRIMARY_PROCESSOR_CONTROLS, wanted);
        }
    }

    fn guest_efer(&self) -> u64 {
        vmread(GUEST_IA32_EFER).unwrap_or(0)
    }

    fn set_guest_efer(&mut self, value: u64) -> Result<(), ReservedBitsSet> {
        check_guest_efer(value)?;
        // LMA is the processor's: it follows IA-32e mode.
        let lma = vmread(GUEST_IA32_EFER).unwrap_or(0) & EFER_LMA;
        vmwrite(GUEST_IA32_EFER, (value & !EFER_LMA) | lma).map_err(|_| ReservedBitsSet)
    }

    fn set_guest_pat(&mut self, pat: u64) {
        let _ = vmwrite(GUEST_IA32_PAT, pat);
    }

    fn flush_guest_tlb(&mut self) {
        // The next slice starts with INVEPT/INVVPID.
        self.last_cpu = None;
    }

    fn exit_detail(&self) -> (u64, u64, u64) {
        self.last_exit
    }

    fn entry_failure(&self) -> alloc::string::String {
        match self.last_exit {
            (u64::MAX, u64::MAX, _) => alloc::string::String::from("VMLAUNCH/VMRESUME failed: VMfailInvalid"),
            (u64::MAX, number, _) => alloc::format!("VMLAUNCH/VMRESUME failed: VM-instruction error {number}"),
            (reason, qualification, _) => {
                alloc::format!("VM-entry failure, exit reason {:#x}, qualification {qualification:#x}", reason & 0xffff)
            }
        }
    }

    fn end_slice(&mut self) {
        if self.syscall_msrs_loaded {
            for (value, msr) in self.syscall_msrs.iter_mut().zip(SYSCALL_MSRS) {
                *value = rdmsr(msr);
            }
            self.syscall_msrs_loaded = false;
        }
        if self.current_on.take().is_some() {
            // Writes the VMCS back to memory so the next slice may run on another CPU.
            let _ = vmclear(self.vmcs_physical);
            self.launched = false;
        }
    }
}
