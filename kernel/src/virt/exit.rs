//! Vendor-neutral exit handling: what a VM exit means, decided once for SVM and VMX.
//!
//! The vendor backend reports an [`Exit`]; this module applies Basalt's policy — the
//! CPUID and MSR policy and the Xen hypercalls (`crate::xen`), HLT as a block, port I/O
//! to nothing, and containment: a triple fault, an access to guest-physical memory the
//! domain does not have, or an exit we cannot handle ends the domain with a one-line
//! reason; the rest of the machine carries on.
//!
//! Instruction lengths: when the hardware does not report one (SVM without nRIP save,
//! e.g. QEMU's TCG) the instruction is fetched at CS.base + RIP through the guest's own
//! page tables and decoded (`decode`), in whatever mode the vCPU is in.

use super::decode::{self, MAX_INSTRUCTION_LENGTH};
use super::guest_paging::{self, TranslationContext};
use super::{Exit, ExitReason, GuestGprs, GuestState, Injection, VirtualCpu, VECTOR_GP, VECTOR_UD};
use crate::domain::{run, Domain, StopReason, Vcpu};
use crate::sched::VcpuKey;
use crate::xen::cpuid::{guest_cpuid, CpuidPolicy, CpuidResult, GuestCpuIdentity, HostVendor};
use crate::xen::hypercall::{
    self, E820Entry, GuestFault, HypercallEnvironment, HypercallOutcome, HypercallRegisters, HypercallRequest,
    MemoryPages, VcpuPowerState, VcpuStartContext,
};
use crate::xen::hypercall_page::{self, HypercallInstruction};
use crate::xen::msr::{self, GuestMsrState, MsrRead, MsrWrite};
use alloc::format;
use core::sync::atomic::Ordering;

const IA32_EFER: u32 = 0xc000_0080;
const IA32_TIME_STAMP_COUNTER: u32 = 0x10;

/// What the run loop does after an exit was handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Enter the guest again (if the slice allows).
    Continue,
    /// Give the CPU to someone else; the vCPU stays runnable.
    Yield,
    /// Sleep until a timer, console input or another wake-up.
    Block,
    /// The vCPU went down (VCPUOP_down on itself).
    Offline,
    /// The domain stops: shutdown requested or crashed.
    Stop(StopReason),
}

fn crash(state: &GuestState, what: &str) -> Disposition {
    Disposition::Stop(StopReason::Crashed(format!("{what} at rip {:#x}", state.rip)))
}

fn host_cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    let (eax, ebx, ecx, edx) = crate::arch::instructions::cpuid(leaf, subleaf);
    CpuidResult { eax, ebx, ecx, edx }
}

/// The host's CPU vendor (what guests see in leaf 0 too), read once: guest CPUID exits
/// ask for it every time.
pub fn host_vendor() -> HostVendor {
    static VENDOR: spin::Once<HostVendor> = spin::Once::new();
    *VENDOR.call_once(|| HostVendor::from_leaf0(&host_cpuid(0, 0)))
}

/// Physical address width the guest is told (CPUID 0x80000008 EAX[7:0]).
pub fn host_physical_address_bits() -> u8 {
    (host_cpuid(0x8000_0008, 0).eax & 0xff) as u8
}

/// The length of the instruction the exit stopped at: reported, or fetched and decoded.
fn instruction_length(domain: &Domain, exit: &Exit, state: &GuestState) -> Result<u8, Disposition> {
    if let Some(length) = exit.instruction_length {
        return Ok(length);
    }
    let context = TranslationContext::from_control_registers(state.cr0, state.cr3, state.cr4, state.efer)
        .map_err(|_| crash(state, "unsupported guest paging mode while decoding"))?
        .with_user_mode(state.cpl == 3);
    let mut bytes = [0u8; MAX_INSTRUCTION_LENGTH];
    let fetched = domain
        .with_memory(|memory| {
            guest_paging::fetch_instruction_bytes(&*memory, &context, state.cs_base, state.rip, &mut bytes)
        })
        .map_err(|_| crash(state, "cannot fetch the instruction that exited"))?;
    let decoded = decode::decode(&bytes[..fetched], state.code_size())
        .map_err(|_| crash(state, "cannot decode the instruction that exited"))?;
    Ok(decoded.length)
}

/// Handles one exit of `vcpu` of `domain`.
pub fn handle_exit(
    domain: &Domain,
    vcpu: &Vcpu,
    backend: &mut dyn VirtualCpu,
    gprs: &mut GuestGprs,
    msrs: &mut GuestMsrState,
    exit: &Exit,
) -> Disposition {
    let state = backend.state();
    // Steps past the instruction, or ends the domain if its length cannot be found.
    macro_rules! complete {
        () => {
            match instruction_length(domain, exit, &state) {
                Ok(length) => backend.advance_rip(length),
                Err(disposition) => return disposition,
            }
        };
    }
    match exit.reason {
        ExitReason::ExternalInterrupt => Disposition::Continue,
        ExitReason::Cpuid => {
            let identity = GuestCpuIdentity {
                domid: domain.id,
                vcpu_id: vcpu.id,
                apic_id: vcpu.id * 2,
                vcpu_count: domain.vcpus.len() as u32,
                vendor: host_vendor(),
                policy: CpuidPolicy::default(),
            };
            let result = guest_cpuid(&host_cpuid, &identity, gprs.rax as u32, gprs.rcx as u32);
            gprs.rax = u64::from(result.eax);
            gprs.rbx = u64::from(result.ebx);
            gprs.rcx = u64::from(result.ecx);
            gprs.rdx = u64::from(result.edx);
            complete!();
            Disposition::Continue
        }
        ExitReason::Rdmsr => {
            let index = gprs.rcx as u32;
            let value = match index {
                IA32_EFER => Some(backend.guest_efer()),
                IA32_TIME_STAMP_COUNTER => Some(crate::arch::instructions::rdtsc()),
                _ => match msr::read_msr(msrs, index) {
                    MsrRead::Value(value) => Some(value),
                    _ => None,
                },
            };
            match value {
                Some(value) => {
                    gprs.rax = value & 0xffff_ffff;
                    gprs.rdx = value >> 32;
                    complete!();
                }
                None => {
                    crate::debug!("domain {} vCPU {}: rdmsr {index:#x} → #GP", domain.id, vcpu.id);
                    backend.inject(Injection::Exception { vector: VECTOR_GP, error_code: Some(0) });
                }
            }
            Disposition::Continue
        }
        ExitReason::Wrmsr => {
            let index = gprs.rcx as u32;
            let value = (gprs.rdx << 32) | (gprs.rax & 0xffff_ffff);
            let accepted = match index {
                IA32_EFER => backend.set_guest_efer(value).is_ok(),
                IA32_TIME_STAMP_COUNTER => true,
                _ => match msr::write_msr(msrs, index, value) {
                    MsrWrite::Done => {
                        // The hardware applies the guest's PAT from the control structure.
                        backend.set_guest_pat(msrs.pat());
                        true
                    }
                    MsrWrite::InstallHypercallPage { gpa, .. } => install_hypercall_page(domain, gpa),
                    _ => false,
                },
            };
            if accepted {
                complete!();
            } else {
                crate::debug!("domain {} vCPU {}: wrmsr {index:#x} ← {value:#x} → #GP", domain.id, vcpu.id);
                backend.inject(Injection::Exception { vector: VECTOR_GP, error_code: Some(0) });
            }
            Disposition::Continue
        }
        ExitReason::Hlt => {
            complete!();
            Disposition::Block
        }
        ExitReason::Hypercall => {
            // Xen advances RIP before the hypercall runs, so a blocking call resumes
            // after it.
            complete!();
            domain.hypercalls.fetch_add(1, Ordering::Relaxed);
            let registers = HypercallRegisters {
                rax: gprs.rax,
                rbx: gprs.rbx,
                rcx: gprs.rcx,
                rdx: gprs.rdx,
                rsi: gprs.rsi,
                rdi: gprs.rdi,
                rbp: gprs.rbp,
                r8: gprs.r8,
                r9: gprs.r9,
                r10: gprs.r10,
            };
            let request = if state.is_64bit() {
                HypercallRequest::from_registers_64(&registers, state.cpl)
            } else {
                HypercallRequest::from_registers_32(&registers, state.cpl)
            };
            let mut environment = ExitEnvironment { domain, vcpu, state: backend.state() };
            let (value, disposition) = match hypercall::dispatch(&mut environment, &request) {
                HypercallOutcome::Return(value) => (Some(value), Disposition::Continue),
                HypercallOutcome::Yield(value) => (Some(value), Disposition::Yield),
                HypercallOutcome::Block => (Some(0), Disposition::Block),
                HypercallOutcome::Shutdown { reason } => (None, Disposition::Stop(StopReason::Shutdown(reason))),
            };
            if let Some(value) = value {
                gprs.rax = hypercall::return_register_value(value, request.width);
            }
            disposition
        }
        ExitReason::Io { size, write, string, .. } => {
            // No emulated devices yet: reads float high, writes vanish.
            if !write && !string {
                let mask = match size {
                    1 => 0xff,
                    2 => 0xffff,
                    _ => 0xffff_ffff,
                };
                gprs.rax = (gprs.rax & !mask) | mask;
            }
            complete!();
            Disposition::Continue
        }
        ExitReason::NestedPageFault { gpa, write, fetch } => {
            let access = if fetch {
                "instruction fetch from"
            } else if write {
                "write to"
            } else {
                "read of"
            };
            crash(&state, &format!("{access} guest-physical {gpa:#x}, which is not its memory,"))
        }
        ExitReason::TripleFault => crash(&state, "triple fault"),
        ExitReason::UndefinedInstruction => {
            backend.inject(Injection::Exception { vector: VECTOR_UD, error_code: None });
            Disposition::Continue
        }
        ExitReason::Pause | ExitReason::CacheFlush => {
            complete!();
            Disposition::Continue
        }
        ExitReason::Exception { vector, error_code } => {
            backend.inject(Injection::Exception { vector, error_code });
            Disposition::Continue
        }
        ExitReason::EntryFailed => crash(&state, &format!("the CPU refused the guest: {}", backend.entry_failure())),
        ExitReason::Unhandled => {
            let (code, info1, info2) = backend.exit_detail();
            crash(&state, &format!("unhandled exit {code:#x} ({info1:#x}, {info2:#x})"))
        }
    }
}

/// Fills the page at `gpa` with hypercall stubs; false (→ #GP) if the page is not the
/// domain's RAM.
fn install_hypercall_page(domain: &Domain, gpa: u64) -> bool {
    let mut page = [0u8; 4096];
    let instruction = match host_vendor() {
        HostVendor::Amd => HypercallInstruction::Vmmcall,
        _ => HypercallInstruction::Vmcall,
    };
    hypercall_page::fill(&mut page, instruction);
    domain.with_memory(|memory| memory.write(gpa & !0xfff, &page))
}

/// The hypercall layer's view of the calling vCPU.
struct ExitEnvironment<'a> {
    domain: &'a Domain,
    vcpu: &'a Vcpu,
    state: GuestState,
}

impl ExitEnvironment<'_> {
    fn context(&self) -> Result<TranslationContext, GuestFault> {
        TranslationContext::from_control_registers(self.state.cr0, self.state.cr3, self.state.cr4, self.state.efer)
            .map(|context| context.with_user_mode(self.state.cpl == 3))
            .map_err(|_| GuestFault)
    }
}

impl HypercallEnvironment for ExitEnvironment<'_> {
    fn domain_id(&self) -> u16 {
        self.domain.id
    }
    fn vcpu_id(&self) -> u32 {
        self.vcpu.id
    }
    fn vcpu_count(&self) -> u32 {
        self.domain.vcpus.len() as u32
    }
    fn copy_from_guest(&mut self, gva: u64, buffer: &mut [u8]) -> Result<(), GuestFault> {
        let context = self.context()?;
        self.domain
            .with_memory(|memory| guest_paging::copy_from_guest(&*memory, &context, gva, buffer))
            .map_err(|_| GuestFault)
    }
    fn copy_to_guest(&mut self, gva: u64, data: &[u8]) -> Result<(), GuestFault> {
        let context = self.context()?;
        self.domain
            .with_memory(|memory| guest_paging::copy_to_guest(memory, &context, gva, data))
            .map_err(|_| GuestFault)
    }
    fn console_write(&mut self, bytes: &[u8]) {
        self.domain.console_write(bytes);
    }
    fn console_read(&mut self, buffer: &mut [u8]) -> usize {
        self.domain.console_read(buffer)
    }
    fn guest_handle(&self) -> [u8; 16] {
        self.domain.handle
    }
    fn memory_pages(&self) -> MemoryPages {
        let (pages, max_gpfn) = self.domain.with_memory(|memory| (memory.bytes() / 4096, memory.max_gpfn()));
        MemoryPages { current: pages, maximum: pages, max_gpfn }
    }
    fn memory_map(&self) -> &[E820Entry] {
        &self.domain.memory_map
    }
    fn vcpu_state(&self, vcpu: u32) -> Option<VcpuPowerState> {
        let target = self.domain.vcpus.get(vcpu as usize)?;
        let control = target.control.lock();
        Some(match (control.initialised, control.up) {
            (_, true) => VcpuPowerState::Up,
            (true, false) => VcpuPowerState::Down,
            (false, false) => VcpuPowerState::Uninitialised,
        })
    }
    fn vcpu_initialise(&mut self, vcpu: u32, context: &VcpuStartContext) -> Result<(), i64> {
        let target = self.domain.vcpus.get(vcpu as usize).ok_or(basalt_xen_abi::errno::ENOENT)?;
        let mut control = target.control.lock();
        if control.up {
            return Err(basalt_xen_abi::errno::EEXIST);
        }
        control.pending_start = Some(match context {
            VcpuStartContext::Protected32(registers) => super::StartState::Protected32(*registers),
            VcpuStartContext::Long64(registers) => super::StartState::Long64(*registers),
        });
        control.initialised = true;
        Ok(())
    }
    fn set_shutdown_code(&mut self, _reason: u8) {
        // The reason given to SCHEDOP_shutdown is what Basalt reports; the separate code
        // matters for suspend/resume, which Basalt does not do.
    }
    fn vcpu_up(&mut self, vcpu: u32) -> Result<(), i64> {
        let target = self.domain.vcpus.get(vcpu as usize).ok_or(basalt_xen_abi::errno::ENOENT)?;
        {
            let mut control = target.control.lock();
            if !control.initialised {
                return Err(basalt_xen_abi::errno::EINVAL);
            }
            control.up = true;
        }
        let key = VcpuKey { domain: self.domain.id, vcpu };
        let _ = run::with_scheduler(|scheduler| scheduler.set_online(key, true));
        Ok(())
    }
    fn vcpu_down(&mut self, vcpu: u32) -> Result<(), i64> {
        let target = self.domain.vcpus.get(vcpu as usize).ok_or(basalt_xen_abi::errno::ENOENT)?;
        target.control.lock().up = false;
        let key = VcpuKey { domain: self.domain.id, vcpu };
        let _ = run::with_scheduler(|scheduler| scheduler.set_online(key, false));
        Ok(())
    }
    fn set_timer(&mut self, deadline_ns: Option<u64>) {
        self.vcpu.control.lock().timer_deadline_ns = deadline_ns;
        run::set_timer(VcpuKey { domain: self.domain.id, vcpu: self.vcpu.id }, deadline_ns);
    }
    fn now_ns(&self) -> u64 {
        crate::cpu::time::uptime_ns()
    }
}
