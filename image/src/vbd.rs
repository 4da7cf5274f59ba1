//! Guests' virtual block devices: one blkif back end per (domain, device), wired to
//! the hypervisor — the xenbus handshake in dom0's xenstore, the frontend's ring page
//! and grants held through the hypervisor's grant table, its event channel, and the
//! disk behind it (a dom0 disk or partition by name, or a private RAM disk).
//!
//! Life of a device: [`attach`] (at domain creation for the config's `disk = [...]`,
//! or `block-attach`) claims the disk (one writer, or any number of readers), writes
//! the xenstore nodes and waits for the frontend. [`service`] runs every dom0 round:
//! it steps every handshake, connects a device whose frontend is ready (holds the ring
//! grant, binds the event channel), serves rings whose channel fired, and tears down
//! devices whose frontend closed or whose domain is gone. [`detach`] asks the frontend
//! to close (or, forced, removes the device at once).
//!
//! Data integrity: every request is finished on the disk before its response is
//! written (the disk adapter waits for the device), and a flush response means the
//! device flushed, so what a guest saw acknowledged survives the guest's destruction.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use basalt_dom0::backends::blkif::block_disk::{BlockBackendDisk, DEFAULT_TIMEOUT_NS};
use basalt_dom0::backends::blkif::claims::{ClaimId, DiskClaims};
use basalt_dom0::backends::blkif::xenbus::{self, HandshakeAction, VbdHandshake, VbdParams, XenbusState};
use basalt_dom0::backends::blkif::{BackendDisk, BlkifBackend, BlkifConfig, GrantAccess, GrantFault};
use basalt_dom0::block::{BlockDevice, RamDisk};
use basalt_dom0::toolstack::config::{DiskSource, DiskSpec};
use basalt_kernel::cpu::time;
use basalt_kernel::domain::{self, xen, Domain};
use basalt_kernel::{info, warn};
use spin::Mutex;

/// Persistent grants one device keeps held at most (Linux blkback's default).
const MAX_PERSISTENT_GRANTS: usize = 1056;
/// How long `block-detach` waits for the frontend to close before removing anyway.
const DETACH_TIMEOUT_NS: u64 = 30_000_000_000;

/// What a virtual disk reads and writes.
enum Source {
    /// A dom0 disk or partition, by name.
    Phy(String),
    /// A scratch disk of the device's own, gone with it.
    Ram { disk: RamDisk, bytes: u64 },
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Phy(name) => format!("phy:{name}"),
            Source::Ram { bytes, .. } => DiskSource::Ram(*bytes).to_string(),
        }
    }
}

/// A connected ring.
struct Connection {
    backend: BlkifBackend,
    ring_ref: u32,
    ring_gfn: u64,
    /// dom0's end of the event channel.
    port: u32,
    /// The frontend's end (for `block-list`).
    frontend_port: u32,
    persistent: bool,
    /// gref → (frame, held writable), for persistent grants.
    held: BTreeMap<u32, (u64, bool)>,
}

struct Vbd {
    domid: u16,
    devid: u32,
    vdev: String,
    source: Source,
    writable: bool,
    handshake: VbdHandshake,
    connection: Option<Connection>,
    claim: Option<ClaimId>,
    requests: u64,
    errors: u64,
    /// `block-detach` asked the frontend to close; removed at the latest then.
    detach_deadline: Option<u64>,
}

#[derive(Default)]
struct Vbds {
    devices: Vec<Vbd>,
    claims: DiskClaims,
}

static VBDS: Mutex<Option<Vbds>> = Mutex::new(None);

fn with_vbds<R>(f: impl FnOnce(&mut Vbds) -> R) -> R {
    f(VBDS.lock().get_or_insert_with(Vbds::default))
}

/// One row of `block-list`.
pub struct VbdStatus {
    pub vdev: String,
    pub devid: u32,
    pub source: String,
    pub writable: bool,
    pub backend_state: String,
    pub frontend_state: String,
    pub ring_ref: Option<u32>,
    pub event_channel: Option<u32>,
    pub requests: u64,
    pub errors: u64,
}

/// Attaches `spec` to domain `domid` (named `name`): claims the disk, creates the
/// device's xenstore nodes, and leaves the rest to the frontend. Returns the message
/// for the operator.
pub fn attach(domid: u16, name: &str, spec: &DiskSpec) -> Result<String, String> {
    let devid = xenbus::virtual_device_number(&spec.vdev).map_err(|error| format!("{}: {error}", spec.vdev))?;
    with_vbds(|vbds| {
        if vbds.devices.iter().any(|vbd| vbd.domid == domid && vbd.devid == devid) {
            return Err(format!("domain {domid} already has a disk {}", spec.vdev));
        }
        let (source, sectors, sector_size) = match &spec.source {
            DiskSource::Phy(disk) => {
                let info = crate::storage::with_storage(|storage| storage.disks.info(disk))
                    .flatten()
                    .ok_or_else(|| format!("no disk named {disk} (see `disks`)"))?;
                if spec.writable && info.read_only {
                    return Err(format!("{disk} is read-only; attach it with access r"));
                }
                (Source::Phy(disk.clone()), info.capacity_bytes() / 512, info.logical_block_size)
            }
            DiskSource::Ram(bytes) => {
                let disk = RamDisk::new(bytes.div_ceil(512), 512)
                    .map_err(|error| format!("ram disk of {bytes} bytes: {error}"))?
                    .with_model("Basalt RAM disk");
                (Source::Ram { disk, bytes: *bytes }, bytes.div_ceil(512), 512)
            }
        };
        let claim = match &source {
            Source::Phy(disk) => {
                let related = crate::storage::related_names(disk);
                let related: Vec<&str> = related.iter().map(String::as_str).collect();
                Some(vbds.claims.claim(disk, &related, domid, name, spec.writable).map_err(|error| error.to_string())?)
            }
            Source::Ram { .. } => None,
        };
        let target = source.describe();
        let config = BlkifConfig::default();
        let params = VbdParams {
            vdev: &spec.vdev,
            target: &target,
            writable: spec.writable,
            sectors,
            sector_size: 512,
            physical_sector_size: sector_size.max(512),
            config: &config,
            persistent: true,
        };
        let handshake = match crate::dom0::with_store(|store| VbdHandshake::create(store, domid, devid, &params)) {
            Ok(handshake) => handshake,
            Err(error) => {
                if let Some(claim) = claim {
                    vbds.claims.release(claim);
                }
                return Err(format!("{}: xenstore: {error}", spec.vdev));
            }
        };
        let shown = match &source {
            Source::Phy(disk) => disk.clone(),
            Source::Ram { .. } => source.describe(),
        };
        let message = format!(
            "attached {shown} to domain {domid} ({name}) as {} ({})",
            spec.vdev,
            if spec.writable { "rw" } else { "ro" }
        );
        vbds.devices.push(Vbd {
            domid,
            devid,
            vdev: spec.vdev.clone(),
            source,
            writable: spec.writable,
            handshake,
            connection: None,
            claim,
            requests: 0,
            errors: 0,
            detach_deadline: None,
        });
        Ok(message)
    })
}

/// Part of dom0's boot rehearsal (`dom0::init`): gives the rehearsal domain a small RAM
/// disk and a claim, which its `forget` then takes away, so the tables that keep
/// their room after first use (the device list, the claims, the `backend/vbd`
/// directories in xenstore) are allocated at boot and `mem` agrees to the byte before
/// and after a guest with disks.
pub fn rehearse(domid: u16) {
    let spec = DiskSpec { source: DiskSource::Ram(4096), vdev: "xvda".to_string(), writable: true };
    if let Err(error) = attach(domid, "rehearsal", &spec) {
        warn!("dom0: disk rehearsal: {error}");
    }
    with_vbds(|vbds| {
        if let Ok(claim) = vbds.claims.claim("rehearsal", &[], domid, "rehearsal", true) {
            vbds.claims.release(claim);
        }
    });
}

/// `block-detach`: asks the frontend to close the device (it is removed once the
/// frontend has closed, or after a timeout); `force` removes it at once.
pub fn detach(domid: u16, vdev: &str, force: bool) -> Result<String, String> {
    let devid = match vdev.parse::<u32>() {
        Ok(devid) => devid,
        Err(_) => xenbus::virtual_device_number(vdev).map_err(|error| format!("{vdev}: {error}"))?,
    };
    with_vbds(|vbds| {
        let index = vbds
            .devices
            .iter()
            .position(|vbd| vbd.domid == domid && vbd.devid == devid)
            .ok_or_else(|| format!("domain {domid} has no disk {vdev}"))?;
        if force {
            let vbd = vbds.devices.remove(index);
            teardown(vbds, vbd, true);
            return Ok(format!("detached {vdev} from domain {domid}"));
        }
        let vbd = &mut vbds.devices[index];
        if let Err(error) = crate::dom0::with_store(|store| vbd.handshake.detach(store)) {
            return Err(format!("{vdev}: xenstore: {error}"));
        }
        vbd.detach_deadline = Some(time::uptime_ns().saturating_add(DETACH_TIMEOUT_NS));
        Ok(format!("detaching {vdev} from domain {domid}: asked the guest to release it"))
    })
}

/// Every device of domain `domid`, for `block-list`.
pub fn list(domid: u16) -> Vec<VbdStatus> {
    with_vbds(|vbds| {
        vbds.devices
            .iter()
            .filter(|vbd| vbd.domid == domid)
            .map(|vbd| {
                let (backend_state, frontend_state) = crate::dom0::with_store(|store| {
                    let backend = store
                        .read(&alloc::format!("{}/state", vbd.handshake.backend_path()))
                        .map(|value| XenbusState::from_node(&value))
                        .unwrap_or(XenbusState::Unknown);
                    (backend, vbd.handshake.frontend_state(store))
                });
                let (backend_state, frontend_state) = (state_name(backend_state), state_name(frontend_state));
                VbdStatus {
                    vdev: vbd.vdev.clone(),
                    devid: vbd.devid,
                    source: vbd.source.describe(),
                    writable: vbd.writable,
                    backend_state,
                    frontend_state,
                    ring_ref: vbd.connection.as_ref().map(|connection| connection.ring_ref),
                    event_channel: vbd.connection.as_ref().map(|connection| connection.frontend_port),
                    requests: vbd.requests,
                    errors: vbd.errors,
                }
            })
            .collect()
    })
}

/// Who holds dom0 disk `name`, as `domain:vdev mode` strings.
pub fn holders(name: &str) -> Vec<String> {
    with_vbds(|vbds| {
        vbds.devices
            .iter()
            .filter(|vbd| matches!(&vbd.source, Source::Phy(disk) if disk == name))
            .map(|vbd| {
                let domain_name = domain::get(vbd.domid).map(|guest| guest.name.lock().clone()).unwrap_or_default();
                format!("{domain_name}:{} {}", vbd.vdev, if vbd.writable { "rw" } else { "ro" })
            })
            .collect()
    })
}

/// Why dom0 disk `name` cannot be overwritten: the first claim on it or on a disk
/// overlapping it (`nvme0n1 is in use read-write by domain 1 (linux1)`), or None.
pub fn in_use(name: &str) -> Option<String> {
    let related = crate::storage::related_names(name);
    with_vbds(|vbds| {
        let related: Vec<&str> = related.iter().map(String::as_str).collect();
        vbds.claims.holders_overlapping(name, &related).first().map(|claim| {
            basalt_dom0::backends::blkif::claims::ClaimError::InUse {
                disk: claim.disk.clone(),
                domid: claim.domid,
                domain_name: claim.domain_name.clone(),
                writable: claim.writable,
            }
            .to_string()
        })
    })
}

/// Removes every device of a domain that is being destroyed (no handshake: the
/// frontend is gone).
pub fn forget_domain(domid: u16) {
    with_vbds(|vbds| {
        let (gone, kept): (Vec<Vbd>, Vec<Vbd>) = vbds.devices.drain(..).partition(|vbd| vbd.domid == domid);
        vbds.devices = kept;
        for vbd in gone {
            teardown(vbds, vbd, true);
        }
        vbds.claims.release_domain(domid);
    });
}

/// Ends a device: releases held grants and the channel, the claim, and (if
/// `remove_nodes`) its xenstore directories.
fn teardown(vbds: &mut Vbds, mut vbd: Vbd, remove_nodes: bool) {
    if let Some(connection) = vbd.connection.take() {
        disconnect(vbd.domid, connection);
    }
    if let Some(claim) = vbd.claim.take() {
        vbds.claims.release(claim);
    }
    if remove_nodes {
        if let Err(error) = crate::dom0::with_store(|store| vbd.handshake.remove(store)) {
            warn!("domain {}: {}: removing xenstore nodes: {error}", vbd.domid, vbd.vdev);
        }
    }
}

fn disconnect(domid: u16, connection: Connection) {
    xen::close_dom0_port(connection.port);
    for (gref, (_, writable)) in connection.held {
        let _ = xen::grant_release(domid, gref, writable);
    }
    let _ = xen::grant_release(domid, connection.ring_ref, true);
}

/// One dom0 round for every device: `fired` are the dom0 ports that had events and
/// belong to nobody else; on a `sweep` round every connected ring is served and its
/// frontend signalled, event or not (dom0.rs, `sweep_due`). Returns true if anything
/// was done.
pub fn service(fired: &[u32], sweep: bool) -> bool {
    let mut worked = false;
    let mut vbds = VBDS.lock();
    let Some(vbds) = vbds.as_mut() else { return false };
    let now = time::uptime_ns();
    let mut index = 0;
    while index < vbds.devices.len() {
        let vbd = &mut vbds.devices[index];
        let alive = domain::get(vbd.domid);
        let expired = vbd.detach_deadline.is_some_and(|deadline| now >= deadline);
        if alive.is_none() || expired {
            let vbd = vbds.devices.remove(index);
            if expired {
                info!("domain {}: {} detached (the guest did not release it in time)", vbd.domid, vbd.vdev);
            }
            teardown(vbds, vbd, true);
            worked = true;
            continue;
        }
        let Some(guest) = alive else { continue };
        let action = crate::dom0::with_store(|store| vbd.handshake.step(store));
        match action {
            Ok(HandshakeAction::Wait) => {}
            Ok(HandshakeAction::Connect { ring_ref, event_channel, persistent }) => {
                worked = true;
                let result = connect(vbd, ring_ref, event_channel, persistent);
                let recorded = crate::dom0::with_store(|store| match &result {
                    Ok(()) => vbd.handshake.connected(store),
                    Err(message) => vbd.handshake.failed(store, message),
                });
                if let Err(error) = recorded {
                    warn!("domain {}: {}: xenstore: {error}", vbd.domid, vbd.vdev);
                }
                match result {
                    Ok(()) => info!(
                        "domain {}: {} connected (ring-ref {ring_ref}, event channel {event_channel}{})",
                        vbd.domid,
                        vbd.vdev,
                        if persistent { ", persistent grants" } else { "" }
                    ),
                    Err(message) => warn!("domain {}: {}: {message}", vbd.domid, vbd.vdev),
                }
            }
            Ok(HandshakeAction::Disconnect) => {
                worked = true;
                if let Some(connection) = vbd.connection.take() {
                    disconnect(vbd.domid, connection);
                }
                if let Err(error) = crate::dom0::with_store(|store| vbd.handshake.closed(store)) {
                    warn!("domain {}: {}: xenstore: {error}", vbd.domid, vbd.vdev);
                }
            }
            Ok(HandshakeAction::Refused(refusal)) => {
                worked = true;
                warn!("domain {}: {}: frontend refused: {refusal}", vbd.domid, vbd.vdev);
            }
            Ok(HandshakeAction::ReadyToRemove) => {
                let vbd = vbds.devices.remove(index);
                info!("domain {}: {} detached", vbd.domid, vbd.vdev);
                teardown(vbds, vbd, true);
                worked = true;
                continue;
            }
            Err(error) => warn!("domain {}: {}: handshake: {error}", vbd.domid, vbd.vdev),
        }
        let due = vbd.connection.as_ref().is_some_and(|connection| sweep || fired.contains(&connection.port));
        if due {
            worked |= serve_ring(&guest, vbd);
            if sweep {
                signal_unread_responses(&guest, vbd);
            }
        }
        index += 1;
    }
    worked
}

/// Signals the frontend again if responses it asked to hear about are published
/// (`rsp_prod` has reached its `rsp_event`): the signal that went with them may have
/// been lost (dom0.rs, `sweep_due`).
fn signal_unread_responses(guest: &Domain, vbd: &Vbd) {
    use basalt_dom0::backends::blkif::ring::{RSP_EVENT, RSP_PROD};
    use basalt_dom0::shared_page::SharedPage;
    let Some(connection) = vbd.connection.as_ref() else { return };
    let page = crate::dom0::GuestPage { domain: guest, gfn: connection.ring_gfn };
    let (produced, wanted) = (page.read_u32(RSP_PROD), page.read_u32(RSP_EVENT));
    if produced.wrapping_sub(wanted) < (1 << 31) {
        xen::dom0_send(connection.port);
    }
}

/// Holds the ring grant and binds the channel.
fn connect(vbd: &mut Vbd, ring_ref: u32, event_channel: u32, persistent: bool) -> Result<(), String> {
    if let Some(old) = vbd.connection.take() {
        disconnect(vbd.domid, old);
    }
    let ring_gfn =
        xen::grant_hold(vbd.domid, ring_ref, true).map_err(|error| format!("ring-ref {ring_ref}: {error}"))?;
    let port = match xen::dom0_bind_interdomain(vbd.domid, event_channel) {
        Ok(port) => port,
        Err(errno) => {
            let _ = xen::grant_release(vbd.domid, ring_ref, true);
            return Err(format!("event-channel {event_channel}: cannot bind (error {errno})"));
        }
    };
    vbd.connection = Some(Connection {
        backend: BlkifBackend::new(&BlkifConfig::default()),
        ring_ref,
        ring_gfn,
        port,
        frontend_port: event_channel,
        persistent,
        held: BTreeMap::new(),
    });
    Ok(())
}

/// Serves one device's ring once; asks for another round if requests remain.
fn serve_ring(guest: &Domain, vbd: &mut Vbd) -> bool {
    let Some(connection) = vbd.connection.as_mut() else { return false };
    let Connection { backend, ring_gfn, port, persistent, held, .. } = connection;
    let mut ring = crate::dom0::GuestPage { domain: guest, gfn: *ring_gfn };
    let mut grants = DomainGrants { domain: guest, persistent: *persistent, held };
    let now = || time::uptime_ns();
    // The attachment's mode binds whatever the frontend does with the `info` flag.
    let read_only = !vbd.writable;
    let result = match &mut vbd.source {
        Source::Ram { disk, .. } => {
            let mut disk = BlockBackendDisk::new(disk, &now, DEFAULT_TIMEOUT_NS).read_only_if(read_only);
            backend.service(&mut ring, &mut grants, &mut disk)
        }
        Source::Phy(name) => {
            let name = name.clone();
            crate::storage::with_disk(&name, |device: &mut dyn BlockDevice| {
                let mut disk = BlockBackendDisk::new(device, &now, DEFAULT_TIMEOUT_NS).read_only_if(read_only);
                backend.service(&mut ring, &mut grants, &mut disk as &mut dyn BackendDisk)
            })
            .unwrap_or_else(|error| {
                warn!("domain {}: {}: {error}", vbd.domid, vbd.vdev);
                Default::default()
            })
        }
    };
    vbd.requests += u64::from(result.requests);
    if result.notify {
        xen::dom0_send(*port);
    }
    if result.more {
        xen::requeue_dom0_event(*port);
    }
    if let Some(broken) = result.broken {
        vbd.errors += 1;
        warn!("domain {}: {}: ring broken ({broken:?}); no longer served", vbd.domid, vbd.vdev);
    }
    result.requests > 0
}

/// The frontend's grants, through the hypervisor's checks: with persistent grants a
/// grant is held on first use and reused (up to [`MAX_PERSISTENT_GRANTS`]); otherwise
/// every access is one checked grant copy.
struct DomainGrants<'a> {
    domain: &'a Domain,
    persistent: bool,
    held: &'a mut BTreeMap<u32, (u64, bool)>,
}

impl DomainGrants<'_> {
    /// The frame of a held grant usable for `write`, holding it now if there is room.
    fn held_frame(&mut self, gref: u32, write: bool) -> Option<u64> {
        if !self.persistent {
            return None;
        }
        if let Some(&(gfn, writable)) = self.held.get(&gref) {
            return (writable || !write).then_some(gfn);
        }
        if self.held.len() >= MAX_PERSISTENT_GRANTS {
            return None;
        }
        // Linux grants persistent pages writable; a read-only grant is copied instead.
        let gfn = xen::grant_hold(self.domain.id, gref, true).ok()?;
        self.held.insert(gref, (gfn, true));
        Some(gfn)
    }
}

impl GrantAccess for DomainGrants<'_> {
    fn copy_from_grant(&mut self, gref: u32, offset: usize, buffer: &mut [u8]) -> Result<(), GrantFault> {
        if offset.checked_add(buffer.len()).is_none_or(|end| end > 4096) {
            return Err(GrantFault);
        }
        if let Some(gfn) = self.held_frame(gref, false) {
            let read = self.domain.with_memory(|memory| memory.read_in_page(gfn, offset, buffer));
            return if read { Ok(()) } else { Err(GrantFault) };
        }
        xen::grant_copy(self.domain.id, gref, offset, xen::GrantCopy::FromGuest(buffer)).map_err(|_| GrantFault)
    }

    fn copy_to_grant(&mut self, gref: u32, offset: usize, data: &[u8]) -> Result<(), GrantFault> {
        if offset.checked_add(data.len()).is_none_or(|end| end > 4096) {
            return Err(GrantFault);
        }
        if let Some(gfn) = self.held_frame(gref, true) {
            let written = self.domain.with_memory(|memory| memory.write_in_page(gfn, offset, data));
            return if written { Ok(()) } else { Err(GrantFault) };
        }
        xen::grant_copy(self.domain.id, gref, offset, xen::GrantCopy::ToGuest(data)).map_err(|_| GrantFault)
    }
}

/// Parses and attaches a `block-attach` spec.
pub fn attach_spec(domid: u16, name: &str, spec: &str) -> Result<String, String> {
    let spec = basalt_dom0::toolstack::config::parse_disk_spec(spec).map_err(|error| error.to_string())?;
    attach(domid, name, &spec)
}

/// A xenbus state as `block-list` shows it: `4 (connected)`.
fn state_name(state: XenbusState) -> String {
    let name = match state {
        XenbusState::Unknown => "unknown",
        XenbusState::Initialising => "initialising",
        XenbusState::InitWait => "initwait",
        XenbusState::Initialised => "initialised",
        XenbusState::Connected => "connected",
        XenbusState::Closing => "closing",
        XenbusState::Closed => "closed",
        XenbusState::Reconfiguring => "reconfiguring",
        XenbusState::Reconfigured => "reconfigured",
    };
    format!("{} ({name})", state as u32)
}
