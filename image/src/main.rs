//! The one Basalt binary: the hypervisor, the built-in dom0, the shell and the
//! debugger, linked together and started here.
//!
//! This file is the composition (DESIGN.md, decision 8): the multiboot2 entry calls
//! [`basalt_image_main`], which brings the machine up in a fixed order — consoles,
//! memory, CPU tables, ACPI, interrupts, the other CPUs — and then runs the serial
//! shell on the bootstrap CPU for ever. Application processors enter [`ap_main`].
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod appliance;
#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
mod debug;
#[cfg(target_os = "none")]
mod diagnostics;
#[cfg(target_os = "none")]
mod dom0;
#[cfg(target_os = "none")]
mod domains;
#[cfg(target_os = "none")]
mod hardware;
#[cfg(target_os = "none")]
mod modules;
#[cfg(target_os = "none")]
mod panic;
#[cfg(target_os = "none")]
mod storage;
#[cfg(target_os = "none")]
mod vbd;

/// Host builds of this crate do nothing: the binary only makes sense on bare metal.
#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("basalt: this is the hypervisor image; build it with `make image`");
}
