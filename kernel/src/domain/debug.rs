//! What a debugger needs from the hypervisor about one domain, as plain data: pausing
//! it for inspection (and waiting until no vCPU is inside a guest slice), each vCPU's
//! registers as saved at its last exit, guest-physical reads and the machine frames
//! behind them, the event channels with their shared_info bits, the grant table's
//! in-use entries and the shared_info page.
//!
//! Nothing here hands out pointers into the hypervisor: every answer is a copy, and
//! every function takes the domain id, so a domain destroyed between two calls gives
//! [`DebugError::NoSuchDomain`] rather than stale data. The image's live debugger
//! target (image/src/debug.rs) is the one caller.
//!
//! Consistency: registers are read only while the vCPU's `run` lock is free (the CPU
//! running a vCPU holds it for the whole slice), so they are the ones saved at its
//! last exit. [`pause_for_inspection`] makes that true for every vCPU at once.

use super::{get, LifeState, Vcpu};
use crate::sched::{CpuSet, VcpuKey, VcpuState};
use crate::xen::event_channel::Binding;
use alloc::string::String;
use alloc::vec::Vec;
use basalt_xen_abi::event_channel::{SHARED_INFO_EVTCHN_MASK_OFFSET, SHARED_INFO_EVTCHN_PENDING_OFFSET};
use core::sync::atomic::Ordering;

const PAGE: u64 = 4096;
/// Event channels the 2-level ABI has (bits in shared_info's pending/mask arrays).
const TWO_LEVEL_CHANNELS: u32 = 4096;
/// Grant entries reported at most (64 frames of 512 v1 entries).
pub const MAX_GRANTS_SHOWN: usize = 64 * 512;

/// Why a debugger request could not be answered (one line for the operator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebugError {
    NoSuchDomain(u16),
    NoSuchVcpu(u32),
    /// The domain is being destroyed.
    Dying(u16),
    /// A vCPU stayed inside a guest slice longer than the wait allowed.
    StillRunning {
        domain: u16,
        waited_ms: u64,
    },
    /// The vCPU is inside a guest slice now (the domain was not paused for inspection).
    VcpuInSlice(u32),
    /// The domain could not be paused or unpaused; the text says why.
    State(String),
}

impl core::fmt::Display for DebugError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DebugError::NoSuchDomain(id) => write!(formatter, "domain {id} is gone"),
            DebugError::NoSuchVcpu(vcpu) => write!(formatter, "no vCPU {vcpu}"),
            DebugError::Dying(id) => write!(formatter, "domain {id} is being destroyed"),
            DebugError::StillRunning { domain, waited_ms } => write!(
                formatter,
                "domain {domain}: a vCPU is still inside its guest slice after {waited_ms} ms; try again"
            ),
            DebugError::VcpuInSlice(vcpu) => write!(formatter, "vCPU {vcpu} is running; pause the domain first"),
            DebugError::State(why) => formatter.write_str(why),
        }
    }
}

/// What a vCPU was doing when the domain was paused for inspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VcpuActivity {
    /// Running on a CPU, or waiting for one.
    Running,
    /// Blocked waiting for an event (HLT, SCHEDOP_block).
    Blocked,
    /// Not brought up, or taken down.
    Down,
}

/// A domain held still for the debugger; give it back to [`end_inspection`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    pub domain: u16,
    /// It was already paused, or had stopped (shutdown, crash): leave it so afterwards.
    pub was_stopped: bool,
    /// Life-cycle state before the pause.
    pub life_before: LifeState,
    /// Each vCPU's activity just before the pause, by vCPU id.
    pub activity: Vec<VcpuActivity>,
}

/// One vCPU's registers as saved at its last exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VcpuRegisters {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub rsp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub cs: u16,
    /// The vCPU is up (brought up and not taken down).
    pub up: bool,
}

/// Facts about a domain (`::status`, `::domains`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainFacts {
    pub id: u16,
    pub name: String,
    pub vcpus: u32,
    pub memory_bytes: u64,
    pub life: LifeState,
    /// When it was created (to tell a domain from a later one with the same id).
    pub created_ns: u64,
    /// vCPUs that are up.
    pub vcpus_up: u32,
}

/// One event channel of a domain, with its bits from shared_info when mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelState {
    pub port: u32,
    pub binding: Binding,
    pub notify_vcpu: u32,
    pub pending: Option<bool>,
    pub masked: Option<bool>,
}

/// One in-use grant entry (grant_entry_v1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantInUse {
    pub reference: u32,
    pub flags: u16,
    pub domain: u16,
    pub frame: u32,
}

fn domain(id: u16) -> Result<alloc::sync::Arc<super::Domain>, DebugError> {
    get(id).ok_or(DebugError::NoSuchDomain(id))
}

/// The facts of domain `id`.
pub fn facts(id: u16) -> Result<DomainFacts, DebugError> {
    let guest = domain(id)?;
    let name = guest.name.lock().clone();
    Ok(DomainFacts {
        id,
        name,
        vcpus: guest.vcpus.len() as u32,
        memory_bytes: guest.memory_bytes,
        life: guest.life(),
        created_ns: guest.created_ns,
        vcpus_up: guest.vcpus.iter().filter(|vcpu| vcpu.control.lock().up).count() as u32,
    })
}

/// Every domain's facts, by id.
pub fn all_facts() -> Vec<DomainFacts> {
    super::all().iter().filter_map(|guest| facts(guest.id).ok()).collect()
}

/// Pauses domain `id` (unless it already is, or has stopped) and waits, at most
/// `timeout_ns`, until none of its vCPUs is inside a guest slice. CPUs running one are
/// kicked so it exits at once instead of at its next timer tick. On a timeout the
/// domain is left as it was found.
pub fn pause_for_inspection(id: u16, timeout_ns: u64) -> Result<Inspection, DebugError> {
    let guest = domain(id)?;
    let life_before = guest.life();
    let scheduled: Vec<(u32, VcpuState)> = super::run::with_scheduler(|scheduler| {
        scheduler.domain_vcpus(id).map(|(key, status)| (key.vcpu, status.state)).collect()
    })
    .unwrap_or_default();
    let activity = guest
        .vcpus
        .iter()
        .map(|vcpu| {
            let state = scheduled.iter().find(|(number, _)| *number == vcpu.id).map(|(_, state)| *state);
            match state {
                _ if !vcpu.control.lock().up => VcpuActivity::Down,
                Some(VcpuState::Offline) => VcpuActivity::Down,
                Some(VcpuState::Blocked) => VcpuActivity::Blocked,
                _ => VcpuActivity::Running,
            }
        })
        .collect();
    let was_stopped = match life_before {
        LifeState::Dying => return Err(DebugError::Dying(id)),
        LifeState::Active => {
            super::pause(id).map_err(|error| DebugError::State(alloc::format!("{error}")))?;
            false
        }
        LifeState::Paused | LifeState::Shutdown | LifeState::Crashed => true,
    };
    let inspection = Inspection { domain: id, was_stopped, life_before, activity };
    let started = crate::cpu::time::uptime_ns();
    let mut kicked = false;
    while guest.running_vcpus.load(Ordering::Acquire) != 0 || guest.vcpus.iter().any(|vcpu| vcpu.run.is_locked()) {
        let waited = crate::cpu::time::uptime_ns().saturating_sub(started);
        if waited >= timeout_ns {
            let _ = end_inspection(&inspection);
            return Err(DebugError::StillRunning { domain: id, waited_ms: waited / 1_000_000 });
        }
        if !kicked {
            kick_running(id, &guest.vcpus);
            kicked = true;
        }
        core::hint::spin_loop();
    }
    Ok(inspection)
}

/// Interrupts every CPU running one of `vcpus`, so the vCPU exits and sees the pause.
fn kick_running(id: u16, vcpus: &[Vcpu]) {
    let mut cpus = CpuSet::empty();
    super::run::with_scheduler(|scheduler| {
        for vcpu in vcpus {
            if let Some(status) = scheduler.vcpu_info(VcpuKey { domain: id, vcpu: vcpu.id }) {
                if let VcpuState::Running { cpu } = status.state {
                    cpus.insert(cpu);
                }
            }
        }
    });
    if !cpus.is_empty() {
        crate::cpu::kick::kick_cpus(&cpus);
    }
}

/// Lets the domain run again if [`pause_for_inspection`] paused it. A domain that
/// went away meanwhile, or stopped (crashed while paused), is left alone.
pub fn end_inspection(inspection: &Inspection) -> Result<(), DebugError> {
    if inspection.was_stopped {
        return Ok(());
    }
    let guest = domain(inspection.domain)?;
    if guest.life() != LifeState::Paused {
        return Ok(());
    }
    super::unpause(inspection.domain).map_err(|error| DebugError::State(alloc::format!("{error}")))
}

/// vCPU `vcpu`'s registers as saved at its last exit. Fails with
/// [`DebugError::VcpuInSlice`] if it is on a CPU now.
pub fn registers(id: u16, vcpu: u32) -> Result<VcpuRegisters, DebugError> {
    let guest = domain(id)?;
    let target = guest.vcpus.get(vcpu as usize).ok_or(DebugError::NoSuchVcpu(vcpu))?;
    let up = target.control.lock().up;
    let run = target.run.try_lock().ok_or(DebugError::VcpuInSlice(vcpu))?;
    let gprs = run.gprs;
    let state = run.backend.state();
    drop(run);
    Ok(VcpuRegisters {
        rax: gprs.rax,
        rbx: gprs.rbx,
        rcx: gprs.rcx,
        rdx: gprs.rdx,
        rsi: gprs.rsi,
        rdi: gprs.rdi,
        rbp: gprs.rbp,
        rsp: state.rsp,
        r8: gprs.r8,
        r9: gprs.r9,
        r10: gprs.r10,
        r11: gprs.r11,
        r12: gprs.r12,
        r13: gprs.r13,
        r14: gprs.r14,
        r15: gprs.r15,
        rip: state.rip,
        rflags: state.rflags,
        cr0: state.cr0,
        cr2: state.cr2,
        cr3: state.cr3,
        cr4: state.cr4,
        efer: state.efer,
        cs: state.cs_selector,
        up,
    })
}

/// The domain's RAM as (guest-physical start, machine start, length) pieces, with
/// neighbours that continue each other in both spaces merged.
pub fn memory_pieces(id: u16) -> Result<Vec<(u64, u64, u64)>, DebugError> {
    let guest = domain(id)?;
    let memory = guest.memory.lock();
    let mut pieces: Vec<(u64, u64, u64)> = Vec::new();
    for (gpa, machine, length) in memory.pieces() {
        match pieces.last_mut() {
            Some(last) if last.0 + last.2 == gpa && last.1 + last.2 == machine => last.2 += length,
            _ => pieces.push((gpa, machine, length)),
        }
    }
    Ok(pieces)
}

/// The guest-physical ranges `[start, end)` that are RAM, ascending and merged.
pub fn memory_ranges(id: u16) -> Result<Vec<(u64, u64)>, DebugError> {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for (gpa, _, length) in memory_pieces(id)? {
        let end = gpa.saturating_add(length);
        match ranges.last_mut() {
            Some(last) if last.1 == gpa => last.1 = end,
            _ => ranges.push((gpa, end)),
        }
    }
    Ok(ranges)
}

/// Copies guest-physical memory out. `Err(Ok(address))` names the first address of
/// the range that is not the domain's RAM.
pub fn read_physical(id: u16, gpa: u64, buffer: &mut [u8]) -> Result<(), Result<u64, DebugError>> {
    let guest = domain(id).map_err(Err)?;
    let memory = guest.memory.lock();
    if memory.read(gpa, buffer) {
        return Ok(());
    }
    // Find the first byte that is not RAM, page by page (bounded by the buffer).
    let mut address = gpa;
    let end = gpa.saturating_add(buffer.len() as u64);
    while address < end {
        if !memory.is_backed(address) {
            return Err(Ok(address));
        }
        address = (address / PAGE + 1).saturating_mul(PAGE);
    }
    Err(Ok(end))
}

/// The machine address behind guest-physical `gpa`, if it is RAM.
pub fn physical_to_machine(id: u16, gpa: u64) -> Option<u64> {
    memory_pieces(id)
        .ok()?
        .into_iter()
        .find(|&(start, _, length)| gpa >= start && gpa - start < length)
        .map(|(start, machine, _)| machine + (gpa - start))
}

/// The guest-physical address of machine address `machine`, if it is the domain's RAM.
pub fn machine_to_physical(id: u16, machine: u64) -> Option<u64> {
    memory_pieces(id)
        .ok()?
        .into_iter()
        .find(|&(_, start, length)| machine >= start && machine - start < length)
        .map(|(gpa, start, _)| gpa + (machine - start))
}

/// The guest frame the domain made its shared_info, if it did.
pub fn shared_info_gfn(id: u16) -> Result<Option<u64>, DebugError> {
    Ok(domain(id)?.xen.lock().shared_info_gfn)
}

/// The shared_info page's bytes, if the guest registered one.
pub fn shared_info(id: u16) -> Result<Option<Vec<u8>>, DebugError> {
    let guest = domain(id)?;
    let Some(gfn) = guest.xen.lock().shared_info_gfn else { return Ok(None) };
    let mut page = alloc::vec![0u8; PAGE as usize];
    let read = guest.memory.lock().read_in_page(gfn, 0, &mut page);
    Ok(read.then_some(page))
}

/// Bit `port` of the bit array at `offset` in a shared_info page; `None` if the page
/// is too short or the port is beyond the 2-level ABI.
fn shared_info_bit(page: &[u8], offset: usize, port: u32) -> Option<bool> {
    if port >= TWO_LEVEL_CHANNELS {
        return None;
    }
    let byte = page.get(offset + (port / 8) as usize)?;
    Some(byte & (1 << (port % 8)) != 0)
}

/// The domain's open event channels by port, with pending/masked from shared_info
/// when the guest mapped it.
pub fn event_channels(id: u16) -> Result<Vec<ChannelState>, DebugError> {
    domain(id)?;
    let ports: Vec<(u32, crate::xen::event_channel::PortInfo)> = super::xen::with_event_channels(|channels| {
        channels.ports(id).filter(|(_, info)| info.binding != Binding::Free).collect()
    });
    let page = shared_info(id)?;
    Ok(ports
        .into_iter()
        .map(|(port, info)| ChannelState {
            port,
            binding: info.binding,
            notify_vcpu: info.notify_vcpu,
            pending: page.as_deref().and_then(|page| shared_info_bit(page, SHARED_INFO_EVTCHN_PENDING_OFFSET, port)),
            masked: page.as_deref().and_then(|page| shared_info_bit(page, SHARED_INFO_EVTCHN_MASK_OFFSET, port)),
        })
        .collect())
}

/// The grant table's in-use entries (at most [`MAX_GRANTS_SHOWN`]).
pub fn grants(id: u16) -> Result<Vec<GrantInUse>, DebugError> {
    let guest = domain(id)?;
    Ok(super::xen::grant_entries_in_use(&guest, MAX_GRANTS_SHOWN)
        .into_iter()
        .map(|(reference, entry)| GrantInUse { reference, flags: entry.flags, domain: entry.domid, frame: entry.frame })
        .collect())
}

/// Marks a domain crashed (the operator's `dump-core --crash`): its vCPUs stop and
/// dom0 applies the config's on_crash action, as for a guest that crashed itself.
pub fn mark_crashed(id: u16, why: &str) -> Result<(), DebugError> {
    let guest = domain(id)?;
    super::stop(&guest, super::StopReason::Crashed(String::from(why)));
    Ok(())
}
