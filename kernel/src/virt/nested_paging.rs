//! Nested page tables (AMD NPT, Intel EPT): the guest-physical → machine translation the
//! hardware applies under every guest access.
//!
//! Both vendors use a four-level radix tree of 512-entry tables with 2 MiB leaves at
//! level 2; only the entry bits differ, so one builder serves both through an
//! [`EntryFormat`] (APM vol. 2 §15.25.5: NPT entries are ordinary long-mode entries and
//! must carry the User bit at every level, since nested walks are user accesses; SDM
//! vol. 3 §29.3.2: EPT entries carry R/W/X in bits 0–2 and the memory type in bits 3–5
//! of leaves).
//!
//! Portable: table memory is reached through [`TableMemory`] (the direct map in the
//! hypervisor, a hash map in tests). Invariants: a mapping only ever fills not-present
//! entries ([`NestedPageTable::map`] refuses to overwrite), so building a domain's
//! tables needs no TLB flush; every table frame the tree uses is recorded so destroy
//! gives each one back.

use alloc::vec::Vec;

const ENTRIES: usize = 512;
const FOUR_KIB: u64 = 4096;
const TWO_MIB: u64 = 2 * 1024 * 1024;
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
const LARGE_PAGE: u64 = 1 << 7;
/// Guest-physical addresses must stay below this (4-level walks, 48 bits).
pub const GUEST_PHYSICAL_LIMIT: u64 = 1 << 48;

/// Where table frames come from and how their entries are read and written.
pub trait TableMemory {
    /// A zeroed 4 KiB frame for a new table, or `None` when memory is exhausted.
    fn allocate_table(&mut self) -> Option<u64>;
    /// Entry `index` of the table at machine address `table`.
    fn read_entry(&self, table: u64, index: usize) -> u64;
    /// Sets entry `index` of the table at machine address `table`.
    fn write_entry(&mut self, table: u64, index: usize, value: u64);
}

/// The bits a vendor puts into non-leaf entries and into 4 KiB / 2 MiB leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryFormat {
    pub table: u64,
    pub leaf_4k: u64,
    pub leaf_2m: u64,
}

/// AMD NPT: Present | Writable | User everywhere; leaves executable (NX clear).
pub const NPT_FORMAT: EntryFormat = EntryFormat { table: 0x7, leaf_4k: 0x7, leaf_2m: 0x7 | LARGE_PAGE };
/// Intel EPT: Read | Write | Execute; leaves write-back (type 6 in bits 5:3).
pub const EPT_FORMAT: EntryFormat =
    EntryFormat { table: 0x7, leaf_4k: 0x7 | (6 << 3), leaf_2m: 0x7 | (6 << 3) | LARGE_PAGE };

/// Why a mapping was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// Addresses or length not 4 KiB aligned, or beyond the 48-bit guest space.
    Misaligned,
    /// Part of the range is already mapped.
    AlreadyMapped { gpa: u64 },
    /// No frame for a table.
    OutOfMemory,
}

/// One domain's nested page table.
#[derive(Debug)]
pub struct NestedPageTable {
    root: u64,
    format: EntryFormat,
    table_frames: Vec<u64>,
    mapped_bytes: u64,
}

impl NestedPageTable {
    /// An empty table (root only).
    pub fn new(memory: &mut dyn TableMemory, format: EntryFormat) -> Result<NestedPageTable, MapError> {
        let root = memory.allocate_table().ok_or(MapError::OutOfMemory)?;
        Ok(NestedPageTable { root, format, table_frames: alloc::vec![root], mapped_bytes: 0 })
    }

    /// Machine address of the top-level table (nCR3 / the EPT pointer's address).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Every table frame, root included (to free on destroy).
    pub fn table_frames(&self) -> &[u64] {
        &self.table_frames
    }

    /// Bytes of guest-physical space mapped.
    pub fn mapped_bytes(&self) -> u64 {
        self.mapped_bytes
    }

    /// Maps `[gpa, gpa + length)` to `[machine, machine + length)`, with 2 MiB leaves
    /// wherever both sides are 2 MiB aligned and enough length remains. On error the
    /// part mapped so far stays mapped (the caller destroys the whole table).
    pub fn map(&mut self, memory: &mut dyn TableMemory, gpa: u64, machine: u64, length: u64) -> Result<(), MapError> {
        let aligned =
            gpa.is_multiple_of(FOUR_KIB) && machine.is_multiple_of(FOUR_KIB) && length.is_multiple_of(FOUR_KIB);
        let end = gpa.checked_add(length).ok_or(MapError::Misaligned)?;
        if !aligned || end > GUEST_PHYSICAL_LIMIT || machine & !ADDRESS_MASK != 0 {
            return Err(MapError::Misaligned);
        }
        let mut offset = 0;
        while offset < length {
            let (guest, host) = (gpa + offset, machine + offset);
            let large = guest % TWO_MIB == 0 && host % TWO_MIB == 0 && length - offset >= TWO_MIB;
            let step = if large { TWO_MIB } else { FOUR_KIB };
            self.map_one(memory, guest, host, large)?;
            offset += step;
            self.mapped_bytes += step;
        }
        Ok(())
    }

    /// The machine address `gpa` maps to, if any (walks the tree).
    pub fn translate(&self, memory: &dyn TableMemory, gpa: u64) -> Option<u64> {
        if gpa >= GUEST_PHYSICAL_LIMIT {
            return None;
        }
        let mut table = self.root;
        for level in (1..=4).rev() {
            let entry = memory.read_entry(table, index_at(gpa, level));
            if entry & 0x7 == 0 {
                return None;
            }
            if level == 2 && entry & LARGE_PAGE != 0 {
                return Some((entry & ADDRESS_MASK & !(TWO_MIB - 1)) + gpa % TWO_MIB);
            }
            if level == 1 {
                return Some((entry & ADDRESS_MASK) + gpa % FOUR_KIB);
            }
            table = entry & ADDRESS_MASK;
        }
        None
    }

    fn map_one(&mut self, memory: &mut dyn TableMemory, gpa: u64, machine: u64, large: bool) -> Result<(), MapError> {
        let mut table = self.root;
        let leaf_level = if large { 2 } else { 1 };
        for level in (leaf_level + 1..=4).rev() {
            let index = index_at(gpa, level);
            let entry = memory.read_entry(table, index);
            if entry & 0x7 == 0 {
                let next = memory.allocate_table().ok_or(MapError::OutOfMemory)?;
                self.table_frames.push(next);
                memory.write_entry(table, index, next | self.format.table);
                table = next;
            } else if level == 2 && entry & LARGE_PAGE != 0 {
                return Err(MapError::AlreadyMapped { gpa });
            } else {
                table = entry & ADDRESS_MASK;
            }
        }
        let index = index_at(gpa, leaf_level);
        if memory.read_entry(table, index) & 0x7 != 0 {
            return Err(MapError::AlreadyMapped { gpa });
        }
        let flags = if large { self.format.leaf_2m } else { self.format.leaf_4k };
        memory.write_entry(table, index, machine | flags);
        Ok(())
    }
}

fn index_at(gpa: u64, level: u32) -> usize {
    ((gpa >> (12 + 9 * (level - 1))) as usize) & (ENTRIES - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct FakeTables {
        entries: HashMap<(u64, usize), u64>,
        next_frame: u64,
        limit: usize,
        allocated: usize,
    }

    impl TableMemory for FakeTables {
        fn allocate_table(&mut self) -> Option<u64> {
            if self.limit != 0 && self.allocated >= self.limit {
                return None;
            }
            self.allocated += 1;
            self.next_frame += FOUR_KIB;
            Some(0x1000_0000 + self.next_frame)
        }
        fn read_entry(&self, table: u64, index: usize) -> u64 {
            *self.entries.get(&(table, index)).unwrap_or(&0)
        }
        fn write_entry(&mut self, table: u64, index: usize, value: u64) {
            self.entries.insert((table, index), value);
        }
    }

    #[test]
    fn maps_with_large_pages_where_aligned() {
        let mut memory = FakeTables::default();
        let mut table = NestedPageTable::new(&mut memory, NPT_FORMAT).unwrap();
        // 4 MiB + 8 KiB, both sides 2 MiB aligned: two large leaves and two small ones.
        table.map(&mut memory, 0, 0x4000_0000, 4 * 1024 * 1024 + 8192).unwrap();
        assert_eq!(table.translate(&memory, 0x1234), Some(0x4000_1234));
        assert_eq!(table.translate(&memory, 0x20_0000 + 5), Some(0x4020_0005));
        assert_eq!(table.translate(&memory, 0x40_1000), Some(0x4040_1000));
        assert_eq!(table.translate(&memory, 0x40_2000), None);
        // root + PDPT + PD + one PT for the 4 KiB tail
        assert_eq!(table.table_frames().len(), 4);
        let large_leaves = memory.entries.values().filter(|entry| *entry & LARGE_PAGE != 0).count();
        assert_eq!(large_leaves, 2);
        assert_eq!(table.mapped_bytes(), 4 * 1024 * 1024 + 8192);
        // every entry carries the User bit (NPT walks are user accesses)
        assert!(memory.entries.values().all(|entry| entry & 0x4 != 0));
    }

    #[test]
    fn misaligned_machine_address_uses_small_pages() {
        let mut memory = FakeTables::default();
        let mut table = NestedPageTable::new(&mut memory, EPT_FORMAT).unwrap();
        table.map(&mut memory, 0x20_0000, 0x5000_1000, TWO_MIB).unwrap();
        assert_eq!(table.translate(&memory, 0x20_0000), Some(0x5000_1000));
        assert_eq!(table.translate(&memory, 0x3f_ffff), Some(0x5020_0fff));
        assert!(memory.entries.values().all(|entry| entry & LARGE_PAGE == 0));
    }

    #[test]
    fn refuses_overlap_misalignment_and_exhaustion() {
        let mut memory = FakeTables::default();
        let mut table = NestedPageTable::new(&mut memory, NPT_FORMAT).unwrap();
        table.map(&mut memory, 0, 0x4000_0000, TWO_MIB).unwrap();
        assert_eq!(table.map(&mut memory, 0x1000, 0x8000_0000, 4096), Err(MapError::AlreadyMapped { gpa: 0x1000 }));
        assert_eq!(table.map(&mut memory, 0x123, 0, 4096), Err(MapError::Misaligned));
        assert_eq!(table.map(&mut memory, GUEST_PHYSICAL_LIMIT, 0, 4096), Err(MapError::Misaligned));
        assert_eq!(table.map(&mut memory, u64::MAX - 4095, 0, 8192), Err(MapError::Misaligned));
        assert_eq!(table.translate(&memory, u64::MAX), None);
        let mut small = FakeTables { limit: 2, ..FakeTables::default() };
        let mut table = NestedPageTable::new(&mut small, NPT_FORMAT).unwrap();
        assert_eq!(table.map(&mut small, 0, 0, 4096), Err(MapError::OutOfMemory));
        // the table frames taken before the failure are still recorded for freeing
        assert_eq!(table.table_frames().len(), 2);
    }
}
