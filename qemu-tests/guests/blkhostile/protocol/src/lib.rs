//! The protocol half of the `blkhostile` test guest: everything it says to dom0 that
//! can be written and checked without a hypervisor.
//!
//! - [`xenstore`]: a xenstore client over the store ring (`xs_wire.h`): READ and WRITE
//!   requests, replies matched by `req_id`, errors, watch events skipped.
//! - [`blkif`]: the frontend's side of a single-page blkif ring (`io/ring.h`,
//!   `io/blkif.h`): request encoding (including deliberately malformed requests),
//!   response decoding, index math and the notification rule.
//! - [`grant_table`]: v1 grant entries in the guest's own grant frame.
//! - [`pattern`]: data patterns and a checksum for round trips.
//!
//! Shared memory is reached only through [`SharedPage`] (the guest implements it with
//! volatile accesses to its identity-mapped pages, the tests with plain arrays), and
//! the peer is waited for only through [`Environment`] with a [`Deadline`], so every
//! wait is bounded and every rule here runs on the host under `cargo test`.
//!
//! Nothing read from a shared page is trusted: indices are checked before use, lengths
//! are bounded, and no value from dom0 can make this code panic or loop forever.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod blkif;
pub mod grant_table;
pub mod pattern;
pub mod xenstore;

/// Bytes in a page (grant frames, ring pages, data pages).
pub const PAGE_SIZE: usize = 4096;

/// One 4 KiB page shared with another domain. Offsets are bytes from the page start;
/// multi-byte values are little endian. Accesses outside the page must not panic:
/// reads return 0 and writes are dropped (callers here never make them).
pub trait SharedPage {
    fn read_u8(&self, offset: usize) -> u8;
    fn write_u8(&mut self, offset: usize, value: u8);
    fn read_u16(&self, offset: usize) -> u16;
    fn write_u16(&mut self, offset: usize, value: u16);
    fn read_u32(&self, offset: usize) -> u32;
    fn write_u32(&mut self, offset: usize, value: u32);
    /// A full memory barrier (`xen_mb()`): accesses before it are visible to the peer
    /// before accesses after it.
    fn fence(&self);

    /// Copies `bytes` to `offset..offset + bytes.len()`.
    fn write_bytes(&mut self, offset: usize, bytes: &[u8]) {
        for (at, &byte) in bytes.iter().enumerate() {
            self.write_u8(offset + at, byte);
        }
    }

    /// Copies `offset..offset + buffer.len()` into `buffer`.
    fn read_bytes(&self, offset: usize, buffer: &mut [u8]) {
        for (at, byte) in buffer.iter_mut().enumerate() {
            *byte = self.read_u8(offset + at);
        }
    }
}

/// What the protocol code needs from the world around it while it waits for dom0.
pub trait Environment {
    /// Signals event channel `port` (`EVTCHNOP_send`).
    fn notify(&mut self, port: u32);
    /// Gives the peer a chance to run before the next poll (`SCHEDOP_yield`).
    fn pause(&mut self);
    /// A monotonic clock in nanoseconds, or `None` if there is none (then only the
    /// poll budget of a [`Deadline`] bounds a wait).
    fn now_ns(&mut self) -> Option<u64>;
}

/// A bound on one wait: a point in time and, whatever the clock says, a number of
/// polls. Either one running out ends the wait.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    end_ns: Option<u64>,
    polls_left: u64,
}

/// Polls a [`Deadline`] allows however slowly time passes (or if there is no clock).
pub const MAX_POLLS: u64 = 20_000_000;

impl Deadline {
    /// A deadline `timeout_ns` from now (and at most [`MAX_POLLS`] polls).
    pub fn after(env: &mut dyn Environment, timeout_ns: u64) -> Self {
        Self::with_polls(env, timeout_ns, MAX_POLLS)
    }

    /// A deadline `timeout_ns` from now and at most `polls` polls.
    pub fn with_polls(env: &mut dyn Environment, timeout_ns: u64, polls: u64) -> Self {
        let end_ns = env.now_ns().map(|now| now.saturating_add(timeout_ns));
        Self { end_ns, polls_left: polls }
    }

    /// Called once per unsuccessful poll: pauses and says whether the wait may go on.
    pub fn pause(&mut self, env: &mut dyn Environment) -> bool {
        if self.polls_left == 0 {
            return false;
        }
        self.polls_left -= 1;
        env.pause();
        match (self.end_ns, env.now_ns()) {
            (Some(end), Some(now)) => now < end,
            _ => true,
        }
    }
}

#[cfg(test)]
pub(crate) mod testing;
