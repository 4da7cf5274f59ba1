//! Host tests for the NVMe driver against a fake controller.
//!
//! The fake models the registers the driver uses (CAP, CC, CSTS, AQA, ASQ, ACQ and the
//! doorbells at the CAP.DSTRD stride) and, when a submission queue tail doorbell is
//! written, fetches the new entries from [`FakeMemory`] and executes them: Identify,
//! Set Features, Create I/O CQ/SQ, and Read/Write/Flush/Dataset Management against a
//! disk held in a `Vec<u8>`, following PRP1/PRP2/PRP lists as a controller does. Knobs
//! make it misbehave: swallow commands (fetch, never complete, until released), fail a
//! command with a status, never become ready, never stop, raise CSTS.CFS; and the test
//! can write arbitrary entries into the I/O completion queue. It also records what the
//! driver asks of interrupts: INTMS/INTMC and the I/O CQ's IEN and IV.

extern crate std;

use super::*;
use crate::drivers::fake::{
    add_msi_capability, add_msix_capability, FakeMemory, FakeMsixTable, FakePlatform, TEST_MESSAGE,
};
use crate::pci::{
    read_command, Bar, BarKind, ByteConfigSpace, ClassCode, HeaderType, PciAddress, PCI_COMMAND_INTX_DISABLE,
    PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY,
};
use alloc::vec;
use std::sync::{Mutex, MutexGuard};

const DISK_BYTES: usize = 1 << 20;
const BAR_BYTES: u64 = 0x4000;
/// Status field of "LBA Out of Range" (SCT 0, SC 80h) and of "Invalid Field" (SC 02h).
const STATUS_LBA_OUT_OF_RANGE: u16 = 0x80;
const STATUS_INVALID_FIELD: u16 = 0x02;
const STATUS_INVALID_OPCODE: u16 = 0x01;
const STATUS_PRP_OFFSET_INVALID: u16 = 0x13;
/// "Invalid Interrupt Vector" (command specific, SCT 1, SC 08h).
const STATUS_INVALID_INTERRUPT_VECTOR: u16 = 1 << 8 | 0x08;
/// BAR 4 holds the MSI-X table when the function has one.
const MSIX_TABLE_BAR: u8 = 4;
const MSIX_BAR_BYTES: u64 = 0x1000;

/// A queue as the fake controller sees it.
#[derive(Clone, Copy, Debug)]
struct FakeQueue {
    base: u64,
    entries: u16,
    /// SQ: next entry to fetch. CQ: next entry to post.
    position: u16,
    /// CQ only: phase tag of the next post.
    phase: bool,
}

/// One I/O command the fake executed (or swallowed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct IoRecord {
    opcode: u8,
    lba: u64,
    blocks: u32,
    /// PRP2 pointed to a PRP list.
    used_prp_list: bool,
}

struct Model {
    memory: Arc<FakeMemory>,
    cap: u64,
    cc: u32,
    csts: u32,
    aqa: u32,
    asq: u64,
    acq: u64,
    admin_sq: Option<FakeQueue>,
    admin_cq: Option<FakeQueue>,
    io_sq: Option<FakeQueue>,
    io_cq: Option<FakeQueue>,
    disk: Vec<u8>,
    identify_controller: Vec<u8>,
    identify_namespace: Vec<u8>,
    // Misbehaviour.
    never_ready: bool,
    never_stops: bool,
    answer_admin: bool,
    swallow_io: u32,
    swallowed: Vec<[u8; 64]>,
    fail_next_io: Option<u16>,
    // Observations.
    enables: u32,
    shutdowns: u32,
    flushes: u32,
    io_log: Vec<IoRecord>,
    created_io_queue_entries: Option<(u16, u16)>,
    bad_doorbells: u32,
    completion_doorbell_writes: u32,
    /// Interrupt mask (INTMS sets bits, INTMC clears them, a reset clears all).
    interrupt_mask: u32,
    /// Writes to INTMS or INTMC.
    interrupt_mask_writes: u32,
    /// (IEN, IV) of the I/O CQ as created.
    io_cq_interrupt: Option<(bool, u16)>,
}

impl Model {
    fn block_size(&self) -> usize {
        let format = self.identify_namespace[26] & 0xF;
        let lbaf = 128 + 4 * usize::from(format);
        1 << self.identify_namespace[lbaf + 2]
    }

    fn doorbell_stride(&self) -> u64 {
        4 << ((self.cap >> 32) & 0xF)
    }

    fn write_cc(&mut self, value: u32) {
        let was_enabled = self.cc & CC_EN != 0;
        self.cc = value;
        if !was_enabled && value & CC_EN != 0 {
            self.enables += 1;
            if self.never_ready {
                return;
            }
            let admin_sq_entries = (self.aqa & 0xFFF) as u16 + 1;
            let admin_cq_entries = ((self.aqa >> 16) & 0xFFF) as u16 + 1;
            self.admin_sq = Some(FakeQueue { base: self.asq, entries: admin_sq_entries, position: 0, phase: true });
            self.admin_cq = Some(FakeQueue { base: self.acq, entries: admin_cq_entries, position: 0, phase: true });
            self.csts = CSTS_RDY;
        } else if was_enabled && value & CC_EN == 0 {
            if self.never_stops {
                return;
            }
            self.csts = 0;
            self.admin_sq = None;
            self.admin_cq = None;
            self.io_sq = None;
            self.io_cq = None;
            self.io_cq_interrupt = None;
            self.interrupt_mask = 0;
            self.swallowed.clear();
        } else if value & CC_EN != 0 && value & CC_SHN_MASK != 0 {
            self.shutdowns += 1;
            self.csts |= CSTS_SHST_COMPLETE;
        }
    }

    fn write_doorbell(&mut self, offset: u64, value: u32) {
        let stride = self.doorbell_stride();
        let relative = offset - NVME_REG_DBS;
        if !relative.is_multiple_of(stride) {
            self.bad_doorbells += 1;
            return;
        }
        let index = relative / stride;
        let (queue_id, completion) = (index / 2, index % 2 == 1);
        if completion {
            self.completion_doorbell_writes += 1;
            return;
        }
        let tail = value as u16;
        match queue_id {
            0 => self.run_admin(tail),
            1 => self.run_io(tail),
            _ => self.bad_doorbells += 1,
        }
    }

    fn fetch(&mut self, queue: &mut FakeQueue) -> [u8; 64] {
        let mut entry = [0u8; 64];
        self.memory.read(queue.base + u64::from(queue.position) * 64, &mut entry).expect("SQ entry in DMA memory");
        queue.position = (queue.position + 1) % queue.entries;
        entry
    }

    fn post(&mut self, queue_is_admin: bool, sq_head: u16, command_id: u16, status: u16) {
        let slot = if queue_is_admin { &mut self.admin_cq } else { &mut self.io_cq };
        let Some(queue) = slot.as_mut() else {
            return;
        };
        let address = queue.base + u64::from(queue.position) * 16;
        let sq_id: u32 = if queue_is_admin { 0 } else { 1 };
        let dword2 = u32::from(sq_head) | sq_id << 16;
        let dword3 = u32::from(command_id) | u32::from(queue.phase) << 16 | u32::from(status) << 17;
        queue.position += 1;
        if queue.position == queue.entries {
            queue.position = 0;
            queue.phase = !queue.phase;
        }
        self.memory.write_u32(address, 0).unwrap();
        self.memory.write_u32(address + 8, dword2).unwrap();
        self.memory.write_u32(address + 12, dword3).unwrap();
    }

    fn run_admin(&mut self, tail: u16) {
        let Some(mut queue) = self.admin_sq else {
            return;
        };
        while queue.position != tail % queue.entries {
            let entry = self.fetch(&mut queue);
            self.admin_sq = Some(queue);
            let status = self.execute_admin(&entry);
            if self.answer_admin {
                self.post(true, queue.position, command_id(&entry), status);
            }
        }
    }

    fn execute_admin(&mut self, entry: &[u8; 64]) -> u16 {
        let prp1 = field_u64(entry, 24);
        let cdw10 = field_u32(entry, 40);
        let cdw11 = field_u32(entry, 44);
        match entry[0] {
            ADMIN_OPCODE_IDENTIFY => {
                let data = match (cdw10 & 0xFF, field_u32(entry, 4)) {
                    (1, _) => self.identify_controller.clone(),
                    (0, 1) => self.identify_namespace.clone(),
                    _ => return STATUS_INVALID_FIELD,
                };
                self.memory.write(prp1, &data).map_or(STATUS_INVALID_FIELD, |()| 0)
            }
            ADMIN_OPCODE_SET_FEATURES => 0,
            ADMIN_OPCODE_CREATE_IO_CQ => {
                let entries = (cdw10 >> 16) as u16 + 1;
                if cdw10 & 0xFFFF != 1 || cdw11 & 1 == 0 {
                    return STATUS_INVALID_FIELD;
                }
                // One vector, as with MSI or a one-entry MSI-X table.
                let (enabled, vector) = (cdw11 & 2 != 0, (cdw11 >> 16) as u16);
                if vector != 0 {
                    return STATUS_INVALID_INTERRUPT_VECTOR;
                }
                self.io_cq = Some(FakeQueue { base: prp1, entries, position: 0, phase: true });
                self.io_cq_interrupt = Some((enabled, vector));
                0
            }
            ADMIN_OPCODE_CREATE_IO_SQ => {
                let entries = (cdw10 >> 16) as u16 + 1;
                if cdw10 & 0xFFFF != 1 || cdw11 >> 16 != 1 || self.io_cq.is_none() {
                    return STATUS_INVALID_FIELD;
                }
                self.io_sq = Some(FakeQueue { base: prp1, entries, position: 0, phase: true });
                self.created_io_queue_entries = Some((entries, self.io_cq.unwrap().entries));
                0
            }
            _ => STATUS_INVALID_OPCODE,
        }
    }

    fn run_io(&mut self, tail: u16) {
        let Some(mut queue) = self.io_sq else {
            return;
        };
        while queue.position != tail % queue.entries {
            let entry = self.fetch(&mut queue);
            self.io_sq = Some(queue);
            if self.swallow_io > 0 {
                self.swallow_io -= 1;
                self.swallowed.push(entry);
                continue;
            }
            self.complete_io(&entry, queue.position);
        }
    }

    fn complete_io(&mut self, entry: &[u8; 64], sq_head: u16) {
        let mut status = self.execute_io(entry);
        if let Some(forced) = self.fail_next_io.take() {
            status = forced;
        }
        self.post(false, sq_head, command_id(entry), status);
    }

    /// Completes every swallowed command (executing it now).
    fn release_swallowed(&mut self) {
        let head = self.io_sq.map_or(0, |queue| queue.position);
        for entry in core::mem::take(&mut self.swallowed) {
            self.complete_io(&entry, head);
        }
    }

    fn execute_io(&mut self, entry: &[u8; 64]) -> u16 {
        let opcode = entry[0];
        let lba = field_u64(entry, 40);
        let blocks = (field_u32(entry, 48) & 0xFFFF) + 1;
        let (prp1, prp2) = (field_u64(entry, 24), field_u64(entry, 32));
        let block_size = self.block_size();
        if field_u32(entry, 4) != 1 && opcode != NVM_OPCODE_FLUSH {
            return STATUS_INVALID_FIELD;
        }
        match opcode {
            NVM_OPCODE_READ | NVM_OPCODE_WRITE => {
                let length = blocks as usize * block_size;
                let start = lba as usize * block_size;
                if start + length > self.disk.len() {
                    return STATUS_LBA_OUT_OF_RANGE;
                }
                let Some((segments, used_prp_list)) = self.prp_segments(prp1, prp2, length) else {
                    return STATUS_PRP_OFFSET_INVALID;
                };
                self.io_log.push(IoRecord { opcode, lba, blocks, used_prp_list });
                let mut position = start;
                for (address, length) in segments {
                    let disk = &mut self.disk[position..position + length];
                    let moved = if opcode == NVM_OPCODE_READ {
                        self.memory.write(address, disk)
                    } else {
                        self.memory.read(address, disk)
                    };
                    if moved.is_none() {
                        return STATUS_PRP_OFFSET_INVALID;
                    }
                    position += length;
                }
                0
            }
            NVM_OPCODE_FLUSH => {
                self.flushes += 1;
                self.io_log.push(IoRecord { opcode, lba: 0, blocks: 0, used_prp_list: false });
                0
            }
            NVM_OPCODE_DATASET_MANAGEMENT => {
                let ranges = (field_u32(entry, 40) & 0xFF) + 1;
                let deallocate = field_u32(entry, 44) & DSM_ATTRIBUTE_DEALLOCATE != 0;
                for range in 0..u64::from(ranges) {
                    let length = self.memory.read_u32(prp1 + 16 * range + 4).unwrap() as usize;
                    let first = self.memory.read_u64(prp1 + 16 * range + 8).unwrap();
                    self.io_log.push(IoRecord { opcode, lba: first, blocks: length as u32, used_prp_list: false });
                    let start = first as usize * block_size;
                    if start + length * block_size > self.disk.len() {
                        return STATUS_LBA_OUT_OF_RANGE;
                    }
                    if deallocate {
                        self.disk[start..start + length * block_size].fill(0);
                    }
                }
                0
            }
            _ => STATUS_INVALID_OPCODE,
        }
    }

    /// The (address, length) pieces PRP1/PRP2 describe for `length` bytes (§4.3), and
    /// whether PRP2 was a list; `None` for a malformed PRP.
    fn prp_segments(&self, prp1: u64, prp2: u64, length: usize) -> Option<(Vec<(u64, usize)>, bool)> {
        let page = 4096u64;
        let first = ((page - prp1 % page) as usize).min(length);
        let mut segments = vec![(prp1, first)];
        let mut remaining = length - first;
        if remaining == 0 {
            return Some((segments, false));
        }
        if remaining <= 4096 {
            if !prp2.is_multiple_of(page) {
                return None;
            }
            segments.push((prp2, remaining));
            return Some((segments, false));
        }
        if !prp2.is_multiple_of(8) {
            return None;
        }
        let mut entry = prp2;
        while remaining > 0 {
            let address = self.memory.read_u64(entry)?;
            if !address.is_multiple_of(page) {
                return None;
            }
            let piece = remaining.min(4096);
            segments.push((address, piece));
            remaining -= piece;
            entry += 8;
        }
        Some((segments, true))
    }
}

fn field_u32(entry: &[u8; 64], offset: usize) -> u32 {
    u32::from_le_bytes(entry[offset..offset + 4].try_into().unwrap())
}

fn field_u64(entry: &[u8; 64], offset: usize) -> u64 {
    u64::from_le_bytes(entry[offset..offset + 8].try_into().unwrap())
}

fn command_id(entry: &[u8; 64]) -> u16 {
    u16::from_le_bytes([entry[2], entry[3]])
}

/// A handle onto the shared model: what `map_bar` returns.
#[derive(Clone)]
struct FakeNvme(Arc<Mutex<Model>>);

impl FakeNvme {
    fn model(&self) -> MutexGuard<'_, Model> {
        // A failed assertion must not turn the disk's drop into a second panic.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Registers for FakeNvme {
    fn len(&self) -> u64 {
        BAR_BYTES
    }
    fn read8(&self, _offset: u64) -> u8 {
        panic!("the driver uses 32-bit register accesses only")
    }
    fn read16(&self, _offset: u64) -> u16 {
        panic!("the driver uses 32-bit register accesses only")
    }
    fn write8(&self, _offset: u64, _value: u8) {
        panic!("the driver uses 32-bit register accesses only")
    }
    fn write16(&self, _offset: u64, _value: u16) {
        panic!("the driver uses 32-bit register accesses only")
    }
    fn read32(&self, offset: u64) -> u32 {
        let model = self.model();
        match offset {
            0x00 => model.cap as u32,
            0x04 => (model.cap >> 32) as u32,
            0x08 => 0x0001_0400, // VS 1.4
            0x14 => model.cc,
            0x1C => model.csts,
            0x24 => model.aqa,
            0x28 => model.asq as u32,
            0x2C => (model.asq >> 32) as u32,
            0x30 => model.acq as u32,
            0x34 => (model.acq >> 32) as u32,
            _ => 0,
        }
    }
    fn write32(&self, offset: u64, value: u32) {
        let mut model = self.model();
        let low = |old: u64| (old & !0xFFFF_FFFF) | u64::from(value);
        let high = |old: u64| (old & 0xFFFF_FFFF) | u64::from(value) << 32;
        match offset {
            0x0C => {
                model.interrupt_mask |= value;
                model.interrupt_mask_writes += 1;
            }
            0x10 => {
                model.interrupt_mask &= !value;
                model.interrupt_mask_writes += 1;
            }
            0x14 => model.write_cc(value),
            0x24 => model.aqa = value,
            0x28 => model.asq = low(model.asq),
            0x2C => model.asq = high(model.asq),
            0x30 => model.acq = low(model.acq),
            0x34 => model.acq = high(model.acq),
            offset if offset >= NVME_REG_DBS => model.write_doorbell(offset, value),
            _ => {}
        }
    }
}

fn identify_controller(model_number: &str, mdts: u8, volatile_write_cache: bool, dataset_management: bool) -> Vec<u8> {
    let mut data = vec![0u8; 4096];
    data[4..24].fill(b' ');
    data[4..11].copy_from_slice(b"basalt0");
    data[24..64].fill(b' ');
    data[24..24 + model_number.len()].copy_from_slice(model_number.as_bytes());
    data[77] = mdts;
    data[516..520].copy_from_slice(&1u32.to_le_bytes());
    let oncs: u16 = if dataset_management { ONCS_DATASET_MANAGEMENT } else { 0 };
    data[520..522].copy_from_slice(&oncs.to_le_bytes());
    data[525] = u8::from(volatile_write_cache);
    data
}

/// Two LBA formats: 0 = 512-byte blocks, 1 = 4096-byte blocks; `format` selects one.
fn identify_namespace(disk_bytes: usize, format: u8) -> Vec<u8> {
    let mut data = vec![0u8; 4096];
    let block_size = if format == 0 { 512 } else { 4096 };
    data[0..8].copy_from_slice(&((disk_bytes / block_size) as u64).to_le_bytes());
    data[8..16].copy_from_slice(&((disk_bytes / block_size) as u64).to_le_bytes());
    data[25] = 1;
    data[26] = format;
    data[128 + 2] = 9;
    data[132 + 2] = 12;
    data
}

/// CAP: MQES, CQR, TO = 1 s, DSTRD, CSS = NVM.
fn capabilities(mqes: u16, dstrd: u8) -> u64 {
    u64::from(mqes) | 1 << 16 | 2 << 24 | u64::from(dstrd) << 32 | CAP_CSS_NVM
}

struct Harness {
    memory: Arc<FakeMemory>,
    platform: Arc<FakePlatform>,
    device: FakeNvme,
    function: PciFunction,
    config: ByteConfigSpace,
}

fn nvme_function() -> PciFunction {
    PciFunction {
        address: PciAddress::new(0, 0, 4, 0).unwrap(),
        vendor_id: 0x1B36,
        device_id: 0x0010,
        class: ClassCode { class: PCI_CLASS_STORAGE, subclass: PCI_SUBCLASS_NVM, prog_if: PCI_PROG_IF_NVME },
        revision: 2,
        header_type: HeaderType::Endpoint,
        multi_function: false,
        subsystem_vendor_id: 0x1AF4,
        subsystem_id: 0x1100,
        interrupt_line: 11,
        interrupt_pin: 1,
        bars: vec![Bar {
            index: 0,
            kind: BarKind::Memory64,
            address: 0xFEBD_0000,
            size: BAR_BYTES,
            prefetchable: false,
        }],
        capabilities: Vec::new(),
        extended_capabilities: Vec::new(),
        bridge: None,
    }
}

impl Harness {
    /// A 1 MiB disk with 512-byte blocks behind a well-behaved controller, adjusted by
    /// `adjust` before anything touches it.
    fn new(adjust: impl FnOnce(&mut Model)) -> Harness {
        let memory = FakeMemory::new();
        let platform = Arc::new(FakePlatform::new(memory.clone()));
        let mut model = Model {
            memory: memory.clone(),
            cap: capabilities(2047, 0),
            cc: 0,
            csts: 0,
            aqa: 0,
            asq: 0,
            acq: 0,
            admin_sq: None,
            admin_cq: None,
            io_sq: None,
            io_cq: None,
            disk: vec![0; DISK_BYTES],
            identify_controller: identify_controller("Basalt Fake NVMe Ctrl", 0, true, true),
            identify_namespace: identify_namespace(DISK_BYTES, 0),
            never_ready: false,
            never_stops: false,
            answer_admin: true,
            swallow_io: 0,
            swallowed: Vec::new(),
            fail_next_io: None,
            enables: 0,
            shutdowns: 0,
            flushes: 0,
            io_log: Vec::new(),
            created_io_queue_entries: None,
            bad_doorbells: 0,
            completion_doorbell_writes: 0,
            interrupt_mask: 0,
            interrupt_mask_writes: 0,
            io_cq_interrupt: None,
        };
        adjust(&mut model);
        let device = FakeNvme(Arc::new(Mutex::new(model)));
        let handle = device.clone();
        platform.set_bar(0, move || Box::new(handle.clone()));
        let function = nvme_function();
        let config = ByteConfigSpace { functions: vec![(function.address, vec![0; 256])], extended: false };
        Harness { memory, platform, device, function, config }
    }

    fn probe(&mut self) -> Result<NvmeDisk, DriverError> {
        let platform: Arc<dyn Platform> = self.platform.clone();
        probe(ProbeContext { function: &self.function, config: &mut self.config, platform: &platform })
    }

    fn model(&self) -> MutexGuard<'_, Model> {
        self.device.model()
    }

    /// Gives the machine an interrupt message and the function MSI-X (a one-entry
    /// table in BAR 4; returned) or, without `msix`, MSI.
    fn with_message_interrupts(&mut self, msix: bool) -> FakeMsixTable {
        self.platform.set_interrupt_message(Some(TEST_MESSAGE));
        let bytes = &mut self.config.functions[0].1;
        if msix {
            add_msix_capability(bytes, 0x40, 1, MSIX_TABLE_BAR, 0);
        } else {
            add_msi_capability(bytes, 0x50, true, true);
        }
        self.function.capabilities = crate::pci::read_capabilities(&mut self.config, self.function.address);
        self.function.bars.push(Bar {
            index: MSIX_TABLE_BAR,
            kind: BarKind::Memory32,
            address: 0xFEB0_0000,
            size: MSIX_BAR_BYTES,
            prefetchable: false,
        });
        let table = FakeMsixTable::new(0, 1, MSIX_BAR_BYTES);
        let handle = table.clone();
        self.platform.set_bar(MSIX_TABLE_BAR, move || Box::new(handle.clone()));
        table
    }

    /// Writes a raw completion entry at the I/O CQ's next position with `phase` (the
    /// right one advances the fake's tail, a wrong one does not).
    fn inject_io_completion(&self, sq_id: u16, sq_head: u16, command_id: u16, status: u16, right_phase: bool) {
        let mut model = self.model();
        let queue = model.io_cq.as_mut().expect("I/O CQ exists");
        let address = queue.base + u64::from(queue.position) * 16;
        let phase = if right_phase { queue.phase } else { !queue.phase };
        if right_phase {
            queue.position += 1;
            if queue.position == queue.entries {
                queue.position = 0;
                queue.phase = !queue.phase;
            }
        }
        let dword2 = u32::from(sq_head) | u32::from(sq_id) << 16;
        let dword3 = u32::from(command_id) | u32::from(phase) << 16 | u32::from(status) << 17;
        model.memory.write_u32(address + 8, dword2).unwrap();
        model.memory.write_u32(address + 12, dword3).unwrap();
    }
}

fn poll(disk: &mut NvmeDisk) -> Vec<Completion> {
    let mut out = Vec::new();
    disk.poll_completions(&mut out);
    out
}

/// Submits `request` and polls until it completes (the fake answers at the doorbell).
fn run(disk: &mut NvmeDisk, request: Request) -> Completion {
    let id = disk.submit(request).expect("accepted");
    for _ in 0..4 {
        let mut completions = poll(disk);
        if let Some(position) = completions.iter().position(|completion| completion.id == id) {
            assert_eq!(completions.len(), 1, "only the one request was in flight");
            return completions.remove(position);
        }
    }
    panic!("request {id:?} did not complete");
}

fn pattern(length: usize, seed: u8) -> Vec<u8> {
    (0..length).map(|index| (index as u8).wrapping_mul(31).wrapping_add(seed) ^ (index >> 9) as u8).collect()
}

fn write_then_read(disk: &mut NvmeDisk, lba: u64, blocks: u32, seed: u8) -> Vec<u8> {
    let block_size = disk.info().logical_block_size;
    let data = pattern((blocks * block_size) as usize, seed);
    let written = run(disk, Request::write(lba, blocks, data.clone()));
    assert_eq!(written.result, Ok(()));
    let read = run(disk, Request::read(lba, blocks, block_size).unwrap());
    assert_eq!(read.result, Ok(()));
    assert_eq!(read.buffer, data, "read back what was written at {lba}+{blocks}");
    data
}

#[test]
fn matches_only_nvm_express_controllers() {
    let mut function = nvme_function();
    assert!(matches(&function));
    function.class.prog_if = 0x01; // AHCI-like interface byte on the wrong subclass
    assert!(!matches(&function));
    function.class = ClassCode { class: 0x01, subclass: 0x06, prog_if: 0x01 };
    assert!(!matches(&function));

    let mut harness = Harness::new(|_| {});
    harness.function.class = ClassCode { class: 0x01, subclass: 0x06, prog_if: 0x01 };
    assert_eq!(harness.probe().err(), Some(DriverError::NotMine));
    assert_eq!(harness.model().enables, 0);
}

#[test]
fn probe_reads_identity_geometry_and_programs_the_controller() {
    let mut harness = Harness::new(|_| {});
    let disk = harness.probe().expect("probe");
    let info = disk.info();
    assert_eq!(info.model, "Basalt Fake NVMe Ctrl");
    assert_eq!(disk.serial_number(), "basalt0");
    assert_eq!(info.capacity, (DISK_BYTES / 512) as u64);
    assert_eq!(info.logical_block_size, 512);
    assert_eq!(info.queue_depth, MAX_SLOTS as u32);
    assert!(info.supports_flush && info.supports_discard && !info.read_only);
    assert!(disk.has_volatile_write_cache());
    assert_eq!(disk.max_chunk_bytes(), SLOT_DATA_BYTES);

    let model = harness.model();
    assert_eq!(model.aqa, 31 << 16 | 31);
    assert_eq!(model.cc & CC_EN, CC_EN);
    assert_eq!((model.cc >> 16) & 0xF, 6, "IOSQES");
    assert_eq!((model.cc >> 20) & 0xF, 4, "IOCQES");
    assert_eq!(model.cc & (0xF << 7 | 0x7 << 4), 0, "MPS 4 KiB, CSS NVM");
    assert_eq!(model.created_io_queue_entries, Some((64, 64)));
    assert_eq!(model.bad_doorbells, 0);
    drop(model);

    let command = read_command(&mut harness.config, harness.function.address);
    let wanted = PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE;
    assert_eq!(command & wanted, wanted);
}

#[test]
fn probe_honours_flbas_mqes_dstrd_and_capabilities() {
    let mut harness = Harness::new(|model| {
        model.identify_namespace = identify_namespace(DISK_BYTES, 1);
        model.identify_controller = identify_controller("  padded model  ", 0, false, false);
        model.cap = capabilities(3, 2);
    });
    let mut disk = harness.probe().expect("probe");
    let info = disk.info();
    assert_eq!(info.logical_block_size, 4096);
    assert_eq!(info.capacity, (DISK_BYTES / 4096) as u64);
    assert_eq!(info.model, "padded model");
    assert_eq!(info.queue_depth, 3, "MQES+1 = 4 entries leave 3 commands outstanding");
    assert!(info.supports_flush, "flush is accepted without a volatile write cache");
    assert!(!info.supports_discard);
    assert!(!disk.has_volatile_write_cache());
    assert_eq!(harness.model().created_io_queue_entries, Some((4, 4)));

    // Doorbells at a 16-byte stride: the fake sees them where they belong.
    write_then_read(&mut disk, 3, 5, 7);
    assert_eq!(harness.model().bad_doorbells, 0);
    assert_eq!(disk.submit(Request::discard(0, 1)), Err(BlockError::Unsupported(Op::Discard)));
    let flushed = run(&mut disk, Request::flush());
    assert_eq!(flushed.result, Ok(()));
    assert_eq!(harness.model().flushes, 1);
}

#[test]
fn probe_refuses_what_it_cannot_drive_without_leaking() {
    fn refused(adjust: impl FnOnce(&mut Model)) -> (DriverError, Harness) {
        let mut harness = Harness::new(adjust);
        let error = harness.probe().err().expect("probe refused");
        assert_eq!(harness.memory.allocated(), 0, "{error}: DMA memory given back");
        (error, harness)
    }

    assert!(matches!(refused(|model| model.cap &= !CAP_CSS_NVM).0, DriverError::Unsupported(_)));
    assert!(matches!(refused(|model| model.cap &= !CAP_MQES_MASK).0, DriverError::Unsupported(_)));
    assert!(matches!(refused(|model| model.cap |= 1 << CAP_MPSMIN_SHIFT).0, DriverError::Unsupported(_)));
    // DSTRD 15: doorbells far beyond the 16 KiB BAR.
    assert!(matches!(refused(|model| model.cap |= 0xF << CAP_DSTRD_SHIFT).0, DriverError::Unsupported(_)));
    assert!(matches!(refused(|model| model.cap = u64::MAX).0, DriverError::Device(_)));

    let (error, harness) = refused(|model| model.never_ready = true);
    assert_eq!(error, DriverError::Timeout("CSTS.RDY=1"));
    assert_eq!(harness.model().enables, 1);

    let (error, harness) = refused(|model| model.answer_admin = false);
    assert_eq!(error, DriverError::Timeout("admin command completion"));
    assert_eq!(harness.model().cc & CC_EN, 0, "the controller is disabled again");

    let with_metadata = |model: &mut Model| model.identify_namespace[128] = 8;
    assert!(matches!(refused(with_metadata).0, DriverError::Unsupported(_)));
    let format_beyond_nlbaf = |model: &mut Model| model.identify_namespace[26] = 5;
    assert!(matches!(refused(format_beyond_nlbaf).0, DriverError::Device(_)));
    let inactive = |model: &mut Model| model.identify_namespace[0..8].fill(0);
    assert!(matches!(refused(inactive).0, DriverError::Device(_)));
    let no_namespaces = |model: &mut Model| model.identify_controller[516..520].fill(0);
    assert!(matches!(refused(no_namespaces).0, DriverError::Device(_)));

    let mut harness = Harness::new(|_| {});
    harness.function.bars.clear();
    assert_eq!(harness.probe().err(), Some(DriverError::NoBar(0)));

    let harness = Harness::new(|_| {});
    harness.memory.limit.store(64 * 1024, core::sync::atomic::Ordering::Relaxed);
    let mut harness = harness;
    assert_eq!(harness.probe().err(), Some(DriverError::NoMemory));
    assert_eq!(harness.memory.allocated(), 0);
}

#[test]
fn reads_and_writes_round_trip_through_prp1_prp2_and_prp_lists() {
    let mut harness = Harness::new(|_| {});
    let mut disk = harness.probe().expect("probe");
    let one_block = write_then_read(&mut disk, 0, 1, 1);
    write_then_read(&mut disk, 10, 8, 2); // one page
    write_then_read(&mut disk, 20, 16, 3); // two pages: PRP2 is the second page
    let list = write_then_read(&mut disk, 100, 200, 4); // 25 pages: PRP list
    write_then_read(&mut disk, 2048 - 256, 256, 5); // a whole slot at the end of the disk

    let model = harness.model();
    assert_eq!(&model.disk[..512], &one_block[..]);
    assert_eq!(&model.disk[100 * 512..300 * 512], &list[..]);
    let lists: Vec<bool> = model.io_log.iter().step_by(2).map(|record| record.used_prp_list).collect();
    assert_eq!(lists, [false, false, false, true, true]);
}

#[test]
fn large_requests_are_split_into_slot_sized_chunks() {
    let mut harness = Harness::new(|_| {});
    let mut disk = harness.probe().expect("probe");
    let data = write_then_read(&mut disk, 50, 600, 9); // 300 KiB
    let model = harness.model();
    let writes: Vec<(u64, u32)> = model
        .io_log
        .iter()
        .filter(|record| record.opcode == NVM_OPCODE_WRITE)
        .map(|record| (record.lba, record.blocks))
        .collect();
    assert_eq!(writes, [(50, 256), (306, 256), (562, 88)]);
    assert_eq!(&model.disk[50 * 512..650 * 512], &data[..]);
}

#[test]
fn mdts_limits_the_chunk_size() {
    let mut harness = Harness::new(|model| {
        model.identify_controller = identify_controller("small mdts", 1, true, true);
    });
    let mut disk = harness.probe().expect("probe");
    assert_eq!(disk.max_chunk_bytes(), 8192);
    write_then_read(&mut disk, 0, 40, 3);
    let reads: Vec<u32> = harness
        .model()
        .io_log
        .iter()
        .filter(|record| record.opcode == NVM_OPCODE_READ)
        .map(|record| record.blocks)
        .collect();
    assert_eq!(reads, [16, 16, 8]);
}

#[test]
fn flush_and_discard_reach_the_device() {
    let mut harness = Harness::new(|_| {});
    let mut disk = harness.probe().expect("probe");
    write_then_read(&mut disk, 0, 64, 1);
    assert_eq!(run(&mut disk, Request::flush()).result, Ok(()));
    assert_eq!(harness.model().flushes, 1);

    assert_eq!(run(&mut disk, Request::discard(8, 16)).result, Ok(()));
    let model = harness.model();
    assert!(model.disk[8 * 512..24 * 512].iter().all(|&byte| byte == 0));
    assert!(model.disk[..8 * 512].iter().any(|&byte| byte != 0), "blocks before the range are kept");
    assert!(model.disk[24 * 512..64 * 512].iter().any(|&byte| byte != 0), "blocks after the range are kept");
    let discard = model.io_log.last().unwrap();
    assert_eq!((discard.opcode, discard.lba, discard.blocks), (NVM_OPCODE_DATASET_MANAGEMENT, 8, 16));
}

#[test]
fn requests_are_checked_before_they_reach_the_device() {
    let mut harness = Harness::new(|_| {});
    let mut disk = harness.probe().expect("probe");
    let capacity = disk.info().capacity;
    assert!(matches!(disk.submit(Request::read(capacity, 1, 512).unwrap()), Err(BlockError::OutOfRange { .. })));
    assert!(matches!(disk.submit(Request::write(0, 2, vec![0; 512])), Err(BlockError::BufferLength { .. })));
    assert_eq!(disk.submit(Request::discard(0, 0)), Err(BlockError::EmptyRequest));
    assert!(harness.model().io_log.is_empty());
    assert!(poll(&mut disk).is_empty());
}

#[test]
fn an_error_status_completes_with_io_and_the_disk_carries_on() {
    let mut harness = Harness::new(|_| {});
    let mut disk = harness.probe().expect("probe");
    harness.model().fail_next_io = Some(0x281); // media error class, DNR clear
    let failed = run(&mut disk, Request::read(0, 4, 512).unwrap());
    assert_eq!(failed.result, Err(BlockError::Io));
    assert_eq!(failed.buffer.len(), 4 * 512, "the buffer comes back");

    // An error in the second chunk of a split request fails the request once.
    harness.model().swallow_io = 1;
    let id = disk.submit(Request::read(0, 600, 512).unwrap()).unwrap();
    assert!(poll(&mut disk).is_empty());
    harness.model().fail_next_io = Some(STATUS_LBA_OUT_OF_RANGE);
    harness.model().release_swallowed();
    let completions = poll(&mut disk);
    assert_eq!(completions.len(), 1);
    assert_eq!((completions[0].id, completions[0].result), (id, Err(BlockError::Io)));
    assert!(poll(&mut disk).is_empty());

    write_then_read(&mut disk, 0, 4, 8);
    assert_eq!(disk.statistics().resets, 0);
}

#[test]
fn a_lost_command_times_out_then_the_controller_is_reset_and_works() {
    let mut harness = Harness::new(|_| {});
    let mut disk = harness.probe().expect("probe");
    harness.model().swallow_io = 2;
    let lost = disk.submit(Request::write(0, 8, pattern(4096, 1))).unwrap();
    harness.platform.advance(20_000_000_000);
    let aborted = disk.submit(Request::read(100, 1, 512).unwrap()).unwrap();
    assert!(poll(&mut disk).is_empty());
    harness.platform.advance(11_000_000_000);

    let mut completions = poll(&mut disk);
    completions.sort_by_key(|completion| completion.id);
    let results: Vec<(RequestId, Result<(), BlockError>)> =
        completions.iter().map(|completion| (completion.id, completion.result)).collect();
    assert_eq!(results, [(lost, Err(BlockError::Timeout)), (aborted, Err(BlockError::Io))]);
    assert_eq!(completions[0].buffer.len(), 4096);
    let statistics = disk.statistics();
    assert_eq!((statistics.timeouts, statistics.resets), (1, 1));
    assert_eq!(harness.model().enables, 2, "disabled and enabled again");
    assert!(!disk.is_failed());

    // Nothing completes twice, and the recreated queues work.
    harness.platform.advance(60_000_000_000);
    assert!(poll(&mut disk).is_empty());
    write_then_read(&mut disk, 0, 300, 2);
    assert_eq!(disk.statistics().resets, 1);
}

#[test]
fn hostile_completions_are_ignored_and_counted() {
    let mut harness = Harness::new(|_| {});
    let mut disk = harness.probe().expect("probe");
    harness.model().swallow_io = 1;
    let id = disk.submit(Request::read(0, 1, 512).unwrap()).unwrap();
    let swallowed = harness.model().swallowed[0];
    let real_id = command_id(&swallowed);

    // A wrong phase tag is no new entry: nothing is consumed.
    let doorbell_writes = harness.model().completion_doorbell_writes;
    harness.inject_io_completion(1, 1, real_id, 0, false);
    assert!(poll(&mut disk).is_empty());
    assert_eq!(harness.model().completion_doorbell_writes, doorbell_writes);
    assert_eq!(disk.statistics(), NvmeStatistics::default());

    harness.inject_io_completion(1, 1, 0x7FFF, 0, true); // slot 31: no such slot
    harness.inject_io_completion(1, 1, 1, 0, true); // slot 1: nothing in flight there
    harness.inject_io_completion(1, 1, real_id ^ 0x20, 0, true); // right slot, stale sequence
    harness.inject_io_completion(7, 1, real_id, 0, true); // wrong SQ id
    assert!(poll(&mut disk).is_empty());
    assert_eq!(disk.statistics().ignored_completions, 4);

    // The right command id with an SQ head beyond the tail: the head is not believed,
    // the command completes.
    harness.inject_io_completion(1, 50, real_id, 0, true);
    let completions = poll(&mut disk);
    assert_eq!(completions.len(), 1);
    assert_eq!(completions[0].id, id);
    assert_eq!(disk.statistics().bad_submission_queue_heads, 1);

    // The device's own completion of the same command arrives late: a duplicate.
    harness.model().release_swallowed();
    assert!(poll(&mut disk).is_empty());
    assert_eq!(disk.statistics().ignored_completions, 5);
    write_then_read(&mut disk, 0, 2, 6);
}

#[test]
fn bogus_completions_across_queue_wraps_keep_the_phase_in_step() {
    let mut harness = Harness::new(|_| {});
    let mut disk = harness.probe().expect("probe");
    for _ in 0..200 {
        harness.inject_io_completion(1, 0, 0x7FFF, 0, true);
        if harness.model().io_cq.unwrap().position == 0 {
            // A whole queue's worth is written; wait for the driver to consume it.
            poll(&mut disk);
        }
    }
    poll(&mut disk);
    assert_eq!(disk.statistics().ignored_completions, 200);
    write_then_read(&mut disk, 5, 3, 4);
}

#[test]
fn fatal_status_fails_everything_in_flight_and_resets() {
    let mut harness = Harness::new(|_| {});
    let mut disk = harness.probe().expect("probe");
    harness.model().swallow_io = 3;
    let ids: Vec<RequestId> = (0..3).map(|lba| disk.submit(Request::read(lba, 1, 512).unwrap()).unwrap()).collect();
    harness.model().csts |= CSTS_CFS;
    let mut completions = poll(&mut disk);
    completions.sort_by_key(|completion| completion.id);
    assert_eq!(completions.iter().map(|completion| completion.id).collect::<Vec<_>>(), ids);
    assert!(completions.iter().all(|completion| completion.result == Err(BlockError::Io)));
    let statistics = disk.statistics();
    assert_eq!((statistics.fatal_status, statistics.resets, statistics.timeouts), (1, 1, 0));
    assert_eq!(harness.model().csts & CSTS_CFS, 0);
    write_then_read(&mut disk, 9, 9, 9);
}

#[test]
fn a_failed_reset_fails_the_disk() {
    let mut harness = Harness::new(|_| {});
    let mut disk = harness.probe().expect("probe");
    harness.model().swallow_io = 1;
    let lost = disk.submit(Request::read(0, 1, 512).unwrap()).unwrap();
    harness.model().never_ready = true;
    harness.platform.advance(IO_TIMEOUT_NS + 1);
    let completions = poll(&mut disk);
    assert_eq!(completions.len(), 1);
    assert_eq!((completions[0].id, completions[0].result), (lost, Err(BlockError::Timeout)));
    assert!(disk.is_failed());
    assert_eq!(disk.submit(Request::read(0, 1, 512).unwrap()), Err(BlockError::Io));
    assert!(poll(&mut disk).is_empty());
    drop(disk);
    assert_eq!(harness.memory.allocated(), 0, "the controller is stopped, so its memory is free");
}

#[test]
fn the_queue_depth_is_enforced_and_every_request_completes_once() {
    let mut harness = Harness::new(|_| {});
    let mut disk = harness.probe().expect("probe");
    let depth = disk.info().queue_depth;
    harness.model().swallow_io = depth;
    let mut ids: Vec<RequestId> =
        (0..depth).map(|lba| disk.submit(Request::read(u64::from(lba), 1, 512).unwrap()).unwrap()).collect();
    assert_eq!(disk.submit(Request::flush()), Err(BlockError::QueueFull));
    harness.model().release_swallowed();
    let mut completed: Vec<RequestId> = poll(&mut disk).iter().map(|completion| completion.id).collect();
    completed.sort();
    ids.sort();
    assert_eq!(completed, ids);
    // Slots are free again, and keep working across many wraps of the queues.
    for round in 0..100u64 {
        assert_eq!(run(&mut disk, Request::read(round, 1, 512).unwrap()).result, Ok(()));
    }
    assert_eq!(disk.statistics(), NvmeStatistics::default());
}

#[test]
fn drop_shuts_down_and_frees_all_dma_memory() {
    let mut harness = Harness::new(|_| {});
    let mut disk = harness.probe().expect("probe");
    assert!(harness.memory.allocated() > 0);
    write_then_read(&mut disk, 0, 600, 1);
    drop(disk);
    assert_eq!(harness.memory.allocated(), 0);
    let model = harness.model();
    assert_eq!(model.shutdowns, 1);
    assert_eq!(model.cc & CC_EN, 0);
}

#[test]
fn a_controller_that_does_not_stop_keeps_its_dma_memory() {
    let mut harness = Harness::new(|_| {});
    let disk = harness.probe().expect("probe");
    let allocated = harness.memory.allocated();
    harness.model().never_stops = true;
    drop(disk);
    assert_eq!(harness.memory.allocated(), allocated, "leaked on purpose: the device may still write there");
}

// ---- Interrupts ----

#[test]
fn with_msix_the_io_cq_interrupts_and_the_mask_registers_are_left_alone() {
    let mut harness = Harness::new(|_| {});
    let table = harness.with_message_interrupts(true);
    let mut disk = harness.probe().expect("probe");
    assert_eq!(disk.interrupt_mode(), InterruptMode::MsiX { entries: 1 });
    assert_eq!(table.entry(0)[..3], [TEST_MESSAGE.0 as u32, 0, TEST_MESSAGE.1]);
    assert_eq!(harness.model().io_cq_interrupt, Some((true, 0)));
    assert_eq!(harness.model().interrupt_mask_writes, 0, "INTMS/INTMC are undefined under MSI-X");
    write_then_read(&mut disk, 0, 8, 1);

    // A reset creates the queue again, interrupts included.
    harness.model().csts |= CSTS_CFS;
    assert!(poll(&mut disk).is_empty());
    assert_eq!(disk.statistics().resets, 1);
    assert_eq!(harness.model().io_cq_interrupt, Some((true, 0)));
    assert_eq!(harness.model().interrupt_mask_writes, 0);
    write_then_read(&mut disk, 0, 8, 2);
    drop(disk);
    assert_eq!(harness.model().io_cq_interrupt, None, "the shutdown deleted the CQ and its IEN");
    assert_eq!(harness.model().interrupt_mask_writes, 0);
}

#[test]
fn with_msi_vector_0_is_unmasked_then_masked_before_shutdown() {
    let mut harness = Harness::new(|_| {});
    harness.with_message_interrupts(false);
    let mut disk = harness.probe().expect("probe");
    assert_eq!(disk.interrupt_mode(), InterruptMode::Msi);
    assert_eq!(harness.model().io_cq_interrupt, Some((true, 0)));
    assert_eq!(harness.model().interrupt_mask & 1, 0);
    assert!(harness.model().interrupt_mask_writes > 0, "unmasked with INTMC");
    write_then_read(&mut disk, 0, 8, 1);

    // Masked right before the shutdown (the fake's reset clears the mask after it).
    harness.model().never_stops = true;
    drop(disk);
    assert_eq!(harness.model().interrupt_mask & 1, 1);
}

#[test]
fn polled_controllers_create_the_io_cq_without_interrupts_and_mask_everything() {
    let mut harness = Harness::new(|_| {});
    let mut disk = harness.probe().expect("probe");
    assert_eq!(disk.interrupt_mode(), InterruptMode::Polled);
    assert_eq!(harness.model().io_cq_interrupt, Some((false, 0)));
    assert_eq!(harness.model().interrupt_mask, u32::MAX);
    write_then_read(&mut disk, 0, 8, 1);

    // A function with MSI-X but no message from the platform: polled too.
    let mut harness = Harness::new(|_| {});
    harness.with_message_interrupts(true);
    harness.platform.set_interrupt_message(None);
    let disk = harness.probe().expect("probe");
    assert_eq!(disk.interrupt_mode(), InterruptMode::Polled);
    assert_eq!(harness.model().io_cq_interrupt, Some((false, 0)));
}
