//! One mdb command line from the user: any UTF-8 text run through a Session on a
//! FakeTarget with a page of code, a page of data and symbols must return without
//! panicking or hanging. The body is `lang::fuzzing::fuzz_one`, which a host test
//! also runs on generated lines.
#![no_main]

use basalt_debugger::lang::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fuzzing::fuzz_one(data);
});
