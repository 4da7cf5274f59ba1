//! Test doubles and fuzz bodies: a [`FakeSystem`], a [`ScriptedLine`] (bytes
//! in, captured bytes out, optionally answering terminal queries like a real
//! terminal), a deterministic [`Xorshift`] generator, and the bodies of the
//! fuzz targets in shell/fuzz/ ([`fuzz_shell_input`], [`fuzz_tokenize`]), so
//! `cargo test` checks the same properties the fuzzer does.
//!
//! Compiled for unit tests and with the `testing` feature; never part of the
//! hypervisor image.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::builtin::builtin_commands;
use crate::command::Registry;
use crate::parse::tokenize;
use crate::shell::{SerialLine, Shell};
use crate::system::{CpuStatus, LogLevel, LogLine, MemoryInfo, MemoryRegion, PlatformInfo, System, VersionInfo};

/// The line `version` prints for [`FakeSystem`].
pub const FAKE_VERSION_LINE: &str = "Basalt 0.1.0 (commit abc1234, test)";

/// A [`System`] with fixed, recognizable facts. Reboot and poweroff fail
/// (they must, to return) and are counted.
#[derive(Debug, Clone)]
pub struct FakeSystem {
    /// Returned by [`System::platform`].
    pub platform: PlatformInfo,
    /// Returned by [`System::memory`].
    pub memory: MemoryInfo,
    /// Returned by [`System::cpus`].
    pub cpus: Vec<CpuStatus>,
    /// Returned by [`System::uptime_ns`].
    pub uptime_ns: u64,
    /// The log: (timestamp ns, level, text).
    pub log: Vec<(u64, LogLevel, String)>,
    /// How often reboot was requested.
    pub reboot_requests: u32,
    /// How often poweroff was requested.
    pub poweroff_requests: u32,
}

impl Default for FakeSystem {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeSystem {
    /// Two CPUs on AMD with SVM/NPT, 2 GiB, a short log.
    pub fn new() -> Self {
        Self {
            platform: PlatformInfo {
                cpu_vendor: String::from("AuthenticAMD"),
                cpu_model: String::from("AMD EPYC 7302"),
                family: 23,
                model: 49,
                stepping: 0,
                cpus_found: 2,
                cpus_online: 1,
                tsc_khz: 2_994_374,
                features: vec![("SVM", true), ("NPT", true), ("VMX", false), ("EPT", false), ("x2APIC", true)],
                firmware: String::from("BIOS"),
                cmdline: String::from("console=ttyS0 loglevel=debug"),
            },
            memory: MemoryInfo {
                total_bytes: 2048 << 20,
                free_bytes: 1900 << 20,
                heap_total_bytes: 16 << 20,
                heap_used_bytes: 1 << 20,
                regions: vec![
                    MemoryRegion { start: 0, end: 0x9fc00, kind: "usable" },
                    MemoryRegion { start: 0xf0000, end: 0x100000, kind: "reserved" },
                    MemoryRegion { start: 0x100000, end: 0x8000_0000, kind: "usable" },
                ],
            },
            cpus: vec![
                CpuStatus { index: 0, apic_id: 0, online: true, bootstrap: true, timer_ticks: 1234 },
                CpuStatus { index: 1, apic_id: 2, online: false, bootstrap: false, timer_ticks: 0 },
            ],
            uptime_ns: 83_456_000_000,
            log: vec![
                (1_000_000, LogLevel::Info, String::from("basalt booting")),
                (12_345_678_000, LogLevel::Warn, String::from("cpu 1 did not start")),
                (12_400_000_000, LogLevel::Debug, String::from("npt ready")),
                (13_000_000_000, LogLevel::Error, String::from("evil \x1b[6n text")),
                (14_000_000_000, LogLevel::Trace, String::from("tick")),
            ],
            reboot_requests: 0,
            poweroff_requests: 0,
        }
    }
}

impl System for FakeSystem {
    fn version(&self) -> VersionInfo {
        VersionInfo { product: "Basalt", version: "0.1.0", commit: "abc1234", build_profile: "test" }
    }
    fn platform(&self) -> PlatformInfo {
        self.platform.clone()
    }
    fn memory(&self) -> MemoryInfo {
        self.memory.clone()
    }
    fn cpus(&self) -> Vec<CpuStatus> {
        self.cpus.clone()
    }
    fn uptime_ns(&self) -> u64 {
        self.uptime_ns
    }
    fn dmesg(&self, sink: &mut dyn FnMut(LogLine<'_>)) {
        for (seq, (timestamp_ns, level, text)) in self.log.iter().enumerate() {
            sink(LogLine { seq: seq as u64, timestamp_ns: *timestamp_ns, level: *level, text });
        }
    }
    fn reboot(&mut self) -> Result<(), String> {
        self.reboot_requests += 1;
        Err(String::from("fake machine cannot reboot"))
    }
    fn poweroff(&mut self) -> Result<(), String> {
        self.poweroff_requests += 1;
        Err(String::from("fake machine cannot power off"))
    }
}

/// A [`SerialLine`] that plays a script and records what is written.
///
/// Script entries are bytes, or `None` for "nothing arrives before this
/// read's timeout". Once the script is exhausted the line is closed. If built
/// with [`ScriptedLine::answering`], it behaves like a terminal of that size:
/// every `ESC[6n` written is answered (size after `ESC[999;999H`, else a
/// position just after the prompt) ahead of the remaining script.
#[derive(Debug, Default)]
pub struct ScriptedLine {
    script: VecDeque<Option<u8>>,
    /// Everything written to the line.
    pub output: Vec<u8>,
    terminal_size: Option<(u32, u32)>,
    scanned_output_length: usize,
}

impl ScriptedLine {
    /// A line delivering `input`, a dumb terminal that answers nothing.
    pub fn new(input: &[u8]) -> Self {
        Self { script: input.iter().map(|&byte| Some(byte)).collect(), ..Self::default() }
    }

    /// A line with explicit timeouts (`None` entries).
    pub fn with_pauses(script: &[Option<u8>]) -> Self {
        Self { script: script.iter().copied().collect(), ..Self::default() }
    }

    /// A line that answers terminal queries like a `rows`×`columns` terminal.
    pub fn answering(input: &[u8], rows: u32, columns: u32) -> Self {
        Self { terminal_size: Some((rows, columns)), ..Self::new(input) }
    }

    /// The output as text (lossy for non-UTF-8 bytes).
    pub fn output_text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }

    fn answer_new_queries(&mut self) {
        let Some((rows, columns)) = self.terminal_size else {
            return;
        };
        let new_output = &self.output[self.scanned_output_length..];
        let mut answers = Vec::new();
        let mut previous_query_end = 0;
        let mut index = 0;
        while let Some(found) = find(&new_output[index..], b"\x1b[6n") {
            let query_start = index + found;
            let before = &new_output[previous_query_end..query_start];
            let answer = if find(before, b"\x1b[999;999H").is_some() {
                alloc::format!("\x1b[{rows};{columns}R")
            } else {
                alloc::format!("\x1b[{rows};9R")
            };
            answers.extend_from_slice(answer.as_bytes());
            index = query_start + 4;
            previous_query_end = index;
        }
        self.scanned_output_length += index;
        for &byte in answers.iter().rev() {
            self.script.push_front(Some(byte));
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

impl SerialLine for ScriptedLine {
    fn read_byte(&mut self, _timeout_ms: u32) -> Option<u8> {
        self.answer_new_queries();
        self.script.pop_front().flatten()
    }
    fn write_bytes(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
    }
    fn is_closed(&mut self) -> bool {
        self.answer_new_queries();
        self.script.is_empty()
    }
}

/// xorshift64: a tiny deterministic generator for test inputs.
#[derive(Debug, Clone)]
pub struct Xorshift(u64);

impl Xorshift {
    /// A generator from a seed (0 is replaced, xorshift must not start at 0).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// A value in `0..bound` (0 if `bound` is 0).
    pub fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            0
        } else {
            (self.next_u64() % bound as u64) as usize
        }
    }
}

/// Input that leaves any editor state behind and runs `version`: a Ctrl-C
/// (which may be eaten by an unfinished UTF-8 sequence), a second Ctrl-C, and
/// the command.
pub const RECOVERY_INPUT: &[u8] = b"\x03\x03version\r";

/// A shell over [`FakeSystem`] with only the built-in commands.
pub fn fake_shell() -> Shell<FakeSystem> {
    match Registry::new(&[builtin_commands::<FakeSystem>()]) {
        Ok(registry) => Shell::new(registry),
        Err(error) => panic!("built-in table is invalid: {error}"),
    }
}

/// Fuzz body for `shell_input`: arbitrary bytes through the answerback shim,
/// noline and the command dispatcher, then [`RECOVERY_INPUT`]. Panics (the
/// fuzzer's signal) if anything panics or if `version` does not run at the end.
///
/// The first byte chooses the pacing: if non-zero, the line times out once
/// before every `first`-th byte, exercising the "terminal did not answer" path.
pub fn fuzz_shell_input(data: &[u8]) {
    let (pacing, garbage) = match data.split_first() {
        Some((&pacing, rest)) => (usize::from(pacing), rest),
        None => (0, data),
    };
    let mut script: Vec<Option<u8>> = Vec::with_capacity(garbage.len() * 2 + 16);
    for (index, &byte) in garbage.iter().enumerate() {
        if pacing != 0 && index % pacing == 0 {
            script.push(None);
        }
        script.push(Some(byte));
    }
    script.extend(RECOVERY_INPUT.iter().map(|&byte| Some(byte)));

    let shell = fake_shell();
    let mut system = FakeSystem::new();
    let mut line = ScriptedLine::with_pauses(&script);
    shell.run_until_closed(&mut system, &mut line);

    let output = line.output_text();
    let version_at = output.rfind(FAKE_VERSION_LINE).unwrap_or_else(|| panic!("no version output after {garbage:?}"));
    let after_version = &output[version_at..];
    assert_eq!(
        after_version.matches(crate::PROMPT).count(),
        1,
        "version was not the last command executed for input {garbage:?}"
    );
}

/// Fuzz body for `tokenize`: any text either splits into at most
/// [`crate::MAX_WORDS`] words or gives an error; never panics.
pub fn fuzz_tokenize(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(words) = tokenize(&text) {
        assert!(words.len() <= crate::MAX_WORDS);
        let total: usize = words.iter().map(String::len).sum();
        assert!(total <= text.len());
    }
    // And the whole dispatch path on the same text.
    let shell = fake_shell();
    let mut system = FakeSystem::new();
    let mut output = String::new();
    shell.execute_line(&mut system, &text, &mut output);
}
