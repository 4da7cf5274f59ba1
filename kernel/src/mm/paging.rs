//! Page tables of the hypervisor's own address space.
//!
//! The boot code maps 0–4 GiB both identity and at the direct map with 2 MiB pages,
//! through one PDPT shared by PML4 slots 0 and 256. [`extend_direct_map`] adds page
//! directories to that PDPT for memory above 4 GiB (up to 512 GiB, what one PDPT
//! spans). New entries replace not-present ones only, so no TLB flush is needed.
//! [`unmap_guard_page`] splits one 2 MiB page into 4 KiB pages (same translations) to
//! take a single page out, for stack guards; PML4 slots 0 and 256 share the page
//! directories, so the page disappears from both the identity map and the direct map.

use crate::arch::entry::boot_pml4_address;
use crate::mm::{phys_to_virt, DIRECT_MAP_BASE};
use core::sync::atomic::{AtomicU64, Ordering};

const PAGE_PRESENT_WRITABLE: u64 = 0x3;
const PAGE_LARGE: u64 = 0x80;
const TWO_MIB: u64 = 2 * 1024 * 1024;
const ONE_GIB: u64 = 1024 * 1024 * 1024;
const FOUR_KIB: u64 = 4096;
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
const PDPT_SPAN: u64 = 512 * ONE_GIB;

/// Physical memory below this address is reachable through the direct map.
static MAPPED_LIMIT: AtomicU64 = AtomicU64::new(4 * ONE_GIB);
static EXTEND_LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// Highest physical address + 1 that the direct map covers.
pub fn mapped_limit() -> u64 {
    MAPPED_LIMIT.load(Ordering::Acquire)
}

fn shared_pdpt() -> *mut u64 {
    // SAFETY: the PML4 is the boot page table (identity mapped, page aligned); slot 256
    // was set by the boot code to the shared PDPT.
    let pml4 = boot_pml4_address() as *const u64;
    // SAFETY: slot 256 is inside the 4 KiB PML4 page.
    let entry = unsafe { pml4.add(256).read_volatile() };
    phys_to_virt(entry & 0x000f_ffff_ffff_f000) as *mut u64
}

/// Maps physical memory up to `limit` in the direct map (rounded up to 1 GiB).
/// Returns the new limit (capped at 512 GiB). Needs the frame allocator.
pub fn extend_direct_map(limit: u64) -> u64 {
    let _guard = EXTEND_LOCK.lock();
    let wanted = limit.min(PDPT_SPAN).div_ceil(ONE_GIB) * ONE_GIB;
    let pdpt = shared_pdpt();
    let mut current = mapped_limit();
    while current < wanted {
        let index = (current / ONE_GIB) as usize;
        let Some(pd_frame) = crate::mm::with_frames(|frames| frames.allocate()).flatten() else {
            break;
        };
        let pd = phys_to_virt(pd_frame) as *mut u64;
        for entry in 0..512u64 {
            let physical = current + entry * TWO_MIB;
            // SAFETY: pd is a freshly allocated, direct-mapped 4 KiB frame we own.
            unsafe { pd.add(entry as usize).write_volatile(physical | PAGE_PRESENT_WRITABLE | PAGE_LARGE) };
        }
        // SAFETY: index < 512 (wanted <= 512 GiB); the slot was not present before.
        unsafe { pdpt.add(index).write_volatile(pd_frame | PAGE_PRESENT_WRITABLE) };
        current += ONE_GIB;
        MAPPED_LIMIT.store(current, Ordering::Release);
    }
    current
}

/// Returns a direct-map virtual address for a device range (e.g. a framebuffer),
/// extending the direct map if the range lies above what is mapped.
pub fn map_device(physical: u64, length: u64) -> Option<u64> {
    let end = physical.checked_add(length)?;
    if end > mapped_limit() && extend_direct_map(end) < end {
        return None;
    }
    Some(phys_to_virt(physical))
}

/// Whether `[physical, physical + length)` is covered by the direct map.
pub fn is_mapped(physical: u64, length: u64) -> bool {
    physical.checked_add(length).is_some_and(|end| end <= mapped_limit())
}

/// Why a guard page could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardPageError {
    /// The address is neither identity- nor direct-mapped RAM.
    NotMapped,
    /// No frame for the page table that splits the 2 MiB page.
    OutOfFrames,
}

/// Makes the 4 KiB page at `virtual_address` (identity map or direct map) not present,
/// so a stack that runs into it faults instead of overwriting what lies below.
///
/// Other CPUs may keep a stale translation of the page until their next TLB flush, so
/// this is done before the stack it guards is first used.
pub fn unmap_guard_page(virtual_address: u64) -> Result<(), GuardPageError> {
    let physical = if virtual_address >= DIRECT_MAP_BASE { virtual_address - DIRECT_MAP_BASE } else { virtual_address };
    if physical % FOUR_KIB != 0 || physical >= mapped_limit() {
        return Err(GuardPageError::NotMapped);
    }
    let _guard = EXTEND_LOCK.lock();
    let pdpt = shared_pdpt();
    // SAFETY: physical < mapped_limit <= 512 GiB, so the index is inside the PDPT page.
    let pdpt_entry = unsafe { pdpt.add((physical / ONE_GIB) as usize).read_volatile() };
    if pdpt_entry & 1 == 0 {
        return Err(GuardPageError::NotMapped);
    }
    let pd = phys_to_virt(pdpt_entry & ADDRESS_MASK) as *mut u64;
    let pd_index = ((physical / TWO_MIB) % 512) as usize;
    // SAFETY: pd is a present page directory (direct-mapped) and pd_index < 512.
    let pd_entry = unsafe { pd.add(pd_index).read_volatile() };
    let page_table = if pd_entry & PAGE_LARGE != 0 {
        let Some(frame) = crate::mm::with_frames(|frames| frames.allocate()).flatten() else {
            return Err(GuardPageError::OutOfFrames);
        };
        let table = phys_to_virt(frame) as *mut u64;
        let large_base = pd_entry & ADDRESS_MASK & !(TWO_MIB - 1);
        for index in 0..512u64 {
            // SAFETY: `table` is a freshly allocated, direct-mapped frame we own.
            unsafe {
                table.add(index as usize).write_volatile((large_base + index * FOUR_KIB) | PAGE_PRESENT_WRITABLE)
            };
        }
        // SAFETY: replaces the 2 MiB mapping with a table giving the same translations.
        unsafe { pd.add(pd_index).write_volatile(frame | PAGE_PRESENT_WRITABLE) };
        table
    } else {
        phys_to_virt(pd_entry & ADDRESS_MASK) as *mut u64
    };
    // SAFETY: page_table is a present, direct-mapped page table; the index is < 512.
    unsafe { page_table.add(((physical / FOUR_KIB) % 512) as usize).write_volatile(0) };
    x86_64::instructions::tlb::flush_all();
    Ok(())
}

/// A stack of `size` bytes (a multiple of 16) from the heap with an unmapped guard page
/// below it, never freed: CPUs keep their stacks for ever. Returns (bottom, top).
/// Without a guard page (no frame to split the mapping) the stack is still returned,
/// and a warning logged.
pub fn allocate_guarded_stack(size: usize) -> Option<(u64, u64)> {
    const GUARD: usize = FOUR_KIB as usize;
    let layout = core::alloc::Layout::from_size_align(size.checked_add(GUARD)?, GUARD).ok()?;
    // SAFETY: the layout has a nonzero size.
    let base = unsafe { alloc::alloc::alloc_zeroed(layout) };
    if base.is_null() {
        return None;
    }
    let base = base as u64;
    if let Err(error) = unmap_guard_page(base) {
        crate::warn!("memory: no guard page under a stack at {base:#x}: {error:?}");
    }
    let bottom = base + GUARD as u64;
    Some((bottom, (bottom + size as u64) & !0xf))
}
