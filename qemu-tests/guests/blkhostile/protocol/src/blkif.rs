//! The frontend's side of a single-page blkif ring: encoding requests (well-formed and
//! deliberately malformed), decoding responses, the ring's index math and
//! notification rule, and the verdict on each answer.
//!
//! Layout (`xen/include/public/io/ring.h`, `io/blkif.h`; pvh-abi.md §7.0, §7.2): the
//! shared ring header `req_prod`, `req_event`, `rsp_prod`, `rsp_event` (u32 at 0, 4, 8,
//! 12) and padding to 64 bytes, then 32 entries of 112 bytes (the largest power of two
//! that fits in 4096 − 64). A request and its response share a slot.
//!
//! - Read/write request: `operation` u8 @0, `nr_segments` u8 @1, `handle` u16 @2,
//!   `id` u64 @8, `sector_number` u64 @16 (512-byte units), `seg[11]` @24 of 8 bytes:
//!   `gref` u32 @0, `first_sect` u8 @4, `last_sect` u8 @5 (sectors 0..=7 of the page).
//! - Indirect request: `operation` 6 @0, `indirect_op` u8 @1, `nr_segments` u16 @2,
//!   `id` @8, `sector_number` @16, `handle` u16 @24, `indirect_grefs[8]` u32 @28.
//! - Response: `id` u64 @0, `operation` u8 @8, `status` i16 @10.
//!
//! The frontend owns `req_prod` and `rsp_event`; dom0 owns `rsp_prod` and `req_event`.
//! `rsp_prod` is checked against what was requested before any response is read: a
//! back end cannot make this side read a slot it never asked about.

use core::fmt;

use crate::{Deadline, Environment, SharedPage, PAGE_SIZE};

pub const BLKIF_OP_READ: u8 = 0;
pub const BLKIF_OP_WRITE: u8 = 1;
pub const BLKIF_OP_FLUSH_DISKCACHE: u8 = 3;
pub const BLKIF_OP_DISCARD: u8 = 5;
pub const BLKIF_OP_INDIRECT: u8 = 6;

pub const BLKIF_RSP_OKAY: i16 = 0;
pub const BLKIF_RSP_ERROR: i16 = -1;
pub const BLKIF_RSP_EOPNOTSUPP: i16 = -2;

/// `BLKIF_MAX_SEGMENTS_PER_REQUEST`.
pub const BLKIF_MAX_SEGMENTS_PER_REQUEST: usize = 11;
/// `BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST`.
pub const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST: usize = 8;
/// Bytes of a ring entry (the union of requests and response).
pub const ENTRY_SIZE: usize = 112;
/// Bytes of a response at the start of its slot.
pub const RESPONSE_SIZE: usize = 16;
/// Bytes before the first entry.
pub const RING_HEADER_SIZE: usize = 64;
/// Entries in a one-page ring.
pub const RING_SIZE: u32 = ring_size(PAGE_SIZE);
/// The protocol's sector, whatever the disk's.
pub const SECTOR_SIZE: usize = 512;
/// Sectors in one granted page.
pub const SECTORS_PER_PAGE: u8 = 8;

pub const REQ_PROD_OFFSET: usize = 0;
pub const REQ_EVENT_OFFSET: usize = 4;
pub const RSP_PROD_OFFSET: usize = 8;
pub const RSP_EVENT_OFFSET: usize = 12;

/// `__RING_SIZE`: the largest power of two of entries that fit after the header.
pub const fn ring_size(page_size: usize) -> u32 {
    let fit = (page_size - RING_HEADER_SIZE) / ENTRY_SIZE;
    if fit == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - fit.leading_zeros())
    }
}

/// Byte offset of the slot a free-running ring index names.
pub fn slot_offset(index: u32) -> usize {
    RING_HEADER_SIZE + (index & (RING_SIZE - 1)) as usize * ENTRY_SIZE
}

/// `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`: after moving the producer from `old` to
/// `new`, the peer wants an event iff its `event` index lies in `(old, new]`.
pub fn needs_notification(old: u32, new: u32, event: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

/// `struct blkif_request_segment`: sectors `first_sect..=last_sect` of granted page
/// `gref`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub gref: u32,
    pub first_sect: u8,
    pub last_sect: u8,
}

impl Segment {
    /// The whole page.
    pub fn page(gref: u32) -> Self {
        Self { gref, first_sect: 0, last_sect: SECTORS_PER_PAGE - 1 }
    }

    pub fn encode(&self) -> [u8; 8] {
        let mut bytes = [0; 8];
        bytes[..4].copy_from_slice(&self.gref.to_le_bytes());
        bytes[4] = self.first_sect;
        bytes[5] = self.last_sect;
        bytes
    }
}

/// A read or write request. `nr_segments` is written as given, even when it disagrees
/// with `segments` (at most [`BLKIF_MAX_SEGMENTS_PER_REQUEST`] of which are written):
/// that is how the malformed requests are made.
pub fn read_write_request(
    operation: u8,
    nr_segments: u8,
    handle: u16,
    id: u64,
    sector_number: u64,
    segments: &[Segment],
) -> [u8; ENTRY_SIZE] {
    let mut entry = [0; ENTRY_SIZE];
    entry[0] = operation;
    entry[1] = nr_segments;
    entry[2..4].copy_from_slice(&handle.to_le_bytes());
    entry[8..16].copy_from_slice(&id.to_le_bytes());
    entry[16..24].copy_from_slice(&sector_number.to_le_bytes());
    for (index, segment) in segments.iter().take(BLKIF_MAX_SEGMENTS_PER_REQUEST).enumerate() {
        let at = 24 + index * 8;
        entry[at..at + 8].copy_from_slice(&segment.encode());
    }
    entry
}

/// A well-formed read or write: `nr_segments` is the number of segments.
pub fn request(operation: u8, handle: u16, id: u64, sector_number: u64, segments: &[Segment]) -> [u8; ENTRY_SIZE] {
    let count = segments.len().min(BLKIF_MAX_SEGMENTS_PER_REQUEST) as u8;
    read_write_request(operation, count, handle, id, sector_number, segments)
}

/// An indirect request (`BLKIF_OP_INDIRECT`) whose segment descriptors live in the
/// pages `indirect_grefs` (at most [`BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST`] written).
pub fn indirect_request(
    indirect_op: u8,
    nr_segments: u16,
    handle: u16,
    id: u64,
    sector_number: u64,
    indirect_grefs: &[u32],
) -> [u8; ENTRY_SIZE] {
    let mut entry = [0; ENTRY_SIZE];
    entry[0] = BLKIF_OP_INDIRECT;
    entry[1] = indirect_op;
    entry[2..4].copy_from_slice(&nr_segments.to_le_bytes());
    entry[8..16].copy_from_slice(&id.to_le_bytes());
    entry[16..24].copy_from_slice(&sector_number.to_le_bytes());
    entry[24..26].copy_from_slice(&handle.to_le_bytes());
    for (index, gref) in indirect_grefs.iter().take(BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST).enumerate() {
        let at = 28 + index * 4;
        entry[at..at + 4].copy_from_slice(&gref.to_le_bytes());
    }
    entry
}

/// An entry with only an operation code and an id (for unknown operations).
pub fn bare_request(operation: u8, handle: u16, id: u64) -> [u8; ENTRY_SIZE] {
    read_write_request(operation, 0, handle, id, 0, &[])
}

/// `struct blkif_response`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub id: u64,
    pub operation: u8,
    pub status: i16,
}

impl Response {
    pub fn decode(bytes: &[u8; RESPONSE_SIZE]) -> Self {
        let mut id = [0; 8];
        id.copy_from_slice(&bytes[..8]);
        Self { id: u64::from_le_bytes(id), operation: bytes[8], status: i16::from_le_bytes([bytes[10], bytes[11]]) }
    }

    pub fn encode(&self) -> [u8; RESPONSE_SIZE] {
        let mut bytes = [0; RESPONSE_SIZE];
        bytes[..8].copy_from_slice(&self.id.to_le_bytes());
        bytes[8] = self.operation;
        bytes[10..12].copy_from_slice(&self.status.to_le_bytes());
        bytes
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// Every slot holds a request without a response.
    Full,
    /// `rsp_prod` claims more responses than there are requests outstanding.
    ResponseOverrun { rsp_prod: u32, rsp_cons: u32, req_prod: u32 },
    /// No response before the deadline.
    TimedOut,
}

impl fmt::Display for RingError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => write!(formatter, "ring full"),
            Self::ResponseOverrun { rsp_prod, rsp_cons, req_prod } => {
                write!(
                    formatter,
                    "rsp_prod {rsp_prod} runs ahead of requests (rsp_cons {rsp_cons}, req_prod {req_prod})"
                )
            }
            Self::TimedOut => write!(formatter, "no response before the deadline"),
        }
    }
}

/// The frontend's view of the ring: its private producer and consumer indices.
pub struct FrontRing<P: SharedPage> {
    page: P,
    req_prod_pvt: u32,
    rsp_cons: u32,
}

impl<P: SharedPage> FrontRing<P> {
    /// Initializes the shared ring in `page` (`SHARED_RING_INIT` + `FRONT_RING_INIT`):
    /// everything zero except `req_event` = `rsp_event` = 1.
    pub fn new(mut page: P) -> Self {
        for offset in (0..PAGE_SIZE).step_by(4) {
            page.write_u32(offset, 0);
        }
        page.write_u32(REQ_EVENT_OFFSET, 1);
        page.write_u32(RSP_EVENT_OFFSET, 1);
        page.fence();
        Self { page, req_prod_pvt: 0, rsp_cons: 0 }
    }

    pub fn page(&self) -> &P {
        &self.page
    }

    /// Requests produced that have no response yet.
    pub fn outstanding(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Writes `entry` into the next free slot (not yet visible to dom0).
    pub fn push(&mut self, entry: &[u8; ENTRY_SIZE]) -> Result<(), RingError> {
        if self.outstanding() >= RING_SIZE {
            return Err(RingError::Full);
        }
        self.page.write_bytes(slot_offset(self.req_prod_pvt), entry);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Makes the pushed requests visible; says whether dom0 asked to be notified.
    pub fn publish(&mut self) -> bool {
        let old = self.page.read_u32(REQ_PROD_OFFSET);
        // The entries are visible before the index that publishes them.
        self.page.fence();
        self.page.write_u32(REQ_PROD_OFFSET, self.req_prod_pvt);
        // The new index is visible before req_event is read.
        self.page.fence();
        needs_notification(old, self.req_prod_pvt, self.page.read_u32(REQ_EVENT_OFFSET))
    }

    /// The next response, if dom0 has produced one; with none, asks to be notified of
    /// the next (`RING_FINAL_CHECK_FOR_RESPONSES`).
    pub fn take_response(&mut self) -> Result<Option<Response>, RingError> {
        let mut rsp_prod = self.page.read_u32(RSP_PROD_OFFSET);
        if rsp_prod == self.rsp_cons {
            self.page.write_u32(RSP_EVENT_OFFSET, self.rsp_cons.wrapping_add(1));
            self.page.fence();
            rsp_prod = self.page.read_u32(RSP_PROD_OFFSET);
            if rsp_prod == self.rsp_cons {
                return Ok(None);
            }
        }
        if rsp_prod.wrapping_sub(self.rsp_cons) > self.outstanding() {
            return Err(RingError::ResponseOverrun { rsp_prod, rsp_cons: self.rsp_cons, req_prod: self.req_prod_pvt });
        }
        // The index is read before the response it publishes.
        self.page.fence();
        let mut bytes = [0; RESPONSE_SIZE];
        self.page.read_bytes(slot_offset(self.rsp_cons), &mut bytes);
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(Some(Response::decode(&bytes)))
    }

    /// Sends one request on event channel `port` and waits until `deadline` for the
    /// next response.
    pub fn exchange(
        &mut self,
        env: &mut dyn Environment,
        port: u32,
        entry: &[u8; ENTRY_SIZE],
        deadline: &mut Deadline,
    ) -> Result<Response, RingError> {
        self.push(entry)?;
        if self.publish() {
            env.notify(port);
        }
        loop {
            if let Some(response) = self.take_response()? {
                return Ok(response);
            }
            if !deadline.pause(env) {
                return Err(RingError::TimedOut);
            }
        }
    }
}

/// What a check expects dom0 to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expectation {
    /// `BLKIF_RSP_OKAY`.
    Okay,
    /// `BLKIF_RSP_ERROR` or `BLKIF_RSP_EOPNOTSUPP`.
    Refused,
    /// `BLKIF_RSP_ERROR` only: a request the back end understands and must refuse
    /// (a write to a read-only disk), so "not supported" would be the wrong answer.
    Error,
}

/// Why an answer did not meet its [`Expectation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// The response carries another request's id.
    WrongId { expected: u64, got: u64 },
    /// The status is not one the expectation allows.
    Status { expected: Expectation, got: i16 },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongId { expected, got } => write!(formatter, "response id {got:#x}, expected {expected:#x}"),
            Self::Status { expected: Expectation::Okay, got } => write!(formatter, "status {got}, expected 0"),
            Self::Status { expected: Expectation::Refused, got } => {
                write!(formatter, "status {got}, expected -1 or -2")
            }
            Self::Status { expected: Expectation::Error, got } => write!(formatter, "status {got}, expected -1"),
        }
    }
}

/// Checks a response against the request's id and the expected outcome.
pub fn judge(id: u64, expectation: Expectation, response: &Response) -> Result<(), Mismatch> {
    if response.id != id {
        return Err(Mismatch::WrongId { expected: id, got: response.id });
    }
    let allowed = match expectation {
        Expectation::Okay => response.status == BLKIF_RSP_OKAY,
        Expectation::Refused => matches!(response.status, BLKIF_RSP_ERROR | BLKIF_RSP_EOPNOTSUPP),
        Expectation::Error => response.status == BLKIF_RSP_ERROR,
    };
    if allowed {
        Ok(())
    } else {
        Err(Mismatch::Status { expected: expectation, got: response.status })
    }
}

#[cfg(test)]
mod tests;
