//! The storage commands: `pci` (the PCI functions and the driver that took
//! each), `disks` (the physical disks, their partitions and who holds them),
//! and xl's `block-attach DOMAIN SPEC`, `block-detach [-f] DOMAIN VDEV`,
//! `block-list DOMAIN` — thin formatters over [`StorageControl`].
//!
//! Why a trait and a table of its own: the shell crate does not depend on the
//! built-in dom0; image/ implements [`StorageControl`] with dom0's PCI scan,
//! block layer and blkback, and adds `storage_commands::<Appliance>()` to its
//! `Registry::new(&[...])`. A context that does not implement the trait simply
//! does not register the table (same generic-table trick as [`crate::builtin`]).
//!
//! What the shell checks and what it passes through: the argument count and
//! the options (`-l`, `-f`) are checked here and are usage errors. Domain
//! words, xl disk specs (`phy:sda1,xvdb,w`, `ram:64M,xvdc,w`) and vdevs are
//! the operator's words, passed unchanged; the implementation parses them once
//! (it owns the spec grammar) and its refusals print as `error: <message>`.
//!
//! Output formats are part of the interface (the emulator tests read them);
//! each `run_*` function documents its own. Tables are laid out by
//! `Table`: columns as wide as their widest cell, two spaces apart, no
//! trailing blanks. Everything the implementation hands over — device names,
//! disk models read from the device, holders, messages — is printed through
//! [`Printable`], so a device cannot send escape sequences to the terminal.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::{self, Write as _};
use core::marker::PhantomData;

use crate::builtin::Printable;
use crate::command::{Command, CommandError, Invocation};
use crate::domains::{failed, unexpected};

/// One PCI function, as `pci` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciDeviceRow {
    /// Segment, bus, device and function as Linux writes them: `0000:00:1f.2`.
    pub address: String,
    /// The vendor ID register (offset 0x00 of configuration space).
    pub vendor_id: u16,
    /// The device ID register (offset 0x02).
    pub device_id: u16,
    /// The vendor's name, if the appliance knows it (`Intel Corporation`).
    pub vendor_name: Option<String>,
    /// The class code's name (`SATA controller`, `Non-Volatile memory controller`).
    pub class_name: String,
    /// The driver that took the function (`ahci`, `nvme`, `virtio-blk`); `None` if none did.
    pub driver: Option<String>,
}

/// One physical disk, as `disks` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskRow {
    /// The block device's name: `sda`, `nvme0n1`, `vda`.
    pub name: String,
    /// The model the device reports (ATA IDENTIFY, NVMe Identify); may be empty.
    pub model: String,
    /// Capacity in bytes.
    pub size_bytes: u64,
    /// Bytes per logical block (512, 4096).
    pub logical_block_size: u32,
    /// The device refuses writes.
    pub read_only: bool,
    /// The driver serving it: `ahci`, `nvme`, `virtio-blk`.
    pub driver: String,
    /// Address of the PCI function it sits behind, as in [`PciDeviceRow::address`].
    pub pci_address: Option<String>,
    /// Who uses the whole disk, one entry each: `"<domain>:<vdev> <rw|ro>"`,
    /// e.g. `"linux:xvda rw"`. Empty if nobody does.
    pub holders: Vec<String>,
    /// Its partitions, in table order (empty if it has no partition table).
    pub partitions: Vec<PartitionRow>,
}

/// One partition of a [`DiskRow`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRow {
    /// The partition's name: `sda1`, `nvme0n1p2`.
    pub name: String,
    /// First logical block, counted in the disk's logical blocks.
    pub start_lba: u64,
    /// Length in bytes.
    pub size_bytes: u64,
    /// What the partition table says it is: `Linux filesystem`, `EFI system`, `0x83`.
    pub kind: String,
    /// Who uses it, as in [`DiskRow::holders`].
    pub holders: Vec<String>,
}

/// How a domain may use a virtual block device (xl's ACCESS: `r` or `w`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessMode {
    /// Reads only (`r`).
    ReadOnly,
    /// Reads and writes (`w`).
    ReadWrite,
}

impl AccessMode {
    /// xl's letter: `r` or `w`.
    pub const fn letter(self) -> &'static str {
        match self {
            AccessMode::ReadOnly => "r",
            AccessMode::ReadWrite => "w",
        }
    }
}

/// One virtual block device of a domain, as `block-list` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VbdRow {
    /// The name the guest sees: `xvda`.
    pub vdev: String,
    /// The device id, the vdev's number in xenstore (`xvda` = 51712).
    pub devid: u32,
    /// What backs it, in xl's spec syntax: `phy:sda1`, `ram:64M`.
    pub source: String,
    /// What the domain may do with it.
    pub mode: AccessMode,
    /// The backend's xenbus state, number and name: `4 (connected)`.
    pub backend_state: String,
    /// The frontend's xenbus state, as the frontend last wrote it.
    pub frontend_state: String,
    /// The grant reference of the shared ring, once the frontend published it.
    pub ring_ref: Option<u32>,
    /// The event channel, once the frontend published it.
    pub event_channel: Option<u32>,
    /// Requests served since the device was attached.
    pub requests: u64,
    /// Requests answered with an error since the device was attached.
    pub errors: u64,
}

/// Dom0's disks and block backends, as the shell uses them: image/ implements
/// this over the built-in dom0's PCI scan, block layer and blkback;
/// `testing::FakeStorage` in memory.
///
/// Contracts for implementers:
/// - `domain` arguments are the operator's word, unchanged: a decimal domain
///   id or a name, resolved as [`crate::DomainControl`] resolves them (an id
///   first, then a name; `no domain '<word>'` if neither matches).
/// - `spec` and `vdev` are the operator's words, unchanged; the implementation
///   parses and checks them (a bad one is an error, not a panic).
/// - Every error is one line without a trailing newline or `error:` prefix;
///   the shell prints it as `error: <message>` (control characters replaced).
/// - Lists are snapshots: PCI functions in address order, disks in a stable
///   order of the implementation's choosing, a domain's devices in devid order.
pub trait StorageControl {
    /// Every PCI function found, with the driver that took it.
    fn pci_devices(&self) -> Vec<PciDeviceRow>;
    /// Every disk the drivers found, with partitions and holders.
    fn disks(&self) -> Vec<DiskRow>;
    /// Gives `domain` a virtual block device described by `spec`, an xl disk
    /// spec (`phy:sda1,xvdb,w`, `ram:64M,xvdc,w`). Returns the one line to
    /// print, e.g. `attached sda1 to domain 3 (linux) as xvdb (rw)`.
    fn block_attach(&mut self, domain: &str, spec: &str) -> Result<String, String>;
    /// Takes the virtual block device `vdev` (a name like `xvdb`, or its devid)
    /// away from `domain`. Without `force` the frontend is asked to close it
    /// and a frontend that does not is an error; with `force` the backend is
    /// torn down regardless. Returns the one line to print.
    fn block_detach(&mut self, domain: &str, vdev: &str, force: bool) -> Result<String, String>;
    /// The virtual block devices of `domain`.
    fn block_list(&self, domain: &str) -> Result<Vec<VbdRow>, String>;
    /// Measures dom0's own sequential write/read and 4 KiB random-read speed on
    /// the first `mebibytes` MiB of `disk` (destructive; refused while a domain
    /// holds the disk). Returns the one-line result.
    fn disk_bench(&mut self, disk: &str, mebibytes: u32) -> Result<String, String>;
}

/// The storage commands for context type `C`.
pub fn storage_commands<C: StorageControl + 'static>() -> &'static [Command<C>] {
    StorageTable::<C>::COMMANDS
}

/// Carrier of the generic table (see [`crate::builtin`]).
struct StorageTable<C>(PhantomData<C>);

impl<C: StorageControl + 'static> StorageTable<C> {
    const COMMANDS: &'static [Command<C>] = &[
        Command {
            name: "pci",
            usage: "pci",
            summary: "list the PCI functions: address, vendor:device ID, class, driver, vendor",
            run: run_pci::<C>,
        },
        Command {
            name: "disks",
            usage: "disks [-l]",
            summary: "list the disks and their partitions, with holders (-l: sector size, start, PCI address)",
            run: run_disks::<C>,
        },
        Command {
            name: "block-attach",
            usage: "block-attach DOMAIN SPEC",
            summary: "give a domain a virtual disk; SPEC as in xl: phy:sda1,xvdb,w or ram:64M,xvdc,w",
            run: run_block_attach::<C>,
        },
        Command {
            name: "block-detach",
            usage: "block-detach [-f] DOMAIN VDEV",
            summary: "take a virtual disk from a domain (-f: even if the guest does not let go)",
            run: run_block_detach::<C>,
        },
        Command {
            name: "disk-bench",
            usage: "disk-bench DISK [MIB]",
            summary: "measure a disk from dom0 (OVERWRITES its first MIB MiB, default 32): MB/s and IOPS",
            run: run_disk_bench::<C>,
        },
        Command {
            name: "block-list",
            usage: "block-list DOMAIN",
            summary: "list a domain's virtual disks: source, mode, backend/frontend state, ring, I/O counts",
            run: run_block_list::<C>,
        },
    ];
}

/// `pci`: one row per function, `-` for no driver, the vendor's name last
/// (left out when unknown):
/// ```text
/// ADDRESS       ID         CLASS            DRIVER  VENDOR
/// 0000:00:01.0  1234:1111  VGA controller   -
/// 0000:00:1f.2  8086:2922  SATA controller  ahci    Intel Corporation
/// ```
/// No functions at all: `no PCI devices`.
fn run_pci<C: StorageControl + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    invocation.expect_no_arguments()?;
    let devices = invocation.context.pci_devices();
    if devices.is_empty() {
        writeln!(invocation.out, "no PCI devices")?;
        return Ok(());
    }
    let mut table = Table::new(&[
        ("ADDRESS", Align::Left),
        ("ID", Align::Left),
        ("CLASS", Align::Left),
        ("DRIVER", Align::Left),
        ("VENDOR", Align::Left),
    ]);
    for device in &devices {
        table.push([
            printable(&device.address),
            format!("{:04x}:{:04x}", device.vendor_id, device.device_id),
            printable(&device.class_name),
            printable_or_dash(device.driver.as_deref()),
            device.vendor_name.as_deref().map(printable).unwrap_or_default(),
        ]);
    }
    table.write(invocation.out)?;
    Ok(())
}

/// `disks [-l]`: one row per disk, its partitions indented below it.
/// MODE is `rw` or `ro` (partitions inherit their disk's); MODEL/TYPE is the
/// disk's model (`-` if it reports none) or the partition's type; HOLDERS are comma-separated, `-` if
/// none. Sizes in binary units with one decimal ([`DiskSize`]):
/// ```text
/// NAME         SIZE  MODE  MODEL/TYPE        DRIVER  HOLDERS
/// sda      20.0 GiB  rw    QEMU HARDDISK     ahci    -
///   sda1  512.0 MiB  rw    EFI system                -
///   sda2   19.5 GiB  rw    Linux filesystem          web:xvda rw
/// ```
/// `-l` adds SECTOR (a disk's logical block size in bytes), START (a
/// partition's first logical block) and PCI (a disk's PCI address, `-` if
/// none) before MODEL/TYPE. No disks at all: `no disks`.
fn run_disks<C: StorageControl + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    let mut long = false;
    for &argument in invocation.args {
        match argument {
            "-l" => long = true,
            option if option.starts_with('-') => {
                return Err(CommandError::Usage(format!("unknown option '{}'", Printable(option))))
            }
            other => return Err(unexpected(other)),
        }
    }
    let disks = invocation.context.disks();
    if disks.is_empty() {
        writeln!(invocation.out, "no disks")?;
        return Ok(());
    }
    let mut columns = alloc::vec![("NAME", Align::Left), ("SIZE", Align::Right), ("MODE", Align::Left)];
    if long {
        columns.extend([("SECTOR", Align::Right), ("START", Align::Right), ("PCI", Align::Left)]);
    }
    columns.extend([("MODEL/TYPE", Align::Left), ("DRIVER", Align::Left), ("HOLDERS", Align::Left)]);
    let mut table = Table::new(&columns);
    for disk in &disks {
        let mode = String::from(if disk.read_only { "ro" } else { "rw" });
        let mut row = alloc::vec![printable(&disk.name), DiskSize(disk.size_bytes).to_string(), mode.clone()];
        if long {
            row.extend([
                disk.logical_block_size.to_string(),
                String::new(),
                printable_or_dash(disk.pci_address.as_deref()),
            ]);
        }
        let model = if disk.model.is_empty() { String::from("-") } else { printable(&disk.model) };
        row.extend([model, printable(&disk.driver), holders(&disk.holders)]);
        table.push(row);
        for partition in &disk.partitions {
            let mut row = alloc::vec![
                format!("  {}", Printable(&partition.name)),
                DiskSize(partition.size_bytes).to_string(),
                mode.clone()
            ];
            if long {
                row.extend([String::new(), partition.start_lba.to_string(), String::new()]);
            }
            row.extend([printable(&partition.kind), String::new(), holders(&partition.holders)]);
            table.push(row);
        }
    }
    table.write(invocation.out)?;
    Ok(())
}

/// `block-attach DOMAIN SPEC`: the implementation's one line, e.g.
/// `attached sda1 to domain 3 (linux) as xvdb (rw)`.
fn run_block_attach<C: StorageControl + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    let (domain, spec) = match *invocation.args {
        [domain, spec] => (domain, spec),
        [] => return Err(CommandError::Usage(String::from("missing DOMAIN and SPEC"))),
        [_] => return Err(CommandError::Usage(String::from("missing SPEC"))),
        [_, _, extra, ..] => return Err(unexpected(extra)),
    };
    let message = invocation.context.block_attach(domain, spec).map_err(failed)?;
    writeln!(invocation.out, "{}", Printable(&message))?;
    Ok(())
}

/// `block-detach [-f] DOMAIN VDEV`: the implementation's one line, e.g.
/// `detached xvdb from domain 3 (linux)`. `-f` may stand anywhere (getopt
/// permutes xl's arguments too); a repeated `-f` is the same as one.
fn run_block_detach<C: StorageControl + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    let mut force = false;
    let mut positional: Vec<&str> = Vec::new();
    for &argument in invocation.args {
        match argument {
            "-f" => force = true,
            option if option.starts_with('-') => {
                return Err(CommandError::Usage(format!("unknown option '{}'", Printable(option))))
            }
            word => positional.push(word),
        }
    }
    let (domain, vdev) = match *positional {
        [domain, vdev] => (domain, vdev),
        [] => return Err(CommandError::Usage(String::from("missing DOMAIN and VDEV"))),
        [_] => return Err(CommandError::Usage(String::from("missing VDEV"))),
        [_, _, extra, ..] => return Err(unexpected(extra)),
    };
    let message = invocation.context.block_detach(domain, vdev, force).map_err(failed)?;
    writeln!(invocation.out, "{}", Printable(&message))?;
    Ok(())
}

/// `disk-bench DISK [MIB]`: prints the appliance's one-line result.
fn run_disk_bench<C: StorageControl + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    let (disk, mebibytes) = match *invocation.args {
        [disk] => (disk, 32),
        [disk, size] => {
            let mebibytes = size
                .parse::<u32>()
                .ok()
                .filter(|&value| (1..=65536).contains(&value))
                .ok_or_else(|| CommandError::Usage(format!("MIB must be 1..65536, not '{}'", Printable(size))))?;
            (disk, mebibytes)
        }
        [] => return Err(CommandError::Usage(String::from("missing DISK"))),
        [_, _, extra, ..] => return Err(unexpected(extra)),
    };
    let message = invocation.context.disk_bench(disk, mebibytes).map_err(failed)?;
    writeln!(invocation.out, "{}", Printable(&message))?;
    Ok(())
}

/// `block-list DOMAIN`: one row per virtual block device (xl's columns, plus
/// the source, the mode, both xenbus states and the I/O counters; `-` for a
/// ring or event channel not yet published):
/// ```text
/// VDEV  DEVID  SOURCE    MODE  BE-STATE       FE-STATE       EVT-CH  RING-REF  REQUESTS  ERRORS
/// xvda  51712  phy:sda2  w     4 (connected)  4 (connected)      14         8      1532       0
/// ```
/// A domain without any: `no virtual block devices`.
fn run_block_list<C: StorageControl + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    let domain = match *invocation.args {
        [domain] => domain,
        [] => return Err(CommandError::Usage(String::from("missing DOMAIN"))),
        [_, extra, ..] => return Err(unexpected(extra)),
    };
    let devices = invocation.context.block_list(domain).map_err(failed)?;
    if devices.is_empty() {
        writeln!(invocation.out, "no virtual block devices")?;
        return Ok(());
    }
    let mut table = Table::new(&[
        ("VDEV", Align::Left),
        ("DEVID", Align::Right),
        ("SOURCE", Align::Left),
        ("MODE", Align::Left),
        ("BE-STATE", Align::Left),
        ("FE-STATE", Align::Left),
        ("EVT-CH", Align::Right),
        ("RING-REF", Align::Right),
        ("REQUESTS", Align::Right),
        ("ERRORS", Align::Right),
    ]);
    let number_or_dash = |number: Option<u32>| number.map_or_else(|| String::from("-"), |number| number.to_string());
    for device in &devices {
        table.push([
            printable(&device.vdev),
            device.devid.to_string(),
            printable(&device.source),
            String::from(device.mode.letter()),
            printable(&device.backend_state),
            printable(&device.frontend_state),
            number_or_dash(device.event_channel),
            number_or_dash(device.ring_ref),
            device.requests.to_string(),
            device.errors.to_string(),
        ]);
    }
    table.write(invocation.out)?;
    Ok(())
}

/// `text` with control characters replaced, owned so [`Table`] can measure it.
fn printable(text: &str) -> String {
    format!("{}", Printable(text))
}

fn printable_or_dash(text: Option<&str>) -> String {
    text.map_or_else(|| String::from("-"), printable)
}

/// Holders comma-separated, `-` if none.
fn holders(holders: &[String]) -> String {
    if holders.is_empty() {
        return String::from("-");
    }
    let entries: Vec<String> = holders.iter().map(|holder| printable(holder)).collect();
    entries.join(", ")
}

/// How a [`Table`] column lines up its cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// A text table: a header row and data rows, each column as wide as its
/// widest cell (counted in characters), columns two spaces apart, no
/// trailing blanks. Cells must already be printable.
struct Table {
    alignments: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(columns: &[(&str, Align)]) -> Self {
        Self {
            alignments: columns.iter().map(|&(_, align)| align).collect(),
            rows: alloc::vec![columns.iter().map(|&(title, _)| String::from(title)).collect()],
        }
    }

    /// Adds a row; cells beyond the header's columns are dropped, missing ones are blank.
    fn push(&mut self, cells: impl IntoIterator<Item = String>) {
        self.rows.push(cells.into_iter().take(self.alignments.len()).collect());
    }

    fn write(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        let mut widths = alloc::vec![0usize; self.alignments.len()];
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut line = String::new();
        for row in &self.rows {
            line.clear();
            for (column, (&align, &width)) in self.alignments.iter().zip(&widths).enumerate() {
                let cell = row.get(column).map_or("", String::as_str);
                if column > 0 {
                    line.push_str("  ");
                }
                match align {
                    Align::Left => write!(line, "{cell:<width$}")?,
                    Align::Right => write!(line, "{cell:>width$}")?,
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// A byte count as `disks` prints it: bytes below 1 KiB exactly (`512 B`),
/// anything larger in the largest binary unit it reaches, rounded to one
/// decimal (`512.0 MiB`, `19.5 GiB`, `1.0 TiB`). Honours width and alignment.
pub struct DiskSize(pub u64);

impl fmt::Display for DiskSize {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        let bytes = u128::from(self.0);
        if bytes < 1024 {
            return formatter.pad(&format!("{bytes} B"));
        }
        let mut unit_index = 0;
        while unit_index + 1 < UNITS.len() && bytes >= 1024u128 << (10 * (unit_index + 1)) {
            unit_index += 1;
        }
        let tenths_of = |unit_index: usize| {
            let unit = 1024u128 << (10 * unit_index);
            (bytes * 10 + unit / 2) / unit
        };
        let mut tenths = tenths_of(unit_index);
        // 1023.96 GiB rounds to 1024.0 GiB: say 1.0 TiB instead.
        if tenths >= 10 * 1024 && unit_index + 1 < UNITS.len() {
            unit_index += 1;
            tenths = tenths_of(unit_index);
        }
        formatter.pad(&format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit_index]))
    }
}
