//! What a guest's CPUID instruction returns: the host's answer filtered through a
//! per-domain policy, plus Xen's hypervisor leaves at 0x40000000.
//!
//! Why a policy: a guest uses every feature CPUID advertises, often through MSRs or
//! state we do not virtualise (pvh-abi.md §2.2), so a feature is shown only if it works
//! inside a Basalt domain. The rule is an allow-list: each leaf we answer keeps only the
//! bits named below; every other leaf reads as zero (what AMD does for an unknown leaf).
//!
//! Invariants:
//! * The vendor string and family/model pass through: Linux picks VMMCALL (AMD, Hygon)
//!   or VMCALL (everything else) from it (pvh-abi.md §2.4).
//! * Leaf 1 ECX bit 31 (hypervisor present) is always set.
//! * Hidden: VMX, SVM (and leaf 0x8000000A), SMX, MONITOR/MWAIT, TSC-deadline, PCID,
//!   INVPCID, XSAVE/OSXSAVE and everything needing extended state (AVX, AVX2, AVX-512,
//!   FMA, F16C, AMX, XOP, FMA4, TBM, PKU, CET), the PMU (leaf 0xA, PDCM, AMD PerfCtrExt),
//!   debug store / thermal / power management (DS, DTES64, DS-CPL, TM, TM2, EST, ACPI,
//!   PBE, leaf 6, most of 0x80000007), MCE/MCA, SGX, RDT (PQM/PQE, leaves 0xF/0x10),
//!   TSX, processor trace, speculation-control MSRs (SPEC_CTRL family,
//!   ARCH_CAPABILITIES, FLUSH_CMD), TSC_ADJUST, RDTSCP/RDPID (no TSC_AUX), LA57, and
//!   x2APIC unless [`CpuidPolicy::x2apic`].
//! * Topology: every vCPU is one core with one thread in a single package. APIC ids
//!   must be below `2 * vcpu_count` rounded up to a power of two, which holds for Xen's
//!   numbering (APIC id = 2 × vCPU id, as builtin-dom0's MADT uses) and for identity
//!   numbering. Leaves 1, 4, 0xB, 0x1F and 0x80000008 describe that same topology.
//!
//! Hypervisor leaves (xen/include/public/arch-x86/cpuid.h, Xen `cpuid_hypervisor_leaves`):
//! base 0x40000000 only; 0x40000100 and up (Viridian, other hypervisors) read as zero.
//!
//! References: Intel SDM vol. 2A "CPUID"; AMD APM vol. 3 appendix E.

use super::{XEN_VERSION_MAJOR, XEN_VERSION_MINOR};
use basalt_xen_abi::cpuid as xen;

/// The four registers CPUID returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuidResult {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

impl CpuidResult {
    const ZERO: CpuidResult = CpuidResult { eax: 0, ebx: 0, ecx: 0, edx: 0 };
}

/// The CPU vendor, which decides the hypercall instruction and a few vendor-only leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostVendor {
    Amd,
    Intel,
    Other,
}

impl HostVendor {
    /// Reads the vendor from CPUID leaf 0's EBX, EDX, ECX ("AuthenticAMD",
    /// "GenuineIntel"). Hygon ("HygonGenuine") behaves as AMD.
    pub fn from_leaf0(leaf0: &CpuidResult) -> HostVendor {
        let mut name = [0u8; 12];
        name[0..4].copy_from_slice(&leaf0.ebx.to_le_bytes());
        name[4..8].copy_from_slice(&leaf0.edx.to_le_bytes());
        name[8..12].copy_from_slice(&leaf0.ecx.to_le_bytes());
        match &name {
            b"AuthenticAMD" | b"HygonGenuine" => HostVendor::Amd,
            b"GenuineIntel" => HostVendor::Intel,
            _ => HostVendor::Other,
        }
    }
}

/// Per-domain choices beyond the fixed allow-list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuidPolicy {
    /// Advertise x2APIC (leaf 1 ECX bit 21). Only once the vLAPIC implements the x2APIC
    /// MSR interface and IA32_APIC_BASE.EXTD (see [`super::msr`]).
    pub x2apic: bool,
    /// Advertise per-vCPU upcall vectors (leaf 0x40000004 EAX bit 6), once
    /// HVMOP_set_evtchn_upcall_vector works.
    pub hvm_upcall_vector: bool,
}

/// Who is asking: the identity the answer is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestCpuIdentity {
    pub domid: u16,
    pub vcpu_id: u32,
    /// This vCPU's local APIC id (as in the MADT and the vLAPIC's ID register).
    pub apic_id: u32,
    /// vCPUs in the domain (at least 1 is assumed).
    pub vcpu_count: u32,
    pub vendor: HostVendor,
    pub policy: CpuidPolicy,
}

// Leaf 1 ECX.
const ECX1_SSE3: u32 = 1 << 0;
const ECX1_PCLMULQDQ: u32 = 1 << 1;
const ECX1_SSSE3: u32 = 1 << 9;
const ECX1_CX16: u32 = 1 << 13;
const ECX1_SSE41: u32 = 1 << 19;
const ECX1_SSE42: u32 = 1 << 20;
const ECX1_X2APIC: u32 = 1 << 21;
const ECX1_MOVBE: u32 = 1 << 22;
const ECX1_POPCNT: u32 = 1 << 23;
const ECX1_AES: u32 = 1 << 25;
const ECX1_RDRAND: u32 = 1 << 30;
const ECX1_HYPERVISOR: u32 = 1 << 31;
const LEAF1_ECX_ALLOWED: u32 = ECX1_SSE3
    | ECX1_PCLMULQDQ
    | ECX1_SSSE3
    | ECX1_CX16
    | ECX1_SSE41
    | ECX1_SSE42
    | ECX1_MOVBE
    | ECX1_POPCNT
    | ECX1_AES
    | ECX1_RDRAND;

// Leaf 1 EDX: FPU VME DE PSE TSC MSR PAE CX8 APIC SEP MTRR PGE CMOV PAT PSE36 CLFSH MMX
// FXSR SSE SSE2 SS; HTT is computed. Hidden: MCE 7, MCA 14, PSN 18, DS 21, ACPI 22,
// TM 29, IA64 30, PBE 31.
const LEAF1_EDX_ALLOWED: u32 = (1 << 0)
    | (1 << 1)
    | (1 << 2)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 8)
    | (1 << 9)
    | (1 << 11)
    | (1 << 12)
    | (1 << 13)
    | (1 << 15)
    | (1 << 16)
    | (1 << 17)
    | (1 << 19)
    | (1 << 23)
    | (1 << 24)
    | (1 << 25)
    | (1 << 26)
    | (1 << 27);
const EDX1_HTT: u32 = 1 << 28;

// Leaf 7 sub-leaf 0 EBX: FSGSBASE 0, BMI1 3, FDP_EXCPTN_ONLY 6, SMEP 7, BMI2 8, ERMS 9,
// FCS/FDS deprecation 13, RDSEED 18, ADX 19, SMAP 20, CLFLUSHOPT 23, CLWB 24, SHA 29.
const LEAF7_EBX_ALLOWED: u32 = (1 << 0)
    | (1 << 3)
    | (1 << 6)
    | (1 << 7)
    | (1 << 8)
    | (1 << 9)
    | (1 << 13)
    | (1 << 18)
    | (1 << 19)
    | (1 << 20)
    | (1 << 23)
    | (1 << 24)
    | (1 << 29);
// ECX: PREFETCHWT1 0, UMIP 2, GFNI 8, MOVDIRI 27, MOVDIR64B 28.
const LEAF7_ECX_ALLOWED: u32 = (1 << 0) | (1 << 2) | (1 << 8) | (1 << 27) | (1 << 28);
// EDX: FSRM 4, MD_CLEAR 10, SERIALIZE 14.
const LEAF7_EDX_ALLOWED: u32 = (1 << 4) | (1 << 10) | (1 << 14);

// 0x80000001 ECX: LAHF/SAHF 0, LZCNT 5, SSE4A 6, MisAlignSse 7, 3DNowPrefetch 8.
const EXT1_ECX_ALLOWED: u32 = (1 << 0) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8);
const EXT1_ECX_CMP_LEGACY: u32 = 1 << 1;
// 0x80000001 EDX: the leaf-1 mirror bits (AMD) plus SYSCALL 11, NX 20, MmxExt 22,
// FFXSR 25, Page1GB 26, LM 29, 3DNowExt 30, 3DNow 31. Hidden: RDTSCP 27, MCE, MCA.
const EXT1_EDX_ALLOWED: u32 = (1 << 0)
    | (1 << 1)
    | (1 << 2)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 8)
    | (1 << 9)
    | (1 << 11)
    | (1 << 12)
    | (1 << 13)
    | (1 << 15)
    | (1 << 16)
    | (1 << 17)
    | (1 << 20)
    | (1 << 22)
    | (1 << 23)
    | (1 << 24)
    | (1 << 25)
    | (1 << 26)
    | (1 << 29)
    | (1 << 30)
    | (1 << 31);
// 0x80000007 EDX: invariant TSC only.
const EXT7_EDX_INVARIANT_TSC: u32 = 1 << 8;
// 0x80000008 EBX: CLZERO 0, RstrFpErrPtrs 2, WBNOINVD 9.
const EXT8_EBX_ALLOWED: u32 = (1 << 0) | (1 << 2) | (1 << 9);

/// Highest extended leaf a guest sees: the topology/feature leaves past it (SVM 0xA,
/// TopologyExtensions 0x1D/0x1E, SEV 0x1F, PerfMonV2 0x22, ...) are all hidden.
const MAX_EXTENDED_LEAF: u32 = 0x8000_0008;

const LEVEL_TYPE_SMT: u32 = 1;
const LEVEL_TYPE_CORE: u32 = 2;

/// Bits of the APIC id that select the logical processor inside the package: one bit
/// for the (unused) second thread of a core, then enough for `vcpu_count` cores.
fn package_shift(vcpu_count: u32) -> u32 {
    let cores = vcpu_count.max(1);
    (1 + (u32::BITS - (cores - 1).leading_zeros())).min(31)
}

/// `2^shift`, saturating instead of overflowing.
fn power_of_two(shift: u32) -> u32 {
    1u32.checked_shl(shift).unwrap_or(u32::MAX)
}

/// The guest's answer for CPUID `leaf`/`subleaf`. `host` executes CPUID on the host
/// (any physical CPU; the answer must not depend on which one except for the fields
/// this function replaces).
pub fn guest_cpuid(
    host: &dyn Fn(u32, u32) -> CpuidResult,
    guest: &GuestCpuIdentity,
    leaf: u32,
    subleaf: u32,
) -> CpuidResult {
    match leaf {
        0x0000_0000..=0x3fff_ffff => basic_leaf(host, guest, leaf, subleaf),
        0x4000_0000..=0x4fff_ffff => hypervisor_leaf(guest, leaf, subleaf),
        0x8000_0000..=0x8fff_ffff => extended_leaf(host, guest, leaf, subleaf),
        _ => CpuidResult::ZERO,
    }
}

fn basic_leaf(
    host: &dyn Fn(u32, u32) -> CpuidResult,
    guest: &GuestCpuIdentity,
    leaf: u32,
    subleaf: u32,
) -> CpuidResult {
    let max_basic = host(0, 0).eax;
    if leaf > max_basic {
        return CpuidResult::ZERO;
    }
    let shift = package_shift(guest.vcpu_count);
    match leaf {
        0x0 | 0x2 | 0x15 | 0x16 => host(leaf, 0),
        0x1 => {
            let raw = host(1, 0);
            let mut ecx = (raw.ecx & LEAF1_ECX_ALLOWED) | ECX1_HYPERVISOR;
            if guest.policy.x2apic {
                ecx |= ECX1_X2APIC;
            }
            let logical_ids = power_of_two(shift).min(128);
            CpuidResult {
                eax: raw.eax,
                // Brand index and CLFLUSH size from the host; logical count and APIC id ours.
                ebx: (raw.ebx & 0xffff) | (logical_ids << 16) | ((guest.apic_id & 0xff) << 24),
                ecx,
                edx: (raw.edx & LEAF1_EDX_ALLOWED) | EDX1_HTT,
            }
        }
        0x4 => {
            let raw = host(4, subleaf);
            if raw.eax & 0x1f == 0 {
                return CpuidResult::ZERO;
            }
            let cache_level = (raw.eax >> 5) & 0x7;
            // Per-core caches are shared by the two thread ids of a core; the last level
            // by the whole package.
            let sharing_ids = if cache_level >= 3 { power_of_two(shift).min(4096) } else { 2 };
            let core_ids = power_of_two(shift - 1).min(64);
            CpuidResult { eax: (raw.eax & 0x3fff) | ((sharing_ids - 1) << 14) | ((core_ids - 1) << 26), ..raw }
        }
        0x7 if subleaf == 0 => {
            let raw = host(7, 0);
            CpuidResult {
                eax: 0,
                ebx: raw.ebx & LEAF7_EBX_ALLOWED,
                ecx: raw.ecx & LEAF7_ECX_ALLOWED,
                edx: raw.edx & LEAF7_EDX_ALLOWED,
            }
        }
        0xb | 0x1f => topology_leaf(guest, subleaf),
        _ => CpuidResult::ZERO,
    }
}

/// Leaves 0xB and 0x1F: an SMT level (one thread per core, one APIC-id bit) and a core
/// level covering the package.
fn topology_leaf(guest: &GuestCpuIdentity, subleaf: u32) -> CpuidResult {
    let (shift, count, level_type) = match subleaf {
        0 => (1, 1, LEVEL_TYPE_SMT),
        1 => (package_shift(guest.vcpu_count), guest.vcpu_count.clamp(1, 0xffff), LEVEL_TYPE_CORE),
        _ => {
            return CpuidResult { eax: 0, ebx: 0, ecx: subleaf & 0xff, edx: guest.apic_id };
        }
    };
    CpuidResult { eax: shift, ebx: count, ecx: (level_type << 8) | (subleaf & 0xff), edx: guest.apic_id }
}

fn hypervisor_leaf(guest: &GuestCpuIdentity, leaf: u32, subleaf: u32) -> CpuidResult {
    let Some(index) = leaf.checked_sub(xen::XEN_CPUID_FIRST_LEAF) else {
        return CpuidResult::ZERO;
    };
    match index {
        0 => CpuidResult {
            eax: xen::XEN_CPUID_FIRST_LEAF + xen::XEN_CPUID_MAX_NUM_LEAVES,
            ebx: xen::XEN_CPUID_SIGNATURE_EBX,
            ecx: xen::XEN_CPUID_SIGNATURE_ECX,
            edx: xen::XEN_CPUID_SIGNATURE_EDX,
        },
        1 => CpuidResult {
            eax: (u32::from(XEN_VERSION_MAJOR) << 16) | u32::from(XEN_VERSION_MINOR),
            ..CpuidResult::ZERO
        },
        // One hypercall page, written through MSR 0x40000000; no PV feature bits.
        2 => CpuidResult { eax: 1, ebx: xen::XEN_HYPERCALL_PAGE_MSR, ecx: 0, edx: 0 },
        // Time: TSC mode "default", no frequency advertised (the guest uses pvclock).
        3 => CpuidResult::ZERO,
        4 if subleaf == 0 => {
            let mut eax = xen::XEN_HVM_CPUID_VCPU_ID_PRESENT | xen::XEN_HVM_CPUID_DOMID_PRESENT;
            if guest.policy.hvm_upcall_vector {
                eax |= xen::XEN_HVM_CPUID_UPCALL_VECTOR;
            }
            CpuidResult { eax, ebx: guest.vcpu_id, ecx: u32::from(guest.domid), edx: 0 }
        }
        // Leaf 5 is PV-only; everything past it and every other base is empty.
        _ => CpuidResult::ZERO,
    }
}

fn extended_leaf(
    host: &dyn Fn(u32, u32) -> CpuidResult,
    guest: &GuestCpuIdentity,
    leaf: u32,
    _subleaf: u32,
) -> CpuidResult {
    let host_max = host(0x8000_0000, 0).eax;
    let max = host_max.min(MAX_EXTENDED_LEAF);
    if leaf > max || host_max < 0x8000_0000 {
        return CpuidResult::ZERO;
    }
    let amd = guest.vendor == HostVendor::Amd;
    match leaf {
        0x8000_0000 => CpuidResult { eax: max, ..host(leaf, 0) },
        0x8000_0001 => {
            let raw = host(leaf, 0);
            let mut ecx = raw.ecx & EXT1_ECX_ALLOWED;
            if amd {
                // One thread per core: the HTT count in leaf 1 means cores.
                ecx |= EXT1_ECX_CMP_LEGACY;
            }
            CpuidResult { eax: raw.eax, ebx: raw.ebx, ecx, edx: raw.edx & EXT1_EDX_ALLOWED }
        }
        0x8000_0002..=0x8000_0006 => host(leaf, 0),
        0x8000_0007 => CpuidResult { edx: host(leaf, 0).edx & EXT7_EDX_INVARIANT_TSC, ..CpuidResult::ZERO },
        0x8000_0008 => {
            let raw = host(leaf, 0);
            let ecx = if amd {
                let threads = guest.vcpu_count.clamp(1, 256) - 1;
                threads | (package_shift(guest.vcpu_count).min(15) << 12)
            } else {
                0
            };
            CpuidResult { eax: raw.eax, ebx: raw.ebx & EXT8_EBX_ALLOWED, ecx, edx: 0 }
        }
        _ => CpuidResult::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host that reports every feature bit in every leaf it has, to show the policy
    /// alone decides what a guest sees.
    fn everything_host(max_basic: u32, max_extended: u32) -> impl Fn(u32, u32) -> CpuidResult {
        move |leaf, subleaf| match leaf {
            0 => CpuidResult { eax: max_basic, ebx: 0x6874_7541, ecx: 0x444d_4163, edx: 0x6974_6e65 },
            0x8000_0000 => CpuidResult { eax: max_extended, ebx: 1, ecx: 2, edx: 3 },
            4 if subleaf >= 4 => CpuidResult::ZERO,
            4 => {
                CpuidResult { eax: 0xffff_fc00 | ((subleaf.min(3) + 1) << 5) | 1, ebx: 0x01c0_003f, ecx: 0x3f, edx: 0 }
            }
            _ => CpuidResult { eax: 0xffff_ffff, ebx: 0xffff_ffff, ecx: 0xffff_ffff, edx: 0xffff_ffff },
        }
    }

    fn identity(vendor: HostVendor) -> GuestCpuIdentity {
        GuestCpuIdentity { domid: 7, vcpu_id: 3, apic_id: 6, vcpu_count: 4, vendor, policy: CpuidPolicy::default() }
    }

    fn ask(leaf: u32, subleaf: u32) -> CpuidResult {
        let host = everything_host(0x20, 0x8000_0021);
        guest_cpuid(&host, &identity(HostVendor::Amd), leaf, subleaf)
    }

    #[test]
    fn vendor_from_leaf0() {
        let amd = CpuidResult { eax: 0, ebx: 0x6874_7541, ecx: 0x444d_4163, edx: 0x6974_6e65 };
        assert_eq!(HostVendor::from_leaf0(&amd), HostVendor::Amd);
        let intel = CpuidResult { eax: 0, ebx: 0x756e_6547, ecx: 0x6c65_746e, edx: 0x4965_6e69 };
        assert_eq!(HostVendor::from_leaf0(&intel), HostVendor::Intel);
        assert_eq!(HostVendor::from_leaf0(&CpuidResult::ZERO), HostVendor::Other);
    }

    #[test]
    fn leaf0_passes_vendor_through() {
        let leaf0 = ask(0, 0);
        assert_eq!((leaf0.eax, leaf0.ebx), (0x20, 0x6874_7541));
    }

    #[test]
    fn leaf1_sets_hypervisor_and_hides_virtualization_and_friends() {
        let leaf1 = ask(1, 0);
        assert_ne!(leaf1.ecx & (1 << 31), 0, "hypervisor present");
        for (bit, name) in [
            (2, "DTES64"),
            (3, "MONITOR"),
            (4, "DS-CPL"),
            (5, "VMX"),
            (6, "SMX"),
            (7, "EST"),
            (8, "TM2"),
            (15, "PDCM"),
            (17, "PCID"),
            (21, "x2APIC"),
            (24, "TSC-deadline"),
            (26, "XSAVE"),
            (27, "OSXSAVE"),
            (28, "AVX"),
            (12, "FMA"),
            (29, "F16C"),
        ] {
            assert_eq!(leaf1.ecx & (1 << bit), 0, "{name} hidden");
        }
        for (bit, name) in [(7, "MCE"), (14, "MCA"), (21, "DS"), (22, "ACPI"), (29, "TM"), (31, "PBE")] {
            assert_eq!(leaf1.edx & (1 << bit), 0, "{name} hidden");
        }
        for (bit, name) in [(0, "FPU"), (9, "APIC"), (12, "MTRR"), (16, "PAT"), (26, "SSE2"), (28, "HTT")] {
            assert_ne!(leaf1.edx & (1 << bit), 0, "{name} shown");
        }
        assert_eq!(leaf1.ebx >> 24, 6, "APIC id");
        assert_eq!((leaf1.ebx >> 16) & 0xff, 8, "4 cores x 2 thread ids");
        assert_eq!(leaf1.eax, 0xffff_ffff, "signature passes through");
    }

    #[test]
    fn x2apic_is_a_policy_choice() {
        let host = everything_host(0x20, 0x8000_0021);
        let mut guest = identity(HostVendor::Intel);
        guest.policy.x2apic = true;
        assert_ne!(guest_cpuid(&host, &guest, 1, 0).ecx & (1 << 21), 0);
    }

    #[test]
    fn hidden_leaves_are_zero() {
        for leaf in [3, 5, 6, 0xa, 0xd, 0xf, 0x10, 0x12, 0x14, 0x20] {
            assert_eq!(ask(leaf, 0), CpuidResult::ZERO, "leaf {leaf:#x}");
        }
        assert_eq!(ask(7, 1), CpuidResult::ZERO);
        assert_eq!(ask(0x8000_000a, 0), CpuidResult::ZERO, "SVM leaf");
        assert_eq!(ask(0x8000_001f, 0), CpuidResult::ZERO, "SEV leaf");
        assert_eq!(ask(0xc000_0000, 0), CpuidResult::ZERO);
        assert_eq!(ask(0x21, 0), CpuidResult::ZERO, "above the host's maximum");
    }

    #[test]
    fn leaf7_keeps_only_safe_bits() {
        let leaf7 = ask(7, 0);
        assert_eq!(leaf7.eax, 0, "no further sub-leaves");
        for (bit, name) in [
            (1, "TSC_ADJUST"),
            (2, "SGX"),
            (4, "HLE"),
            (5, "AVX2"),
            (10, "INVPCID"),
            (11, "RTM"),
            (12, "PQM"),
            (15, "PQE"),
            (16, "AVX512F"),
            (25, "PT"),
        ] {
            assert_eq!(leaf7.ebx & (1 << bit), 0, "{name} hidden");
        }
        assert_ne!(leaf7.ebx & (1 << 0), 0, "FSGSBASE shown");
        assert_ne!(leaf7.ebx & (1 << 7), 0, "SMEP shown");
        for (bit, name) in [(3, "PKU"), (16, "LA57"), (22, "RDPID")] {
            assert_eq!(leaf7.ecx & (1 << bit), 0, "{name} hidden");
        }
        for (bit, name) in [(26, "IBRS"), (27, "STIBP"), (28, "L1D_FLUSH"), (29, "ARCH_CAPABILITIES"), (31, "SSBD")] {
            assert_eq!(leaf7.edx & (1 << bit), 0, "{name} hidden");
        }
    }

    #[test]
    fn extended_leaves() {
        assert_eq!(ask(0x8000_0000, 0).eax, 0x8000_0008);
        let ext1 = ask(0x8000_0001, 0);
        for (bit, name) in [
            (2, "SVM"),
            (3, "ExtApicSpace"),
            (10, "IBS"),
            (11, "XOP"),
            (16, "FMA4"),
            (22, "TopoExt"),
            (23, "PerfCtrExtCore"),
            (29, "MONITORX"),
        ] {
            assert_eq!(ext1.ecx & (1 << bit), 0, "{name} hidden");
        }
        assert_ne!(ext1.ecx & (1 << 1), 0, "CmpLegacy on AMD");
        assert_eq!(ext1.edx & (1 << 27), 0, "RDTSCP hidden");
        for bit in [11, 20, 26, 29] {
            assert_ne!(ext1.edx & (1 << bit), 0, "SYSCALL/NX/1G/LM shown");
        }
        assert_eq!(ask(0x8000_0007, 0), CpuidResult { edx: 1 << 8, ..CpuidResult::ZERO });
        let ext8 = ask(0x8000_0008, 0);
        assert_eq!(ext8.eax, 0xffff_ffff, "address sizes pass through");
        assert_eq!(ext8.ecx, 3 | (3 << 12), "4 cores, 3 APIC-id bits");
        assert_eq!(ext8.ebx, (1 << 0) | (1 << 2) | (1 << 9));
    }

    #[test]
    fn topology_is_consistent() {
        let smt = ask(0xb, 0);
        assert_eq!(smt, CpuidResult { eax: 1, ebx: 1, ecx: 0x100, edx: 6 });
        let core = ask(0xb, 1);
        assert_eq!(core, CpuidResult { eax: 3, ebx: 4, ecx: 0x201, edx: 6 });
        assert_eq!(ask(0xb, 2), CpuidResult { eax: 0, ebx: 0, ecx: 2, edx: 6 });
        assert_eq!(ask(0x1f, 1), core);
        // Every vCPU's APIC id (2 × id) fits below the package shift.
        assert!(2 * 3 < 1 << core.eax);

        let l1 = ask(4, 0);
        assert_eq!((l1.eax >> 14) & 0xfff, 1, "L1 shared by one core's two ids");
        assert_eq!(l1.eax >> 26, 3, "4 core ids");
        let l3 = ask(4, 2);
        assert_eq!((l3.eax >> 5) & 7, 3);
        assert_eq!((l3.eax >> 14) & 0xfff, 7, "L3 shared by the package");
        assert_eq!(ask(4, 4), CpuidResult::ZERO);

        for count in [1u32, 2, 3, 64, 255, 4096, u32::MAX] {
            let shift = package_shift(count);
            assert!(shift <= 31);
            assert!(count > 1 << 30 || u64::from(count.max(1)) * 2 <= 1u64 << shift);
        }
    }

    #[test]
    fn xen_leaves() {
        let leaf = |index: u32, subleaf: u32| ask(0x4000_0000 + index, subleaf);
        let signature = leaf(0, 0);
        assert_eq!(signature.eax, 0x4000_0005);
        let mut name = [0u8; 12];
        name[..4].copy_from_slice(&signature.ebx.to_le_bytes());
        name[4..8].copy_from_slice(&signature.ecx.to_le_bytes());
        name[8..].copy_from_slice(&signature.edx.to_le_bytes());
        assert_eq!(&name, b"XenVMMXenVMM");
        assert_eq!(leaf(1, 0).eax, 0x0004_0011);
        assert_eq!(leaf(2, 0), CpuidResult { eax: 1, ebx: 0x4000_0000, ecx: 0, edx: 0 });
        assert_eq!(leaf(3, 0), CpuidResult::ZERO);
        assert_eq!(leaf(4, 0), CpuidResult { eax: (1 << 3) | (1 << 4), ebx: 3, ecx: 7, edx: 0 });
        assert_eq!(leaf(5, 0), CpuidResult::ZERO);
        assert_eq!(leaf(6, 0), CpuidResult::ZERO);
        assert_eq!(leaf(0x100, 0), CpuidResult::ZERO, "no second hypervisor base");
        assert_eq!(ask(0x4000_0100, 0), CpuidResult::ZERO);

        let host = everything_host(0x20, 0x8000_0021);
        let mut guest = identity(HostVendor::Intel);
        guest.policy.hvm_upcall_vector = true;
        assert_ne!(guest_cpuid(&host, &guest, 0x4000_0004, 0).eax & (1 << 6), 0);
    }

    #[test]
    fn small_and_intel_hosts() {
        // A host without leaf 0xB or extended leaves past 0x80000004.
        let host = everything_host(0x7, 0x8000_0004);
        let guest = identity(HostVendor::Intel);
        assert_eq!(guest_cpuid(&host, &guest, 0xb, 0), CpuidResult::ZERO);
        assert_eq!(guest_cpuid(&host, &guest, 0x8000_0000, 0).eax, 0x8000_0004);
        assert_eq!(guest_cpuid(&host, &guest, 0x8000_0008, 0), CpuidResult::ZERO);
        let host = everything_host(0x20, 0x8000_0008);
        assert_eq!(guest_cpuid(&host, &guest, 0x8000_0001, 0).ecx & (1 << 1), 0, "no CmpLegacy on Intel");
        assert_eq!(guest_cpuid(&host, &guest, 0x8000_0008, 0).ecx, 0);
        // No extended leaves at all.
        let host = everything_host(0x20, 0);
        assert_eq!(guest_cpuid(&host, &guest, 0x8000_0000, 0), CpuidResult::ZERO);
    }

    #[test]
    fn no_panic_on_any_leaf() {
        let host = everything_host(0x20, 0x8000_0021);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for vcpu_count in [0u32, 1, 2, 5, u32::MAX] {
            let mut guest = identity(HostVendor::Other);
            guest.vcpu_count = vcpu_count;
            guest.apic_id = u32::MAX;
            for _ in 0..2000 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let leaf = match state % 4 {
                    0 => state as u32 & 0x3f,
                    1 => 0x4000_0000 | (state as u32 & 0x1ff),
                    2 => 0x8000_0000 | (state as u32 & 0x3f),
                    _ => state as u32,
                };
                let _ = guest_cpuid(&host, &guest, leaf, (state >> 32) as u32);
            }
        }
    }
}
