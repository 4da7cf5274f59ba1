//! The mdb command loop's one entry point: [`Session::execute`] runs one line
//! (expressions, `addr::dcmd`, `addr/fmt`, pipelines, `$q`) against a [`Debuggee`].
//! The shell's `mdb DOMAIN` and the host's `basalt-mdb` both drive it.

use alloc::boxed::Box;
use core::fmt;

use crate::dcmd::Debuggee;
use crate::target::Target;

/// The prompt both front ends print.
pub const PROMPT: &str = "> ";

/// Whether the session goes on after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// `$q` (or `::quit`): leave the debugger.
    Quit,
}

/// One debugging session on one target.
pub struct Session<'a> {
    debuggee: Debuggee<'a>,
    /// mdb's `.`: the last address used.
    dot: u64,
}

impl<'a> Session<'a> {
    /// A session on `target`, with dot 0 and vCPU 0 current.
    pub fn new(target: Box<dyn Target + 'a>) -> Session<'a> {
        Session { debuggee: Debuggee::new(target), dot: 0 }
    }

    /// The debuggee (for front ends that print a banner).
    pub fn debuggee(&self) -> &Debuggee<'a> {
        &self.debuggee
    }

    /// Runs one line, writing its output and any error (`error: ...`) to `out`.
    pub fn execute(&mut self, line: &str, out: &mut dyn fmt::Write) -> Flow {
        let line = line.trim();
        if line == "$q" {
            return Flow::Quit;
        }
        let _ = self.dot;
        let _ = writeln!(out, "error: the mdb language is not implemented yet");
        Flow::Continue
    }
}
