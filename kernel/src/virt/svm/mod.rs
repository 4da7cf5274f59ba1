//! AMD SVM with nested paging: the [`VirtualCpu`] backend for AMD processors.
//!
//! What it owns: turning SVM on per CPU (EFER.SVME, the host save area — APM vol. 2
//! §15.4, §15.30.4), one VMCB per vCPU (§15.5, appendix B), the world switch (VMLOAD /
//! VMRUN / VMSAVE bracketed by CLGI/STGI, §15.5.1, §15.17), ASIDs and TLB control
//! (§15.16), and translating exit codes into [`Exit`] (appendix C).
//!
//! TLB discipline: ASIDs are per physical CPU. A vCPU holds (cpu, ASID, generation);
//! when it runs on a different CPU, or that CPU's generation moved on, it gets a fresh
//! ASID from the CPU's counter. When the counter passes the CPU's ASID count the
//! generation advances, numbering restarts at 1 and that VMRUN flushes the whole TLB
//! (TLB_CONTROL = 1; QEMU's TCG offers nothing finer), so a reused ASID never sees an
//! older vCPU's translations. [`VirtualCpu::flush_guest_tlb`] requests the same full
//! flush for one entry.
//!
//! Without nRIP save (QEMU TCG) `Exit::instruction_length` is `None` for instruction
//! intercepts and exit handling decodes the instruction; IOIO exits always carry the
//! next RIP in EXITINFO2.

pub mod vmcb;

use super::{
    check_guest_efer, Exit, ExitReason, GuestGprs, GuestState, Injection, ReservedBitsSet, StartState, VirtError,
    VirtualCpu,
};
use crate::arch::instructions::{cpuid, rdmsr, wrmsr};
use crate::cpu::percpu::{self, MAX_CPUS};
use crate::mm::{phys_to_virt, with_frames};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use vmcb::*;

const IA32_EFER: u32 = 0xc000_0080;
const EFER_SVME: u64 = 1 << 12;
const VM_CR: u32 = 0xc001_0114;
const VM_CR_SVMDIS: u64 = 1 << 4;
const VM_HSAVE_PA: u32 = 0xc001_0117;
const PAGE: u64 = 4096;

/// Per-CPU SVM state: only the owning CPU writes its slot.
struct SvmCpu {
    enabled: AtomicBool,
    host_vmcb: AtomicU64,
    next_asid: AtomicU32,
    asid_count: AtomicU32,
    generation: AtomicU64,
    flush_pending: AtomicBool,
}

static CPUS: [SvmCpu; MAX_CPUS] = [const {
    SvmCpu {
        enabled: AtomicBool::new(false),
        host_vmcb: AtomicU64::new(0),
        next_asid: AtomicU32::new(1),
        asid_count: AtomicU32::new(0),
        generation: AtomicU64::new(1),
        flush_pending: AtomicBool::new(false),
    }
}; MAX_CPUS];

/// The I/O and MSR permission maps, shared by every vCPU (read-only after setup).
static IOPM: AtomicU64 = AtomicU64::new(0);
static MSRPM: AtomicU64 = AtomicU64::new(0);
static NRIP_SAVE: AtomicBool = AtomicBool::new(false);
static PERMISSION_MAPS_LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// MSRs the guest reads and writes directly: they live in the VMCB and are switched
/// by VMLOAD/VMSAVE (FS/GS bases, KernelGSBase, the SYSCALL/SYSENTER MSRs).
const PASSTHROUGH_MSRS: [u32; 10] =
    [0xc000_0100, 0xc000_0101, 0xc000_0102, 0xc000_0081, 0xc000_0082, 0xc000_0083, 0xc000_0084, 0x174, 0x175, 0x176];

/// True if this CPU offers SVM with nested paging.
pub fn is_supported() -> bool {
    let (max_extended, ..) = cpuid(0x8000_0000, 0);
    if max_extended < 0x8000_000a {
        return false;
    }
    let (_, _, ecx, _) = cpuid(0x8000_0001, 0);
    let (_, _, _, edx) = cpuid(0x8000_000a, 0);
    ecx & (1 << 2) != 0 && edx & 1 != 0
}

/// Turns SVM on for the calling CPU: EFER.SVME, the host save area, and a host VMCB
/// that VMSAVE/VMLOAD keep the host's FS/GS/TR/LDTR/syscall state in across a run.
pub fn enable_this_cpu() -> Result<(), VirtError> {
    if !is_supported() {
        return Err(VirtError::Unsupported("SVM with nested paging"));
    }
    if rdmsr(VM_CR) & VM_CR_SVMDIS != 0 {
        return Err(VirtError::DisabledByFirmware);
    }
    let index = percpu::current_index() as usize;
    let slot = &CPUS[index];
    if slot.enabled.load(Ordering::Acquire) {
        return Ok(());
    }
    ensure_permission_maps()?;
    let host_save = allocate_zeroed_frames(1)?;
    let host_vmcb = allocate_zeroed_frames(1)?;
    let (_, asids, _, edx) = cpuid(0x8000_000a, 0);
    NRIP_SAVE.store(edx & (1 << 3) != 0, Ordering::Relaxed);
    wrmsr(IA32_EFER, rdmsr(IA32_EFER) | EFER_SVME);
    wrmsr(VM_HSAVE_PA, host_save);
    slot.host_vmcb.store(host_vmcb, Ordering::Relaxed);
    // ASID 0 belongs to the host.
    slot.asid_count.store(asids.max(2), Ordering::Relaxed);
    slot.enabled.store(true, Ordering::Release);
    Ok(())
}

/// True once [`enable_this_cpu`] succeeded on CPU `index`.
pub fn is_enabled_on(index: u32) -> bool {
    CPUS.get(index as usize).is_some_and(|slot| slot.enabled.load(Ordering::Acquire))
}

fn allocate_zeroed_frames(count: u64) -> Result<u64, VirtError> {
    crate::mm::allocate_zeroed_frames(count).ok_or(VirtError::OutOfMemory)
}

fn ensure_permission_maps() -> Result<(), VirtError> {
    let _guard = PERMISSION_MAPS_LOCK.lock();
    if IOPM.load(Ordering::Acquire) != 0 {
        return Ok(());
    }
    // Every port and MSR is intercepted unless listed as passthrough.
    let iopm = allocate_zeroed_frames(3)?;
    let msrpm = allocate_zeroed_frames(2)?;
    // SAFETY: both ranges were just allocated (3 and 2 pages) and are ours.
    unsafe {
        core::ptr::write_bytes(phys_to_virt(iopm) as *mut u8, 0xff, 3 * PAGE as usize);
        core::ptr::write_bytes(phys_to_virt(msrpm) as *mut u8, 0xff, 2 * PAGE as usize);
    }
    for msr in PASSTHROUGH_MSRS {
        let (base, number) = if msr >= 0xc000_0000 { (0x800u64, msr - 0xc000_0000) } else { (0, msr) };
        let bit = u64::from(number) * 2;
        let byte = phys_to_virt(msrpm) + base + bit / 8;
        let mask = !(0b11u8 << (bit % 8));
        // SAFETY: `byte` lies in the MSRPM's first 4 KiB (number < 0x2000 → < 0x800 bytes
        // past the base).
        unsafe { *(byte as *mut u8) &= mask };
    }
    MSRPM.store(msrpm, Ordering::Release);
    IOPM.store(iopm, Ordering::Release);
    Ok(())
}

core::arch::global_asm!(
    ".global basalt_svm_run",
    "basalt_svm_run:",
    // rdi = guest VMCB (physical), rsi = host VMCB (physical), rdx = &mut GuestGprs
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rdx",
    "push rdi",
    "push rsi",
    "mov rax, rsi",
    "vmsave rax",
    "mov rax, rdx",
    load_guest_gprs_from_rax!(),
    "mov rax, [rsp + 8]",
    "vmload rax",
    "vmrun rax",
    "vmsave rax",
    "mov rax, [rsp + 16]",
    store_guest_gprs_to_rax!(),
    "pop rax",
    "vmload rax",
    "add rsp, 16",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
);

unsafe extern "C" {
    fn basalt_svm_run(guest_vmcb: u64, host_vmcb: u64, gprs: *mut GuestGprs);
}

/// One vCPU's VMCB and TLB tag.
pub struct SvmVcpu {
    vmcb: Vmcb,
    vmcb_physical: u64,
    nested_cr3: u64,
    asid: u32,
    asid_cpu: u32,
    asid_generation: u64,
    flush_requested: bool,
    pending_injection: Option<u64>,
    last_exit: (u64, u64, u64),
}

impl SvmVcpu {
    /// A vCPU whose guest-physical space is the nested page table at `nested_cr3`.
    pub fn new(nested_cr3: u64) -> Result<SvmVcpu, VirtError> {
        let physical = allocate_zeroed_frames(1)?;
        // SAFETY: the frame was just allocated for this VMCB and is freed only in Drop.
        let vmcb = unsafe { Vmcb::new(phys_to_virt(physical)) };
        Ok(SvmVcpu {
            vmcb,
            vmcb_physical: physical,
            nested_cr3,
            asid: 0,
            asid_cpu: u32::MAX,
            asid_generation: 0,
            flush_requested: false,
            pending_injection: None,
            last_exit: (0, 0, 0),
        })
    }

    fn write_controls(&mut self) {
        let vmcb = &mut self.vmcb;
        // #UD only: the other vendor's hypercall instruction (exit handling).
        vmcb.write_u32(INTERCEPT_EXCEPTIONS, 1 << super::VECTOR_UD);
        vmcb.write_u32(
            INTERCEPT_MISC1,
            INTERCEPT_INTR
                | INTERCEPT_NMI
                | INTERCEPT_SMI
                | INTERCEPT_INIT
                | INTERCEPT_CPUID
                | INTERCEPT_INVD
                | INTERCEPT_HLT
                | INTERCEPT_INVLPGA
                | INTERCEPT_IOIO_PROT
                | INTERCEPT_MSR_PROT
                | INTERCEPT_TASK_SWITCH
                | INTERCEPT_SHUTDOWN,
        );
        vmcb.write_u32(
            INTERCEPT_MISC2,
            INTERCEPT_VMRUN
                | INTERCEPT_VMMCALL
                | INTERCEPT_VMLOAD
                | INTERCEPT_VMSAVE
                | INTERCEPT_STGI
                | INTERCEPT_CLGI
                | INTERCEPT_SKINIT
                | INTERCEPT_ICEBP
                | INTERCEPT_WBINVD
                | INTERCEPT_MONITOR
                | INTERCEPT_MWAIT
                | INTERCEPT_MWAIT_ARMED
                | INTERCEPT_XSETBV,
        );
        vmcb.write_u64(IOPM_BASE_PA, IOPM.load(Ordering::Acquire));
        vmcb.write_u64(MSRPM_BASE_PA, MSRPM.load(Ordering::Acquire));
        vmcb.write_u64(TSC_OFFSET, 0);
        vmcb.write_u64(VINTR, V_INTR_MASKING);
        vmcb.write_u64(INTERRUPT_SHADOW, 0);
        vmcb.write_u64(NP_ENABLE, 1);
        vmcb.write_u64(NESTED_CR3, self.nested_cr3);
        vmcb.write_u64(EVENT_INJECTION, 0);
        vmcb.write_u32(CLEAN_BITS, 0);
        // Power-on PAT (SDM vol. 3 §12.12.4): WB, WT, UC-, UC repeated.
        vmcb.write_u64(G_PAT, 0x0007_0406_0007_0406);
        vmcb.write_u64(DR6, 0xffff_0ff0);
        vmcb.write_u64(DR7, 0x400);
        vmcb.write_u64(CR2, 0);
    }

    fn select_asid(&mut self) {
        let cpu = percpu::current_index();
        let slot = &CPUS[cpu as usize];
        let generation = slot.generation.load(Ordering::Relaxed);
        if self.asid_cpu == cpu && self.asid_generation == generation && !self.flush_requested {
            self.vmcb.write_u8(TLB_CONTROL, u8::from(slot.flush_pending.swap(false, Ordering::Relaxed)));
            return;
        }
        let mut asid = slot.next_asid.load(Ordering::Relaxed);
        let mut generation = generation;
        if asid >= slot.asid_count.load(Ordering::Relaxed) || self.flush_requested {
            // Out of ASIDs (or a flush was asked for): start a new generation; this run
            // flushes every tag so the reused numbers start clean.
            generation += 1;
            slot.generation.store(generation, Ordering::Relaxed);
            asid = 1;
            slot.flush_pending.store(true, Ordering::Relaxed);
        }
        slot.next_asid.store(asid + 1, Ordering::Relaxed);
        self.asid = asid;
        self.asid_cpu = cpu;
        self.asid_generation = generation;
        self.flush_requested = false;
        self.vmcb.write_u32(GUEST_ASID, asid);
        self.vmcb.write_u8(TLB_CONTROL, u8::from(slot.flush_pending.swap(false, Ordering::Relaxed)));
    }

    fn decode_exit(&mut self) -> Exit {
        let code = self.vmcb.read_u64(EXIT_CODE);
        let info1 = self.vmcb.read_u64(EXIT_INFO1);
        let info2 = self.vmcb.read_u64(EXIT_INFO2);
        self.last_exit = (code, info1, info2);
        let interrupted = self.vmcb.read_u64(EXIT_INT_INFO);
        if interrupted & EVENT_VALID != 0 {
            // An event was being delivered when the exit happened: deliver it again.
            // EXITINTINFO has EVENTINJ's layout: keep the error code (63:32), the valid
            // bit (31) and type/vector/error-valid (11:0). Dropping bit 31 here would
            // lose the event — an interrupt the local APIC already moved to its ISR,
            // after which no upcall of that priority could ever arrive.
            self.pending_injection = Some(interrupted & 0xffff_ffff_8000_0fff);
        }
        let rip = self.vmcb.read_u64(RIP);
        let next_rip = self.vmcb.read_u64(NEXT_RIP);
        let nrip_length = if NRIP_SAVE.load(Ordering::Relaxed) && next_rip > rip && next_rip - rip <= 15 {
            Some((next_rip - rip) as u8)
        } else {
            None
        };
        let (reason, instruction_length) = match code {
            VMEXIT_INTR | VMEXIT_NMI | VMEXIT_SMI | VMEXIT_INIT => (ExitReason::ExternalInterrupt, None),
            VMEXIT_VINTR => {
                self.request_interrupt_window(false);
                (ExitReason::InterruptWindow, None)
            }
            VMEXIT_CPUID => (ExitReason::Cpuid, nrip_length),
            VMEXIT_MSR if info1 == 0 => (ExitReason::Rdmsr, nrip_length),
            VMEXIT_MSR => (ExitReason::Wrmsr, nrip_length),
            VMEXIT_HLT => (ExitReason::Hlt, nrip_length),
            VMEXIT_VMMCALL => (ExitReason::Hypercall, nrip_length),
            VMEXIT_IOIO => {
                let size = match (info1 >> 4) & 0x7 {
                    1 => 1,
                    2 => 2,
                    _ => 4,
                };
                let length = info2.checked_sub(rip).filter(|length| (1..=15).contains(length)).map(|l| l as u8);
                (
                    ExitReason::Io {
                        port: (info1 >> 16) as u16,
                        size,
                        write: info1 & 1 == 0,
                        string: info1 & (1 << 2) != 0,
                        rep: info1 & (1 << 3) != 0,
                    },
                    length,
                )
            }
            VMEXIT_NPF => {
                (ExitReason::NestedPageFault { gpa: info2, write: info1 & 0x2 != 0, fetch: info1 & 0x10 != 0 }, None)
            }
            VMEXIT_SHUTDOWN => (ExitReason::TripleFault, None),
            VMEXIT_VMRUN
            | VMEXIT_VMLOAD
            | VMEXIT_VMSAVE
            | VMEXIT_STGI
            | VMEXIT_CLGI
            | VMEXIT_SKINIT
            | VMEXIT_INVLPGA
            | VMEXIT_RDTSCP
            | VMEXIT_ICEBP
            | VMEXIT_MONITOR
            | VMEXIT_MWAIT
            | VMEXIT_MWAIT_CONDITIONAL
            | VMEXIT_XSETBV => (ExitReason::UndefinedInstruction, None),
            VMEXIT_INVD | VMEXIT_WBINVD => (ExitReason::CacheFlush, nrip_length),
            VMEXIT_PAUSE => (ExitReason::Pause, nrip_length),
            code if (VMEXIT_EXCEPTION_BASE..VMEXIT_EXCEPTION_BASE + 32).contains(&code) => (
                ExitReason::Exception { vector: (code - VMEXIT_EXCEPTION_BASE) as u8, error_code: Some(info1 as u32) },
                None,
            ),
            code if code & 0xffff_ffff == VMEXIT_INVALID_LOW32 => (ExitReason::EntryFailed, None),
            _ => (ExitReason::Unhandled, None),
        };
        Exit { reason, vendor_code: code, instruction_length }
    }
}

impl Drop for SvmVcpu {
    fn drop(&mut self) {
        let physical = self.vmcb_physical;
        // A VMCB frame that cannot be given back is leaked, never reused.
        let _ = with_frames(|frames| frames.free(physical));
    }
}

impl VirtualCpu for SvmVcpu {
    fn set_start_state(&mut self, state: &StartState) -> Result<(), VirtError> {
        state.validate()?;
        self.write_controls();
        let vmcb = &mut self.vmcb;
        match state {
            StartState::Protected32(regs) => {
                let cr0 = u64::from(regs.cr0);
                let segment = |ar: u16| attributes_from_access_rights(ar);
                vmcb.write_segment(CS, 0x08, segment(regs.cs_ar), regs.cs_limit, u64::from(regs.cs_base));
                vmcb.write_segment(DS, 0x10, segment(regs.ds_ar), regs.ds_limit, u64::from(regs.ds_base));
                vmcb.write_segment(ES, 0x10, segment(regs.es_ar), regs.es_limit, u64::from(regs.es_base));
                vmcb.write_segment(SS, 0x10, segment(regs.ss_ar), regs.ss_limit, u64::from(regs.ss_base));
                vmcb.write_segment(FS, 0x10, segment(regs.ds_ar), regs.ds_limit, 0);
                vmcb.write_segment(GS, 0x10, segment(regs.ds_ar), regs.ds_limit, 0);
                vmcb.write_segment(
                    TR,
                    0x18,
                    segment(regs.tr_ar | 0x8b),
                    regs.tr_limit.max(0x67),
                    u64::from(regs.tr_base),
                );
                vmcb.write_segment(LDTR, 0, 0x82, 0xffff, 0);
                vmcb.write_segment(GDTR, 0, 0, 0xffff, 0);
                vmcb.write_segment(IDTR, 0, 0, 0xffff, 0);
                vmcb.write_u8(CPL, 0);
                vmcb.write_u64(CR0, cr0 | 0x10);
                vmcb.write_u64(CR3, u64::from(regs.cr3));
                vmcb.write_u64(CR4, u64::from(regs.cr4));
                vmcb.write_u64(EFER, regs.efer | EFER_SVME);
                vmcb.write_u64(RFLAGS, u64::from(regs.eflags) | 0x2);
                vmcb.write_u64(RIP, u64::from(regs.eip));
                vmcb.write_u64(RSP, u64::from(regs.esp));
                vmcb.write_u64(RAX, u64::from(regs.eax));
            }
            StartState::Long64(regs) => {
                vmcb.write_segment(CS, 0x08, 0xa9b, 0xffff_ffff, 0);
                for data in [DS, ES, SS, FS, GS] {
                    vmcb.write_segment(data, 0x10, 0xc93, 0xffff_ffff, 0);
                }
                vmcb.write_segment(TR, 0x18, 0x8b, 0x67, 0);
                vmcb.write_segment(LDTR, 0, 0x82, 0xffff, 0);
                vmcb.write_segment(GDTR, 0, 0, 0xffff, 0);
                vmcb.write_segment(IDTR, 0, 0, 0xffff, 0);
                vmcb.write_u8(CPL, 0);
                vmcb.write_u64(CR0, regs.cr0 | 0x10);
                vmcb.write_u64(CR3, regs.cr3);
                vmcb.write_u64(CR4, regs.cr4);
                vmcb.write_u64(EFER, regs.efer | EFER_SVME | (1 << 10));
                vmcb.write_u64(RFLAGS, regs.rflags | 0x2);
                vmcb.write_u64(RIP, regs.rip);
                vmcb.write_u64(RSP, regs.rsp);
                vmcb.write_u64(RAX, regs.rax);
            }
            StartState::StartupIpi { vector } => {
                let (selector, base) = super::startup_ipi_code_segment(*vector);
                vmcb.write_segment(CS, selector, 0x9b, 0xffff, base);
                for data in [DS, ES, SS, FS, GS] {
                    vmcb.write_segment(data, 0, 0x93, 0xffff, 0);
                }
                vmcb.write_segment(TR, 0, 0x8b, 0xffff, 0);
                vmcb.write_segment(LDTR, 0, 0x82, 0xffff, 0);
                vmcb.write_segment(GDTR, 0, 0, 0xffff, 0);
                vmcb.write_segment(IDTR, 0, 0, 0xffff, 0);
                vmcb.write_u8(CPL, 0);
                vmcb.write_u64(CR0, 0x10);
                vmcb.write_u64(CR3, 0);
                vmcb.write_u64(CR4, 0);
                vmcb.write_u64(EFER, EFER_SVME);
                vmcb.write_u64(RFLAGS, 0x2);
                vmcb.write_u64(RIP, 0);
                vmcb.write_u64(RSP, 0);
                vmcb.write_u64(RAX, 0);
            }
        }
        self.pending_injection = None;
        Ok(())
    }

    fn run(&mut self, gprs: &mut GuestGprs) -> Exit {
        crate::arch::instructions::disable_interrupts();
        // SAFETY: SVM is enabled on this CPU (the scheduler only runs vCPUs on CPUs where
        // enable_this_cpu succeeded); CLGI holds interrupts until STGI below.
        unsafe { core::arch::asm!("clgi", options(nomem, nostack)) };
        self.select_asid();
        if let Some(event) = self.pending_injection.take() {
            self.vmcb.write_u64(EVENT_INJECTION, event);
        } else {
            self.vmcb.write_u64(EVENT_INJECTION, 0);
        }
        self.vmcb.write_u64(RAX, gprs.rax);
        let host_vmcb = CPUS[percpu::current_index() as usize].host_vmcb.load(Ordering::Relaxed);
        // SAFETY: the VMCB is fully initialised by set_start_state, the host VMCB and
        // host save area belong to this CPU, and `gprs` is a valid exclusive reference.
        // IF is set (GIF is clear) so physical interrupts become INTR exits.
        unsafe {
            core::arch::asm!("sti", options(nomem, nostack));
            basalt_svm_run(self.vmcb_physical, host_vmcb, gprs as *mut GuestGprs);
        }
        gprs.rax = self.vmcb.read_u64(RAX);
        let exit = self.decode_exit();
        // SAFETY: re-enables the global interrupt flag; the host takes the interrupt
        // that ended the run (if any) right here.
        unsafe { core::arch::asm!("stgi", options(nomem, nostack)) };
        exit
    }

    fn state(&self) -> GuestState {
        let attributes = self.vmcb.segment_attributes(CS);
        GuestState {
            rip: self.vmcb.read_u64(RIP),
            rsp: self.vmcb.read_u64(RSP),
            rflags: self.vmcb.read_u64(RFLAGS),
            cr0: self.vmcb.read_u64(CR0),
            cr2: self.vmcb.read_u64(CR2),
            cr3: self.vmcb.read_u64(CR3),
            cr4: self.vmcb.read_u64(CR4),
            efer: self.vmcb.read_u64(EFER) & !EFER_SVME,
            cs_selector: self.vmcb.read_u16(CS),
            cs_base: self.vmcb.segment_base(CS),
            cs_long: attributes & 0x200 != 0,
            cs_default_big: attributes & 0x400 != 0,
            cpl: self.vmcb.read_u8(CPL),
        }
    }

    fn advance_rip(&mut self, length: u8) {
        let rip = self.vmcb.read_u64(RIP).wrapping_add(u64::from(length));
        let rip = if self.state().is_64bit() { rip } else { rip & 0xffff_ffff };
        self.vmcb.write_u64(RIP, rip);
        self.vmcb.write_u64(INTERRUPT_SHADOW, 0);
    }

    fn inject(&mut self, event: Injection) {
        let value = match event {
            Injection::Exception { vector, error_code } => {
                let base = EVENT_VALID | EVENT_TYPE_EXCEPTION | u64::from(vector);
                match error_code {
                    Some(code) => base | EVENT_ERROR_VALID | (u64::from(code) << 32),
                    None => base,
                }
            }
            Injection::Interrupt { vector } => EVENT_VALID | EVENT_TYPE_INTR | u64::from(vector),
        };
        self.pending_injection = Some(value);
    }

    fn interrupt_window_open(&mut self) -> bool {
        const RFLAGS_IF: u64 = 1 << 9;
        self.pending_injection.is_none()
            && self.vmcb.read_u64(RFLAGS) & RFLAGS_IF != 0
            && self.vmcb.read_u64(INTERRUPT_SHADOW) & 1 == 0
    }

    fn request_interrupt_window(&mut self, enable: bool) {
        let intercepts = self.vmcb.read_u32(INTERCEPT_MISC1);
        let vintr = self.vmcb.read_u64(VINTR) & !(V_IRQ | V_INTR_PRIO_MAX | V_IGN_TPR);
        if enable {
            self.vmcb.write_u32(INTERCEPT_MISC1, intercepts | INTERCEPT_VINTR);
            self.vmcb.write_u64(VINTR, vintr | V_IRQ | V_INTR_PRIO_MAX | V_IGN_TPR);
        } else {
            self.vmcb.write_u32(INTERCEPT_MISC1, intercepts & !INTERCEPT_VINTR);
            self.vmcb.write_u64(VINTR, vintr);
        }
    }

    fn guest_efer(&self) -> u64 {
        self.vmcb.read_u64(EFER) & !EFER_SVME
    }

    fn set_guest_efer(&mut self, value: u64) -> Result<(), ReservedBitsSet> {
        check_guest_efer(value)?;
        let current = self.vmcb.read_u64(EFER);
        // LMA is the processor's: keep it, and let the hardware set it on paging enable.
        let lma = current & (1 << 10);
        self.vmcb.write_u64(EFER, (value & !(1 << 10)) | lma | EFER_SVME);
        Ok(())
    }

    fn set_guest_pat(&mut self, pat: u64) {
        self.vmcb.write_u64(G_PAT, pat);
    }

    fn flush_guest_tlb(&mut self) {
        self.flush_requested = true;
    }

    fn exit_detail(&self) -> (u64, u64, u64) {
        self.last_exit
    }
}
