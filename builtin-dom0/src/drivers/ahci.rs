//! AHCI (SATA) driver: finds the SATA disks behind an AHCI host bus adapter (PCI class
//! 01/06/01) and presents each one as an [`AhciDisk`], a [`BlockDevice`].
//!
//! Shape: [`probe`] owns the controller's generic registers (BIOS/OS hand-off,
//! GHC.AE, CAP, PI) and touches them only once; after that every disk owns its port —
//! its own mapping of the ABAR, its own command list, received-FIS area, command
//! tables and bounce regions — so ports are independent and one disk's recovery never
//! disturbs another.
//!
//! Interrupts (AHCI 1.3.1 §5.6.2, §10.7) only wake the CPU that polls, as the drivers
//! module says; completion is polled either way. Probe sets up MSI-X or MSI with
//! [`enable_message_interrupts`], masks every implemented port (PxIE = 0), clears IS
//! and sets GHC.IE only when a message interrupt is available (clears it otherwise).
//! Each disk then enables its own port once it is up: PxIE = [`PORT_INTERRUPTS`] (D2H
//! Register FIS, PIO Setup FIS, Set Device Bits FIS, descriptor processed, and the
//! error bits the recovery below handles). `poll_completions` reads PxCI, then PxIS
//! once, and uses that one value twice: its error bits decide recovery exactly as
//! without interrupts, and its other bits are written back (write 1 to clear), then
//! the port's IS.IPS bit. Error bits are not cleared there: the restart that every
//! error leads to clears all of PxIS, and a port taken out of service gets PxIE = 0
//! first, so no error bit stays pending and enabled (QEMU's HBA sends a new message
//! on every register write while any is). Because the completion bits are
//! acknowledged after PxCI was read, a command that finished between the two reads
//! would have lost its wake-up: after each pass PxCI is read again and, if such a
//! slot exists, the pass is repeated (a bounded number of times). Every successful
//! restart enables PxIE again, in case its COMRESET reset the port's registers (QEMU
//! before 2011 cleared PxIE there). Dropping a disk clears its PxIE and acknowledges
//! what is pending before the port is stopped; GHC.IE is shared by the ports and
//! stays as probe set it.
//!
//! Commands are non-queued: READ DMA EXT (0x25), WRITE DMA EXT (0x35), FLUSH CACHE
//! EXT (0xEA) and, for discards on disks that report TRIM, DATA SET MANAGEMENT (0x06)
//! with the TRIM bit, through up to [`MAX_SLOTS_USED`] command slots (fewer if CAP.NCS says
//! so); the HBA runs issued slots one after another. Each slot has a
//! [`BOUNCE_BYTES_PER_SLOT`] bounce region with one PRD entry pointing at it. A request
//! larger than that is **split**: it keeps its slot and its chunks run one after the
//! other (the next chunk is issued when the previous one completes), so a request
//! completes once, after its last chunk, or with the first chunk's error. A discard's
//! chunk is as many 65535-sector TRIM ranges as IDENTIFY word 105 allows per command.
//!
//! Errors and timeouts (AHCI 1.3.1 §6.2.2.1, non-queued error recovery): PxIS.TFES
//! (set whenever the device returns a status with ERR, i.e. PxTFD.ERR), HBFS, HBDS,
//! IFS or OFS halts the port. Every request that may have caused the error completes
//! with [`BlockError::Io`]: the slot PxCMD.CCS names, and the slots whose PxCI bit
//! cleared since the last poll (QEMU clears the failing slot's bit instead of halting;
//! see `recover_from_error`), so an error is never reported as a success. The port is
//! then stopped (ST cleared, wait for CR),
//! PxSERR and PxIS cleared, reset with COMRESET if the stop failed or the device
//! still shows BSY or DRQ, restarted, and the remaining slots are issued again. A
//! command still issued [`COMMAND_TIMEOUT_NS`] after it was issued completes with
//! [`BlockError::Timeout`] and the port goes through the same restart before the slot
//! is used again, so a late DMA cannot land in a reused bounce region. If a port
//! cannot be restarted, everything in flight completes with `Io` and the disk refuses
//! requests with `Io` until a restart succeeds (tried again every
//! [`OUT_OF_SERVICE_RETRY_NS`]). Error handling runs inside `poll_completions` and
//! may busy-wait there (at most a few seconds, only on this rare path).
//!
//! PRDBC (bytes transferred, written back by the HBA) must equal the chunk's length
//! for a data command, otherwise the request completes with `Io`: a short or
//! impossible count means the bounce region does not hold what was asked for.
//!
//! Dropping an [`AhciDisk`] stops its port; if the port does not stop, its DMA memory
//! is deliberately leaked rather than handed back while the HBA may still write it.
//!
//! Spec: Serial ATA AHCI 1.3.1 (register offsets §3, command list and tables §4.2,
//! port start/stop §10.3, COMRESET §10.4.2, BIOS/OS hand-off §10.6); ATA commands and
//! the Register H2D FIS: ACS-3 and SATA 3.x §10.5.5.

mod identify;

#[cfg(test)]
mod fake_hba;
#[cfg(test)]
mod tests;

use super::interrupts::{enable_message_interrupts, InterruptMode};
use super::{DmaRegion, DriverError, Platform, ProbeContext, Registers};
use crate::block::{check_request, BlockDevice, BlockError, Completion, DeviceInfo, Op, Request, RequestId};
use crate::pci::{enable_bus_mastering, enable_memory_decoding, Bar, PciFunction};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{fence, Ordering};

/// PCI class of an AHCI SATA controller: mass storage / SATA / AHCI 1.0.
pub const PCI_CLASS_STORAGE: u8 = 0x01;
pub const PCI_SUBCLASS_SATA: u8 = 0x06;
pub const PCI_PROG_IF_AHCI: u8 = 0x01;
/// The AHCI base address (ABAR) is BAR 5.
pub const ABAR_INDEX: u8 = 5;

// Generic host control registers (AHCI 1.3.1 §3.1).
const HBA_CAP: u64 = 0x00;
const HBA_GHC: u64 = 0x04;
/// Interrupt status: bit n is port n's IPS (write 1 to clear).
const HBA_IS: u64 = 0x08;
const HBA_PI: u64 = 0x0C;
const HBA_CAP2: u64 = 0x24;
const HBA_BOHC: u64 = 0x28;

const CAP_NP_MASK: u32 = 0x1F;
const CAP_NCS_SHIFT: u32 = 8;
const CAP_NCS_MASK: u32 = 0x1F;
/// Staggered spin-up: ports need PxCMD.SUD before the link comes up.
const CAP_SSS: u32 = 1 << 27;
/// 64-bit addressing of command lists, FIS areas and data.
const CAP_S64A: u32 = 1 << 31;
const GHC_AE: u32 = 1 << 31;
/// Interrupt enable for the whole HBA.
const GHC_IE: u32 = 1 << 1;
const CAP2_BOH: u32 = 1 << 0;
const BOHC_BOS: u32 = 1 << 0;
const BOHC_OOS: u32 = 1 << 1;
const BOHC_BB: u32 = 1 << 4;

// Port registers (AHCI 1.3.1 §3.3), relative to the port's base.
const PORT_BASE: u64 = 0x100;
const PORT_STRIDE: u64 = 0x80;
const MAX_PORTS: u32 = 32;
const PXCLB: u64 = 0x00;
const PXCLBU: u64 = 0x04;
const PXFB: u64 = 0x08;
const PXFBU: u64 = 0x0C;
const PXIS: u64 = 0x10;
const PXIE: u64 = 0x14;
const PXCMD: u64 = 0x18;
const PXTFD: u64 = 0x20;
const PXSIG: u64 = 0x24;
const PXSSTS: u64 = 0x28;
const PXSCTL: u64 = 0x2C;
const PXSERR: u64 = 0x30;
const PXCI: u64 = 0x38;

const PXCMD_ST: u32 = 1 << 0;
const PXCMD_SUD: u32 = 1 << 1;
const PXCMD_FRE: u32 = 1 << 4;
const PXCMD_CCS_SHIFT: u32 = 8;
const PXCMD_CCS_MASK: u32 = 0x1F;
const PXCMD_FR: u32 = 1 << 14;
const PXCMD_CR: u32 = 1 << 15;

/// Device to Host Register FIS, PIO Setup FIS, Set Device Bits FIS and Descriptor
/// Processed interrupts: the ways a command's end is signalled.
const PXIS_DHRS: u32 = 1 << 0;
const PXIS_PSS: u32 = 1 << 1;
const PXIS_SDBS: u32 = 1 << 3;
const PXIS_DPS: u32 = 1 << 5;
const PXIS_OFS: u32 = 1 << 24;
const PXIS_IFS: u32 = 1 << 27;
const PXIS_HBDS: u32 = 1 << 28;
const PXIS_HBFS: u32 = 1 << 29;
const PXIS_TFES: u32 = 1 << 30;
/// The interrupt status bits after which the HBA stops processing the port's command
/// list until software restarts it.
const PXIS_ERRORS: u32 = PXIS_TFES | PXIS_HBFS | PXIS_HBDS | PXIS_IFS | PXIS_OFS;
/// PxIE of a disk's port when message interrupts are set up: command ends and errors.
pub const PORT_INTERRUPTS: u32 = PXIS_DHRS | PXIS_PSS | PXIS_SDBS | PXIS_DPS | PXIS_ERRORS;
/// Passes of `poll_completions` at most (see the module documentation).
const MAX_POLL_PASSES: u32 = 4;

const PXSSTS_DET_MASK: u32 = 0xF;
/// Device present and Phy communication established.
const PXSSTS_DET_PRESENT: u32 = 3;
const PXSCTL_DET_MASK: u32 = 0xF;
const PXSCTL_DET_COMRESET: u32 = 1;
/// Port signatures (PxSIG, from the device's first D2H Register FIS).
const SATA_SIG_ATA: u32 = 0x0000_0101;
const SATA_SIG_ATAPI: u32 = 0xEB14_0101;
const SATA_SIG_SEMB: u32 = 0xC33C_0101;
const SATA_SIG_PM: u32 = 0x9669_0101;
/// No signature received yet.
const SATA_SIG_NONE: u32 = 0xFFFF_FFFF;

/// ATA status register (PxTFD bits 7:0).
const ATA_BSY: u32 = 1 << 7;
const ATA_DRQ: u32 = 1 << 3;

/// ATA commands (ACS-3 §7).
const ATA_CMD_READ_DMA_EXT: u8 = 0x25;
const ATA_CMD_WRITE_DMA_EXT: u8 = 0x35;
const ATA_CMD_FLUSH_CACHE_EXT: u8 = 0xEA;
const ATA_CMD_IDENTIFY_DEVICE: u8 = 0xEC;
const ATA_CMD_DATA_SET_MANAGEMENT: u8 = 0x06;
/// DATA SET MANAGEMENT feature bit 0: TRIM.
const ATA_DSM_TRIM: u8 = 1 << 0;
/// TRIM payload (ACS-3 §7.5.3.3): 512-byte blocks of 64 LBA Range Entries, each bits
/// 47:0 first LBA, bits 63:48 number of sectors (0: entry unused).
const TRIM_PAYLOAD_BLOCK_BYTES: usize = 512;
const TRIM_ENTRY_BYTES: usize = 8;
const TRIM_ENTRIES_PER_BLOCK: u32 = (TRIM_PAYLOAD_BLOCK_BYTES / TRIM_ENTRY_BYTES) as u32;
const TRIM_RANGE_MAX_SECTORS: u32 = 0xFFFF;
const TRIM_LBA_MASK: u64 = (1 << 48) - 1;
/// Payload blocks per DATA SET MANAGEMENT command at most, whatever IDENTIFY word 105
/// allows (as Linux: one page of range entries).
const TRIM_MAX_PAYLOAD_BLOCKS: u32 = 8;
/// Device register: LBA addressing.
const ATA_DEVICE_LBA: u8 = 1 << 6;

// The port's control region: command list (1 KiB aligned), received-FIS area
// (256-byte aligned) and one command table per slot (128-byte aligned).
const COMMAND_LIST_OFFSET: usize = 0;
const COMMAND_HEADER_BYTES: usize = 32;
const RECEIVED_FIS_OFFSET: usize = 0x400;
const COMMAND_TABLES_OFFSET: usize = 0x800;
/// Command FIS (64 bytes), ATAPI command (16), reserved (48), one PRD entry (16),
/// rounded up to keep every table 128-byte aligned.
const COMMAND_TABLE_BYTES: usize = 0x100;
const COMMAND_TABLE_PRDT_OFFSET: usize = 0x80;

/// Command header DW0: FIS length in dwords (bits 4:0), Write (bit 6), PRDT length (31:16).
const COMMAND_HEADER_CFL_REGISTER_H2D: u32 = 5;
const COMMAND_HEADER_WRITE: u32 = 1 << 6;
const COMMAND_HEADER_PRDTL_SHIFT: u32 = 16;
/// PRD DW3: data byte count minus one (bits 21:0).
const PRD_DBC_MASK: u32 = 0x3F_FFFF;

/// Register Host-to-Device FIS (SATA 3.x §10.5.5): type, and the C bit (command, not control).
const FIS_TYPE_REG_H2D: u8 = 0x27;
const FIS_H2D_COMMAND: u8 = 1 << 7;
const FIS_REG_H2D_BYTES: usize = 20;

/// Command slots a disk uses at most (its queue depth). With the bounce regions below
/// that is 2 MiB of DMA memory per disk; more slots buy little without NCQ.
pub const MAX_SLOTS_USED: usize = 16;
/// Bytes of bounce memory per slot: the largest chunk one command moves.
pub const BOUNCE_BYTES_PER_SLOT: usize = 128 * 1024;

const MILLISECOND_NS: u64 = 1_000_000;
const SECOND_NS: u64 = 1_000 * MILLISECOND_NS;
/// How long a read, write or flush may take before it completes with `Timeout`.
pub const COMMAND_TIMEOUT_NS: u64 = 30 * SECOND_NS;
/// How long a port with a failed restart refuses requests before trying again.
pub const OUT_OF_SERVICE_RETRY_NS: u64 = 60 * SECOND_NS;
const IDENTIFY_TIMEOUT_NS: u64 = 10 * SECOND_NS;
/// PxCMD.CR / PxCMD.FR must clear within 500 ms of clearing ST / FRE (§10.1.2).
const ENGINE_STOP_TIMEOUT_NS: u64 = 500 * MILLISECOND_NS;
/// COMRESET: DET = 1 held at least 1 ms (§10.4.2), then the link within a second.
const COMRESET_HOLD_US: u32 = 1_000;
const LINK_UP_TIMEOUT_NS: u64 = SECOND_NS;
/// A device clears BSY after reset or spin-up within a few seconds.
const DEVICE_READY_TIMEOUT_NS: u64 = 10 * SECOND_NS;
const SPIN_UP_TIMEOUT_NS: u64 = 20 * MILLISECOND_NS;
/// BIOS/OS hand-off: the BIOS says it is busy within 25 ms, then has 2 s (§10.6.3).
const BIOS_HANDOFF_NOTICE_NS: u64 = 25 * MILLISECOND_NS;
const BIOS_HANDOFF_BUSY_NS: u64 = 2 * SECOND_NS;
const FOUR_GIB: u64 = 1 << 32;

/// True for an AHCI SATA controller.
pub fn matches(function: &PciFunction) -> bool {
    let class = function.class;
    class.class == PCI_CLASS_STORAGE && class.subclass == PCI_SUBCLASS_SATA && class.prog_if == PCI_PROG_IF_AHCI
}

/// The disks found on a controller, and why the other occupied ports gave none.
pub struct AhciProbe {
    /// One per SATA disk, in port order.
    pub disks: Vec<AhciDisk>,
    /// Ports with something attached that could not be brought up (port number, why).
    /// Empty ports and ATAPI, enclosure and port-multiplier signatures are not listed.
    pub port_errors: Vec<(u32, DriverError)>,
}

/// Takes an AHCI controller: one [`AhciDisk`] per SATA disk, in port order (possibly
/// none). Ports that fail to come up are left out; [`probe_ports`] says why.
pub fn probe(context: ProbeContext<'_>) -> Result<Vec<AhciDisk>, DriverError> {
    probe_ports(context).map(|probe| probe.disks)
}

/// [`probe`], keeping the per-port errors (for the shell's device listing).
pub fn probe_ports(context: ProbeContext<'_>) -> Result<AhciProbe, DriverError> {
    if !matches(context.function) {
        return Err(DriverError::NotMine);
    }
    let bar = context
        .function
        .bar(ABAR_INDEX)
        .filter(|bar| bar.is_memory() && bar.address != 0)
        .ok_or(DriverError::NoBar(ABAR_INDEX))?;
    let platform = context.platform;
    let host = platform.map_bar(bar).ok_or(DriverError::NoBar(ABAR_INDEX))?;
    if host.len() < PORT_BASE {
        return Err(DriverError::Unsupported(String::from("ABAR smaller than the generic host registers")));
    }
    enable_memory_decoding(context.config, context.function.address);
    enable_bus_mastering(context.config, context.function.address);
    let interrupt_mode = enable_message_interrupts(context.function, context.config, &**platform);

    take_from_bios(&*host, &**platform);
    // AHCI mode first: with GHC.AE clear, the other AHCI registers may not respond.
    let control = host.read32(HBA_GHC);
    if control & GHC_AE == 0 {
        host.write32(HBA_GHC, control | GHC_AE);
    }
    let capabilities = host.read32(HBA_CAP);
    if capabilities == u32::MAX {
        return Err(DriverError::Device(String::from("controller registers read all ones")));
    }
    let port_count = (capabilities & CAP_NP_MASK) + 1;
    let slot_count = (((capabilities >> CAP_NCS_SHIFT) & CAP_NCS_MASK) as usize + 1).min(MAX_SLOTS_USED);
    let mut implemented = host.read32(HBA_PI);
    if implemented == 0 {
        // Firmware that forgot PI: the first CAP.NP ports are implemented.
        implemented = u32::MAX >> (MAX_PORTS - port_count);
    }
    // No port signals until its disk is up (firmware may have left PxIE set, and
    // ports without a disk are never looked at again); then the HBA as a whole.
    for port_number in (0..MAX_PORTS).filter(|port| implemented & (1 << port) != 0) {
        let base = PORT_BASE + u64::from(port_number) * PORT_STRIDE;
        if base + PORT_STRIDE <= host.len() {
            host.write32(base + PXIE, 0);
        }
    }
    host.write32(HBA_IS, u32::MAX);
    let control = host.read32(HBA_GHC);
    let control = if interrupt_mode.signals() { control | GHC_IE } else { control & !GHC_IE };
    host.write32(HBA_GHC, control);
    let port_setup = PortSetup { bar, capabilities, slot_count, interrupt_mode };

    let mut probe = AhciProbe { disks: Vec::new(), port_errors: Vec::new() };
    for port_number in (0..MAX_PORTS).filter(|port| implemented & (1 << port) != 0) {
        let base = PORT_BASE + u64::from(port_number) * PORT_STRIDE;
        if base + PORT_STRIDE > host.len() {
            let error = DriverError::Unsupported(String::from("port registers beyond the ABAR"));
            probe.port_errors.push((port_number, error));
            continue;
        }
        let signature = host.read32(base + PXSIG);
        if matches!(signature, SATA_SIG_ATAPI | SATA_SIG_SEMB | SATA_SIG_PM) {
            continue;
        }
        let link = host.read32(base + PXSSTS) & PXSSTS_DET_MASK;
        if link != PXSSTS_DET_PRESENT && capabilities & CAP_SSS == 0 {
            continue;
        }
        match AhciDisk::bring_up(port_number, base, &port_setup, platform) {
            Ok(Some(disk)) => probe.disks.push(disk),
            Ok(None) => {}
            Err(error) => probe.port_errors.push((port_number, error)),
        }
    }
    Ok(probe)
}

/// Asks firmware to give the controller up (AHCI 1.3.1 §10.6.3), if it supports the
/// hand-off. Proceeds after the timeouts whatever the BIOS does (as Linux does).
fn take_from_bios(host: &dyn Registers, platform: &dyn Platform) {
    if host.read32(HBA_CAP2) & CAP2_BOH == 0 {
        return;
    }
    host.write32(HBA_BOHC, host.read32(HBA_BOHC) | BOHC_OOS);
    let released = wait_until(platform, BIOS_HANDOFF_NOTICE_NS, || host.read32(HBA_BOHC) & BOHC_BOS == 0);
    if !released && host.read32(HBA_BOHC) & BOHC_BB != 0 {
        wait_until(platform, BIOS_HANDOFF_BUSY_NS, || host.read32(HBA_BOHC) & BOHC_BOS == 0);
    }
}

/// Polls `done` until it holds or `timeout_ns` passes; true if it held. The pause
/// between polls grows from 10 µs to 1 ms, so fast events are seen quickly and long
/// waits do not spin on the bus.
fn wait_until(platform: &dyn Platform, timeout_ns: u64, mut done: impl FnMut() -> bool) -> bool {
    let start = platform.now_ns();
    let mut pause_us = 10;
    loop {
        if done() {
            return true;
        }
        if platform.now_ns().saturating_sub(start) >= timeout_ns {
            return done();
        }
        platform.delay_us(pause_us);
        pause_us = (pause_us * 2).min(1_000);
    }
}

/// What every port of one controller shares at probe.
struct PortSetup<'a> {
    bar: &'a Bar,
    capabilities: u32,
    slot_count: usize,
    interrupt_mode: InterruptMode,
}

/// One port's registers, through the disk's own mapping of the ABAR.
struct PortRegisters {
    abar: Box<dyn Registers>,
    base: u64,
    /// The port's bit in IS.
    is_bit: u32,
}

impl PortRegisters {
    fn read(&self, register: u64) -> u32 {
        self.abar.read32(self.base + register)
    }

    fn write(&self, register: u64, value: u32) {
        self.abar.write32(self.base + register, value)
    }

    fn set_command_bits(&self, bits: u32) {
        self.write(PXCMD, self.read(PXCMD) | bits);
    }

    fn clear_command_bits(&self, bits: u32) {
        self.write(PXCMD, self.read(PXCMD) & !bits);
    }

    fn link_present(&self) -> bool {
        self.read(PXSSTS) & PXSSTS_DET_MASK == PXSSTS_DET_PRESENT
    }

    fn device_busy(&self) -> bool {
        self.read(PXTFD) & (ATA_BSY | ATA_DRQ) != 0
    }

    /// Clears the port's IS.IPS bit (write 1 to clear; other ports' bits are
    /// untouched). After PxIS, or the bit is set again at once.
    fn acknowledge_hba(&self) {
        self.abar.write32(HBA_IS, self.is_bit);
    }
}

/// The ATA command a request becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AtaOperation {
    Read,
    Write,
    Flush,
    Trim,
}

impl AtaOperation {
    fn command(self) -> u8 {
        match self {
            AtaOperation::Read => ATA_CMD_READ_DMA_EXT,
            AtaOperation::Write => ATA_CMD_WRITE_DMA_EXT,
            AtaOperation::Flush => ATA_CMD_FLUSH_CACHE_EXT,
            AtaOperation::Trim => ATA_CMD_DATA_SET_MANAGEMENT,
        }
    }
}

/// One ATA command as the Register H2D FIS and PRD entry carry it.
#[derive(Debug, Clone, Copy)]
struct AtaCommand {
    opcode: u8,
    /// Features register, bits 7:0.
    features: u8,
    /// 48-bit LBA.
    lba: u64,
    /// Count register (sectors, or TRIM payload blocks); 65536 is sent as 0.
    sectors: u32,
    /// Bytes through the slot's bounce region (0: no PRD entry).
    bytes: usize,
    /// The HBA reads the bounce region (writes, TRIM payloads).
    to_device: bool,
}

/// An accepted request occupying a slot.
struct SlotCommand {
    id: RequestId,
    operation: AtaOperation,
    lba: u64,
    blocks: u32,
    buffer: Vec<u8>,
    /// Blocks finished by earlier chunks.
    done_blocks: u32,
    /// Blocks of the chunk issued now.
    chunk_blocks: u32,
    /// Bytes the chunk issued now moves through the bounce region (PRDBC must match).
    chunk_bytes: usize,
    /// When the chunk issued now times out (platform clock).
    deadline_ns: u64,
}

struct Slot {
    bounce: Box<dyn DmaRegion>,
    command: Option<SlotCommand>,
}

/// What a finished chunk leaves to do.
enum ChunkOutcome {
    Finished(Result<(), BlockError>),
    MoreChunks,
}

/// One SATA disk on one AHCI port.
pub struct AhciDisk {
    port: PortRegisters,
    port_number: u32,
    platform: Arc<dyn Platform>,
    /// Command list, received-FIS area and command tables.
    control: Box<dyn DmaRegion>,
    slots: Vec<Slot>,
    info: DeviceInfo,
    /// Blocks one command moves at most (bounce bytes / block size, ≥ 1).
    blocks_per_chunk: u32,
    /// LBA Range Entries one TRIM command carries at most (when discard is supported).
    trim_entries_per_chunk: u32,
    next_id: u64,
    /// Set when a restart failed: requests are refused until then, when one more
    /// restart is tried.
    out_of_service_until: Option<u64>,
    /// The controller's interrupt mode (set up at probe).
    interrupt_mode: InterruptMode,
    /// PxIE while the port is in service: [`PORT_INTERRUPTS`], or 0 when polled.
    port_interrupt_enable: u32,
}

impl AhciDisk {
    /// The AHCI port the disk is on.
    pub fn port_number(&self) -> u32 {
        self.port_number
    }

    /// How the controller signals completions (MSI-X, MSI, or polled only).
    pub fn interrupt_mode(&self) -> InterruptMode {
        self.interrupt_mode
    }

    /// Lets the port signal again (after bring-up or a restart; a COMRESET may have
    /// cleared PxIE).
    fn enable_port_interrupts(&self) {
        if self.port_interrupt_enable != 0 {
            self.port.write(PXIE, self.port_interrupt_enable);
        }
    }

    /// Stops the port signalling and acknowledges what it had pending.
    fn disable_port_interrupts(&self) {
        if self.port_interrupt_enable != 0 {
            self.port.write(PXIE, 0);
            self.port.acknowledge_hba();
        }
    }

    /// Brings one port up: stops it, gives it memory, checks the device is an ATA
    /// disk, starts it and identifies the disk. `Ok(None)`: nothing usable attached
    /// (no link, or not an ATA signature).
    fn bring_up(
        port_number: u32,
        base: u64,
        setup: &PortSetup<'_>,
        platform: &Arc<dyn Platform>,
    ) -> Result<Option<AhciDisk>, DriverError> {
        let abar = platform.map_bar(setup.bar).ok_or(DriverError::NoBar(ABAR_INDEX))?;
        let port = PortRegisters { abar, base, is_bit: 1 << port_number };
        // Firmware may have left the port running on its own memory: stop it before
        // pointing it at ours (§10.3.2).
        if !stop_engine(&port, &**platform) {
            return Err(DriverError::Timeout("port command list to stop (PxCMD.CR)"));
        }
        if !stop_fis_receive(&port, &**platform) {
            return Err(DriverError::Timeout("port FIS receive to stop (PxCMD.FR)"));
        }

        let control_bytes = COMMAND_TABLES_OFFSET + setup.slot_count * COMMAND_TABLE_BYTES;
        let control = platform.allocate_dma(control_bytes).ok_or(DriverError::NoMemory)?;
        let mut slots = Vec::new();
        for _ in 0..setup.slot_count {
            // Fewer slots when memory is short; one is enough to work.
            match platform.allocate_dma(BOUNCE_BYTES_PER_SLOT) {
                Some(bounce) => slots.push(Slot { bounce, command: None }),
                None => break,
            }
        }
        if slots.is_empty() || control.len() < control_bytes {
            return Err(DriverError::NoMemory);
        }
        if setup.capabilities & CAP_S64A == 0 {
            let below_four_gib =
                |region: &dyn DmaRegion| region.physical_address().saturating_add(region.len() as u64) <= FOUR_GIB;
            if !below_four_gib(&*control) || !slots.iter().all(|slot| below_four_gib(&*slot.bounce)) {
                return Err(DriverError::Unsupported(String::from("DMA memory above 4 GiB for a 32-bit HBA")));
            }
        }
        let bounce_bytes = slots.iter().map(|slot| slot.bounce.len()).min().unwrap_or(0).min(BOUNCE_BYTES_PER_SLOT);

        let mut disk = AhciDisk {
            port,
            port_number,
            platform: platform.clone(),
            control,
            slots,
            info: DeviceInfo {
                capacity: 0,
                logical_block_size: 512,
                physical_block_size: 512,
                read_only: false,
                queue_depth: 1,
                model: String::new(),
                supports_flush: false,
                supports_discard: false,
            },
            blocks_per_chunk: 0,
            trim_entries_per_chunk: 0,
            next_id: 1,
            out_of_service_until: None,
            interrupt_mode: setup.interrupt_mode,
            port_interrupt_enable: 0,
        };
        // From here on, dropping `disk` on an error stops the port before its memory
        // is freed.
        disk.attach_memory();
        disk.port.write(PXIE, 0);
        disk.port.write(PXSERR, u32::MAX);
        disk.port.write(PXIS, u32::MAX);
        if setup.capabilities & CAP_SSS != 0 {
            disk.port.set_command_bits(PXCMD_SUD);
            wait_until(&*disk.platform, SPIN_UP_TIMEOUT_NS, || disk.port.link_present());
        }
        if !disk.port.link_present() {
            return Ok(None);
        }
        disk.port.set_command_bits(PXCMD_FRE);

        let ready = wait_until(&*disk.platform, DEVICE_READY_TIMEOUT_NS, || !disk.port.device_busy());
        if !ready || disk.port.read(PXSIG) == SATA_SIG_NONE {
            // A hung device, or no signature FIS yet: a COMRESET yields both.
            disk.comreset()?;
        }
        if disk.port.read(PXSIG) != SATA_SIG_ATA {
            return Ok(None);
        }
        disk.start_engine()?;

        let identity = disk.identify()?;
        let block_size = identity.logical_block_size;
        // identify::parse bounds the block size to 512..=65536, below the bounce size.
        disk.blocks_per_chunk = u32::try_from(bounce_bytes / block_size as usize).unwrap_or(0);
        if disk.blocks_per_chunk == 0 {
            return Err(DriverError::Unsupported(String::from("sector larger than a bounce region")));
        }
        let trim_payload_blocks = u32::from(identity.trim_max_payload_blocks)
            .clamp(1, TRIM_MAX_PAYLOAD_BLOCKS)
            .min((bounce_bytes / TRIM_PAYLOAD_BLOCK_BYTES) as u32);
        disk.trim_entries_per_chunk = trim_payload_blocks * TRIM_ENTRIES_PER_BLOCK;
        disk.info = DeviceInfo {
            capacity: identity.capacity,
            logical_block_size: block_size,
            physical_block_size: identity.physical_block_size,
            read_only: false,
            queue_depth: disk.slots.len() as u32,
            model: identity.model,
            supports_flush: identity.flush_cache_ext,
            supports_discard: identity.trim && disk.trim_entries_per_chunk > 0,
        };
        // Up: what IDENTIFY left pending is acknowledged, then the port may signal.
        if setup.interrupt_mode.signals() {
            disk.port_interrupt_enable = PORT_INTERRUPTS;
            disk.port.write(PXIS, u32::MAX);
            disk.port.acknowledge_hba();
            disk.enable_port_interrupts();
        }
        Ok(Some(disk))
    }

    fn command_header_offset(slot: usize) -> usize {
        COMMAND_LIST_OFFSET + slot * COMMAND_HEADER_BYTES
    }

    fn command_table_offset(slot: usize) -> usize {
        COMMAND_TABLES_OFFSET + slot * COMMAND_TABLE_BYTES
    }

    /// Points the port at the command list and received-FIS area, and every command
    /// header at its table. The port must be stopped (ST, FRE, CR, FR clear).
    fn attach_memory(&self) {
        let base = self.control.physical_address();
        let command_list = base + COMMAND_LIST_OFFSET as u64;
        let received_fis = base + RECEIVED_FIS_OFFSET as u64;
        self.port.write(PXCLB, command_list as u32);
        self.port.write(PXCLBU, (command_list >> 32) as u32);
        self.port.write(PXFB, received_fis as u32);
        self.port.write(PXFBU, (received_fis >> 32) as u32);
        for slot in 0..self.slots.len() {
            let table = base + Self::command_table_offset(slot) as u64;
            self.control.write_u64(Self::command_header_offset(slot) + 8, table);
        }
    }

    /// Sets PxCMD.ST once the device is ready (§10.3.1: not while BSY or DRQ).
    fn start_engine(&self) -> Result<(), DriverError> {
        if !wait_until(&*self.platform, DEVICE_READY_TIMEOUT_NS, || !self.port.device_busy()) {
            return Err(DriverError::Timeout("device to clear BSY and DRQ"));
        }
        self.port.set_command_bits(PXCMD_FRE);
        self.port.set_command_bits(PXCMD_ST);
        Ok(())
    }

    /// COMRESET (§10.4.2): DET = 1 for at least 1 ms, then DET = 0, wait for the link
    /// and for the device to finish its reset. PxCMD.ST must be clear.
    fn comreset(&self) -> Result<(), DriverError> {
        let control = self.port.read(PXSCTL) & !PXSCTL_DET_MASK;
        self.port.write(PXSCTL, control | PXSCTL_DET_COMRESET);
        self.platform.delay_us(COMRESET_HOLD_US);
        self.port.write(PXSCTL, control);
        if !wait_until(&*self.platform, LINK_UP_TIMEOUT_NS, || self.port.link_present()) {
            return Err(DriverError::Timeout("SATA link after COMRESET"));
        }
        // The link coming up sets PxSERR.DIAG.X; clear it so the port can run.
        self.port.write(PXSERR, u32::MAX);
        if !wait_until(&*self.platform, DEVICE_READY_TIMEOUT_NS, || !self.port.device_busy()) {
            return Err(DriverError::Timeout("device to finish its reset"));
        }
        self.port.write(PXIS, u32::MAX);
        Ok(())
    }

    /// Stops and restarts the port after an error or timeout (§6.2.2.1): clear ST,
    /// clear the error registers, COMRESET if the stop failed or the device is still
    /// busy, start again. Every slot's PxCI bit is clear afterwards.
    fn restart(&mut self) -> Result<(), DriverError> {
        let stopped = stop_engine(&self.port, &*self.platform);
        self.port.write(PXSERR, u32::MAX);
        self.port.write(PXIS, u32::MAX);
        self.port.acknowledge_hba();
        if !stopped || self.port.device_busy() || !self.port.link_present() {
            self.comreset()?;
            if !stopped && !stop_engine(&self.port, &*self.platform) {
                return Err(DriverError::Timeout("port command list to stop (PxCMD.CR)"));
            }
        }
        self.start_engine()?;
        self.enable_port_interrupts();
        Ok(())
    }

    /// Writes a command header and table for `slot`: a Register H2D FIS for
    /// `command`, and one PRD entry over the slot's bounce region when it moves data.
    fn program_slot(&self, slot: usize, command: &AtaCommand) {
        let AtaCommand { opcode, features, lba, sectors, bytes, to_device } = *command;
        let Some(bounce) = self.slots.get(slot).map(|slot| &slot.bounce) else {
            return;
        };
        let header = Self::command_header_offset(slot);
        let table = Self::command_table_offset(slot);
        let prd_count: u32 = if bytes > 0 { 1 } else { 0 };
        let mut flags = COMMAND_HEADER_CFL_REGISTER_H2D | prd_count << COMMAND_HEADER_PRDTL_SHIFT;
        if to_device {
            flags |= COMMAND_HEADER_WRITE;
        }
        self.control.write_u32(header, flags);
        // PRDBC: the HBA counts the bytes it moves from zero.
        self.control.write_u32(header + 4, 0);
        self.control.write_u64(header + 8, self.control.physical_address() + table as u64);

        let lba = lba.to_le_bytes();
        // A count of 0 means 65536 sectors in the 48-bit commands, which is what the
        // truncation gives for 65536 (larger counts never reach here).
        let count = (sectors as u16).to_le_bytes();
        let mut fis = [0u8; FIS_REG_H2D_BYTES];
        fis[0] = FIS_TYPE_REG_H2D;
        fis[1] = FIS_H2D_COMMAND;
        fis[2] = opcode;
        fis[3] = features;
        fis[4..7].copy_from_slice(&lba[0..3]);
        fis[7] = ATA_DEVICE_LBA;
        fis[8..11].copy_from_slice(&lba[3..6]);
        fis[12..14].copy_from_slice(&count);
        self.control.zero(table, COMMAND_TABLE_PRDT_OFFSET);
        self.control.write_bytes(table, &fis);
        if bytes > 0 {
            let prd = table + COMMAND_TABLE_PRDT_OFFSET;
            self.control.write_u64(prd, bounce.physical_address());
            self.control.write_u32(prd + 8, 0);
            self.control.write_u32(prd + 12, (bytes as u32).wrapping_sub(1) & PRD_DBC_MASK);
        }
    }

    /// Hands `slot` to the HBA.
    fn issue_slot(&self, slot: usize) {
        // The command header, table and bounce data must be visible before PxCI.
        fence(Ordering::SeqCst);
        self.port.write(PXCI, 1 << slot);
    }

    /// IDENTIFY DEVICE on slot 0, polled; decodes the answer.
    fn identify(&self) -> Result<identify::Identity, DriverError> {
        let bytes = identify::IDENTIFY_BYTES;
        let command =
            AtaCommand { opcode: ATA_CMD_IDENTIFY_DEVICE, features: 0, lba: 0, sectors: 0, bytes, to_device: false };
        self.program_slot(0, &command);
        self.issue_slot(0);
        let finished = wait_until(&*self.platform, IDENTIFY_TIMEOUT_NS, || {
            self.port.read(PXCI) & 1 == 0 || self.port.read(PXIS) & PXIS_ERRORS != 0
        });
        fence(Ordering::SeqCst);
        if !finished {
            return Err(DriverError::Timeout("IDENTIFY DEVICE"));
        }
        let status = self.port.read(PXIS);
        if status & PXIS_ERRORS != 0 {
            let task_file = self.port.read(PXTFD);
            return Err(DriverError::Device(alloc::format!(
                "IDENTIFY DEVICE failed (PxIS {status:#010x}, PxTFD {task_file:#06x})"
            )));
        }
        let transferred = self.control.read_u32(Self::command_header_offset(0) + 4);
        if transferred as usize != bytes {
            return Err(DriverError::Device(alloc::format!("IDENTIFY DEVICE moved {transferred} bytes")));
        }
        let mut data = [0u8; identify::IDENTIFY_BYTES];
        if let Some(slot) = self.slots.first() {
            slot.bounce.read_bytes(0, &mut data);
        }
        identify::parse(&data)
    }

    /// Issues the next chunk of the request in `slot`: fills the bounce region (write
    /// data, or TRIM range entries), programs the slot, starts its timeout and sets
    /// its PxCI bit.
    fn issue_chunk(&mut self, slot: usize) {
        let block_size = self.info.logical_block_size as usize;
        let now = self.platform.now_ns();
        let blocks_per_chunk = self.blocks_per_chunk;
        let trim_entries_per_chunk = self.trim_entries_per_chunk;
        let Some(state) = self.slots.get_mut(slot) else {
            return;
        };
        let Some(command) = state.command.as_mut() else {
            return;
        };
        let remaining = command.blocks.saturating_sub(command.done_blocks);
        // Cannot overflow: lba + blocks ≤ capacity ≤ 2^48 (checked at submit).
        let lba = command.lba + u64::from(command.done_blocks);
        let start = command.done_blocks as usize * block_size;
        let (chunk_blocks, chunk_bytes, sectors, features, lba) = match command.operation {
            AtaOperation::Flush => (0, 0, 0, 0, 0),
            AtaOperation::Read | AtaOperation::Write => {
                let chunk_blocks = remaining.min(blocks_per_chunk);
                let bytes = chunk_blocks as usize * block_size;
                if command.operation == AtaOperation::Write {
                    if let Some(data) = command.buffer.get(start..start + bytes) {
                        state.bounce.write_bytes(0, data);
                    }
                }
                (chunk_blocks, bytes, chunk_blocks, 0, lba)
            }
            AtaOperation::Trim => {
                let chunk_blocks = remaining.min(trim_entries_per_chunk.saturating_mul(TRIM_RANGE_MAX_SECTORS));
                let payload_blocks = chunk_blocks.div_ceil(TRIM_RANGE_MAX_SECTORS).div_ceil(TRIM_ENTRIES_PER_BLOCK);
                let bytes = payload_blocks as usize * TRIM_PAYLOAD_BLOCK_BYTES;
                write_trim_ranges(&*state.bounce, lba, chunk_blocks, bytes);
                // The range is in the payload; the FIS carries the payload's length.
                (chunk_blocks, bytes, payload_blocks, ATA_DSM_TRIM, 0)
            }
        };
        command.chunk_blocks = chunk_blocks;
        command.chunk_bytes = chunk_bytes;
        command.deadline_ns = now.saturating_add(COMMAND_TIMEOUT_NS);
        let operation = command.operation;
        // The HBA reads the bounce region for writes and TRIM payloads.
        let to_device = matches!(operation, AtaOperation::Write | AtaOperation::Trim);
        let command = AtaCommand { opcode: operation.command(), features, lba, sectors, bytes: chunk_bytes, to_device };
        self.program_slot(slot, &command);
        self.issue_slot(slot);
    }

    /// Accounts for the chunk of `slot` whose PxCI bit cleared: checks the byte count
    /// and copies read data out of the bounce region.
    fn finish_chunk(&mut self, slot: usize) -> ChunkOutcome {
        let block_size = self.info.logical_block_size as usize;
        let transferred = self.control.read_u32(Self::command_header_offset(slot) + 4) as usize;
        let Some(state) = self.slots.get_mut(slot) else {
            return ChunkOutcome::Finished(Err(BlockError::Io));
        };
        let Some(command) = state.command.as_mut() else {
            return ChunkOutcome::Finished(Err(BlockError::Io));
        };
        if command.operation == AtaOperation::Flush {
            return ChunkOutcome::Finished(Ok(()));
        }
        if transferred != command.chunk_bytes {
            return ChunkOutcome::Finished(Err(BlockError::Io));
        }
        if command.operation == AtaOperation::Read {
            let start = command.done_blocks as usize * block_size;
            match command.buffer.get_mut(start..start + command.chunk_bytes) {
                Some(out) => state.bounce.read_bytes(0, out),
                None => return ChunkOutcome::Finished(Err(BlockError::Io)),
            }
        }
        command.done_blocks = command.done_blocks.saturating_add(command.chunk_blocks);
        if command.done_blocks < command.blocks {
            ChunkOutcome::MoreChunks
        } else {
            ChunkOutcome::Finished(Ok(()))
        }
    }

    /// Completes the request in `slot` (once: the slot is emptied).
    fn complete(&mut self, slot: usize, result: Result<(), BlockError>, out: &mut Vec<Completion>) {
        if let Some(command) = self.slots.get_mut(slot).and_then(|state| state.command.take()) {
            out.push(Completion { id: command.id, result, buffer: command.buffer });
        }
    }

    /// Slots holding a request, as a PxCI-style bit mask.
    fn busy_slots(&self) -> u32 {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.command.is_some())
            .fold(0, |mask, (index, _)| mask | 1 << index)
    }

    fn slot_indices(mask: u32) -> impl Iterator<Item = usize> {
        (0..MAX_PORTS as usize).filter(move |slot| mask & (1 << slot) != 0)
    }

    /// After PxIS reported an error: fails every request that may have caused it,
    /// restarts the port and issues the others again.
    ///
    /// Which command failed cannot always be told: an AHCI 1.3.1 HBA halts with the
    /// failing slot still in PxCI and named by PxCMD.CCS (§6.2.2.1), but QEMU's HBA
    /// clears the failing slot's PxCI bit, sets TFES and goes on (it keeps no CCS).
    /// So the slot CCS names (if still issued) and every slot whose PxCI bit cleared
    /// since the last poll complete with `Io` (if neither exists, every busy slot
    /// does): an error is never reported as a success, at the price of failing a
    /// request that finished next to the failing one. Slots still issued behind them
    /// have not run to completion and are issued again after the restart.
    fn recover_from_error(&mut self, out: &mut Vec<Completion>) {
        let busy = self.busy_slots();
        // Read after PxIS showed the error, so it reflects the halted port.
        let issued = self.port.read(PXCI);
        fence(Ordering::SeqCst);
        let current = (self.port.read(PXCMD) >> PXCMD_CCS_SHIFT) & PXCMD_CCS_MASK;
        let named_by_hba = busy & issued & (1 << current);
        let finished = busy & !issued;
        let mut failed = named_by_hba | finished;
        if failed == 0 {
            failed = busy;
        }
        for slot in Self::slot_indices(failed) {
            self.complete(slot, Err(BlockError::Io), out);
        }
        self.restart_and_reissue(busy & !failed, out);
    }

    /// Restarts the port and issues the current chunk of every slot in `reissue`;
    /// if the port cannot be restarted, fails every request and takes the port out of
    /// service.
    fn restart_and_reissue(&mut self, reissue: u32, out: &mut Vec<Completion>) {
        match self.restart() {
            Ok(()) => {
                for slot in Self::slot_indices(reissue) {
                    self.issue_chunk(slot);
                }
            }
            Err(_) => self.take_out_of_service(out),
        }
    }

    fn take_out_of_service(&mut self, out: &mut Vec<Completion>) {
        // Error bits may stay in PxIS until the next restart: they must not signal.
        self.disable_port_interrupts();
        for slot in Self::slot_indices(self.busy_slots()) {
            self.complete(slot, Err(BlockError::Io), out);
        }
        self.out_of_service_until = Some(self.platform.now_ns().saturating_add(OUT_OF_SERVICE_RETRY_NS));
    }

    /// Refuses requests while the port is out of service; tries a restart when the
    /// retry time has come.
    fn ensure_in_service(&mut self) -> Result<(), BlockError> {
        let Some(retry_at) = self.out_of_service_until else {
            return Ok(());
        };
        let now = self.platform.now_ns();
        if now < retry_at {
            return Err(BlockError::Io);
        }
        match self.restart() {
            Ok(()) => {
                self.out_of_service_until = None;
                Ok(())
            }
            Err(_) => {
                self.out_of_service_until = Some(now.saturating_add(OUT_OF_SERVICE_RETRY_NS));
                Err(BlockError::Io)
            }
        }
    }
}

/// Writes the TRIM payload for `blocks` sectors from `lba` into the first
/// `payload_bytes` of `bounce`: consecutive ranges of at most 65535 sectors, unused
/// entries zero (a zero-length entry is ignored by the device).
fn write_trim_ranges(bounce: &dyn DmaRegion, lba: u64, blocks: u32, payload_bytes: usize) {
    bounce.zero(0, payload_bytes);
    let mut offset = 0;
    let mut done = 0u32;
    while done < blocks && offset + TRIM_ENTRY_BYTES <= payload_bytes {
        let length = (blocks - done).min(TRIM_RANGE_MAX_SECTORS);
        let entry = ((lba + u64::from(done)) & TRIM_LBA_MASK) | u64::from(length) << 48;
        bounce.write_u64(offset, entry);
        offset += TRIM_ENTRY_BYTES;
        done += length;
    }
}

/// Clears PxCMD.ST and waits for PxCMD.CR to clear; true if it did.
fn stop_engine(port: &PortRegisters, platform: &dyn Platform) -> bool {
    if port.read(PXCMD) & (PXCMD_ST | PXCMD_CR) == 0 {
        return true;
    }
    port.clear_command_bits(PXCMD_ST);
    wait_until(platform, ENGINE_STOP_TIMEOUT_NS, || port.read(PXCMD) & PXCMD_CR == 0)
}

/// Clears PxCMD.FRE and waits for PxCMD.FR to clear; true if it did.
fn stop_fis_receive(port: &PortRegisters, platform: &dyn Platform) -> bool {
    if port.read(PXCMD) & (PXCMD_FRE | PXCMD_FR) == 0 {
        return true;
    }
    port.clear_command_bits(PXCMD_FRE);
    wait_until(platform, ENGINE_STOP_TIMEOUT_NS, || port.read(PXCMD) & PXCMD_FR == 0)
}

impl BlockDevice for AhciDisk {
    fn info(&self) -> DeviceInfo {
        self.info.clone()
    }

    fn submit(&mut self, request: Request) -> Result<RequestId, BlockError> {
        check_request(&self.info, &request)?;
        let operation = match request.op {
            Op::Read => AtaOperation::Read,
            Op::Write => AtaOperation::Write,
            Op::Flush => AtaOperation::Flush,
            Op::Discard => AtaOperation::Trim,
        };
        let slot = self.slots.iter().position(|slot| slot.command.is_none()).ok_or(BlockError::QueueFull)?;
        self.ensure_in_service()?;
        let id = RequestId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        if let Some(state) = self.slots.get_mut(slot) {
            state.command = Some(SlotCommand {
                id,
                operation,
                lba: request.lba,
                blocks: request.blocks,
                buffer: request.buffer,
                done_blocks: 0,
                chunk_blocks: 0,
                chunk_bytes: 0,
                deadline_ns: 0,
            });
        }
        self.issue_chunk(slot);
        Ok(id)
    }

    fn poll_completions(&mut self, out: &mut Vec<Completion>) {
        for _ in 0..MAX_POLL_PASSES {
            if !self.poll_once(out) {
                break;
            }
        }
    }
}

impl AhciDisk {
    /// One look at the port. True if a slot that was still issued when PxCI was read
    /// has finished since: its completion bits were acknowledged by this pass, so no
    /// interrupt will announce it; the caller looks again.
    fn poll_once(&mut self, out: &mut Vec<Completion>) -> bool {
        let busy = self.busy_slots();
        // PxCI before PxIS: a slot seen finished here finished before the status read,
        // so a clean status below covers it (an HBA sets TFES when the command ends).
        let issued = self.port.read(PXCI);
        fence(Ordering::SeqCst);
        let status = self.port.read(PXIS);
        fence(Ordering::SeqCst);
        // The value just read is the one acted on: its completion bits are
        // acknowledged now, its error bits by the restart recovery ends with.
        let acknowledged = status & !PXIS_ERRORS;
        if acknowledged != 0 {
            self.port.write(PXIS, acknowledged);
        }
        if self.port_interrupt_enable != 0 {
            self.port.acknowledge_hba();
        }
        if status & PXIS_ERRORS != 0 {
            if busy != 0 {
                self.recover_from_error(out);
            } else if self.out_of_service_until.is_none() {
                // An error with nothing in flight: restart now rather than blame the
                // next request for it.
                self.restart_and_reissue(0, out);
            }
            return false;
        }
        if busy == 0 {
            return false;
        }
        let now = self.platform.now_ns();
        let mut timed_out = 0;
        for slot in Self::slot_indices(busy) {
            let bit = 1 << slot;
            if issued & bit == 0 {
                match self.finish_chunk(slot) {
                    ChunkOutcome::Finished(result) => self.complete(slot, result, out),
                    ChunkOutcome::MoreChunks => self.issue_chunk(slot),
                }
            } else if self
                .slots
                .get(slot)
                .and_then(|state| state.command.as_ref())
                .is_some_and(|c| now >= c.deadline_ns)
            {
                timed_out |= bit;
            }
        }
        if timed_out != 0 {
            for slot in Self::slot_indices(timed_out) {
                self.complete(slot, Err(BlockError::Timeout), out);
            }
            // The others were queued behind the stuck command; they run again after
            // the reset.
            let waiting = self.busy_slots();
            self.restart_and_reissue(waiting, out);
            // Whatever is issued now was issued after the acknowledgement above, so
            // its end will signal.
            return false;
        }
        fence(Ordering::SeqCst);
        self.busy_slots() & issued & !self.port.read(PXCI) != 0
    }
}

impl Drop for AhciDisk {
    fn drop(&mut self) {
        self.disable_port_interrupts();
        let stopped = stop_engine(&self.port, &*self.platform) && stop_fis_receive(&self.port, &*self.platform);
        if !stopped {
            // The HBA may still write the command list, FIS area or bounce regions:
            // leak them rather than let the allocator hand them out again.
            super::leak_dma(&mut self.control);
            for slot in core::mem::take(&mut self.slots) {
                core::mem::forget(slot.bounce);
            }
        }
    }
}
