//! The block layer: one interface for every disk dom0 owns (issue 6, "Block layer").
//!
//! Drivers (AHCI, NVMe, virtio-blk) and the RAM disk implement [`BlockDevice`]; the
//! blkif backend and the shell use only that trait. Partitions found by
//! [`partition::parse`] are block devices of their own ([`Partition`]), and
//! [`names::DiskTable`] gives every disk and partition a stable name (`sda`, `nvme0n1p2`).
//!
//! Contract of [`BlockDevice`] (call order):
//! 1. `info()` may be called at any time and does not change while the device is open.
//! 2. `submit()` checks the request once ([`check_request`]) and either refuses it with
//!    a [`BlockError`] (nothing is queued, the buffer is dropped) or accepts it and
//!    returns its [`RequestId`]. At most `queue_depth` requests are in flight; one more
//!    is refused with [`BlockError::QueueFull`].
//! 3. `poll_completions()` appends every finished request's [`Completion`], which hands
//!    the request's buffer back (filled, for a read). Each accepted request completes
//!    exactly once; a failed command completes with an error, never with a hang.
//!
//! Buffers: a request owns its `Vec<u8>` for its whole life (no borrowed memory crosses
//! the asynchronous boundary), and gets it back in the completion.

pub mod bench;
pub mod names;
pub mod partition;
pub mod ramdisk;

#[cfg(test)]
mod tests;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

pub use partition::{parse as parse_partitions, PartitionTable};
pub use ramdisk::RamDisk;

/// A device's fixed geometry and abilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Capacity, in logical blocks.
    pub capacity: u64,
    /// Bytes per logical block: the unit of `lba` and `blocks` (512 or 4096).
    pub logical_block_size: u32,
    /// Bytes per physical block (≥ the logical size; alignment hint only).
    pub physical_block_size: u32,
    /// Writes and discards are refused.
    pub read_only: bool,
    /// Requests that may be in flight at once (≥ 1).
    pub queue_depth: u32,
    /// The device's model string, as the hardware reports it.
    pub model: String,
    /// `Op::Flush` is accepted (and really reaches the medium).
    pub supports_flush: bool,
    /// `Op::Discard` is accepted.
    pub supports_discard: bool,
}

impl DeviceInfo {
    /// Capacity in bytes (saturating: no real disk is near 2^64 bytes).
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity.saturating_mul(u64::from(self.logical_block_size))
    }
}

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Fill the buffer from `lba .. lba + blocks`.
    Read,
    /// Write the buffer to `lba .. lba + blocks`.
    Write,
    /// Make every write completed before this request durable. `lba` and `blocks` are 0.
    Flush,
    /// The range's contents are no longer needed (reads may return zeroes or old data).
    Discard,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Flush => "flush",
            Op::Discard => "discard",
        })
    }
}

/// One I/O request. The buffer is `blocks × logical_block_size` bytes for reads and
/// writes, and empty for flushes and discards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub op: Op,
    /// First logical block.
    pub lba: u64,
    /// Length in logical blocks.
    pub blocks: u32,
    /// Data to write, or space to read into; returned in the [`Completion`].
    pub buffer: Vec<u8>,
}

impl Request {
    /// A read of `blocks` blocks at `lba` into a fresh zeroed buffer.
    pub fn read(lba: u64, blocks: u32, block_size: u32) -> Result<Request, BlockError> {
        let length = buffer_length(blocks, block_size)?;
        let mut buffer = Vec::new();
        buffer.try_reserve_exact(length).map_err(|_| BlockError::NoMemory)?;
        buffer.resize(length, 0);
        Ok(Request { op: Op::Read, lba, blocks, buffer })
    }

    /// A write of `buffer` (whole blocks) at `lba`; `blocks` is left for the check.
    pub fn write(lba: u64, blocks: u32, buffer: Vec<u8>) -> Request {
        Request { op: Op::Write, lba, blocks, buffer }
    }

    pub fn flush() -> Request {
        Request { op: Op::Flush, lba: 0, blocks: 0, buffer: Vec::new() }
    }

    pub fn discard(lba: u64, blocks: u32) -> Request {
        Request { op: Op::Discard, lba, blocks, buffer: Vec::new() }
    }
}

/// A device-chosen identifier for an accepted request, unique among those in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// A finished request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub id: RequestId,
    pub result: Result<(), BlockError>,
    /// The request's buffer, handed back (filled by a successful read).
    pub buffer: Vec<u8>,
}

/// Everything that can go wrong with a block request: the block layer's one error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockError {
    /// `queue_depth` requests are already in flight.
    QueueFull,
    /// A read, write or discard of zero blocks.
    EmptyRequest,
    /// A flush that names blocks or carries a buffer.
    MalformedFlush,
    /// The range `lba .. lba + blocks` is not inside `0 .. capacity`.
    OutOfRange { lba: u64, blocks: u32, capacity: u64 },
    /// The buffer is not `blocks × block size` bytes (or not empty for discard).
    BufferLength { expected: usize, actual: usize },
    /// A write or discard to a read-only device.
    ReadOnly,
    /// The device does not do this operation.
    Unsupported(Op),
    /// A buffer could not be allocated.
    NoMemory,
    /// The device reported an error for this request.
    Io,
    /// The device did not complete the request in time.
    Timeout,
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockError::QueueFull => f.write_str("queue full"),
            BlockError::EmptyRequest => f.write_str("request of zero blocks"),
            BlockError::MalformedFlush => f.write_str("flush with a range or a buffer"),
            BlockError::OutOfRange { lba, blocks, capacity } => {
                write!(f, "blocks {lba}+{blocks} are beyond the end of the device ({capacity} blocks)")
            }
            BlockError::BufferLength { expected, actual } => {
                write!(f, "buffer of {actual} bytes, expected {expected}")
            }
            BlockError::ReadOnly => f.write_str("device is read-only"),
            BlockError::Unsupported(op) => write!(f, "{op} not supported by the device"),
            BlockError::NoMemory => f.write_str("out of memory for the buffer"),
            BlockError::Io => f.write_str("I/O error"),
            BlockError::Timeout => f.write_str("device timed out"),
        }
    }
}

/// `blocks × block_size` as a buffer length, refusing overflow.
pub fn buffer_length(blocks: u32, block_size: u32) -> Result<usize, BlockError> {
    usize::try_from(u64::from(blocks) * u64::from(block_size)).map_err(|_| BlockError::NoMemory)
}

/// Checks a request against a device's geometry once, before a device accepts it
/// (everything but the queue depth, which only the device knows).
pub fn check_request(info: &DeviceInfo, request: &Request) -> Result<(), BlockError> {
    match request.op {
        Op::Flush => {
            if !info.supports_flush {
                return Err(BlockError::Unsupported(Op::Flush));
            }
            if request.lba != 0 || request.blocks != 0 || !request.buffer.is_empty() {
                return Err(BlockError::MalformedFlush);
            }
            return Ok(());
        }
        Op::Discard if !info.supports_discard => return Err(BlockError::Unsupported(Op::Discard)),
        Op::Write | Op::Discard if info.read_only => return Err(BlockError::ReadOnly),
        _ => {}
    }
    if request.blocks == 0 {
        return Err(BlockError::EmptyRequest);
    }
    let in_range = request.lba.checked_add(u64::from(request.blocks)).is_some_and(|end| end <= info.capacity);
    if !in_range {
        return Err(BlockError::OutOfRange { lba: request.lba, blocks: request.blocks, capacity: info.capacity });
    }
    let expected = match request.op {
        Op::Discard => 0,
        _ => buffer_length(request.blocks, info.logical_block_size)?,
    };
    if request.buffer.len() != expected {
        return Err(BlockError::BufferLength { expected, actual: request.buffer.len() });
    }
    Ok(())
}

/// A block device with asynchronous completion; see the module doc for the contract.
pub trait BlockDevice: Send {
    /// Geometry and abilities; constant while the device is open.
    fn info(&self) -> DeviceInfo;
    /// Checks and queues a request, or refuses it (then nothing is queued).
    fn submit(&mut self, request: Request) -> Result<RequestId, BlockError>;
    /// Appends the completions of every request that finished since the last call.
    fn poll_completions(&mut self, out: &mut Vec<Completion>);
}

impl<D: BlockDevice + ?Sized> BlockDevice for &mut D {
    fn info(&self) -> DeviceInfo {
        (**self).info()
    }
    fn submit(&mut self, request: Request) -> Result<RequestId, BlockError> {
        (**self).submit(request)
    }
    fn poll_completions(&mut self, out: &mut Vec<Completion>) {
        (**self).poll_completions(out)
    }
}

impl<D: BlockDevice + ?Sized> BlockDevice for alloc::boxed::Box<D> {
    fn info(&self) -> DeviceInfo {
        (**self).info()
    }
    fn submit(&mut self, request: Request) -> Result<RequestId, BlockError> {
        (**self).submit(request)
    }
    fn poll_completions(&mut self, out: &mut Vec<Completion>) {
        (**self).poll_completions(out)
    }
}

/// A window onto a parent device: a partition. Block `n` of the partition is block
/// `first_lba + n` of the parent; requests beyond `blocks` are refused before they
/// reach the parent. Request ids and completions are the parent's (the partition holds
/// the parent exclusively while it lives).
pub struct Partition<D: BlockDevice> {
    parent: D,
    first_lba: u64,
    blocks: u64,
    read_only: bool,
}

impl<D: BlockDevice> Partition<D> {
    /// A view of `blocks` blocks from `first_lba`; refused if not inside the parent.
    pub fn new(parent: D, first_lba: u64, blocks: u64) -> Result<Self, BlockError> {
        let capacity = parent.info().capacity;
        let inside = first_lba.checked_add(blocks).is_some_and(|end| end <= capacity);
        if blocks == 0 || !inside {
            return Err(BlockError::OutOfRange {
                lba: first_lba,
                blocks: u32::try_from(blocks).unwrap_or(u32::MAX),
                capacity,
            });
        }
        Ok(Partition { parent, first_lba, blocks, read_only: false })
    }

    /// Refuses writes and discards through this view even if the parent allows them.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    pub fn first_lba(&self) -> u64 {
        self.first_lba
    }

    pub fn into_parent(self) -> D {
        self.parent
    }
}

impl<D: BlockDevice> BlockDevice for Partition<D> {
    fn info(&self) -> DeviceInfo {
        let mut info = self.parent.info();
        info.capacity = self.blocks;
        info.read_only |= self.read_only;
        info
    }

    fn submit(&mut self, mut request: Request) -> Result<RequestId, BlockError> {
        check_request(&self.info(), &request)?;
        if request.op != Op::Flush {
            // Cannot overflow: lba + blocks ≤ self.blocks and first_lba + self.blocks
            // ≤ the parent's capacity (checked in `new`).
            request.lba += self.first_lba;
        }
        self.parent.submit(request)
    }

    fn poll_completions(&mut self, out: &mut Vec<Completion>) {
        self.parent.poll_completions(out)
    }
}

/// Synchronous whole-block reads, the input of the partition parser: anything that
/// can read blocks (a device through [`SyncReader`], a byte image through
/// [`ImageReader`]).
pub trait BlockReader {
    /// Bytes per logical block.
    fn block_size(&self) -> u32;
    /// Capacity in logical blocks.
    fn capacity(&self) -> u64;
    /// Reads `count` blocks at `lba`.
    fn read_blocks(&mut self, lba: u64, count: u32) -> Result<Vec<u8>, BlockError>;
}

/// A disk image held in memory (a fuzz input, a test fixture). A trailing partial
/// block is not part of the disk.
pub struct ImageReader<'a> {
    bytes: &'a [u8],
    block_size: u32,
}

impl<'a> ImageReader<'a> {
    /// `block_size` must be non-zero; 0 is treated as 512.
    pub fn new(bytes: &'a [u8], block_size: u32) -> Self {
        let block_size = if block_size == 0 { 512 } else { block_size };
        ImageReader { bytes, block_size }
    }
}

impl BlockReader for ImageReader<'_> {
    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn capacity(&self) -> u64 {
        self.bytes.len() as u64 / u64::from(self.block_size)
    }

    fn read_blocks(&mut self, lba: u64, count: u32) -> Result<Vec<u8>, BlockError> {
        let capacity = self.capacity();
        let out_of_range = BlockError::OutOfRange { lba, blocks: count, capacity };
        if count == 0 {
            return Err(BlockError::EmptyRequest);
        }
        match lba.checked_add(u64::from(count)) {
            Some(end) if end <= capacity => {}
            _ => return Err(out_of_range),
        }
        // Both fit in usize: they are at most the slice's length.
        let start = (lba * u64::from(self.block_size)) as usize;
        let length = buffer_length(count, self.block_size)?;
        Ok(self.bytes[start..start + length].to_vec())
    }
}

/// Reads through a [`BlockDevice`] by submitting a read and polling until it
/// completes, giving up after `max_polls` polls ([`BlockError::Timeout`]). Meant for
/// probing (partition tables) before a device is shared, when nothing else is in
/// flight on it; completions of other requests seen meanwhile are dropped.
pub struct SyncReader<D: BlockDevice> {
    pub device: D,
    pub max_polls: u32,
}

impl<D: BlockDevice> BlockReader for SyncReader<D> {
    fn block_size(&self) -> u32 {
        self.device.info().logical_block_size
    }

    fn capacity(&self) -> u64 {
        self.device.info().capacity
    }

    fn read_blocks(&mut self, lba: u64, count: u32) -> Result<Vec<u8>, BlockError> {
        let request = Request::read(lba, count, self.block_size())?;
        let id = self.device.submit(request)?;
        let mut completions = Vec::new();
        for _ in 0..self.max_polls {
            completions.clear();
            self.device.poll_completions(&mut completions);
            if let Some(done) = completions.drain(..).find(|c| c.id == id) {
                return done.result.map(|()| done.buffer);
            }
        }
        Err(BlockError::Timeout)
    }
}
