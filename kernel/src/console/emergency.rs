//! Output for the worst moments (CPU exceptions, panics): writes straight to COM1's
//! registers without taking the UART lock, which the interrupted code may hold.
//! Lines from several CPUs may interleave; nothing waits on another CPU.

use crate::arch::instructions::{inb, outb};
use crate::console::serial::COM1_PORT;

/// A `fmt::Write` sink that polls COM1 directly and also mirrors to the framebuffer if
/// its lock is free.
pub struct EmergencyWriter;

impl EmergencyWriter {
    /// A writer; stateless.
    pub fn new() -> Self {
        EmergencyWriter
    }
}

impl Default for EmergencyWriter {
    fn default() -> Self {
        Self::new()
    }
}

fn put(byte: u8) {
    // Line status register bit 5: transmit holding register empty. Bounded wait, so a
    // missing UART cannot hang the report.
    for _ in 0..100_000 {
        if inb(COM1_PORT + 5) & 0x20 != 0 {
            break;
        }
    }
    outb(COM1_PORT, byte);
}

impl core::fmt::Write for EmergencyWriter {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        for byte in text.bytes() {
            if byte == b'\n' {
                put(b'\r');
            }
            put(byte);
        }
        crate::console::framebuffer::try_write(text);
        Ok(())
    }
}
