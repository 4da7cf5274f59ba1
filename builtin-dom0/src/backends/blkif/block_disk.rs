//! A [`BlockDevice`] as the blkif back end's [`BackendDisk`]: 512-byte sectors mapped
//! onto the device's logical blocks, each operation submitted and polled to
//! completion before the call returns.
//!
//! Why synchronous: the back end answers requests in ring order from one dom0 task; a
//! call returns when the device has finished (or failed) the operation, so a flush
//! response means the data is on the medium. The wait is bounded: past `timeout_ns`
//! (longer than every driver's own command timeout) the call gives up with
//! [`DiskError`]; the request is then answered with an error and the device's own
//! timeout completes it later.

use super::request::SECTOR_SIZE;
use super::{BackendDisk, DiskError};
use crate::block::{BlockDevice, Completion, DeviceInfo, Request};
use alloc::vec::Vec;

/// How long one operation may take before the back end gives up on it.
pub const DEFAULT_TIMEOUT_NS: u64 = 60_000_000_000;

/// One block device seen through 512-byte sectors.
pub struct BlockBackendDisk<'a> {
    device: &'a mut dyn BlockDevice,
    info: DeviceInfo,
    now_ns: &'a dyn Fn() -> u64,
    timeout_ns: u64,
    /// Reused for completions.
    completions: Vec<Completion>,
}

impl<'a> BlockBackendDisk<'a> {
    pub fn new(device: &'a mut dyn BlockDevice, now_ns: &'a dyn Fn() -> u64, timeout_ns: u64) -> Self {
        let info = device.info();
        BlockBackendDisk { device, info, now_ns, timeout_ns, completions: Vec::new() }
    }

    /// Refuses writes and discards whatever the device allows: a disk attached
    /// read-only (`mode = r`) must stay unwritten even by a frontend that ignores the
    /// `info` flag it was given.
    pub fn read_only_if(mut self, read_only: bool) -> Self {
        self.info.read_only |= read_only;
        self
    }

    fn block_size(&self) -> u64 {
        u64::from(self.info.logical_block_size.max(1))
    }

    /// (first block, block count) of a byte range given in sectors; `None` unless the
    /// range is whole logical blocks.
    fn blocks(&self, sector: u64, bytes: u64) -> Option<(u64, u32)> {
        let start = sector.checked_mul(SECTOR_SIZE as u64)?;
        let block = self.block_size();
        if !start.is_multiple_of(block) || !bytes.is_multiple_of(block) {
            return None;
        }
        Some((start / block, u32::try_from(bytes / block).ok()?))
    }

    /// Submits and waits; returns the buffer handed back.
    fn run(&mut self, request: Request) -> Result<Vec<u8>, DiskError> {
        let id = self.device.submit(request).map_err(|_| DiskError)?;
        let deadline = (self.now_ns)().saturating_add(self.timeout_ns);
        loop {
            self.completions.clear();
            self.device.poll_completions(&mut self.completions);
            if let Some(done) = self.completions.iter_mut().find(|completion| completion.id == id) {
                let buffer = core::mem::take(&mut done.buffer);
                return done.result.map(|()| buffer).map_err(|_| DiskError);
            }
            if (self.now_ns)() >= deadline {
                return Err(DiskError);
            }
            core::hint::spin_loop();
        }
    }
}

impl BackendDisk for BlockBackendDisk<'_> {
    fn sectors(&self) -> u64 {
        self.info.capacity_bytes() / SECTOR_SIZE as u64
    }

    fn read_only(&self) -> bool {
        self.info.read_only
    }

    fn read(&mut self, sector: u64, buffer: &mut [u8]) -> Result<(), DiskError> {
        let (lba, blocks) = self.blocks(sector, buffer.len() as u64).ok_or(DiskError)?;
        let request = Request::read(lba, blocks, self.info.logical_block_size).map_err(|_| DiskError)?;
        let data = self.run(request)?;
        if data.len() != buffer.len() {
            return Err(DiskError);
        }
        buffer.copy_from_slice(&data);
        Ok(())
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        if self.info.read_only {
            return Err(DiskError);
        }
        let (lba, blocks) = self.blocks(sector, data.len() as u64).ok_or(DiskError)?;
        let mut buffer = Vec::new();
        buffer.try_reserve_exact(data.len()).map_err(|_| DiskError)?;
        buffer.extend_from_slice(data);
        self.run(Request::write(lba, blocks, buffer)).map(|_| ())
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        if !self.info.supports_flush {
            // Nothing volatile to write back (the device said it has no cache to flush).
            return Ok(());
        }
        self.run(Request::flush()).map(|_| ())
    }

    fn discard(&mut self, sector: u64, count: u64) -> Result<(), DiskError> {
        if self.info.read_only {
            return Err(DiskError);
        }
        if !self.info.supports_discard {
            // Discard is advisory: contents of a discarded range are unspecified.
            return Ok(());
        }
        let bytes = count.checked_mul(SECTOR_SIZE as u64).ok_or(DiskError)?;
        let (lba, blocks) = self.blocks(sector, bytes).ok_or(DiskError)?;
        self.run(Request::discard(lba, blocks)).map(|_| ())
    }

    fn discard_granularity(&self) -> u32 {
        self.info.logical_block_size.max(SECTOR_SIZE as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::RamDisk;
    use alloc::vec;

    fn clock() -> impl Fn() -> u64 {
        let ticks = core::cell::Cell::new(0u64);
        move || {
            ticks.set(ticks.get() + 1);
            ticks.get()
        }
    }

    #[test]
    fn sectors_map_onto_blocks_and_data_round_trips() {
        let mut ram = RamDisk::new(64, 512).unwrap();
        let now = clock();
        let mut disk = BlockBackendDisk::new(&mut ram, &now, 1_000);
        assert_eq!(disk.sectors(), 64);
        let data: Vec<u8> = (0..1024u32).map(|i| i as u8).collect();
        disk.write(3, &data).unwrap();
        let mut back = vec![0; 1024];
        disk.read(3, &mut back).unwrap();
        assert_eq!(back, data);
        disk.flush().unwrap();
        assert_eq!(disk.read(63, &mut [0; 1024]), Err(DiskError), "past the end");
    }

    #[test]
    fn a_read_only_attachment_refuses_writes_on_a_writable_device() {
        let mut ram = RamDisk::new(64, 512).unwrap();
        let now = clock();
        let mut disk = BlockBackendDisk::new(&mut ram, &now, 1_000).read_only_if(true);
        assert!(disk.read_only());
        assert_eq!(disk.write(0, &[1; 512]), Err(DiskError));
        assert!(disk.read(0, &mut [0; 512]).is_ok());
        assert!(ram.bytes().iter().all(|&byte| byte == 0), "nothing was written");
    }

    #[test]
    fn four_kib_blocks_refuse_misaligned_sectors() {
        let mut ram = RamDisk::new(8, 4096).unwrap();
        let now = clock();
        let mut disk = BlockBackendDisk::new(&mut ram, &now, 1_000);
        assert_eq!(disk.sectors(), 64);
        assert_eq!(disk.read(1, &mut [0; 4096]), Err(DiskError));
        assert_eq!(disk.read(8, &mut [0; 512]), Err(DiskError));
        assert!(disk.read(8, &mut [0; 4096]).is_ok());
    }

    /// A device that accepts requests and never completes them.
    struct Stuck;
    impl BlockDevice for Stuck {
        fn info(&self) -> DeviceInfo {
            DeviceInfo {
                capacity: 8,
                logical_block_size: 512,
                physical_block_size: 512,
                read_only: false,
                queue_depth: 1,
                model: "stuck".into(),
                supports_flush: true,
                supports_discard: false,
            }
        }
        fn submit(&mut self, _request: Request) -> Result<crate::block::RequestId, crate::block::BlockError> {
            Ok(crate::block::RequestId(7))
        }
        fn poll_completions(&mut self, _out: &mut Vec<Completion>) {}
    }

    #[test]
    fn a_device_that_never_answers_is_an_error_not_a_hang() {
        let mut stuck = Stuck;
        let now = clock();
        let mut disk = BlockBackendDisk::new(&mut stuck, &now, 100);
        assert_eq!(disk.flush(), Err(DiskError));
        assert_eq!(disk.read(0, &mut [0; 512]), Err(DiskError));
    }
}
