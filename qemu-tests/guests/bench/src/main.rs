//! `bench`: the cost of a round trip through the hypervisor, in TSC cycles.
//!
//! N (the command line's `iterations=N`, default 1000000) CPUIDs of leaf 0x40000000
//! (each one exits to the hypervisor), then N `xen_version(XENVER_version)` calls
//! through the hypercall page. Prints
//! `bench: cpuid <cycles-per-op> cycles/op over <N>`,
//! `bench: xen_version <cycles-per-op> cycles/op over <N>`, `bench: done`, and powers
//! off. Cycles per operation are rounded down; under an emulator they measure the
//! emulator too.
#![no_std]
#![no_main]

use basalt_guest_rt::abi::cpuid::XEN_CPUID_FIRST_LEAF;
use basalt_guest_rt::{cpu, hypercall, poweroff, println, start_info};

basalt_guest_rt::entry!(main);

const DEFAULT_ITERATIONS: u64 = 1_000_000;

fn main() -> ! {
    let command_line = start_info::command_line();
    let iterations = match command_line.value("iterations").map(str::parse::<u64>) {
        None => DEFAULT_ITERATIONS,
        Some(Ok(iterations)) => iterations,
        Some(Err(_)) => {
            println!("bench: bad iterations= value, using {DEFAULT_ITERATIONS}");
            DEFAULT_ITERATIONS
        }
    };

    let cycles = time(iterations, || {
        core::hint::black_box(cpu::cpuid(XEN_CPUID_FIRST_LEAF, 0));
    });
    println!("bench: cpuid {} cycles/op over {iterations}", per_operation(cycles, iterations));

    let cycles = time(iterations, || {
        core::hint::black_box(hypercall::xen_version());
    });
    println!("bench: xen_version {} cycles/op over {iterations}", per_operation(cycles, iterations));

    println!("bench: done");
    poweroff()
}

/// TSC cycles taken by `iterations` calls of `operation`.
fn time(iterations: u64, mut operation: impl FnMut()) -> u64 {
    let start = cpu::rdtsc();
    for _ in 0..iterations {
        operation();
    }
    cpu::rdtsc().wrapping_sub(start)
}

fn per_operation(cycles: u64, iterations: u64) -> u64 {
    cycles.checked_div(iterations).unwrap_or(0)
}
