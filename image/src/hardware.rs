//! The machine edges of dom0's drivers: PCI configuration space (port I/O mechanism #1,
//! or ECAM windows from the ACPI MCFG), BAR registers (memory-mapped or I/O ports),
//! DMA memory and the clock — builtin-dom0's `ConfigSpace`, `Registers`, `DmaRegion`
//! and `Platform` traits, implemented with the hypervisor's direct map and port I/O.
//!
//! Why here: these are the only places dom0's drivers reach hardware, so every
//! `unsafe` access of theirs is in this file, each bounded by a length checked once.
//!
//! DMA memory comes from the heap: the heap is one physically contiguous range below
//! 4 GiB reached through the direct map (boot.rs), so a page-aligned heap allocation is
//! physically contiguous, and its physical address is its virtual address minus
//! [`DIRECT_MAP_BASE`]. The direct map is write-back; the emulators and every
//! cache-coherent x86 PCI device are fine with that for DMA, and BAR registers rely on
//! the firmware's MTRRs marking the PCI hole uncacheable.

use alloc::alloc::{alloc_zeroed, dealloc, Layout};
use alloc::boxed::Box;
use basalt_dom0::drivers::{DmaRegion, Platform, Registers};
use basalt_dom0::pci::{Bar, BarKind, ConfigSpace, PciAddress};
use basalt_kernel::acpi::tables::EcamWindow;
use basalt_kernel::arch::instructions::{inb, inl, inw, outb, outl, outw};
use basalt_kernel::cpu::time;
use basalt_kernel::mm::{paging, DIRECT_MAP_BASE};
use core::ptr::NonNull;
use spin::Mutex;

const PAGE: usize = 4096;
const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

/// Serialises the address/data port pair (two accesses that must not interleave).
static PORT_CONFIG_LOCK: Mutex<()> = Mutex::new(());

/// PCI configuration mechanism #1: 256 bytes per function through ports 0xCF8/0xCFC.
pub struct PortConfigSpace;

impl PortConfigSpace {
    fn select(address: PciAddress, offset: u16) {
        let value = 0x8000_0000
            | u32::from(address.bus) << 16
            | u32::from(address.device) << 11
            | u32::from(address.function) << 8
            | u32::from(offset & 0xfc);
        outl(CONFIG_ADDRESS, value);
    }
}

impl ConfigSpace for PortConfigSpace {
    fn read32(&mut self, address: PciAddress, offset: u16) -> u32 {
        let _guard = PORT_CONFIG_LOCK.lock();
        Self::select(address, offset);
        inl(CONFIG_DATA)
    }
    fn write32(&mut self, address: PciAddress, offset: u16, value: u32) {
        let _guard = PORT_CONFIG_LOCK.lock();
        Self::select(address, offset);
        outl(CONFIG_DATA, value);
    }
    fn extended(&self) -> bool {
        false
    }
}

/// PCI Express enhanced configuration access: 4 KiB per function, memory-mapped in
/// the MCFG's window. Buses outside the window read all ones and ignore writes.
pub struct EcamConfigSpace {
    window: EcamWindow,
    /// Direct-map address of bus 0's space.
    base: u64,
}

impl EcamConfigSpace {
    /// Maps the window; `None` if it cannot be mapped.
    pub fn new(window: EcamWindow) -> Option<EcamConfigSpace> {
        let length = (u64::from(window.end_bus) + 1) << 20;
        let virtual_base = paging::map_device(window.base, length)?;
        Some(EcamConfigSpace { window, base: virtual_base })
    }

    fn pointer(&self, address: PciAddress, offset: u16) -> Option<*mut u32> {
        let in_window = address.segment == self.window.segment
            && (self.window.start_bus..=self.window.end_bus).contains(&address.bus)
            && offset < 4096;
        in_window.then(|| {
            (self.base
                + (u64::from(address.bus) << 20)
                + (u64::from(address.device) << 15)
                + (u64::from(address.function) << 12)
                + u64::from(offset & 0xffc)) as *mut u32
        })
    }
}

impl ConfigSpace for EcamConfigSpace {
    fn read32(&mut self, address: PciAddress, offset: u16) -> u32 {
        match self.pointer(address, offset) {
            // SAFETY: the pointer lies inside the mapped window (bus range and offset
            // checked above) and is dword aligned.
            Some(pointer) => unsafe { pointer.read_volatile() },
            None => u32::MAX,
        }
    }
    fn write32(&mut self, address: PciAddress, offset: u16, value: u32) {
        if let Some(pointer) = self.pointer(address, offset) {
            // SAFETY: as for read32.
            unsafe { pointer.write_volatile(value) }
        }
    }
    fn extended(&self) -> bool {
        true
    }
}

/// A memory BAR, mapped through the direct map.
struct MmioRegisters {
    base: u64,
    length: u64,
}

impl MmioRegisters {
    fn pointer<T>(&self, offset: u64) -> Option<*mut T> {
        let size = core::mem::size_of::<T>() as u64;
        let fits = offset.checked_add(size).is_some_and(|end| end <= self.length) && offset.is_multiple_of(size);
        fits.then(|| (self.base + offset) as *mut T)
    }
}

macro_rules! mmio_access {
    ($read:ident, $write:ident, $type:ty) => {
        fn $read(&self, offset: u64) -> $type {
            match self.pointer::<$type>(offset) {
                // SAFETY: inside the BAR's mapped length and naturally aligned (checked).
                Some(pointer) => unsafe { pointer.read_volatile() },
                None => <$type>::MAX,
            }
        }
        fn $write(&self, offset: u64, value: $type) {
            if let Some(pointer) = self.pointer::<$type>(offset) {
                // SAFETY: as for the read.
                unsafe { pointer.write_volatile(value) }
            }
        }
    };
}

impl Registers for MmioRegisters {
    fn len(&self) -> u64 {
        self.length
    }
    mmio_access!(read8, write8, u8);
    mmio_access!(read16, write16, u16);
    mmio_access!(read32, write32, u32);
}

/// An I/O-space BAR.
struct PortRegisters {
    base: u16,
    length: u64,
}

impl PortRegisters {
    fn port(&self, offset: u64, size: u64) -> Option<u16> {
        let fits = offset.checked_add(size).is_some_and(|end| end <= self.length);
        fits.then(|| self.base.wrapping_add(offset as u16))
    }
}

impl Registers for PortRegisters {
    fn len(&self) -> u64 {
        self.length
    }
    fn read8(&self, offset: u64) -> u8 {
        self.port(offset, 1).map_or(u8::MAX, inb)
    }
    fn read16(&self, offset: u64) -> u16 {
        self.port(offset, 2).map_or(u16::MAX, inw)
    }
    fn read32(&self, offset: u64) -> u32 {
        self.port(offset, 4).map_or(u32::MAX, inl)
    }
    fn write8(&self, offset: u64, value: u8) {
        if let Some(port) = self.port(offset, 1) {
            outb(port, value)
        }
    }
    fn write16(&self, offset: u64, value: u16) {
        if let Some(port) = self.port(offset, 2) {
            outw(port, value)
        }
    }
    fn write32(&self, offset: u64, value: u32) {
        if let Some(port) = self.port(offset, 4) {
            outl(port, value)
        }
    }
}

/// Page-aligned, zeroed heap memory handed to a device.
struct HeapDma {
    pointer: NonNull<u8>,
    length: usize,
}

// SAFETY: the region is owned exclusively by this value; accesses are volatile copies.
unsafe impl Send for HeapDma {}

impl HeapDma {
    fn allocate(bytes: usize) -> Option<HeapDma> {
        let length = bytes.max(1).checked_next_multiple_of(PAGE)?;
        let layout = Layout::from_size_align(length, PAGE).ok()?;
        // SAFETY: the layout has a non-zero size.
        let pointer = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        Some(HeapDma { pointer, length })
    }

    fn range(&self, offset: usize, length: usize) -> Option<*mut u8> {
        let fits = offset.checked_add(length).is_some_and(|end| end <= self.length);
        fits.then(|| {
            // SAFETY: offset + length ≤ the allocation's length, so the pointer stays
            // inside (or one past the end of) the allocation.
            unsafe { self.pointer.as_ptr().add(offset) }
        })
    }
}

impl Drop for HeapDma {
    fn drop(&mut self) {
        // SAFETY: allocated in `allocate` with this exact layout; the driver reset the
        // device (or never started it) before dropping, so no DMA targets it any more.
        unsafe { dealloc(self.pointer.as_ptr(), Layout::from_size_align_unchecked(self.length, PAGE)) }
    }
}

macro_rules! dma_access {
    ($read:ident, $write:ident, $type:ty) => {
        fn $read(&self, offset: usize) -> $type {
            match self.range(offset, core::mem::size_of::<$type>()) {
                // SAFETY: inside the allocation (checked); unaligned reads are allowed.
                Some(pointer) => unsafe { (pointer as *const $type).read_volatile() },
                None => 0,
            }
        }
        fn $write(&self, offset: usize, value: $type) {
            if let Some(pointer) = self.range(offset, core::mem::size_of::<$type>()) {
                // SAFETY: as for the read.
                unsafe { (pointer as *mut $type).write_volatile(value) }
            }
        }
    };
}

impl DmaRegion for HeapDma {
    fn physical_address(&self) -> u64 {
        self.pointer.as_ptr() as u64 - DIRECT_MAP_BASE
    }
    fn len(&self) -> usize {
        self.length
    }
    fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        match self.range(offset, out.len()) {
            // SAFETY: the source range is inside the allocation (checked) and does not
            // overlap `out`, which the caller owns.
            Some(pointer) => unsafe { core::ptr::copy_nonoverlapping(pointer, out.as_mut_ptr(), out.len()) },
            None => out.fill(0),
        }
    }
    fn write_bytes(&self, offset: usize, data: &[u8]) {
        if let Some(pointer) = self.range(offset, data.len()) {
            // SAFETY: as for read_bytes, in the other direction.
            unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), pointer, data.len()) }
        }
    }
    dma_access!(read_u16, write_u16, u16);
    dma_access!(read_u32, write_u32, u32);
    dma_access!(read_u64, write_u64, u64);
}

/// The real machine, as dom0's drivers see it.
pub struct MachinePlatform;

impl Platform for MachinePlatform {
    fn now_ns(&self) -> u64 {
        time::uptime_ns()
    }
    fn delay_us(&self, microseconds: u32) {
        time::delay_us(u64::from(microseconds));
    }
    fn allocate_dma(&self, bytes: usize) -> Option<Box<dyn DmaRegion>> {
        HeapDma::allocate(bytes).map(|region| Box::new(region) as Box<dyn DmaRegion>)
    }
    fn interrupt_message(&self) -> Option<(u64, u32)> {
        basalt_kernel::cpu::dom0_wake::device_message()
    }
    fn map_bar(&self, bar: &Bar) -> Option<Box<dyn Registers>> {
        if bar.address == 0 || bar.size == 0 {
            return None;
        }
        match bar.kind {
            BarKind::Io => {
                let base = u16::try_from(bar.address).ok()?;
                let end = bar.address.checked_add(bar.size)?;
                (end <= 0x1_0000).then(|| Box::new(PortRegisters { base, length: bar.size }) as Box<dyn Registers>)
            }
            _ => {
                let base = paging::map_device(bar.address, bar.size)?;
                Some(Box::new(MmioRegisters { base, length: bar.size }))
            }
        }
    }
}
