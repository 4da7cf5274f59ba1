//! The command table: what a command is ([`Command`]), what it is called with
//! ([`Invocation`]), how it fails ([`CommandError`]), and the [`Registry`] that
//! merges the tables of every subsystem.
//!
//! Why tables: `help` is generated from the same entries that dispatch, so the
//! two cannot drift apart, and a later subsystem (domain manager, debugger)
//! adds its commands by handing image/ one more `&'static [Command<C>]` slice —
//! the shell's core is not edited. Modeled on illumos mdb's dcmd table
//! (`mdb_modapi.h`: name, usage, description, function; the function returns
//! USAGE or ERR and the engine prints the usage).
//!
//! Invariants: names are unique, non-empty and free of whitespace and control
//! characters (checked once by [`Registry::new`]); [`Registry::iter`] yields
//! commands sorted by name.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::debugger::DebugSession;

/// One shell command: an entry of a command table.
///
/// `C` is the context the commands operate on (image/'s appliance type, which
/// implements [`crate::System`] and whatever later subsystems need).
pub struct Command<C: 'static> {
    /// The word the operator types, e.g. `"dmesg"`.
    pub name: &'static str,
    /// Synopsis including the name, e.g. `"dmesg [-l LEVEL] [-n COUNT]"`.
    pub usage: &'static str,
    /// One line saying what the command does (shown by `help`).
    pub summary: &'static str,
    /// The implementation. Writes its output to `invocation.out`; reports
    /// problems by returning an error (never by panicking).
    pub run: fn(&mut Invocation<'_, C>) -> Result<(), CommandError>,
}

// Manual impls: `derive` would wrongly require `C: Clone`/`C: Debug`.
impl<C: 'static> Clone for Command<C> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<C: 'static> Copy for Command<C> {}

impl<C: 'static> fmt::Debug for Command<C> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Command")
            .field("name", &self.name)
            .field("usage", &self.usage)
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

/// Everything one run of a command gets.
pub struct Invocation<'a, C: 'static> {
    /// The system the command inspects or acts on.
    pub context: &'a mut C,
    /// The arguments, without the command name (argv[1..]).
    pub args: &'a [&'a str],
    /// Where output goes. Use `"\n"` line ends; the serial writer adds `"\r"`.
    pub out: &'a mut dyn fmt::Write,
    /// All registered commands (for `help` and the like).
    pub registry: &'a Registry<C>,
    /// The shell's debugger session slot: `mdb` fills it, and while it is filled the
    /// shell sends every line to the session (see [`crate::debugger`]). Other
    /// commands leave it alone.
    pub session: &'a mut Option<Box<dyn DebugSession>>,
}

impl<C: 'static> Invocation<'_, C> {
    /// Fails with a usage error unless the command was given no arguments.
    pub fn expect_no_arguments(&self) -> Result<(), CommandError> {
        match self.args.first() {
            None => Ok(()),
            Some(unexpected) => Err(CommandError::Usage(alloc::format!("unexpected argument '{unexpected}'"))),
        }
    }
}

/// How a command fails. [`crate::Shell::execute_line`] turns it into output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// The arguments were wrong. The shell prints `error: <message>` and then
    /// `usage: <the command's usage>`.
    Usage(String),
    /// The command could not do its job. The shell prints `error: <message>`.
    Failed(String),
}

/// Output writers in the shell do not fail (the serial writer and `String`
/// cannot); should one ever do, the command stops with this error.
impl From<fmt::Error> for CommandError {
    fn from(_: fmt::Error) -> Self {
        CommandError::Failed(String::from("output error"))
    }
}

/// Why a set of tables could not become a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// Two tables (or one table twice) define the same command name.
    DuplicateName(&'static str),
    /// A name is empty or contains whitespace or control characters, so it
    /// could never be typed as one word.
    InvalidName(&'static str),
}

impl fmt::Display for RegistryError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::DuplicateName(name) => {
                write!(formatter, "command '{name}' is defined twice")
            }
            RegistryError::InvalidName(name) => {
                write!(formatter, "invalid command name {name:?}")
            }
        }
    }
}

/// All commands the shell knows, merged from the tables of every subsystem and
/// sorted by name.
pub struct Registry<C: 'static> {
    commands_by_name: Vec<&'static Command<C>>,
}

impl<C: 'static> Registry<C> {
    /// Merges command tables, e.g.
    /// `Registry::new(&[basalt_shell::builtin_commands::<Appliance>(), DOMAIN_COMMANDS])`.
    ///
    /// Rejects duplicate and untypeable names.
    pub fn new(tables: &[&'static [Command<C>]]) -> Result<Self, RegistryError> {
        let mut commands_by_name: Vec<&'static Command<C>> = tables.iter().flat_map(|table| table.iter()).collect();
        for command in &commands_by_name {
            let typeable = !command.name.is_empty()
                && !command.name.chars().any(|character| character.is_whitespace() || character.is_control());
            if !typeable {
                return Err(RegistryError::InvalidName(command.name));
            }
        }
        commands_by_name.sort_by(|left, right| left.name.cmp(right.name));
        if let Some(pair) = commands_by_name.windows(2).find(|pair| pair[0].name == pair[1].name) {
            return Err(RegistryError::DuplicateName(pair[0].name));
        }
        Ok(Self { commands_by_name })
    }

    /// The command called `name`, if any.
    pub fn find(&self, name: &str) -> Option<&'static Command<C>> {
        self.commands_by_name
            .binary_search_by(|command| command.name.cmp(name))
            .ok()
            .map(|index| self.commands_by_name[index])
    }

    /// All commands, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &'static Command<C>> + '_ {
        self.commands_by_name.iter().copied()
    }

    /// Number of commands.
    pub fn len(&self) -> usize {
        self.commands_by_name.len()
    }

    /// True if no command is registered.
    pub fn is_empty(&self) -> bool {
        self.commands_by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn do_nothing(_: &mut Invocation<'_, ()>) -> Result<(), CommandError> {
        Ok(())
    }

    const FIRST_TABLE: &[Command<()>] = &[
        Command { name: "zeta", usage: "zeta", summary: "last", run: do_nothing },
        Command { name: "alpha", usage: "alpha", summary: "first", run: do_nothing },
    ];
    const SECOND_TABLE: &[Command<()>] = &[Command { name: "mid", usage: "mid", summary: "middle", run: do_nothing }];
    const CLASHING_TABLE: &[Command<()>] =
        &[Command { name: "alpha", usage: "alpha", summary: "again", run: do_nothing }];
    const BAD_NAME_TABLE: &[Command<()>] = &[Command { name: "two words", usage: "", summary: "", run: do_nothing }];

    #[test]
    fn merges_tables_sorted_by_name() {
        let registry = Registry::new(&[FIRST_TABLE, SECOND_TABLE]).unwrap();
        let names: Vec<&str> = registry.iter().map(|command| command.name).collect();
        assert_eq!(names, ["alpha", "mid", "zeta"]);
        assert_eq!(registry.find("mid").unwrap().summary, "middle");
        assert!(registry.find("nope").is_none());
        assert_eq!(registry.len(), 3);
    }

    #[test]
    fn rejects_duplicates_and_bad_names() {
        assert_eq!(Registry::new(&[FIRST_TABLE, CLASHING_TABLE]).err(), Some(RegistryError::DuplicateName("alpha")));
        assert_eq!(Registry::new(&[SECOND_TABLE, SECOND_TABLE]).err(), Some(RegistryError::DuplicateName("mid")));
        assert_eq!(Registry::new(&[BAD_NAME_TABLE]).err(), Some(RegistryError::InvalidName("two words")));
    }
}
