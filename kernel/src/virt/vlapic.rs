//! One vCPU's emulated local APIC: the xAPIC MMIO page and the x2APIC MSRs over one
//! register model, interrupt acceptance and priority, EOI, and the IPIs a guest sends
//! through its ICR.
//!
//! Why: a Linux 6.1 PVH guest still programs its local APIC (pvh-abi.md §5): it sets up
//! TPR, SVR, LDR/DFR, ESR and the LVTs, drains IRR/ISR with EOIs, EOIs every vector the
//! LAPIC delivered (the Xen upcall vector included), and sends INIT/SIPI, NMI,
//! REBOOT_VECTOR and irq_work self-IPIs through the ICR. This module is that device's
//! state and rules, portable and host-tested; it touches no hardware. Exit handling owns
//! the glue: it routes the [`IpiRequest`]s a write returns (see
//! [`VirtualLapic::is_ipi_target`]) and, before every guest entry, injects
//! [`VirtualLapic::pending_interrupt`] and [`VirtualLapic::acknowledge`]s it.
//!
//! Specification: Intel SDM vol. 3A chapter 10 "Advanced Programmable Interrupt
//! Controller (APIC)" (chapter 11 in recent editions; the section numbers below are
//! chapter 10's): §10.4.4 IA32_APIC_BASE, §10.4.7 enabling and software disabling,
//! §10.5.1 LVT, §10.5.3 ESR, §10.5.4 timer, §10.6.1 ICR, §10.6.2 destinations, §10.8.3.1
//! TPR/PPR, §10.8.4 IRR/ISR/TMR, §10.8.5 EOI, §10.9 SVR, §10.12 x2APIC (Table 10-6 the
//! MSR map, §10.12.5 state transitions, §10.12.10 logical IDs, §10.12.11 SELF IPI);
//! AMD APM vol. 2 chapter 16. What a hypervisor emulates and how strictly follows Xen's
//! `xen/arch/x86/hvm/vlapic.c`.
//!
//! Invariants and deliberate choices:
//! - The version register is Xen's 0x00050014 (version 0x14, max LVT entry 5): six LVT
//!   entries (timer, thermal, performance counter, LINT0, LINT1, error), so **no LVT
//!   CMCI** (x2APIC 0x82f is #GP, xAPIC 0x2f0 reads 0) and no EOI-broadcast suppression
//!   (SVR bit 12 is reserved).
//! - The APIC base never moves: IA32_APIC_BASE writes with a base other than 0xfee00000
//!   are #GP (as Xen in xAPIC mode; here in every mode, since Linux rewrites the base it
//!   read). Whether x2APIC is offered at all is the CPUID policy's business: the caller
//!   refuses EXTD before calling [`VirtualLapic::write_apic_base`] if it hides x2APIC.
//! - The APIC ID is fixed at creation (xAPIC ID writes are ignored), so it always matches
//!   the MADT and CPUID (pvh-abi.md §5.2).
//! - ICR delivery status (bit 12) always reads 0, "idle": IPIs are handed to the caller
//!   synchronously. LVT delivery status and LINT remote IRR read 0 as well.
//! - No timer: the initial count and divide configuration are stored, the current count
//!   reads 0 (Linux PVH uses Xen's VIRQ_TIMER, pvh-abi.md §5.1), TSC-deadline mode is not
//!   offered (LVT timer bit 18 is dropped).
//! - xAPIC MMIO is lenient like hardware: reserved bits are dropped, writes to read-only
//!   registers and accesses to absent ones are ignored (reads give 0). The ESR's "illegal
//!   register address" bit is not modelled. x2APIC MSRs are strict like the SDM: an
//!   absent register, a write to a read-only one, a read of a write-only one or a write
//!   with reserved bits set is an [`ApicFault`] (#GP). The only lenience there: the LVT
//!   delivery-status bit and the timer's TSC-deadline bit are accepted and dropped.
//! - In x2APIC mode, and with the APIC hardware-disabled, the MMIO page reads 0 and
//!   ignores writes (Xen passes such accesses to its null handler).
//! - Interrupt acceptance does not depend on the software enable: a vector accepted
//!   while SVR bit 8 is clear waits in IRR ("held", §10.4.7.2) and
//!   [`VirtualLapic::pending_interrupt`] offers nothing until the guest enables its APIC.
//!   A hardware-disabled APIC accepts nothing.
//! - Errors (§10.5.3) accumulate in a hidden register; a write to the ESR latches them
//!   into the visible one. A new error raises the LVT error vector if that entry is
//!   unmasked.
//! - After any write (TPR lowered, EOI, SVR enabled, an error interrupt raised) the
//!   deliverable interrupt may change: the caller evaluates
//!   [`VirtualLapic::pending_interrupt`] before every entry rather than on a signal.
#![forbid(unsafe_code)]

/// IA32_APIC_BASE's MSR index.
pub const MSR_IA32_APIC_BASE: u32 = 0x1b;
/// The first and last MSR of the x2APIC register space (SDM Table 10-6).
pub const MSR_X2APIC_FIRST: u32 = 0x800;
pub const MSR_X2APIC_LAST: u32 = 0x8ff;
/// Where the xAPIC page is, and the only place it may be.
pub const APIC_DEFAULT_PHYS_BASE: u64 = 0xfee0_0000;
/// Size of the xAPIC MMIO page.
pub const APIC_PAGE_SIZE: u32 = 0x1000;
/// The version register: version 0x14 (integrated APIC), max LVT entry 5, no directed
/// EOI (Xen's VLAPIC_VERSION).
pub const APIC_VERSION: u32 = 0x0005_0014;

/// IA32_APIC_BASE.BSP: this processor is the bootstrap processor.
pub const APIC_BASE_BSP: u64 = 1 << 8;
/// IA32_APIC_BASE.EXTD: x2APIC mode.
pub const APIC_BASE_EXTD: u64 = 1 << 10;
/// IA32_APIC_BASE.EN: the APIC is globally (hardware) enabled.
pub const APIC_BASE_ENABLE: u64 = 1 << 11;

/// ESR: a sent IPI had a vector below 16.
pub const APIC_ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
/// ESR: an accepted interrupt had a vector below 16.
pub const APIC_ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;

/// SVR bit 8: APIC software enable.
pub const APIC_SVR_ENABLE: u32 = 1 << 8;
/// LVT bit 16: the entry is masked.
pub const APIC_LVT_MASKED: u32 = 1 << 16;

/// xAPIC register offsets in the MMIO page (SDM Table 10-1); the x2APIC MSR of offset
/// `o` is `0x800 + (o >> 4)` (Table 10-6).
pub const APIC_ID: u32 = 0x020;
pub const APIC_LVR: u32 = 0x030;
pub const APIC_TASKPRI: u32 = 0x080;
pub const APIC_ARBPRI: u32 = 0x090;
pub const APIC_PROCPRI: u32 = 0x0a0;
pub const APIC_EOI: u32 = 0x0b0;
pub const APIC_RRD: u32 = 0x0c0;
pub const APIC_LDR: u32 = 0x0d0;
pub const APIC_DFR: u32 = 0x0e0;
pub const APIC_SPIV: u32 = 0x0f0;
pub const APIC_ISR: u32 = 0x100;
pub const APIC_TMR: u32 = 0x180;
pub const APIC_IRR: u32 = 0x200;
pub const APIC_ESR: u32 = 0x280;
pub const APIC_CMCI: u32 = 0x2f0;
pub const APIC_ICR: u32 = 0x300;
pub const APIC_ICR2: u32 = 0x310;
pub const APIC_LVTT: u32 = 0x320;
pub const APIC_LVTTHMR: u32 = 0x330;
pub const APIC_LVTPC: u32 = 0x340;
pub const APIC_LVT0: u32 = 0x350;
pub const APIC_LVT1: u32 = 0x360;
pub const APIC_LVTERR: u32 = 0x370;
pub const APIC_TMICT: u32 = 0x380;
pub const APIC_TMCCT: u32 = 0x390;
pub const APIC_TDCR: u32 = 0x3e0;
/// x2APIC only (MSR 0x83f).
pub const APIC_SELF_IPI: u32 = 0x3f0;

/// ICR fields (§10.6.1).
const ICR_VECTOR: u32 = 0xff;
const ICR_DELIVERY_MODE_SHIFT: u32 = 8;
const ICR_DESTINATION_LOGICAL: u32 = 1 << 11;
const ICR_DELIVERY_STATUS: u32 = 1 << 12;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_TRIGGER_LEVEL: u32 = 1 << 15;
const ICR_SHORTHAND_SHIFT: u32 = 18;
/// ICR low bits with a meaning: vector, delivery mode, destination mode, level, trigger
/// mode, shorthand. Bit 12 (delivery status) is read-only in xAPIC and reserved in x2APIC.
const ICR_LOW_BITS: u32 = 0x000c_cfff;
/// xAPIC ICR high: the destination in bits 31:24 (ICR bits 63:56).
const ICR2_DESTINATION: u32 = 0xff00_0000;

/// TPR/PPR/vector priority class: bits 7:4.
const PRIORITY_CLASS: u32 = 0xf0;
/// SVR bits a guest can set: spurious vector, software enable, focus processor
/// checking (bit 9, kept but meaningless here).
const SVR_BITS: u32 = 0x3ff;
/// xAPIC LDR: logical APIC ID in bits 31:24.
const LDR_LOGICAL_ID: u32 = 0xff00_0000;
/// DFR: model in bits 31:28, the rest reads as ones.
const DFR_MODEL: u32 = 0xf000_0000;
const DFR_FLAT: u32 = 0xf;
const DFR_CLUSTER: u32 = 0x0;
/// Divide configuration: bits 0, 1 and 3.
const TDCR_BITS: u32 = 0xb;

/// One LVT entry's kind, in register order (timer at 0x320 … error at 0x370).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LvtEntry {
    Timer,
    Thermal,
    PerformanceCounter,
    Lint0,
    Lint1,
    Error,
}

impl LvtEntry {
    fn index(self) -> usize {
        self as usize
    }

    /// Bits the entry stores (§10.5.1 Figure 10-8): vector and mask everywhere, delivery
    /// mode for thermal/PMC/LINT, timer mode bit 17 (periodic; TSC-deadline bit 18 is
    /// not offered), input polarity and trigger mode for LINT. Delivery status and
    /// remote IRR are read-only and read 0.
    fn stored_bits(self) -> u32 {
        const VECTOR_AND_MASK: u32 = 0xff | APIC_LVT_MASKED;
        const DELIVERY_MODE: u32 = 0x700;
        match self {
            LvtEntry::Timer => VECTOR_AND_MASK | (1 << 17),
            LvtEntry::Thermal | LvtEntry::PerformanceCounter => VECTOR_AND_MASK | DELIVERY_MODE,
            LvtEntry::Lint0 | LvtEntry::Lint1 => VECTOR_AND_MASK | DELIVERY_MODE | (1 << 13) | (1 << 15),
            LvtEntry::Error => VECTOR_AND_MASK,
        }
    }

    /// Bits an x2APIC write may set without #GP: the stored ones plus the read-only bits
    /// the entry has (delivery status; remote IRR for LINT; the timer's TSC-deadline
    /// bit), which Linux may write back after a read-modify-write.
    fn accepted_bits(self) -> u32 {
        let read_only = match self {
            LvtEntry::Timer => ICR_DELIVERY_STATUS | (1 << 18),
            LvtEntry::Lint0 | LvtEntry::Lint1 => ICR_DELIVERY_STATUS | (1 << 14),
            _ => ICR_DELIVERY_STATUS,
        };
        self.stored_bits() | read_only
    }
}

/// The registers of the APIC, decoded from an MMIO offset or an x2APIC MSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApicRegister {
    Id,
    Version,
    TaskPriority,
    ArbitrationPriority,
    ProcessorPriority,
    Eoi,
    RemoteRead,
    LogicalDestination,
    DestinationFormat,
    SpuriousVector,
    /// In-service register, 32 vectors per word.
    InService(usize),
    TriggerMode(usize),
    InterruptRequest(usize),
    ErrorStatus,
    LvtCmci,
    InterruptCommand,
    /// xAPIC ICR bits 63:32 (0x310); no x2APIC MSR.
    InterruptCommandHigh,
    Lvt(LvtEntry),
    TimerInitialCount,
    TimerCurrentCount,
    TimerDivideConfiguration,
    SelfIpi,
}

/// How one interface may touch a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    ReadWrite,
    ReadOnly,
    WriteOnly,
    Absent,
}

impl ApicRegister {
    /// The register at a 16-byte aligned offset of the APIC page.
    fn at(offset: u32) -> Option<ApicRegister> {
        let word = ((offset >> 4) & 7) as usize;
        Some(match offset {
            APIC_ID => ApicRegister::Id,
            APIC_LVR => ApicRegister::Version,
            APIC_TASKPRI => ApicRegister::TaskPriority,
            APIC_ARBPRI => ApicRegister::ArbitrationPriority,
            APIC_PROCPRI => ApicRegister::ProcessorPriority,
            APIC_EOI => ApicRegister::Eoi,
            APIC_RRD => ApicRegister::RemoteRead,
            APIC_LDR => ApicRegister::LogicalDestination,
            APIC_DFR => ApicRegister::DestinationFormat,
            APIC_SPIV => ApicRegister::SpuriousVector,
            0x100..=0x170 => ApicRegister::InService(word),
            0x180..=0x1f0 => ApicRegister::TriggerMode(word),
            0x200..=0x270 => ApicRegister::InterruptRequest(word),
            APIC_ESR => ApicRegister::ErrorStatus,
            APIC_CMCI => ApicRegister::LvtCmci,
            APIC_ICR => ApicRegister::InterruptCommand,
            APIC_ICR2 => ApicRegister::InterruptCommandHigh,
            APIC_LVTT => ApicRegister::Lvt(LvtEntry::Timer),
            APIC_LVTTHMR => ApicRegister::Lvt(LvtEntry::Thermal),
            APIC_LVTPC => ApicRegister::Lvt(LvtEntry::PerformanceCounter),
            APIC_LVT0 => ApicRegister::Lvt(LvtEntry::Lint0),
            APIC_LVT1 => ApicRegister::Lvt(LvtEntry::Lint1),
            APIC_LVTERR => ApicRegister::Lvt(LvtEntry::Error),
            APIC_TMICT => ApicRegister::TimerInitialCount,
            APIC_TMCCT => ApicRegister::TimerCurrentCount,
            APIC_TDCR => ApicRegister::TimerDivideConfiguration,
            APIC_SELF_IPI => ApicRegister::SelfIpi,
            _ => return None,
        })
    }

    /// The access table: (xAPIC MMIO, x2APIC MSR), from SDM Tables 10-1 and 10-6 with
    /// this emulation's choices (ID read-only everywhere, no CMCI).
    fn access(self) -> (Access, Access) {
        use Access::*;
        match self {
            ApicRegister::Id | ApicRegister::Version | ApicRegister::ProcessorPriority => (ReadOnly, ReadOnly),
            ApicRegister::InService(_) | ApicRegister::TriggerMode(_) | ApicRegister::InterruptRequest(_) => {
                (ReadOnly, ReadOnly)
            }
            ApicRegister::TimerCurrentCount => (ReadOnly, ReadOnly),
            ApicRegister::ArbitrationPriority | ApicRegister::RemoteRead => (ReadOnly, Absent),
            ApicRegister::Eoi => (WriteOnly, WriteOnly),
            ApicRegister::LogicalDestination => (ReadWrite, ReadOnly),
            ApicRegister::DestinationFormat | ApicRegister::InterruptCommandHigh => (ReadWrite, Absent),
            ApicRegister::TaskPriority
            | ApicRegister::SpuriousVector
            | ApicRegister::ErrorStatus
            | ApicRegister::InterruptCommand
            | ApicRegister::Lvt(_)
            | ApicRegister::TimerInitialCount
            | ApicRegister::TimerDivideConfiguration => (ReadWrite, ReadWrite),
            ApicRegister::LvtCmci => (Absent, Absent),
            ApicRegister::SelfIpi => (Absent, WriteOnly),
        }
    }

    /// Bits 31:0 an x2APIC write may set (bits 63:32 are reserved for all but the ICR).
    /// `None`: any value is fine.
    fn x2apic_accepted_bits(self) -> Option<u32> {
        match self {
            ApicRegister::TaskPriority | ApicRegister::SelfIpi => Some(0xff),
            ApicRegister::SpuriousVector => Some(SVR_BITS),
            // EOI and ESR take only 0 in x2APIC mode (§10.12.1.2).
            ApicRegister::Eoi | ApicRegister::ErrorStatus => Some(0),
            ApicRegister::InterruptCommand => Some(ICR_LOW_BITS),
            ApicRegister::Lvt(entry) => Some(entry.accepted_bits()),
            ApicRegister::TimerDivideConfiguration => Some(TDCR_BITS),
            _ => None,
        }
    }
}

/// The APIC's operating mode, from IA32_APIC_BASE's EN and EXTD bits (§10.12.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApicMode {
    /// EN = 0: hardware-disabled; no MMIO, no MSRs, no interrupts.
    Disabled,
    /// EN = 1, EXTD = 0: the MMIO page at 0xfee00000.
    XApic,
    /// EN = 1, EXTD = 1: MSRs 0x800–0x8ff.
    X2Apic,
}

/// Why an IA32_APIC_BASE or x2APIC MSR access faults. Every variant means #GP(0) to the
/// guest; the variant is for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApicFault {
    /// An x2APIC MSR while the APIC is not in x2APIC mode.
    NotX2apicMode { msr: u32 },
    /// No x2APIC register at this MSR.
    NoSuchRegister { msr: u32 },
    /// A write to a read-only register.
    ReadOnly { msr: u32 },
    /// A read of a write-only register (EOI, SELF IPI).
    WriteOnly { msr: u32 },
    /// A write setting reserved bits.
    ReservedBits { msr: u32, value: u64 },
    /// An IA32_APIC_BASE write asking for a transition §10.12.5 forbids (x2APIC →
    /// xAPIC, disabled → x2APIC, EXTD without EN).
    IllegalTransition { from: ApicMode, value: u64 },
    /// An IA32_APIC_BASE write moving the APIC page, which Basalt does not emulate.
    Relocation { value: u64 },
}

impl core::fmt::Display for ApicFault {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ApicFault::NotX2apicMode { msr } => write!(formatter, "x2APIC MSR {msr:#x} outside x2APIC mode"),
            ApicFault::NoSuchRegister { msr } => write!(formatter, "no x2APIC register at MSR {msr:#x}"),
            ApicFault::ReadOnly { msr } => write!(formatter, "write to read-only x2APIC MSR {msr:#x}"),
            ApicFault::WriteOnly { msr } => write!(formatter, "read of write-only x2APIC MSR {msr:#x}"),
            ApicFault::ReservedBits { msr, value } => {
                write!(formatter, "reserved bits in MSR {msr:#x} write {value:#x}")
            }
            ApicFault::IllegalTransition { from, value } => {
                write!(formatter, "illegal APIC mode change from {from:?} with IA32_APIC_BASE {value:#x}")
            }
            ApicFault::Relocation { value } => {
                write!(formatter, "APIC base relocation not supported (IA32_APIC_BASE {value:#x})")
            }
        }
    }
}

/// How an IPI is delivered (ICR bits 10:8, §10.6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    Fixed,
    LowestPriority,
    Smi,
    Nmi,
    /// INIT, level assert (or edge).
    Init,
    /// INIT with level 0 and trigger mode level: "INIT level de-assert", a no-op on
    /// every APIC since the Pentium 4 (Linux still sends it before SIPI).
    InitDeassert,
    /// Start-up IPI: `vector` is the real-mode start page number.
    StartUp,
}

/// Where an IPI goes. `Physical` and `Logical` hold the destination field in the
/// sender's format: 8 bits in xAPIC mode, 32 bits in x2APIC mode (see
/// [`IpiRequest::x2apic_destination`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Physical(u32),
    Logical(u32),
    SelfOnly,
    AllIncludingSelf,
    AllExcludingSelf,
}

/// An IPI the guest asked for. The sender's APIC is done with it (delivery status is
/// idle); the caller finds the targets with [`VirtualLapic::is_ipi_target`] and delivers:
/// Fixed → [`VirtualLapic::accept_interrupt`]; LowestPriority → the same, to one of the
/// targets; NMI → the vCPU's NMI; INIT/StartUp → the vCPU start machinery;
/// InitDeassert and SMI → nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpiRequest {
    pub vector: u8,
    pub delivery: DeliveryMode,
    pub destination: Destination,
    /// ICR bit 14 (level: assert).
    pub level_assert: bool,
    /// ICR bit 15 (trigger mode: level).
    pub trigger_level: bool,
    /// The destination field is x2APIC's (32-bit, broadcast 0xffffffff) rather than
    /// xAPIC's (8-bit, broadcast 0xff): the sender was in x2APIC mode.
    pub x2apic_destination: bool,
}

/// What a register write asks of the caller.
#[must_use = "an IPI the guest sent must be delivered"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApicAction {
    None,
    Ipi(IpiRequest),
}

/// One vCPU's local APIC. See the module documentation for the rules it follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualLapic {
    /// The APIC ID (x2APIC: all 32 bits; xAPIC: bits 7:0 are the ID register's 31:24).
    apic_id: u32,
    mode: ApicMode,
    /// IA32_APIC_BASE as the guest reads it.
    apic_base_msr: u64,
    /// TPR bits 7:0.
    tpr: u32,
    svr: u32,
    /// xAPIC LDR (bits 31:24); in x2APIC mode the LDR is derived from the ID instead.
    ldr: u32,
    dfr: u32,
    /// The ESR as the guest reads it: what the last ESR write latched.
    esr: u32,
    /// Errors since the last ESR write.
    pending_esr: u32,
    /// ICR: low half as written (minus delivery status), high half the destination
    /// (xAPIC: only bits 63:56 are kept).
    icr: u64,
    lvt: [u32; 6],
    timer_initial_count: u32,
    timer_divide_configuration: u32,
    irr: [u32; 8],
    isr: [u32; 8],
    tmr: [u32; 8],
}

impl VirtualLapic {
    /// The APIC of a vCPU at power-up: enabled in xAPIC mode at 0xfee00000, BSP flag for
    /// the boot vCPU, software-disabled (SVR 0xff), every LVT masked (§10.4.7.1).
    pub fn new(apic_id: u32, bsp: bool) -> Self {
        let mut lapic = VirtualLapic {
            apic_id,
            mode: ApicMode::XApic,
            apic_base_msr: APIC_DEFAULT_PHYS_BASE | APIC_BASE_ENABLE | if bsp { APIC_BASE_BSP } else { 0 },
            tpr: 0,
            svr: 0,
            ldr: 0,
            dfr: 0,
            esr: 0,
            pending_esr: 0,
            icr: 0,
            lvt: [0; 6],
            timer_initial_count: 0,
            timer_divide_configuration: 0,
            irr: [0; 8],
            isr: [0; 8],
            tmr: [0; 8],
        };
        lapic.reset();
        lapic
    }

    /// INIT (§10.4.7.3): every register back to its power-up value except the APIC ID
    /// and IA32_APIC_BASE, so the mode (x2APIC included) survives.
    pub fn reset(&mut self) {
        self.tpr = 0;
        self.svr = 0xff;
        self.ldr = 0;
        self.dfr = 0xffff_ffff;
        self.esr = 0;
        self.pending_esr = 0;
        self.icr = 0;
        self.lvt = [APIC_LVT_MASKED; 6];
        self.timer_initial_count = 0;
        self.timer_divide_configuration = 0;
        self.irr = [0; 8];
        self.isr = [0; 8];
        self.tmr = [0; 8];
    }

    /// The APIC ID (all 32 bits).
    pub fn id(&self) -> u32 {
        self.apic_id
    }

    pub fn mode(&self) -> ApicMode {
        self.mode
    }

    /// SVR bit 8 (and the APIC hardware-enabled): interrupts can be delivered.
    pub fn is_software_enabled(&self) -> bool {
        self.mode != ApicMode::Disabled && self.svr & APIC_SVR_ENABLE != 0
    }

    pub fn read_apic_base(&self) -> u64 {
        self.apic_base_msr
    }

    /// A guest WRMSR to IA32_APIC_BASE (§10.4.4, §10.12.5). Legal: xAPIC ↔ disabled,
    /// xAPIC → x2APIC, x2APIC → disabled; re-enabling resets the registers (as Xen).
    /// Faults: bits 7:0 or 9 set, a base other than 0xfee00000, EXTD without EN,
    /// x2APIC → xAPIC, disabled → x2APIC. The BSP flag is stored as written.
    pub fn write_apic_base(&mut self, value: u64) -> Result<(), ApicFault> {
        const FLAGS: u64 = APIC_BASE_BSP | APIC_BASE_EXTD | APIC_BASE_ENABLE;
        if value & 0xfff & !FLAGS != 0 {
            return Err(ApicFault::ReservedBits { msr: MSR_IA32_APIC_BASE, value });
        }
        if value & !0xfff != APIC_DEFAULT_PHYS_BASE {
            return Err(ApicFault::Relocation { value });
        }
        let illegal = Err(ApicFault::IllegalTransition { from: self.mode, value });
        let new_mode = match (value & APIC_BASE_ENABLE != 0, value & APIC_BASE_EXTD != 0) {
            (false, false) => ApicMode::Disabled,
            (true, false) => ApicMode::XApic,
            (true, true) => ApicMode::X2Apic,
            (false, true) => return illegal,
        };
        match (self.mode, new_mode) {
            (ApicMode::X2Apic, ApicMode::XApic) | (ApicMode::Disabled, ApicMode::X2Apic) => return illegal,
            (ApicMode::Disabled, ApicMode::XApic) => self.reset(),
            _ => {}
        }
        self.mode = new_mode;
        self.apic_base_msr = value;
        Ok(())
    }

    /// A guest RDMSR of an x2APIC register (MSR 0x800–0x8ff).
    pub fn read_msr(&self, msr: u32) -> Result<u64, ApicFault> {
        let register = self.x2apic_register(msr)?;
        match register.access().1 {
            Access::ReadWrite | Access::ReadOnly => {}
            Access::WriteOnly => return Err(ApicFault::WriteOnly { msr }),
            Access::Absent => return Err(ApicFault::NoSuchRegister { msr }),
        }
        if register == ApicRegister::InterruptCommand {
            return Ok(self.icr);
        }
        Ok(u64::from(self.read_register(register)))
    }

    /// A guest WRMSR of an x2APIC register (MSR 0x800–0x8ff).
    pub fn write_msr(&mut self, msr: u32, value: u64) -> Result<ApicAction, ApicFault> {
        let register = self.x2apic_register(msr)?;
        match register.access().1 {
            Access::ReadWrite | Access::WriteOnly => {}
            Access::ReadOnly => return Err(ApicFault::ReadOnly { msr }),
            Access::Absent => return Err(ApicFault::NoSuchRegister { msr }),
        }
        let high_reserved = register != ApicRegister::InterruptCommand && value >> 32 != 0;
        let low = value as u32;
        let low_reserved = register.x2apic_accepted_bits().is_some_and(|accepted| low & !accepted != 0);
        if high_reserved || low_reserved {
            return Err(ApicFault::ReservedBits { msr, value });
        }
        Ok(match register {
            ApicRegister::InterruptCommand => {
                self.icr = value & !u64::from(ICR_DELIVERY_STATUS);
                self.send_ipi(low, (value >> 32) as u32, true)
            }
            // SELF IPI (§10.12.11): a fixed, edge IPI to this APIC.
            ApicRegister::SelfIpi => self.send_ipi(low & ICR_VECTOR | (1 << ICR_SHORTHAND_SHIFT), 0, true),
            _ => {
                self.write_register(register, low);
                ApicAction::None
            }
        })
    }

    /// A 32-bit read of the xAPIC page at `offset` (a register is the first 4 bytes of
    /// its 16-byte slot; anything else, absent registers, write-only ones, and every
    /// read outside xAPIC mode give 0).
    pub fn read_mmio(&self, offset: u32) -> u32 {
        if self.mode != ApicMode::XApic || offset & 0xf != 0 {
            return 0;
        }
        match ApicRegister::at(offset) {
            Some(register) if matches!(register.access().0, Access::ReadWrite | Access::ReadOnly) => {
                self.read_register(register)
            }
            _ => 0,
        }
    }

    /// A 32-bit write to the xAPIC page at `offset`. Reserved bits are dropped; writes to
    /// read-only or absent registers, off the register's first 4 bytes, or outside xAPIC
    /// mode are ignored. Writing ICR low sends the IPI (destination from ICR high).
    pub fn write_mmio(&mut self, offset: u32, value: u32) -> ApicAction {
        if self.mode != ApicMode::XApic || offset & 0xf != 0 {
            return ApicAction::None;
        }
        let Some(register) = ApicRegister::at(offset) else { return ApicAction::None };
        if !matches!(register.access().0, Access::ReadWrite | Access::WriteOnly) {
            return ApicAction::None;
        }
        if register == ApicRegister::InterruptCommand {
            let low = value & ICR_LOW_BITS;
            let high = (self.icr >> 32) as u32;
            self.icr = (u64::from(high) << 32) | u64::from(low);
            return self.send_ipi(low, high >> 24, false);
        }
        self.write_register(register, value);
        ApicAction::None
    }

    /// An access of `size` bytes (1, 2, 4 or 8) at `offset` of the xAPIC page, as the
    /// MMIO emulator reports it. Like Xen, an access wholly inside a register's first 4
    /// bytes reads those bytes; anything else reads 0.
    pub fn read_mmio_sized(&self, offset: u32, size: u8) -> u64 {
        let within = offset & 0xf;
        if !matches!(size, 1 | 2 | 4) || within + u32::from(size) > 4 {
            return 0;
        }
        let register = self.read_mmio(offset & !0xf);
        let shifted = register >> (within * 8);
        u64::from(match size {
            1 => shifted & 0xff,
            2 => shifted & 0xffff,
            _ => shifted,
        })
    }

    /// A write of `size` bytes at `offset`: a 4-byte write of a register as
    /// [`Self::write_mmio`]; a narrower one inside a register's first 4 bytes merges
    /// into the current value (as Xen); anything else is ignored.
    pub fn write_mmio_sized(&mut self, offset: u32, size: u8, value: u64) -> ApicAction {
        let within = offset & 0xf;
        if !matches!(size, 1 | 2 | 4) || within + u32::from(size) > 4 {
            return ApicAction::None;
        }
        let slot = offset & !0xf;
        let merged = match size {
            4 => value as u32,
            _ => {
                let field = if size == 1 { 0xffu32 } else { 0xffff };
                let shift = within * 8;
                let current = self.read_mmio(slot);
                (current & !(field << shift)) | ((value as u32 & field) << shift)
            }
        };
        self.write_mmio(slot, merged)
    }

    /// An interrupt arrives (a fixed or lowest-priority IPI, the Xen upcall vector, the
    /// LVT error vector): its IRR bit is set, and its TMR bit records the trigger mode
    /// (§10.8.4). Vectors 0–15 are illegal: the ESR's "receive illegal vector" is set
    /// instead. Returns true when an IRR bit became set that was clear (the vCPU should
    /// be kicked): the vector's, or the LVT error vector's after an illegal one. A
    /// hardware-disabled APIC accepts nothing.
    pub fn accept_interrupt(&mut self, vector: u8, level: bool) -> bool {
        if self.mode == ApicMode::Disabled {
            return false;
        }
        if vector < 16 {
            return self.record_error(APIC_ESR_RECEIVE_ILLEGAL_VECTOR);
        }
        set_bit(&mut self.tmr, vector, level);
        !set_bit(&mut self.irr, vector, true)
    }

    /// The vector to inject now, if any: the highest IRR vector whose priority class
    /// (bits 7:4) is above the processor priority's — above both the TPR's class and the
    /// highest in-service vector's (§10.8.3.1). Nothing while software-disabled.
    /// Whether `vector` is requested (IRR) or in service (ISR): an interrupt for it is
    /// already on its way or being handled.
    pub fn is_requested_or_in_service(&self, vector: u8) -> bool {
        let word = usize::from(vector / 32);
        let bit = 1u32 << (vector % 32);
        (self.irr[word] | self.isr[word]) & bit != 0
    }

    pub fn pending_interrupt(&self) -> Option<u8> {
        if !self.is_software_enabled() {
            return None;
        }
        let vector = highest_bit(&self.irr)?;
        (u32::from(vector) & PRIORITY_CLASS > self.processor_priority() & PRIORITY_CLASS).then_some(vector)
    }

    /// The vCPU took `vector` (it was injected): its IRR bit moves to ISR. A vector not
    /// pending in IRR is left alone.
    pub fn acknowledge(&mut self, vector: u8) {
        if set_bit(&mut self.irr, vector, false) {
            set_bit(&mut self.isr, vector, true);
        }
    }

    /// End of interrupt (§10.8.5): clears the highest in-service vector and returns it
    /// (`None` when nothing is in service). No I/O APIC exists, so a level-triggered
    /// vector broadcasts its EOI nowhere.
    pub fn eoi(&mut self) -> Option<u8> {
        let vector = highest_bit(&self.isr)?;
        set_bit(&mut self.isr, vector, false);
        Some(vector)
    }

    /// PPR (§10.8.3.1): the TPR if its class is at least the highest in-service
    /// vector's class, else that class.
    pub fn processor_priority(&self) -> u32 {
        let in_service = highest_bit(&self.isr).map_or(0, u32::from);
        if self.tpr & PRIORITY_CLASS >= in_service & PRIORITY_CLASS {
            self.tpr
        } else {
            in_service & PRIORITY_CLASS
        }
    }

    /// Whether a destination field addresses this APIC (§10.6.2, §10.12.10). `x2apic`:
    /// the field is in x2APIC format (32 bits, broadcast 0xffffffff, logical = cluster
    /// in bits 31:16 and a member bitmap in 15:0 against the LDR derived from the ID);
    /// otherwise xAPIC format (8 bits, broadcast 0xff, logical = the DFR's flat model,
    /// LDR bitmap & destination, or cluster model, cluster in bits 7:4 and members in
    /// 3:0). A hardware-disabled APIC matches nothing.
    pub fn matches_destination(&self, dest: u32, logical: bool, x2apic: bool) -> bool {
        if self.mode == ApicMode::Disabled {
            return false;
        }
        match (logical, x2apic) {
            (false, true) => dest == 0xffff_ffff || dest == self.apic_id,
            (false, false) => dest == 0xff || dest == self.apic_id,
            (true, true) => {
                let ldr = x2apic_logical_id(self.apic_id);
                dest == 0xffff_ffff || (dest >> 16 == ldr >> 16 && dest & ldr & 0xffff != 0)
            }
            (true, false) => {
                let logical_id = self.ldr >> 24;
                if dest == 0xff {
                    return true;
                }
                match self.dfr >> 28 {
                    DFR_FLAT => logical_id & dest != 0,
                    DFR_CLUSTER => logical_id >> 4 == dest >> 4 && logical_id & dest & 0xf != 0,
                    _ => false,
                }
            }
        }
    }

    /// Whether `request`, sent by the APIC with ID `sender_id`, goes to this APIC
    /// (shorthands first, then [`Self::matches_destination`]).
    pub fn is_ipi_target(&self, request: &IpiRequest, sender_id: u32) -> bool {
        if self.mode == ApicMode::Disabled {
            return false;
        }
        match request.destination {
            Destination::Physical(dest) => self.matches_destination(dest, false, request.x2apic_destination),
            Destination::Logical(dest) => self.matches_destination(dest, true, request.x2apic_destination),
            Destination::SelfOnly => self.apic_id == sender_id,
            Destination::AllIncludingSelf => true,
            Destination::AllExcludingSelf => self.apic_id != sender_id,
        }
    }

    /// The x2APIC register at `msr`, if the APIC is in x2APIC mode.
    fn x2apic_register(&self, msr: u32) -> Result<ApicRegister, ApicFault> {
        if !(MSR_X2APIC_FIRST..=MSR_X2APIC_LAST).contains(&msr) {
            return Err(ApicFault::NoSuchRegister { msr });
        }
        if self.mode != ApicMode::X2Apic {
            return Err(ApicFault::NotX2apicMode { msr });
        }
        ApicRegister::at((msr - MSR_X2APIC_FIRST) << 4).ok_or(ApicFault::NoSuchRegister { msr })
    }

    /// A register's 32-bit value in the current mode (access rights already checked).
    fn read_register(&self, register: ApicRegister) -> u32 {
        let x2apic = self.mode == ApicMode::X2Apic;
        match register {
            ApicRegister::Id if x2apic => self.apic_id,
            ApicRegister::Id => self.apic_id << 24,
            ApicRegister::Version => APIC_VERSION,
            ApicRegister::TaskPriority => self.tpr,
            ApicRegister::ProcessorPriority => self.processor_priority(),
            ApicRegister::LogicalDestination if x2apic => x2apic_logical_id(self.apic_id),
            ApicRegister::LogicalDestination => self.ldr,
            ApicRegister::DestinationFormat => self.dfr,
            ApicRegister::SpuriousVector => self.svr,
            ApicRegister::InService(word) => self.isr[word],
            ApicRegister::TriggerMode(word) => self.tmr[word],
            ApicRegister::InterruptRequest(word) => self.irr[word],
            ApicRegister::ErrorStatus => self.esr,
            ApicRegister::InterruptCommand => self.icr as u32,
            ApicRegister::InterruptCommandHigh => (self.icr >> 32) as u32,
            ApicRegister::Lvt(entry) => self.lvt[entry.index()],
            ApicRegister::TimerInitialCount => self.timer_initial_count,
            ApicRegister::TimerDivideConfiguration => self.timer_divide_configuration,
            ApicRegister::ArbitrationPriority
            | ApicRegister::RemoteRead
            | ApicRegister::TimerCurrentCount
            | ApicRegister::Eoi
            | ApicRegister::LvtCmci
            | ApicRegister::SelfIpi => 0,
        }
    }

    /// A register write in either mode, reserved bits dropped (x2APIC writes were
    /// checked before). ICR and SELF IPI are the callers'.
    fn write_register(&mut self, register: ApicRegister, value: u32) {
        match register {
            ApicRegister::TaskPriority => self.tpr = value & 0xff,
            ApicRegister::Eoi => {
                let _ = self.eoi();
            }
            ApicRegister::LogicalDestination => self.ldr = value & LDR_LOGICAL_ID,
            ApicRegister::DestinationFormat => self.dfr = (value & DFR_MODEL) | !DFR_MODEL,
            ApicRegister::SpuriousVector => {
                self.svr = value & SVR_BITS;
                if self.svr & APIC_SVR_ENABLE == 0 {
                    // Software disable masks every LVT entry (§10.4.7.2).
                    for entry in &mut self.lvt {
                        *entry |= APIC_LVT_MASKED;
                    }
                }
            }
            ApicRegister::ErrorStatus => {
                self.esr = self.pending_esr;
                self.pending_esr = 0;
            }
            ApicRegister::InterruptCommandHigh => {
                self.icr = (u64::from(value & ICR2_DESTINATION) << 32) | (self.icr & 0xffff_ffff);
            }
            ApicRegister::Lvt(entry) => {
                let forced_mask = if self.svr & APIC_SVR_ENABLE == 0 { APIC_LVT_MASKED } else { 0 };
                self.lvt[entry.index()] = (value & entry.stored_bits()) | forced_mask;
            }
            ApicRegister::TimerInitialCount => self.timer_initial_count = value,
            ApicRegister::TimerDivideConfiguration => self.timer_divide_configuration = value & TDCR_BITS,
            ApicRegister::Id
            | ApicRegister::Version
            | ApicRegister::ArbitrationPriority
            | ApicRegister::ProcessorPriority
            | ApicRegister::RemoteRead
            | ApicRegister::InService(_)
            | ApicRegister::TriggerMode(_)
            | ApicRegister::InterruptRequest(_)
            | ApicRegister::LvtCmci
            | ApicRegister::InterruptCommand
            | ApicRegister::TimerCurrentCount
            | ApicRegister::SelfIpi => {}
        }
    }

    /// Turns an ICR low value and a destination field into the IPI to send. A fixed or
    /// lowest-priority IPI with a vector below 16 is not sent: the ESR's "send illegal
    /// vector" is set instead (§10.5.3). Reserved delivery modes (011, 111) send nothing.
    fn send_ipi(&mut self, icr_low: u32, destination: u32, x2apic: bool) -> ApicAction {
        let vector = (icr_low & ICR_VECTOR) as u8;
        let level_assert = icr_low & ICR_LEVEL_ASSERT != 0;
        let trigger_level = icr_low & ICR_TRIGGER_LEVEL != 0;
        let delivery = match (icr_low >> ICR_DELIVERY_MODE_SHIFT) & 7 {
            0 => DeliveryMode::Fixed,
            1 => DeliveryMode::LowestPriority,
            2 => DeliveryMode::Smi,
            4 => DeliveryMode::Nmi,
            5 if trigger_level && !level_assert => DeliveryMode::InitDeassert,
            5 => DeliveryMode::Init,
            6 => DeliveryMode::StartUp,
            _ => return ApicAction::None,
        };
        if matches!(delivery, DeliveryMode::Fixed | DeliveryMode::LowestPriority) && vector < 16 {
            let _ = self.record_error(APIC_ESR_SEND_ILLEGAL_VECTOR);
            return ApicAction::None;
        }
        let logical = icr_low & ICR_DESTINATION_LOGICAL != 0;
        let destination = match (icr_low >> ICR_SHORTHAND_SHIFT) & 3 {
            0 if logical => Destination::Logical(destination),
            0 => Destination::Physical(destination),
            1 => Destination::SelfOnly,
            2 => Destination::AllIncludingSelf,
            _ => Destination::AllExcludingSelf,
        };
        ApicAction::Ipi(IpiRequest {
            vector,
            delivery,
            destination,
            level_assert,
            trigger_level,
            x2apic_destination: x2apic,
        })
    }

    /// Records an error for the next ESR latch; a new error raises the LVT error
    /// interrupt if that entry is unmasked with a legal vector. Returns whether an IRR
    /// bit became set.
    fn record_error(&mut self, error: u32) -> bool {
        if self.pending_esr & error == error {
            return false;
        }
        self.pending_esr |= error;
        let lvt_error = self.lvt[LvtEntry::Error.index()];
        let vector = (lvt_error & ICR_VECTOR) as u8;
        if lvt_error & APIC_LVT_MASKED != 0 || vector < 16 {
            return false;
        }
        set_bit(&mut self.tmr, vector, false);
        !set_bit(&mut self.irr, vector, true)
    }
}

/// The x2APIC logical ID (§10.12.10.2): cluster = ID bits 31:4 in LDR bits 31:16, and
/// one bit for ID bits 3:0 in LDR bits 15:0.
pub fn x2apic_logical_id(apic_id: u32) -> u32 {
    ((apic_id >> 4) << 16) | (1 << (apic_id & 0xf))
}

/// Sets or clears `vector`'s bit in a 256-bit register (eight 32-bit words); returns the
/// bit's previous value.
fn set_bit(bitmap: &mut [u32; 8], vector: u8, value: bool) -> bool {
    let word = &mut bitmap[usize::from(vector / 32)];
    let bit = 1u32 << (vector % 32);
    let previous = *word & bit != 0;
    if value {
        *word |= bit;
    } else {
        *word &= !bit;
    }
    previous
}

/// The highest vector set in a 256-bit register.
fn highest_bit(bitmap: &[u32; 8]) -> Option<u8> {
    (0..8u8).rev().find(|&word| bitmap[usize::from(word)] != 0).map(|word| {
        let bits = bitmap[usize::from(word)];
        word * 32 + (31 - bits.leading_zeros() as u8)
    })
}

#[cfg(test)]
#[path = "vlapic_tests.rs"]
mod tests;
