//! The xl.cfg(5) grammar: text → a list of settings, each `KEY = VALUE` with where it
//! came from. No meaning is given to keys here (that is [`super`]'s job).
//!
//! Grammar (libxlu's `libxlu_cfg_y.y` / `libxlu_cfg_l.l`): a setting is `KEY = VALUE`
//! or `KEY += VALUE` ended by a newline or `;`; `#` starts a comment to the end of the
//! line; a key is `[A-Za-z_][A-Za-z0-9_.]*`; a value is a string in `"..."` or `'...'`
//! (C escapes `\n \t \r \\ \" \' \a \b \f \v`, octal `\ooo` and `\xHH` for ASCII), a
//! number (`512`, `0x200`, kept as text and converted where a key wants a number), or a
//! list `[ atom, atom, ]` of strings and numbers that may span lines, with a trailing
//! comma allowed. Overrides (`create <config> key=value`) use the same grammar for one
//! setting, and also take a bare word (`name=d2`) as a string: everything after `=`
//! when it does not start with a quote or `[`.
//!
//! Invariant: the input is a `&str`, and the lexer only stops at ASCII bytes, so every
//! slice it takes is valid UTF-8; no index is used unchecked, so no input panics.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::{ConfigError, ConfigErrorKind, Location};

/// One scalar value: the text as written (unescaped if it was quoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Atom {
    pub text: String,
    /// Written in quotes (a string) rather than as a number or bare word.
    pub quoted: bool,
}

/// A setting's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Atom(Atom),
    List(Vec<Atom>),
}

/// One `KEY = VALUE` (or `KEY += VALUE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    pub value: Value,
    /// `+=`: append to an earlier list.
    pub append: bool,
    pub location: Location,
}

struct Lexer<'a> {
    text: &'a str,
    position: usize,
    line: usize,
    /// Set for overrides: one setting, bare words allowed, errors name the override.
    override_text: Option<&'a str>,
}

/// Parses a whole config file.
pub fn parse_file(text: &str) -> Result<Vec<Setting>, ConfigError> {
    let mut lexer = Lexer { text, position: 0, line: 1, override_text: None };
    let mut settings = Vec::new();
    while let Some(setting) = lexer.setting()? {
        settings.push(setting);
    }
    Ok(settings)
}

/// Parses one `key=value` override.
pub fn parse_override(text: &str) -> Result<Setting, ConfigError> {
    let mut lexer = Lexer { text, position: 0, line: 1, override_text: Some(text) };
    let setting = lexer.setting()?.ok_or_else(|| lexer.error(ConfigErrorKind::Syntax("expected key=value")))?;
    lexer.skip_separators();
    if lexer.peek().is_some() {
        return Err(lexer.error(ConfigErrorKind::Syntax("one key=value per override")));
    }
    Ok(setting)
}

fn is_key_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_'
}

fn is_key_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'.'
}

/// Bytes that may make up an unquoted number (`512`, `0x1f`, `-1`, `1.5`): the text is
/// checked when a key converts it.
fn is_number_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'+' | b'-' | b'_')
}

impl<'a> Lexer<'a> {
    fn location(&self) -> Location {
        match self.override_text {
            Some(text) => Location::Override(text.chars().take(60).collect()),
            None => Location::Line(self.line),
        }
    }

    fn error(&self, kind: ConfigErrorKind) -> ConfigError {
        ConfigError { location: self.location(), kind }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.position).copied()
    }

    fn peek_char(&self) -> char {
        self.text.get(self.position..).and_then(|rest| rest.chars().next()).unwrap_or(' ')
    }

    fn bump(&mut self) {
        if self.peek() == Some(b'\n') {
            self.line += 1;
        }
        self.position += 1;
    }

    /// Skips spaces, tabs, carriage returns and a comment, not newlines.
    fn skip_spaces(&mut self) {
        while let Some(byte) = self.peek() {
            match byte {
                b' ' | b'\t' | b'\r' => self.bump(),
                b'#' => {
                    while self.peek().is_some_and(|byte| byte != b'\n') {
                        self.bump();
                    }
                }
                _ => break,
            }
        }
    }

    /// Skips blank lines, comments and stray `;` between settings.
    fn skip_separators(&mut self) {
        loop {
            self.skip_spaces();
            match self.peek() {
                Some(b'\n' | b';') => self.bump(),
                _ => break,
            }
        }
    }

    /// Takes bytes while `keep` holds; the slice ends at an ASCII byte (or the end).
    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &'a str {
        let start = self.position;
        while self.peek().is_some_and(&keep) {
            self.bump();
        }
        self.text.get(start..self.position).unwrap_or("")
    }

    fn setting(&mut self) -> Result<Option<Setting>, ConfigError> {
        self.skip_separators();
        let Some(first) = self.peek() else { return Ok(None) };
        if !is_key_start(first) {
            return Err(self.error(ConfigErrorKind::UnexpectedCharacter { found: self.peek_char(), expected: "a key" }));
        }
        let location = self.location();
        let key = self.take_while(is_key_byte).to_string();
        self.skip_spaces();
        let append = match self.peek() {
            Some(b'=') => {
                self.bump();
                false
            }
            Some(b'+') if self.text.as_bytes().get(self.position + 1) == Some(&b'=') => {
                self.bump();
                self.bump();
                true
            }
            _ => return Err(self.error(ConfigErrorKind::Syntax("expected '=' after key"))),
        };
        self.skip_spaces();
        let value = self.value()?;
        self.skip_spaces();
        match self.peek() {
            None => {}
            Some(b'\n' | b';') => self.bump(),
            Some(_) => {
                return Err(self.error(ConfigErrorKind::UnexpectedCharacter {
                    found: self.peek_char(),
                    expected: "the end of the line after the value",
                }))
            }
        }
        Ok(Some(Setting { key, value, append, location }))
    }

    fn value(&mut self) -> Result<Value, ConfigError> {
        match self.peek() {
            Some(b'[') => self.list().map(Value::List),
            Some(b'"' | b'\'') => self.string().map(Value::Atom),
            Some(_) if self.override_text.is_some() => {
                // A bare word: the rest of the override.
                let text = self.text.get(self.position..).unwrap_or("").trim().to_string();
                self.position = self.text.len();
                Ok(Value::Atom(Atom { text, quoted: false }))
            }
            Some(byte) if is_number_byte(byte) && !byte.is_ascii_alphabetic() => {
                Ok(Value::Atom(Atom { text: self.take_while(is_number_byte).to_string(), quoted: false }))
            }
            _ => {
                Err(self
                    .error(ConfigErrorKind::Syntax("expected a value after '=' (a \"string\", a number or a [list])")))
            }
        }
    }

    fn list(&mut self) -> Result<Vec<Atom>, ConfigError> {
        let opened = self.line;
        self.bump(); // '['
        let mut atoms = Vec::new();
        loop {
            self.skip_blank_lines();
            match self.peek() {
                None => return Err(self.error(ConfigErrorKind::UnclosedList { opened })),
                Some(b']') => {
                    self.bump();
                    return Ok(atoms);
                }
                Some(b'[') => return Err(self.error(ConfigErrorKind::Syntax("lists cannot be nested"))),
                Some(b'"' | b'\'') => atoms.push(self.string()?),
                Some(byte) if is_number_byte(byte) && (self.override_text.is_some() || !byte.is_ascii_alphabetic()) => {
                    atoms.push(Atom { text: self.take_while(is_number_byte).to_string(), quoted: false });
                }
                Some(_) => {
                    return Err(self.error(ConfigErrorKind::UnexpectedCharacter {
                        found: self.peek_char(),
                        expected: "a \"string\" or a number in the list",
                    }))
                }
            }
            self.skip_blank_lines();
            match self.peek() {
                Some(b',') => self.bump(),
                Some(b']') => {}
                None => return Err(self.error(ConfigErrorKind::UnclosedList { opened })),
                Some(_) => {
                    return Err(self.error(ConfigErrorKind::UnexpectedCharacter {
                        found: self.peek_char(),
                        expected: "',' or ']' in the list",
                    }))
                }
            }
        }
    }

    /// Inside a list: spaces, comments and newlines.
    fn skip_blank_lines(&mut self) {
        loop {
            self.skip_spaces();
            if self.peek() == Some(b'\n') {
                self.bump();
            } else {
                break;
            }
        }
    }

    fn string(&mut self) -> Result<Atom, ConfigError> {
        let Some(quote) = self.peek() else { return Err(self.error(ConfigErrorKind::UnclosedString)) };
        self.bump();
        let mut text = String::new();
        loop {
            let start = self.position;
            while self.peek().is_some_and(|byte| byte != quote && byte != b'\\' && byte != b'\n') {
                self.bump();
            }
            text.push_str(self.text.get(start..self.position).unwrap_or(""));
            match self.peek() {
                Some(byte) if byte == quote => {
                    self.bump();
                    return Ok(Atom { text, quoted: true });
                }
                Some(b'\\') => {
                    self.bump();
                    text.push(self.escape()?);
                }
                _ => return Err(self.error(ConfigErrorKind::UnclosedString)),
            }
        }
    }

    /// The character after a backslash.
    fn escape(&mut self) -> Result<char, ConfigError> {
        let Some(byte) = self.peek() else { return Err(self.error(ConfigErrorKind::UnclosedString)) };
        let simple = match byte {
            b'n' => Some('\n'),
            b't' => Some('\t'),
            b'r' => Some('\r'),
            b'a' => Some('\x07'),
            b'b' => Some('\x08'),
            b'f' => Some('\x0c'),
            b'v' => Some('\x0b'),
            b'\\' | b'"' | b'\'' => Some(char::from(byte)),
            _ => None,
        };
        if let Some(character) = simple {
            self.bump();
            return Ok(character);
        }
        let (radix, digits) = match byte {
            b'x' => {
                self.bump();
                (16, 2)
            }
            b'0'..=b'7' => (8, 3),
            _ => return Err(self.error(ConfigErrorKind::BadEscape(self.peek_char()))),
        };
        let mut value = 0u32;
        let mut taken = 0;
        while taken < digits {
            let Some(digit) = self.peek().and_then(|byte| char::from(byte).to_digit(radix)) else { break };
            value = value * radix + digit;
            taken += 1;
            self.bump();
        }
        match u8::try_from(value) {
            Ok(ascii) if taken > 0 && ascii.is_ascii() => Ok(char::from(ascii)),
            _ => Err(self.error(ConfigErrorKind::BadEscape(if radix == 16 { 'x' } else { '0' }))),
        }
    }
}
