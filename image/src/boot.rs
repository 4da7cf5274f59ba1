//! Bringing the machine up, in order, and what was learned on the way ([`Machine`]).

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use basalt_kernel::acpi::tables::{self, AcpiTables, Rsdp};
use basalt_kernel::arch::{entry, gdt, idt, instructions, trap};
use basalt_kernel::boot::cmdline::{self, ConsoleSelection};
use basalt_kernel::console::{self, fbtext, framebuffer, serial};
use basalt_kernel::cpu::{self, identify::CpuIdentity, ioapic, lapic, percpu, pic, smp, time};
use basalt_kernel::mm::frames::{find_free_range, FrameAllocator, PhysRange};
use basalt_kernel::mm::{self, heap, paging, phys_to_virt};
use basalt_kernel::symbols::SymbolTable;
use basalt_kernel::virt::Extension;
use basalt_kernel::{debug, error, info, warn};
use multiboot2::{BootInformation, BootInformationHeader, FramebufferType, MemoryAreaType};

/// Product version, shown by `version` and at boot.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Source commit the image was built from.
pub const COMMIT: &str = env!("BASALT_COMMIT");

/// What boot found out about the machine; read-only afterwards.
pub struct Machine {
    pub command_line: String,
    pub firmware: &'static str,
    pub identity: CpuIdentity,
    pub acpi: Option<AcpiTables>,
    pub memory_regions: Vec<(u64, u64, &'static str)>,
    pub usable_bytes: u64,
    pub cpus_found: u32,
}

static MACHINE: spin::Once<Machine> = spin::Once::new();

/// The machine description (after boot).
pub fn machine() -> Option<&'static Machine> {
    MACHINE.get()
}

unsafe extern "C" {
    static __kernel_start: u8;
    static __kernel_end: u8;
}

/// The multiboot2 entry point's Rust half (called from kernel/arch/entry.rs).
#[unsafe(no_mangle)]
extern "C" fn basalt_image_main(magic: u32, info_address: u32) -> ! {
    time::mark_boot();
    serial::init(115_200);
    idt::init();
    // Calibrate first so every log line carries a real timestamp.
    let tsc_khz = time::calibrate_tsc();
    if let Some(slot) = percpu::prepare(0, 0, entry::boot_stack_bounds()) {
        percpu::install(slot);
    }
    info!("Basalt {VERSION} hypervisor (commit {COMMIT}) starting");
    if magic != multiboot2::MAGIC {
        error!("not started by a multiboot2 loader (magic {magic:#x}); halting");
        instructions::halt_forever();
    }
    // SAFETY: GRUB passed the boot information's physical address; it is below 4 GiB and
    // therefore identity mapped, and nothing writes to it (its frames are reserved below).
    let boot_info = match unsafe { BootInformation::load(info_address as usize as *const BootInformationHeader) } {
        Ok(boot_info) => boot_info,
        Err(error) => {
            error!("bad multiboot2 information: {error:?}; halting");
            instructions::halt_forever();
        }
    };
    // The heap comes first: everything after it may allocate.
    let memory = set_up_memory(&boot_info);
    if let Err(error) = paging::unmap_guard_page(entry::boot_stack_guard_page()) {
        warn!("memory: no guard page under the boot stack: {error:?}");
    }
    let command_line = boot_info.command_line_tag().and_then(|tag| tag.cmdline().ok()).unwrap_or("").to_string();
    let (options, warnings) = cmdline::parse(&command_line);
    if options.com1_baud != 115_200 {
        serial::init(options.com1_baud);
    }
    console::configure(options.console, options.log_level);
    for warning in &warnings {
        warn!("command line: {warning}");
    }

    if options.console != ConsoleSelection::Com1 {
        set_up_framebuffer(&boot_info);
    }
    // The first line on the screen names the product (the screen-dump test reads it).
    info!("Basalt {VERSION} hypervisor (commit {COMMIT}), command line: {command_line}");
    for (start, end, kind) in &memory.regions {
        debug!("memory: {start:#014x}-{end:#014x} {kind}");
    }
    info!("memory: {} MiB usable, heap {} MiB", memory.usable_bytes >> 20, memory.heap_bytes >> 20);
    gdt::load_for_this_cpu(entry::boot_stack_bounds().1);
    load_symbols(&boot_info);

    let identity = cpu::identify::identify();
    info!(
        "cpu: {} {} (family {:#x} model {:#x} stepping {})",
        identity.vendor, identity.brand, identity.family, identity.model, identity.stepping
    );
    let present: Vec<&str> = identity.feature_list().into_iter().filter(|(_, on)| *on).map(|(name, _)| name).collect();
    info!("cpu: features {}", present.join(" "));
    if tsc_khz == 0 {
        warn!("time: TSC calibration failed (no PIT?); uptime will read 0");
    } else {
        info!("time: TSC {}.{:03} MHz", tsc_khz / 1000, tsc_khz % 1000);
    }

    let firmware = firmware_of(&boot_info);
    let acpi = load_acpi(&boot_info);
    pic::remap_and_mask();
    set_up_interrupts(acpi.as_ref(), identity.x2apic);

    // Only CPUs the firmware marks enabled: "online capable" entries are hot-plug slots
    // that are usually empty, and each absent CPU would cost a one-second start timeout.
    let mut apic_ids: Vec<u32> = acpi
        .as_ref()
        .and_then(|a| a.madt.as_ref())
        .map(|madt| madt.cpus.iter().filter(|c| c.enabled).map(|c| c.apic_id).collect())
        .unwrap_or_default();
    if apic_ids.is_empty() {
        apic_ids.push(lapic::id());
    }
    let cpus_found = apic_ids.len() as u32;
    let max_cpus = options.max_cpus.map_or(percpu::MAX_CPUS, |n| n as usize);
    crate::modules::record(&boot_info);
    set_up_virtualization(&identity, cpus_found.min(max_cpus as u32));
    start_other_cpus(&apic_ids, max_cpus);
    info!("smp: {} CPUs found, {} online", cpus_found, percpu::online_count());

    MACHINE.call_once(|| Machine {
        command_line,
        firmware,
        identity,
        acpi,
        memory_regions: memory.regions,
        usable_bytes: memory.usable_bytes,
        cpus_found,
    });
    // After the machine description is recorded: the PCI walk reads the ACPI MCFG.
    crate::storage::init();
    // Interrupts on for good: the timer ticks and serial input arrives.
    x86_64::instructions::interrupts::enable();
    info!("boot complete in {} ms", time::uptime_ns() / 1_000_000);
    crate::appliance::run_shell()
}

struct MemorySetup {
    regions: Vec<(u64, u64, &'static str)>,
    usable_bytes: u64,
    heap_bytes: u64,
}

fn area_kind(typ: MemoryAreaType) -> &'static str {
    match typ {
        MemoryAreaType::Available => "usable",
        MemoryAreaType::Reserved => "reserved",
        MemoryAreaType::AcpiAvailable => "ACPI reclaimable",
        MemoryAreaType::ReservedHibernate => "ACPI NVS",
        MemoryAreaType::Defective => "defective",
        _ => "other",
    }
}

fn set_up_memory(boot_info: &BootInformation<'_>) -> MemorySetup {
    let Some(map) = boot_info.memory_map_tag() else {
        error!("no memory map from the boot loader; halting");
        instructions::halt_forever();
    };
    // The heap does not exist yet: collect into fixed arrays first.
    let mut usable_ranges = [PhysRange { start: 0, end: 0 }; 128];
    let mut usable_count = 0;
    let mut usable_bytes = 0u64;
    for area in map.memory_areas() {
        if area.typ() == MemoryAreaType::Available && usable_count < usable_ranges.len() {
            usable_ranges[usable_count] = PhysRange { start: area.start_address(), end: area.end_address() };
            usable_count += 1;
            usable_bytes += area.size();
        }
    }
    let (kernel_start, kernel_end) = (&raw const __kernel_start as u64, &raw const __kernel_end as u64);
    let mut reserved = [PhysRange { start: 0, end: 0 }; 40];
    let mut reserved_count = 0;
    macro_rules! reserve {
        ($range:expr) => {
            if reserved_count < reserved.len() {
                reserved[reserved_count] = $range;
                reserved_count += 1;
            }
        };
    }
    // Page 0 (real-mode IVT, BIOS data area); the rest of low memory stays usable
    // for the AP trampoline.
    reserve!(PhysRange { start: 0, end: 0x1000 });
    reserve!(PhysRange { start: kernel_start, end: kernel_end });
    reserve!(PhysRange { start: boot_info.start_address() as u64, end: boot_info.end_address() as u64 });
    for module in boot_info.module_tags() {
        reserve!(PhysRange { start: u64::from(module.start_address()), end: u64::from(module.end_address()) });
    }
    // Heap: 1/16 of usable RAM, 16..=256 MiB, from usable RAM below 4 GiB (already mapped).
    let heap_size = (usable_bytes / 16).clamp(16 << 20, 256 << 20) & !0xfff;
    let heap_base =
        find_free_range(&usable_ranges[..usable_count], &reserved[..reserved_count], heap_size, 2 << 20, 4 << 30);
    let Some(heap_base) = heap_base else {
        error!("no room for a {} MiB heap below 4 GiB; halting", heap_size >> 20);
        instructions::halt_forever();
    };
    // SAFETY: [heap_base, +heap_size) is usable RAM, below 4 GiB (direct mapped), and
    // overlaps nothing reserved; it is reserved from the frame allocator just below.
    unsafe { heap::init(phys_to_virt(heap_base), heap_size) };
    reserve!(PhysRange { start: heap_base, end: heap_base + heap_size });
    let allocator = FrameAllocator::new(&usable_ranges[..usable_count], &reserved[..reserved_count]);
    mm::set_frame_allocator(allocator);
    let highest = usable_ranges[..usable_count].iter().map(|r| r.end).max().unwrap_or(0);
    if highest > paging::mapped_limit() {
        let mapped = paging::extend_direct_map(highest);
        if mapped < highest {
            warn!("memory: direct map stops at {mapped:#x}; RAM above it is unused");
        }
    }
    let regions = map
        .memory_areas()
        .iter()
        .map(|area| (area.start_address(), area.end_address(), area_kind(area.typ())))
        .collect();
    MemorySetup { regions, usable_bytes, heap_bytes: heap_size }
}

/// "UEFI" when the loader passed any EFI information, else "BIOS".
fn firmware_of(boot_info: &BootInformation<'_>) -> &'static str {
    let efi = boot_info.efi_sdt64_tag().is_some()
        || boot_info.efi_ih64_tag().is_some()
        || boot_info.efi_memory_map_tag().is_some();
    if efi {
        "UEFI"
    } else {
        "BIOS"
    }
}

fn set_up_framebuffer(boot_info: &BootInformation<'_>) {
    let Some(Ok(tag)) = boot_info.framebuffer_tag() else {
        // Legacy BIOS machines left in text mode by the loader still show the VGA text
        // buffer; writing it is harmless if they are not.
        if firmware_of(boot_info) == "BIOS" && framebuffer::init_text_mode(0xb8000, 80, 25, 160) {
            info!("framebuffer: none from the boot loader; using the VGA text screen (80x25 at 0xb8000)");
        }
        return;
    };
    let (red, green, blue) = match tag.buffer_type() {
        Ok(FramebufferType::RGB { red, green, blue }) => (red, green, blue),
        Ok(FramebufferType::Text) => {
            // Width and height count characters; each cell is two bytes.
            let (columns, rows) = (tag.width() as usize, tag.height() as usize);
            if framebuffer::init_text_mode(tag.address(), columns, rows, tag.pitch() as usize) {
                info!("framebuffer: {columns}x{rows} text mode at {:#x}", tag.address());
            } else {
                warn!("framebuffer: unusable text mode {columns}x{rows}");
            }
            return;
        }
        Ok(FramebufferType::Indexed { palette }) if tag.bpp() == 8 => {
            let palette: Vec<(u8, u8, u8)> = palette.iter().map(|c| (c.red, c.green, c.blue)).collect();
            let foreground = fbtext::nearest_palette_index(&palette, fbtext::DEFAULT_FOREGROUND);
            let background = fbtext::nearest_palette_index(&palette, fbtext::DEFAULT_BACKGROUND);
            let info = framebuffer::FramebufferInfo {
                physical_address: tag.address(),
                width: tag.width() as usize,
                height: tag.height() as usize,
                pitch: tag.pitch() as usize,
                format: fbtext::PixelFormat::XRGB8888, // unused by indexed consoles
            };
            match (foreground, background) {
                (Some(foreground), Some(background)) if framebuffer::init_indexed(info, foreground, background) => {
                    info!("framebuffer: {}x{}x8 indexed at {:#x}", info.width, info.height, info.physical_address);
                }
                _ => warn!("framebuffer: unusable indexed mode {}x{}", info.width, info.height),
            }
            return;
        }
        _ => {
            debug!(
                "framebuffer: {}x{}x{} is a mode the text console cannot draw on; log stays on serial",
                tag.width(),
                tag.height(),
                tag.bpp()
            );
            return;
        }
    };
    let format = fbtext::PixelFormat {
        bytes_per_pixel: tag.bpp().div_ceil(8),
        red_shift: red.position,
        red_bits: red.size,
        green_shift: green.position,
        green_bits: green.size,
        blue_shift: blue.position,
        blue_bits: blue.size,
    };
    let info = framebuffer::FramebufferInfo {
        physical_address: tag.address(),
        width: tag.width() as usize,
        height: tag.height() as usize,
        pitch: tag.pitch() as usize,
        format,
    };
    if framebuffer::init(info) {
        info!("framebuffer: {}x{}x{} at {:#x}", info.width, info.height, tag.bpp(), info.physical_address);
    } else {
        warn!("framebuffer: unusable geometry {}x{}x{}", info.width, info.height, tag.bpp());
    }
}

fn load_symbols(boot_info: &BootInformation<'_>) {
    let Some(module) = boot_info.module_tags().find(|m| m.cmdline().is_ok_and(|c| c.contains("basalt-symbols"))) else {
        warn!("symbols: no 'basalt-symbols' module; backtraces show addresses only");
        return;
    };
    let start = u64::from(module.start_address());
    let length = u64::from(module.module_size());
    // SAFETY: GRUB loaded the module at [start, start+length) below 4 GiB (direct
    // mapped); its frames are reserved for ever and never written.
    let bytes: &'static [u8] =
        unsafe { core::slice::from_raw_parts(phys_to_virt(start) as *const u8, length as usize) };
    match SymbolTable::parse(bytes) {
        Ok(table) => {
            info!("symbols: {} hypervisor symbols loaded", table.len());
            trap::set_symbols(table);
        }
        Err(error) => warn!("symbols: module unusable: {error:?}"),
    }
}

fn load_acpi(boot_info: &BootInformation<'_>) -> Option<AcpiTables> {
    // The multiboot2 RSDP tags hold a copy of the RSDP right after their 8-byte header.
    let tag_copy = |tag: *const u8, length: usize| {
        // SAFETY: the tag lies inside the boot information, which the loader sized to
        // hold its header plus the RSDP copy (20 bytes for v1, 36 for v2).
        let bytes = unsafe { core::slice::from_raw_parts(tag.add(8), length) };
        Rsdp::parse(bytes).ok()
    };
    let from_tags = boot_info
        .rsdp_v2_tag()
        .and_then(|tag| tag_copy((tag as *const multiboot2::RsdpV2Tag).cast(), 36))
        .or_else(|| boot_info.rsdp_v1_tag().and_then(|tag| tag_copy((tag as *const multiboot2::RsdpV1Tag).cast(), 20)));
    let rsdp = from_tags.or_else(basalt_kernel::acpi::scan_bios_area_for_rsdp);
    let Some(rsdp) = rsdp else {
        warn!("acpi: no RSDP; one CPU, no ACPI power-off");
        return None;
    };
    match tables::load(&basalt_kernel::acpi::DirectMapMemory, &rsdp) {
        Ok(found) => {
            let names: Vec<String> =
                found.tables.iter().map(|t| String::from_utf8_lossy(&t.signature).into_owned()).collect();
            info!("acpi: revision {} tables {}", rsdp.revision, names.join(" "));
            for skipped in &found.skipped {
                warn!(
                    "acpi: skipped {} at {:#x}: {}",
                    String::from_utf8_lossy(&skipped.signature),
                    skipped.address,
                    skipped.reason
                );
            }
            if let Some(madt) = &found.madt {
                info!(
                    "acpi: MADT {} CPUs, {} IOAPICs, {} overrides",
                    madt.cpus.len(),
                    madt.ioapics.len(),
                    madt.overrides.len()
                );
            }
            if found.fadt.is_none() || found.s5.is_none() {
                warn!("acpi: no FADT or \\_S5; power-off falls back to emulator ports");
            }
            Some(found)
        }
        Err(error) => {
            warn!("acpi: tables unreadable: {error}");
            None
        }
    }
}

fn serial_interrupt(_frame: &mut trap::TrapFrame) {
    serial::handle_interrupt();
    lapic::end_of_interrupt();
}

fn set_up_interrupts(acpi: Option<&AcpiTables>, cpu_has_x2apic: bool) {
    if let Some(madt) = acpi.and_then(|a| a.madt.as_ref()) {
        lapic::set_base(madt.local_apic_address);
    }
    lapic::select_mode(cpu_has_x2apic);
    lapic::enable_this_cpu();
    info!("apic: local APICs in {} mode", if lapic::is_x2apic() { "x2APIC" } else { "xAPIC" });
    trap::register(cpu::VECTOR_TIMER, lapic::handle_timer);
    trap::register(cpu::VECTOR_SPURIOUS, lapic::handle_spurious);
    trap::register(cpu::VECTOR_SERIAL, serial_interrupt);
    trap::register(cpu::VECTOR_HALT_IPI, |_| instructions::halt_forever());
    trap::register(cpu::VECTOR_FAULT_IPI, cpu::diagnostics::handle_fault_ipi);
    let bsp_apic = lapic::id();
    percpu::current().apic_id.store(bsp_apic, core::sync::atomic::Ordering::Relaxed);
    cpu::dom0_wake::init_on_dom0_cpu();
    cpu::kick::init();
    lapic::calibrate_timer();
    lapic::start_timer_this_cpu();
    match acpi
        .and_then(|a| a.madt.as_ref())
        .and_then(|madt| ioapic::route_isa_irq(madt, serial::COM1_IRQ, cpu::VECTOR_SERIAL, bsp_apic))
    {
        Some(gsi) => {
            serial::enable_receive_interrupts();
            debug!("serial: COM1 receive interrupt on GSI {gsi}");
        }
        None => warn!("serial: no IOAPIC route for COM1; input is polled"),
    }
}

fn start_other_cpus(apic_ids: &[u32], max_cpus: usize) {
    if apic_ids.len() <= 1 || max_cpus <= 1 {
        return;
    }
    // In xAPIC mode IPIs carry an 8-bit destination (0xff is broadcast).
    let (reachable, unreachable): (Vec<u32>, Vec<u32>) = apic_ids.iter().partition(|&&id| lapic::can_address(id));
    if !unreachable.is_empty() {
        warn!("smp: {} CPUs have APIC ids above 254, which xAPIC cannot address; left offline", unreachable.len());
    }
    let apic_ids = reachable.as_slice();
    let Some(page) = mm::with_frames(|frames| frames.allocate_below(0x10_0000)).flatten() else {
        warn!("smp: no free page below 1 MiB for the AP trampoline; running on one CPU");
        return;
    };
    let report = smp::start_application_processors(apic_ids, page, ap_main, max_cpus);
    for apic_id in &report.failed {
        warn!("smp: CPU with APIC id {apic_id} did not start");
    }
    if report.skipped > 0 {
        info!("smp: {} CPUs left offline (maxcpus)", report.skipped);
    }
}

/// Where each application processor arrives in Rust, on its own stack.
extern "C" fn ap_main(cpu_index: u64) -> ! {
    let Some(slot) = percpu::all().nth(cpu_index as usize) else { instructions::halt_forever() };
    idt::load();
    percpu::install(slot);
    smp::signal_started();
    gdt::load_for_this_cpu(slot.stack_top.load(core::sync::atomic::Ordering::Relaxed));
    lapic::enable_this_cpu();
    lapic::start_timer_this_cpu();
    debug!("smp: CPU {cpu_index} (APIC id {}) online", lapic::id());
    if basalt_kernel::domain::virtualization_ready() {
        basalt_kernel::arch::fpu::enable_this_cpu();
        if let Err(error) = basalt_kernel::virt::enable_this_cpu() {
            warn!("virt: CPU {cpu_index} cannot run guests: {error}");
        }
    }
    x86_64::instructions::interrupts::enable();
    basalt_kernel::domain::run::guest_loop()
}

/// Picks the virtualization extension and turns it on for the bootstrap CPU; the
/// application processors turn it on for themselves. A machine without one still
/// boots to the shell; `create` then says it cannot run guests.
fn set_up_virtualization(identity: &CpuIdentity, cpus: u32) {
    basalt_kernel::domain::run::init_scheduler(cpus.max(1));
    // Tables made on first use would otherwise be charged to the first domain.
    basalt_kernel::virt::decode::prepare();
    crate::domains::init();
    crate::dom0::init();
    // SVM on AMD, VMX on Intel; the vendor string decides when a CPU model claims
    // both (emulators can).
    let intel = identity.vendor == "GenuineIntel";
    let choice = if identity.svm && identity.npt && !(intel && identity.vmx) {
        Some(Extension::AmdSvm)
    } else if identity.vmx {
        Some(Extension::IntelVmx)
    } else {
        None
    };
    let ready = match choice {
        Some(extension) => {
            basalt_kernel::virt::set_extension(extension);
            basalt_kernel::arch::fpu::enable_this_cpu();
            match basalt_kernel::virt::enable_this_cpu() {
                Ok(()) => {
                    let detail = match extension {
                        Extension::AmdSvm if !identity.nrip_save => " (no nRIP save: exits decode instructions)",
                        _ => "",
                    };
                    info!("virt: {}{detail}", extension.name());
                    true
                }
                Err(error) => {
                    warn!("virt: {} unusable: {error}; guests cannot run", extension.name());
                    false
                }
            }
        }
        None => {
            warn!("virt: no hardware virtualization (AMD SVM with nested paging, Intel VMX); guests cannot run");
            false
        }
    };
    basalt_kernel::domain::init(ready);
}
