//! Event-channel bookkeeping for every domain at once: which port of which domain is
//! bound to what, which vCPU it notifies, and where a `send` or a VIRQ lands.
//!
//! Why one system-wide structure: an interdomain channel is two ports in two port
//! tables that must always point at each other, so the two halves change together
//! under one owner. Domain 0 (Basalt's built-in dom0, not a guest) has a port table
//! like any domain; only the delivery of its events differs, and delivery is the
//! caller's business: every operation that raises an event returns a [`Notify`]
//! naming the domain, port and vCPU, and the caller sets the port pending (for a
//! guest with [`two_level::set_pending`] on its shared_info; for dom0 in its queue).
//!
//! Invariants (checked by the host tests and the `event_channel_ops` fuzz target):
//! * port 0 is never bound; every bound port is below its domain's `max_ports`
//!   (at most [`EVTCHN_2L_NR_CHANNELS`], the 2-level ABI's 4096);
//! * an interdomain port's peer exists and is interdomain back to it;
//! * each (vCPU, VIRQ) slot names a port bound to that VIRQ, and each VIRQ port is
//!   named by exactly one slot (global VIRQs live in vCPU 0's slots);
//! * a port's notify vCPU is below its domain's vCPU count.
//!
//! Nothing here trusts an argument: ports, vCPUs and VIRQs come from guests and are
//! range-checked, errors are [`EvtchnError`]s that map to Xen's errno, and no input
//! panics. Privilege (a domU may only name itself, resolving `DOMID_SELF`) is the
//! caller's check; this module takes resolved domain ids.
//!
//! Specification: xen/include/public/event_channel.h; behaviour and error order of
//! xen/common/event_channel.c (4.17): `get_free_port` (lowest free port),
//! `evtchn_alloc_unbound`, `evtchn_bind_interdomain` (which sets the new local port
//! pending, since events sent to the unbound remote port were dropped),
//! `evtchn_bind_virq`, `evtchn_bind_ipi`, `evtchn_close` (a closed port's peer goes
//! back to unbound, waiting for the closer; the closed port's notify vCPU resets to
//! 0 and its pending bit is cleared), `evtchn_send`, `evtchn_status`,
//! `evtchn_bind_vcpu`, `evtchn_reset`, `evtchn_destroy`. docs/pvh-abi.md §3.6, §4.5.
//! PIRQs are not supported (no `bind_pirq`); Xen-consumer ports are not modelled.

use alloc::{collections::BTreeMap, vec, vec::Vec};
use core::fmt;

use basalt_xen_abi::domid::DOMID_FIRST_RESERVED;
use basalt_xen_abi::errno::{EEXIST, EINVAL, ENOENT, ENOSPC, ESRCH};
use basalt_xen_abi::event_channel::{
    EVTCHNSTAT_closed, EVTCHNSTAT_interdomain, EVTCHNSTAT_ipi, EVTCHNSTAT_unbound, EVTCHNSTAT_virq,
    EVTCHN_2L_NR_CHANNELS, NR_VIRQS, VIRQ_DEBUG, VIRQ_TIMER, VIRQ_XENOPROF, VIRQ_XENPMU,
};

pub mod two_level;

/// The most vCPUs a domain may have here (the toolstack's limit, too).
pub const MAX_VCPUS: u32 = 4096;

/// What a port is bound to. `Free` is also what any never-allocated port reads as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// Closed (`ECS_FREE`; port 0 is permanently so).
    Free,
    /// Allocated and waiting for `remote_domain` to bind to it.
    Unbound { remote_domain: u16 },
    /// Connected to `remote_port` of `remote_domain` (possibly this domain).
    Interdomain { remote_domain: u16, remote_port: u32 },
    /// Bound to a virtual IRQ.
    Virq { virq: u32 },
    /// An inter-processor interrupt within the domain: `send` notifies the port itself.
    Ipi,
}

/// One port as `EVTCHNOP_status` and the debugger see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortInfo {
    pub binding: Binding,
    /// The vCPU whose selector word and upcall the port's events go to.
    pub notify_vcpu: u32,
}

impl PortInfo {
    const FREE: PortInfo = PortInfo { binding: Binding::Free, notify_vcpu: 0 };

    /// `evtchn_status.status`: one of `EVTCHNSTAT_*`.
    pub fn evtchn_status(&self) -> u32 {
        match self.binding {
            Binding::Free => EVTCHNSTAT_closed,
            Binding::Unbound { .. } => EVTCHNSTAT_unbound,
            Binding::Interdomain { .. } => EVTCHNSTAT_interdomain,
            Binding::Virq { .. } => EVTCHNSTAT_virq,
            Binding::Ipi => EVTCHNSTAT_ipi,
        }
    }

    /// `evtchn_status.u` (8 bytes, little-endian): `unbound.dom` (u16 @0),
    /// `interdomain.dom` (u16 @0) + `interdomain.port` (u32 @4), or `virq` (u32 @0);
    /// zero otherwise.
    pub fn status_union(&self) -> [u8; 8] {
        let mut bytes = [0u8; 8];
        match self.binding {
            Binding::Unbound { remote_domain } => bytes[..2].copy_from_slice(&remote_domain.to_le_bytes()),
            Binding::Interdomain { remote_domain, remote_port } => {
                bytes[..2].copy_from_slice(&remote_domain.to_le_bytes());
                bytes[4..].copy_from_slice(&remote_port.to_le_bytes());
            }
            Binding::Virq { virq } => bytes[..4].copy_from_slice(&virq.to_le_bytes()),
            Binding::Free | Binding::Ipi => {}
        }
        bytes
    }
}

/// An event to deliver: set `port` of `domain` pending and notify `vcpu` (for a
/// guest: [`two_level::set_pending`], then raise the upcall it asks for).
#[must_use = "an event that is not delivered is lost"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notify {
    pub domain: u16,
    pub port: u32,
    pub vcpu: u32,
}

/// A closed port whose pending bit the caller must clear in the domain's event
/// words ([`two_level::clear_pending`]), as Xen's `free_evtchn` does, so a later
/// binding of the same port does not start with a stale event.
#[must_use = "a closed port's stale pending bit must be cleared"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClearPending {
    pub domain: u16,
    pub port: u32,
}

/// A port of another domain that [`EventChannels::remove_domain`] turned from
/// interdomain back into unbound (waiting for the removed domain). Xen sends no event
/// for this; the caller may tell the service owning the port (dom0's backends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnected {
    pub domain: u16,
    pub port: u32,
}

/// Why an event-channel operation failed; [`EvtchnError::errno`] is what the guest sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvtchnError {
    /// No such domain (ESRCH).
    NoSuchDomain(u16),
    /// `add_domain` of a domain that exists (EEXIST).
    DomainExists(u16),
    /// `add_domain` with a reserved domain id, no vCPUs, too many vCPUs, or a port
    /// limit outside 2..=4096 (EINVAL).
    BadDomainLimits,
    /// A port at or above the domain's port limit (EINVAL).
    InvalidPort(u32),
    /// The port's binding does not allow the operation: closed, not unbound for the
    /// caller, a VIRQ port sent to, a per-vCPU port moved (EINVAL).
    WrongBinding(u32),
    /// A VIRQ number at or above `NR_VIRQS` (EINVAL).
    InvalidVirq(u32),
    /// A global VIRQ bound on a vCPU other than 0 (EINVAL).
    GlobalVirqNotOnVcpu0 { virq: u32, vcpu: u32 },
    /// No such vCPU in the domain (ENOENT).
    NoSuchVcpu(u32),
    /// The VIRQ is already bound on that vCPU (EEXIST).
    VirqBound { virq: u32, vcpu: u32, port: u32 },
    /// Every port below the domain's limit is in use (ENOSPC).
    NoFreePort,
}

impl EvtchnError {
    /// The positive Xen errno (the hypercall returns its negation).
    pub fn errno(self) -> i64 {
        match self {
            EvtchnError::NoSuchDomain(_) => ESRCH,
            EvtchnError::DomainExists(_) | EvtchnError::VirqBound { .. } => EEXIST,
            EvtchnError::BadDomainLimits
            | EvtchnError::InvalidPort(_)
            | EvtchnError::WrongBinding(_)
            | EvtchnError::InvalidVirq(_)
            | EvtchnError::GlobalVirqNotOnVcpu0 { .. } => EINVAL,
            EvtchnError::NoSuchVcpu(_) => ENOENT,
            EvtchnError::NoFreePort => ENOSPC,
        }
    }
}

impl fmt::Display for EvtchnError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EvtchnError::NoSuchDomain(domid) => write!(formatter, "no domain {domid}"),
            EvtchnError::DomainExists(domid) => write!(formatter, "domain {domid} already has event channels"),
            EvtchnError::BadDomainLimits => write!(formatter, "bad domain id, vCPU count or port limit"),
            EvtchnError::InvalidPort(port) => write!(formatter, "port {port} out of range"),
            EvtchnError::WrongBinding(port) => write!(formatter, "port {port} is not bound suitably"),
            EvtchnError::InvalidVirq(virq) => write!(formatter, "VIRQ {virq} out of range"),
            EvtchnError::GlobalVirqNotOnVcpu0 { virq, vcpu } => {
                write!(formatter, "global VIRQ {virq} bound on vCPU {vcpu}, not 0")
            }
            EvtchnError::NoSuchVcpu(vcpu) => write!(formatter, "no vCPU {vcpu}"),
            EvtchnError::VirqBound { virq, vcpu, port } => {
                write!(formatter, "VIRQ {virq} already bound to port {port} on vCPU {vcpu}")
            }
            EvtchnError::NoFreePort => write!(formatter, "no free port"),
        }
    }
}

/// Whether a VIRQ is global (bound on vCPU 0, movable) rather than per vCPU. Xen 4.17
/// `virq_is_global`: TIMER, DEBUG, XENOPROF and XENPMU are per vCPU; everything else
/// is global, including the x86 architecture VIRQs (`VIRQ_ARCH_0..=7`, x86
/// `arch_virq_is_global`) and numbers below `NR_VIRQS` that name nothing.
pub fn virq_is_global(virq: u32) -> bool {
    !matches!(virq, VIRQ_TIMER | VIRQ_DEBUG | VIRQ_XENOPROF | VIRQ_XENPMU)
}

/// One VIRQ slot per VIRQ number, per vCPU: the bound port, 0 for none.
type VirqSlots = [u32; NR_VIRQS as usize];

/// The port table of one domain.
struct DomainPorts {
    /// Indexed by port; grows as ports are allocated. Ports at or beyond its length
    /// are free.
    ports: Vec<PortInfo>,
    /// Ports `0..max_ports` exist; port 0 is never allocated.
    max_ports: u32,
    /// vCPUs `0..vcpus` exist.
    vcpus: u32,
    /// Per vCPU (`virq_to_evtchn` in Xen).
    virq_ports: Vec<VirqSlots>,
}

impl DomainPorts {
    fn port(&self, port: u32) -> PortInfo {
        self.ports.get(port as usize).copied().unwrap_or(PortInfo::FREE)
    }

    /// The port's slot, growing the table if needed. Callers pass ports below
    /// `max_ports` (at most 4096), so the table stays small.
    fn slot(&mut self, port: u32) -> &mut PortInfo {
        let index = port as usize;
        if index >= self.ports.len() {
            self.ports.resize(index + 1, PortInfo::FREE);
        }
        &mut self.ports[index]
    }

    fn check_port(&self, port: u32) -> Result<PortInfo, EvtchnError> {
        if port >= self.max_ports {
            return Err(EvtchnError::InvalidPort(port));
        }
        Ok(self.port(port))
    }

    fn check_vcpu(&self, vcpu: u32) -> Result<(), EvtchnError> {
        if vcpu >= self.vcpus {
            return Err(EvtchnError::NoSuchVcpu(vcpu));
        }
        Ok(())
    }

    /// The lowest free port from 1 (`get_free_port`), not yet marked used.
    fn free_port(&self) -> Result<u32, EvtchnError> {
        (1..self.max_ports).find(|&port| self.port(port).binding == Binding::Free).ok_or(EvtchnError::NoFreePort)
    }

    /// Frees `port`, dropping it from any VIRQ slot (`free_evtchn`).
    fn release(&mut self, port: u32) {
        if let Binding::Virq { virq } = self.port(port).binding {
            for slots in &mut self.virq_ports {
                if let Some(slot) = slots.get_mut(virq as usize) {
                    if *slot == port {
                        *slot = 0;
                    }
                }
            }
        }
        *self.slot(port) = PortInfo::FREE;
        while self.ports.last() == Some(&PortInfo::FREE) {
            self.ports.pop();
        }
    }
}

/// Every domain's event channels. See the module documentation.
#[derive(Default)]
pub struct EventChannels {
    domains: BTreeMap<u16, DomainPorts>,
}

impl EventChannels {
    pub fn new() -> EventChannels {
        EventChannels { domains: BTreeMap::new() }
    }

    /// Gives `domid` an empty port table of `max_ports` ports (0..max_ports, 2..=4096;
    /// Xen's domU default is 1024) and `vcpus` vCPUs (1..=[`MAX_VCPUS`]).
    pub fn add_domain(&mut self, domid: u16, vcpus: u32, max_ports: u32) -> Result<(), EvtchnError> {
        if domid >= DOMID_FIRST_RESERVED
            || vcpus == 0
            || vcpus > MAX_VCPUS
            || !(2..=EVTCHN_2L_NR_CHANNELS).contains(&max_ports)
        {
            return Err(EvtchnError::BadDomainLimits);
        }
        if self.domains.contains_key(&domid) {
            return Err(EvtchnError::DomainExists(domid));
        }
        let table = DomainPorts {
            ports: Vec::new(),
            max_ports,
            vcpus,
            virq_ports: vec![[0; NR_VIRQS as usize]; vcpus as usize],
        };
        self.domains.insert(domid, table);
        Ok(())
    }

    /// Whether `domid` has a port table.
    /// Makes room for all of `domid`'s ports now (for a table that lives as long as
    /// the system: growing it later would keep memory after the domains that made
    /// it grow are gone).
    pub fn reserve_ports(&mut self, domid: u16) {
        if let Some(table) = self.domains.get_mut(&domid) {
            let wanted = table.max_ports as usize;
            table.ports.reserve_exact(wanted.saturating_sub(table.ports.len()));
        }
    }

    pub fn has_domain(&self, domid: u16) -> bool {
        self.domains.contains_key(&domid)
    }

    /// Closes every port of `domid` and forgets the domain (`evtchn_destroy`). The
    /// other end of each of its interdomain channels goes back to unbound, waiting
    /// for `domid`; those ports are returned. Nothing is delivered (Xen sends no
    /// event), and the domain's own pending bits die with its shared_info.
    pub fn remove_domain(&mut self, domid: u16) -> Vec<Disconnected> {
        let Some(table) = self.domains.remove(&domid) else {
            return Vec::new();
        };
        let mut disconnected = Vec::new();
        for info in &table.ports {
            let Binding::Interdomain { remote_domain, remote_port } = info.binding else {
                continue;
            };
            if remote_domain == domid {
                continue;
            }
            if let Some(remote) = self.domains.get_mut(&remote_domain) {
                let peer = remote.slot(remote_port);
                peer.binding = Binding::Unbound { remote_domain: domid };
                disconnected.push(Disconnected { domain: remote_domain, port: remote_port });
            }
        }
        disconnected
    }

    /// EVTCHNOP_alloc_unbound: a new port of `domid` that `remote_domain` may bind
    /// to. The remote domain need not exist yet (Xen does not check).
    pub fn alloc_unbound(&mut self, domid: u16, remote_domain: u16) -> Result<u32, EvtchnError> {
        let table = self.domains.get_mut(&domid).ok_or(EvtchnError::NoSuchDomain(domid))?;
        let port = table.free_port()?;
        *table.slot(port) = PortInfo { binding: Binding::Unbound { remote_domain }, notify_vcpu: 0 };
        Ok(port)
    }

    /// EVTCHNOP_bind_interdomain: connects a new port of `domid` to `remote_port` of
    /// `remote_domain`, which must be unbound and waiting for `domid` (a domain may
    /// bind to its own unbound port). Returns the local port and the event Xen raises
    /// on it at once, because anything sent to the unbound remote port was dropped.
    pub fn bind_interdomain(
        &mut self,
        domid: u16,
        remote_domain: u16,
        remote_port: u32,
    ) -> Result<(u32, Notify), EvtchnError> {
        let local = self.domains.get(&domid).ok_or(EvtchnError::NoSuchDomain(domid))?;
        let remote = self.domains.get(&remote_domain).ok_or(EvtchnError::NoSuchDomain(remote_domain))?;
        let local_port = local.free_port()?;
        let peer = remote.check_port(remote_port)?;
        if peer.binding != (Binding::Unbound { remote_domain: domid }) {
            return Err(EvtchnError::WrongBinding(remote_port));
        }
        // Neither table can be missing: both were looked up above.
        if let Some(remote) = self.domains.get_mut(&remote_domain) {
            remote.slot(remote_port).binding = Binding::Interdomain { remote_domain: domid, remote_port: local_port };
        }
        let local = self.domains.get_mut(&domid).ok_or(EvtchnError::NoSuchDomain(domid))?;
        *local.slot(local_port) =
            PortInfo { binding: Binding::Interdomain { remote_domain, remote_port }, notify_vcpu: 0 };
        Ok((local_port, Notify { domain: domid, port: local_port, vcpu: 0 }))
    }

    /// EVTCHNOP_bind_virq: a new port for `virq` on `vcpu` (global VIRQs: vCPU 0 only).
    pub fn bind_virq(&mut self, domid: u16, virq: u32, vcpu: u32) -> Result<u32, EvtchnError> {
        let table = self.domains.get_mut(&domid).ok_or(EvtchnError::NoSuchDomain(domid))?;
        if virq >= NR_VIRQS {
            return Err(EvtchnError::InvalidVirq(virq));
        }
        if virq_is_global(virq) && vcpu != 0 {
            return Err(EvtchnError::GlobalVirqNotOnVcpu0 { virq, vcpu });
        }
        table.check_vcpu(vcpu)?;
        let bound = table.virq_ports[vcpu as usize][virq as usize];
        if bound != 0 {
            return Err(EvtchnError::VirqBound { virq, vcpu, port: bound });
        }
        let port = table.free_port()?;
        *table.slot(port) = PortInfo { binding: Binding::Virq { virq }, notify_vcpu: vcpu };
        table.virq_ports[vcpu as usize][virq as usize] = port;
        Ok(port)
    }

    /// EVTCHNOP_bind_ipi: a new port that notifies `vcpu` when the domain sends to it.
    pub fn bind_ipi(&mut self, domid: u16, vcpu: u32) -> Result<u32, EvtchnError> {
        let table = self.domains.get_mut(&domid).ok_or(EvtchnError::NoSuchDomain(domid))?;
        table.check_vcpu(vcpu)?;
        let port = table.free_port()?;
        *table.slot(port) = PortInfo { binding: Binding::Ipi, notify_vcpu: vcpu };
        Ok(port)
    }

    /// EVTCHNOP_close: frees `port`; an interdomain peer goes back to unbound, waiting
    /// for `domid`. Closing a closed port is EINVAL.
    pub fn close(&mut self, domid: u16, port: u32) -> Result<ClearPending, EvtchnError> {
        let table = self.domains.get(&domid).ok_or(EvtchnError::NoSuchDomain(domid))?;
        let info = table.check_port(port)?;
        match info.binding {
            Binding::Free => return Err(EvtchnError::WrongBinding(port)),
            Binding::Interdomain { remote_domain, remote_port } => {
                if let Some(remote) = self.domains.get_mut(&remote_domain) {
                    remote.slot(remote_port).binding = Binding::Unbound { remote_domain: domid };
                }
            }
            Binding::Unbound { .. } | Binding::Virq { .. } | Binding::Ipi => {}
        }
        if let Some(table) = self.domains.get_mut(&domid) {
            table.release(port);
        }
        Ok(ClearPending { domain: domid, port })
    }

    /// EVTCHNOP_send: what `port` of `domid` notifies. Interdomain: the peer port on
    /// its notify vCPU; IPI: the port itself; unbound: nothing (Xen drops the event
    /// silently); closed or VIRQ: EINVAL.
    pub fn send(&self, domid: u16, port: u32) -> Result<Option<Notify>, EvtchnError> {
        let table = self.domains.get(&domid).ok_or(EvtchnError::NoSuchDomain(domid))?;
        let info = table.check_port(port)?;
        match info.binding {
            Binding::Interdomain { remote_domain, remote_port } => Ok(self.domains.get(&remote_domain).map(|remote| {
                Notify { domain: remote_domain, port: remote_port, vcpu: remote.port(remote_port).notify_vcpu }
            })),
            Binding::Ipi => Ok(Some(Notify { domain: domid, port, vcpu: info.notify_vcpu })),
            Binding::Unbound { .. } => Ok(None),
            Binding::Free | Binding::Virq { .. } => Err(EvtchnError::WrongBinding(port)),
        }
    }

    /// EVTCHNOP_status: any port below the limit (closed ones read as closed).
    pub fn status(&self, domid: u16, port: u32) -> Result<PortInfo, EvtchnError> {
        let table = self.domains.get(&domid).ok_or(EvtchnError::NoSuchDomain(domid))?;
        table.check_port(port)
    }

    /// EVTCHNOP_bind_vcpu: future events of `port` go to `vcpu`. Allowed for unbound,
    /// interdomain and global-VIRQ ports; per-vCPU VIRQs, IPIs and closed ports are
    /// EINVAL (Xen's order: vCPU, then port, then binding).
    pub fn bind_vcpu(&mut self, domid: u16, port: u32, vcpu: u32) -> Result<(), EvtchnError> {
        let table = self.domains.get_mut(&domid).ok_or(EvtchnError::NoSuchDomain(domid))?;
        table.check_vcpu(vcpu)?;
        let info = table.check_port(port)?;
        match info.binding {
            Binding::Virq { virq } if virq_is_global(virq) => {}
            Binding::Unbound { .. } | Binding::Interdomain { .. } => {}
            Binding::Virq { .. } | Binding::Ipi | Binding::Free => return Err(EvtchnError::WrongBinding(port)),
        }
        table.slot(port).notify_vcpu = vcpu;
        Ok(())
    }

    /// The event for `virq` of `domid`, if the domain bound it: a per-vCPU VIRQ
    /// (timer, debug) goes to the port bound on `vcpu`; a global VIRQ (console,
    /// dom_exc, …) to the port bound on vCPU 0, on its notify vCPU (`vcpu` is ignored).
    pub fn raise_virq(&self, domid: u16, vcpu: u32, virq: u32) -> Option<Notify> {
        let table = self.domains.get(&domid)?;
        let slot_vcpu = if virq_is_global(virq) { 0 } else { vcpu };
        let slots = table.virq_ports.get(slot_vcpu as usize)?;
        let port = *slots.get(virq as usize)?;
        if port == 0 {
            return None;
        }
        Some(Notify { domain: domid, port, vcpu: table.port(port).notify_vcpu })
    }

    /// The vCPU `port` notifies (for EVTCHNOP_unmask: [`two_level::unmask`]); closed
    /// ports below the limit notify vCPU 0, as in Xen. `None` for an unknown domain
    /// or a port beyond the limit (EINVAL for unmask).
    pub fn notify_vcpu(&self, domid: u16, port: u32) -> Option<u32> {
        let table = self.domains.get(&domid)?;
        table.check_port(port).ok().map(|info| info.notify_vcpu)
    }

    /// The bound ports of `domid`, lowest first (empty for an unknown domain).
    pub fn ports(&self, domid: u16) -> impl Iterator<Item = (u32, PortInfo)> + '_ {
        self.domains
            .get(&domid)
            .into_iter()
            .flat_map(|table| table.ports.iter().enumerate())
            .filter(|(_, info)| info.binding != Binding::Free)
            .map(|(port, info)| (port as u32, *info))
    }

    /// `(max_ports, vcpus)` of `domid`.
    pub fn limits(&self, domid: u16) -> Option<(u32, u32)> {
        self.domains.get(&domid).map(|table| (table.max_ports, table.vcpus))
    }

    /// EVTCHNOP_reset: closes every port of `domid` (peers go back to unbound) and
    /// returns the pending bits to clear. The domain keeps its (empty) table.
    pub fn reset(&mut self, domid: u16) -> Result<Vec<ClearPending>, EvtchnError> {
        let table = self.domains.get(&domid).ok_or(EvtchnError::NoSuchDomain(domid))?;
        let bound: Vec<u32> = table
            .ports
            .iter()
            .enumerate()
            .filter(|(_, info)| info.binding != Binding::Free)
            .map(|(port, _)| port as u32)
            .collect();
        let mut cleared = Vec::with_capacity(bound.len());
        for port in bound {
            // A port freed by an earlier close in this loop (a self-connected peer
            // goes unbound, not free) cannot fail here; skip any error regardless.
            if let Ok(clear) = self.close(domid, port) {
                cleared.push(clear);
            }
        }
        Ok(cleared)
    }
}

// ---------------------------------------------------------------------------------
// fuzzing (hosted builds only)

#[doc(hidden)]
#[cfg(not(target_os = "none"))]
#[path = "event_channel_testing.rs"]
pub mod testing;

#[doc(hidden)]
#[cfg(not(target_os = "none"))]
pub use testing::fuzz_one;

#[cfg(test)]
#[path = "event_channel_tests.rs"]
mod tests;
