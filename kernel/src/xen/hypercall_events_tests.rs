//! Host tests of the event, grant-table, HVM and vm_assist hypercalls against the
//! fake domain: argument layouts in and out, errors, and nothing written on failure.

use super::*;
use crate::xen::hypercall::testing::FakeDomain;
use crate::xen::hypercall::{dispatch, GuestWidth, HypercallOutcome, HypercallRequest};
use basalt_xen_abi::hypercall as number;

fn call(number: u64, args: &[u64]) -> HypercallRequest {
    let mut all = [0u64; 6];
    all[..args.len()].copy_from_slice(args);
    HypercallRequest { number, args: all, width: GuestWidth::Bits64, cpl: 0 }
}

fn run(domain: &mut FakeDomain, number: u64, args: &[u64]) -> HypercallOutcome {
    dispatch(domain, &call(number, args))
}

const OK: HypercallOutcome = HypercallOutcome::Return(0);

fn err(errno: i64) -> HypercallOutcome {
    HypercallOutcome::Return(-errno)
}

#[test]
fn event_channel_layouts() {
    let mut domain = FakeDomain::new();
    let arg = domain.at(0x100);
    // alloc_unbound { dom = DOMID_SELF, remote_dom = 0 } → port at offset 4.
    domain.put(0x100, &[0xf0, 0x7f, 0, 0, 0, 0, 0, 0]);
    assert_eq!(run(&mut domain, number::event_channel_op, &[EVTCHNOP_alloc_unbound, arg]), OK);
    assert_eq!(domain.event_ops[0], EventChannelOp::AllocUnbound { domain: DOMID_SELF, remote_domain: 0 });
    assert_eq!(domain.bytes(0x104, 4), &7u32.to_le_bytes());
    // bind_virq { virq 0, vcpu 1 } → port at offset 8.
    domain.put(0x100, &[0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(run(&mut domain, number::event_channel_op, &[EVTCHNOP_bind_virq, arg]), OK);
    assert_eq!(domain.event_ops[1], EventChannelOp::BindVirq { virq: 0, vcpu: 1 });
    assert_eq!(domain.bytes(0x108, 4), &7u32.to_le_bytes());
    // send / close / unmask take one port.
    domain.put(0x100, &9u32.to_le_bytes());
    for (command, op) in [
        (EVTCHNOP_send, EventChannelOp::Send { port: 9 }),
        (EVTCHNOP_close, EventChannelOp::Close { port: 9 }),
        (EVTCHNOP_unmask, EventChannelOp::Unmask { port: 9 }),
    ] {
        assert_eq!(run(&mut domain, number::event_channel_op, &[command, arg]), OK);
        assert_eq!(*domain.event_ops.last().unwrap(), op);
    }
    // FIFO is not offered: Linux falls back to the 2-level ABI.
    assert_eq!(run(&mut domain, number::event_channel_op, &[EVTCHNOP_init_control, arg]), err(ENOSYS));
    assert_eq!(run(&mut domain, number::event_channel_op, &[EVTCHNOP_bind_pirq, arg]), err(EPERM));
}

#[test]
fn event_channel_status_and_errors() {
    let mut domain = FakeDomain::new();
    let arg = domain.at(0x200);
    domain.event_reply =
        Ok(EventChannelReply::Status { status: PortStatus::Interdomain { remote_domain: 0, remote_port: 3 }, vcpu: 1 });
    domain.put(0x200, &[0xf0, 0x7f, 0, 0, 5, 0, 0, 0]);
    assert_eq!(run(&mut domain, number::event_channel_op, &[EVTCHNOP_status, arg]), OK);
    assert_eq!(domain.bytes(0x208, 16), &[2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0]);
    // Another domain's ports: EPERM, without asking the environment.
    let asked = domain.event_ops.len();
    domain.put(0x200, &[3, 0]);
    assert_eq!(run(&mut domain, number::event_channel_op, &[EVTCHNOP_status, arg]), err(EPERM));
    assert_eq!(domain.event_ops.len(), asked);
    // The environment's error comes back negated, and no port is written.
    domain.event_reply = Err(EEXIST);
    domain.put(0x200, &[0u8; 12]);
    let writes = domain.writes.len();
    assert_eq!(run(&mut domain, number::event_channel_op, &[EVTCHNOP_bind_virq, arg]), err(EEXIST));
    assert_eq!(domain.writes.len(), writes);
    // Unmapped argument.
    assert_eq!(run(&mut domain, number::event_channel_op, &[EVTCHNOP_send, 0x10]), err(EFAULT));
}

#[test]
fn grant_table_operations() {
    let mut domain = FakeDomain::new();
    let arg = domain.at(0x300);
    domain.put(0x300, &[0xf0, 0x7f]);
    assert_eq!(run(&mut domain, number::grant_table_op, &[GNTTABOP_query_size, arg, 1]), OK);
    assert_eq!(domain.bytes(0x304, 10), &[1, 0, 0, 0, 64, 0, 0, 0, 0, 0]);
    // Another domain: a status, not a call error.
    domain.put(0x300, &[4, 0]);
    assert_eq!(run(&mut domain, number::grant_table_op, &[GNTTABOP_query_size, arg, 1]), OK);
    assert_eq!(domain.bytes(0x30c, 2), &GNTST_bad_domain.to_le_bytes());
    // set_version writes the version in force back.
    domain.put(0x300, &2u32.to_le_bytes());
    assert_eq!(run(&mut domain, number::grant_table_op, &[GNTTABOP_set_version, arg, 1]), err(EINVAL));
    assert_eq!(domain.bytes(0x300, 4), &1u32.to_le_bytes());
    // setup_table lists the frames.
    let list = domain.at(0x400);
    domain.put(0x300, &[0xf0, 0x7f, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    domain.put(0x310, &list.to_le_bytes());
    assert_eq!(run(&mut domain, number::grant_table_op, &[GNTTABOP_setup_table, arg, 1]), OK);
    assert_eq!(domain.bytes(0x308, 2), &GNTST_okay.to_le_bytes());
    assert_eq!(domain.bytes(0x400, 16), &[0, 0x10, 0, 0, 0, 0, 0, 0, 1, 0x10, 0, 0, 0, 0, 0, 0]);
    // Batches are bounded; unknown commands are ENOSYS.
    assert_eq!(run(&mut domain, number::grant_table_op, &[GNTTABOP_query_size, arg, 17]), err(EINVAL));
    assert_eq!(run(&mut domain, number::grant_table_op, &[0, arg, 1]), err(ENOSYS));
}

#[test]
fn hvm_parameters_and_upcall_vector() {
    let mut domain = FakeDomain::new();
    let arg = domain.at(0x500);
    domain.params[1] = 0xfeffc;
    domain.put(0x500, &[0xf0, 0x7f, 0, 0, 1, 0, 0, 0]);
    assert_eq!(run(&mut domain, number::hvm_op, &[HVMOP_get_param, arg]), OK);
    assert_eq!(domain.bytes(0x508, 8), &0xfeffcu64.to_le_bytes());
    // The callback: type 2 (vector) in the top byte.
    domain.put(0x500, &[0xf0, 0x7f, 0, 0, 0, 0, 0, 0]);
    domain.put(0x508, &0x0200_0000_0000_00f3u64.to_le_bytes());
    assert_eq!(run(&mut domain, number::hvm_op, &[HVMOP_set_param, arg]), OK);
    assert_eq!(domain.params[0], 0x0200_0000_0000_00f3);
    // Index beyond the table, another domain.
    domain.put(0x504, &HVM_NR_PARAMS.to_le_bytes());
    assert_eq!(run(&mut domain, number::hvm_op, &[HVMOP_get_param, arg]), err(EINVAL));
    domain.put(0x500, &[9, 0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(run(&mut domain, number::hvm_op, &[HVMOP_get_param, arg]), err(EPERM));
    // Upcall vector: below 0x10 or a missing vCPU is refused.
    domain.put(0x500, &[1, 0, 0, 0, 0xf3, 0, 0, 0]);
    assert_eq!(run(&mut domain, number::hvm_op, &[HVMOP_set_evtchn_upcall_vector, arg]), OK);
    assert_eq!(domain.upcall_vectors, [(1, 0xf3)]);
    domain.put(0x500, &[0, 0, 0, 0, 0x0f, 0, 0, 0]);
    assert_eq!(run(&mut domain, number::hvm_op, &[HVMOP_set_evtchn_upcall_vector, arg]), err(EINVAL));
    domain.put(0x500, &[3, 0, 0, 0, 0xf3, 0, 0, 0]);
    assert_eq!(run(&mut domain, number::hvm_op, &[HVMOP_set_evtchn_upcall_vector, arg]), err(ENOENT));
    assert_eq!(run(&mut domain, number::hvm_op, &[HVMOP_pagetable_dying, arg]), err(ENOSYS));
}

#[test]
fn vm_assist_knows_one_type() {
    let mut domain = FakeDomain::new();
    assert_eq!(run(&mut domain, number::vm_assist, &[0, 5]), OK);
    assert_eq!(run(&mut domain, number::vm_assist, &[0, 2]), err(EINVAL));
    assert_eq!(run(&mut domain, number::vm_assist, &[7, 5]), err(ENOSYS));
}
