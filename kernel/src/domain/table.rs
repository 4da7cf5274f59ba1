//! The domain table and every operation on domains and their vCPUs (hardware side:
//! memory comes from the frame allocator, vCPUs from the vendor backend).

use super::console::ConsoleHistory;
use super::memory::{GuestMemory, GuestMemoryError};
use super::{LifecycleEvent, StopReason};
use crate::sched::{CpuSet, DomainParams, VcpuKey};
use crate::virt::{GuestGprs, StartState, VirtualCpu};
use crate::xen::msr::GuestMsrState;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use spin::Mutex;

/// Most domains at once (ids are 16-bit; this bounds the table).
pub const MAX_DOMAINS: usize = 256;
/// Bytes of operator input kept for a domain that has not read it yet.
const CONSOLE_INPUT_LIMIT: usize = 4096;

/// What a new domain needs (the toolstack fills it from the config and the kernel).
#[derive(Debug, Clone)]
pub struct DomainSpec {
    pub name: String,
    /// Guest-physical ranges `[start, end)` to back with RAM.
    pub ranges: Vec<(u64, u64)>,
    pub vcpus: u32,
    pub weight: u32,
    pub cap: u32,
    /// Hard affinity per vCPU (missing entries: all CPUs).
    pub affinity: Vec<CpuSet>,
    /// The E820 map XENMEM_memory_map returns: (address, size, type).
    pub memory_map: Vec<(u64, u64, u32)>,
    /// The configured memory in bytes (what `list` shows).
    pub memory_bytes: u64,
}

/// Why a domain operation failed (one line for the operator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainError {
    NoSuchDomain(u16),
    TableFull,
    Memory(GuestMemoryError),
    Virtualization(String),
    BadAddress { gpa: u64, length: usize },
    InvalidState(&'static str),
    NoVirtualization,
}

impl core::fmt::Display for DomainError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DomainError::NoSuchDomain(id) => write!(formatter, "no domain {id}"),
            DomainError::TableFull => write!(formatter, "too many domains (at most {MAX_DOMAINS})"),
            DomainError::Memory(error) => write!(formatter, "{error}"),
            DomainError::Virtualization(why) => write!(formatter, "cannot create vCPU: {why}"),
            DomainError::BadAddress { gpa, length } => {
                write!(formatter, "guest-physical {gpa:#x}+{length:#x} is outside the domain's memory")
            }
            DomainError::InvalidState(why) => formatter.write_str(why),
            DomainError::NoVirtualization => formatter.write_str(
                "this machine cannot run guests: no usable AMD SVM with nested paging or Intel VMX with EPT",
            ),
        }
    }
}

/// The life-cycle state shown by `list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifeState {
    Active,
    Paused,
    Shutdown,
    Crashed,
    Dying,
}

/// What a running vCPU's CPU holds for the whole slice.
pub struct VcpuRun {
    pub backend: Box<dyn VirtualCpu>,
    pub gprs: GuestGprs,
    pub msrs: GuestMsrState,
    /// x87/SSE registers, loaded for each time slice and saved after it.
    pub fpu: Box<crate::arch::fpu::FpuState>,
    /// DR0–DR3, switched like the x87/SSE state.
    pub breakpoints: crate::arch::debug_registers::DebugAddressRegisters,
}

/// State other vCPUs and the toolstack change.
#[derive(Debug, Default)]
pub struct VcpuControl {
    pub initialised: bool,
    pub up: bool,
    pub pending_start: Option<StartState>,
    pub timer_deadline_ns: Option<u64>,
    /// An INIT IPI arrived: the next start-up IPI starts the vCPU in real mode.
    pub waiting_for_sipi: bool,
    /// It executed HLT with interrupts off: only an INIT can bring it back.
    pub halted_for_good: bool,
}

pub struct Vcpu {
    pub id: u32,
    pub run: Mutex<VcpuRun>,
    pub control: Mutex<VcpuControl>,
    /// The emulated local APIC (other vCPUs send IPIs into it).
    pub lapic: Mutex<crate::virt::vlapic::VirtualLapic>,
    /// An upcall through the global callback vector waits for injection.
    pub callback_pending: AtomicBool,
}

pub struct Domain {
    pub id: u16,
    pub name: Mutex<String>,
    pub memory: Mutex<GuestMemory>,
    pub memory_bytes: u64,
    pub memory_map: Vec<crate::xen::hypercall::E820Entry>,
    pub vcpus: Vec<Vcpu>,
    pub console: Mutex<ConsoleHistory>,
    pub console_input: Mutex<VecDeque<u8>>,
    pub life: Mutex<LifeState>,
    pub stop_reason: Mutex<Option<StopReason>>,
    pub paused: AtomicBool,
    /// vCPUs of this domain on a physical CPU right now.
    pub running_vcpus: AtomicU32,
    pub handle: [u8; 16],
    pub created_ns: u64,
    /// Hypercalls served, for the log line of a crash and for `list -v` later.
    pub hypercalls: AtomicU64,
    /// The guest has written to its console at least once.
    pub has_written: AtomicBool,
    /// shared_info, vcpu_info, HVM parameters, grant table (`xen` module).
    pub xen: Mutex<super::xen::XenDomain>,
}

impl Domain {
    /// Locks the memory and runs `f` (guest-physical access for exit handling and the
    /// builder).
    pub fn with_memory<R>(&self, f: impl FnOnce(&mut GuestMemory) -> R) -> R {
        f(&mut self.memory.lock())
    }

    pub fn life(&self) -> LifeState {
        *self.life.lock()
    }

    /// Appends guest console output. The first output is logged with its delay from
    /// creation (`make bench` reads it: create-to-first-output).
    pub fn console_write(&self, bytes: &[u8]) {
        if !bytes.is_empty() && !self.has_written.swap(true, Ordering::AcqRel) {
            let delay_us = crate::cpu::time::uptime_ns().saturating_sub(self.created_ns) / 1000;
            crate::info!(
                "domain {} ({}): first console output {}.{:03} ms after creation",
                self.id,
                self.name.lock(),
                delay_us / 1000,
                delay_us % 1000
            );
        }
        self.console.lock().append(bytes);
    }

    /// Takes up to `buffer.len()` bytes of operator input.
    pub fn console_read(&self, buffer: &mut [u8]) -> usize {
        let mut input = self.console_input.lock();
        let count = buffer.len().min(input.len());
        for (slot, byte) in buffer.iter_mut().zip(input.drain(..count)) {
            *slot = byte;
        }
        count
    }

    pub fn has_console_input(&self) -> bool {
        !self.console_input.lock().is_empty()
    }
}

static DOMAINS: Mutex<Vec<Option<Arc<Domain>>>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU32 = AtomicU32::new(1);
static EVENTS: Mutex<VecDeque<LifecycleEvent>> = Mutex::new(VecDeque::new());
static VIRTUALIZATION_READY: AtomicBool = AtomicBool::new(false);

/// Pre-sizes the table (so creating the first domain allocates no permanent heap) and
/// records whether guests can run at all.
pub fn init(virtualization_ready: bool) {
    let mut table = DOMAINS.lock();
    table.reserve_exact(MAX_DOMAINS);
    EVENTS.lock().reserve(64);
    VIRTUALIZATION_READY.store(virtualization_ready, Ordering::Release);
}

/// True if this machine can run guests.
pub fn virtualization_ready() -> bool {
    VIRTUALIZATION_READY.load(Ordering::Acquire)
}

/// The domain with `id`, if it exists.
pub fn get(id: u16) -> Option<Arc<Domain>> {
    DOMAINS.lock().iter().flatten().find(|domain| domain.id == id).cloned()
}

/// Every domain, by id.
pub fn all() -> Vec<Arc<Domain>> {
    let mut domains: Vec<Arc<Domain>> = DOMAINS.lock().iter().flatten().cloned().collect();
    domains.sort_by_key(|domain| domain.id);
    domains
}

/// The domain called `name`, if any.
pub fn find_by_name(name: &str) -> Option<Arc<Domain>> {
    DOMAINS.lock().iter().flatten().find(|domain| *domain.name.lock() == name).cloned()
}

fn allocate_id(table: &[Option<Arc<Domain>>]) -> Option<u16> {
    for _ in 0..u32::from(basalt_xen_abi::domid::DOMID_FIRST_RESERVED) {
        let candidate = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let id = (candidate % u32::from(basalt_xen_abi::domid::DOMID_FIRST_RESERVED)) as u16;
        if id != 0 && !table.iter().flatten().any(|domain| domain.id == id) {
            return Some(id);
        }
    }
    None
}

/// Creates a paused domain: memory taken and zeroed, nested page table built, vCPUs
/// made (all down; vCPU 0 is brought up by [`start_vcpu0`]). Nothing stays allocated
/// on failure.
pub fn create(spec: &DomainSpec) -> Result<u16, DomainError> {
    if !virtualization_ready() {
        return Err(DomainError::NoVirtualization);
    }
    {
        let table = DOMAINS.lock();
        if table.iter().flatten().count() >= MAX_DOMAINS {
            return Err(DomainError::TableFull);
        }
    }
    let memory = GuestMemory::build(&spec.ranges, crate::virt::nested_format()).map_err(DomainError::Memory)?;
    let root = memory.nested_root();
    let mut vcpus = Vec::with_capacity(spec.vcpus as usize);
    for id in 0..spec.vcpus {
        let backend = crate::virt::new_vcpu(root).map_err(|error| DomainError::Virtualization(error.to_string()))?;
        vcpus.push(Vcpu {
            id,
            run: Mutex::new(VcpuRun {
                backend,
                gprs: GuestGprs::default(),
                msrs: GuestMsrState::new(
                    id,
                    crate::virt::exit::host_vendor(),
                    crate::virt::exit::host_physical_address_bits(),
                ),
                fpu: Box::default(),
                breakpoints: Default::default(),
            }),
            control: Mutex::new(VcpuControl::default()),
            lapic: Mutex::new(super::xen::new_lapic(id)),
            callback_pending: AtomicBool::new(false),
        });
    }
    let mut table = DOMAINS.lock();
    let id = allocate_id(&table).ok_or(DomainError::TableFull)?;
    let now = crate::cpu::time::uptime_ns();
    let mut handle = [0u8; 16];
    handle[..2].copy_from_slice(&id.to_le_bytes());
    handle[8..].copy_from_slice(&now.to_le_bytes());
    let domain = Arc::new(Domain {
        id,
        name: Mutex::new(spec.name.clone()),
        memory: Mutex::new(memory),
        memory_bytes: spec.memory_bytes,
        memory_map: spec
            .memory_map
            .iter()
            .map(|&(addr, size, kind)| crate::xen::hypercall::E820Entry { addr, size, kind })
            .collect(),
        vcpus,
        console: Mutex::new(ConsoleHistory::default()),
        console_input: Mutex::new(VecDeque::new()),
        life: Mutex::new(LifeState::Paused),
        stop_reason: Mutex::new(None),
        paused: AtomicBool::new(true),
        running_vcpus: AtomicU32::new(0),
        handle,
        created_ns: now,
        hypercalls: AtomicU64::new(0),
        has_written: AtomicBool::new(false),
        xen: Mutex::new(super::xen::XenDomain::new(spec.vcpus)),
    });
    if let Err(errno) = super::xen::add_domain(id, spec.vcpus) {
        drop(table);
        return Err(DomainError::Virtualization(alloc::format!("no event channels for the domain (error {errno})")));
    }
    let physical_cpus = crate::cpu::percpu::online_count().max(1);
    let scheduled = super::run::with_scheduler(|scheduler| -> Result<(), crate::sched::SchedError> {
        let weight = u16::try_from(spec.weight.clamp(1, 65535)).unwrap_or(crate::sched::DEFAULT_WEIGHT);
        scheduler.add_domain(id, DomainParams { weight, cap: spec.cap })?;
        scheduler.set_domain_paused(id, true)?;
        for vcpu in 0..spec.vcpus {
            let affinity = spec.affinity.get(vcpu as usize).copied().unwrap_or_else(|| CpuSet::first(physical_cpus));
            if let Err(error) = scheduler.add_vcpu(VcpuKey { domain: id, vcpu }, affinity) {
                let _ = scheduler.remove_domain(id);
                return Err(error);
            }
        }
        Ok(())
    });
    if let Some(Err(error)) = scheduled {
        drop(table);
        super::xen::remove_domain(id);
        // `domain` drops here: its memory and vCPUs go back.
        return Err(DomainError::Virtualization(alloc::format!("scheduler refused the domain: {error}")));
    }
    match table.iter_mut().find(|slot| slot.is_none()) {
        Some(slot) => *slot = Some(domain),
        None => table.push(Some(domain)),
    }
    Ok(id)
}

/// Copies bytes into a domain's guest-physical memory (the builder's loads).
pub fn write_guest(id: u16, gpa: u64, bytes: &[u8]) -> Result<(), DomainError> {
    let domain = get(id).ok_or(DomainError::NoSuchDomain(id))?;
    if domain.with_memory(|memory| memory.write(gpa, bytes)) {
        Ok(())
    } else {
        Err(DomainError::BadAddress { gpa, length: bytes.len() })
    }
}

/// Gives vCPU 0 its PVH start state and marks it up (it runs once unpaused).
pub fn start_vcpu0(id: u16, entry: u32, start_info: u32) -> Result<(), DomainError> {
    let domain = get(id).ok_or(DomainError::NoSuchDomain(id))?;
    let vcpu = domain.vcpus.first().ok_or(DomainError::InvalidState("domain has no vCPUs"))?;
    let mut control = vcpu.control.lock();
    control.pending_start = Some(StartState::pvh_entry(entry, start_info));
    control.initialised = true;
    control.up = true;
    drop(control);
    let _ = super::run::with_scheduler(|scheduler| scheduler.set_online(VcpuKey { domain: id, vcpu: 0 }, true));
    Ok(())
}

/// Lets a paused domain run.
pub fn unpause(id: u16) -> Result<(), DomainError> {
    let domain = get(id).ok_or(DomainError::NoSuchDomain(id))?;
    {
        let mut life = domain.life.lock();
        match *life {
            LifeState::Paused | LifeState::Active => *life = LifeState::Active,
            LifeState::Shutdown | LifeState::Crashed => {
                return Err(DomainError::InvalidState("domain has stopped; destroy it or create it again"))
            }
            LifeState::Dying => return Err(DomainError::InvalidState("domain is being destroyed")),
        }
    }
    domain.paused.store(false, Ordering::Release);
    let _ = super::run::with_scheduler(|scheduler| scheduler.set_domain_paused(id, false));
    Ok(())
}

/// Stops a domain's vCPUs from being scheduled (running ones stop at their next exit).
pub fn pause(id: u16) -> Result<(), DomainError> {
    let domain = get(id).ok_or(DomainError::NoSuchDomain(id))?;
    {
        let mut life = domain.life.lock();
        match *life {
            LifeState::Active | LifeState::Paused => *life = LifeState::Paused,
            _ => return Err(DomainError::InvalidState("domain is not running")),
        }
    }
    domain.paused.store(true, Ordering::Release);
    let _ = super::run::with_scheduler(|scheduler| scheduler.set_domain_paused(id, true));
    Ok(())
}

/// Records that a domain stopped (guest shutdown or crash), stops its vCPUs and queues
/// the event for dom0. The first reason wins.
pub fn stop(domain: &Domain, reason: StopReason) {
    {
        let mut stop_reason = domain.stop_reason.lock();
        if stop_reason.is_some() {
            return;
        }
        let mut life = domain.life.lock();
        if *life == LifeState::Dying {
            return;
        }
        // A guest that shut down saying "crash" is crashed, as xl shows it.
        *life = match reason {
            StopReason::Crashed(_) | StopReason::Shutdown(basalt_xen_abi::sched::SHUTDOWN_crash) => LifeState::Crashed,
            StopReason::Shutdown(_) => LifeState::Shutdown,
        };
        *stop_reason = Some(reason.clone());
    }
    let name = domain.name.lock().clone();
    match &reason {
        StopReason::Crashed(why) => crate::warn!("domain {} ({}) crashed: {}", domain.id, name, why),
        StopReason::Shutdown(code) => {
            crate::info!("domain {} ({}) shut down: {}", domain.id, name, shutdown_reason_name(*code))
        }
    }
    let _ = super::run::with_scheduler(|scheduler| scheduler.set_domain_paused(domain.id, true));
    let mut events = EVENTS.lock();
    if events.len() < 1024 {
        events.push_back(LifecycleEvent { domain: domain.id, reason });
    }
}

/// The name xl uses for a shutdown code.
pub fn shutdown_reason_name(code: u32) -> &'static str {
    match code {
        0 => "poweroff",
        1 => "reboot",
        2 => "suspend",
        3 => "crash",
        4 => "watchdog",
        5 => "soft_reset",
        _ => "unknown",
    }
}

/// Takes the queued life-cycle events (dom0 applies the configs' actions).
pub fn take_events() -> Vec<LifecycleEvent> {
    EVENTS.lock().drain(..).collect()
}

/// Destroys a domain: unschedules it, waits until none of its vCPUs is on a CPU, gives
/// its memory back and removes it. Its id stays taken until then.
pub fn destroy(id: u16) -> Result<(), DomainError> {
    let domain = get(id).ok_or(DomainError::NoSuchDomain(id))?;
    {
        let mut life = domain.life.lock();
        if *life == LifeState::Dying {
            return Err(DomainError::InvalidState("domain is already being destroyed"));
        }
        *life = LifeState::Dying;
    }
    domain.paused.store(true, Ordering::Release);
    let _ = super::run::with_scheduler(|scheduler| scheduler.remove_domain(id));
    // A running vCPU leaves the CPU at its next exit (the 100 Hz tick at the latest).
    while domain.running_vcpus.load(Ordering::Acquire) != 0 {
        core::hint::spin_loop();
    }
    super::xen::remove_domain(id);
    domain.with_memory(|memory| memory.release());
    let mut table = DOMAINS.lock();
    for slot in table.iter_mut() {
        if slot.as_ref().is_some_and(|entry| entry.id == id) {
            *slot = None;
        }
    }
    drop(table);
    let name = domain.name.lock().clone();
    crate::info!("domain {id} ({name}) destroyed");
    // The last Arc (ours) frees the vCPUs' VMCBs and the console history here.
    drop(domain);
    Ok(())
}

/// Appends operator input for a domain and wakes its vCPUs.
pub fn console_input(id: u16, bytes: &[u8]) -> Result<(), DomainError> {
    let domain = get(id).ok_or(DomainError::NoSuchDomain(id))?;
    {
        let mut input = domain.console_input.lock();
        for &byte in bytes {
            if input.len() < CONSOLE_INPUT_LIMIT {
                input.push_back(byte);
            }
        }
    }
    for vcpu in &domain.vcpus {
        wake(&domain, vcpu);
    }
    Ok(())
}

/// Wakes a vCPU if it is blocked (or about to block).
pub fn wake(domain: &Domain, vcpu: &Vcpu) {
    let kicks =
        super::run::with_scheduler(|scheduler| scheduler.wake_with_kicks(VcpuKey { domain: domain.id, vcpu: vcpu.id }));
    // Outside the scheduler's lock: an IPI to each CPU that must notice, so a halted
    // CPU picks the vCPU up and a running one exits to inject, at once rather than at
    // its next timer tick.
    if let Some(kicks) = kicks {
        crate::cpu::kick::kick_cpus(&kicks);
    }
}

/// Sets the domain's name (rename on restart).
pub fn rename(id: u16, name: &str) -> Result<(), DomainError> {
    let domain = get(id).ok_or(DomainError::NoSuchDomain(id))?;
    *domain.name.lock() = name.to_string();
    Ok(())
}
