//! Host fakes for driver tests: a physical memory model that [`FakeDma`] regions live
//! in (so a fake device can read a descriptor by physical address, as real DMA does),
//! a settable clock, and a [`FakePlatform`] that hands out both. Device register
//! models are per driver (each test module implements [`Registers`] for its device).

extern crate std;

use super::{DmaRegion, Platform, Registers};
use crate::pci::Bar;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const PAGE: u64 = 4096;

/// Physical memory of the fake machine: regions by base address.
#[derive(Default)]
pub struct FakeMemory {
    regions: Mutex<BTreeMap<u64, Vec<u8>>>,
    next: AtomicU64,
    /// Allocations refused once this many bytes are handed out (0: no limit).
    pub limit: AtomicU64,
    allocated: AtomicU64,
}

impl FakeMemory {
    pub fn new() -> Arc<FakeMemory> {
        Arc::new(FakeMemory { next: AtomicU64::new(0x10_0000), ..Default::default() })
    }

    fn allocate(self: &Arc<Self>, bytes: usize) -> Option<FakeDma> {
        let length = (bytes as u64).div_ceil(PAGE).max(1) * PAGE;
        let limit = self.limit.load(Ordering::Relaxed);
        if limit != 0 && self.allocated.load(Ordering::Relaxed) + length > limit {
            return None;
        }
        self.allocated.fetch_add(length, Ordering::Relaxed);
        let base = self.next.fetch_add(length + PAGE, Ordering::Relaxed);
        self.regions.lock().unwrap().insert(base, vec![0; length as usize]);
        Some(FakeDma { memory: self.clone(), base, length: length as usize })
    }

    fn with_bytes<R>(&self, physical: u64, length: usize, f: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
        let mut regions = self.regions.lock().unwrap();
        let (&base, bytes) = regions.range_mut(..=physical).next_back()?;
        let start = usize::try_from(physical - base).ok()?;
        let end = start.checked_add(length)?;
        bytes.get_mut(start..end).map(f)
    }

    /// What a device reads by DMA; `None` if the range is not allocated memory.
    pub fn read(&self, physical: u64, out: &mut [u8]) -> Option<()> {
        self.with_bytes(physical, out.len(), |bytes| out.copy_from_slice(bytes))
    }

    /// What a device writes by DMA; `None` if the range is not allocated memory.
    pub fn write(&self, physical: u64, data: &[u8]) -> Option<()> {
        self.with_bytes(physical, data.len(), |bytes| bytes.copy_from_slice(data))
    }

    pub fn read_u32(&self, physical: u64) -> Option<u32> {
        let mut bytes = [0; 4];
        self.read(physical, &mut bytes).map(|()| u32::from_le_bytes(bytes))
    }

    pub fn read_u64(&self, physical: u64) -> Option<u64> {
        let mut bytes = [0; 8];
        self.read(physical, &mut bytes).map(|()| u64::from_le_bytes(bytes))
    }

    pub fn write_u32(&self, physical: u64, value: u32) -> Option<()> {
        self.write(physical, &value.to_le_bytes())
    }

    pub fn write_u64(&self, physical: u64, value: u64) -> Option<()> {
        self.write(physical, &value.to_le_bytes())
    }

    /// Bytes currently allocated (leak checks).
    pub fn allocated(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }
}

/// A DMA region in [`FakeMemory`]; freed when dropped.
pub struct FakeDma {
    memory: Arc<FakeMemory>,
    base: u64,
    length: usize,
}

impl Drop for FakeDma {
    fn drop(&mut self) {
        self.memory.regions.lock().unwrap().remove(&self.base);
        self.memory.allocated.fetch_sub(self.length as u64, Ordering::Relaxed);
    }
}

impl FakeDma {
    fn in_range(&self, offset: usize, length: usize) -> bool {
        offset.checked_add(length).is_some_and(|end| end <= self.length)
    }
}

impl DmaRegion for FakeDma {
    fn physical_address(&self) -> u64 {
        self.base
    }
    fn len(&self) -> usize {
        self.length
    }
    fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        if self.in_range(offset, out.len()) {
            self.memory.read(self.base + offset as u64, out);
        } else {
            out.fill(0);
        }
    }
    fn write_bytes(&self, offset: usize, data: &[u8]) {
        if self.in_range(offset, data.len()) {
            self.memory.write(self.base + offset as u64, data);
        }
    }
    fn read_u16(&self, offset: usize) -> u16 {
        let mut bytes = [0; 2];
        self.read_bytes(offset, &mut bytes);
        u16::from_le_bytes(bytes)
    }
    fn read_u32(&self, offset: usize) -> u32 {
        let mut bytes = [0; 4];
        self.read_bytes(offset, &mut bytes);
        u32::from_le_bytes(bytes)
    }
    fn read_u64(&self, offset: usize) -> u64 {
        let mut bytes = [0; 8];
        self.read_bytes(offset, &mut bytes);
        u64::from_le_bytes(bytes)
    }
    fn write_u16(&self, offset: usize, value: u16) {
        self.write_bytes(offset, &value.to_le_bytes())
    }
    fn write_u32(&self, offset: usize, value: u32) {
        self.write_bytes(offset, &value.to_le_bytes())
    }
    fn write_u64(&self, offset: usize, value: u64) {
        self.write_bytes(offset, &value.to_le_bytes())
    }
}

/// A platform whose clock the test sets and whose BARs are the register models the
/// test registered by BAR index.
pub struct FakePlatform {
    pub memory: Arc<FakeMemory>,
    pub clock_ns: AtomicU64,
    /// Every `delay_us` and `now_ns` call advances the clock by this much, so polling
    /// loops with timeouts end.
    pub tick_ns: AtomicU64,
    #[allow(clippy::type_complexity)]
    bars: Mutex<BTreeMap<u8, Box<dyn Fn() -> Box<dyn Registers> + Send>>>,
}

impl FakePlatform {
    pub fn new(memory: Arc<FakeMemory>) -> FakePlatform {
        FakePlatform {
            memory,
            clock_ns: AtomicU64::new(0),
            tick_ns: AtomicU64::new(1_000),
            bars: Mutex::new(BTreeMap::new()),
        }
    }

    /// `map_bar` of BAR `index` returns what `make` builds (typically a handle onto a
    /// shared device model).
    pub fn set_bar(&self, index: u8, make: impl Fn() -> Box<dyn Registers> + Send + 'static) {
        self.bars.lock().unwrap().insert(index, Box::new(make));
    }

    pub fn advance(&self, nanoseconds: u64) {
        self.clock_ns.fetch_add(nanoseconds, Ordering::Relaxed);
    }
}

impl Platform for FakePlatform {
    fn now_ns(&self) -> u64 {
        self.clock_ns.fetch_add(self.tick_ns.load(Ordering::Relaxed), Ordering::Relaxed)
    }
    fn delay_us(&self, microseconds: u32) {
        self.advance(u64::from(microseconds) * 1_000);
    }
    fn allocate_dma(&self, bytes: usize) -> Option<Box<dyn DmaRegion>> {
        self.memory.allocate(bytes).map(|region| Box::new(region) as Box<dyn DmaRegion>)
    }
    fn map_bar(&self, bar: &Bar) -> Option<Box<dyn Registers>> {
        self.bars.lock().unwrap().get(&bar.index).map(|make| make())
    }
}
