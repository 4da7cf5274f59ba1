//! The I/O APIC: routing legacy (ISA) interrupts to a CPU (IOAPIC datasheet, 82093AA;
//! ACPI MADT for where the IOAPICs are and how ISA IRQs map to GSIs).

use crate::acpi::tables::Madt;
use crate::mm::phys_to_virt;

fn write_register(base: u64, register: u32, value: u32) {
    let virtual_base = phys_to_virt(base);
    // SAFETY: `base` is an IOAPIC's MMIO base from the MADT (below 4 GiB, direct
    // mapped); IOREGSEL is at +0 and IOWIN at +0x10.
    unsafe {
        (virtual_base as *mut u32).write_volatile(register);
        ((virtual_base + 0x10) as *mut u32).write_volatile(value);
    }
}

fn read_register(base: u64, register: u32) -> u32 {
    let virtual_base = phys_to_virt(base);
    // SAFETY: as for `write_register`.
    unsafe {
        (virtual_base as *mut u32).write_volatile(register);
        ((virtual_base + 0x10) as *const u32).read_volatile()
    }
}

/// Routes ISA `irq` to `vector` on the CPU with `apic_id`, honouring MADT overrides.
/// Returns the GSI used, or None if no IOAPIC serves it.
pub fn route_isa_irq(madt: &Madt, irq: u8, vector: u8, apic_id: u32) -> Option<u32> {
    let (gsi, active_low, level_triggered) = madt.isa_irq_to_gsi(irq);
    for ioapic in &madt.ioapics {
        let base = u64::from(ioapic.address);
        let entries = ((read_register(base, 1) >> 16) & 0xff) + 1;
        if gsi < ioapic.gsi_base || gsi >= ioapic.gsi_base + entries {
            continue;
        }
        let pin = gsi - ioapic.gsi_base;
        let mut low = u32::from(vector); // fixed delivery, physical destination
        if active_low {
            low |= 1 << 13;
        }
        if level_triggered {
            low |= 1 << 15;
        }
        write_register(base, 0x10 + 2 * pin + 1, apic_id << 24);
        write_register(base, 0x10 + 2 * pin, low);
        return Some(gsi);
    }
    None
}
