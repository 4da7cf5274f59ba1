//! The log entry point: ring + console fan-out.
//!
//! Serial output of log lines is immediate during boot. Once the shell owns the serial
//! line ([`defer_serial`]), lines logged on any CPU are only recorded, and whoever owns
//! the line prints them at a point where its own output is complete
//! ([`flush_serial`]): a log line from another CPU can then never land inside an escape
//! sequence the line editor is writing.

use super::logring::{format_timestamp, Level, LogRecord, LogRing};
use super::LineBuffer;
use crate::arch::instructions::without_interrupts;
use crate::boot::cmdline::ConsoleSelection;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use spin::Mutex;

/// Capacity of the `dmesg` ring in bytes.
pub const LOG_RING_BYTES: usize = 256 * 1024;

static RING: Mutex<LogRing<LOG_RING_BYTES>> = Mutex::new(LogRing::new());
/// Most verbose level shown on the consoles (as `Level as u8`).
static CONSOLE_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
/// Bit 0: serial, bit 1: framebuffer.
static CONSOLE_SINKS: AtomicU8 = AtomicU8::new(0b01);
/// Serial log output waits for [`flush_serial`].
static SERIAL_DEFERRED: AtomicBool = AtomicBool::new(false);
/// The sequence number of the first record not yet shown on serial.
static SERIAL_NEXT_SEQ: AtomicU64 = AtomicU64::new(0);
static SERIAL_FLUSH: Mutex<()> = Mutex::new(());

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
    let seq = without_interrupts(|| RING.lock().push(timestamp, level, text.as_str()));
    if level as u8 > CONSOLE_LEVEL.load(Ordering::Relaxed) {
        return;
    }
    let line = console_line(timestamp, level, text.as_str());
    let sinks = CONSOLE_SINKS.load(Ordering::Relaxed);
    if sinks & 0b01 != 0 && !SERIAL_DEFERRED.load(Ordering::Acquire) {
        write_serial_line(&line);
        SERIAL_NEXT_SEQ.fetch_max(seq.wrapping_add(1), Ordering::AcqRel);
    }
    if sinks & 0b10 != 0 {
        super::framebuffer::write_line(line.as_str());
    }
}

fn console_line(timestamp: u64, level: Level, text: &str) -> LineBuffer<600> {
    let mut line = LineBuffer::<600>::new();
    let _ = write!(line, "{} ", format_timestamp(timestamp));
    if level <= Level::Warn {
        let _ = write!(line, "{}: ", level.as_str());
    }
    let _ = write!(line, "{text}");
    line
}

fn write_serial_line(line: &LineBuffer<600>) {
    // One locked write per line keeps lines from different CPUs whole.
    let mut serial_line = LineBuffer::<604>::new();
    let _ = write!(serial_line, "{}\r\n", line.as_str());
    super::serial::write_bytes(serial_line.as_str().as_bytes());
}

/// From now on log lines reach the serial line only through [`flush_serial`] (the
/// shell calls this when it takes the line over).
pub fn defer_serial() {
    let next = without_interrupts(|| RING.lock().next_seq());
    SERIAL_NEXT_SEQ.fetch_max(next, Ordering::AcqRel);
    SERIAL_DEFERRED.store(true, Ordering::Release);
}

/// Prints the log lines recorded since the last flush (at the console level), if
/// serial output is deferred and the serial line is a log console. Call it only where
/// the caller's own serial output is complete.
pub fn flush_serial() {
    if !SERIAL_DEFERRED.load(Ordering::Acquire) || CONSOLE_SINKS.load(Ordering::Relaxed) & 0b01 == 0 {
        return;
    }
    let Some(_flushing) = SERIAL_FLUSH.try_lock() else { return };
    let level = CONSOLE_LEVEL.load(Ordering::Relaxed);
    // A few lines at a time: the ring lock is not held while the UART drains.
    loop {
        let first = SERIAL_NEXT_SEQ.load(Ordering::Acquire);
        let mut batch: [Option<(u64, u64, Level, LineBuffer<512>)>; 8] = Default::default();
        let mut count = 0;
        without_interrupts(|| {
            RING.lock().for_each_since(first, |record| {
                if count < batch.len() {
                    let mut text = LineBuffer::<512>::new();
                    let _ = text.write_str(record.text);
                    batch[count] = Some((record.seq, record.timestamp_ns, record.level, text));
                    count += 1;
                }
            })
        });
        if count == 0 {
            return;
        }
        for (seq, timestamp, record_level, text) in batch.iter().flatten() {
            if *record_level as u8 <= level {
                write_serial_line(&console_line(*timestamp, *record_level, text.as_str()));
            }
            SERIAL_NEXT_SEQ.store(seq.wrapping_add(1), Ordering::Release);
        }
    }
}

/// Visits the log ring's records, oldest first.
pub fn dmesg(mut visit: impl FnMut(LogRecord<'_>)) {
    without_interrupts(|| RING.lock().for_each(&mut visit));
}
