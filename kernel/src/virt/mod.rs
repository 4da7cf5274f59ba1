//! Virtualization: the one interface between vendor backends (AMD SVM now, Intel VMX
//! next) and everything above them, plus the vendor-neutral pieces exit handling uses.
//!
//! The contract (DESIGN.md decision 3): a backend knows its control structure (VMCB or
//! VMCS), its exit codes and its nested-page-table entry format. It turns every exit into
//! one [`Exit`] value — vendor detail stays in `Exit::vendor_code` for the log — and
//! offers the handful of operations in [`VirtualCpu`]. What an exit *means* (CPUID
//! policy, MSRs, hypercalls, HLT, nested page faults, containment) is decided once, in
//! `exit` (hardware side) over the portable `xen` and `guest_paging` modules.
//!
//! Call order for one vCPU: [`VirtualCpu::set_start_state`] once (or again when the
//! guest re-initialises it), then repeatedly [`VirtualCpu::run`] → handle the exit →
//! maybe [`VirtualCpu::advance_rip`] / [`VirtualCpu::inject`] → `run` again. A vCPU
//! runs on one physical CPU at a time; moving it between CPUs is allowed between runs
//! (the backend re-validates its TLB tag then).
/// Assembly loading every [`GuestGprs`] register but RAX (and RSP) from the structure
/// RAX points at: the one place the world-switch code of both backends spells out the
/// structure's layout.
#[cfg(target_os = "none")]
macro_rules! load_guest_gprs_from_rax {
    () => {
        "mov rcx, [rax + 8]\n mov rdx, [rax + 16]\n mov rbx, [rax + 24]\n mov rbp, [rax + 40]\n \
         mov rsi, [rax + 48]\n mov rdi, [rax + 56]\n mov r8, [rax + 64]\n mov r9, [rax + 72]\n \
         mov r10, [rax + 80]\n mov r11, [rax + 88]\n mov r12, [rax + 96]\n mov r13, [rax + 104]\n \
         mov r14, [rax + 112]\n mov r15, [rax + 120]"
    };
}

/// Assembly storing every [`GuestGprs`] register but RAX (and RSP) into the structure
/// RAX points at.
#[cfg(target_os = "none")]
macro_rules! store_guest_gprs_to_rax {
    () => {
        "mov [rax + 8], rcx\n mov [rax + 16], rdx\n mov [rax + 24], rbx\n mov [rax + 40], rbp\n \
         mov [rax + 48], rsi\n mov [rax + 56], rdi\n mov [rax + 64], r8\n mov [rax + 72], r9\n \
         mov [rax + 80], r10\n mov [rax + 88], r11\n mov [rax + 96], r12\n mov [rax + 104], r13\n \
         mov [rax + 112], r14\n mov [rax + 120], r15"
    };
}

pub mod decode;
pub mod guest_paging;
pub mod mmio;
pub mod nested_paging;
pub mod vlapic;

#[cfg(target_os = "none")]
pub mod exit;
#[cfg(target_os = "none")]
pub mod svm;
#[cfg(target_os = "none")]
pub mod vmx;

use basalt_xen_abi::vcpu::{VcpuHvmX86_32, VcpuHvmX86_64};

/// The general-purpose registers the backends save and restore around a guest run
/// (RSP and RIP live in the control structure and are reached through
/// [`VirtualCpu::state`]). Layout is fixed: the vendor assembly indexes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct GuestGprs {
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rbx: u64,
    pub rsp_unused: u64,
    pub rbp: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

/// The architectural state exit handling reads: paging mode, code size, where the
/// guest is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestState {
    pub rip: u64,
    pub rsp: u64,
    pub rflags: u64,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub cs_selector: u16,
    pub cs_base: u64,
    /// CS.L (64-bit code segment).
    pub cs_long: bool,
    /// CS.D/B (32-bit default operand size).
    pub cs_default_big: bool,
    /// Current privilege level.
    pub cpl: u8,
}

impl GuestState {
    /// The code size instructions at RIP execute with.
    pub fn code_size(&self) -> decode::CodeSize {
        const EFER_LMA: u64 = 1 << 10;
        const CR0_PE: u64 = 1;
        if self.efer & EFER_LMA != 0 && self.cs_long {
            decode::CodeSize::Bits64
        } else if self.cr0 & CR0_PE != 0 && self.cs_default_big {
            decode::CodeSize::Bits32
        } else {
            decode::CodeSize::Bits16
        }
    }

    /// True if the vCPU executes 64-bit code (hypercall arguments in RDI, RSI, ...).
    pub fn is_64bit(&self) -> bool {
        self.code_size() == decode::CodeSize::Bits64
    }
}

/// Why the guest stopped running, vendor-neutral.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// A physical interrupt arrived for the host (the time slice may be over).
    ExternalInterrupt,
    Cpuid,
    Rdmsr,
    Wrmsr,
    Hlt,
    /// VMMCALL (AMD) or VMCALL (Intel): a Xen hypercall.
    Hypercall,
    /// An intercepted port access. `next_rip` is known when the hardware says so.
    Io {
        port: u16,
        size: u8,
        write: bool,
        string: bool,
        rep: bool,
    },
    /// Guest-physical access with no (or too little) nested mapping.
    NestedPageFault {
        gpa: u64,
        write: bool,
        fetch: bool,
    },
    /// The guest triple-faulted (SVM SHUTDOWN, VMX triple-fault exit).
    TripleFault,
    /// An instruction the guest may not use (virtualization instructions, MONITOR,
    /// XSETBV, ...): it gets #UD.
    UndefinedInstruction,
    /// PAUSE (spin-loop hint), if intercepted.
    Pause,
    /// INVD or WBINVD: nothing to do beyond skipping it.
    CacheFlush,
    /// An intercepted exception with its vector.
    Exception {
        vector: u8,
        error_code: Option<u32>,
    },
    /// The guest can take an external interrupt now (requested with
    /// [`VirtualCpu::request_interrupt_window`]).
    InterruptWindow,
    /// The hardware refused to enter the guest (bad state); the domain must crash.
    EntryFailed,
    /// Anything else; the domain crashes with the vendor code in the message.
    Unhandled,
}

/// One VM exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub reason: ExitReason,
    /// The vendor's raw exit code, for log lines.
    pub vendor_code: u64,
    /// Length of the intercepted instruction when the hardware reported it (nRIP save,
    /// VMX instruction length, SVM IOIO's next RIP); `None` means decode it.
    pub instruction_length: Option<u8>,
}

/// An event to deliver into the guest at the next entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injection {
    /// A hardware exception, e.g. #GP (13) with error code 0, #UD (6) without.
    Exception { vector: u8, error_code: Option<u32> },
    /// An external interrupt vector (the guest's event-channel upcall, later).
    Interrupt { vector: u8 },
}

/// #UD.
pub const VECTOR_UD: u8 = 6;
/// #GP.
pub const VECTOR_GP: u8 = 13;

/// How a vCPU starts: Xen's `vcpu_hvm_context` register sets (hvm/hvm_vcpu.h), which
/// are also what the PVH boot of vCPU 0 uses (32-bit flat, paging off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartState {
    Protected32(VcpuHvmX86_32),
    Long64(VcpuHvmX86_64),
    /// Real mode after INIT and a start-up IPI with `vector`: CS = vector << 8,
    /// CS.base = vector << 12, IP = 0 (SDM vol. 3 §9.4.4), everything else at its
    /// reset value.
    StartupIpi {
        vector: u8,
    },
}

/// Real-mode code segment a start-up IPI with `vector` gives: (selector, base).
pub fn startup_ipi_code_segment(vector: u8) -> (u16, u64) {
    (u16::from(vector) << 8, u64::from(vector) << 12)
}

impl StartState {
    /// PVH entry (Xen's docs/misc/pvh.pandoc): 32-bit flat protected mode, paging off,
    /// CS/DS/ES/SS flat 4 GiB, %ebx = start info, everything else zero.
    pub fn pvh_entry(entry: u32, start_info: u32) -> StartState {
        const FLAT_CODE_AR: u16 = 0xc09b;
        const FLAT_DATA_AR: u16 = 0xc093;
        const TSS_AR: u16 = 0x008b;
        StartState::Protected32(VcpuHvmX86_32 {
            ebx: start_info,
            eip: entry,
            eflags: 0x2,
            cr0: 0x11,
            cs_limit: 0xffff_ffff,
            ds_limit: 0xffff_ffff,
            ss_limit: 0xffff_ffff,
            es_limit: 0xffff_ffff,
            tr_limit: 0x67,
            cs_ar: FLAT_CODE_AR,
            ds_ar: FLAT_DATA_AR,
            ss_ar: FLAT_DATA_AR,
            es_ar: FLAT_DATA_AR,
            tr_ar: TSS_AR,
            ..VcpuHvmX86_32::default()
        })
    }
}

impl StartState {
    /// The architectural rules every backend enforces before loading a start state
    /// (a guest's VCPUOP_initialise context is untrusted): paging needs protection,
    /// long mode needs paging, PAE and EFER.LME, a 32-bit state has no EFER.LME, and
    /// EFER has no reserved bits set.
    pub fn validate(&self) -> Result<(), VirtError> {
        const CR0_PE: u64 = 1;
        const CR0_PG: u64 = 1 << 31;
        const CR4_PAE: u64 = 1 << 5;
        const EFER_LME: u64 = 1 << 8;
        match self {
            StartState::Protected32(regs) => {
                let cr0 = u64::from(regs.cr0);
                if cr0 & CR0_PG != 0 && cr0 & CR0_PE == 0 {
                    return Err(VirtError::InvalidState("CR0.PG without CR0.PE"));
                }
                if regs.efer & EFER_LME != 0 {
                    return Err(VirtError::InvalidState("EFER.LME in a 32-bit start state"));
                }
                check_guest_efer(regs.efer).map_err(|_| VirtError::InvalidState("reserved EFER bits"))
            }
            StartState::Long64(regs) => {
                if regs.cr0 & (CR0_PG | CR0_PE) != CR0_PG | CR0_PE
                    || regs.cr4 & CR4_PAE == 0
                    || regs.efer & EFER_LME == 0
                {
                    return Err(VirtError::InvalidState("64-bit start needs CR0.PG/PE, CR4.PAE and EFER.LME"));
                }
                check_guest_efer(regs.efer).map_err(|_| VirtError::InvalidState("reserved EFER bits"))
            }
            StartState::StartupIpi { .. } => Ok(()),
        }
    }
}

/// EFER bits a guest may own: SCE, LME, LMA, NXE (APM vol. 2 §3.1.7); the rest are
/// reserved, or the virtualization extension's, which the guest never sees.
pub fn check_guest_efer(value: u64) -> Result<(), ReservedBitsSet> {
    const GUEST_BITS: u64 = (1 << 0) | (1 << 8) | (1 << 10) | (1 << 11);
    if value & !GUEST_BITS == 0 {
        Ok(())
    } else {
        Err(ReservedBitsSet)
    }
}

/// Why a backend could not do what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtError {
    /// The CPU lacks the extension (or nested paging).
    Unsupported(&'static str),
    /// Firmware disabled it (SVM: VM_CR.SVMDIS; VMX: the feature-control lock).
    DisabledByFirmware,
    /// No memory for a control structure.
    OutOfMemory,
    /// The start state violates an architectural rule.
    InvalidState(&'static str),
}

impl core::fmt::Display for VirtError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VirtError::Unsupported(what) => write!(formatter, "{what} not supported by this CPU"),
            VirtError::DisabledByFirmware => formatter.write_str("virtualization disabled by the firmware"),
            VirtError::OutOfMemory => formatter.write_str("out of memory for virtualization structures"),
            VirtError::InvalidState(why) => write!(formatter, "invalid vCPU state: {why}"),
        }
    }
}

/// One vCPU's vendor state. See the module documentation for the call order.
pub trait VirtualCpu: Send {
    /// Loads a start state (registers, segments, control registers).
    fn set_start_state(&mut self, state: &StartState) -> Result<(), VirtError>;
    /// Runs the guest on the calling CPU until the next exit. `gprs` is loaded before
    /// entry and saved after exit. Interrupts are held off during the switch and taken
    /// by the host right after the exit.
    fn run(&mut self, gprs: &mut GuestGprs) -> Exit;
    /// The state exit handling reads.
    fn state(&self) -> GuestState;
    /// Steps RIP past an emulated instruction of `length` bytes (and clears the
    /// interrupt shadow, as completing an instruction does).
    fn advance_rip(&mut self, length: u8);
    /// Queues an event for the next entry.
    fn inject(&mut self, event: Injection);
    /// True if an external interrupt injected now would be taken at entry: RFLAGS.IF
    /// is set, no STI/MOV SS shadow, and no other event is queued.
    fn interrupt_window_open(&mut self) -> bool;
    /// Asks for an [`ExitReason::InterruptWindow`] exit as soon as the guest can take an
    /// interrupt (`true`), or stops asking (`false`).
    fn request_interrupt_window(&mut self, enable: bool);
    /// Guest EFER as the guest should see it (vendor-owned bits hidden).
    fn guest_efer(&self) -> u64;
    /// Writes guest EFER (the backend keeps its own required bits); `Err` means #GP.
    fn set_guest_efer(&mut self, value: u64) -> Result<(), ReservedBitsSet>;
    /// Sets the guest's PAT (IA32_PAT as the guest wrote it; the policy layer validated it).
    fn set_guest_pat(&mut self, pat: u64);
    /// Drops every cached translation of this vCPU's guest (after the nested page
    /// table lost a mapping).
    fn flush_guest_tlb(&mut self);
    /// Extra facts about the last exit, for the crash line (vendor code, qualifiers).
    fn exit_detail(&self) -> (u64, u64, u64);
    /// Why the last entry failed, in the vendor's terms, for the crash line.
    fn entry_failure(&self) -> alloc::string::String {
        let (code, info1, info2) = self.exit_detail();
        alloc::format!("exit {code:#x} ({info1:#x}, {info2:#x})")
    }
    /// The time slice ends: afterwards the vCPU may run on another CPU (VMX writes its
    /// VMCS back and saves the MSRs it switches by hand; SVM has nothing to do).
    fn end_slice(&mut self) {}
}

/// A control-register or MSR write set bits the architecture reserves (the guest gets
/// #GP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservedBitsSet;

/// The virtualization extension picked at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extension {
    AmdSvm,
    IntelVmx,
}

static EXTENSION: spin::Once<Extension> = spin::Once::new();

/// Records the extension this machine runs guests with (once, at boot).
pub fn set_extension(extension: Extension) {
    EXTENSION.call_once(|| extension);
}

/// The extension guests run with, if any.
pub fn extension() -> Option<Extension> {
    EXTENSION.get().copied()
}

/// Turns the chosen extension on for the calling CPU.
#[cfg(target_os = "none")]
pub fn enable_this_cpu() -> Result<(), VirtError> {
    match extension() {
        Some(Extension::AmdSvm) => svm::enable_this_cpu(),
        Some(Extension::IntelVmx) => vmx::enable_this_cpu(),
        None => Err(VirtError::Unsupported("hardware virtualization")),
    }
}

/// True once the chosen extension is on for CPU `index`.
#[cfg(target_os = "none")]
pub fn is_enabled_on(index: u32) -> bool {
    match extension() {
        Some(Extension::AmdSvm) => svm::is_enabled_on(index),
        Some(Extension::IntelVmx) => vmx::is_enabled_on(index),
        None => false,
    }
}

/// A vCPU of the chosen extension over the nested page table at `root`, and that
/// table's entry format.
#[cfg(target_os = "none")]
pub fn new_vcpu(root: u64) -> Result<alloc::boxed::Box<dyn VirtualCpu>, VirtError> {
    match extension() {
        Some(Extension::AmdSvm) => Ok(alloc::boxed::Box::new(svm::SvmVcpu::new(root)?)),
        Some(Extension::IntelVmx) => Ok(alloc::boxed::Box::new(vmx::VmxVcpu::new(root)?)),
        None => Err(VirtError::Unsupported("hardware virtualization")),
    }
}

/// The nested page table format of the chosen extension.
pub fn nested_format() -> nested_paging::EntryFormat {
    match extension() {
        Some(Extension::IntelVmx) => nested_paging::EPT_FORMAT,
        _ => nested_paging::NPT_FORMAT,
    }
}

impl Extension {
    pub fn name(self) -> &'static str {
        match self {
            Extension::AmdSvm => "AMD SVM with nested paging",
            Extension::IntelVmx => "Intel VMX with EPT",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvh_entry_is_a_valid_flat_32_bit_state() {
        let state = StartState::pvh_entry(0x10_0000, 0x20_0000);
        assert_eq!(state.validate(), Ok(()));
        let StartState::Protected32(regs) = state else { panic!("PVH starts in 32-bit mode") };
        assert_eq!((regs.eip, regs.ebx, regs.cr0 & 0x8000_0001), (0x10_0000, 0x20_0000, 1));
    }

    #[test]
    fn guest_supplied_start_states_are_checked() {
        let paging_without_protection =
            StartState::Protected32(VcpuHvmX86_32 { cr0: 0x8000_0000, ..VcpuHvmX86_32::default() });
        assert!(paging_without_protection.validate().is_err());
        let long_mode_in_32_bit = StartState::Protected32(VcpuHvmX86_32 { efer: 1 << 8, ..VcpuHvmX86_32::default() });
        assert!(long_mode_in_32_bit.validate().is_err());
        let long =
            VcpuHvmX86_64 { cr0: 0x8000_0011, cr4: 1 << 5, efer: (1 << 8) | (1 << 10), ..VcpuHvmX86_64::default() };
        assert_eq!(StartState::Long64(long).validate(), Ok(()));
        assert!(StartState::Long64(VcpuHvmX86_64 { cr4: 0, ..long }).validate().is_err());
        assert!(StartState::Long64(VcpuHvmX86_64 { efer: (1 << 8) | (1 << 12), ..long }).validate().is_err());
    }

    #[test]
    fn efer_reserved_bits_are_refused() {
        assert_eq!(check_guest_efer(0xd01), Ok(()));
        assert_eq!(check_guest_efer(1 << 12), Err(ReservedBitsSet));
        assert_eq!(check_guest_efer(1 << 63), Err(ReservedBitsSet));
    }
}
