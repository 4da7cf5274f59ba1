//! One domain's connection: its watches and open transactions, the reassembly of
//! requests from the request ring, and the queue of replies and watch events waiting
//! for room in the response ring.
//!
//! Ring protocol (`xen/include/public/io/xs_wire.h`, `docs/misc/xenstore-ring.txt`,
//! pvh-abi.md §6.1): two 1024-byte byte rings with free-running u32 indices; byte `i`
//! lives at `i % 1024`; the producer writes data, then moves its index. A message is a
//! 16-byte header and up to 4096 payload bytes and may be split anywhere: across the
//! ring's wrap and across notifications, so partial headers and payloads are kept here
//! between calls.
//!
//! Untrusted input: the indices and the bytes are guest memory and may change at any
//! time. Each index is read once per call and checked (`prod − cons ≤ 1024`); bytes are
//! copied out before they are parsed, so a checked message cannot change under us. A
//! guest that breaks the ring (bad indices, a length over 4096) gets its connection
//! marked broken: Xen's `ignore_connection` — watches, transactions and queued output
//! are dropped and the connection is no longer served; nothing else is affected.
//!
//! Bounded memory: the reassembly buffer holds at most one message; the output queue
//! of a domU is bounded by [`super::Quotas::max_pending_output_bytes`]: while it is over
//! the bound no further requests are read (the guest must consume replies first), and
//! watch events that do not fit are dropped and counted instead of queued.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::transaction::Transaction;
use super::wire::{
    MessageHeader, HEADER_SIZE, RING_REQ_CONS_OFFSET, RING_REQ_OFFSET, RING_REQ_PROD_OFFSET, RING_RSP_CONS_OFFSET,
    RING_RSP_OFFSET, RING_RSP_PROD_OFFSET, XENSTORE_PAYLOAD_MAX, XENSTORE_RING_SIZE, XS_WATCH_EVENT,
};
use crate::shared_page::SharedPage;

/// Why a connection stopped being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokenReason {
    /// A request header announced more than 4096 payload bytes.
    OversizedMessage {
        /// The announced length.
        len: u32,
    },
    /// `req_prod − req_cons` exceeded the ring size.
    RequestIndices {
        /// `req_cons` as read.
        cons: u32,
        /// `req_prod` as read.
        prod: u32,
    },
    /// `rsp_prod − rsp_cons` exceeded the ring size.
    ResponseIndices {
        /// `rsp_cons` as read.
        cons: u32,
        /// `rsp_prod` as read.
        prod: u32,
    },
}

impl fmt::Display for BrokenReason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokenReason::OversizedMessage { len } => {
                write!(formatter, "request of {len} bytes exceeds the {XENSTORE_PAYLOAD_MAX}-byte limit")
            }
            BrokenReason::RequestIndices { cons, prod } => {
                write!(formatter, "request ring indices out of range (cons {cons}, prod {prod})")
            }
            BrokenReason::ResponseIndices { cons, prod } => {
                write!(formatter, "response ring indices out of range (cons {cons}, prod {prod})")
            }
        }
    }
}

/// A registered watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Watch {
    /// Absolute path, or a special `@` path.
    pub path: String,
    /// The guest's token, returned in every event.
    pub token: Vec<u8>,
    /// Whether the guest gave the path relative to its home (events are then relative too).
    pub relative: bool,
}

/// What one call to [`Connection::read_request`] found.
pub(crate) struct RequestRead {
    /// Bytes were taken from the ring (the guest may be waiting for room).
    pub consumed: bool,
    /// A complete message, if one is now assembled.
    pub message: Option<(MessageHeader, Vec<u8>)>,
}

#[derive(Debug, Default)]
pub(crate) struct Connection {
    pub watches: Vec<Watch>,
    pub transactions: BTreeMap<u32, Transaction>,
    pub broken: Option<BrokenReason>,
    pub dropped_events: u64,
    /// Whole messages (header and payload) waiting to be sent, oldest first.
    output: VecDeque<Vec<u8>>,
    /// Bytes of the front message already in the response ring.
    front_written: usize,
    /// Bytes in `output` not yet written.
    pending_bytes: usize,
    header: [u8; HEADER_SIZE],
    header_length: usize,
    /// Set once the header is complete: the payload collected so far and its length.
    payload: Option<(MessageHeader, Vec<u8>)>,
}

impl Connection {
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Queues a message unconditionally (a reply: its request was already bounded).
    pub fn queue(&mut self, header: MessageHeader, payload: &[u8]) {
        let mut message = Vec::with_capacity(HEADER_SIZE + payload.len());
        message.extend_from_slice(&header.to_bytes());
        message.extend_from_slice(payload);
        self.pending_bytes += message.len();
        self.output.push_back(message);
    }

    /// Queues a watch event `path NUL token NUL`, unless it is over-long (Xen drops
    /// those) or would take the queue past `limit` (dropped and counted).
    pub fn queue_event(&mut self, path: &str, token: &[u8], limit: Option<usize>) {
        let length = path.len() + 1 + token.len() + 1;
        if length > XENSTORE_PAYLOAD_MAX {
            return;
        }
        if limit.is_some_and(|limit| self.pending_bytes + HEADER_SIZE + length > limit) {
            self.dropped_events += 1;
            return;
        }
        let mut payload = Vec::with_capacity(length);
        payload.extend_from_slice(path.as_bytes());
        payload.push(0);
        payload.extend_from_slice(token);
        payload.push(0);
        let header = MessageHeader { message_type: XS_WATCH_EVENT, req_id: 0, tx_id: 0, len: length as u32 };
        self.queue(header, &payload);
    }

    /// Takes every queued message (connections without a ring: dom0, tests).
    pub fn take_output(&mut self) -> Vec<(MessageHeader, Vec<u8>)> {
        let mut messages = Vec::new();
        for message in self.output.drain(..) {
            let Some((header, payload)) = message.split_first_chunk::<HEADER_SIZE>() else {
                continue;
            };
            messages.push((MessageHeader::from_bytes(header), Vec::from(payload)));
        }
        self.front_written = 0;
        self.pending_bytes = 0;
        messages
    }

    /// Drops the connection's state after it broke.
    pub fn break_with(&mut self, reason: BrokenReason) {
        self.broken = Some(reason);
        self.watches.clear();
        self.transactions.clear();
        self.output.clear();
        self.front_written = 0;
        self.pending_bytes = 0;
        self.payload = None;
        self.header_length = 0;
    }

    /// Takes request bytes from the ring until one message is complete or the ring is
    /// empty, and moves `req_cons` past what it took.
    pub fn read_request(&mut self, ring: &mut dyn SharedPage) -> Result<RequestRead, BrokenReason> {
        let cons = ring.read_u32(RING_REQ_CONS_OFFSET);
        let prod = ring.read_u32(RING_REQ_PROD_OFFSET);
        let available = prod.wrapping_sub(cons);
        if available > XENSTORE_RING_SIZE {
            return Err(BrokenReason::RequestIndices { cons, prod });
        }
        let mut taken: u32 = 0;
        let mut message = None;
        loop {
            let wanted = match &self.payload {
                None => HEADER_SIZE - self.header_length,
                Some((header, payload)) => header.len as usize - payload.len(),
            };
            if wanted == 0 {
                if let Some(complete) = self.payload.take() {
                    message = Some(complete);
                    self.header_length = 0;
                }
                break;
            }
            let room = (available - taken) as usize;
            let count = wanted.min(room);
            if count == 0 {
                break;
            }
            let mut bytes = [0u8; XENSTORE_RING_SIZE as usize];
            let chunk = bytes.get_mut(..count).unwrap_or(&mut []);
            copy_from_ring(ring, RING_REQ_OFFSET, cons.wrapping_add(taken), chunk);
            taken += count as u32;
            match &mut self.payload {
                None => {
                    let start = self.header_length;
                    if let Some(target) = self.header.get_mut(start..start + count) {
                        target.copy_from_slice(chunk);
                    }
                    self.header_length += count;
                    if self.header_length == HEADER_SIZE {
                        let header = MessageHeader::from_bytes(&self.header);
                        if header.len as usize > XENSTORE_PAYLOAD_MAX {
                            ring.write_u32(RING_REQ_CONS_OFFSET, cons.wrapping_add(taken));
                            return Err(BrokenReason::OversizedMessage { len: header.len });
                        }
                        self.payload = Some((header, Vec::with_capacity(header.len as usize)));
                    }
                }
                Some((_, payload)) => payload.extend_from_slice(chunk),
            }
        }
        if taken > 0 {
            ring.write_u32(RING_REQ_CONS_OFFSET, cons.wrapping_add(taken));
        }
        Ok(RequestRead { consumed: taken > 0, message })
    }

    /// Writes as much queued output as the response ring has room for; true if any.
    pub fn write_output(&mut self, ring: &mut dyn SharedPage) -> Result<bool, BrokenReason> {
        if self.output.is_empty() {
            return Ok(false);
        }
        let cons = ring.read_u32(RING_RSP_CONS_OFFSET);
        let prod = ring.read_u32(RING_RSP_PROD_OFFSET);
        let used = prod.wrapping_sub(cons);
        if used > XENSTORE_RING_SIZE {
            return Err(BrokenReason::ResponseIndices { cons, prod });
        }
        let mut room = (XENSTORE_RING_SIZE - used) as usize;
        let mut written: u32 = 0;
        while room > 0 {
            let Some(front) = self.output.front() else {
                break;
            };
            let rest = front.get(self.front_written..).unwrap_or(&[]);
            let count = rest.len().min(room);
            copy_to_ring(ring, RING_RSP_OFFSET, prod.wrapping_add(written), rest.get(..count).unwrap_or(&[]));
            written += count as u32;
            room -= count;
            self.front_written += count;
            self.pending_bytes = self.pending_bytes.saturating_sub(count);
            if self.front_written >= front.len() {
                self.output.pop_front();
                self.front_written = 0;
            }
        }
        if written > 0 {
            ring.write_u32(RING_RSP_PROD_OFFSET, prod.wrapping_add(written));
        }
        Ok(written > 0)
    }
}

/// Copies `buffer.len()` (≤ 1024) bytes starting at free-running index `index` of the
/// ring at `base`, in two pieces if they wrap.
fn copy_from_ring(ring: &dyn SharedPage, base: usize, index: u32, buffer: &mut [u8]) {
    let offset = (index % XENSTORE_RING_SIZE) as usize;
    let first = buffer.len().min(XENSTORE_RING_SIZE as usize - offset);
    let (head, tail) = buffer.split_at_mut(first);
    ring.read(base + offset, head);
    ring.read(base, tail);
}

/// Copies `data` (≤ 1024 bytes) to the ring at `base` from free-running index `index`.
fn copy_to_ring(ring: &mut dyn SharedPage, base: usize, index: u32, data: &[u8]) {
    let offset = (index % XENSTORE_RING_SIZE) as usize;
    let first = data.len().min(XENSTORE_RING_SIZE as usize - offset);
    let (head, tail) = data.split_at(first);
    ring.write(base + offset, head);
    ring.write(base, tail);
}
