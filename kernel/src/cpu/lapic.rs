//! The local APIC: enable, EOI, IPIs, and the periodic timer (Intel SDM vol. 3A ch. 11;
//! AMD APM vol. 2 ch. 16).
//!
//! Two register interfaces, chosen once at boot for every CPU: x2APIC (MSRs 0x800 +
//! offset/16; 32-bit APIC ids; the whole ICR in one MSR) whenever the CPU offers it or
//! the firmware already switched to it — a CPU left in x2APIC mode ignores the MMIO
//! page — and xAPIC (the MMIO page, 8-bit ids) otherwise.
//!
//! The timer is calibrated once against the TSC on the bootstrap CPU; every CPU then
//! runs it periodically at [`TIMER_HZ`].

use crate::arch::instructions::{rdmsr, rdtsc, wrmsr};
use crate::mm::phys_to_virt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Timer interrupts per second on every CPU.
pub const TIMER_HZ: u64 = 100;

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const X2APIC_MSR_BASE: u32 = 0x800;
const X2APIC_ICR: u32 = 0x830;
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
static X2APIC_MODE: AtomicBool = AtomicBool::new(false);

/// Picks the register interface for every CPU (bootstrap CPU, before any other call):
/// x2APIC if `cpu_has_x2apic` or the firmware already enabled it.
pub fn select_mode(cpu_has_x2apic: bool) {
    let firmware_chose_x2apic = rdmsr(IA32_APIC_BASE) & APIC_BASE_X2APIC != 0;
    X2APIC_MODE.store(cpu_has_x2apic || firmware_chose_x2apic, Ordering::Relaxed);
}

/// Whether the local APICs run in x2APIC mode.
pub fn is_x2apic() -> bool {
    X2APIC_MODE.load(Ordering::Relaxed)
}

fn read(register: u32) -> u32 {
    if is_x2apic() {
        return rdmsr(X2APIC_MSR_BASE + register / 16) as u32;
    }
    let address = phys_to_virt(BASE.load(Ordering::Relaxed)) + u64::from(register);
    // SAFETY: the APIC page is mapped by the direct map (below 4 GiB) and `register` is
    // one of the architectural register offsets inside it.
    unsafe { (address as *const u32).read_volatile() }
}

fn write(register: u32, value: u32) {
    if is_x2apic() {
        wrmsr(X2APIC_MSR_BASE + register / 16, u64::from(value));
        return;
    }
    let address = phys_to_virt(BASE.load(Ordering::Relaxed)) + u64::from(register);
    // SAFETY: as for `read`.
    unsafe { (address as *mut u32).write_volatile(value) }
}

/// Records the APIC's physical base (from the MADT or the MSR).
pub fn set_base(physical: u64) {
    BASE.store(physical, Ordering::Relaxed);
}

/// Enables the calling CPU's local APIC, in the selected mode, with the spurious vector.
pub fn enable_this_cpu() {
    let mut msr = rdmsr(IA32_APIC_BASE);
    // xAPIC must be enabled before x2APIC mode can be entered (SDM §11.12.5).
    if msr & APIC_BASE_ENABLE == 0 {
        msr |= APIC_BASE_ENABLE;
        wrmsr(IA32_APIC_BASE, msr);
    }
    if is_x2apic() && msr & APIC_BASE_X2APIC == 0 {
        wrmsr(IA32_APIC_BASE, msr | APIC_BASE_X2APIC);
    }
    write(REG_TPR, 0);
    write(REG_SVR, 0x100 | u32::from(super::VECTOR_SPURIOUS));
}

/// The calling CPU's APIC id.
pub fn id() -> u32 {
    if is_x2apic() {
        read(REG_ID)
    } else {
        read(REG_ID) >> 24
    }
}

/// Whether an IPI can name `apic_id` as its destination in the selected mode (xAPIC
/// destinations are 8 bits, and 0xff means broadcast).
pub fn can_address(apic_id: u32) -> bool {
    is_x2apic() || apic_id < 0xff
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
    if is_x2apic() {
        // One MSR write sends it; x2APIC has no delivery-status bit to wait for.
        wrmsr(X2APIC_ICR, (u64::from(apic_id) << 32) | u64::from(command));
        return;
    }
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
