//! A guest's control registers and page tables (a 16 KiB guest-physical image): the
//! walk, guest-virtual copies and instruction fetch never panic, and what they return
//! is the guest memory the translation names. The body is `guest_paging::fuzz_one`,
//! which a host test also runs.
#![no_main]

use basalt_kernel::virt::guest_paging;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| guest_paging::fuzz_one(data));
