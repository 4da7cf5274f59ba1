//! Streaming removal of terminal escape sequences from serial output.
//!
//! The serial line carries GRUB's menu (vt100 cursor motion, colours), the hypervisor
//! log and the noline line editor, which brackets every prompt with cursor-position
//! queries (`ESC 7`, `ESC [999;999H`, `ESC [6n`, `ESC 8`). Tests match against text a
//! person would read, so [`AnsiStripper`] removes:
//! - CSI sequences `ESC [ params intermediates final` (ECMA-48 §5.4: parameter bytes
//!   0x30–0x3F, intermediate bytes 0x20–0x2F, final byte 0x40–0x7E);
//! - string sequences OSC/DCS/SOS/PM/APC (`ESC ]`, `ESC P`, `ESC X`, `ESC ^`, `ESC _`)
//!   up to BEL or ST (`ESC \`);
//! - other escape sequences `ESC intermediates* final` (e.g. `ESC 7`, `ESC ( B`);
//! - carriage returns and every other C0 control byte and DEL, except `\n` and `\t`.
//!
//! Invariant: the stripper is a pure byte-level state machine, so feeding a stream in
//! arbitrary chunks gives the same output as feeding it at once (sequences split across
//! reads are handled). Bytes ≥ 0x80 pass through untouched (GRUB may draw its menu box
//! in UTF-8); 8-bit C1 controls are not interpreted.

/// Where the stripper is inside an escape sequence.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum State {
    /// Plain text.
    Ground,
    /// Just saw ESC.
    Escape,
    /// Inside `ESC` + intermediate bytes, waiting for the final byte.
    EscapeIntermediate,
    /// Inside a CSI sequence, waiting for its final byte.
    Csi,
    /// Inside an OSC/DCS/... string, waiting for BEL or ST.
    String,
    /// Inside a string, just saw ESC (an ST is `ESC \`).
    StringEscape,
}

/// Incremental escape-sequence remover; see the module docs for what is removed.
#[derive(Clone, Debug)]
pub struct AnsiStripper {
    state: State,
}

impl Default for AnsiStripper {
    fn default() -> Self {
        Self::new()
    }
}

const ESC: u8 = 0x1b;
const BEL: u8 = 0x07;

impl AnsiStripper {
    /// A stripper in the plain-text state.
    pub fn new() -> Self {
        Self { state: State::Ground }
    }

    /// Feeds `input`, appending the readable text to `output`.
    pub fn feed(&mut self, input: &[u8], output: &mut Vec<u8>) {
        for &byte in input {
            self.state = match self.state {
                State::Ground => match byte {
                    ESC => State::Escape,
                    b'\n' | b'\t' => {
                        output.push(byte);
                        State::Ground
                    }
                    0x00..=0x1f | 0x7f => State::Ground,
                    _ => {
                        output.push(byte);
                        State::Ground
                    }
                },
                State::Escape => match byte {
                    b'[' => State::Csi,
                    b']' | b'P' | b'X' | b'^' | b'_' => State::String,
                    ESC => State::Escape,
                    0x20..=0x2f => State::EscapeIntermediate,
                    // A control byte aborts the sequence (the byte itself is a control
                    // we drop anyway, except newline which is kept).
                    b'\n' => {
                        output.push(byte);
                        State::Ground
                    }
                    _ => State::Ground,
                },
                State::EscapeIntermediate => match byte {
                    0x20..=0x2f => State::EscapeIntermediate,
                    ESC => State::Escape,
                    _ => State::Ground,
                },
                State::Csi => match byte {
                    0x20..=0x3f => State::Csi,
                    ESC => State::Escape,
                    // Final byte, or a stray control/8-bit byte that aborts the sequence.
                    _ => State::Ground,
                },
                State::String => match byte {
                    BEL => State::Ground,
                    ESC => State::StringEscape,
                    _ => State::String,
                },
                State::StringEscape => match byte {
                    b'\\' => State::Ground,
                    ESC => State::StringEscape,
                    _ => State::String,
                },
            };
        }
    }
}

/// Strips a complete byte string at once.
pub fn strip(input: &[u8]) -> Vec<u8> {
    let mut output = Vec::with_capacity(input.len());
    AnsiStripper::new().feed(input, &mut output);
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip_str(input: &str) -> String {
        String::from_utf8(strip(input.as_bytes())).unwrap()
    }

    #[test]
    fn plain_text_passes_and_cr_is_dropped() {
        assert_eq!(strip_str("hello\r\nworld\t!\r\n"), "hello\nworld\t!\n");
    }

    #[test]
    fn noline_prompt_queries_are_removed() {
        let raw = "\x1b7\x1b[999;999H\x1b[6n\x1b8\x1b[6nbasalt> ";
        assert_eq!(strip_str(raw), "basalt> ");
    }

    #[test]
    fn csi_colours_cursor_motion_and_private_modes() {
        assert_eq!(strip_str("\x1b[1;37;44mGNU GRUB\x1b[0m\x1b[?25l\x1b[2J\x1b[H ok"), "GNU GRUB ok");
        assert_eq!(strip_str("a\x1b[Kb\x1b[3;1Hc"), "abc");
    }

    #[test]
    fn two_byte_and_intermediate_escapes() {
        assert_eq!(strip_str("\x1b(Bx\x1b=y\x1b>z\x1bcq"), "xyzq");
    }

    #[test]
    fn osc_strings_end_at_bel_or_st() {
        assert_eq!(strip_str("\x1b]0;title\x07after"), "after");
        assert_eq!(strip_str("\x1b]0;title\x1b\\after"), "after");
        assert_eq!(strip_str("\x1bPdcs data\x1b\\x"), "x");
    }

    #[test]
    fn controls_and_del_are_dropped_utf8_kept() {
        assert_eq!(strip_str("a\x00\x01\x08\x7fb"), "ab");
        assert_eq!(strip_str("┌─┐"), "┌─┐");
    }

    #[test]
    fn chunked_feed_equals_whole_feed() {
        let raw = b"log\r\n\x1b7\x1b[999;999H\x1b[6n\x1b8\x1b]2;t\x1b\\\x1b[6nbasalt> \x1b[1mx\x1b[0m\r\n";
        let whole = strip(raw);
        for chunk in 1..raw.len() {
            let mut stripper = AnsiStripper::new();
            let mut out = Vec::new();
            for piece in raw.chunks(chunk) {
                stripper.feed(piece, &mut out);
            }
            assert_eq!(out, whole, "chunk size {chunk}");
        }
    }

    #[test]
    fn escape_soup_never_panics_and_recovers() {
        let soup = b"\x1b\x1b[\x1b[999999999999;1R\x1bO\x1b[200~p\x1b[201~\x1b]x\x07ok";
        assert_eq!(strip(soup), b"pok");
    }
}
