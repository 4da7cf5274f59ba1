//! The mdb language: [`lexer`] (tokens), [`expression`] (parsing and evaluating
//! expressions in one pass) and [`command`] (command lines, pipelines). The engine
//! (crate::engine) runs what [`command::parse_command`] returns; dcmds that take an
//! expression argument use [`evaluate`].

pub mod command;
pub mod expression;
pub mod lexer;

#[cfg(any(test, feature = "testing"))]
pub mod fuzzing;
#[cfg(any(test, feature = "testing"))]
pub mod test_elf;
#[cfg(test)]
mod tests;

use alloc::format;

use crate::dcmd::{DcmdError, Debuggee};
use expression::{describe, parse_expression, Context};
use lexer::{Lexer, Token};

/// Evaluates the whole of `text` as one expression, with `dot` as `.`
/// (e.g. `evaluate(debuggee, 0, "init_task+0t16")`).
pub fn evaluate(debuggee: &Debuggee<'_>, dot: u64, text: &str) -> Result<u64, DcmdError> {
    let mut lexer = Lexer::new(text);
    let value = parse_expression(&mut lexer, &Context { debuggee, dot })?;
    match lexer.next_token()? {
        Token::End => Ok(value),
        other => Err(DcmdError::Failed(format!("syntax error near {}", describe(&other)))),
    }
}
