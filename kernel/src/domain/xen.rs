//! A domain's Xen-side state and the hardware half of Xen's event machinery: where
//! shared_info and each vcpu_info live in guest memory, the PV clock records, HVM
//! parameters, the grant-table frames, and delivery of events as upcalls.
//!
//! The bookkeeping is portable (`xen::event_channel`, `xen::grant_table`,
//! `virt::vlapic`); this module owns the locks and guest memory around it.
//!
//! Delivery path (pvh-abi.md §4.4–4.5): an event sets its port's pending bit in the
//! target's shared_info; if that is news and the port is unmasked, the notify vCPU's
//! selector bit and `evtchn_upcall_pending` are set and an upcall is raised — the
//! per-vCPU upcall vector goes into that vCPU's local APIC IRR (Linux EOIs it), the
//! global callback vector is injected outside the APIC. Either way the vCPU is woken;
//! the run loop injects before the next entry when the guest can take it.
//!
//! Lock order: the system-wide event-channel table, then a domain's `xen` state, then
//! its memory, then a vCPU's local APIC. Domain 0 (the built-in dom0) has ports but no
//! memory: its events go to a queue its services drain.

use super::memory::GuestMemory;
use super::{Domain, Vcpu};
use crate::sched::VcpuKey;
use crate::virt::vlapic::VirtualLapic;
use crate::xen::event_channel::two_level::{self, EventWords};
use crate::xen::event_channel::{Binding, EventChannels, Notify};
use crate::xen::grant_table::GrantTable;
use crate::xen::hypercall::{EventChannelOp, EventChannelReply, GrantTableOp, GrantTableReply, PortStatus};
use crate::xen::hypercall_events::HVM_NR_PARAMS;
use crate::xen::pvclock::{self, TimeRecord};
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use basalt_xen_abi::event_channel::{
    SHARED_INFO_EVTCHN_MASK_OFFSET, SHARED_INFO_EVTCHN_PENDING_OFFSET, VCPU_INFO_EVTCHN_PENDING_SEL_OFFSET,
    VCPU_INFO_EVTCHN_UPCALL_PENDING_OFFSET, VCPU_INFO_SIZE, XEN_LEGACY_MAX_VCPUS,
};
use core::sync::atomic::{compiler_fence, Ordering};
use spin::Mutex;

/// Ports a domU may hold (Linux needs ~6 per vCPU plus one per device channel).
pub const DOMU_MAX_PORTS: u32 = 1024;
/// Ports the built-in dom0 may hold (two per domU: xenstore and console, plus backends).
pub const DOM0_MAX_PORTS: u32 = 4095;
/// Grant-table frames a domU may have (Xen's default maximum).
pub const MAX_GRANT_FRAMES: u32 = 64;
/// Offset of `vcpu_info.time` in the structure.
const VCPU_INFO_TIME_OFFSET: u64 = 32;
const PAGE: u64 = 4096;

/// Per-vCPU Xen state.
#[derive(Debug, Default, Clone)]
pub struct XenVcpu {
    /// Where VCPUOP_register_vcpu_info put this vCPU's vcpu_info.
    pub vcpu_info_gpa: Option<u64>,
    /// VCPUOP_register_runstate_memory_area's guest-linear address.
    pub runstate_gva: Option<u64>,
    /// HVMOP_set_evtchn_upcall_vector's vector.
    pub upcall_vector: Option<u8>,
    time_version: u32,
}

/// How upcalls reach a vCPU without a per-vCPU vector (HVM_PARAM_CALLBACK_IRQ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackVia {
    None,
    /// Type 2: this vector, injected directly.
    Vector(u8),
    /// Types 0/1 (GSI, PCI INTx): accepted and ignored — a PVH domain has no
    /// interrupt controller for them (Linux writes GSI 1 as a signal to the toolstack).
    Ignored,
}

/// A domain's Xen-side state.
pub struct XenDomain {
    pub shared_info_gfn: Option<u64>,
    pub vcpus: Vec<XenVcpu>,
    pub callback: CallbackVia,
    pub params: [u64; HVM_NR_PARAMS as usize],
    pub grants: GrantTable,
    /// Machine frames of the grant table (owned here, freed at destroy) and where the
    /// guest mapped each.
    pub grant_frames: Vec<(u64, Option<u64>)>,
    wallclock_version: u32,
}

impl XenDomain {
    pub fn new(vcpus: u32) -> XenDomain {
        XenDomain {
            shared_info_gfn: None,
            vcpus: alloc::vec![XenVcpu::default(); vcpus as usize],
            callback: CallbackVia::None,
            params: [0; HVM_NR_PARAMS as usize],
            grants: GrantTable::new(MAX_GRANT_FRAMES),
            grant_frames: Vec::new(),
            wallclock_version: 0,
        }
    }

    /// Where vCPU `vcpu`'s live vcpu_info is: its registered copy, or its slot in
    /// shared_info (vCPUs below 32), or nowhere yet.
    pub fn vcpu_info_gpa(&self, vcpu: u32) -> Option<u64> {
        let state = self.vcpus.get(vcpu as usize)?;
        state.vcpu_info_gpa.or_else(|| {
            let gfn = self.shared_info_gfn?;
            (vcpu < XEN_LEGACY_MAX_VCPUS).then(|| gfn * PAGE + u64::from(vcpu) * VCPU_INFO_SIZE as u64)
        })
    }
}

impl Drop for XenDomain {
    fn drop(&mut self) {
        let frames: Vec<u64> = self.grant_frames.drain(..).map(|(machine, _)| machine).collect();
        crate::mm::with_frames(|allocator| {
            for frame in frames {
                let _ = allocator.free(frame);
            }
        });
    }
}

/// Event-word access over a domain's shared_info and vcpu_info pages, with the
/// atomics the guest uses on the same words.
struct GuestEventWords<'a> {
    memory: &'a GuestMemory,
    xen: &'a XenDomain,
    shared_info: u64,
}

impl<'a> GuestEventWords<'a> {
    fn new(xen: &'a XenDomain, memory: &'a GuestMemory) -> Option<Self> {
        Some(GuestEventWords { memory, xen, shared_info: xen.shared_info_gfn? * PAGE })
    }

    fn bit(&self, table: usize, port: u32) -> Option<(&core::sync::atomic::AtomicU64, u64)> {
        let word = u64::from(port / 64);
        let word = self.memory.atomic_u64(self.shared_info + table as u64 + word * 8)?;
        Some((word, 1u64 << (port % 64)))
    }
}

impl EventWords for GuestEventWords<'_> {
    fn test_and_set_pending(&mut self, port: u32) -> bool {
        self.bit(SHARED_INFO_EVTCHN_PENDING_OFFSET, port)
            .is_none_or(|(word, bit)| word.fetch_or(bit, Ordering::SeqCst) & bit != 0)
    }
    fn clear_pending(&mut self, port: u32) {
        if let Some((word, bit)) = self.bit(SHARED_INFO_EVTCHN_PENDING_OFFSET, port) {
            word.fetch_and(!bit, Ordering::SeqCst);
        }
    }
    fn is_pending(&self, port: u32) -> bool {
        self.bit(SHARED_INFO_EVTCHN_PENDING_OFFSET, port)
            .is_some_and(|(word, bit)| word.load(Ordering::SeqCst) & bit != 0)
    }
    fn is_masked(&self, port: u32) -> bool {
        self.bit(SHARED_INFO_EVTCHN_MASK_OFFSET, port).is_none_or(|(word, bit)| word.load(Ordering::SeqCst) & bit != 0)
    }
    fn test_and_clear_mask(&mut self, port: u32) -> bool {
        self.bit(SHARED_INFO_EVTCHN_MASK_OFFSET, port)
            .is_some_and(|(word, bit)| word.fetch_and(!bit, Ordering::SeqCst) & bit != 0)
    }
    fn test_and_set_selector(&mut self, vcpu: u32, word: u32) -> bool {
        let Some(info) = self.xen.vcpu_info_gpa(vcpu) else { return true };
        let bit = 1u64 << (word % 64);
        self.memory
            .atomic_u64(info + VCPU_INFO_EVTCHN_PENDING_SEL_OFFSET as u64)
            .is_none_or(|selector| selector.fetch_or(bit, Ordering::SeqCst) & bit != 0)
    }
    fn test_and_set_upcall_pending(&mut self, vcpu: u32) -> bool {
        let Some(info) = self.xen.vcpu_info_gpa(vcpu) else { return true };
        self.memory
            .atomic_u8(info + VCPU_INFO_EVTCHN_UPCALL_PENDING_OFFSET as u64)
            .is_none_or(|flag| flag.swap(1, Ordering::SeqCst) != 0)
    }
}

static EVENT_CHANNELS: Mutex<Option<EventChannels>> = Mutex::new(None);
/// Ports of domain 0 with an event since its services last looked.
static DOM0_PENDING: Mutex<VecDeque<u32>> = Mutex::new(VecDeque::new());

/// Runs `f` with the system-wide event-channel table (created with dom0's ports on
/// first use).
pub fn with_event_channels<R>(f: impl FnOnce(&mut EventChannels) -> R) -> R {
    crate::arch::instructions::without_interrupts(|| {
        let mut table = EVENT_CHANNELS.lock();
        let channels = table.get_or_insert_with(|| {
            let mut channels = EventChannels::new();
            let _ = channels.add_domain(0, 1, DOM0_MAX_PORTS);
            channels
        });
        f(channels)
    })
}

/// Creates the event-channel table with dom0's ports and the dom0 event queue at
/// boot, sized for the most dom0 ports, so later domains only add their own tables.
pub fn prepare_dom0() {
    with_event_channels(|channels| channels.reserve_ports(0));
    crate::arch::instructions::without_interrupts(|| DOM0_PENDING.lock().reserve(DOM0_MAX_PORTS as usize));
}

/// Registers a new domain's port table.
pub fn add_domain(domid: u16, vcpus: u32) -> Result<(), i64> {
    with_event_channels(|channels| channels.add_domain(domid, vcpus, DOMU_MAX_PORTS)).map_err(|error| error.errno())
}

/// Closes every port of a dying domain (peers' ports become unbound; dom0's services
/// notice the domain is gone through the life-cycle events).
pub fn remove_domain(domid: u16) {
    let _disconnected = with_event_channels(|channels| channels.remove_domain(domid));
}

/// Sets an event pending at its destination and raises the upcall it calls for.
pub fn deliver(notify: Notify) {
    if notify.domain == 0 {
        crate::arch::instructions::without_interrupts(|| {
            let mut pending = DOM0_PENDING.lock();
            if !pending.contains(&notify.port) && pending.len() < DOM0_MAX_PORTS as usize {
                pending.push_back(notify.port);
            }
        });
        crate::cpu::dom0_wake::wake();
        return;
    }
    let Some(domain) = super::get(notify.domain) else { return };
    let raise = {
        let xen = domain.xen.lock();
        let memory = domain.memory.lock();
        match GuestEventWords::new(&xen, &memory) {
            Some(mut words) => two_level::set_pending(&mut words, notify.port, notify.vcpu).raise_upcall(),
            None => false,
        }
    };
    if raise {
        raise_upcall(&domain, notify.vcpu);
    }
}

/// The dom0 ports that had events since the last call.
pub fn take_dom0_events() -> Vec<u32> {
    crate::arch::instructions::without_interrupts(|| DOM0_PENDING.lock().drain(..).collect())
}

/// Sends an event from dom0's `port` to its peer.
pub fn dom0_send(port: u32) {
    if let Ok(Some(notify)) = with_event_channels(|channels| channels.send(0, port)) {
        deliver(notify);
    }
}

/// Creates an interdomain channel between domain `domid` and dom0 as the toolstack
/// does for xenstore and the console: the guest's port waits for dom0, dom0 binds it.
/// Returns (guest port, dom0 port).
pub fn connect_to_dom0(domid: u16) -> Result<(u32, u32), i64> {
    with_event_channels(|channels| {
        let guest = channels.alloc_unbound(domid, 0).map_err(|error| error.errno())?;
        // The initial event Xen raises on dom0's new port is not needed: the guest has
        // not run yet, so nothing was lost.
        match channels.bind_interdomain(0, domid, guest) {
            Ok((dom0_port, _initial)) => Ok((guest, dom0_port)),
            Err(error) => {
                let _ = channels.close(domid, guest);
                Err(error.errno())
            }
        }
    })
}

/// Dom0 binds to the port `remote_port` that domain `domid` allocated unbound for it (a
/// frontend's `event-channel` node). Returns dom0's port. The initial event Xen
/// raises on binding is delivered, as a backend expects.
pub fn dom0_bind_interdomain(domid: u16, remote_port: u32) -> Result<u32, i64> {
    let (port, initial) = with_event_channels(|channels| channels.bind_interdomain(0, domid, remote_port))
        .map_err(|error| error.errno())?;
    deliver(initial);
    Ok(port)
}

/// Raises virtual IRQ `virq` for `vcpu` of `domain` (VIRQ_TIMER when its timer fires).
pub fn raise_virq(domain: &Domain, vcpu: u32, virq: u32) {
    if let Some(notify) = with_event_channels(|channels| channels.raise_virq(domain.id, vcpu, virq)) {
        deliver(notify);
    }
}

/// EVTCHNOP_unmask's delivery half: clears the mask bit and re-raises a pending event.
pub fn unmask(domain: &Domain, port: u32, vcpu: u32) {
    let raise = {
        let xen = domain.xen.lock();
        let memory = domain.memory.lock();
        match GuestEventWords::new(&xen, &memory) {
            Some(mut words) => two_level::unmask(&mut words, port, vcpu),
            None => false,
        }
    };
    if raise {
        raise_upcall(domain, vcpu);
    }
}

/// Makes an upcall pending on `vcpu` and wakes it.
fn raise_upcall(domain: &Domain, vcpu: u32) {
    let Some(target) = domain.vcpus.get(vcpu as usize) else { return };
    let (vector, callback) = {
        let xen = domain.xen.lock();
        (xen.vcpus.get(vcpu as usize).and_then(|state| state.upcall_vector), xen.callback)
    };
    match (vector, callback) {
        (Some(vector), _) => {
            target.lapic.lock().accept_interrupt(vector, false);
        }
        (None, CallbackVia::Vector(_)) => target.callback_pending.store(true, Ordering::Release),
        (None, _) => {}
    }
    super::wake(domain, target);
}

/// What the run loop injects before entering `vcpu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingInterrupt {
    /// From the local APIC's IRR (acknowledge moves it to the ISR).
    Lapic(u8),
    /// The global callback vector (no APIC involvement).
    Callback(u8),
}

/// Whether `vcpu`'s `evtchn_upcall_pending` is set in its vcpu_info.
fn upcall_flag(domain: &Domain, vcpu: u32) -> bool {
    let xen = domain.xen.lock();
    let Some(gpa) = xen.vcpu_info_gpa(vcpu) else { return false };
    let memory = domain.memory.lock();
    memory.atomic_u8(gpa).is_some_and(|flag| flag.load(Ordering::SeqCst) != 0)
}

/// The interrupt `vcpu` should take next, if any.
///
/// The upcall is level-triggered on `evtchn_upcall_pending`, as Xen treats the global
/// callback vector: a guest may set the flag itself (Linux's 2-level unmask does when
/// an event arrived while the port was masked), so before every entry a set flag whose
/// vector is neither requested nor in service in the local APIC is raised again.
pub fn pending_interrupt(domain: &Domain, vcpu: &Vcpu) -> Option<PendingInterrupt> {
    if let Some(vector) = vcpu.lapic.lock().pending_interrupt() {
        return Some(PendingInterrupt::Lapic(vector));
    }
    let (vector, callback) = {
        let xen = domain.xen.lock();
        (xen.vcpus.get(vcpu.id as usize).and_then(|state| state.upcall_vector), xen.callback)
    };
    match (vector, callback) {
        (Some(vector), _) => {
            // The flag is read before the APIC is locked (lock order: xen state and
            // memory before a local APIC).
            if !upcall_flag(domain, vcpu.id) {
                return None;
            }
            let mut lapic = vcpu.lapic.lock();
            if lapic.is_requested_or_in_service(vector) {
                return None;
            }
            lapic.accept_interrupt(vector, false);
            lapic.pending_interrupt().map(PendingInterrupt::Lapic)
        }
        (None, CallbackVia::Vector(vector)) => {
            let pending = vcpu.callback_pending.load(Ordering::Acquire) || upcall_flag(domain, vcpu.id);
            pending.then_some(PendingInterrupt::Callback(vector))
        }
        (None, _) => None,
    }
}

/// Records that `interrupt` was injected.
pub fn acknowledge(vcpu: &Vcpu, interrupt: PendingInterrupt) {
    match interrupt {
        PendingInterrupt::Lapic(vector) => vcpu.lapic.lock().acknowledge(vector),
        PendingInterrupt::Callback(_) => vcpu.callback_pending.store(false, Ordering::Release),
    }
}

/// Writes a fresh PV clock record into `vcpu`'s vcpu_info (odd version, fields, even
/// version), if it has one.
pub fn refresh_time(domain: &Domain, vcpu: u32) {
    let Some(scale) = pvclock::time_scale(crate::cpu::time::tsc_khz() * 1000) else { return };
    let mut xen = domain.xen.lock();
    let Some(info) = xen.vcpu_info_gpa(vcpu) else { return };
    let Some(state) = xen.vcpus.get_mut(vcpu as usize) else { return };
    let (odd, even) = pvclock::next_versions(state.time_version);
    state.time_version = even;
    let tsc = crate::arch::instructions::rdtsc();
    let record =
        TimeRecord { tsc_timestamp: tsc, system_time_ns: crate::cpu::time::uptime_ns_at(tsc), scale, flags: 0 };
    let bytes = record.bytes(even);
    let base = info + VCPU_INFO_TIME_OFFSET;
    let mut memory = domain.memory.lock();
    memory.write(base, &odd.to_le_bytes());
    compiler_fence(Ordering::SeqCst);
    memory.write(base + 4, &bytes[4..]);
    compiler_fence(Ordering::SeqCst);
    memory.write(base, &even.to_le_bytes());
}

/// XENMEM_add_to_physmap(shared_info): the guest's RAM page `gfn` becomes shared_info
/// (Basalt keeps the structure in that page rather than swapping a page in). The page
/// starts zeroed, as Xen's shared_info does; Linux masks every port itself.
pub fn map_shared_info(domain: &Domain, gfn: u64) -> Result<(), i64> {
    use basalt_xen_abi::errno::EINVAL;
    let gpa = gfn.checked_mul(PAGE).ok_or(EINVAL)?;
    {
        let mut xen = domain.xen.lock();
        let mut memory = domain.memory.lock();
        if !memory.is_backed(gpa) || !memory.write(gpa, &[0u8; PAGE as usize]) {
            return Err(EINVAL);
        }
        // Wall clock: UTC at system time 0 — unknown to Basalt (no RTC driver yet), so
        // the guest's clock starts at the epoch.
        let (_, even) = pvclock::next_versions(xen.wallclock_version);
        xen.wallclock_version = even;
        memory.write(gpa + pvclock::WALLCLOCK_OFFSET as u64, &pvclock::wallclock_bytes(even, 0, 0));
        xen.shared_info_gfn = Some(gfn);
    }
    for vcpu in 0..domain.vcpus.len() as u32 {
        refresh_time(domain, vcpu);
    }
    Ok(())
}

/// VCPUOP_register_vcpu_info: moves `vcpu`'s vcpu_info to `gpa` (once), copying the
/// current contents, then forces a rescan as Xen does (all selector bits, upcall
/// pending) with fresh time.
pub fn register_vcpu_info(domain: &Domain, vcpu: u32, gpa: u64) -> Result<(), i64> {
    use basalt_xen_abi::errno::{EBUSY, EINVAL, ENOENT};
    {
        let mut xen = domain.xen.lock();
        let old = xen.vcpu_info_gpa(vcpu);
        let state = xen.vcpus.get_mut(vcpu as usize).ok_or(ENOENT)?;
        if state.vcpu_info_gpa.is_some() {
            return Err(EBUSY);
        }
        let mut memory = domain.memory.lock();
        let mut contents = [0u8; VCPU_INFO_SIZE];
        if let Some(old) = old {
            memory.read(old, &mut contents);
        }
        contents[0] = 1;
        contents[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        if !memory.write(gpa, &contents) {
            return Err(EINVAL);
        }
        state.vcpu_info_gpa = Some(gpa);
    }
    refresh_time(domain, vcpu);
    raise_upcall(domain, vcpu);
    Ok(())
}

/// Wakes `vcpu` for an interrupt from its local APIC (an IPI from another vCPU).
pub fn kick(domain: &Domain, vcpu: &Vcpu) {
    super::wake(domain, vcpu);
}

/// The scheduler key of a vCPU.
pub fn key(domain: &Domain, vcpu: &Vcpu) -> VcpuKey {
    VcpuKey { domain: domain.id, vcpu: vcpu.id }
}

/// A fresh local APIC for vCPU `id` (vCPU 0 is the bootstrap processor).
pub fn new_lapic(id: u32) -> VirtualLapic {
    VirtualLapic::new(id * 2, id == 0)
}

/// Clears the pending bit of a port that was just closed.
fn clear_pending(domain: &Domain, port: u32) {
    let xen = domain.xen.lock();
    let memory = domain.memory.lock();
    if let Some(mut words) = GuestEventWords::new(&xen, &memory) {
        two_level::clear_pending(&mut words, port);
    }
}

/// One EVTCHNOP_* of `domain`. A domU acts only on its own ports and may
/// only offer an unbound port to dom0 or another domU (DOMID_SELF or its own id as
/// the allocating domain, as in Xen without a device-model privilege).
pub fn event_channel_op(domain: &Domain, op: EventChannelOp) -> Result<EventChannelReply, i64> {
    use basalt_xen_abi::domid::{DOMID_FIRST_RESERVED, DOMID_SELF};
    use basalt_xen_abi::errno::{EINVAL, EPERM, ESRCH};
    let me = domain.id;
    let resolve = |domid: u16| {
        if domid == DOMID_SELF || domid == me {
            Ok(me)
        } else if domid >= DOMID_FIRST_RESERVED {
            Err(ESRCH)
        } else {
            Err(EPERM)
        }
    };
    let errno = |error: crate::xen::event_channel::EvtchnError| error.errno();
    match op {
        EventChannelOp::AllocUnbound { domain: owner, remote_domain } => {
            resolve(owner)?;
            let remote = if remote_domain == DOMID_SELF { me } else { remote_domain };
            if remote >= DOMID_FIRST_RESERVED {
                return Err(ESRCH);
            }
            with_event_channels(|channels| channels.alloc_unbound(me, remote))
                .map(EventChannelReply::Port)
                .map_err(errno)
        }
        EventChannelOp::BindInterdomain { remote_domain, remote_port } => {
            let remote = if remote_domain == DOMID_SELF { me } else { remote_domain };
            let (port, initial) =
                with_event_channels(|channels| channels.bind_interdomain(me, remote, remote_port)).map_err(errno)?;
            deliver(initial);
            Ok(EventChannelReply::Port(port))
        }
        EventChannelOp::BindVirq { virq, vcpu } => with_event_channels(|channels| channels.bind_virq(me, virq, vcpu))
            .map(EventChannelReply::Port)
            .map_err(errno),
        EventChannelOp::BindIpi { vcpu } => {
            with_event_channels(|channels| channels.bind_ipi(me, vcpu)).map(EventChannelReply::Port).map_err(errno)
        }
        EventChannelOp::Close { port } => {
            let cleared = with_event_channels(|channels| channels.close(me, port)).map_err(errno)?;
            clear_pending(domain, cleared.port);
            Ok(EventChannelReply::Done)
        }
        EventChannelOp::Send { port } => {
            let notify = with_event_channels(|channels| channels.send(me, port)).map_err(errno)?;
            if let Some(notify) = notify {
                deliver(notify);
            }
            Ok(EventChannelReply::Done)
        }
        EventChannelOp::Status { domain: asked, port } => {
            resolve(asked)?;
            let info = with_event_channels(|channels| channels.status(me, port)).map_err(errno)?;
            let status = match info.binding {
                Binding::Free => PortStatus::Closed,
                Binding::Unbound { remote_domain } => PortStatus::Unbound { remote_domain },
                Binding::Interdomain { remote_domain, remote_port } => {
                    PortStatus::Interdomain { remote_domain, remote_port }
                }
                Binding::Virq { virq } => PortStatus::Virq { virq },
                Binding::Ipi => PortStatus::Ipi,
            };
            Ok(EventChannelReply::Status { status, vcpu: info.notify_vcpu })
        }
        EventChannelOp::BindVcpu { port, vcpu } => {
            with_event_channels(|channels| channels.bind_vcpu(me, port, vcpu)).map_err(errno)?;
            Ok(EventChannelReply::Done)
        }
        EventChannelOp::Unmask { port } => {
            let target = with_event_channels(|channels| channels.notify_vcpu(me, port)).ok_or(EINVAL)?;
            unmask(domain, port, target);
            Ok(EventChannelReply::Done)
        }
    }
}

/// HVMOP_get_param: what the toolstack set (store and console rings and ports) and
/// the callback the guest chose.
pub fn hvm_param(domain: &Domain, index: u32) -> Result<u64, i64> {
    use crate::xen::hypercall_events::*;
    match index {
        HVM_PARAM_CALLBACK_IRQ
        | HVM_PARAM_STORE_PFN
        | HVM_PARAM_STORE_EVTCHN
        | HVM_PARAM_CONSOLE_PFN
        | HVM_PARAM_CONSOLE_EVTCHN => Ok(domain.xen.lock().params[index as usize]),
        // Others are the toolstack's or the device model's; Xen lets a guest read
        // several, all zero for a PVH domU.
        _ => Ok(0),
    }
}

/// HVMOP_set_param: a domU may set only its callback (the rest are the toolstack's).
pub fn set_hvm_param(domain: &Domain, index: u32, value: u64) -> Result<(), i64> {
    use crate::xen::hypercall_events::HVM_PARAM_CALLBACK_IRQ;
    if index != HVM_PARAM_CALLBACK_IRQ {
        return Err(basalt_xen_abi::errno::EPERM);
    }
    let via = match value >> 56 {
        2 if value & 0xff >= 0x10 => CallbackVia::Vector(value as u8),
        2 => return Err(basalt_xen_abi::errno::EINVAL),
        _ if value == 0 => CallbackVia::None,
        _ => CallbackVia::Ignored,
    };
    let mut xen = domain.xen.lock();
    xen.params[index as usize] = value;
    xen.callback = via;
    Ok(())
}

/// Sets a parameter the toolstack owns (store/console ring frames and ports).
pub fn set_toolstack_param(domid: u16, index: u32, value: u64) -> Result<(), i64> {
    let domain = super::get(domid).ok_or(basalt_xen_abi::errno::ESRCH)?;
    let mut xen = domain.xen.lock();
    let slot = xen.params.get_mut(index as usize).ok_or(basalt_xen_abi::errno::EINVAL)?;
    *slot = value;
    Ok(())
}

/// HVMOP_set_evtchn_upcall_vector: upcalls for `vcpu` arrive as `vector` through its
/// local APIC from now on; a pending one is re-raised at once, as Xen does.
pub fn set_upcall_vector(domain: &Domain, vcpu: u32, vector: u8) -> Result<(), i64> {
    let pending = {
        let mut xen = domain.xen.lock();
        let info = xen.vcpu_info_gpa(vcpu);
        let state = xen.vcpus.get_mut(vcpu as usize).ok_or(basalt_xen_abi::errno::ENOENT)?;
        state.upcall_vector = Some(vector);
        let memory = domain.memory.lock();
        info.and_then(|gpa| memory.atomic_u8(gpa)).is_some_and(|flag| flag.load(Ordering::SeqCst) != 0)
    };
    if pending {
        raise_upcall(domain, vcpu);
    }
    Ok(())
}

/// One grant-table operation of a domU on its own table.
pub fn grant_table_op(domain: &Domain, op: GrantTableOp) -> Result<GrantTableReply, i64> {
    match op {
        GrantTableOp::QuerySize => {
            let xen = domain.xen.lock();
            let (frames, max_frames) = xen.grants.query_size();
            Ok(GrantTableReply::Size { frames, max_frames })
        }
        GrantTableOp::SetVersion(version) => {
            domain.xen.lock().grants.set_version(version).map_err(|error| error.errno())?;
            Ok(GrantTableReply::Version(version))
        }
        GrantTableOp::GetVersion => Ok(GrantTableReply::Version(domain.xen.lock().grants.get_version())),
        GrantTableOp::SetupTable { frames } => {
            let mut xen = domain.xen.lock();
            grow_grant_frames(&mut xen, frames)?;
            // An auto-translated guest gets the frame numbers where it mapped each
            // frame (or the invalid frame number before it did).
            Ok(GrantTableReply::Frames(
                xen.grant_frames.iter().take(frames as usize).map(|(_, gfn)| gfn.unwrap_or(u64::MAX)).collect(),
            ))
        }
    }
}

/// Grows the table to `frames` frames of zeroed hypervisor memory.
fn grow_grant_frames(xen: &mut XenDomain, frames: u32) -> Result<(), i64> {
    use basalt_xen_abi::errno::{EINVAL, ENOMEM};
    if frames > MAX_GRANT_FRAMES {
        return Err(EINVAL);
    }
    while xen.grant_frames.len() < frames as usize {
        let frame = crate::mm::allocate_zeroed_frames(1).ok_or(ENOMEM)?;
        xen.grant_frames.push((frame, None));
    }
    xen.grants.grow(frames).map_err(|error| error.errno())
}

/// XENMEM_add_to_physmap(grant_table): grant frame `index` appears at `gfn`.
pub fn map_grant_frame(domain: &Domain, index: u32, gfn: u64) -> Result<(), i64> {
    use basalt_xen_abi::errno::EINVAL;
    let gpa = gfn.checked_mul(PAGE).ok_or(EINVAL)?;
    let mut xen = domain.xen.lock();
    grow_grant_frames(&mut xen, index + 1)?;
    let (machine, mapped) = xen.grant_frames[index as usize];
    if mapped == Some(gfn) {
        return Ok(());
    }
    if mapped.is_some() {
        // Moving a mapped frame would need the nested table to drop a mapping.
        return Err(basalt_xen_abi::errno::EBUSY);
    }
    domain.memory.lock().map_foreign_page(gpa, machine).map_err(|_| EINVAL)?;
    xen.grant_frames[index as usize].1 = Some(gfn);
    Ok(())
}

/// Puts a dom0 port back in the queue (its service has more to do).
pub fn requeue_dom0_event(port: u32) {
    deliver(Notify { domain: 0, port, vcpu: 0 });
}

/// Closes a port of dom0 (its peer domain is gone).
pub fn close_dom0_port(port: u32) {
    let _ = with_event_channels(|channels| channels.close(0, port));
}

/// Raises the upcall again if `vcpu`'s `evtchn_upcall_pending` is set: after an INIT
/// cleared its local APIC, an upcall raised before (Linux registers an AP's vcpu_info
/// and vector before it starts it) would otherwise never arrive, since set_pending
/// raises only on a 0 → 1 change of the flag.
pub fn reassert_upcall(domain: &Domain, vcpu: u32) {
    let pending = {
        let xen = domain.xen.lock();
        let memory = domain.memory.lock();
        xen.vcpu_info_gpa(vcpu)
            .and_then(|gpa| memory.atomic_u8(gpa))
            .is_some_and(|flag| flag.load(Ordering::SeqCst) != 0)
    };
    if pending {
        raise_upcall(domain, vcpu);
    }
}

/// A domain's grant frames as the grant bookkeeping sees them: v1 entries read and
/// updated with atomics, since the guest writes the same words.
struct FrameEntries<'a> {
    frames: &'a [(u64, Option<u64>)],
}

const GRANT_ENTRIES_PER_FRAME: u32 = 4096 / basalt_xen_abi::grant_table::GRANT_ENTRY_V1_SIZE as u32;

impl FrameEntries<'_> {
    /// Direct-map address of entry `gref`, if it exists.
    fn entry_address(&self, gref: u32) -> Option<u64> {
        let (machine, _) = *self.frames.get((gref / GRANT_ENTRIES_PER_FRAME) as usize)?;
        let offset = u64::from(gref % GRANT_ENTRIES_PER_FRAME) * 8;
        Some(crate::mm::phys_to_virt(machine + offset))
    }

    fn header(&self, gref: u32) -> Option<&core::sync::atomic::AtomicU32> {
        let address = self.entry_address(gref)?;
        // SAFETY: the entry is 8-byte aligned inside a grant frame this domain owns;
        // the frame lives as long as the domain's Xen state, which the caller holds
        // locked for the borrow. The guest updates it concurrently: atomics.
        Some(unsafe { &*(address as *const core::sync::atomic::AtomicU32) })
    }
}

impl crate::xen::grant_table::GrantEntries for FrameEntries<'_> {
    fn entry_count(&self) -> u32 {
        self.frames.len() as u32 * GRANT_ENTRIES_PER_FRAME
    }
    fn load(&self, gref: u32) -> basalt_xen_abi::grant_table::GrantEntryV1 {
        let Some(address) = self.entry_address(gref) else { return Default::default() };
        // SAFETY: as in `header`; the frame word is read atomically, once.
        let word = unsafe { &*(address as *const core::sync::atomic::AtomicU64) }.load(Ordering::SeqCst);
        basalt_xen_abi::grant_table::GrantEntryV1 {
            flags: word as u16,
            domid: (word >> 16) as u16,
            frame: (word >> 32) as u32,
        }
    }
    fn compare_exchange_header(
        &mut self,
        gref: u32,
        current: basalt_xen_abi::grant_table::GrantEntryHeader,
        new: basalt_xen_abi::grant_table::GrantEntryHeader,
    ) -> Result<(), basalt_xen_abi::grant_table::GrantEntryHeader> {
        let pack = |header: basalt_xen_abi::grant_table::GrantEntryHeader| {
            u32::from(header.flags) | (u32::from(header.domid) << 16)
        };
        let unpack = |word: u32| basalt_xen_abi::grant_table::GrantEntryHeader {
            flags: word as u16,
            domid: (word >> 16) as u16,
        };
        let Some(header) = self.header(gref) else { return Err(current) };
        header
            .compare_exchange(pack(current), pack(new), Ordering::SeqCst, Ordering::SeqCst)
            .map(|_| ())
            .map_err(unpack)
    }
    fn clear_flags(&mut self, gref: u32, bits: u16) {
        if let Some(header) = self.header(gref) {
            header.fetch_and(!u32::from(bits), Ordering::SeqCst);
        }
    }
}

/// The in-use entries (flags != 0) of a domain's v1 grant table, at most `limit`,
/// by reference: (reference, entry). Read-only: the debugger shows them.
pub fn grant_entries_in_use(domain: &Domain, limit: usize) -> Vec<(u32, basalt_xen_abi::grant_table::GrantEntryV1)> {
    use crate::xen::grant_table::GrantEntries;
    let xen = domain.xen.lock();
    let entries = FrameEntries { frames: &xen.grant_frames };
    let count = entries.entry_count().min(xen.grants.nr_entries());
    (0..count).map(|gref| (gref, entries.load(gref))).filter(|(_, entry)| entry.flags != 0).take(limit).collect()
}

/// Which way a grant copy goes.
pub enum GrantCopy<'a> {
    /// From the granted page into `buffer` (needs read access).
    FromGuest(&'a mut [u8]),
    /// From `data` into the granted page (needs write access; a read-only grant
    /// refuses).
    ToGuest(&'a [u8]),
}

/// Why dom0 could not use a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantAccessError {
    NoSuchDomain(u16),
    Grant(crate::xen::grant_table::GrantError),
    /// The copy would leave the 4 KiB page.
    OutOfPage {
        offset: usize,
        length: usize,
    },
    /// The granted frame is not the granting domain's RAM.
    NotRam(u64),
}

impl core::fmt::Display for GrantAccessError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GrantAccessError::NoSuchDomain(id) => write!(formatter, "no domain {id}"),
            GrantAccessError::Grant(error) => write!(formatter, "{error}"),
            GrantAccessError::OutOfPage { offset, length } => {
                write!(formatter, "copy of {length} bytes at offset {offset} leaves the page")
            }
            GrantAccessError::NotRam(gfn) => write!(formatter, "granted frame {gfn:#x} is not the domain's memory"),
        }
    }
}

/// Dom0 copies to or from a page domain `granter` granted to it with reference
/// `gref`: the entry must grant access to domain 0, writes need a writable grant, and
/// the grant is held (GTF_reading/GTF_writing set, so the guest cannot revoke it
/// underneath) only for the duration of the copy.
pub fn grant_copy(granter: u16, gref: u32, offset: usize, copy: GrantCopy<'_>) -> Result<(), GrantAccessError> {
    use crate::xen::grant_table::Access;
    let domain = super::get(granter).ok_or(GrantAccessError::NoSuchDomain(granter))?;
    let length = match &copy {
        GrantCopy::FromGuest(buffer) => buffer.len(),
        GrantCopy::ToGuest(data) => data.len(),
    };
    if offset.checked_add(length).is_none_or(|end| end > PAGE as usize) {
        return Err(GrantAccessError::OutOfPage { offset, length });
    }
    let access = match copy {
        GrantCopy::FromGuest(_) => Access::Read,
        GrantCopy::ToGuest(_) => Access::Write,
    };
    let mut xen = domain.xen.lock();
    let XenDomain { grants, grant_frames, .. } = &mut *xen;
    let mut entries = FrameEntries { frames: grant_frames };
    let frame = grants.acquire(&mut entries, gref, 0, access).map_err(GrantAccessError::Grant)?;
    let gpa = frame.gfn.saturating_mul(PAGE).saturating_add(offset as u64);
    let copied = {
        let mut memory = domain.memory.lock();
        match copy {
            GrantCopy::FromGuest(buffer) => memory.read(gpa, buffer),
            GrantCopy::ToGuest(data) => memory.write(gpa, data),
        }
    };
    let released = grants.release(&mut entries, gref, access);
    if !copied {
        return Err(GrantAccessError::NotRam(frame.gfn));
    }
    released.map_err(GrantAccessError::Grant)
}

/// Dom0 starts a lasting use of the page domain `granter` granted it as `gref` (a
/// blkif ring page, a persistent grant): the same checks as [`grant_copy`], but the
/// grant stays held (GTF_reading, plus GTF_writing if `writable`) until
/// [`grant_release`], so the guest cannot revoke it meanwhile. Returns the granted
/// frame, which dom0 then reads and writes through the domain's memory by frame
/// number. Held grants end with the domain.
pub fn grant_hold(granter: u16, gref: u32, writable: bool) -> Result<u64, GrantAccessError> {
    use crate::xen::grant_table::Access;
    let domain = super::get(granter).ok_or(GrantAccessError::NoSuchDomain(granter))?;
    let access = if writable { Access::Write } else { Access::Read };
    let mut xen = domain.xen.lock();
    let XenDomain { grants, grant_frames, .. } = &mut *xen;
    let mut entries = FrameEntries { frames: grant_frames };
    let frame = grants.acquire(&mut entries, gref, 0, access).map_err(GrantAccessError::Grant)?;
    if !domain.memory.lock().is_backed(frame.gfn.saturating_mul(PAGE)) {
        let _ = grants.release(&mut entries, gref, access);
        return Err(GrantAccessError::NotRam(frame.gfn));
    }
    Ok(frame.gfn)
}

/// Ends one lasting use started by [`grant_hold`] with the same `writable`. A domain
/// already gone has nothing left to release.
pub fn grant_release(granter: u16, gref: u32, writable: bool) -> Result<(), GrantAccessError> {
    use crate::xen::grant_table::Access;
    let Some(domain) = super::get(granter) else { return Ok(()) };
    let access = if writable { Access::Write } else { Access::Read };
    let mut xen = domain.xen.lock();
    let XenDomain { grants, grant_frames, .. } = &mut *xen;
    let mut entries = FrameEntries { frames: grant_frames };
    grants.release(&mut entries, gref, access).map_err(GrantAccessError::Grant)
}
