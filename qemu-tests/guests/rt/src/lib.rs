//! Runtime of Basalt's test guests: everything a tiny no_std kernel needs to boot as a
//! Xen PVH domU and talk to the hypervisor.
//!
//! - `boot`: the PVH entry (Xen `docs/misc/pvh.pandoc`): 32-bit flat protected mode,
//!   paging off, %ebx = `hvm_start_info`; it builds identity page tables for the first
//!   4 GiB, enters long mode and calls [`entry!`]'s function on the boot stack.
//! - `hypercall`: the hypercall page (CPUID leaf 0x40000002's MSR) and direct
//!   `vmcall`/`vmmcall`, with typed wrappers for the hypercalls the guests use.
//! - `console`: [`print!`]/[`println!`] over `console_io(CONSOLEIO_write)`, one
//!   hypercall per call so lines from different vCPUs do not interleave.
//! - `cpu`: CPUID, RDTSC, the domain and vCPU ids Xen reports in leaf 0x40000004.
//! - `start_info`: the command line from `hvm_start_info`.
//! - `vcpu`: starting secondary vCPUs in 64-bit mode with `VCPUOP_initialise`.
//!
//! A guest crate is `#![no_std] #![no_main]`, depends on this crate, and names its
//! main function with `basalt_guest_rt::entry!(main);` where `main: fn() -> !`.
//! A panic prints its message and shuts the domain down with `SHUTDOWN_crash`.
//!
//! Interrupts stay disabled (EFLAGS.IF = 0) and no IDT is loaded: any exception in a
//! guest is a triple fault, which the hypervisor reports as a crash.
#![no_std]

pub mod boot;
pub mod console;
pub mod cpu;
pub mod hypercall;
pub mod start_info;
pub mod vcpu;

pub use basalt_xen_abi as abi;

use basalt_xen_abi::sched::{SHUTDOWN_crash, SHUTDOWN_poweroff};

/// Names the guest's main function (`fn() -> !`), which the runtime calls on vCPU 0
/// once the hypercall layer is ready.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        extern "Rust" fn basalt_guest_main() -> ! {
            let main: fn() -> ! = $main;
            main()
        }
    };
}

unsafe extern "Rust" {
    /// Defined by [`entry!`] in the guest binary.
    safe fn basalt_guest_main() -> !;
}

/// Called by the boot code in long mode on the boot stack, with the guest-physical
/// address of `hvm_start_info` (vCPU 0's %ebx at the PVH entry).
extern "C" fn rt_start(start_info_address: u32) -> ! {
    start_info::record(start_info_address);
    hypercall::init();
    basalt_guest_main()
}

/// Ends the domain with `reason` (`SHUTDOWN_poweroff`, `SHUTDOWN_reboot`,
/// `SHUTDOWN_crash`, ...). If the hypervisor returns from the shutdown, this vCPU
/// halts with interrupts off.
pub fn shutdown(reason: u32) -> ! {
    let _ = hypercall::sched_shutdown(reason);
    cpu::halt_forever()
}

/// Shorthand for `shutdown(SHUTDOWN_poweroff)`: the guest finished.
pub fn poweroff() -> ! {
    shutdown(SHUTDOWN_poweroff)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    match info.location() {
        Some(location) => println!("guest panic at {}:{}: {}", location.file(), location.line(), info.message()),
        None => println!("guest panic: {}", info.message()),
    }
    shutdown(SHUTDOWN_crash)
}
