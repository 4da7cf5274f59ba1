//! The few CPU instructions the guests use directly (CPUID, RDTSC, WRMSR, HLT) and the
//! facts Xen reports through its CPUID leaves.
//!
//! Xen's hypervisor leaves (xen/include/public/arch-x86/cpuid.h) start at 0x40000000:
//! leaf 0 is the "XenVMMXenVMM" signature and the highest leaf, leaf 2 EBX the
//! hypercall-page MSR, leaf 4 EBX the vCPU id (when EAX bit 3) and ECX the domain id
//! (when EAX bit 4). Basalt answers at the base 0x40000000 only, so that is the only
//! base probed.

use basalt_xen_abi::cpuid::{
    XEN_CPUID_FIRST_LEAF, XEN_CPUID_SIGNATURE_EBX, XEN_CPUID_SIGNATURE_ECX, XEN_CPUID_SIGNATURE_EDX,
    XEN_HVM_CPUID_DOMID_PRESENT, XEN_HVM_CPUID_VCPU_ID_PRESENT,
};

/// The four registers CPUID returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuidResult {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// CPUID with `leaf` in EAX and `subleaf` in ECX. Under a hypervisor every CPUID exits.
pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    let result = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    CpuidResult { eax: result.eax, ebx: result.ebx, ecx: result.ecx, edx: result.edx }
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the counter; every x86-64 CPU has it and the guest does
    // not set CR4.TSD.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Writes `value` to model-specific register `msr`.
///
/// # Safety
/// The caller must know what the MSR does: a wrong write can change paging, interrupt
/// delivery or the hypervisor's view of the guest.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller vouches for the MSR and value; WRMSR touches no Rust memory.
    unsafe {
        core::arch::asm!(
            "wrmsr",
            in("ecx") msr,
            in("eax") value as u32,
            in("edx") (value >> 32) as u32,
            options(nostack, preserves_flags),
        );
    }
}

/// Halts this vCPU for good: interrupts off, then HLT in a loop (a hypervisor parks a
/// vCPU that halts with interrupts off).
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: CLI and HLT only stop this vCPU; no memory is touched.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// True if CPUID leaf 0x40000000 carries Xen's signature, "XenVMMXenVMM".
pub fn is_xen() -> bool {
    let leaf = cpuid(XEN_CPUID_FIRST_LEAF, 0);
    leaf.ebx == XEN_CPUID_SIGNATURE_EBX && leaf.ecx == XEN_CPUID_SIGNATURE_ECX && leaf.edx == XEN_CPUID_SIGNATURE_EDX
}

/// The highest Xen leaf offered (leaf 0 EAX), if the signature is there.
fn xen_max_leaf() -> Option<u32> {
    is_xen().then(|| cpuid(XEN_CPUID_FIRST_LEAF, 0).eax)
}

/// Xen leaf `offset` (0x40000000 + offset), if the hypervisor offers it.
pub fn xen_leaf(offset: u32) -> Option<CpuidResult> {
    let leaf = XEN_CPUID_FIRST_LEAF + offset;
    (xen_max_leaf()? >= leaf).then(|| cpuid(leaf, 0))
}

/// This domain's id (leaf 0x40000004 ECX, valid when EAX bit 4 is set).
pub fn domain_id() -> Option<u16> {
    let leaf = xen_leaf(4)?;
    (leaf.eax & XEN_HVM_CPUID_DOMID_PRESENT != 0).then_some(leaf.ecx as u16)
}

/// The calling vCPU's id (leaf 0x40000004 EBX, valid when EAX bit 3 is set).
pub fn vcpu_id() -> Option<u32> {
    let leaf = xen_leaf(4)?;
    (leaf.eax & XEN_HVM_CPUID_VCPU_ID_PRESENT != 0).then_some(leaf.ebx)
}

/// The CPU vendor (leaf 0 EBX, EDX, ECX).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    /// "AuthenticAMD" or "HygonGenuine": hypercalls use VMMCALL.
    Amd,
    /// Anything else ("GenuineIntel", ...): hypercalls use VMCALL.
    Other,
}

/// Reads the vendor string from CPUID leaf 0.
pub fn vendor() -> Vendor {
    let leaf = cpuid(0, 0);
    let mut name = [0u8; 12];
    name[0..4].copy_from_slice(&leaf.ebx.to_le_bytes());
    name[4..8].copy_from_slice(&leaf.edx.to_le_bytes());
    name[8..12].copy_from_slice(&leaf.ecx.to_le_bytes());
    match &name {
        b"AuthenticAMD" | b"HygonGenuine" => Vendor::Amd,
        _ => Vendor::Other,
    }
}
