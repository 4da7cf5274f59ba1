//! `disk-bench`: sequential write, sequential read and 4 KiB random-read figures of a
//! block device measured by dom0 itself, the baseline that guests' disk throughput is
//! compared with (`make bench`).
//!
//! One request in flight at a time (queue depth 1), as the blkif back end issues
//! them, so the figures compare like with like. Destructive: it overwrites the first
//! `bytes` of the device; the caller makes sure nobody holds it.

use super::{BlockDevice, BlockError, Completion, Request};
use alloc::vec;
use alloc::vec::Vec;

/// Bytes per sequential request.
pub const SEQUENTIAL_REQUEST_BYTES: u32 = 128 * 1024;
/// Random reads done at most (the run also ends after [`RANDOM_READ_NS`]).
pub const RANDOM_READS: u32 = 4096;
/// How long the random-read phase runs at most.
pub const RANDOM_READ_NS: u64 = 3_000_000_000;

/// What one run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchResult {
    pub bytes: u64,
    pub write_ns: u64,
    pub read_ns: u64,
    pub random_reads: u32,
    pub random_ns: u64,
}

impl BenchResult {
    fn megabytes_per_second(bytes: u64, ns: u64) -> f64 {
        if ns == 0 {
            return 0.0;
        }
        bytes as f64 / 1e6 / (ns as f64 / 1e9)
    }
    pub fn write_mb_per_s(&self) -> f64 {
        Self::megabytes_per_second(self.bytes, self.write_ns)
    }
    pub fn read_mb_per_s(&self) -> f64 {
        Self::megabytes_per_second(self.bytes, self.read_ns)
    }
    pub fn random_iops(&self) -> f64 {
        if self.random_ns == 0 {
            return 0.0;
        }
        f64::from(self.random_reads) / (self.random_ns as f64 / 1e9)
    }
}

/// Submits one request and polls until it completes (or `timeout_ns` passes).
fn run_one(
    device: &mut dyn BlockDevice,
    request: Request,
    now_ns: &dyn Fn() -> u64,
    timeout_ns: u64,
    completions: &mut Vec<Completion>,
) -> Result<Vec<u8>, BlockError> {
    let id = device.submit(request)?;
    let deadline = now_ns().saturating_add(timeout_ns);
    loop {
        completions.clear();
        device.poll_completions(completions);
        if let Some(done) = completions.iter_mut().find(|completion| completion.id == id) {
            let buffer = core::mem::take(&mut done.buffer);
            return done.result.map(|()| buffer);
        }
        if now_ns() >= deadline {
            return Err(BlockError::Timeout);
        }
        core::hint::spin_loop();
    }
}

/// Measures `device` over its first `bytes` (rounded down to whole requests; at least
/// one request must fit).
pub fn run(device: &mut dyn BlockDevice, bytes: u64, now_ns: &dyn Fn() -> u64) -> Result<BenchResult, BlockError> {
    const TIMEOUT_NS: u64 = 60_000_000_000;
    let info = device.info();
    if info.read_only {
        return Err(BlockError::ReadOnly);
    }
    let block = info.logical_block_size.max(1);
    let blocks_per_request = SEQUENTIAL_REQUEST_BYTES / block;
    let requests = bytes.min(info.capacity_bytes()) / u64::from(SEQUENTIAL_REQUEST_BYTES);
    if requests == 0 || blocks_per_request == 0 {
        return Err(BlockError::OutOfRange { lba: 0, blocks: blocks_per_request, capacity: info.capacity });
    }
    let mut completions = Vec::new();
    let mut pattern = vec![0u8; SEQUENTIAL_REQUEST_BYTES as usize];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in pattern.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }

    let start = now_ns();
    for index in 0..requests {
        let lba = index * u64::from(blocks_per_request);
        let request = Request::write(lba, blocks_per_request, pattern.clone());
        run_one(device, request, now_ns, TIMEOUT_NS, &mut completions)?;
    }
    if info.supports_flush {
        run_one(device, Request::flush(), now_ns, TIMEOUT_NS, &mut completions)?;
    }
    let write_ns = now_ns().saturating_sub(start);

    let start = now_ns();
    for index in 0..requests {
        let lba = index * u64::from(blocks_per_request);
        let request = Request::read(lba, blocks_per_request, block)?;
        let data = run_one(device, request, now_ns, TIMEOUT_NS, &mut completions)?;
        if data != pattern {
            return Err(BlockError::Io);
        }
    }
    let read_ns = now_ns().saturating_sub(start);

    let region_blocks = requests * u64::from(blocks_per_request);
    let blocks_per_read = (4096 / block).max(1);
    let start = now_ns();
    let mut random_reads = 0;
    while random_reads < RANDOM_READS && now_ns().saturating_sub(start) < RANDOM_READ_NS {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let slots = (region_blocks / u64::from(blocks_per_read)).max(1);
        let lba = (state % slots) * u64::from(blocks_per_read);
        let request = Request::read(lba, blocks_per_read, block)?;
        run_one(device, request, now_ns, TIMEOUT_NS, &mut completions)?;
        random_reads += 1;
    }
    let random_ns = now_ns().saturating_sub(start);
    Ok(BenchResult {
        bytes: requests * u64::from(SEQUENTIAL_REQUEST_BYTES),
        write_ns,
        read_ns,
        random_reads,
        random_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::RamDisk;

    #[test]
    fn measures_and_verifies_what_it_wrote() {
        let mut disk = RamDisk::new(8192, 512).unwrap();
        let ticks = core::cell::Cell::new(0u64);
        let now = || {
            ticks.set(ticks.get() + 1_000);
            ticks.get()
        };
        let result = run(&mut disk, 1 << 20, &now).unwrap();
        assert_eq!(result.bytes, 1 << 20);
        assert!(result.write_ns > 0 && result.read_ns > 0);
        assert_eq!(result.random_reads, RANDOM_READS);
        assert!(result.write_mb_per_s() > 0.0 && result.random_iops() > 0.0);
        assert!(disk.bytes()[..8].iter().any(|&byte| byte != 0), "the pattern was written");
    }

    #[test]
    fn refuses_read_only_and_too_small_devices() {
        let now = || 0u64;
        let mut read_only = RamDisk::new(8192, 512).unwrap().with_read_only(true);
        assert_eq!(run(&mut read_only, 1 << 20, &now), Err(BlockError::ReadOnly));
        let mut tiny = RamDisk::new(8, 512).unwrap();
        assert!(matches!(run(&mut tiny, 1 << 20, &now), Err(BlockError::OutOfRange { .. })));
    }
}
