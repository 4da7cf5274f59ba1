//! Everything the machine said on its serial line, and the terminal that answers it.
//!
//! A reader thread appends each chunk of serial output to a [`Transcript`] shared with
//! the test thread through a mutex and condition variable. The transcript keeps:
//! - `raw`: the bytes exactly as received;
//! - `stripped`: the same text with escape sequences and carriage returns removed
//!   (see [`crate::ansi`]), which is what patterns are matched against;
//! - `events`: timestamped notes from the harness (lines sent, expectations met), so a
//!   saved transcript shows who said what when.
//!
//! Terminal emulation: the shell's line editor asks for the cursor position (DSR,
//! `ESC [6n`) before each prompt. Every query seen in `raw` — even one split across
//! reads — is answered with `ESC [24;80R` while the transcript lock is held, i.e.
//! before the test thread can observe the prompt that follows the query, so test input
//! can never overtake an answer.

use std::io::{Read, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::ansi::AnsiStripper;

/// The cursor-position request the shell sends.
pub const CURSOR_POSITION_QUERY: &[u8] = b"\x1b[6n";
/// Our answer: a 24×80 terminal with the cursor in the bottom-right corner.
pub const CURSOR_POSITION_REPLY: &[u8] = b"\x1b[24;80R";

/// Serial output received so far plus harness notes.
#[derive(Debug)]
pub struct Transcript {
    /// Bytes as received.
    pub raw: Vec<u8>,
    /// Readable text: escapes, `\r` and other controls removed.
    pub stripped: Vec<u8>,
    stripper: AnsiStripper,
    /// Offset into `raw` where the next query scan starts.
    query_scan: usize,
    /// Number of cursor-position queries answered.
    pub queries_answered: usize,
    /// Set when the serial stream ended (the emulator exited or closed it).
    pub closed: bool,
    /// (time since start, note) pairs.
    pub events: Vec<(Duration, String)>,
    started: Instant,
}

impl Transcript {
    fn new(started: Instant) -> Self {
        Self {
            raw: Vec::new(),
            stripped: Vec::new(),
            stripper: AnsiStripper::new(),
            query_scan: 0,
            queries_answered: 0,
            closed: false,
            events: Vec::new(),
            started,
        }
    }

    /// Appends received bytes; returns how many cursor-position queries they completed.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        self.raw.extend_from_slice(bytes);
        self.stripper.feed(bytes, &mut self.stripped);
        let mut queries = 0;
        while let Some(index) = self.raw[self.query_scan..]
            .windows(CURSOR_POSITION_QUERY.len())
            .position(|window| window == CURSOR_POSITION_QUERY)
        {
            queries += 1;
            self.query_scan += index + CURSOR_POSITION_QUERY.len();
        }
        // Keep a partial query at the end for the next chunk.
        self.query_scan = self.query_scan.max(self.raw.len().saturating_sub(CURSOR_POSITION_QUERY.len() - 1));
        queries
    }

    /// Records a harness note with the time since the machine started.
    pub fn note(&mut self, text: impl Into<String>) {
        self.events.push((self.started.elapsed(), text.into()));
    }

    /// The stripped transcript as (lossy) UTF-8.
    pub fn stripped_text(&self) -> String {
        String::from_utf8_lossy(&self.stripped).into_owned()
    }

    /// The last `count` lines of the stripped transcript, each cut to
    /// [`TAIL_LINE_CHARS`] characters (a 4 KiB line of garbage would drown the report).
    pub fn tail(&self, count: usize) -> String {
        let text = self.stripped_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(count)..]
            .iter()
            .map(|line| match line.char_indices().nth(TAIL_LINE_CHARS) {
                Some((cut, _)) => format!("{}... ({} more bytes)", &line[..cut], line.len() - cut),
                None => (*line).to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Longest line [`Transcript::tail`] shows in full.
pub const TAIL_LINE_CHARS: usize = 200;

/// The transcript plus the condition variable signalled on every change.
pub type SharedTranscript = Arc<(Mutex<Transcript>, Condvar)>;

/// The serial input side, shared by the test thread and the query-answering reader.
pub type SerialInput = Arc<Mutex<Box<dyn Write + Send>>>;

/// Creates an empty shared transcript.
pub fn shared(started: Instant) -> SharedTranscript {
    Arc::new((Mutex::new(Transcript::new(started)), Condvar::new()))
}

/// Locks the transcript, recovering from a poisoned lock (a panicking test thread must
/// not hide the transcript from the error report).
pub fn lock(shared: &SharedTranscript) -> MutexGuard<'_, Transcript> {
    shared.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads `serial_output` until end of stream, appending to `shared` and answering
/// cursor-position queries on `serial_input`. Runs on its own thread.
pub fn pump(mut serial_output: Box<dyn Read + Send>, shared: SharedTranscript, serial_input: SerialInput) {
    let mut buffer = [0u8; 4096];
    loop {
        let count = match serial_output.read(&mut buffer) {
            Ok(0) => 0,
            Ok(count) => count,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        let mut transcript = lock(&shared);
        if count == 0 {
            transcript.closed = true;
            transcript.note("serial stream closed");
            drop(transcript);
            shared.1.notify_all();
            return;
        }
        let queries = transcript.push(&buffer[..count]);
        if queries > 0 {
            let mut input = serial_input.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for _ in 0..queries {
                // A write error means the emulator is gone; the closed stream reports it.
                let _ = input.write_all(CURSOR_POSITION_REPLY);
            }
            let _ = input.flush();
            transcript.queries_answered += queries;
        }
        drop(transcript);
        shared.1.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_counted_once_even_when_split() {
        let raw: &[u8] = b"log\r\n\x1b7\x1b[999;999H\x1b[6n\x1b8\x1b[6nbasalt> ";
        for chunk in 1..raw.len() {
            let mut transcript = Transcript::new(Instant::now());
            let total: usize = raw.chunks(chunk).map(|piece| transcript.push(piece)).sum();
            assert_eq!(total, 2, "chunk size {chunk}");
            assert_eq!(transcript.stripped, b"log\nbasalt> ");
        }
    }

    #[test]
    fn pump_answers_queries_and_closes() {
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(data);
                Ok(data.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let written = Arc::new(Mutex::new(Vec::new()));
        let input: SerialInput = Arc::new(Mutex::new(Box::new(Sink(written.clone()))));
        let shared = shared(Instant::now());
        let output: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(b"\x1b[6nhi\x1b[6n\r\n".to_vec()));
        pump(output, shared.clone(), input);
        let transcript = lock(&shared);
        assert!(transcript.closed);
        assert_eq!(transcript.queries_answered, 2);
        assert_eq!(transcript.stripped_text(), "hi\n");
        assert_eq!(&*written.lock().unwrap(), b"\x1b[24;80R\x1b[24;80R");
        assert_eq!(transcript.tail(1), "hi");
    }

    #[test]
    fn tail_cuts_long_lines() {
        let mut transcript = Transcript::new(Instant::now());
        transcript.push(b"one\n");
        transcript.push(&[b'x'; 500]);
        transcript.push(b"\nthree\n");
        let tail = transcript.tail(2);
        assert!(tail.starts_with(&"x".repeat(TAIL_LINE_CHARS)), "{tail}");
        assert!(tail.contains("... (300 more bytes)\nthree"), "{tail}");
        assert_eq!(transcript.tail(9).lines().count(), 3);
    }
}
