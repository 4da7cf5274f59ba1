//! `hcflood`: hammers the hypercall interface with calls that must fail, forever, and
//! counts answers that differ from Xen's.
//!
//! Each probe is a hypercall with bad input and the results Xen gives for it:
//! unknown hypercall numbers (`-ENOSYS`; 1000 is past the hypercall page, so it goes
//! through `vmcall`/`vmmcall` directly), console output and guest-handle arguments
//! pointing at unpopulated guest-physical memory (`-EFAULT`), an unknown `sched_op`
//! (`-ENOSYS`, or `-EINVAL`). Every 20000 calls it prints
//! `hcflood: <calls> calls, <unexpected> unexpected`; the first unexpected answer of
//! each probe is also printed, once. Rounds alternate between VMCALL and VMMCALL, so
//! one of them is always the other vendor's instruction, which the hypervisor must
//! serve the same way (a #UD would kill this guest). The hypervisor must stay up, keep
//! the other domains running and the shell responsive, and be able to destroy this
//! domain.
#![no_std]
#![no_main]

use basalt_guest_rt::abi::console::CONSOLEIO_write;
use basalt_guest_rt::abi::errno::{EFAULT, EINVAL, ENOSYS};
use basalt_guest_rt::abi::hypercall as number;
use basalt_guest_rt::abi::memory::XENMEM_memory_map;
use basalt_guest_rt::abi::version::XENVER_extraversion;
use basalt_guest_rt::hypercall::{hypercall5, set_mechanism, Mechanism};
use basalt_guest_rt::println;

basalt_guest_rt::entry!(main);

/// Guest-physical address with no RAM behind it (see the `badmem` guest).
const UNPOPULATED: u64 = 0xC000_0000;
/// Calls between progress lines.
const REPORT_EVERY: u64 = 20_000;

/// One bad call and the answers Xen gives to it.
struct Probe {
    name: &'static str,
    hypercall: u64,
    arguments: [u64; 5],
    expected: &'static [i64],
}

const PROBES: &[Probe] = &[
    Probe { name: "hypercall 60", hypercall: 60, arguments: [0; 5], expected: &[-ENOSYS] },
    Probe { name: "hypercall 1000", hypercall: 1000, arguments: [0; 5], expected: &[-ENOSYS] },
    Probe {
        name: "console_io write from unpopulated memory",
        hypercall: number::console_io,
        arguments: [CONSOLEIO_write, 16, UNPOPULATED, 0, 0],
        expected: &[-EFAULT],
    },
    Probe {
        name: "xen_version extraversion to unpopulated memory",
        hypercall: number::xen_version,
        arguments: [XENVER_extraversion, UNPOPULATED, 0, 0, 0],
        expected: &[-EFAULT],
    },
    Probe {
        name: "memory_op memory_map at unpopulated memory",
        hypercall: number::memory_op,
        arguments: [XENMEM_memory_map, UNPOPULATED, 0, 0, 0],
        expected: &[-EFAULT],
    },
    Probe {
        name: "sched_op 99",
        hypercall: number::sched_op,
        arguments: [99, 0, 0, 0, 0],
        expected: &[-ENOSYS, -EINVAL],
    },
];

fn main() -> ! {
    let mut calls = 0u64;
    let mut unexpected = 0u64;
    let mut reported = [false; PROBES.len()];
    let mut round = 0u64;
    loop {
        round += 1;
        set_mechanism(if round.is_multiple_of(2) { Mechanism::Vmcall } else { Mechanism::Vmmcall });
        for (index, probe) in PROBES.iter().enumerate() {
            let [a1, a2, a3, a4, a5] = probe.arguments;
            // SAFETY: the only pointers passed point at unpopulated guest-physical memory,
            // which the hypervisor must refuse (-EFAULT) rather than touch; no guest
            // memory can be written.
            let result = unsafe { hypercall5(probe.hypercall, a1, a2, a3, a4, a5) };
            calls += 1;
            if !probe.expected.contains(&result) {
                unexpected += 1;
                if !reported[index] {
                    reported[index] = true;
                    println!("hcflood: {} returned {result}, expected {:?}", probe.name, probe.expected);
                }
            }
            if calls.is_multiple_of(REPORT_EVERY) {
                println!("hcflood: {calls} calls, {unexpected} unexpected");
            }
        }
    }
}
