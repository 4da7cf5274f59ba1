//! `hello`: the smallest guest. Prints `hello from domain <id>` (the id from CPUID
//! leaf 0x40000004, `?` if the hypervisor does not report it) and powers off.
#![no_std]
#![no_main]

use basalt_guest_rt::{cpu, poweroff, println};

basalt_guest_rt::entry!(main);

fn main() -> ! {
    match cpu::domain_id() {
        Some(domain) => println!("hello from domain {domain}"),
        None => println!("hello from domain ?"),
    }
    poweroff()
}
