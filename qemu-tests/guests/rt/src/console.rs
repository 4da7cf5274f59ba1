//! Console output over `console_io(CONSOLEIO_write)`: the [`print!`] and [`println!`]
//! macros.
//!
//! Each macro call formats into a stack buffer and makes one hypercall (more only if
//! the text exceeds [`LINE_BUFFER_SIZE`]), so whole lines from different vCPUs reach
//! the console unbroken. Lines end in "\n" alone; the console backend owns terminal
//! conventions.
//!
//! Without Xen (CPUID shows no signature — QEMU booting a guest by its PVH note with
//! `-debugcon stdio`, to check the boot path outside Basalt) output goes to the
//! Bochs/QEMU debug port 0xE9 instead.

use core::fmt;

use crate::hypercall;

/// Bytes formatted before a hypercall is made.
pub const LINE_BUFFER_SIZE: usize = 256;

/// A `fmt::Write` sink that batches text into console writes.
pub struct ConsoleWriter {
    buffer: [u8; LINE_BUFFER_SIZE],
    length: usize,
}

impl ConsoleWriter {
    pub const fn new() -> Self {
        Self { buffer: [0; LINE_BUFFER_SIZE], length: 0 }
    }

    /// Appends raw bytes (flushing whenever the buffer fills).
    pub fn write_bytes(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = LINE_BUFFER_SIZE - self.length;
            let take = room.min(bytes.len());
            self.buffer[self.length..self.length + take].copy_from_slice(&bytes[..take]);
            self.length += take;
            bytes = &bytes[take..];
            if self.length == LINE_BUFFER_SIZE {
                self.flush();
            }
        }
    }

    /// Sends what is buffered.
    pub fn flush(&mut self) {
        if self.length > 0 {
            if hypercall::xen_present() {
                hypercall::console_write(&self.buffer[..self.length]);
            } else {
                debug_port_write(&self.buffer[..self.length]);
            }
            self.length = 0;
        }
    }
}

impl Default for ConsoleWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Write for ConsoleWriter {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.write_bytes(text.as_bytes());
        Ok(())
    }
}

impl Drop for ConsoleWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The Bochs/QEMU debug console port.
const DEBUG_PORT: u16 = 0xe9;

fn debug_port_write(bytes: &[u8]) {
    for &byte in bytes {
        // SAFETY: only called when no Xen hypervisor is present; an OUT to port 0xE9
        // touches no memory (the debug console, or nothing, listens there).
        unsafe {
            core::arch::asm!("out dx, al", in("dx") DEBUG_PORT, in("al") byte, options(nomem, nostack, preserves_flags))
        };
    }
}

/// Writes raw bytes to the console in one hypercall per [`LINE_BUFFER_SIZE`] bytes.
pub fn write_bytes(bytes: &[u8]) {
    let mut writer = ConsoleWriter::new();
    writer.write_bytes(bytes);
}

#[doc(hidden)]
pub fn print_arguments(arguments: fmt::Arguments<'_>) {
    let mut writer = ConsoleWriter::new();
    // ConsoleWriter never fails; a Display impl that does just truncates the line.
    let _ = fmt::Write::write_fmt(&mut writer, arguments);
}

/// Prints to the domain's console.
#[macro_export]
macro_rules! print {
    ($($argument:tt)*) => {
        $crate::console::print_arguments(format_args!($($argument)*))
    };
}

/// Prints to the domain's console, then a newline.
#[macro_export]
macro_rules! println {
    () => {
        $crate::console::write_bytes(b"\n")
    };
    ($($argument:tt)*) => {
        $crate::console::print_arguments(format_args!("{}\n", format_args!($($argument)*)))
    };
}
