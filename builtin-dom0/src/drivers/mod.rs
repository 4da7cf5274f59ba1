//! Drivers for the machine's storage controllers (issue 6, "Drivers"): AHCI (SATA),
//! NVMe and virtio-blk over PCI, each presenting its disks as [`BlockDevice`]s.
//!
//! Why the traits below: builtin-dom0 has no `unsafe` and never touches hardware. The
//! three edges a driver needs are supplied by image/ (real MMIO, I/O ports, physically
//! contiguous DMA memory, the clock) and, in host tests, by fakes that model a
//! device's registers and read and write its "DMA" memory:
//! * [`Registers`]: one BAR (memory or I/O space), accessed with volatile loads and
//!   stores of the width asked for;
//! * [`DmaRegion`]: memory the device reads and writes by physical address;
//! * [`Platform`]: allocation of DMA regions, BAR mapping, time.
//!
//! Rules every driver keeps:
//! * Nothing a device reports is trusted: sizes, counts, queue indices and command
//!   identifiers are checked before use; a nonsensical value is an error for that
//!   request (or the probe), never a panic or an out-of-bounds access.
//! * Every accepted request completes exactly once (block/ module contract). A command
//!   the device does not finish within its timeout completes with
//!   [`BlockError::Timeout`]; the driver then resets the queue or port before it
//!   reuses the command's slot or DMA memory, so a late DMA cannot land in reused
//!   memory.
//! * Data moves through the driver's own DMA bounce regions (the request's `Vec<u8>`
//!   is copied in or out), so a request buffer never needs to be DMA-able.
//! * Flush really reaches the device (SATA FLUSH CACHE EXT, NVMe Flush, virtio
//!   VIRTIO_BLK_T_FLUSH when VIRTIO_BLK_F_FLUSH is offered); a device with a volatile
//!   write cache that cannot flush reports `supports_flush = false`.
//!
//! Completion is polled ([`crate::block::BlockDevice::poll_completions`]); interrupts
//! (MSI-X, else MSI, set up by [`interrupts::enable_message_interrupts`]) only wake the
//! CPU that polls. Legacy INTx is switched off: a level-triggered line would need the
//! driver to acknowledge the device inside the interrupt handler, and polling already
//! covers a device without message interrupts.
//!
//! [`BlockDevice`]: crate::block::BlockDevice
//! [`BlockError::Timeout`]: crate::block::BlockError::Timeout

pub mod ahci;
#[cfg(test)]
pub mod fake;
pub mod interrupts;
#[cfg(test)]
mod interrupts_tests;
pub mod nvme;
pub mod virtio_blk;

use crate::pci::{Bar, ConfigSpace, PciFunction};
use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;

/// One mapped BAR: memory-mapped registers or an I/O port range. Offsets are relative
/// to the start of the BAR; accesses beyond [`Registers::len`] read all ones and
/// write nothing (implementations check).
pub trait Registers: Send {
    /// Length of the BAR in bytes.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn read8(&self, offset: u64) -> u8;
    fn read16(&self, offset: u64) -> u16;
    fn read32(&self, offset: u64) -> u32;
    fn write8(&self, offset: u64, value: u8);
    fn write16(&self, offset: u64, value: u16);
    fn write32(&self, offset: u64, value: u32);
    /// A 64-bit register as two 32-bit accesses, low half first (what devices that
    /// allow 64-bit access also accept).
    fn read64(&self, offset: u64) -> u64 {
        let low = u64::from(self.read32(offset));
        let high = u64::from(self.read32(offset + 4));
        low | high << 32
    }
    fn write64(&self, offset: u64, value: u64) {
        self.write32(offset, value as u32);
        self.write32(offset + 4, (value >> 32) as u32);
    }
}

/// Physically contiguous memory shared with a device, zeroed when allocated and
/// page aligned. Accesses are volatile; out-of-range accesses read zeroes and write
/// nothing (implementations check), so a bad offset computed from device data cannot
/// corrupt anything.
pub trait DmaRegion: Send {
    /// The address the device uses for byte 0.
    fn physical_address(&self) -> u64;
    /// Length in bytes (a multiple of 4096).
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn read_bytes(&self, offset: usize, out: &mut [u8]);
    fn write_bytes(&self, offset: usize, data: &[u8]);
    fn read_u16(&self, offset: usize) -> u16;
    fn read_u32(&self, offset: usize) -> u32;
    fn read_u64(&self, offset: usize) -> u64;
    fn write_u16(&self, offset: usize, value: u16);
    fn write_u32(&self, offset: usize, value: u32);
    fn write_u64(&self, offset: usize, value: u64);
    /// Zeroes `[offset, offset + length)`.
    fn zero(&self, offset: usize, length: usize) {
        let zeroes = [0u8; 64];
        let mut done = 0;
        while done < length {
            let chunk = (length - done).min(zeroes.len());
            self.write_bytes(offset + done, &zeroes[..chunk]);
            done += chunk;
        }
    }
}

/// Gives up DMA memory a device may still write (it would not stop): the region is
/// never freed, and `region` is left holding a stand-in of no bytes (reads zeroes,
/// ignores writes), so the driver's fields stay valid until it is dropped.
pub fn leak_dma(region: &mut Box<dyn DmaRegion>) {
    core::mem::forget(core::mem::replace(region, Box::new(LeakedDma)));
}

/// What [`leak_dma`] leaves behind.
struct LeakedDma;

impl DmaRegion for LeakedDma {
    fn physical_address(&self) -> u64 {
        0
    }
    fn len(&self) -> usize {
        0
    }
    fn read_bytes(&self, _offset: usize, out: &mut [u8]) {
        out.fill(0)
    }
    fn write_bytes(&self, _offset: usize, _data: &[u8]) {}
    fn read_u16(&self, _offset: usize) -> u16 {
        0
    }
    fn read_u32(&self, _offset: usize) -> u32 {
        0
    }
    fn read_u64(&self, _offset: usize) -> u64 {
        0
    }
    fn write_u16(&self, _offset: usize, _value: u16) {}
    fn write_u32(&self, _offset: usize, _value: u32) {}
    fn write_u64(&self, _offset: usize, _value: u64) {}
}

/// What the machine gives a driver.
pub trait Platform: Send + Sync {
    /// Monotonic time in nanoseconds (timeouts).
    fn now_ns(&self) -> u64;
    /// Busy-waits about `microseconds` (register settle times in reset sequences).
    fn delay_us(&self, microseconds: u32);
    /// `bytes` (rounded up to whole pages) of zeroed, page-aligned, physically
    /// contiguous memory below 4 GiB (so 32-bit-only DMA engines reach it too), or
    /// `None` when memory is short.
    fn allocate_dma(&self, bytes: usize) -> Option<Box<dyn DmaRegion>>;
    /// Maps a BAR (memory: uncached mapping; I/O: the port range). `None` if the BAR
    /// is unassigned or cannot be mapped.
    fn map_bar(&self, bar: &Bar) -> Option<Box<dyn Registers>>;
    /// The MSI/MSI-X message (address, data) that wakes the CPU polling the drivers,
    /// or `None` if interrupts are not available (then drivers only poll).
    fn interrupt_message(&self) -> Option<(u64, u32)> {
        None
    }
}

/// Why a driver did not take a device, or lost it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverError {
    /// The function is not one this driver handles.
    NotMine,
    /// A BAR the driver needs is missing or could not be mapped.
    NoBar(u8),
    /// A capability or register the driver needs is missing or malformed.
    Unsupported(String),
    /// No DMA memory.
    NoMemory,
    /// The controller did not become ready within its timeout.
    Timeout(&'static str),
    /// The device reported an error during set-up.
    Device(String),
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverError::NotMine => f.write_str("not handled by this driver"),
            DriverError::NoBar(index) => write!(f, "BAR {index} missing or unmappable"),
            DriverError::Unsupported(what) => write!(f, "unsupported: {what}"),
            DriverError::NoMemory => f.write_str("out of DMA memory"),
            DriverError::Timeout(what) => write!(f, "timed out waiting for {what}"),
            DriverError::Device(what) => write!(f, "device error: {what}"),
        }
    }
}

/// What a driver's probe gets: the enumerated function, its configuration space
/// (for enabling decoding and bus mastering, MSI/MSI-X) and the platform.
pub struct ProbeContext<'a> {
    pub function: &'a PciFunction,
    pub config: &'a mut dyn ConfigSpace,
    pub platform: &'a alloc::sync::Arc<dyn Platform>,
}
