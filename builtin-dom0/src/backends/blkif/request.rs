//! blkif ring entries (xen/include/public/io/blkif.h; pvh-abi.md §7.2): decoding a
//! request copied out of the ring into a checked [`BlkifRequest`], and encoding a
//! [`BlkifResponse`].
//!
//! Decoding works on our own copy of the 112-byte entry, never on the shared page, so the
//! frontend cannot change a request after it was checked. Every field's check happens
//! here once: what leaves [`decode`] has `1 ≤ nr_segments ≤ 11` segments with
//! `first_sect ≤ last_sect ≤ 7`. What needs the disk or the grants (sector ranges,
//! read-only, indirect pages) is checked by the caller. A refusal keeps the request's id
//! and operation so that it can still be answered.

use alloc::vec::Vec;

/// Size of a ring entry (the union of the request types and the response).
pub const ENTRY_SIZE: usize = 112;
/// Size of a response.
pub const RESPONSE_SIZE: usize = 16;
/// Size of a sector in the protocol's units (`sector_number`, `first_sect`, `sectors`).
pub const SECTOR_SIZE: usize = 512;
/// Sectors in one granted page.
pub const SECTORS_PER_PAGE: u8 = 8;

pub const BLKIF_OP_READ: u8 = 0;
pub const BLKIF_OP_WRITE: u8 = 1;
pub const BLKIF_OP_WRITE_BARRIER: u8 = 2;
pub const BLKIF_OP_FLUSH_DISKCACHE: u8 = 3;
pub const BLKIF_OP_RESERVED_1: u8 = 4;
pub const BLKIF_OP_DISCARD: u8 = 5;
pub const BLKIF_OP_INDIRECT: u8 = 6;

/// Segments a direct request carries (`BLKIF_MAX_SEGMENTS_PER_REQUEST`).
pub const BLKIF_MAX_SEGMENTS_PER_REQUEST: usize = 11;
/// Indirect page references in an indirect request (`BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST`).
pub const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST: usize = 8;
/// Segment descriptors in one indirect page (4096 / 8).
pub const SEGMENTS_PER_INDIRECT_FRAME: usize = 512;
/// Size of a segment descriptor (`struct blkif_request_segment`).
pub const SEGMENT_SIZE: usize = 8;
/// `flag` bit of a discard request: the discarded data must be unrecoverable.
pub const BLKIF_DISCARD_SECURE: u8 = 1;

/// Response status: success.
pub const BLKIF_RSP_OKAY: i16 = 0;
/// Response status: the request failed (or was malformed).
pub const BLKIF_RSP_ERROR: i16 = -1;
/// Response status: the operation is not supported (the frontend stops using it).
pub const BLKIF_RSP_EOPNOTSUPP: i16 = -2;

// Field offsets inside an entry.
const OPERATION: usize = 0;
const NR_SEGMENTS: usize = 1; // u8 (read/write); discard: flag; indirect: indirect_op
const HANDLE: usize = 2; // u16 (read/write, discard)
const ID: usize = 8; // u64, all request types
const SECTOR_NUMBER: usize = 16; // u64, all request types
const SEGMENTS: usize = 24; // read/write: seg[11]
const DISCARD_NR_SECTORS: usize = 24; // u64
const INDIRECT_NR_SEGMENTS: usize = 2; // u16
const INDIRECT_HANDLE: usize = 24; // u16
const INDIRECT_GREFS: usize = 28; // u32[8]

const _: () = assert!(SEGMENTS + BLKIF_MAX_SEGMENTS_PER_REQUEST * SEGMENT_SIZE == ENTRY_SIZE);
const _: () = assert!(INDIRECT_GREFS + BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST * 4 <= ENTRY_SIZE);
const _: () = assert!(SEGMENTS_PER_INDIRECT_FRAME * SEGMENT_SIZE == crate::shared_page::PAGE_SIZE);

/// One segment (`struct blkif_request_segment`): sectors `first_sect..=last_sect` of the
/// page granted as `gref`. Once decoded, `first_sect ≤ last_sect < 8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlkifRequestSegment {
    /// Grant reference of the data page (granted by the frontend to domain 0).
    pub gref: u32,
    /// First 512-byte sector inside the page.
    pub first_sect: u8,
    /// Last 512-byte sector inside the page (inclusive).
    pub last_sect: u8,
}

impl BlkifRequestSegment {
    /// Decodes and checks one 8-byte descriptor.
    pub fn decode(bytes: &[u8]) -> Result<Self, Refusal> {
        let gref = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let (first_sect, last_sect) = (bytes[4], bytes[5]);
        if last_sect >= SECTORS_PER_PAGE {
            return Err(Refusal::Error(Malformed::LastSectorBeyondPage));
        }
        if first_sect > last_sect {
            return Err(Refusal::Error(Malformed::FirstSectorAfterLast));
        }
        Ok(BlkifRequestSegment { gref, first_sect, last_sect })
    }

    /// 512-byte sectors the segment covers.
    pub fn sectors(&self) -> u64 {
        u64::from(self.last_sect - self.first_sect) + 1
    }

    /// Byte offset of the segment inside its page.
    pub fn offset(&self) -> usize {
        usize::from(self.first_sect) * SECTOR_SIZE
    }

    /// Bytes the segment covers.
    pub fn length(&self) -> usize {
        self.sectors() as usize * SECTOR_SIZE
    }
}

/// Direction of a data transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Disk → granted pages (`BLKIF_OP_READ`).
    Read,
    /// Granted pages → disk (`BLKIF_OP_WRITE`, `BLKIF_OP_WRITE_BARRIER`).
    Write,
}

/// A decoded, field-checked request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlkifRequest {
    /// `BLKIF_OP_READ` / `BLKIF_OP_WRITE` / `BLKIF_OP_WRITE_BARRIER` (`barrier` set).
    ReadWrite {
        direction: Direction,
        barrier: bool,
        handle: u16,
        /// First 512-byte sector on the virtual disk.
        sector_number: u64,
        /// 1..=11 checked segments (barrier: 0..=11).
        segments: Vec<BlkifRequestSegment>,
    },
    /// `BLKIF_OP_FLUSH_DISKCACHE`: everything completed before must be durable.
    Flush,
    /// `BLKIF_OP_DISCARD`.
    Discard { secure: bool, handle: u16, sector_number: u64, nr_sectors: u64 },
    /// `BLKIF_OP_INDIRECT`: the segment descriptors live in granted pages, read by the
    /// caller (they need [`GrantAccess`](super::GrantAccess)).
    Indirect {
        direction: Direction,
        handle: u16,
        sector_number: u64,
        /// 1..=`max_indirect_segments` (checked against the advertised maximum here).
        nr_segments: u16,
        /// The first `ceil(nr_segments / 512)` entries are meaningful.
        indirect_grefs: [u32; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
    },
}

/// A request as copied out of the ring: the id and operation to answer with, and the
/// request or why it was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Echoed in the response; opaque to the back end.
    pub id: u64,
    /// Echoed in the response: the raw byte, except `indirect_op` for an indirect
    /// request.
    pub operation: u8,
    pub request: Result<BlkifRequest, Refusal>,
}

/// Why a request was refused; turned into a response status in one place
/// ([`Refusal::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The operation is unknown or not advertised → `BLKIF_RSP_EOPNOTSUPP`.
    Unsupported,
    /// The request is malformed → `BLKIF_RSP_ERROR`.
    Error(Malformed),
}

/// What was wrong with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// nr_segments is 0 or above the limit.
    SegmentCount,
    LastSectorBeyondPage,
    FirstSectorAfterLast,
    /// indirect_op is neither read nor write.
    IndirectOperation,
    /// The range ends past the disk (or overflows).
    SectorOutOfRange,
    ReadOnly,
    /// A data or indirect page could not be copied.
    GrantFault,
    /// The disk failed the operation.
    DiskError,
}

impl Refusal {
    /// The response status for this refusal.
    pub fn status(self) -> i16 {
        match self {
            Refusal::Unsupported => BLKIF_RSP_EOPNOTSUPP,
            Refusal::Error(_) => BLKIF_RSP_ERROR,
        }
    }
}

/// What the back end advertised, as far as decoding needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    pub barrier: bool,
    pub flush: bool,
    pub discard: bool,
    pub discard_secure: bool,
    /// 0 (or ≤ 11): indirect requests are not advertised.
    pub max_indirect_segments: u16,
}

fn u16_at(entry: &[u8; ENTRY_SIZE], offset: usize) -> u16 {
    u16::from_le_bytes([entry[offset], entry[offset + 1]])
}

fn u32_at(entry: &[u8; ENTRY_SIZE], offset: usize) -> u32 {
    u32::from_le_bytes([entry[offset], entry[offset + 1], entry[offset + 2], entry[offset + 3]])
}

fn u64_at(entry: &[u8; ENTRY_SIZE], offset: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&entry[offset..offset + 8]);
    u64::from_le_bytes(bytes)
}

/// Decodes one entry (our private copy) under the advertised `features`.
pub fn decode(entry: &[u8; ENTRY_SIZE], features: &Features) -> Decoded {
    let id = u64_at(entry, ID);
    let operation = entry[OPERATION];
    let request = decode_body(entry, operation, features);
    // An indirect request is answered with its inner operation (`indirect_op`), as
    // Linux blkback does: blkfront rejects a response carrying BLKIF_OP_INDIRECT and
    // disables the disk.
    let answered = if operation == BLKIF_OP_INDIRECT { entry[NR_SEGMENTS] } else { operation };
    Decoded { id, operation: answered, request }
}

fn decode_body(entry: &[u8; ENTRY_SIZE], operation: u8, features: &Features) -> Result<BlkifRequest, Refusal> {
    let sector_number = u64_at(entry, SECTOR_NUMBER);
    match operation {
        BLKIF_OP_READ | BLKIF_OP_WRITE | BLKIF_OP_WRITE_BARRIER => {
            let barrier = operation == BLKIF_OP_WRITE_BARRIER;
            if barrier && !features.barrier {
                return Err(Refusal::Unsupported);
            }
            let nr_segments = usize::from(entry[NR_SEGMENTS]);
            if (nr_segments == 0 && !barrier) || nr_segments > BLKIF_MAX_SEGMENTS_PER_REQUEST {
                return Err(Refusal::Error(Malformed::SegmentCount));
            }
            let segments = entry[SEGMENTS..SEGMENTS + nr_segments * SEGMENT_SIZE]
                .chunks_exact(SEGMENT_SIZE)
                .map(BlkifRequestSegment::decode)
                .collect::<Result<Vec<_>, _>>()?;
            let direction = if operation == BLKIF_OP_READ { Direction::Read } else { Direction::Write };
            Ok(BlkifRequest::ReadWrite { direction, barrier, handle: u16_at(entry, HANDLE), sector_number, segments })
        }
        BLKIF_OP_FLUSH_DISKCACHE if features.flush => Ok(BlkifRequest::Flush),
        BLKIF_OP_DISCARD if features.discard => {
            let secure = entry[NR_SEGMENTS] & BLKIF_DISCARD_SECURE != 0;
            if secure && !features.discard_secure {
                return Err(Refusal::Unsupported);
            }
            let nr_sectors = u64_at(entry, DISCARD_NR_SECTORS);
            Ok(BlkifRequest::Discard { secure, handle: u16_at(entry, HANDLE), sector_number, nr_sectors })
        }
        BLKIF_OP_INDIRECT if usize::from(features.max_indirect_segments) > BLKIF_MAX_SEGMENTS_PER_REQUEST => {
            let direction = match entry[NR_SEGMENTS] {
                BLKIF_OP_READ => Direction::Read,
                BLKIF_OP_WRITE => Direction::Write,
                _ => return Err(Refusal::Error(Malformed::IndirectOperation)),
            };
            let nr_segments = u16_at(entry, INDIRECT_NR_SEGMENTS);
            if nr_segments == 0 || nr_segments > features.max_indirect_segments {
                return Err(Refusal::Error(Malformed::SegmentCount));
            }
            let mut indirect_grefs = [0u32; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST];
            for (index, gref) in indirect_grefs.iter_mut().enumerate() {
                *gref = u32_at(entry, INDIRECT_GREFS + 4 * index);
            }
            Ok(BlkifRequest::Indirect {
                direction,
                handle: u16_at(entry, INDIRECT_HANDLE),
                sector_number,
                nr_segments,
                indirect_grefs,
            })
        }
        _ => Err(Refusal::Unsupported),
    }
}

/// A response (`struct blkif_response`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlkifResponse {
    /// The request's id.
    pub id: u64,
    /// The request's operation byte.
    pub operation: u8,
    /// `BLKIF_RSP_*`.
    pub status: i16,
}

impl BlkifResponse {
    /// The 16 bytes written into the ring: id @0, operation @8, status @10.
    pub fn encode(&self) -> [u8; RESPONSE_SIZE] {
        let mut bytes = [0u8; RESPONSE_SIZE];
        bytes[0..8].copy_from_slice(&self.id.to_le_bytes());
        bytes[8] = self.operation;
        bytes[10..12].copy_from_slice(&self.status.to_le_bytes());
        bytes
    }

    /// Decodes a response (what a frontend does; used by tests).
    pub fn decode(bytes: &[u8; RESPONSE_SIZE]) -> Self {
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[0..8]);
        BlkifResponse {
            id: u64::from_le_bytes(id),
            operation: bytes[8],
            status: i16::from_le_bytes([bytes[10], bytes[11]]),
        }
    }
}

/// Encoders for requests, as a frontend writes them (tests and fuzzing).
pub mod encode {
    use super::*;

    /// A read/write/barrier request with direct segments (at most 11 are written).
    pub fn read_write(operation: u8, id: u64, sector_number: u64, segments: &[(u32, u8, u8)]) -> [u8; ENTRY_SIZE] {
        let mut entry = [0u8; ENTRY_SIZE];
        entry[OPERATION] = operation;
        entry[NR_SEGMENTS] = segments.len() as u8;
        entry[ID..ID + 8].copy_from_slice(&id.to_le_bytes());
        entry[SECTOR_NUMBER..SECTOR_NUMBER + 8].copy_from_slice(&sector_number.to_le_bytes());
        for (index, segment) in segments.iter().take(BLKIF_MAX_SEGMENTS_PER_REQUEST).enumerate() {
            entry[SEGMENTS + index * SEGMENT_SIZE..][..SEGMENT_SIZE].copy_from_slice(&segment_bytes(*segment));
        }
        entry
    }

    /// One 8-byte segment descriptor.
    pub fn segment_bytes((gref, first_sect, last_sect): (u32, u8, u8)) -> [u8; SEGMENT_SIZE] {
        let mut bytes = [0u8; SEGMENT_SIZE];
        bytes[0..4].copy_from_slice(&gref.to_le_bytes());
        bytes[4] = first_sect;
        bytes[5] = last_sect;
        bytes
    }

    /// A discard request.
    pub fn discard(id: u64, secure: bool, sector_number: u64, nr_sectors: u64) -> [u8; ENTRY_SIZE] {
        let mut entry = [0u8; ENTRY_SIZE];
        entry[OPERATION] = BLKIF_OP_DISCARD;
        entry[NR_SEGMENTS] = if secure { BLKIF_DISCARD_SECURE } else { 0 };
        entry[ID..ID + 8].copy_from_slice(&id.to_le_bytes());
        entry[SECTOR_NUMBER..SECTOR_NUMBER + 8].copy_from_slice(&sector_number.to_le_bytes());
        entry[DISCARD_NR_SECTORS..DISCARD_NR_SECTORS + 8].copy_from_slice(&nr_sectors.to_le_bytes());
        entry
    }

    /// An indirect request (at most 8 indirect grefs are written).
    pub fn indirect(
        indirect_op: u8,
        id: u64,
        sector_number: u64,
        nr_segments: u16,
        indirect_grefs: &[u32],
    ) -> [u8; ENTRY_SIZE] {
        let mut entry = [0u8; ENTRY_SIZE];
        entry[OPERATION] = BLKIF_OP_INDIRECT;
        entry[NR_SEGMENTS] = indirect_op;
        entry[INDIRECT_NR_SEGMENTS..INDIRECT_NR_SEGMENTS + 2].copy_from_slice(&nr_segments.to_le_bytes());
        entry[ID..ID + 8].copy_from_slice(&id.to_le_bytes());
        entry[SECTOR_NUMBER..SECTOR_NUMBER + 8].copy_from_slice(&sector_number.to_le_bytes());
        for (index, gref) in indirect_grefs.iter().take(BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST).enumerate() {
            entry[INDIRECT_GREFS + 4 * index..][..4].copy_from_slice(&gref.to_le_bytes());
        }
        entry
    }

    /// Any other operation with just an id (flush, unknown operations).
    pub fn bare(operation: u8, id: u64) -> [u8; ENTRY_SIZE] {
        let mut entry = [0u8; ENTRY_SIZE];
        entry[OPERATION] = operation;
        entry[ID..ID + 8].copy_from_slice(&id.to_le_bytes());
        entry
    }
}
