//! Waking the bootstrap CPU, where dom0's services run, when they have work: an event
//! for dom0 raised on another CPU (a guest's blkif or xenstore notification) sends it
//! an IPI, and dom0's storage devices signal completions by MSI/MSI-X to the same CPU.
//!
//! Why: between rounds the bootstrap CPU halts until the next interrupt; without a
//! wake-up, a request from a guest running on another CPU would wait for the next
//! 10 ms timer tick. The handlers only count and acknowledge — the wake-up itself is
//! the point; dom0's idle loop then polls its rings and devices.

use crate::arch::trap::TrapFrame;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Vector of the "dom0 has an event" IPI.
pub const VECTOR_DOM0_WAKE: u8 = 0x41;
/// Vector dom0's storage devices send their MSI/MSI-X messages to.
pub const VECTOR_DOM0_DEVICE: u8 = 0x40;
/// The local APIC's MSI address window (Intel SDM vol. 3 §11.11.1).
const MSI_ADDRESS_BASE: u64 = 0xfee0_0000;

static DOM0_APIC_ID: AtomicU32 = AtomicU32::new(u32::MAX);
static WAKE_IPIS: AtomicU64 = AtomicU64::new(0);
static DEVICE_INTERRUPTS: AtomicU64 = AtomicU64::new(0);

/// Registers the handlers and records the calling CPU (the bootstrap CPU) as dom0's.
pub fn init_on_dom0_cpu() {
    crate::arch::trap::register(VECTOR_DOM0_WAKE, handle_wake);
    crate::arch::trap::register(VECTOR_DOM0_DEVICE, handle_device);
    DOM0_APIC_ID.store(super::lapic::id(), Ordering::Release);
}

fn handle_wake(_frame: &mut TrapFrame) {
    WAKE_IPIS.fetch_add(1, Ordering::Relaxed);
    super::lapic::end_of_interrupt();
}

fn handle_device(_frame: &mut TrapFrame) {
    DEVICE_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
    super::kick::note_work(super::percpu::current_index());
    super::lapic::end_of_interrupt();
}

/// Called when an event for dom0 was queued: from any CPU but dom0's own, interrupt
/// dom0's CPU so it stops halting. (On dom0's CPU the idle loop is running already.)
pub fn wake() {
    let apic_id = DOM0_APIC_ID.load(Ordering::Acquire);
    if apic_id == u32::MAX {
        return;
    }
    // dom0 runs on the bootstrap CPU (index 0); noted even from that CPU, where an
    // event raised by a guest vCPU it runs must not wait for the next tick either.
    super::kick::note_work(0);
    if super::percpu::current_index() == 0 {
        return;
    }
    // Fixed delivery, physical destination, edge.
    super::lapic::send_ipi(apic_id, u32::from(VECTOR_DOM0_WAKE));
}

/// The MSI message (address, data) that interrupts dom0's CPU with
/// [`VECTOR_DOM0_DEVICE`]: physical destination mode, fixed delivery, edge. `None`
/// before [`init_on_dom0_cpu`] or when the CPU's APIC id does not fit the 8-bit
/// destination field.
pub fn device_message() -> Option<(u64, u32)> {
    let apic_id = DOM0_APIC_ID.load(Ordering::Acquire);
    (apic_id < 256).then(|| (MSI_ADDRESS_BASE | u64::from(apic_id) << 12, u32::from(VECTOR_DOM0_DEVICE)))
}

/// (wake IPIs, device interrupts) received so far.
pub fn counts() -> (u64, u64) {
    (WAKE_IPIS.load(Ordering::Relaxed), DEVICE_INTERRUPTS.load(Ordering::Relaxed))
}
