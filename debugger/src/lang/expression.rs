//! Evaluating mdb expressions (illumos mdb(1), "Arithmetic Expansion"): 64-bit
//! unsigned values with wrapping arithmetic, evaluated while parsed.
//!
//! Binary operators, loosest first, each level left-associative as in mdb's grammar:
//! `|`, `^`, `&`, `== !=`, `<< >>`, `+ -`, `* % #` (`%` is integer division, `#`
//! rounds the left side up to a multiple of the right). Unary operators bind tighter:
//! `-` (negate), `~` (complement), `#` (logical not), `*` (the 64-bit value at a
//! virtual address), `%` (the 32-bit value there). Operands: numbers (hex unless
//! `0t`/`0o`/`0i`), symbol names, `.` (dot), `<register` and parentheses.
//!
//! Invariants: nesting is bounded ([`MAXIMUM_DEPTH`]) so hostile input cannot
//! exhaust the stack; division by zero and unknown names are errors, never panics.

use alloc::format;
use alloc::string::String;

use super::lexer::{Lexer, Token};
use crate::dcmd::{DcmdError, Debuggee};
use crate::target::Registers;

/// How deeply parentheses and unary operators may nest.
const MAXIMUM_DEPTH: u32 = 64;

/// What an expression can refer to: the debuggee (symbols, registers, memory) and dot.
pub struct Context<'d, 'a> {
    pub debuggee: &'d Debuggee<'a>,
    pub dot: u64,
}

fn failed(message: String) -> DcmdError {
    DcmdError::Failed(message)
}

/// The binary operators at each precedence level, loosest first.
const LEVELS: &[&[Token]] = &[
    &[Token::Pipe],
    &[Token::Caret],
    &[Token::Ampersand],
    &[Token::Equal, Token::NotEqual],
    &[Token::ShiftLeft, Token::ShiftRight],
    &[Token::Plus, Token::Minus],
    &[Token::Star, Token::Percent, Token::Hash],
];

/// True if `token` can begin an expression.
pub fn starts_expression(token: &Token) -> bool {
    matches!(
        token,
        Token::Number(_)
            | Token::Identifier(_)
            | Token::Register(_)
            | Token::Dot
            | Token::LeftParenthesis
            | Token::Minus
            | Token::Tilde
            | Token::Hash
            | Token::Star
            | Token::Percent
    )
}

/// Parses and evaluates one expression from `lexer`, stopping before the first token
/// that cannot continue it.
pub fn parse_expression(lexer: &mut Lexer<'_>, context: &Context<'_, '_>) -> Result<u64, DcmdError> {
    binary(lexer, context, 0, 0)
}

fn binary(lexer: &mut Lexer<'_>, context: &Context<'_, '_>, level: usize, depth: u32) -> Result<u64, DcmdError> {
    let Some(operators) = LEVELS.get(level) else {
        return unary(lexer, context, depth);
    };
    let mut value = binary(lexer, context, level + 1, depth)?;
    loop {
        let token = lexer.peek()?;
        if !operators.contains(&token) {
            return Ok(value);
        }
        lexer.next_token()?;
        let right = binary(lexer, context, level + 1, depth)?;
        value = apply(&token, value, right)?;
    }
}

fn apply(operator: &Token, left: u64, right: u64) -> Result<u64, DcmdError> {
    let division_by_zero = || failed(String::from("division by zero"));
    Ok(match operator {
        Token::Pipe => left | right,
        Token::Caret => left ^ right,
        Token::Ampersand => left & right,
        Token::Equal => u64::from(left == right),
        Token::NotEqual => u64::from(left != right),
        // C leaves shifts by the width or more undefined; here every bit is shifted out.
        Token::ShiftLeft => left.checked_shl(u32::try_from(right).unwrap_or(u32::MAX)).unwrap_or(0),
        Token::ShiftRight => left.checked_shr(u32::try_from(right).unwrap_or(u32::MAX)).unwrap_or(0),
        Token::Plus => left.wrapping_add(right),
        Token::Minus => left.wrapping_sub(right),
        Token::Star => left.wrapping_mul(right),
        Token::Percent => left.checked_div(right).ok_or_else(division_by_zero)?,
        Token::Hash => {
            if right == 0 {
                return Err(division_by_zero());
            }
            left.div_ceil(right).wrapping_mul(right)
        }
        other => return Err(failed(format!("internal: {other:?} is not a binary operator"))),
    })
}

fn unary(lexer: &mut Lexer<'_>, context: &Context<'_, '_>, depth: u32) -> Result<u64, DcmdError> {
    if depth >= MAXIMUM_DEPTH {
        return Err(failed(String::from("expression nested too deeply")));
    }
    let token = lexer.next_token()?;
    let operand = |lexer: &mut Lexer<'_>| unary(lexer, context, depth + 1);
    match token {
        Token::Minus => Ok(operand(lexer)?.wrapping_neg()),
        Token::Tilde => Ok(!operand(lexer)?),
        Token::Hash => Ok(u64::from(operand(lexer)? == 0)),
        Token::Star => {
            let address = operand(lexer)?;
            Ok(context.debuggee.read_virtual_u64(address)?)
        }
        Token::Percent => {
            let address = operand(lexer)?;
            let mut bytes = [0u8; 4];
            context.debuggee.read_virtual(address, &mut bytes)?;
            Ok(u64::from(u32::from_le_bytes(bytes)))
        }
        Token::LeftParenthesis => {
            let value = binary(lexer, context, 0, depth + 1)?;
            match lexer.next_token()? {
                Token::RightParenthesis => Ok(value),
                _ => Err(failed(String::from("syntax error: missing ')'"))),
            }
        }
        Token::Number(value) => Ok(value),
        Token::Dot => Ok(context.dot),
        Token::Identifier(name) => identifier(context, &name),
        Token::Register(name) => register(context, &name),
        Token::End => Err(failed(String::from("syntax error: expression expected at end of line"))),
        other => Err(failed(format!("syntax error: expression expected before {}", describe(&other)))),
    }
}

/// A name is a symbol first; failing that, a word of hex digits (and `_`
/// separators) is a number, as mdb's lexer decides for `deadbeef` or `ffff_8000`.
fn identifier(context: &Context<'_, '_>, name: &str) -> Result<u64, DcmdError> {
    if let Some(symbol) = context.debuggee.symbols().by_name(name) {
        return Ok(symbol.address);
    }
    if name.chars().all(|character| character.is_ascii_hexdigit() || character == '_') {
        let digits: String = name.chars().filter(|character| *character != '_').collect();
        if let Ok(value) = u64::from_str_radix(&digits, 16) {
            return Ok(value);
        }
    }
    Err(failed(format!("unknown symbol '{name}'")))
}

/// Reads one register from a vCPU's saved state.
pub type RegisterReader = fn(&Registers) -> u64;

/// The registers `<name` can name, with how to read each.
pub const REGISTER_NAMES: &[(&str, RegisterReader)] = &[
    ("rax", |r| r.rax),
    ("rbx", |r| r.rbx),
    ("rcx", |r| r.rcx),
    ("rdx", |r| r.rdx),
    ("rsi", |r| r.rsi),
    ("rdi", |r| r.rdi),
    ("rbp", |r| r.rbp),
    ("rsp", |r| r.rsp),
    ("r8", |r| r.r8),
    ("r9", |r| r.r9),
    ("r10", |r| r.r10),
    ("r11", |r| r.r11),
    ("r12", |r| r.r12),
    ("r13", |r| r.r13),
    ("r14", |r| r.r14),
    ("r15", |r| r.r15),
    ("rip", |r| r.rip),
    ("rflags", |r| r.rflags),
    ("cr0", |r| r.cr0),
    ("cr2", |r| r.cr2),
    ("cr3", |r| r.cr3),
    ("cr4", |r| r.cr4),
    ("efer", |r| r.efer),
    ("cs", |r| u64::from(r.cs)),
    ("ss", |r| u64::from(r.ss)),
    ("ds", |r| u64::from(r.ds)),
    ("es", |r| u64::from(r.es)),
    ("fs", |r| u64::from(r.fs)),
    ("gs", |r| u64::from(r.gs)),
    ("fs_base", |r| r.fs_base),
    ("gs_base", |r| r.gs_base),
    ("kernel_gs_base", |r| r.kernel_gs_base),
];

fn register(context: &Context<'_, '_>, name: &str) -> Result<u64, DcmdError> {
    let Some((_, read)) = REGISTER_NAMES.iter().find(|(known, _)| *known == name) else {
        return Err(failed(format!("unknown register '<{name}'")));
    };
    Ok(read(&context.debuggee.registers()?))
}

/// How a token is named in a syntax error.
pub fn describe(token: &Token) -> String {
    match token {
        Token::Number(value) => format!("number {value:#x}"),
        Token::Identifier(name) => format!("'{name}'"),
        Token::Register(name) => format!("'<{name}'"),
        Token::End => String::from("end of line"),
        other => {
            let text = match other {
                Token::Dot => ".",
                Token::Plus => "+",
                Token::Minus => "-",
                Token::Star => "*",
                Token::Percent => "%",
                Token::Hash => "#",
                Token::Ampersand => "&",
                Token::Pipe => "|",
                Token::Caret => "^",
                Token::Tilde => "~",
                Token::ShiftLeft => "<<",
                Token::ShiftRight => ">>",
                Token::Equal => "==",
                Token::NotEqual => "!=",
                Token::LeftParenthesis => "(",
                Token::RightParenthesis => ")",
                Token::Comma => ",",
                Token::ColonColon => "::",
                Token::Slash => "/",
                Token::Backslash => "\\",
                Token::Assign => "=",
                Token::Dollar => "$",
                _ => ";",
            };
            format!("'{text}'")
        }
    }
}
