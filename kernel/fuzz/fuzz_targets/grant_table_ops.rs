//! Random sequences of grant-table operations against a fake granting guest that
//! grants, rewrites and revokes entries and changes them in the middle of the
//! hypervisor's compare-exchanges: acquire/release for reading and writing by the
//! backend (and other domains), release_all, growing and set_version. A reference
//! model of the use counts must match the table after every step, acquires set and
//! releases clear GTF_reading/GTF_writing, and no exchange loop runs more than five
//! times. The body is `grant_table::fuzz_one`, which a host test also runs.
#![no_main]

use basalt_kernel::xen::grant_table;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| grant_table::fuzz_one(data));
