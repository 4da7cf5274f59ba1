//! Secondary vCPUs: counting them, starting them in 64-bit mode, parking them.
//!
//! `VCPUOP_initialise` (xen/include/public/vcpu.h) takes, for HVM/PVH guests, a
//! `vcpu_hvm_context` (hvm/hvm_vcpu.h): `mode` (u32), padding, then a union of the
//! 32-bit and 64-bit register sets, 128 bytes in all. In `VCPU_HVM_MODE_64B` the
//! segments are implied flat 64-bit; the guest supplies CR0/CR3/CR4/EFER, RIP, RSP,
//! RFLAGS and the general registers (Xen loads RAX..RDI from the context,
//! xen/arch/x86/hvm/domain.c `arch_set_info_hvm_guest`). A started vCPU therefore runs
//! on the boot page tables ([`crate::boot::page_table_root`]), on its own stack, at a
//! Rust function that receives its vCPU id in RDI.

use basalt_xen_abi::errno::ENOENT;
use basalt_xen_abi::hypercall as number;
use basalt_xen_abi::sched::SCHEDOP_block;
use basalt_xen_abi::vcpu::{
    VCPUOP_down, VCPUOP_initialise, VCPUOP_is_up, VCPUOP_up, VcpuHvmX86_64, VCPU_HVM_CONTEXT_REGS_OFFSET,
    VCPU_HVM_CONTEXT_SIZE, VCPU_HVM_MODE_64B,
};

use crate::boot::{page_table_root, vcpu_stack_top, MAX_VCPUS};
use crate::hypercall;

/// A secondary vCPU's first code: `extern "C" fn(vcpu_id: u64) -> !`.
pub type SecondaryEntry = extern "C" fn(u64) -> !;

/// `vcpu_hvm_context` as a 64-bit guest fills it: the union's 64-bit member, then the
/// bytes by which the 32-bit member is larger.
#[repr(C)]
struct VcpuHvmContext64 {
    mode: u32,
    pad: u32,
    registers: VcpuHvmX86_64,
    union_tail: [u8; VCPU_HVM_CONTEXT_SIZE - VCPU_HVM_CONTEXT_REGS_OFFSET - core::mem::size_of::<VcpuHvmX86_64>()],
}

const _: () = assert!(core::mem::size_of::<VcpuHvmContext64>() == VCPU_HVM_CONTEXT_SIZE);
const _: () = assert!(core::mem::offset_of!(VcpuHvmContext64, registers) == VCPU_HVM_CONTEXT_REGS_OFFSET);

const CR0_PE: u64 = 1 << 0;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// RFLAGS with only the always-one bit: interrupts off.
const RFLAGS_RESERVED_ONE: u64 = 1 << 1;

/// The domain's vCPU count: the first id for which `VCPUOP_is_up` answers `-ENOENT`
/// (the id is past the domain's last vCPU). Probes at most 4096 ids.
pub fn count() -> u32 {
    (0..4096).find(|&id| hypercall::vcpu_op(VCPUOP_is_up, id) == -ENOENT).unwrap_or(4096)
}

/// Why a vCPU did not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartError {
    /// The runtime has no stack for this id (0 is the boot vCPU; at most
    /// [`MAX_VCPUS`] − 1 secondaries).
    NoStack,
    /// `VCPUOP_initialise` failed with this result.
    Initialise(i64),
    /// `VCPUOP_up` failed with this result.
    Up(i64),
}

impl core::fmt::Display for StartError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StartError::NoStack => write!(formatter, "no stack for it (at most {} vCPUs)", MAX_VCPUS),
            StartError::Initialise(result) => write!(formatter, "VCPUOP_initialise returned {result}"),
            StartError::Up(result) => write!(formatter, "VCPUOP_up returned {result}"),
        }
    }
}

/// Starts vCPU `vcpu_id` in 64-bit mode at `entry(vcpu_id)`, interrupts off, on its
/// own stack and the boot page tables.
pub fn start(vcpu_id: u32, entry: SecondaryEntry) -> Result<(), StartError> {
    let stack_top = vcpu_stack_top(vcpu_id).ok_or(StartError::NoStack)?;
    let context = VcpuHvmContext64 {
        mode: VCPU_HVM_MODE_64B,
        pad: 0,
        registers: VcpuHvmX86_64 {
            // As if `entry` had been called: RSP ≡ 8 (mod 16), a zero return address.
            rsp: stack_top - 8,
            rip: entry as usize as u64,
            rdi: u64::from(vcpu_id),
            rflags: RFLAGS_RESERVED_ONE,
            cr0: CR0_PG | CR0_ET | CR0_PE,
            cr3: page_table_root(),
            cr4: CR4_PAE,
            efer: EFER_LME | EFER_LMA,
            ..VcpuHvmX86_64::default()
        },
        union_tail: [0; VCPU_HVM_CONTEXT_SIZE - VCPU_HVM_CONTEXT_REGS_OFFSET - core::mem::size_of::<VcpuHvmX86_64>()],
    };
    // The zero return address the entry function will never use.
    // SAFETY: `stack_top - 8` lies in vCPU `vcpu_id`'s stack, which nothing uses until
    // the vCPU starts below.
    unsafe { ((stack_top - 8) as *mut u64).write_volatile(0) };
    // SAFETY: the hypervisor reads the 128-byte context from a live local.
    let result = unsafe {
        hypercall::hypercall5(number::vcpu_op, VCPUOP_initialise, u64::from(vcpu_id), (&raw const context) as u64, 0, 0)
    };
    if result != 0 {
        return Err(StartError::Initialise(result));
    }
    match hypercall::vcpu_op(VCPUOP_up, vcpu_id) {
        0 => Ok(()),
        result => Err(StartError::Up(result)),
    }
}

/// Takes the calling vCPU (`vcpu_id`) offline with `VCPUOP_down`; if the hypervisor
/// keeps it running, blocks it with `SCHEDOP_block` forever (interrupts are off, so
/// nothing it would have to handle arrives).
pub fn park(vcpu_id: u32) -> ! {
    hypercall::vcpu_op(VCPUOP_down, vcpu_id);
    loop {
        hypercall::sched_op(SCHEDOP_block);
    }
}
