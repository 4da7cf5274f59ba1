//! The mdb command loop's one entry point: [`Session::execute`] runs one line
//! (expressions, `addr::dcmd`, `addr/fmt`, pipelines, `$q`) against a [`Debuggee`].
//! The shell's `mdb DOMAIN` and the host's `basalt-mdb` both drive it.
//!
//! A line is parsed and run one command at a time (crate::lang), so `;`-separated
//! commands see the dot the previous one set. In a pipeline each address a stage
//! returns is passed, one call each, as the address of the next stage (mdb's
//! DCMD_LOOP); `::walk` prints its addresses only as the last stage. Every failure
//! prints one `error: ` line (plus the dcmd's usage for a usage error) and ends the
//! line; nothing a user types panics.

use alloc::boxed::Box;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::dcmd::{Dcmd, DcmdCall, DcmdError, Debuggee};
use crate::dcmds;
use crate::format::{print_memory, print_value, Memory};
use crate::lang::command::{parse_command, Command, FormatSource, Stage};
use crate::lang::expression::Context;
use crate::lang::lexer::Lexer;
use crate::target::Target;

/// The prompt both front ends print.
pub const PROMPT: &str = "> ";

/// Most addresses one pipeline stage may hand to the next.
const MAXIMUM_PIPELINE_ADDRESSES: usize = 1 << 20;

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

/// Why a command stopped: the error, and the dcmd whose usage to print with it.
struct Failure {
    error: DcmdError,
    dcmd: Option<&'static Dcmd>,
}

impl From<DcmdError> for Failure {
    fn from(error: DcmdError) -> Self {
        Failure { error, dcmd: None }
    }
}

impl From<fmt::Error> for Failure {
    fn from(error: fmt::Error) -> Self {
        Failure { error: error.into(), dcmd: None }
    }
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

    /// mdb's dot: the address the last command used.
    pub fn dot(&self) -> u64 {
        self.dot
    }

    /// Runs one line, writing its output and any error (`error: ...`) to `out`.
    pub fn execute(&mut self, line: &str, out: &mut dyn fmt::Write) -> Flow {
        let mut lexer = Lexer::new(line);
        loop {
            let before = lexer.position();
            let context = Context { debuggee: &self.debuggee, dot: self.dot };
            let result = match parse_command(&mut lexer, &context) {
                Ok(None) => return Flow::Continue,
                Ok(Some(command)) => self.run(&command, out),
                Err(error) => Err(Failure::from(error)),
            };
            match result {
                Ok(Flow::Quit) => return Flow::Quit,
                Ok(Flow::Continue) => {}
                Err(failure) => {
                    report(&failure, out);
                    return Flow::Continue;
                }
            }
            // Every command consumes input; stop rather than loop if one did not.
            if lexer.position() == before {
                return Flow::Continue;
            }
        }
    }

    fn run(&mut self, command: &Command, out: &mut dyn fmt::Write) -> Result<Flow, Failure> {
        if let Some(address) = command.address {
            self.dot = address;
        }
        let mut inputs: Vec<Option<u64>> = vec![command.address];
        for (index, stage) in command.stages.iter().enumerate() {
            let last = index + 1 == command.stages.len();
            let count = if index == 0 { command.count } else { None };
            let mut outputs = Vec::new();
            for input in inputs {
                if let Some(address) = input {
                    self.dot = address;
                }
                match stage {
                    Stage::Quit => return Ok(Flow::Quit),
                    Stage::Dcmd { name, .. } if name == "quit" => return Ok(Flow::Quit),
                    Stage::Dcmd { name, args } => {
                        outputs.extend(self.run_dcmd(name, args, input, count, last, out)?);
                    }
                    Stage::Format { source, format } => {
                        let repeat = count.unwrap_or(1);
                        match source {
                            FormatSource::Value => print_value(&self.debuggee, self.dot, repeat, format, out)?,
                            FormatSource::Virtual => {
                                print_memory(&self.debuggee, Memory::Virtual, self.dot, repeat, format, out)?;
                            }
                            FormatSource::Physical => {
                                print_memory(&self.debuggee, Memory::Physical, self.dot, repeat, format, out)?;
                            }
                        }
                    }
                }
                if outputs.len() > MAXIMUM_PIPELINE_ADDRESSES {
                    return Err(DcmdError::Failed(format!(
                        "pipeline stopped: more than {MAXIMUM_PIPELINE_ADDRESSES:#x} addresses"
                    ))
                    .into());
                }
            }
            inputs = outputs.into_iter().map(Some).collect();
        }
        Ok(Flow::Continue)
    }

    fn run_dcmd(
        &mut self,
        name: &str,
        args: &[alloc::string::String],
        address: Option<u64>,
        count: Option<u64>,
        last: bool,
        out: &mut dyn fmt::Write,
    ) -> Result<Vec<u64>, Failure> {
        let Some(dcmd) = dcmds::find_dcmd(name) else {
            return Err(DcmdError::Failed(format!("unknown dcmd '{name}'")).into());
        };
        let call = DcmdCall { address, count, args };
        // `::walk` prints its addresses only when nothing consumes them.
        let result = if name == "walk" && !last {
            dcmds::builtin::walk_addresses(&self.debuggee, &call)
        } else {
            (dcmd.run)(&self.debuggee, &call, out)
        };
        result.map_err(|error| Failure { error, dcmd: Some(dcmd) })
    }
}

fn report(failure: &Failure, out: &mut dyn fmt::Write) {
    let _ = writeln!(out, "error: {}", failure.error);
    if let (DcmdError::Usage(_), Some(dcmd)) = (&failure.error, failure.dcmd) {
        let usage = format!("usage: ::{} {}", dcmd.name, dcmd.usage);
        let _ = writeln!(out, "{}", usage.trim_end());
    }
}
