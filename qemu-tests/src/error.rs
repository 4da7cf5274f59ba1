//! The harness's one error type.
//!
//! Every failure — a missing image, an emulator that would not start, a timeout while
//! waiting for serial output, a failed assertion in a test — becomes an [`Error`] whose
//! message is meant to be read by a person staring at `cargo test` output: it says what
//! was expected, what was seen last and where the full serial transcript was saved.
//! `Debug` prints the same text as `Display`, so a test returning `Result<(), Error>`
//! shows the readable message instead of an escaped struct dump.

use std::fmt;

/// A harness failure with a human-readable, multi-line message.
pub struct Error {
    message: String,
    /// True for a failed check on output the machine did produce (the conversation can
    /// go on); false when the conversation itself broke (timeout, exit, I/O error).
    assertion: bool,
}

/// `Result` with the harness [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error carrying `message` verbatim.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), assertion: false }
    }

    /// A failed check: the machine answered, but not as expected. Tests may record it
    /// and carry on with further checks on the same boot.
    pub fn assertion(message: impl Into<String>) -> Self {
        Self { message: message.into(), assertion: true }
    }

    /// Whether this is a failed check (see [`Error::assertion`]) rather than a broken
    /// conversation.
    pub fn is_assertion(&self) -> bool {
        self.assertion
    }

    /// Combines several errors into one that lists them all (an assertion only if all are).
    pub fn combine(errors: Vec<Error>) -> Option<Self> {
        match errors.len() {
            0 => None,
            1 => errors.into_iter().next(),
            count => {
                let assertion = errors.iter().all(Error::is_assertion);
                let mut message = format!("{count} checks failed:");
                for (index, error) in errors.iter().enumerate() {
                    message.push_str(&format!("\n\n{}. {}", index + 1, error.message));
                }
                Some(Self { message, assertion })
            }
        }
    }

    /// The full message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefixes the message with what was being done when it happened.
    pub fn context(self, what: impl fmt::Display) -> Self {
        Self { message: format!("{what}: {}", self.message), assertion: self.assertion }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tests print `Err` through Debug: show the message with real newlines.
        formatter.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Self::new(format!("I/O error: {error}"))
    }
}

/// Returns `Err(Error::assertion(message()))` unless `condition` holds.
pub fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<()> {
    if condition {
        Ok(())
    } else {
        Err(Error::assertion(message()))
    }
}

/// Collects failed checks so one boot can report every problem, while a broken
/// conversation (timeout, emulator exit) still stops the test at once.
#[derive(Default)]
pub struct Failures {
    errors: Vec<Error>,
}

impl Failures {
    /// No failures yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `result` if it is a failed check; passes other errors through.
    pub fn soft(&mut self, result: Result<()>) -> Result<()> {
        match result {
            Err(error) if error.is_assertion() => {
                self.errors.push(error);
                Ok(())
            }
            other => other,
        }
    }

    /// `Ok` if nothing failed, else one error listing every recorded failure.
    pub fn finish(self) -> Result<()> {
        Error::combine(self.errors).map_or(Ok(()), Err)
    }

    /// Adds the recorded failures to a fatal `error` (so none is lost).
    pub fn with_fatal(mut self, error: Error) -> Error {
        self.errors.push(error);
        let mut combined = Error::combine(self.errors).unwrap_or_else(|| Error::new("no error"));
        combined.assertion = false;
        combined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_failures_are_collected_and_fatal_ones_pass_through() {
        let mut failures = Failures::new();
        assert!(failures.soft(ensure(true, || unreachable!())).is_ok());
        assert!(failures.soft(ensure(false, || "first".into())).is_ok());
        assert!(failures.soft(Err(Error::assertion("second"))).is_ok());
        let fatal = failures.soft(Err(Error::new("timeout"))).unwrap_err();
        assert!(!fatal.is_assertion());
        let combined = failures.with_fatal(fatal);
        assert!(combined.message().starts_with("3 checks failed:"));
        assert!(combined.message().contains("1. first") && combined.message().contains("3. timeout"));
        assert!(!combined.is_assertion());
        assert!(Failures::new().finish().is_ok());
    }
}
