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
    /// Unbounded recursion into the stack's guard page: #PF, which cannot be delivered
    /// on the exhausted stack, becomes #DF on its own interrupt stack.
    StackOverflow = 4,
}

impl FaultKind {
    /// Parses the shell's names: `ud`, `pf`, `gp`, `so`.
    pub fn parse(name: &str) -> Option<FaultKind> {
        match name {
            "ud" => Some(FaultKind::InvalidOpcode),
            "pf" => Some(FaultKind::PageFault),
            "gp" => Some(FaultKind::GeneralProtection),
            "so" => Some(FaultKind::StackOverflow),
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
        4 => {
            core::hint::black_box(recurse_until_the_stack_ends(0));
        }
        _ => {}
    }
}

/// Each level keeps a 512-byte array live across the recursive call, so the stack
/// grows until it reaches the guard page. The recursion only ends if the depth
/// counter wraps, which no stack survives.
#[inline(never)]
fn recurse_until_the_stack_ends(depth: u64) -> u64 {
    let mut frame = [depth; 64];
    core::hint::black_box(&mut frame);
    if depth == u64::MAX {
        return frame[0];
    }
    recurse_until_the_stack_ends(depth + 1).wrapping_add(frame[(depth % 64) as usize])
}
