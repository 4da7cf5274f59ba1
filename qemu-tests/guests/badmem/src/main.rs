//! `badmem`: reads guest-physical 0xC000_0000 (3 GiB). The runtime's page tables map
//! it (identity, first 4 GiB), but the domain's RAM is a few megabytes and nothing
//! else lives there, so the access reaches the hypervisor as a nested page fault on
//! unpopulated guest-physical memory. The expected outcome is that the hypervisor
//! crashes this domain; `badmem: read succeeded` means it did not.
#![no_std]
#![no_main]

use basalt_guest_rt::{poweroff, println};

basalt_guest_rt::entry!(main);

/// Guest-physical (= virtual) address beyond any test domain's RAM and below the
/// special pages and ACPI tables the platform builder places near 4 GiB.
const UNPOPULATED: u64 = 0xC000_0000;

fn main() -> ! {
    println!("badmem: reading unpopulated guest-physical memory");
    // SAFETY: the address is identity-mapped by the boot page tables, so the read is a
    // valid load for the CPU; what the hypervisor does with it is what is under test.
    // Volatile so the load happens.
    let value = unsafe { core::ptr::read_volatile(UNPOPULATED as *const u64) };
    println!("badmem: read succeeded ({value:#x})");
    poweroff()
}
