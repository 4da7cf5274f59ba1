//! Kicking a CPU: an IPI whose only effect is that the CPU notices new work — a CPU
//! halted in its idle loop wakes and picks a vCPU that just became runnable, and a
//! CPU running a guest leaves it (every physical interrupt exits) so an interrupt
//! raised for that vCPU is injected now.
//!
//! Why: without it a woken vCPU waits for the next 10 ms timer tick of the CPU that
//! is to run it — a guest's blkif or xenstore request answered by dom0 on another CPU
//! took milliseconds instead of microseconds.

use crate::arch::instructions;
use crate::arch::trap::TrapFrame;
use crate::sched::CpuSet;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Vector of the kick IPI.
pub const VECTOR_KICK: u8 = 0x42;

static KICKS_RECEIVED: AtomicU64 = AtomicU64::new(0);

/// Per CPU: work was handed to it since its idle loop last looked. Set *before* the
/// IPI is sent, so a kick whose interrupt lands while the CPU is still busy (and is
/// handled there, leaving nothing to end the next HLT) is not lost: [`idle_halt`]
/// sees the flag and does not halt.
static WOKEN: [AtomicBool; super::percpu::MAX_CPUS] = [const { AtomicBool::new(false) }; super::percpu::MAX_CPUS];

/// Marks `cpu` as having new work (before an IPI to it, or from an interrupt handler
/// on it).
pub fn note_work(cpu: u32) {
    if let Some(flag) = WOKEN.get(cpu as usize) {
        flag.store(true, Ordering::Release);
    }
}

/// The idle loops' halt: halts until the next interrupt unless work was noted for
/// this CPU since the last call (then returns at once). The check and the halt are
/// atomic with respect to interrupts (STI takes effect after HLT begins).
pub fn idle_halt() {
    let cpu = super::percpu::current_index() as usize;
    instructions::disable_interrupts();
    if WOKEN.get(cpu).is_some_and(|flag| flag.swap(false, Ordering::AcqRel)) {
        instructions::enable_interrupts();
        return;
    }
    instructions::enable_interrupts_and_halt();
}

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
            note_work(cpu);
            // Fixed delivery, physical destination, edge.
            super::lapic::send_ipi(slot.apic_id.load(Ordering::Relaxed), u32::from(VECTOR_KICK));
        }
    }
}

/// Kicks received by this machine's CPUs so far.
pub fn received() -> u64 {
    KICKS_RECEIVED.load(Ordering::Relaxed)
}
