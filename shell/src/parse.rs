//! The tokenizer: one typed line → a bounded list of words.
//!
//! Why: every byte of a line comes from the operator (or whatever is attached
//! to the serial port), so the line is checked once here, with typed errors,
//! before any command sees it.
//!
//! Grammar (a small subset of POSIX sh word splitting):
//! - words are separated by spaces and tabs;
//! - `'single quotes'` keep everything literally up to the next `'`;
//! - `"double quotes"` keep everything, except that a backslash takes the next
//!   character literally (`"say \"hi\""`);
//! - outside quotes a backslash takes the next character literally;
//! - quotes may be adjacent to other text (`ab"c d"` is the one word `abc d`)
//!   and `""` is an empty word.
//!
//! Limits: at most [`MAX_LINE_BYTES`] bytes and [`MAX_WORDS`] words; no control
//! characters (C0 controls, DEL and the C1 controls U+0080..U+009F) other than
//! tab. The work done is linear in the line length.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Longest accepted line, in bytes.
pub const MAX_LINE_BYTES: usize = 1024;
/// Most words accepted on one line (command name included).
pub const MAX_WORDS: usize = 64;

/// Why a line could not be split into words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The line is longer than [`MAX_LINE_BYTES`].
    TooLong {
        /// Length of the rejected line in bytes.
        length: usize,
    },
    /// The line contains more than [`MAX_WORDS`] words.
    TooManyWords,
    /// A control character (other than tab) at this byte offset.
    ControlCharacter {
        /// The character's code point.
        code_point: u32,
        /// Byte offset in the line.
        offset: usize,
    },
    /// A quote was opened and never closed.
    UnterminatedQuote {
        /// `'` or `"`.
        quote: char,
    },
    /// The line ends with a backslash that escapes nothing.
    TrailingBackslash,
}

impl fmt::Display for ParseError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::TooLong { length } => {
                write!(formatter, "line too long ({length} bytes, at most {MAX_LINE_BYTES})")
            }
            ParseError::TooManyWords => {
                write!(formatter, "too many words (at most {MAX_WORDS})")
            }
            ParseError::ControlCharacter { code_point, offset } => {
                write!(formatter, "control character U+{code_point:04X} at byte {offset}")
            }
            ParseError::UnterminatedQuote { quote } => {
                write!(formatter, "unterminated {quote} quote")
            }
            ParseError::TrailingBackslash => write!(formatter, "backslash at end of line"),
        }
    }
}

/// Where the tokenizer is inside the current word.
#[derive(Clone, Copy, PartialEq, Eq)]
enum QuoteState {
    Unquoted,
    InSingleQuotes,
    InDoubleQuotes,
}

/// Splits `line` into words (see the module documentation for the grammar).
///
/// An empty or all-blank line gives an empty list.
pub fn tokenize(line: &str) -> Result<Vec<String>, ParseError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(ParseError::TooLong { length: line.len() });
    }
    if let Some((offset, character)) =
        line.char_indices().find(|&(_, character)| character != '\t' && character.is_control())
    {
        return Err(ParseError::ControlCharacter { code_point: u32::from(character), offset });
    }

    let mut words = Vec::new();
    let mut current_word = String::new();
    // A word exists once any of its characters or quotes was seen, so that
    // `""` yields an empty word while plain blanks yield nothing.
    let mut word_started = false;
    let mut quote_state = QuoteState::Unquoted;
    let mut characters = line.chars();

    while let Some(character) = characters.next() {
        match (quote_state, character) {
            (QuoteState::Unquoted, ' ' | '\t') => {
                if word_started {
                    push_word(&mut words, &mut current_word)?;
                    word_started = false;
                }
            }
            (QuoteState::Unquoted, '\'') => {
                quote_state = QuoteState::InSingleQuotes;
                word_started = true;
            }
            (QuoteState::Unquoted, '"') => {
                quote_state = QuoteState::InDoubleQuotes;
                word_started = true;
            }
            (QuoteState::Unquoted | QuoteState::InDoubleQuotes, '\\') => {
                let escaped = characters.next().ok_or(ParseError::TrailingBackslash)?;
                current_word.push(escaped);
                word_started = true;
            }
            (QuoteState::InSingleQuotes, '\'') | (QuoteState::InDoubleQuotes, '"') => {
                quote_state = QuoteState::Unquoted;
            }
            (_, other) => {
                current_word.push(other);
                word_started = true;
            }
        }
    }

    match quote_state {
        QuoteState::InSingleQuotes => Err(ParseError::UnterminatedQuote { quote: '\'' }),
        QuoteState::InDoubleQuotes => Err(ParseError::UnterminatedQuote { quote: '"' }),
        QuoteState::Unquoted => {
            if word_started {
                push_word(&mut words, &mut current_word)?;
            }
            Ok(words)
        }
    }
}

fn push_word(words: &mut Vec<String>, current_word: &mut String) -> Result<(), ParseError> {
    if words.len() >= MAX_WORDS {
        return Err(ParseError::TooManyWords);
    }
    words.push(core::mem::take(current_word));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn words(line: &str) -> Vec<String> {
        tokenize(line).unwrap()
    }

    #[test]
    fn splits_on_blanks() {
        assert_eq!(words("  dmesg\t-n  5 "), ["dmesg", "-n", "5"]);
        assert!(words("").is_empty());
        assert!(words(" \t  ").is_empty());
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(words(r#"echo "a b" 'c d'"#), ["echo", "a b", "c d"]);
        assert_eq!(words(r#"x "" ''"#), ["x", "", ""]);
        assert_eq!(words(r#"ab"c d"e"#), ["abc de"]);
        assert_eq!(words(r#""say \"hi\"""#), [r#"say "hi""#]);
        assert_eq!(words(r"'no \escape'"), [r"no \escape"]);
        assert_eq!(words(r"a\ b"), ["a b"]);
        assert_eq!(words("naïve ünïcode"), ["naïve", "ünïcode"]);
    }

    #[test]
    fn errors() {
        assert_eq!(tokenize("echo 'open"), Err(ParseError::UnterminatedQuote { quote: '\'' }));
        assert_eq!(tokenize("echo \"open"), Err(ParseError::UnterminatedQuote { quote: '"' }));
        assert_eq!(tokenize("echo \\"), Err(ParseError::TrailingBackslash));
        assert_eq!(tokenize("a\x1bb"), Err(ParseError::ControlCharacter { code_point: 0x1b, offset: 1 }));
        assert_eq!(tokenize("a\x7f"), Err(ParseError::ControlCharacter { code_point: 0x7f, offset: 1 }));
        assert_eq!(tokenize("a\u{9b}"), Err(ParseError::ControlCharacter { code_point: 0x9b, offset: 1 }));
        let long_line = "x".repeat(MAX_LINE_BYTES + 1);
        assert_eq!(tokenize(&long_line), Err(ParseError::TooLong { length: MAX_LINE_BYTES + 1 }));
        assert_eq!(words(&"x".repeat(MAX_LINE_BYTES)).len(), 1);
    }

    #[test]
    fn word_limit() {
        let at_limit = vec!["w"; MAX_WORDS].join(" ");
        assert_eq!(words(&at_limit).len(), MAX_WORDS);
        let over_limit = vec!["w"; MAX_WORDS + 1].join(" ");
        assert_eq!(tokenize(&over_limit), Err(ParseError::TooManyWords));
    }

    #[test]
    fn errors_display_on_one_line() {
        let errors = [
            ParseError::TooLong { length: 5000 },
            ParseError::TooManyWords,
            ParseError::ControlCharacter { code_point: 1, offset: 0 },
            ParseError::UnterminatedQuote { quote: '"' },
            ParseError::TrailingBackslash,
        ];
        for error in errors {
            let text = alloc::format!("{error}");
            assert!(!text.is_empty() && !text.contains('\n'));
        }
    }
}
