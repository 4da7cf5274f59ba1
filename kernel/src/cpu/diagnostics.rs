//! Deliberate CPU exceptions on request, so the exception path (report, backtrace,
//! halting just that CPU) can be exercised on a running appliance and in tests.
//!
//! The requesting CPU stores the kind of fault and sends [`super::VECTOR_FAULT_IPI`] to
//! the target; the target's handler raises the fault in its own context.

use core::sync::atomic::{AtomicU8, Ordering};

/// Which exception to raise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FaultKind {
    /// #UD from `ud2`.
    InvalidOpcode = 1,
    /// #PF from reading an address that nothing maps.
    PageFault = 2,
    /// #GP from loading a non-canonical address.
    GeneralProtection = 3,
}

impl FaultKind {
    /// Parses the shell's names: `ud`, `pf`, `gp`.
    pub fn parse(name: &str) -> Option<FaultKind> {
        match name {
            "ud" => Some(FaultKind::InvalidOpcode),
            "pf" => Some(FaultKind::PageFault),
            "gp" => Some(FaultKind::GeneralProtection),
            _ => None,
        }
    }
}

static REQUESTED: AtomicU8 = AtomicU8::new(0);

/// An address in PML4 slot 288, which the hypervisor never maps.
const UNMAPPED_ADDRESS: u64 = 0xffff_9000_dead_0000;

/// Asks the CPU with `apic_id` to raise `kind` (or raises it here if that is us).
pub fn request_fault(apic_id: u32, kind: FaultKind) {
    REQUESTED.store(kind as u8, Ordering::SeqCst);
    if apic_id == super::lapic::id() {
        raise_requested_fault();
    } else {
        super::lapic::send_ipi(apic_id, u32::from(super::VECTOR_FAULT_IPI));
    }
}

/// The fault IPI's handler.
pub fn handle_fault_ipi(_frame: &mut crate::arch::trap::TrapFrame) {
    super::lapic::end_of_interrupt();
    raise_requested_fault();
}

#[inline(never)]
fn raise_requested_fault() {
    match REQUESTED.swap(0, Ordering::SeqCst) {
        1 => {
            // SAFETY: deliberately raises #UD; the exception handler never returns here.
            unsafe { core::arch::asm!("ud2", options(nomem, nostack)) }
        }
        2 => {
            // SAFETY: deliberately faults: the address is unmapped by construction, and
            // the exception handler halts this CPU instead of returning.
            let value = unsafe { (UNMAPPED_ADDRESS as *const u64).read_volatile() };
            core::hint::black_box(value);
        }
        3 => {
            // SAFETY: a non-canonical address raises #GP before any access happens.
            let value = unsafe { (0x8000_0000_0000_0000u64 as *const u64).read_volatile() };
            core::hint::black_box(value);
        }
        _ => {}
    }
}
