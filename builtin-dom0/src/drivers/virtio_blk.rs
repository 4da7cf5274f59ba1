//! The virtio-blk driver: a virtio 1.0+ block device on the modern PCI transport,
//! presented as a [`BlockDevice`].
//!
//! Spec: Virtio 1.1 §4.1 (PCI transport: the vendor-specific capabilities that locate
//! the common configuration, notification, ISR and device-specific structures inside
//! BARs), §3.1 (device initialisation), §2.6 (split virtqueues) and §5.2 (block
//! device: configuration layout, request header, status byte). The transitional device
//! ID 0x1001 is accepted too, but only through its modern capabilities; the legacy
//! I/O-port interface is never used. QEMU's `-device virtio-blk-pci` puts all four
//! structures in one 64-bit memory BAR (BAR 4): common at 0x0, ISR at 0x1000, device
//! at 0x2000 and notify at 0x3000 with a multiplier of 4; nothing here assumes that
//! layout, each structure is found through its capability.
//!
//! Design:
//! * One split virtqueue (queue 0) of `min(device maximum, 128)` entries (rounded down
//!   to a power of two). Every request slot owns three fixed descriptors — header, data,
//!   status — so a used-ring id names its slot directly and a hostile id is recognised
//!   by arithmetic alone. The queue depth is the number of slots (at most 32).
//! * Data moves through a per-slot bounce region allocated once at probe
//!   ([`SLOT_BOUNCE_BYTES`], smaller if the device's `size_max` says so). A request
//!   larger than that is **split**: it keeps its one slot and is carried out as a
//!   sequence of chunks, the next chunk posted when the previous one completes, and it
//!   completes once, after its last chunk or its first failed one. Discards are split
//!   the same way by `max_discard_sectors`.
//! * Completion is polled. `poll_completions` acknowledges the ISR (harmless with
//!   MSI-X, and what a device left signalling through the ISR needs), reaps the used
//!   ring, then checks for `DEVICE_NEEDS_RESET` and for timeouts.
//! * Interrupts only wake the polling CPU (drivers module). With MSI-X set up by
//!   [`enable_message_interrupts`], `config_msix_vector` and queue 0's
//!   `queue_msix_vector` are set to vector 0 (every table entry carries the same
//!   message) during every initialisation, before DRIVER_OK, and read back: a device
//!   that answers VIRTIO_MSI_NO_VECTOR refused it (§4.1.5.1.2) and the driver polls
//!   without interrupts. With plain MSI, which virtio-pci does not use (without MSI-X
//!   the device signals through the ISR and INTx, switched off here), the vectors stay
//!   VIRTIO_MSI_NO_VECTOR. [`VirtioBlk::interrupt_mode`] says what is in effect.
//! * Nothing the device writes is trusted: a used index that claims more than a ring's
//!   worth of new entries resets the device; a used id that is not the head of an
//!   in-flight slot's chain is ignored and counted; a used length larger than what the
//!   chain let the device write, or a read whose length does not cover its data,
//!   completes that request with [`BlockError::Io`] and is counted. The status byte is
//!   set to a non-status value before each post, so one the device never wrote reads
//!   as an error. Counters are in [`VirtioBlkStats`].
//! * Recovery: when a chunk is not completed within [`REQUEST_TIMEOUT_NS`] (the clock
//!   restarts for each chunk), or the used index is impossible, or the device sets
//!   `DEVICE_NEEDS_RESET`, the device is reset (which, once the status reads back 0,
//!   guarantees it no longer touches the rings or buffers) and then every in-flight
//!   request completes: those past their deadline with [`BlockError::Timeout`], all
//!   others with [`BlockError::Io`] (their outcome on the medium is unknown: a write
//!   may or may not have landed). Only then is the device re-initialised with the same
//!   features and queue size, and its slots reused. If the reset or the
//!   re-initialisation fails, the device is dead: every later request is refused with
//!   [`BlockError::Io`]. A device that never acknowledges a reset keeps its DMA memory
//!   forever (it is leaked on drop rather than handed back while the device might
//!   still write to it).
//! * The model string is "virtio-blk", followed by the serial number when the device
//!   answers VIRTIO_BLK_T_GET_ID at probe.
//! * Dropping the driver sets both vectors back to VIRTIO_MSI_NO_VECTOR, then resets
//!   the device before its DMA memory is freed.

#[cfg(test)]
mod tests;

use super::interrupts::{enable_message_interrupts, InterruptMode};
use super::{DmaRegion, DriverError, Platform, ProbeContext, Registers};
use crate::block::{check_request, BlockDevice, BlockError, Completion, DeviceInfo, Op, Request, RequestId};
use crate::pci::{
    enable_bus_mastering, enable_io_decoding, enable_memory_decoding, read_capabilities, BarKind, ConfigSpace,
    PciAddress, PciFunction,
};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{fence, Ordering};

// ---- PCI capabilities (Virtio 1.1 §4.1.4) ----

/// PCI capability ID of a vendor-specific capability (PCI_CAP_ID_VNDR).
pub const PCI_CAP_ID_VNDR: u8 = 0x09;
/// `cfg_type` values of `struct virtio_pci_cap`.
pub const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
pub const VIRTIO_PCI_CAP_NOTIFY_CFG: u8 = 2;
pub const VIRTIO_PCI_CAP_ISR_CFG: u8 = 3;
pub const VIRTIO_PCI_CAP_DEVICE_CFG: u8 = 4;
/// `struct virtio_pci_cap` is 16 bytes; the notify capability adds a 32-bit
/// `notify_off_multiplier`.
const VIRTIO_PCI_CAP_LENGTH: u8 = 16;
const VIRTIO_PCI_NOTIFY_CAP_LENGTH: u8 = 20;

// ---- Common configuration structure (Virtio 1.1 §4.1.4.3), Linux's names ----

/// le32: selects which 32 feature bits `VIRTIO_PCI_COMMON_DF` shows.
const VIRTIO_PCI_COMMON_DFSELECT: u64 = 0x00;
/// le32, read-only: device feature bits (the selected half).
const VIRTIO_PCI_COMMON_DF: u64 = 0x04;
/// le32: selects which 32 feature bits `VIRTIO_PCI_COMMON_GF` takes.
const VIRTIO_PCI_COMMON_GFSELECT: u64 = 0x08;
/// le32: driver (guest) feature bits (the selected half).
const VIRTIO_PCI_COMMON_GF: u64 = 0x0C;
/// le16: configuration-change MSI-X vector.
const VIRTIO_PCI_COMMON_MSIX: u64 = 0x10;
/// u8: device status.
const VIRTIO_PCI_COMMON_STATUS: u64 = 0x14;
/// u8: changes whenever the device configuration changes.
const VIRTIO_PCI_COMMON_CFGGENERATION: u64 = 0x15;
/// le16: which queue the `Q_*` fields show.
const VIRTIO_PCI_COMMON_Q_SELECT: u64 = 0x16;
/// le16: queue size (the device's maximum on reset; the driver may lower it).
const VIRTIO_PCI_COMMON_Q_SIZE: u64 = 0x18;
/// le16: the queue's MSI-X vector.
const VIRTIO_PCI_COMMON_Q_MSIX: u64 = 0x1A;
/// le16: 1 enables the queue.
const VIRTIO_PCI_COMMON_Q_ENABLE: u64 = 0x1C;
/// le16, read-only: the queue's notification offset, in multiplier units.
const VIRTIO_PCI_COMMON_Q_NOFF: u64 = 0x1E;
/// le64: physical address of the descriptor table.
const VIRTIO_PCI_COMMON_Q_DESCLO: u64 = 0x20;
/// le64: physical address of the available (driver) ring.
const VIRTIO_PCI_COMMON_Q_AVAILLO: u64 = 0x28;
/// le64: physical address of the used (device) ring.
const VIRTIO_PCI_COMMON_Q_USEDLO: u64 = 0x30;
/// Size of the common configuration structure.
const VIRTIO_PCI_COMMON_CFG_LENGTH: u64 = 0x38;
/// "No MSI-X vector" for `VIRTIO_PCI_COMMON_MSIX` / `_Q_MSIX`.
const VIRTIO_MSI_NO_VECTOR: u16 = 0xFFFF;
/// The MSI-X vector used for configuration changes and queue 0 alike.
const VIRTIO_COMPLETION_VECTOR: u16 = 0;

// ---- Device status (Virtio 1.1 §2.1) ----

pub const VIRTIO_CONFIG_S_ACKNOWLEDGE: u8 = 1;
pub const VIRTIO_CONFIG_S_DRIVER: u8 = 2;
pub const VIRTIO_CONFIG_S_DRIVER_OK: u8 = 4;
pub const VIRTIO_CONFIG_S_FEATURES_OK: u8 = 8;
pub const VIRTIO_CONFIG_S_NEEDS_RESET: u8 = 0x40;
pub const VIRTIO_CONFIG_S_FAILED: u8 = 0x80;

// ---- Feature bits (Virtio 1.1 §5.2.3, §6) ----

/// Maximum size of any single segment is in `size_max`.
pub const VIRTIO_BLK_F_SIZE_MAX: u32 = 1;
/// Maximum number of segments in a request is in `seg_max`.
pub const VIRTIO_BLK_F_SEG_MAX: u32 = 2;
/// The device is read-only.
pub const VIRTIO_BLK_F_RO: u32 = 5;
/// The logical block size is in `blk_size`.
pub const VIRTIO_BLK_F_BLK_SIZE: u32 = 6;
/// VIRTIO_BLK_T_FLUSH is supported.
pub const VIRTIO_BLK_F_FLUSH: u32 = 9;
/// `physical_block_exp` and friends are valid.
pub const VIRTIO_BLK_F_TOPOLOGY: u32 = 10;
/// VIRTIO_BLK_T_DISCARD is supported; its limits are in the configuration.
pub const VIRTIO_BLK_F_DISCARD: u32 = 13;
/// The device is a virtio 1.0+ device (required).
pub const VIRTIO_F_VERSION_1: u32 = 32;
/// The device is behind an IOMMU or similar and takes platform DMA addresses, which
/// is exactly what [`Platform::allocate_dma`] hands out; accepted when offered.
pub const VIRTIO_F_ACCESS_PLATFORM: u32 = 33;

const fn feature(bit: u32) -> u64 {
    1 << bit
}

/// Everything this driver can use; the negotiated set is this ∩ what is offered.
const DRIVER_FEATURES: u64 = feature(VIRTIO_BLK_F_SIZE_MAX)
    | feature(VIRTIO_BLK_F_SEG_MAX)
    | feature(VIRTIO_BLK_F_RO)
    | feature(VIRTIO_BLK_F_BLK_SIZE)
    | feature(VIRTIO_BLK_F_FLUSH)
    | feature(VIRTIO_BLK_F_TOPOLOGY)
    | feature(VIRTIO_BLK_F_DISCARD)
    | feature(VIRTIO_F_VERSION_1)
    | feature(VIRTIO_F_ACCESS_PLATFORM);

// ---- Block device configuration (Virtio 1.1 §5.2.4, `struct virtio_blk_config`) ----

/// le64: capacity in 512-byte sectors (always, whatever `blk_size` says).
const VIRTIO_BLK_CONFIG_CAPACITY: u64 = 0x00;
const VIRTIO_BLK_CONFIG_SIZE_MAX: u64 = 0x08;
const VIRTIO_BLK_CONFIG_SEG_MAX: u64 = 0x0C;
const VIRTIO_BLK_CONFIG_BLK_SIZE: u64 = 0x14;
/// u8: log2 of logical blocks per physical block.
const VIRTIO_BLK_CONFIG_PHYSICAL_BLOCK_EXP: u64 = 0x18;
/// le32: in 512-byte sectors.
const VIRTIO_BLK_CONFIG_MAX_DISCARD_SECTORS: u64 = 0x24;
const VIRTIO_BLK_CONFIG_MAX_DISCARD_SEG: u64 = 0x28;

// ---- Requests (Virtio 1.1 §5.2.6) ----

pub const VIRTIO_BLK_T_IN: u32 = 0;
pub const VIRTIO_BLK_T_OUT: u32 = 1;
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;
pub const VIRTIO_BLK_T_DISCARD: u32 = 11;
pub const VIRTIO_BLK_S_OK: u8 = 0;
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;
/// `struct virtio_blk_req` header: le32 type, le32 reserved, le64 sector.
const VIRTIO_BLK_REQ_HEADER_LENGTH: u32 = 16;
/// `struct virtio_blk_discard_write_zeroes`: le64 sector, le32 num_sectors, le32 flags.
const VIRTIO_BLK_DISCARD_SEGMENT_LENGTH: u32 = 16;
/// GET_ID answers with this many bytes (NUL padded if shorter).
const VIRTIO_BLK_ID_BYTES: usize = 20;
/// Request sectors are always 512 bytes.
const VIRTIO_BLK_SECTOR_SIZE: u32 = 512;

// ---- Split virtqueue (Virtio 1.1 §2.6) ----

/// `struct virtq_desc`: le64 addr, le32 len, le16 flags, le16 next.
const VIRTQ_DESC_LENGTH: usize = 16;
const VIRTQ_DESC_F_NEXT: u16 = 1;
const VIRTQ_DESC_F_WRITE: u16 = 2;
/// `struct virtq_used_elem`: le32 id, le32 len.
const VIRTQ_USED_ELEM_LENGTH: usize = 8;

// ---- This driver's choices ----

/// Largest queue this driver sets up (the brief's bound on ring memory).
pub const MAX_QUEUE_SIZE: u16 = 128;
/// Descriptors per request slot: header, data, status.
const DESCRIPTORS_PER_SLOT: u16 = 3;
/// At most this many slots (bounds bounce memory to 32 × 128 KiB).
pub const MAX_SLOTS: usize = 32;
/// Bytes of bounce memory per slot: the largest chunk one virtio request carries.
pub const SLOT_BOUNCE_BYTES: usize = 128 * 1024;
/// A chunk not completed within this long times out (Virtio gives no bound; this is
/// the Linux block layer's default).
pub const REQUEST_TIMEOUT_NS: u64 = 30_000_000_000;
/// How long the serial number may take at probe.
const GET_ID_TIMEOUT_NS: u64 = 100_000_000;
/// How long a reset may take to read back 0.
const RESET_TIMEOUT_NS: u64 = 1_000_000_000;
/// Used-ring passes per `poll_completions` (each may post further chunks).
const MAX_REAP_ROUNDS: u32 = 16;
/// How often a changing configuration generation is re-read before giving up.
const CONFIG_READ_ATTEMPTS: u32 = 8;
/// Per-slot control block in the ring region: header, discard segment, status byte.
const CONTROL_STRIDE: usize = 64;
const CONTROL_HEADER: usize = 0;
const CONTROL_DISCARD_SEGMENT: usize = 16;
const CONTROL_STATUS: usize = 32;
/// Written to the status byte before a post: not a status, so an unwritten status
/// reads as an error.
const STATUS_NOT_WRITTEN: u8 = 0xFF;
/// Logical block sizes accepted from `blk_size` (others fall back to 512).
const MIN_BLOCK_SIZE: u32 = 512;
const MAX_BLOCK_SIZE: u32 = 4096;
/// Largest physical block size believed from the topology.
const MAX_PHYSICAL_BLOCK_SIZE: u32 = 64 * 1024;

/// True for a virtio-blk function (modern 0x1042 or transitional 0x1001).
pub fn matches(function: &PciFunction) -> bool {
    function.is_virtio_blk()
}

/// Things the device did wrong that did not stop the driver, and recoveries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VirtioBlkStats {
    /// Used-ring ids that were not the head of an in-flight request (ignored).
    pub bad_used_ids: u64,
    /// Used-ring lengths inconsistent with the request (the request failed with Io).
    pub bad_used_lengths: u64,
    /// Used indices that claimed more than a ring's worth of new entries (reset).
    pub bad_used_indices: u64,
    /// Status bytes that were not a virtio-blk status (the request failed with Io).
    pub bad_statuses: u64,
    /// Chunks that timed out.
    pub timeouts: u64,
    /// Device resets after probe (recoveries).
    pub resets: u64,
}

// ---- Transport: the four structures inside mapped BARs ----

/// One virtio structure: a range of one mapped BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    /// Position in [`Transport::bars`].
    bar: usize,
    offset: u64,
    length: u64,
}

/// One decoded `struct virtio_pci_cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VirtioCapability {
    bar: u8,
    offset: u32,
    length: u32,
}

/// Where the structures are, as the capabilities say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CapabilityLayout {
    common: VirtioCapability,
    notify: VirtioCapability,
    notify_off_multiplier: u32,
    isr: Option<VirtioCapability>,
    device: VirtioCapability,
}

struct Transport {
    /// Each BAR the structures use, mapped once: (BAR index, registers).
    bars: Vec<(u8, Box<dyn Registers>)>,
    common: Window,
    notify: Window,
    notify_off_multiplier: u32,
    isr: Option<Window>,
    device: Window,
}

impl Transport {
    /// The registers and BAR offset of `width` bytes at `offset` of `window`, if they
    /// lie inside it.
    fn locate(&self, window: Window, offset: u64, width: u64) -> Option<(&dyn Registers, u64)> {
        if offset.checked_add(width)? > window.length {
            return None;
        }
        let (_, registers) = self.bars.get(window.bar)?;
        Some((registers.as_ref(), window.offset.checked_add(offset)?))
    }

    fn read8(&self, window: Window, offset: u64) -> Option<u8> {
        self.locate(window, offset, 1).map(|(registers, at)| registers.read8(at))
    }

    fn read16(&self, window: Window, offset: u64) -> Option<u16> {
        self.locate(window, offset, 2).map(|(registers, at)| registers.read16(at))
    }

    fn read32(&self, window: Window, offset: u64) -> Option<u32> {
        self.locate(window, offset, 4).map(|(registers, at)| registers.read32(at))
    }

    fn write8(&self, window: Window, offset: u64, value: u8) {
        if let Some((registers, at)) = self.locate(window, offset, 1) {
            registers.write8(at, value);
        }
    }

    fn write16(&self, window: Window, offset: u64, value: u16) {
        if let Some((registers, at)) = self.locate(window, offset, 2) {
            registers.write16(at, value);
        }
    }

    fn write32(&self, window: Window, offset: u64, value: u32) {
        if let Some((registers, at)) = self.locate(window, offset, 4) {
            registers.write32(at, value);
        }
    }

    /// 64-bit common fields are written as two 32-bit halves, low first (§4.1.3.1
    /// allows it).
    fn write64(&self, window: Window, offset: u64, value: u64) {
        if let Some((registers, at)) = self.locate(window, offset, 8) {
            registers.write64(at, value);
        }
    }

    fn status(&self) -> u8 {
        // The common window is at least VIRTIO_PCI_COMMON_CFG_LENGTH long (probe).
        self.read8(self.common, VIRTIO_PCI_COMMON_STATUS).unwrap_or(u8::MAX)
    }

    fn set_status(&self, status: u8) {
        self.write8(self.common, VIRTIO_PCI_COMMON_STATUS, status);
    }

    fn add_status(&self, bits: u8) {
        self.set_status(self.status() | bits);
    }

    /// Writes 0 to the status and waits until it reads back 0: from then on the
    /// device neither reads nor writes the rings or buffers (§4.1.4.3.2).
    fn reset(&self, platform: &dyn Platform) -> Result<(), DriverError> {
        self.set_status(0);
        let deadline = platform.now_ns().saturating_add(RESET_TIMEOUT_NS);
        loop {
            if self.status() == 0 {
                return Ok(());
            }
            if platform.now_ns() >= deadline {
                return Err(DriverError::Timeout("virtio device reset"));
            }
            platform.delay_us(10);
        }
    }

    fn device_features(&self) -> u64 {
        self.write32(self.common, VIRTIO_PCI_COMMON_DFSELECT, 0);
        let low = self.read32(self.common, VIRTIO_PCI_COMMON_DF).unwrap_or(0);
        self.write32(self.common, VIRTIO_PCI_COMMON_DFSELECT, 1);
        let high = self.read32(self.common, VIRTIO_PCI_COMMON_DF).unwrap_or(0);
        u64::from(low) | u64::from(high) << 32
    }

    fn set_driver_features(&self, features: u64) {
        self.write32(self.common, VIRTIO_PCI_COMMON_GFSELECT, 0);
        self.write32(self.common, VIRTIO_PCI_COMMON_GF, features as u32);
        self.write32(self.common, VIRTIO_PCI_COMMON_GFSELECT, 1);
        self.write32(self.common, VIRTIO_PCI_COMMON_GF, (features >> 32) as u32);
    }

    fn config_generation(&self) -> u8 {
        self.read8(self.common, VIRTIO_PCI_COMMON_CFGGENERATION).unwrap_or(0)
    }

    /// Reads the ISR status, which also deasserts a level-triggered INTx.
    fn acknowledge_interrupt(&self) {
        if let Some(isr) = self.isr {
            let _ = self.read8(isr, 0);
        }
    }
}

/// Reads the dword at `offset` of `address`'s configuration space, if it lies inside.
fn config_dword(config: &mut dyn ConfigSpace, address: PciAddress, offset: u16) -> Option<u32> {
    (offset.is_multiple_of(4) && offset < config.limit()).then(|| config.read32(address, offset))
}

/// Walks the capability list for the virtio structures; the first usable capability
/// of each type wins (§4.1.4: "the driver SHOULD use the first one").
fn find_capabilities(config: &mut dyn ConfigSpace, address: PciAddress) -> Result<CapabilityLayout, DriverError> {
    let mut common = None;
    let mut notify = None;
    let mut isr = None;
    let mut device = None;
    for capability in read_capabilities(config, address) {
        if capability.id != PCI_CAP_ID_VNDR {
            continue;
        }
        let base = u16::from(capability.offset);
        let Some(header) = config_dword(config, address, base) else { continue };
        let cap_length = (header >> 16) as u8;
        let cfg_type = (header >> 24) as u8;
        if cap_length < VIRTIO_PCI_CAP_LENGTH {
            continue;
        }
        let (Some(bar_dword), Some(offset), Some(length)) = (
            config_dword(config, address, base + 4),
            config_dword(config, address, base + 8),
            config_dword(config, address, base + 12),
        ) else {
            continue;
        };
        let bar = bar_dword as u8;
        if bar > 5 {
            continue; // Reserved BAR values (§4.1.4: the driver ignores them).
        }
        let found = VirtioCapability { bar, offset, length };
        match cfg_type {
            VIRTIO_PCI_CAP_COMMON_CFG if common.is_none() => common = Some(found),
            VIRTIO_PCI_CAP_ISR_CFG if isr.is_none() => isr = Some(found),
            VIRTIO_PCI_CAP_DEVICE_CFG if device.is_none() => device = Some(found),
            VIRTIO_PCI_CAP_NOTIFY_CFG if notify.is_none() && cap_length >= VIRTIO_PCI_NOTIFY_CAP_LENGTH => {
                if let Some(multiplier) = config_dword(config, address, base + 16) {
                    notify = Some((found, multiplier));
                }
            }
            _ => {}
        }
    }
    let missing = |what: &str| DriverError::Unsupported(format!("no virtio {what} capability (legacy-only device?)"));
    let common = common.ok_or_else(|| missing("common configuration"))?;
    let (notify, notify_off_multiplier) = notify.ok_or_else(|| missing("notification"))?;
    let device = device.ok_or_else(|| missing("device configuration"))?;
    Ok(CapabilityLayout { common, notify, notify_off_multiplier, isr, device })
}

/// Maps the BARs the layout names (each once) and checks every structure lies inside
/// its BAR.
fn map_transport(
    function: &PciFunction,
    layout: &CapabilityLayout,
    platform: &dyn Platform,
) -> Result<Transport, DriverError> {
    let mut bars: Vec<(u8, Box<dyn Registers>)> = Vec::new();
    let mut window = |capability: VirtioCapability| -> Result<Window, DriverError> {
        let position = match bars.iter().position(|(index, _)| *index == capability.bar) {
            Some(position) => position,
            None => {
                let bar = function.bar(capability.bar).ok_or(DriverError::NoBar(capability.bar))?;
                let registers = platform.map_bar(bar).ok_or(DriverError::NoBar(capability.bar))?;
                bars.push((capability.bar, registers));
                bars.len() - 1
            }
        };
        let mapped_length = bars.get(position).map_or(0, |(_, registers)| registers.len());
        let end = u64::from(capability.offset) + u64::from(capability.length);
        if end > mapped_length {
            return Err(DriverError::Unsupported(format!(
                "virtio structure at {:#x}+{:#x} overruns BAR {} ({:#x} bytes)",
                capability.offset, capability.length, capability.bar, mapped_length
            )));
        }
        Ok(Window { bar: position, offset: u64::from(capability.offset), length: u64::from(capability.length) })
    };
    let common = window(layout.common)?;
    let notify = window(layout.notify)?;
    let device = window(layout.device)?;
    // The ISR is only an interrupt acknowledgement: a bad one is left out, not fatal.
    let isr = layout.isr.and_then(|isr| window(isr).ok());
    if common.length < VIRTIO_PCI_COMMON_CFG_LENGTH {
        return Err(DriverError::Unsupported(format!("common configuration of {} bytes", common.length)));
    }
    if device.length < 8 {
        return Err(DriverError::Unsupported(format!("device configuration of {} bytes", device.length)));
    }
    Ok(Transport { bars, common, notify, notify_off_multiplier: layout.notify_off_multiplier, isr, device })
}

// ---- Device configuration and the geometry derived from it ----

/// The fields of `struct virtio_blk_config` this driver uses; `None` when the feature
/// is not negotiated or the field lies outside the device window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BlkConfig {
    capacity_sectors: u64,
    size_max: Option<u32>,
    seg_max: Option<u32>,
    blk_size: Option<u32>,
    physical_block_exp: Option<u8>,
    max_discard_sectors: Option<u32>,
    max_discard_seg: Option<u32>,
}

impl BlkConfig {
    fn read_once(transport: &Transport, features: u64) -> Option<BlkConfig> {
        let window = transport.device;
        let has = |bit| features & feature(bit) != 0;
        let field32 = |bit, offset| if has(bit) { transport.read32(window, offset) } else { None };
        let low = transport.read32(window, VIRTIO_BLK_CONFIG_CAPACITY)?;
        let high = transport.read32(window, VIRTIO_BLK_CONFIG_CAPACITY + 4)?;
        Some(BlkConfig {
            capacity_sectors: u64::from(low) | u64::from(high) << 32,
            size_max: field32(VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_CONFIG_SIZE_MAX),
            seg_max: field32(VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_CONFIG_SEG_MAX),
            blk_size: field32(VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_CONFIG_BLK_SIZE),
            physical_block_exp: if has(VIRTIO_BLK_F_TOPOLOGY) {
                transport.read8(window, VIRTIO_BLK_CONFIG_PHYSICAL_BLOCK_EXP)
            } else {
                None
            },
            max_discard_sectors: field32(VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_CONFIG_MAX_DISCARD_SECTORS),
            max_discard_seg: field32(VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_CONFIG_MAX_DISCARD_SEG),
        })
    }

    /// A consistent snapshot: re-read while the configuration generation changes
    /// (fields wider than 32 bits are not read atomically, §4.1.4.3.1).
    fn read(transport: &Transport, features: u64) -> Result<BlkConfig, DriverError> {
        for _ in 0..CONFIG_READ_ATTEMPTS {
            let before = transport.config_generation();
            let config = BlkConfig::read_once(transport, features)
                .ok_or_else(|| DriverError::Unsupported(String::from("device configuration unreadable")))?;
            if transport.config_generation() == before {
                return Ok(config);
            }
        }
        Err(DriverError::Device(String::from("device configuration generation keeps changing")))
    }
}

/// What the configuration means for requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    block_size: u32,
    physical_block_size: u32,
    /// 512-byte request sectors per logical block.
    sectors_per_block: u64,
    capacity_blocks: u64,
    /// Logical blocks one read/write chunk carries (≥ 1).
    chunk_blocks: u32,
    /// Logical blocks one discard chunk carries; `None`: discard unusable.
    discard_chunk_blocks: Option<u32>,
}

impl Geometry {
    fn from_config(config: &BlkConfig) -> Result<Geometry, DriverError> {
        let block_size = config
            .blk_size
            .filter(|size| size.is_power_of_two() && (MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(size))
            .unwrap_or(VIRTIO_BLK_SECTOR_SIZE);
        let physical_block_size = config
            .physical_block_exp
            .and_then(|exponent| block_size.checked_shl(u32::from(exponent)))
            .filter(|size| *size <= MAX_PHYSICAL_BLOCK_SIZE)
            .unwrap_or(block_size);
        let sectors_per_block = u64::from(block_size / VIRTIO_BLK_SECTOR_SIZE);
        if config.seg_max == Some(0) {
            return Err(DriverError::Unsupported(String::from("seg_max of 0")));
        }
        // One data descriptor per chunk, so seg_max ≥ 1 never limits; size_max does.
        let chunk_bytes = config.size_max.map_or(SLOT_BOUNCE_BYTES, |size_max| {
            SLOT_BOUNCE_BYTES.min(usize::try_from(size_max).unwrap_or(usize::MAX))
        });
        let chunk_blocks = u32::try_from(chunk_bytes / block_size as usize).unwrap_or(u32::MAX);
        if chunk_blocks == 0 {
            return Err(DriverError::Unsupported(format!("size_max below one {block_size}-byte block")));
        }
        let discard_chunk_blocks = match (config.max_discard_sectors, config.max_discard_seg) {
            (Some(sectors), Some(segments)) if segments > 0 => {
                u32::try_from(u64::from(sectors) / sectors_per_block).ok().filter(|blocks| *blocks > 0)
            }
            _ => None,
        };
        Ok(Geometry {
            block_size,
            physical_block_size,
            sectors_per_block,
            capacity_blocks: config.capacity_sectors / sectors_per_block,
            chunk_blocks,
            discard_chunk_blocks,
        })
    }
}

/// The serial number in a GET_ID answer: up to the first NUL, printable ASCII only
/// (anything else is replaced by `?`), `None` if empty.
fn printable_serial(bytes: &[u8]) -> Option<String> {
    let serial: String = bytes
        .iter()
        .take_while(|&&byte| byte != 0)
        .map(|&byte| if byte.is_ascii_graphic() || byte == b' ' { char::from(byte) } else { '?' })
        .collect();
    let serial = serial.trim();
    (!serial.is_empty()).then(|| String::from(serial))
}

// ---- The split virtqueue ----

/// Queue 0's memory and indices. One region holds the descriptor table, the available
/// ring, the used ring and the per-slot control blocks.
struct SplitQueue {
    memory: Box<dyn DmaRegion>,
    size: u16,
    available_offset: usize,
    used_offset: usize,
    control_offset: usize,
    /// Next free available-ring index (free-running).
    next_available: u16,
    /// Next used-ring index to reap (free-running).
    last_used: u16,
    /// Offset of the queue's doorbell in the notify window.
    notify_offset: u64,
}

/// Byte offsets of the parts of a queue of `size` with `slots` control blocks, and the
/// total length.
fn queue_layout(size: u16, slots: usize) -> (usize, usize, usize, usize) {
    let entries = usize::from(size);
    let available_offset = VIRTQ_DESC_LENGTH * entries;
    // flags, idx, ring[size], used_event.
    let available_end = available_offset + 4 + 2 * entries + 2;
    let used_offset = available_end.next_multiple_of(4);
    let used_end = used_offset + 4 + VIRTQ_USED_ELEM_LENGTH * entries + 2;
    let control_offset = used_end.next_multiple_of(CONTROL_STRIDE);
    (available_offset, used_offset, control_offset, control_offset + CONTROL_STRIDE * slots)
}

impl SplitQueue {
    fn physical(&self, offset: usize) -> u64 {
        self.memory.physical_address() + offset as u64
    }

    fn control(&self, slot: usize) -> usize {
        self.control_offset + CONTROL_STRIDE * slot
    }

    fn write_descriptor(&self, index: u16, address: u64, length: u32, flags: u16, next: u16) {
        let at = VIRTQ_DESC_LENGTH * usize::from(index);
        self.memory.write_u64(at, address);
        self.memory.write_u32(at + 8, length);
        self.memory.write_u16(at + 12, flags);
        self.memory.write_u16(at + 14, next);
    }

    /// Makes the chain at `head` available (§2.6.13): ring entry, barrier, index.
    fn publish(&mut self, head: u16) {
        let ring_entry = self.available_offset + 4 + 2 * usize::from(self.next_available % self.size);
        self.memory.write_u16(ring_entry, head);
        fence(Ordering::SeqCst);
        self.next_available = self.next_available.wrapping_add(1);
        self.memory.write_u16(self.available_offset + 2, self.next_available);
        fence(Ordering::SeqCst);
    }

    fn used_index(&self) -> u16 {
        self.memory.read_u16(self.used_offset + 2)
    }

    /// (id, len) of used-ring entry `index` (free-running).
    fn used_entry(&self, index: u16) -> (u32, u32) {
        let at = self.used_offset + 4 + VIRTQ_USED_ELEM_LENGTH * usize::from(index % self.size);
        (self.memory.read_u32(at), self.memory.read_u32(at + 4))
    }

    /// Forgets everything the device and driver wrote (after a reset).
    fn clear(&mut self) {
        self.memory.zero(0, self.memory.len());
        self.next_available = 0;
        self.last_used = 0;
    }
}

// ---- Requests in flight ----

/// A request occupying a slot.
struct InFlight {
    id: RequestId,
    op: Op,
    lba: u64,
    blocks: u32,
    buffer: Vec<u8>,
    /// Blocks finished by earlier chunks.
    done_blocks: u32,
    /// Blocks of the chunk the device holds now.
    chunk_blocks: u32,
    /// When the chunk the device holds times out.
    deadline_ns: u64,
}

struct Slot {
    bounce: Box<dyn DmaRegion>,
    request: Option<InFlight>,
}

/// A virtio-blk device, driven through queue 0.
pub struct VirtioBlk {
    platform: Arc<dyn Platform>,
    transport: Transport,
    /// The negotiated feature bits (re-negotiated identically after a reset).
    features: u64,
    queue: SplitQueue,
    slots: Vec<Slot>,
    geometry: Geometry,
    info: DeviceInfo,
    next_request_id: u64,
    /// Reset or re-initialisation failed: nothing is accepted any more.
    dead: bool,
    stats: VirtioBlkStats,
    /// What the PCI function was set up for at probe.
    pci_interrupts: InterruptMode,
    /// What is in effect since the last initialisation: `pci_interrupts` if the device
    /// took its MSI-X vectors, else `Polled`.
    interrupt_mode: InterruptMode,
}

/// Claims a virtio-blk function: finds its structures, negotiates features, sets up
/// queue 0 and allocates the bounce memory. `NotMine` for other functions.
pub fn probe(context: ProbeContext<'_>) -> Result<VirtioBlk, DriverError> {
    let function = context.function;
    if !matches(function) {
        return Err(DriverError::NotMine);
    }
    let layout = find_capabilities(context.config, function.address)?;
    enable_memory_decoding(context.config, function.address);
    let uses_io = [Some(layout.common), Some(layout.notify), layout.isr, Some(layout.device)]
        .into_iter()
        .flatten()
        .any(|capability| function.bar(capability.bar).is_some_and(|bar| bar.kind == BarKind::Io));
    if uses_io {
        enable_io_decoding(context.config, function.address);
    }
    let platform = context.platform.clone();
    let transport = map_transport(function, &layout, platform.as_ref())?;
    // Firmware (SeaBIOS) may have left the device running on its own rings: stop it
    // before it may master the bus.
    transport.reset(platform.as_ref())?;
    enable_bus_mastering(context.config, function.address);
    let pci_interrupts = enable_message_interrupts(function, context.config, platform.as_ref());
    VirtioBlk::bring_up(transport, platform, pci_interrupts)
}

impl VirtioBlk {
    /// Initialisation (§3.1.1) up to DRIVER_OK, allocating the queue and slots.
    fn bring_up(
        transport: Transport,
        platform: Arc<dyn Platform>,
        pci_interrupts: InterruptMode,
    ) -> Result<VirtioBlk, DriverError> {
        let result = Self::negotiate(&transport, platform.as_ref(), None).and_then(|features| {
            let config = BlkConfig::read(&transport, features)?;
            let geometry = Geometry::from_config(&config)?;
            let queue_size = Self::choose_queue_size(&transport)?;
            Ok((features, geometry, queue_size))
        });
        let (features, geometry, queue_size) = match result {
            Ok(chosen) => chosen,
            Err(error) => {
                Self::give_up(&transport, platform.as_ref());
                return Err(error);
            }
        };

        let slot_count = usize::from(queue_size / DESCRIPTORS_PER_SLOT).min(MAX_SLOTS);
        let (available_offset, used_offset, control_offset, length) = queue_layout(queue_size, slot_count);
        let Some(memory) = platform.allocate_dma(length) else {
            Self::give_up(&transport, platform.as_ref());
            return Err(DriverError::NoMemory);
        };
        let bounce_bytes = geometry.chunk_blocks as usize * geometry.block_size as usize;
        let mut slots = Vec::new();
        // Fewer slots than planned is fine (a shallower queue); none is not.
        while slots.len() < slot_count {
            match platform.allocate_dma(bounce_bytes) {
                Some(bounce) => slots.push(Slot { bounce, request: None }),
                None => break,
            }
        }
        if slots.is_empty() {
            Self::give_up(&transport, platform.as_ref());
            return Err(DriverError::NoMemory);
        }

        let info = DeviceInfo {
            capacity: geometry.capacity_blocks,
            logical_block_size: geometry.block_size,
            physical_block_size: geometry.physical_block_size,
            read_only: features & feature(VIRTIO_BLK_F_RO) != 0,
            queue_depth: slots.len() as u32,
            model: String::from("virtio-blk"),
            supports_flush: features & feature(VIRTIO_BLK_F_FLUSH) != 0,
            supports_discard: geometry.discard_chunk_blocks.is_some(),
        };
        let queue = SplitQueue {
            memory,
            size: queue_size,
            available_offset,
            used_offset,
            control_offset,
            next_available: 0,
            last_used: 0,
            notify_offset: 0,
        };
        let mut device = VirtioBlk {
            platform,
            transport,
            features,
            queue,
            slots,
            geometry,
            info,
            next_request_id: 1,
            dead: false,
            stats: VirtioBlkStats::default(),
            pci_interrupts,
            interrupt_mode: InterruptMode::Polled,
        };
        // On failure `device` is dropped, which resets the device before freeing.
        device.start_queue()?;
        if let Some(serial) = device.read_serial()? {
            device.info.model = format!("virtio-blk {serial}");
        }
        Ok(device)
    }

    /// Asks for the serial number (VIRTIO_BLK_T_GET_ID, §5.2.6: up to 20 bytes, NUL
    /// padded) through slot 0 before any request is accepted. A device that answers
    /// with an error has no serial; one that does not answer within
    /// [`GET_ID_TIMEOUT_NS`] is reset and set up again (nothing else is in flight).
    fn read_serial(&mut self) -> Result<Option<String>, DriverError> {
        let Some(slot) = self.slots.first() else { return Ok(None) };
        let control = self.queue.control(0);
        let memory = self.queue.memory.as_ref();
        memory.write_u32(control + CONTROL_HEADER, VIRTIO_BLK_T_GET_ID);
        memory.write_u32(control + CONTROL_HEADER + 4, 0);
        memory.write_u64(control + CONTROL_HEADER + 8, 0);
        memory.write_bytes(control + CONTROL_STATUS, &[STATUS_NOT_WRITTEN]);
        slot.bounce.zero(0, VIRTIO_BLK_ID_BYTES);
        let header_address = self.queue.physical(control + CONTROL_HEADER);
        self.queue.write_descriptor(0, header_address, VIRTIO_BLK_REQ_HEADER_LENGTH, VIRTQ_DESC_F_NEXT, 1);
        let id_address = slot.bounce.physical_address();
        let id_length = VIRTIO_BLK_ID_BYTES as u32;
        self.queue.write_descriptor(1, id_address, id_length, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
        let status_address = self.queue.physical(control + CONTROL_STATUS);
        self.queue.write_descriptor(2, status_address, 1, VIRTQ_DESC_F_WRITE, 0);
        self.queue.publish(0);
        self.transport.write16(self.transport.notify, self.queue.notify_offset, 0);

        let deadline = self.platform.now_ns().saturating_add(GET_ID_TIMEOUT_NS);
        loop {
            fence(Ordering::SeqCst);
            let used_index = self.queue.used_index();
            while self.queue.last_used != used_index {
                let (id, length) = self.queue.used_entry(self.queue.last_used);
                self.queue.last_used = self.queue.last_used.wrapping_add(1);
                if id != 0 {
                    self.stats.bad_used_ids += 1;
                    continue;
                }
                let mut status = [0u8; 1];
                self.queue.memory.read_bytes(control + CONTROL_STATUS, &mut status);
                if status[0] != VIRTIO_BLK_S_OK || length > id_length + 1 {
                    return Ok(None);
                }
                let mut bytes = [0u8; VIRTIO_BLK_ID_BYTES];
                if let Some(slot) = self.slots.first() {
                    slot.bounce.read_bytes(0, &mut bytes);
                }
                return Ok(printable_serial(&bytes));
            }
            if self.platform.now_ns() >= deadline {
                break;
            }
            self.platform.delay_us(100);
        }
        self.stats.resets += 1;
        self.transport.reset(self.platform.as_ref())?;
        self.queue.clear();
        Self::negotiate(&self.transport, self.platform.as_ref(), Some(self.features))?;
        self.start_queue()?;
        Ok(None)
    }

    /// Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK. With `required`, the
    /// device must accept exactly that set again (re-initialisation).
    fn negotiate(transport: &Transport, platform: &dyn Platform, required: Option<u64>) -> Result<u64, DriverError> {
        transport.reset(platform)?;
        transport.add_status(VIRTIO_CONFIG_S_ACKNOWLEDGE);
        transport.add_status(VIRTIO_CONFIG_S_DRIVER);
        let offered = transport.device_features();
        if offered & feature(VIRTIO_F_VERSION_1) == 0 {
            return Err(DriverError::Unsupported(String::from("device does not offer VIRTIO_F_VERSION_1")));
        }
        let features = offered & DRIVER_FEATURES;
        if required.is_some_and(|required| required != features) {
            return Err(DriverError::Device(String::from("device changed its features across a reset")));
        }
        transport.set_driver_features(features);
        transport.add_status(VIRTIO_CONFIG_S_FEATURES_OK);
        if transport.status() & VIRTIO_CONFIG_S_FEATURES_OK == 0 {
            return Err(DriverError::Device(format!("device refused features {features:#x}")));
        }
        Ok(features)
    }

    /// min(device maximum, [`MAX_QUEUE_SIZE`]), rounded down to a power of two (split
    /// queue sizes are powers of two, §2.6), with room for one slot.
    fn choose_queue_size(transport: &Transport) -> Result<u16, DriverError> {
        transport.write16(transport.common, VIRTIO_PCI_COMMON_Q_SELECT, 0);
        let maximum = transport.read16(transport.common, VIRTIO_PCI_COMMON_Q_SIZE).unwrap_or(0);
        let wanted = maximum.min(MAX_QUEUE_SIZE);
        let size = if wanted == 0 { 0 } else { 1 << (15 - wanted.leading_zeros()) };
        if size < 4 {
            return Err(DriverError::Unsupported(format!("queue 0 of {maximum} entries")));
        }
        Ok(size)
    }

    /// Marks the device FAILED after a reset, so it drops anything half set up.
    fn give_up(transport: &Transport, platform: &dyn Platform) {
        let _ = transport.reset(platform);
        transport.set_status(VIRTIO_CONFIG_S_FAILED);
    }

    /// Programs queue 0 (after negotiation) and its interrupt vectors, enables it and
    /// sets DRIVER_OK.
    fn start_queue(&mut self) -> Result<(), DriverError> {
        let vector = match self.pci_interrupts {
            InterruptMode::MsiX { .. } => VIRTIO_COMPLETION_VECTOR,
            InterruptMode::Msi | InterruptMode::Polled => VIRTIO_MSI_NO_VECTOR,
        };
        let transport = &self.transport;
        let common = transport.common;
        transport.write16(common, VIRTIO_PCI_COMMON_MSIX, vector);
        let config_vector_taken = transport.read16(common, VIRTIO_PCI_COMMON_MSIX) == Some(vector);
        transport.write16(common, VIRTIO_PCI_COMMON_Q_SELECT, 0);
        let maximum = transport.read16(common, VIRTIO_PCI_COMMON_Q_SIZE).unwrap_or(0);
        if maximum < self.queue.size {
            return Err(DriverError::Device(format!("queue 0 shrank to {maximum} entries")));
        }
        transport.write16(common, VIRTIO_PCI_COMMON_Q_SIZE, self.queue.size);
        transport.write16(common, VIRTIO_PCI_COMMON_Q_MSIX, vector);
        let queue_vector_taken = transport.read16(common, VIRTIO_PCI_COMMON_Q_MSIX) == Some(vector);
        self.interrupt_mode = if vector != VIRTIO_MSI_NO_VECTOR && config_vector_taken && queue_vector_taken {
            self.pci_interrupts
        } else {
            if vector != VIRTIO_MSI_NO_VECTOR {
                // Refused (out of vectors): no half set-up, both stay quiet.
                transport.write16(common, VIRTIO_PCI_COMMON_MSIX, VIRTIO_MSI_NO_VECTOR);
                transport.write16(common, VIRTIO_PCI_COMMON_Q_MSIX, VIRTIO_MSI_NO_VECTOR);
            }
            InterruptMode::Polled
        };
        transport.write64(common, VIRTIO_PCI_COMMON_Q_DESCLO, self.queue.physical(0));
        transport.write64(common, VIRTIO_PCI_COMMON_Q_AVAILLO, self.queue.physical(self.queue.available_offset));
        transport.write64(common, VIRTIO_PCI_COMMON_Q_USEDLO, self.queue.physical(self.queue.used_offset));
        let notify_off = transport.read16(common, VIRTIO_PCI_COMMON_Q_NOFF).unwrap_or(u16::MAX);
        let notify_offset = u64::from(notify_off) * u64::from(transport.notify_off_multiplier);
        if notify_offset + 2 > transport.notify.length {
            return Err(DriverError::Unsupported(format!("queue notify offset {notify_offset:#x} outside its window")));
        }
        self.queue.notify_offset = notify_offset;
        fence(Ordering::SeqCst);
        transport.write16(common, VIRTIO_PCI_COMMON_Q_ENABLE, 1);
        transport.add_status(VIRTIO_CONFIG_S_DRIVER_OK);
        if transport.status() & VIRTIO_CONFIG_S_FAILED != 0 {
            return Err(DriverError::Device(String::from("device failed at DRIVER_OK")));
        }
        Ok(())
    }

    /// How the device signals completions now (MSI-X only if it took its vectors).
    pub fn interrupt_mode(&self) -> InterruptMode {
        self.interrupt_mode
    }

    /// Counters of device misbehaviour and recoveries.
    pub fn stats(&self) -> VirtioBlkStats {
        self.stats
    }

    /// The device can no longer be used (a reset or re-initialisation failed).
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Logical blocks the next chunk of `request` carries.
    fn chunk_blocks(&self, request: &InFlight) -> u32 {
        let remaining = request.blocks - request.done_blocks;
        let limit = match request.op {
            Op::Discard => self.geometry.discard_chunk_blocks.unwrap_or(1),
            Op::Flush => return 0,
            Op::Read | Op::Write => self.geometry.chunk_blocks,
        };
        remaining.min(limit)
    }

    /// Builds and publishes the next chunk of the request in `slot_index`, then rings
    /// the doorbell.
    fn post_chunk(&mut self, slot_index: usize) {
        let now = self.platform.now_ns();
        let Some(slot) = self.slots.get(slot_index) else { return };
        let Some(request) = slot.request.as_ref() else { return };
        let chunk_blocks = self.chunk_blocks(request);
        let block_size = self.geometry.block_size as usize;
        let lba = request.lba + u64::from(request.done_blocks);
        let sector = lba.saturating_mul(self.geometry.sectors_per_block);
        let data_length = chunk_blocks as usize * block_size;
        let control = self.queue.control(slot_index);
        let memory = self.queue.memory.as_ref();

        let request_type = match request.op {
            Op::Read => VIRTIO_BLK_T_IN,
            Op::Write => VIRTIO_BLK_T_OUT,
            Op::Flush => VIRTIO_BLK_T_FLUSH,
            Op::Discard => VIRTIO_BLK_T_DISCARD,
        };
        memory.write_u32(control + CONTROL_HEADER, request_type);
        memory.write_u32(control + CONTROL_HEADER + 4, 0);
        // The header's sector is ignored for flush and discard (the segment has it).
        memory.write_u64(control + CONTROL_HEADER + 8, if request.op == Op::Flush { 0 } else { sector });
        memory.write_bytes(control + CONTROL_STATUS, &[STATUS_NOT_WRITTEN]);

        // Slot n owns descriptors 3n, 3n+1, 3n+2 (slot_index < size / 3, so they fit).
        let head = slot_index as u16 * DESCRIPTORS_PER_SLOT;
        let header_address = self.queue.physical(control + CONTROL_HEADER);
        let status_address = self.queue.physical(control + CONTROL_STATUS);
        let data = match request.op {
            Op::Flush => None,
            Op::Discard => {
                let segment = control + CONTROL_DISCARD_SEGMENT;
                let sectors = u64::from(chunk_blocks) * self.geometry.sectors_per_block;
                memory.write_u64(segment, sector);
                memory.write_u32(segment + 8, u32::try_from(sectors).unwrap_or(u32::MAX));
                memory.write_u32(segment + 12, 0);
                Some((self.queue.physical(segment), VIRTIO_BLK_DISCARD_SEGMENT_LENGTH, 0))
            }
            Op::Write => {
                let start = request.done_blocks as usize * block_size;
                let bytes = request.buffer.get(start..start + data_length).unwrap_or(&[]);
                slot.bounce.write_bytes(0, bytes);
                Some((slot.bounce.physical_address(), data_length as u32, 0))
            }
            Op::Read => Some((slot.bounce.physical_address(), data_length as u32, VIRTQ_DESC_F_WRITE)),
        };
        match data {
            Some((address, length, flags)) => {
                self.queue.write_descriptor(
                    head,
                    header_address,
                    VIRTIO_BLK_REQ_HEADER_LENGTH,
                    VIRTQ_DESC_F_NEXT,
                    head + 1,
                );
                self.queue.write_descriptor(head + 1, address, length, flags | VIRTQ_DESC_F_NEXT, head + 2);
            }
            None => {
                self.queue.write_descriptor(
                    head,
                    header_address,
                    VIRTIO_BLK_REQ_HEADER_LENGTH,
                    VIRTQ_DESC_F_NEXT,
                    head + 2,
                );
            }
        }
        self.queue.write_descriptor(head + 2, status_address, 1, VIRTQ_DESC_F_WRITE, 0);

        if let Some(request) = self.slots.get_mut(slot_index).and_then(|slot| slot.request.as_mut()) {
            request.chunk_blocks = chunk_blocks;
            request.deadline_ns = now.saturating_add(REQUEST_TIMEOUT_NS);
        }
        self.queue.publish(head);
        self.transport.write16(self.transport.notify, self.queue.notify_offset, 0);
    }

    /// The slot whose chain starts at descriptor `id`, if one is in flight there.
    fn slot_for_used_id(&self, id: u32) -> Option<usize> {
        let per_slot = u32::from(DESCRIPTORS_PER_SLOT);
        if !id.is_multiple_of(per_slot) {
            return None;
        }
        let slot_index = usize::try_from(id / per_slot).ok()?;
        self.slots.get(slot_index)?.request.as_ref()?;
        Some(slot_index)
    }

    /// Handles one used-ring entry.
    fn finish_chunk(&mut self, id: u32, used_length: u32, out: &mut Vec<Completion>) {
        let Some(slot_index) = self.slot_for_used_id(id) else {
            self.stats.bad_used_ids += 1;
            return;
        };
        let mut status = [0u8; 1];
        self.queue.memory.read_bytes(self.queue.control(slot_index) + CONTROL_STATUS, &mut status);
        let block_size = self.geometry.block_size as usize;
        let Some(slot) = self.slots.get_mut(slot_index) else { return };
        let Some(request) = slot.request.as_mut() else { return };
        let data_length = request.chunk_blocks as usize * block_size;
        let writable = if request.op == Op::Read { data_length + 1 } else { 1 };
        let length = usize::try_from(used_length).unwrap_or(usize::MAX);

        let result = if length > writable {
            self.stats.bad_used_lengths += 1;
            Err(BlockError::Io)
        } else {
            match status[0] {
                // A read's data is only trusted if the device says it wrote all of it.
                VIRTIO_BLK_S_OK if request.op == Op::Read && length < writable => {
                    self.stats.bad_used_lengths += 1;
                    Err(BlockError::Io)
                }
                VIRTIO_BLK_S_OK => Ok(()),
                VIRTIO_BLK_S_IOERR => Err(BlockError::Io),
                VIRTIO_BLK_S_UNSUPP => Err(BlockError::Unsupported(request.op)),
                _ => {
                    self.stats.bad_statuses += 1;
                    Err(BlockError::Io)
                }
            }
        };

        if result.is_ok() && request.op == Op::Read {
            let start = request.done_blocks as usize * block_size;
            if let Some(destination) = request.buffer.get_mut(start..start + data_length) {
                slot.bounce.read_bytes(0, destination);
            }
        }
        request.done_blocks += request.chunk_blocks;
        if result.is_ok() && request.done_blocks < request.blocks {
            self.post_chunk(slot_index);
            return;
        }
        if let Some(request) = slot.request.take() {
            out.push(Completion { id: request.id, result, buffer: request.buffer });
        }
    }

    /// Reaps the used ring. Returns false when the used index was impossible.
    fn reap(&mut self, out: &mut Vec<Completion>) -> bool {
        fence(Ordering::SeqCst);
        let used_index = self.queue.used_index();
        let new_entries = used_index.wrapping_sub(self.queue.last_used);
        if new_entries > self.queue.size {
            self.stats.bad_used_indices += 1;
            return false;
        }
        // The entries are read only after the index (§2.6.14).
        fence(Ordering::SeqCst);
        for _ in 0..new_entries {
            let (id, length) = self.queue.used_entry(self.queue.last_used);
            self.queue.last_used = self.queue.last_used.wrapping_add(1);
            self.finish_chunk(id, length, out);
        }
        true
    }

    /// Resets the device, completes every in-flight request (Timeout if its deadline
    /// passed by `now`, Io otherwise), then re-initialises the device.
    fn recover(&mut self, now: u64, out: &mut Vec<Completion>) {
        self.stats.resets += 1;
        let quiet = self.transport.reset(self.platform.as_ref()).is_ok();
        for slot in &mut self.slots {
            if let Some(request) = slot.request.take() {
                let result = if request.deadline_ns <= now {
                    self.stats.timeouts += 1;
                    Err(BlockError::Timeout)
                } else {
                    Err(BlockError::Io)
                };
                out.push(Completion { id: request.id, result, buffer: request.buffer });
            }
        }
        if !quiet {
            // Its memory is never reused; Drop tries the reset once more.
            self.dead = true;
            self.interrupt_mode = InterruptMode::Polled;
            return;
        }
        self.queue.clear();
        let restarted = Self::negotiate(&self.transport, self.platform.as_ref(), Some(self.features))
            .and_then(|_| self.start_queue());
        if restarted.is_err() {
            Self::give_up(&self.transport, self.platform.as_ref());
            self.dead = true;
            self.interrupt_mode = InterruptMode::Polled;
        }
    }
}

impl BlockDevice for VirtioBlk {
    fn info(&self) -> DeviceInfo {
        self.info.clone()
    }

    fn submit(&mut self, request: Request) -> Result<RequestId, BlockError> {
        check_request(&self.info, &request)?;
        if self.dead {
            return Err(BlockError::Io);
        }
        let slot_index = self.slots.iter().position(|slot| slot.request.is_none()).ok_or(BlockError::QueueFull)?;
        let id = RequestId(self.next_request_id);
        self.next_request_id += 1;
        let in_flight = InFlight {
            id,
            op: request.op,
            lba: request.lba,
            blocks: request.blocks,
            buffer: request.buffer,
            done_blocks: 0,
            chunk_blocks: 0,
            deadline_ns: u64::MAX,
        };
        if let Some(slot) = self.slots.get_mut(slot_index) {
            slot.request = Some(in_flight);
        }
        self.post_chunk(slot_index);
        Ok(id)
    }

    fn poll_completions(&mut self, out: &mut Vec<Completion>) {
        if self.dead {
            return;
        }
        self.transport.acknowledge_interrupt();
        // Completing a chunk of a split request posts the next one, which a fast
        // device may already have finished: reap again, a bounded number of times.
        let mut sane = true;
        for _ in 0..MAX_REAP_ROUNDS {
            let last_used = self.queue.last_used;
            sane = self.reap(out);
            if !sane || self.queue.last_used == last_used {
                break;
            }
        }
        let now = self.platform.now_ns();
        let needs_reset = self.transport.status() & VIRTIO_CONFIG_S_NEEDS_RESET != 0;
        let timed_out = self.slots.iter().filter_map(|slot| slot.request.as_ref()).any(|r| r.deadline_ns <= now);
        if !sane || needs_reset || timed_out {
            self.recover(now, out);
        }
    }
}

impl Drop for VirtioBlk {
    fn drop(&mut self) {
        // Quiet first: a device that ignores the reset below still stops signalling.
        let common = self.transport.common;
        self.transport.write16(common, VIRTIO_PCI_COMMON_MSIX, VIRTIO_MSI_NO_VECTOR);
        self.transport.write16(common, VIRTIO_PCI_COMMON_Q_SELECT, 0);
        self.transport.write16(common, VIRTIO_PCI_COMMON_Q_MSIX, VIRTIO_MSI_NO_VECTOR);
        if self.transport.reset(self.platform.as_ref()).is_ok() {
            return; // The device is quiet: the DMA regions are freed with the fields.
        }
        // The device may still write: never hand its memory back.
        super::leak_dma(&mut self.queue.memory);
        for slot in core::mem::take(&mut self.slots) {
            Box::leak(slot.bounce);
        }
    }
}
