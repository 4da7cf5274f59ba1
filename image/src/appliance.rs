//! The appliance behind the shell: the shell's [`System`] implemented with the
//! hypervisor, and its [`SerialLine`] on COM1. Command tables of every subsystem are
//! gathered here into the one registry.

use crate::boot::{machine, COMMIT, VERSION};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use basalt_kernel::arch::instructions;
use basalt_kernel::console::logring::Level;
use basalt_kernel::console::{self, serial};
use basalt_kernel::cpu::{percpu, time};
use basalt_kernel::mm::{self, frames::FRAME_SIZE, heap};
use basalt_kernel::{info, power};
use basalt_shell::{
    builtin_commands, domain_commands, CpuStatus, LogLevel, LogLine, MemoryInfo, MemoryRegion, PlatformInfo, Registry,
    SerialLine, Shell, System, VersionInfo,
};
use core::sync::atomic::Ordering;

/// The running appliance as the shell sees it.
pub struct Appliance;

fn shell_level(level: Level) -> LogLevel {
    match level {
        Level::Error => LogLevel::Error,
        Level::Warn => LogLevel::Warn,
        Level::Info => LogLevel::Info,
        Level::Debug => LogLevel::Debug,
        Level::Trace => LogLevel::Trace,
    }
}

impl System for Appliance {
    fn version(&self) -> VersionInfo {
        VersionInfo {
            product: "Basalt",
            version: VERSION,
            commit: COMMIT,
            build_profile: if cfg!(debug_assertions) { "debug" } else { "release" },
        }
    }

    fn platform(&self) -> PlatformInfo {
        // The shell starts after boot has published the machine description.
        let identity = machine().map(|m| m.identity.clone()).unwrap_or_default();
        PlatformInfo {
            cpu_vendor: identity.vendor.clone(),
            cpu_model: identity.brand.clone(),
            family: identity.family,
            model: identity.model,
            stepping: identity.stepping,
            cpus_found: machine().map_or(1, |m| m.cpus_found),
            cpus_online: percpu::online_count(),
            tsc_khz: time::tsc_khz(),
            features: identity.feature_list(),
            guests: if basalt_kernel::domain::virtualization_ready() {
                basalt_kernel::virt::extension().map_or("unknown", |extension| extension.name()).to_string()
            } else {
                "cannot run guests: no usable AMD SVM with nested paging or Intel VMX with EPT".to_string()
            },
            firmware: machine().map_or("unknown", |m| m.firmware).to_string(),
            cmdline: machine().map(|m| m.command_line.clone()).unwrap_or_default(),
        }
    }

    fn memory(&self) -> MemoryInfo {
        let (total_frames, free_frames) = mm::frame_allocator_stats();
        let (heap_total, heap_used) = heap::usage();
        let regions = machine()
            .map(|m| m.memory_regions.iter().map(|&(start, end, kind)| MemoryRegion { start, end, kind }).collect())
            .unwrap_or_default();
        MemoryInfo {
            total_bytes: machine().map_or(total_frames * FRAME_SIZE, |m| m.usable_bytes),
            free_bytes: free_frames * FRAME_SIZE + (heap_total - heap_used),
            heap_total_bytes: heap_total,
            heap_used_bytes: heap_used,
            regions,
        }
    }

    fn cpus(&self) -> Vec<CpuStatus> {
        percpu::all()
            .map(|slot| CpuStatus {
                index: slot.index.load(Ordering::Relaxed),
                apic_id: slot.apic_id.load(Ordering::Relaxed),
                online: slot.online.load(Ordering::Acquire),
                bootstrap: slot.index.load(Ordering::Relaxed) == 0,
                timer_ticks: slot.timer_ticks.load(Ordering::Relaxed),
            })
            .collect()
    }

    fn uptime_ns(&self) -> u64 {
        time::uptime_ns()
    }

    fn dmesg(&self, sink: &mut dyn FnMut(LogLine<'_>)) {
        console::dmesg(|record| {
            sink(LogLine {
                seq: record.seq,
                timestamp_ns: record.timestamp_ns,
                level: shell_level(record.level),
                text: record.text,
            })
        });
    }

    fn reboot(&mut self) -> Result<(), String> {
        info!("reboot: requested from the shell");
        power::reboot(machine().and_then(|m| m.acpi.as_ref()).and_then(|a| a.fadt.as_ref()))
    }

    fn poweroff(&mut self) -> Result<(), String> {
        let acpi = machine().and_then(|m| m.acpi.as_ref());
        info!("poweroff: ACPI S5");
        let error = power::poweroff(acpi.and_then(|a| a.fadt.as_ref()), acpi.and_then(|a| a.s5.as_ref()));
        Err(error.to_string())
    }
}

/// COM1 as the shell's line: input from the receive ring, output polled.
struct Com1;

impl SerialLine for Com1 {
    fn read_byte(&mut self, timeout_ms: u32) -> Option<u8> {
        let deadline = time::uptime_ns().saturating_add(u64::from(timeout_ms) * 1_000_000);
        loop {
            // The line editor waits for a key, so its output is complete: show the log
            // lines recorded meanwhile (on any CPU) now.
            console::flush_serial();
            if let Some(byte) = serial::read_byte() {
                return Some(byte);
            }
            if timeout_ms == 0 || time::uptime_ns() >= deadline {
                return None;
            }
            // While the operator is quiet this CPU serves dom0 and runs guests; with
            // nothing to do, the receive interrupt or the 100 Hz tick ends the halt.
            if !crate::domains::idle_work() {
                basalt_kernel::cpu::kick::idle_halt();
            }
        }
    }

    fn write_bytes(&mut self, bytes: &[u8]) {
        serial::write_bytes(bytes);
    }
}

/// Runs the serial shell on this CPU for ever.
pub fn run_shell() -> ! {
    let registry = match Registry::new(&[
        builtin_commands::<Appliance>(),
        domain_commands::<Appliance>(),
        basalt_shell::appliance_commands::<Appliance>(),
        basalt_shell::xenstore_commands::<Appliance>(),
        basalt_shell::storage::storage_commands::<Appliance>(),
        basalt_shell::debugger_commands::<Appliance>(),
        crate::diagnostics::DIAGNOSTIC_COMMANDS,
    ]) {
        Ok(registry) => registry,
        Err(error) => {
            basalt_kernel::error!("shell: command table rejected: {error:?}");
            instructions::halt_forever();
        }
    };
    // From here on the shell owns COM1: log lines wait for its safe points.
    console::defer_serial();
    Shell::new(registry).run(&mut Appliance, &mut Com1)
}
