//! Xen's guest ABI as Basalt presents it, vendor-neutral: what a guest sees through
//! CPUID, the MSRs emulated in software, the hypercall page, and hypercall dispatch.
//!
//! Why one layer: toward guests Basalt is Xen (DESIGN.md decision 4), and what a CPUID,
//! RDMSR/WRMSR or VMCALL/VMMCALL exit *means* is the same on SVM and VMX (decision 3).
//! The vendor backends (`virt/svm`, later `virt/vmx`) decode their exits and call in
//! here; this layer decides the answer and says what the backend must do with it
//! (write RAX, inject #GP, write the hypercall page, block the vCPU, shut the domain
//! down). Nothing here touches hardware or guest memory directly: guest memory is
//! reached through [`hypercall::HypercallEnvironment`], and everything is host-tested.
//!
//! Specification: xen/include/public (through the `basalt-xen-abi` crate) and the
//! behaviour of Xen's own handlers, cited in each module; the guest-facing checklist is
//! docs/pvh-abi.md §2–3.
//!
//! Modules:
//! * [`cpuid`] — the per-domain CPUID policy and Xen's leaves at 0x40000000.
//! * [`msr`] — per-vCPU emulated MSRs and the policy for every other index.
//! * [`hypercall_page`] — the stubs a guest gets by writing MSR 0x40000000.
//! * [`hypercall`] — the hypercall table and the base set of handlers.
//! * [`hypercall_events`] — event_channel_op, grant_table_op, hvm_op, vm_assist.
//! * [`event_channel`] — every domain's ports and the 2-level delivery rules.
//! * [`grant_table`] — grant-table v1 bookkeeping and dom0's use of grants.
//! * [`pvclock`] — the PV clock record and wall clock layouts.

pub mod cpuid;
pub mod event_channel;
pub mod grant_table;
pub mod hypercall;
pub mod hypercall_events;
pub mod hypercall_page;
pub mod msr;
pub mod pvclock;

pub use cpuid::{guest_cpuid, CpuidPolicy, CpuidResult, GuestCpuIdentity, HostVendor};
pub use hypercall::{
    dispatch, hypercall_name, return_register_value, E820Entry, GuestFault, GuestWidth, HypercallEnvironment,
    HypercallOutcome, HypercallRegisters, HypercallRequest, MemoryPages, VcpuPowerState, VcpuStartContext,
};
pub use hypercall_page::{fill as fill_hypercall_page, HypercallInstruction, HYPERCALL_PAGE_SIZE};
pub use msr::{read_msr, write_msr, GuestMsrState, MsrRead, MsrWrite};

/// The Xen version Basalt reports (CPUID 0x40000001, XENVER_version): 4.17. Linux
/// applies old-xenbus quirks below 4.0 (pvh-abi.md §2.1).
pub const XEN_VERSION_MAJOR: u16 = 4;
pub const XEN_VERSION_MINOR: u16 = 17;
