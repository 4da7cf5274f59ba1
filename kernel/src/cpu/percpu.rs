//! Per-CPU data: one slot per logical CPU, found through the GS base.
//!
//! Index 0 is the bootstrap processor; application processors get 1.. in the order
//! they are started. A slot's `gs:0` holds its own address, so the current slot is one
//! load away; before a CPU installs its GS base the current index reads as 0.

use crate::arch::instructions::{rdmsr, wrmsr};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Most CPUs the hypervisor will run on.
pub const MAX_CPUS: usize = 256;
const IA32_GS_BASE: u32 = 0xc000_0101;

/// One CPU's data. `self_address` must stay the first field (read through `gs:0`).
#[repr(C)]
pub struct PerCpu {
    self_address: AtomicU64,
    pub index: AtomicU32,
    pub apic_id: AtomicU32,
    pub online: AtomicBool,
    pub stack_bottom: AtomicU64,
    pub stack_top: AtomicU64,
    pub timer_ticks: AtomicU64,
}

static CPUS: [PerCpu; MAX_CPUS] = [const {
    PerCpu {
        self_address: AtomicU64::new(0),
        index: AtomicU32::new(0),
        apic_id: AtomicU32::new(0),
        online: AtomicBool::new(false),
        stack_bottom: AtomicU64::new(0),
        stack_top: AtomicU64::new(0),
        timer_ticks: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// How many CPU slots are in use (the bootstrap CPU plus every AP we tried to start).
static SLOTS_USED: AtomicU32 = AtomicU32::new(1);

/// Prepares slot `index` for a CPU with `apic_id` and the given stack.
pub fn prepare(index: usize, apic_id: u32, stack: (u64, u64)) -> Option<&'static PerCpu> {
    let slot = CPUS.get(index)?;
    slot.index.store(index as u32, Ordering::Relaxed);
    slot.apic_id.store(apic_id, Ordering::Relaxed);
    slot.stack_bottom.store(stack.0, Ordering::Relaxed);
    slot.stack_top.store(stack.1, Ordering::Relaxed);
    slot.self_address.store(slot as *const PerCpu as u64, Ordering::Relaxed);
    SLOTS_USED.fetch_max(index as u32 + 1, Ordering::AcqRel);
    Some(slot)
}

/// Makes `slot` the calling CPU's per-CPU data and marks it online.
pub fn install(slot: &'static PerCpu) {
    wrmsr(IA32_GS_BASE, slot as *const PerCpu as u64);
    slot.online.store(true, Ordering::Release);
}

/// The calling CPU's slot (slot 0 before `install`).
pub fn current() -> &'static PerCpu {
    let base = rdmsr(IA32_GS_BASE);
    let first = CPUS.as_ptr() as u64;
    let index = base.wrapping_sub(first) / core::mem::size_of::<PerCpu>() as u64;
    CPUS.get(index as usize).unwrap_or(&CPUS[0])
}

/// The calling CPU's index.
pub fn current_index() -> u32 {
    current().index.load(Ordering::Relaxed)
}

/// The calling CPU's kernel stack bounds.
pub fn current_stack_bounds() -> (u64, u64) {
    let slot = current();
    (slot.stack_bottom.load(Ordering::Relaxed), slot.stack_top.load(Ordering::Relaxed))
}

/// Every slot in use, in index order.
pub fn all() -> impl Iterator<Item = &'static PerCpu> {
    CPUS.iter().take(SLOTS_USED.load(Ordering::Acquire) as usize)
}

/// Number of CPUs online.
pub fn online_count() -> u32 {
    all().filter(|slot| slot.online.load(Ordering::Acquire)).count() as u32
}
