//! The built-in dom0's guest-facing services, wired to the hypervisor: xenstored
//! (builtin-dom0's [`Xenstore`]) on every domain's store ring and the console backend
//! on every domain's console ring.
//!
//! At creation the toolstack connects a domain ([`connect_domain`]): two interdomain
//! event channels to dom0 (store, console), the HVM parameters that tell the guest
//! where its rings and ports are (the rings sit in the domain's special pages,
//! pvh-abi.md §1.5), and its xenstore nodes. Afterwards [`service`] runs whenever the
//! bootstrap CPU is idle: it serves the rings whose channels fired, delivers watch
//! events, feeds operator input into console rings, and forgets domains that are gone.
//! Every call does bounded work per domain (at most one console ring and
//! `MESSAGES_PER_SERVICE` xenstore requests), so a guest flooding either ring delays
//! nobody for long.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use basalt_dom0::backends::console;
use basalt_dom0::shared_page::SharedPage;
use basalt_dom0::toolstack::pvh_platform::SPECIAL_PAGES_END;
use basalt_dom0::xenstore::nodes::{self, ConsoleNodes, DomainNodes, ShutdownRequest};
use basalt_dom0::xenstore::Xenstore;
use basalt_kernel::domain::{self, xen, Domain};
use basalt_kernel::xen::hypercall_events::{
    HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN,
};
use core::sync::atomic::{fence, AtomicU64, Ordering};
use spin::Mutex;

/// The xenstore ring's frame (Xen's PVH layout: special page 4 of 8 below 0xff000).
pub const STORE_PFN: u64 = (SPECIAL_PAGES_END >> 12) - 4;
/// The console ring's frame (the last special page).
pub const CONSOLE_PFN: u64 = (SPECIAL_PAGES_END >> 12) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Store,
    Console,
}

struct Connected {
    store_port: u32,
    console_port: u32,
    /// The guest has signalled its console channel at least once, so it reads its
    /// input from the ring. Until then operator input stays where console_io's read
    /// (the PV console of simpler guests) finds it.
    console_ring_used: bool,
}

struct Dom0 {
    store: Xenstore,
    guests: BTreeMap<u16, Connected>,
    /// dom0 port → the domain and service behind it.
    ports: BTreeMap<u32, (u16, Service)>,
}

static DOM0: Mutex<Option<Dom0>> = Mutex::new(None);

fn with_dom0<R>(f: impl FnOnce(&mut Dom0) -> R) -> R {
    let mut guard = DOM0.lock();
    let dom0 =
        guard.get_or_insert_with(|| Dom0 { store: Xenstore::new(), guests: BTreeMap::new(), ports: BTreeMap::new() });
    f(dom0)
}

/// Creates dom0's state at boot (so the first domain is not charged for it).
/// A domain id no guest gets (ids are handed out from 1 and wrap below the reserved
/// ones long before this), used for the boot-time rehearsal in [`init`].
const REHEARSAL_DOMID: u16 = basalt_xen_abi::domid::DOMID_FIRST_RESERVED - 1;

/// Creates dom0's state at boot and rehearses connecting and forgetting one domain:
/// whatever dom0's own tables keep after their first use (map nodes, dom0's xenstore
/// home, its event-channel table) is allocated now, so destroying every domain gives
/// back exactly what creating them took (`mem` before and after agree).
pub fn init() {
    with_dom0(|dom0| {
        let _ = dom0.store.write("/local/domain/0/name", b"Domain-0");
        let _ = dom0.store.write("/local/domain/0/domid", b"0");
    });
    xen::prepare_dom0();
    if xen::add_domain(REHEARSAL_DOMID, 1).is_ok() {
        let _ = connect_domain(REHEARSAL_DOMID, "rehearsal", 1 << 20, 1);
        crate::vbd::rehearse(REHEARSAL_DOMID);
        xen::remove_domain(REHEARSAL_DOMID);
        forget(REHEARSAL_DOMID);
    }
    let _ = xen::take_dom0_events();
}

/// One page of a domain's memory as a shared ring page (the xenstore and console
/// rings in its special pages; a blkif ring whose grant dom0 holds, vbd.rs).
pub struct GuestPage<'a> {
    pub domain: &'a Domain,
    pub gfn: u64,
}

impl SharedPage for GuestPage<'_> {
    fn read(&self, offset: usize, buffer: &mut [u8]) {
        if !self.domain.with_memory(|memory| memory.read_in_page(self.gfn, offset, buffer)) {
            buffer.fill(0);
        }
    }
    fn write(&mut self, offset: usize, data: &[u8]) {
        self.domain.with_memory(|memory| memory.write_in_page(self.gfn, offset, data));
    }
    fn write_u32(&mut self, offset: usize, value: u32) {
        // Everything written before must be visible before the index moves.
        fence(Ordering::Release);
        self.write(offset, &value.to_le_bytes());
    }
}

/// Connects a new (paused) domain to dom0: event channels, HVM parameters, xenstore.
pub fn connect_domain(domid: u16, name: &str, memory_bytes: u64, vcpus: u32) -> Result<(), String> {
    let failed = |what: &str, errno: i64| format!("cannot connect domain {domid} to dom0: {what} (error {errno})");
    let (guest_store, dom0_store) = xen::connect_to_dom0(domid).map_err(|errno| failed("store channel", errno))?;
    let (guest_console, dom0_console) =
        xen::connect_to_dom0(domid).map_err(|errno| failed("console channel", errno))?;
    for (index, value) in [
        (HVM_PARAM_STORE_PFN, STORE_PFN),
        (HVM_PARAM_STORE_EVTCHN, u64::from(guest_store)),
        (HVM_PARAM_CONSOLE_PFN, CONSOLE_PFN),
        (HVM_PARAM_CONSOLE_EVTCHN, u64::from(guest_console)),
    ] {
        match xen::set_toolstack_param(domid, index, value) {
            Ok(()) => {}
            // The boot rehearsal has no domain behind its id.
            Err(_) if domid == REHEARSAL_DOMID => {}
            Err(errno) => return Err(failed("HVM parameter", errno)),
        }
    }
    let uuid = domain::get(domid).map(|guest| guest.handle).unwrap_or_default();
    with_dom0(|dom0| {
        dom0.store.introduce(domid).map_err(|error| format!("xenstore: {error}"))?;
        let nodes = DomainNodes {
            domid,
            name: String::from(name),
            uuid,
            memory_kib: memory_bytes / 1024,
            vcpus,
            console: Some(ConsoleNodes { ring_ref: CONSOLE_PFN, port: guest_console }),
        };
        nodes::populate_domain(&mut dom0.store, &nodes).map_err(|error| format!("xenstore: {error}"))?;
        dom0.ports.insert(dom0_store, (domid, Service::Store));
        dom0.ports.insert(dom0_console, (domid, Service::Console));
        dom0.guests
            .insert(domid, Connected { store_port: dom0_store, console_port: dom0_console, console_ring_used: false });
        Ok(())
    })
}

/// Asks a guest to power off or reboot through `control/shutdown`. Err if the domain
/// has no xenstore connection.
pub fn request_shutdown(domid: u16, reboot: bool) -> Result<(), String> {
    let request = if reboot { ShutdownRequest::Reboot } else { ShutdownRequest::Poweroff };
    with_dom0(|dom0| {
        if !dom0.guests.contains_key(&domid) {
            return Err(format!("domain {domid} has no xenstore connection"));
        }
        nodes::request_shutdown(&mut dom0.store, domid, request).map_err(|error| format!("xenstore: {error}"))
    })
}

/// True if the guest said it acts on `control/shutdown` (Linux writes
/// `control/feature-poweroff` = 1 once xenbus is up).
pub fn understands_shutdown(domid: u16) -> bool {
    with_dom0(|dom0| {
        dom0.store.read(&format!("/local/domain/{domid}/control/feature-poweroff")).is_ok_and(|value| value == b"1")
    })
}

/// What serves dom0's end `port` of a channel ("xenstore", "console backend"), for
/// the debugger's `::evtchns`.
pub fn port_service(port: u32) -> Option<&'static str> {
    with_dom0(|dom0| match dom0.ports.get(&port) {
        Some((_, Service::Store)) => Some("xenstore"),
        Some((_, Service::Console)) => Some("console backend"),
        None => None,
    })
}

/// Runs `f` on the store as dom0 (the shell's xenstore commands).
pub fn with_store<R>(f: impl FnOnce(&mut Xenstore) -> R) -> R {
    with_dom0(|dom0| f(&mut dom0.store))
}

/// How often dom0 looks at every ring without waiting for an event ([`sweep_due`]).
const SWEEP_INTERVAL_NS: u64 = 100_000_000;
static LAST_SWEEP_NS: AtomicU64 = AtomicU64::new(0);

/// Whether this round is a sweep: every [`SWEEP_INTERVAL_NS`] dom0 serves every
/// domain's xenstore ring and block rings whether or not their channel fired, and
/// signals a guest again whose responses are still unread.
///
/// Why: a safety net. Under TCG about one Linux boot in ten stalled waiting for
/// xenstore (and a hot-plugged disk sometimes went unseen): an event between a guest
/// and dom0 was lost somewhere — not found yet (see the issue notes). Serving an idle
/// ring costs two index reads; a spurious event costs the guest one upcall.
fn sweep_due() -> bool {
    let now = basalt_kernel::cpu::time::uptime_ns();
    let last = LAST_SWEEP_NS.load(Ordering::Relaxed);
    if now.saturating_sub(last) < SWEEP_INTERVAL_NS {
        return false;
    }
    LAST_SWEEP_NS.store(now, Ordering::Relaxed);
    true
}

/// One round of dom0's services. Returns true if it did anything.
pub fn service() -> bool {
    let sweep = sweep_due();
    let mut worked = false;
    let mut store_due: Vec<u16> = Vec::new();
    let mut console_due: Vec<u16> = Vec::new();
    // Ports of no service here: the block back ends'.
    let mut others: Vec<u32> = Vec::new();
    for port in xen::take_dom0_events() {
        match with_dom0(|dom0| dom0.ports.get(&port).copied()) {
            Some((domid, Service::Store)) => store_due.push(domid),
            Some((domid, Service::Console)) => {
                with_dom0(|dom0| {
                    if let Some(connected) = dom0.guests.get_mut(&domid) {
                        connected.console_ring_used = true;
                    }
                });
                console_due.push(domid);
            }
            None => others.push(port),
        }
    }
    worked |= crate::vbd::service(&others, sweep);
    store_due.extend(with_dom0(|dom0| dom0.store.domains_with_output()).into_iter().filter(|&domid| domid != 0));
    if sweep {
        store_due.extend(with_dom0(|dom0| dom0.guests.keys().copied().collect::<Vec<u16>>()));
    }
    // Operator input waiting for a console ring.
    let connected: Vec<(u16, bool)> =
        with_dom0(|dom0| dom0.guests.iter().map(|(domid, connected)| (*domid, connected.console_ring_used)).collect());
    for &(domid, ring_used) in &connected {
        match domain::get(domid) {
            Some(guest) if ring_used && guest.has_console_input() => console_due.push(domid),
            Some(_) => {}
            None => {
                forget(domid);
                worked = true;
            }
        }
    }
    store_due.sort_unstable();
    store_due.dedup();
    console_due.sort_unstable();
    console_due.dedup();
    for domid in store_due {
        worked |= serve_store(domid);
    }
    for domid in console_due {
        worked |= serve_console(domid);
    }
    worked
}

fn serve_store(domid: u16) -> bool {
    let Some(guest) = domain::get(domid) else { return false };
    let Some(port) = with_dom0(|dom0| dom0.guests.get(&domid).map(|connected| connected.store_port)) else {
        return false;
    };
    let mut page = GuestPage { domain: &guest, gfn: STORE_PFN };
    let result = with_dom0(|dom0| dom0.store.service_ring(domid, &mut page));
    if let Some(reason) = result.broken {
        basalt_kernel::warn!("domain {domid}: xenstore connection closed: {reason:?}");
    }
    // Responses the guest has not read yet: signal it (again), in case the signal
    // that went with them was lost (see `sweep_due`).
    let unread = page.read_u32(basalt_dom0::xenstore::wire::RING_RSP_PROD_OFFSET)
        != page.read_u32(basalt_dom0::xenstore::wire::RING_RSP_CONS_OFFSET);
    if result.notify || unread {
        xen::dom0_send(port);
    }
    if result.more_requests {
        // Come back next round, after everyone else had a turn.
        xen::requeue_dom0_event(port);
    }
    result.notify
}

fn serve_console(domid: u16) -> bool {
    let Some(guest) = domain::get(domid) else { return false };
    let Some(port) = with_dom0(|dom0| dom0.guests.get(&domid).map(|connected| connected.console_port)) else {
        return false;
    };
    let mut page = GuestPage { domain: &guest, gfn: CONSOLE_PFN };
    let mut output = Vec::new();
    let result = {
        let mut input = guest.console_input.lock();
        console::service(&mut page, &mut output, &mut input)
    };
    if !output.is_empty() {
        guest.console_write(&output);
    }
    if result.notify {
        xen::dom0_send(port);
    }
    if result.output_bytes == console::OUT_SIZE as usize {
        // A full ring: there may be more right behind it; serve it again next round.
        xen::requeue_dom0_event(port);
    }
    result.notify
}

/// Drops a destroyed domain's connection, nodes and dom0 ports (also done by
/// [`service`] for domains that went away by other paths). A no-op for a domain dom0
/// does not know.
pub fn forget(domid: u16) {
    crate::vbd::forget_domain(domid);
    if domid != REHEARSAL_DOMID && !with_dom0(|dom0| dom0.guests.contains_key(&domid)) {
        return;
    }
    let ports = with_dom0(|dom0| {
        dom0.store.release(domid);
        let _ = nodes::remove_domain(&mut dom0.store, domid);
        dom0.guests.remove(&domid);
        let ports: Vec<u32> =
            dom0.ports.iter().filter(|(_, (owner, _))| *owner == domid).map(|(port, _)| *port).collect();
        for port in &ports {
            dom0.ports.remove(port);
        }
        ports
    });
    for port in ports {
        xen::close_dom0_port(port);
    }
}

/// The operator's xenstore commands act as dom0 (privileged) on the one store.
impl basalt_shell::XenstoreControl for crate::appliance::Appliance {
    fn xs_read(&self, path: &str) -> Result<Vec<u8>, String> {
        with_store(|store| store.read(path)).map_err(|error| error.to_string())
    }
    fn xs_write(&mut self, path: &str, value: &[u8]) -> Result<(), String> {
        with_store(|store| store.write(path, value)).map_err(|error| error.to_string())
    }
    fn xs_directory(&self, path: &str) -> Result<Vec<String>, String> {
        with_store(|store| store.directory(path)).map_err(|error| error.to_string())
    }
    fn xs_rm(&mut self, path: &str) -> Result<(), String> {
        with_store(|store| store.rm(path)).map_err(|error| error.to_string())
    }
}
