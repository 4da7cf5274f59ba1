//! The xenbus half of a virtual block device: its xenstore nodes (libxl's layout and
//! permissions), the back end's side of the state handshake with xen-blkfront, and the
//! virtual device numbers behind names like `xvda` (xen/include/public/io/xenbus.h,
//! io/blkif.h; Xen's docs/misc/vbd-interface.txt; pvh-abi.md §7.2).
//!
//! Why a polled state machine: dom0 is one loop, so [`VbdHandshake::step`] is called
//! every round for every device and reads the frontend's `state` node itself instead of
//! keeping watches. Everything it reads lives in the frontend directory, which the guest
//! owns and may fill with anything: each value is parsed once into a checked number or
//! refused, and nothing it writes can panic or make the back end follow a path it names
//! (the back end knows both directories from the domain id and device id alone).
//!
//! The handshake, as Linux blkback runs it and blkfront expects it:
//! 1. [`VbdHandshake::create`] writes the frontend directory (owned by the guest, dom0
//!    may read; `state` = Initialising) and the backend directory (owned by dom0, the
//!    guest may read) with every feature key, `sectors`, `info`, `sector-size` and
//!    `physical-sector-size`, then backend `state` = InitWait. Both are written within
//!    one dom0 round, so the guest never sees half of them.
//! 2. blkfront writes `ring-ref`, `event-channel`, `protocol`, `feature-persistent`,
//!    then `state` = Initialised. `step` checks those nodes and answers
//!    [`HandshakeAction::Connect`]; the caller maps the ring, binds the channel, and
//!    calls [`VbdHandshake::connected`] (backend Connected) or
//!    [`VbdHandshake::failed`] (`error` node, backend Closed). A frontend asking for
//!    what we do not offer (multi-page ring, several queues, the 32-bit ABI) is refused
//!    by `step` itself: [`HandshakeAction::Refused`], `error` node, backend Closed.
//! 3. The frontend closing (or vanishing) while connected is a
//!    [`HandshakeAction::Disconnect`]; after tearing down the caller calls
//!    [`VbdHandshake::closed`]. The backend then mirrors the frontend: Closing while it
//!    is Closing, Closed once it is Closed. That matters: a Linux guest shutting down
//!    waits (5 s per device) for the backend to reach exactly Closing, and its
//!    `xenbus_reset_frontend` (after kexec) waits for Closing, then Closed, then
//!    InitWait. A frontend that starts again (Initialising) after the backend is
//!    Closed gets InitWait and the handshake restarts.
//! 4. [`VbdHandshake::detach`] (block-detach) writes backend Closing; once `step` sees
//!    the frontend Closed (or gone) it answers [`HandshakeAction::ReadyToRemove`], and
//!    [`VbdHandshake::remove`] deletes both directories. A guest without blkfront never
//!    closes: the caller's timeout, or the domain's death, ends the wait.
//!
//! Not offered: `max-ring-page-order` and `multi-queue-max-queues` (one page, one
//! queue), `feature-barrier` unless the [`BlkifConfig`] asks, capacity changes.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use super::{BackendDisk, BlkifBackend, BlkifConfig, DiskError};
use crate::xenstore::{Access, Permission, Xenstore, XsError};

#[cfg(test)]
#[path = "xenbus_tests.rs"]
mod tests;

// ---- Virtual device numbers (docs/misc/vbd-interface.txt) ----

/// Major number of the `xvd` scheme for disks and partitions up to 15.
const XVD_MAJOR: u32 = 202;
/// Major number of the `sd` scheme (disks and partitions up to 15).
const SD_MAJOR: u32 = 8;
/// Major numbers of the `hd` scheme: disks 0–1, then disks 2–3 (partitions up to 63).
const HD_MAJOR_FIRST: u32 = 3;
const HD_MAJOR_SECOND: u32 = 22;
/// Marks the extended `xvd` form: `(1 << 28) | (disk << 8) | partition`.
const XVD_EXTENDED: u32 = 1 << 28;
/// Disks the extended form can name (`disk` has 20 bits).
const XVD_EXTENDED_DISKS: u32 = 1 << 20;
/// Longest disk-letter suffix looked at (5 letters already exceed 2^20 disks).
const MAX_DISK_LETTERS: usize = 5;

/// Why a name is not a virtual device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VdevError {
    /// Not `xvd…`, `sd…` or `hd…` followed by disk letters.
    UnknownScheme,
    /// The disk letters are missing or not lower-case `a`–`z`.
    BadDiskLetters,
    /// A disk beyond what the scheme can number.
    DiskOutOfRange,
    /// The partition is not a decimal number from 1 (no sign, no leading zero).
    BadPartition,
    /// A partition beyond what the scheme can number.
    PartitionOutOfRange,
}

impl fmt::Display for VdevError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            VdevError::UnknownScheme => "is not a virtual disk name (xvda, xvdb, ..., sda or hda)",
            VdevError::BadDiskLetters => "needs disk letters a-z after xvd/sd/hd",
            VdevError::DiskOutOfRange => "names a disk beyond the naming scheme's range",
            VdevError::BadPartition => "has a bad partition number",
            VdevError::PartitionOutOfRange => "names a partition beyond the naming scheme's range",
        })
    }
}

/// The virtual device number (the device id in xenstore paths and `virtual-device`) of
/// a disk name, as libxl computes it: `xvd` disks and partitions up to 15 as
/// `(202 << 8) | (disk << 4) | partition`, beyond that `(1 << 28) | (disk << 8) |
/// partition` (disks below 2^20, partitions up to 255); `sda`–`sdp` as `(8 << 8) |
/// (disk << 4) | partition`; `hda`–`hdd` as `(3 << 8) | (disk << 6) | partition` and
/// `(22 << 8) | ((disk − 2) << 6) | partition` (partitions up to 63). Disk letters count
/// like spreadsheet columns: `a` = 0, `z` = 25, `aa` = 26.
pub fn virtual_device_number(name: &str) -> Result<u32, VdevError> {
    let (scheme, rest) = if let Some(rest) = name.strip_prefix("xvd") {
        (Scheme::Xvd, rest)
    } else if let Some(rest) = name.strip_prefix("sd") {
        (Scheme::Sd, rest)
    } else if let Some(rest) = name.strip_prefix("hd") {
        (Scheme::Hd, rest)
    } else {
        return Err(VdevError::UnknownScheme);
    };
    let letters_end = rest.bytes().position(|byte| !byte.is_ascii_lowercase()).unwrap_or(rest.len());
    let (letters, digits) = rest.split_at(letters_end);
    if letters.is_empty() {
        return Err(VdevError::BadDiskLetters);
    }
    if letters.len() > MAX_DISK_LETTERS {
        return Err(VdevError::DiskOutOfRange);
    }
    // Bijective base 26: "a" = 1 … "z" = 26, "aa" = 27; minus one.
    let disk = letters.bytes().fold(0u32, |value, letter| value * 26 + u32::from(letter - b'a') + 1) - 1;
    let partition = if digits.is_empty() {
        0
    } else {
        if digits.starts_with('0') || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(VdevError::BadPartition);
        }
        if digits.len() > 3 {
            return Err(VdevError::PartitionOutOfRange);
        }
        digits.bytes().fold(0u32, |value, digit| value * 10 + u32::from(digit - b'0'))
    };
    match scheme {
        Scheme::Xvd if disk < 16 && partition < 16 => Ok((XVD_MAJOR << 8) | (disk << 4) | partition),
        Scheme::Xvd if disk >= XVD_EXTENDED_DISKS => Err(VdevError::DiskOutOfRange),
        Scheme::Xvd if partition > 255 => Err(VdevError::PartitionOutOfRange),
        Scheme::Xvd => Ok(XVD_EXTENDED | (disk << 8) | partition),
        Scheme::Sd if disk >= 16 => Err(VdevError::DiskOutOfRange),
        Scheme::Sd if partition >= 16 => Err(VdevError::PartitionOutOfRange),
        Scheme::Sd => Ok((SD_MAJOR << 8) | (disk << 4) | partition),
        Scheme::Hd if disk >= 4 => Err(VdevError::DiskOutOfRange),
        Scheme::Hd if partition >= 64 => Err(VdevError::PartitionOutOfRange),
        Scheme::Hd if disk < 2 => Ok((HD_MAJOR_FIRST << 8) | (disk << 6) | partition),
        Scheme::Hd => Ok((HD_MAJOR_SECOND << 8) | ((disk - 2) << 6) | partition),
    }
}

#[derive(Clone, Copy)]
enum Scheme {
    Xvd,
    Sd,
    Hd,
}

// ---- Xenbus states (io/xenbus.h) ----

/// `enum xenbus_state`: where each end of a device is in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XenbusState {
    /// 0; also what a missing or unreadable `state` node means.
    Unknown,
    /// 1: the end is setting itself up.
    Initialising,
    /// 2: the back end waits for the frontend's details (it has published its own).
    InitWait,
    /// 3: the frontend has published its ring.
    Initialised,
    /// 4.
    Connected,
    /// 5: the end is shutting the device down.
    Closing,
    /// 6.
    Closed,
    /// 7 (netfront only).
    Reconfiguring,
    /// 8 (netfront only).
    Reconfigured,
}

impl XenbusState {
    /// The number written to a `state` node.
    pub const fn number(self) -> u32 {
        match self {
            XenbusState::Unknown => 0,
            XenbusState::Initialising => 1,
            XenbusState::InitWait => 2,
            XenbusState::Initialised => 3,
            XenbusState::Connected => 4,
            XenbusState::Closing => 5,
            XenbusState::Closed => 6,
            XenbusState::Reconfiguring => 7,
            XenbusState::Reconfigured => 8,
        }
    }

    /// The state a `state` node's value names; anything that is not one of the nine
    /// numbers reads as [`XenbusState::Unknown`], as Linux's `xenbus_read_driver_state`.
    pub fn from_node(value: &[u8]) -> XenbusState {
        match parse_decimal(value) {
            Some(1) => XenbusState::Initialising,
            Some(2) => XenbusState::InitWait,
            Some(3) => XenbusState::Initialised,
            Some(4) => XenbusState::Connected,
            Some(5) => XenbusState::Closing,
            Some(6) => XenbusState::Closed,
            Some(7) => XenbusState::Reconfiguring,
            Some(8) => XenbusState::Reconfigured,
            _ => XenbusState::Unknown,
        }
    }
}

/// A decimal number as a guest writes it with `%u`: 1 to 20 ASCII digits, no sign, no
/// spaces, no overflow.
fn parse_decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 20 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |number, &digit| number.checked_mul(10)?.checked_add(u64::from(digit - b'0')))
}

fn parse_u32(value: &[u8]) -> Option<u32> {
    parse_decimal(value).and_then(|number| u32::try_from(number).ok())
}

// ---- The handshake ----

/// The `protocol` value of the 64-bit x86 layout (`XEN_IO_PROTO_ABI_X86_64`).
pub const PROTOCOL_X86_64: &str = "x86_64-abi";
/// The `protocol` value of the 32-bit x86 layout (`XEN_IO_PROTO_ABI_X86_32`).
pub const PROTOCOL_X86_32: &str = "x86_32-abi";

/// Longest `error` node value written (the rest of a message is cut).
const MAX_ERROR_BYTES: usize = 1024;

/// What [`VbdHandshake::create`] advertises about one virtual disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VbdParams<'a> {
    /// The guest's name for the disk (`xvda`): the backend's `dev` node.
    pub vdev: &'a str,
    /// What backs it, for people reading the store (`params`: `nvme0n1p2`, `ram:64M`).
    pub target: &'a str,
    /// The guest may write (`mode` = `w`; otherwise `r` and `info` has
    /// [`super::VDISK_READONLY`]).
    pub writable: bool,
    /// Capacity in 512-byte sectors (`sectors`, whatever the sector size).
    pub sectors: u64,
    /// Logical sector size in bytes (`sector-size`): 512 or 4096.
    pub sector_size: u32,
    /// Physical sector size in bytes (`physical-sector-size`); also the advertised
    /// `discard-granularity`.
    pub physical_sector_size: u32,
    /// The features offered; the same value must build the [`BlkifBackend`].
    pub config: &'a BlkifConfig,
    /// Offer `feature-persistent` (only if the back end keeps grants mapped).
    pub persistent: bool,
}

/// What the caller must do after [`VbdHandshake::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a Connect or Disconnect must be answered with connected/failed or closed"]
pub enum HandshakeAction {
    /// Nothing this round.
    Wait,
    /// The frontend published a checked ring: map `ring_ref` (a grant from the guest
    /// to dom0), bind `event_channel` (the guest's port), build a [`BlkifBackend`], then
    /// call [`VbdHandshake::connected`], or [`VbdHandshake::failed`] if any of it failed.
    Connect {
        /// Grant reference of the ring page (untrusted: the mapping checks it).
        ring_ref: u32,
        /// The guest's event channel port (untrusted: the binding checks it).
        event_channel: u32,
        /// Both ends agreed to persistent grants.
        persistent: bool,
    },
    /// The frontend is closing, closed or gone: stop serving the ring, unmap it, unbind
    /// the channel, then call [`VbdHandshake::closed`].
    Disconnect,
    /// The frontend asked for something this back end does not do; the backend wrote
    /// the reason to its `error` node and is Closed. For the log; nothing to undo.
    Refused(FrontendRefusal),
    /// After [`VbdHandshake::detach`]: the frontend is closed (or gone); call
    /// [`VbdHandshake::remove`].
    ReadyToRemove,
}

/// Why the frontend's ring details were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontendRefusal {
    /// No `ring-ref` node.
    MissingRingRef,
    /// `ring-ref` is not a decimal number below 2^32.
    BadRingRef,
    /// No `event-channel` node.
    MissingEventChannel,
    /// `event-channel` is not a decimal port number from 1 below 2^32.
    BadEventChannel,
    /// `ring-page-order` above 0: a multi-page ring (we offer no `max-ring-page-order`).
    MultiPageRing { order: u32 },
    /// `ring-page-order` is not a number.
    BadRingPageOrder,
    /// `multi-queue-num-queues` above 1 (we offer no `multi-queue-max-queues`).
    MultiQueue { queues: u32 },
    /// `multi-queue-num-queues` is 0 or not a number.
    BadQueueCount,
    /// `protocol` = `x86_32-abi`: requests would come in the 32-bit layout.
    Protocol32Bit,
    /// A `protocol` other than `x86_64-abi` and `x86_32-abi`.
    UnknownProtocol,
}

impl fmt::Display for FrontendRefusal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrontendRefusal::MissingRingRef => formatter.write_str("frontend wrote no ring-ref"),
            FrontendRefusal::BadRingRef => formatter.write_str("ring-ref is not a grant reference"),
            FrontendRefusal::MissingEventChannel => formatter.write_str("frontend wrote no event-channel"),
            FrontendRefusal::BadEventChannel => formatter.write_str("event-channel is not a port number"),
            FrontendRefusal::MultiPageRing { order } => write!(
                formatter,
                "multi-page rings are not supported (ring-page-order {order}; no max-ring-page-order was offered)"
            ),
            FrontendRefusal::BadRingPageOrder => formatter.write_str("ring-page-order is not a number"),
            FrontendRefusal::MultiQueue { queues } => write!(
                formatter,
                "multi-queue is not supported (multi-queue-num-queues {queues}; no multi-queue-max-queues was offered)"
            ),
            FrontendRefusal::BadQueueCount => formatter.write_str("multi-queue-num-queues is not a queue count"),
            FrontendRefusal::Protocol32Bit => {
                formatter.write_str("protocol x86_32-abi is not supported: this back end decodes 64-bit requests")
            }
            FrontendRefusal::UnknownProtocol => formatter.write_str("unknown protocol (only x86_64-abi is supported)"),
        }
    }
}

/// Where a device's handshake is (what the backend has done, and what it waits for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VbdPhase {
    /// Backend InitWait: waiting for the frontend's ring.
    WaitingForFrontend,
    /// [`HandshakeAction::Connect`] was returned: the caller owes
    /// [`VbdHandshake::connected`] or [`VbdHandshake::failed`].
    Connecting,
    /// Backend Connected: the ring is served.
    Connected,
    /// [`HandshakeAction::Disconnect`] was returned: the caller owes
    /// [`VbdHandshake::closed`].
    Disconnecting,
    /// Backend Closing, waiting for the frontend to be Closed.
    Closing,
    /// Backend Closed, waiting for the frontend to start again (or for removal).
    Closed,
}

/// A call the handshake could not make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// The store refused an operation (dom0's own; a full store or a bad id).
    Xenstore(XsError),
    /// `call` does not fit `phase` (e.g. `connected` without a pending connection).
    OutOfOrder { call: &'static str, phase: VbdPhase },
}

impl From<XsError> for HandshakeError {
    fn from(error: XsError) -> Self {
        HandshakeError::Xenstore(error)
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Xenstore(error) => write!(formatter, "xenstore: {}", error.errno_name()),
            HandshakeError::OutOfOrder { call, phase } => write!(formatter, "{call} called while {phase:?}"),
        }
    }
}

/// The backend's half of one virtual block device's xenbus handshake, for
/// (`domid`, `devid`). See the module documentation for the call order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VbdHandshake {
    domid: u16,
    devid: u32,
    frontend_path: String,
    backend_path: String,
    offer_persistent: bool,
    phase: VbdPhase,
    /// [`VbdHandshake::detach`] was called: no restart, and removal once closed.
    detaching: bool,
    /// What the last [`HandshakeAction::Connect`] carried (ring-ref, event channel).
    ring: Option<(u32, u32)>,
}

/// `/local/domain/<domid>/device/vbd/<devid>`.
pub fn frontend_path(domid: u16, devid: u32) -> String {
    format!("/local/domain/{domid}/device/vbd/{devid}")
}

/// `/local/domain/0/backend/vbd/<domid>/<devid>`.
pub fn backend_path(domid: u16, devid: u32) -> String {
    format!("/local/domain/0/backend/vbd/{domid}/{devid}")
}

/// Adapts [`VbdParams`] to [`BlkifBackend::xenstore_keys`], so that the features
/// advertised are computed in one place, with the clamping the back end applies.
struct AdvertisedDisk {
    sectors: u64,
    read_only: bool,
    discard_granularity: u32,
}

impl BackendDisk for AdvertisedDisk {
    fn sectors(&self) -> u64 {
        self.sectors
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn read(&mut self, _sector: u64, _buffer: &mut [u8]) -> Result<(), DiskError> {
        Err(DiskError)
    }
    fn write(&mut self, _sector: u64, _data: &[u8]) -> Result<(), DiskError> {
        Err(DiskError)
    }
    fn flush(&mut self) -> Result<(), DiskError> {
        Err(DiskError)
    }
    fn discard(&mut self, _sector: u64, _count: u64) -> Result<(), DiskError> {
        Err(DiskError)
    }
    fn discard_granularity(&self) -> u32 {
        self.discard_granularity
    }
}

/// `rm` that accepts a path whose parent is already gone.
fn remove_node(store: &mut Xenstore, path: &str) -> Result<(), XsError> {
    match store.rm(path) {
        Ok(()) | Err(XsError::NotFound) => Ok(()),
        Err(error) => Err(error),
    }
}

impl VbdHandshake {
    /// Writes both directories of (`domid`, `devid`) afresh (removing leftovers):
    /// frontend `backend`, `backend-id`, `virtual-device`, `device-type`, `state` = 1;
    /// backend `frontend`, `frontend-id`, `online`, `removable`, `bootable`, `dev`,
    /// `type`, `device-type`, `mode`, `params`, the feature keys, `sectors`, `info`,
    /// `sector-size`, `physical-sector-size`, and `state` = 2 (InitWait).
    pub fn create(store: &mut Xenstore, domid: u16, devid: u32, params: &VbdParams<'_>) -> Result<Self, XsError> {
        if domid == 0 {
            return Err(XsError::Invalid);
        }
        let handshake = VbdHandshake {
            domid,
            devid,
            frontend_path: frontend_path(domid, devid),
            backend_path: backend_path(domid, devid),
            offer_persistent: params.persistent,
            phase: VbdPhase::WaitingForFrontend,
            detaching: false,
            ring: None,
        };
        let backend = handshake.backend_path.as_str();
        let frontend = handshake.frontend_path.as_str();
        remove_node(store, backend)?;
        remove_node(store, frontend)?;

        // Backend first: when the frontend directory appears, blkfront reads `backend`
        // and expects to find it.
        store.write(backend, b"")?;
        store.set_perms(backend, &[Permission::new(0, Access::None), Permission::new(domid, Access::Read)])?;
        let disk = AdvertisedDisk {
            sectors: params.sectors,
            read_only: !params.writable,
            discard_granularity: params.physical_sector_size,
        };
        let mut keys = BlkifBackend::xenstore_keys(params.config, &disk);
        for (key, value) in &mut keys {
            if key == "sector-size" {
                *value = params.sector_size.to_string();
            }
        }
        let fixed: [(&str, String); 11] = [
            ("frontend", frontend.to_string()),
            ("frontend-id", domid.to_string()),
            ("online", "1".to_string()),
            ("removable", "0".to_string()),
            ("bootable", "1".to_string()),
            ("dev", params.vdev.to_string()),
            ("type", "phy".to_string()),
            ("device-type", "disk".to_string()),
            ("mode", if params.writable { "w" } else { "r" }.to_string()),
            ("params", params.target.to_string()),
            ("physical-sector-size", params.physical_sector_size.to_string()),
        ];
        for (key, value) in fixed.iter().map(|(key, value)| (*key, value.as_str())) {
            store.write(&format!("{backend}/{key}"), value.as_bytes())?;
        }
        for (key, value) in &keys {
            store.write(&format!("{backend}/{key}"), value.as_bytes())?;
        }
        if params.persistent {
            store.write(&format!("{backend}/feature-persistent"), b"1")?;
        }

        // The frontend directory belongs to the guest: nodes created below inherit that.
        store.write(frontend, b"")?;
        store.set_perms(frontend, &[Permission::new(domid, Access::None), Permission::new(0, Access::Read)])?;
        store.write(&format!("{frontend}/backend"), backend.as_bytes())?;
        store.write(&format!("{frontend}/backend-id"), b"0")?;
        store.write(&format!("{frontend}/virtual-device"), devid.to_string().as_bytes())?;
        store.write(&format!("{frontend}/device-type"), b"disk")?;
        store.write(&format!("{frontend}/state"), XenbusState::Initialising.number().to_string().as_bytes())?;

        handshake.write_backend_state(store, XenbusState::InitWait)?;
        Ok(handshake)
    }

    /// The guest's domain id.
    pub fn domid(&self) -> u16 {
        self.domid
    }

    /// The virtual device number.
    pub fn devid(&self) -> u32 {
        self.devid
    }

    /// Where the handshake is.
    pub fn phase(&self) -> VbdPhase {
        self.phase
    }

    /// Whether [`VbdHandshake::detach`] was called.
    pub fn detaching(&self) -> bool {
        self.detaching
    }

    /// The frontend directory.
    pub fn frontend_path(&self) -> &str {
        &self.frontend_path
    }

    /// The backend directory.
    pub fn backend_path(&self) -> &str {
        &self.backend_path
    }

    /// The frontend's state as it reads now (missing or garbage: Unknown).
    pub fn frontend_state(&self, store: &Xenstore) -> XenbusState {
        match store.read(&format!("{}/state", self.frontend_path)) {
            Ok(value) => XenbusState::from_node(&value),
            Err(_) => XenbusState::Unknown,
        }
    }

    /// Looks at the frontend once and advances; call every dom0 round.
    pub fn step(&mut self, store: &mut Xenstore) -> Result<HandshakeAction, HandshakeError> {
        let frontend = self.frontend_state(store);
        let closed_or_gone = matches!(frontend, XenbusState::Closed | XenbusState::Unknown);
        match self.phase {
            VbdPhase::WaitingForFrontend => match frontend {
                _ if self.detaching && closed_or_gone => Ok(HandshakeAction::ReadyToRemove),
                XenbusState::Initialised | XenbusState::Connected if !self.detaching => self.offer_connection(store),
                XenbusState::Closing => {
                    self.write_backend_state(store, XenbusState::Closing)?;
                    self.phase = VbdPhase::Closing;
                    Ok(HandshakeAction::Wait)
                }
                XenbusState::Closed => {
                    self.write_backend_state(store, XenbusState::Closed)?;
                    self.phase = VbdPhase::Closed;
                    Ok(HandshakeAction::Wait)
                }
                _ => Ok(HandshakeAction::Wait),
            },
            VbdPhase::Connecting | VbdPhase::Disconnecting => Ok(HandshakeAction::Wait),
            VbdPhase::Connected => {
                let restarted = matches!(frontend, XenbusState::Initialising | XenbusState::InitWait)
                    || (frontend == XenbusState::Initialised && self.ring_changed(store));
                if closed_or_gone || frontend == XenbusState::Closing || restarted {
                    self.phase = VbdPhase::Disconnecting;
                    Ok(HandshakeAction::Disconnect)
                } else {
                    Ok(HandshakeAction::Wait)
                }
            }
            VbdPhase::Closing => {
                if closed_or_gone {
                    self.write_backend_state(store, XenbusState::Closed)?;
                    self.phase = VbdPhase::Closed;
                    if self.detaching {
                        return Ok(HandshakeAction::ReadyToRemove);
                    }
                } else if frontend == XenbusState::Initialising && !self.detaching {
                    self.restart(store)?;
                }
                Ok(HandshakeAction::Wait)
            }
            VbdPhase::Closed => {
                if self.detaching && closed_or_gone {
                    Ok(HandshakeAction::ReadyToRemove)
                } else if frontend == XenbusState::Initialising && !self.detaching {
                    self.restart(store)?;
                    Ok(HandshakeAction::Wait)
                } else {
                    Ok(HandshakeAction::Wait)
                }
            }
        }
    }

    /// The ring is mapped and the channel bound: backend Connected (blkfront then
    /// reads `sectors`, `info`, `sector-size` and creates the disk).
    pub fn connected(&mut self, store: &mut Xenstore) -> Result<(), HandshakeError> {
        self.expect(VbdPhase::Connecting, "connected")?;
        self.write_backend_state(store, XenbusState::Connected)?;
        self.phase = VbdPhase::Connected;
        Ok(())
    }

    /// Connecting failed (the ring could not be mapped, the channel not bound):
    /// writes `message` to the backend's `error` node, backend Closed.
    pub fn failed(&mut self, store: &mut Xenstore, message: &str) -> Result<(), HandshakeError> {
        self.expect(VbdPhase::Connecting, "failed")?;
        self.close_with_error(store, message)?;
        Ok(())
    }

    /// The caller has torn the ring down after [`HandshakeAction::Disconnect`]: the
    /// backend follows the frontend, Closing if it is only Closing, else Closed.
    pub fn closed(&mut self, store: &mut Xenstore) -> Result<(), HandshakeError> {
        self.expect(VbdPhase::Disconnecting, "closed")?;
        self.ring = None;
        if self.frontend_state(store) == XenbusState::Closing {
            self.write_backend_state(store, XenbusState::Closing)?;
            self.phase = VbdPhase::Closing;
        } else {
            self.write_backend_state(store, XenbusState::Closed)?;
            self.phase = VbdPhase::Closed;
        }
        Ok(())
    }

    /// Starts a block-detach: backend Closing. A connected device stays served until
    /// `step` answers [`HandshakeAction::Disconnect`]; then `step` answers
    /// [`HandshakeAction::ReadyToRemove`] once the frontend is Closed.
    pub fn detach(&mut self, store: &mut Xenstore) -> Result<(), HandshakeError> {
        match self.phase {
            VbdPhase::Connecting | VbdPhase::Disconnecting => {
                Err(HandshakeError::OutOfOrder { call: "detach", phase: self.phase })
            }
            _ => {
                self.detaching = true;
                self.write_backend_state(store, XenbusState::Closing)?;
                if matches!(self.phase, VbdPhase::WaitingForFrontend | VbdPhase::Closed) {
                    self.phase = VbdPhase::Closing;
                }
                Ok(())
            }
        }
    }

    /// Deletes both directories (and the domain's `backend/vbd/<domid>` once empty).
    /// The caller has torn down any ring first (a connected device must go through
    /// [`HandshakeAction::Disconnect`], or its domain be gone).
    pub fn remove(self, store: &mut Xenstore) -> Result<(), XsError> {
        remove_node(store, &self.frontend_path)?;
        remove_node(store, &self.backend_path)?;
        let domain_directory = format!("/local/domain/0/backend/vbd/{}", self.domid);
        if store.directory(&domain_directory).is_ok_and(|children| children.is_empty()) {
            remove_node(store, &domain_directory)?;
        }
        Ok(())
    }

    fn expect(&self, phase: VbdPhase, call: &'static str) -> Result<(), HandshakeError> {
        if self.phase == phase {
            Ok(())
        } else {
            Err(HandshakeError::OutOfOrder { call, phase: self.phase })
        }
    }

    fn write_backend_state(&self, store: &mut Xenstore, state: XenbusState) -> Result<(), XsError> {
        store.write(&format!("{}/state", self.backend_path), state.number().to_string().as_bytes())
    }

    fn close_with_error(&mut self, store: &mut Xenstore, message: &str) -> Result<(), XsError> {
        let mut end = message.len().min(MAX_ERROR_BYTES);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let text = message.get(..end).unwrap_or("");
        store.write(&format!("{}/error", self.backend_path), text.as_bytes())?;
        self.write_backend_state(store, XenbusState::Closed)?;
        self.phase = VbdPhase::Closed;
        self.ring = None;
        Ok(())
    }

    /// The frontend started again: back to InitWait, without the last error.
    fn restart(&mut self, store: &mut Xenstore) -> Result<(), XsError> {
        remove_node(store, &format!("{}/error", self.backend_path))?;
        self.write_backend_state(store, XenbusState::InitWait)?;
        self.phase = VbdPhase::WaitingForFrontend;
        Ok(())
    }

    fn read_frontend(&self, store: &Xenstore, key: &str) -> Option<Vec<u8>> {
        store.read(&format!("{}/{key}", self.frontend_path)).ok()
    }

    /// Whether the frontend's ring nodes now name another ring than the one connected
    /// (it restarted between two rounds).
    fn ring_changed(&self, store: &Xenstore) -> bool {
        match self.read_ring(store) {
            Ok((ring_ref, event_channel, _)) => self.ring != Some((ring_ref, event_channel)),
            Err(_) => true,
        }
    }

    /// Reads and checks the frontend's ring details.
    fn read_ring(&self, store: &Xenstore) -> Result<(u32, u32, bool), FrontendRefusal> {
        if let Some(queues) = self.read_frontend(store, "multi-queue-num-queues") {
            match parse_u32(&queues) {
                Some(1) => {}
                Some(0) | None => return Err(FrontendRefusal::BadQueueCount),
                Some(queues) => return Err(FrontendRefusal::MultiQueue { queues }),
            }
        }
        let mut ring_ref_node = self.read_frontend(store, "ring-ref");
        if let Some(order) = self.read_frontend(store, "ring-page-order") {
            match parse_u32(&order) {
                // Order 0 is one page, named `ring-ref0` by a frontend that writes it.
                Some(0) => ring_ref_node = ring_ref_node.or_else(|| self.read_frontend(store, "ring-ref0")),
                Some(order) => return Err(FrontendRefusal::MultiPageRing { order }),
                None => return Err(FrontendRefusal::BadRingPageOrder),
            }
        }
        let ring_ref =
            parse_u32(&ring_ref_node.ok_or(FrontendRefusal::MissingRingRef)?).ok_or(FrontendRefusal::BadRingRef)?;
        let event_channel = self.read_frontend(store, "event-channel").ok_or(FrontendRefusal::MissingEventChannel)?;
        let event_channel =
            parse_u32(&event_channel).filter(|&port| port != 0).ok_or(FrontendRefusal::BadEventChannel)?;
        match self.read_frontend(store, "protocol").as_deref() {
            None => {}
            Some(protocol) if protocol == PROTOCOL_X86_64.as_bytes() => {}
            Some(protocol) if protocol == PROTOCOL_X86_32.as_bytes() => return Err(FrontendRefusal::Protocol32Bit),
            Some(_) => return Err(FrontendRefusal::UnknownProtocol),
        }
        // Like blkback's xenbus_read_unsigned: a value that is not a number means 0.
        let frontend_persistent = self.read_frontend(store, "feature-persistent").and_then(|value| parse_u32(&value));
        let persistent = self.offer_persistent && frontend_persistent == Some(1);
        Ok((ring_ref, event_channel, persistent))
    }

    fn offer_connection(&mut self, store: &mut Xenstore) -> Result<HandshakeAction, HandshakeError> {
        match self.read_ring(store) {
            Ok((ring_ref, event_channel, persistent)) => {
                self.ring = Some((ring_ref, event_channel));
                self.phase = VbdPhase::Connecting;
                Ok(HandshakeAction::Connect { ring_ref, event_channel, persistent })
            }
            Err(refusal) => {
                self.close_with_error(store, &refusal.to_string())?;
                Ok(HandshakeAction::Refused(refusal))
            }
        }
    }
}

/// The fuzz target's body (builtin-dom0/fuzz/fuzz_targets/blkif_handshake.rs), shared
/// with a host test: the frontend directory of a vbd gets whatever `data` says (each
/// record: a key selector, a length, that many value bytes; some selectors remove a
/// node or start a detach), with a handshake step after each record and the caller's
/// answer to every action. Nothing may panic, and the backend's `state` node always
/// matches the handshake's phase. Panics (by `assert!`) only when that breaks.
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    const KEYS: [&str; 8] = [
        "state",
        "ring-ref",
        "event-channel",
        "protocol",
        "feature-persistent",
        "ring-page-order",
        "ring-ref0",
        "multi-queue-num-queues",
    ];
    const DOMID: u16 = 3;
    const DEVID: u32 = 51712;
    let mut store = Xenstore::new();
    if store.introduce(DOMID).is_err() {
        return;
    }
    let config = BlkifConfig::default();
    let params = VbdParams {
        vdev: "xvda",
        target: "ram:16M",
        writable: true,
        sectors: 32768,
        sector_size: 512,
        physical_sector_size: 512,
        config: &config,
        persistent: data.first().is_some_and(|byte| byte & 1 != 0),
    };
    let Ok(mut vbd) = VbdHandshake::create(&mut store, DOMID, DEVID, &params) else { return };
    let frontend = frontend_path(DOMID, DEVID);
    let backend_state = |store: &Xenstore| match store.read(&format!("{}/state", backend_path(DOMID, DEVID))) {
        Ok(value) => XenbusState::from_node(&value),
        Err(_) => XenbusState::Unknown,
    };
    let mut rest = data.get(1..).unwrap_or(&[]);
    let mut connects = 0u32;
    while let [selector, length, tail @ ..] = rest {
        let length = usize::from(*length % 24).min(tail.len());
        let (value, after) = tail.split_at(length);
        rest = after;
        let key = KEYS[usize::from(selector % 8)];
        match selector >> 3 {
            0 => {
                let _ = store.rm(&format!("{frontend}/{key}"));
            }
            1 => {
                let _ = vbd.detach(&mut store);
            }
            _ => {
                let _ = store.write(&format!("{frontend}/{key}"), value);
            }
        }
        let Ok(action) = vbd.step(&mut store) else { continue };
        match action {
            HandshakeAction::Connect { .. } => {
                connects += 1;
                let answer = if connects.is_multiple_of(3) {
                    vbd.failed(&mut store, "refused")
                } else {
                    vbd.connected(&mut store)
                };
                assert!(answer.is_ok());
            }
            HandshakeAction::Disconnect => assert!(vbd.closed(&mut store).is_ok()),
            HandshakeAction::Refused(_) | HandshakeAction::ReadyToRemove | HandshakeAction::Wait => {}
        }
        let expected = match vbd.phase() {
            VbdPhase::WaitingForFrontend => XenbusState::InitWait,
            VbdPhase::Connected if vbd.detaching() => XenbusState::Closing,
            VbdPhase::Connected => XenbusState::Connected,
            VbdPhase::Closing => XenbusState::Closing,
            VbdPhase::Closed => XenbusState::Closed,
            VbdPhase::Connecting | VbdPhase::Disconnecting => panic!("an action was left unanswered"),
        };
        assert_eq!(backend_state(&store), expected);
    }
    assert!(vbd.remove(&mut store).is_ok());
}
