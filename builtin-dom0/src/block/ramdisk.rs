//! A RAM-backed block device: `ram:SIZE` scratch disks (issue 6) and the block layer's
//! test double.
//!
//! Requests are carried out when submitted and complete on the next
//! `poll_completions`, so callers exercise the asynchronous path. Flush is a no-op
//! that succeeds (RAM is as durable as it gets); discard zeroes the range. The backing
//! memory is allocated with `try_reserve`, so an absurd size is an error, not an abort.

use super::{check_request, BlockDevice, BlockError, Completion, DeviceInfo, Op, Request, RequestId};
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Queue depth of a RAM disk unless chosen otherwise.
pub const DEFAULT_QUEUE_DEPTH: u32 = 32;

/// A block device whose blocks live in a `Vec<u8>`.
pub struct RamDisk {
    data: Vec<u8>,
    info: DeviceInfo,
    done: VecDeque<Completion>,
    next_id: u64,
}

impl RamDisk {
    /// A zeroed disk of `capacity` blocks of `block_size` bytes (512 or 4096).
    pub fn new(capacity: u64, block_size: u32) -> Result<RamDisk, BlockError> {
        if block_size != 512 && block_size != 4096 {
            return Err(BlockError::Unsupported(Op::Read));
        }
        let length = capacity
            .checked_mul(u64::from(block_size))
            .and_then(|bytes| usize::try_from(bytes).ok())
            .ok_or(BlockError::NoMemory)?;
        let mut data = Vec::new();
        data.try_reserve_exact(length).map_err(|_| BlockError::NoMemory)?;
        data.resize(length, 0);
        Ok(RamDisk {
            data,
            info: DeviceInfo {
                capacity,
                logical_block_size: block_size,
                physical_block_size: block_size,
                read_only: false,
                queue_depth: DEFAULT_QUEUE_DEPTH,
                model: String::from("Basalt RAM disk"),
                supports_flush: true,
                supports_discard: true,
            },
            done: VecDeque::new(),
            next_id: 0,
        })
    }

    /// A disk holding `image` (whose length must be a whole number of blocks).
    pub fn from_image(image: Vec<u8>, block_size: u32) -> Result<RamDisk, BlockError> {
        let mut disk = RamDisk::new(0, block_size)?;
        let block = block_size as usize;
        if !image.len().is_multiple_of(block) {
            return Err(BlockError::BufferLength { expected: image.len() / block * block, actual: image.len() });
        }
        disk.info.capacity = (image.len() / block) as u64;
        disk.data = image;
        Ok(disk)
    }

    /// A `ram:SIZE` scratch disk: SIZE as parsed by [`parse_size`], 512-byte blocks.
    pub fn from_size_spec(spec: &str) -> Result<RamDisk, SizeError> {
        let bytes = parse_size(spec)?;
        if bytes == 0 || !bytes.is_multiple_of(512) {
            return Err(SizeError::NotWholeBlocks);
        }
        RamDisk::new(bytes / 512, 512).map_err(|_| SizeError::TooLarge)
    }

    pub fn with_read_only(mut self, read_only: bool) -> Self {
        self.info.read_only = read_only;
        self
    }

    pub fn with_queue_depth(mut self, depth: u32) -> Self {
        self.info.queue_depth = depth.max(1);
        self
    }

    pub fn with_model(mut self, model: &str) -> Self {
        self.info.model = String::from(model);
        self
    }

    /// The whole disk's bytes (for tests and for dumping a scratch disk).
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    fn range(&self, lba: u64, blocks: u32) -> core::ops::Range<usize> {
        // In range: check_request proved lba + blocks ≤ capacity, and the data is
        // capacity × block size bytes long.
        let block = self.info.logical_block_size as usize;
        let start = lba as usize * block;
        start..start + blocks as usize * block
    }
}

impl BlockDevice for RamDisk {
    fn info(&self) -> DeviceInfo {
        self.info.clone()
    }

    fn submit(&mut self, mut request: Request) -> Result<RequestId, BlockError> {
        if self.done.len() >= self.info.queue_depth as usize {
            return Err(BlockError::QueueFull);
        }
        check_request(&self.info, &request)?;
        match request.op {
            Op::Read => {
                let range = self.range(request.lba, request.blocks);
                request.buffer.copy_from_slice(&self.data[range]);
            }
            Op::Write => {
                let range = self.range(request.lba, request.blocks);
                self.data[range].copy_from_slice(&request.buffer);
            }
            Op::Discard => {
                let range = self.range(request.lba, request.blocks);
                self.data[range].fill(0);
            }
            Op::Flush => {}
        }
        let id = RequestId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        self.done.push_back(Completion { id, result: Ok(()), buffer: request.buffer });
        Ok(id)
    }

    fn poll_completions(&mut self, out: &mut Vec<Completion>) {
        out.extend(self.done.drain(..));
    }
}

/// Why a `ram:SIZE` size was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeError {
    /// Not `<digits>[K|M|G|T][B|iB]`.
    Syntax,
    /// Zero, or not a multiple of 512 bytes.
    NotWholeBlocks,
    /// More bytes than can be counted or allocated.
    TooLarge,
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SizeError::Syntax => "size is not a number with an optional K, M, G or T suffix",
            SizeError::NotWholeBlocks => "size is not a non-zero multiple of 512 bytes",
            SizeError::TooLarge => "size is too large",
        })
    }
}

/// Parses a size such as `512`, `64K`, `256M`, `2G`, `1GiB` (binary multiples; the
/// suffix is case-insensitive) into bytes.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let text = text.trim();
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, suffix) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(SizeError::Syntax);
    }
    let number: u64 = digits.parse().map_err(|_| SizeError::TooLarge)?;
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(SizeError::Syntax),
    };
    number.checked_mul(1u64 << shift).ok_or(SizeError::TooLarge)
}
