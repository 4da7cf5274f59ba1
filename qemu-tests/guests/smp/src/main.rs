//! `smp`: every vCPU of the domain computes, and vCPU 0 sees them all finish.
//!
//! vCPU 0 counts the vCPUs (the first id `VCPUOP_is_up` answers `-ENOENT` for), starts
//! vCPUs 1..N−1 in 64-bit mode (`VCPUOP_initialise`, `VCPUOP_up`), then does the same
//! work as each of them: a xorshift64 checksum seeded by the vCPU id (deterministic,
//! so a test can compare sums across runs). Each vCPU prints
//! `smp: vcpu <k> done sum=<value>` and sets its done flag (release); vCPU 0 waits for
//! every flag (acquire), yielding its physical CPU between checks, prints
//! `smp: all <N> vcpus done` and powers off. Secondaries take themselves offline.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, Ordering};

use basalt_guest_rt::abi::sched::{SCHEDOP_yield, SHUTDOWN_crash};
use basalt_guest_rt::boot::MAX_VCPUS;
use basalt_guest_rt::{hypercall, poweroff, println, shutdown, vcpu};

basalt_guest_rt::entry!(main);

/// Rounds of xorshift64 per vCPU: ~4 simple operations each, ~5 M in all — seconds,
/// not minutes, under QEMU's TCG.
const ROUNDS: u32 = 1_250_000;

/// `DONE[k]`: vCPU k finished its work and printed its line.
static DONE: [AtomicBool; MAX_VCPUS] = [const { AtomicBool::new(false) }; MAX_VCPUS];

fn main() -> ! {
    let count = vcpu::count();
    let usable = count.min(MAX_VCPUS as u32);
    if usable < count {
        println!("smp: {count} vcpus, using the first {usable}");
    }
    for id in 1..usable {
        if let Err(error) = vcpu::start(id, secondary) {
            println!("smp: vcpu {id} did not start: {error}");
            shutdown(SHUTDOWN_crash);
        }
    }
    finish(0);
    while !(0..usable as usize).all(|k| DONE[k].load(Ordering::Acquire)) {
        hypercall::sched_op(SCHEDOP_yield);
    }
    println!("smp: all {usable} vcpus done");
    poweroff()
}

/// Where vCPUs 1..N−1 start (RDI = their id).
extern "C" fn secondary(vcpu_id: u64) -> ! {
    let vcpu_id = vcpu_id as u32;
    finish(vcpu_id);
    vcpu::park(vcpu_id)
}

/// Does vCPU `vcpu_id`'s work, reports it and marks it done.
fn finish(vcpu_id: u32) {
    let sum = checksum(vcpu_id);
    println!("smp: vcpu {vcpu_id} done sum={sum}");
    if let Some(flag) = DONE.get(vcpu_id as usize) {
        flag.store(true, Ordering::Release);
    }
}

/// Sum of `ROUNDS` xorshift64 states (Marsaglia 2003, shifts 13/7/17) from a seed
/// derived from the vCPU id.
fn checksum(vcpu_id: u32) -> u64 {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ (u64::from(vcpu_id) + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let mut sum = 0u64;
    for _ in 0..core::hint::black_box(ROUNDS) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        sum = sum.wrapping_add(state);
    }
    sum
}
