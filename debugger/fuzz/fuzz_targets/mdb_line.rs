//! One mdb command line from the user: any UTF-8 text run through a Session on a
//! FakeTarget with a page of code, a page of data and symbols must return without
//! panicking or hanging. The body is `lang::fuzzing::fuzz_on`, which a host test
//! also runs on generated lines; the fixture is built once and cloned per input
//! (building its page tables dominates otherwise).
#![no_main]

use std::sync::OnceLock;

use basalt_debugger::lang::fuzzing;
use basalt_debugger::target::testing::FakeTarget;
use libfuzzer_sys::fuzz_target;

static FIXTURE: OnceLock<FakeTarget> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let target = FIXTURE.get_or_init(fuzzing::fixture_with_symbols).clone();
    let _ = fuzzing::fuzz_on(target, data);
});
