//! What this CPU is and what it can do, from CPUID (AMD APM vol. 3 appendix E; Intel
//! SDM vol. 2A, CPUID).

use crate::arch::instructions::cpuid;
use alloc::string::String;

/// Vendor, model and the features the appliance cares about.
#[derive(Clone, Debug, Default)]
pub struct CpuIdentity {
    pub vendor: String,
    pub brand: String,
    pub family: u32,
    pub model: u32,
    pub stepping: u32,
    pub svm: bool,
    pub npt: bool,
    pub nrip_save: bool,
    pub vmx: bool,
    pub ept: bool,
    pub x2apic: bool,
    pub apic: bool,
    pub invariant_tsc: bool,
    pub pdpe1gb: bool,
    pub nx: bool,
}

fn registers_to_string(registers: &[u32]) -> String {
    let mut bytes = alloc::vec::Vec::with_capacity(registers.len() * 4);
    for register in registers {
        bytes.extend_from_slice(&register.to_le_bytes());
    }
    let text = String::from_utf8_lossy(&bytes);
    String::from(text.trim_matches(|c: char| c == '\0' || c.is_whitespace()))
}

/// Identifies the calling CPU.
pub fn identify() -> CpuIdentity {
    let (max_leaf, ebx, ecx, edx) = cpuid(0, 0);
    let vendor = registers_to_string(&[ebx, edx, ecx]);
    let (eax1, _, ecx1, edx1) = cpuid(1, 0);
    let base_family = (eax1 >> 8) & 0xf;
    let family = if base_family == 0xf { base_family + ((eax1 >> 20) & 0xff) } else { base_family };
    let model = if base_family >= 0x6 { ((eax1 >> 4) & 0xf) | (((eax1 >> 16) & 0xf) << 4) } else { (eax1 >> 4) & 0xf };
    let (max_extended, _, _, _) = cpuid(0x8000_0000, 0);
    let mut identity = CpuIdentity {
        vendor,
        family,
        model,
        stepping: eax1 & 0xf,
        vmx: ecx1 & (1 << 5) != 0,
        x2apic: ecx1 & (1 << 21) != 0,
        apic: edx1 & (1 << 9) != 0,
        ..CpuIdentity::default()
    };
    if max_extended >= 0x8000_0001 {
        let (_, _, ecx, edx) = cpuid(0x8000_0001, 0);
        identity.svm = ecx & (1 << 2) != 0;
        identity.nx = edx & (1 << 20) != 0;
        identity.pdpe1gb = edx & (1 << 26) != 0;
    }
    if max_extended >= 0x8000_0004 {
        let mut registers = [0u32; 12];
        for (i, leaf) in (0x8000_0002u32..=0x8000_0004).enumerate() {
            let (a, b, c, d) = cpuid(leaf, 0);
            registers[i * 4..i * 4 + 4].copy_from_slice(&[a, b, c, d]);
        }
        identity.brand = registers_to_string(&registers);
    }
    if max_extended >= 0x8000_0007 {
        identity.invariant_tsc = cpuid(0x8000_0007, 0).3 & (1 << 8) != 0;
    }
    if identity.svm && max_extended >= 0x8000_000a {
        let (_, _, _, edx) = cpuid(0x8000_000a, 0);
        identity.npt = edx & 1 != 0;
        identity.nrip_save = edx & (1 << 3) != 0;
    }
    if identity.vmx {
        // EPT is a secondary processor-based control: allowed-1 bit 1 of
        // IA32_VMX_PROCBASED_CTLS2 (0x48b), present if bit 63 of PROCBASED_CTLS (0x482).
        let primary = crate::arch::instructions::rdmsr(0x482);
        if primary & (1 << 63) != 0 {
            let secondary = crate::arch::instructions::rdmsr(0x48b);
            identity.ept = secondary & (1 << 33) != 0;
        }
    }
    let _ = max_leaf;
    identity
}

impl CpuIdentity {
    /// The virtualization-relevant features as (name, present) pairs, for `info`.
    pub fn feature_list(&self) -> alloc::vec::Vec<(&'static str, bool)> {
        alloc::vec![
            ("SVM", self.svm),
            ("NPT", self.npt),
            ("NRIPS", self.nrip_save),
            ("VMX", self.vmx),
            ("EPT", self.ept),
            ("x2APIC", self.x2apic),
            ("NX", self.nx),
            ("1GB-pages", self.pdpe1gb),
            ("invariant-TSC", self.invariant_tsc),
        ]
    }
}
