//! Fuzz target: arbitrary text through the tokenizer and `Shell::execute_line`.
//! The property lives in `basalt_shell::testing::fuzz_tokenize`, which
//! `cargo test` also runs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    basalt_shell::testing::fuzz_tokenize(data);
});
