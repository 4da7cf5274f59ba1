//! VMX operation on each CPU: the controls every vCPU uses, computed once from the
//! IA32_VMX_* capability MSRs (true controls where offered; SDM vol. 3 appendix A), the
//! shared MSR bitmap, and entering VMX operation (IA32_FEATURE_CONTROL, the CR0/CR4
//! fixed bits, a VMXON region; §24.7–24.8).

use super::*;

/// The controls every vCPU uses, computed once from the capability MSRs.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Controls {
    pub(super) revision: u32,
    pub(super) pin: u32,
    pub(super) primary: u32,
    pub(super) secondary: u32,
    pub(super) exit: u32,
    pub(super) entry: u32,
    pub(super) cr0_fixed0: u64,
    pub(super) cr0_fixed1: u64,
    pub(super) cr4_fixed0: u64,
    pub(super) cr4_fixed1: u64,
    pub(super) vpid: bool,
    /// The VMX-preemption timer counts down at the TSC rate shifted right by this
    /// (IA32_VMX_MISC bits 4:0); `None` if the CPU has no preemption timer.
    pub(super) preemption_timer_shift: Option<u32>,
    pub(super) invept_single: bool,
    pub(super) invvpid_single: bool,
}

static CONTROLS: spin::Once<Controls> = spin::Once::new();
pub(super) static MSR_BITMAP_PHYSICAL: AtomicU64 = AtomicU64::new(0);
pub(super) static NEXT_VPID: AtomicU16 = AtomicU16::new(1);
static CPU_ENABLED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static MAPS_LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// A control value the capability MSR allows: the required ones (allowed-0 bits) plus
/// `wanted`, checked against the allowed-1 bits.
fn adjust(capability: u32, wanted: u32, what: &'static str) -> Result<u32, VirtError> {
    let allowed = rdmsr(capability);
    let (must_be_one, may_be_one) = (allowed as u32, (allowed >> 32) as u32);
    let value = wanted | must_be_one;
    if value & !may_be_one != 0 {
        return Err(VirtError::Unsupported(what));
    }
    Ok(value)
}

fn compute_controls() -> Result<Controls, VirtError> {
    let basic = rdmsr(IA32_VMX_BASIC);
    let true_controls = basic & (1 << 55) != 0;
    let (pin_msr, primary_msr, exit_msr, entry_msr) = if true_controls {
        (IA32_VMX_TRUE_PINBASED_CTLS, IA32_VMX_TRUE_PROCBASED_CTLS, IA32_VMX_TRUE_EXIT_CTLS, IA32_VMX_TRUE_ENTRY_CTLS)
    } else {
        (IA32_VMX_PINBASED_CTLS, IA32_VMX_PROCBASED_CTLS, IA32_VMX_EXIT_CTLS, IA32_VMX_ENTRY_CTLS)
    };
    let primary = adjust(
        primary_msr,
        PROC_HLT_EXITING
            | PROC_MWAIT_EXITING
            | PROC_UNCONDITIONAL_IO_EXITING
            | PROC_USE_MSR_BITMAPS
            | PROC_MONITOR_EXITING
            | PROC_ACTIVATE_SECONDARY,
        "VMX processor controls (HLT/IO/MSR-bitmap exiting, secondary controls)",
    )?;
    let secondary_allowed = (rdmsr(IA32_VMX_PROCBASED_CTLS2) >> 32) as u32;
    let vpid = secondary_allowed & SECONDARY_ENABLE_VPID != 0;
    let mut secondary_wanted = SECONDARY_ENABLE_EPT | SECONDARY_UNRESTRICTED_GUEST | SECONDARY_WBINVD_EXITING;
    if vpid {
        secondary_wanted |= SECONDARY_ENABLE_VPID;
    }
    let secondary =
        adjust(IA32_VMX_PROCBASED_CTLS2, secondary_wanted, "EPT with unrestricted guest (secondary controls)")?;
    let ept_caps = rdmsr(IA32_VMX_EPT_VPID_CAP);
    // 4-level walks, write-back EPT structures, 2 MiB pages (the nested-page builder's
    // large leaves).
    let ept_needed = (1 << 6) | (1 << 14) | (1 << 16);
    if ept_caps & ept_needed != ept_needed {
        return Err(VirtError::Unsupported("EPT with 4-level walks, write-back memory and 2 MiB pages"));
    }
    // The preemption timer bounds every guest run even where an external interrupt fails
    // to cause an exit while the guest has interrupts off (seen under Bochs): a spinning
    // guest still leaves the CPU at the end of its slice.
    let preemption_timer = (rdmsr(pin_msr) >> 32) as u32 & PIN_ACTIVATE_PREEMPTION_TIMER != 0;
    let pin_wanted = PIN_EXTERNAL_INTERRUPT_EXITING
        | PIN_NMI_EXITING
        | if preemption_timer { PIN_ACTIVATE_PREEMPTION_TIMER } else { 0 };
    Ok(Controls {
        revision: (basic & 0x7fff_ffff) as u32,
        pin: adjust(pin_msr, pin_wanted, "VMX pin-based controls")?,
        preemption_timer_shift: preemption_timer.then(|| (rdmsr(IA32_VMX_MISC) & 0x1f) as u32),
        primary,
        secondary,
        exit: adjust(
            exit_msr,
            EXIT_HOST_ADDRESS_SPACE_SIZE | EXIT_SAVE_PAT | EXIT_LOAD_PAT | EXIT_SAVE_EFER | EXIT_LOAD_EFER,
            "VMX exit controls (64-bit host, PAT and EFER switching)",
        )?,
        entry: adjust(entry_msr, ENTRY_LOAD_PAT | ENTRY_LOAD_EFER, "VMX entry controls (PAT and EFER loading)")?,
        cr0_fixed0: rdmsr(IA32_VMX_CR0_FIXED0),
        cr0_fixed1: rdmsr(IA32_VMX_CR0_FIXED1),
        cr4_fixed0: rdmsr(IA32_VMX_CR4_FIXED0),
        cr4_fixed1: rdmsr(IA32_VMX_CR4_FIXED1),
        vpid,
        invept_single: ept_caps & (1 << 20) != 0 && ept_caps & (1 << 25) != 0,
        invvpid_single: ept_caps & (1 << 32) != 0 && ept_caps & (1 << 41) != 0,
    })
}

pub(super) fn controls() -> Controls {
    CONTROLS.get().copied().unwrap_or_default()
}

/// True if the CPU has VMX (the capability checks happen in [`enable_this_cpu`]).
pub fn is_supported() -> bool {
    let (_, _, ecx, _) = cpuid(1, 0);
    ecx & (1 << 5) != 0
}

pub(super) fn allocate_zeroed_frame() -> Result<u64, VirtError> {
    crate::mm::allocate_zeroed_frames(1).ok_or(VirtError::OutOfMemory)
}

fn write_cr0(value: u64) {
    // SAFETY: the value only adds the bits VMX operation requires (CR0_FIXED0) to the
    // running configuration.
    unsafe { asm!("mov cr0, {}", in(reg) value, options(nostack, preserves_flags)) };
}

fn write_cr4(value: u64) {
    // SAFETY: as write_cr0: VMXE and the other CR4_FIXED0 bits, nothing else changes.
    unsafe { asm!("mov cr4, {}", in(reg) value, options(nostack, preserves_flags)) };
}

fn ensure_msr_bitmap() -> Result<u64, VirtError> {
    let _guard = MAPS_LOCK.lock();
    let existing = MSR_BITMAP_PHYSICAL.load(Ordering::Acquire);
    if existing != 0 {
        return Ok(existing);
    }
    let bitmap = allocate_zeroed_frame()?;
    let base = phys_to_virt(bitmap) as *mut u8;
    // SAFETY: the 4 KiB bitmap was just allocated; every offset below is inside it.
    unsafe { core::ptr::write_bytes(base, 0xff, PAGE as usize) };
    for msr in PASSTHROUGH_MSRS {
        let (read_offset, index) = if msr >= 0xc000_0000 { (1024usize, msr - 0xc000_0000) } else { (0, msr) };
        for offset in [read_offset, read_offset + 2048] {
            let byte = offset + (index / 8) as usize;
            // SAFETY: index < 0x2000, so byte < offset + 1024 ≤ 4096.
            unsafe { *base.add(byte) &= !(1u8 << (index % 8)) };
        }
    }
    MSR_BITMAP_PHYSICAL.store(bitmap, Ordering::Release);
    Ok(bitmap)
}

/// Enters VMX operation on the calling CPU: feature control, the CR0/CR4 fixed bits, a
/// VMXON region.
pub fn enable_this_cpu() -> Result<(), VirtError> {
    if !is_supported() {
        return Err(VirtError::Unsupported("VMX"));
    }
    let index = percpu::current_index() as usize;
    if CPU_ENABLED[index].load(Ordering::Acquire) {
        return Ok(());
    }
    let feature_control = rdmsr(IA32_FEATURE_CONTROL);
    if feature_control & FEATURE_CONTROL_LOCKED == 0 {
        wrmsr(IA32_FEATURE_CONTROL, feature_control | FEATURE_CONTROL_LOCKED | FEATURE_CONTROL_VMXON_OUTSIDE_SMX);
    } else if feature_control & FEATURE_CONTROL_VMXON_OUTSIDE_SMX == 0 {
        return Err(VirtError::DisabledByFirmware);
    }
    let controls = match CONTROLS.get() {
        Some(controls) => *controls,
        None => *CONTROLS.call_once(|| compute_controls().unwrap_or_default()),
    };
    if controls.revision == 0 {
        // Recompute to report which capability is missing.
        return Err(compute_controls().err().unwrap_or(VirtError::Unsupported("VMX capabilities")));
    }
    ensure_msr_bitmap()?;
    let cr0 = crate::arch::instructions::read_cr0();
    write_cr0((cr0 | controls.cr0_fixed0) & controls.cr0_fixed1);
    let cr4 = crate::arch::instructions::read_cr4();
    write_cr4((cr4 | controls.cr4_fixed0 | CR4_VMXE) & controls.cr4_fixed1);
    let region = allocate_zeroed_frame()?;
    // SAFETY: the region is ours; its first dword is the VMCS revision identifier.
    unsafe { (phys_to_virt(region) as *mut u32).write_volatile(controls.revision) };
    let (carry, zero): (u8, u8);
    // SAFETY: CR4.VMXE and the fixed bits are set, feature control allows VMXON, and the
    // region is a 4 KiB-aligned frame holding the revision identifier.
    unsafe {
        asm!("vmxon [{pointer}]", "setc {carry}", "setz {zero}", pointer = in(reg) &region,
             carry = out(reg_byte) carry, zero = out(reg_byte) zero, options(nostack));
    }
    if carry != 0 || zero != 0 {
        let _ = with_frames(|frames| frames.free(region));
        return Err(VirtError::InvalidState("VMXON failed"));
    }
    CPU_ENABLED[index].store(true, Ordering::Release);
    Ok(())
}

/// True once [`enable_this_cpu`] succeeded on CPU `index`.
pub fn is_enabled_on(index: u32) -> bool {
    CPU_ENABLED.get(index as usize).is_some_and(|enabled| enabled.load(Ordering::Acquire))
}
