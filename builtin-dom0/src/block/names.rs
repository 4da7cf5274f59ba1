//! Stable disk names and the table of dom0's disks (issue 6: "a `disks` command
//! listing disks, models, sizes and partitions with stable names").
//!
//! Names follow Linux's, so configs read the same as on a Linux dom0: by driver kind
//! and probe order, `sda`, `sdb`, … `sdz`, `sdaa` for AHCI; `nvme0n1` for NVMe;
//! `vda` for virtio-blk; `ram0` for RAM disks. A partition appends its number,
//! after a `p` when the disk's name ends in a digit (`sda1`, `nvme0n1p2`, `ram0p1`).
//! A name, once given, is never reused while dom0 runs (removing a disk does not
//! rename the others).

use super::partition::{self, PartitionEntry, PartitionError, PartitionTable};
use super::{BlockDevice, BlockError, DeviceInfo, Partition, SyncReader};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// The driver behind a disk; it picks the name's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    /// SATA through AHCI: `sdX`.
    Ahci,
    /// NVMe namespace 1 of controller N: `nvmeNn1`.
    Nvme,
    /// virtio-blk: `vdX`.
    VirtioBlk,
    /// A RAM disk: `ramN`.
    Ram,
}

impl DriverKind {
    pub const ALL: [DriverKind; 4] = [DriverKind::Ahci, DriverKind::Nvme, DriverKind::VirtioBlk, DriverKind::Ram];

    fn index(self) -> usize {
        self as usize
    }
}

/// `a`, `b`, … `z`, `aa`, `ab`, … (bijective base 26, as Linux's sd driver).
fn letters(mut index: u32) -> String {
    let mut reversed = Vec::new();
    loop {
        reversed.push(b'a' + (index % 26) as u8);
        if index < 26 {
            break;
        }
        index = index / 26 - 1;
    }
    reversed.iter().rev().map(|&b| char::from(b)).collect()
}

/// The name of the `ordinal`-th disk (from 0) probed by a driver of `kind`.
pub fn disk_name(kind: DriverKind, ordinal: u32) -> String {
    match kind {
        DriverKind::Ahci => format!("sd{}", letters(ordinal)),
        DriverKind::Nvme => format!("nvme{ordinal}n1"),
        DriverKind::VirtioBlk => format!("vd{}", letters(ordinal)),
        DriverKind::Ram => format!("ram{ordinal}"),
    }
}

/// The name of partition `number` of disk `disk`.
pub fn partition_name(disk: &str, number: u32) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{number}")
    } else {
        format!("{disk}{number}")
    }
}

/// A size in binary units with one decimal, e.g. `512 B`, `64.0 MiB`, `1.5 TiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    let mut whole = bytes;
    while whole >= 1024 && unit + 1 < UNITS.len() {
        whole /= 1024;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes} B");
    }
    let scale = 1u128 << (10 * unit);
    let tenths = (u128::from(bytes) * 10 + scale / 2) / scale;
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

/// Why the table refused something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskTableError {
    /// No disk or partition has this name.
    NoSuchName(String),
    /// Reading the partition table failed or it was refused.
    Partitions(PartitionError),
    /// The device refused the partition view.
    Block(BlockError),
}

impl fmt::Display for DiskTableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskTableError::NoSuchName(name) => write!(f, "no disk named {name}"),
            DiskTableError::Partitions(error) => write!(f, "{error}"),
            DiskTableError::Block(error) => write!(f, "{error}"),
        }
    }
}

/// One registered disk.
struct Disk {
    name: String,
    kind: DriverKind,
    device: Box<dyn BlockDevice>,
    /// From the last `scan_partitions`; empty before, or when the disk has no table.
    partitions: Vec<PartitionEntry>,
    /// Why the last scan refused the table, if it did.
    partition_error: Option<PartitionError>,
}

/// One line of the `disks` listing for a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionListing {
    pub name: String,
    pub first_lba: u64,
    pub blocks: u64,
    pub size: String,
    /// The GPT name, or the MBR type as `type 0x83`.
    pub label: String,
}

/// One disk of the `disks` listing: plain data for the shell to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskListing {
    pub name: String,
    pub kind: DriverKind,
    pub model: String,
    pub capacity_bytes: u64,
    pub size: String,
    pub logical_block_size: u32,
    pub read_only: bool,
    pub partitions: Vec<PartitionListing>,
    /// Why the partition table was refused, as one line.
    pub partition_error: Option<String>,
}

/// dom0's disks, by stable name. Owns the devices; partitions are views created on
/// demand ([`DiskTable::open`]) from (disk, first block, block count).
#[derive(Default)]
pub struct DiskTable {
    disks: Vec<Disk>,
    /// Disks probed so far per driver kind (names are never reused).
    probed: [u32; 4],
}

/// Polls a probing read may take before it is a timeout.
const PROBE_POLLS: u32 = 1_000_000;

impl DiskTable {
    pub fn new() -> DiskTable {
        DiskTable::default()
    }

    /// Registers a disk found by a `kind` driver and returns its name.
    pub fn register(&mut self, kind: DriverKind, device: Box<dyn BlockDevice>) -> String {
        let ordinal = &mut self.probed[kind.index()];
        let name = disk_name(kind, *ordinal);
        *ordinal += 1;
        self.disks.push(Disk { name: name.clone(), kind, device, partitions: Vec::new(), partition_error: None });
        name
    }

    /// Removes a disk (and so its partitions); its name is not given out again.
    pub fn remove(&mut self, name: &str) -> Option<Box<dyn BlockDevice>> {
        let index = self.disks.iter().position(|d| d.name == name)?;
        Some(self.disks.remove(index).device)
    }

    /// Reads the disk's partition table and names its partitions; returns their
    /// names. A disk without a table has none. Call before the disk is shared: this
    /// reads synchronously and drops other completions.
    pub fn scan_partitions(&mut self, name: &str) -> Result<Vec<String>, DiskTableError> {
        let disk = self
            .disks
            .iter_mut()
            .find(|d| d.name == name)
            .ok_or_else(|| DiskTableError::NoSuchName(String::from(name)))?;
        let mut reader = SyncReader { device: &mut *disk.device, max_polls: PROBE_POLLS };
        disk.partitions.clear();
        disk.partition_error = None;
        match partition::parse(&mut reader) {
            Ok(table) => {
                disk.partitions = table.map(|t: PartitionTable| t.partitions).unwrap_or_default();
                Ok(disk.partitions.iter().map(|p| partition_name(&disk.name, p.number)).collect())
            }
            Err(error) => {
                disk.partition_error = Some(error);
                Err(DiskTableError::Partitions(error))
            }
        }
    }

    /// Every disk and partition name, disks in registration order, each followed by
    /// its partitions.
    pub fn names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for disk in &self.disks {
            names.push(disk.name.clone());
            for partition in &disk.partitions {
                names.push(partition_name(&disk.name, partition.number));
            }
        }
        names
    }

    /// The geometry of a disk or partition.
    pub fn info(&self, name: &str) -> Option<DeviceInfo> {
        for disk in &self.disks {
            let mut info = disk.device.info();
            if disk.name == name {
                return Some(info);
            }
            if let Some(partition) = disk.partitions.iter().find(|p| partition_name(&disk.name, p.number) == name) {
                info.capacity = partition.blocks;
                return Some(info);
            }
        }
        None
    }

    /// A block device for a disk or partition name: the whole disk is a view of
    /// all its blocks. The view borrows the table, so one name is open at a time
    /// here; the blkif backend will multiplex on top of this.
    pub fn open(&mut self, name: &str) -> Result<Partition<&mut dyn BlockDevice>, DiskTableError> {
        for disk in &mut self.disks {
            let extent = if disk.name == name {
                Some((0, disk.device.info().capacity))
            } else {
                disk.partitions
                    .iter()
                    .find(|p| partition_name(&disk.name, p.number) == name)
                    .map(|p| (p.first_lba, p.blocks))
            };
            if let Some((first_lba, blocks)) = extent {
                let device: &mut dyn BlockDevice = &mut *disk.device;
                return Partition::new(device, first_lba, blocks).map_err(DiskTableError::Block);
            }
        }
        Err(DiskTableError::NoSuchName(String::from(name)))
    }

    /// The `disks` listing.
    pub fn listing(&self) -> Vec<DiskListing> {
        self.disks
            .iter()
            .map(|disk| {
                let info = disk.device.info();
                let block = u64::from(info.logical_block_size);
                DiskListing {
                    name: disk.name.clone(),
                    kind: disk.kind,
                    model: info.model.clone(),
                    capacity_bytes: info.capacity_bytes(),
                    size: human_size(info.capacity_bytes()),
                    logical_block_size: info.logical_block_size,
                    read_only: info.read_only,
                    partitions: disk
                        .partitions
                        .iter()
                        .map(|p| PartitionListing {
                            name: partition_name(&disk.name, p.number),
                            first_lba: p.first_lba,
                            blocks: p.blocks,
                            size: human_size(p.blocks.saturating_mul(block)),
                            label: match &p.kind {
                                partition::PartitionKind::Gpt { name, .. } => name.clone(),
                                partition::PartitionKind::Mbr { type_byte, .. } => {
                                    format!("type {type_byte:#04x}")
                                }
                            },
                        })
                        .collect(),
                    partition_error: disk.partition_error.map(|e| format!("{e}")),
                }
            })
            .collect()
    }
}
