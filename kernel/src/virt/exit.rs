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
use super::{mmio, vlapic};
use super::{Exit, ExitReason, GuestGprs, GuestState, Injection, VirtualCpu, VECTOR_GP, VECTOR_UD};
use crate::domain::{run, xen, Domain, StopReason, Vcpu};
use crate::sched::VcpuKey;
use crate::xen::cpuid::{guest_cpuid, CpuidPolicy, CpuidResult, GuestCpuIdentity, HostVendor};
use crate::xen::hypercall::{
    self, E820Entry, EventChannelOp, EventChannelReply, GrantTableOp, GrantTableReply, GuestFault,
    HypercallEnvironment, HypercallOutcome, HypercallRegisters, HypercallRequest, MemoryPages, VcpuPowerState,
    VcpuStartContext,
};
use crate::xen::hypercall_page::{self, HypercallInstruction};
use crate::xen::msr::{self, GuestMsrState, MsrRead, MsrWrite};
use alloc::format;
use core::sync::atomic::Ordering;

const IA32_EFER: u32 = 0xc000_0080;
/// The PCI reset control register and its "reset" bit.
const RESET_CONTROL_PORT: u16 = 0xcf9;
const RESET_CONTROL_RESET: u64 = 1 << 2;
/// The 8042 command port and its "pulse reset line" command.
const KEYBOARD_COMMAND_PORT: u16 = 0x64;
const KEYBOARD_PULSE_RESET: u64 = 0xfe;
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

/// Why the instruction at RIP could not be fetched.
enum FetchFailure {
    /// The vCPU's paging mode is not one the walker knows.
    PagingMode,
    /// The bytes are not reachable through the guest's page tables.
    Unreachable,
}

/// Up to 15 bytes at CS.base + RIP, fetched through the vCPU's own page tables, and how
/// many there are.
fn fetch_instruction(
    domain: &Domain,
    state: &GuestState,
) -> Result<([u8; MAX_INSTRUCTION_LENGTH], usize), FetchFailure> {
    let context = TranslationContext::from_control_registers(state.cr0, state.cr3, state.cr4, state.efer)
        .map_err(|_| FetchFailure::PagingMode)?
        .with_user_mode(state.cpl == 3);
    let mut bytes = [0u8; MAX_INSTRUCTION_LENGTH];
    let fetched = domain
        .with_memory(|memory| {
            guest_paging::fetch_instruction_bytes(&*memory, &context, state.cs_base, state.rip, &mut bytes)
        })
        .map_err(|_| FetchFailure::Unreachable)?;
    Ok((bytes, fetched))
}

/// The length of the instruction the exit stopped at: reported, or fetched and decoded.
fn instruction_length(domain: &Domain, exit: &Exit, state: &GuestState) -> Result<u8, Disposition> {
    if let Some(length) = exit.instruction_length {
        return Ok(length);
    }
    let (bytes, fetched) = fetch_instruction(domain, state).map_err(|failure| match failure {
        FetchFailure::PagingMode => crash(state, "unsupported guest paging mode while decoding"),
        FetchFailure::Unreachable => crash(state, "cannot fetch the instruction that exited"),
    })?;
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
                policy: CpuidPolicy { x2apic: true, hvm_upcall_vector: true },
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
                vlapic::MSR_IA32_APIC_BASE => Some(vcpu.lapic.lock().read_apic_base()),
                vlapic::MSR_X2APIC_FIRST..=vlapic::MSR_X2APIC_LAST => vcpu.lapic.lock().read_msr(index).ok(),
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
                vlapic::MSR_IA32_APIC_BASE => vcpu.lapic.lock().write_apic_base(value).is_ok(),
                vlapic::MSR_X2APIC_FIRST..=vlapic::MSR_X2APIC_LAST => {
                    let action = vcpu.lapic.lock().write_msr(index, value);
                    match action {
                        Ok(action) => {
                            apply_apic_action(domain, vcpu, action);
                            true
                        }
                        Err(_) => false,
                    }
                }
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
            const RFLAGS_IF: u64 = 1 << 9;
            // Only an NMI or INIT wakes a vCPU halted with interrupts off; Basalt sends
            // no NMIs, and an INIT from another vCPU clears the mark.
            if state.rflags & RFLAGS_IF == 0 {
                vcpu.control.lock().halted_for_good = true;
                if every_vcpu_halted_for_good(domain) {
                    // Nothing can wake a vCPU halted with interrupts off (Basalt sends
                    // no NMIs): Linux's poweroff ends like this on a PVH domU, which
                    // has no ACPI sleep states (pvh-abi.md P-15). Treated as poweroff.
                    crate::info!(
                        "domain {}: every vCPU halted with interrupts off; treating it as poweroff",
                        domain.id
                    );
                    return Disposition::Stop(StopReason::Shutdown(basalt_xen_abi::sched::SHUTDOWN_poweroff));
                }
            }
            Disposition::Block
        }
        ExitReason::Hypercall => {
            // Xen advances RIP before the hypercall runs, so a blocking call resumes
            // after it.
            complete!();
            hypercall(domain, vcpu, backend, gprs, &state)
        }
        ExitReason::Io { port, size, write, string, .. } => {
            // The PC reset paths Linux tries on reboot: the reset control register
            // (0xcf9, the FADT's reset register) and the keyboard controller's pulse.
            let value = gprs.rax & 0xff;
            let reset = write
                && !string
                && ((port == RESET_CONTROL_PORT && value & RESET_CONTROL_RESET != 0)
                    || (port == KEYBOARD_COMMAND_PORT && value == KEYBOARD_PULSE_RESET));
            if reset {
                complete!();
                return Disposition::Stop(StopReason::Shutdown(basalt_xen_abi::sched::SHUTDOWN_reboot));
            }
            // No other emulated devices: reads float high, writes vanish.
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
        ExitReason::NestedPageFault { gpa, write, fetch }
            if !fetch && (gpa & !0xfff) == vlapic::APIC_DEFAULT_PHYS_BASE =>
        {
            let _ = write;
            emulate_apic_access(domain, vcpu, backend, gprs, &state, (gpa & 0xfff) as u32)
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
        ExitReason::InterruptWindow => Disposition::Continue,
        ExitReason::TripleFault => {
            // The crash reason stays one line; what explains a triple fault (the fault
            // address of the last #PF, the paging state, the vendor's exit details)
            // goes to the log beside it.
            let (code, info1, info2) = backend.exit_detail();
            crate::warn!(
                "domain {}: triple fault at rip {:#x}: cr0 {:#x} cr2 {:#x} cr3 {:#x} cr4 {:#x} efer {:#x} rflags {:#x} rsp {:#x}, exit {code:#x}/{info1:#x}/{info2:#x}",
                domain.id,
                state.rip,
                state.cr0,
                state.cr2,
                state.cr3,
                state.cr4,
                state.efer,
                state.rflags,
                state.rsp
            );
            crash(&state, "triple fault")
        }
        ExitReason::UndefinedInstruction => {
            backend.inject(Injection::Exception { vector: VECTOR_UD, error_code: None });
            Disposition::Continue
        }
        ExitReason::Pause | ExitReason::CacheFlush => {
            complete!();
            Disposition::Continue
        }
        ExitReason::Exception { vector: VECTOR_UD, .. } => {
            // #UD is intercepted for one reason: the other vendor's hypercall
            // instruction (a guest that chose VMCALL on AMD or VMMCALL on Intel) is
            // served like the native one. Anything else gets its #UD.
            if is_hypercall_instruction(domain, &state) {
                backend.advance_rip(HYPERCALL_INSTRUCTION_LENGTH);
                return hypercall(domain, vcpu, backend, gprs, &state);
            }
            backend.inject(Injection::Exception { vector: VECTOR_UD, error_code: None });
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

/// VMCALL (0f 01 c1) and VMMCALL (0f 01 d9) are both three bytes.
const HYPERCALL_INSTRUCTION_LENGTH: u8 = 3;

/// True if the instruction at RIP is VMCALL or VMMCALL.
fn is_hypercall_instruction(domain: &Domain, state: &GuestState) -> bool {
    let Ok((bytes, fetched)) = fetch_instruction(domain, state) else { return false };
    fetched >= 3 && matches!(bytes[..3], [0x0f, 0x01, 0xc1] | [0x0f, 0x01, 0xd9])
}

/// Runs the hypercall in the guest's registers (RIP is already past the instruction).
fn hypercall(
    domain: &Domain,
    vcpu: &Vcpu,
    backend: &mut dyn VirtualCpu,
    gprs: &mut GuestGprs,
    state: &GuestState,
) -> Disposition {
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

/// True if every vCPU that is up has halted with interrupts off.
fn every_vcpu_halted_for_good(domain: &Domain) -> bool {
    domain.vcpus.iter().all(|vcpu| {
        let control = vcpu.control.lock();
        !control.up || control.halted_for_good
    })
}

/// Emulates the instruction that touched the xAPIC page at `offset` (Linux reads the
/// APIC ID and version through it before it switches to x2APIC mode).
fn emulate_apic_access(
    domain: &Domain,
    vcpu: &Vcpu,
    backend: &mut dyn VirtualCpu,
    gprs: &mut GuestGprs,
    state: &GuestState,
    offset: u32,
) -> Disposition {
    let (bytes, fetched) = match fetch_instruction(domain, state) {
        Ok(fetched) => fetched,
        Err(FetchFailure::PagingMode) => return crash(state, "unsupported guest paging mode at a local APIC access"),
        Err(FetchFailure::Unreachable) => {
            return crash(state, "cannot fetch the instruction that touched the local APIC")
        }
    };
    let decoded = match mmio::decode_mmio(&bytes[..fetched], state.code_size(), gprs) {
        Ok(decoded) => decoded,
        Err(error) => {
            return crash(state, &format!("local APIC access by an instruction Basalt cannot emulate ({error:?})"))
        }
    };
    match decoded.access {
        mmio::MmioAccess::Read { size, .. } => {
            let value = vcpu.lapic.lock().read_mmio_sized(offset, size);
            mmio::complete_read(&decoded, gprs, value);
        }
        mmio::MmioAccess::Write { size, value } => {
            let action = vcpu.lapic.lock().write_mmio_sized(offset, size, value);
            apply_apic_action(domain, vcpu, action);
        }
    }
    backend.advance_rip(decoded.length);
    Disposition::Continue
}

/// Delivers an IPI a vCPU sent through its local APIC to the domain's vCPUs:
/// fixed vectors into their IRRs, INIT and start-up IPIs to the vCPU start machinery
/// (SDM vol. 3 §9.4.4: INIT resets the APIC and waits for a start-up IPI, whose
/// vector is the real-mode start page). NMIs, SMIs and lowest-priority arbitration
/// beyond "first target" are not emulated.
fn apply_apic_action(domain: &Domain, sender: &Vcpu, action: vlapic::ApicAction) {
    let vlapic::ApicAction::Ipi(request) = action else { return };
    let sender_id = sender.lapic.lock().id();
    let mut delivered_lowest = false;
    for target in &domain.vcpus {
        // The sender's own APIC is locked only inside is_ipi_target/accept below.
        let is_target = target.lapic.lock().is_ipi_target(&request, sender_id);
        if !is_target {
            continue;
        }
        match request.delivery {
            vlapic::DeliveryMode::Fixed | vlapic::DeliveryMode::LowestPriority => {
                if request.delivery == vlapic::DeliveryMode::LowestPriority {
                    if delivered_lowest {
                        continue;
                    }
                    delivered_lowest = true;
                }
                if target.lapic.lock().accept_interrupt(request.vector, request.trigger_level) {
                    crate::domain::xen::kick(domain, target);
                }
            }
            vlapic::DeliveryMode::Init if target.id != sender.id => {
                target.lapic.lock().reset();
                let mut control = target.control.lock();
                control.up = false;
                control.halted_for_good = false;
                control.waiting_for_sipi = true;
                drop(control);
                let key = VcpuKey { domain: domain.id, vcpu: target.id };
                let _ = run::with_scheduler(|scheduler| scheduler.set_online(key, false));
            }
            vlapic::DeliveryMode::StartUp if target.id != sender.id => {
                let mut control = target.control.lock();
                if !control.waiting_for_sipi {
                    continue;
                }
                control.waiting_for_sipi = false;
                control.pending_start = Some(super::StartState::StartupIpi { vector: request.vector });
                control.initialised = true;
                control.up = true;
                drop(control);
                let key = VcpuKey { domain: domain.id, vcpu: target.id };
                let _ = run::with_scheduler(|scheduler| scheduler.set_online(key, true));
                xen::reassert_upcall(domain, target.id);
                crate::domain::xen::kick(domain, target);
            }
            _ => {}
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
        let key = VcpuKey { domain: self.domain.id, vcpu: self.vcpu.id };
        if deadline_ns.is_some_and(|deadline| deadline <= crate::cpu::time::uptime_ns()) {
            // A deadline already past fires now (Linux BUG()s on an error instead).
            self.vcpu.control.lock().timer_deadline_ns = None;
            run::set_timer(key, None);
            xen::raise_virq(self.domain, self.vcpu.id, basalt_xen_abi::event_channel::VIRQ_TIMER);
            return;
        }
        self.vcpu.control.lock().timer_deadline_ns = deadline_ns;
        run::set_timer(key, deadline_ns);
    }
    fn now_ns(&self) -> u64 {
        crate::cpu::time::uptime_ns()
    }
    fn map_shared_info(&mut self, gfn: u64) -> Result<(), i64> {
        xen::map_shared_info(self.domain, gfn)
    }
    fn map_grant_frame(&mut self, index: u32, gfn: u64) -> Result<(), i64> {
        xen::map_grant_frame(self.domain, index, gfn)
    }
    fn register_vcpu_info(&mut self, vcpu: u32, gpa: u64) -> Result<(), i64> {
        xen::register_vcpu_info(self.domain, vcpu, gpa)
    }
    fn register_runstate_area(&mut self, vcpu: u32, gva: u64) -> Result<(), i64> {
        let state = self.domain.xen.lock().vcpus.get(vcpu as usize).cloned();
        let Some(_) = state else { return Err(basalt_xen_abi::errno::ENOENT) };
        if vcpu == self.vcpu.id && gva != 0 {
            // `vcpu_runstate_info`: running since now, no time in other states. Written
            // once; Basalt does not account steal time.
            let mut record = [0u8; 48];
            let now = crate::cpu::time::uptime_ns();
            record[8..16].copy_from_slice(&now.to_le_bytes());
            record[16..24].copy_from_slice(&now.to_le_bytes());
            self.copy_to_guest(gva, &record).map_err(|GuestFault| basalt_xen_abi::errno::EFAULT)?;
        }
        if let Some(state) = self.domain.xen.lock().vcpus.get_mut(vcpu as usize) {
            state.runstate_gva = (gva != 0).then_some(gva);
        }
        Ok(())
    }
    fn event_channel(&mut self, op: EventChannelOp) -> Result<EventChannelReply, i64> {
        xen::event_channel_op(self.domain, op)
    }
    fn grant_table(&mut self, op: GrantTableOp) -> Result<GrantTableReply, i64> {
        xen::grant_table_op(self.domain, op)
    }
    fn hvm_param(&mut self, index: u32) -> Result<u64, i64> {
        xen::hvm_param(self.domain, index)
    }
    fn set_hvm_param(&mut self, index: u32, value: u64) -> Result<(), i64> {
        xen::set_hvm_param(self.domain, index, value)
    }
    fn set_upcall_vector(&mut self, vcpu: u32, vector: u8) -> Result<(), i64> {
        xen::set_upcall_vector(self.domain, vcpu, vector)
    }
}
