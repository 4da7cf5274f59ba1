//! Host fakes for driver tests: a physical memory model that [`FakeDma`] regions live
//! in (so a fake device can read a descriptor by physical address, as real DMA does),
//! a settable clock, and a [`FakePlatform`] that hands out both (and, when a test sets
//! one, an MSI message). Device register models are per driver (each test module
//! implements [`Registers`] for its device); the one shared model is [`FakeMsixTable`],
//! an MSI-X table BAR, with helpers that add MSI and MSI-X capabilities to a
//! configuration space's bytes.

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
    /// What `interrupt_message` answers (`None`: no interrupts, drivers only poll).
    pub interrupt_message: Mutex<Option<(u64, u32)>>,
}

/// The message tests give drivers: the local APIC window, APIC id 0, vector 0x40.
pub const TEST_MESSAGE: (u64, u32) = (0xFEE0_0000, 0x40);

impl FakePlatform {
    pub fn new(memory: Arc<FakeMemory>) -> FakePlatform {
        FakePlatform {
            memory,
            clock_ns: AtomicU64::new(0),
            tick_ns: AtomicU64::new(1_000),
            bars: Mutex::new(BTreeMap::new()),
            interrupt_message: Mutex::new(None),
        }
    }

    /// Makes `interrupt_message` answer `message`.
    pub fn set_interrupt_message(&self, message: Option<(u64, u32)>) {
        *self.interrupt_message.lock().unwrap() = message;
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
    fn interrupt_message(&self) -> Option<(u64, u32)> {
        *self.interrupt_message.lock().unwrap()
    }
}

/// A BAR holding only an MSI-X table (at `table_offset`) as dwords; every handle
/// ([`Clone`]) sees the same table. Entries start masked, as after reset (PCI 3.0
/// §6.8.2.9). Accesses beyond the BAR read all ones and write nothing.
#[derive(Clone)]
pub struct FakeMsixTable {
    dwords: Arc<Mutex<Vec<u32>>>,
    table_offset: u64,
    length: u64,
}

impl FakeMsixTable {
    /// A table of `entries` at `table_offset` in a BAR of `length` bytes.
    pub fn new(table_offset: u64, entries: u16, length: u64) -> FakeMsixTable {
        let mut table =
            FakeMsixTable { dwords: Arc::new(Mutex::new(vec![0; (length / 4) as usize])), table_offset, length };
        for entry in 0..usize::from(entries) {
            table.set_dword(entry, 3, crate::pci::PCI_MSIX_ENTRY_CTRL_MASKBIT);
        }
        table
    }

    fn dword_index(&self, entry: usize, dword: usize) -> usize {
        (self.table_offset / 4) as usize + entry * 4 + dword
    }

    fn set_dword(&mut self, entry: usize, dword: usize, value: u32) {
        let index = self.dword_index(entry, dword);
        if let Some(slot) = self.dwords.lock().unwrap().get_mut(index) {
            *slot = value;
        }
    }

    /// Entry `index`: address low, address high, data, vector control.
    pub fn entry(&self, index: usize) -> [u32; 4] {
        let dwords = self.dwords.lock().unwrap();
        [0, 1, 2, 3].map(|dword| dwords.get(self.dword_index(index, dword)).copied().unwrap_or(u32::MAX))
    }
}

impl Registers for FakeMsixTable {
    fn len(&self) -> u64 {
        self.length
    }
    fn read8(&self, offset: u64) -> u8 {
        (self.read32(offset & !3) >> ((offset & 3) * 8)) as u8
    }
    fn read16(&self, offset: u64) -> u16 {
        (self.read32(offset & !3) >> ((offset & 2) * 8)) as u16
    }
    fn read32(&self, offset: u64) -> u32 {
        let index = usize::try_from(offset / 4).unwrap_or(usize::MAX);
        self.dwords.lock().unwrap().get(index).copied().unwrap_or(u32::MAX)
    }
    fn write8(&self, _offset: u64, _value: u8) {
        panic!("MSI-X table entries are written 32 bits at a time");
    }
    fn write16(&self, _offset: u64, _value: u16) {
        panic!("MSI-X table entries are written 32 bits at a time");
    }
    fn write32(&self, offset: u64, value: u32) {
        assert!(offset.is_multiple_of(4), "unaligned MSI-X table write at {offset:#x}");
        let index = usize::try_from(offset / 4).unwrap_or(usize::MAX);
        if let Some(dword) = self.dwords.lock().unwrap().get_mut(index) {
            *dword = value;
        }
    }
}

/// Links a capability of `id` at `offset` (dword aligned, ≥ 0x40) into the list of a
/// type 0 configuration space held in `bytes`: at the head, pointing to the old head.
fn link_capability(bytes: &mut [u8], offset: u8, id: u8) {
    let at = usize::from(offset);
    bytes[0x06] |= 0x10; // Status: capabilities list.
    let next = bytes[0x34];
    bytes[0x34] = offset;
    bytes[at] = id;
    bytes[at + 1] = next;
}

/// Adds an MSI-X capability at `offset`: `table_size` entries in BAR `table_bar` at
/// `table_offset`, the pending bits after the table in the same BAR. Disabled.
pub fn add_msix_capability(bytes: &mut [u8], offset: u8, table_size: u16, table_bar: u8, table_offset: u32) {
    link_capability(bytes, offset, crate::pci::PCI_CAP_ID_MSIX);
    let at = usize::from(offset);
    bytes[at + 2..at + 4].copy_from_slice(&(table_size - 1).to_le_bytes());
    bytes[at + 4..at + 8].copy_from_slice(&(table_offset | u32::from(table_bar)).to_le_bytes());
    let pba_offset = table_offset + 16 * u32::from(table_size);
    bytes[at + 8..at + 12].copy_from_slice(&(pba_offset.next_multiple_of(8) | u32::from(table_bar)).to_le_bytes());
}

/// Adds an MSI capability at `offset`, capable of four vectors, with 64-bit addresses
/// and per-vector masking (every vector masked) as asked. Disabled.
pub fn add_msi_capability(bytes: &mut [u8], offset: u8, address_64bit: bool, per_vector_masking: bool) {
    link_capability(bytes, offset, crate::pci::PCI_CAP_ID_MSI);
    let at = usize::from(offset);
    let mut control: u16 = 0b010 << 1; // Multiple Message Capable: 4 vectors.
    if address_64bit {
        control |= 1 << 7;
    }
    if per_vector_masking {
        control |= 1 << 8;
        // Every vector masked, as firmware may leave them.
        let mask = at + if address_64bit { 0x10 } else { 0x0C };
        bytes[mask..mask + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    }
    bytes[at + 2..at + 4].copy_from_slice(&control.to_le_bytes());
}
