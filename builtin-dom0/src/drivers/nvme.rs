//! NVMe driver: one [`NvmeDisk`] (a [`BlockDevice`], named `nvme0n1` by the disk
//! table) per NVM Express controller (PCI class 01h/08h/02h), serving namespace 1
//! through one polled I/O queue pair.
//!
//! Spec: NVM Express Base Specification 1.4 — registers §3.1, controller
//! initialisation §7.6.1, queues §4.1–4.6 (phase tags §4.6), PRPs §4.3, Identify
//! §5.15, Create I/O CQ/SQ §5.3/§5.4, Set Features Number of Queues §5.21.1.7, NVM
//! commands Read/Write/Flush/Dataset Management §6.
//!
//! Shape:
//! * Bring-up (probe and every reset): CC.EN=0 and wait CSTS.RDY=0 (CAP.TO bounds
//!   every wait), program AQA/ASQ/ACQ for a 32-entry admin queue, CC with 4 KiB pages,
//!   64-byte SQEs and 16-byte CQEs, EN=1, wait RDY=1 (CSTS.CFS is an error), then Set
//!   Features Number of Queues and Create I/O CQ 1 (interrupt enabled when MSI or MSI-X
//!   is set up, see "Interrupts" below) and I/O SQ 1 of min(CAP.MQES+1, 64) entries.
//!   Admin commands run one at a time, synchronously, each with [`ADMIN_TIMEOUT_NS`].
//! * I/O: a fixed set of command slots (the queue depth). Each slot owns a DMA bounce
//!   region: page 0 is the slot's PRP list (written once at probe: it lists the slot's
//!   own data pages 1.., so it never changes), pages 1..=32 hold up to 128 KiB of data.
//!   A read or write larger than the slot (or than the controller's MDTS) is *split*:
//!   its chunks run one after another through the same slot, and the request
//!   completes once, after its last chunk (or at its first failed chunk).
//! * Command identifiers are `sequence << 5 | slot`, so a completion names its slot
//!   and a stale or duplicated identifier is recognised and ignored. At most
//!   `entries - 1` commands are outstanding, so the submission queue cannot overflow
//!   whatever SQ head the controller reports; the reported head is only checked and
//!   recorded.
//! * Completions are found by phase tag. Every value in a completion entry is
//!   untrusted: a wrong SQ id, an unknown or stale command id, or an SQ head outside
//!   the outstanding window is ignored and counted ([`NvmeStatistics`]), never a panic.
//!
//! Failure policy (the block layer's "every accepted request completes exactly once"):
//! * A chunk not completed within [`IO_TIMEOUT_NS`] completes its request with
//!   [`BlockError::Timeout`]; every *other* request in flight then completes with
//!   [`BlockError::Io`] (the reset below aborts them, and retrying writes behind the
//!   caller's back is not this driver's call), and the controller is reset and
//!   brought up again before any slot is reused, so a late DMA cannot land in a
//!   reused bounce buffer.
//! * CSTS.CFS (or CSTS reading all ones: the device is gone) seen while polling:
//!   everything in flight completes with [`BlockError::Io`] and the controller is reset.
//! * If a reset fails, the disk is failed: every later request is refused with
//!   [`BlockError::Io`]. Its DMA memory is kept until drop, and leaked at drop unless
//!   the controller is confirmed stopped.
//! * Drop: normal shutdown (CC.SHN), then CC.EN=0; DMA memory is freed only when
//!   CSTS.RDY=0 confirms the controller stopped (otherwise it is deliberately leaked).
//!
//! Polling is synchronous: a reset inside `poll_completions` waits for the controller
//! (bounded by CAP.TO and the admin timeout).
//!
//! Interrupts: probe sets up MSI-X or MSI with [`enable_message_interrupts`] once
//! decoding and bus mastering are on. When one of them is available, every bring-up
//! creates I/O CQ 1 with IEN = 1 and IV = 0 (CDW11, §5.3), so a posted completion sends
//! the message that wakes the polling CPU; the admin CQ (always vector 0, §3.1.3)
//! signals too, which only wakes that CPU early during bring-up. Masking (§3.1.3,
//! §3.1.4): under MSI, vector 0 is unmasked with INTMC; under MSI-X neither INTMS nor
//! INTMC is touched (access is undefined there: MSI-X entries carry their own masks);
//! when polled, INTMS masks everything. Completions are found by polling exactly as
//! without interrupts. At drop, under MSI vector 0 is masked with INTMS before the
//! shutdown; under MSI-X the disable that ends every shutdown (CC.EN = 0) deletes the
//! I/O CQ and with it its IEN. [`NvmeDisk::interrupt_mode`] says which mode is in use.

#[cfg(test)]
mod tests;

use super::interrupts::{enable_message_interrupts, InterruptMode};
use super::{DmaRegion, DriverError, Platform, ProbeContext, Registers};
use crate::block::{check_request, BlockDevice, BlockError, Completion, DeviceInfo, Op, Request, RequestId};
use crate::pci::{enable_bus_mastering, enable_memory_decoding, PciFunction};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

/// PCI class code of an NVM Express controller: mass storage / non-volatile memory /
/// NVM Express I/O controller.
pub const PCI_CLASS_STORAGE: u8 = 0x01;
pub const PCI_SUBCLASS_NVM: u8 = 0x08;
pub const PCI_PROG_IF_NVME: u8 = 0x02;

// Controller registers, offsets into BAR 0 (§3.1).
const NVME_REG_CAP: u64 = 0x00;
/// Interrupt Mask Set / Clear (§3.1.3, §3.1.4): one bit per MSI vector (bit 0 also
/// for INTx); not for use under MSI-X.
const NVME_REG_INTMS: u64 = 0x0C;
const NVME_REG_INTMC: u64 = 0x10;
/// The interrupt vector of the I/O completion queue (the admin queue's is 0 too).
const COMPLETION_VECTOR: u16 = 0;
const NVME_REG_CC: u64 = 0x14;
const NVME_REG_CSTS: u64 = 0x1C;
const NVME_REG_AQA: u64 = 0x24;
const NVME_REG_ASQ: u64 = 0x28;
const NVME_REG_ACQ: u64 = 0x30;
/// Doorbells start here: SQ y tail at `DBS + 2y × stride`, CQ y head one stride later.
const NVME_REG_DBS: u64 = 0x1000;

// CAP fields (§3.1.1).
const CAP_MQES_MASK: u64 = 0xFFFF;
const CAP_TO_SHIFT: u32 = 24;
const CAP_DSTRD_SHIFT: u32 = 32;
/// CAP.CSS bit 0 (register bit 37): the NVM command set.
const CAP_CSS_NVM: u64 = 1 << 37;
const CAP_MPSMIN_SHIFT: u32 = 48;
/// CAP.TO counts in units of 500 ms.
const CAP_TO_UNIT_NS: u64 = 500_000_000;

// CC fields (§3.1.5). CSS = 000b (NVM), MPS = 0 (2^(12+0) = 4 KiB pages) and
// AMS = 000b (round robin) are all zero.
const CC_EN: u32 = 1 << 0;
const CC_SHN_NORMAL: u32 = 1 << 14;
const CC_SHN_MASK: u32 = 3 << 14;
/// I/O submission queue entry size 2^6 = 64 bytes.
const CC_IOSQES: u32 = 6 << 16;
/// I/O completion queue entry size 2^4 = 16 bytes.
const CC_IOCQES: u32 = 4 << 20;

// CSTS fields (§3.1.6).
const CSTS_RDY: u32 = 1 << 0;
const CSTS_CFS: u32 = 1 << 1;
const CSTS_SHST_MASK: u32 = 3 << 2;
const CSTS_SHST_COMPLETE: u32 = 2 << 2;

// Admin command opcodes (§5, figure 139).
const ADMIN_OPCODE_CREATE_IO_SQ: u8 = 0x01;
const ADMIN_OPCODE_CREATE_IO_CQ: u8 = 0x05;
const ADMIN_OPCODE_IDENTIFY: u8 = 0x06;
const ADMIN_OPCODE_SET_FEATURES: u8 = 0x09;
/// Set Features feature identifier: Number of Queues.
const FEATURE_NUMBER_OF_QUEUES: u32 = 0x07;
/// Identify CNS values (§5.15.1).
const IDENTIFY_CNS_NAMESPACE: u32 = 0x00;
const IDENTIFY_CNS_CONTROLLER: u32 = 0x01;
/// Create I/O CQ/SQ CDW11 bit 0: the queue is physically contiguous.
const CREATE_QUEUE_PHYSICALLY_CONTIGUOUS: u32 = 1 << 0;
/// Create I/O CQ CDW11 bit 1 (IEN): interrupts enabled; bits 31:16 (IV): the vector.
const CREATE_COMPLETION_QUEUE_INTERRUPTS_ENABLED: u32 = 1 << 1;
const CREATE_COMPLETION_QUEUE_VECTOR_SHIFT: u32 = 16;

// NVM command set opcodes (§6, figure 346 of 1.4 / NVM command set).
const NVM_OPCODE_FLUSH: u8 = 0x00;
const NVM_OPCODE_WRITE: u8 = 0x01;
const NVM_OPCODE_READ: u8 = 0x02;
const NVM_OPCODE_DATASET_MANAGEMENT: u8 = 0x09;
/// Dataset Management CDW11 bit 2: AD, deallocate the ranges.
const DSM_ATTRIBUTE_DEALLOCATE: u32 = 1 << 2;

// Identify Controller data structure offsets (§5.15.2.2, figure 247).
const IDENTIFY_CONTROLLER_SN: core::ops::Range<usize> = 4..24;
const IDENTIFY_CONTROLLER_MN: core::ops::Range<usize> = 24..64;
const IDENTIFY_CONTROLLER_MDTS: usize = 77;
const IDENTIFY_CONTROLLER_NN: usize = 516;
const IDENTIFY_CONTROLLER_ONCS: usize = 520;
const IDENTIFY_CONTROLLER_VWC: usize = 525;
/// ONCS bit 2: the Dataset Management command is supported.
const ONCS_DATASET_MANAGEMENT: u16 = 1 << 2;
/// VWC bit 0: a volatile write cache is present.
const VWC_PRESENT: u8 = 1 << 0;

// Identify Namespace data structure offsets (§5.15.2.1, figure 245).
const IDENTIFY_NAMESPACE_NSZE: usize = 0;
const IDENTIFY_NAMESPACE_NLBAF: usize = 25;
const IDENTIFY_NAMESPACE_FLBAS: usize = 26;
const IDENTIFY_NAMESPACE_LBAF: usize = 128;
/// FLBAS bits 3:0 select one of the (up to 16) LBA formats.
const FLBAS_FORMAT_MASK: u8 = 0xF;

/// Bytes of a submission and of a completion queue entry.
const SUBMISSION_ENTRY_BYTES: usize = 64;
const COMPLETION_ENTRY_BYTES: usize = 16;
/// Memory page size programmed in CC.MPS; also the PRP granule.
const PAGE_BYTES: usize = 4096;

/// Admin queue entries (each of SQ and CQ).
const ADMIN_QUEUE_ENTRIES: u16 = 32;
/// The I/O queue pair holds at most this many entries (fewer if CAP.MQES says so).
const IO_QUEUE_MAX_ENTRIES: u16 = 64;
const ADMIN_QUEUE_ID: u16 = 0;
const IO_QUEUE_ID: u16 = 1;
/// The namespace this driver serves.
const NAMESPACE_ID: u32 = 1;

/// Command slots (the queue depth) at most; each costs 132 KiB of DMA memory.
const MAX_SLOTS: usize = 16;
/// Low bits of a command identifier that name the slot.
const SLOT_INDEX_BITS: u32 = 5;
const SLOT_INDEX_MASK: u16 = (1 << SLOT_INDEX_BITS) - 1;
const _: () = assert!(MAX_SLOTS <= 1 << SLOT_INDEX_BITS);
/// Data pages per slot (128 KiB), after the slot's PRP list page.
const SLOT_DATA_PAGES: usize = 32;
const SLOT_DATA_OFFSET: usize = PAGE_BYTES;
const SLOT_DATA_BYTES: usize = SLOT_DATA_PAGES * PAGE_BYTES;
const SLOT_REGION_BYTES: usize = SLOT_DATA_OFFSET + SLOT_DATA_BYTES;

/// How long one I/O command (one chunk of a request) may take.
pub const IO_TIMEOUT_NS: u64 = 30_000_000_000;
/// How long one admin command may take.
pub const ADMIN_TIMEOUT_NS: u64 = 10_000_000_000;
/// How long a normal shutdown (CC.SHN) may take at drop.
const SHUTDOWN_TIMEOUT_NS: u64 = 5_000_000_000;
/// Pause between two looks at a register or the admin queue while waiting.
const POLL_INTERVAL_US: u32 = 100;

/// True for an NVM Express controller (class 01h, subclass 08h, interface 02h).
pub fn matches(function: &PciFunction) -> bool {
    function.class.class == PCI_CLASS_STORAGE
        && function.class.subclass == PCI_SUBCLASS_NVM
        && function.class.prog_if == PCI_PROG_IF_NVME
}

/// Counters of what the controller did wrong or what the driver had to do about it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NvmeStatistics {
    /// Completion entries ignored: wrong SQ id, unknown, stale or duplicated command id.
    pub ignored_completions: u64,
    /// Completion entries whose SQ head was outside the outstanding window.
    pub bad_submission_queue_heads: u64,
    /// I/O commands that timed out.
    pub timeouts: u64,
    /// Times CSTS.CFS (or an all-ones CSTS) was seen while polling.
    pub fatal_status: u64,
    /// Controller resets after probe (each timeout or fatal status causes one).
    pub resets: u64,
}

/// CAP, decoded and checked once.
#[derive(Debug, Clone, Copy)]
struct Capabilities {
    /// Maximum queue entries (CAP.MQES is 0-based; this is MQES + 1, at least 2).
    max_queue_entries: u32,
    /// Bytes between two doorbells (4 << CAP.DSTRD).
    doorbell_stride: u64,
    /// Worst-case time for CSTS.RDY to follow CC.EN.
    ready_timeout_ns: u64,
}

impl Capabilities {
    fn decode(cap: u64, bar_length: u64) -> Result<Capabilities, DriverError> {
        if cap == u64::MAX {
            return Err(DriverError::Device(String::from("CAP reads all ones (no device behind BAR 0)")));
        }
        let mqes = cap & CAP_MQES_MASK;
        if mqes == 0 {
            return Err(DriverError::Unsupported(String::from("CAP.MQES is 0 (queues of one entry)")));
        }
        if cap & CAP_CSS_NVM == 0 {
            return Err(DriverError::Unsupported(String::from("controller lacks the NVM command set")));
        }
        let mpsmin = (cap >> CAP_MPSMIN_SHIFT) & 0xF;
        if mpsmin != 0 {
            return Err(DriverError::Unsupported(format!("minimum page size 2^{} bytes (4 KiB needed)", 12 + mpsmin)));
        }
        let doorbell_stride = 4u64 << ((cap >> CAP_DSTRD_SHIFT) & 0xF);
        let capabilities = Capabilities {
            max_queue_entries: mqes as u32 + 1,
            doorbell_stride,
            ready_timeout_ns: ((cap >> CAP_TO_SHIFT) & 0xFF).max(1) * CAP_TO_UNIT_NS,
        };
        let doorbells_end = capabilities.doorbell(IO_QUEUE_ID, true) + 4;
        if doorbells_end > bar_length {
            return Err(DriverError::Unsupported(format!(
                "BAR 0 of {bar_length:#x} bytes ends before the I/O queue doorbells ({doorbells_end:#x})"
            )));
        }
        Ok(capabilities)
    }

    /// Offset of queue `queue_id`'s SQ tail doorbell, or with `completion` its CQ head
    /// doorbell.
    fn doorbell(&self, queue_id: u16, completion: bool) -> u64 {
        NVME_REG_DBS + (2 * u64::from(queue_id) + u64::from(completion)) * self.doorbell_stride
    }
}

/// A submission queue entry (§4.2), before it is written to the queue.
#[derive(Debug, Clone, Copy, Default)]
struct SubmissionEntry {
    opcode: u8,
    command_id: u16,
    namespace_id: u32,
    prp1: u64,
    prp2: u64,
    /// Command dwords 10 to 15.
    command_dwords: [u32; 6],
}

impl SubmissionEntry {
    fn to_bytes(self) -> [u8; SUBMISSION_ENTRY_BYTES] {
        let mut bytes = [0u8; SUBMISSION_ENTRY_BYTES];
        let dword0 = u32::from(self.opcode) | u32::from(self.command_id) << 16;
        bytes[0..4].copy_from_slice(&dword0.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.namespace_id.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.prp1.to_le_bytes());
        bytes[32..40].copy_from_slice(&self.prp2.to_le_bytes());
        for (index, dword) in self.command_dwords.iter().enumerate() {
            let offset = 40 + 4 * index;
            bytes[offset..offset + 4].copy_from_slice(&dword.to_le_bytes());
        }
        bytes
    }
}

/// A completion queue entry (§4.6), copied out of the queue; every field untrusted.
#[derive(Debug, Clone, Copy)]
struct CompletionEntry {
    submission_queue_head: u16,
    submission_queue_id: u16,
    command_id: u16,
    /// Status field (DW3 bits 31:17: SC, SCT, CRD, M, DNR); 0 is success.
    status: u16,
}

impl CompletionEntry {
    fn from_bytes(bytes: &[u8; COMPLETION_ENTRY_BYTES]) -> CompletionEntry {
        let dword = |index: usize| {
            let mut value = [0u8; 4];
            value.copy_from_slice(&bytes[4 * index..4 * index + 4]);
            u32::from_le_bytes(value)
        };
        let dword2 = dword(2);
        let dword3 = dword(3);
        CompletionEntry {
            submission_queue_head: dword2 as u16,
            submission_queue_id: (dword2 >> 16) as u16,
            command_id: dword3 as u16,
            status: (dword3 >> 17) as u16,
        }
    }
}

/// One SQ/CQ pair in one DMA region: the SQ at offset 0, the CQ on the next page
/// boundary, then `extra_pages` pages for the owner.
struct QueuePair {
    id: u16,
    entries: u16,
    memory: Box<dyn DmaRegion>,
    completion_offset: usize,
    /// Where the next command goes.
    submission_tail: u16,
    /// The last SQ head the controller reported that passed the check.
    submission_head: u16,
    /// Next completion entry to look at.
    completion_head: u16,
    /// The phase tag of a new entry at `completion_head`.
    phase: bool,
}

impl QueuePair {
    fn new(platform: &dyn Platform, id: u16, entries: u16, extra_pages: usize) -> Result<QueuePair, DriverError> {
        let entries_usize = usize::from(entries);
        let completion_offset = (entries_usize * SUBMISSION_ENTRY_BYTES).div_ceil(PAGE_BYTES) * PAGE_BYTES;
        let completion_bytes = (entries_usize * COMPLETION_ENTRY_BYTES).div_ceil(PAGE_BYTES) * PAGE_BYTES;
        let length = completion_offset + completion_bytes + extra_pages * PAGE_BYTES;
        let memory = platform.allocate_dma(length).ok_or(DriverError::NoMemory)?;
        if memory.len() < length {
            return Err(DriverError::NoMemory);
        }
        Ok(QueuePair {
            id,
            entries,
            memory,
            completion_offset,
            submission_tail: 0,
            submission_head: 0,
            completion_head: 0,
            phase: true,
        })
    }

    /// Offset of the first extra page.
    fn extra_offset(&self) -> usize {
        self.completion_offset + (usize::from(self.entries) * COMPLETION_ENTRY_BYTES).div_ceil(PAGE_BYTES) * PAGE_BYTES
    }

    fn submission_address(&self) -> u64 {
        self.memory.physical_address()
    }

    fn completion_address(&self) -> u64 {
        self.memory.physical_address() + self.completion_offset as u64
    }

    /// Empties both queues, as the controller sees them after a reset or creation.
    fn clear(&mut self) {
        self.memory.zero(0, self.extra_offset());
        self.submission_tail = 0;
        self.submission_head = 0;
        self.completion_head = 0;
        self.phase = true;
    }

    /// Writes `entry` at the tail and rings the SQ tail doorbell. The caller keeps at
    /// most `entries - 1` commands outstanding, so the entry overwritten is one the
    /// controller has already fetched.
    fn submit(&mut self, registers: &dyn Registers, capabilities: &Capabilities, entry: SubmissionEntry) {
        let offset = usize::from(self.submission_tail) * SUBMISSION_ENTRY_BYTES;
        self.memory.write_bytes(offset, &entry.to_bytes());
        self.submission_tail = (self.submission_tail + 1) % self.entries;
        registers.write32(capabilities.doorbell(self.id, false), u32::from(self.submission_tail));
    }

    /// The next new completion entry, if its phase tag says it is new; advances the
    /// head (the caller rings the doorbell once per batch).
    fn next_completion(&mut self) -> Option<CompletionEntry> {
        let offset = self.completion_offset + usize::from(self.completion_head) * COMPLETION_ENTRY_BYTES;
        // The phase tag is in the last dword; once it is seen, the entry is complete.
        let status_dword = self.memory.read_u32(offset + 12);
        if (status_dword >> 16) & 1 != u32::from(self.phase) {
            return None;
        }
        let mut bytes = [0u8; COMPLETION_ENTRY_BYTES];
        self.memory.read_bytes(offset, &mut bytes);
        self.completion_head += 1;
        if self.completion_head == self.entries {
            self.completion_head = 0;
            self.phase = !self.phase;
        }
        Some(CompletionEntry::from_bytes(&bytes))
    }

    fn ring_completion_doorbell(&self, registers: &dyn Registers, capabilities: &Capabilities) {
        registers.write32(capabilities.doorbell(self.id, true), u32::from(self.completion_head));
    }

    /// Records a reported SQ head if it lies between the last one and the tail (the
    /// controller cannot have fetched further); false if it does not.
    fn note_submission_head(&mut self, reported: u16) -> bool {
        if reported >= self.entries {
            return false;
        }
        let distance = |to: u16| (to + self.entries - self.submission_head) % self.entries;
        if distance(reported) > distance(self.submission_tail) {
            return false;
        }
        self.submission_head = reported;
        true
    }
}

/// The controller: registers, admin and I/O queue pairs, bring-up and admin commands.
struct Controller {
    registers: Box<dyn Registers>,
    platform: Arc<dyn Platform>,
    capabilities: Capabilities,
    /// Admin queues; its one extra page receives Identify data.
    admin: QueuePair,
    io: QueuePair,
    admin_command_sequence: u16,
    statistics: NvmeStatistics,
    /// Set once shut down: whether CSTS.RDY=0 confirmed the controller stopped.
    stopped: Option<bool>,
    /// How the function signals (set up once at probe).
    interrupts: InterruptMode,
}

impl Controller {
    fn read_status(&self) -> u32 {
        self.registers.read32(NVME_REG_CSTS)
    }

    /// Waits until `done(CSTS)` holds. CSTS reading all ones (surprise removal) is an
    /// error; so is CSTS.CFS when `fatal_is_error`.
    fn wait_status(
        &self,
        what: &'static str,
        timeout_ns: u64,
        fatal_is_error: bool,
        done: impl Fn(u32) -> bool,
    ) -> Result<(), DriverError> {
        let deadline = self.platform.now_ns().saturating_add(timeout_ns);
        loop {
            let status = self.read_status();
            if status == u32::MAX {
                return Err(DriverError::Device(String::from("CSTS reads all ones (device gone)")));
            }
            if fatal_is_error && status & CSTS_CFS != 0 {
                return Err(DriverError::Device(format!("controller fatal status while waiting for {what}")));
            }
            if done(status) {
                return Ok(());
            }
            if self.platform.now_ns() > deadline {
                return Err(DriverError::Timeout(what));
            }
            self.platform.delay_us(POLL_INTERVAL_US);
        }
    }

    /// CC.EN=0 and CSTS.RDY=0 (§7.6.1 step 1, §3.1.5): all queues are gone and the
    /// controller no longer touches host memory.
    fn disable(&self) -> Result<(), DriverError> {
        let configuration = self.registers.read32(NVME_REG_CC);
        let status = self.read_status();
        if configuration & CC_EN != 0 && status & (CSTS_RDY | CSTS_CFS) == 0 {
            // Clearing EN while an enable is still in progress is undefined (§3.1.5):
            // let it finish first, whatever the outcome.
            let _ = self.wait_status("CSTS.RDY=1 before disabling", self.capabilities.ready_timeout_ns, true, |s| {
                s & CSTS_RDY != 0
            });
        }
        self.registers.write32(NVME_REG_CC, configuration & !(CC_EN | CC_SHN_MASK));
        self.wait_status("CSTS.RDY=0", self.capabilities.ready_timeout_ns, false, |s| s & CSTS_RDY == 0)
    }

    /// Disable, admin queue set-up, enable (§7.6.1 steps 1–5).
    fn enable_with_admin_queue(&mut self) -> Result<(), DriverError> {
        self.disable()?;
        self.admin.clear();
        self.io.clear();
        let last_entry = u32::from(self.admin.entries) - 1;
        self.registers.write32(NVME_REG_AQA, last_entry << 16 | last_entry);
        self.registers.write64(NVME_REG_ASQ, self.admin.submission_address());
        self.registers.write64(NVME_REG_ACQ, self.admin.completion_address());
        self.registers.write32(NVME_REG_CC, CC_IOSQES | CC_IOCQES);
        self.registers.write32(NVME_REG_CC, CC_IOSQES | CC_IOCQES | CC_EN);
        self.wait_status("CSTS.RDY=1", self.capabilities.ready_timeout_ns, true, |s| s & CSTS_RDY != 0)?;
        match self.interrupts {
            InterruptMode::MsiX { .. } => {}
            InterruptMode::Msi => self.registers.write32(NVME_REG_INTMC, 1 << COMPLETION_VECTOR),
            // Nothing would handle an interrupt: keep every vector quiet.
            InterruptMode::Polled => self.registers.write32(NVME_REG_INTMS, u32::MAX),
        }
        Ok(())
    }

    /// Runs one admin command to completion; a non-zero status is an error.
    fn admin_command(&mut self, mut entry: SubmissionEntry) -> Result<CompletionEntry, DriverError> {
        self.admin_command_sequence = self.admin_command_sequence.wrapping_add(1);
        entry.command_id = self.admin_command_sequence;
        self.admin.submit(&*self.registers, &self.capabilities, entry);
        let deadline = self.platform.now_ns().saturating_add(ADMIN_TIMEOUT_NS);
        loop {
            let mut consumed = false;
            let mut answer = None;
            while let Some(completion) = self.admin.next_completion() {
                consumed = true;
                if completion.submission_queue_id != ADMIN_QUEUE_ID || completion.command_id != entry.command_id {
                    self.statistics.ignored_completions += 1;
                    continue;
                }
                if !self.admin.note_submission_head(completion.submission_queue_head) {
                    self.statistics.bad_submission_queue_heads += 1;
                }
                answer = Some(completion);
                break;
            }
            if consumed {
                self.admin.ring_completion_doorbell(&*self.registers, &self.capabilities);
            }
            if let Some(completion) = answer {
                if completion.status != 0 {
                    return Err(DriverError::Device(format!(
                        "admin command {:#04x} failed with status {:#06x}",
                        entry.opcode, completion.status
                    )));
                }
                return Ok(completion);
            }
            let status = self.read_status();
            if status == u32::MAX || status & CSTS_CFS != 0 {
                return Err(DriverError::Device(format!(
                    "controller fatal status during admin command {:#04x}",
                    entry.opcode
                )));
            }
            if self.platform.now_ns() > deadline {
                return Err(DriverError::Timeout("admin command completion"));
            }
            self.platform.delay_us(POLL_INTERVAL_US);
        }
    }

    /// Identify with CNS `cns` for `namespace_id`: the 4 KiB data structure, copied out.
    fn identify(&mut self, cns: u32, namespace_id: u32) -> Result<Vec<u8>, DriverError> {
        let data_offset = self.admin.extra_offset();
        self.admin.memory.zero(data_offset, PAGE_BYTES);
        let mut command_dwords = [0; 6];
        command_dwords[0] = cns;
        self.admin_command(SubmissionEntry {
            opcode: ADMIN_OPCODE_IDENTIFY,
            namespace_id,
            prp1: self.admin.memory.physical_address() + data_offset as u64,
            command_dwords,
            ..SubmissionEntry::default()
        })?;
        let mut data = vec![0u8; PAGE_BYTES];
        self.admin.memory.read_bytes(data_offset, &mut data);
        Ok(data)
    }

    /// Number of Queues, then I/O CQ 1 and I/O SQ 1 (§7.6.1 steps 7–8).
    fn create_io_queues(&mut self) -> Result<(), DriverError> {
        // Asks for one SQ and one CQ (0-based counts). A refusal is not fatal: some
        // controllers take queue 1 without it, and creating it says for sure.
        let _ = self.admin_command(SubmissionEntry {
            opcode: ADMIN_OPCODE_SET_FEATURES,
            command_dwords: [FEATURE_NUMBER_OF_QUEUES, 0, 0, 0, 0, 0],
            ..SubmissionEntry::default()
        });
        self.io.clear();
        let size_and_id = (u32::from(self.io.entries) - 1) << 16 | u32::from(IO_QUEUE_ID);
        // Completion is polled either way; the interrupt only wakes the polling CPU.
        let interrupts = if self.interrupts.has_vector(COMPLETION_VECTOR) {
            CREATE_COMPLETION_QUEUE_INTERRUPTS_ENABLED
                | u32::from(COMPLETION_VECTOR) << CREATE_COMPLETION_QUEUE_VECTOR_SHIFT
        } else {
            0
        };
        self.admin_command(SubmissionEntry {
            opcode: ADMIN_OPCODE_CREATE_IO_CQ,
            prp1: self.io.completion_address(),
            command_dwords: [size_and_id, CREATE_QUEUE_PHYSICALLY_CONTIGUOUS | interrupts, 0, 0, 0, 0],
            ..SubmissionEntry::default()
        })?;
        let completion_queue_and_flags = u32::from(IO_QUEUE_ID) << 16 | CREATE_QUEUE_PHYSICALLY_CONTIGUOUS;
        self.admin_command(SubmissionEntry {
            opcode: ADMIN_OPCODE_CREATE_IO_SQ,
            prp1: self.io.submission_address(),
            command_dwords: [size_and_id, completion_queue_and_flags, 0, 0, 0, 0],
            ..SubmissionEntry::default()
        })?;
        Ok(())
    }

    /// Normal shutdown then disable, once; true if CSTS.RDY=0 confirmed the stop.
    fn shut_down(&mut self) -> bool {
        if let Some(stopped) = self.stopped {
            return stopped;
        }
        if self.interrupts == InterruptMode::Msi {
            // Quiet before stopping (under MSI-X, CC.EN = 0 below deletes the CQ).
            self.registers.write32(NVME_REG_INTMS, 1 << COMPLETION_VECTOR);
        }
        let configuration = self.registers.read32(NVME_REG_CC);
        let status = self.read_status();
        if status != u32::MAX && configuration & CC_EN != 0 && status & CSTS_RDY != 0 && status & CSTS_CFS == 0 {
            // Lets a volatile write cache reach the medium; a failure here still
            // leaves the disable below to stop the controller.
            self.registers.write32(NVME_REG_CC, (configuration & !CC_SHN_MASK) | CC_SHN_NORMAL);
            let _ =
                self.wait_status("shutdown", SHUTDOWN_TIMEOUT_NS, false, |s| s & CSTS_SHST_MASK == CSTS_SHST_COMPLETE);
        }
        let stopped = self.disable().is_ok();
        self.stopped = Some(stopped);
        stopped
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if !self.shut_down() {
            // The controller may still write to its queues: never give them back.
            super::leak_dma(&mut self.admin.memory);
            super::leak_dma(&mut self.io.memory);
        }
    }
}

/// A request in a slot; one chunk of it is on the device.
struct InFlight {
    id: RequestId,
    request: Request,
    /// Bytes of the request finished by earlier chunks.
    bytes_done: usize,
    /// Bytes of the chunk on the device.
    chunk_bytes: usize,
    /// The command identifier of the chunk on the device.
    command_id: u16,
    deadline_ns: u64,
}

/// A command slot: a bounce region (PRP list page, then data pages) and its request.
struct Slot {
    bounce: Box<dyn DmaRegion>,
    in_flight: Option<InFlight>,
}

/// Namespace 1 of one NVMe controller as a [`BlockDevice`].
pub struct NvmeDisk {
    controller: Controller,
    slots: Vec<Slot>,
    info: DeviceInfo,
    serial_number: String,
    /// Identify Controller VWC: flushes have something to do.
    volatile_write_cache: bool,
    /// Largest chunk one command carries (slot size, or less if MDTS says so).
    max_chunk_bytes: usize,
    next_request_id: u64,
    command_sequence: u16,
    /// A reset failed: requests are refused, nothing is in flight.
    failed: bool,
}

/// Printable ASCII of an Identify string field, trailing spaces and NULs trimmed.
fn identify_string(bytes: &[u8]) -> String {
    let text: String =
        bytes.iter().map(|&byte| if (0x20..0x7F).contains(&byte) { char::from(byte) } else { ' ' }).collect();
    String::from(text.trim())
}

fn read_le_u16(data: &[u8], offset: usize) -> u16 {
    let mut bytes = [0u8; 2];
    if let Some(source) = data.get(offset..offset + 2) {
        bytes.copy_from_slice(source);
    }
    u16::from_le_bytes(bytes)
}

fn read_le_u32(data: &[u8], offset: usize) -> u32 {
    let mut bytes = [0u8; 4];
    if let Some(source) = data.get(offset..offset + 4) {
        bytes.copy_from_slice(source);
    }
    u32::from_le_bytes(bytes)
}

fn read_le_u64(data: &[u8], offset: usize) -> u64 {
    let mut bytes = [0u8; 8];
    if let Some(source) = data.get(offset..offset + 8) {
        bytes.copy_from_slice(source);
    }
    u64::from_le_bytes(bytes)
}

/// What Identify Controller tells this driver.
struct ControllerIdentity {
    model: String,
    serial_number: String,
    /// Largest transfer in bytes (MDTS), if limited.
    max_transfer_bytes: Option<usize>,
    volatile_write_cache: bool,
    dataset_management: bool,
}

impl ControllerIdentity {
    fn decode(data: &[u8]) -> Result<ControllerIdentity, DriverError> {
        if read_le_u32(data, IDENTIFY_CONTROLLER_NN) == 0 {
            return Err(DriverError::Device(String::from("controller reports no namespaces")));
        }
        let mdts = data.get(IDENTIFY_CONTROLLER_MDTS).copied().unwrap_or(0);
        // MDTS is a power of two of the minimum page size (4 KiB, checked in CAP); 0
        // means no limit, and anything at or beyond the slot size is no limit to us.
        let max_transfer_bytes = match mdts {
            0 => None,
            exponent if u32::from(exponent) < 20 => Some(PAGE_BYTES << exponent),
            _ => None,
        };
        Ok(ControllerIdentity {
            model: identify_string(data.get(IDENTIFY_CONTROLLER_MN).unwrap_or_default()),
            serial_number: identify_string(data.get(IDENTIFY_CONTROLLER_SN).unwrap_or_default()),
            max_transfer_bytes,
            volatile_write_cache: data.get(IDENTIFY_CONTROLLER_VWC).is_some_and(|vwc| vwc & VWC_PRESENT != 0),
            dataset_management: read_le_u16(data, IDENTIFY_CONTROLLER_ONCS) & ONCS_DATASET_MANAGEMENT != 0,
        })
    }
}

/// Capacity and logical block size from Identify Namespace.
fn decode_namespace(data: &[u8]) -> Result<(u64, u32), DriverError> {
    let capacity = read_le_u64(data, IDENTIFY_NAMESPACE_NSZE);
    if capacity == 0 {
        return Err(DriverError::Device(String::from("namespace 1 is not active (NSZE 0)")));
    }
    let format_count = data.get(IDENTIFY_NAMESPACE_NLBAF).copied().unwrap_or(0).saturating_add(1);
    let format_index = data.get(IDENTIFY_NAMESPACE_FLBAS).copied().unwrap_or(0) & FLBAS_FORMAT_MASK;
    if format_index >= format_count {
        return Err(DriverError::Device(format!("FLBAS selects LBA format {format_index} of {format_count}")));
    }
    let format = read_le_u32(data, IDENTIFY_NAMESPACE_LBAF + 4 * usize::from(format_index));
    let metadata_bytes = format & 0xFFFF;
    let lbads = (format >> 16) & 0xFF;
    if metadata_bytes != 0 {
        return Err(DriverError::Unsupported(format!("LBA format with {metadata_bytes} bytes of metadata")));
    }
    if !(9..=12).contains(&lbads) {
        return Err(DriverError::Unsupported(format!("logical block size 2^{lbads}")));
    }
    Ok((capacity, 1 << lbads))
}

/// Finds and brings up the controller behind `context.function` and serves its
/// namespace 1.
pub fn probe(context: ProbeContext<'_>) -> Result<NvmeDisk, DriverError> {
    let function = context.function;
    if !matches(function) {
        return Err(DriverError::NotMine);
    }
    let bar = function.bar(0).filter(|bar| bar.is_memory()).ok_or(DriverError::NoBar(0))?;
    enable_memory_decoding(context.config, function.address);
    enable_bus_mastering(context.config, function.address);
    let platform = context.platform.clone();
    // Also switches INTx off: a line nobody acknowledges must not stay asserted.
    let interrupts = enable_message_interrupts(function, context.config, &*platform);
    let registers = platform.map_bar(bar).ok_or(DriverError::NoBar(0))?;
    let capabilities = Capabilities::decode(registers.read64(NVME_REG_CAP), registers.len())?;
    let io_entries = capabilities.max_queue_entries.min(u32::from(IO_QUEUE_MAX_ENTRIES)) as u16;
    let admin = QueuePair::new(&*platform, ADMIN_QUEUE_ID, ADMIN_QUEUE_ENTRIES, 1)?;
    let io = QueuePair::new(&*platform, IO_QUEUE_ID, io_entries, 0)?;
    let mut controller = Controller {
        registers,
        platform: platform.clone(),
        capabilities,
        admin,
        io,
        admin_command_sequence: 0,
        statistics: NvmeStatistics::default(),
        stopped: None,
        interrupts,
    };

    controller.enable_with_admin_queue()?;
    let identity = ControllerIdentity::decode(&controller.identify(IDENTIFY_CNS_CONTROLLER, 0)?)?;
    let (capacity, block_size) = decode_namespace(&controller.identify(IDENTIFY_CNS_NAMESPACE, NAMESPACE_ID)?)?;
    controller.create_io_queues()?;

    let slot_count = (usize::from(io_entries) - 1).min(MAX_SLOTS);
    let mut slots = Vec::new();
    slots.try_reserve_exact(slot_count).map_err(|_| DriverError::NoMemory)?;
    for _ in 0..slot_count {
        let bounce = platform.allocate_dma(SLOT_REGION_BYTES).ok_or(DriverError::NoMemory)?;
        if bounce.len() < SLOT_REGION_BYTES {
            return Err(DriverError::NoMemory);
        }
        // The PRP list names data pages 1.. (page 0 goes in PRP1); PRP2 points here
        // for transfers of more than two pages.
        let data_address = bounce.physical_address() + SLOT_DATA_OFFSET as u64;
        for page in 1..SLOT_DATA_PAGES {
            bounce.write_u64((page - 1) * 8, data_address + (page * PAGE_BYTES) as u64);
        }
        slots.push(Slot { bounce, in_flight: None });
    }

    let info = DeviceInfo {
        capacity,
        logical_block_size: block_size,
        physical_block_size: block_size,
        read_only: false,
        queue_depth: slot_count as u32,
        model: identity.model,
        // With no volatile write cache, Flush completes at once on the device (§6.8):
        // still correct to send, and callers need not special-case it.
        supports_flush: true,
        supports_discard: identity.dataset_management,
    };
    Ok(NvmeDisk {
        controller,
        slots,
        info,
        serial_number: identity.serial_number,
        volatile_write_cache: identity.volatile_write_cache,
        max_chunk_bytes: identity.max_transfer_bytes.map_or(SLOT_DATA_BYTES, |limit| limit.min(SLOT_DATA_BYTES)),
        next_request_id: 0,
        command_sequence: 0,
        failed: false,
    })
}

impl NvmeDisk {
    /// The controller's serial number (Identify Controller SN), trimmed.
    pub fn serial_number(&self) -> &str {
        &self.serial_number
    }

    /// The controller has a volatile write cache (Identify Controller VWC), so a
    /// flush is needed for durability; without one, flushes complete at once.
    pub fn has_volatile_write_cache(&self) -> bool {
        self.volatile_write_cache
    }

    /// How the controller signals completions (MSI-X, MSI, or polled only).
    pub fn interrupt_mode(&self) -> InterruptMode {
        self.controller.interrupts
    }

    /// What the controller did wrong so far, and how often the driver reset it.
    pub fn statistics(&self) -> NvmeStatistics {
        self.controller.statistics
    }

    /// A reset failed; the disk refuses every request.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Largest number of bytes one command moves (requests beyond it are split).
    pub fn max_chunk_bytes(&self) -> usize {
        self.max_chunk_bytes
    }

    /// Puts the next chunk of the request in `slot_index` on the device.
    fn issue_chunk(&mut self, slot_index: usize) {
        self.command_sequence = self.command_sequence.wrapping_add(1) & (u16::MAX >> SLOT_INDEX_BITS);
        let command_id = self.command_sequence << SLOT_INDEX_BITS | slot_index as u16;
        let now = self.controller.platform.now_ns();
        let block_size = self.info.logical_block_size as usize;
        let max_chunk_bytes = self.max_chunk_bytes;
        let Some(slot) = self.slots.get_mut(slot_index) else {
            return;
        };
        let Some(in_flight) = slot.in_flight.as_mut() else {
            return;
        };
        let data_address = slot.bounce.physical_address() + SLOT_DATA_OFFSET as u64;
        let mut entry = SubmissionEntry { command_id, namespace_id: NAMESPACE_ID, ..SubmissionEntry::default() };
        let request = &in_flight.request;
        match request.op {
            Op::Read | Op::Write => {
                let chunk_bytes = (request.buffer.len() - in_flight.bytes_done).min(max_chunk_bytes);
                if request.op == Op::Write {
                    let chunk = request.buffer.get(in_flight.bytes_done..in_flight.bytes_done + chunk_bytes);
                    slot.bounce.write_bytes(SLOT_DATA_OFFSET, chunk.unwrap_or_default());
                }
                // check_request proved lba + blocks ≤ capacity, so this cannot overflow.
                let first_block = request.lba + (in_flight.bytes_done / block_size) as u64;
                let blocks = (chunk_bytes / block_size) as u32;
                let pages = chunk_bytes.div_ceil(PAGE_BYTES);
                entry.opcode = if request.op == Op::Read { NVM_OPCODE_READ } else { NVM_OPCODE_WRITE };
                entry.prp1 = data_address;
                entry.prp2 = match pages {
                    0 | 1 => 0,
                    2 => data_address + PAGE_BYTES as u64,
                    _ => slot.bounce.physical_address(),
                };
                // SLBA in CDW10–11; NLB (0-based, ≤ 256 here) in CDW12 bits 15:0.
                entry.command_dwords[0] = first_block as u32;
                entry.command_dwords[1] = (first_block >> 32) as u32;
                entry.command_dwords[2] = blocks.saturating_sub(1) & 0xFFFF;
                in_flight.chunk_bytes = chunk_bytes;
            }
            Op::Flush => entry.opcode = NVM_OPCODE_FLUSH,
            Op::Discard => {
                // One range (§6.7, figure 364): context attributes, length in blocks,
                // starting LBA.
                let mut range = [0u8; 16];
                range[4..8].copy_from_slice(&request.blocks.to_le_bytes());
                range[8..16].copy_from_slice(&request.lba.to_le_bytes());
                slot.bounce.write_bytes(SLOT_DATA_OFFSET, &range);
                entry.opcode = NVM_OPCODE_DATASET_MANAGEMENT;
                entry.prp1 = data_address;
                entry.command_dwords[0] = 0; // NR: one range (0-based)
                entry.command_dwords[1] = DSM_ATTRIBUTE_DEALLOCATE;
            }
        }
        in_flight.command_id = command_id;
        in_flight.deadline_ns = now.saturating_add(IO_TIMEOUT_NS);
        let controller = &mut self.controller;
        controller.io.submit(&*controller.registers, &controller.capabilities, entry);
    }

    /// Hands the request in `slot_index` back with `result`.
    fn complete(&mut self, slot_index: usize, result: Result<(), BlockError>, out: &mut Vec<Completion>) {
        if let Some(in_flight) = self.slots.get_mut(slot_index).and_then(|slot| slot.in_flight.take()) {
            out.push(Completion { id: in_flight.id, result, buffer: in_flight.request.buffer });
        }
    }

    /// Acts on one I/O completion entry (already copied out of the queue).
    fn handle_completion(&mut self, entry: CompletionEntry, out: &mut Vec<Completion>) {
        let statistics = &mut self.controller.statistics;
        if entry.submission_queue_id != IO_QUEUE_ID {
            statistics.ignored_completions += 1;
            return;
        }
        let slot_index = usize::from(entry.command_id & SLOT_INDEX_MASK);
        let Some(slot) = self.slots.get_mut(slot_index) else {
            statistics.ignored_completions += 1;
            return;
        };
        let Some(in_flight) = slot.in_flight.as_mut().filter(|in_flight| in_flight.command_id == entry.command_id)
        else {
            statistics.ignored_completions += 1;
            return;
        };
        if !self.controller.io.note_submission_head(entry.submission_queue_head) {
            self.controller.statistics.bad_submission_queue_heads += 1;
        }
        if entry.status != 0 {
            self.complete(slot_index, Err(BlockError::Io), out);
            return;
        }
        let op = in_flight.request.op;
        if op == Op::Read {
            let start = in_flight.bytes_done;
            if let Some(chunk) = in_flight.request.buffer.get_mut(start..start + in_flight.chunk_bytes) {
                slot.bounce.read_bytes(SLOT_DATA_OFFSET, chunk);
            }
        }
        in_flight.bytes_done += in_flight.chunk_bytes;
        let more = matches!(op, Op::Read | Op::Write) && in_flight.bytes_done < in_flight.request.buffer.len();
        if more {
            self.issue_chunk(slot_index);
        } else {
            self.complete(slot_index, Ok(()), out);
        }
    }

    /// Completes everything in flight (`Timeout` for the slots whose deadline passed,
    /// `Io` for the rest), then resets and re-initialises the controller; slots are
    /// free again only if that worked.
    fn fail_in_flight_and_reset(&mut self, now_ns: Option<u64>, out: &mut Vec<Completion>) {
        for slot_index in 0..self.slots.len() {
            let timed_out = match (&self.slots[slot_index].in_flight, now_ns) {
                (Some(in_flight), Some(now)) => now > in_flight.deadline_ns,
                _ => false,
            };
            if timed_out {
                self.controller.statistics.timeouts += 1;
            }
            self.complete(slot_index, Err(if timed_out { BlockError::Timeout } else { BlockError::Io }), out);
        }
        self.controller.statistics.resets += 1;
        let recovered = self.controller.enable_with_admin_queue().and_then(|()| self.controller.create_io_queues());
        self.failed = recovered.is_err();
    }
}

impl BlockDevice for NvmeDisk {
    fn info(&self) -> DeviceInfo {
        self.info.clone()
    }

    fn submit(&mut self, request: Request) -> Result<RequestId, BlockError> {
        if self.failed {
            return Err(BlockError::Io);
        }
        check_request(&self.info, &request)?;
        let slot_index = self.slots.iter().position(|slot| slot.in_flight.is_none()).ok_or(BlockError::QueueFull)?;
        let id = RequestId(self.next_request_id);
        self.next_request_id = self.next_request_id.wrapping_add(1);
        if let Some(slot) = self.slots.get_mut(slot_index) {
            slot.in_flight =
                Some(InFlight { id, request, bytes_done: 0, chunk_bytes: 0, command_id: 0, deadline_ns: 0 });
        }
        self.issue_chunk(slot_index);
        Ok(id)
    }

    fn poll_completions(&mut self, out: &mut Vec<Completion>) {
        if self.failed {
            return;
        }
        let status = self.controller.read_status();
        if status == u32::MAX || status & CSTS_CFS != 0 {
            self.controller.statistics.fatal_status += 1;
            self.fail_in_flight_and_reset(None, out);
            return;
        }
        // Bounded by the queue size: a controller that keeps posting entries cannot
        // hold the caller here.
        let mut consumed = false;
        for _ in 0..self.controller.io.entries {
            let Some(entry) = self.controller.io.next_completion() else {
                break;
            };
            consumed = true;
            self.handle_completion(entry, out);
        }
        if consumed {
            let controller = &self.controller;
            controller.io.ring_completion_doorbell(&*controller.registers, &controller.capabilities);
        }
        let now = self.controller.platform.now_ns();
        let any_overdue =
            self.slots.iter().any(|slot| slot.in_flight.as_ref().is_some_and(|in_flight| now > in_flight.deadline_ns));
        if any_overdue {
            self.fail_in_flight_and_reset(Some(now), out);
        }
    }
}

impl Drop for NvmeDisk {
    fn drop(&mut self) {
        if !self.controller.shut_down() {
            // The controller may still write to the bounce buffers: never give them back.
            core::mem::forget(core::mem::take(&mut self.slots));
        }
    }
}
