//! Connecting to dom0's blkif back end as xen-blkfront does, minus everything
//! optional: one ring page, one event channel, no persistent grants, no multi-queue;
//! for each of the guest's two disks ([`XVDA`], writable, and [`XVDB`], read-only).
//!
//! Sequence (pvh-abi.md §6.4, §6.5, §7.2; xen/include/public/io/blkif.h):
//! 1. [`open`]: HVM params 1 and 2 (the store ring's frame and event channel), grant
//!    frame 0 mapped at [`GRANT_FRAME_GPFN`], xvda's `backend-id` (the back end's
//!    domain, which both disks must share), every page granted to it (see [`Grants`]).
//! 2. [`Session::connect`], per disk: `device/vbd/<devid>/backend` (the back end's
//!    directory B) and `backend-id`; wait for B/state InitWait (2), allocate an
//!    unbound port for the back end, set up the ring, write `ring-ref`,
//!    `event-channel`, `protocol` = `x86_64-abi`, then `state` = Initialised (3) in
//!    the frontend directory.
//! 3. Wait for B/state Connected (4); read B/sectors (required), B/sector-size, B/info,
//!    B/mode, B/feature-max-indirect-segments; write `state` = Connected (4).
//!
//! Every wait is bounded; a back end that closes (state 5 or 6) ends the wait at once.

use core::fmt;

use basalt_guest_blkhostile_protocol::blkif::FrontRing;
use basalt_guest_blkhostile_protocol::grant_table::{GrantTable, OutOfFrame};
use basalt_guest_blkhostile_protocol::xenstore::{Decimal, XenstoreClient, XenstoreError};
use basalt_guest_blkhostile_protocol::{Deadline, Environment};
use basalt_guest_rt::{cpu, hypercall};

use crate::hypercalls::{self, Errno, HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN};
use crate::memory::{frame_number, shared_page, PhysPage, Role};

/// One of the guest's virtual disks.
#[derive(Debug, Clone, Copy)]
pub struct Device {
    /// The guest's name for it, for messages.
    pub vdev: &'static str,
    /// The virtual device number: xvd<letter> = 202 << 8 | letter << 4
    /// (docs/man/xen-vbd-interface.7).
    pub devid: u32,
    /// The frontend directory, relative to the domain's home: `device/vbd/<devid>`.
    pub directory: &'static str,
    /// The page of its shared ring and the grant that shares it.
    pub ring: Role,
    pub ring_gref: u32,
}

impl Device {
    /// `handle` in requests: the virtual device number, as blkfront sets it.
    pub const fn handle(&self) -> u16 {
        self.devid as u16
    }
}

/// The writable disk every check but the read-only ones uses (config: `ram:16M,xvda,w`).
pub const XVDA: Device =
    Device { vdev: "xvda", devid: 51712, directory: "device/vbd/51712", ring: Role::Ring, ring_gref: GRANTS.ring };
/// The read-only disk (config: `ram:1M,xvdb,r`).
pub const XVDB: Device = Device {
    vdev: "xvdb",
    devid: 51728,
    directory: "device/vbd/51728",
    ring: Role::RingXvdb,
    ring_gref: GRANTS.ring_xvdb,
};
/// Where grant frame 0 is mapped: 2 GiB, far above this guest's RAM (tens of MiB) and
/// below the special pages, ACPI and local APIC regions near 4 GiB.
pub const GRANT_FRAME_GPFN: u64 = 0x8_0000;

/// Per xenstore request.
const XENSTORE_TIMEOUT_NS: u64 = 5_000_000_000;
/// For the back end to reach InitWait, then Connected.
const STATE_TIMEOUT_NS: u64 = 30_000_000_000;
/// Yields between two reads of the back end's state.
const STATE_POLL_YIELDS: u32 = 100;

const XENBUS_STATE_INIT_WAIT: u64 = 2;
const XENBUS_STATE_CONNECTED: u64 = 4;
const XENBUS_STATE_CLOSING: u64 = 5;

/// Grant references this guest uses (0..8 are the toolstack's by convention). The data
/// pages serve both disks: grants are per domain, not per device.
#[derive(Debug, Clone, Copy)]
pub struct Grants {
    /// xvda's ring.
    pub ring: u32,
    /// xvdb's ring.
    pub ring_xvdb: u32,
    pub write_first: u32,
    pub write_second: u32,
    pub read_first: u32,
    pub read_second: u32,
    /// The read-only page.
    pub read_only: u32,
    /// The hostile page, granted read-only to the back end.
    pub hostile: u32,
    /// The hostile page again, granted to a domain that is not the back end.
    pub other_domain: u32,
    /// Inside the mapped frame but never granted (type invalid).
    pub never_granted: u32,
}

pub const GRANTS: Grants = Grants {
    ring: 8,
    write_first: 9,
    write_second: 10,
    read_first: 11,
    read_second: 12,
    read_only: 13,
    hostile: 14,
    other_domain: 15,
    ring_xvdb: 16,
    never_granted: 500,
};

/// A connected frontend of one disk.
pub struct Frontend {
    pub ring: FrontRing<PhysPage>,
    pub port: u32,
    /// Disk size in 512-byte sectors (B/sectors).
    pub sectors: u64,
    /// `handle` for its requests.
    pub handle: u16,
}

/// Why connecting failed.
pub enum ConnectError {
    NoXen,
    Parameter {
        index: u32,
        errno: Errno,
    },
    StorePage(u64),
    Xenstore {
        what: &'static str,
        error: XenstoreError,
    },
    NotUtf8(&'static str),
    BadNumber {
        what: &'static str,
    },
    GrantFrame(Errno),
    Grant(OutOfFrame),
    EventChannel(Errno),
    StateTimeout {
        waiting_for: u64,
        last: Option<u64>,
    },
    BackendClosed(u64),
    /// A disk's back end is in another domain than xvda's, to which the pages are granted.
    OtherBackend {
        expected: u16,
        got: u16,
    },
}

impl fmt::Display for ConnectError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoXen => write!(formatter, "no Xen hypervisor (CPUID)"),
            Self::Parameter { index, errno } => write!(formatter, "HVMOP_get_param {index}: {errno}"),
            Self::StorePage(pfn) => write!(formatter, "store ring at unusable frame {pfn:#x}"),
            Self::Xenstore { what, error } => write!(formatter, "xenstore {what}: {error}"),
            Self::NotUtf8(what) => write!(formatter, "xenstore {what}: not UTF-8"),
            Self::BadNumber { what } => write!(formatter, "xenstore {what}: not a number"),
            Self::GrantFrame(errno) => {
                write!(formatter, "XENMEM_add_to_physmap(grant_table, 0, {GRANT_FRAME_GPFN:#x}): {errno}")
            }
            Self::Grant(OutOfFrame(gref)) => write!(formatter, "grant {gref} outside frame 0"),
            Self::EventChannel(errno) => write!(formatter, "EVTCHNOP_alloc_unbound: {errno}"),
            Self::StateTimeout { waiting_for, last: Some(state) } => {
                write!(formatter, "back end state {state}, still not {waiting_for} at the deadline")
            }
            Self::StateTimeout { waiting_for, last: None } => {
                write!(formatter, "back end state unreadable, still not {waiting_for} at the deadline")
            }
            Self::BackendClosed(state) => write!(formatter, "back end went to state {state}"),
            Self::OtherBackend { expected, got } => {
                write!(formatter, "back end in domain {got}, the pages are granted to domain {expected}")
            }
        }
    }
}

impl From<OutOfFrame> for ConnectError {
    fn from(error: OutOfFrame) -> Self {
        Self::Grant(error)
    }
}

/// Longest back-end path kept.
const PATH_MAX: usize = 128;

/// A xenstore path built in a fixed buffer.
struct Path {
    bytes: [u8; PATH_MAX + 32],
    len: usize,
}

impl Path {
    fn new(directory: &str, node: &str) -> Self {
        let mut path = Self { bytes: [0; PATH_MAX + 32], len: 0 };
        for part in [directory.as_bytes(), b"/", node.as_bytes()] {
            let take = part.len().min(path.bytes.len() - path.len);
            path.bytes[path.len..path.len + take].copy_from_slice(&part[..take]);
            path.len += take;
        }
        path
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

fn xenstore_error(what: &'static str) -> impl Fn(XenstoreError) -> ConnectError {
    move |error| ConnectError::Xenstore { what, error }
}

/// Reads a number node; `what` names it in errors.
fn read_number(
    store: &mut XenstoreClient<PhysPage>,
    env: &mut dyn Environment,
    path: &str,
    what: &'static str,
) -> Result<u64, ConnectError> {
    store.read_number(env, path).map_err(xenstore_error(what))?.ok_or(ConnectError::BadNumber { what })
}

/// Polls B/state until it reaches `wanted` (or beyond, below Closing).
fn wait_for_state(
    store: &mut XenstoreClient<PhysPage>,
    env: &mut dyn Environment,
    state_path: &str,
    wanted: u64,
) -> Result<u64, ConnectError> {
    let mut deadline = Deadline::after(env, STATE_TIMEOUT_NS);
    let mut last = None;
    loop {
        // A missing or malformed node reads as Unknown (0), as xenbus does.
        let state = store.read_number(env, state_path).ok().flatten();
        last = state.or(last);
        match state {
            Some(state) if state >= XENBUS_STATE_CLOSING => return Err(ConnectError::BackendClosed(state)),
            Some(state) if state >= wanted => return Ok(state),
            _ => {}
        }
        for _ in 0..STATE_POLL_YIELDS {
            if !deadline.pause(env) {
                return Err(ConnectError::StateTimeout { waiting_for: wanted, last });
            }
        }
    }
}

/// Facts about the connection for the report line.
pub struct Connection {
    pub backend: [u8; PATH_MAX],
    pub backend_len: usize,
    pub sector_size: Option<u64>,
    pub info: Option<u64>,
    /// B/mode's first bytes (`w` or `r`).
    pub mode: [u8; MODE_MAX],
    pub mode_len: usize,
    pub max_indirect_segments: Option<u64>,
}

/// Bytes of B/mode kept: more than any valid value.
const MODE_MAX: usize = 8;

impl Connection {
    pub fn backend(&self) -> &str {
        core::str::from_utf8(&self.backend[..self.backend_len]).unwrap_or("?")
    }

    /// B/mode, `?` if unreadable.
    pub fn mode(&self) -> &str {
        self.mode.get(..self.mode_len).and_then(|mode| core::str::from_utf8(mode).ok()).unwrap_or("?")
    }
}

/// What both disks share: the xenstore connection, the grant table and the back end's
/// domain.
pub struct Session {
    store: XenstoreClient<PhysPage>,
    pub grants: GrantTable<PhysPage>,
    pub backend_id: u16,
}

/// Step 1 of the module documentation.
pub fn open(env: &mut dyn Environment) -> Result<Session, ConnectError> {
    if !hypercall::xen_present() {
        return Err(ConnectError::NoXen);
    }
    let parameter = |index| hypercalls::hvm_param(index).map_err(|errno| ConnectError::Parameter { index, errno });
    let store_pfn = parameter(HVM_PARAM_STORE_PFN)?;
    let store_port = parameter(HVM_PARAM_STORE_EVTCHN)?;
    let store_port = u32::try_from(store_port).map_err(|_| ConnectError::Parameter { index: 2, errno: 0 })?;
    // SAFETY: the toolstack put the store ring at this frame, outside RAM; only
    // PhysPage's volatile accesses touch it. Frame 0 means "no xenstore".
    let store_page = (store_pfn != 0).then(|| unsafe { PhysPage::at_frame(store_pfn) }).flatten();
    let store_page = store_page.ok_or(ConnectError::StorePage(store_pfn))?;
    // SAFETY: GRANT_FRAME_GPFN is below 4 GiB and not RAM; once the hypercall below
    // maps grant frame 0 there, only PhysPage's volatile accesses touch it.
    let grant_frame = unsafe { PhysPage::new(GRANT_FRAME_GPFN << 12) };
    hypercalls::map_grant_frame(0, GRANT_FRAME_GPFN).map_err(ConnectError::GrantFrame)?;

    let mut store = XenstoreClient::new(store_page, store_port, XENSTORE_TIMEOUT_NS);
    let backend_id = read_backend_id(&mut store, env, &XVDA)?;

    let mut grants = GrantTable::new(grant_frame);
    let other_domain = match cpu::domain_id() {
        Some(own) if own != backend_id => own,
        _ => backend_id.wrapping_add(1),
    };
    let table = [
        (GRANTS.ring, Role::Ring, backend_id, false),
        (GRANTS.ring_xvdb, Role::RingXvdb, backend_id, false),
        (GRANTS.write_first, Role::WriteFirst, backend_id, true),
        (GRANTS.write_second, Role::WriteSecond, backend_id, true),
        (GRANTS.read_first, Role::ReadFirst, backend_id, false),
        (GRANTS.read_second, Role::ReadSecond, backend_id, false),
        (GRANTS.read_only, Role::ReadOnly, backend_id, true),
        (GRANTS.hostile, Role::Hostile, backend_id, true),
        (GRANTS.other_domain, Role::Hostile, other_domain, false),
    ];
    for (gref, role, domid, readonly) in table {
        grants.grant(gref, domid, frame_number(&shared_page(role)), readonly)?;
    }
    grants.invalidate(GRANTS.never_granted)?;
    Ok(Session { store, grants, backend_id })
}

/// `<device's directory>/backend-id`.
fn read_backend_id(
    store: &mut XenstoreClient<PhysPage>,
    env: &mut dyn Environment,
    device: &Device,
) -> Result<u16, ConnectError> {
    let path = Path::new(device.directory, "backend-id");
    let backend_id = read_number(store, env, path.as_str(), "backend-id")?;
    u16::try_from(backend_id).map_err(|_| ConnectError::BadNumber { what: "backend-id" })
}

impl Session {
    /// Steps 2 and 3 of the module documentation for `device`.
    pub fn connect(
        &mut self,
        env: &mut dyn Environment,
        device: &Device,
    ) -> Result<(Frontend, Connection), ConnectError> {
        let store = &mut self.store;
        let mut connection = Connection {
            backend: [0; PATH_MAX],
            backend_len: 0,
            sector_size: None,
            info: None,
            mode: [0; MODE_MAX],
            mode_len: 0,
            max_indirect_segments: None,
        };
        let backend_path = Path::new(device.directory, "backend");
        let length =
            store.read(env, backend_path.as_str(), &mut connection.backend).map_err(xenstore_error("read backend"))?;
        connection.backend_len = length;
        let backend =
            core::str::from_utf8(&connection.backend[..length]).map_err(|_| ConnectError::NotUtf8("backend"))?;
        let backend_id = read_backend_id(store, env, device)?;
        if backend_id != self.backend_id {
            return Err(ConnectError::OtherBackend { expected: self.backend_id, got: backend_id });
        }

        let state_path = Path::new(backend, "state");
        wait_for_state(store, env, state_path.as_str(), XENBUS_STATE_INIT_WAIT)?;

        let port = hypercalls::alloc_unbound(backend_id).map_err(ConnectError::EventChannel)?;
        let ring = FrontRing::new(shared_page(device.ring));
        let ring_ref = Decimal::new(u64::from(device.ring_gref));
        let event_channel = Decimal::new(u64::from(port));
        let writes = [
            ("ring-ref", ring_ref.as_str(), "write ring-ref"),
            ("event-channel", event_channel.as_str(), "write event-channel"),
            ("protocol", "x86_64-abi", "write protocol"),
            ("state", "3", "write state 3"),
        ];
        for (node, value, what) in writes {
            store.write(env, Path::new(device.directory, node).as_str(), value).map_err(xenstore_error(what))?;
        }

        wait_for_state(store, env, state_path.as_str(), XENBUS_STATE_CONNECTED)?;
        let sectors = read_number(store, env, Path::new(backend, "sectors").as_str(), "backend sectors")?;
        connection.sector_size = store.read_number(env, Path::new(backend, "sector-size").as_str()).ok().flatten();
        connection.info = store.read_number(env, Path::new(backend, "info").as_str()).ok().flatten();
        connection.mode_len = store.read(env, Path::new(backend, "mode").as_str(), &mut connection.mode).unwrap_or(0);
        connection.max_indirect_segments =
            store.read_number(env, Path::new(backend, "feature-max-indirect-segments").as_str()).ok().flatten();
        store
            .write(env, Path::new(device.directory, "state").as_str(), "4")
            .map_err(xenstore_error("write state 4"))?;

        Ok((Frontend { ring, port, sectors, handle: device.handle() }, connection))
    }
}
