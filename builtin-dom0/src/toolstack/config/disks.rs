//! Disk specifications (xl-disk-configuration(5)): `'phy:nvme0n1p2,xvda,w'` → a
//! checked [`DiskSpec`], for the `disk` key of a config and for the shell's
//! `block-attach DOMAIN SPEC`.
//!
//! Accepted, as xl does: comma-separated items, each either positional or
//! `key=value`. Positional items are `target, vdev, access`, or `target, format, vdev,
//! access`, or `target, vdev`, or `vdev, access` with the target given as `target=`.
//! Keys: `target` (which, as in xl, takes the whole rest of the spec, commas included,
//! so it comes last), `vdev`, `access`, `format` (`raw` only), `devtype` (`disk` only),
//! `backendtype` (`phy` only). A target is `phy:NAME`, a bare `NAME` (= `phy:`), with
//! an optional `/dev/` in front, naming one of dom0's disks or partitions, or
//! `ram:SIZE`, a zero-filled disk in dom0's memory (`64M`; suffixes K, M, G; a multiple
//! of 512 bytes; at most [`MAX_RAM_DISK_BYTES`]). Access is `r`/`ro` or `w`/`rw`
//! (default `rw`, as xl).
//!
//! Invariants of an accepted [`DiskSpec`]: `vdev` passes
//! [`virtual_device_number`]; a `Phy` name is 1 to [`MAX_DISK_NAME_LENGTH`] of
//! `[A-Za-z0-9_.-]`; a `Ram` size is a non-zero multiple of 512 no larger than
//! [`MAX_RAM_DISK_BYTES`].

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use super::Printable;
use crate::backends::blkif::xenbus::{virtual_device_number, VdevError};

/// Longest disk specification accepted.
pub const MAX_DISK_SPEC_BYTES: usize = 1024;
/// Most disks one domain's config may list.
pub const MAX_DISKS: usize = 32;
/// Largest `ram:` disk: it lives in dom0's own memory.
pub const MAX_RAM_DISK_BYTES: u64 = 4 << 30;
/// Longest dom0 disk name (`nvme0n1p2`).
pub const MAX_DISK_NAME_LENGTH: usize = 32;

/// What backs a virtual disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSource {
    /// One of dom0's disks or partitions, by its name (`nvme0n1p2`, `sda`).
    Phy(String),
    /// A zero-filled disk of this many bytes in dom0's memory.
    Ram(u64),
}

impl fmt::Display for DiskSource {
    /// The spec's own spelling: `phy:sda`, `ram:64M`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskSource::Phy(name) => write!(formatter, "phy:{name}"),
            DiskSource::Ram(bytes) => {
                let (value, suffix) = [(30, "G"), (20, "M"), (10, "K")]
                    .into_iter()
                    .find(|(shift, _)| bytes.is_multiple_of(1u64 << shift))
                    .map_or((*bytes, ""), |(shift, suffix)| (bytes >> shift, suffix));
                write!(formatter, "ram:{value}{suffix}")
            }
        }
    }
}

/// One virtual disk of a domain (see the module doc for its invariants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    pub source: DiskSource,
    /// The guest's name for it (`xvda`).
    pub vdev: String,
    /// The guest may write it.
    pub writable: bool,
}

impl fmt::Display for DiskSpec {
    /// The positional form, which [`parse_disk_spec`] reads back.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{},{},{}", self.source, self.vdev, if self.writable { "w" } else { "r" })
    }
}

/// Why a disk specification was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSpecError {
    Empty,
    /// Longer than [`MAX_DISK_SPEC_BYTES`].
    TooLong,
    /// More positional items than any form has.
    TooManyItems,
    /// An item set twice (positionally or by key).
    Repeated(&'static str),
    NoTarget,
    NoVdev,
    EmptyItem,
    BadVdev {
        vdev: String,
        error: VdevError,
    },
    BadAccess(String),
    UnknownKey(String),
    /// `format=` other than `raw`.
    UnsupportedFormat(String),
    /// `devtype=` other than `disk`.
    UnsupportedDeviceType(String),
    /// `backendtype=` other than `phy`.
    UnsupportedBackendType(String),
    /// A `file:`, `tap:`, `qcow2:`... target.
    UnsupportedTargetKind(String),
    BadDiskName(String),
    BadRamSize(String),
    RamSizeNotSectors(u64),
    RamSizeOutOfRange(u64),
}

impl fmt::Display for DiskSpecError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DiskSpecError as E;
        match self {
            E::Empty => formatter.write_str("empty disk specification"),
            E::TooLong => write!(formatter, "disk specification longer than {MAX_DISK_SPEC_BYTES} bytes"),
            E::TooManyItems => formatter.write_str("too many items (target, vdev, access)"),
            E::Repeated(what) => write!(formatter, "{what} given twice"),
            E::NoTarget => formatter.write_str("no target (phy:NAME or ram:SIZE)"),
            E::NoVdev => formatter.write_str("no vdev (xvda, xvdb, ...)"),
            E::EmptyItem => formatter.write_str("empty item between commas"),
            E::BadVdev { vdev, error } => write!(formatter, "vdev \"{}\" {error}", Printable(vdev)),
            E::BadAccess(access) => write!(formatter, "access \"{}\" is not r, ro, w or rw", Printable(access)),
            E::UnknownKey(key) => write!(formatter, "unknown key '{}'", Printable(key)),
            E::UnsupportedFormat(format) => {
                write!(formatter, "format \"{}\" is not supported (only raw)", Printable(format))
            }
            E::UnsupportedDeviceType(kind) => {
                write!(formatter, "devtype \"{}\" is not supported (only disk)", Printable(kind))
            }
            E::UnsupportedBackendType(kind) => {
                write!(formatter, "backendtype \"{}\" is not supported (only phy)", Printable(kind))
            }
            E::UnsupportedTargetKind(kind) => {
                write!(formatter, "\"{}:\" targets are not supported (phy: or ram:)", Printable(kind))
            }
            E::BadDiskName(name) => write!(
                formatter,
                "\"{}\" is not a disk name (1 to {MAX_DISK_NAME_LENGTH} of letters, digits, '_', '.', '-')",
                Printable(name)
            ),
            E::BadRamSize(size) => {
                write!(formatter, "ram size \"{}\" is not a size (a number with K, M or G)", Printable(size))
            }
            E::RamSizeNotSectors(bytes) => write!(formatter, "ram size {bytes} bytes is not a multiple of 512"),
            E::RamSizeOutOfRange(bytes) => {
                write!(formatter, "ram size {bytes} bytes is out of range (512 bytes to 4G)")
            }
        }
    }
}

/// What a positional item stands for.
#[derive(Clone, Copy)]
enum Slot {
    Target,
    Format,
    Vdev,
    Access,
}

/// The items of a spec before they are checked.
#[derive(Default)]
struct Items<'a> {
    target: Option<&'a str>,
    vdev: Option<&'a str>,
    access: Option<&'a str>,
}

fn set<'a>(field: &mut Option<&'a str>, value: &'a str, name: &'static str) -> Result<(), DiskSpecError> {
    if field.is_some() {
        return Err(DiskSpecError::Repeated(name));
    }
    *field = Some(value);
    Ok(())
}

fn is_access(text: &str) -> bool {
    matches!(text, "r" | "ro" | "w" | "rw")
}

/// Parses one disk specification (see the module doc).
pub fn parse_disk_spec(text: &str) -> Result<DiskSpec, DiskSpecError> {
    if text.len() > MAX_DISK_SPEC_BYTES {
        return Err(DiskSpecError::TooLong);
    }
    if text.trim().is_empty() {
        return Err(DiskSpecError::Empty);
    }
    let mut items = Items::default();
    let mut positional: Vec<&str> = Vec::new();
    let mut rest = text;
    loop {
        let trimmed = rest.trim_start();
        if let Some(target) = trimmed.strip_prefix("target=") {
            // xl: the target is everything after `target=`.
            set(&mut items.target, target.trim(), "target")?;
            break;
        }
        let (item, after) = match trimmed.split_once(',') {
            Some((item, after)) => (item.trim(), Some(after)),
            None => (trimmed.trim(), None),
        };
        // A trailing comma is tolerated; an empty item elsewhere is not.
        if item.is_empty() && after.is_some_and(|after| !after.trim().is_empty()) {
            return Err(DiskSpecError::EmptyItem);
        }
        if let Some((key, value)) = item.split_once('=') {
            let value = value.trim();
            match key.trim() {
                "vdev" => set(&mut items.vdev, value, "vdev")?,
                "access" => set(&mut items.access, value, "access")?,
                "format" if value == "raw" => {}
                "format" => return Err(DiskSpecError::UnsupportedFormat(value.to_string())),
                "devtype" if value == "disk" => {}
                "devtype" => return Err(DiskSpecError::UnsupportedDeviceType(value.to_string())),
                "backendtype" if value == "phy" => {}
                "backendtype" => return Err(DiskSpecError::UnsupportedBackendType(value.to_string())),
                other => return Err(DiskSpecError::UnknownKey(other.to_string())),
            }
        } else if !item.is_empty() {
            positional.push(item);
        }
        match after {
            Some(after) => rest = after,
            None => break,
        }
    }

    let slots: &[Slot] = match (items.target.is_some(), positional.as_slice()) {
        (_, []) => &[],
        (false, [_]) => &[Slot::Target],
        (false, [_, second]) if is_access(second) => &[Slot::Vdev, Slot::Access],
        (false, [_, _]) => &[Slot::Target, Slot::Vdev],
        (false, [_, _, _]) => &[Slot::Target, Slot::Vdev, Slot::Access],
        (false, [_, _, _, _]) => &[Slot::Target, Slot::Format, Slot::Vdev, Slot::Access],
        (true, [first]) if is_access(first) => &[Slot::Access],
        (true, [_]) => &[Slot::Vdev],
        (true, [_, _]) => &[Slot::Vdev, Slot::Access],
        _ => return Err(DiskSpecError::TooManyItems),
    };
    for (slot, &item) in slots.iter().zip(&positional) {
        match slot {
            Slot::Target => set(&mut items.target, item, "target")?,
            Slot::Format if item == "raw" || item.is_empty() => {}
            Slot::Format => return Err(DiskSpecError::UnsupportedFormat(item.to_string())),
            Slot::Vdev => set(&mut items.vdev, item, "vdev")?,
            Slot::Access => set(&mut items.access, item, "access")?,
        }
    }

    let source = parse_target(items.target.ok_or(DiskSpecError::NoTarget)?)?;
    let vdev = items.vdev.ok_or(DiskSpecError::NoVdev)?;
    virtual_device_number(vdev).map_err(|error| DiskSpecError::BadVdev { vdev: vdev.to_string(), error })?;
    let writable = match items.access.unwrap_or("rw") {
        "w" | "rw" => true,
        "r" | "ro" => false,
        other => return Err(DiskSpecError::BadAccess(other.to_string())),
    };
    Ok(DiskSpec { source, vdev: vdev.to_string(), writable })
}

fn parse_target(target: &str) -> Result<DiskSource, DiskSpecError> {
    if target.is_empty() {
        return Err(DiskSpecError::NoTarget);
    }
    if let Some(size) = target.strip_prefix("ram:") {
        return parse_ram_size(size.trim()).map(DiskSource::Ram);
    }
    let name = match target.split_once(':') {
        Some(("phy", name)) => name,
        Some((kind, _)) => return Err(DiskSpecError::UnsupportedTargetKind(kind.to_string())),
        None => target,
    };
    let name = name.strip_prefix("/dev/").unwrap_or(name);
    let valid = !name.is_empty()
        && name.len() <= MAX_DISK_NAME_LENGTH
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'));
    if !valid {
        return Err(DiskSpecError::BadDiskName(name.to_string()));
    }
    Ok(DiskSource::Phy(name.to_string()))
}

/// `64M`, `1G`, `512K`, `1048576`: bytes.
fn parse_ram_size(text: &str) -> Result<u64, DiskSpecError> {
    let bad = || DiskSpecError::BadRamSize(text.to_string());
    let digits_end = text.bytes().position(|byte| !byte.is_ascii_digit()).unwrap_or(text.len());
    let (digits, suffix) = text.split_at(digits_end);
    let shift = match suffix {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        _ => return Err(bad()),
    };
    if digits.is_empty() {
        return Err(bad());
    }
    // Too many digits for u64 is out of range, not malformed.
    let out_of_range = DiskSpecError::RamSizeOutOfRange(u64::MAX);
    let number = digits.parse::<u64>().map_err(|_| out_of_range.clone())?;
    let bytes = number.checked_mul(1 << shift).ok_or(out_of_range)?;
    if bytes == 0 || bytes > MAX_RAM_DISK_BYTES {
        return Err(DiskSpecError::RamSizeOutOfRange(bytes));
    }
    if !bytes.is_multiple_of(512) {
        return Err(DiskSpecError::RamSizeNotSectors(bytes));
    }
    Ok(bytes)
}
