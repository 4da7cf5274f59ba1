//! The physical frame allocator: hands out and takes back 4 KiB frames of host RAM.
//!
//! Why: every page table, VMCB/VMCS, guest page and DMA buffer comes from here. It is built
//! once the heap exists (it keeps its bitmaps in `Vec`s), from the firmware memory map's
//! usable ranges minus what boot already uses (the hypervisor image, modules, the heap).
//!
//! Representation: one [`Region`] per maximal run of usable, unreserved frames, sorted by
//! address, each with its own bitmap (one bit per frame, 1 = free). Memory cost is one bit
//! per *usable* frame, so a machine with 1 TiB of sparsely populated address space pays
//! nothing for the holes. Allocation scans bitmap words from a per-region hint (the lowest
//! word that may hold a free bit), skipping full words 64 frames at a time.
//!
//! Invariants:
//! - Regions are frame-aligned, non-empty, disjoint and sorted; usable ranges were aligned
//!   inward, reserved ranges outward, so a partly usable or partly reserved frame is never
//!   handed out.
//! - Frame 0 is never managed (it is reserved unconditionally), so 0 is never returned and
//!   can serve as "no frame" in hardware structures.
//! - `free_frames` of each region equals the number of set bits in its bitmap.
//! - [`FrameAllocator::allocate`] and [`FrameAllocator::allocate_contiguous`] prefer frames
//!   at or above 1 MiB ([`LOW_MEMORY_END`]) and fall back to low memory only when nothing
//!   else is left; [`FrameAllocator::allocate_below`] is the way to ask for low memory.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// Size of a frame in bytes.
pub const FRAME_SIZE: u64 = 4096;
/// End of the real-mode area that `allocate` avoids while it can (AP trampolines live here).
pub const LOW_MEMORY_END: u64 = 0x10_0000;

/// A half-open physical address range `[start, end)`.
#[derive(Copy, Clone, PartialEq, Eq, Debug, Hash)]
pub struct PhysRange {
    pub start: u64,
    pub end: u64,
}

impl PhysRange {
    pub const fn new(start: u64, end: u64) -> PhysRange {
        PhysRange { start, end }
    }

    /// A range from its start and length (saturating at the top of the address space).
    pub const fn from_start_length(start: u64, length: u64) -> PhysRange {
        PhysRange { start, end: start.saturating_add(length) }
    }

    /// Bytes in the range (0 if `end <= start`).
    pub const fn length(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    pub const fn contains(&self, address: u64) -> bool {
        self.start <= address && address < self.end
    }

    pub const fn overlaps(&self, other: &PhysRange) -> bool {
        self.start < other.end && other.start < self.end && !self.is_empty() && !other.is_empty()
    }

    /// The whole frames inside the range (start rounded up, end rounded down).
    pub const fn align_inward(&self) -> PhysRange {
        let start = match self.start.checked_next_multiple_of(FRAME_SIZE) {
            Some(start) => start,
            None => u64::MAX - (FRAME_SIZE - 1),
        };
        PhysRange { start, end: self.end - self.end % FRAME_SIZE }
    }

    /// The frames touching the range (start rounded down, end rounded up; an end past the
    /// last frame start saturates to the top of the address space).
    pub const fn align_outward(&self) -> PhysRange {
        let end = match self.end.checked_next_multiple_of(FRAME_SIZE) {
            Some(end) => end,
            None => u64::MAX,
        };
        PhysRange { start: self.start - self.start % FRAME_SIZE, end }
    }

    /// Number of whole frames in an aligned range.
    pub const fn frame_count(&self) -> u64 {
        self.length() / FRAME_SIZE
    }
}

impl fmt::Display for PhysRange {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "[{:#x}, {:#x})", self.start, self.end)
    }
}

/// Why a frame could not be freed.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum FrameError {
    /// The address is not a multiple of [`FRAME_SIZE`].
    NotAligned(u64),
    /// The frame is not in any region this allocator manages.
    NotManaged(u64),
    /// The frame is already free.
    DoubleFree(u64),
}

impl fmt::Display for FrameError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::NotAligned(address) => {
                write!(formatter, "frame {address:#x} is not aligned")
            }
            FrameError::NotManaged(address) => {
                write!(formatter, "frame {address:#x} is not managed by the allocator")
            }
            FrameError::DoubleFree(address) => {
                write!(formatter, "frame {address:#x} is already free")
            }
        }
    }
}

/// A run of managed frames with its free bitmap.
#[derive(Clone, Debug)]
struct Region {
    /// Frame number (address / FRAME_SIZE) of the first frame.
    first_frame: u64,
    frame_count: u64,
    /// Bit `i` of word `i / 64` is set when frame `first_frame + i` is free.
    free_bitmap: Vec<u64>,
    free_frames: u64,
    /// No word before this one has a free bit.
    search_hint: usize,
}

impl Region {
    fn new(range: PhysRange) -> Region {
        let frame_count = range.frame_count();
        let words = frame_count.div_ceil(64) as usize;
        let mut free_bitmap = vec![u64::MAX; words];
        let tail_bits = frame_count % 64;
        if let (Some(last), true) = (free_bitmap.last_mut(), tail_bits != 0) {
            *last = (1u64 << tail_bits) - 1;
        }
        Region {
            first_frame: range.start / FRAME_SIZE,
            frame_count,
            free_bitmap,
            free_frames: frame_count,
            search_hint: 0,
        }
    }

    fn end_frame(&self) -> u64 {
        self.first_frame + self.frame_count
    }

    fn is_free(&self, index: u64) -> bool {
        self.free_bitmap.get((index / 64) as usize).is_some_and(|word| word & (1 << (index % 64)) != 0)
    }

    fn mark_used(&mut self, index: u64) {
        if let Some(word) = self.free_bitmap.get_mut((index / 64) as usize) {
            if *word & (1 << (index % 64)) != 0 {
                *word &= !(1 << (index % 64));
                self.free_frames -= 1;
            }
        }
    }

    fn mark_free(&mut self, index: u64) {
        let word_index = (index / 64) as usize;
        if let Some(word) = self.free_bitmap.get_mut(word_index) {
            if *word & (1 << (index % 64)) == 0 {
                *word |= 1 << (index % 64);
                self.free_frames += 1;
                self.search_hint = self.search_hint.min(word_index);
            }
        }
    }

    /// The lowest free frame index at or above `from_index` and below `limit_index`.
    fn first_free(&mut self, from_index: u64, limit_index: u64) -> Option<u64> {
        let limit_index = limit_index.min(self.frame_count);
        if self.free_frames == 0 || from_index >= limit_index {
            return None;
        }
        let first_word = ((from_index / 64) as usize).max(self.search_hint);
        let mut hint_still_valid = from_index / 64 <= self.search_hint as u64;
        for (word_index, &word) in self.free_bitmap.iter().enumerate().skip(first_word) {
            let base = word_index as u64 * 64;
            if base >= limit_index {
                return None;
            }
            let mut candidates = word;
            if base < from_index {
                candidates &= u64::MAX << (from_index - base);
            }
            if candidates == 0 {
                if hint_still_valid && word == 0 {
                    self.search_hint = word_index + 1;
                } else {
                    hint_still_valid = false;
                }
                continue;
            }
            let index = base + u64::from(candidates.trailing_zeros());
            return (index < limit_index).then_some(index);
        }
        None
    }
}

/// The frame allocator. See the module documentation.
#[derive(Clone, Debug)]
pub struct FrameAllocator {
    regions: Vec<Region>,
}

impl FrameAllocator {
    /// Manages the frames wholly inside `usable` and not touching `reserved` (nor frame 0).
    /// Both lists may be unsorted and overlapping.
    pub fn new(usable: &[PhysRange], reserved: &[PhysRange]) -> FrameAllocator {
        let usable = merge_ranges(usable.iter().map(PhysRange::align_inward));
        let reserved =
            merge_ranges(reserved.iter().map(PhysRange::align_outward).chain([PhysRange::new(0, FRAME_SIZE)]));
        let regions = subtract_ranges(&usable, &reserved).into_iter().map(Region::new).collect();
        FrameAllocator { regions }
    }

    /// The lowest free frame, preferring frames at or above 1 MiB.
    pub fn allocate(&mut self) -> Option<u64> {
        self.allocate_in(LOW_MEMORY_END / FRAME_SIZE, u64::MAX)
            .or_else(|| self.allocate_in(0, LOW_MEMORY_END / FRAME_SIZE))
    }

    /// The lowest free frame that ends at or below `limit` (may be below 1 MiB, never 0).
    pub fn allocate_below(&mut self, limit: u64) -> Option<u64> {
        self.allocate_in(0, limit / FRAME_SIZE)
    }

    /// `frames` physically contiguous frames whose first frame number is a multiple of
    /// `align_frames` (0 counts as 1); returns the address of the first. Prefers memory at
    /// or above 1 MiB.
    pub fn allocate_contiguous(&mut self, frames: u64, align_frames: u64) -> Option<u64> {
        if frames == 0 {
            return None;
        }
        let align_frames = align_frames.max(1);
        let low_end_frame = LOW_MEMORY_END / FRAME_SIZE;
        let (region_index, first_frame) = self
            .find_contiguous(frames, align_frames, low_end_frame)
            .or_else(|| self.find_contiguous(frames, align_frames, 0))?;
        let region = self.regions.get_mut(region_index)?;
        let first_index = first_frame - region.first_frame;
        for index in first_index..first_index + frames {
            region.mark_used(index);
        }
        first_frame.checked_mul(FRAME_SIZE)
    }

    /// Returns a frame to the allocator.
    pub fn free(&mut self, addr: u64) -> Result<(), FrameError> {
        if !addr.is_multiple_of(FRAME_SIZE) {
            return Err(FrameError::NotAligned(addr));
        }
        let frame = addr / FRAME_SIZE;
        let region =
            self.region_of(frame).and_then(|index| self.regions.get_mut(index)).ok_or(FrameError::NotManaged(addr))?;
        let index = frame - region.first_frame;
        if region.is_free(index) {
            return Err(FrameError::DoubleFree(addr));
        }
        region.mark_free(index);
        Ok(())
    }

    /// Whether the frame at `addr` is managed and currently free.
    pub fn is_free(&self, addr: u64) -> bool {
        let frame = addr / FRAME_SIZE;
        addr.is_multiple_of(FRAME_SIZE)
            && self
                .region_of(frame)
                .and_then(|index| self.regions.get(index))
                .is_some_and(|region| region.is_free(frame - region.first_frame))
    }

    /// Frames managed (free or allocated).
    pub fn total_frames(&self) -> u64 {
        self.regions.iter().map(|region| region.frame_count).sum()
    }

    /// Frames currently free.
    pub fn free_frames(&self) -> u64 {
        self.regions.iter().map(|region| region.free_frames).sum()
    }

    /// The managed ranges, by address.
    pub fn regions(&self) -> impl Iterator<Item = PhysRange> + '_ {
        self.regions
            .iter()
            .map(|region| PhysRange::new(region.first_frame * FRAME_SIZE, region.end_frame() * FRAME_SIZE))
    }

    /// Index of the region holding frame number `frame`.
    fn region_of(&self, frame: u64) -> Option<usize> {
        let after = self.regions.partition_point(|region| region.first_frame <= frame);
        let index = after.checked_sub(1)?;
        (frame < self.regions.get(index)?.end_frame()).then_some(index)
    }

    /// Allocates the lowest free frame with frame number in `[from_frame, limit_frame)`.
    fn allocate_in(&mut self, from_frame: u64, limit_frame: u64) -> Option<u64> {
        for region in &mut self.regions {
            if region.end_frame() <= from_frame {
                continue;
            }
            if region.first_frame >= limit_frame {
                return None;
            }
            let from_index = from_frame.saturating_sub(region.first_frame);
            let limit_index = limit_frame - region.first_frame;
            if let Some(index) = region.first_free(from_index, limit_index) {
                region.mark_used(index);
                return Some((region.first_frame + index) * FRAME_SIZE);
            }
        }
        None
    }

    /// Finds (region index, first frame number) of a free aligned run at or above
    /// `from_frame`.
    fn find_contiguous(&self, frames: u64, align_frames: u64, from_frame: u64) -> Option<(usize, u64)> {
        for (region_index, region) in self.regions.iter().enumerate() {
            if region.free_frames < frames || region.end_frame() <= from_frame {
                continue;
            }
            let mut candidate = region.first_frame.max(from_frame).checked_next_multiple_of(align_frames)?;
            'candidates: loop {
                let end = candidate.checked_add(frames)?;
                if end > region.end_frame() {
                    break;
                }
                // Check from the top so a used frame lets the search skip furthest.
                for frame in (candidate..end).rev() {
                    if !region.is_free(frame - region.first_frame) {
                        candidate = (frame + 1).checked_next_multiple_of(align_frames)?;
                        continue 'candidates;
                    }
                }
                return Some((region_index, candidate));
            }
        }
        None
    }
}

/// Sorts ranges and merges overlapping or adjacent ones, dropping empty ones.
fn merge_ranges(ranges: impl Iterator<Item = PhysRange>) -> Vec<PhysRange> {
    let mut sorted: Vec<PhysRange> = ranges.filter(|range| !range.is_empty()).collect();
    sorted.sort_unstable_by_key(|range| range.start);
    let mut merged: Vec<PhysRange> = Vec::with_capacity(sorted.len());
    for range in sorted {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    merged
}

/// `usable` minus `reserved`; both sorted, merged and non-empty.
fn subtract_ranges(usable: &[PhysRange], reserved: &[PhysRange]) -> Vec<PhysRange> {
    let mut result = Vec::new();
    let mut reserved_index = 0;
    for range in usable {
        let mut start = range.start;
        while start < range.end {
            // Skip reservations that end before this piece.
            while reserved.get(reserved_index).is_some_and(|reservation| reservation.end <= start) {
                reserved_index += 1;
            }
            match reserved.get(reserved_index) {
                Some(reservation) if reservation.start < range.end => {
                    if reservation.start > start {
                        result.push(PhysRange::new(start, reservation.start));
                    }
                    start = reservation.end;
                }
                _ => {
                    result.push(PhysRange::new(start, range.end));
                    break;
                }
            }
        }
    }
    result
}

/// The lowest `size`-byte range aligned to `align` (a power of two) that lies inside one
/// of the `usable` ranges, ends at or below `limit` and overlaps none of the `reserved`
/// ranges. Used at boot, before the frame allocator exists, to place the heap.
pub fn find_free_range(usable: &[PhysRange], reserved: &[PhysRange], size: u64, align: u64, limit: u64) -> Option<u64> {
    if size == 0 || !align.is_power_of_two() {
        return None;
    }
    let align_up = |value: u64| value.checked_add(align - 1).map(|v| v & !(align - 1));
    let mut best: Option<u64> = None;
    for range in usable {
        let end = range.end.min(limit);
        let mut candidate = align_up(range.start)?;
        while let Some(candidate_end) = candidate.checked_add(size).filter(|&e| e <= end) {
            match reserved.iter().filter(|r| r.start < candidate_end && candidate < r.end).map(|r| r.end).max() {
                Some(conflict_end) => match align_up(conflict_end) {
                    Some(next) => candidate = next,
                    None => break,
                },
                None => {
                    best = Some(best.map_or(candidate, |b: u64| b.min(candidate)));
                    break;
                }
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn ranges(allocator: &FrameAllocator) -> Vec<(u64, u64)> {
        allocator.regions().map(|range| (range.start, range.end)).collect()
    }

    #[test]
    fn phys_range_helpers() {
        let range = PhysRange::new(0x1001, 0x5fff);
        assert_eq!(range.align_inward(), PhysRange::new(0x2000, 0x5000));
        assert_eq!(range.align_outward(), PhysRange::new(0x1000, 0x6000));
        assert_eq!(range.align_inward().frame_count(), 3);
        assert!(PhysRange::new(0x1800, 0x1900).align_inward().is_empty());
        assert!(range.contains(0x1001) && !range.contains(0x5fff));
        assert!(range.overlaps(&PhysRange::new(0x5000, 0x7000)));
        assert!(!range.overlaps(&PhysRange::new(0x5fff, 0x7000)));
        assert_eq!(PhysRange::new(u64::MAX - 5, u64::MAX).align_outward().end, u64::MAX);
        assert!(PhysRange::new(u64::MAX - 5, u64::MAX).align_inward().is_empty());
        assert_eq!(PhysRange::from_start_length(u64::MAX, 10).end, u64::MAX);
    }

    #[test]
    fn usable_aligned_inward_and_reserved_subtracted() {
        let allocator = FrameAllocator::new(
            &[
                PhysRange::new(0x10_0800, 0x20_0000),
                // Overlapping and unsorted.
                PhysRange::new(0x30_0000, 0x40_0000),
                PhysRange::new(0x38_0000, 0x50_0100),
                PhysRange::new(0, 0x9_f000),
            ],
            &[
                PhysRange::new(0x40_0fff, 0x40_1001), // touches two frames
                PhysRange::new(0x1_0000, 0x2_0000),
                PhysRange::new(0x45_0000, 0x60_0000),
            ],
        );
        assert_eq!(
            ranges(&allocator),
            [
                (0x1000, 0x1_0000), // frame 0 is never managed
                (0x2_0000, 0x9_f000),
                (0x10_1000, 0x20_0000),
                (0x30_0000, 0x40_0000),
                (0x40_2000, 0x45_0000),
            ]
        );
        let expected: u64 = ranges(&allocator).iter().map(|(start, end)| (end - start) / FRAME_SIZE).sum();
        assert_eq!(allocator.total_frames(), expected);
        assert_eq!(allocator.free_frames(), expected);
    }

    #[test]
    fn allocate_prefers_high_memory_and_never_returns_zero() {
        let mut allocator = FrameAllocator::new(&[PhysRange::new(0, 0x3000), PhysRange::new(MIB, MIB + 0x2000)], &[]);
        assert_eq!(allocator.allocate(), Some(MIB));
        assert_eq!(allocator.allocate(), Some(MIB + 0x1000));
        // Only low memory is left: it is used, but frame 0 never is.
        assert_eq!(allocator.allocate(), Some(0x1000));
        assert_eq!(allocator.allocate(), Some(0x2000));
        assert_eq!(allocator.allocate(), None);
        assert_eq!(allocator.free_frames(), 0);
        allocator.free(MIB + 0x1000).unwrap();
        assert_eq!(allocator.allocate(), Some(MIB + 0x1000));
    }

    #[test]
    fn allocate_below_uses_low_memory() {
        let mut allocator = FrameAllocator::new(&[PhysRange::new(0, 0xA_0000), PhysRange::new(MIB, 2 * MIB)], &[]);
        assert_eq!(allocator.allocate_below(MIB), Some(0x1000));
        assert_eq!(allocator.allocate_below(0x2000), None, "0x1000 taken, 0 never");
        assert_eq!(allocator.allocate_below(0x2fff), None, "frame must end below the limit");
        assert_eq!(allocator.allocate_below(0x3000), Some(0x2000));
        assert_eq!(allocator.allocate(), Some(MIB));
    }

    #[test]
    fn free_errors() {
        let mut allocator = FrameAllocator::new(&[PhysRange::new(MIB, MIB + 0x4000)], &[]);
        let frame = allocator.allocate().unwrap();
        assert_eq!(allocator.free(frame + 1), Err(FrameError::NotAligned(frame + 1)));
        assert_eq!(allocator.free(0), Err(FrameError::NotManaged(0)));
        assert_eq!(allocator.free(2 * MIB), Err(FrameError::NotManaged(2 * MIB)));
        assert_eq!(allocator.free(frame), Ok(()));
        assert_eq!(allocator.free(frame), Err(FrameError::DoubleFree(frame)));
        assert_eq!(allocator.free(MIB + 0x3000), Err(FrameError::DoubleFree(MIB + 0x3000)));
        assert_eq!(allocator.free_frames(), 4);
    }

    #[test]
    fn exhaustion_and_full_reuse() {
        let mut allocator = FrameAllocator::new(&[PhysRange::new(MIB, MIB + 200 * FRAME_SIZE)], &[]);
        let mut frames = Vec::new();
        while let Some(frame) = allocator.allocate() {
            frames.push(frame);
        }
        assert_eq!(frames.len(), 200);
        assert!(frames.windows(2).all(|pair| pair[1] == pair[0] + FRAME_SIZE));
        for &frame in frames.iter().rev().step_by(3) {
            allocator.free(frame).unwrap();
        }
        let freed = allocator.free_frames();
        let mut again = 0;
        while let Some(frame) = allocator.allocate() {
            assert!(frames.contains(&frame));
            again += 1;
        }
        assert_eq!(again, freed);
    }

    #[test]
    fn contiguous_with_alignment() {
        let mut allocator = FrameAllocator::new(&[PhysRange::new(MIB + 0x1000, 8 * MIB - 0x1000)], &[]);
        // 2 MiB aligned, 512 frames: the first candidate is 2 MiB.
        assert_eq!(allocator.allocate_contiguous(512, 512), Some(2 * MIB));
        assert_eq!(allocator.allocate_contiguous(512, 512), Some(4 * MIB));
        assert_eq!(allocator.allocate_contiguous(512, 512), None, "6..8 MiB has only 511 frames");
        assert_eq!(allocator.allocate_contiguous(3, 0), Some(MIB + 0x1000));
        assert_eq!(allocator.allocate_contiguous(0, 1), None);
        // A hole in the middle: allocate a run, free a frame inside it, ask again.
        let run = allocator.allocate_contiguous(16, 16).unwrap();
        assert_eq!(run % (16 * FRAME_SIZE), 0);
        allocator.free(run + 5 * FRAME_SIZE).unwrap();
        let next = allocator.allocate_contiguous(2, 1).unwrap();
        assert!(next >= run + 16 * FRAME_SIZE || next + 2 * FRAME_SIZE <= run);
        assert!(allocator.allocate_contiguous(u64::MAX, u64::MAX).is_none());
    }

    #[test]
    fn contiguous_spanning_reservation_is_refused() {
        let mut allocator =
            FrameAllocator::new(&[PhysRange::new(MIB, 2 * MIB)], &[PhysRange::new(MIB + 0x8000, MIB + 0x9000)]);
        // Two regions of 8 and 247 frames: 9 contiguous must come from the second.
        assert_eq!(allocator.allocate_contiguous(9, 1), Some(MIB + 0x9000));
        assert_eq!(allocator.allocate_contiguous(8, 1), Some(MIB));
    }

    #[test]
    fn sparse_terabyte_address_space_is_cheap() {
        let mut usable = Vec::new();
        for index in 0..16u64 {
            usable.push(PhysRange::from_start_length((index + 1) * 64 * GIB, 16 * MIB));
        }
        let mut allocator = FrameAllocator::new(&usable, &[]);
        assert_eq!(allocator.regions().count(), 16);
        let bitmap_words: usize = allocator.regions.iter().map(|r| r.free_bitmap.len()).sum();
        assert!(bitmap_words <= 16 * 64 + 16);
        assert_eq!(allocator.allocate(), Some(64 * GIB));
        assert_eq!(allocator.allocate_contiguous(4096, 4096), Some(128 * GIB), "16 MiB aligned run in a later region");
    }

    #[test]
    fn random_operations_keep_counts_consistent() {
        let mut state = 0x0123_4567_89ab_cdefu64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20 {
            let usable: Vec<PhysRange> = (0..(next() % 6))
                .map(|_| PhysRange::from_start_length(next() % (64 * MIB), next() % (4 * MIB)))
                .collect();
            let reserved: Vec<PhysRange> =
                (0..(next() % 6)).map(|_| PhysRange::from_start_length(next() % (64 * MIB), next() % MIB)).collect();
            let mut allocator = FrameAllocator::new(&usable, &reserved);
            for range in allocator.regions() {
                assert!(range.start % FRAME_SIZE == 0 && range.end % FRAME_SIZE == 0);
                assert!(range.start > 0);
                assert!(
                    usable.iter().any(|u| u.start <= range.start && range.end <= u.end)
                        || usable.iter().any(|u| u.overlaps(&range))
                );
                assert!(!reserved.iter().any(|r| r.overlaps(&range)));
            }
            let mut held = Vec::new();
            for _ in 0..500 {
                match next() % 4 {
                    0 | 1 => held.extend(allocator.allocate()),
                    2 => {
                        if let Some(first) = allocator.allocate_contiguous(next() % 5 + 1, next() % 4) {
                            held.push(first);
                        }
                    }
                    _ => {
                        if !held.is_empty() {
                            let frame = held.swap_remove((next() % held.len() as u64) as usize);
                            allocator.free(frame).unwrap();
                        }
                    }
                }
                let _ = allocator.free(next());
                assert!(allocator.free_frames() <= allocator.total_frames());
            }
            let counted: u64 = allocator
                .regions
                .iter()
                .map(|region| region.free_bitmap.iter().map(|w| u64::from(w.count_ones())).sum::<u64>())
                .sum();
            assert_eq!(counted, allocator.free_frames());
        }
    }

    #[test]
    fn free_range_skips_reservations_and_respects_alignment_and_limit() {
        const MIB: u64 = 1 << 20;
        let usable = [PhysRange { start: 0, end: 0x9f000 }, PhysRange { start: MIB, end: 512 * MIB }];
        let reserved = [PhysRange { start: 0, end: 0x1000 }, PhysRange { start: 2 * MIB, end: 3 * MIB + 5 }];
        // The low range is too small; 1 MiB..2 MiB is too short for 16 MiB; the first fit
        // starts at the next 2 MiB boundary after the reservation.
        assert_eq!(find_free_range(&usable, &reserved, 16 * MIB, 2 * MIB, u64::MAX), Some(4 * MIB));
        // A limit that leaves no room.
        assert_eq!(find_free_range(&usable, &reserved, 16 * MIB, 2 * MIB, 8 * MIB), None);
        // Nothing fits at all.
        assert_eq!(find_free_range(&usable, &reserved, 1024 * MIB, 2 * MIB, u64::MAX), None);
        // Unsorted usable ranges: the lowest fit wins.
        let unsorted = [PhysRange { start: 256 * MIB, end: 512 * MIB }, PhysRange { start: 8 * MIB, end: 64 * MIB }];
        assert_eq!(find_free_range(&unsorted, &[], 16 * MIB, 2 * MIB, u64::MAX), Some(8 * MIB));
        // Bad parameters and ranges at the top of the address space.
        assert_eq!(find_free_range(&usable, &reserved, 0, 2 * MIB, u64::MAX), None);
        assert_eq!(find_free_range(&usable, &reserved, MIB, 3, u64::MAX), None);
        let top = [PhysRange { start: u64::MAX - MIB, end: u64::MAX }];
        assert_eq!(find_free_range(&top, &[], 4 * MIB, 2 * MIB, u64::MAX), None);
        let overlapping = [PhysRange { start: 4 * MIB, end: u64::MAX }];
        assert_eq!(find_free_range(&usable, &overlapping, MIB, MIB, u64::MAX), Some(MIB));
    }
}
