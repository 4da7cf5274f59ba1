//! A domain's console history: the last [`CONSOLE_HISTORY_BYTES`] bytes the guest wrote,
//! with a running byte count so a reader (the operator attached with `console`) can ask
//! for "everything since offset N" and learn how much it missed.
//!
//! Why a byte ring and not lines: guests write partial lines, escape sequences and
//! binary junk; the console is replayed byte for byte. The ring is bounded, so a guest
//! that floods its console only overwrites its own history.

use alloc::vec::Vec;

/// Bytes of console output kept per domain while nobody is attached.
pub const CONSOLE_HISTORY_BYTES: usize = 64 * 1024;

/// The ring. `written` counts every byte ever appended; the ring holds the last
/// `min(written, capacity)` of them.
#[derive(Debug)]
pub struct ConsoleHistory {
    buffer: Vec<u8>,
    written: u64,
}

impl Default for ConsoleHistory {
    fn default() -> Self {
        ConsoleHistory::new(CONSOLE_HISTORY_BYTES)
    }
}

impl ConsoleHistory {
    /// A ring of `capacity` bytes (at least 1).
    pub fn new(capacity: usize) -> ConsoleHistory {
        ConsoleHistory { buffer: alloc::vec![0; capacity.max(1)], written: 0 }
    }

    /// Appends guest output, overwriting the oldest bytes when full.
    pub fn append(&mut self, bytes: &[u8]) {
        let capacity = self.buffer.len();
        let skip = bytes.len().saturating_sub(capacity);
        self.written += skip as u64;
        for &byte in &bytes[skip..] {
            let position = (self.written % capacity as u64) as usize;
            self.buffer[position] = byte;
            self.written += 1;
        }
    }

    /// Total bytes ever appended (the offset the next byte will have).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Copies out the retained bytes from offset `since` on. Returns the bytes and how
    /// many bytes after `since` were already overwritten (lost to this reader).
    pub fn read_since(&self, since: u64) -> (Vec<u8>, u64) {
        let capacity = self.buffer.len() as u64;
        let oldest = self.written.saturating_sub(capacity);
        let start = since.max(oldest).min(self.written);
        let lost = start - since.min(start);
        let mut out = Vec::with_capacity((self.written - start) as usize);
        for offset in start..self.written {
            out.push(self.buffer[(offset % capacity) as usize]);
        }
        (out, lost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_bytes_and_counts_losses() {
        let mut history = ConsoleHistory::new(8);
        history.append(b"hello");
        assert_eq!(history.read_since(0), (b"hello".to_vec(), 0));
        history.append(b" world");
        assert_eq!(history.written(), 11);
        assert_eq!(history.read_since(0), (b"lo world".to_vec(), 3));
        assert_eq!(history.read_since(9), (b"ld".to_vec(), 0));
        assert_eq!(history.read_since(11), (Vec::new(), 0));
        assert_eq!(history.read_since(500), (Vec::new(), 0));
    }

    #[test]
    fn a_flood_larger_than_the_ring_keeps_its_tail() {
        let mut history = ConsoleHistory::new(4);
        history.append(b"0123456789");
        assert_eq!(history.written(), 10);
        assert_eq!(history.read_since(0), (b"6789".to_vec(), 6));
        let mut big = ConsoleHistory::default();
        for _ in 0..100 {
            big.append(&[b'x'; 1000]);
        }
        let (bytes, lost) = big.read_since(0);
        assert_eq!(bytes.len(), CONSOLE_HISTORY_BYTES);
        assert_eq!(lost, 100_000 - CONSOLE_HISTORY_BYTES as u64);
    }
}
