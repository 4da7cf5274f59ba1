//! Output for the worst moments (CPU exceptions, panics).
//!
//! A report is collected in a stack buffer and written in one piece, so it does not
//! interleave with what other CPUs print. It goes out under the UART lock if that lock
//! frees up within a bounded wait; otherwise (the interrupted code on this CPU may hold
//! it for ever) straight to COM1's registers. Nothing waits unboundedly on another CPU.

use super::LineBuffer;
use crate::arch::instructions::{inb, outb};
use crate::console::serial::{self, COM1_PORT};
use core::fmt::Write;

const REPORT_BYTES: usize = 6144;
/// Attempts at the UART lock before writing around it.
const LOCK_ATTEMPTS: u32 = 2_000_000;

/// A `fmt::Write` sink for crash reports; call [`EmergencyWriter::flush`] at the end
/// (it also flushes whenever its buffer fills).
pub struct EmergencyWriter {
    buffer: LineBuffer<REPORT_BYTES>,
}

impl EmergencyWriter {
    /// An empty report.
    pub fn new() -> Self {
        EmergencyWriter { buffer: LineBuffer::new() }
    }

    /// Writes out what was collected.
    pub fn flush(&mut self) {
        let text = self.buffer.as_str();
        if text.is_empty() {
            return;
        }
        let mut written = false;
        for _ in 0..LOCK_ATTEMPTS {
            if serial::try_write_bytes(text.as_bytes()) {
                written = true;
                break;
            }
            core::hint::spin_loop();
        }
        if !written {
            text.bytes().for_each(put_raw);
        }
        crate::console::framebuffer::try_write(text);
        self.buffer = LineBuffer::new();
    }
}

impl Default for EmergencyWriter {
    fn default() -> Self {
        Self::new()
    }
}

fn put_raw(byte: u8) {
    // Line status register bit 5: transmit holding register empty. Bounded wait, so a
    // missing UART cannot hang the report.
    for _ in 0..100_000 {
        if inb(COM1_PORT + 5) & 0x20 != 0 {
            break;
        }
    }
    outb(COM1_PORT, byte);
}

impl Write for EmergencyWriter {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        for piece in text.split_inclusive('\n') {
            if self.buffer.as_str().len() + piece.len() + 1 >= REPORT_BYTES {
                self.flush();
            }
            match piece.strip_suffix('\n') {
                Some(line) => {
                    let _ = self.buffer.write_str(line);
                    let _ = self.buffer.write_str("\r\n");
                }
                None => {
                    let _ = self.buffer.write_str(piece);
                }
            }
        }
        Ok(())
    }
}
