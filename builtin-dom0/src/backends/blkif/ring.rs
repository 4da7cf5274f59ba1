//! The generic Xen shared ring (xen/include/public/io/ring.h; pvh-abi.md §7.0): both ends'
//! private indices over one shared page, entries copied in and out as bytes.
//!
//! Layout: `req_prod` u32 @0, `req_event` u32 @4, `rsp_prod` u32 @8, `rsp_event` u32 @12,
//! private/padding to 64, entries from @64. Requests and responses share the entry slots
//! (an entry is the union of both), so the ring holds the largest power of two entries
//! that fit. Indices are free-running u32; an entry lives at `index & (size − 1)`.
//!
//! Invariants the back end keeps: `rsp_prod_pvt ≤ req_cons` (a response is written only
//! into the slot of a request already copied out, the slot the frontend gave up when it
//! produced that request), and it never trusts `req_prod`: a producer more than one ring
//! ahead of the responses, or behind the consumer, is a [`Broken`] ring. The frontend's
//! response consumer is private to it, so "the response ring is full" means exactly that
//! every produced request has its response: the back end then waits for new requests.
//!
//! [`FrontRing`] is the frontend's half (what xen-blkfront does); dom0 uses it in tests.

use crate::shared_page::{SharedPage, PAGE_SIZE};

/// Offset of `req_prod` (frontend-owned).
pub const REQ_PROD: usize = 0;
/// Offset of `req_event` (back end-owned: "wake me when req_prod passes this").
pub const REQ_EVENT: usize = 4;
/// Offset of `rsp_prod` (back end-owned).
pub const RSP_PROD: usize = 8;
/// Offset of `rsp_event` (frontend-owned).
pub const RSP_EVENT: usize = 12;
/// Offset of the first entry.
pub const ENTRIES: usize = 64;

/// Entries of `entry_size` bytes in a one-page ring: the largest power of two that fits
/// (`__RING_SIZE`). Zero if not even one fits.
pub const fn ring_size(entry_size: usize) -> u32 {
    if entry_size == 0 || entry_size > PAGE_SIZE - ENTRIES {
        return 0;
    }
    let fit = (PAGE_SIZE - ENTRIES) / entry_size;
    1 << (usize::BITS - 1 - fit.leading_zeros())
}

/// Why the back end stopped consuming a ring for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// `req_prod` claims more requests than the ring can hold, or went backwards
    /// (`RING_REQUEST_PROD_OVERFLOW`). The indices are as seen when it was detected.
    RequestProducerOverflow { req_prod: u32, req_cons: u32, rsp_prod: u32 },
}

/// The back end's private state (`struct blkif_back_ring` without the pointer).
#[derive(Debug, Clone)]
pub struct BackRing {
    entry_size: usize,
    size: u32,
    req_cons: u32,
    rsp_prod_pvt: u32,
    /// The `rsp_prod` we last published (the "old" of the notify rule); kept privately
    /// so the frontend cannot influence it.
    rsp_prod_published: u32,
}

impl BackRing {
    /// A ring freshly initialised by its frontend (all indices 0; `BACK_RING_INIT`).
    /// `entry_size` must be at most a page less the header.
    pub fn new(entry_size: usize) -> Self {
        BackRing { entry_size, size: ring_size(entry_size), req_cons: 0, rsp_prod_pvt: 0, rsp_prod_published: 0 }
    }

    /// Entries in the ring.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The back end's request consumer.
    pub fn req_cons(&self) -> u32 {
        self.req_cons
    }

    /// The back end's private response producer.
    pub fn rsp_prod_pvt(&self) -> u32 {
        self.rsp_prod_pvt
    }

    fn slot_offset(&self, index: u32) -> usize {
        ENTRIES + (index & (self.size - 1)) as usize * self.entry_size
    }

    /// Requests produced and not yet taken (`RING_UNCONSUMED_REQUESTS`), after checking
    /// the frontend's `req_prod` against our indices.
    pub fn unconsumed_requests(&self, page: &dyn SharedPage) -> Result<u32, Broken> {
        // Read once; untrusted until checked against our own indices below.
        let req_prod = page.read_u32(REQ_PROD);
        let outstanding = req_prod.wrapping_sub(self.rsp_prod_pvt);
        let unconsumed = req_prod.wrapping_sub(self.req_cons);
        if outstanding > self.size || unconsumed > outstanding {
            return Err(Broken::RequestProducerOverflow {
                req_prod,
                req_cons: self.req_cons,
                rsp_prod: self.rsp_prod_pvt,
            });
        }
        Ok(unconsumed)
    }

    /// `RING_FINAL_CHECK_FOR_REQUESTS`: if nothing is pending, asks for an event when the
    /// next request arrives (`req_event = req_cons + 1`) and looks once more, closing the
    /// race with a frontend that produced meanwhile without notifying.
    pub fn final_check_for_requests(&mut self, page: &mut dyn SharedPage) -> Result<bool, Broken> {
        if self.unconsumed_requests(page)? > 0 {
            return Ok(true);
        }
        // write_u32 is a release store; the re-read below is ordered after it.
        page.write_u32(REQ_EVENT, self.req_cons.wrapping_add(1));
        Ok(self.unconsumed_requests(page)? > 0)
    }

    /// Copies the next request out of the ring into `entry` (one entry's bytes) and
    /// consumes it. The caller has seen [`unconsumed_requests`](Self::unconsumed_requests)
    /// be non-zero; the copy is then ours, whatever the frontend writes afterwards.
    pub fn take_request(&mut self, page: &dyn SharedPage, entry: &mut [u8]) {
        let length = entry.len().min(self.entry_size);
        page.read(self.slot_offset(self.req_cons), &mut entry[..length]);
        self.req_cons = self.req_cons.wrapping_add(1);
    }

    /// Writes the next response (`data`, at most one entry) into the slot the back end
    /// owns. Refuses (returns false, writes nothing) if every taken request already has
    /// its response: that slot may still hold a response the frontend has not read.
    pub fn put_response(&mut self, page: &mut dyn SharedPage, data: &[u8]) -> bool {
        if self.rsp_prod_pvt == self.req_cons || data.len() > self.entry_size {
            return false;
        }
        page.write(self.slot_offset(self.rsp_prod_pvt), data);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        true
    }

    /// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`: publishes `rsp_prod` and says whether the
    /// frontend asked to be notified of the responses just published.
    #[must_use = "the frontend may be waiting for an event"]
    pub fn push_responses_and_check_notify(&mut self, page: &mut dyn SharedPage) -> bool {
        let old = self.rsp_prod_published;
        let new = self.rsp_prod_pvt;
        if old == new {
            return false;
        }
        page.write_u32(RSP_PROD, new);
        self.rsp_prod_published = new;
        let event = page.read_u32(RSP_EVENT);
        notify_needed(old, new, event)
    }
}

/// The notification rule of ring.h: after moving a producer from `old` to `new`, the
/// other end wants an event iff its `event` index lies in `(old, new]`.
pub fn notify_needed(old: u32, new: u32, event: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

/// The frontend's private state (`struct blkif_front_ring` without the pointer).
#[derive(Debug, Clone)]
pub struct FrontRing {
    entry_size: usize,
    size: u32,
    req_prod_pvt: u32,
    rsp_cons: u32,
    req_prod_published: u32,
}

impl FrontRing {
    /// `SHARED_RING_INIT` + `FRONT_RING_INIT`: zeroes the indices, sets both events to 1.
    pub fn init(page: &mut dyn SharedPage, entry_size: usize) -> Self {
        page.write_u32(REQ_PROD, 0);
        page.write_u32(RSP_PROD, 0);
        page.write_u32(REQ_EVENT, 1);
        page.write_u32(RSP_EVENT, 1);
        FrontRing { entry_size, size: ring_size(entry_size), req_prod_pvt: 0, rsp_cons: 0, req_prod_published: 0 }
    }

    /// Free request slots (`RING_FREE_REQUESTS`).
    pub fn free_requests(&self) -> u32 {
        self.size - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Writes a request into the next free slot; false if the ring is full.
    pub fn put_request(&mut self, page: &mut dyn SharedPage, data: &[u8]) -> bool {
        if self.free_requests() == 0 || data.len() > self.entry_size {
            return false;
        }
        let offset = ENTRIES + (self.req_prod_pvt & (self.size - 1)) as usize * self.entry_size;
        page.write(offset, data);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        true
    }

    /// `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`.
    #[must_use = "the back end may be waiting for an event"]
    pub fn push_requests_and_check_notify(&mut self, page: &mut dyn SharedPage) -> bool {
        let old = self.req_prod_published;
        let new = self.req_prod_pvt;
        page.write_u32(REQ_PROD, new);
        self.req_prod_published = new;
        notify_needed(old, new, page.read_u32(REQ_EVENT))
    }

    /// Copies the next published response into `entry` and consumes it; false if none.
    pub fn take_response(&mut self, page: &dyn SharedPage, entry: &mut [u8]) -> bool {
        let rsp_prod = page.read_u32(RSP_PROD);
        if rsp_prod == self.rsp_cons {
            return false;
        }
        let offset = ENTRIES + (self.rsp_cons & (self.size - 1)) as usize * self.entry_size;
        let length = entry.len().min(self.entry_size);
        page.read(offset, &mut entry[..length]);
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        true
    }

    /// `RING_FINAL_CHECK_FOR_RESPONSES`: sets `rsp_event = rsp_cons + 1`, re-checks.
    pub fn final_check_for_responses(&mut self, page: &mut dyn SharedPage) -> bool {
        if page.read_u32(RSP_PROD) != self.rsp_cons {
            return true;
        }
        page.write_u32(RSP_EVENT, self.rsp_cons.wrapping_add(1));
        page.read_u32(RSP_PROD) != self.rsp_cons
    }
}
