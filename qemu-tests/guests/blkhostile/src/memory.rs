//! The pages this guest shares with dom0, and [`PhysPage`], the one way the guest
//! touches shared memory.
//!
//! Shared memory is written by dom0 (and the hypervisor) while the guest runs, so it is
//! never borrowed as a Rust reference: every access is a volatile read or write at an
//! address the runtime's identity map covers (guest-physical = virtual below 4 GiB).
//! The guest's own shared pages are [`SharedPages`], page-aligned in .bss (hence RAM,
//! and their frame numbers are their addresses >> 12); the store ring and the grant
//! frame are pages outside RAM whose frames the hypervisor names or accepts.

use core::cell::UnsafeCell;
use core::sync::atomic::{fence, Ordering};

use basalt_guest_blkhostile_protocol::{SharedPage, PAGE_SIZE};

/// The guest's shared pages, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The blkif shared ring of xvda.
    Ring = 0,
    /// Sources of the good writes (granted read-only: dom0 only reads them).
    WriteFirst = 1,
    WriteSecond = 2,
    /// Destinations of the good reads (granted writable).
    ReadFirst = 3,
    ReadSecond = 4,
    /// Granted read-only; a read into it must be refused and leave it unchanged.
    ReadOnly = 5,
    /// Source of the malformed writes: data that must never reach the disk.
    Hostile = 6,
    /// The blkif shared ring of xvdb, the read-only disk.
    RingXvdb = 7,
}

const SHARED_PAGE_COUNT: usize = 8;

#[repr(C, align(4096))]
struct SharedPages(UnsafeCell<[[u8; PAGE_SIZE]; SHARED_PAGE_COUNT]>);

// SAFETY: the guest runs on one vCPU; the pages are only reached through
// `PhysPage`'s volatile accesses, never through references.
unsafe impl Sync for SharedPages {}

static SHARED_PAGES: SharedPages = SharedPages(UnsafeCell::new([[0; PAGE_SIZE]; SHARED_PAGE_COUNT]));

/// The guest's page for `role`.
pub fn shared_page(role: Role) -> PhysPage {
    let base = SHARED_PAGES.0.get() as u64;
    // SAFETY: the page lies inside SHARED_PAGES (role < SHARED_PAGE_COUNT), which is
    // page-aligned RAM of this image, identity-mapped, and reached only through
    // PhysPage.
    unsafe { PhysPage::new(base + role as u64 * PAGE_SIZE as u64) }
}

/// Guest frame number of a page of this guest.
pub fn frame_number(page: &PhysPage) -> u32 {
    (page.address >> 12) as u32
}

/// A 4 KiB page of guest-physical memory, accessed only with volatile operations.
#[derive(Debug, Clone, Copy)]
pub struct PhysPage {
    address: u64,
}

/// Addresses the runtime's identity map covers.
const IDENTITY_MAP_LIMIT: u64 = 1 << 32;

impl PhysPage {
    /// # Safety
    /// `address` is page-aligned, below 4 GiB (identity-mapped), backed by memory for
    /// as long as the `PhysPage` is used, and not accessed through Rust references.
    pub unsafe fn new(address: u64) -> Self {
        Self { address }
    }

    /// The page at guest frame `frame`, if the identity map covers it.
    ///
    /// # Safety
    /// As for [`PhysPage::new`], for the frame's address.
    pub unsafe fn at_frame(frame: u64) -> Option<Self> {
        let address = frame.checked_mul(PAGE_SIZE as u64).filter(|&address| address < IDENTITY_MAP_LIMIT)?;
        // SAFETY: the caller vouches for the frame; the address is page-aligned and
        // below the identity map's limit.
        Some(unsafe { Self::new(address) })
    }

    /// The address of `size` bytes at `offset`, if they lie inside the page and are
    /// naturally aligned.
    fn word(&self, offset: usize, size: usize) -> Option<u64> {
        (offset.checked_add(size)? <= PAGE_SIZE && offset.is_multiple_of(size)).then_some(self.address + offset as u64)
    }
}

impl SharedPage for PhysPage {
    fn read_u8(&self, offset: usize) -> u8 {
        // SAFETY: inside this page (checked), which `new`'s contract makes readable.
        self.word(offset, 1).map_or(0, |address| unsafe { (address as *const u8).read_volatile() })
    }

    fn write_u8(&mut self, offset: usize, value: u8) {
        if let Some(address) = self.word(offset, 1) {
            // SAFETY: inside this page (checked), which `new`'s contract makes writable.
            unsafe { (address as *mut u8).write_volatile(value) }
        }
    }

    fn read_u16(&self, offset: usize) -> u16 {
        match self.word(offset, 2) {
            // SAFETY: aligned and inside this page (checked).
            Some(address) => unsafe { (address as *const u16).read_volatile() },
            None => u16::from_le_bytes([self.read_u8(offset), self.read_u8(offset.wrapping_add(1))]),
        }
    }

    fn write_u16(&mut self, offset: usize, value: u16) {
        match self.word(offset, 2) {
            // SAFETY: aligned and inside this page (checked).
            Some(address) => unsafe { (address as *mut u16).write_volatile(value) },
            None => self.write_bytes(offset, &value.to_le_bytes()),
        }
    }

    fn read_u32(&self, offset: usize) -> u32 {
        match self.word(offset, 4) {
            // SAFETY: aligned and inside this page (checked).
            Some(address) => unsafe { (address as *const u32).read_volatile() },
            None => {
                let mut bytes = [0; 4];
                self.read_bytes(offset, &mut bytes);
                u32::from_le_bytes(bytes)
            }
        }
    }

    fn write_u32(&mut self, offset: usize, value: u32) {
        match self.word(offset, 4) {
            // SAFETY: aligned and inside this page (checked).
            Some(address) => unsafe { (address as *mut u32).write_volatile(value) },
            None => self.write_bytes(offset, &value.to_le_bytes()),
        }
    }

    fn fence(&self) {
        fence(Ordering::SeqCst);
    }
}
