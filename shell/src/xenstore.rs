//! The xenstore commands, named and formatted as Xen's `xenstore-*` tools:
//! `xenstore-ls [PATH]`, `xenstore-read PATH`, `xenstore-write PATH VALUE`,
//! `xenstore-rm PATH` — thin formatters over [`XenstoreControl`].
//!
//! Why a trait and a table of its own: the shell crate does not depend on the
//! built-in dom0; image/ implements [`XenstoreControl`] with dom0's store
//! (privileged: dom0 bypasses node permissions) and adds
//! `xenstore_commands::<Appliance>()` to its `Registry::new(&[...])`. A context
//! that does not implement the trait simply does not register the table, so
//! nothing else changes (same generic-table trick as [`crate::builtin`]).
//!
//! Values are bytes. They are printed as `xenstore-ls` prints them (Xen's
//! `sanitise_value`): printable ASCII as is, `\t \n \r \\` escaped, bytes below
//! 8 as `\ooo` octal, every other byte as `\xNN`. `xenstore-write` reads its
//! VALUE the same way back, so any value can be typed. Paths and errors come
//! from outside the shell and are printed through [`crate::builtin::Printable`].

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::{self, Write as _};
use core::marker::PhantomData;

use crate::builtin::Printable;
use crate::command::{Command, CommandError, Invocation};
use crate::domains::{failed, unexpected};

/// Dom0's view of the xenstore, as the shell uses it: image/ implements this
/// over the built-in dom0's store, `testing::FakeXenstore` in memory.
///
/// Contracts for implementers:
/// - Paths are the operator's words, unchanged; the store checks them (an
///   invalid path is an error, not a panic). Relative paths are relative to
///   `/local/domain/0`, as for any dom0 client.
/// - Every error is one line without a trailing newline or `error:` prefix,
///   e.g. `no such node (ENOENT)`; the shell prints `error: PATH: <message>`.
/// - Writes and removals fire watches as any dom0 change does.
pub trait XenstoreControl {
    /// The value of the node at `path`.
    fn xs_read(&self, path: &str) -> Result<Vec<u8>, String>;
    /// Sets the value of `path`, creating it and missing parents.
    fn xs_write(&mut self, path: &str, value: &[u8]) -> Result<(), String>;
    /// The names of the children of `path`, in the store's order.
    fn xs_directory(&self, path: &str) -> Result<Vec<String>, String>;
    /// Removes `path` and everything below it.
    fn xs_rm(&mut self, path: &str) -> Result<(), String>;
}

/// The xenstore commands for context type `C`.
pub fn xenstore_commands<C: XenstoreControl + 'static>() -> &'static [Command<C>] {
    XenstoreTable::<C>::COMMANDS
}

/// Carrier of the generic table (see [`crate::builtin`]).
struct XenstoreTable<C>(PhantomData<C>);

impl<C: XenstoreControl + 'static> XenstoreTable<C> {
    const COMMANDS: &'static [Command<C>] = &[
        Command {
            name: "xenstore-ls",
            usage: "xenstore-ls [PATH]",
            summary: "list the xenstore tree below PATH (default /) with values",
            run: run_ls::<C>,
        },
        Command {
            name: "xenstore-read",
            usage: "xenstore-read PATH",
            summary: "print the value of a xenstore node",
            run: run_read::<C>,
        },
        Command {
            name: "xenstore-write",
            usage: "xenstore-write PATH VALUE",
            summary: "set a xenstore node; VALUE may use \\t \\n \\xNN escapes (quote it: 'a\\tb')",
            run: run_write::<C>,
        },
        Command {
            name: "xenstore-rm",
            usage: "xenstore-rm PATH",
            summary: "remove a xenstore node and everything below it",
            run: run_rm::<C>,
        },
    ];
}

/// Most nodes `xenstore-ls` prints, so a huge tree cannot hold the shell for long.
pub const MAX_LISTED_NODES: usize = 10_000;

/// `xenstore-ls [PATH]`: every node below PATH, depth first in the store's
/// order, one per line, indented one space per level below PATH:
/// ```text
/// local = ""
///  domain = ""
///   3 = ""
///    name = "web"
/// ```
/// A node whose value cannot be read prints as `name:` (as Xen's tool does);
/// one that disappears while listing is skipped.
fn run_ls<C: XenstoreControl + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    let root = match *invocation.args {
        [] => "/",
        [path] => path,
        [_, extra, ..] => return Err(unexpected(extra)),
    };
    let context = &*invocation.context;
    let children = context.xs_directory(root).map_err(|message| path_failed(root, message))?;
    // Explicit stack of (path, depth), children pushed in reverse to keep order.
    let mut stack: Vec<(String, usize)> = Vec::new();
    push_children(&mut stack, root, &children, 0);
    let mut listed = 0;
    while let Some((path, depth)) = stack.pop() {
        if listed == MAX_LISTED_NODES {
            writeln!(invocation.out, "... (stopped after {MAX_LISTED_NODES} nodes)")?;
            break;
        }
        listed += 1;
        let name = path.rsplit('/').next().unwrap_or("");
        let indent = " ".repeat(depth);
        match context.xs_read(&path) {
            Ok(value) => writeln!(invocation.out, "{indent}{} = \"{}\"", Printable(name), Escaped(&value))?,
            Err(_) => writeln!(invocation.out, "{indent}{}:", Printable(name))?,
        }
        if let Ok(children) = context.xs_directory(&path) {
            push_children(&mut stack, &path, &children, depth + 1);
        }
    }
    Ok(())
}

fn push_children(stack: &mut Vec<(String, usize)>, parent: &str, children: &[String], depth: usize) {
    for child in children.iter().rev() {
        let path = if parent.ends_with('/') { format!("{parent}{child}") } else { format!("{parent}/{child}") };
        stack.push((path, depth));
    }
}

/// `xenstore-read PATH`: the value, escaped, on one line.
fn run_read<C: XenstoreControl + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    let path = one_path(invocation.args)?;
    let value = invocation.context.xs_read(path).map_err(|message| path_failed(path, message))?;
    writeln!(invocation.out, "{}", Escaped(&value))?;
    Ok(())
}

/// `xenstore-write PATH VALUE`: silent on success. VALUE's escapes are decoded
/// (the shell's tokenizer eats backslashes outside single quotes, so the
/// operator quotes a VALUE with escapes: `xenstore-write data/x 'a\x01'`).
fn run_write<C: XenstoreControl + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    let (path, value) = match *invocation.args {
        [path, value] => (path, value),
        [] => return Err(CommandError::Usage(String::from("missing PATH and VALUE"))),
        [_] => return Err(CommandError::Usage(String::from("missing VALUE"))),
        [_, _, extra, ..] => return Err(unexpected(extra)),
    };
    let bytes = unescape(value);
    invocation.context.xs_write(path, &bytes).map_err(|message| path_failed(path, message))
}

/// `xenstore-rm PATH`: silent on success.
fn run_rm<C: XenstoreControl + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    let path = one_path(invocation.args)?;
    invocation.context.xs_rm(path).map_err(|message| path_failed(path, message))
}

fn one_path<'a>(arguments: &[&'a str]) -> Result<&'a str, CommandError> {
    match *arguments {
        [path] => Ok(path),
        [] => Err(CommandError::Usage(String::from("missing PATH"))),
        [_, extra, ..] => Err(unexpected(extra)),
    }
}

fn path_failed(path: &str, message: String) -> CommandError {
    failed(format!("{}: {message}", Printable(path)))
}

/// A value as Xen's `sanitise_value` prints it.
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &byte in self.0 {
            match byte {
                b'\\' => formatter.write_str("\\\\")?,
                b' '..=b'~' => formatter.write_char(char::from(byte))?,
                b'\t' => formatter.write_str("\\t")?,
                b'\n' => formatter.write_str("\\n")?,
                b'\r' => formatter.write_str("\\r")?,
                0..=7 => write!(formatter, "\\{byte:03o}")?,
                _ => write!(formatter, "\\x{byte:02x}")?,
            }
        }
        Ok(())
    }
}

/// Decodes [`Escaped`]'s escapes (Xen's `unsanitise_value`): `\t \n \r \\`,
/// `\xNN` (one or two hex digits), `\ooo` (one to three octal digits). Any other
/// escaped character stands for itself; a trailing `\` is kept.
pub fn unescape(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut value = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        index += 1;
        if byte != b'\\' {
            value.push(byte);
            continue;
        }
        let Some(&escaped) = bytes.get(index) else {
            value.push(b'\\');
            break;
        };
        index += 1;
        let (radix, digits) = match escaped {
            b't' => (0, vec![b'\t']),
            b'n' => (0, vec![b'\n']),
            b'r' => (0, vec![b'\r']),
            b'x' => (16, Vec::new()),
            b'0'..=b'7' => {
                index -= 1;
                (8, Vec::new())
            }
            other => (0, vec![other]),
        };
        if radix == 0 {
            value.extend_from_slice(&digits);
            continue;
        }
        let most = if radix == 16 { 2 } else { 3 };
        let mut number: u32 = 0;
        let mut used = 0;
        // `\x` without a hex digit stands for `x`, as in Xen.
        while used < most {
            match bytes.get(index).and_then(|&digit| char::from(digit).to_digit(radix)) {
                Some(digit) => {
                    number = number * radix + digit;
                    index += 1;
                    used += 1;
                }
                None => break,
            }
        }
        value.push(if used == 0 { escaped } else { number as u8 });
    }
    value
}
