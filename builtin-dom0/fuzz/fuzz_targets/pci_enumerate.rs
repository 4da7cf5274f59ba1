//! Configuration space from a device or firmware (arbitrary bytes as the space of a
//! few functions, legacy or extended): enumeration, BAR sizing and the capability
//! walks never panic, always terminate, and keep the module's invariants. The body is
//! `pci::fuzz_one`, which a host test also runs.
#![no_main]

use basalt_dom0::pci;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pci::fuzz_one(data));
