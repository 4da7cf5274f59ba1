//! dom0's storage, wired to the machine: the PCI walk at boot, the disk drivers that
//! claim functions (AHCI, NVMe, virtio-blk), the table of disks and partitions with
//! their stable names, and the blkif back ends that serve them to guests
//! ([`crate::vbd`]).
//!
//! Everything here runs on the bootstrap CPU (boot, the shell, dom0's idle rounds),
//! under one lock. Disk I/O is synchronous per operation (see
//! `basalt_dom0::backends::blkif::block_disk`), so a disk has at most one request in
//! flight and completions never need routing between users.

use crate::hardware::{EcamConfigSpace, MachinePlatform, PortConfigSpace};
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use basalt_dom0::block::names::{DiskListing, DiskTable, DriverKind};
use basalt_dom0::block::BlockDevice;
use basalt_dom0::drivers::{ahci, nvme, virtio_blk, Platform, ProbeContext};
use basalt_dom0::pci::{self, ConfigSpace, PciAddress, PciFunction};
use basalt_kernel::{info, warn};
use spin::Mutex;

/// One PCI function and the driver that took it.
pub struct PciEntry {
    pub function: PciFunction,
    pub driver: Option<&'static str>,
}

/// A disk's origin, for the `disks` listing.
pub struct DiskOrigin {
    pub name: String,
    pub driver: &'static str,
    pub pci: Option<PciAddress>,
}

pub struct Storage {
    pub pci: Vec<PciEntry>,
    pub disks: DiskTable,
    pub origins: Vec<DiskOrigin>,
}

static STORAGE: Mutex<Option<Storage>> = Mutex::new(None);

/// Runs `f` on dom0's storage (after [`init`]).
pub fn with_storage<R>(f: impl FnOnce(&mut Storage) -> R) -> Option<R> {
    STORAGE.lock().as_mut().map(f)
}

/// The platform every driver shares.
pub fn platform() -> Arc<dyn Platform> {
    static PLATFORM: spin::Once<Arc<dyn Platform>> = spin::Once::new();
    PLATFORM.call_once(|| Arc::new(MachinePlatform)).clone()
}

/// Configuration space for segment 0: ECAM when the MCFG describes it, else port I/O.
fn config_space() -> Box<dyn ConfigSpace> {
    let window = crate::boot::machine()
        .and_then(|machine| machine.acpi.as_ref())
        .and_then(|acpi| acpi.ecam.iter().find(|window| window.segment == 0).copied());
    if let Some(window) = window {
        if let Some(ecam) = EcamConfigSpace::new(window) {
            return Box::new(ecam);
        }
        warn!("pci: ECAM window at {:#x} cannot be mapped; using port I/O", window.base);
    }
    Box::new(PortConfigSpace)
}

/// Walks PCI, probes the storage drivers and reads partition tables. Called once at
/// boot, before the shell starts.
pub fn init() {
    let mut config = config_space();
    let mechanism = if config.extended() { "ECAM" } else { "port I/O" };
    let functions = pci::enumerate(&mut *config, 0);
    info!("pci: {} functions ({mechanism})", functions.len());
    let platform = platform();
    let mut storage = Storage { pci: Vec::new(), disks: DiskTable::new(), origins: Vec::new() };
    for function in functions {
        let driver = probe(&function, &mut *config, &platform, &mut storage);
        storage.pci.push(PciEntry { function, driver });
    }
    for origin in &storage.origins {
        match storage.disks.scan_partitions(&origin.name) {
            Ok(partitions) if !partitions.is_empty() => info!("{}: partitions {}", origin.name, partitions.join(" ")),
            Ok(_) => {}
            Err(error) => warn!("{}: partition table refused: {error}", origin.name),
        }
    }
    *STORAGE.lock() = Some(storage);
}

/// Offers `function` to each driver in turn; returns the name of the one that took it.
fn probe(
    function: &PciFunction,
    config: &mut dyn ConfigSpace,
    platform: &Arc<dyn Platform>,
    storage: &mut Storage,
) -> Option<&'static str> {
    let address = function.address;
    let register = |storage: &mut Storage, kind: DriverKind, driver: &'static str, disk: Box<dyn BlockDevice>| {
        let info = disk.info();
        let name = storage.disks.register(kind, disk);
        info!(
            "{name}: {driver} at {address}: {} ({} bytes, {}-byte blocks{})",
            info.model,
            info.capacity_bytes(),
            info.logical_block_size,
            if info.read_only { ", read-only" } else { "" }
        );
        storage.origins.push(DiskOrigin { name, driver, pci: Some(address) });
    };
    if ahci::matches(function) {
        return match ahci::probe(ProbeContext { function, config: &mut *config, platform }) {
            Ok(disks) => {
                for disk in disks {
                    register(storage, DriverKind::Ahci, "ahci", Box::new(disk));
                }
                Some("ahci")
            }
            Err(error) => {
                warn!("ahci: {address}: {error}");
                None
            }
        };
    }
    if nvme::matches(function) {
        return match nvme::probe(ProbeContext { function, config: &mut *config, platform }) {
            Ok(disk) => {
                register(storage, DriverKind::Nvme, "nvme", Box::new(disk));
                Some("nvme")
            }
            Err(error) => {
                warn!("nvme: {address}: {error}");
                None
            }
        };
    }
    if virtio_blk::matches(function) {
        return match virtio_blk::probe(ProbeContext { function, config: &mut *config, platform }) {
            Ok(disk) => {
                register(storage, DriverKind::VirtioBlk, "virtio-blk", Box::new(disk));
                Some("virtio-blk")
            }
            Err(error) => {
                warn!("virtio-blk: {address}: {error}");
                None
            }
        };
    }
    None
}

/// The `disks` listing rows with each disk's driver and PCI address.
pub fn disk_listing() -> Vec<(DiskListing, &'static str, Option<PciAddress>)> {
    with_storage(|storage| {
        storage
            .disks
            .listing()
            .into_iter()
            .map(|listing| {
                let origin = storage.origins.iter().find(|origin| origin.name == listing.name);
                (listing, origin.map_or("ram", |origin| origin.driver), origin.and_then(|origin| origin.pci))
            })
            .collect()
    })
    .unwrap_or_default()
}

/// Runs `f` on the disk or partition `name` (a view of exactly its blocks).
pub fn with_disk<R>(name: &str, f: impl FnOnce(&mut dyn BlockDevice) -> R) -> Result<R, String> {
    with_storage(|storage| match storage.disks.open(name) {
        Ok(mut view) => Ok(f(&mut view)),
        Err(error) => Err(error.to_string()),
    })
    .unwrap_or_else(|| Err("storage is not initialised".to_string()))
}

/// Names overlapping `name`: the whole disk of a partition and every partition of a
/// disk (a writer of one excludes the others).
pub fn related_names(name: &str) -> Vec<String> {
    with_storage(|storage| {
        let all = storage.disks.names();
        let disk = storage
            .origins
            .iter()
            .map(|origin| origin.name.as_str())
            .find(|disk| name == *disk || name.strip_prefix(disk).is_some_and(is_partition_suffix));
        match disk {
            Some(disk) if disk == name => all
                .into_iter()
                .filter(|other| other != name && other.strip_prefix(disk).is_some_and(is_partition_suffix))
                .collect(),
            Some(disk) => alloc::vec![disk.to_string()],
            None => Vec::new(),
        }
    })
    .unwrap_or_default()
}

/// `1`, `p2`: what a partition name adds to its disk's.
fn is_partition_suffix(rest: &str) -> bool {
    let digits = rest.strip_prefix('p').unwrap_or(rest);
    !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit())
}

/// The shell's storage commands act on dom0's disks and guests' virtual disks.
impl basalt_shell::storage::StorageControl for crate::appliance::Appliance {
    fn pci_devices(&self) -> Vec<basalt_shell::storage::PciDeviceRow> {
        with_storage(|storage| {
            storage
                .pci
                .iter()
                .map(|entry| {
                    let function = &entry.function;
                    basalt_shell::storage::PciDeviceRow {
                        address: function.address.to_string(),
                        vendor_id: function.vendor_id,
                        device_id: function.device_id,
                        vendor_name: pci::vendor_name(function.vendor_id).map(str::to_string),
                        class_name: function.class.name().to_string(),
                        driver: entry.driver.map(str::to_string),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
    }

    fn disks(&self) -> Vec<basalt_shell::storage::DiskRow> {
        disk_listing()
            .into_iter()
            .map(|(listing, driver, pci)| basalt_shell::storage::DiskRow {
                holders: crate::vbd::holders(&listing.name),
                partitions: listing
                    .partitions
                    .iter()
                    .map(|partition| basalt_shell::storage::PartitionRow {
                        name: partition.name.clone(),
                        start_lba: partition.first_lba,
                        size_bytes: partition.blocks.saturating_mul(u64::from(listing.logical_block_size)),
                        kind: partition.label.clone(),
                        holders: crate::vbd::holders(&partition.name),
                    })
                    .collect(),
                name: listing.name,
                model: listing.model,
                size_bytes: listing.capacity_bytes,
                logical_block_size: listing.logical_block_size,
                read_only: listing.read_only,
                driver: driver.to_string(),
                pci_address: pci.map(|address| address.to_string()),
            })
            .collect()
    }

    fn block_attach(&mut self, domain: &str, spec: &str) -> Result<String, String> {
        let domid = crate::domains::resolve_guest(domain, "attach a disk to")?;
        let name = basalt_kernel::domain::get(domid).map(|guest| guest.name.lock().clone()).unwrap_or_default();
        crate::vbd::attach_spec(domid, &name, spec)
    }

    fn block_detach(&mut self, domain: &str, vdev: &str, force: bool) -> Result<String, String> {
        let domid = crate::domains::resolve_guest(domain, "detach a disk from")?;
        crate::vbd::detach(domid, vdev, force)
    }

    fn disk_bench(&mut self, disk: &str, mebibytes: u32) -> Result<String, String> {
        let mut names = related_names(disk);
        names.push(disk.to_string());
        if let Some(holder) = names.iter().flat_map(|name| crate::vbd::holders(name)).next() {
            return Err(alloc::format!("{disk} is in use ({holder}); disk-bench overwrites it"));
        }
        let now = || basalt_kernel::cpu::time::uptime_ns();
        let result =
            with_disk(disk, |device| basalt_dom0::block::bench::run(device, u64::from(mebibytes) << 20, &now))?
                .map_err(|error| alloc::format!("{disk}: {error}"))?;
        Ok(alloc::format!(
            "disk-bench {disk}: {} MiB sequential write {:.1} MB/s, sequential read {:.1} MB/s, 4 KiB random read {:.0} IOPS",
            result.bytes >> 20,
            result.write_mb_per_s(),
            result.read_mb_per_s(),
            result.random_iops()
        ))
    }

    fn block_list(&self, domain: &str) -> Result<Vec<basalt_shell::storage::VbdRow>, String> {
        let domid = crate::domains::resolve_guest(domain, "list the disks of")?;
        Ok(crate::vbd::list(domid)
            .into_iter()
            .map(|status| basalt_shell::storage::VbdRow {
                vdev: status.vdev,
                devid: status.devid,
                source: status.source,
                mode: if status.writable {
                    basalt_shell::storage::AccessMode::ReadWrite
                } else {
                    basalt_shell::storage::AccessMode::ReadOnly
                },
                backend_state: status.backend_state,
                frontend_state: status.frontend_state,
                ring_ref: status.ring_ref,
                event_channel: status.event_channel,
                requests: status.requests,
                errors: status.errors,
            })
            .collect())
    }
}
