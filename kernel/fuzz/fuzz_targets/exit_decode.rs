//! The instruction bytes at a guest's RIP, decoded at each code size: no panic, and a
//! decoded instruction is 1–15 bytes and within the input. The body is
//! `decode::fuzz_one`, which a host test also runs.
#![no_main]

use basalt_kernel::virt::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| decode::fuzz_one(data));
