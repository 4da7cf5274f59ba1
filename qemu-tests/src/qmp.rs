//! A minimal QMP (QEMU Machine Protocol) client over a unix socket.
//!
//! QEMU is started with `-qmp unix:PATH,server=on,wait=off`. The protocol
//! (docs/interop/qmp-spec in QEMU) is newline-delimited JSON: the server greets with
//! `{"QMP": ...}`, the client must send `{"execute":"qmp_capabilities"}` before any
//! other command, and each command gets one `{"return": ...}` or `{"error": ...}` reply,
//! possibly preceded by asynchronous `{"event": ...}` messages. Without a JSON crate the
//! client classifies reply lines by their top-level key, which is all the harness needs
//! (it never reads values out of replies).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// A connected, capability-negotiated QMP session.
pub struct QmpClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl QmpClient {
    /// Connects to `socket` (retrying while QEMU creates it, up to `timeout`) and
    /// negotiates capabilities.
    pub fn connect(socket: &Path, timeout: Duration) -> Result<Self> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(socket) {
                Ok(stream) => break stream,
                Err(error) if Instant::now() < deadline => {
                    let _ = error;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(error) => {
                    return Err(Error::new(format!("cannot connect to QMP socket {}: {error}", socket.display())))
                }
            }
        };
        stream.set_read_timeout(Some(timeout))?;
        let writer = stream.try_clone()?;
        let mut client = Self { reader: BufReader::new(stream), writer };
        let greeting = client.read_message()?;
        if !greeting.contains("\"QMP\"") {
            return Err(Error::new(format!("unexpected QMP greeting: {greeting}")));
        }
        client.execute("qmp_capabilities", None)?;
        Ok(client)
    }

    /// Runs `command` with optional JSON `arguments` (an object literal) and returns the
    /// raw reply line; an `{"error": ...}` reply becomes an `Err`.
    pub fn execute(&mut self, command: &str, arguments: Option<&str>) -> Result<String> {
        let request = match arguments {
            Some(arguments) => format!("{{\"execute\":\"{command}\",\"arguments\":{arguments}}}\n"),
            None => format!("{{\"execute\":\"{command}\"}}\n"),
        };
        self.writer.write_all(request.as_bytes())?;
        self.writer.flush()?;
        loop {
            let message = self.read_message()?;
            match classify(&message) {
                Reply::Return => return Ok(message),
                Reply::Error => return Err(Error::new(format!("QMP {command} failed: {message}"))),
                Reply::Event | Reply::Other => continue,
            }
        }
    }

    /// Asks QEMU to write the current display as a PPM file at `path`.
    pub fn screendump(&mut self, path: &Path) -> Result<()> {
        let arguments = format!("{{\"filename\":{}}}", json_string(&path.to_string_lossy()));
        self.execute("screendump", Some(&arguments)).map(drop)
    }

    fn read_message(&mut self) -> Result<String> {
        let mut line = String::new();
        let count =
            self.reader.read_line(&mut line).map_err(|error| Error::new(format!("reading QMP reply: {error}")))?;
        if count == 0 {
            return Err(Error::new("QMP connection closed by QEMU"));
        }
        Ok(line.trim_end().to_owned())
    }
}

/// The kind of a QMP server message, by its first top-level key.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Return,
    Error,
    Event,
    Other,
}

fn classify(message: &str) -> Reply {
    // Every server message is an object whose first key names its kind.
    let body = message.trim_start().trim_start_matches('{').trim_start();
    if body.starts_with("\"return\"") {
        Reply::Return
    } else if body.starts_with("\"error\"") {
        Reply::Error
    } else if body.starts_with("\"event\"") || body.starts_with("\"timestamp\"") {
        Reply::Event
    } else {
        Reply::Other
    }
}

/// Encodes `text` as a JSON string literal.
pub fn json_string(text: &str) -> String {
    let mut output = String::with_capacity(text.len() + 2);
    output.push('"');
    for character in text.chars() {
        match character {
            '"' => output.push_str("\\\""),
            '\\' => output.push_str("\\\\"),
            '\n' => output.push_str("\\n"),
            '\r' => output.push_str("\\r"),
            '\t' => output.push_str("\\t"),
            control if u32::from(control) < 0x20 => output.push_str(&format!("\\u{:04x}", u32::from(control))),
            other => output.push(other),
        }
    }
    output.push('"');
    output
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("/tmp/a b/\"x\"\\\n"), r#""/tmp/a b/\"x\"\\\n""#);
        assert_eq!(json_string("\u{1}"), r#""\u0001""#);
    }

    #[test]
    fn replies_are_classified() {
        assert_eq!(classify(r#"{"return": {}}"#), Reply::Return);
        assert_eq!(classify(r#"{"error": {"class": "GenericError", "desc": "x"}}"#), Reply::Error);
        assert_eq!(classify(r#"{"timestamp": {"seconds": 1}, "event": "RESET"}"#), Reply::Event);
        assert_eq!(classify(r#"{"event": "STOP"}"#), Reply::Event);
    }

    /// A fake QEMU: greets, accepts capabilities, emits an event, then answers a
    /// screendump by writing a file.
    #[test]
    fn handshake_and_screendump_against_fake_server() {
        let directory = std::env::temp_dir().join(format!("basalt-qmp-unit-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let socket = directory.join("qmp.sock");
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            writeln!(writer, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert_eq!(line.trim(), r#"{"execute":"qmp_capabilities"}"#);
            writeln!(writer, r#"{{"return": {{}}}}"#).unwrap();
            line.clear();
            reader.read_line(&mut line).unwrap();
            assert!(line.contains(r#""execute":"screendump""#), "{line}");
            writeln!(writer, r#"{{"timestamp": {{"seconds": 1, "microseconds": 2}}, "event": "RTC_CHANGE"}}"#).unwrap();
            writeln!(writer, r#"{{"return": {{}}}}"#).unwrap();
            line.clear();
            reader.read_line(&mut line).unwrap();
            writeln!(writer, r#"{{"error": {{"class": "CommandNotFound", "desc": "nope"}}}}"#).unwrap();
        });
        let mut client = QmpClient::connect(&socket, Duration::from_secs(10)).unwrap();
        client.screendump(&directory.join("screen.ppm")).unwrap();
        let error = client.execute("nosuchcommand", None).unwrap_err();
        assert!(error.message().contains("CommandNotFound"));
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(&directory);
    }
}
