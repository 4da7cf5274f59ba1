//! ACPI: finding and reading the firmware's tables (RSDP, RSDT/XSDT, MADT, FADT, DSDT).
//! Parsing is portable ([`tables`]); reading physical memory is the bare-metal glue.
pub mod tables;

#[cfg(target_os = "none")]
pub use glue::{scan_bios_area_for_rsdp, DirectMapMemory};

#[cfg(target_os = "none")]
mod glue {
    use super::tables::{find_rsdp, PhysMemory, Rsdp};
    use crate::mm::{paging, phys_to_virt};

    /// Physical memory through the direct map; unmapped addresses are unreadable.
    pub struct DirectMapMemory;

    impl PhysMemory for DirectMapMemory {
        fn read(&self, physical: u64, buffer: &mut [u8]) -> bool {
            if !paging::is_mapped(physical, buffer.len() as u64) {
                return false;
            }
            let source = phys_to_virt(physical) as *const u8;
            // SAFETY: the range is inside the direct map (checked above); firmware tables
            // are plain memory, and we only read.
            unsafe { core::ptr::copy_nonoverlapping(source, buffer.as_mut_ptr(), buffer.len()) };
            true
        }
    }

    /// Legacy BIOS discovery: the RSDP in the first KiB of the EBDA or 0xe0000–0xfffff.
    pub fn scan_bios_area_for_rsdp() -> Option<Rsdp> {
        let memory = DirectMapMemory;
        let mut ebda_segment = [0u8; 2];
        let mut areas: [(u64, usize); 2] = [(0xe0000, 0x20000), (0, 0)];
        if memory.read(0x40e, &mut ebda_segment) {
            let ebda = u64::from(u16::from_le_bytes(ebda_segment)) << 4;
            if (0x80000..0xa0000).contains(&ebda) {
                areas[1] = (ebda, 1024);
            }
        }
        for (start, length) in areas {
            if length == 0 {
                continue;
            }
            let mut bytes = alloc::vec![0u8; length];
            if !memory.read(start, &mut bytes) {
                continue;
            }
            if let Some(offset) = find_rsdp(&bytes) {
                if let Ok(rsdp) = Rsdp::parse(&bytes[offset..]) {
                    return Some(rsdp);
                }
            }
        }
        None
    }
}
