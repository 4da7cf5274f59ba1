//! Emulator tests for Basalt: boot the real `build/basalt.img` and talk to its shell.
//!
//! This host-only crate is the fourth test level of STYLE.md ("emulator tests that boot
//! the real image and talk to the shell"). It drives the appliance the way a person at
//! a serial terminal would: it waits for the GRUB menu to time out, for the hypervisor
//! log and the `basalt> ` prompt, types commands terminated by `\r`, answers the line
//! editor's cursor-position queries like a 24×80 terminal, and reads the framebuffer
//! back through a screen dump.
//!
//! Layout:
//! - [`config`]: [`MachineConfig`] — one value chooses emulator, firmware, medium, size;
//! - [`backend`]: per-emulator launchers behind one interface (QEMU: AMD SVM, Bochs: Intel VMX);
//! - [`machine`]: [`Machine`] — boot, send, expect, run commands, screen dumps, exit;
//! - [`transcript`], [`ansi`], [`pattern`]: serial capture, escape stripping, matching;
//! - [`qmp`], [`ppm`], [`screen`]: QEMU control, screen dump images, text decoding;
//! - [`domains`], [`linux_console`]: domains driven from the shell, and the Linux payload's shell;
//! - [`elf`]: program-header sizes for the boot benchmark.
//!
//! Only `std` (plus `font8x8`, the font the kernel draws with) is used, so the harness
//! builds wherever the workspace does.

#![forbid(unsafe_code)]

pub mod ansi;
pub mod backend;
pub mod config;
pub mod console_text;
pub mod debugger;
pub mod disk_images;
pub mod domains;
pub mod elf;
pub mod error;
pub mod linux_console;
pub mod machine;
pub mod pattern;
pub mod ppm;
pub mod qmp;
pub mod report;
pub mod screen;
pub mod transcript;

pub use config::{Emulator, EmulatorKind, Firmware, MachineConfig, Medium, EXCEPTION_MARKER, PANIC_MARKER};
pub use error::{ensure, Error, Failures, Result};
pub use machine::{Machine, COMMAND_TIMEOUT, PROMPT};
pub use pattern::{Pattern, Regex};
pub use screen::Screen;
