//! CPUs: identification, per-CPU data, the local APIC and its timer, the IOAPIC, the
//! legacy PICs, time (TSC), and starting the application processors.
pub mod diagnostics;
#[cfg(target_os = "none")]
pub mod dom0_wake;
pub mod identify;
pub mod ioapic;
#[cfg(target_os = "none")]
pub mod kick;
pub mod lapic;
pub mod percpu;
pub mod pic;
pub mod smp;
pub mod time;

/// Interrupt vector of the per-CPU local APIC timer.
pub const VECTOR_TIMER: u8 = 0xef;
/// Interrupt vector of COM1's receive interrupt (through the IOAPIC).
pub const VECTOR_SERIAL: u8 = 0x30;
/// Interrupt vector that asks a CPU to halt (used by power-off and panics).
pub const VECTOR_HALT_IPI: u8 = 0xf0;
/// Interrupt vector that makes a CPU raise a requested exception (diagnostics).
pub const VECTOR_FAULT_IPI: u8 = 0xf1;
/// The local APIC's spurious-interrupt vector.
pub const VECTOR_SPURIOUS: u8 = 0xff;
/// Where the legacy PICs are remapped (then masked) so stray IRQs do not alias
/// exceptions.
pub const VECTOR_LEGACY_PIC_BASE: u8 = 0x20;
