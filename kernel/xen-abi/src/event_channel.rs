//! Event channels (xen/include/public/event_channel.h, the VIRQ list of xen.h, and the
//! 2-level event words of `struct shared_info` / `struct vcpu_info` in xen.h).
//!
//! A port is a `u32` (`evtchn_port_t`); port 0 is never valid. The 2-level ABI keeps
//! one pending bit and one mask bit per port in shared_info and one selector word per
//! vCPU; Linux falls back to it when `EVTCHNOP_init_control` (FIFO) fails.

/// `event_channel_op(cmd, arg)` sub-operations.
pub const EVTCHNOP_bind_interdomain: u64 = 0;
pub const EVTCHNOP_bind_virq: u64 = 1;
pub const EVTCHNOP_bind_pirq: u64 = 2;
pub const EVTCHNOP_close: u64 = 3;
pub const EVTCHNOP_send: u64 = 4;
pub const EVTCHNOP_status: u64 = 5;
pub const EVTCHNOP_alloc_unbound: u64 = 6;
pub const EVTCHNOP_bind_ipi: u64 = 7;
pub const EVTCHNOP_bind_vcpu: u64 = 8;
pub const EVTCHNOP_unmask: u64 = 9;
pub const EVTCHNOP_reset: u64 = 10;
pub const EVTCHNOP_init_control: u64 = 11;
pub const EVTCHNOP_expand_array: u64 = 12;
pub const EVTCHNOP_set_priority: u64 = 13;
pub const EVTCHNOP_reset_cont: u64 = 14;

/// `evtchn_status.status`: what a port is bound to.
pub const EVTCHNSTAT_closed: u32 = 0;
pub const EVTCHNSTAT_unbound: u32 = 1;
pub const EVTCHNSTAT_interdomain: u32 = 2;
pub const EVTCHNSTAT_pirq: u32 = 3;
pub const EVTCHNSTAT_virq: u32 = 4;
pub const EVTCHNSTAT_ipi: u32 = 5;

/// Virtual IRQs (xen.h). "V." ones are per vCPU (each vCPU binds its own port);
/// the others are global: bound on vCPU 0 only, then movable with
/// `EVTCHNOP_bind_vcpu` (xen/common/event_channel.c `virq_is_global`).
pub const VIRQ_TIMER: u32 = 0;
pub const VIRQ_DEBUG: u32 = 1;
pub const VIRQ_CONSOLE: u32 = 2;
pub const VIRQ_DOM_EXC: u32 = 3;
pub const VIRQ_TBUF: u32 = 4;
pub const VIRQ_DEBUGGER: u32 = 6;
pub const VIRQ_XENOPROF: u32 = 7;
pub const VIRQ_CON_RING: u32 = 8;
pub const VIRQ_PCPU_STATE: u32 = 9;
pub const VIRQ_MEM_EVENT: u32 = 10;
pub const VIRQ_ARGO: u32 = 11;
pub const VIRQ_ENOMEM: u32 = 12;
pub const VIRQ_XENPMU: u32 = 13;
/// Architecture VIRQs 16..=23; on x86 `VIRQ_ARCH_0` is `VIRQ_MCA`, all global.
pub const VIRQ_ARCH_0: u32 = 16;
pub const VIRQ_MCA: u32 = VIRQ_ARCH_0;
pub const VIRQ_ARCH_7: u32 = 23;
/// VIRQ numbers are below this.
pub const NR_VIRQS: u32 = 24;

/// Ports of the 2-level ABI for a 64-bit guest: `sizeof(xen_ulong_t)² × 64` = 64 words
/// of 64 bits; ports at or above it do not exist in this ABI.
pub const EVTCHN_2L_NR_CHANNELS: u32 = 4096;
/// Bits per pending/mask word and per `evtchn_pending_sel` (`BITS_PER_EVTCHN_WORD`).
pub const BITS_PER_EVTCHN_WORD: u32 = 64;

/// `struct shared_info` (x86-64): `vcpu_info[XEN_LEGACY_MAX_VCPUS]` at 0, then
/// `xen_ulong_t evtchn_pending[64]` and `evtchn_mask[64]` (pvh-abi.md §4.1).
pub const XEN_LEGACY_MAX_VCPUS: u32 = 32;
pub const SHARED_INFO_EVTCHN_PENDING_OFFSET: usize = 2048;
pub const SHARED_INFO_EVTCHN_MASK_OFFSET: usize = 2560;
/// `struct vcpu_info` (64 bytes): `evtchn_upcall_pending` (u8) at 0,
/// `evtchn_upcall_mask` (u8, PV only) at 1, `evtchn_pending_sel` (u64) at 8.
pub const VCPU_INFO_SIZE: usize = 64;
pub const VCPU_INFO_EVTCHN_UPCALL_PENDING_OFFSET: usize = 0;
pub const VCPU_INFO_EVTCHN_UPCALL_MASK_OFFSET: usize = 1;
pub const VCPU_INFO_EVTCHN_PENDING_SEL_OFFSET: usize = 8;

const _: () = assert!(EVTCHN_2L_NR_CHANNELS == BITS_PER_EVTCHN_WORD * BITS_PER_EVTCHN_WORD);
const _: () = assert!(SHARED_INFO_EVTCHN_PENDING_OFFSET == XEN_LEGACY_MAX_VCPUS as usize * VCPU_INFO_SIZE);
const _: () = assert!(
    SHARED_INFO_EVTCHN_MASK_OFFSET
        == SHARED_INFO_EVTCHN_PENDING_OFFSET + (EVTCHN_2L_NR_CHANNELS / BITS_PER_EVTCHN_WORD) as usize * 8
);
