//! The hypervisor heap: talc over one contiguous region of RAM.

use talc::{ErrOnOom, Span, Talc, Talck};

#[global_allocator]
static HEAP: Talck<spin::Mutex<()>, ErrOnOom> = Talc::new(ErrOnOom).lock();

static HEAP_SIZE: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Hands `[base, base + size)` (a direct-map virtual range of RAM nobody else uses) to
/// the allocator.
///
/// # Safety
/// The range must be mapped, writable, and reserved for the heap for ever.
pub unsafe fn init(base: u64, size: u64) {
    let span = Span::from_base_size(base as *mut u8, size as usize);
    // SAFETY: the caller guarantees the span is exclusively ours and mapped.
    let claimed = unsafe { HEAP.lock().claim(span) };
    if claimed.is_ok() {
        HEAP_SIZE.store(size, core::sync::atomic::Ordering::Relaxed);
    }
}

/// (total bytes, bytes in use).
pub fn usage() -> (u64, u64) {
    let total = HEAP_SIZE.load(core::sync::atomic::Ordering::Relaxed);
    let counters = *HEAP.lock().get_counters();
    (total, counters.allocated_bytes as u64)
}
