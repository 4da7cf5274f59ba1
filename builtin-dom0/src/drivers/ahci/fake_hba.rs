//! A model of an AHCI host bus adapter for the driver's host tests: the generic host
//! registers and up to 32 ports, each optionally with a SATA disk held in a `Vec<u8>`.
//!
//! It executes what the driver puts in [`FakeMemory`] the way an HBA does: a write
//! to PxCI (with PxCMD.ST set) reads the slot's command header and table by physical
//! address, runs the ATA command in the Register H2D FIS and moves the data through
//! the PRD entries, then clears the PxCI bit and writes PRDBC back. A failing
//! command sets PxIS.TFES and PxTFD.ERR, leaves its PxCI bit set, names itself in
//! PxCMD.CCS and halts the port until ST is cleared (AHCI 1.3.1 §6.2.2). Faults the
//! tests inject are in [`Faults`]; the ATA commands run are logged per port.
//!
//! Interrupts follow QEMU's HBA: IS is recomputed from every port's PxIS & PxIE after
//! each register write and each command, and every time it is non-zero with GHC.IE
//! set a message is counted ([`FakeHba::messages`]) — so a pending, enabled bit left
//! behind shows up as messages that keep coming.

extern crate std;

use crate::drivers::fake::FakeMemory;
use crate::drivers::Registers;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use std::sync::Mutex;

pub const PXCMD_ST: u32 = 1 << 0;
pub const PXCMD_SUD: u32 = 1 << 1;
pub const PXCMD_FRE: u32 = 1 << 4;
pub const PXCMD_FR: u32 = 1 << 14;
pub const PXCMD_CR: u32 = 1 << 15;
const PXIS_DHRS: u32 = 1 << 0;
pub const GHC_IE: u32 = 1 << 1;
const PXIS_TFES: u32 = 1 << 30;
const PXSERR_DIAG_X: u32 = 1 << 26;
/// DET = 3 (present, communicating), speed Gen 1, IPM active.
const SSTS_LINK_UP: u32 = 0x113;
const TFD_READY: u32 = 0x50;
const TFD_BUSY: u32 = 0x80;
/// Status DRDY | ERR, error register ABRT.
const TFD_ABORTED: u32 = 0x0451;
pub const SIG_ATA: u32 = 0x0000_0101;
pub const SIG_ATAPI: u32 = 0xEB14_0101;

/// Faults a test injects into one port.
#[derive(Default, Clone)]
pub struct Faults {
    /// A read or write covering this LBA ends with a task-file error.
    pub fail_lba: Option<u64>,
    /// A read or write covering this LBA never completes (BSY) until COMRESET.
    pub hang_lba: Option<u64>,
    /// Any command with this ATA opcode ends with a task-file error.
    pub fail_command: Option<u8>,
    /// On an error, clear the slot's PxCI bit and go on with the next slot instead of
    /// halting (what QEMU's HBA does; it keeps no PxCMD.CCS either).
    pub continue_after_error: bool,
    /// PRDBC written back instead of the real byte count.
    pub byte_count: Option<u32>,
    /// PxCMD.CR and FR never clear, until a COMRESET.
    pub stuck_engine: bool,
    /// Commands run only when the test calls [`FakeHba::run`].
    pub deferred: bool,
    /// A COMRESET also clears PxIE and PxIS (as QEMU's port reset did before 2011).
    pub comreset_clears_interrupt_enable: bool,
}

/// A disk: its bytes and the IDENTIFY DEVICE words it answers with.
pub struct FakeDisk {
    /// The first sectors' contents (reads and writes beyond them fail).
    pub data: Vec<u8>,
    /// Sectors TRIM accepts (≥ what `data` holds, so large discards are testable).
    pub capacity: u64,
    pub identify: [u16; 256],
    pub sector_size: usize,
    /// (first LBA, sectors) of every TRIM range entry received, in order.
    pub trims: Vec<(u64, u64)>,
}

impl FakeDisk {
    pub fn new(model: &str, sectors: u64, sector_size: usize) -> FakeDisk {
        FakeDisk::sparse(model, sectors, sectors, sector_size)
    }

    /// A disk of `capacity` sectors of which only the first `stored` hold data.
    pub fn sparse(model: &str, capacity: u64, stored: u64, sector_size: usize) -> FakeDisk {
        FakeDisk {
            data: vec![0; stored as usize * sector_size],
            capacity,
            identify: identify_words(model, capacity, sector_size),
            sector_size,
            trims: Vec::new(),
        }
    }
}

/// IDENTIFY DEVICE words of a plain LBA48 disk with a write cache, FLUSH CACHE EXT and
/// TRIM (one payload block per command).
pub fn identify_words(model: &str, sectors: u64, sector_size: usize) -> [u16; 256] {
    let mut words = [0u16; 256];
    let mut padded = [b' '; 40];
    for (slot, byte) in padded.iter_mut().zip(model.bytes()) {
        *slot = byte;
    }
    for (index, pair) in padded.chunks_exact(2).enumerate() {
        words[27 + index] = u16::from_be_bytes([pair[0], pair[1]]);
    }
    words[49] = 1 << 9 | 1 << 8;
    words[60] = sectors.min(0x0FFF_FFFF) as u16;
    words[61] = (sectors.min(0x0FFF_FFFF) >> 16) as u16;
    words[82] = 1 << 14 | 1 << 5;
    words[83] = 1 << 14 | 1 << 13 | 1 << 12 | 1 << 10;
    words[85] = 1 << 5;
    words[86] = 1 << 13 | 1 << 12 | 1 << 10;
    for index in 0..4 {
        words[100 + index] = (sectors >> (16 * index)) as u16;
    }
    words[105] = 1;
    words[106] = 0x4000;
    words[169] = 1;
    if sector_size != 512 {
        words[106] |= 1 << 12;
        let sector_words = (sector_size / 2) as u32;
        words[117] = sector_words as u16;
        words[118] = (sector_words >> 16) as u16;
    }
    words
}

pub struct FakePort {
    pub clb: u64,
    pub fb: u64,
    pub is: u32,
    pub ie: u32,
    pub cmd: u32,
    pub tfd: u32,
    pub sig: u32,
    pub ssts: u32,
    pub sctl: u32,
    pub serr: u32,
    pub ci: u32,
    pub disk: Option<FakeDisk>,
    pub faults: Faults,
    /// Stopped processing after an error or a hang, until ST is cleared.
    pub halted: bool,
    /// ATA command bytes executed (or failed), in order.
    pub commands: Vec<u8>,
    pub comresets: u32,
}

impl FakePort {
    pub fn empty() -> FakePort {
        FakePort {
            clb: 0,
            fb: 0,
            is: 0,
            ie: 0,
            cmd: 0,
            tfd: 0x7F,
            sig: u32::MAX,
            ssts: 0,
            sctl: 0,
            serr: 0,
            ci: 0,
            disk: None,
            faults: Faults::default(),
            halted: false,
            commands: Vec::new(),
            comresets: 0,
        }
    }

    pub fn with_disk(disk: FakeDisk) -> FakePort {
        FakePort { tfd: TFD_READY, sig: SIG_ATA, ssts: SSTS_LINK_UP, disk: Some(disk), ..FakePort::empty() }
    }

    pub fn atapi() -> FakePort {
        FakePort { tfd: TFD_READY, sig: SIG_ATAPI, ssts: SSTS_LINK_UP, ..FakePort::empty() }
    }

    fn write_command(&mut self, value: u32) {
        let was_running = self.cmd & PXCMD_ST != 0;
        let control = PXCMD_ST | PXCMD_SUD | PXCMD_FRE;
        self.cmd = (self.cmd & !control) | (value & control);
        if value & PXCMD_FRE != 0 {
            self.cmd |= PXCMD_FR;
        } else if !self.faults.stuck_engine {
            self.cmd &= !PXCMD_FR;
        }
        if value & PXCMD_ST != 0 {
            self.cmd |= PXCMD_CR;
        } else if was_running || self.cmd & PXCMD_CR != 0 {
            // Clearing ST resets PxCI and the current command slot (§3.3.7).
            self.ci = 0;
            self.halted = false;
            self.cmd &= !(0x1F << 8);
            if !self.faults.stuck_engine {
                self.cmd &= !PXCMD_CR;
            }
        }
    }

    fn write_control(&mut self, value: u32) {
        let resetting = self.sctl & 0xF == 1;
        self.sctl = value;
        if value & 0xF == 1 {
            self.ssts = 1;
        } else if resetting && value & 0xF == 0 {
            self.comresets += 1;
            if self.faults.comreset_clears_interrupt_enable {
                self.ie = 0;
                self.is = 0;
            }
            if self.disk.is_some() {
                self.ssts = SSTS_LINK_UP;
                self.tfd = TFD_READY;
                self.sig = SIG_ATA;
                self.serr |= PXSERR_DIAG_X;
            }
            if self.faults.stuck_engine {
                self.faults.stuck_engine = false;
                if self.cmd & PXCMD_ST == 0 {
                    self.cmd &= !PXCMD_CR;
                }
            }
        }
    }
}

pub struct FakeHba {
    pub cap: u32,
    pub ghc: u32,
    /// IS: bit n while port n has a pending, enabled interrupt.
    pub is: u32,
    /// Messages sent (MSI/MSI-X writes; with GHC.IE set).
    pub messages: u32,
    pub pi: u32,
    pub ports: Vec<FakePort>,
    pub bar_len: u64,
    memory: Arc<FakeMemory>,
}

/// How a command ended.
enum Outcome {
    Done(u32),
    Error,
    Hang,
}

impl FakeHba {
    /// An HBA with `ports` (port i is bit i of PI), 32 command slots and 64-bit DMA.
    pub fn new(memory: Arc<FakeMemory>, ports: Vec<FakePort>) -> Arc<Mutex<FakeHba>> {
        let count = ports.len() as u32;
        let cap = 1 << 31 | 31 << 8 | count.saturating_sub(1);
        let pi = if count == 32 { u32::MAX } else { (1 << count) - 1 };
        Arc::new(Mutex::new(FakeHba { cap, ghc: 0, is: 0, messages: 0, pi, ports, bar_len: 0x1100, memory }))
    }

    fn port_register(offset: u64) -> Option<(usize, u64)> {
        let relative = offset.checked_sub(0x100)?;
        Some(((relative / 0x80) as usize, relative % 0x80))
    }

    fn read(&self, offset: u64) -> u32 {
        if offset + 4 > self.bar_len {
            return u32::MAX;
        }
        match offset {
            0x00 => return self.cap,
            0x04 => return self.ghc,
            0x08 => return self.is,
            0x0C => return self.pi,
            0x10 => return 0x0001_0300,
            _ => {}
        }
        let Some((index, register)) = Self::port_register(offset) else {
            return 0;
        };
        let Some(port) = self.ports.get(index) else {
            return 0;
        };
        match register {
            0x00 => port.clb as u32,
            0x04 => (port.clb >> 32) as u32,
            0x08 => port.fb as u32,
            0x0C => (port.fb >> 32) as u32,
            0x10 => port.is,
            0x14 => port.ie,
            0x18 => port.cmd,
            0x20 => port.tfd,
            0x24 => port.sig,
            0x28 => port.ssts,
            0x2C => port.sctl,
            0x30 => port.serr,
            0x38 => port.ci,
            _ => 0,
        }
    }

    /// QEMU's `ahci_check_irq`: IS from the ports, and a message while it is not 0.
    fn check_interrupts(&mut self) {
        self.is = self
            .ports
            .iter()
            .enumerate()
            .filter(|(_, port)| port.is & port.ie != 0)
            .fold(0, |is, (index, _)| is | 1 << index);
        if self.is != 0 && self.ghc & GHC_IE != 0 {
            self.messages += 1;
        }
    }

    fn write(&mut self, offset: u64, value: u32) {
        if offset + 4 > self.bar_len {
            return;
        }
        self.write_register(offset, value);
        self.check_interrupts();
    }

    fn write_register(&mut self, offset: u64, value: u32) {
        if offset == 0x04 {
            self.ghc = value & (1 << 31 | GHC_IE);
            return;
        }
        if offset == 0x08 {
            self.is &= !value;
            return;
        }
        let Some((index, register)) = Self::port_register(offset) else {
            return;
        };
        let deferred;
        {
            let Some(port) = self.ports.get_mut(index) else {
                return;
            };
            deferred = port.faults.deferred;
            match register {
                0x00 => port.clb = (port.clb & !0xFFFF_FFFF) | u64::from(value),
                0x04 => port.clb = (port.clb & 0xFFFF_FFFF) | u64::from(value) << 32,
                0x08 => port.fb = (port.fb & !0xFFFF_FFFF) | u64::from(value),
                0x0C => port.fb = (port.fb & 0xFFFF_FFFF) | u64::from(value) << 32,
                0x10 => port.is &= !value,
                0x14 => port.ie = value,
                0x18 => port.write_command(value),
                0x2C => port.write_control(value),
                0x30 => port.serr &= !value,
                0x38 => {
                    if port.cmd & PXCMD_ST == 0 {
                        return;
                    }
                    port.ci |= value;
                }
                _ => return,
            }
        }
        if register == 0x38 && !deferred {
            self.run(index);
        }
    }

    /// Runs every issued command of port `index`, in slot order, until one fails.
    pub fn run(&mut self, index: usize) {
        self.run_slots(index, usize::MAX);
        self.check_interrupts();
    }

    /// Runs the lowest issued command of port `index` only.
    pub fn run_next(&mut self, index: usize) {
        self.run_slots(index, 1);
        self.check_interrupts();
    }

    fn run_slots(&mut self, index: usize, mut budget: usize) {
        for slot in 0..32 {
            if budget == 0 {
                return;
            }
            let Some(port) = self.ports.get(index) else {
                return;
            };
            if port.halted || port.cmd & PXCMD_ST == 0 {
                return;
            }
            if port.ci & (1 << slot) == 0 {
                continue;
            }
            budget -= 1;
            let outcome = self.execute(index, slot);
            let port = &mut self.ports[index];
            match outcome {
                Outcome::Done(bytes) => {
                    let header = port.clb + slot as u64 * 32;
                    self.memory.write_u32(header + 4, port.faults.byte_count.unwrap_or(bytes));
                    port.ci &= !(1 << slot);
                    port.tfd = TFD_READY;
                    port.is |= PXIS_DHRS;
                }
                Outcome::Error if port.faults.continue_after_error => {
                    port.ci &= !(1 << slot);
                    port.tfd = TFD_ABORTED;
                    port.is |= PXIS_TFES;
                }
                Outcome::Error => {
                    port.tfd = TFD_ABORTED;
                    port.is |= PXIS_TFES;
                    port.cmd = (port.cmd & !(0x1F << 8)) | (slot as u32) << 8;
                    port.halted = true;
                }
                Outcome::Hang => {
                    port.tfd = TFD_BUSY;
                    port.cmd = (port.cmd & !(0x1F << 8)) | (slot as u32) << 8;
                    port.halted = true;
                }
            }
        }
    }

    fn execute(&mut self, index: usize, slot: usize) -> Outcome {
        let memory = self.memory.clone();
        let port = &mut self.ports[index];
        let header = port.clb + slot as u64 * 32;
        let (Some(flags), Some(table)) = (memory.read_u32(header), memory.read_u64(header + 8)) else {
            return Outcome::Error;
        };
        let mut fis = [0u8; 20];
        if memory.read(table, &mut fis).is_none() || fis[0] != 0x27 {
            return Outcome::Error;
        }
        let command = fis[2];
        port.commands.push(command);
        if port.faults.fail_command == Some(command) {
            return Outcome::Error;
        }
        let lba = u64::from_le_bytes([fis[4], fis[5], fis[6], fis[8], fis[9], fis[10], 0, 0]);
        let count = match u16::from_le_bytes([fis[12], fis[13]]) {
            0 => 65536,
            count => u64::from(count),
        };
        let mut prds = Vec::new();
        for entry in 0..(flags >> 16) as u64 {
            let base = table + 0x80 + entry * 16;
            let (Some(address), Some(control)) = (memory.read_u64(base), memory.read_u32(base + 12)) else {
                return Outcome::Error;
            };
            prds.push((address, (control & 0x3F_FFFF) as usize + 1));
        }
        let Some(disk) = port.disk.as_mut() else {
            return Outcome::Error;
        };
        let sector_size = disk.sector_size as u64;
        let covers = |target: Option<u64>| target.is_some_and(|target| (lba..lba + count).contains(&target));
        match command {
            0xEC => {
                let bytes: Vec<u8> = disk.identify.iter().flat_map(|word| word.to_le_bytes()).collect();
                scatter(&memory, &prds, &bytes).map_or(Outcome::Error, Outcome::Done)
            }
            0x25 | 0x35 => {
                if covers(port.faults.hang_lba) {
                    return Outcome::Hang;
                }
                if covers(port.faults.fail_lba) {
                    return Outcome::Error;
                }
                let start = (lba * sector_size) as usize;
                let length = (count * sector_size) as usize;
                let Some(range) = disk.data.get_mut(start..start + length) else {
                    return Outcome::Error;
                };
                if command == 0x25 {
                    scatter(&memory, &prds, range).map_or(Outcome::Error, Outcome::Done)
                } else {
                    gather(&memory, &prds, range).map_or(Outcome::Error, Outcome::Done)
                }
            }
            0xEA => Outcome::Done(0),
            0x06 => {
                if fis[3] != 1 {
                    return Outcome::Error;
                }
                let mut payload = vec![0; count as usize * 512];
                let Some(moved) = gather(&memory, &prds, &mut payload) else {
                    return Outcome::Error;
                };
                for entry in payload.chunks_exact(8) {
                    let entry = u64::from_le_bytes(entry.try_into().unwrap());
                    let (first, sectors) = (entry & ((1 << 48) - 1), entry >> 48);
                    if sectors == 0 {
                        continue;
                    }
                    if first + sectors > disk.capacity {
                        return Outcome::Error;
                    }
                    disk.trims.push((first, sectors));
                    let start = (first * sector_size).min(disk.data.len() as u64) as usize;
                    let end = ((first + sectors) * sector_size).min(disk.data.len() as u64) as usize;
                    disk.data[start..end].fill(0);
                }
                Outcome::Done(moved)
            }
            _ => Outcome::Error,
        }
    }
}

/// Device-to-memory: writes `data` through the PRD entries; the byte count moved.
fn scatter(memory: &FakeMemory, prds: &[(u64, usize)], data: &[u8]) -> Option<u32> {
    let mut done = 0;
    for &(address, length) in prds {
        let chunk = length.min(data.len() - done);
        memory.write(address, &data[done..done + chunk])?;
        done += chunk;
    }
    (done == data.len()).then_some(done as u32)
}

/// Memory-to-device: fills `data` from the PRD entries; the byte count moved.
fn gather(memory: &FakeMemory, prds: &[(u64, usize)], data: &mut [u8]) -> Option<u32> {
    let mut done = 0;
    for &(address, length) in prds {
        let chunk = length.min(data.len() - done);
        memory.read(address, &mut data[done..done + chunk])?;
        done += chunk;
    }
    (done == data.len()).then_some(done as u32)
}

/// A mapping of the fake ABAR (every `map_bar` gives a new handle onto one model).
pub struct FakeAbar(pub Arc<Mutex<FakeHba>>);

impl Registers for FakeAbar {
    fn len(&self) -> u64 {
        self.0.lock().unwrap().bar_len
    }
    fn read8(&self, offset: u64) -> u8 {
        (self.read32(offset & !3) >> ((offset & 3) * 8)) as u8
    }
    fn read16(&self, offset: u64) -> u16 {
        (self.read32(offset & !3) >> ((offset & 2) * 8)) as u16
    }
    fn read32(&self, offset: u64) -> u32 {
        self.0.lock().unwrap().read(offset)
    }
    fn write8(&self, _offset: u64, _value: u8) {
        panic!("AHCI registers are written 32 bits at a time");
    }
    fn write16(&self, _offset: u64, _value: u16) {
        panic!("AHCI registers are written 32 bits at a time");
    }
    fn write32(&self, offset: u64, value: u32) {
        self.0.lock().unwrap().write(offset, value)
    }
}
