//! `spinner`: turns interrupts off and jumps to itself forever. No instruction in the
//! loop exits to the hypervisor (not even PAUSE), so only the host's timer interrupt
//! can take the physical CPU back: the test of the scheduler's preemption, and of
//! `destroy` on a vCPU that never yields.
#![no_std]
#![no_main]

use basalt_guest_rt::println;

basalt_guest_rt::entry!(main);

fn main() -> ! {
    println!("spinner: spinning with interrupts off");
    // SAFETY: CLI and a jump to itself touch no memory; never returning is the point.
    unsafe { core::arch::asm!("cli", "2: jmp 2b", options(noreturn, nomem, nostack)) }
}
