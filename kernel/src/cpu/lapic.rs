//! The local APIC in xAPIC (MMIO) mode: enable, EOI, IPIs, and the periodic timer
//! (Intel SDM vol. 3A ch. 11; AMD APM vol. 2 ch. 16).
//!
//! The timer is calibrated once against the TSC on the bootstrap CPU; every CPU then
//! runs it periodically at [`TIMER_HZ`].

use crate::arch::instructions::{rdmsr, rdtsc, wrmsr};
use crate::mm::phys_to_virt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Timer interrupts per second on every CPU.
pub const TIMER_HZ: u64 = 100;

const IA32_APIC_BASE: u32 = 0x1b;
const REG_ID: u32 = 0x20;
const REG_VERSION: u32 = 0x30;
const REG_TPR: u32 = 0x80;
const REG_EOI: u32 = 0xb0;
const REG_SVR: u32 = 0xf0;
const REG_ICR_LOW: u32 = 0x300;
const REG_ICR_HIGH: u32 = 0x310;
const REG_LVT_TIMER: u32 = 0x320;
const REG_TIMER_INITIAL: u32 = 0x380;
const REG_TIMER_CURRENT: u32 = 0x390;
const REG_TIMER_DIVIDE: u32 = 0x3e0;

static BASE: AtomicU64 = AtomicU64::new(0xfee0_0000);
static TICKS_PER_PERIOD: AtomicU32 = AtomicU32::new(0);

fn read(register: u32) -> u32 {
    let address = phys_to_virt(BASE.load(Ordering::Relaxed)) + u64::from(register);
    // SAFETY: the APIC page is mapped by the direct map (below 4 GiB) and `register` is
    // one of the architectural register offsets inside it.
    unsafe { (address as *const u32).read_volatile() }
}

fn write(register: u32, value: u32) {
    let address = phys_to_virt(BASE.load(Ordering::Relaxed)) + u64::from(register);
    // SAFETY: as for `read`.
    unsafe { (address as *mut u32).write_volatile(value) }
}

/// Records the APIC's physical base (from the MADT or the MSR).
pub fn set_base(physical: u64) {
    BASE.store(physical, Ordering::Relaxed);
}

/// Enables the calling CPU's local APIC with the spurious vector.
pub fn enable_this_cpu() {
    let msr = rdmsr(IA32_APIC_BASE);
    if msr & (1 << 11) == 0 {
        wrmsr(IA32_APIC_BASE, msr | (1 << 11));
    }
    write(REG_TPR, 0);
    write(REG_SVR, 0x100 | u32::from(super::VECTOR_SPURIOUS));
}

/// The calling CPU's APIC id.
pub fn id() -> u32 {
    read(REG_ID) >> 24
}

/// The APIC version register.
pub fn version() -> u32 {
    read(REG_VERSION)
}

/// Signals end of interrupt.
pub fn end_of_interrupt() {
    write(REG_EOI, 0);
}

fn wait_for_delivery() {
    for _ in 0..1_000_000 {
        if read(REG_ICR_LOW) & (1 << 12) == 0 {
            return;
        }
        core::hint::spin_loop();
    }
}

/// Sends an IPI: `command` is the ICR low word (vector, delivery mode, level, ...).
pub fn send_ipi(apic_id: u32, command: u32) {
    write(REG_ICR_HIGH, apic_id << 24);
    write(REG_ICR_LOW, command);
    wait_for_delivery();
}

/// Measures the timer's rate against the TSC (bootstrap CPU, once).
pub fn calibrate_timer() {
    let tsc_khz = super::time::tsc_khz();
    if tsc_khz == 0 {
        return;
    }
    write(REG_TIMER_DIVIDE, 0x3); // divide by 16
    write(REG_LVT_TIMER, 1 << 16); // masked, one-shot
    write(REG_TIMER_INITIAL, u32::MAX);
    let window = tsc_khz * 10; // 10 ms of TSC ticks
    let start = rdtsc();
    while rdtsc().wrapping_sub(start) < window {
        core::hint::spin_loop();
    }
    let elapsed = u32::MAX - read(REG_TIMER_CURRENT);
    write(REG_TIMER_INITIAL, 0);
    // 10 ms measured; one period is 1/TIMER_HZ s.
    let per_period = (u64::from(elapsed) * 100 / TIMER_HZ).clamp(1, u64::from(u32::MAX));
    TICKS_PER_PERIOD.store(per_period as u32, Ordering::Relaxed);
}

/// Starts the calling CPU's periodic timer.
pub fn start_timer_this_cpu() {
    let ticks = TICKS_PER_PERIOD.load(Ordering::Relaxed);
    if ticks == 0 {
        return;
    }
    write(REG_TIMER_DIVIDE, 0x3);
    write(REG_LVT_TIMER, (1 << 17) | u32::from(super::VECTOR_TIMER)); // periodic
    write(REG_TIMER_INITIAL, ticks);
}

/// The timer interrupt: counts a tick on this CPU.
pub fn handle_timer(_frame: &mut crate::arch::trap::TrapFrame) {
    super::percpu::current().timer_ticks.fetch_add(1, Ordering::Relaxed);
    end_of_interrupt();
}

/// The spurious vector needs no EOI.
pub fn handle_spurious(_frame: &mut crate::arch::trap::TrapFrame) {}
