//! One hypercall from a guest: the number (mostly an implemented one), six arguments,
//! the caller's width, CPL and vCPU, and the start of its memory, against a fake
//! domain. Dispatch never panics, answers ≥ 0 or a Xen errno, and writes only guest
//! memory. The body is `hypercall::fuzz_one`, which a host test also runs.
#![no_main]

use basalt_kernel::xen::hypercall;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hypercall::fuzz_one(data));
