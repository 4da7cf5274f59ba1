//! The one interface every dcmd reads through (DESIGN.md decision 9): memory by
//! guest-physical (and, where the target knows it, machine) address, the registers of
//! each vCPU as saved at its last exit, and the domain's metadata — event channels,
//! grant table, xenstore nodes, shared info, and the kernel file's symbols.
//!
//! Implementations: a live domain inside the appliance (image/, pausing the domain
//! while a command runs), an ELF dump-core file (`crate::core_file`), and host test
//! fixtures (`testing`). Guest-virtual reads are not part of the trait: they are the
//! engine's job ([`crate::paging`]), walking the guest's own page tables through
//! [`Target::read_physical`], so one walker serves every target.
//!
//! Invariants: no method panics on anything the guest or the file controls; an
//! address the target does not have is [`TargetError::Unmapped`]; an operation the
//! target cannot do answers [`TargetError::Unsupported`] (mdb's "not supported").

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

/// Which address space an address is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressSpace {
    /// Guest-virtual, translated through a vCPU's page tables.
    Virtual,
    /// Guest-physical (what the guest's page tables point at).
    Physical,
    /// Host-physical ("machine") memory that belongs to the domain.
    Machine,
}

impl AddressSpace {
    /// The word used in messages: "virtual", "physical", "machine".
    pub fn name(self) -> &'static str {
        match self {
            AddressSpace::Virtual => "virtual",
            AddressSpace::Physical => "physical",
            AddressSpace::Machine => "machine",
        }
    }
}

/// Why a target could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// Nothing is mapped at this address.
    Unmapped { space: AddressSpace, address: u64 },
    /// A virtual address translates, but the domain has no memory at the guest-physical
    /// address it maps to.
    NoMemoryBehind { virtual_address: u64, physical_address: u64 },
    /// There is no such vCPU.
    NoSuchVcpu(u32),
    /// The target cannot do this at all (e.g. machine addresses in a core).
    Unsupported(&'static str),
    /// The target's data is damaged or inconsistent (a truncated core, a domain that
    /// went away); the text says what.
    Damaged(String),
}

impl fmt::Display for TargetError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::Unmapped { space, address } => {
                write!(formatter, "no mapping for {} address {address:#x}", space.name())
            }
            TargetError::NoMemoryBehind { virtual_address, physical_address } => write!(
                formatter,
                "virtual address {virtual_address:#x} maps to guest-physical {physical_address:#x}, which the domain does not have"
            ),
            TargetError::NoSuchVcpu(vcpu) => write!(formatter, "no vCPU {vcpu}"),
            TargetError::Unsupported(what) => write!(formatter, "{what}: not supported by this target"),
            TargetError::Damaged(why) => formatter.write_str(why),
        }
    }
}

/// What kind of target this is, for `::status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// A running domain inside the appliance.
    Live,
    /// An ELF dump-core file; `source` names it (a path, or `disk@offset`).
    CoreFile { source: String },
}

/// Facts about the debugged domain, for `::status` and the dcmds that label output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    pub kind: TargetKind,
    pub domain_id: u16,
    pub domain_name: String,
    pub vcpus: u32,
    pub memory_bytes: u64,
    /// Life-cycle state as `list` shows it (`running`, `paused`, `crashed`, ...).
    pub state: String,
    /// How the vCPU state was captured, e.g. "domain paused while each command runs;
    /// registers as saved at each vCPU's last exit".
    pub vcpu_snapshot: String,
    /// The hypervisor that ran the domain, e.g. "Basalt 0.1.0" or "Xen 4.17.3".
    pub hypervisor: String,
    /// The host the core was taken on, when known.
    pub host: Option<String>,
}

/// Whether a vCPU was running, blocked or down when its registers were saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VcpuRunState {
    /// It was executing guest code (or runnable) when last stopped.
    #[default]
    Running,
    /// It was blocked (HLT, SCHEDOP_block) waiting for an event.
    Blocked,
    /// It has not been brought up, or was taken down.
    Down,
}

/// One vCPU's registers as saved at its last VM exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Registers {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub rsp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub cs: u16,
    pub ss: u16,
    pub ds: u16,
    pub es: u16,
    pub fs: u16,
    pub gs: u16,
    pub fs_base: u64,
    pub gs_base: u64,
    pub kernel_gs_base: u64,
    pub state: VcpuRunState,
}

/// What an event channel is bound to (Xen's EVTCHNSTAT_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelBinding {
    /// Allocated for `remote_domain` to bind to.
    Unbound { remote_domain: u16 },
    /// Connected to `remote_port` of `remote_domain`.
    Interdomain { remote_domain: u16, remote_port: u32 },
    /// A virtual IRQ (VIRQ_TIMER = 0, VIRQ_DEBUG = 1, VIRQ_CONSOLE = 2, ...).
    Virq(u32),
    /// An inter-processor interrupt within the domain.
    Ipi,
    /// A physical IRQ.
    Pirq(u32),
    /// Known to exist (e.g. pending in shared info) but not how it is bound.
    Unknown,
}

/// One event channel of the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventChannel {
    pub port: u32,
    pub binding: ChannelBinding,
    /// The vCPU it notifies.
    pub vcpu: u32,
    /// Pending and masked bits from shared info, when the target has them.
    pub pending: Option<bool>,
    pub masked: Option<bool>,
    /// Who serves the other end or handles it, where known ("xenstore", "console
    /// backend", "blkif xvda", a guest handler symbol).
    pub owner: Option<String>,
}

/// One in-use entry of the domain's grant table (grant_entry_v1 of grant_table.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantEntry {
    pub reference: u32,
    /// GTF_* flags as the guest wrote them (plus GTF_reading/GTF_writing while held).
    pub flags: u16,
    /// The domain the grant is for.
    pub domain: u16,
    /// The granted guest frame.
    pub frame: u64,
}

/// One xenstore node of the domain's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XenstoreNode {
    pub path: String,
    pub value: Vec<u8>,
}

/// One domain of the appliance, for `::domains`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSummary {
    pub id: u16,
    pub name: String,
    pub state: String,
    pub vcpus: u32,
    pub memory_bytes: u64,
}

/// A domain the debugger can read: live, from a core file, or a test fixture.
///
/// Call order: none required; each method stands alone. A live target is expected to
/// give a consistent view for the duration of one command (the front end pauses the
/// domain around it).
pub trait Target {
    /// Facts for `::status`.
    fn info(&self) -> TargetInfo;

    /// The vCPUs' registers as last saved; `vcpu` counts from 0.
    fn registers(&self, vcpu: u32) -> Result<Registers, TargetError>;

    /// Reads guest-physical memory; fails with [`TargetError::Unmapped`] naming the
    /// first address it does not have, and then `buffer`'s content is unspecified.
    fn read_physical(&self, address: u64, buffer: &mut [u8]) -> Result<(), TargetError>;

    /// The guest-physical ranges `[start, end)` that have memory, ascending.
    fn memory_ranges(&self) -> Vec<(u64, u64)>;

    /// The machine address backing a guest-physical one, where the target knows it.
    fn physical_to_machine(&self, _address: u64) -> Option<u64> {
        None
    }

    /// Reads machine memory that belongs to the domain.
    fn read_machine(&self, _address: u64, _buffer: &mut [u8]) -> Result<(), TargetError> {
        Err(TargetError::Unsupported("machine addresses"))
    }

    /// The domain's event channels, by port.
    fn event_channels(&self) -> Result<Vec<EventChannel>, TargetError> {
        Err(TargetError::Unsupported("event channel table"))
    }

    /// The in-use entries of the grant table.
    fn grants(&self) -> Result<Vec<GrantEntry>, TargetError> {
        Err(TargetError::Unsupported("grant table"))
    }

    /// The domain's xenstore nodes (its `/local/domain/N` tree and the backend nodes
    /// that serve it).
    fn xenstore(&self) -> Result<Vec<XenstoreNode>, TargetError> {
        Err(TargetError::Unsupported("xenstore"))
    }

    /// The shared_info page (4096 bytes), if the guest registered one.
    fn shared_info(&self) -> Result<Option<Vec<u8>>, TargetError> {
        Ok(None)
    }

    /// An ELF file whose `.symtab` describes the guest kernel (the kernel file the
    /// domain was built from, or the symbol-only ELF a Basalt core carries), if any.
    fn kernel_symbol_file(&self) -> Option<&[u8]> {
        None
    }

    /// Every domain of the appliance (`::domains`).
    fn domains(&self) -> Result<Vec<DomainSummary>, TargetError> {
        Err(TargetError::Unsupported("::domains (only inside the appliance)"))
    }
}
