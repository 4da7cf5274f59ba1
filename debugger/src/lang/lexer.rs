//! Tokens of the mdb language (illumos mdb(1), "Syntax"): numbers, symbol names, `.`,
//! `<register` variables, operators, and the verbs that end an expression (`::`, `/`,
//! `\`, `=`, `$`). The command parser also reads raw text through [`Lexer`] for what
//! is not tokenised: dcmd names, their argument words, and format strings.
//!
//! Invariants: every call that returns a token other than [`Token::End`] consumes at
//! least one character, so loops over tokens end; lexing never panics (positions only
//! move by whole characters).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::dcmd::{parse_number, DcmdError};

/// One token of an expression or command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Number(u64),
    /// A symbol name (or a hex number written without a leading digit, decided when
    /// evaluated).
    Identifier(String),
    /// `<name`: a register of the current vCPU.
    Register(String),
    /// `.`: the current address.
    Dot,
    Plus,
    Minus,
    Star,
    Percent,
    Hash,
    Ampersand,
    Pipe,
    Caret,
    Tilde,
    ShiftLeft,
    ShiftRight,
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
    LeftParenthesis,
    RightParenthesis,
    Comma,
    /// `::` before a dcmd name.
    ColonColon,
    /// `/`: format virtual memory.
    Slash,
    /// `\`: format guest-physical memory.
    Backslash,
    /// `=`: format the value itself.
    Assign,
    /// `$`: an mdb `$` command (`$q`).
    Dollar,
    Semicolon,
    End,
}

fn is_identifier_start(character: char) -> bool {
    character.is_ascii_alphabetic() || character == '_'
}

fn is_identifier_character(character: char) -> bool {
    character.is_ascii_alphanumeric() || matches!(character, '_' | '.' | '$')
}

/// A cursor over one command line.
#[derive(Debug, Clone)]
pub struct Lexer<'a> {
    text: &'a str,
    position: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(text: &'a str) -> Lexer<'a> {
        Lexer { text, position: 0 }
    }

    /// Byte offset of the cursor (only ever advanced by whole characters).
    pub fn position(&self) -> usize {
        self.position
    }

    /// The text not consumed yet.
    pub fn rest(&self) -> &'a str {
        self.text.get(self.position..).unwrap_or("")
    }

    fn peek_character(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn advance(&mut self, character: char) {
        self.position += character.len_utf8();
    }

    /// Skips spaces and tabs.
    pub fn skip_whitespace(&mut self) {
        while let Some(character) = self.peek_character().filter(|character| character.is_whitespace()) {
            self.advance(character);
        }
    }

    /// The next token without consuming it.
    pub fn peek(&self) -> Result<Token, DcmdError> {
        self.clone().next_token()
    }

    /// Consumes and returns the next token.
    pub fn next_token(&mut self) -> Result<Token, DcmdError> {
        self.skip_whitespace();
        let Some(character) = self.peek_character() else {
            return Ok(Token::End);
        };
        if character.is_ascii_digit() {
            // mdb allows `_` between digits as a separator: ffff_8000_0000_0000.
            let word = self.take_while(|character| character.is_ascii_alphanumeric() || character == '_');
            let digits: String = word.chars().filter(|character| *character != '_').collect();
            return parse_number(&digits)
                .map(Token::Number)
                .map_err(|_| DcmdError::Failed(format!("'{word}' is not a number")));
        }
        if is_identifier_start(character) {
            return Ok(Token::Identifier(String::from(self.take_while(is_identifier_character))));
        }
        self.advance(character);
        let next = self.peek_character();
        let two = |lexer: &mut Lexer<'_>, token: Token| {
            if let Some(second) = next {
                lexer.advance(second);
            }
            Ok(token)
        };
        match (character, next) {
            ('<', Some('<')) => two(self, Token::ShiftLeft),
            ('<', Some(second)) if is_identifier_start(second) => {
                Ok(Token::Register(String::from(self.take_while(is_identifier_character))))
            }
            ('>', Some('>')) => two(self, Token::ShiftRight),
            ('=', Some('=')) => two(self, Token::Equal),
            ('!', Some('=')) => two(self, Token::NotEqual),
            (':', Some(':')) => two(self, Token::ColonColon),
            ('.', _) => Ok(Token::Dot),
            ('+', _) => Ok(Token::Plus),
            ('-', _) => Ok(Token::Minus),
            ('*', _) => Ok(Token::Star),
            ('%', _) => Ok(Token::Percent),
            ('#', _) => Ok(Token::Hash),
            ('&', _) => Ok(Token::Ampersand),
            ('|', _) => Ok(Token::Pipe),
            ('^', _) => Ok(Token::Caret),
            ('~', _) => Ok(Token::Tilde),
            ('(', _) => Ok(Token::LeftParenthesis),
            (')', _) => Ok(Token::RightParenthesis),
            (',', _) => Ok(Token::Comma),
            ('/', _) => Ok(Token::Slash),
            ('\\', _) => Ok(Token::Backslash),
            ('=', _) => Ok(Token::Assign),
            ('$', _) => Ok(Token::Dollar),
            (';', _) => Ok(Token::Semicolon),
            ('<', _) => Err(DcmdError::Failed(String::from("'<' must be followed by a register name"))),
            ('!', _) => Err(DcmdError::Failed(String::from("shell escapes (!) are not supported"))),
            (':', _) => Err(DcmdError::Failed(String::from(
                "':' commands (process control) are not supported; dcmds start with '::'",
            ))),
            (other, _) => Err(DcmdError::Failed(format!("syntax error near '{other}'"))),
        }
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let start = self.position;
        while let Some(character) = self.peek_character().filter(|character| keep(*character)) {
            self.advance(character);
        }
        self.text.get(start..self.position).unwrap_or("")
    }

    /// A dcmd name after `::` (letters, digits, `_`, `.`, `$`); empty if none.
    pub fn take_name(&mut self) -> &'a str {
        self.take_while(is_identifier_character)
    }

    /// A format string after `/`, `\` or `=`: everything up to whitespace, `;`, `|`.
    pub fn take_format(&mut self) -> &'a str {
        self.skip_whitespace();
        self.take_while(|character| !character.is_whitespace() && character != ';' && character != '|')
    }

    /// One character, raw (after `$`).
    pub fn take_character(&mut self) -> Option<char> {
        let character = self.peek_character()?;
        self.advance(character);
        Some(character)
    }

    /// A dcmd's argument words up to an unquoted `|` or `;` (not consumed) or the end.
    /// `"..."` is one word (with `\"` and `\\` inside); quotes may not be left open.
    pub fn take_arguments(&mut self) -> Result<Vec<String>, DcmdError> {
        let mut words = Vec::new();
        loop {
            self.skip_whitespace();
            match self.peek_character() {
                None | Some('|') | Some(';') => return Ok(words),
                Some('"') => {
                    self.advance('"');
                    let mut word = String::new();
                    loop {
                        match self.take_character() {
                            None => return Err(DcmdError::Failed(String::from("unterminated quoted string"))),
                            Some('"') => break,
                            Some('\\') => match self.take_character() {
                                Some(escaped) => word.push(escaped),
                                None => return Err(DcmdError::Failed(String::from("unterminated quoted string"))),
                            },
                            Some(other) => word.push(other),
                        }
                    }
                    words.push(word);
                }
                Some(_) => {
                    let word = self
                        .take_while(|character| !character.is_whitespace() && !matches!(character, '|' | ';' | '"'));
                    words.push(String::from(word));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Vec<Token> {
        let mut lexer = Lexer::new(text);
        let mut tokens = Vec::new();
        loop {
            let token = lexer.next_token().unwrap();
            if token == Token::End {
                return tokens;
            }
            tokens.push(token);
        }
    }

    #[test]
    fn operators_numbers_registers_and_verbs() {
        assert_eq!(
            tokens("10+0t10<<2 <rip==.!=name.x::/\\=$;"),
            alloc::vec![
                Token::Number(0x10),
                Token::Plus,
                Token::Number(10),
                Token::ShiftLeft,
                Token::Number(2),
                Token::Register(String::from("rip")),
                Token::Equal,
                Token::Dot,
                Token::NotEqual,
                Token::Identifier(String::from("name.x")),
                Token::ColonColon,
                Token::Slash,
                Token::Backslash,
                Token::Assign,
                Token::Dollar,
                Token::Semicolon,
            ]
        );
        assert!(Lexer::new("12zz").next_token().is_err());
        assert_eq!(Lexer::new("0x1_0000").next_token(), Ok(Token::Number(0x10000)));
        assert_eq!(Lexer::new("0t1_000").next_token(), Ok(Token::Number(1000)));
        assert!(Lexer::new("< 1").next_token().is_err());
        assert!(Lexer::new(":x").next_token().is_err());
    }

    #[test]
    fn arguments_stop_at_pipes_and_keep_quoted_words() {
        let mut lexer = Lexer::new(r#" -c 1 "two words" "q\"x" | ::next"#);
        assert_eq!(
            lexer.take_arguments().unwrap(),
            alloc::vec![String::from("-c"), String::from("1"), String::from("two words"), String::from("q\"x")]
        );
        assert_eq!(lexer.rest(), "| ::next");
        assert!(Lexer::new("\"open").take_arguments().is_err());
    }
}
