//! A domain's guest-physical memory: the frames backing it, the guest-physical →
//! machine map, and the nested page table built from that map.
//!
//! Invariants (DESIGN.md decision 2): guest memory is reached only through
//! [`GuestMemory::read`] / [`GuestMemory::write`], which check that the whole range is
//! the domain's own RAM; every frame taken from the allocator is recorded and given back
//! by [`GuestMemory::release`] (or on a failed build), so `mem` shows the same free
//! figure after destroy as before create. RAM is taken in 2 MiB-aligned blocks where it
//! can be, mapped with 2 MiB nested leaves, and in 4 KiB frames otherwise. All of it is
//! zeroed before the guest sees it.

use crate::mm::frames::FRAME_SIZE;
use crate::mm::{phys_to_virt, with_frames};
use crate::virt::nested_paging::{EntryFormat, MapError, NestedPageTable, TableMemory};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicU8};

const TWO_MIB: u64 = 2 * 1024 * 1024;
const FRAMES_PER_TWO_MIB: u64 = TWO_MIB / FRAME_SIZE;

/// One physically contiguous piece of guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunk {
    gpa: u64,
    machine: u64,
    length: u64,
}

/// Why guest memory could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestMemoryError {
    /// Not enough free frames: `needed` bytes asked, `available` bytes free.
    OutOfMemory { needed: u64, available: u64 },
    /// A range was not page aligned or overlapped another.
    BadRange { start: u64, end: u64 },
}

impl core::fmt::Display for GuestMemoryError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GuestMemoryError::OutOfMemory { needed, available } => write!(
                formatter,
                "not enough memory: {} MiB needed, {} MiB free",
                needed.div_ceil(1 << 20),
                available >> 20
            ),
            GuestMemoryError::BadRange { start, end } => {
                write!(formatter, "bad guest-physical range {start:#x}-{end:#x}")
            }
        }
    }
}

/// Table frames from the frame allocator, reached through the direct map.
struct DirectMapTables<'a> {
    taken: &'a mut Vec<u64>,
}

impl TableMemory for DirectMapTables<'_> {
    fn allocate_table(&mut self) -> Option<u64> {
        let frame = crate::mm::allocate_zeroed_frames(1)?;
        self.taken.push(frame);
        Some(frame)
    }
    fn read_entry(&self, table: u64, index: usize) -> u64 {
        // SAFETY: `table` is a table frame this structure allocated; index < 512.
        unsafe { (phys_to_virt(table) as *const u64).add(index & 511).read_volatile() }
    }
    fn write_entry(&mut self, table: u64, index: usize, value: u64) {
        // SAFETY: as in read_entry; the table is not yet (or no longer) used by any
        // running vCPU, or only gains entries (never loses one) while in use.
        unsafe { (phys_to_virt(table) as *mut u64).add(index & 511).write_volatile(value) }
    }
}

/// A domain's RAM and nested page table.
#[derive(Debug)]
pub struct GuestMemory {
    chunks: Vec<Chunk>,
    table: Option<NestedPageTable>,
    table_frames: Vec<u64>,
    bytes: u64,
    /// Hypervisor-owned pages mapped into the guest-physical space outside RAM (grant
    /// table frames): (gpa, machine). The owner frees the frames; this only maps them.
    foreign: Vec<(u64, u64)>,
}

impl GuestMemory {
    /// Takes, zeroes and maps memory for every `[start, end)` range (page aligned,
    /// disjoint). On failure everything taken so far is given back.
    pub fn build(ranges: &[(u64, u64)], format: EntryFormat) -> Result<GuestMemory, GuestMemoryError> {
        let needed: u64 = ranges.iter().map(|&(start, end)| end.saturating_sub(start)).sum();
        let (_, free_frames) = crate::mm::frame_allocator_stats();
        // Tables cost about 1/512 of the memory mapped with 4 KiB leaves; keep a margin.
        if needed + needed / 256 + 16 * FRAME_SIZE > free_frames * FRAME_SIZE {
            return Err(GuestMemoryError::OutOfMemory { needed, available: free_frames * FRAME_SIZE });
        }
        let mut memory =
            GuestMemory { chunks: Vec::new(), table: None, table_frames: Vec::new(), bytes: 0, foreign: Vec::new() };
        match memory.populate(ranges, format) {
            Ok(()) => Ok(memory),
            Err(error) => {
                memory.release();
                Err(error)
            }
        }
    }

    fn populate(&mut self, ranges: &[(u64, u64)], format: EntryFormat) -> Result<(), GuestMemoryError> {
        let out_of_memory = |needed| {
            let (_, free) = crate::mm::frame_allocator_stats();
            GuestMemoryError::OutOfMemory { needed, available: free * FRAME_SIZE }
        };
        let mut tables = DirectMapTables { taken: &mut self.table_frames };
        let mut table = NestedPageTable::new(&mut tables, format).map_err(|_| out_of_memory(FRAME_SIZE))?;
        let mut sorted: Vec<(u64, u64)> = ranges.to_vec();
        sorted.sort_unstable();
        let mut previous_end = 0;
        for &(start, end) in &sorted {
            if start % FRAME_SIZE != 0 || end % FRAME_SIZE != 0 || end < start || start < previous_end {
                self.table = Some(table);
                return Err(GuestMemoryError::BadRange { start, end });
            }
            previous_end = end;
            let mut gpa = start;
            while gpa < end {
                let large = gpa % TWO_MIB == 0 && end - gpa >= TWO_MIB;
                let block = if large {
                    with_frames(|frames| frames.allocate_contiguous(FRAMES_PER_TWO_MIB, FRAMES_PER_TWO_MIB)).flatten()
                } else {
                    None
                };
                let (machine, length) = match block {
                    Some(machine) => (machine, TWO_MIB),
                    None => match with_frames(|frames| frames.allocate()).flatten() {
                        Some(machine) => (machine, FRAME_SIZE),
                        None => {
                            self.table = Some(table);
                            return Err(out_of_memory(end - gpa));
                        }
                    },
                };
                // SAFETY: the frames were just allocated to this domain; the direct map
                // covers all RAM.
                unsafe { core::ptr::write_bytes(phys_to_virt(machine) as *mut u8, 0, length as usize) };
                self.chunks.push(Chunk { gpa, machine, length });
                self.bytes += length;
                let mut tables = DirectMapTables { taken: &mut self.table_frames };
                if let Err(error) = table.map(&mut tables, gpa, machine, length) {
                    self.table = Some(table);
                    return Err(match error {
                        MapError::OutOfMemory => out_of_memory(FRAME_SIZE),
                        _ => GuestMemoryError::BadRange { start, end },
                    });
                }
                gpa += length;
            }
        }
        self.table = Some(table);
        Ok(())
    }

    /// Gives every frame (RAM and tables) back to the allocator.
    pub fn release(&mut self) {
        let chunks = core::mem::take(&mut self.chunks);
        let tables = core::mem::take(&mut self.table_frames);
        with_frames(|frames| {
            for chunk in &chunks {
                let mut offset = 0;
                while offset < chunk.length {
                    // A frame that cannot be freed (never: we took it) would be leaked.
                    let _ = frames.free(chunk.machine + offset);
                    offset += FRAME_SIZE;
                }
            }
            for frame in &tables {
                let _ = frames.free(*frame);
            }
        });
        self.table = None;
        self.bytes = 0;
        self.foreign.clear();
    }

    /// Maps the hypervisor-owned page `machine` at guest-physical `gpa`, which must be
    /// page aligned and not RAM (the guest chose it; Xen would free RAM behind it,
    /// Basalt refuses). Mapping the same page at the same place again is a no-op; a
    /// place already holding another page is refused (the nested table never loses a
    /// mapping while the domain lives).
    pub fn map_foreign_page(&mut self, gpa: u64, machine: u64) -> Result<(), GuestMemoryError> {
        let refused = GuestMemoryError::BadRange { start: gpa, end: gpa.saturating_add(FRAME_SIZE) };
        if !gpa.is_multiple_of(FRAME_SIZE) || !machine.is_multiple_of(FRAME_SIZE) || self.is_backed(gpa) {
            return Err(refused);
        }
        if let Some(&(_, mapped)) = self.foreign.iter().find(|(at, _)| *at == gpa) {
            return if mapped == machine { Ok(()) } else { Err(refused) };
        }
        let Some(table) = self.table.as_mut() else { return Err(refused) };
        let mut tables = DirectMapTables { taken: &mut self.table_frames };
        table.map(&mut tables, gpa, machine, FRAME_SIZE).map_err(|_| refused)?;
        self.foreign.push((gpa, machine));
        Ok(())
    }

    /// The direct-map address of the naturally aligned `size`-byte word at `gpa`, if
    /// it is the domain's RAM.
    fn word_address(&self, gpa: u64, size: u64) -> Option<u64> {
        if !gpa.is_multiple_of(size) {
            return None;
        }
        self.locate(gpa).map(|(pointer, _)| pointer)
    }

    /// The guest's u64 at `gpa` for atomic access shared with the guest (event-channel
    /// bits). `None` unless 8-byte aligned RAM.
    pub fn atomic_u64(&self, gpa: u64) -> Option<&AtomicU64> {
        let address = self.word_address(gpa, 8)?;
        // SAFETY: the word is aligned and inside a chunk of this domain's RAM, which
        // stays allocated while `self` is borrowed (only `release(&mut self)` frees it).
        // The guest accesses it concurrently, which atomics allow.
        Some(unsafe { &*(address as *const AtomicU64) })
    }

    /// The guest's byte at `gpa` for atomic access (vcpu_info.evtchn_upcall_pending).
    pub fn atomic_u8(&self, gpa: u64) -> Option<&AtomicU8> {
        let address = self.word_address(gpa, 1)?;
        // SAFETY: as in atomic_u64.
        Some(unsafe { &*(address as *const AtomicU8) })
    }

    /// Machine address of the nested page table root.
    pub fn nested_root(&self) -> u64 {
        self.table.as_ref().map_or(0, NestedPageTable::root)
    }

    /// Bytes of RAM backing the domain.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Highest guest frame number backed, or 0.
    pub fn max_gpfn(&self) -> u64 {
        self.chunks.iter().map(|chunk| (chunk.gpa + chunk.length) / FRAME_SIZE).max().unwrap_or(1) - 1
    }

    /// The domain's RAM as (guest-physical start, machine start, length) pieces,
    /// ascending by guest-physical address (the debugger's memory map and its
    /// physical-to-machine translation).
    pub fn pieces(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.chunks.iter().map(|chunk| (chunk.gpa, chunk.machine, chunk.length))
    }

    /// True if `gpa` is backed by the domain's RAM.
    pub fn is_backed(&self, gpa: u64) -> bool {
        self.chunk_of(gpa).is_some()
    }

    fn chunk_of(&self, gpa: u64) -> Option<&Chunk> {
        let index = self.chunks.partition_point(|chunk| chunk.gpa + chunk.length <= gpa);
        self.chunks.get(index).filter(|chunk| chunk.gpa <= gpa && gpa < chunk.gpa + chunk.length)
    }

    /// Direct-map pointer and the bytes left in its chunk, for `gpa`.
    fn locate(&self, gpa: u64) -> Option<(u64, u64)> {
        let chunk = self.chunk_of(gpa)?;
        let offset = gpa - chunk.gpa;
        Some((phys_to_virt(chunk.machine + offset), chunk.length - offset))
    }

    /// Copies guest-physical `[gpa, gpa + buffer.len())` out; false (and nothing
    /// meaningful in `buffer`) if any byte is not the domain's RAM.
    pub fn read(&self, gpa: u64, buffer: &mut [u8]) -> bool {
        let mut done = 0usize;
        while done < buffer.len() {
            let Some(address) = gpa.checked_add(done as u64) else { return false };
            let Some((pointer, available)) = self.locate(address) else { return false };
            let count = (buffer.len() - done).min(available as usize);
            // SAFETY: [pointer, pointer + count) lies inside one chunk of this domain's
            // RAM, mapped by the direct map.
            unsafe { core::ptr::copy_nonoverlapping(pointer as *const u8, buffer[done..].as_mut_ptr(), count) };
            done += count;
        }
        true
    }

    /// Copies `data` into guest-physical memory at `gpa`; writes nothing and returns
    /// false unless every byte is the domain's RAM.
    pub fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        let Some(last) = gpa.checked_add(data.len().saturating_sub(1) as u64) else { return false };
        let mut check = gpa;
        while check <= last {
            let Some((_, available)) = self.locate(check) else { return false };
            check = match check.checked_add(available) {
                Some(next) => next,
                None => break,
            };
        }
        let mut done = 0usize;
        while done < data.len() {
            let Some((pointer, available)) = self.locate(gpa + done as u64) else { return false };
            let count = (data.len() - done).min(available as usize);
            // SAFETY: as in read; the whole range was checked above.
            unsafe { core::ptr::copy_nonoverlapping(data[done..].as_ptr(), pointer as *mut u8, count) };
            done += count;
        }
        true
    }

    /// Copies `buffer.len()` bytes from `offset` inside guest page `gfn`; false (and
    /// nothing read) if the range leaves the page or the page is not RAM.
    pub fn read_in_page(&self, gfn: u64, offset: usize, buffer: &mut [u8]) -> bool {
        match page_range(gfn, offset, buffer.len()) {
            Some(gpa) => self.read(gpa, buffer),
            None => false,
        }
    }

    /// Copies `data` to `offset` inside guest page `gfn`; false (and nothing written)
    /// if the range leaves the page or the page is not RAM.
    pub fn write_in_page(&mut self, gfn: u64, offset: usize, data: &[u8]) -> bool {
        match page_range(gfn, offset, data.len()) {
            Some(gpa) => self.write(gpa, data),
            None => false,
        }
    }

    /// Reads a little-endian u64 at `gpa` (page-table walks).
    pub fn read_u64(&self, gpa: u64) -> Option<u64> {
        let mut bytes = [0u8; 8];
        self.read(gpa, &mut bytes).then(|| u64::from_le_bytes(bytes))
    }
}

/// The guest-physical address of `[offset, offset + length)` in page `gfn`, if that
/// range stays inside the page.
fn page_range(gfn: u64, offset: usize, length: usize) -> Option<u64> {
    let end = offset.checked_add(length)?;
    if end as u64 > FRAME_SIZE {
        return None;
    }
    gfn.checked_mul(FRAME_SIZE)?.checked_add(offset as u64)
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        self.release();
    }
}

impl crate::virt::guest_paging::GuestPhysicalMemory for GuestMemory {
    fn read_u64(&self, gpa: u64) -> Option<u64> {
        GuestMemory::read_u64(self, gpa)
    }
    fn read(&self, gpa: u64, buffer: &mut [u8]) -> bool {
        GuestMemory::read(self, gpa, buffer)
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        GuestMemory::write(self, gpa, data)
    }
}
