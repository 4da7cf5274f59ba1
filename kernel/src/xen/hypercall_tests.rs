//! Host tests of hypercall dispatch against a fake domain ([`super::testing`]): guest
//! memory is a byte vector mapped at [`BASE`]; any access outside it faults without
//! effect.

use super::testing::{FakeDomain, BASE, FUZZ_HEADER, SIZE};
use super::*;
use alloc::{vec, vec::Vec};
use basalt_xen_abi::sched::SCHEDOP_watchdog;

/// A guest address that is never mapped.
const UNMAPPED: u64 = 0x1000;

fn call64(number: u64, args: &[u64]) -> HypercallRequest {
    let mut all = [0u64; 6];
    all[..args.len()].copy_from_slice(args);
    HypercallRequest { number, args: all, width: GuestWidth::Bits64, cpl: 0 }
}

fn call32(number: u64, args: &[u64]) -> HypercallRequest {
    HypercallRequest { width: GuestWidth::Bits32, ..call64(number, args) }
}

fn run(domain: &mut FakeDomain, call: HypercallRequest) -> HypercallOutcome {
    dispatch(domain, &call)
}

fn returns(value: i64) -> HypercallOutcome {
    HypercallOutcome::Return(value)
}

// --- dispatch and register helpers -------------------------------------------------

#[test]
fn registers_64_and_32() {
    let registers = HypercallRegisters {
        rax: 0x1_0000_0011,
        rbx: 0xffff_ffff_0000_0001,
        rcx: 2,
        rdx: 3,
        rsi: 4,
        rdi: 5,
        rbp: 6,
        r8: 7,
        r9: 8,
        r10: 9,
    };
    let long = HypercallRequest::from_registers_64(&registers, 0);
    assert_eq!(long.number, 0x1_0000_0011);
    assert_eq!(long.args, [5, 4, 3, 9, 7, 8]);
    assert_eq!(long.width, GuestWidth::Bits64);
    let short = HypercallRequest::from_registers_32(&registers, 0);
    assert_eq!(short.number, 0x11);
    assert_eq!(short.args, [1, 2, 3, 4, 5, 6]);
    assert_eq!(return_register_value(-ENOSYS, GuestWidth::Bits32), 0xffff_ffda);
    assert_eq!(return_register_value(-ENOSYS, GuestWidth::Bits64), (-38i64) as u64);
}

#[test]
fn unknown_and_unprivileged_calls() {
    let mut domain = FakeDomain::new();
    for number in [0, 11, 23, 33, 48, 99, u64::MAX] {
        assert_eq!(run(&mut domain, call64(number, &[])), returns(-ENOSYS), "{number}");
    }
    let user = HypercallRequest { cpl: 3, ..call64(number::xen_version, &[0]) };
    assert_eq!(run(&mut domain, user), returns(-EPERM));
    assert_eq!(hypercall_name(29), Some("sched_op"));
    assert_eq!(hypercall_name(34), Some("hvm_op"));
    assert_eq!(hypercall_name(33), None);
    assert!(domain.writes.is_empty());
}

// --- xen_version -------------------------------------------------------------------

#[test]
fn xen_version_numbers() {
    let mut domain = FakeDomain::new();
    assert_eq!(run(&mut domain, call64(17, &[XENVER_version])), returns(0x0004_0011));
    // `int cmd`: the upper half of RDI is ignored, as in Xen.
    assert_eq!(run(&mut domain, call64(17, &[1 << 32])), returns(0x0004_0011));
    assert_eq!(run(&mut domain, call64(17, &[XENVER_pagesize, 0])), returns(4096));
    assert_eq!(run(&mut domain, call64(17, &[XENVER_pagesize, 1])), returns(-EINVAL));
    assert_eq!(run(&mut domain, call64(17, &[XENVER_build_id, 0])), returns(-EPERM));
    assert_eq!(run(&mut domain, call64(17, &[XENVER_commandline2, 0])), returns(-EPERM));
    assert_eq!(run(&mut domain, call64(17, &[15, 0])), returns(-ENOSYS));
}

#[test]
fn xen_version_strings() {
    let mut domain = FakeDomain::new();
    let arg = domain.at(0x100);
    assert_eq!(run(&mut domain, call64(17, &[XENVER_extraversion, arg])), returns(0));
    assert_eq!(domain.bytes(0x100, 16), b".0-basalt\0\0\0\0\0\0\0");

    domain.memory.fill(0xee);
    assert_eq!(run(&mut domain, call64(17, &[XENVER_capabilities, arg])), returns(0));
    let capabilities = domain.bytes(0x100, 1024);
    assert!(capabilities.starts_with(b"hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64\0"));
    assert!(capabilities[46..].iter().all(|&byte| byte == 0));
    assert_eq!(domain.bytes(0x100 + 1024, 1), &[0xee]);

    domain.memory.fill(0xee);
    assert_eq!(run(&mut domain, call64(17, &[XENVER_compile_info, arg])), returns(0));
    assert!(domain.bytes(0x100, 64).starts_with(b"rustc\0"));
    assert!(domain.bytes(0x140, 16).starts_with(b"basalt\0"));
    assert_eq!(domain.bytes(0x100 + 144, 1), &[0xee]);

    assert_eq!(run(&mut domain, call64(17, &[XENVER_changeset, arg])), returns(0));
    assert_eq!(domain.bytes(0x100 + 63, 1), &[0], "NUL-terminated");

    assert_eq!(run(&mut domain, call64(17, &[XENVER_guest_handle, arg])), returns(0));
    assert_eq!(domain.bytes(0x100, 16), b"0123456789abcdef");

    assert_eq!(run(&mut domain, call64(17, &[XENVER_commandline, arg])), returns(0));
    assert_eq!(domain.bytes(0x100, 9), b"<denied>\0");
}

#[test]
fn xen_version_platform_parameters_by_width() {
    let mut domain = FakeDomain::new();
    domain.memory.fill(0xee);
    let arg = domain.at(0x200);
    assert_eq!(run(&mut domain, call64(17, &[XENVER_platform_parameters, arg])), returns(0));
    assert_eq!(domain.bytes(0x200, 9), &[0, 0, 0, 0, 0, 0, 0, 0, 0xee]);
    domain.memory.fill(0xee);
    // The 32-bit layout (unsigned long is 4 bytes); the fake maps memory only above
    // 4 GiB, so the request keeps a 64-bit address.
    let request = HypercallRequest { width: GuestWidth::Bits32, ..call64(17, &[XENVER_platform_parameters, arg]) };
    assert_eq!(run(&mut domain, request), returns(0));
    assert_eq!(domain.bytes(0x200, 5), &[0, 0, 0, 0, 0xee]);
}

#[test]
fn xen_version_features() {
    let mut domain = FakeDomain::new();
    let arg = domain.at(0x300);
    domain.put(0x300, &[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(run(&mut domain, call64(17, &[XENVER_get_features, arg])), returns(0));
    let submap = u32::from_le_bytes(domain.bytes(0x304, 4).try_into().unwrap());
    assert_eq!(submap, (1 << 0) | (1 << 2) | (1 << 8) | (1 << 9) | (1 << 16));
    assert_eq!(submap & (1 << XENFEAT_hvm_pirqs), 0);

    domain.put(0x300, &[1, 0, 0, 0, 0xaa, 0xaa, 0xaa, 0xaa]);
    assert_eq!(run(&mut domain, call64(17, &[XENVER_get_features, arg])), returns(-EINVAL));
    assert_eq!(domain.bytes(0x304, 4), &[0xaa; 4], "nothing written");
}

#[test]
fn xen_version_faults() {
    for command in [
        XENVER_extraversion,
        XENVER_compile_info,
        XENVER_capabilities,
        XENVER_changeset,
        XENVER_platform_parameters,
        XENVER_get_features,
        XENVER_guest_handle,
        XENVER_commandline,
    ] {
        let mut domain = FakeDomain::new();
        assert_eq!(run(&mut domain, call64(17, &[command, UNMAPPED])), returns(-EFAULT), "{command}");
        // A buffer that starts inside guest memory but runs off its end.
        let tail = domain.at(SIZE as u64 - 4);
        assert_eq!(run(&mut domain, call64(17, &[command, tail])), returns(-EFAULT), "{command}");
        assert!(domain.writes.is_empty(), "{command}");
    }
}

// --- console_io --------------------------------------------------------------------

#[test]
fn console_write() {
    let mut domain = FakeDomain::new();
    let text: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
    domain.put(0x1000, &text);
    let buffer = domain.at(0x1000);
    assert_eq!(run(&mut domain, call64(18, &[CONSOLEIO_write, 1000, buffer])), returns(0));
    assert_eq!(domain.console_out, text);
    assert_eq!(run(&mut domain, call64(18, &[CONSOLEIO_write, 0, UNMAPPED])), returns(0));
    assert_eq!(domain.console_out.len(), 1000);
    assert_eq!(
        run(&mut domain, call64(18, &[CONSOLEIO_write, u64::from(CONSOLE_WRITE_MAX) + 1, buffer])),
        returns(-EINVAL)
    );
    assert_eq!(run(&mut domain, call64(18, &[CONSOLEIO_write, 10, UNMAPPED])), returns(-EFAULT));
    // Runs off the end of guest memory in the second chunk: the first chunk is out.
    let near_end = domain.at(SIZE as u64 - 300);
    assert_eq!(run(&mut domain, call64(18, &[CONSOLEIO_write, 400, near_end])), returns(-EFAULT));
    assert_eq!(domain.console_out.len(), 1000 + 256);
    assert_eq!(run(&mut domain, call64(18, &[2, 0, 0])), returns(-ENOSYS));
}

#[test]
fn console_read() {
    let mut domain = FakeDomain::new();
    let buffer = domain.at(0x2000);
    assert_eq!(run(&mut domain, call64(18, &[CONSOLEIO_read, 64, buffer])), returns(0), "no input");
    domain.console_in.extend(b"ls -l\n".iter());
    assert_eq!(run(&mut domain, call64(18, &[CONSOLEIO_read, 3, buffer])), returns(3));
    assert_eq!(domain.bytes(0x2000, 3), b"ls ");
    assert_eq!(run(&mut domain, call64(18, &[CONSOLEIO_read, 64, buffer])), returns(3));
    assert_eq!(domain.bytes(0x2000, 3), b"-l\n");
    domain.console_in.extend(core::iter::repeat_n(b'x', 600));
    assert_eq!(run(&mut domain, call64(18, &[CONSOLEIO_read, 1000, buffer])), returns(600));
    domain.console_in.push_back(b'y');
    assert_eq!(run(&mut domain, call64(18, &[CONSOLEIO_read, 4, UNMAPPED])), returns(-EFAULT));
    assert_eq!(run(&mut domain, call64(18, &[CONSOLEIO_read, u64::from(u32::MAX), buffer])), returns(-E2BIG));
}

// --- sched_op ----------------------------------------------------------------------

#[test]
fn sched_op_scheduling() {
    let mut domain = FakeDomain::new();
    assert_eq!(run(&mut domain, call64(29, &[SCHEDOP_yield, 0])), HypercallOutcome::Yield(0));
    assert_eq!(run(&mut domain, call64(29, &[SCHEDOP_block, 0])), HypercallOutcome::Block);
    assert_eq!(run(&mut domain, call64(29, &[SCHEDOP_pin_override, 0])), returns(-EPERM));
    assert_eq!(run(&mut domain, call64(29, &[SCHEDOP_watchdog, 0])), returns(-ENOSYS));
    assert_eq!(run(&mut domain, call64(29, &[42, 0])), returns(-ENOSYS));
}

#[test]
fn sched_op_shutdown() {
    let mut domain = FakeDomain::new();
    domain.put(0x10, &3u32.to_le_bytes());
    let arg = domain.at(0x10);
    assert_eq!(run(&mut domain, call64(29, &[SCHEDOP_shutdown, arg])), HypercallOutcome::Shutdown { reason: 3 });
    assert_eq!(run(&mut domain, call64(29, &[SCHEDOP_shutdown, UNMAPPED])), returns(-EFAULT));
    assert_eq!(run(&mut domain, call64(29, &[SCHEDOP_shutdown_code, arg])), returns(0));
    assert_eq!(domain.shutdown_code, Some(3));
    assert_eq!(run(&mut domain, call64(29, &[SCHEDOP_shutdown_code, UNMAPPED])), returns(-EFAULT));

    domain.put(0x20, &[1, 0, 0, 0, 0, 0, 0, 0]);
    let remote = domain.at(0x20);
    assert_eq!(run(&mut domain, call64(29, &[SCHEDOP_remote_shutdown, remote])), returns(-EPERM));
    domain.put(0x20, &DOMID_SELF.to_le_bytes());
    assert_eq!(run(&mut domain, call64(29, &[SCHEDOP_remote_shutdown, remote])), returns(-ESRCH));
    assert_eq!(run(&mut domain, call64(29, &[SCHEDOP_remote_shutdown, UNMAPPED])), returns(-EFAULT));
}

#[test]
fn sched_op_poll() {
    let mut domain = FakeDomain::new();
    let ports = domain.at(0x400);
    let mut poll = Vec::new();
    poll.extend_from_slice(&ports.to_le_bytes());
    poll.extend_from_slice(&2u32.to_le_bytes());
    poll.extend_from_slice(&[0; 4]);
    poll.extend_from_slice(&0u64.to_le_bytes());
    domain.put(0x300, &poll);
    let arg = domain.at(0x300);
    assert_eq!(run(&mut domain, call64(29, &[SCHEDOP_poll, arg])), HypercallOutcome::Yield(0));

    domain.put(0x308, &129u32.to_le_bytes());
    assert_eq!(run(&mut domain, call64(29, &[SCHEDOP_poll, arg])), returns(-EINVAL));
    domain.put(0x300, &UNMAPPED.to_le_bytes());
    domain.put(0x308, &1u32.to_le_bytes());
    assert_eq!(run(&mut domain, call64(29, &[SCHEDOP_poll, arg])), returns(-EFAULT));
    assert_eq!(run(&mut domain, call64(29, &[SCHEDOP_poll, UNMAPPED])), returns(-EFAULT));
    // No ports: nothing to read.
    domain.put(0x308, &0u32.to_le_bytes());
    assert_eq!(run(&mut domain, call64(29, &[SCHEDOP_poll, arg])), HypercallOutcome::Yield(0));

    // 32-bit layout: u32 handle, u32 nr_ports, u64 timeout. The handle cannot reach the
    // fake's high mapping, so a non-empty list faults and an empty one succeeds.
    domain.put(0x500, &[0, 0x10, 0, 0, 1, 0, 0, 0]);
    let arg32 = domain.at(0x500);
    assert_eq!(run(&mut domain, call32(29, &[SCHEDOP_poll, arg32])), returns(-EFAULT));
    domain.put(0x504, &0u32.to_le_bytes());
    assert_eq!(run(&mut domain, call32(29, &[SCHEDOP_poll, arg32])), HypercallOutcome::Yield(0));
}

// --- memory_op ---------------------------------------------------------------------

fn memory_map_arg(domain: &mut FakeDomain, capacity: u32, buffer: u64) -> u64 {
    let mut map = Vec::new();
    map.extend_from_slice(&capacity.to_le_bytes());
    map.extend_from_slice(&[0; 4]);
    map.extend_from_slice(&buffer.to_le_bytes());
    domain.put(0x40, &map);
    domain.at(0x40)
}

#[test]
fn memory_map() {
    let mut domain = FakeDomain::new();
    domain.memory.fill(0xee);
    let buffer = domain.at(0x800);
    let arg = memory_map_arg(&mut domain, 128, buffer);
    assert_eq!(run(&mut domain, call64(12, &[XENMEM_memory_map, arg])), returns(0));
    assert_eq!(domain.bytes(0x40, 4), &3u32.to_le_bytes());
    let entries = domain.bytes(0x800, 60).to_vec();
    assert_eq!(&entries[20..28], &0xf_c000u64.to_le_bytes());
    assert_eq!(&entries[28..36], &0x4000u64.to_le_bytes());
    assert_eq!(&entries[36..40], &2u32.to_le_bytes());
    assert_eq!(&entries[56..60], &1u32.to_le_bytes());
    assert_eq!(domain.bytes(0x800 + 60, 1), &[0xee]);

    // Capacity smaller than the map.
    domain.memory.fill(0xee);
    let arg = memory_map_arg(&mut domain, 2, buffer);
    assert_eq!(run(&mut domain, call64(12, &[XENMEM_memory_map, arg])), returns(0));
    assert_eq!(domain.bytes(0x40, 4), &2u32.to_le_bytes());
    assert_eq!(domain.bytes(0x800 + 40, 1), &[0xee]);

    // Capacity 0: no entries, the buffer is not touched even if it is bad.
    let arg = memory_map_arg(&mut domain, 0, UNMAPPED);
    assert_eq!(run(&mut domain, call64(12, &[XENMEM_memory_map, arg])), returns(0));
    assert_eq!(domain.bytes(0x40, 4), &0u32.to_le_bytes());

    // Faults: the argument, then the buffer (count left alone).
    assert_eq!(run(&mut domain, call64(12, &[XENMEM_memory_map, UNMAPPED])), returns(-EFAULT));
    let arg = memory_map_arg(&mut domain, 128, UNMAPPED);
    assert_eq!(run(&mut domain, call64(12, &[XENMEM_memory_map, arg])), returns(-EFAULT));
    assert_eq!(domain.bytes(0x40, 4), &128u32.to_le_bytes());

    // Continuation bits make it an unknown command; no map is -ENOSYS.
    let arg = memory_map_arg(&mut domain, 128, buffer);
    assert_eq!(run(&mut domain, call64(12, &[XENMEM_memory_map | 1 << 6, arg])), returns(-ENOSYS));
    domain.map.clear();
    assert_eq!(run(&mut domain, call64(12, &[XENMEM_memory_map, arg])), returns(-ENOSYS));
}

#[test]
fn memory_map_32bit_layout() {
    let mut domain = FakeDomain::new();
    // u32 nr_entries, u32 buffer: the fake maps nothing below 4 GiB, so the buffer
    // faults, which shows the 32-bit handle was read from offset 4.
    domain.put(0x40, &[8, 0, 0, 0, 0, 0x20, 0, 0]);
    let arg = domain.at(0x40);
    assert_eq!(run(&mut domain, call32(12, &[XENMEM_memory_map, arg])), returns(-EFAULT));
    assert_eq!(domain.bytes(0x40, 4), &8u32.to_le_bytes());
}

#[test]
fn memory_reservation_queries() {
    let mut domain = FakeDomain::new();
    let arg = domain.at(0x60);
    for domid in [DOMID_SELF, 5] {
        domain.put(0x60, &domid.to_le_bytes());
        assert_eq!(run(&mut domain, call64(12, &[XENMEM_current_reservation, arg])), returns(0x3ffa0));
        assert_eq!(run(&mut domain, call64(12, &[XENMEM_maximum_reservation, arg])), returns(0x40000));
        assert_eq!(run(&mut domain, call64(12, &[XENMEM_maximum_gpfn, arg])), returns(0x3ffff));
    }
    domain.put(0x60, &0u16.to_le_bytes());
    assert_eq!(run(&mut domain, call64(12, &[XENMEM_current_reservation, arg])), returns(-EPERM));
    domain.put(0x60, &0x7ff1u16.to_le_bytes());
    assert_eq!(run(&mut domain, call64(12, &[XENMEM_maximum_gpfn, arg])), returns(-ESRCH));
    assert_eq!(run(&mut domain, call64(12, &[XENMEM_maximum_reservation, UNMAPPED])), returns(-EFAULT));
    assert_eq!(run(&mut domain, call64(12, &[XENMEM_current_reservation | 1 << 6, arg])), returns(-EINVAL));
    assert_eq!(run(&mut domain, call64(12, &[XENMEM_maximum_ram_page, 0])), returns(0x3ffff));
    assert_eq!(run(&mut domain, call64(12, &[XENMEM_maximum_ram_page | 1 << 6, 0])), returns(-EINVAL));
    assert_eq!(run(&mut domain, call64(12, &[7, arg])), returns(-ESRCH), "add_to_physmap for a reserved domid");
    assert_eq!(run(&mut domain, call64(12, &[63, arg])), returns(-ENOSYS));
    domain.pages.max_gpfn = u64::MAX;
    assert_eq!(run(&mut domain, call64(12, &[XENMEM_maximum_ram_page, 0])), returns(i64::MAX));
    assert!(domain.writes.is_empty());
}

// --- vcpu_op -----------------------------------------------------------------------

fn context_64(domain: &mut FakeDomain, mode: u32) -> u64 {
    let mut context = vec![0u8; 128];
    context[..4].copy_from_slice(&mode.to_le_bytes());
    for (index, value) in
        [0x11u64, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x1000_0000, 2, 0x8000_0011, 0x9000, 0x20, 0x500]
            .into_iter()
            .enumerate()
    {
        context[8 + index * 8..16 + index * 8].copy_from_slice(&value.to_le_bytes());
    }
    domain.put(0x600, &context);
    domain.at(0x600)
}

#[test]
fn vcpu_initialise_and_up() {
    let mut domain = FakeDomain::new();
    let arg = context_64(&mut domain, 1);
    assert_eq!(run(&mut domain, call64(24, &[VCPUOP_up, 1, 0])), returns(-EINVAL), "not initialised");
    assert_eq!(run(&mut domain, call64(24, &[VCPUOP_initialise, 1, UNMAPPED])), returns(-EFAULT));
    assert_eq!(run(&mut domain, call64(24, &[VCPUOP_initialise, 1, arg])), returns(0));
    let (vcpu, VcpuStartContext::Long64(registers)) = domain.initialised[0] else {
        panic!("64-bit context expected");
    };
    assert_eq!(vcpu, 1);
    assert_eq!(
        (registers.rax, registers.rbx, registers.rip, registers.cr3, registers.efer),
        (0x11, 0x44, 0x1000_0000, 0x9000, 0x500)
    );
    assert_eq!(run(&mut domain, call64(24, &[VCPUOP_initialise, 1, arg])), returns(-EEXIST));
    assert_eq!(run(&mut domain, call64(24, &[VCPUOP_is_up, 1, 0])), returns(0));
    assert_eq!(run(&mut domain, call64(24, &[VCPUOP_up, 1, 0])), returns(0));
    assert_eq!(run(&mut domain, call64(24, &[VCPUOP_is_up, 1, 0])), returns(1));
    assert_eq!(run(&mut domain, call64(24, &[VCPUOP_up, 1, 0])), returns(0), "idempotent");
    assert_eq!(run(&mut domain, call64(24, &[VCPUOP_initialise, 0, arg])), returns(-EEXIST), "running");
}

#[test]
fn vcpu_initialise_32bit_and_bad_modes() {
    let mut domain = FakeDomain::new();
    let mut context = vec![0u8; 128];
    context[8 + 8 * 4..8 + 9 * 4].copy_from_slice(&0x0010_0000u32.to_le_bytes()); // eip
    context[8 + 56..8 + 64].copy_from_slice(&0x100u64.to_le_bytes()); // efer
    context[8 + 104..8 + 106].copy_from_slice(&0xc09bu16.to_le_bytes()); // cs_ar
    context[8 + 112..8 + 114].copy_from_slice(&0x8bu16.to_le_bytes()); // tr_ar
    domain.put(0x700, &context);
    let arg = domain.at(0x700);
    assert_eq!(run(&mut domain, call64(24, &[VCPUOP_initialise, 1, arg])), returns(0));
    let (_, VcpuStartContext::Protected32(registers)) = domain.initialised[0] else {
        panic!("32-bit context expected");
    };
    assert_eq!((registers.eip, registers.efer, registers.cs_ar, registers.tr_ar), (0x0010_0000, 0x100, 0xc09b, 0x8b));

    let mut domain = FakeDomain::new();
    for mode in [2u32, u32::MAX] {
        let arg = context_64(&mut domain, mode);
        assert_eq!(run(&mut domain, call64(24, &[VCPUOP_initialise, 1, arg])), returns(-EINVAL));
    }
    domain.refuse_initialise = true;
    let arg = context_64(&mut domain, 1);
    assert_eq!(run(&mut domain, call64(24, &[VCPUOP_initialise, 1, arg])), returns(-EINVAL));
    assert!(domain.initialised.is_empty());
}

#[test]
fn vcpu_down_and_errors() {
    let mut domain = FakeDomain::new();
    assert_eq!(run(&mut domain, call64(24, &[VCPUOP_is_up, 3, 0])), returns(-ENOENT));
    assert_eq!(run(&mut domain, call64(24, &[99, 3, 0])), returns(-ENOENT), "vCPU checked first");
    assert_eq!(run(&mut domain, call64(24, &[VCPUOP_is_up, 1 << 32, 0])), returns(1), "unsigned int vcpuid");
    assert_eq!(run(&mut domain, call64(24, &[10, 0, 0])), returns(-EFAULT), "register_vcpu_info reads its argument");
    // vCPU 0 is the only one up: taking it down powers the domain off.
    assert_eq!(
        run(&mut domain, call64(24, &[VCPUOP_down, 0, 0])),
        HypercallOutcome::Shutdown { reason: SHUTDOWN_poweroff }
    );
    domain.states[2] = VcpuPowerState::Up;
    assert_eq!(run(&mut domain, call64(24, &[VCPUOP_down, 0, 0])), returns(0));
    assert_eq!(domain.states[0], VcpuPowerState::Down);
}

#[test]
fn vcpu_timers() {
    let mut domain = FakeDomain::new();
    assert_eq!(run(&mut domain, call64(24, &[VCPUOP_stop_periodic_timer, 2, 0])), returns(0));
    let mut timer = Vec::new();
    timer.extend_from_slice(&5_000_000u64.to_le_bytes());
    timer.extend_from_slice(&1u32.to_le_bytes());
    timer.extend_from_slice(&[0; 4]);
    domain.put(0x80, &timer);
    let arg = domain.at(0x80);
    assert_eq!(run(&mut domain, call64(24, &[VCPUOP_set_singleshot_timer, 0, arg])), returns(0));
    assert_eq!(domain.timer, Some(Some(5_000_000)));
    assert_eq!(
        run(&mut domain, call64(24, &[VCPUOP_set_singleshot_timer, 1, arg])),
        returns(-EINVAL),
        "not the caller"
    );
    assert_eq!(run(&mut domain, call64(24, &[VCPUOP_set_singleshot_timer, 0, UNMAPPED])), returns(-EFAULT));
    // 32-bit guests pass 12 bytes: the last 12 bytes of guest memory are enough.
    let tail = domain.at(SIZE as u64 - 12);
    assert_eq!(run(&mut domain, call32(24, &[VCPUOP_set_singleshot_timer, 0, tail])), returns(0));
    assert_eq!(run(&mut domain, call64(24, &[VCPUOP_set_singleshot_timer, 0, tail])), returns(-EFAULT));
    assert_eq!(run(&mut domain, call64(24, &[VCPUOP_stop_singleshot_timer, 1, 0])), returns(-EINVAL));
    assert_eq!(run(&mut domain, call64(24, &[VCPUOP_stop_singleshot_timer, 0, 0])), returns(0));
    assert_eq!(domain.timer, Some(None));
}

// --- set_timer_op ------------------------------------------------------------------

#[test]
fn set_timer_op() {
    let mut domain = FakeDomain::new();
    assert_eq!(run(&mut domain, call64(15, &[0])), returns(0));
    assert_eq!(domain.timer, Some(None));
    assert_eq!(run(&mut domain, call64(15, &[2_000_000])), returns(0));
    assert_eq!(domain.timer, Some(Some(2_000_000)));
    assert_eq!(run(&mut domain, call64(15, &[500])), returns(0), "in the past: fires at once");
    assert_eq!(domain.timer, Some(Some(500)));
    let fallback = Some(Some(1_000_000 + 100_000_000));
    assert_eq!(run(&mut domain, call64(15, &[u64::MAX])), returns(0));
    assert_eq!(domain.timer, fallback, "negative");
    assert_eq!(run(&mut domain, call64(15, &[1_000_000 + (1 << 50)])), returns(0));
    assert_eq!(domain.timer, fallback, "too far ahead");
    assert_eq!(run(&mut domain, call32(15, &[0x0000_0005, 0x1])), returns(0));
    assert_eq!(domain.timer, Some(Some(0x1_0000_0005)), "32-bit halves");
}

// --- every handler against random arguments ----------------------------------------

/// The part of guest memory the fuzz loop fills with random bytes and pointers.
const FUZZ_WINDOW: usize = 4096;

#[test]
fn random_arguments_never_panic_or_escape_guest_memory() {
    let mut seed = 0x853c_49e6_748f_ea9bu64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let numbers = [12u64, 15, 17, 18, 24, 29];
    for round in 0..20_000 {
        let mut domain = FakeDomain::new();
        domain.vcpu = (next() % 3) as u32;
        domain.console_in.extend((0..(next() % 600)).map(|i| i as u8));
        // Guest memory holds random bytes, sometimes with valid pointers planted.
        for chunk in domain.memory[..FUZZ_WINDOW].chunks_mut(8) {
            let value = next();
            let value = if value % 5 == 0 { BASE + value % FUZZ_WINDOW as u64 } else { value };
            chunk.copy_from_slice(&value.to_le_bytes()[..chunk.len()]);
        }
        let mut arg = || match next() % 4 {
            0 => next() % 16,
            1 => BASE + next() % FUZZ_WINDOW as u64,
            2 if next() % 8 == 0 => BASE + SIZE as u64 - next() % 64,
            2 => next(),
            _ => next() % 0x1_0000_0000,
        };
        let args = [arg(), arg(), arg(), arg(), arg(), arg()];
        let number = if round % 10 == 0 { next() % 64 } else { numbers[(next() % 6) as usize] };
        let width = if next() % 4 == 0 { GuestWidth::Bits32 } else { GuestWidth::Bits64 };
        let call = HypercallRequest { number, args, width, cpl: 0 };
        let before_len = domain.memory.len();
        match dispatch(&mut domain, &call) {
            HypercallOutcome::Return(value) | HypercallOutcome::Yield(value) => {
                assert!(value > -4096, "errno range: {value} from {call:?}");
            }
            HypercallOutcome::Block | HypercallOutcome::Shutdown { .. } => {}
        }
        assert_eq!(domain.memory.len(), before_len);
        for &(address, length) in &domain.writes {
            assert!(address >= BASE && address + length as u64 <= BASE + SIZE as u64);
        }
        assert!(domain.console_out.len() <= CONSOLE_WRITE_MAX as usize);
    }
}

/// The fuzz target's body over xorshift-random inputs: random headers and guest memory
/// whose words are often pointers into it, so nested structures resolve.
#[test]
fn fuzz_body_over_random_inputs() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..5_000 {
        let length = FUZZ_HEADER + (next() % 1024) as usize;
        let mut input = Vec::with_capacity(length + 8);
        while input.len() < length {
            let value = next();
            let value = match value % 4 {
                0 => value % 0x1000,
                1 => BASE + value % 0x1000,
                _ => value,
            };
            input.extend_from_slice(&value.to_le_bytes());
        }
        input.truncate(length);
        // Mostly CPL 0.
        input[1] &= !0x20;
        fuzz_one(&input);
    }
    for length in 0..=FUZZ_HEADER + 8 {
        fuzz_one(&vec![0xa5; length]);
    }
}
