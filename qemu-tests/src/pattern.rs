//! What `Machine::expect` waits for: a literal string or a small regular expression.
//!
//! The harness is std-only, so instead of the `regex` crate this module implements the
//! subset serial-console tests need, matched on bytes (the stripped transcript may hold
//! invalid UTF-8 when a test sends binary garbage):
//! - literal bytes, `\` escapes any metacharacter (`\.`, `\(`, `\[`, `\\`, ...);
//! - `.` any byte except `\n`;
//! - classes `[abc]`, `[a-z0-9]`, `[^,]`, and `\d`, `\w`, `\s` (and `\D`, `\W`, `\S`);
//! - quantifiers `*`, `+`, `?` (greedy, with backtracking) on the preceding atom;
//! - anchors `^` (start of the searched text or of a line) and `$` (before a `\n`);
//! - top-level alternation `a|b` (leftmost match over all branches wins).
//!
//! No groups. Streaming caveat: the transcript grows while it is
//! searched, so `$` deliberately does *not* match at the end of the text received so
//! far (the line may not be complete), and a pattern ending in a quantifier can match a
//! prefix of what eventually arrives — end such patterns with a literal or `$`.

use crate::error::{Error, Result};

/// A literal string or a parsed [`Regex`].
#[derive(Clone, Debug)]
pub enum Pattern {
    /// Matches these exact bytes.
    Literal(String),
    /// Matches the regular expression.
    Regex(Regex),
}

impl Pattern {
    /// A pattern matching `text` exactly.
    pub fn literal(text: impl Into<String>) -> Self {
        Self::Literal(text.into())
    }

    /// Parses a regular expression; panics on syntax errors (patterns are written in
    /// tests, so a bad one is a bug in the test). Use [`Regex::parse`] to handle errors.
    pub fn regex(source: &str) -> Self {
        match Regex::parse(source) {
            Ok(regex) => Self::Regex(regex),
            Err(error) => panic!("bad pattern {source:?}: {error}"),
        }
    }

    /// The leftmost match in `haystack` as a byte range `(start, end)`.
    pub fn find(&self, haystack: &[u8]) -> Option<(usize, usize)> {
        match self {
            Self::Literal(text) => find_literal(haystack, text.as_bytes()),
            Self::Regex(regex) => regex.find(haystack),
        }
    }

    /// Whether the pattern matches anywhere in `haystack`.
    pub fn is_match(&self, haystack: &str) -> bool {
        self.find(haystack.as_bytes()).is_some()
    }

    /// The text of the leftmost match in `haystack`.
    pub fn find_str<'a>(&self, haystack: &'a str) -> Option<&'a str> {
        // Ranges are byte ranges; literal/regex matches of ASCII patterns on UTF-8 text
        // can still split a multi-byte character with `.`, so fall back to lossless get.
        self.find(haystack.as_bytes()).and_then(|(start, end)| haystack.get(start..end))
    }
}

impl From<&str> for Pattern {
    fn from(text: &str) -> Self {
        Self::literal(text)
    }
}

impl From<String> for Pattern {
    fn from(text: String) -> Self {
        Self::Literal(text)
    }
}

impl From<&String> for Pattern {
    fn from(text: &String) -> Self {
        Self::literal(text.clone())
    }
}

impl From<Regex> for Pattern {
    fn from(regex: Regex) -> Self {
        Self::Regex(regex)
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Literal(text) => write!(formatter, "{text:?}"),
            Self::Regex(regex) => write!(formatter, "regex /{}/", regex.source),
        }
    }
}

fn find_literal(haystack: &[u8], needle: &[u8]) -> Option<(usize, usize)> {
    if needle.is_empty() {
        return Some((0, 0));
    }
    haystack.windows(needle.len()).position(|window| window == needle).map(|start| (start, start + needle.len()))
}

/// One thing a regex position can match.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Atom {
    Byte(u8),
    AnyButNewline,
    /// Inclusive byte ranges; `negated` inverts membership.
    Class {
        negated: bool,
        ranges: Vec<(u8, u8)>,
    },
    LineStart,
    LineEnd,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Repeat {
    One,
    ZeroOrMore,
    OneOrMore,
    ZeroOrOne,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Node {
    atom: Atom,
    repeat: Repeat,
}

/// A parsed regular expression of the subset described in the module docs.
#[derive(Clone, Debug)]
pub struct Regex {
    source: String,
    /// Alternatives separated by top-level `|`.
    branches: Vec<Vec<Node>>,
}

const DIGITS: &[(u8, u8)] = &[(b'0', b'9')];
const WORD: &[(u8, u8)] = &[(b'0', b'9'), (b'a', b'z'), (b'A', b'Z'), (b'_', b'_')];
const SPACE: &[(u8, u8)] = &[(b' ', b' '), (b'\t', b'\r')];

fn escape_class(letter: u8) -> Option<Atom> {
    let (negated, ranges) = match letter {
        b'd' => (false, DIGITS),
        b'D' => (true, DIGITS),
        b'w' => (false, WORD),
        b'W' => (true, WORD),
        b's' => (false, SPACE),
        b'S' => (true, SPACE),
        _ => return None,
    };
    Some(Atom::Class { negated, ranges: ranges.to_vec() })
}

fn escape_byte(letter: u8) -> u8 {
    match letter {
        b'n' => b'\n',
        b't' => b'\t',
        b'r' => b'\r',
        other => other,
    }
}

impl Regex {
    /// Parses `source`.
    pub fn parse(source: &str) -> Result<Self> {
        let bytes = source.as_bytes();
        let mut branches = Vec::new();
        let mut start = 0;
        let mut index = 0;
        let mut in_class = false;
        while index < bytes.len() {
            match bytes[index] {
                b'\\' => index += 1,
                b'[' if !in_class => {
                    in_class = true;
                    // A ']' right after '[' or '[^' is a literal member.
                    if bytes.get(index + 1) == Some(&b'^') {
                        index += 1;
                    }
                    if bytes.get(index + 1) == Some(&b']') {
                        index += 1;
                    }
                }
                b']' if in_class => in_class = false,
                b'|' if !in_class => {
                    branches.push(parse_branch(&bytes[start..index])?);
                    start = index + 1;
                }
                _ => {}
            }
            index += 1;
        }
        branches.push(parse_branch(&bytes[start.min(bytes.len())..])?);
        Ok(Self { source: source.to_owned(), branches })
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The leftmost (then longest-greedy) match as a byte range.
    pub fn find(&self, haystack: &[u8]) -> Option<(usize, usize)> {
        (0..=haystack.len()).find_map(|start| {
            self.branches.iter().find_map(|nodes| match_here(nodes, haystack, start)).map(|end| (start, end))
        })
    }
}

/// Parses one alternative (no top-level `|`).
fn parse_branch(bytes: &[u8]) -> Result<Vec<Node>> {
    let mut nodes: Vec<Node> = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        index += 1;
        let atom = match byte {
            b'*' | b'+' | b'?' => {
                let repeat = match byte {
                    b'*' => Repeat::ZeroOrMore,
                    b'+' => Repeat::OneOrMore,
                    _ => Repeat::ZeroOrOne,
                };
                match nodes.last_mut() {
                    Some(node)
                        if node.repeat == Repeat::One && !matches!(node.atom, Atom::LineStart | Atom::LineEnd) =>
                    {
                        node.repeat = repeat;
                    }
                    _ => {
                        return Err(Error::new(format!(
                            "quantifier '{}' at offset {} has nothing to repeat",
                            byte as char,
                            index - 1
                        )))
                    }
                }
                continue;
            }
            b'.' => Atom::AnyButNewline,
            b'^' => Atom::LineStart,
            b'$' => Atom::LineEnd,
            b'\\' => {
                let Some(&letter) = bytes.get(index) else {
                    return Err(Error::new("trailing backslash"));
                };
                index += 1;
                escape_class(letter).unwrap_or(Atom::Byte(escape_byte(letter)))
            }
            b'[' => {
                let (atom, next) = parse_class(bytes, index)?;
                index = next;
                atom
            }
            b'(' | b')' | b'{' => {
                return Err(Error::new(format!(
                    "'{}' (groups, counted repeats) is not supported; escape it",
                    byte as char
                )))
            }
            other => Atom::Byte(other),
        };
        nodes.push(Node { atom, repeat: Repeat::One });
    }
    Ok(nodes)
}

/// Parses a bracket class whose body starts at `index` (after `[`); returns the atom and
/// the index after the closing `]`.
fn parse_class(bytes: &[u8], mut index: usize) -> Result<(Atom, usize)> {
    let mut negated = false;
    if bytes.get(index) == Some(&b'^') {
        negated = true;
        index += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let Some(&byte) = bytes.get(index) else {
            return Err(Error::new("unterminated '[' class"));
        };
        index += 1;
        if byte == b']' && !first {
            break;
        }
        first = false;
        let low = if byte == b'\\' {
            let Some(&letter) = bytes.get(index) else {
                return Err(Error::new("trailing backslash in class"));
            };
            index += 1;
            if let Some(Atom::Class { negated: false, ranges: class }) = escape_class(letter) {
                ranges.extend(class);
                continue;
            }
            escape_byte(letter)
        } else {
            byte
        };
        if bytes.get(index) == Some(&b'-') && bytes.get(index + 1).is_some_and(|&b| b != b']') {
            let high = bytes[index + 1];
            index += 2;
            if high < low {
                return Err(Error::new(format!("bad range {}-{}", low as char, high as char)));
            }
            ranges.push((low, high));
        } else {
            ranges.push((low, low));
        }
    }
    Ok((Atom::Class { negated, ranges }, index))
}

/// Whether `atom` consumes the byte at `position` (zero-width atoms never consume).
fn atom_consumes(atom: &Atom, haystack: &[u8], position: usize) -> bool {
    let Some(&byte) = haystack.get(position) else {
        return false;
    };
    match atom {
        Atom::Byte(expected) => byte == *expected,
        Atom::AnyButNewline => byte != b'\n',
        Atom::Class { negated, ranges } => ranges.iter().any(|&(low, high)| (low..=high).contains(&byte)) != *negated,
        Atom::LineStart | Atom::LineEnd => false,
    }
}

/// Matches `nodes` at `position`; returns the end of the match.
fn match_here(nodes: &[Node], haystack: &[u8], position: usize) -> Option<usize> {
    let Some((node, rest)) = nodes.split_first() else {
        return Some(position);
    };
    match node.atom {
        Atom::LineStart => {
            let at_line_start = position == 0 || haystack.get(position - 1) == Some(&b'\n');
            return if at_line_start { match_here(rest, haystack, position) } else { None };
        }
        Atom::LineEnd => {
            // Only before a newline: the text after the end of the transcript so far is
            // unknown (see module docs).
            return if haystack.get(position) == Some(&b'\n') { match_here(rest, haystack, position) } else { None };
        }
        _ => {}
    }
    let (min, max) = match node.repeat {
        Repeat::One => (1, 1),
        Repeat::ZeroOrOne => (0, 1),
        Repeat::ZeroOrMore => (0, usize::MAX),
        Repeat::OneOrMore => (1, usize::MAX),
    };
    let mut count = 0;
    while count < max && atom_consumes(&node.atom, haystack, position + count) {
        count += 1;
    }
    if count < min {
        return None;
    }
    // Greedy: try the longest run first, then back off.
    (min..=count).rev().find_map(|taken| match_here(rest, haystack, position + taken))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(pattern: &str, haystack: &str) -> Option<&'static str> {
        let leaked: &'static str = Box::leak(haystack.to_owned().into_boxed_str());
        Pattern::regex(pattern).find_str(leaked)
    }

    #[test]
    fn literals() {
        let pattern = Pattern::from("basalt> ");
        assert_eq!(pattern.find(b"xx\nbasalt> "), Some((3, 11)));
        assert_eq!(pattern.find(b"basalt>"), None);
        assert_eq!(Pattern::literal("a.b").find(b"axb a.b"), Some((4, 7)));
    }

    #[test]
    fn classes_and_quantifiers() {
        assert_eq!(found(r"CPUs: \d+ found, \d+ online", "CPUs: 2 found, 2 online\n"), Some("CPUs: 2 found, 2 online"));
        assert_eq!(found(r"[a-c]+x", "zzabcabx"), Some("abcabx"));
        assert_eq!(found(r"commit [^,]+,", "(commit 1a2b3c-dirty, release)"), Some("commit 1a2b3c-dirty,"));
        assert_eq!(found(r"colou?r", "color colour"), Some("color"));
        assert_eq!(found(r"a.*c", "abcabc\nc"), Some("abcabc"));
        assert_eq!(found(r"\w+\s\S", "  foo_1 x"), Some("foo_1 x"));
        assert_eq!(found(r"x\d*y", "xy"), Some("xy"));
        assert_eq!(found(r"\(\d\)", "a(7)b"), Some("(7)"));
    }

    #[test]
    fn anchors_are_line_based_and_streaming_safe() {
        assert_eq!(found(r"^b\w+$", "a\nbasalt\n"), Some("basalt"));
        // `$` does not match at the end of text received so far.
        assert_eq!(found(r"^b\w+$", "a\nbasalt"), None);
        assert_eq!(found(r"^x", "ax"), None);
    }

    #[test]
    fn backtracking() {
        assert_eq!(found(r"\d+5", "12345"), Some("12345"));
        assert_eq!(found(r"a*a*b", "aaab"), Some("aaab"));
    }

    #[test]
    fn alternation_is_leftmost_over_branches() {
        assert_eq!(found(r"Shell> |startup\.nsh", "xx startup.nsh Shell> "), Some("startup.nsh"));
        assert_eq!(found(r"GRUB|Basalt", "[ 0.1] Basalt up"), Some("Basalt"));
        assert_eq!(found(r"[|]x|y", "a|x"), Some("|x"));
        assert_eq!(found(r"a\|b", "a|b"), Some("a|b"));
    }

    #[test]
    fn syntax_errors() {
        assert!(Regex::parse("*a").is_err());
        assert!(Regex::parse("(a)").is_err());
        assert!(Regex::parse("[abc").is_err());
        assert!(Regex::parse("a\\").is_err());
        assert!(Regex::parse("[]a]").is_ok());
    }
}
