//! Host tests of the virtio-blk driver against a fake device: a model of QEMU's
//! virtio-blk-pci (all structures in BAR 4) that processes queue 0 out of
//! [`FakeMemory`] when notified, with a disk in a `Vec<u8>` and switches for
//! misbehaviour (never completing, IOERR, bad used entries, refusing features).

extern crate std;

use super::*;
use crate::drivers::fake::{FakeMemory, FakeMsixTable, FakePlatform, TEST_MESSAGE};
use crate::pci::{read_command, PCI_COMMAND_INTX_DISABLE, PCI_MSIX_ENTRY_CTRL_MASKBIT};
use crate::pci::{
    Bar, ByteConfigSpace, ClassCode, HeaderType, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY, VIRTIO_BLK_MODERN_DEVICE_ID,
};
use alloc::vec;
use core::sync::atomic::Ordering as AtomicOrdering;
use std::sync::Mutex;

const COMMON: u64 = 0x0000;
const ISR: u64 = 0x1000;
const DEVICE: u64 = 0x2000;
const NOTIFY: u64 = 0x3000;
const NOTIFY_MULTIPLIER: u32 = 4;
/// The fake's queue_notify_off for queue 0: the doorbell is at NOTIFY + 2 × 4.
const QUEUE_NOTIFY_OFF: u16 = 2;
const BAR_LENGTH: u64 = 0x4000;
/// BAR 1 holds the MSI-X table (two entries).
const MSIX_TABLE_BAR: u32 = 1;
const MSIX_BAR_LENGTH: u64 = 0x1000;
const SECTOR: usize = 512;

/// `struct virtio_blk_config` values the fake reports.
#[derive(Clone, Copy)]
struct BlkConfigValues {
    capacity_sectors: u64,
    size_max: u32,
    seg_max: u32,
    blk_size: u32,
    physical_block_exp: u8,
    max_discard_sectors: u32,
    max_discard_seg: u32,
}

struct DeviceModel {
    memory: Arc<FakeMemory>,
    disk: Vec<u8>,
    offered: u64,
    config: BlkConfigValues,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    status: u8,
    queue_max: u16,
    queue_select: u16,
    queue_size: u16,
    queue_enable: u16,
    desc: u64,
    avail: u64,
    used: u64,
    last_avail: u16,
    used_index: u16,
    // Misbehaviour switches.
    /// Notifications are not processed (requests never complete).
    hold: bool,
    /// Every request completes with this status instead of being carried out.
    forced_status: Option<u8>,
    /// The next completion reports this used length.
    next_used_length: Option<u32>,
    /// FEATURES_OK is never accepted.
    refuse_features: bool,
    /// Writing 0 to the status does nothing.
    ignore_reset: bool,
    /// GET_ID requests are swallowed (never completed).
    swallow_get_id: bool,
    /// MSI-X vectors are refused (read back VIRTIO_MSI_NO_VECTOR), as a device out of
    /// vectors does.
    refuse_vectors: bool,
    /// `config_msix_vector` and queue 0's `queue_msix_vector`.
    config_vector: u16,
    queue_vector: u16,
    /// What GET_ID answers (QEMU's `serial=` property; empty by default).
    serial: Vec<u8>,
    // Observations.
    resets: u32,
    flushes: u32,
    discards: Vec<(u64, u32)>,
    notifications: u32,
    /// (type, sector, data bytes) of every request carried out.
    requests: Vec<(u32, u64, usize)>,
}

type Shared = Arc<Mutex<DeviceModel>>;

impl DeviceModel {
    fn new(memory: Arc<FakeMemory>, disk_bytes: usize) -> DeviceModel {
        DeviceModel {
            memory,
            disk: vec![0; disk_bytes],
            offered: feature(VIRTIO_F_VERSION_1)
                | feature(VIRTIO_BLK_F_FLUSH)
                | feature(VIRTIO_BLK_F_SEG_MAX)
                | feature(VIRTIO_BLK_F_SIZE_MAX)
                | feature(VIRTIO_BLK_F_BLK_SIZE)
                | feature(VIRTIO_BLK_F_DISCARD)
                | feature(VIRTIO_BLK_F_TOPOLOGY)
                // Offered but not wanted: multi-queue, write zeroes, event index.
                | feature(12)
                | feature(14)
                | feature(29),
            config: BlkConfigValues {
                capacity_sectors: (disk_bytes / SECTOR) as u64,
                size_max: u32::MAX,
                seg_max: 126,
                blk_size: 512,
                physical_block_exp: 3,
                max_discard_sectors: 64,
                max_discard_seg: 1,
            },
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            queue_max: 256,
            queue_select: 0,
            queue_size: 256,
            queue_enable: 0,
            desc: 0,
            avail: 0,
            used: 0,
            last_avail: 0,
            used_index: 0,
            hold: false,
            forced_status: None,
            next_used_length: None,
            refuse_features: false,
            ignore_reset: false,
            swallow_get_id: false,
            refuse_vectors: false,
            config_vector: VIRTIO_MSI_NO_VECTOR,
            queue_vector: VIRTIO_MSI_NO_VECTOR,
            serial: Vec::new(),
            resets: 0,
            flushes: 0,
            discards: Vec::new(),
            notifications: 0,
            requests: Vec::new(),
        }
    }

    fn reset(&mut self) {
        self.resets += 1;
        self.status = 0;
        self.driver_features = 0;
        self.queue_size = self.queue_max;
        self.queue_enable = 0;
        self.desc = 0;
        self.avail = 0;
        self.used = 0;
        self.last_avail = 0;
        self.used_index = 0;
        self.config_vector = VIRTIO_MSI_NO_VECTOR;
        self.queue_vector = VIRTIO_MSI_NO_VECTOR;
    }

    fn config_bytes(&self) -> [u8; 0x40] {
        let mut bytes = [0u8; 0x40];
        let config = &self.config;
        bytes[0x00..0x08].copy_from_slice(&config.capacity_sectors.to_le_bytes());
        bytes[0x08..0x0C].copy_from_slice(&config.size_max.to_le_bytes());
        bytes[0x0C..0x10].copy_from_slice(&config.seg_max.to_le_bytes());
        bytes[0x14..0x18].copy_from_slice(&config.blk_size.to_le_bytes());
        bytes[0x18] = config.physical_block_exp;
        bytes[0x24..0x28].copy_from_slice(&config.max_discard_sectors.to_le_bytes());
        bytes[0x28..0x2C].copy_from_slice(&config.max_discard_seg.to_le_bytes());
        bytes
    }

    fn read(&self, offset: u64, width: usize) -> u64 {
        match offset {
            COMMON..ISR => {
                let selected_half = |value: u64, select: u32| if select < 2 { value >> (32 * select) } else { 0 };
                let value = match offset - COMMON {
                    0x00 => u64::from(self.device_feature_select),
                    0x04 => selected_half(self.offered, self.device_feature_select),
                    0x08 => u64::from(self.driver_feature_select),
                    0x0C => selected_half(self.driver_features, self.driver_feature_select),
                    0x10 => u64::from(self.config_vector),
                    0x12 => 1,
                    0x14 => u64::from(self.status),
                    0x15 => 0,
                    0x16 => u64::from(self.queue_select),
                    0x18 if self.queue_select == 0 => u64::from(self.queue_size),
                    0x1A if self.queue_select == 0 => u64::from(self.queue_vector),
                    0x1A => u64::from(VIRTIO_MSI_NO_VECTOR),
                    0x1C => u64::from(self.queue_enable),
                    0x1E => u64::from(QUEUE_NOTIFY_OFF),
                    0x20 => self.desc,
                    0x24 => self.desc >> 32,
                    0x28 => self.avail,
                    0x2C => self.avail >> 32,
                    0x30 => self.used,
                    0x34 => self.used >> 32,
                    _ => 0,
                };
                value & (u64::MAX >> (64 - 8 * width))
            }
            ISR..DEVICE => 1,
            DEVICE..NOTIFY => {
                let bytes = self.config_bytes();
                let start = (offset - DEVICE) as usize;
                let mut value = [0u8; 8];
                for (index, byte) in value.iter_mut().take(width).enumerate() {
                    *byte = bytes.get(start + index).copied().unwrap_or(0);
                }
                u64::from_le_bytes(value)
            }
            _ => 0,
        }
    }

    fn write(&mut self, offset: u64, value: u64) {
        let low = |field: u64| (field & !0xFFFF_FFFF) | (value & 0xFFFF_FFFF);
        let high = |field: u64| (field & 0xFFFF_FFFF) | (value << 32);
        match offset {
            0x00 => self.device_feature_select = value as u32,
            0x08 => self.driver_feature_select = value as u32,
            0x0C => match self.driver_feature_select {
                0 => self.driver_features = (self.driver_features & !0xFFFF_FFFF) | value,
                1 => self.driver_features = (self.driver_features & 0xFFFF_FFFF) | value << 32,
                _ => {}
            },
            0x10 => self.config_vector = self.vector_answer(value as u16),
            0x14 => self.write_status(value as u8),
            0x1A if self.queue_select == 0 => self.queue_vector = self.vector_answer(value as u16),
            0x16 => self.queue_select = value as u16,
            0x18 if self.queue_select == 0 => self.queue_size = value as u16,
            0x1C if self.queue_select == 0 => self.queue_enable = value as u16,
            0x20 => self.desc = low(self.desc),
            0x24 => self.desc = high(self.desc),
            0x28 => self.avail = low(self.avail),
            0x2C => self.avail = high(self.avail),
            0x30 => self.used = low(self.used),
            0x34 => self.used = high(self.used),
            offset if offset == NOTIFY + u64::from(QUEUE_NOTIFY_OFF) * u64::from(NOTIFY_MULTIPLIER) => {
                self.notifications += 1;
                if value == 0 {
                    self.process();
                }
            }
            _ => {}
        }
    }

    /// What a vector register holds after the driver writes `vector` (QEMU keeps
    /// VIRTIO_MSI_NO_VECTOR for a vector it cannot use).
    fn vector_answer(&self, vector: u16) -> u16 {
        if self.refuse_vectors {
            VIRTIO_MSI_NO_VECTOR
        } else {
            vector
        }
    }

    fn write_status(&mut self, status: u8) {
        if status == 0 {
            if !self.ignore_reset {
                self.reset();
            }
            return;
        }
        let mut status = status;
        let acceptable = self.driver_features & !self.offered == 0
            && self.driver_features & feature(VIRTIO_F_VERSION_1) != 0
            && !self.refuse_features;
        if status & VIRTIO_CONFIG_S_FEATURES_OK != 0 && !acceptable {
            status &= !VIRTIO_CONFIG_S_FEATURES_OK;
        }
        self.status = status;
    }

    fn read_u16(&self, physical: u64) -> u16 {
        let mut bytes = [0; 2];
        self.memory.read(physical, &mut bytes).expect("driver gave the device unmapped memory");
        u16::from_le_bytes(bytes)
    }

    /// Carries out every newly available chain (like QEMU, on notification).
    fn process(&mut self) {
        if self.hold || self.queue_enable == 0 || self.status & VIRTIO_CONFIG_S_DRIVER_OK == 0 {
            return;
        }
        let size = self.queue_size;
        let available = self.read_u16(self.avail + 2);
        while self.last_avail != available {
            let head = self.read_u16(self.avail + 4 + 2 * u64::from(self.last_avail % size));
            self.last_avail = self.last_avail.wrapping_add(1);
            let header = self.memory.read_u64(self.desc + 16 * u64::from(head)).unwrap();
            if self.swallow_get_id && self.memory.read_u32(header) == Some(VIRTIO_BLK_T_GET_ID) {
                continue;
            }
            let written = self.carry_out(head);
            let length = self.next_used_length.take().unwrap_or(written);
            self.push_used(u32::from(head), length);
        }
    }

    /// Appends a used entry and publishes it (tests use it to inject hostile ones).
    fn push_used(&mut self, id: u32, length: u32) {
        let entry = self.used + 4 + 8 * u64::from(self.used_index % self.queue_size);
        self.memory.write_u32(entry, id).unwrap();
        self.memory.write_u32(entry + 4, length).unwrap();
        self.used_index = self.used_index.wrapping_add(1);
        self.memory.write(self.used + 2, &self.used_index.to_le_bytes()).unwrap();
    }

    /// Performs one request; returns the bytes written to device-writable buffers.
    fn carry_out(&mut self, head: u16) -> u32 {
        let mut chain = Vec::new();
        let mut index = head;
        loop {
            let at = self.desc + 16 * u64::from(index);
            let address = self.memory.read_u64(at).unwrap();
            let length = self.memory.read_u32(at + 8).unwrap();
            let flags = self.read_u16(at + 12);
            let next = self.read_u16(at + 14);
            chain.push((address, length, flags));
            assert!(chain.len() <= 3, "chains are at most three descriptors");
            if flags & VIRTQ_DESC_F_NEXT == 0 {
                break;
            }
            index = next;
        }
        let (header, _, header_flags) = chain[0];
        assert_eq!(header_flags & VIRTQ_DESC_F_WRITE, 0, "header must be device-readable");
        let (status_address, status_length, status_flags) = *chain.last().unwrap();
        assert_eq!((status_length, status_flags & VIRTQ_DESC_F_WRITE), (1, VIRTQ_DESC_F_WRITE));
        let request_type = self.memory.read_u32(header).unwrap();
        let sector = self.memory.read_u64(header + 8).unwrap();
        let data = if chain.len() == 3 { Some(chain[1]) } else { None };
        let data_length = data.map_or(0, |(_, length, _)| length as usize);
        self.requests.push((request_type, sector, data_length));
        let writable: u32 = chain.iter().filter(|(_, _, flags)| flags & VIRTQ_DESC_F_WRITE != 0).map(|d| d.1).sum();

        let status = match self.forced_status {
            Some(status) => status,
            None => self.perform(request_type, sector, data),
        };
        self.memory.write(status_address, &[status]).unwrap();
        writable
    }

    fn perform(&mut self, request_type: u32, sector: u64, data: Option<(u64, u32, u16)>) -> u8 {
        let range = |sector: u64, length: usize, disk: &[u8]| {
            let start = usize::try_from(sector).ok()?.checked_mul(SECTOR)?;
            let end = start.checked_add(length)?;
            (end <= disk.len()).then_some(start..end)
        };
        match (request_type, data) {
            (VIRTIO_BLK_T_IN, Some((address, length, flags))) => {
                assert_ne!(flags & VIRTQ_DESC_F_WRITE, 0, "read data must be device-writable");
                let Some(range) = range(sector, length as usize, &self.disk) else { return VIRTIO_BLK_S_IOERR };
                self.memory.write(address, &self.disk[range]).unwrap();
                VIRTIO_BLK_S_OK
            }
            (VIRTIO_BLK_T_OUT, Some((address, length, flags))) => {
                assert_eq!(flags & VIRTQ_DESC_F_WRITE, 0, "write data must be device-readable");
                let Some(range) = range(sector, length as usize, &self.disk) else { return VIRTIO_BLK_S_IOERR };
                self.memory.read(address, &mut self.disk[range]).unwrap();
                VIRTIO_BLK_S_OK
            }
            (VIRTIO_BLK_T_GET_ID, Some((address, length, _))) => {
                let mut id = self.serial.clone();
                id.resize(length as usize, 0);
                self.memory.write(address, &id).unwrap();
                VIRTIO_BLK_S_OK
            }
            (VIRTIO_BLK_T_FLUSH, None) => {
                self.flushes += 1;
                VIRTIO_BLK_S_OK
            }
            (VIRTIO_BLK_T_DISCARD, Some((address, 16, _))) => {
                let first = self.memory.read_u64(address).unwrap();
                let count = self.memory.read_u32(address + 8).unwrap();
                if count > self.config.max_discard_sectors {
                    return VIRTIO_BLK_S_IOERR;
                }
                let Some(range) = range(first, count as usize * SECTOR, &self.disk) else { return VIRTIO_BLK_S_IOERR };
                self.disk[range].fill(0);
                self.discards.push((first, count));
                VIRTIO_BLK_S_OK
            }
            _ => VIRTIO_BLK_S_UNSUPP,
        }
    }
}

/// BAR 4 of the fake: a handle onto the shared model.
struct FakeBar(Shared);

impl Registers for FakeBar {
    fn len(&self) -> u64 {
        BAR_LENGTH
    }
    fn read8(&self, offset: u64) -> u8 {
        self.0.lock().unwrap().read(offset, 1) as u8
    }
    fn read16(&self, offset: u64) -> u16 {
        self.0.lock().unwrap().read(offset, 2) as u16
    }
    fn read32(&self, offset: u64) -> u32 {
        self.0.lock().unwrap().read(offset, 4) as u32
    }
    fn write8(&self, offset: u64, value: u8) {
        self.0.lock().unwrap().write(offset, u64::from(value))
    }
    fn write16(&self, offset: u64, value: u16) {
        self.0.lock().unwrap().write(offset, u64::from(value))
    }
    fn write32(&self, offset: u64, value: u32) {
        self.0.lock().unwrap().write(offset, u64::from(value))
    }
}

/// Configuration space of the function at 00:04.0 with QEMU's capability layout.
fn config_space(device_id: u16) -> Vec<u8> {
    let mut bytes = vec![0u8; 256];
    bytes[0..2].copy_from_slice(&0x1AF4u16.to_le_bytes());
    bytes[2..4].copy_from_slice(&device_id.to_le_bytes());
    bytes[6] = 0x10; // Status: capabilities list.
    bytes[0x0B] = 0x01; // Mass storage.
    bytes[0x20..0x24].copy_from_slice(&0xFE00_000Cu32.to_le_bytes()); // BAR 4: 64-bit prefetchable.
    bytes[0x34] = 0x40;
    let capability = |bytes: &mut Vec<u8>, at: usize, next: u8, cfg_type: u8, offset: u64, multiplier: Option<u32>| {
        let length = if multiplier.is_some() { 20 } else { 16 };
        bytes[at..at + 4].copy_from_slice(&[PCI_CAP_ID_VNDR, next, length, cfg_type]);
        bytes[at + 4] = 4; // BAR 4.
        bytes[at + 8..at + 12].copy_from_slice(&(offset as u32).to_le_bytes());
        bytes[at + 12..at + 16].copy_from_slice(&0x1000u32.to_le_bytes());
        if let Some(multiplier) = multiplier {
            bytes[at + 16..at + 20].copy_from_slice(&multiplier.to_le_bytes());
        }
    };
    // QEMU's order: an MSI-X capability first, then common, ISR, device, notify.
    // Two entries, the table at 0 in BAR 1 and the pending bits at 0x800 (QEMU's).
    bytes[0x40..0x44].copy_from_slice(&[0x11, 0x50, 0x01, 0x00]);
    bytes[0x44..0x48].copy_from_slice(&MSIX_TABLE_BAR.to_le_bytes());
    bytes[0x48..0x4C].copy_from_slice(&(0x800 | MSIX_TABLE_BAR).to_le_bytes());
    capability(&mut bytes, 0x50, 0x60, VIRTIO_PCI_CAP_COMMON_CFG, COMMON, None);
    capability(&mut bytes, 0x60, 0x70, VIRTIO_PCI_CAP_ISR_CFG, ISR, None);
    capability(&mut bytes, 0x70, 0x80, VIRTIO_PCI_CAP_DEVICE_CFG, DEVICE, None);
    capability(&mut bytes, 0x80, 0x00, VIRTIO_PCI_CAP_NOTIFY_CFG, NOTIFY, Some(NOTIFY_MULTIPLIER));
    bytes
}

fn function(device_id: u16) -> PciFunction {
    PciFunction {
        address: PciAddress { segment: 0, bus: 0, device: 4, function: 0 },
        vendor_id: 0x1AF4,
        device_id,
        class: ClassCode { class: 1, subclass: 0, prog_if: 0 },
        revision: 0,
        header_type: HeaderType::Endpoint,
        multi_function: false,
        subsystem_vendor_id: 0x1AF4,
        subsystem_id: 2,
        interrupt_line: 11,
        interrupt_pin: 1,
        bars: vec![Bar {
            index: 4,
            kind: BarKind::Memory64,
            address: 0xFE00_0000,
            size: BAR_LENGTH,
            prefetchable: true,
        }],
        capabilities: Vec::new(),
        extended_capabilities: Vec::new(),
        bridge: None,
    }
}

/// A fake machine with one virtio-blk function.
struct Machine {
    memory: Arc<FakeMemory>,
    fake_platform: Arc<FakePlatform>,
    platform: Arc<dyn Platform>,
    device: Shared,
    config: ByteConfigSpace,
    function: PciFunction,
}

impl Machine {
    fn new(disk_bytes: usize) -> Machine {
        Machine::with(disk_bytes, |_| {})
    }

    fn with(disk_bytes: usize, adjust: impl FnOnce(&mut DeviceModel)) -> Machine {
        let memory = FakeMemory::new();
        let fake_platform = Arc::new(FakePlatform::new(memory.clone()));
        let mut model = DeviceModel::new(memory.clone(), disk_bytes);
        adjust(&mut model);
        let device: Shared = Arc::new(Mutex::new(model));
        let handle = device.clone();
        fake_platform.set_bar(4, move || Box::new(FakeBar(handle.clone())));
        let platform: Arc<dyn Platform> = fake_platform.clone();
        let function = function(VIRTIO_BLK_MODERN_DEVICE_ID);
        let config =
            ByteConfigSpace { functions: vec![(function.address, config_space(function.device_id))], extended: false };
        Machine { memory, fake_platform, platform, device, config, function }
    }

    fn probe(&mut self) -> Result<VirtioBlk, DriverError> {
        probe(ProbeContext { function: &self.function, config: &mut self.config, platform: &self.platform })
    }

    /// Gives the machine an interrupt message and the function its capabilities as
    /// enumeration decodes them, with the MSI-X table in BAR 1; returns the table.
    fn with_message_interrupts(&mut self) -> FakeMsixTable {
        self.fake_platform.set_interrupt_message(Some(TEST_MESSAGE));
        self.function.capabilities = crate::pci::read_capabilities(&mut self.config, self.function.address);
        self.function.bars.push(Bar {
            index: MSIX_TABLE_BAR as u8,
            kind: BarKind::Memory32,
            address: 0xFEB0_0000,
            size: MSIX_BAR_LENGTH,
            prefetchable: false,
        });
        let table = FakeMsixTable::new(0, 2, MSIX_BAR_LENGTH);
        let handle = table.clone();
        self.fake_platform.set_bar(MSIX_TABLE_BAR as u8, move || Box::new(handle.clone()));
        table
    }

    /// (config_msix_vector, queue 0's queue_msix_vector) as the device holds them.
    fn vectors(&self) -> (u16, u16) {
        let model = self.model();
        (model.config_vector, model.queue_vector)
    }

    fn model(&self) -> std::sync::MutexGuard<'_, DeviceModel> {
        self.device.lock().unwrap()
    }

    fn command(&mut self) -> u16 {
        self.config.read32(self.function.address, 4) as u16
    }
}

fn poll(device: &mut VirtioBlk) -> Vec<Completion> {
    let mut out = Vec::new();
    device.poll_completions(&mut out);
    out
}

fn run(device: &mut VirtioBlk, request: Request) -> Completion {
    let id = device.submit(request).expect("request accepted");
    let mut done = poll(device);
    assert_eq!(done.len(), 1, "exactly one completion");
    let completion = done.pop().unwrap();
    assert_eq!(completion.id, id);
    completion
}

fn pattern(length: usize, seed: u8) -> Vec<u8> {
    (0..length).map(|index| (index as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

// ---- Probe and negotiation ----

#[test]
fn probe_negotiates_features_and_sets_up_queue_0() {
    let mut machine = Machine::new(1 << 20);
    let device = machine.probe().expect("probe");
    let info = device.info();
    assert_eq!(info.capacity, 2048);
    assert_eq!(info.logical_block_size, 512);
    assert_eq!(info.physical_block_size, 4096, "512 << physical_block_exp 3");
    assert_eq!(info.queue_depth, 32, "128 entries / 3 = 42, capped at 32 slots");
    assert!(info.supports_flush && info.supports_discard && !info.read_only);
    assert_eq!(info.model, "virtio-blk");

    let model = machine.model();
    let wanted = feature(VIRTIO_F_VERSION_1)
        | feature(VIRTIO_BLK_F_FLUSH)
        | feature(VIRTIO_BLK_F_SEG_MAX)
        | feature(VIRTIO_BLK_F_SIZE_MAX)
        | feature(VIRTIO_BLK_F_BLK_SIZE)
        | feature(VIRTIO_BLK_F_DISCARD)
        | feature(VIRTIO_BLK_F_TOPOLOGY);
    assert_eq!(model.driver_features, wanted, "unwanted offered bits are not taken");
    assert_eq!(
        model.status,
        VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK
    );
    assert_eq!(model.queue_size, 128, "min(256, 128)");
    assert_eq!(model.queue_enable, 1);
    assert_eq!(model.requests, [(VIRTIO_BLK_T_GET_ID, 0, 20)], "only the serial is asked at probe");
    assert!(model.desc != 0 && model.avail > model.desc && model.used > model.avail);
    assert_eq!(model.used % 4, 0);
    drop(model);
    let command = machine.command();
    assert_eq!(command & (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER), PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
}

#[test]
fn probe_honours_small_queues_block_size_and_missing_features() {
    let mut machine = Machine::with(1 << 20, |model| {
        model.queue_max = 100;
        model.queue_size = 100;
        model.config.blk_size = 4096;
        model.offered = feature(VIRTIO_F_VERSION_1) | feature(VIRTIO_BLK_F_BLK_SIZE) | feature(VIRTIO_BLK_F_RO);
    });
    let mut device = machine.probe().expect("probe");
    let info = device.info();
    assert_eq!(machine.model().queue_size, 64, "rounded down to a power of two");
    assert_eq!(info.queue_depth, 21);
    assert_eq!((info.logical_block_size, info.capacity), (4096, 256));
    assert!(info.read_only && !info.supports_flush && !info.supports_discard);
    assert_eq!(device.submit(Request::flush()), Err(BlockError::Unsupported(Op::Flush)));
    assert_eq!(device.submit(Request::write(0, 1, vec![0; 4096])), Err(BlockError::ReadOnly));
    assert_eq!(device.submit(Request::discard(0, 1)), Err(BlockError::Unsupported(Op::Discard)));
    assert_eq!(machine.model().requests.len(), 1, "refused requests never reach the device (only GET_ID)");
}

#[test]
fn transitional_device_id_is_driven_through_its_modern_capabilities() {
    let mut machine = Machine::new(1 << 16);
    machine.function.device_id = 0x1001;
    assert!(matches(&machine.function));
    let device = machine.probe().expect("probe");
    assert_eq!(device.info().capacity, 128);
}

#[test]
fn other_functions_are_not_mine() {
    let mut machine = Machine::new(1 << 16);
    machine.function.device_id = 0x1041; // virtio-net (modern).
    assert!(!matches(&machine.function));
    assert_eq!(machine.probe().err(), Some(DriverError::NotMine));
    machine.function.device_id = 0x1042;
    machine.function.vendor_id = 0x8086;
    assert_eq!(machine.probe().err(), Some(DriverError::NotMine));
}

#[test]
fn device_without_version_1_is_refused_and_marked_failed() {
    let mut machine = Machine::with(1 << 16, |model| model.offered &= !feature(VIRTIO_F_VERSION_1));
    assert!(matches!(machine.probe(), Err(DriverError::Unsupported(_))));
    assert_eq!(machine.model().status, VIRTIO_CONFIG_S_FAILED);
    assert_eq!(machine.memory.allocated(), 0);
}

#[test]
fn refused_features_ok_fails_the_probe() {
    let mut machine = Machine::with(1 << 16, |model| model.refuse_features = true);
    assert!(matches!(machine.probe(), Err(DriverError::Device(_))));
    assert_eq!(machine.model().status, VIRTIO_CONFIG_S_FAILED);
}

#[test]
fn legacy_only_function_without_modern_capabilities_is_unsupported() {
    let mut machine = Machine::new(1 << 16);
    let bytes = &mut machine.config.functions[0].1;
    bytes[0x34] = 0x40;
    bytes[0x41] = 0; // The MSI-X capability ends the list.
    assert!(matches!(machine.probe(), Err(DriverError::Unsupported(_))));
}

#[test]
fn capability_outside_its_bar_or_missing_bar_is_refused() {
    let mut machine = Machine::new(1 << 16);
    // Device configuration claimed at 0x3800 + 0x1000: past the 16 KiB BAR.
    machine.config.functions[0].1[0x78..0x7C].copy_from_slice(&0x3800u32.to_le_bytes());
    assert!(matches!(machine.probe(), Err(DriverError::Unsupported(_))));

    let mut machine = Machine::new(1 << 16);
    machine.function.bars.clear();
    assert_eq!(machine.probe().err(), Some(DriverError::NoBar(4)));
}

#[test]
fn out_of_dma_memory_fails_cleanly() {
    let mut machine = Machine::new(1 << 16);
    machine.memory.limit.store(4096, AtomicOrdering::Relaxed);
    assert_eq!(machine.probe().err(), Some(DriverError::NoMemory));
    assert_eq!(machine.memory.allocated(), 0);

    // Room for the ring and three bounce regions: a shallower queue.
    let mut machine = Machine::new(1 << 16);
    machine.memory.limit.store(8192 + 3 * SLOT_BOUNCE_BYTES as u64, AtomicOrdering::Relaxed);
    let device = machine.probe().expect("probe");
    assert_eq!(device.info().queue_depth, 3);
}

// ---- I/O ----

#[test]
fn write_then_read_round_trips_including_split_requests() {
    let mut machine = Machine::new(1 << 20);
    let mut device = machine.probe().unwrap();

    let small = pattern(3 * SECTOR, 7);
    assert_eq!(run(&mut device, Request::write(5, 3, small.clone())).result, Ok(()));
    assert_eq!(machine.model().disk[5 * SECTOR..8 * SECTOR], small[..]);
    let read = run(&mut device, Request::read(5, 3, 512).unwrap());
    assert_eq!((read.result, read.buffer), (Ok(()), small));

    // 300 KiB: three chunks of at most 128 KiB through one slot, one completion.
    let blocks = 600;
    let large = pattern(blocks as usize * SECTOR, 99);
    let before = machine.model().requests.len();
    assert_eq!(run(&mut device, Request::write(100, blocks, large.clone())).result, Ok(()));
    let chunks: Vec<_> = machine.model().requests[before..].to_vec();
    assert_eq!(
        chunks,
        [(VIRTIO_BLK_T_OUT, 100, 131072), (VIRTIO_BLK_T_OUT, 356, 131072), (VIRTIO_BLK_T_OUT, 612, 45056)]
    );
    let read = run(&mut device, Request::read(100, blocks, 512).unwrap());
    assert_eq!(read.result, Ok(()));
    assert!(read.buffer == large, "split read reassembles the data");
}

#[test]
fn four_kib_blocks_convert_to_512_byte_sectors() {
    let mut machine = Machine::with(1 << 20, |model| model.config.blk_size = 4096);
    let mut device = machine.probe().unwrap();
    assert_eq!(device.info().capacity, 256);
    let data = pattern(4096 * 2, 3);
    assert_eq!(run(&mut device, Request::write(10, 2, data.clone())).result, Ok(()));
    assert_eq!(machine.model().requests.last(), Some(&(VIRTIO_BLK_T_OUT, 80, 8192)));
    assert_eq!(machine.model().disk[40960..49152], data[..]);
    assert_eq!(run(&mut device, Request::read(10, 2, 4096).unwrap()).buffer, data);
}

#[test]
fn size_max_limits_chunks() {
    let mut machine = Machine::with(1 << 20, |model| model.config.size_max = 4096 + 100);
    let mut device = machine.probe().unwrap();
    assert_eq!(run(&mut device, Request::write(0, 20, pattern(20 * SECTOR, 1))).result, Ok(()));
    let lengths: Vec<usize> = machine.model().requests[1..].iter().map(|request| request.2).collect();
    assert_eq!(lengths, [4096, 4096, 2048]);
}

#[test]
fn out_of_range_requests_are_refused_before_the_device() {
    let mut machine = Machine::new(1 << 16);
    let mut device = machine.probe().unwrap();
    assert!(matches!(device.submit(Request::read(127, 2, 512).unwrap()), Err(BlockError::OutOfRange { .. })));
    assert_eq!(machine.model().requests.len(), 1, "only GET_ID");
}

#[test]
fn flush_reaches_the_device() {
    let mut machine = Machine::new(1 << 16);
    let mut device = machine.probe().unwrap();
    assert_eq!(run(&mut device, Request::flush()).result, Ok(()));
    assert_eq!(machine.model().flushes, 1);
    assert_eq!(machine.model().requests.last(), Some(&(VIRTIO_BLK_T_FLUSH, 0, 0)));
}

#[test]
fn discard_is_split_by_max_discard_sectors() {
    let mut machine = Machine::new(1 << 20);
    let mut device = machine.probe().unwrap();
    run(&mut device, Request::write(0, 200, vec![0xEE; 200 * SECTOR]));
    assert_eq!(run(&mut device, Request::discard(10, 100)).result, Ok(()));
    assert_eq!(machine.model().discards, [(10, 64), (74, 36)]);
    let read = run(&mut device, Request::read(9, 102, 512).unwrap());
    assert!(read.buffer[..SECTOR].iter().all(|&byte| byte == 0xEE));
    assert!(read.buffer[SECTOR..101 * SECTOR].iter().all(|&byte| byte == 0));
    assert!(read.buffer[101 * SECTOR..].iter().all(|&byte| byte == 0xEE));
}

#[test]
fn device_statuses_map_to_block_errors() {
    let mut machine = Machine::new(1 << 16);
    let mut device = machine.probe().unwrap();
    machine.model().forced_status = Some(VIRTIO_BLK_S_IOERR);
    let done = run(&mut device, Request::read(0, 1, 512).unwrap());
    assert_eq!((done.result, done.buffer.len()), (Err(BlockError::Io), 512), "the buffer comes back");
    machine.model().forced_status = Some(VIRTIO_BLK_S_UNSUPP);
    assert_eq!(run(&mut device, Request::flush()).result, Err(BlockError::Unsupported(Op::Flush)));
    machine.model().forced_status = Some(0x7F);
    assert_eq!(run(&mut device, Request::write(0, 1, vec![1; 512])).result, Err(BlockError::Io));
    assert_eq!(device.stats().bad_statuses, 1);
    machine.model().forced_status = None;
    assert_eq!(run(&mut device, Request::read(0, 1, 512).unwrap()).result, Ok(()));
}

#[test]
fn an_error_in_one_chunk_ends_a_split_request() {
    let mut machine = Machine::new(1 << 20);
    let mut device = machine.probe().unwrap();
    machine.model().forced_status = Some(VIRTIO_BLK_S_IOERR);
    let done = run(&mut device, Request::write(0, 600, vec![0; 600 * SECTOR]));
    assert_eq!(done.result, Err(BlockError::Io));
    assert_eq!(machine.model().requests.len(), 2, "GET_ID, then no further chunks after a failure");
}

// ---- Queue depth ----

#[test]
fn queue_full_is_refused_and_everything_completes_once() {
    let mut machine = Machine::new(1 << 20);
    let mut device = machine.probe().unwrap();
    machine.model().hold = true;
    let depth = device.info().queue_depth;
    let mut ids = Vec::new();
    for lba in 0..depth {
        ids.push(device.submit(Request::read(u64::from(lba), 1, 512).unwrap()).unwrap());
    }
    assert_eq!(device.submit(Request::read(0, 1, 512).unwrap()), Err(BlockError::QueueFull));
    assert!(poll(&mut device).is_empty());

    let mut model = machine.model();
    model.hold = false;
    model.process();
    drop(model);
    let done = poll(&mut device);
    let mut completed: Vec<_> = done.iter().map(|completion| completion.id).collect();
    completed.sort();
    assert_eq!(completed, ids);
    assert!(done.iter().all(|completion| completion.result.is_ok()));
    assert!(poll(&mut device).is_empty(), "nothing completes twice");
    assert!(device.submit(Request::read(0, 1, 512).unwrap()).is_ok(), "slots are free again");
}

// ---- Timeouts and recovery ----

#[test]
fn stuck_request_times_out_others_fail_and_the_device_is_reinitialised() {
    let mut machine = Machine::new(1 << 20);
    let mut device = machine.probe().unwrap();
    run(&mut device, Request::write(0, 1, vec![0x5A; 512]));
    machine.model().hold = true;
    let stuck = device.submit(Request::read(0, 1, 512).unwrap()).unwrap();
    machine.fake_platform.advance(20_000_000_000);
    let bystander = device.submit(Request::write(1, 1, vec![1; 512])).unwrap();
    assert!(poll(&mut device).is_empty(), "not yet overdue");

    machine.fake_platform.advance(11_000_000_000);
    let resets_before = machine.model().resets;
    let done = poll(&mut device);
    let result_of = |id| done.iter().find(|completion| completion.id == id).map(|completion| completion.result);
    assert_eq!(done.len(), 2);
    assert_eq!(result_of(stuck), Some(Err(BlockError::Timeout)));
    assert_eq!(result_of(bystander), Some(Err(BlockError::Io)));
    assert_eq!(device.stats().timeouts, 1);
    assert_eq!(device.stats().resets, 1);
    assert!(machine.model().resets > resets_before, "the device was reset");
    assert_eq!(machine.model().status & VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_DRIVER_OK);

    machine.model().hold = false;
    let read = run(&mut device, Request::read(0, 1, 512).unwrap());
    assert_eq!((read.result, read.buffer), (Ok(()), vec![0x5A; 512]), "the device works after the reset");
    assert!(poll(&mut device).is_empty());
}

#[test]
fn device_that_ignores_reset_is_dead_and_keeps_its_memory() {
    let mut machine = Machine::new(1 << 16);
    let mut device = machine.probe().unwrap();
    let allocated = machine.memory.allocated();
    let mut model = machine.model();
    model.hold = true;
    model.ignore_reset = true;
    drop(model);
    let id = device.submit(Request::read(0, 1, 512).unwrap()).unwrap();
    machine.fake_platform.advance(REQUEST_TIMEOUT_NS);
    let done = poll(&mut device);
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].id, done[0].result), (id, Err(BlockError::Timeout)));
    assert!(device.is_dead());
    assert_eq!(device.submit(Request::read(0, 1, 512).unwrap()), Err(BlockError::Io));
    assert!(poll(&mut device).is_empty());
    drop(device);
    assert_eq!(machine.memory.allocated(), allocated, "memory a device may still write is never freed");
}

#[test]
fn device_needs_reset_fails_in_flight_requests_and_recovers() {
    let mut machine = Machine::new(1 << 16);
    let mut device = machine.probe().unwrap();
    machine.model().hold = true;
    let id = device.submit(Request::read(0, 1, 512).unwrap()).unwrap();
    machine.model().status |= VIRTIO_CONFIG_S_NEEDS_RESET;
    let done = poll(&mut device);
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].id, done[0].result), (id, Err(BlockError::Io)));
    machine.model().hold = false;
    assert_eq!(run(&mut device, Request::read(0, 1, 512).unwrap()).result, Ok(()));
}

// ---- Hostile used rings ----

#[test]
fn hostile_used_ids_are_ignored_and_counted() {
    let mut machine = Machine::new(1 << 16);
    let mut device = machine.probe().unwrap();
    machine.model().hold = true;
    let id = device.submit(Request::read(0, 1, 512).unwrap()).unwrap();
    let mut model = machine.model();
    model.push_used(999_999, 513); // Beyond the queue.
    model.push_used(1, 513); // Not a chain head.
    model.push_used(3, 513); // The head of an idle slot.
    model.push_used(u32::MAX, u32::MAX);
    drop(model);
    assert!(poll(&mut device).is_empty());
    assert_eq!(device.stats().bad_used_ids, 4);

    let mut model = machine.model();
    model.hold = false;
    model.process();
    drop(model);
    let done = poll(&mut device);
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].id, done[0].result), (id, Ok(())));
    // A second completion of the same (now idle) slot is ignored.
    machine.model().push_used(0, 513);
    assert!(poll(&mut device).is_empty());
    assert_eq!(device.stats().bad_used_ids, 5);
}

#[test]
fn hostile_used_lengths_fail_the_request() {
    let mut machine = Machine::new(1 << 16);
    let mut device = machine.probe().unwrap();
    for length in [u32::MAX, 514, 512, 0] {
        machine.model().next_used_length = Some(length);
        assert_eq!(run(&mut device, Request::read(0, 1, 512).unwrap()).result, Err(BlockError::Io), "len {length}");
    }
    assert_eq!(device.stats().bad_used_lengths, 4);
    // A write's used length only has to fit the status byte.
    machine.model().next_used_length = Some(0);
    assert_eq!(run(&mut device, Request::write(0, 1, vec![2; 512])).result, Ok(()));
    machine.model().next_used_length = Some(4096);
    assert_eq!(run(&mut device, Request::write(0, 1, vec![2; 512])).result, Err(BlockError::Io));
}

#[test]
fn impossible_used_index_resets_the_device() {
    let mut machine = Machine::new(1 << 16);
    let mut device = machine.probe().unwrap();
    machine.model().hold = true;
    let id = device.submit(Request::read(0, 1, 512).unwrap()).unwrap();
    let used = machine.model().used;
    machine.memory.write(used + 2, &1000u16.to_le_bytes()).unwrap();
    let done = poll(&mut device);
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].id, done[0].result), (id, Err(BlockError::Io)));
    assert_eq!(device.stats().bad_used_indices, 1);
    machine.model().hold = false;
    assert_eq!(run(&mut device, Request::read(0, 1, 512).unwrap()).result, Ok(()));
}

#[test]
fn serial_number_from_get_id_joins_the_model() {
    let mut machine = Machine::with(1 << 16, |model| model.serial = b"QM00005\x01".to_vec());
    assert_eq!(machine.probe().unwrap().info().model, "virtio-blk QM00005?");
    let mut machine = Machine::with(1 << 16, |model| model.serial = vec![b'S'; 20]);
    assert_eq!(machine.probe().unwrap().info().model, alloc::format!("virtio-blk {}", "S".repeat(20)));
    let mut machine = Machine::with(1 << 16, |model| model.forced_status = Some(VIRTIO_BLK_S_UNSUPP));
    assert_eq!(machine.probe().unwrap().info().model, "virtio-blk");
}

#[test]
fn unanswered_get_id_resets_the_device_and_probe_carries_on() {
    let mut machine = Machine::with(1 << 16, |model| {
        model.swallow_get_id = true;
        model.serial = b"never".to_vec();
    });
    let mut device = machine.probe().expect("probe");
    assert_eq!(device.info().model, "virtio-blk");
    assert_eq!(device.stats().resets, 1);
    assert_eq!(run(&mut device, Request::write(0, 1, vec![9; 512])).result, Ok(()));
    assert_eq!(run(&mut device, Request::read(0, 1, 512).unwrap()).buffer, vec![9; 512]);
}

// ---- Teardown ----

#[test]
fn drop_resets_the_device_and_frees_all_dma_memory() {
    let mut machine = Machine::new(1 << 20);
    let mut device = machine.probe().unwrap();
    assert!(machine.memory.allocated() > 0);
    machine.model().hold = true;
    device.submit(Request::write(0, 8, vec![3; 8 * SECTOR])).unwrap();
    drop(device);
    assert_eq!(machine.memory.allocated(), 0);
    assert_eq!(machine.model().status, 0, "reset before the memory went back");
}

// ---- Pure helpers ----

#[test]
fn geometry_rejects_nonsense_and_ignores_bad_hints() {
    let base = BlkConfig {
        capacity_sectors: 1000,
        size_max: None,
        seg_max: None,
        blk_size: Some(3000),
        physical_block_exp: Some(200),
        max_discard_sectors: Some(0),
        max_discard_seg: Some(1),
    };
    let geometry = Geometry::from_config(&base).unwrap();
    assert_eq!((geometry.block_size, geometry.physical_block_size), (512, 512));
    assert_eq!(geometry.discard_chunk_blocks, None, "max_discard_sectors 0: no discard");
    assert_eq!(geometry.chunk_blocks, 256);
    assert!(Geometry::from_config(&BlkConfig { seg_max: Some(0), ..base }).is_err());
    assert!(Geometry::from_config(&BlkConfig { size_max: Some(511), ..base }).is_err());
    let big = BlkConfig { blk_size: Some(4096), max_discard_sectors: Some(7), ..base };
    assert_eq!(Geometry::from_config(&big).unwrap().discard_chunk_blocks, None, "under one 4 KiB block");
    assert_eq!(Geometry::from_config(&big).unwrap().capacity_blocks, 125);
}

#[test]
fn queue_layout_keeps_the_rings_aligned_and_apart() {
    let (available, used, control, length) = queue_layout(128, 32);
    assert_eq!(available, 2048);
    assert!(used >= available + 4 + 256 + 2 && used % 4 == 0);
    assert!(control >= used + 4 + 8 * 128 + 2 && control % CONTROL_STRIDE == 0);
    assert_eq!(length, control + 32 * CONTROL_STRIDE);
}

// ---- Interrupts ----

#[test]
fn with_msix_both_vectors_are_set_and_survive_a_reset() {
    let mut machine = Machine::new(1 << 16);
    let table = machine.with_message_interrupts();
    let mut device = machine.probe().unwrap();
    assert_eq!(device.interrupt_mode(), InterruptMode::MsiX { entries: 2 });
    assert_eq!(machine.vectors(), (0, 0));
    assert_eq!(table.entry(0)[2], TEST_MESSAGE.1);
    assert_eq!(table.entry(0)[3] & PCI_MSIX_ENTRY_CTRL_MASKBIT, 0);
    assert_ne!(machine.command() & PCI_COMMAND_INTX_DISABLE, 0);

    // A reset clears the device's vectors; re-initialisation sets them again.
    machine.model().hold = true;
    device.submit(Request::read(0, 1, 512).unwrap()).unwrap();
    machine.model().status |= VIRTIO_CONFIG_S_NEEDS_RESET;
    assert_eq!(poll(&mut device).len(), 1);
    assert_eq!(device.stats().resets, 1);
    assert_eq!(machine.vectors(), (0, 0));
    assert_eq!(device.interrupt_mode(), InterruptMode::MsiX { entries: 2 });
    machine.model().hold = false;
    assert_eq!(run(&mut device, Request::read(0, 1, 512).unwrap()).result, Ok(()), "the ISR read still polls");
}

#[test]
fn vectors_are_cleared_before_the_device_is_let_go() {
    let mut machine = Machine::new(1 << 16);
    machine.with_message_interrupts();
    let device = machine.probe().unwrap();
    assert_eq!(machine.vectors(), (0, 0));
    // A device that ignores the reset must still stop signalling.
    machine.model().ignore_reset = true;
    drop(device);
    assert_eq!(machine.vectors(), (VIRTIO_MSI_NO_VECTOR, VIRTIO_MSI_NO_VECTOR));
}

#[test]
fn refused_vectors_leave_the_device_polled() {
    let mut machine = Machine::with(1 << 16, |model| model.refuse_vectors = true);
    machine.with_message_interrupts();
    let mut device = machine.probe().unwrap();
    assert_eq!(device.interrupt_mode(), InterruptMode::Polled);
    assert_eq!(machine.vectors(), (VIRTIO_MSI_NO_VECTOR, VIRTIO_MSI_NO_VECTOR));
    assert_eq!(run(&mut device, Request::read(0, 1, 512).unwrap()).result, Ok(()));
}

#[test]
fn without_a_message_or_with_msi_only_no_vector_is_set() {
    let mut machine = Machine::new(1 << 16);
    let device = machine.probe().unwrap();
    assert_eq!(device.interrupt_mode(), InterruptMode::Polled);
    assert_eq!(machine.vectors(), (VIRTIO_MSI_NO_VECTOR, VIRTIO_MSI_NO_VECTOR));
    assert_ne!(read_command(&mut machine.config, machine.function.address) & PCI_COMMAND_INTX_DISABLE, 0);
    drop(device);

    // MSI instead of MSI-X: virtio-pci has no use for it (no vectors without MSI-X).
    let mut machine = Machine::new(1 << 16);
    machine.config.functions[0].1[0x40..0x44].copy_from_slice(&[crate::pci::PCI_CAP_ID_MSI, 0x50, 0x00, 0x00]);
    machine.with_message_interrupts();
    assert!(matches!(machine.function.capabilities[0].kind, crate::pci::CapabilityKind::Msi(_)));
    let device = machine.probe().unwrap();
    assert_eq!(device.interrupt_mode(), InterruptMode::Polled);
    assert_eq!(machine.vectors(), (VIRTIO_MSI_NO_VECTOR, VIRTIO_MSI_NO_VECTOR));
}
