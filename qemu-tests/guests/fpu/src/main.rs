//! `fpu`: checks that the hypervisor keeps each vCPU's SSE registers and breakpoint
//! addresses (DR0–DR3) its own — state the VMRUN world switch does not cover. Fills
//! XMM0–XMM15 and DR0–DR3 with patterns made of its domain id, then many times yields the CPU
//! (SCHEDOP_yield; the test pins two of these guests to one physical CPU, so the other
//! runs in between) and spins a little, and checks every register still holds its
//! pattern. Prints `fpu: registers intact after <n> switches` and powers off, or
//! `fpu: xmm<k> clobbered: <value>` and crashes.
#![no_std]
#![no_main]

use basalt_guest_rt::abi::sched::{SCHEDOP_yield, SHUTDOWN_crash};
use basalt_guest_rt::hypercall::sched_op;
use basalt_guest_rt::{cpu, poweroff, println, shutdown};
use core::arch::asm;

basalt_guest_rt::entry!(main);

const ROUNDS: u32 = 4000;

/// CR4.OSFXSR: SSE instructions are allowed (the PVH entry leaves it clear).
fn enable_sse() {
    let mut cr4: u64;
    // SAFETY: reading and setting CR4.OSFXSR/OSXMMEXCPT in our own (guest) ring 0;
    // CR0.EM is clear after the PVH entry.
    unsafe {
        asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack, preserves_flags));
        asm!("mov cr4, {}", in(reg) cr4 | (1 << 9) | (1 << 10), options(nostack, preserves_flags));
    }
}

macro_rules! each_xmm {
    ($body:ident) => {
        $body!(0, "xmm0");
        $body!(1, "xmm1");
        $body!(2, "xmm2");
        $body!(3, "xmm3");
        $body!(4, "xmm4");
        $body!(5, "xmm5");
        $body!(6, "xmm6");
        $body!(7, "xmm7");
        $body!(8, "xmm8");
        $body!(9, "xmm9");
        $body!(10, "xmm10");
        $body!(11, "xmm11");
        $body!(12, "xmm12");
        $body!(13, "xmm13");
        $body!(14, "xmm14");
        $body!(15, "xmm15");
    };
}

fn pattern(domain: u64, register: u64) -> u64 {
    0x5a5a_0000_0000_0000 | (domain << 16) | register
}

fn main() -> ! {
    let domain = u64::from(cpu::domain_id().unwrap_or(0));
    enable_sse();
    macro_rules! fill {
        ($index:expr, $name:literal) => {
            // SAFETY: writes only the named XMM register, which no other code uses.
            unsafe { asm!(concat!("movq ", $name, ", {}"), in(reg) pattern(domain, $index), options(nomem, nostack)) };
        };
    }
    each_xmm!(fill);
    macro_rules! set_breakpoint {
        ($index:expr, $name:literal) => {
            // SAFETY: DR7 stays 0 (all breakpoints disabled), so an address in DR0–DR3
            // has no effect on execution.
            unsafe { asm!(concat!("mov ", $name, ", {}"), in(reg) pattern(domain, 100 + $index), options(nomem, nostack)) };
        };
    }
    set_breakpoint!(0, "dr0");
    set_breakpoint!(1, "dr1");
    set_breakpoint!(2, "dr2");
    set_breakpoint!(3, "dr3");
    for round in 0..ROUNDS {
        sched_op(SCHEDOP_yield);
        for _ in 0..2000 {
            core::hint::spin_loop();
        }
        macro_rules! check {
            ($index:expr, $name:literal) => {
                let value: u64;
                // SAFETY: reads only the named XMM register.
                unsafe { asm!(concat!("movq {}, ", $name), out(reg) value, options(nomem, nostack)) };
                if value != pattern(domain, $index) {
                    println!("fpu: xmm{} clobbered: {:#x} (round {})", $index, value, round);
                    shutdown(SHUTDOWN_crash);
                }
            };
        }
        each_xmm!(check);
        macro_rules! check_breakpoint {
            ($index:expr, $name:literal) => {
                let value: u64;
                // SAFETY: reads the named debug register at CPL 0.
                unsafe { asm!(concat!("mov {}, ", $name), out(reg) value, options(nomem, nostack)) };
                if value != pattern(domain, 100 + $index) {
                    println!("fpu: {} clobbered: {:#x} (round {})", $name, value, round);
                    shutdown(SHUTDOWN_crash);
                }
            };
        }
        check_breakpoint!(0, "dr0");
        check_breakpoint!(1, "dr1");
        check_breakpoint!(2, "dr2");
        check_breakpoint!(3, "dr3");
    }
    println!("fpu: registers intact after {ROUNDS} switches");
    poweroff()
}
