//! The read-eval-print loop on the serial line: [`SerialLine`] (what image/
//! implements over its UART), [`Shell`] (dispatch and error printing) and
//! [`LineEditor`] (noline with static buffers plus the answerback shim).
//!
//! Why this split: [`Shell::execute_line`] is the one place that turns a
//! [`CommandError`] or a parse error into what the operator reads, and it
//! works on any `fmt::Write`, so commands are tested without a terminal.
//! [`Shell::serve_one_line`] does one prompt/read/execute round and returns,
//! so tests (and a cooperative scheduler) can drive the loop; [`Shell::run`]
//! repeats it forever.
//!
//! Two modes: the command shell (prompt [`PROMPT`]) and, after `mdb DOMAIN`, a
//! debugger session (prompt [`DEBUGGER_PROMPT`]) that gets every line until it
//! answers [`SessionFlow::Quit`]. The shell keeps the session, so the mode
//! lives in one place and both entry points ([`Shell::execute_line`] and
//! [`Shell::serve_one_line`]) follow it.
//!
//! Invariants: the loop never exits and never panics on input; whatever
//! noline reports (Ctrl-C, Ctrl-D on an empty line, an I/O error) ends only
//! the current line (in either mode). Output to the serial line uses `"\r\n"`
//! line ends.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::Cell;
use core::fmt::{self, Write as _};

use noline::error::NolineError;
use noline::history::SliceHistory;
use noline::line_buffer::{LineBuffer, SliceBuffer};
use noline::sync_editor::Editor;

use crate::answerback::{AnswerbackState, TerminalAnswerback, IDLE_POLL_MS};
use crate::builtin::Printable;
use crate::command::{CommandError, Invocation, Registry};
use crate::debugger::{DebugSession, SessionFlow, DEBUGGER_PROMPT};
use crate::parse::tokenize;

/// The prompt, printed before every command line (the debugger's is
/// [`DEBUGGER_PROMPT`]).
pub const PROMPT: &str = "basalt> ";
/// Capacity of the line being edited, in bytes; typing beyond it rings the bell.
pub const LINE_BUFFER_BYTES: usize = 256;
/// Capacity of the command history, in bytes (oldest entries are dropped).
pub const HISTORY_BUFFER_BYTES: usize = 4096;

/// The serial port the shell talks over, implemented by image/ over its UART
/// (and by `testing::ScriptedLine` on the host).
pub trait SerialLine {
    /// Returns the next received byte, waiting at most `timeout_ms`
    /// milliseconds (0: only poll). `None` if nothing arrived in time.
    fn read_byte(&mut self, timeout_ms: u32) -> Option<u8>;
    /// Sends bytes, waiting as needed; never fails.
    fn write_bytes(&mut self, bytes: &[u8]);
    /// True if no byte will ever arrive again. A UART never closes (keep the
    /// default); test doubles use it to end [`Shell::run_until_closed`].
    fn is_closed(&mut self) -> bool {
        false
    }
}

/// `fmt::Write` over a [`SerialLine`] that turns `"\n"` into `"\r\n"`.
pub struct SerialWriter<'a> {
    line: &'a mut dyn SerialLine,
}

impl<'a> SerialWriter<'a> {
    /// Writes to `line`.
    pub fn new(line: &'a mut dyn SerialLine) -> Self {
        Self { line }
    }
}

impl fmt::Write for SerialWriter<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut pieces = text.split('\n');
        if let Some(first) = pieces.next() {
            self.line.write_bytes(first.as_bytes());
        }
        for piece in pieces {
            self.line.write_bytes(b"\r\n");
            self.line.write_bytes(piece.as_bytes());
        }
        Ok(())
    }
}

/// Memory for one [`LineEditor`]: the line being edited and the history.
/// 4.3 KiB; [`Shell::run`] keeps it on the heap.
pub struct EditorStorage {
    line: [u8; LINE_BUFFER_BYTES],
    history: [u8; HISTORY_BUFFER_BYTES],
}

impl EditorStorage {
    /// Zeroed storage.
    pub const fn new() -> Self {
        Self { line: [0; LINE_BUFFER_BYTES], history: [0; HISTORY_BUFFER_BYTES] }
    }
}

impl Default for EditorStorage {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a [`LineEditor`] could not be built (noline 0.5.1 never fails here,
/// but its API says it may).
#[derive(Debug)]
pub struct LineEditorError(pub NolineError);

/// noline's editor over [`EditorStorage`], plus the answerback shim's state.
/// Keeps history and terminal size from one line to the next.
pub struct LineEditor<'storage> {
    editor: Editor<SliceBuffer<'storage>, SliceHistory<'storage>>,
    answerback: AnswerbackState,
}

impl<'storage> LineEditor<'storage> {
    /// An editor using `storage` for its buffers.
    pub fn new(storage: &'storage mut EditorStorage) -> Result<Self, LineEditorError> {
        let mut unused_line = DisconnectedLine;
        let mut answerback = AnswerbackState::new(PROMPT.len());
        let editor = Editor::new(
            LineBuffer::from_slice(&mut storage.line),
            SliceHistory::new(&mut storage.history),
            // noline's constructor takes the I/O but does not use it.
            &mut TerminalAnswerback::new(&mut answerback, &mut unused_line),
        )
        .map_err(LineEditorError)?;
        Ok(Self { editor, answerback })
    }
}

/// A line that never delivers anything (see [`LineEditor::new`]).
struct DisconnectedLine;

impl SerialLine for DisconnectedLine {
    fn read_byte(&mut self, _timeout_ms: u32) -> Option<u8> {
        None
    }
    fn write_bytes(&mut self, _bytes: &[u8]) {}
    fn is_closed(&mut self) -> bool {
        true
    }
}

/// What one round of [`Shell::serve_one_line`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOutcome {
    /// A line was read and executed (an empty line does nothing).
    Executed,
    /// The line was abandoned (Ctrl-C, Ctrl-D on an empty line, an editor
    /// error); a fresh prompt follows.
    Abandoned,
    /// The serial line is closed (test doubles only).
    InputClosed,
}

/// The shell: a command registry, the open debugger session (if any) and the
/// loop around them.
pub struct Shell<C: 'static> {
    registry: Registry<C>,
    /// Set by `mdb`, cleared when the session quits. A `Cell` (taken out while a
    /// line runs, put back after) so the shell stays usable through `&self`.
    session: Cell<Option<Box<dyn DebugSession>>>,
}

impl<C: 'static> Shell<C> {
    /// A shell dispatching to `registry`.
    pub fn new(registry: Registry<C>) -> Self {
        Self { registry, session: Cell::new(None) }
    }

    /// True while a debugger session gets the lines.
    pub fn in_debugger(&self) -> bool {
        let session = self.session.take();
        let open = session.is_some();
        self.session.set(session);
        open
    }

    /// The prompt for the next line: [`DEBUGGER_PROMPT`] in a debugger session,
    /// else [`PROMPT`].
    pub fn prompt(&self) -> &'static str {
        if self.in_debugger() {
            DEBUGGER_PROMPT
        } else {
            PROMPT
        }
    }

    /// The commands this shell knows.
    pub fn registry(&self) -> &Registry<C> {
        &self.registry
    }

    /// Runs one line, writing its output (and any error) to `out`. In a
    /// debugger session the line goes to the session as typed (and `$q` ends
    /// it); otherwise it is parsed as a command:
    /// - blank line: nothing;
    /// - parse error: `error: <why>`;
    /// - unknown command: `error: unknown command 'foo'; type 'help' for a list`;
    /// - [`CommandError::Usage`]: `error: <message>` then `usage: <usage>`;
    /// - [`CommandError::Failed`]: `error: <message>`.
    pub fn execute_line(&self, context: &mut C, line: &str, out: &mut dyn fmt::Write) {
        let mut session = self.session.take();
        match session.as_mut() {
            Some(open) => {
                if open.execute(line, out) == SessionFlow::Quit {
                    session = None;
                }
            }
            None => self.execute_command(context, line, out, &mut session),
        }
        self.session.set(session);
    }

    /// Parses and runs one command line; `mdb` may fill `session`.
    fn execute_command(
        &self,
        context: &mut C,
        line: &str,
        out: &mut dyn fmt::Write,
        session: &mut Option<Box<dyn DebugSession>>,
    ) {
        // Output errors are ignored here: there is nowhere else to report them.
        let words = match tokenize(line) {
            Ok(words) => words,
            Err(error) => {
                let _ = writeln!(out, "error: {error}");
                return;
            }
        };
        let Some((name, arguments)) = words.split_first() else {
            return;
        };
        let Some(command) = self.registry.find(name) else {
            let _ = writeln!(out, "error: unknown command '{}'; type 'help' for a list", Printable(name));
            return;
        };
        let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
        let mut invocation =
            Invocation { context, args: &arguments, out: &mut *out, registry: &self.registry, session };
        match (command.run)(&mut invocation) {
            Ok(()) => {}
            Err(CommandError::Usage(message)) => {
                let _ = writeln!(out, "error: {message}");
                let _ = writeln!(out, "usage: {}", command.usage);
            }
            Err(CommandError::Failed(message)) => {
                let _ = writeln!(out, "error: {message}");
            }
        }
    }

    /// Prompts ([`Shell::prompt`]), reads one line with editing and history,
    /// and executes it.
    pub fn serve_one_line(
        &self,
        editor: &mut LineEditor<'_>,
        context: &mut C,
        line: &mut dyn SerialLine,
    ) -> LineOutcome {
        let prompt = self.prompt();
        editor.answerback.set_prompt_columns(prompt.len());
        let result = {
            let mut terminal = TerminalAnswerback::new(&mut editor.answerback, &mut *line);
            editor.editor.readline(prompt, &mut terminal).map(String::from)
        };
        match result {
            Ok(text) => {
                self.execute_line(context, &text, &mut SerialWriter::new(line));
                LineOutcome::Executed
            }
            Err(_) if editor.answerback.input_closed() => LineOutcome::InputClosed,
            Err(error) => {
                // On Ctrl-C/Ctrl-D noline has already moved to a new line.
                if !matches!(error, NolineError::Aborted) {
                    line.write_bytes(b"\r\n");
                }
                LineOutcome::Abandoned
            }
        }
    }

    /// The shell on `line`, forever. Call once the hypervisor is up.
    pub fn run(&self, context: &mut C, line: &mut dyn SerialLine) -> ! {
        let mut storage = Box::new(EditorStorage::new());
        match LineEditor::new(&mut storage) {
            Ok(mut editor) => loop {
                if self.serve_one_line(&mut editor, context, line) == LineOutcome::InputClosed {
                    // Not expected of a UART; wait for it to come back.
                    while line.is_closed() {
                        let _ = line.read_byte(IDLE_POLL_MS);
                    }
                    editor.answerback.clear_input_closed();
                }
            },
            Err(error) => {
                let _ = writeln!(SerialWriter::new(line), "error: shell line editor unavailable: {error:?}");
                loop {
                    let _ = line.read_byte(IDLE_POLL_MS);
                }
            }
        }
    }

    /// Like [`Shell::run`], but returns once `line` is closed. For tests and
    /// fuzzing with a scripted line.
    pub fn run_until_closed(&self, context: &mut C, line: &mut dyn SerialLine) {
        let mut storage = Box::new(EditorStorage::new());
        let Ok(mut editor) = LineEditor::new(&mut storage) else {
            return;
        };
        while self.serve_one_line(&mut editor, context, line) != LineOutcome::InputClosed {}
    }
}
