//! The hypervisor command line (editable by anyone at the GRUB menu): parsing never
//! panics, and every value it accepts is within its documented range.
#![no_main]

use basalt_kernel::boot::cmdline;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (options, _warnings) = cmdline::parse(&text);
    assert!(cmdline::STANDARD_BAUD_RATES.contains(&options.com1_baud));
    if let Some(cpus) = options.max_cpus {
        assert!((1..=cmdline::MAX_CPUS_LIMIT).contains(&cpus));
    }
});
