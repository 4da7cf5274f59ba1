//! Kicking a CPU: an IPI whose only effect is that the CPU notices new work — a CPU
//! halted in its idle loop wakes and picks a vCPU that just became runnable, and a
//! CPU running a guest leaves it (every physical interrupt exits) so an interrupt
//! raised for that vCPU is injected now.
//!
//! Why: without it a woken vCPU waits for the next 10 ms timer tick of the CPU that
//! is to run it — a guest's blkif or xenstore request answered by dom0 on another CPU
//! took milliseconds instead of microseconds.

use crate::arch::trap::TrapFrame;
use crate::sched::CpuSet;
use core::sync::atomic::{AtomicU64, Ordering};

/// Vector of the kick IPI.
pub const VECTOR_KICK: u8 = 0x42;

static KICKS_RECEIVED: AtomicU64 = AtomicU64::new(0);

/// Registers the handler (once, at boot: the IDT is shared by every CPU).
pub fn init() {
    crate::arch::trap::register(VECTOR_KICK, handle);
}

fn handle(_frame: &mut TrapFrame) {
    KICKS_RECEIVED.fetch_add(1, Ordering::Relaxed);
    super::lapic::end_of_interrupt();
}

/// Sends a kick to every online CPU in `cpus` but the calling one.
pub fn kick_cpus(cpus: &CpuSet) {
    let me = super::percpu::current_index();
    for cpu in cpus.iter().filter(|&cpu| cpu != me) {
        let Some(slot) = super::percpu::all().nth(cpu as usize) else { continue };
        if slot.online.load(Ordering::Acquire) {
            // Fixed delivery, physical destination, edge.
            super::lapic::send_ipi(slot.apic_id.load(Ordering::Relaxed), u32::from(VECTOR_KICK));
        }
    }
}

/// Kicks received by this machine's CPUs so far.
pub fn received() -> u64 {
    KICKS_RECEIVED.load(Ordering::Relaxed)
}
