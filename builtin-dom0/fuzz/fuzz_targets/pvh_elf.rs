//! A guest kernel file from the user: parsing never panics, and what it accepts keeps
//! the loader's invariants (segments below 4 GiB, sorted, disjoint, file bytes within
//! memory size; the entry inside a segment's file bytes).
#![no_main]

use basalt_dom0::toolstack::pvh_elf::{self, PHYSICAL_LIMIT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(kernel) = pvh_elf::parse(data) {
        for segment in &kernel.segments {
            assert!(segment.end() <= PHYSICAL_LIMIT);
            assert!(segment.data.len() as u64 <= segment.memory_size);
        }
        assert!(kernel.segments.windows(2).all(|pair| pair[0].end() <= pair[1].physical_address));
        let entry = u64::from(kernel.entry);
        assert!(kernel
            .segments
            .iter()
            .any(|s| entry >= s.physical_address && entry - s.physical_address < s.data.len() as u64));
    }
});
