//! The log entry point: ring + console fan-out.

use super::logring::{format_timestamp, Level, LogRecord, LogRing};
use super::LineBuffer;
use crate::arch::instructions::without_interrupts;
use crate::boot::cmdline::ConsoleSelection;
use core::fmt::Write;
use core::sync::atomic::{AtomicU8, Ordering};
use spin::Mutex;

/// Capacity of the `dmesg` ring in bytes.
pub const LOG_RING_BYTES: usize = 256 * 1024;

static RING: Mutex<LogRing<LOG_RING_BYTES>> = Mutex::new(LogRing::new());
/// Most verbose level shown on the consoles (as `Level as u8`).
static CONSOLE_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
/// Bit 0: serial, bit 1: framebuffer.
static CONSOLE_SINKS: AtomicU8 = AtomicU8::new(0b01);

/// Applies the command line's console choice and level.
pub fn configure(selection: ConsoleSelection, level: Level) {
    let sinks = match selection {
        ConsoleSelection::Com1 => 0b01,
        ConsoleSelection::Vga => 0b10,
        ConsoleSelection::Both => 0b11,
    };
    CONSOLE_SINKS.store(sinks, Ordering::Relaxed);
    CONSOLE_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Records a log line and shows it on the selected consoles.
pub fn log(level: Level, args: core::fmt::Arguments<'_>) {
    let mut text = LineBuffer::<512>::new();
    let _ = text.write_fmt(args);
    let timestamp = crate::cpu::time::uptime_ns();
    without_interrupts(|| RING.lock().push(timestamp, level, text.as_str()));
    if level as u8 > CONSOLE_LEVEL.load(Ordering::Relaxed) {
        return;
    }
    let mut line = LineBuffer::<600>::new();
    let _ = write!(line, "{} ", format_timestamp(timestamp));
    if level <= Level::Warn {
        let _ = write!(line, "{}: ", level.as_str());
    }
    let _ = write!(line, "{}", text.as_str());
    let sinks = CONSOLE_SINKS.load(Ordering::Relaxed);
    if sinks & 0b01 != 0 {
        // One locked write per line keeps lines from different CPUs whole.
        let mut serial_line = LineBuffer::<604>::new();
        let _ = write!(serial_line, "{}\r\n", line.as_str());
        super::serial::write_bytes(serial_line.as_str().as_bytes());
    }
    if sinks & 0b10 != 0 {
        super::framebuffer::write_line(line.as_str());
    }
}

/// Visits the log ring's records, oldest first.
pub fn dmesg(mut visit: impl FnMut(LogRecord<'_>)) {
    without_interrupts(|| RING.lock().for_each(&mut visit));
}
