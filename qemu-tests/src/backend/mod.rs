//! Emulator backends: start a configured machine and expose its serial line and display.
//!
//! [`launch`] turns a [`MachineConfig`] into a running emulator process. A backend hands
//! back a [`Launched`] machine: the child process, its serial line as a byte stream in
//! each direction, and a [`Control`] object for out-of-band operations (screen dumps,
//! judging an exit status). [`crate::Machine`] is generic over backends and only ever
//! talks to these types, so tests are written once for every emulator.
//!
//! Backends: [`qemu`] (AMD SVM + NPT under TCG) and [`bochs`] (Intel VMX + EPT). Both
//! boot the same image and carry COM1 as a byte stream — QEMU on its stdin/stdout,
//! Bochs on a TCP socket — so everything above this module is emulator-neutral. A
//! backend that cannot do something (Bochs: screen dumps) answers with an error that
//! says "not supported".

pub mod bochs;
pub mod qemu;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};

use crate::config::{Emulator, MachineConfig};
use crate::error::Result;

/// Out-of-band control of a running emulator.
pub trait Control: Send {
    /// Writes the current display to `ppm_path` as a PPM image.
    fn screendump(&mut self, ppm_path: &Path) -> Result<()>;

    /// Whether `status` is what this emulator returns after the guest powered itself off
    /// cleanly (QEMU: 0 after ACPI S5; an isa-debug-exit write gives an odd status).
    fn clean_exit(&self, status: ExitStatus) -> bool;

    /// Explains a non-clean exit status in words for error messages.
    fn explain_exit(&self, status: ExitStatus) -> String;

    /// The emulator's own log files worth reading after a failure (Bochs: its log, which
    /// explains failed VM entries), named in every failure message.
    fn diagnostic_files(&self) -> Vec<PathBuf> {
        Vec::new()
    }
}

/// A started emulator.
pub struct Launched {
    /// The emulator process.
    pub child: Child,
    /// Bytes the guest writes to COM1.
    pub serial_output: Box<dyn Read + Send>,
    /// Bytes to deliver to COM1's receiver.
    pub serial_input: Box<dyn Write + Send>,
    /// Out-of-band control.
    pub control: Box<dyn Control>,
    /// The full command line, for logs.
    pub command_line: String,
}

/// Starts the emulator `config` selects. `work_dir` is a private temporary directory
/// (sockets, firmware variable stores, dumps); `stderr_log` receives the emulator's own
/// diagnostics.
pub fn launch(config: &MachineConfig, work_dir: &Path, stderr_log: &Path) -> Result<Launched> {
    match &config.emulator {
        Emulator::Qemu { firmware, medium } => qemu::launch(config, *firmware, *medium, work_dir, stderr_log),
        Emulator::Bochs { cpu_model, medium } => bochs::launch(config, cpu_model, *medium, work_dir, stderr_log),
    }
}
