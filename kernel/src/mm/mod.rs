//! Physical memory: the frame allocator, the direct map and the heap.
//!
//! Address-space layout: the hypervisor image runs identity-mapped at its physical link
//! address (2 MiB); all physical memory is mapped at [`DIRECT_MAP_BASE`] + physical
//! address (the direct map) with 2 MiB pages. The heap is a contiguous region of RAM
//! carved out before the frame allocator exists, reached through the direct map.
pub mod frames;

#[cfg(target_os = "none")]
pub mod heap;
#[cfg(target_os = "none")]
pub mod paging;

/// Virtual address where the direct map of physical memory starts (PML4 slot 256).
pub const DIRECT_MAP_BASE: u64 = 0xffff_8000_0000_0000;

/// The direct-map virtual address of a physical address.
pub const fn phys_to_virt(physical: u64) -> u64 {
    DIRECT_MAP_BASE + physical
}

#[cfg(target_os = "none")]
pub use global::{allocate_zeroed_frames, frame_allocator_stats, set_frame_allocator, with_frames};

#[cfg(target_os = "none")]
mod global {
    use super::frames::FrameAllocator;
    use crate::arch::instructions::without_interrupts;
    use spin::Mutex;

    static FRAMES: Mutex<Option<FrameAllocator>> = Mutex::new(None);

    /// Installs the machine's frame allocator (once, at boot).
    pub fn set_frame_allocator(allocator: FrameAllocator) {
        without_interrupts(|| *FRAMES.lock() = Some(allocator));
    }

    /// Runs `f` with the frame allocator, if it exists yet.
    pub fn with_frames<R>(f: impl FnOnce(&mut FrameAllocator) -> R) -> Option<R> {
        without_interrupts(|| FRAMES.lock().as_mut().map(f))
    }

    /// `count` physically contiguous frames, zeroed (control structures, permission
    /// maps, table pages): their physical address, or `None` if memory is exhausted.
    pub fn allocate_zeroed_frames(count: u64) -> Option<u64> {
        let physical =
            with_frames(|frames| if count == 1 { frames.allocate() } else { frames.allocate_contiguous(count, 1) })
                .flatten()?;
        // SAFETY: the frames were just allocated to the caller and are reached through the
        // direct map, which covers all RAM.
        unsafe {
            core::ptr::write_bytes(
                super::phys_to_virt(physical) as *mut u8,
                0,
                (count * super::frames::FRAME_SIZE) as usize,
            )
        };
        Some(physical)
    }

    /// (total, free) frames.
    pub fn frame_allocator_stats() -> (u64, u64) {
        with_frames(|frames| (frames.total_frames(), frames.free_frames())).unwrap_or((0, 0))
    }
}
