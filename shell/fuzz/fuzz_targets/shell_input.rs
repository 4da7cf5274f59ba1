//! Fuzz target: arbitrary bytes on the serial line, through the terminal
//! answerback shim, noline and the command dispatcher, against a fake System.
//! The property (no panic, and `version` still runs afterwards) lives in
//! `basalt_shell::testing::fuzz_shell_input`, which `cargo test` also runs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    basalt_shell::testing::fuzz_shell_input(data);
});
