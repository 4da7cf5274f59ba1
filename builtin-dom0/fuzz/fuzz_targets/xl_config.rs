//! A domain config from the user (xl.cfg syntax; after a NUL byte, `create`'s
//! overrides): parsing never panics, errors are one line, and an accepted config keeps
//! the parser's invariants. The body is `config::fuzz_one`, which a host test also runs.
#![no_main]

use basalt_dom0::toolstack::config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| config::fuzz_one(data));
