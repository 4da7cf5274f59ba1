//! A stream of xenstore messages from a guest, sent as whole messages and then through
//! a ring page in chunks: nothing panics, every reply has the request's type or ERROR
//! and fits the payload limit, and a broken ring leaves the other domain served. The
//! body is `xenstore::fuzz_one`, which a host test also runs.
#![no_main]

use basalt_dom0::xenstore;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| xenstore::fuzz_one(data));
