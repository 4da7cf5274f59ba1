//! Guest-virtual to guest-physical translation through the guest's own page tables,
//! in whatever mode the vCPU was in: paging off, 32-bit (with 4 MiB pages under
//! CR4.PSE), PAE, 4-level and 5-level long mode (SDM vol. 3 §4.3–4.5, APM vol. 2
//! §5.3). Every target's virtual reads go through here.
//!
//! Invariants: a walk reads at most one entry per level (5 at most), so a page table
//! that points at itself cannot loop; an entry that is not present, or whose frame the
//! target does not have, ends the walk with [`TargetError::Unmapped`] for the virtual
//! address. Reserved bits are not checked: the debugger shows what the MMU would
//! fetch, not whether it would fault on them.

use alloc::vec::Vec;

use crate::target::{AddressSpace, Registers, Target, TargetError};

const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;
const ENTRY_PRESENT: u64 = 1;
const ENTRY_LARGE: u64 = 1 << 7;
const FRAME_MASK_64: u64 = 0x000f_ffff_ffff_f000;

/// The paging mode a vCPU's control registers select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagingMode {
    /// CR0.PG clear: virtual = physical.
    Off,
    /// Two levels of 32-bit entries.
    Bits32,
    /// Three levels of 64-bit entries (PDPT, PD, PT).
    Pae,
    /// Four levels (PML4).
    Level4,
    /// Five levels (PML5, CR4.LA57).
    Level5,
}

impl PagingMode {
    /// The mode `registers` describe.
    pub fn of(registers: &Registers) -> PagingMode {
        if registers.cr0 & CR0_PG == 0 {
            PagingMode::Off
        } else if registers.efer & EFER_LMA != 0 {
            if registers.cr4 & CR4_LA57 != 0 {
                PagingMode::Level5
            } else {
                PagingMode::Level4
            }
        } else if registers.cr4 & CR4_PAE != 0 {
            PagingMode::Pae
        } else {
            PagingMode::Bits32
        }
    }

    /// The name `::vtop` prints.
    pub fn name(self) -> &'static str {
        match self {
            PagingMode::Off => "paging off",
            PagingMode::Bits32 => "32-bit",
            PagingMode::Pae => "PAE",
            PagingMode::Level4 => "4-level",
            PagingMode::Level5 => "5-level",
        }
    }
}

/// One page-table entry the walk read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkStep {
    /// Level name as the manuals spell it: "PML5E", "PML4E", "PDPTE", "PDE", "PTE".
    pub level: &'static str,
    /// Guest-physical address of the entry.
    pub entry_address: u64,
    pub entry: u64,
}

/// A completed translation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    pub mode: PagingMode,
    pub physical: u64,
    /// Size of the page that maps the address (4 KiB, 2 MiB, 4 MiB or 1 GiB).
    pub page_size: u64,
    pub steps: Vec<WalkStep>,
}

fn read_u64(target: &dyn Target, address: u64) -> Result<u64, TargetError> {
    let mut bytes = [0u8; 8];
    target.read_physical(address, &mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

fn read_u32(target: &dyn Target, address: u64) -> Result<u64, TargetError> {
    let mut bytes = [0u8; 4];
    target.read_physical(address, &mut bytes)?;
    Ok(u64::from(u32::from_le_bytes(bytes)))
}

/// Translates `virtual_address` with the page tables `registers` point at.
pub fn translate(target: &dyn Target, registers: &Registers, virtual_address: u64) -> Result<Translation, TargetError> {
    let mode = PagingMode::of(registers);
    let unmapped = TargetError::Unmapped { space: AddressSpace::Virtual, address: virtual_address };
    let mut steps = Vec::new();
    // Any failure to read an entry means the address has no translation.
    let step = |steps: &mut Vec<WalkStep>, level: &'static str, entry_address: u64, wide: bool| {
        let entry = if wide { read_u64(target, entry_address) } else { read_u32(target, entry_address) };
        let entry = entry.map_err(|_| unmapped.clone())?;
        steps.push(WalkStep { level, entry_address, entry });
        if entry & ENTRY_PRESENT == 0 {
            return Err(unmapped.clone());
        }
        Ok(entry)
    };
    match mode {
        PagingMode::Off => Ok(Translation { mode, physical: virtual_address, page_size: 4096, steps }),
        PagingMode::Bits32 => {
            if virtual_address > u64::from(u32::MAX) {
                return Err(unmapped);
            }
            let directory = registers.cr3 & 0xffff_f000;
            let pde = step(&mut steps, "PDE", directory + ((virtual_address >> 22) & 0x3ff) * 4, false)?;
            if pde & ENTRY_LARGE != 0 && registers.cr4 & CR4_PSE != 0 {
                // PSE-36: bits 13..20 of the entry are physical bits 32..39.
                let high = ((pde >> 13) & 0xff) << 32;
                let physical = (pde & 0xffc0_0000) | high | (virtual_address & 0x3f_ffff);
                return Ok(Translation { mode, physical, page_size: 4 << 20, steps });
            }
            let table = pde & 0xffff_f000;
            let pte = step(&mut steps, "PTE", table + ((virtual_address >> 12) & 0x3ff) * 4, false)?;
            let physical = (pte & 0xffff_f000) | (virtual_address & 0xfff);
            Ok(Translation { mode, physical, page_size: 4096, steps })
        }
        PagingMode::Pae => {
            if virtual_address > u64::from(u32::MAX) {
                return Err(unmapped);
            }
            let pdpt = registers.cr3 & 0xffff_ffe0;
            let pdpte = step(&mut steps, "PDPTE", pdpt + ((virtual_address >> 30) & 0x3) * 8, true)?;
            walk_long(target, &mut steps, pdpte & FRAME_MASK_64, virtual_address, &["PDE", "PTE"], 2, mode, step)
        }
        PagingMode::Level4 | PagingMode::Level5 => {
            let canonical_bits = if mode == PagingMode::Level5 { 57 } else { 48 };
            let sign_extended = ((virtual_address << (64 - canonical_bits)) as i64 >> (64 - canonical_bits)) as u64;
            if sign_extended != virtual_address {
                return Err(unmapped);
            }
            let levels: &[&'static str] = if mode == PagingMode::Level5 {
                &["PML5E", "PML4E", "PDPTE", "PDE", "PTE"]
            } else {
                &["PML4E", "PDPTE", "PDE", "PTE"]
            };
            walk_long(
                target,
                &mut steps,
                registers.cr3 & FRAME_MASK_64,
                virtual_address,
                levels,
                levels.len(),
                mode,
                step,
            )
        }
    }
}

/// Walks 64-bit entries from `table` down `levels` (the last is the PTE level); 1 GiB
/// pages are allowed at PDPTE, 2 MiB at PDE.
#[allow(clippy::too_many_arguments)]
fn walk_long(
    _target: &dyn Target,
    steps: &mut Vec<WalkStep>,
    mut table: u64,
    virtual_address: u64,
    levels: &[&'static str],
    count: usize,
    mode: PagingMode,
    step: impl Fn(&mut Vec<WalkStep>, &'static str, u64, bool) -> Result<u64, TargetError>,
) -> Result<Translation, TargetError> {
    for (position, level) in levels.iter().enumerate() {
        let remaining = count - position; // 1 = PTE level
        let shift = 12 + 9 * (remaining as u64 - 1);
        let entry = step(steps, level, table + ((virtual_address >> shift) & 0x1ff) * 8, true)?;
        let large_allowed = *level == "PDE" || *level == "PDPTE";
        if remaining == 1 || (large_allowed && entry & ENTRY_LARGE != 0) {
            let page_size = 1u64 << shift;
            let frame = entry & FRAME_MASK_64 & !(page_size - 1);
            let physical = frame | (virtual_address & (page_size - 1));
            return Ok(Translation { mode, physical, page_size, steps: steps.clone() });
        }
        table = entry & FRAME_MASK_64;
    }
    // Not reached: the last level always returns above.
    Err(TargetError::Unmapped { space: AddressSpace::Virtual, address: virtual_address })
}

/// Reads guest-virtual memory page by page through `registers`' page tables.
pub fn read_virtual(
    target: &dyn Target,
    registers: &Registers,
    virtual_address: u64,
    buffer: &mut [u8],
) -> Result<(), TargetError> {
    let mut done = 0usize;
    while done < buffer.len() {
        let at = virtual_address
            .checked_add(done as u64)
            .ok_or(TargetError::Unmapped { space: AddressSpace::Virtual, address: virtual_address })?;
        let translation = translate(target, registers, at)?;
        let in_page = (translation.page_size - (at & (translation.page_size - 1))) as usize;
        let length = in_page.min(buffer.len() - done).min(4096 - (at & 0xfff) as usize);
        target.read_physical(translation.physical, &mut buffer[done..done + length]).map_err(|error| match error {
            TargetError::Unmapped { space: AddressSpace::Physical, address } => TargetError::NoMemoryBehind {
                virtual_address: at + (address - translation.physical),
                physical_address: address,
            },
            other => other,
        })?;
        done += length;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::testing::FakeTarget;

    #[test]
    fn four_level_walk_reads_through_to_the_page() {
        let mut target = FakeTarget::new();
        target.write_virtual(0xffff_8000_0010_2ff8, 0x20_0ff8, b"0123456789abcdef");
        let registers = target.registers(0).unwrap();
        let translation = translate(&target, &registers, 0xffff_8000_0010_2ff8).unwrap();
        assert_eq!(translation.mode, PagingMode::Level4);
        assert_eq!(translation.physical, 0x20_0ff8);
        assert_eq!(translation.steps.len(), 4);
        let mut bytes = [0u8; 16];
        read_virtual(&target, &registers, 0xffff_8000_0010_2ff8, &mut bytes).unwrap();
        assert_eq!(&bytes, b"0123456789abcdef");
    }

    #[test]
    fn unmapped_and_non_canonical_addresses_are_errors() {
        let mut target = FakeTarget::new();
        target.write_virtual(0x40_0000, 0x30_0000, b"x");
        let registers = target.registers(0).unwrap();
        assert_eq!(
            translate(&target, &registers, 0x80_0000),
            Err(TargetError::Unmapped { space: AddressSpace::Virtual, address: 0x80_0000 })
        );
        assert!(translate(&target, &registers, 0x8000_0000_0000_0000).is_err());
    }

    #[test]
    fn a_mapping_to_memory_the_domain_lacks_says_so() {
        let mut target = FakeTarget::new();
        target.write_virtual(0x40_0000, 0x30_0000, b"x");
        target.map_virtual(0xc000_0000, 0x7000_0000);
        target.pages.remove(&0x7000_0000);
        let registers = target.registers(0).unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(
            read_virtual(&target, &registers, 0xc000_0010, &mut byte),
            Err(TargetError::NoMemoryBehind { virtual_address: 0xc000_0010, physical_address: 0x7000_0010 })
        );
    }

    #[test]
    fn a_table_pointing_at_itself_ends_after_four_reads() {
        let mut target = FakeTarget::new();
        // PML4 entry 0 points back at the PML4 at every level: the walk ends at the
        // fourth level with the PML4 itself as the "page".
        target.write_physical_u64(0x1000, 0x1000 | 0b11);
        target.registers[0].cr3 = 0x1000;
        target.registers[0].cr0 = 0x8000_0011;
        target.registers[0].cr4 = 0x20;
        target.registers[0].efer = 0x500;
        let registers = target.registers(0).unwrap();
        let translation = translate(&target, &registers, 0x10).unwrap();
        assert_eq!(translation.physical, 0x1010);
        assert_eq!(translation.steps.len(), 4);
    }

    #[test]
    fn large_pages_and_legacy_modes() {
        let mut target = FakeTarget::new();
        // 2 MiB page at PDE level.
        target.write_physical_u64(0x1000, 0x2000 | 1);
        target.write_physical_u64(0x2000, 0x3000 | 1);
        target.write_physical_u64(0x3000 + 8, 0x4000_0000 | 0x81);
        let mut registers = Registers { cr3: 0x1000, cr0: 0x8000_0011, cr4: 0x20, efer: 0x500, ..Registers::default() };
        let translation = translate(&target, &registers, 0x20_1234).unwrap();
        assert_eq!((translation.physical, translation.page_size), (0x4000_1234, 2 << 20));

        // 32-bit with a 4 MiB page.
        target.write_physical(0x5000 + 4, &(0x0080_0000u32 | 0x81).to_le_bytes());
        registers = Registers { cr3: 0x5000, cr0: 0x8000_0011, cr4: CR4_PSE, ..Registers::default() };
        let translation = translate(&target, &registers, 0x40_0010).unwrap();
        assert_eq!((translation.physical, translation.mode), (0x80_0010, PagingMode::Bits32));

        // PAE: PDPTE 0 -> PD -> PT.
        target.write_physical_u64(0x6000, 0x7000 | 1);
        target.write_physical_u64(0x7000, 0x8000 | 1);
        target.write_physical_u64(0x8000 + 8, 0x9000 | 1);
        registers = Registers { cr3: 0x6000, cr0: 0x8000_0011, cr4: CR4_PAE, ..Registers::default() };
        let translation = translate(&target, &registers, 0x1abc).unwrap();
        assert_eq!((translation.physical, translation.mode), (0x9abc, PagingMode::Pae));

        // Paging off.
        registers = Registers::default();
        assert_eq!(translate(&target, &registers, 0x1234).unwrap().physical, 0x1234);
    }
}
