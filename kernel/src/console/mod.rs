//! The hypervisor log and the consoles it is shown on.
//!
//! Every log line goes into one ring (`dmesg`) with its level and a timestamp, and —
//! when its level is at or above the console threshold (`loglvl=`) — to the selected
//! consoles (`console=com1|vga|both`): the COM1 UART, whose transmit path polls and
//! never drops a byte, and the multiboot2 framebuffer. The ring, the text renderer and
//! the formatting are portable; the device glue is bare-metal only.
pub mod egatext;
pub mod fbtext;
pub mod logring;

#[cfg(target_os = "none")]
pub mod emergency;
#[cfg(target_os = "none")]
pub mod framebuffer;
#[cfg(target_os = "none")]
mod log;
#[cfg(target_os = "none")]
pub mod serial;

#[cfg(target_os = "none")]
pub use log::{configure, defer_serial, dmesg, flush_serial, log, LOG_RING_BYTES};

/// A fixed-capacity string for formatting without the heap (log lines are formatted
/// before the heap exists and inside interrupt handlers).
pub struct LineBuffer<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> LineBuffer<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self { bytes: [0; N], len: 0 }
    }

    /// The text written so far (truncated at capacity on a character boundary).
    pub fn as_str(&self) -> &str {
        let bytes = self.bytes.get(..self.len).unwrap_or(&[]);
        match core::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => core::str::from_utf8(&bytes[..error.valid_up_to()]).unwrap_or(""),
        }
    }
}

impl<const N: usize> Default for LineBuffer<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> core::fmt::Write for LineBuffer<N> {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        let room = N - self.len;
        let mut take = text.len().min(room);
        while take > 0 && !text.is_char_boundary(take) {
            take -= 1;
        }
        self.bytes[self.len..self.len + take].copy_from_slice(&text.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// Logs at error level.
#[macro_export]
macro_rules! error { ($($arg:tt)*) => { $crate::console::log($crate::console::logring::Level::Error, format_args!($($arg)*)) }; }
/// Logs at warning level.
#[macro_export]
macro_rules! warn { ($($arg:tt)*) => { $crate::console::log($crate::console::logring::Level::Warn, format_args!($($arg)*)) }; }
/// Logs at info level.
#[macro_export]
macro_rules! info { ($($arg:tt)*) => { $crate::console::log($crate::console::logring::Level::Info, format_args!($($arg)*)) }; }
/// Logs at debug level.
#[macro_export]
macro_rules! debug { ($($arg:tt)*) => { $crate::console::log($crate::console::logring::Level::Debug, format_args!($($arg)*)) }; }

#[cfg(test)]
mod tests {
    use super::LineBuffer;
    use core::fmt::Write;

    #[test]
    fn line_buffer_truncates_on_char_boundary() {
        let mut buffer = LineBuffer::<5>::new();
        write!(buffer, "ab\u{e9}\u{e9}").unwrap();
        assert_eq!(buffer.as_str(), "ab\u{e9}");
        write!(buffer, "xyz").unwrap();
        assert_eq!(buffer.as_str(), "ab\u{e9}x");
    }
}
