//! ACPI tables as firmware might (mis)write them: the input is a small physical
//! memory image holding an RSDP at 0 and whatever tables the fuzzer makes; the loader
//! and the individual table parsers must never panic or read outside it.
#![no_main]

use basalt_kernel::acpi::tables::{self, Fadt, Madt, PhysMemory, Rsdp};
use libfuzzer_sys::fuzz_target;

struct Image<'a>(&'a [u8]);

impl PhysMemory for Image<'_> {
    fn read(&self, phys: u64, buf: &mut [u8]) -> bool {
        let Ok(start) = usize::try_from(phys) else { return false };
        match start.checked_add(buf.len()).and_then(|end| self.0.get(start..end)) {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = tables::find_rsdp(data);
    let _ = Madt::parse(data);
    let _ = Fadt::parse(data);
    let _ = tables::find_s5(data);
    if let Ok(rsdp) = Rsdp::parse(data) {
        let _ = tables::load(&Image(data), &rsdp);
    }
    // Also walk from a forged RSDP whose root pointers land inside the image.
    if data.len() >= 8 {
        let rsdt = u32::from_le_bytes([data[0], data[1], 0, 0]);
        let xsdt = u64::from(u16::from_le_bytes([data[2], data[3]]));
        let rsdp = Rsdp { revision: data[4] & 2, oem_id: *b"FUZZ  ", rsdt_address: rsdt, xsdt_address: Some(xsdt) };
        let _ = tables::load(&Image(data), &rsdp);
    }
});
