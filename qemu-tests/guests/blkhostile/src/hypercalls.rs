//! The Xen calls a minimal blkfront makes beyond the runtime's: HVM parameters and
//! time (`hvm_op`), mapping the grant table (`memory_op`), event channels, yielding,
//! and the [`Environment`] the protocol code waits through.
//!
//! Layouts (xen/include/public/hvm/hvm_op.h, hvm/params.h, memory.h,
//! event_channel.h; pvh-abi.md §3.3–3.7): `xen_hvm_param` {u16 domid, u32 index @4,
//! u64 value @8}; `xen_hvm_get_time` {u64 now}; `xen_add_to_physmap` {u16 domid,
//! u16 size, u32 space @4, u64 idx @8, u64 gpfn @16}; `evtchn_alloc_unbound` {u16 dom,
//! u16 remote_dom, u32 port @4 (out)}; `evtchn_send` {u32 port}. Errors are negative
//! Xen errnos.

// Xen's names for Xen's constants (STYLE.md: ABI terms keep the headers' spelling).
#![allow(non_upper_case_globals)]

use basalt_guest_blkhostile_protocol::Environment;
use basalt_guest_rt::abi::event_channel::{EVTCHNOP_alloc_unbound, EVTCHNOP_send};
use basalt_guest_rt::abi::hypercall as number;
use basalt_guest_rt::abi::memory::{XENMEM_add_to_physmap, DOMID_SELF};
use basalt_guest_rt::abi::sched::SCHEDOP_yield;
use basalt_guest_rt::hypercall::{hypercall5, sched_op};

pub const HVMOP_get_param: u64 = 1;
pub const HVMOP_get_time: u64 = 10;
pub const HVM_PARAM_STORE_PFN: u32 = 1;
pub const HVM_PARAM_STORE_EVTCHN: u32 = 2;
pub const XENMAPSPACE_grant_table: u32 = 1;

/// A negative Xen errno returned by a hypercall.
pub type Errno = i64;

fn result(value: i64) -> Result<(), Errno> {
    if value < 0 {
        Err(value)
    } else {
        Ok(())
    }
}

/// `HVMOP_get_param(DOMID_SELF, index)`.
pub fn hvm_param(index: u32) -> Result<u64, Errno> {
    let mut argument = [0u8; 16];
    argument[..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
    argument[4..8].copy_from_slice(&index.to_le_bytes());
    // SAFETY: the hypervisor reads and writes the 16-byte `xen_hvm_param` in a live,
    // exclusively borrowed local.
    let value = unsafe { hypercall5(number::hvm_op, HVMOP_get_param, argument.as_mut_ptr() as u64, 0, 0, 0) };
    result(value)?;
    let mut parameter = [0u8; 8];
    parameter.copy_from_slice(&argument[8..16]);
    Ok(u64::from_le_bytes(parameter))
}

/// `HVMOP_get_time`: the hypervisor's system time in nanoseconds.
pub fn hvm_time_ns() -> Result<u64, Errno> {
    let mut now = [0u8; 8];
    // SAFETY: the hypervisor writes 8 bytes into a live, exclusively borrowed local.
    let value = unsafe { hypercall5(number::hvm_op, HVMOP_get_time, now.as_mut_ptr() as u64, 0, 0, 0) };
    result(value)?;
    Ok(u64::from_le_bytes(now))
}

/// `XENMEM_add_to_physmap(XENMAPSPACE_grant_table, index, gpfn)`: grant frame `index`
/// appears at guest frame `gpfn` (which must not be RAM).
pub fn map_grant_frame(index: u64, gpfn: u64) -> Result<(), Errno> {
    let mut argument = [0u8; 24];
    argument[..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
    argument[4..8].copy_from_slice(&XENMAPSPACE_grant_table.to_le_bytes());
    argument[8..16].copy_from_slice(&index.to_le_bytes());
    argument[16..24].copy_from_slice(&gpfn.to_le_bytes());
    // SAFETY: the hypervisor reads the 24-byte `xen_add_to_physmap` from a live local
    // and maps a page at `gpfn`, a frame outside the guest's RAM and image.
    result(unsafe { hypercall5(number::memory_op, XENMEM_add_to_physmap, argument.as_ptr() as u64, 0, 0, 0) })
}

/// `EVTCHNOP_alloc_unbound(DOMID_SELF, remote)`: a port `remote` may bind to.
pub fn alloc_unbound(remote: u16) -> Result<u32, Errno> {
    let mut argument = [0u8; 8];
    argument[..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
    argument[2..4].copy_from_slice(&remote.to_le_bytes());
    // SAFETY: the hypervisor reads and writes the 8-byte `evtchn_alloc_unbound` in a
    // live, exclusively borrowed local.
    let value =
        unsafe { hypercall5(number::event_channel_op, EVTCHNOP_alloc_unbound, argument.as_mut_ptr() as u64, 0, 0, 0) };
    result(value)?;
    Ok(u32::from_le_bytes([argument[4], argument[5], argument[6], argument[7]]))
}

/// `EVTCHNOP_send(port)`.
pub fn send_event(port: u32) -> Result<(), Errno> {
    let argument = port.to_le_bytes();
    // SAFETY: the hypervisor reads the 4-byte `evtchn_send` from a live local.
    result(unsafe { hypercall5(number::event_channel_op, EVTCHNOP_send, argument.as_ptr() as u64, 0, 0, 0) })
}

/// Waiting in this guest: interrupts stay off, so dom0's events are never taken; the
/// guest polls shared memory and yields its vCPU between polls.
pub struct GuestEnvironment;

impl Environment for GuestEnvironment {
    fn notify(&mut self, port: u32) {
        // A failed send shows up as the peer never answering, which every wait bounds.
        let _ = send_event(port);
    }

    fn pause(&mut self) {
        sched_op(SCHEDOP_yield);
    }

    fn now_ns(&mut self) -> Option<u64> {
        hvm_time_ns().ok()
    }
}
