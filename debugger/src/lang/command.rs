//! Command lines (illumos mdb(1), "Syntax"): `[address][,count] verb` where the verb
//! is `::dcmd args`, `/format` (virtual memory), `\format` (guest-physical memory),
//! `=format` (the value itself), `$q`, or nothing (the expression only sets dot);
//! `|` chains stages into a pipeline and `;` separates commands.
//!
//! Expressions are evaluated as they are parsed, so a later command of the same line
//! sees the dot an earlier one set: [`parse_command`] reads one command at a time.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::expression::{describe, parse_expression, starts_expression, Context};
use super::lexer::{Lexer, Token};
use crate::dcmd::DcmdError;

/// Which memory a `/`-style format reads, or none for `=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatSource {
    /// `/`: guest-virtual, through the current vCPU's page tables.
    Virtual,
    /// `\`: guest-physical.
    Physical,
    /// `=`: the address value itself is formatted.
    Value,
}

/// One stage of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    Dcmd {
        name: String,
        args: Vec<String>,
    },
    Format {
        source: FormatSource,
        format: String,
    },
    /// `$q`.
    Quit,
}

/// One command: an optional address and count, then zero or more stages (none: the
/// command only sets dot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub address: Option<u64>,
    pub count: Option<u64>,
    pub stages: Vec<Stage>,
}

/// Parses (and evaluates the expressions of) the next command; `None` at the end of
/// the line. A bare `;` is an empty command.
pub fn parse_command(lexer: &mut Lexer<'_>, context: &Context<'_, '_>) -> Result<Option<Command>, DcmdError> {
    let mut command = Command { address: None, count: None, stages: Vec::new() };
    let first = lexer.peek()?;
    if first == Token::End {
        return Ok(None);
    }
    if starts_expression(&first) {
        command.address = Some(parse_expression(lexer, context)?);
    }
    if lexer.peek()? == Token::Comma {
        lexer.next_token()?;
        command.count = Some(parse_expression(lexer, context)?);
    }
    loop {
        let token = lexer.next_token()?;
        match token {
            Token::End | Token::Semicolon if command.stages.is_empty() => return Ok(Some(command)),
            Token::Dollar if command.stages.is_empty() => {
                let letter = lexer.take_character();
                if letter != Some('q') && letter != Some('Q') {
                    let name: String = letter.into_iter().collect();
                    return Err(DcmdError::Failed(format!("unknown dcmd '${name}'")));
                }
                command.stages.push(Stage::Quit);
                // mdb ignores what follows $q on its line.
                return Ok(Some(command));
            }
            _ => {}
        }
        command.stages.push(parse_stage(lexer, token)?);
        match lexer.next_token()? {
            Token::End | Token::Semicolon => return Ok(Some(command)),
            Token::Pipe => continue,
            other => return Err(DcmdError::Failed(format!("syntax error near {}", describe(&other)))),
        }
    }
}

fn parse_stage(lexer: &mut Lexer<'_>, verb: Token) -> Result<Stage, DcmdError> {
    let source = match verb {
        Token::ColonColon => {
            let name = lexer.take_name();
            if name.is_empty() {
                return Err(DcmdError::Failed(String::from("syntax error: dcmd name expected after '::'")));
            }
            let name = String::from(name);
            let args = lexer.take_arguments()?;
            return Ok(Stage::Dcmd { name, args });
        }
        Token::Slash => FormatSource::Virtual,
        Token::Backslash => FormatSource::Physical,
        Token::Assign => FormatSource::Value,
        other => {
            return Err(DcmdError::Failed(format!(
                "syntax error: a dcmd or format expected before {}",
                describe(&other)
            )))
        }
    };
    let format = lexer.take_format();
    if format.is_empty() {
        return Err(DcmdError::Failed(String::from("syntax error: format letters expected")));
    }
    Ok(Stage::Format { source, format: String::from(format) })
}
