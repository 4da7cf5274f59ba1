//! The blkif back end's portable protocol half: it consumes a guest's xen-blkfront
//! ring, checks each request, moves data between the granted pages and a disk, and
//! answers in the slots it owns (xen/include/public/io/blkif.h, io/ring.h; pvh-abi.md
//! §7.0, §7.2).
//!
//! Why here: everything the frontend controls (the ring page, the segment descriptors
//! in indirect pages, grant references, sector numbers) is checked in this module,
//! host-tested and fuzzed; the hypervisor side only supplies the three edges as traits:
//! the ring page ([`SharedPage`]), grant copies ([`GrantAccess`], the hypervisor's
//! permission-checked `grant_copy`), and the disk ([`BackendDisk`]).
//!
//! Invariants:
//! * A request is copied out of the ring once, then decoded and checked from the copy
//!   (indirect segment pages likewise): the frontend cannot change it after the check.
//! * Every request taken gets exactly one response, in order, written into that
//!   request's own slot; a malformed or failed request is answered with
//!   `BLKIF_RSP_ERROR` (or `BLKIF_RSP_EOPNOTSUPP` for an operation not advertised) and
//!   the back end goes on with the next. Nothing a frontend writes can panic.
//! * Bounded work and memory: one [`BlkifBackend::service`] call takes at most one
//!   ring's worth of requests; a `req_prod` more than a ring ahead of the responses is a
//!   [`Broken`] ring, after which the back end stops consuming it. Buffers are allocated
//!   once ([`TRANSFER_BYTES`] of bounce buffer, plus at most `max_indirect_segments`
//!   descriptors) and reused.
//! * A frontend that never consumes responses can only have one ring of requests
//!   outstanding: when every produced request has its response the back end waits; it
//!   never queues responses in dom0 memory.
//!
//! Around it: [`xenbus`] (the frontend/backend handshake in xenstore), [`claims`] (who
//! holds which dom0 disk), [`block_disk`] (a block-layer device as the disk). Persistent
//! grants are a [`GrantAccess`] that keeps grants held (image/src/vbd.rs).
//!
//! Not yet: multi-page rings (`max-ring-page-order`), multi-queue, requests of one ring
//! in flight at once (the disk is synchronous here: one operation completes before the
//! next starts, which keeps ordering and flush semantics trivially right).

pub mod block_disk;
pub mod claims;
mod fakes;
pub mod request;
pub mod ring;
#[cfg(test)]
mod tests;
pub mod xenbus;

#[doc(hidden)]
pub use fakes::{FakeGrant, MapGrants, RamDisk};
pub use request::{
    BlkifRequest, BlkifRequestSegment, BlkifResponse, Direction, Features, Malformed, Refusal, BLKIF_RSP_EOPNOTSUPP,
    BLKIF_RSP_ERROR, BLKIF_RSP_OKAY,
};
pub use ring::Broken;

use crate::shared_page::{SharedPage, PAGE_SIZE};
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use request::{
    BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, BLKIF_MAX_SEGMENTS_PER_REQUEST, ENTRY_SIZE, SECTOR_SIZE,
    SEGMENTS_PER_INDIRECT_FRAME, SEGMENT_SIZE,
};
use ring::BackRing;

/// A grant copy failed: unknown or revoked reference, wrong domain, a read-only grant
/// written, or a range outside the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantFault;

/// The disk failed an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskError;

/// Pages the frontend granted to domain 0, reached by copy (the hypervisor's
/// `grant_copy`, which checks the grant's domain and permissions). `offset + len` must
/// lie within the 4 KiB page; implementations fault otherwise.
pub trait GrantAccess {
    /// Copies `buffer.len()` bytes from the granted page `gref` at `offset`.
    fn copy_from_grant(&mut self, gref: u32, offset: usize, buffer: &mut [u8]) -> Result<(), GrantFault>;
    /// Copies `data` into the granted page `gref` at `offset` (the grant must be writable).
    fn copy_to_grant(&mut self, gref: u32, offset: usize, data: &[u8]) -> Result<(), GrantFault>;
}

/// The disk behind a virtual block device, in 512-byte sectors. Synchronous for now.
/// The back end checks ranges and read-only before calling; a disk still returns
/// [`DiskError`] for anything it cannot do.
pub trait BackendDisk {
    /// Capacity in 512-byte sectors.
    fn sectors(&self) -> u64;
    /// Writes and discards are refused.
    fn read_only(&self) -> bool;
    /// Reads `buffer.len()` bytes (a multiple of 512) starting at `sector`.
    fn read(&mut self, sector: u64, buffer: &mut [u8]) -> Result<(), DiskError>;
    /// Writes `data` (a multiple of 512 bytes) starting at `sector`.
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError>;
    /// Makes every completed write durable.
    fn flush(&mut self) -> Result<(), DiskError>;
    /// Discards `count` sectors from `sector` (their contents become unspecified).
    fn discard(&mut self, sector: u64, count: u64) -> Result<(), DiskError>;
    /// Discard granularity in bytes (advertised as `discard-granularity`).
    fn discard_granularity(&self) -> u32 {
        SECTOR_SIZE as u32
    }
}

/// Bytes of consecutive segments moved to or from the disk in one operation.
pub const TRANSFER_BYTES: usize = 128 * 1024;

/// `info` bit: the device is read-only (`VDISK_READONLY`).
pub const VDISK_READONLY: u32 = 4;

/// Indirect segments the back end accepts at most (8 pages of 512 descriptors).
pub const MAX_INDIRECT_SEGMENTS_LIMIT: u16 =
    (BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST * SEGMENTS_PER_INDIRECT_FRAME) as u16;

/// What the back end offers a frontend; advertised by [`BlkifBackend::xenstore_keys`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlkifConfig {
    /// `feature-flush-cache`.
    pub flush: bool,
    /// `feature-barrier` (legacy `BLKIF_OP_WRITE_BARRIER`).
    pub barrier: bool,
    /// `feature-discard`.
    pub discard: bool,
    /// `discard-secure`.
    pub discard_secure: bool,
    /// `feature-max-indirect-segments`; ≤ 11 turns indirect requests off. Clamped to
    /// [`MAX_INDIRECT_SEGMENTS_LIMIT`].
    pub max_indirect_segments: u16,
}

impl Default for BlkifConfig {
    /// Flush, discard and 256 indirect segments (Linux blkback's maximum); no barrier.
    fn default() -> Self {
        BlkifConfig { flush: true, barrier: false, discard: true, discard_secure: false, max_indirect_segments: 256 }
    }
}

/// What one [`BlkifBackend::service`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[must_use = "the frontend may need an event, or the ring another service call"]
pub struct ServiceResult {
    /// Send the frontend an event: it asked to hear of the responses just published.
    pub notify: bool,
    /// Requests are still pending (the per-call budget ran out): call again.
    pub more: bool,
    /// The ring is broken; the back end no longer consumes it (report, then tear the
    /// device down).
    pub broken: Option<Broken>,
    /// Requests taken (and answered) in this call; at most one ring's worth.
    pub requests: u32,
}

/// The back end of one blkif ring.
pub struct BlkifBackend {
    ring: BackRing,
    features: Features,
    broken: Option<Broken>,
    /// Bounce buffer for runs of data segments ([`TRANSFER_BYTES`]) and indirect
    /// descriptor pages.
    bounce: Vec<u8>,
    /// Decoded indirect segments (capacity ≤ max_indirect_segments).
    indirect_segments: Vec<BlkifRequestSegment>,
}

impl BlkifBackend {
    /// A back end for a ring the frontend has just initialised (all indices 0).
    pub fn new(config: &BlkifConfig) -> Self {
        let max_indirect_segments = config.max_indirect_segments.min(MAX_INDIRECT_SEGMENTS_LIMIT);
        let features = Features {
            barrier: config.barrier,
            flush: config.flush,
            discard: config.discard,
            discard_secure: config.discard && config.discard_secure,
            max_indirect_segments: if usize::from(max_indirect_segments) > BLKIF_MAX_SEGMENTS_PER_REQUEST {
                max_indirect_segments
            } else {
                0
            },
        };
        BlkifBackend {
            ring: BackRing::new(ENTRY_SIZE),
            features,
            broken: None,
            bounce: vec![0; TRANSFER_BYTES],
            indirect_segments: Vec::new(),
        }
    }

    /// The features decoding accepts (after clamping).
    pub fn features(&self) -> Features {
        self.features
    }

    /// Why the ring was given up, if it was.
    pub fn broken(&self) -> Option<Broken> {
        self.broken
    }

    /// The back end's ring indices (`req_cons`, `rsp_prod_pvt`).
    pub fn indices(&self) -> (u32, u32) {
        (self.ring.req_cons(), self.ring.rsp_prod_pvt())
    }

    /// The xenstore nodes the back end writes for `disk` under `config` (pvh-abi.md
    /// §7.2): the features before InitWait, then `sectors`, `info` and `sector-size`
    /// before Connected. Plain (key, value) pairs relative to the backend directory.
    pub fn xenstore_keys(config: &BlkifConfig, disk: &dyn BackendDisk) -> Vec<(String, String)> {
        let flag = |on: bool| if on { "1" } else { "0" }.to_string();
        let mut keys = vec![("feature-flush-cache".to_string(), flag(config.flush))];
        if config.barrier {
            keys.push(("feature-barrier".to_string(), flag(true)));
        }
        keys.push(("feature-discard".to_string(), flag(config.discard)));
        if config.discard {
            keys.push(("discard-granularity".to_string(), disk.discard_granularity().to_string()));
            keys.push(("discard-alignment".to_string(), "0".to_string()));
            keys.push(("discard-secure".to_string(), flag(config.discard_secure)));
        }
        let max_indirect_segments = config.max_indirect_segments.min(MAX_INDIRECT_SEGMENTS_LIMIT);
        if usize::from(max_indirect_segments) > BLKIF_MAX_SEGMENTS_PER_REQUEST {
            keys.push(("feature-max-indirect-segments".to_string(), max_indirect_segments.to_string()));
        }
        let info = if disk.read_only() { VDISK_READONLY } else { 0 };
        keys.push(("sectors".to_string(), disk.sectors().to_string()));
        keys.push(("info".to_string(), info.to_string()));
        keys.push(("sector-size".to_string(), SECTOR_SIZE.to_string()));
        keys
    }

    /// Serves the ring once (call on every event from the frontend, and again while
    /// [`ServiceResult::more`]): takes at most one ring's worth of requests, answers
    /// each, publishes the responses, and when the ring is empty asks for the next
    /// event (`RING_FINAL_CHECK_FOR_REQUESTS`).
    pub fn service(
        &mut self,
        ring: &mut dyn SharedPage,
        grants: &mut dyn GrantAccess,
        disk: &mut dyn BackendDisk,
    ) -> ServiceResult {
        let mut result = ServiceResult::default();
        if self.broken.is_some() {
            result.broken = self.broken;
            return result;
        }
        let budget = self.ring.size();
        loop {
            let pending = match self.ring.unconsumed_requests(ring) {
                Ok(0) => match self.ring.final_check_for_requests(ring) {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(broken) => {
                        self.broken = Some(broken);
                        break;
                    }
                },
                Ok(pending) => pending,
                Err(broken) => {
                    self.broken = Some(broken);
                    break;
                }
            };
            if result.requests == budget {
                result.more = pending > 0;
                break;
            }
            let mut entry = [0u8; ENTRY_SIZE];
            self.ring.take_request(ring, &mut entry);
            let decoded = request::decode(&entry, &self.features);
            let status = match decoded.request.and_then(|request| self.execute(request, grants, disk)) {
                Ok(()) => BLKIF_RSP_OKAY,
                Err(refusal) => refusal.status(),
            };
            let response = BlkifResponse { id: decoded.id, operation: decoded.operation, status };
            let written = self.ring.put_response(ring, &response.encode());
            debug_assert!(written, "a request was just taken, so its slot is ours");
            result.requests += 1;
        }
        result.notify = self.ring.push_responses_and_check_notify(ring);
        result.broken = self.broken;
        result
    }

    fn execute(
        &mut self,
        request: BlkifRequest,
        grants: &mut dyn GrantAccess,
        disk: &mut dyn BackendDisk,
    ) -> Result<(), Refusal> {
        match request {
            BlkifRequest::ReadWrite { direction, barrier, sector_number, segments, .. } => {
                if barrier {
                    disk.flush().map_err(disk_refusal)?;
                }
                if !segments.is_empty() {
                    transfer(direction, sector_number, &segments, &mut self.bounce, grants, disk)?;
                }
                if barrier {
                    disk.flush().map_err(disk_refusal)?;
                }
                Ok(())
            }
            BlkifRequest::Flush => disk.flush().map_err(disk_refusal),
            BlkifRequest::Discard { sector_number, nr_sectors, .. } => {
                if disk.read_only() {
                    return Err(Refusal::Error(Malformed::ReadOnly));
                }
                check_range(sector_number, nr_sectors, disk)?;
                if nr_sectors == 0 {
                    return Ok(());
                }
                disk.discard(sector_number, nr_sectors).map_err(disk_refusal)
            }
            BlkifRequest::Indirect { direction, sector_number, nr_segments, indirect_grefs, .. } => {
                self.read_indirect_segments(nr_segments, &indirect_grefs, grants)?;
                transfer(direction, sector_number, &self.indirect_segments, &mut self.bounce, grants, disk)
            }
        }
    }

    /// Copies the descriptor pages of an indirect request out of the grants and decodes
    /// them into `self.indirect_segments` (`nr_segments` is already checked against the
    /// advertised maximum).
    fn read_indirect_segments(
        &mut self,
        nr_segments: u16,
        indirect_grefs: &[u32; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
        grants: &mut dyn GrantAccess,
    ) -> Result<(), Refusal> {
        self.indirect_segments.clear();
        let mut remaining = usize::from(nr_segments);
        for &gref in indirect_grefs {
            if remaining == 0 {
                break;
            }
            let count = remaining.min(SEGMENTS_PER_INDIRECT_FRAME);
            let page = &mut self.bounce[..count * SEGMENT_SIZE];
            grants.copy_from_grant(gref, 0, page).map_err(|GrantFault| Refusal::Error(Malformed::GrantFault))?;
            for descriptor in page.chunks_exact(SEGMENT_SIZE) {
                self.indirect_segments.push(BlkifRequestSegment::decode(descriptor)?);
            }
            remaining -= count;
        }
        Ok(())
    }
}

fn disk_refusal(DiskError: DiskError) -> Refusal {
    Refusal::Error(Malformed::DiskError)
}

/// `sector_number .. sector_number + count` lies within the disk.
fn check_range(sector_number: u64, count: u64, disk: &dyn BackendDisk) -> Result<(), Refusal> {
    match sector_number.checked_add(count) {
        Some(end) if end <= disk.sectors() => Ok(()),
        _ => Err(Refusal::Error(Malformed::SectorOutOfRange)),
    }
}

/// Moves the data of checked `segments` (consecutive on the disk from `sector_number`)
/// between the granted pages and the disk. Runs of segments are gathered in `bounce`
/// (up to its length) so that the disk sees one operation per run rather than one per
/// 4 KiB page. The whole range and the disk's writability are checked before any I/O.
fn transfer(
    direction: Direction,
    sector_number: u64,
    segments: &[BlkifRequestSegment],
    bounce: &mut [u8],
    grants: &mut dyn GrantAccess,
    disk: &mut dyn BackendDisk,
) -> Result<(), Refusal> {
    let total: u64 = segments.iter().map(BlkifRequestSegment::sectors).sum();
    check_range(sector_number, total, disk)?;
    if direction == Direction::Write && disk.read_only() {
        return Err(Refusal::Error(Malformed::ReadOnly));
    }
    let grant_refusal = |GrantFault| Refusal::Error(Malformed::GrantFault);
    let mut sector = sector_number;
    let mut rest = segments;
    while !rest.is_empty() {
        // The longest run of whole segments that fits the bounce buffer (at least one:
        // a segment is at most one page, and the buffer is at least one page).
        let mut run_bytes = 0;
        let mut run_length = 0;
        for segment in rest {
            if run_bytes + segment.length() > bounce.len() {
                break;
            }
            run_bytes += segment.length();
            run_length += 1;
        }
        let (run, after) = rest.split_at(run_length.max(1));
        let buffer = &mut bounce[..run_bytes];
        match direction {
            Direction::Read => {
                disk.read(sector, buffer).map_err(disk_refusal)?;
                let mut offset = 0;
                for segment in run {
                    let piece = &buffer[offset..offset + segment.length()];
                    grants.copy_to_grant(segment.gref, segment.offset(), piece).map_err(grant_refusal)?;
                    offset += segment.length();
                }
            }
            Direction::Write => {
                let mut offset = 0;
                for segment in run {
                    let piece = &mut buffer[offset..offset + segment.length()];
                    grants.copy_from_grant(segment.gref, segment.offset(), piece).map_err(grant_refusal)?;
                    offset += segment.length();
                }
                disk.write(sector, buffer).map_err(disk_refusal)?;
            }
        }
        sector += run.iter().map(BlkifRequestSegment::sectors).sum::<u64>();
        rest = after;
    }
    Ok(())
}

/// The fuzz target's body (builtin-dom0/fuzz/fuzz_targets/blkif_ring.rs), shared with a
/// host test. `data[0]` picks the configuration and a read-only disk; `data[1..4]` are
/// how far the "frontend" moves `req_prod` before each of three further service calls;
/// the next 4096 bytes are the ring page; the rest are granted pages (grefs 0..8, odd
/// ones read-only). Nothing may panic; each call takes at most one ring of requests,
/// copies a bounded number of grants, publishes no response for a request not taken,
/// and never asks the disk for anything out of range or a write to a read-only disk.
/// Panics (by `assert!`) only when an invariant is broken — for fuzzing and tests.
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    use crate::shared_page::TestPage;

    let flags = data.first().copied().unwrap_or(0);
    let steps: [u8; 3] = [1, 2, 3].map(|index| data.get(index).copied().unwrap_or(0));
    let rest = data.get(4..).unwrap_or(&[]);
    let (page_bytes, grant_bytes) = rest.split_at(rest.len().min(PAGE_SIZE));

    let config = BlkifConfig {
        flush: flags & 1 != 0,
        barrier: flags & 2 != 0,
        discard: flags & 4 != 0,
        discard_secure: flags & 8 != 0,
        max_indirect_segments: if flags & 16 != 0 { 1024 } else { 0 },
    };
    let mut page = TestPage::default();
    page.bytes[..page_bytes.len()].copy_from_slice(page_bytes);
    let mut grants = MapGrants::default();
    for (gref, chunk) in grant_bytes.chunks(PAGE_SIZE).take(8).enumerate() {
        grants.grant(gref as u32, gref % 2 == 0);
        if let Some(granted) = grants.page_mut(gref as u32) {
            granted[..chunk.len()].copy_from_slice(chunk);
        }
    }
    let mut disk = RamDisk::new(64, flags & 32 != 0);
    let mut backend = BlkifBackend::new(&config);
    let size = ring::ring_size(ENTRY_SIZE);
    let max_copies_per_request =
        BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST + usize::from(backend.features().max_indirect_segments.max(11));

    for round in 0..4 {
        if round > 0 {
            let req_prod = page.read_u32(ring::REQ_PROD);
            page.write_u32(ring::REQ_PROD, req_prod.wrapping_add(u32::from(steps[round - 1])));
        }
        let copies_before = grants.copies;
        let (_, rsp_before) = backend.indices();
        let result = backend.service(&mut page, &mut grants, &mut disk);
        let (req_cons, rsp_prod) = backend.indices();
        assert!(result.requests <= size);
        assert_eq!(rsp_prod.wrapping_sub(rsp_before), result.requests);
        assert_eq!(req_cons, rsp_prod, "every request taken is answered");
        if result.requests > 0 {
            assert_eq!(page.read_u32(ring::RSP_PROD), rsp_prod, "responses are published");
        }
        assert!(grants.copies - copies_before <= result.requests as usize * max_copies_per_request);
        assert_eq!(disk.misuses, 0);
        if result.broken.is_some() {
            assert!(!result.more);
            let again = backend.service(&mut page, &mut grants, &mut disk);
            assert_eq!(again.requests, 0);
        }
    }
}
