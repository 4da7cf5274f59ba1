//! The debugger's shell commands: `mdb DOMAIN` (an mdb session on a live domain, with
//! prompt `> ` until `$q`) and `dump-core [--crash] DOMAIN DISK` (an ELF core of a
//! running domain written to a disk). image/ implements [`DebugControl`] and adds
//! `debugger_commands::<Appliance>()` to its registry; the engine itself is
//! basalt-debugger, which this crate does not depend on.
//!
//! How the session mode works: `mdb` only opens the session and leaves it in
//! [`Invocation::session`]; from then on [`crate::Shell::execute_line`] hands every
//! line, untokenized, to [`DebugSession::execute`] (the mdb language has its own
//! syntax) and [`crate::Shell::serve_one_line`] prompts with [`DEBUGGER_PROMPT`],
//! until the session answers [`SessionFlow::Quit`]. Line editing and history are
//! the shell's, so they work the same in both modes; Ctrl-C abandons the line only.
//!
//! What the shell checks: argument counts and options are usage errors here;
//! domain and disk words are passed unchanged, and the implementation's refusals
//! print as `error: <message>` (made printable).

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;

use crate::builtin::Printable;
use crate::command::{Command, CommandError, Invocation};
use crate::domains::{failed, unexpected};

/// The prompt while a debugger session is open (mdb's).
pub const DEBUGGER_PROMPT: &str = "> ";

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

/// The debugger's command table, for `Registry::new(&[..., debugger_commands::<C>()])`.
pub fn debugger_commands<C: DebugControl + 'static>() -> &'static [Command<C>] {
    DebuggerTable::<C>::COMMANDS
}

/// Carrier of the generic table (see [`crate::builtin`]).
struct DebuggerTable<C>(PhantomData<C>);

impl<C: DebugControl + 'static> DebuggerTable<C> {
    const COMMANDS: &'static [Command<C>] = &[
        Command {
            name: "mdb",
            usage: "mdb DOMAIN",
            summary: "debug a running domain with mdb's commands (prompt '> '; $q to leave)",
            run: run_mdb::<C>,
        },
        Command {
            name: "dump-core",
            usage: "dump-core [--crash] DOMAIN DISK",
            summary: "write an ELF core of a domain to a disk (--crash: leave the domain crashed)",
            run: run_dump_core::<C>,
        },
    ];
}

/// `mdb DOMAIN`: opens the session; the shell routes the following lines to it.
fn run_mdb<C: DebugControl + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    let domain = match *invocation.args {
        [domain] => domain,
        [] => return Err(CommandError::Usage(String::from("missing DOMAIN"))),
        [_, extra, ..] => return Err(unexpected(extra)),
    };
    let session = invocation.context.open_debugger(domain).map_err(failed)?;
    *invocation.session = Some(session);
    Ok(())
}

/// Parses `[--crash] DOMAIN DISK` (the option may come anywhere).
pub fn parse_dump_core(args: &[&str]) -> Result<DumpCoreRequest, CommandError> {
    let mut crash = false;
    let mut positional: Vec<&str> = Vec::new();
    for &argument in args {
        match argument {
            "--crash" => crash = true,
            option if option.starts_with('-') => {
                return Err(CommandError::Usage(format!("unknown option '{}'", Printable(option))))
            }
            word => positional.push(word),
        }
    }
    match *positional {
        [domain, disk] => Ok(DumpCoreRequest { domain: String::from(domain), disk: String::from(disk), crash }),
        [] => Err(CommandError::Usage(String::from("missing DOMAIN and DISK"))),
        [_] => Err(CommandError::Usage(String::from("missing DISK"))),
        [_, _, extra, ..] => Err(unexpected(extra)),
    }
}

/// `dump-core [--crash] DOMAIN DISK`: the implementation prints its progress and
/// final line.
fn run_dump_core<C: DebugControl + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    let request = parse_dump_core(invocation.args)?;
    invocation.context.dump_core(&request, &mut *invocation.out).map_err(failed)?;
    Ok(())
}
