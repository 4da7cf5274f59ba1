//! The hypercalls of Xen's event and device plumbing: `event_channel_op`,
//! `grant_table_op`, `hvm_op` (parameters, upcall vector) and `vm_assist`.
//!
//! Each handler copies the guest's structure in once, turns it into a typed request,
//! lets the [`HypercallEnvironment`] act on it (the bookkeeping itself is portable code
//! in `event_channel` and `grant_table`; the environment owns the locks and the guest
//! memory), and copies the answer back with one write. Layouts are
//! xen/include/public/event_channel.h, grant_table.h, hvm/hvm_op.h and hvm/params.h for
//! a 64-bit guest (the structures here have no `long` fields, so 32-bit callers use
//! the same layouts); semantics follow Xen's common/event_channel.c,
//! common/grant_table.c and arch/x86/hvm/hvm.c.
#![allow(non_upper_case_globals)]

use alloc::vec::Vec;

use super::hypercall::{
    finish, read_guest, u16_at, u32_at, u64_at, write_guest, Errno, HypercallEnvironment, HypercallOutcome,
    HypercallRequest,
};
use basalt_xen_abi::domid::{DOMID_FIRST_RESERVED, DOMID_SELF};
use basalt_xen_abi::errno::*;

pub use basalt_xen_abi::event_channel::{
    EVTCHNOP_alloc_unbound, EVTCHNOP_bind_interdomain, EVTCHNOP_bind_ipi, EVTCHNOP_bind_pirq, EVTCHNOP_bind_vcpu,
    EVTCHNOP_bind_virq, EVTCHNOP_close, EVTCHNOP_expand_array, EVTCHNOP_init_control, EVTCHNOP_reset, EVTCHNOP_send,
    EVTCHNOP_set_priority, EVTCHNOP_status, EVTCHNOP_unmask,
};
pub use basalt_xen_abi::grant_table::{
    GNTST_bad_domain, GNTST_general_error, GNTST_okay, GNTTABOP_get_version, GNTTABOP_query_size, GNTTABOP_set_version,
    GNTTABOP_setup_table,
};

/// Most grant operations in one call (Xen bounds its loops with preemption; Basalt
/// with a cap, which Linux — always 1 — never reaches).
const GRANT_BATCH_MAX: u64 = 16;
/// Most frames one setup_table may list.
pub const GRANT_SETUP_MAX_FRAMES: u32 = 64;

// hvm_op.h / params.h.
pub const HVMOP_set_param: u64 = 0;
pub const HVMOP_get_param: u64 = 1;
pub const HVMOP_pagetable_dying: u64 = 9;
pub const HVMOP_get_time: u64 = 10;
pub const HVMOP_set_evtchn_upcall_vector: u64 = 23;
pub const HVM_PARAM_CALLBACK_IRQ: u32 = 0;
pub const HVM_PARAM_STORE_PFN: u32 = 1;
pub const HVM_PARAM_STORE_EVTCHN: u32 = 2;
pub const HVM_PARAM_CONSOLE_PFN: u32 = 17;
pub const HVM_PARAM_CONSOLE_EVTCHN: u32 = 18;
pub const HVM_NR_PARAMS: u32 = 39;

// vm_assist (xen.h).
const VMASST_CMD_enable: u64 = 0;
const VMASST_CMD_disable: u64 = 1;
const VMASST_TYPE_runstate_update_flag: u64 = 5;

/// An event-channel request, arguments as the guest gave them (unchecked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventChannelOp {
    AllocUnbound { domain: u16, remote_domain: u16 },
    BindInterdomain { remote_domain: u16, remote_port: u32 },
    BindVirq { virq: u32, vcpu: u32 },
    BindIpi { vcpu: u32 },
    Close { port: u32 },
    Send { port: u32 },
    Status { domain: u16, port: u32 },
    BindVcpu { port: u32, vcpu: u32 },
    Unmask { port: u32 },
}

/// `evtchn_status.status` and its union.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortStatus {
    Closed,
    Unbound { remote_domain: u16 },
    Interdomain { remote_domain: u16, remote_port: u32 },
    Pirq { pirq: u32 },
    Virq { virq: u32 },
    Ipi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventChannelReply {
    Done,
    Port(u32),
    Status { status: PortStatus, vcpu: u32 },
}

/// A grant-table request for the calling domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantTableOp {
    QuerySize,
    SetVersion(u32),
    GetVersion,
    /// Grow the table to `frames` frames and report their guest frame numbers.
    SetupTable {
        frames: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantTableReply {
    Size { frames: u32, max_frames: u32 },
    Version(u32),
    Frames(Vec<u64>),
}

/// A domid field that names the caller: DOMID_SELF or its own id.
fn names_caller(env: &dyn HypercallEnvironment, domid: u16) -> bool {
    domid == DOMID_SELF || domid == env.domain_id()
}

// ---------------------------------------------------------------------------------
// event_channel_op

pub fn event_channel_op(env: &mut dyn HypercallEnvironment, call: &HypercallRequest) -> HypercallOutcome {
    let command = u64::from(call.args[0] as u32);
    let arg = call.args[1];
    finish(event_channel(env, command, arg))
}

fn event_channel(env: &mut dyn HypercallEnvironment, command: u64, arg: u64) -> Result<i64, Errno> {
    match command {
        EVTCHNOP_alloc_unbound => {
            let mut bytes: [u8; 8] = read_guest(env, arg)?;
            let op = EventChannelOp::AllocUnbound { domain: u16_at(&bytes, 0), remote_domain: u16_at(&bytes, 2) };
            let port = expect_port(env.event_channel(op)?)?;
            bytes[4..8].copy_from_slice(&port.to_le_bytes());
            write_guest(env, arg, &bytes).map(|()| 0)
        }
        EVTCHNOP_bind_interdomain => {
            let mut bytes: [u8; 12] = read_guest(env, arg)?;
            let op =
                EventChannelOp::BindInterdomain { remote_domain: u16_at(&bytes, 0), remote_port: u32_at(&bytes, 4) };
            let port = expect_port(env.event_channel(op)?)?;
            bytes[8..12].copy_from_slice(&port.to_le_bytes());
            write_guest(env, arg, &bytes).map(|()| 0)
        }
        EVTCHNOP_bind_virq => {
            let mut bytes: [u8; 12] = read_guest(env, arg)?;
            let op = EventChannelOp::BindVirq { virq: u32_at(&bytes, 0), vcpu: u32_at(&bytes, 4) };
            let port = expect_port(env.event_channel(op)?)?;
            bytes[8..12].copy_from_slice(&port.to_le_bytes());
            write_guest(env, arg, &bytes).map(|()| 0)
        }
        EVTCHNOP_bind_ipi => {
            let mut bytes: [u8; 8] = read_guest(env, arg)?;
            let op = EventChannelOp::BindIpi { vcpu: u32_at(&bytes, 0) };
            let port = expect_port(env.event_channel(op)?)?;
            bytes[4..8].copy_from_slice(&port.to_le_bytes());
            write_guest(env, arg, &bytes).map(|()| 0)
        }
        EVTCHNOP_close | EVTCHNOP_send | EVTCHNOP_unmask => {
            let port = u32::from_le_bytes(read_guest::<4>(env, arg)?);
            let op = match command {
                EVTCHNOP_close => EventChannelOp::Close { port },
                EVTCHNOP_send => EventChannelOp::Send { port },
                _ => EventChannelOp::Unmask { port },
            };
            env.event_channel(op).map(|_| 0)
        }
        EVTCHNOP_status => {
            let mut bytes: [u8; 24] = read_guest(env, arg)?;
            let domain = u16_at(&bytes, 0);
            if !names_caller(env, domain) {
                return Err(if domain >= DOMID_FIRST_RESERVED { ESRCH } else { EPERM });
            }
            let op = EventChannelOp::Status { domain, port: u32_at(&bytes, 4) };
            let EventChannelReply::Status { status, vcpu } = env.event_channel(op)? else {
                return Err(EINVAL);
            };
            let (code, first, second): (u32, u32, u32) = match status {
                PortStatus::Closed => (0, 0, 0),
                PortStatus::Unbound { remote_domain } => (1, u32::from(remote_domain), 0),
                PortStatus::Interdomain { remote_domain, remote_port } => (2, u32::from(remote_domain), remote_port),
                PortStatus::Pirq { pirq } => (3, pirq, 0),
                PortStatus::Virq { virq } => (4, virq, 0),
                PortStatus::Ipi => (5, 0, 0),
            };
            bytes[8..12].copy_from_slice(&code.to_le_bytes());
            bytes[12..16].copy_from_slice(&vcpu.to_le_bytes());
            bytes[16..20].copy_from_slice(&first.to_le_bytes());
            bytes[20..24].copy_from_slice(&second.to_le_bytes());
            write_guest(env, arg, &bytes).map(|()| 0)
        }
        EVTCHNOP_bind_vcpu => {
            let bytes: [u8; 8] = read_guest(env, arg)?;
            let op = EventChannelOp::BindVcpu { port: u32_at(&bytes, 0), vcpu: u32_at(&bytes, 4) };
            env.event_channel(op).map(|_| 0)
        }
        // No physical IRQs for a domU; FIFO is not offered (Linux then says "Using
        // 2-level ABI"); priorities are FIFO-only.
        EVTCHNOP_bind_pirq => Err(EPERM),
        EVTCHNOP_init_control | EVTCHNOP_expand_array | EVTCHNOP_set_priority | EVTCHNOP_reset => Err(ENOSYS),
        _ => Err(ENOSYS),
    }
}

fn expect_port(reply: EventChannelReply) -> Result<u32, Errno> {
    match reply {
        EventChannelReply::Port(port) => Ok(port),
        _ => Err(EINVAL),
    }
}

// ---------------------------------------------------------------------------------
// grant_table_op

pub fn grant_table_op(env: &mut dyn HypercallEnvironment, call: &HypercallRequest) -> HypercallOutcome {
    let command = u64::from(call.args[0] as u32);
    let mut arg = call.args[1];
    let count = u64::from(call.args[2] as u32);
    if count > GRANT_BATCH_MAX {
        return HypercallOutcome::Return(-EINVAL);
    }
    let stride = match command {
        GNTTABOP_query_size => 16,
        GNTTABOP_set_version => 4,
        GNTTABOP_get_version => 8,
        GNTTABOP_setup_table => 24,
        _ => return HypercallOutcome::Return(-ENOSYS),
    };
    for _ in 0..count {
        if let Err(errno) = grant_one(env, command, arg) {
            return HypercallOutcome::Return(-errno);
        }
        arg = arg.wrapping_add(stride);
    }
    HypercallOutcome::Return(0)
}

/// One element of a grant-table batch. Statuses go into the structure (the call itself
/// succeeds), as Xen reports them; faults and bad versions are the call's error.
fn grant_one(env: &mut dyn HypercallEnvironment, command: u64, arg: u64) -> Result<(), Errno> {
    match command {
        GNTTABOP_query_size => {
            // `gnttab_query_size { domid_t dom; u32 nr_frames; u32 max_nr_frames; i16 status; }`
            let mut bytes: [u8; 16] = read_guest(env, arg)?;
            let status = if names_caller(env, u16_at(&bytes, 0)) {
                match env.grant_table(GrantTableOp::QuerySize)? {
                    GrantTableReply::Size { frames, max_frames } => {
                        bytes[4..8].copy_from_slice(&frames.to_le_bytes());
                        bytes[8..12].copy_from_slice(&max_frames.to_le_bytes());
                        GNTST_okay
                    }
                    _ => GNTST_general_error,
                }
            } else {
                GNTST_bad_domain
            };
            bytes[12..14].copy_from_slice(&status.to_le_bytes());
            write_guest(env, arg, &bytes)
        }
        GNTTABOP_set_version => {
            let requested = u32::from_le_bytes(read_guest::<4>(env, arg)?);
            let result = env.grant_table(GrantTableOp::SetVersion(requested));
            // Xen writes the version in force back, whether or not it changed.
            let current = match env.grant_table(GrantTableOp::GetVersion)? {
                GrantTableReply::Version(version) => version,
                _ => 1,
            };
            write_guest(env, arg, &current.to_le_bytes())?;
            result.map(|_| ())
        }
        GNTTABOP_get_version => {
            // `gnttab_get_version { domid_t dom; u16 pad; u32 version; }`
            let mut bytes: [u8; 8] = read_guest(env, arg)?;
            if !names_caller(env, u16_at(&bytes, 0)) {
                return Err(EPERM);
            }
            let GrantTableReply::Version(version) = env.grant_table(GrantTableOp::GetVersion)? else {
                return Err(EINVAL);
            };
            bytes[4..8].copy_from_slice(&version.to_le_bytes());
            write_guest(env, arg, &bytes)
        }
        GNTTABOP_setup_table => {
            // `gnttab_setup_table { domid_t dom; u32 nr_frames; i16 status; handle frame_list; }`
            let mut bytes: [u8; 24] = read_guest(env, arg)?;
            let frames = u32_at(&bytes, 4);
            let list = u64_at(&bytes, 16);
            let status = if !names_caller(env, u16_at(&bytes, 0)) {
                GNTST_bad_domain
            } else if frames > GRANT_SETUP_MAX_FRAMES {
                GNTST_general_error
            } else {
                match env.grant_table(GrantTableOp::SetupTable { frames }) {
                    Ok(GrantTableReply::Frames(gfns)) => {
                        let mut encoded = Vec::with_capacity(gfns.len() * 8);
                        for gfn in &gfns {
                            encoded.extend_from_slice(&gfn.to_le_bytes());
                        }
                        write_guest(env, list, &encoded)?;
                        GNTST_okay
                    }
                    _ => GNTST_general_error,
                }
            };
            bytes[8..10].copy_from_slice(&status.to_le_bytes());
            write_guest(env, arg, &bytes)
        }
        _ => Err(ENOSYS),
    }
}

// ---------------------------------------------------------------------------------
// hvm_op

pub fn hvm_op(env: &mut dyn HypercallEnvironment, call: &HypercallRequest) -> HypercallOutcome {
    let command = call.args[0];
    let arg = call.args[1];
    finish(hvm_operation(env, command, arg))
}

fn hvm_operation(env: &mut dyn HypercallEnvironment, command: u64, arg: u64) -> Result<i64, Errno> {
    match command {
        HVMOP_set_param | HVMOP_get_param => hvm_param(env, command, arg),
        HVMOP_set_evtchn_upcall_vector => {
            // `xen_hvm_evtchn_upcall_vector { u32 vcpu; u8 vector; }`: Xen refuses
            // vectors below 0x10 (exceptions) and vCPUs that do not exist.
            let bytes: [u8; 8] = read_guest(env, arg)?;
            let vcpu = u32_at(&bytes, 0);
            let vector = bytes[4];
            if vector < 0x10 {
                Err(EINVAL)
            } else if vcpu >= env.vcpu_count() {
                Err(ENOENT)
            } else {
                env.set_upcall_vector(vcpu, vector).map(|()| 0)
            }
        }
        // Linux probes pagetable_dying once and, if it works, calls it at every exit.
        HVMOP_pagetable_dying => Err(ENOSYS),
        HVMOP_get_time => {
            let now = env.now_ns();
            write_guest(env, arg, &now.to_le_bytes()).map(|()| 0)
        }
        _ => Err(ENOSYS),
    }
}

/// `xen_hvm_param { domid_t domid; u32 index; u64 value; }`.
fn hvm_param(env: &mut dyn HypercallEnvironment, command: u64, arg: u64) -> Result<i64, Errno> {
    let mut bytes: [u8; 16] = read_guest(env, arg)?;
    let domid = u16_at(&bytes, 0);
    if !names_caller(env, domid) {
        return Err(if domid >= DOMID_FIRST_RESERVED { ESRCH } else { EPERM });
    }
    let index = u32_at(&bytes, 4);
    if index >= HVM_NR_PARAMS {
        return Err(EINVAL);
    }
    if command == HVMOP_set_param {
        env.set_hvm_param(index, u64_at(&bytes, 8)).map(|()| 0)
    } else {
        let value = env.hvm_param(index)?;
        bytes[8..16].copy_from_slice(&value.to_le_bytes());
        write_guest(env, arg, &bytes).map(|()| 0)
    }
}

// ---------------------------------------------------------------------------------
// vm_assist

/// Only `runstate_update_flag` is known. Basalt accepts it: it writes a vCPU's
/// runstate area once, at registration, so no update is ever in progress for the flag
/// to announce.
pub fn vm_assist(_env: &mut dyn HypercallEnvironment, call: &HypercallRequest) -> HypercallOutcome {
    let command = u64::from(call.args[0] as u32);
    let kind = u64::from(call.args[1] as u32);
    HypercallOutcome::Return(match (command, kind) {
        (VMASST_CMD_enable | VMASST_CMD_disable, VMASST_TYPE_runstate_update_flag) => 0,
        (VMASST_CMD_enable | VMASST_CMD_disable, _) => -EINVAL,
        _ => -ENOSYS,
    })
}

#[cfg(test)]
#[path = "hypercall_events_tests.rs"]
mod tests;
