//! The hypervisor log ring (`dmesg`): a fixed-size byte ring of timestamped, levelled records.
//!
//! Why: the log must work from the first instruction of boot, before the heap exists, and
//! must survive in a `static` that a post-mortem debugger can find and decode (DESIGN.md,
//! decision 9). So the ring never allocates; the caller wraps it in a spin lock.
//!
//! Byte layout (all little-endian), every record starts on an 8-byte boundary:
//!
//! ```text
//! offset 0  u8   kind       RECORD_KIND_TEXT (0x52) or RECORD_KIND_WRAP (0x57)
//! offset 1  u8   level      Level as u8 (0 = Error .. 4 = Trace)
//! offset 2  u16  text_len   bytes of UTF-8 text that follow the header
//! offset 4  u32  reserved   zero
//! offset 8  u64  timestamp  nanoseconds since boot
//! offset 16 ..   text       `text_len` bytes, then zero padding to a multiple of 8
//! ```
//!
//! Invariants:
//! - Records never wrap: when a record does not fit between the write offset and the end of
//!   the buffer, a one-byte wrap marker is written there (if at least a header fits; a tail
//!   shorter than a header is skipped implicitly) and the record goes to offset 0.
//! - Live records are `records` consecutive records starting at `head`; the oldest has
//!   sequence number `first_seq`, and each following one has the next number, so sequence
//!   numbers are implicit and need no bytes.
//! - Text is valid UTF-8 (it came from a `&str` and is only cut on a char boundary).
//! - When space is needed the oldest records are dropped and counted in `overwritten`.

use core::fmt;

/// Longest text kept for one record, in bytes; longer text is cut on a char boundary.
pub const MAX_RECORD_TEXT: usize = 512;

/// Size of a record header in bytes.
const RECORD_HEADER_BYTES: usize = 16;
/// Alignment of every record in the ring.
const RECORD_ALIGN: usize = 8;
/// Kind byte of a record that carries text.
const RECORD_KIND_TEXT: u8 = 0x52;
/// Kind byte of the marker that sends readers back to offset 0.
const RECORD_KIND_WRAP: u8 = 0x57;

/// Severity of a log record; `Error` is the most severe and compares smallest.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Level {
    /// All levels, most severe first.
    pub const ALL: [Level; 5] = [Level::Error, Level::Warn, Level::Info, Level::Debug, Level::Trace];

    /// The lower-case name used on the command line and in the log ("error" .. "trace").
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }

    /// Parses a level name, case-insensitively; also accepts "all" (Trace), "warning"
    /// (Warn) and "err" (Error).
    pub fn parse(name: &str) -> Option<Level> {
        const ALIASES: [(&str, Level); 8] = [
            ("error", Level::Error),
            ("err", Level::Error),
            ("warn", Level::Warn),
            ("warning", Level::Warn),
            ("info", Level::Info),
            ("debug", Level::Debug),
            ("trace", Level::Trace),
            ("all", Level::Trace),
        ];
        ALIASES.iter().find(|(alias, _)| alias.eq_ignore_ascii_case(name)).map(|&(_, level)| level)
    }

    fn to_byte(self) -> u8 {
        self as u8
    }

    fn from_byte(byte: u8) -> Level {
        Level::ALL.get(usize::from(byte)).copied().unwrap_or(Level::Trace)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// One record as read back from the ring; `text` borrows the ring's bytes.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct LogRecord<'a> {
    pub seq: u64,
    pub timestamp_ns: u64,
    pub level: Level,
    pub text: &'a str,
}

/// A log ring of `BYTES` bytes. See the module documentation for the layout.
pub struct LogRing<const BYTES: usize> {
    buffer: [u8; BYTES],
    /// Offset of the oldest live record (meaningless when `records == 0`).
    head: usize,
    /// Offset where the next record will be written.
    tail: usize,
    /// Number of live records.
    records: usize,
    /// Sequence number of the oldest live record.
    first_seq: u64,
    /// Sequence number the next pushed record gets.
    next_seq: u64,
    /// Records dropped to make room (or too large for a tiny ring).
    overwritten: u64,
}

impl<const BYTES: usize> Default for LogRing<BYTES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const BYTES: usize> LogRing<BYTES> {
    /// An empty ring; `const` so it can initialise a `static`.
    pub const fn new() -> Self {
        LogRing { buffer: [0; BYTES], head: 0, tail: 0, records: 0, first_seq: 0, next_seq: 0, overwritten: 0 }
    }

    /// Appends a record and returns its sequence number. Text longer than
    /// [`MAX_RECORD_TEXT`] (or than the ring can hold) is cut on a char boundary; the oldest
    /// records are dropped, and counted, to make room.
    pub fn push(&mut self, timestamp_ns: u64, level: Level, text: &str) -> u64 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);

        let usable_bytes = BYTES - BYTES % RECORD_ALIGN;
        let Some(text_capacity) = usable_bytes.checked_sub(RECORD_HEADER_BYTES) else {
            // The ring cannot hold even an empty record: the record is lost at once.
            self.overwritten = self.overwritten.saturating_add(1);
            self.first_seq = self.next_seq;
            return seq;
        };
        let text = truncate_on_char_boundary(text, MAX_RECORD_TEXT.min(text_capacity));
        let record_bytes = record_size(text.len());

        self.make_room(record_bytes);

        let start = self.tail;
        let mut header = [0u8; RECORD_HEADER_BYTES];
        header[0] = RECORD_KIND_TEXT;
        header[1] = level.to_byte();
        // `text.len() <= MAX_RECORD_TEXT` so it fits in a u16.
        header[2..4].copy_from_slice(&(text.len() as u16).to_le_bytes());
        header[8..16].copy_from_slice(&timestamp_ns.to_le_bytes());
        if let Some(slot) = self.buffer.get_mut(start..start + RECORD_HEADER_BYTES) {
            slot.copy_from_slice(&header);
        }
        let text_start = start + RECORD_HEADER_BYTES;
        if let Some(slot) = self.buffer.get_mut(text_start..start + record_bytes) {
            let (text_slot, padding) = slot.split_at_mut(text.len());
            text_slot.copy_from_slice(text.as_bytes());
            padding.fill(0);
        }
        if self.records == 0 {
            self.head = start;
            self.first_seq = seq;
        }
        self.records += 1;
        self.tail = start + record_bytes;
        seq
    }

    /// Drops oldest records until `record_bytes` contiguous bytes are free at `tail`
    /// (moving `tail` to 0 behind a wrap marker if the end of the buffer is too short).
    fn make_room(&mut self, record_bytes: usize) {
        loop {
            if self.records == 0 {
                self.head = 0;
                self.tail = 0;
                return;
            }
            let fits_before_end = self.tail + record_bytes <= BYTES;
            if fits_before_end {
                // Free space after tail is [tail, BYTES) when head is behind it, else [tail, head).
                if self.head < self.tail || self.tail + record_bytes <= self.head {
                    return;
                }
                self.drop_oldest();
            } else if self.head < self.tail {
                // The end region [tail, BYTES) is free: mark it and restart at 0.
                if self.tail + RECORD_HEADER_BYTES <= BYTES {
                    if let Some(kind) = self.buffer.get_mut(self.tail) {
                        *kind = RECORD_KIND_WRAP;
                    }
                }
                self.tail = 0;
            } else {
                self.drop_oldest();
            }
        }
    }

    /// Forgets the oldest record.
    fn drop_oldest(&mut self) {
        let offset = self.normalize(self.head);
        let text_len = self.text_len_at(offset);
        self.head = offset + record_size(text_len);
        self.records -= 1;
        self.first_seq = self.first_seq.wrapping_add(1);
        self.overwritten = self.overwritten.saturating_add(1);
        if self.records == 0 {
            self.head = self.tail;
        } else {
            self.head = self.normalize(self.head);
        }
    }

    /// Maps an offset that points at a wrap marker or at a tail too short for a header to 0.
    fn normalize(&self, offset: usize) -> usize {
        if offset + RECORD_HEADER_BYTES > BYTES || self.buffer.get(offset) == Some(&RECORD_KIND_WRAP) {
            0
        } else {
            offset
        }
    }

    fn text_len_at(&self, offset: usize) -> usize {
        match self.buffer.get(offset + 2..offset + 4) {
            Some(&[low, high]) => usize::from(u16::from_le_bytes([low, high])),
            _ => 0,
        }
    }

    fn record_at(&self, offset: usize, seq: u64) -> LogRecord<'_> {
        let level = Level::from_byte(self.buffer.get(offset + 1).copied().unwrap_or(0));
        let mut timestamp = [0u8; 8];
        if let Some(bytes) = self.buffer.get(offset + 8..offset + 16) {
            timestamp.copy_from_slice(bytes);
        }
        let text_start = offset + RECORD_HEADER_BYTES;
        let text = self
            .buffer
            .get(text_start..text_start + self.text_len_at(offset))
            .and_then(|bytes| core::str::from_utf8(bytes).ok())
            .unwrap_or("");
        LogRecord { seq, timestamp_ns: u64::from_le_bytes(timestamp), level, text }
    }

    /// Calls `f` for every live record, oldest first.
    pub fn for_each(&self, f: impl FnMut(LogRecord<'_>)) {
        self.for_each_since(0, f);
    }

    /// Calls `f` for every live record whose sequence number is at least `first_seq`,
    /// oldest first (records already overwritten are silently missing).
    pub fn for_each_since(&self, first_seq: u64, mut f: impl FnMut(LogRecord<'_>)) {
        let mut offset = self.head;
        for index in 0..self.records {
            offset = self.normalize(offset);
            let seq = self.first_seq.wrapping_add(index as u64);
            if seq >= first_seq {
                f(self.record_at(offset, seq));
            }
            offset += record_size(self.text_len_at(offset));
        }
    }

    /// Number of records dropped to make room since the ring was created.
    pub fn overwritten(&self) -> u64 {
        self.overwritten
    }

    /// Number of live records.
    pub fn len(&self) -> usize {
        self.records
    }

    /// Whether the ring holds no records.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The sequence number the next pushed record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The sequence number of the oldest live record (equal to `next_seq` when empty).
    pub fn first_seq(&self) -> u64 {
        if self.records == 0 {
            self.next_seq
        } else {
            self.first_seq
        }
    }
}

/// Bytes a record with `text_len` bytes of text occupies, padding included.
fn record_size(text_len: usize) -> usize {
    (RECORD_HEADER_BYTES + text_len).next_multiple_of(RECORD_ALIGN)
}

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a char boundary.
fn truncate_on_char_boundary(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or("")
}

/// A timestamp shown like Linux `dmesg`: `[%5u.%06u]`, seconds and microseconds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Timestamp {
    pub nanoseconds: u64,
}

impl fmt::Display for Timestamp {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.nanoseconds / 1_000_000_000;
        let microseconds = (self.nanoseconds % 1_000_000_000) / 1_000;
        write!(formatter, "[{seconds:5}.{microseconds:06}]")
    }
}

/// Formats nanoseconds since boot as `[    12.345678]`-style text (Linux printk's
/// `[%5lu.%06lu]`: seconds right-aligned in at least 5 columns, then microseconds).
pub fn format_timestamp(ns: u64) -> impl fmt::Display {
    Timestamp { nanoseconds: ns }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::{String, ToString};
    use alloc::vec::Vec;

    fn collect<const N: usize>(ring: &LogRing<N>) -> Vec<(u64, u64, Level, String)> {
        let mut out = Vec::new();
        ring.for_each(|record| out.push((record.seq, record.timestamp_ns, record.level, record.text.to_string())));
        out
    }

    #[test]
    fn level_names_and_order() {
        assert!(Level::Error < Level::Warn && Level::Debug < Level::Trace);
        for level in Level::ALL {
            assert_eq!(Level::parse(level.as_str()), Some(level));
        }
        assert_eq!(Level::parse("WARNING"), Some(Level::Warn));
        assert_eq!(Level::parse("Err"), Some(Level::Error));
        assert_eq!(Level::parse("all"), Some(Level::Trace));
        assert_eq!(Level::parse(""), None);
        assert_eq!(Level::parse("verbose"), None);
    }

    #[test]
    fn push_and_read_back_in_order() {
        let mut ring = LogRing::<1024>::new();
        assert!(ring.is_empty());
        assert_eq!(ring.push(5, Level::Info, "hello"), 0);
        assert_eq!(ring.push(6, Level::Error, ""), 1);
        assert_eq!(ring.push(7, Level::Trace, "ünïcödé"), 2);
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.next_seq(), 3);
        assert_eq!(
            collect(&ring),
            [
                (0, 5, Level::Info, "hello".to_string()),
                (1, 6, Level::Error, String::new()),
                (2, 7, Level::Trace, "ünïcödé".to_string()),
            ]
        );
        let mut since = Vec::new();
        ring.for_each_since(1, |record| since.push(record.seq));
        assert_eq!(since, [1, 2]);
        assert_eq!(ring.overwritten(), 0);
    }

    #[test]
    fn long_text_is_truncated_on_char_boundary() {
        let mut ring = LogRing::<4096>::new();
        let text = "é".repeat(400); // 800 bytes
        ring.push(0, Level::Info, &text);
        let records = collect(&ring);
        assert_eq!(records[0].3.len(), 512);
        assert!(text.starts_with(&records[0].3));
        let odd = alloc::format!("a{}", "é".repeat(400));
        ring.push(0, Level::Info, &odd);
        assert_eq!(collect(&ring)[1].3.len(), 511);
    }

    #[test]
    fn oldest_records_are_overwritten_and_counted() {
        let mut ring = LogRing::<256>::new();
        for index in 0..100u64 {
            let text = format!("message number {index}");
            assert_eq!(ring.push(index * 10, Level::Debug, &text), index);
            let records = collect(&ring);
            // Always the newest records, contiguous, ending at the one just pushed.
            let last = records.last().unwrap();
            assert_eq!(last.0, index);
            assert_eq!(last.3, text);
            for pair in records.windows(2) {
                assert_eq!(pair[0].0 + 1, pair[1].0);
            }
            for record in &records {
                assert_eq!(record.3, format!("message number {}", record.0));
                assert_eq!(record.1, record.0 * 10);
            }
            assert_eq!(ring.overwritten() + ring.len() as u64, index + 1);
        }
        assert!(ring.overwritten() > 50);
    }

    #[test]
    fn mixed_sizes_with_deterministic_random_lengths() {
        let mut ring = LogRing::<1000>::new(); // not a multiple of 8 on purpose
        let mut state = 0x1234_5678_9abc_def0u64;
        for index in 0..2000u64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let length = (state % 700) as usize;
            let text: String = (0..length).map(|i| char::from(b'a' + ((i as u64 + index) % 26) as u8)).collect();
            ring.push(index, Level::ALL[(state % 5) as usize], &text);
            let records = collect(&ring);
            let last = records.last().unwrap();
            assert_eq!(last.0, index);
            assert_eq!(last.3.len(), length.min(MAX_RECORD_TEXT));
            assert_eq!(ring.overwritten() + ring.len() as u64, index + 1);
        }
    }

    #[test]
    fn record_larger_than_tiny_ring() {
        let mut ring = LogRing::<40>::new();
        ring.push(1, Level::Info, "this text is much longer than the ring can hold");
        assert_eq!(collect(&ring)[0].3, "this text is much longer");
        ring.push(2, Level::Info, "x");
        assert_eq!(collect(&ring).len(), 1);
        assert_eq!(ring.overwritten(), 1);

        let mut useless = LogRing::<8>::new();
        assert_eq!(useless.push(1, Level::Info, "lost"), 0);
        assert_eq!(useless.len(), 0);
        assert_eq!(useless.overwritten(), 1);
        assert_eq!(useless.push(1, Level::Info, "lost"), 1);
    }

    #[test]
    fn static_ring_without_heap() {
        static RING: spin::Mutex<LogRing<512>> = spin::Mutex::new(LogRing::new());
        RING.lock().push(1, Level::Warn, "early");
        assert_eq!(RING.lock().len(), 1);
    }

    #[test]
    fn timestamps_format_like_dmesg() {
        assert_eq!(format!("{}", format_timestamp(0)), "[    0.000000]");
        assert_eq!(format!("{}", format_timestamp(12_345_678_901)), "[   12.345678]");
        assert_eq!(format!("{}", format_timestamp(123_456_000_000_000)), "[123456.000000]");
        assert!(format!("{}", format_timestamp(u64::MAX)).starts_with("[18446744073."));
    }
}
