//! The instruction bytes of a guest's MMIO access, decoded at each code size: no panic,
//! a decoded access is 1–15 bytes long, within the input and 1, 2, 4 or 8 bytes wide,
//! and completing a load changes only its destination register. The body is
//! `mmio::fuzz_one`, which a host test also runs.
#![no_main]

use basalt_kernel::virt::mmio;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mmio::fuzz_one(data));
