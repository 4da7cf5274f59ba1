//! A running test machine and the person-at-a-terminal API tests use to drive it.
//!
//! [`Machine::boot`] starts the configured emulator (see [`crate::backend`]) and a reader
//! thread that collects serial output into a [`Transcript`] and answers the shell's
//! terminal queries. The test thread then sends keystrokes and waits for text:
//! [`Machine::expect`] consumes the stripped transcript up to the end of the first match
//! after the previous one, so a sequence of `expect`s reads the conversation in order.
//!
//! Artifacts (always written — they are cheap and make failures debuggable), in
//! `<workspace>/build/qemu-tests/`:
//! - `<test>.serial.log`: stripped transcript, then timestamped harness events;
//! - `<test>.serial.raw.log`: the bytes exactly as received;
//! - `<test>.qemu.stderr.log`: the emulator's own diagnostics (for Bochs: its banner
//!   and debugger output);
//! - `<test>.bochs.log`: Bochs's log (VM-entry failures, panics), Bochs machines only;
//! - `<test>.screen-N.ppm` / `.txt`: screen dumps and their decoded text.
//!
//! Every error produced here names the transcript paths and quotes the last
//! [`TAIL_LINES`] lines seen. Dropping a `Machine` kills the emulator, joins the reader
//! thread, saves the transcript and removes the private work directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backend::{self, Control};
use crate::config::{artifacts_dir, MachineConfig};
use crate::error::{Error, Result};
use crate::pattern::Pattern;
use crate::ppm::RgbImage;
use crate::screen::{self, Screen};
use crate::transcript::{self, SerialInput, SharedTranscript};

/// The shell prompt.
pub const PROMPT: &str = "basalt> ";
/// How long a shell command may take to answer (TCG on a loaded 2-core host).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of recent output quoted in error messages.
pub const TAIL_LINES: usize = 40;

/// A booted (or booting) emulator with its serial conversation.
pub struct Machine {
    name: String,
    config: MachineConfig,
    child: Child,
    exit_status: Option<ExitStatus>,
    serial_input: SerialInput,
    transcript: SharedTranscript,
    reader: Option<JoinHandle<()>>,
    control: Box<dyn Control>,
    /// Offset into the stripped transcript up to which expectations have consumed.
    cursor: usize,
    started: Instant,
    work_dir: PathBuf,
    command_line: String,
    screendumps: usize,
}

static MACHINE_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Machine {
    /// Starts the machine `config` describes. `test_name` names its artifacts.
    ///
    /// Fails (never skips) when the image is missing, telling the user to build it.
    pub fn boot(config: MachineConfig, test_name: &str) -> Result<Self> {
        if !config.image.is_file() {
            return Err(Error::new(format!(
                "boot image {} does not exist: run `make image` first (or point BASALT_IMAGE at an image)",
                config.image.display()
            )));
        }
        let artifacts = artifacts_dir();
        std::fs::create_dir_all(&artifacts)
            .map_err(|error| Error::new(format!("creating {}: {error}", artifacts.display())))?;
        // Short path: unix socket paths are limited to ~107 bytes.
        let work_dir = std::env::temp_dir().join(format!(
            "basalt-qt-{}-{}",
            std::process::id(),
            MACHINE_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&work_dir);
        std::fs::create_dir_all(&work_dir)
            .map_err(|error| Error::new(format!("creating {}: {error}", work_dir.display())))?;
        let stderr_log = artifacts.join(format!("{test_name}.qemu.stderr.log"));
        let started = Instant::now();
        let launched = match backend::launch(&config, &work_dir, &stderr_log) {
            Ok(launched) => launched,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&work_dir);
                return Err(error.context(format!("starting {}", config.emulator.describe())));
            }
        };
        let shared = transcript::shared(started);
        let serial_input: SerialInput = Arc::new(Mutex::new(launched.serial_input));
        let reader = {
            let shared = shared.clone();
            let serial_input = serial_input.clone();
            let output = launched.serial_output;
            std::thread::Builder::new()
                .name(format!("serial-{test_name}"))
                .spawn(move || transcript::pump(output, shared, serial_input))?
        };
        transcript::lock(&shared).note(format!("started: {}", launched.command_line));
        Ok(Self {
            name: test_name.to_owned(),
            config,
            child: launched.child,
            exit_status: None,
            serial_input,
            transcript: shared,
            reader: Some(reader),
            control: launched.control,
            cursor: 0,
            started,
            work_dir,
            command_line: launched.command_line,
            screendumps: 0,
        })
    }

    /// [`Machine::boot`], then waits for the first prompt (up to the config's boot
    /// timeout). Returns the machine and everything printed before the prompt. The one
    /// call a test needs to get a shell on any emulator:
    /// `Machine::boot_to_prompt(MachineConfig::standard(kind), name)`.
    pub fn boot_to_prompt(config: MachineConfig, test_name: &str) -> Result<(Self, String)> {
        let mut machine = Self::boot(config, test_name)?;
        let boot_log = machine.expect_boot_prompt()?;
        Ok((machine, boot_log))
    }

    /// The test name artifacts are saved under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration this machine was booted with.
    pub fn config(&self) -> &MachineConfig {
        &self.config
    }

    /// Time since the emulator was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Records a note in the transcript's event log.
    pub fn note(&self, text: impl Into<String>) {
        transcript::lock(&self.transcript).note(text);
    }

    /// Sends raw bytes to the serial line.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.note(format!("sent {}", describe_bytes(bytes)));
        let result = {
            let mut input = self.serial_input.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            input.write_all(bytes).and_then(|()| input.flush())
        };
        result.map_err(|error| self.fail(format!("writing to the serial line failed: {error}")))
    }

    /// Types `line` and presses Enter (`\r`).
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\r');
        self.send_bytes(&bytes)
    }

    /// Waits up to `timeout` for `pattern` in the output after the previous match;
    /// returns the text from there up to and including the match, and moves past it.
    pub fn expect(&mut self, pattern: impl Into<Pattern>, timeout: Duration) -> Result<String> {
        self.expect_allowing(pattern, timeout, &[])
    }

    /// [`Machine::expect`], except that the fatal markers listed in `allowed` (e.g.
    /// [`crate::config::EXCEPTION_MARKER`] while a test provokes an exception on
    /// purpose) do not end the wait. Other fatal markers still do.
    pub fn expect_allowing(
        &mut self,
        pattern: impl Into<Pattern>,
        timeout: Duration,
        allowed: &[&str],
    ) -> Result<String> {
        let pattern = pattern.into();
        let deadline = Instant::now() + timeout;
        let mut transcript = transcript::lock(&self.transcript);
        loop {
            let cursor = self.cursor.min(transcript.stripped.len());
            if let Some((_, end)) = pattern.find(&transcript.stripped[cursor..]) {
                let captured = String::from_utf8_lossy(&transcript.stripped[cursor..cursor + end]).into_owned();
                self.cursor = cursor + end;
                transcript.note(format!("matched {pattern}"));
                return Ok(captured);
            }
            let unread = &transcript.stripped[cursor..];
            let fatal = self
                .config
                .fatal_markers
                .iter()
                .filter(|marker| !allowed.contains(&marker.as_str()))
                .find(|marker| Pattern::literal(marker.as_str()).find(unread).is_some())
                .cloned();
            if let Some(marker) = fatal {
                drop(transcript);
                // Let the rest of the report (message, backtrace) arrive for the error.
                self.settle(Duration::from_secs(2), Duration::from_secs(15));
                self.cursor = transcript::lock(&self.transcript).stripped.len();
                return Err(self.fail(format!("the machine printed {marker:?} while waiting for {pattern}")));
            }
            if transcript.closed {
                drop(transcript);
                let status = self.poll_exit(Duration::from_secs(5));
                let status =
                    status.map_or_else(|| "still running".to_owned(), |status| self.control.explain_exit(status));
                return Err(
                    self.fail(format!("the emulator closed the serial line ({status}) while waiting for {pattern}"))
                );
            }
            let now = Instant::now();
            if now >= deadline {
                drop(transcript);
                return Err(self.fail(format!("timed out after {timeout:?} waiting for {pattern}")));
            }
            transcript = self
                .transcript
                .1
                .wait_timeout(transcript, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// Waits for the next shell prompt (up to [`COMMAND_TIMEOUT`]); returns the text
    /// before it (prompt excluded).
    pub fn expect_prompt(&mut self) -> Result<String> {
        self.expect_prompt_within(COMMAND_TIMEOUT)
    }

    /// Waits for the next shell prompt up to `timeout`; returns the text before it.
    pub fn expect_prompt_within(&mut self, timeout: Duration) -> Result<String> {
        let text = self.expect(PROMPT, timeout)?;
        Ok(text[..text.len() - PROMPT.len()].to_owned())
    }

    /// Waits for the first prompt after power-on (up to the config's boot timeout) and
    /// returns everything printed before it: firmware, GRUB, the hypervisor log.
    pub fn expect_boot_prompt(&mut self) -> Result<String> {
        let text = self.expect_prompt_within(self.config.boot_timeout)?;
        self.note(format!("boot prompt {:.1} s after start", self.elapsed().as_secs_f64()));
        Ok(text)
    }

    /// Runs a shell command: types it, waits for its echo and the next prompt, and
    /// returns the output in between (without the echo line, trailing newlines removed).
    /// Call it when the shell is at a prompt.
    pub fn run_command(&mut self, command: &str) -> Result<String> {
        // The echo must come after the keystrokes: skip anything already printed (e.g. a
        // history entry the line editor drew and erased while handling earlier input).
        self.skip_pending_output();
        self.send_line(command)?;
        let text = self.expect_prompt().map_err(|error| error.context(format!("prompt after command {command:?}")))?;
        // Log lines may land inside the echo (see `after_echo`); they stay in the output.
        match after_echo(&text, &format!("{command}\n")) {
            Some(output) => Ok(output.trim_end_matches('\n').to_owned()),
            None => Err(self.fail(format!("echo of command {command:?} not found before the prompt in:\n{text}"))),
        }
    }

    /// Waits (up to `limit`) until the cursor-position query the line editor sends
    /// *after* printing the last prompt (`basalt> ` then `ESC [6n`) has arrived, and so
    /// has been answered (the reader answers while holding the transcript lock). Input
    /// sent before that reaches the machine ahead of the answer; the shell's editor
    /// copes, but a command that hands the serial line to someone else (`console`)
    /// passes the late `ESC [24;80R` on to them. Returns whether the query came (false
    /// if the shell sends none after its prompt).
    pub fn wait_prompt_query(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut transcript = transcript::lock(&self.transcript);
        loop {
            let raw = &transcript.raw;
            let after_prompt = raw
                .windows(PROMPT.len())
                .rposition(|window| window == PROMPT.as_bytes())
                .map(|start| &raw[start + PROMPT.len()..]);
            if after_prompt.is_some_and(|rest| {
                rest.windows(transcript::CURSOR_POSITION_QUERY.len())
                    .any(|window| window == transcript::CURSOR_POSITION_QUERY)
            }) {
                return true;
            }
            let now = Instant::now();
            if transcript.closed || now >= deadline {
                return false;
            }
            transcript = self
                .transcript
                .1
                .wait_timeout(transcript, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// Moves the expect position to the end of the output received so far, so the next
    /// [`Machine::expect`] only sees text printed from now on.
    pub fn skip_pending_output(&mut self) {
        self.cursor = transcript::lock(&self.transcript).stripped.len();
    }

    /// Like [`Machine::skip_pending_output`], but returns the text it skips.
    pub fn take_pending_output(&mut self) -> String {
        let transcript = transcript::lock(&self.transcript);
        let cursor = self.cursor.min(transcript.stripped.len());
        let text = String::from_utf8_lossy(&transcript.stripped[cursor..]).into_owned();
        self.cursor = transcript.stripped.len();
        text
    }

    /// Waits until the serial line has been silent for `quiet` (at most `limit`), e.g.
    /// after input that makes the shell print several prompts.
    pub fn wait_quiet(&mut self, quiet: Duration, limit: Duration) -> Result<()> {
        if self.settle(quiet, limit) {
            Ok(())
        } else {
            Err(self.fail(format!("the serial line did not go quiet for {quiet:?} within {limit:?}")))
        }
    }

    /// Whether the serial line was silent for `quiet` (or closed) within `limit`.
    fn settle(&self, quiet: Duration, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut transcript = transcript::lock(&self.transcript);
        let mut length = transcript.raw.len();
        let mut quiet_since = Instant::now();
        loop {
            let now = Instant::now();
            if transcript.closed || now.duration_since(quiet_since) >= quiet {
                return true;
            }
            if now >= deadline {
                return false;
            }
            let wait = (quiet_since + quiet).min(deadline).saturating_duration_since(now);
            transcript =
                self.transcript.1.wait_timeout(transcript, wait).unwrap_or_else(|poisoned| poisoned.into_inner()).0;
            if transcript.raw.len() != length {
                length = transcript.raw.len();
                quiet_since = Instant::now();
            }
        }
    }

    /// The whole stripped transcript so far.
    pub fn transcript_text(&self) -> String {
        transcript::lock(&self.transcript).stripped_text()
    }

    /// Number of terminal cursor-position queries the harness answered.
    pub fn queries_answered(&self) -> usize {
        transcript::lock(&self.transcript).queries_answered
    }

    /// Dumps the display and decodes its text; the PPM and the decoded text are saved
    /// as `<test>.screen-N.ppm` / `.txt` in the artifacts directory.
    pub fn screendump(&mut self) -> Result<Screen> {
        self.screendumps += 1;
        let ppm = self.work_dir.join(format!("screen-{}.ppm", self.screendumps));
        if let Err(error) = self.control.screendump(&ppm) {
            return Err(self.fail(format!("screen dump failed: {error}")));
        }
        let data = std::fs::read(&ppm).map_err(|error| self.fail(format!("reading {}: {error}", ppm.display())))?;
        let image = RgbImage::from_ppm(&data).map_err(|error| self.fail(format!("screen dump: {error}")))?;
        let screen = screen::decode(&image);
        let stem = artifacts_dir().join(format!("{}.screen-{}", self.name, self.screendumps));
        let _ = std::fs::write(format!("{}.ppm", stem.display()), &data);
        let _ = std::fs::write(format!("{}.txt", stem.display()), screen.text() + "\n");
        self.note(format!(
            "screen dump {}x{} saved as {}.ppm/.txt ({} unknown cells)",
            image.width,
            image.height,
            stem.display(),
            screen.unknown_cells
        ));
        Ok(screen)
    }

    /// Waits up to `timeout` for the emulator to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        match self.poll_exit(timeout) {
            Some(status) => {
                self.note(format!("emulator exited: {}", self.control.explain_exit(status)));
                Ok(status)
            }
            None => Err(self.fail(format!("the emulator did not exit within {timeout:?}"))),
        }
    }

    /// Whether `status` means the guest powered off cleanly on this emulator.
    pub fn is_clean_exit(&self, status: ExitStatus) -> bool {
        self.control.clean_exit(status)
    }

    /// Explains an exit status in words.
    pub fn explain_exit(&self, status: ExitStatus) -> String {
        self.control.explain_exit(status)
    }

    fn poll_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status {
                return Some(status);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit_status = Some(status);
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Saves the transcript files; returns (stripped log, raw log) paths.
    pub fn save_transcript(&self) -> (PathBuf, PathBuf) {
        let directory = artifacts_dir();
        let stripped_path = directory.join(format!("{}.serial.log", self.name));
        let raw_path = directory.join(format!("{}.serial.raw.log", self.name));
        let transcript = transcript::lock(&self.transcript);
        let mut text = format!(
            "# Basalt emulator test transcript: {}\n# machine: {}, {} CPUs, {} MiB, image {}\n# command: {}\n# saved after {:.1} s; {} terminal queries answered; raw bytes in {}\n\n## serial output (escape sequences and carriage returns removed)\n",
            self.name,
            self.config.emulator.describe(),
            self.config.cpus,
            self.config.memory_mib,
            self.config.image.display(),
            self.command_line,
            self.started.elapsed().as_secs_f64(),
            transcript.queries_answered,
            raw_path.display(),
        );
        text.push_str(&transcript.stripped_text());
        text.push_str("\n\n## harness events\n");
        for (time, event) in &transcript.events {
            text.push_str(&format!("[{:8.3}] {event}\n", time.as_secs_f64()));
        }
        let _ = std::fs::create_dir_all(&directory);
        let _ = std::fs::write(&stripped_path, text);
        let _ = std::fs::write(&raw_path, &transcript.raw);
        (stripped_path, raw_path)
    }

    /// Builds an error for `message`, appending the recent output and the artifact
    /// paths; saves the transcript first.
    pub fn fail(&self, message: impl AsRef<str>) -> Error {
        let message = message.as_ref();
        self.note(format!("FAILURE: {message}"));
        let (stripped_path, raw_path) = self.save_transcript();
        let tail = transcript::lock(&self.transcript).tail(TAIL_LINES);
        let emulator_logs: String =
            self.control.diagnostic_files().iter().map(|path| format!("\nemulator log: {}", path.display())).collect();
        Error::new(format!(
            "[{}] {message}\n--- last {TAIL_LINES} lines of serial output ({:.1} s after start) ---\n{tail}\n--- end of serial output ---\nfull transcript: {}\nraw transcript: {}\nemulator stderr: {}",
            self.name,
            self.started.elapsed().as_secs_f64(),
            stripped_path.display(),
            raw_path.display(),
            artifacts_dir().join(format!("{}.qemu.stderr.log", self.name)).display(),
        ) + &emulator_logs)
    }

    /// `Ok(())` if `condition`, else a failed-check error (see [`Error::assertion`])
    /// naming the test and the transcript. The transcript is saved either way on drop.
    pub fn check(&self, condition: bool, message: impl FnOnce() -> String) -> Result<()> {
        if condition {
            return Ok(());
        }
        let message = message();
        self.note(format!("CHECK FAILED: {message}"));
        let (stripped_path, _) = self.save_transcript();
        Err(Error::assertion(format!("[{}] {message}\n(transcript: {})", self.name, stripped_path.display())))
    }

    /// The workspace-relative path of the saved transcript, for messages.
    pub fn transcript_path(&self) -> PathBuf {
        artifacts_dir().join(format!("{}.serial.log", self.name))
    }

    /// The private work directory (sockets, firmware variables, raw dumps).
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if self.exit_status.is_none() {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
            }
            if let Ok(status) = self.child.wait() {
                self.exit_status = Some(status);
            }
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.save_transcript();
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}

/// Describes sent bytes for the event log: printable text quoted, long input summarized.
fn describe_bytes(bytes: &[u8]) -> String {
    const SHOWN: usize = 80;
    let escaped: String =
        bytes.iter().take(SHOWN).flat_map(|&byte| std::ascii::escape_default(byte)).map(char::from).collect();
    if bytes.len() > SHOWN {
        format!("{} bytes \"{escaped}...\"", bytes.len())
    } else {
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_bytes_are_described_readably() {
        assert_eq!(describe_bytes(b"version\r"), "\"version\\r\"");
        assert!(describe_bytes(&[b'x'; 4096]).starts_with("4096 bytes \"xxx"));
    }

    #[test]
    fn missing_image_fails_with_build_hint() {
        let mut config = MachineConfig::qemu(crate::Firmware::Bios, crate::Medium::IdeDisk);
        config.image = PathBuf::from("/nonexistent/basalt.img");
        let error = Machine::boot(config, "unit_missing_image").err().expect("boot must fail");
        assert!(error.message().contains("run `make image` first"), "{error}");
    }
}

/// What follows the first echo of `echo` in `text`. The hypervisor prints its log lines
/// (`[   12.345678] message\n`) on the serial line whenever they happen — from another
/// CPU, or while a guest slice runs between keystrokes — so one may land in the middle
/// of the echo; such lines are kept, in front of the text after the echo.
pub fn after_echo(text: &str, echo: &str) -> Option<String> {
    let (bytes, wanted) = (text.as_bytes(), echo.as_bytes());
    for start in 0..bytes.len() {
        let (mut position, mut matched) = (start, 0);
        let mut interrupting = String::new();
        while matched < wanted.len() && position < bytes.len() {
            if matched > 0 && bytes[position] == b'[' {
                if let Some(length) = text.get(position..).and_then(log_line_length) {
                    interrupting.push_str(&text[position..position + length]);
                    position += length;
                    continue;
                }
            }
            if bytes[position] != wanted[matched] {
                break;
            }
            position += 1;
            matched += 1;
        }
        if matched == wanted.len() {
            return Some(interrupting + &String::from_utf8_lossy(&bytes[position..]));
        }
    }
    None
}

/// The length of the log line `text` starts with (through its newline), if it is one:
/// `[`, spaces, digits, `.`, digits, `] `, anything, `\n`.
fn log_line_length(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut index = 1;
    while bytes.get(index) == Some(&b' ') {
        index += 1;
    }
    let digits_start = index;
    while bytes.get(index).is_some_and(u8::is_ascii_digit) {
        index += 1;
    }
    if index == digits_start || bytes.get(index) != Some(&b'.') {
        return None;
    }
    index += 1;
    let fraction_start = index;
    while bytes.get(index).is_some_and(u8::is_ascii_digit) {
        index += 1;
    }
    if index == fraction_start || !text[index..].starts_with("] ") {
        return None;
    }
    let end = text[index..].find('\n')?;
    Some(index + end + 1)
}

#[cfg(test)]
mod log_line_tests {
    use super::after_echo;

    #[test]
    fn the_echo_is_found_around_log_lines_which_stay_in_the_output() {
        let text = "reboot[    0.691031] domain 3 (r1): first output\n r1\nout\n";
        assert_eq!(
            after_echo(text, "reboot r1\n").as_deref(),
            Some("[    0.691031] domain 3 (r1): first output\nout\n")
        );
        assert_eq!(after_echo("junk list\nrows\n", "list\n").as_deref(), Some("rows\n"));
        assert_eq!(after_echo("lis\n", "list\n"), None);
    }
}
