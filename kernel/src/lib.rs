//! The Basalt hypervisor.
//!
//! What it owns: booting from multiboot2 into long mode, physical memory (frames, the
//! direct map, the heap), every CPU (SMP start, per-CPU data, local APIC timers, the
//! TSC), interrupts and exceptions, ACPI, the hypervisor log and its consoles (serial,
//! framebuffer). Later: the virtualization interface (SVM, VMX), domains, scheduling
//! and Xen's guest ABI.
//!
//! Layering: modules that touch hardware are compiled only for the bare-metal target
//! (`target_os = "none"`); everything else is portable `no_std` + `alloc` code that
//! `cargo test` runs on the host (DESIGN.md, decision 5). The image/ crate links this
//! library into the one binary and decides the order in which things start.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod acpi;
pub mod boot;
pub mod console;
pub mod domain;
pub mod mm;
pub mod sched;
pub mod symbols;
pub mod virt;
pub mod xen;

#[cfg(target_os = "none")]
pub mod arch;
#[cfg(target_os = "none")]
pub mod cpu;
#[cfg(target_os = "none")]
pub mod power;
