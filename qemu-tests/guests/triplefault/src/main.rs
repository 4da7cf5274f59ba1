//! `triplefault`: crashes the way only a CPU can. With an IDT of limit 0, `int3`'s #BP
//! cannot be delivered (#GP), neither can the #GP (#DF), nor the double fault: the
//! processor shuts down (SDM vol. 3 §6.15, "Interrupt 8—Double Fault Exception"; APM
//! vol. 2 §8.2.9). The hypervisor must see a triple-fault/shutdown exit and crash only
//! this domain.
#![no_std]
#![no_main]

use basalt_guest_rt::println;

basalt_guest_rt::entry!(main);

/// The 10-byte operand of `lidt` in 64-bit mode.
#[repr(C, packed)]
struct DescriptorTableRegister {
    limit: u16,
    base: u64,
}

fn main() -> ! {
    println!("triplefault: about to triple-fault");
    let empty = DescriptorTableRegister { limit: 0, base: 0 };
    // SAFETY: ending this vCPU (and domain) is the point; LIDT only reads the 10-byte
    // operand from a live local, and nothing after `int3` runs.
    unsafe {
        core::arch::asm!("lidt [{0}]", "int3", "2: jmp 2b", in(reg) &raw const empty, options(noreturn));
    }
}
