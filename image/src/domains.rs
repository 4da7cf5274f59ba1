//! The domain manager wired to the hypervisor: builtin-dom0's toolstack
//! ([`DomainManager`]) gets its [`DomainHost`] from kernel/'s domain table and its
//! [`ModuleSource`] from the multiboot2 modules, and the shell's [`DomainControl`] is
//! implemented here on top of both. Also dom0's life-cycle service (acting on guests'
//! shutdowns and crashes) and the interactive `console` attachment.

use crate::appliance::Appliance;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use basalt_dom0::toolstack::config::{LifecycleAction, Limits};
use basalt_dom0::toolstack::manager::{
    CreateRequest, DomainHost, DomainId, DomainManager, HostError, ModuleSource, ShutdownReason,
};
use basalt_kernel::console::serial;
use basalt_kernel::cpu::{percpu, time};
use basalt_kernel::domain::{self, LifeState, StopReason};
use basalt_kernel::sched::{CpuSet, DomainParams, VcpuKey, VcpuState as SchedVcpuState};
use basalt_shell::answerback::LateAnswerFilter;
use basalt_shell::{
    CreatedDomain, DomainControl, DomainState, DomainSummary, SchedCreditEntry, VcpuState, VcpuSummary,
};
use spin::Mutex;

static MANAGER: Mutex<Option<DomainManager>> = Mutex::new(None);

/// Makes the domain manager (at boot, so its tables are not charged to the first
/// domain).
pub fn init() {
    MANAGER.lock().get_or_insert_with(DomainManager::new);
}

fn with_manager<R>(f: impl FnOnce(&mut DomainManager) -> R) -> R {
    let mut guard = MANAGER.lock();
    f(guard.get_or_insert_with(DomainManager::new))
}

/// Multiboot2 modules by name.
struct Modules;

impl ModuleSource for Modules {
    fn module(&self, name: &str) -> Option<&[u8]> {
        crate::modules::find(name)
    }
    fn module_names(&self) -> Vec<String> {
        crate::modules::names()
    }
}

/// kernel/'s domain table as the toolstack's host.
struct Host;

fn physical_cpus() -> u32 {
    percpu::online_count().max(1)
}

fn to_kernel_cpuset(set: impl Iterator<Item = u32>) -> CpuSet {
    let mut cpus = CpuSet::empty();
    for cpu in set {
        cpus.insert(cpu);
    }
    cpus
}

impl DomainHost for Host {
    fn limits(&self) -> Limits {
        let (_, free_frames) = basalt_kernel::mm::frame_allocator_stats();
        Limits::for_machine(physical_cpus(), (free_frames * 4096) >> 20)
    }

    fn create_domain(&mut self, request: &CreateRequest) -> Result<DomainId, HostError> {
        let spec = domain::DomainSpec {
            name: request.name.clone(),
            ranges: request.backing.iter().map(|range| (range.start, range.end)).collect(),
            vcpus: request.max_vcpus.max(request.vcpus),
            weight: u32::from(request.weight),
            cap: u32::from(request.cap),
            affinity: request.affinity.iter().map(|set| to_kernel_cpuset(set.iter())).collect(),
            memory_map: request.memory_map.iter().map(|entry| (entry.address, entry.size, entry.kind as u32)).collect(),
            memory_bytes: request.memory_bytes,
        };
        let domid = domain::create(&spec).map_err(|error| match error {
            domain::DomainError::Memory(domain::memory::GuestMemoryError::OutOfMemory { needed, .. }) => {
                HostError::OutOfMemory { needed }
            }
            domain::DomainError::TableFull => HostError::NoFreeDomainId,
            domain::DomainError::NoVirtualization => HostError::Failed(
                "this machine cannot run guests: no usable AMD SVM with nested paging or Intel VMX with EPT",
            ),
            _ => HostError::Failed("the hypervisor could not create the domain"),
        })?;
        if let Err(error) = crate::dom0::connect_domain(domid, &request.name, request.memory_bytes, spec.vcpus) {
            basalt_kernel::warn!("{error}");
            let _ = domain::destroy(domid);
            crate::dom0::forget(domid);
            return Err(HostError::Failed("dom0 could not connect the domain's xenstore and console"));
        }
        for disk in &request.disks {
            if let Err(error) = crate::vbd::attach(domid, &request.name, disk) {
                let _ = domain::destroy(domid);
                crate::dom0::forget(domid);
                return Err(HostError::Disk(format!("disk {disk}: {error}")));
            }
        }
        Ok(domid)
    }

    fn write_guest(&mut self, domid: DomainId, gpa: u64, bytes: &[u8]) -> Result<(), HostError> {
        domain::write_guest(domid, gpa, bytes).map_err(|_| HostError::BadGuestRange { gpa, length: bytes.len() as u64 })
    }

    fn start_vcpu0(&mut self, domid: DomainId, entry: u32, ebx: u32) -> Result<(), HostError> {
        domain::start_vcpu0(domid, entry, ebx).map_err(|_| HostError::NoSuchDomain(domid))
    }

    fn unpause(&mut self, domid: DomainId) -> Result<(), HostError> {
        domain::unpause(domid).map_err(|_| HostError::NoSuchDomain(domid))
    }

    fn destroy(&mut self, domid: DomainId) -> Result<(), HostError> {
        let result = domain::destroy(domid).map_err(|_| HostError::NoSuchDomain(domid));
        // dom0 lets go of it now rather than at its next round, so `mem` right after
        // `destroy` already counts everything given back.
        crate::dom0::forget(domid);
        result
    }
}

/// The name and bytes of the kernel module domain `domid` was created from (GRUB
/// modules stay in memory for the hypervisor's life), for the debugger's symbols.
pub fn kernel_module(domid: u16) -> Option<(String, &'static [u8])> {
    let name = with_manager(|manager| manager.domain(domid).map(|managed| managed.config.kernel.clone()))?;
    let bytes = crate::modules::find(&name)?;
    Some((name, bytes))
}

/// Resolves an operator's domain word: an id, then a name. Domain 0 is dom0.
fn resolve(word: &str) -> Result<u16, String> {
    if word == "Domain-0" || word == "0" {
        return Ok(0);
    }
    if let Ok(id) = word.parse::<u16>() {
        if domain::get(id).is_some() {
            return Ok(id);
        }
    }
    domain::find_by_name(word).map(|found| found.id).ok_or_else(|| format!("no domain '{word}'"))
}

/// Resolves a guest (not dom0) for operations dom0 cannot undergo.
pub fn resolve_guest(word: &str, action: &str) -> Result<u16, String> {
    match resolve(word)? {
        0 => Err(format!("cannot {action} Domain-0, the built-in dom0")),
        id => Ok(id),
    }
}

fn domain_run_ns(id: u16) -> u64 {
    basalt_kernel::domain::run::with_scheduler(|scheduler| scheduler.domain_run_ns(id)).flatten().unwrap_or(0)
}

fn summary_of(guest: &domain::Domain) -> DomainSummary {
    let life = guest.life();
    let vcpu_states: Vec<SchedVcpuState> = basalt_kernel::domain::run::with_scheduler(|scheduler| {
        scheduler.domain_vcpus(guest.id).map(|(_, status)| status.state).collect()
    })
    .unwrap_or_default();
    let active = life == LifeState::Active;
    let running = active
        && vcpu_states.iter().any(|state| matches!(state, SchedVcpuState::Running { .. } | SchedVcpuState::Runnable));
    DomainSummary {
        id: u32::from(guest.id),
        name: guest.name.lock().clone(),
        memory_mib: guest.memory_bytes >> 20,
        vcpus: guest.vcpus.iter().filter(|vcpu| vcpu.control.lock().up).count() as u32,
        state: DomainState {
            running,
            blocked: active && !running,
            paused: life == LifeState::Paused,
            shutdown: life == LifeState::Shutdown,
            crashed: life == LifeState::Crashed,
            dying: life == LifeState::Dying,
        },
        cpu_time_ns: domain_run_ns(guest.id),
    }
}

fn dom0_summary() -> DomainSummary {
    let (total_frames, _) = basalt_kernel::mm::frame_allocator_stats();
    let guests: u64 = domain::all().iter().map(|guest| guest.memory_bytes).sum();
    DomainSummary {
        id: 0,
        name: "Domain-0".to_string(),
        memory_mib: (total_frames * 4096).saturating_sub(guests) >> 20,
        vcpus: physical_cpus(),
        state: DomainState { running: true, ..DomainState::default() },
        cpu_time_ns: time::uptime_ns(),
    }
}

impl DomainControl for Appliance {
    fn create(&mut self, config: &str, overrides: &[&str]) -> Result<CreatedDomain, String> {
        if !domain::virtualization_ready() {
            return Err("this machine cannot run guests: no usable AMD SVM with nested paging or Intel VMX with EPT"
                .to_string());
        }
        let started = time::uptime_ns();
        let created = with_manager(|manager| manager.create(&Modules, &mut Host, config, overrides))
            .map_err(|error| error.to_string())?;
        for warning in &created.warnings {
            basalt_kernel::warn!("create {config}: {warning}");
        }
        basalt_kernel::info!(
            "domain {} ({}) created from '{config}' in {} ms",
            created.domid,
            created.name,
            (time::uptime_ns() - started) / 1_000_000
        );
        Ok(CreatedDomain { id: u32::from(created.domid), name: created.name })
    }

    fn domains(&self, word: Option<&str>) -> Result<Vec<DomainSummary>, String> {
        match word {
            Some(word) => {
                let id = resolve(word)?;
                if id == 0 {
                    return Ok(alloc::vec![dom0_summary()]);
                }
                let guest = domain::get(id).ok_or_else(|| format!("no domain '{word}'"))?;
                Ok(alloc::vec![summary_of(&guest)])
            }
            None => {
                let mut rows = alloc::vec![dom0_summary()];
                rows.extend(domain::all().iter().map(|guest| summary_of(guest)));
                Ok(rows)
            }
        }
    }

    fn destroy(&mut self, word: &str) -> Result<(), String> {
        let id = resolve_guest(word, "destroy")?;
        with_manager(|manager| manager.destroy(&mut Host, id)).map_err(|error| error.to_string())
    }

    fn pause(&mut self, word: &str) -> Result<(), String> {
        let id = resolve_guest(word, "pause")?;
        domain::pause(id).map_err(|error| error.to_string())
    }

    fn unpause(&mut self, word: &str) -> Result<(), String> {
        let id = resolve_guest(word, "unpause")?;
        domain::unpause(id).map_err(|error| error.to_string())
    }

    fn shutdown(&mut self, word: &str, timeout_seconds: Option<u32>) -> Result<(), String> {
        let id = resolve_guest(word, "shut down")?;
        request_stop(id, basalt_xen_abi::sched::SHUTDOWN_poweroff, timeout_seconds)
    }

    fn reboot(&mut self, word: &str, timeout_seconds: Option<u32>) -> Result<(), String> {
        let id = resolve_guest(word, "reboot")?;
        request_stop(id, basalt_xen_abi::sched::SHUTDOWN_reboot, timeout_seconds)
    }

    fn vcpus(&self, word: Option<&str>) -> Result<Vec<VcpuSummary>, String> {
        let guests = match word {
            Some(word) => {
                let id = resolve_guest(word, "list the vCPUs of")?;
                alloc::vec![domain::get(id).ok_or_else(|| format!("no domain '{word}'"))?]
            }
            None => domain::all(),
        };
        let mut rows = Vec::new();
        for guest in guests {
            let name = guest.name.lock().clone();
            let paused = guest.life() != LifeState::Active;
            for vcpu in &guest.vcpus {
                let key = VcpuKey { domain: guest.id, vcpu: vcpu.id };
                let Some(status) =
                    basalt_kernel::domain::run::with_scheduler(|scheduler| scheduler.vcpu_info(key)).flatten()
                else {
                    continue;
                };
                let (state, cpu) = match status.state {
                    SchedVcpuState::Offline => (VcpuState::Offline, None),
                    _ if paused => (VcpuState::Paused, None),
                    SchedVcpuState::Paused => (VcpuState::Paused, None),
                    SchedVcpuState::Running { cpu } => (VcpuState::Running, Some(cpu)),
                    SchedVcpuState::Runnable => (VcpuState::Running, None),
                    SchedVcpuState::Blocked => (VcpuState::Blocked, None),
                };
                rows.push(VcpuSummary {
                    domain_name: name.clone(),
                    domain_id: u32::from(guest.id),
                    vcpu: vcpu.id,
                    cpu: cpu.or(status.cpu),
                    state,
                    cpu_time_ns: status.run_ns,
                    affinity: status.affinity.to_string(),
                });
            }
        }
        Ok(rows)
    }

    fn pin_vcpu(&mut self, word: &str, vcpu: Option<u32>, cpus: &basalt_shell::CpuSet) -> Result<(), String> {
        let id = resolve_guest(word, "pin the vCPUs of")?;
        let guest = domain::get(id).ok_or_else(|| format!("no domain '{word}'"))?;
        let affinity = CpuSet::parse(&cpus.to_string()).map_err(|error| format!("bad CPU list: {error}"))?;
        if affinity.intersection(&CpuSet::first(physical_cpus())).is_empty() {
            return Err(format!("CPU list '{cpus}' names no CPU of this machine (0-{})", physical_cpus() - 1));
        }
        let targets: Vec<u32> = match vcpu {
            Some(index) if index as usize >= guest.vcpus.len() => {
                return Err(format!("domain {id} has no vCPU {index}"));
            }
            Some(index) => alloc::vec![index],
            None => guest.vcpus.iter().map(|vcpu| vcpu.id).collect(),
        };
        basalt_kernel::domain::run::with_scheduler(|scheduler| {
            targets.iter().try_for_each(|&vcpu| scheduler.set_affinity(VcpuKey { domain: id, vcpu }, affinity))
        })
        .unwrap_or(Ok(()))
        .map_err(|error| error.to_string())
    }

    fn sched_credit(&self, word: Option<&str>) -> Result<Vec<SchedCreditEntry>, String> {
        let ids: Vec<u16> = match word {
            Some(word) => alloc::vec![resolve(word)?],
            None => core::iter::once(0).chain(domain::all().iter().map(|guest| guest.id)).collect(),
        };
        Ok(ids
            .into_iter()
            .map(|id| {
                let params = basalt_kernel::domain::run::with_scheduler(|scheduler| scheduler.domain_params(id))
                    .flatten()
                    .unwrap_or(DomainParams { weight: basalt_kernel::sched::DEFAULT_WEIGHT, cap: 0 });
                let name = match id {
                    0 => "Domain-0".to_string(),
                    _ => domain::get(id).map(|guest| guest.name.lock().clone()).unwrap_or_default(),
                };
                SchedCreditEntry { name, id: u32::from(id), weight: u32::from(params.weight), cap: params.cap }
            })
            .collect())
    }

    fn set_sched_credit(&mut self, word: &str, weight: Option<u32>, cap: Option<u32>) -> Result<(), String> {
        let id = resolve_guest(word, "change the scheduling of")?;
        basalt_kernel::domain::run::with_scheduler(|scheduler| {
            if let Some(weight) = weight {
                scheduler.set_weight(id, u16::try_from(weight).unwrap_or(u16::MAX))?;
            }
            if let Some(cap) = cap {
                scheduler.set_cap(id, cap)?;
            }
            Ok(())
        })
        .unwrap_or(Ok(()))
        .map_err(|error: basalt_kernel::sched::SchedError| error.to_string())
    }

    fn attach_console(&mut self, word: &str) -> Result<(), String> {
        let id = resolve_guest(word, "attach to the console of")?;
        attach(id)
    }
}

/// A guest asked through xenstore to shut down or reboot, and when it is stopped if
/// it has not by then.
struct PendingStop {
    domain: u16,
    code: u32,
    deadline_ns: u64,
}

static PENDING_STOPS: Mutex<Vec<PendingStop>> = Mutex::new(Vec::new());

/// `shutdown`/`reboot DOMAIN`: a guest that said it acts on `control/shutdown`
/// (Linux writes `control/feature-poweroff`) is asked there, and stopped with that
/// reason if it is still running after the timeout (default 60 s); any other guest is
/// stopped at once. Either way the config's on_poweroff/on_reboot action follows, as
/// if the guest had asked.
fn request_stop(id: u16, code: u32, timeout_seconds: Option<u32>) -> Result<(), String> {
    let guest = domain::get(id).ok_or_else(|| format!("no domain {id}"))?;
    match guest.life() {
        LifeState::Active if crate::dom0::understands_shutdown(id) => {
            crate::dom0::request_shutdown(id, code == basalt_xen_abi::sched::SHUTDOWN_reboot)?;
            let timeout = u64::from(timeout_seconds.unwrap_or(basalt_shell::domains::DEFAULT_STOP_TIMEOUT_SECONDS));
            let deadline_ns = time::uptime_ns().saturating_add(timeout * 1_000_000_000);
            let mut pending = PENDING_STOPS.lock();
            pending.retain(|stop| stop.domain != id);
            pending.push(PendingStop { domain: id, code, deadline_ns });
            Ok(())
        }
        LifeState::Active | LifeState::Paused => {
            domain::stop(&guest, StopReason::Shutdown(code));
            Ok(())
        }
        _ => Err(format!("domain {id} is not running")),
    }
}

/// Stops guests that did not act on a shutdown request in time.
fn expire_stop_requests() {
    let now = time::uptime_ns();
    let mut expired: Vec<PendingStop> = Vec::new();
    {
        let mut pending = PENDING_STOPS.lock();
        pending.retain(|stop| {
            if stop.deadline_ns <= now {
                expired.push(PendingStop { domain: stop.domain, code: stop.code, deadline_ns: stop.deadline_ns });
                false
            } else {
                domain::get(stop.domain).is_some()
            }
        });
        if pending.is_empty() {
            // No capacity kept once nothing waits: `mem` reads the same as before.
            *pending = Vec::new();
        }
    }
    for stop in expired {
        let Some(guest) = domain::get(stop.domain) else { continue };
        if guest.life() == LifeState::Active || guest.life() == LifeState::Paused {
            basalt_kernel::warn!(
                "domain {} did not {} in time; stopping it",
                stop.domain,
                domain::shutdown_reason_name(stop.code)
            );
            domain::stop(&guest, StopReason::Shutdown(stop.code));
        }
    }
}

/// dom0's life-cycle service: applies on_poweroff / on_reboot / on_crash to domains
/// that stopped. Called whenever the bootstrap CPU waits for input.
pub fn service() {
    expire_stop_requests();
    for event in domain::take_events() {
        let reason = match &event.reason {
            StopReason::Shutdown(code) => ShutdownReason::from_code(*code).unwrap_or(ShutdownReason::Crash),
            StopReason::Crashed(_) => ShutdownReason::Crash,
        };
        let Some(action) = with_manager(|manager| manager.action_for(event.domain, reason)) else { continue };
        let result = match action {
            LifecycleAction::Destroy => {
                with_manager(|manager| manager.destroy(&mut Host, event.domain)).map_err(|error| error.to_string())
            }
            LifecycleAction::Restart => with_manager(|manager| manager.restart(&Modules, &mut Host, event.domain))
                .map(|created| {
                    basalt_kernel::info!(
                        "domain {} ({}) restarted as domain {}",
                        event.domain,
                        created.name,
                        created.domid
                    )
                })
                .map_err(|error| error.to_string()),
            LifecycleAction::Preserve => Ok(()),
        };
        if let Err(error) = result {
            basalt_kernel::warn!("domain {}: {} failed: {error}", event.domain, action.name());
        }
    }
}

/// Work the bootstrap CPU does while it waits for the operator: life-cycle actions,
/// then one guest time slice. Returns true if it did something (so the caller should
/// not halt).
pub fn idle_work() -> bool {
    service();
    let served = crate::dom0::service();
    domain::run::run_once() || served
}

/// Ctrl-] ends `console`.
const ESCAPE: u8 = 0x1d;
/// Writes guest output to the serial line with bare `\n` turned into `\r\n`.
fn write_guest_output(bytes: &[u8], previous: &mut u8) {
    let mut start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        if byte == b'\n' && *previous != b'\r' {
            serial::write_bytes(&bytes[start..index]);
            serial::write_bytes(b"\r\n");
            start = index + 1;
        }
        *previous = byte;
    }
    serial::write_bytes(&bytes[start..]);
}

/// `console DOMAIN`: replays the kept output, then forwards typed bytes to the guest
/// and its output to the terminal until Ctrl-] (or the domain goes away).
fn attach(id: u16) -> Result<(), String> {
    let guest = domain::get(id).ok_or_else(|| format!("no domain {id}"))?;
    let name = guest.name.lock().clone();
    serial::write_bytes(format!("Connected to domain {id} ({name}). Escape character is '^]'.\r\n").as_bytes());
    let (history, lost) = guest.console.lock().read_since(0);
    if lost > 0 {
        serial::write_bytes(format!("[{lost} earlier bytes not kept]\r\n").as_bytes());
    }
    let mut previous = 0u8;
    write_guest_output(&history, &mut previous);
    let mut offset = guest.console.lock().written();
    // Held for the whole attachment: when the domain ends (its own poweroff, destroyed
    // by its on_poweroff action meanwhile) its last output is still here to show.
    let mut late_answer = LateAnswerFilter::new(time::uptime_ns());
    let mut forward = |bytes: &[u8]| {
        // A domain that went away is noticed below.
        let _ = domain::console_input(id, bytes);
    };
    loop {
        let mut did_something = false;
        while let Some(byte) = serial::read_byte() {
            did_something = true;
            if byte == ESCAPE {
                serial::write_bytes(b"\r\n");
                return Ok(());
            }
            late_answer.feed(byte, time::uptime_ns(), &mut forward);
        }
        late_answer.expire(time::uptime_ns(), &mut forward);
        let gone = domain::get(id).is_none();
        basalt_kernel::console::flush_serial();
        let (output, _) = guest.console.lock().read_since(offset);
        if !output.is_empty() {
            offset += output.len() as u64;
            write_guest_output(&output, &mut previous);
            did_something = true;
        }
        if gone {
            serial::write_bytes(format!("\r\n[domain {id} is gone]\r\n").as_bytes());
            return Ok(());
        }
        if !idle_work() && !did_something {
            basalt_kernel::cpu::kick::idle_halt();
        }
    }
}
