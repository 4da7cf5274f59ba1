//! A disk image from the outside world (its first byte picks 512- or 4096-byte
//! blocks): MBR and GPT parsing never panics, and an accepted table's partitions are
//! inside the disk and disjoint. The body is `partition::fuzz_one`, which a host test
//! also runs.
#![no_main]

use basalt_dom0::block::partition;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| partition::fuzz_one(data));
