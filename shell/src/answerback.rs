//! The terminal answerback shim: the adapter between a [`SerialLine`] and
//! noline's `embedded_io` `Read`/`Write`, which answers noline's terminal
//! queries when the terminal does not, and filters what noline may read.
//!
//! Why it exists. At every `readline`, noline 0.5.1 probes the terminal: it
//! writes `ESC 7 ESC[999;999H ESC[6n ESC 8` (size query), waits for a cursor
//! position report (CPR, `ESC[<row>;<col>R`), prints the prompt, writes
//! `ESC[6n` again (position query) and waits for a second CPR. A dumb serial
//! console or a test script never answers, and any other byte received while
//! noline waits is swallowed. Worse, noline panics on input it does not expect
//! (noline-0.5.1 `src/input.rs`, `src/core.rs`, `src/terminal.rs`):
//! - `ESC[R` or `ESC[5R` (a CPR without both numbers): `unwrap()` on `None`;
//! - a CPR with a zero: `x - 1` underflows;
//! - a long run of digits inside `ESC[`: `value * 10 + digit` overflows;
//! - a CPR that arrives while a line is being edited, or one whose column is
//!   left of the end of the prompt: `offset - prompt.len()` underflows later;
//! - a size answer with 0 columns: division by zero when wrapping.
//!
//! What the shim guarantees, so none of that is reachable from the line:
//! - Every query noline writes (seen by scanning its output for `ESC[6n`; a
//!   size query is the one right after `ESC[999;999H`) gets exactly one
//!   well-formed answer, delivered before any other byte. The shim waits up to
//!   [`ANSWER_TIMEOUT_MS`] for the real terminal; if nothing arrives, or a
//!   keystroke arrives first, it answers itself (`ESC[24;80R` for the size;
//!   the last row and the column just after the prompt for the position) and
//!   keeps the keystroke for the next read, so nothing typed is lost.
//! - Real answers are range-checked; an out-of-range, zero or malformed one is
//!   replaced by the synthetic answer. A position answer always puts the
//!   cursor just after the prompt (which is where the terminal's cursor is,
//!   since noline printed `\r ESC[J <prompt>`).
//! - noline only ever sees complete escape sequences from a whitelist, in a
//!   normalized form without numbers: cursor keys, Home, End, Delete.
//!   Everything else that starts with ESC (unsolicited CPRs, function keys,
//!   mouse reports, garbage) is read to its end and dropped. A sequence is
//!   abandoned after [`MAX_SEQUENCE_BYTES`] bytes or when a byte that cannot
//!   belong to it arrives (that byte is then read again as ordinary input).
//!
//! - noline only ever sees complete, valid UTF-8 characters: its decoder
//!   accepts overlong forms, surrogates and values above U+10FFFF and stores
//!   them in a buffer it later reads as `str` without checking — undefined
//!   behavior, found by this crate's fuzz test. Invalid bytes are dropped.
//!
//! ASCII bytes other than ESC (text and control characters) pass through
//! unchanged; noline handles all of those without panicking (checked by the
//! fuzz tests). Every read does work bounded by the bytes it consumes.

use alloc::collections::VecDeque;
use core::convert::Infallible;

use crate::shell::SerialLine;

/// How long to wait for the terminal's answer to a query before answering
/// ourselves, in milliseconds.
pub const ANSWER_TIMEOUT_MS: u32 = 250;
/// How long to wait for the next byte of an escape sequence, in milliseconds.
pub const SEQUENCE_BYTE_TIMEOUT_MS: u32 = 100;
/// How long one blocking read waits before checking again, in milliseconds.
pub const IDLE_POLL_MS: u32 = 1000;
/// Longest escape sequence (after `ESC [`) the shim reads before giving up.
pub const MAX_SEQUENCE_BYTES: usize = 32;
/// Terminal size assumed when the terminal does not say (rows, columns).
pub const DEFAULT_TERMINAL_SIZE: (u16, u16) = (24, 80);
/// Largest accepted terminal dimension.
const MAX_TERMINAL_DIMENSION: u32 = 999;
/// Narrowest accepted terminal: a prompt plus some room to type.
const MIN_TERMINAL_COLUMNS: u32 = 20;
/// Most queries remembered without an answer (noline has one at a time).
const MAX_OUTSTANDING_QUERIES: usize = 4;

const ESCAPE: u8 = 0x1b;
/// Longest control string (OSC, DCS, ...) skipped as one sequence.
const MAX_CONTROL_STRING_BYTES: usize = 256;
const KEY_UP: &[u8] = b"\x1b[A";
const KEY_DOWN: &[u8] = b"\x1b[B";
const KEY_RIGHT: &[u8] = b"\x1b[C";
const KEY_LEFT: &[u8] = b"\x1b[D";
const KEY_HOME: &[u8] = b"\x1b[1~";
const KEY_DELETE: &[u8] = b"\x1b[3~";
const KEY_END: &[u8] = b"\x1b[4~";

/// Which question noline asked with `ESC[6n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Query {
    /// Asked after moving to `999;999`: the answer is the terminal size.
    Size,
    /// Asked after printing the prompt: the answer is the cursor position.
    Position,
}

/// What an escape sequence read from the line turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EscapeInput {
    /// A key noline understands, in the normalized form to hand it.
    Key(&'static [u8]),
    /// A cursor position report; `None` if it was malformed.
    CursorReport(Option<(u32, u32)>),
    /// Anything else: dropped.
    Dropped,
}

/// Recognizes the queries in what noline writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputScanState {
    Ground,
    AfterEscape,
    InControlSequence,
}

/// The shim's memory between reads and between lines; lives in
/// [`crate::LineEditor`].
#[derive(Debug)]
pub struct AnswerbackState {
    /// Characters the prompt occupies (the position answer's column minus one).
    prompt_columns: u32,
    /// Bytes ready for noline, in order.
    ready_for_editor: VecDeque<u8>,
    /// Queries noline wrote that have not been answered yet, oldest first.
    outstanding_queries: VecDeque<Query>,
    /// A byte that ended an escape sequence it did not belong to; read again.
    byte_to_reexamine: Option<u8>,
    /// Terminal size in use (from the last accepted or synthetic size answer).
    terminal_rows: u32,
    terminal_columns: u32,
    output_scan_state: OutputScanState,
    output_sequence: [u8; 16],
    output_sequence_length: usize,
    /// The last control sequence written was `ESC[999;999H`.
    cursor_moved_to_edge: bool,
    /// The line reported end of input (tests only; a UART never closes).
    input_closed: bool,
}

impl AnswerbackState {
    /// State for a prompt of `prompt_columns` characters (ASCII).
    pub fn new(prompt_columns: usize) -> Self {
        Self {
            prompt_columns: u32::try_from(prompt_columns).unwrap_or(u32::MAX),
            ready_for_editor: VecDeque::new(),
            outstanding_queries: VecDeque::new(),
            byte_to_reexamine: None,
            terminal_rows: u32::from(DEFAULT_TERMINAL_SIZE.0),
            terminal_columns: u32::from(DEFAULT_TERMINAL_SIZE.1),
            output_scan_state: OutputScanState::Ground,
            output_sequence: [0; 16],
            output_sequence_length: 0,
            cursor_moved_to_edge: false,
            input_closed: false,
        }
    }

    /// Follows a prompt change (the shell's `basalt> ` and the debugger's `> `), so
    /// position answers keep putting the cursor just after the prompt.
    pub fn set_prompt_columns(&mut self, prompt_columns: usize) {
        self.prompt_columns = u32::try_from(prompt_columns).unwrap_or(u32::MAX);
    }

    /// True once the line reported that no more input will come.
    pub fn input_closed(&self) -> bool {
        self.input_closed
    }

    /// Reopens after [`SerialLine::is_closed`] stopped saying so.
    pub fn clear_input_closed(&mut self) {
        self.input_closed = false;
    }

    /// Terminal size currently assumed, (rows, columns).
    pub fn terminal_size(&self) -> (u32, u32) {
        (self.terminal_rows, self.terminal_columns)
    }

    /// Scans bytes noline writes for `ESC[6n` queries.
    fn observe_output(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            match self.output_scan_state {
                OutputScanState::Ground => {
                    if byte == ESCAPE {
                        self.output_scan_state = OutputScanState::AfterEscape;
                    }
                }
                OutputScanState::AfterEscape => {
                    if byte == b'[' {
                        self.output_scan_state = OutputScanState::InControlSequence;
                        self.output_sequence_length = 0;
                    } else {
                        self.output_scan_state =
                            if byte == ESCAPE { OutputScanState::AfterEscape } else { OutputScanState::Ground };
                    }
                }
                OutputScanState::InControlSequence => match byte {
                    0x20..=0x3f => {
                        if let Some(slot) = self.output_sequence.get_mut(self.output_sequence_length) {
                            *slot = byte;
                            self.output_sequence_length += 1;
                        }
                    }
                    0x40..=0x7e => {
                        self.output_scan_state = OutputScanState::Ground;
                        let parameters = self.output_sequence.get(..self.output_sequence_length).unwrap_or_default();
                        match (parameters, byte) {
                            (b"6", b'n') => {
                                let query = if self.cursor_moved_to_edge { Query::Size } else { Query::Position };
                                if self.outstanding_queries.len() >= MAX_OUTSTANDING_QUERIES {
                                    self.outstanding_queries.pop_front();
                                }
                                self.outstanding_queries.push_back(query);
                                self.cursor_moved_to_edge = false;
                            }
                            (b"999;999", b'H') => self.cursor_moved_to_edge = true,
                            _ => self.cursor_moved_to_edge = false,
                        }
                    }
                    _ => {
                        self.output_scan_state =
                            if byte == ESCAPE { OutputScanState::AfterEscape } else { OutputScanState::Ground };
                    }
                },
            }
        }
    }

    /// The answer to give noline for `query`, from a checked real report (if
    /// any): a size within bounds, or a position on a valid row and always
    /// just after the prompt.
    fn answer_for(&mut self, query: Query, report: Option<(u32, u32)>) -> (u32, u32) {
        match query {
            Query::Size => {
                let (rows, columns) = match report {
                    Some((rows, columns))
                        if (1..=MAX_TERMINAL_DIMENSION).contains(&rows)
                            && (MIN_TERMINAL_COLUMNS.max(self.prompt_columns.saturating_add(2))
                                ..=MAX_TERMINAL_DIMENSION)
                                .contains(&columns) =>
                    {
                        (rows, columns)
                    }
                    _ => (u32::from(DEFAULT_TERMINAL_SIZE.0), u32::from(DEFAULT_TERMINAL_SIZE.1)),
                };
                self.terminal_rows = rows;
                self.terminal_columns = columns;
                (rows, columns)
            }
            Query::Position => {
                let row = match report {
                    Some((row, _)) if (1..=self.terminal_rows).contains(&row) => row,
                    _ => self.terminal_rows,
                };
                (row, self.prompt_columns.saturating_add(1))
            }
        }
    }
}

/// The adapter noline reads from and writes to, for the duration of one
/// `readline` call.
pub struct TerminalAnswerback<'a> {
    state: &'a mut AnswerbackState,
    line: &'a mut dyn SerialLine,
}

impl<'a> TerminalAnswerback<'a> {
    /// Wraps `line` with the shim state kept in `state`.
    pub fn new(state: &'a mut AnswerbackState, line: &'a mut dyn SerialLine) -> Self {
        Self { state, line }
    }

    /// One byte from the line, waiting up to `timeout_ms`.
    fn read_raw(&mut self, timeout_ms: u32) -> Option<u8> {
        if let Some(byte) = self.state.byte_to_reexamine.take() {
            return Some(byte);
        }
        if self.state.input_closed {
            return None;
        }
        let byte = self.line.read_byte(timeout_ms);
        if byte.is_none() && self.line.is_closed() {
            self.state.input_closed = true;
        }
        byte
    }

    /// One byte from the line, waiting as long as it takes; `None` only once
    /// the line is closed.
    fn read_raw_blocking(&mut self) -> Option<u8> {
        loop {
            if let Some(byte) = self.read_raw(IDLE_POLL_MS) {
                return Some(byte);
            }
            if self.state.input_closed {
                return None;
            }
        }
    }

    /// Reads the rest of an escape sequence (the ESC is consumed).
    fn read_escape_sequence(&mut self) -> EscapeInput {
        let Some(introducer) = self.read_raw(SEQUENCE_BYTE_TIMEOUT_MS) else {
            return EscapeInput::Dropped;
        };
        match introducer {
            b'[' => self.read_control_sequence(),
            // OSC, DCS, SOS, PM, APC: a string up to BEL or ST (ESC \\), all dropped.
            b']' | b'P' | b'X' | b'^' | b'_' => {
                self.skip_control_string();
                EscapeInput::Dropped
            }
            b'O' => {
                // SS3: cursor keys in "application" mode.
                let Some(final_byte) = self.read_raw(SEQUENCE_BYTE_TIMEOUT_MS) else {
                    return EscapeInput::Dropped;
                };
                match final_byte {
                    b'A' => EscapeInput::Key(KEY_UP),
                    b'B' => EscapeInput::Key(KEY_DOWN),
                    b'C' => EscapeInput::Key(KEY_RIGHT),
                    b'D' => EscapeInput::Key(KEY_LEFT),
                    b'H' => EscapeInput::Key(KEY_HOME),
                    b'F' => EscapeInput::Key(KEY_END),
                    0x20..=0x7e => EscapeInput::Dropped,
                    other => {
                        self.state.byte_to_reexamine = Some(other);
                        EscapeInput::Dropped
                    }
                }
            }
            // Alt+key and the like: drop both bytes.
            0x20..=0x7e => EscapeInput::Dropped,
            // A control byte, another ESC or a non-ASCII byte is not part of
            // this sequence: read it again as input.
            other => {
                self.state.byte_to_reexamine = Some(other);
                EscapeInput::Dropped
            }
        }
    }

    /// Skips a control string's body through its terminator (BEL, or ESC followed by
    /// `\\`), so a terminal's title report never reaches the editor as typed text.
    /// A string is bounded: another control byte (Enter, Ctrl-C, ...) ends it and is read
    /// again as input, and so does reaching [`MAX_CONTROL_STRING_BYTES`], so an
    /// unterminated string cannot swallow the operator's next command.
    fn skip_control_string(&mut self) {
        let mut after_escape = false;
        for _ in 0..MAX_CONTROL_STRING_BYTES {
            let Some(byte) = self.read_raw(SEQUENCE_BYTE_TIMEOUT_MS) else { return };
            match byte {
                0x07 => return,
                b'\\' if after_escape => return,
                ESCAPE => after_escape = true,
                0x00..=0x1f | 0x7f => {
                    self.state.byte_to_reexamine = Some(byte);
                    return;
                }
                _ if after_escape => {
                    self.state.byte_to_reexamine = Some(byte);
                    return;
                }
                _ => {}
            }
        }
    }

    /// Reads parameters and the final byte of a control sequence (`ESC [`
    /// consumed) and classifies it.
    fn read_control_sequence(&mut self) -> EscapeInput {
        let mut parameters = [0u8; MAX_SEQUENCE_BYTES];
        let mut parameter_count = 0;
        loop {
            let Some(byte) = self.read_raw(SEQUENCE_BYTE_TIMEOUT_MS) else {
                return EscapeInput::Dropped;
            };
            match byte {
                0x20..=0x3f => {
                    let Some(slot) = parameters.get_mut(parameter_count) else {
                        // Too long to be anything we accept: give up here; what
                        // follows is read as ordinary input.
                        return EscapeInput::Dropped;
                    };
                    *slot = byte;
                    parameter_count += 1;
                }
                0x40..=0x7e => {
                    let parameters = parameters.get(..parameter_count).unwrap_or_default();
                    return classify_control_sequence(parameters, byte);
                }
                other => {
                    self.state.byte_to_reexamine = Some(other);
                    return EscapeInput::Dropped;
                }
            }
        }
    }

    /// Reads the rest of a UTF-8 character starting with `first_byte` and
    /// queues it for noline only if it is valid: noline's decoder accepts
    /// overlong forms, surrogates and values above U+10FFFF and stores them in
    /// a buffer it later treats as `str` unchecked (undefined behavior).
    /// Invalid bytes are dropped; a byte that cannot continue the character is
    /// read again as input.
    fn read_utf8_character(&mut self, first_byte: u8) {
        let length = match first_byte {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => return,
        };
        let mut encoded = [first_byte, 0, 0, 0];
        for slot in encoded.iter_mut().take(length).skip(1) {
            match self.read_raw(SEQUENCE_BYTE_TIMEOUT_MS) {
                Some(byte @ 0x80..=0xbf) => *slot = byte,
                Some(other) => {
                    self.state.byte_to_reexamine = Some(other);
                    return;
                }
                None => return,
            }
        }
        let encoded = encoded.get(..length).unwrap_or_default();
        if core::str::from_utf8(encoded).is_ok() {
            self.state.ready_for_editor.extend(encoded.iter().copied());
        }
    }

    /// Answers the oldest outstanding query: waits briefly for the real
    /// terminal, keeps whatever else arrives for later.
    fn answer_query(&mut self, query: Query) -> (u32, u32) {
        // Keys typed ahead are waiting already: answer at once (a late real
        // answer is dropped as unsolicited).
        if !self.state.ready_for_editor.is_empty() || self.state.byte_to_reexamine.is_some() {
            return self.state.answer_for(query, None);
        }
        let report = match self.read_raw(ANSWER_TIMEOUT_MS) {
            None => None,
            Some(ESCAPE) => match self.read_escape_sequence() {
                EscapeInput::CursorReport(report) => report,
                EscapeInput::Key(key) => {
                    self.state.ready_for_editor.extend(key.iter().copied());
                    None
                }
                EscapeInput::Dropped => None,
            },
            Some(other) => {
                // Examined like any input once the answer is given.
                self.state.byte_to_reexamine = Some(other);
                None
            }
        };
        self.state.answer_for(query, report)
    }

    /// The next byte noline gets, or `None` once the line is closed.
    fn next_byte_for_editor(&mut self) -> Option<u8> {
        loop {
            if let Some(query) = self.state.outstanding_queries.pop_front() {
                let (row, column) = self.answer_query(query);
                let mut answer = CursorReportText::default();
                answer.format(row, column);
                // The answer goes before anything typed ahead.
                for &byte in answer.as_bytes().iter().rev() {
                    self.state.ready_for_editor.push_front(byte);
                }
            }
            if let Some(byte) = self.state.ready_for_editor.pop_front() {
                return Some(byte);
            }
            let byte = self.read_raw_blocking()?;
            if byte >= 0x80 {
                self.read_utf8_character(byte);
                continue;
            }
            if byte != ESCAPE {
                return Some(byte);
            }
            match self.read_escape_sequence() {
                EscapeInput::Key(key) => self.state.ready_for_editor.extend(key.iter().copied()),
                // Unsolicited reports (late answers) and unknown sequences.
                EscapeInput::CursorReport(_) | EscapeInput::Dropped => {}
            }
        }
    }
}

/// Maps a complete control sequence to what noline may see.
fn classify_control_sequence(parameters: &[u8], final_byte: u8) -> EscapeInput {
    match (final_byte, parameters) {
        // Modifiers (`1;5C` = Ctrl+Right) are ignored: plain cursor keys.
        (b'A', _) => EscapeInput::Key(KEY_UP),
        (b'B', _) => EscapeInput::Key(KEY_DOWN),
        (b'C', _) => EscapeInput::Key(KEY_RIGHT),
        (b'D', _) => EscapeInput::Key(KEY_LEFT),
        (b'H', b"") | (b'~', b"1" | b"7") => EscapeInput::Key(KEY_HOME),
        (b'F', b"") | (b'~', b"4" | b"8") => EscapeInput::Key(KEY_END),
        (b'~', b"3") => EscapeInput::Key(KEY_DELETE),
        (b'R', _) => EscapeInput::CursorReport(parse_cursor_report(parameters)),
        _ => EscapeInput::Dropped,
    }
}

/// Parses `<row>;<column>` (decimal, 1 to 4 digits each).
fn parse_cursor_report(parameters: &[u8]) -> Option<(u32, u32)> {
    let separator = parameters.iter().position(|&byte| byte == b';')?;
    let row = parse_small_decimal(parameters.get(..separator)?)?;
    let column = parse_small_decimal(parameters.get(separator + 1..)?)?;
    Some((row, column))
}

fn parse_small_decimal(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 4 {
        return None;
    }
    digits.iter().try_fold(0u32, |value, &digit| digit.is_ascii_digit().then(|| value * 10 + u32::from(digit - b'0')))
}

/// `ESC[<row>;<column>R` formatted without allocation.
#[derive(Default)]
struct CursorReportText {
    bytes: [u8; 16],
    length: usize,
}

impl CursorReportText {
    fn push(&mut self, byte: u8) {
        if let Some(slot) = self.bytes.get_mut(self.length) {
            *slot = byte;
            self.length += 1;
        }
    }

    fn push_decimal(&mut self, value: u32) {
        let mut digits = [0u8; 10];
        let mut count = 0;
        let mut remaining = value;
        loop {
            if let Some(slot) = digits.get_mut(count) {
                *slot = b'0' + (remaining % 10) as u8;
            }
            count += 1;
            remaining /= 10;
            if remaining == 0 || count >= digits.len() {
                break;
            }
        }
        for &digit in digits.iter().take(count).rev() {
            self.push(digit);
        }
    }

    fn format(&mut self, row: u32, column: u32) {
        self.length = 0;
        self.push(ESCAPE);
        self.push(b'[');
        self.push_decimal(row);
        self.push(b';');
        self.push_decimal(column);
        self.push(b'R');
    }

    fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.length).unwrap_or_default()
    }
}

impl embedded_io::ErrorType for TerminalAnswerback<'_> {
    type Error = Infallible;
}

impl embedded_io::Read for TerminalAnswerback<'_> {
    /// Gives noline one byte at a time; `Ok(0)` (end of file, which noline
    /// turns into `Aborted`) only once the line is closed.
    fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Self::Error> {
        let Some(slot) = buffer.first_mut() else {
            return Ok(0);
        };
        match self.next_byte_for_editor() {
            Some(byte) => {
                *slot = byte;
                Ok(1)
            }
            None => Ok(0),
        }
    }
}

impl embedded_io::Write for TerminalAnswerback<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<usize, Self::Error> {
        self.state.observe_output(bytes);
        self.line.write_bytes(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ScriptedLine;
    use alloc::vec::Vec;
    use embedded_io::{Read, Write};

    fn read_all(state: &mut AnswerbackState, line: &mut ScriptedLine) -> Vec<u8> {
        let mut shim = TerminalAnswerback::new(state, line);
        let mut received = Vec::new();
        let mut byte = [0u8; 1];
        while shim.read(&mut byte) == Ok(1) {
            received.push(byte[0]);
        }
        received
    }

    #[test]
    fn answers_queries_when_terminal_is_silent() {
        let mut state = AnswerbackState::new(8);
        let mut line = ScriptedLine::new(b"ab");
        {
            let mut shim = TerminalAnswerback::new(&mut state, &mut line);
            shim.write_all(b"\x1b7\x1b[999;999H\x1b[6n\x1b8").unwrap();
        }
        let received = read_all(&mut state, &mut line);
        assert_eq!(received, b"\x1b[24;80Rab");
        {
            let mut shim = TerminalAnswerback::new(&mut state, &mut line);
            shim.write_all(b"\r\x1b[Jbasalt> \x1b[6n").unwrap();
        }
        assert_eq!(read_all(&mut state, &mut line), b"\x1b[24;9R");
    }

    #[test]
    fn passes_valid_answers_and_replaces_bad_ones() {
        let mut state = AnswerbackState::new(8);
        let mut line = ScriptedLine::new(b"\x1b[50;132R");
        TerminalAnswerback::new(&mut state, &mut line).write_all(b"\x1b[999;999H\x1b[6n").unwrap();
        assert_eq!(read_all(&mut state, &mut line), b"\x1b[50;132R");
        assert_eq!(state.terminal_size(), (50, 132));

        state.clear_input_closed();
        let mut line = ScriptedLine::new(b"\x1b[0;0R");
        TerminalAnswerback::new(&mut state, &mut line).write_all(b"\x1b[6n").unwrap();
        assert_eq!(read_all(&mut state, &mut line), b"\x1b[50;9R");

        state.clear_input_closed();
        let mut line = ScriptedLine::new(b"\x1b[5Rx");
        TerminalAnswerback::new(&mut state, &mut line).write_all(b"\x1b[999;999H\x1b[6n").unwrap();
        assert_eq!(read_all(&mut state, &mut line), b"\x1b[24;80Rx");
    }

    #[test]
    fn filters_escape_sequences_without_queries() {
        let mut state = AnswerbackState::new(8);
        let input = b"a\x1b[12;40R\x1b[A\x1bOB\x1b[1;5C\x1b[3~\x1b[200~\x1b[99999999999999999999;1Rb\x1b\x03";
        let mut line = ScriptedLine::new(input);
        assert_eq!(read_all(&mut state, &mut line), b"a\x1b[A\x1b[B\x1b[C\x1b[3~b\x03");
    }

    #[test]
    fn abandons_overlong_sequences() {
        let mut state = AnswerbackState::new(8);
        let mut input = b"\x1b[".to_vec();
        input.extend(core::iter::repeat_n(b'9', 100));
        input.push(b'z');
        let mut line = ScriptedLine::new(&input);
        let received = read_all(&mut state, &mut line);
        assert!(received.iter().all(|&byte| byte != ESCAPE));
        assert_eq!(received.last(), Some(&b'z'));
    }

    #[test]
    fn keystroke_during_wait_is_kept_after_answer() {
        let mut state = AnswerbackState::new(8);
        let mut line = ScriptedLine::new(b"\x1b[Ax");
        TerminalAnswerback::new(&mut state, &mut line).write_all(b"\x1b[6n").unwrap();
        assert_eq!(read_all(&mut state, &mut line), b"\x1b[24;9R\x1b[Ax");
    }
}

/// How long after attaching a cursor-position report is taken as the shell's.
pub const LATE_ANSWER_WINDOW_NS: u64 = 500_000_000;

/// For commands that hand the serial line to something else (`console`): the shell asks the terminal for the cursor position after each prompt; when
/// `console` was typed (or pasted) before the answer (`ESC [ row ; col R`) came, the
/// answer arrives after attaching. It belongs to the shell, so the first one in the
/// first half second is dropped instead of reaching the guest; anything else is
/// forwarded unchanged.
pub struct LateAnswerFilter {
    deadline_ns: u64,
    held: alloc::vec::Vec<u8>,
}

enum AnswerMatch {
    Prefix,
    Complete,
    Other,
}

fn match_cursor_report(bytes: &[u8]) -> AnswerMatch {
    const ESC: u8 = 0x1b;
    match bytes {
        [] | [ESC] | [ESC, b'['] => AnswerMatch::Prefix,
        [ESC, b'[', rest @ ..] => {
            let (body, last) = rest.split_at(rest.len() - 1);
            let body_ok = body.iter().all(|byte| byte.is_ascii_digit() || *byte == b';') && body.len() < 16;
            match last[0] {
                b'R' if body_ok && body.contains(&b';') => AnswerMatch::Complete,
                byte if body_ok && (byte.is_ascii_digit() || byte == b';') => AnswerMatch::Prefix,
                _ => AnswerMatch::Other,
            }
        }
        _ => AnswerMatch::Other,
    }
}

impl LateAnswerFilter {
    pub fn new(now_ns: u64) -> LateAnswerFilter {
        LateAnswerFilter { deadline_ns: now_ns + LATE_ANSWER_WINDOW_NS, held: alloc::vec::Vec::new() }
    }

    /// Feeds one typed byte; calls `forward` with what should reach the guest.
    pub fn feed(&mut self, byte: u8, now_ns: u64, forward: &mut dyn FnMut(&[u8])) {
        if now_ns > self.deadline_ns && self.held.is_empty() {
            forward(&[byte]);
            return;
        }
        self.held.push(byte);
        match match_cursor_report(&self.held) {
            AnswerMatch::Prefix => {}
            AnswerMatch::Complete => {
                self.held.clear();
                self.deadline_ns = 0;
            }
            AnswerMatch::Other => {
                forward(&self.held);
                self.held.clear();
            }
        }
    }

    /// Passes on a held partial sequence once the window has closed.
    pub fn expire(&mut self, now_ns: u64, forward: &mut dyn FnMut(&[u8])) {
        if now_ns > self.deadline_ns && !self.held.is_empty() {
            forward(&self.held);
            self.held.clear();
        }
    }
}

#[cfg(test)]
mod late_answer_tests {
    use super::*;
    use alloc::vec::Vec;

    fn run(filter: &mut LateAnswerFilter, input: &[u8], now_ns: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for &byte in input {
            filter.feed(byte, now_ns, &mut |bytes: &[u8]| out.extend_from_slice(bytes));
        }
        out
    }

    #[test]
    fn drops_one_late_cursor_report_and_forwards_the_rest() {
        let mut filter = LateAnswerFilter::new(0);
        assert_eq!(run(&mut filter, b"\x1b[24;80Rhello\r", 1), b"hello\r");
        // Only the first report: a second one is the guest's business.
        assert_eq!(run(&mut filter, b"\x1b[1;1R", 2), b"\x1b[1;1R");
    }

    #[test]
    fn other_escapes_and_late_reports_pass_through() {
        let mut filter = LateAnswerFilter::new(0);
        assert_eq!(run(&mut filter, b"\x1b[A\x1b[12x", 1), b"\x1b[A\x1b[12x");
        let mut late = LateAnswerFilter::new(0);
        assert_eq!(run(&mut late, b"\x1b[24;80R", LATE_ANSWER_WINDOW_NS + 1), b"\x1b[24;80R");
        // A partial sequence held at the deadline is passed on.
        let mut partial = LateAnswerFilter::new(0);
        assert_eq!(run(&mut partial, b"\x1b[2", 1), b"");
        let mut out = Vec::new();
        partial.expire(LATE_ANSWER_WINDOW_NS + 1, &mut |bytes: &[u8]| out.extend_from_slice(bytes));
        assert_eq!(out, b"\x1b[2");
    }

    #[test]
    fn random_bytes_are_never_lost_except_one_report() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        for _ in 0..2000 {
            let mut input = Vec::new();
            for _ in 0..(seed % 24) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                input.push(*b"\x1b[;R0123456789ab".get((seed % 17) as usize).unwrap_or(&b'x'));
            }
            let mut filter = LateAnswerFilter::new(0);
            let mut out = run(&mut filter, &input, 1);
            filter.expire(LATE_ANSWER_WINDOW_NS + 1, &mut |bytes: &[u8]| out.extend_from_slice(bytes));
            assert!(out.len() <= input.len());
            assert!(out.len() + 18 >= input.len(), "{input:?} → {out:?}");
        }
    }
}
