//! Host tests of `guest_paging`.

use super::*;
use std::collections::HashMap;

const P: u64 = PTE_PRESENT;
const RW: u64 = PTE_WRITABLE;
const US: u64 = PTE_USER;
const PS: u64 = PTE_LARGE;
const NX: u64 = PTE_NO_EXECUTE;
const ALL: u64 = P | RW | US;

/// Sparse guest memory: only the pages that were added exist.
#[derive(Default)]
struct FakeMemory {
    pages: HashMap<u64, Box<[u8; 4096]>>,
}

impl FakeMemory {
    fn add_page(&mut self, gpa: u64) {
        self.pages.entry(gpa & !0xfff).or_insert_with(|| Box::new([0; 4096]));
    }
    fn byte(&self, gpa: u64) -> Option<u8> {
        self.pages.get(&(gpa & !0xfff)).map(|page| page[(gpa & 0xfff) as usize])
    }
    fn put(&mut self, gpa: u64, data: &[u8]) {
        for (i, byte) in data.iter().enumerate() {
            let address = gpa + i as u64;
            self.add_page(address);
            self.pages.get_mut(&(address & !0xfff)).unwrap()[(address & 0xfff) as usize] = *byte;
        }
    }
    fn put_u64(&mut self, gpa: u64, value: u64) {
        self.put(gpa, &value.to_le_bytes());
    }
    fn put_u32(&mut self, gpa: u64, value: u32) {
        self.put(gpa, &value.to_le_bytes());
    }
}

impl GuestPhysicalMemory for FakeMemory {
    fn read_u64(&self, gpa: u64) -> Option<u64> {
        let mut raw = [0; 8];
        self.read(gpa, &mut raw).then(|| u64::from_le_bytes(raw))
    }
    fn read(&self, gpa: u64, buf: &mut [u8]) -> bool {
        for (i, slot) in buf.iter_mut().enumerate() {
            match gpa.checked_add(i as u64).and_then(|address| self.byte(address)) {
                Some(byte) => *slot = byte,
                None => return false,
            }
        }
        true
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        let exists = (0..data.len() as u64).all(|i| self.byte(gpa + i).is_some());
        if exists {
            self.put(gpa, data);
        }
        exists
    }
}

/// 4-level tables built in fake memory, with tables allocated from 0x10_0000 up.
struct Long4Builder {
    mem: FakeMemory,
    cr3: u64,
    next_table: u64,
}

impl Long4Builder {
    fn new() -> Self {
        let mut mem = FakeMemory::default();
        mem.add_page(0x10_0000);
        Self { mem, cr3: 0x10_0000, next_table: 0x10_1000 }
    }

    /// Map `gva` → `gpa` with a page of 2^`shift` bytes (12, 21 or 30). Upper-level
    /// entries get `table_flags`, the leaf `leaf_flags` (PS added for large pages).
    fn map(&mut self, gva: u64, gpa: u64, shift: u32, leaf_flags: u64, table_flags: u64) {
        let mut table = self.cr3;
        for level_shift in [39u32, 30, 21, 12] {
            let entry_gpa = table + ((gva >> level_shift) & 0x1ff) * 8;
            if level_shift == shift {
                let large = if shift > 12 { PS } else { 0 };
                self.mem.put_u64(entry_gpa, gpa | leaf_flags | large);
                return;
            }
            let existing = self.mem.read_u64(entry_gpa).unwrap();
            let next = if existing & P != 0 {
                existing & ADDRESS_MASK_64
            } else {
                let next = self.next_table;
                self.next_table += 0x1000;
                self.mem.add_page(next);
                next
            };
            self.mem.put_u64(entry_gpa, next | table_flags);
            table = next;
        }
    }

    fn entry_address(&self, gva: u64, shift: u32) -> u64 {
        let mut table = self.cr3;
        for level_shift in [39u32, 30, 21, 12] {
            let entry_gpa = table + ((gva >> level_shift) & 0x1ff) * 8;
            if level_shift == shift {
                return entry_gpa;
            }
            table = self.mem.read_u64(entry_gpa).unwrap() & ADDRESS_MASK_64;
        }
        unreachable!()
    }

    fn translate(&self, gva: u64, access: Access) -> Result<u64, TranslateError> {
        translate(&self.mem, PagingMode::Long4, self.cr3, gva, access, true, true)
    }

    fn context(&self) -> TranslationContext {
        TranslationContext::from_control_registers(CR0_PE | CR0_PG | CR0_WP, self.cr3, CR4_PAE, EFER_LMA | EFER_NXE)
            .unwrap()
    }
}

fn page_fault(error_code: u32, address: u64) -> Result<u64, TranslateError> {
    Err(TranslateError::PageFault { error_code, address })
}

#[test]
fn modes_from_control_registers() {
    let mode = PagingMode::from_control_registers;
    assert_eq!(mode(0, 0, 0), Ok(PagingMode::Real));
    assert_eq!(mode(CR0_PE, CR4_PAE, 0), Ok(PagingMode::ProtectedFlat));
    assert_eq!(mode(CR0_PE | CR0_PG, 0, 0), Ok(PagingMode::Legacy32 { pse: false }));
    assert_eq!(mode(CR0_PE | CR0_PG, CR4_PSE, 0), Ok(PagingMode::Legacy32 { pse: true }));
    assert_eq!(mode(CR0_PE | CR0_PG, CR4_PAE | CR4_PSE, EFER_NXE), Ok(PagingMode::Pae));
    assert_eq!(mode(CR0_PE | CR0_PG, CR4_PAE, EFER_LMA), Ok(PagingMode::Long4));
    assert_eq!(mode(CR0_PE | CR0_PG, CR4_PAE | CR4_LA57, EFER_LMA), Err(TranslateError::UnsupportedPagingMode));
    let ctx = TranslationContext::from_control_registers(CR0_PE | CR0_PG, 0, 0, EFER_NXE).unwrap();
    assert!(!ctx.nx_enabled(), "32-bit paging has no NX bit");
    assert!(!ctx.write_protect());
}

#[test]
fn without_paging_addresses_are_physical() {
    let mem = FakeMemory::default();
    for mode in [PagingMode::Real, PagingMode::ProtectedFlat] {
        assert_eq!(translate(&mem, mode, 0xdead_0000, 0xb_8000, Access::WRITE, true, true), Ok(0xb_8000));
        assert_eq!(translate(&mem, mode, 0, 0x1_0000_1234, Access::READ, false, false), Ok(0x1234));
    }
}

#[test]
fn long4_pages_of_every_size() {
    let mut b = Long4Builder::new();
    b.map(0xffff_8000_0000_1000, 0x20_3000, 12, ALL, ALL);
    b.map(0x0000_7f00_0020_0000, 0x4020_0000, 21, ALL, ALL);
    b.map(0xffff_ffff_c000_0000, 0x1_4000_0000, 30, ALL, ALL);
    assert_eq!(b.translate(0xffff_8000_0000_1abc, Access::READ), Ok(0x20_3abc));
    assert_eq!(b.translate(0x0000_7f00_003f_fff8, Access::WRITE), Ok(0x403f_fff8));
    assert_eq!(b.translate(0xffff_ffff_c123_4567, Access::FETCH), Ok(0x1_4123_4567));
    // Low bits of CR3 (PCID, PWT/PCD) are not part of the table address.
    let cr3 = b.cr3 | 0x18;
    assert_eq!(
        translate(&b.mem, PagingMode::Long4, cr3, 0xffff_8000_0000_1000, Access::READ, true, true),
        Ok(0x20_3000)
    );
}

#[test]
fn long4_not_present_at_each_level() {
    let mut b = Long4Builder::new();
    b.map(0x40_1000, 0x9000, 12, ALL, ALL);
    assert_eq!(b.translate(0x80_0000_0000, Access::READ), page_fault(0, 0x80_0000_0000)); // PML4E
    assert_eq!(b.translate(0x4000_0000, Access::WRITE), page_fault(PF_WRITE, 0x4000_0000)); // PDPTE
    let user_read = Access { user: true, ..Access::READ };
    assert_eq!(b.translate(0x60_0000, user_read), page_fault(PF_USER, 0x60_0000)); // PDE
    assert_eq!(b.translate(0x40_2000, Access::FETCH), page_fault(PF_INSTRUCTION, 0x40_2000));
    // PTE
}

#[test]
fn long4_non_canonical_and_reserved_bits() {
    let mut b = Long4Builder::new();
    b.map(0x1000, 0x9000, 12, ALL, ALL);
    let address = 0x0000_8000_0000_0000;
    assert_eq!(b.translate(address, Access::READ), Err(TranslateError::NonCanonical { address }));
    assert_eq!(
        b.translate(0xffff_0000_0000_0000, Access::READ),
        Err(TranslateError::NonCanonical { address: 0xffff_0000_0000_0000 })
    );

    // PS in a PML4E.
    let pml4e = b.entry_address(0x1000, 39);
    let value = b.mem.read_u64(pml4e).unwrap();
    b.mem.put_u64(pml4e, value | PS);
    assert_eq!(b.translate(0x1000, Access::READ), page_fault(PF_PRESENT | PF_RESERVED, 0x1000));
    b.mem.put_u64(pml4e, value);

    // NX set while EFER.NXE is clear.
    b.map(0x2000, 0xa000, 12, ALL | NX, ALL);
    let result = translate(&b.mem, PagingMode::Long4, b.cr3, 0x2000, Access::READ, false, true);
    assert_eq!(result, page_fault(PF_PRESENT | PF_RESERVED, 0x2000));

    // Must-be-zero bits inside a 2 MiB and a 1 GiB page entry.
    b.map(0x20_0000, 0x40_2000, 21, ALL, ALL);
    assert_eq!(b.translate(0x20_0000, Access::READ), page_fault(PF_PRESENT | PF_RESERVED, 0x20_0000));
    b.map(0x80_0000_0000, 0x4000_0000 | 0x10_0000, 30, ALL, ALL);
    assert_eq!(b.translate(0x80_0000_0000, Access::READ), page_fault(PF_PRESENT | PF_RESERVED, 0x80_0000_0000));
}

#[test]
fn long4_permissions() {
    let mut b = Long4Builder::new();
    b.map(0x1000, 0x9000, 12, P, ALL); // supervisor, read-only
    b.map(0x2000, 0xa000, 12, P | US, ALL); // user, read-only
    b.map(0x4000_0000, 0xb000, 12, ALL, P | US); // leaf writable, directory not
    b.map(0x8000_0000, 0xc000, 12, ALL | NX, ALL);
    let user = |write, fetch| Access { write, user: true, fetch };

    assert_eq!(b.translate(0x1000, Access::READ), Ok(0x9000));
    assert_eq!(b.translate(0x1000, user(false, false)), page_fault(PF_PRESENT | PF_USER, 0x1000));
    assert_eq!(b.translate(0x1000, Access::WRITE), page_fault(PF_PRESENT | PF_WRITE, 0x1000));
    // CR0.WP clear: supervisor writes ignore read-only pages, user writes do not.
    let no_wp = |gva, access| translate(&b.mem, PagingMode::Long4, b.cr3, gva, access, true, false);
    assert_eq!(no_wp(0x1000, Access::WRITE), Ok(0x9000));
    assert_eq!(no_wp(0x2000, user(true, false)), page_fault(PF_PRESENT | PF_WRITE | PF_USER, 0x2000));

    assert_eq!(b.translate(0x2000, user(false, true)), Ok(0xa000));
    assert_eq!(b.translate(0x4000_0000, user(true, false)), page_fault(PF_PRESENT | PF_WRITE | PF_USER, 0x4000_0000));
    assert_eq!(b.translate(0x4000_0000, user(false, false)), Ok(0xb000));

    assert_eq!(b.translate(0x8000_0000, Access::READ), Ok(0xc000));
    assert_eq!(b.translate(0x8000_0000, Access::FETCH), page_fault(PF_PRESENT | PF_INSTRUCTION, 0x8000_0000));
    // NX at an upper level covers everything below it.
    b.map(0xc000_0000, 0xd000, 12, ALL, ALL | NX);
    assert_eq!(b.translate(0xc000_0000, Access::FETCH), page_fault(PF_PRESENT | PF_INSTRUCTION, 0xc000_0000));
}

#[test]
fn tables_outside_guest_memory_and_self_reference() {
    let mut b = Long4Builder::new();
    b.map(0x1000, 0x9000, 12, ALL, ALL);
    // A PDE pointing at a page table that is not guest memory.
    let pde = b.entry_address(0x1000, 21);
    b.mem.put_u64(pde, 0x7700_0000 | ALL);
    assert_eq!(b.translate(0x1000, Access::READ), Err(TranslateError::NotGuestMemory { gpa: 0x7700_0008 }));
    // CR3 outside guest memory.
    let result = translate(&b.mem, PagingMode::Long4, 0x5000_0000, 0x1000, Access::READ, true, true);
    assert_eq!(result, Err(TranslateError::NotGuestMemory { gpa: 0x5000_0000 }));

    // PML4 slot 0 points back at the PML4 itself: the walk ends after four levels.
    let mut mem = FakeMemory::default();
    mem.put_u64(0x3000, 0x3000 | ALL);
    let result = translate(&mem, PagingMode::Long4, 0x3000, 0x0, Access::READ, true, true);
    assert_eq!(result, Ok(0x3000));
    mem.put_u64(0x3000, 0x3000 | ALL | PS);
    assert!(translate(&mem, PagingMode::Long4, 0x3000, 0x0, Access::READ, true, true).is_err());
}

#[test]
fn legacy32_small_and_large_pages() {
    let mut mem = FakeMemory::default();
    let cr3 = 0x1000;
    mem.put_u32(0x1000 + 0x300 * 4, 0x2000 | ALL as u32); // PDE for 0xc000_0000 → PT
    mem.put_u32(0x2000 + 5 * 4, 0x0080_5000 | ALL as u32); // PTE → 0x80_5000
    mem.put_u32(0x1000 + 4, 0x0140_0000 | (P | RW | PS) as u32); // 4 MiB page
    mem.put_u32(0x1000 + 2 * 4, 0x0180_0000 | (0x03 << 13) | (P | PS) as u32); // PSE-36
    mem.add_page(0x0140_0000);

    let legacy = |pse, gva, access| translate(&mem, PagingMode::Legacy32 { pse }, cr3, gva, access, true, true);
    assert_eq!(legacy(false, 0xc000_5123, Access::WRITE), Ok(0x80_5123));
    assert_eq!(legacy(true, 0x0045_6789, Access::WRITE), Ok(0x0145_6789));
    assert_eq!(legacy(true, 0x0080_0010, Access::READ), Ok(0x3_0180_0010));
    assert_eq!(legacy(true, 0x0080_0010, Access::WRITE), page_fault(PF_PRESENT | PF_WRITE, 0x0080_0010));
    // NX does not exist in 32-bit paging: a fetch fault has no I/D bit.
    assert_eq!(legacy(true, 0xc000_6000, Access::FETCH), page_fault(0, 0xc000_6000));
    // Without CR4.PSE the PS bit is ignored: the "page" is read as a page table
    // (0x140_0000 is zeroed memory, so the PTE is not present).
    assert_eq!(legacy(false, 0x0045_6789, Access::READ), page_fault(0, 0x0045_6789));
    // Bit 21 of a 4 MiB PDE is reserved.
    mem.put_u32(0x1000 + 3 * 4, 0x00c0_0000 | (1 << 21) | (P | PS) as u32);
    let result = translate(&mem, PagingMode::Legacy32 { pse: true }, cr3, 0x00c0_0000, Access::READ, true, true);
    assert_eq!(result, page_fault(PF_PRESENT | PF_RESERVED, 0x00c0_0000));
    // The upper 32 bits of the address are dropped outside long mode.
    let result = translate(&mem, PagingMode::Legacy32 { pse: false }, cr3, 0x1_c000_5000, Access::READ, true, true);
    assert_eq!(result, Ok(0x80_5000));
}

#[test]
fn pae_walk_and_pdptes() {
    let mut mem = FakeMemory::default();
    let cr3 = 0x1020; // PDPT at a 32-byte aligned offset inside a page
    mem.put_u64(0x1020, 0x2000 | P); // PDPTE 0 → PD
    mem.put_u64(0x1020 + 3 * 8, 0x3000 | P); // PDPTE 3 → PD
    mem.put_u64(0x2000 + 8, 0x4000 | ALL); // PDE 1 → PT
    mem.put_u64(0x4000 + 2 * 8, 0x9000 | ALL | NX); // PTE 2
    mem.put_u64(0x3000 + 4 * 8, 0x7fe0_0000 | P | RW | PS); // 2 MiB page
    let pae = |gva, access, nx| translate(&mem, PagingMode::Pae, cr3, gva, access, nx, true);

    assert_eq!(pae(0x0020_2abc, Access::WRITE, true), Ok(0x9abc));
    assert_eq!(pae(0x0020_2abc, Access::FETCH, true), page_fault(PF_PRESENT | PF_INSTRUCTION, 0x0020_2abc));
    assert_eq!(pae(0x0020_2abc, Access::READ, false), page_fault(PF_PRESENT | PF_RESERVED, 0x0020_2abc));
    assert_eq!(pae(0xc081_2345, Access::READ, true), Ok(0x7fe1_2345));
    // PDPTE 1 is not present.
    assert_eq!(pae(0x4000_0000, Access::WRITE, true), page_fault(PF_WRITE, 0x4000_0000));
    // Reserved bits in a PDPTE (RW is reserved there).
    mem.put_u64(0x1020 + 2 * 8, 0x3000 | P | RW);
    let result = translate(&mem, PagingMode::Pae, cr3, 0x8000_0000, Access::READ, true, true);
    assert_eq!(result, page_fault(PF_PRESENT | PF_RESERVED, 0x8000_0000));
    // A PDPT outside guest memory.
    let result = translate(&mem, PagingMode::Pae, 0x9000_0000, 0x0, Access::READ, true, true);
    assert_eq!(result, Err(TranslateError::NotGuestMemory { gpa: 0x9000_0000 }));
}

#[test]
fn copies_split_at_page_boundaries() {
    let mut b = Long4Builder::new();
    // Two adjacent virtual pages backed by non-adjacent physical pages.
    b.map(0x7000, 0x5_2000, 12, ALL, ALL);
    b.map(0x8000, 0x5_0000, 12, ALL, ALL);
    b.map(0x9000, 0x5_4000, 12, P | US, ALL); // read-only
    for gpa in [0x5_0000, 0x5_2000, 0x5_4000] {
        b.mem.add_page(gpa);
    }
    let ctx = b.context();

    let data: Vec<u8> = (0..100u8).collect();
    copy_to_guest(&mut b.mem, &ctx, 0x7fce, &data).unwrap();
    assert_eq!(b.mem.byte(0x5_2fce), Some(0));
    assert_eq!(b.mem.byte(0x5_2fff), Some(49));
    assert_eq!(b.mem.byte(0x5_0000), Some(50));
    let mut back = [0u8; 100];
    copy_from_guest(&b.mem, &ctx, 0x7fce, &mut back).unwrap();
    assert_eq!(&back[..], &data[..]);

    // The second page is read-only: nothing is written, not even the first part.
    let result = copy_to_guest(&mut b.mem, &ctx, 0x8ff0, &[0xee; 32]);
    assert_eq!(result, Err(TranslateError::PageFault { error_code: PF_PRESENT | PF_WRITE, address: 0x9000 }));
    assert_eq!(b.mem.byte(0x5_0ff0), Some(0));
    // A page that is not mapped at all.
    let result = copy_to_guest(&mut b.mem, &ctx, 0x6ff8, &[0xee; 16]);
    assert_eq!(result, Err(TranslateError::PageFault { error_code: PF_WRITE, address: 0x6ff8 }));
    assert_eq!(b.mem.byte(0x5_2000), Some(0), "nothing written");
    let mut buf = [0u8; 16];
    let result = copy_from_guest(&b.mem, &ctx, 0x9ff8, &mut buf);
    assert_eq!(result, Err(TranslateError::PageFault { error_code: 0, address: 0xa000 }));
    // A supervisor-only page: readable by the kernel, not by user mode.
    b.map(0xb000, 0x5_4000, 12, P | RW, ALL);
    let user_ctx = ctx.with_user_mode(true);
    assert!(copy_from_guest(&b.mem, &user_ctx, 0xb000, &mut buf).is_err());
    assert!(copy_from_guest(&b.mem, &ctx, 0xb000, &mut buf).is_ok());
    // Empty copies touch nothing, even at unmapped addresses.
    assert_eq!(copy_from_guest(&b.mem, &ctx, 0xdead_0000, &mut []), Ok(()));
}

#[test]
fn copies_outside_guest_memory() {
    let mut b = Long4Builder::new();
    b.map(0x7000, 0x5_2000, 12, ALL, ALL);
    b.map(0x8000, 0x6666_0000, 12, ALL, ALL); // mapped, but not guest memory
    b.mem.add_page(0x5_2000);
    let ctx = b.context();
    let result = copy_to_guest(&mut b.mem, &ctx, 0x7ff0, &[0xaa; 32]);
    assert_eq!(result, Err(TranslateError::NotGuestMemory { gpa: 0x6666_0000 }));
    assert_eq!(b.mem.byte(0x5_2ff0), Some(0), "nothing written");
    let mut buf = [0u8; 32];
    let result = copy_from_guest(&b.mem, &ctx, 0x7ff0, &mut buf);
    assert_eq!(result, Err(TranslateError::NotGuestMemory { gpa: 0x6666_0000 }));

    // Without paging too.
    let flat = TranslationContext::from_control_registers(CR0_PE, 0, 0, 0).unwrap();
    assert_eq!(
        copy_to_guest(&mut b.mem, &flat, 0x5_2ffc, &[1; 8]),
        Err(TranslateError::NotGuestMemory { gpa: 0x5_3000 })
    );
    assert_eq!(b.mem.byte(0x5_2ffc), Some(0));
    assert_eq!(copy_to_guest(&mut b.mem, &flat, 0x5_2ff8, &[1; 8]), Ok(()));
    assert_eq!(b.mem.byte(0x5_2fff), Some(1));
}

/// Found by the guest_paging fuzz target: a copy whose first page is the page table
/// mapping its second page must still land where the tables pointed when it began,
/// all of it or nothing.
#[test]
fn copy_to_guest_that_rewrites_its_own_page_table_writes_where_it_was_checked() {
    let mut mem = FakeMemory::default();
    mem.put_u32(0, 0x1000 | (P | RW) as u32); // PDE 0 → page table at 0x1000
    mem.put_u32(0x1000, 0x1000 | (P | RW) as u32); // PTE 0: va 0 → the page table
    mem.put_u32(0x1004, 0x2000 | (P | RW) as u32); // PTE 1: va 0x1000 → 0x2000
    mem.put(0x2000, &[0xff; 8]);
    let ctx = TranslationContext::from_control_registers(CR0_PE | CR0_PG, 0, 0, 0).unwrap();
    assert_eq!(copy_to_guest(&mut mem, &ctx, 0x4, &[0; 4096]), Ok(()));
    // The copy cleared PTE 1 on its way, yet its tail went to 0x2000 as checked.
    assert_eq!(mem.byte(0x1004), Some(0));
    assert_eq!(mem.byte(0x2000), Some(0));
    assert_eq!(mem.byte(0x2003), Some(0));
    assert_eq!(mem.byte(0x2004), Some(0xff));
}

#[test]
fn instruction_fetch_stops_at_untranslatable_page() {
    let mut b = Long4Builder::new();
    b.map(0x40_0000, 0x9000, 12, P | US, ALL);
    b.map(0x40_1000, 0xa000, 12, P | US | NX, ALL);
    b.mem.put(0x9ff8, &[0x90; 8]);
    b.mem.put(0xa000, &[0xcc; 8]);
    let ctx = b.context();
    let mut buf = [0u8; 15];

    // 15 bytes inside one page.
    assert_eq!(fetch_instruction_bytes(&b.mem, &ctx, 0, 0x40_0100, &mut buf), Ok(15));
    // The next page is NX: only the first 8 bytes.
    assert_eq!(fetch_instruction_bytes(&b.mem, &ctx, 0, 0x40_0ff8, &mut buf), Ok(8));
    assert_eq!(buf[..8], [0x90; 8]);
    // Fetching from the NX page itself is the fault.
    let result = fetch_instruction_bytes(&b.mem, &ctx, 0, 0x40_1000, &mut buf);
    assert_eq!(result, Err(TranslateError::PageFault { error_code: PF_PRESENT | PF_INSTRUCTION, address: 0x40_1000 }));
    // cs_base is added (segmented 32-bit code wraps at 4 GiB).
    let legacy_flat = TranslationContext::from_control_registers(CR0_PE, 0, 0, 0).unwrap();
    assert_eq!(fetch_instruction_bytes(&b.mem, &legacy_flat, 0xffff_f000, 0xaff8, &mut buf), Ok(15));
    assert_eq!(buf[..9], [0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0xcc]);
    // Physical memory ends: the first byte is already missing.
    let result = fetch_instruction_bytes(&b.mem, &legacy_flat, 0, 0x7777_0000, &mut buf);
    assert_eq!(result, Err(TranslateError::NotGuestMemory { gpa: 0x7777_0000 }));
}

/// The fuzz target's body over xorshift-random inputs: control registers picking
/// every mode, addresses near page and 4 GiB boundaries, and page tables whose
/// entries mostly point back into the 16 KiB of guest memory.
#[test]
fn fuzz_body_over_random_inputs() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..4_000 {
        let cr0 = next() & (CR0_PE | CR0_PG | CR0_WP);
        let cr3 = if next() % 8 == 0 { next() } else { next() % FUZZ_MEMORY as u64 };
        let cr4 = next() & (CR4_PSE | CR4_PAE | if next() % 16 == 0 { CR4_LA57 } else { 0 });
        let efer = next() & (EFER_LMA | EFER_NXE);
        let gva = match next() % 4 {
            0 => next() % 0x4_0000,
            1 => (0x1000 * (next() % 0x400)).wrapping_sub(next() % 16),
            2 => (next() as i64 >> 16) as u64,
            _ => next(),
        };
        let mut input = Vec::new();
        for value in [cr0, cr3, cr4, efer, gva, next() % 3 * 0xffff_f000] {
            input.extend_from_slice(&value.to_le_bytes());
        }
        input.push(next() as u8);
        input.extend_from_slice(&((next() % 20) as u16 * 0x199).to_le_bytes());
        // Mostly present entries into guest memory, with random rights and now and
        // then PS or NX; 32-bit paging gets two 4-byte entries per word.
        let words = if next() % 4 == 0 { next() % (FUZZ_MEMORY as u64 / 8) } else { FUZZ_MEMORY as u64 / 8 };
        let legacy = cr0 & CR0_PG != 0 && efer & EFER_LMA == 0 && cr4 & CR4_PAE == 0;
        let mut entry = || {
            let bits = next();
            let rights = bits & (RW | US) | P;
            let large = if bits % 8 == 0 { PS } else { 0 };
            let no_execute = if (bits >> 8) % 8 == 0 { NX } else { 0 };
            match (bits >> 16) % 8 {
                0 => next(),
                1 => next() & 0xffff_ffff,
                _ => (next() % FUZZ_MEMORY as u64) & !0xfff | rights | large | no_execute,
            }
        };
        for _ in 0..words {
            let entry = if legacy { entry() & 0xffff_ffff | entry() << 32 } else { entry() };
            input.extend_from_slice(&entry.to_le_bytes());
        }
        fuzz_one(&input);
    }
    for length in 0..=FUZZ_HEADER + 8 {
        fuzz_one(&vec![0xa5; length]);
    }
}
