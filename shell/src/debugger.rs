//! The debugger's shell commands: `mdb DOMAIN` (an mdb session on a live domain, with
//! prompt `> ` until `$q`) and `dump-core DOMAIN DISK` (an ELF core of a running
//! domain written to a disk). image/ implements [`DebugControl`]; the engine itself
//! is basalt-debugger.

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;

/// Whether a debugger session continues after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionFlow {
    Continue,
    /// The operator typed `$q`: back to `basalt> `.
    Quit,
}

/// An open debugger session: the shell hands it every line until it says
/// [`SessionFlow::Quit`].
pub trait DebugSession {
    /// Runs one mdb line, writing its output to `out`.
    fn execute(&mut self, line: &str, out: &mut dyn fmt::Write) -> SessionFlow;
}

/// What a `dump-core` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpCoreRequest {
    pub domain: String,
    /// A disk or partition name from `disks`.
    pub disk: String,
    /// Leave the domain crashed (not resumed) after the core is written.
    pub crash: bool,
}

/// The debugger operations image/ provides.
pub trait DebugControl {
    /// Opens an mdb session on a domain (by name or id); the text of an `Err` is the
    /// one-line reason.
    fn open_debugger(&mut self, domain: &str) -> Result<Box<dyn DebugSession>, String>;
    /// Writes a core of a running domain to a disk, printing a progress line and a
    /// final size/checksum line to `out`.
    fn dump_core(&mut self, request: &DumpCoreRequest, out: &mut dyn fmt::Write) -> Result<(), String>;
}
