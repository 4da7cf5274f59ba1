//! What the shell needs from the machine: the [`System`] trait, implemented by
//! image/ with the real hardware and by `testing::FakeSystem` on the host.
//!
//! Why a trait: the built-in commands are portable logic; only these few
//! queries and the two power actions touch the hypervisor. Everything returned
//! is plain data (owned or `'static`), so a command cannot hold on to kernel
//! state, and the fake can return any value a test needs.
//!
//! Contracts for implementers:
//! - The queries are cheap snapshots; they may be called several times per
//!   command and must not block on the shell itself.
//! - [`System::dmesg`] calls the sink once per retained log line, oldest first,
//!   and must not call back into the shell.
//! - [`System::reboot`] and [`System::poweroff`] return only if they failed.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Build identity, printed by `version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionInfo {
    /// Product name, `"Basalt"`.
    pub product: &'static str,
    /// Semantic version, e.g. `"0.1.0"`.
    pub version: &'static str,
    /// Short commit id of the source, e.g. `"abc1234"`.
    pub commit: &'static str,
    /// Cargo profile the image was built with, e.g. `"release"`.
    pub build_profile: &'static str,
}

/// What the machine is, printed by `info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformInfo {
    /// CPUID vendor string, e.g. `"AuthenticAMD"`.
    pub cpu_vendor: String,
    /// CPUID brand string, e.g. `"AMD EPYC 7302"`.
    pub cpu_model: String,
    /// Display family (CPUID leaf 1, with the extended family folded in).
    pub family: u32,
    /// Display model (with the extended model folded in).
    pub model: u32,
    /// Stepping.
    pub stepping: u32,
    /// CPUs described by the firmware (MADT).
    pub cpus_found: u32,
    /// CPUs that came up and run the hypervisor.
    pub cpus_online: u32,
    /// Time-stamp counter frequency in kHz; 0 if unknown.
    pub tsc_khz: u64,
    /// Virtualization-related features and whether each is present, in display
    /// order: `("SVM", true), ("NPT", true), ("VMX", false), ("EPT", false),
    /// ("x2APIC", true)`, ...
    pub features: Vec<(&'static str, bool)>,
    /// How guests run here, e.g. `"AMD SVM with nested paging"`, or why they cannot
    /// (`"cannot run guests: no SVM with nested paging"`).
    pub guests: String,
    /// How the machine booted: `"BIOS"` or `"UEFI"`.
    pub firmware: String,
    /// The hypervisor's boot command line.
    pub cmdline: String,
}

/// Memory totals and the physical memory map, printed by `mem` and `info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryInfo {
    /// Usable physical memory, in bytes.
    pub total_bytes: u64,
    /// Physical memory not yet allocated, in bytes.
    pub free_bytes: u64,
    /// Size of the hypervisor heap, in bytes.
    pub heap_total_bytes: u64,
    /// Heap bytes in use.
    pub heap_used_bytes: u64,
    /// The firmware memory map, in address order.
    pub regions: Vec<MemoryRegion>,
}

/// One range of the physical memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRegion {
    /// First physical address of the range.
    pub start: u64,
    /// Physical address just past the range (exclusive).
    pub end: u64,
    /// What the range is: `"usable"`, `"reserved"`, `"acpi"`, `"hypervisor"`, ...
    pub kind: &'static str,
}

/// The state of one physical CPU, printed by `cpus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuStatus {
    /// The hypervisor's CPU number (0-based, dense).
    pub index: u32,
    /// The CPU's local APIC id.
    pub apic_id: u32,
    /// Whether the CPU came up.
    pub online: bool,
    /// Whether this is the bootstrap processor.
    pub bootstrap: bool,
    /// Timer interrupts this CPU has taken.
    pub timer_ticks: u64,
}

/// Severity of a log line; `Error` is the most severe. The order of the
/// variants is the filter order: `dmesg -l info` shows `Error..=Info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Something failed.
    Error,
    /// Something is suspicious.
    Warn,
    /// Normal progress.
    Info,
    /// Detail for developers.
    Debug,
    /// Very fine detail.
    Trace,
}

impl LogLevel {
    /// All levels, most severe first.
    pub const ALL: [LogLevel; 5] = [LogLevel::Error, LogLevel::Warn, LogLevel::Info, LogLevel::Debug, LogLevel::Trace];

    /// Lower-case name, as printed: `"error"`, `"warn"`, `"info"`, `"debug"`, `"trace"`.
    pub const fn name(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    /// Parses a level name, ignoring case; also accepts `"warning"`.
    pub fn parse(text: &str) -> Option<LogLevel> {
        if text.eq_ignore_ascii_case("warning") {
            return Some(LogLevel::Warn);
        }
        LogLevel::ALL.into_iter().find(|level| text.eq_ignore_ascii_case(level.name()))
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// One line of the hypervisor log, lent to the `dmesg` sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLine<'a> {
    /// Sequence number, increasing by one per line ever logged.
    pub seq: u64,
    /// Nanoseconds since boot when the line was logged.
    pub timestamp_ns: u64,
    /// Severity.
    pub level: LogLevel,
    /// The message, without a trailing newline. Untrusted for display: the
    /// shell replaces control characters before printing it.
    pub text: &'a str,
}

/// The machine as the shell sees it. See the module documentation for the
/// contracts.
pub trait System {
    /// Build identity.
    fn version(&self) -> VersionInfo;
    /// CPU, features, firmware, command line.
    fn platform(&self) -> PlatformInfo;
    /// Memory totals and map.
    fn memory(&self) -> MemoryInfo;
    /// Every CPU the firmware described, by index.
    fn cpus(&self) -> Vec<CpuStatus>;
    /// Nanoseconds since boot.
    fn uptime_ns(&self) -> u64;
    /// Calls `sink` for every retained log line, oldest first.
    fn dmesg(&self, sink: &mut dyn FnMut(LogLine<'_>));
    /// Restarts the machine. Returns only on failure, with the reason.
    fn reboot(&mut self) -> Result<(), String>;
    /// Turns the machine off. Returns only on failure, with the reason.
    fn poweroff(&mut self) -> Result<(), String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_level_parse_and_order() {
        assert_eq!(LogLevel::parse("INFO"), Some(LogLevel::Info));
        assert_eq!(LogLevel::parse("warning"), Some(LogLevel::Warn));
        assert_eq!(LogLevel::parse("warn"), Some(LogLevel::Warn));
        assert_eq!(LogLevel::parse("loud"), None);
        assert_eq!(LogLevel::parse(""), None);
        assert!(LogLevel::Error < LogLevel::Trace);
        for level in LogLevel::ALL {
            assert_eq!(LogLevel::parse(level.name()), Some(level));
        }
    }
}
