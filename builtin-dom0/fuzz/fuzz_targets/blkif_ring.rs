//! A blkif ring page written by a hostile frontend, with granted pages and req_prod moved
//! between service calls: nothing panics, each call takes at most one ring of requests
//! and answers every request it takes, grant copies stay bounded, and the disk is never
//! asked for an out-of-range sector or a write to a read-only disk. The body is
//! `backends::blkif::fuzz_one`, which a host test also runs.
#![no_main]

use basalt_dom0::backends::blkif;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| blkif::fuzz_one(data));
