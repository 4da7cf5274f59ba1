//! x86_64 architecture support: the multiboot2 entry, descriptor tables, interrupt
//! entry stubs, exceptions, and thin wrappers for privileged instructions.
//!
//! Everything here is hardware-facing and compiled only for bare metal.
pub mod debug_registers;
pub mod entry;
pub mod fpu;
pub mod gdt;
pub mod idt;
pub mod instructions;
pub mod trap;
