//! Basalt's operator shell on the serial line: a line editor (noline), one
//! command table, and the built-in commands ([`builtin`]: `help`, `version`,
//! `info`, `dmesg`, `cpus`, `mem`, `uptime`, `poweroff`), the xl-style domain
//! commands ([`domains`]: `create`, `list`, `vcpu-list`, `console`, ...),
//! `reboot [DOMAIN]` ([`appliance`]: the machine, or a domain as in xl),
//! the xenstore commands ([`xenstore`]: `xenstore-ls`, `-read`, `-write`, `-rm`),
//! the storage commands ([`storage`]: `pci`, `disks`, `block-attach`,
//! `block-detach`, `block-list`), and the debugger commands ([`debugger`]:
//! `mdb DOMAIN`, which switches the prompt to `> ` and hands every line to an
//! mdb session until `$q`, and `dump-core [--crash] DOMAIN DISK`).
//!
//! Why a separate crate: everything here is portable logic. The hypervisor
//! (image/) implements narrow traits — [`System`] (facts about the machine,
//! reboot/poweroff), [`DomainControl`] (the toolstack's domain operations),
//! [`XenstoreControl`], [`StorageControl`] (disks and block backends),
//! [`DebugControl`] (debugger sessions and dump-core) and [`SerialLine`]
//! (bytes in and out of the UART) — and calls [`Shell::run`].
//! Everything else is tested on the host with fakes (`cargo test -p
//! basalt-shell`) and fuzzed (shell/fuzz/).
//!
//! Invariants:
//! - No input byte sequence can panic or hang the shell: the tokenizer bounds
//!   every line ([`parse`]), and the terminal answerback shim ([`answerback`])
//!   only ever hands noline well-formed, whitelisted escape sequences, because
//!   noline panics on some malformed ones (see that module).
//! - Commands live in tables ([`Command`]); `help` is generated from them.
//!   Other subsystems add their own `&'static [Command<C>]` tables to the
//!   [`Registry`] without touching this crate.
//! - One place ([`Shell::execute_line`]) turns a [`CommandError`] into the line
//!   the operator sees.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod answerback;
pub mod appliance;
pub mod builtin;
pub mod command;
pub mod debugger;
pub mod domains;
pub mod parse;
pub mod shell;
pub mod storage;
pub mod system;
pub mod xenstore;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod debugger_tests;
#[cfg(test)]
mod domain_tests;
#[cfg(test)]
mod storage_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod xenstore_tests;

pub use appliance::appliance_commands;
pub use builtin::builtin_commands;
pub use command::{Command, CommandError, Invocation, Registry, RegistryError};
pub use debugger::{
    debugger_commands, parse_dump_core, DebugControl, DebugSession, DumpCoreRequest, SessionFlow, DEBUGGER_PROMPT,
};
pub use domains::{
    domain_commands, CpuRange, CpuSet, CreatedDomain, DomainControl, DomainState, DomainSummary, SchedCreditEntry,
    VcpuState, VcpuSummary,
};
pub use parse::{tokenize, ParseError, MAX_LINE_BYTES, MAX_WORDS};
pub use shell::{EditorStorage, LineEditor, LineEditorError, LineOutcome, SerialLine, SerialWriter, Shell, PROMPT};
pub use storage::{storage_commands, AccessMode, DiskRow, PartitionRow, PciDeviceRow, StorageControl, VbdRow};
pub use system::{CpuStatus, LogLevel, LogLine, MemoryInfo, MemoryRegion, PlatformInfo, System, VersionInfo};
pub use xenstore::{xenstore_commands, XenstoreControl};
