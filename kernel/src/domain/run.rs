//! The per-CPU guest loop: pick a vCPU from the credit scheduler, run it for its time
//! slice (exit by exit), put it back with what it is waiting for.
//!
//! Every CPU runs [`run_once`] — the application processors in a loop (halting when
//! nothing is runnable), the bootstrap processor from the shell's idle wait, so the
//! built-in dom0's work (the shell, life-cycle actions) and guest vCPUs share it.
//! Preemption comes from the 100 Hz local APIC tick: physical interrupts always exit
//! the guest, and the slice is checked after every exit.
//!
//! Wake-ups (timer deadlines, console input) go to the scheduler, which remembers one
//! that arrives while the vCPU is still running, so a wake-up racing with a block is
//! never lost; a vCPU about to block also checks its own wake conditions first.

use super::{get, stop, Domain, LifeState, Vcpu, VcpuRun};
use crate::arch::instructions;
use crate::cpu::time;
use crate::sched::{AfterRun, CreditScheduler, VcpuKey};
use crate::virt::exit::{handle_exit, Disposition};
use crate::virt::{GuestGprs, StartState};
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use spin::Mutex;

static SCHEDULER: Mutex<Option<CreditScheduler>> = Mutex::new(None);
/// Armed one-shot timers: (deadline in ns since boot, vCPU).
static TIMERS: Mutex<Vec<(u64, VcpuKey)>> = Mutex::new(Vec::new());

/// Creates the scheduler for `physical_cpus` CPUs (once, at boot).
pub fn init_scheduler(physical_cpus: u32) {
    instructions::without_interrupts(|| {
        *SCHEDULER.lock() = Some(CreditScheduler::new(physical_cpus));
        TIMERS.lock().reserve(256);
    });
}

/// Runs `f` with the scheduler (no-op before [`init_scheduler`]).
pub fn with_scheduler<R>(f: impl FnOnce(&mut CreditScheduler) -> R) -> Option<R> {
    instructions::without_interrupts(|| SCHEDULER.lock().as_mut().map(f))
}

/// Arms (or with `None` cancels) a vCPU's one-shot timer.
pub fn set_timer(key: VcpuKey, deadline_ns: Option<u64>) {
    instructions::without_interrupts(|| {
        let mut timers = TIMERS.lock();
        timers.retain(|(_, armed)| *armed != key);
        if let Some(deadline) = deadline_ns {
            timers.push((deadline, key));
        }
    });
}

fn fire_timers(now: u64) {
    let expired: Vec<VcpuKey> = instructions::without_interrupts(|| {
        let mut timers = TIMERS.lock();
        if !timers.iter().any(|(deadline, _)| *deadline <= now) {
            return Vec::new();
        }
        let expired = timers.iter().filter(|(deadline, _)| *deadline <= now).map(|(_, key)| *key).collect();
        timers.retain(|(deadline, _)| *deadline > now);
        expired
    });
    for key in expired {
        if let Some(domain) = get(key.domain) {
            if let Some(vcpu) = domain.vcpus.get(key.vcpu as usize) {
                vcpu.control.lock().timer_deadline_ns = None;
                super::xen::raise_virq(&domain, vcpu.id, basalt_xen_abi::event_channel::VIRQ_TIMER);
                super::wake(&domain, vcpu);
            }
        }
    }
}

/// Runs one scheduling decision on the calling CPU. Returns false if nothing was
/// runnable (the caller may halt until the next interrupt).
pub fn run_once() -> bool {
    let cpu = crate::cpu::percpu::current_index();
    if !crate::virt::is_enabled_on(cpu) {
        return false;
    }
    let now = time::uptime_ns();
    fire_timers(now);
    let Some((key, slice_ns)) = with_scheduler(|scheduler| scheduler.pick_next(cpu, now)).flatten() else {
        return false;
    };
    let Some(domain) = get(key.domain) else {
        with_scheduler(|scheduler| scheduler.put_back(key, cpu, 0, now, AfterRun::Offline));
        return true;
    };
    domain.running_vcpus.fetch_add(1, Ordering::SeqCst);
    let outcome = match domain.vcpus.get(key.vcpu as usize) {
        Some(vcpu) if *domain.life.lock() == LifeState::Active => run_slice(&domain, vcpu, now + slice_ns),
        // Paused, stopped or dying: the scheduler's domain state keeps it off the CPUs.
        _ => AfterRun::Runnable,
    };
    let end = time::uptime_ns();
    with_scheduler(|scheduler| scheduler.put_back(key, cpu, end.saturating_sub(now), end, outcome));
    domain.running_vcpus.fetch_sub(1, Ordering::SeqCst);
    true
}

/// The general-purpose registers a start state defines (the backend loads the rest).
fn start_gprs(start: &StartState) -> GuestGprs {
    match start {
        StartState::Protected32(regs) => GuestGprs {
            rax: u64::from(regs.eax),
            rcx: u64::from(regs.ecx),
            rdx: u64::from(regs.edx),
            rbx: u64::from(regs.ebx),
            rbp: u64::from(regs.ebp),
            rsi: u64::from(regs.esi),
            rdi: u64::from(regs.edi),
            ..GuestGprs::default()
        },
        StartState::Long64(regs) => GuestGprs {
            rax: regs.rax,
            rcx: regs.rcx,
            rdx: regs.rdx,
            rbx: regs.rbx,
            rbp: regs.rbp,
            rsi: regs.rsi,
            rdi: regs.rdi,
            ..GuestGprs::default()
        },
        StartState::StartupIpi { .. } => GuestGprs::default(),
    }
}

fn run_slice(domain: &Domain, vcpu: &Vcpu, deadline_ns: u64) -> AfterRun {
    let mut run = vcpu.run.lock();
    let pending = vcpu.control.lock().pending_start.take();
    if let Some(start) = pending {
        if let Err(error) = run.backend.set_start_state(&start) {
            stop(domain, super::StopReason::Crashed(alloc::format!("vCPU {} start state rejected: {error}", vcpu.id)));
            return AfterRun::Runnable;
        }
        run.gprs = start_gprs(&start);
        // A (re)started vCPU begins with clean x87/SSE state, as after INIT.
        *run.fpu = crate::arch::fpu::FpuState::default();
        run.breakpoints = Default::default();
    }
    super::xen::refresh_time(domain, vcpu.id);
    // The guest's x87/SSE registers and breakpoint addresses are live for the whole
    // slice: nothing the hypervisor runs between exits touches them.
    run.fpu.load();
    run.breakpoints.load();
    let outcome = run_exits(domain, vcpu, &mut run, deadline_ns);
    run.backend.end_slice();
    run.breakpoints.save();
    run.fpu.save();
    outcome
}

fn run_exits(domain: &Domain, vcpu: &Vcpu, run: &mut VcpuRun, deadline_ns: u64) -> AfterRun {
    loop {
        if domain.paused.load(Ordering::Acquire) || *domain.life.lock() != LifeState::Active {
            return AfterRun::Runnable;
        }
        if !vcpu.control.lock().up {
            return AfterRun::Offline;
        }
        let VcpuRun { backend, gprs, msrs, .. } = run;
        offer_interrupt(domain, vcpu, backend.as_mut());
        let exit = backend.run(gprs);
        match handle_exit(domain, vcpu, backend.as_mut(), gprs, msrs, &exit) {
            Disposition::Continue => {}
            Disposition::Yield => return AfterRun::Runnable,
            Disposition::Block => {
                let woken = (vcpu.id == 0 && domain.has_console_input())
                    || super::xen::pending_interrupt(domain, vcpu).is_some()
                    || vcpu.control.lock().timer_deadline_ns.is_some_and(|deadline| deadline <= time::uptime_ns());
                if !woken {
                    return AfterRun::Blocked;
                }
            }
            Disposition::Offline => return AfterRun::Offline,
            Disposition::Stop(reason) => {
                stop(domain, reason);
                return AfterRun::Runnable;
            }
        }
        if time::uptime_ns() >= deadline_ns {
            return AfterRun::Runnable;
        }
    }
}

/// Injects the vCPU's next interrupt if it can take one now, or asks for an exit when
/// it can.
fn offer_interrupt(domain: &Domain, vcpu: &Vcpu, backend: &mut dyn crate::virt::VirtualCpu) {
    let Some(interrupt) = super::xen::pending_interrupt(domain, vcpu) else { return };
    if backend.interrupt_window_open() {
        let vector = match interrupt {
            super::xen::PendingInterrupt::Lapic(vector) | super::xen::PendingInterrupt::Callback(vector) => vector,
        };
        backend.inject(crate::virt::Injection::Interrupt { vector });
        super::xen::acknowledge(vcpu, interrupt);
    } else {
        backend.request_interrupt_window(true);
    }
}

/// The application processors' loop: run vCPUs, halt when there is nothing to run.
pub fn guest_loop() -> ! {
    loop {
        if !run_once() {
            crate::cpu::kick::idle_halt();
        }
    }
}
