//! The MSRs a guest reads and writes that are emulated in software, per vCPU, and the
//! policy for every other index.
//!
//! Why here: what an MSR access *means* is the same on SVM and VMX; only where the
//! hardware keeps guest state differs. So the vendor backend decodes RDMSR/WRMSR,
//! calls [`read_msr`]/[`write_msr`], and acts on the answer.
//!
//! Division of labour (the contract with the backends):
//! * [`MsrRead::NotEmulated`] / [`MsrWrite::NotEmulated`]: MSRs whose guest copy lives
//!   in the VMCB/VMCS or behind the TSC offset — EFER, STAR, LSTAR, CSTAR, SFMASK,
//!   FS_BASE, GS_BASE, KERNEL_GS_BASE, SYSENTER_CS/ESP/EIP and IA32_TSC. The backend
//!   handles them (or lets them pass through without an exit); this module never sees
//!   their values.
//! * Everything emulated is in [`GuestMsrState`]: APIC base, MTRRs, PAT, and the
//!   read-only identification MSRs. The backend copies [`GuestMsrState::pat`] into the
//!   guest PAT field of its control structure (VMCB `g_pat`, VMCS `GUEST_IA32_PAT`)
//!   after a PAT write, because nested paging combines it with the guest's page tables.
//! * Any other index injects #GP, as Xen does; Linux probes optional MSRs with the
//!   `*_safe` accessors. `InjectGp { unknown_msr: true }` marks an index this module
//!   does not know at all, so the caller can log it (nothing is logged here).
//! * The hypercall-page MSR (CPUID 0x40000002 EBX = 0x40000000; Xen
//!   `xen/arch/x86/msr.c` `guest_wrmsr_xen`) asks for [`super::hypercall_page::fill`]
//!   at a guest-physical address; the caller checks that the frame is guest RAM (#GP
//!   otherwise, as Xen) and writes the page.
//!
//! The guest sees no MCA banks, no PMU, no speculation-control MSRs, no TSC_AUX, no
//! TSC-deadline, no x2APIC: the CPUID policy ([`super::cpuid`]) hides the features and
//! the MSRs #GP, so the two stay consistent.
//!
//! References: Intel SDM vol. 3A §11.11 (MTRRs), §11.12 (PAT), §10.4.4 (APIC base),
//! vol. 4 (MSR list); AMD APM vol. 2 §7.7–7.8.

use super::cpuid::HostVendor;
use basalt_xen_abi::cpuid::XEN_HYPERCALL_PAGE_MSR;

// MSR indexes, spelled as the manuals spell them.
pub const IA32_TSC: u32 = 0x10;
pub const IA32_PLATFORM_ID: u32 = 0x17;
pub const IA32_APIC_BASE: u32 = 0x1b;
pub const IA32_FEATURE_CONTROL: u32 = 0x3a;
pub const IA32_SPEC_CTRL: u32 = 0x48;
pub const IA32_PRED_CMD: u32 = 0x49;
pub const IA32_BIOS_SIGN_ID: u32 = 0x8b;
pub const IA32_MTRRCAP: u32 = 0xfe;
pub const IA32_ARCH_CAPABILITIES: u32 = 0x10a;
pub const IA32_FLUSH_CMD: u32 = 0x10b;
pub const IA32_SYSENTER_CS: u32 = 0x174;
pub const IA32_SYSENTER_ESP: u32 = 0x175;
pub const IA32_SYSENTER_EIP: u32 = 0x176;
pub const IA32_MCG_CAP: u32 = 0x179;
pub const IA32_MCG_STATUS: u32 = 0x17a;
pub const IA32_MISC_ENABLE: u32 = 0x1a0;
pub const IA32_DEBUGCTL: u32 = 0x1d9;
pub const IA32_MTRR_PHYSBASE0: u32 = 0x200;
pub const IA32_MTRR_PHYSMASK7: u32 = 0x20f;
pub const IA32_MTRR_FIX64K_00000: u32 = 0x250;
pub const IA32_MTRR_FIX16K_80000: u32 = 0x258;
pub const IA32_MTRR_FIX16K_A0000: u32 = 0x259;
pub const IA32_MTRR_FIX4K_C0000: u32 = 0x268;
pub const IA32_MTRR_FIX4K_F8000: u32 = 0x26f;
pub const IA32_PAT: u32 = 0x277;
pub const IA32_MTRR_DEF_TYPE: u32 = 0x2ff;
pub const IA32_TSC_DEADLINE: u32 = 0x6e0;
pub const IA32_EFER: u32 = 0xc000_0080;
pub const IA32_STAR: u32 = 0xc000_0081;
pub const IA32_LSTAR: u32 = 0xc000_0082;
pub const IA32_CSTAR: u32 = 0xc000_0083;
pub const IA32_FMASK: u32 = 0xc000_0084;
pub const IA32_FS_BASE: u32 = 0xc000_0100;
pub const IA32_GS_BASE: u32 = 0xc000_0101;
pub const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;
pub const IA32_TSC_AUX: u32 = 0xc000_0103;
/// AMD HWCR; bit 24 TscFreqSel (the TSC counts at the P0 frequency).
pub const MSR_K7_HWCR: u32 = 0xc001_0015;
/// AMD SYSCFG: Linux reads it (memory-encryption and MTRR checks) without a fault
/// handler; Xen gives a guest zero (no SME, no MtrrFixDramEn).
pub const MSR_AMD64_SYSCFG: u32 = 0xc001_0010;
/// AMD DE_CFG; bit 1 makes LFENCE dispatch-serialising.
pub const MSR_AMD64_DE_CFG: u32 = 0xc001_1029;

/// The default local APIC base.
pub const APIC_BASE_ADDRESS: u64 = 0xfee0_0000;
pub const APIC_BASE_BSP: u64 = 1 << 8;
pub const APIC_BASE_EXTD: u64 = 1 << 10;
pub const APIC_BASE_ENABLE: u64 = 1 << 11;

/// Variable-range MTRR pairs offered (MTRRcap.VCNT).
pub const MTRR_VARIABLE_COUNT: u32 = 8;
const MTRRCAP_FIX: u64 = 1 << 8;
const MTRRCAP_WC: u64 = 1 << 10;
const MTRR_DEF_TYPE_FE: u64 = 1 << 10;
const MTRR_DEF_TYPE_E: u64 = 1 << 11;
const MTRR_PHYSMASK_VALID: u64 = 1 << 11;
const MEMORY_TYPE_WB: u64 = 6;
/// All eight fixed-range fields write-back.
const FIXED_ALL_WB: u64 = 0x0606_0606_0606_0606;
/// The power-on PAT: WB, WT, UC-, UC, WB, WT, UC-, UC.
pub const PAT_POWER_ON: u64 = 0x0007_0406_0007_0406;

/// MISC_ENABLE as the guest reads it: fast strings on, BTS and PEBS unavailable, xTPR
/// messages disabled, no MONITOR, no Enhanced SpeedStep (Xen `guest_misc_enable`).
const MISC_ENABLE_VALUE: u64 = (1 << 0) | (1 << 11) | (1 << 12) | (1 << 23);
/// FEATURE_CONTROL: locked, VMX off in and outside SMX.
const FEATURE_CONTROL_LOCKED: u64 = 1 << 0;
const HWCR_TSC_FREQ_SEL: u64 = 1 << 24;
const DE_CFG_LFENCE_SERIALISE: u64 = 1 << 1;

/// What an RDMSR yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsrRead {
    /// Put the value in EDX:EAX and step past the instruction.
    Value(u64),
    /// Inject #GP(0). `unknown_msr`: the index is not one this module knows (worth a
    /// debug log line); false means a known MSR the guest may not read.
    InjectGp { unknown_msr: bool },
    /// The vendor backend owns this MSR (see the module documentation).
    NotEmulated,
}

/// What a WRMSR does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsrWrite {
    /// Stored (or accepted and ignored); step past the instruction.
    Done,
    /// Write the hypercall page ([`super::hypercall_page::fill`]) at guest-physical
    /// `gpa` (page-aligned), then step past the instruction. If `gpa` is not guest RAM,
    /// inject #GP instead. `page_index` is always 0 (Xen has exactly one page).
    InstallHypercallPage { gpa: u64, page_index: u32 },
    /// Inject #GP(0); `unknown_msr` as in [`MsrRead::InjectGp`]. Nothing was stored.
    InjectGp { unknown_msr: bool },
    /// The vendor backend owns this MSR.
    NotEmulated,
}

/// The per-vCPU MSR values emulated in software.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestMsrState {
    vendor: HostVendor,
    /// Mask of the guest-physical address bits (from CPUID 0x80000008 EAX[7:0]).
    physical_address_mask: u64,
    apic_base: u64,
    mtrr_def_type: u64,
    mtrr_fixed: [u64; 11],
    mtrr_variable: [(u64, u64); MTRR_VARIABLE_COUNT as usize],
    pat: u64,
}

impl GuestMsrState {
    /// The reset state of vCPU `vcpu_id` (vCPU 0 is the bootstrap processor).
    /// `physical_address_bits` is what CPUID 0x80000008 EAX[7:0] tells the guest
    /// (clamped to 36..=52).
    pub fn new(vcpu_id: u32, vendor: HostVendor, physical_address_bits: u8) -> GuestMsrState {
        let bits = u32::from(physical_address_bits.clamp(36, 52));
        let bsp = if vcpu_id == 0 { APIC_BASE_BSP } else { 0 };
        GuestMsrState {
            vendor,
            physical_address_mask: (1u64 << bits) - 1,
            apic_base: APIC_BASE_ADDRESS | APIC_BASE_ENABLE | bsp,
            // What Xen gives a PVH domU: MTRRs enabled, default type write-back.
            mtrr_def_type: MTRR_DEF_TYPE_E | MTRR_DEF_TYPE_FE | MEMORY_TYPE_WB,
            mtrr_fixed: [FIXED_ALL_WB; 11],
            mtrr_variable: [(0, 0); MTRR_VARIABLE_COUNT as usize],
            pat: PAT_POWER_ON,
        }
    }

    /// IA32_APIC_BASE as the guest last wrote it.
    pub fn apic_base(&self) -> u64 {
        self.apic_base
    }

    /// True while the local APIC is globally enabled (APIC_BASE bit 11); the vLAPIC
    /// ignores MMIO while it is clear.
    pub fn apic_enabled(&self) -> bool {
        self.apic_base & APIC_BASE_ENABLE != 0
    }

    /// The guest PAT, for the backend's guest-PAT field.
    pub fn pat(&self) -> u64 {
        self.pat
    }

    /// IA32_MTRR_DEF_TYPE.
    pub fn mtrr_def_type(&self) -> u64 {
        self.mtrr_def_type
    }

    fn intel(&self) -> bool {
        self.vendor == HostVendor::Intel
    }

    fn amd(&self) -> bool {
        self.vendor == HostVendor::Amd
    }
}

const GP_KNOWN: MsrRead = MsrRead::InjectGp { unknown_msr: false };
const WRITE_GP_KNOWN: MsrWrite = MsrWrite::InjectGp { unknown_msr: false };

/// True for the MSRs the vendor backend keeps in its control structure.
fn backend_owned(index: u32) -> bool {
    matches!(
        index,
        IA32_TSC
            | IA32_SYSENTER_CS
            | IA32_SYSENTER_ESP
            | IA32_SYSENTER_EIP
            | IA32_EFER
            | IA32_STAR
            | IA32_LSTAR
            | IA32_CSTAR
            | IA32_FMASK
            | IA32_FS_BASE
            | IA32_GS_BASE
            | IA32_KERNEL_GS_BASE
    )
}

/// Known MSRs whose feature the CPUID policy hides: #GP without a log line.
fn hidden_feature(index: u32) -> bool {
    matches!(
        index,
        IA32_SPEC_CTRL
            | IA32_PRED_CMD
            | IA32_ARCH_CAPABILITIES
            | IA32_FLUSH_CMD
            | IA32_TSC_DEADLINE
            | IA32_TSC_AUX
            | 0x3b // IA32_TSC_ADJUST
            | 0xe7 | 0xe8 // MPERF, APERF
            | 0x17b // MCG_CTL (MCG_CAP.CTL_P = 0)
            | 0x400..=0x47f // MCA banks (MCG_CAP.COUNT = 0)
            | 0x800..=0x8ff // x2APIC
    )
}

fn fixed_mtrr_slot(index: u32) -> Option<usize> {
    match index {
        IA32_MTRR_FIX64K_00000 => Some(0),
        IA32_MTRR_FIX16K_80000 => Some(1),
        IA32_MTRR_FIX16K_A0000 => Some(2),
        IA32_MTRR_FIX4K_C0000..=IA32_MTRR_FIX4K_F8000 => Some(3 + (index - IA32_MTRR_FIX4K_C0000) as usize),
        _ => None,
    }
}

/// Memory types valid in MTRRs: UC 0, WC 1, WT 4, WP 5, WB 6.
fn valid_mtrr_type(memory_type: u64) -> bool {
    matches!(memory_type, 0 | 1 | 4 | 5 | 6)
}

/// Memory types valid in a PAT entry: UC, WC, WT, WP, WB, UC- (7).
fn valid_pat_type(memory_type: u64) -> bool {
    matches!(memory_type, 0 | 1 | 4 | 5 | 6 | 7)
}

/// RDMSR `index` on the vCPU whose state is `state`.
pub fn read_msr(state: &GuestMsrState, index: u32) -> MsrRead {
    if backend_owned(index) {
        return MsrRead::NotEmulated;
    }
    if hidden_feature(index) {
        return GP_KNOWN;
    }
    if let Some(slot) = fixed_mtrr_slot(index) {
        return MsrRead::Value(state.mtrr_fixed[slot]);
    }
    if (IA32_MTRR_PHYSBASE0..=IA32_MTRR_PHYSMASK7).contains(&index) {
        let (base, mask) = state.mtrr_variable[((index - IA32_MTRR_PHYSBASE0) / 2) as usize];
        return MsrRead::Value(if index.is_multiple_of(2) { base } else { mask });
    }
    let value = match index {
        IA32_APIC_BASE => state.apic_base,
        IA32_MTRRCAP => MTRRCAP_WC | MTRRCAP_FIX | u64::from(MTRR_VARIABLE_COUNT),
        IA32_MTRR_DEF_TYPE => state.mtrr_def_type,
        IA32_PAT => state.pat,
        IA32_BIOS_SIGN_ID => 0,
        IA32_MCG_CAP | IA32_MCG_STATUS => 0,
        IA32_DEBUGCTL => 0,
        IA32_PLATFORM_ID if state.intel() => 0,
        IA32_MISC_ENABLE if state.intel() => MISC_ENABLE_VALUE,
        IA32_FEATURE_CONTROL if state.intel() => FEATURE_CONTROL_LOCKED,
        MSR_K7_HWCR if state.amd() => HWCR_TSC_FREQ_SEL,
        MSR_AMD64_DE_CFG if state.amd() => DE_CFG_LFENCE_SERIALISE,
        MSR_AMD64_SYSCFG if state.amd() => 0,
        // Xen: the hypercall-page MSR reads as zero.
        XEN_HYPERCALL_PAGE_MSR => 0,
        IA32_PLATFORM_ID | IA32_MISC_ENABLE | IA32_FEATURE_CONTROL | MSR_K7_HWCR | MSR_AMD64_DE_CFG
        | MSR_AMD64_SYSCFG => {
            return GP_KNOWN;
        }
        _ => return MsrRead::InjectGp { unknown_msr: true },
    };
    MsrRead::Value(value)
}

/// WRMSR `value` to `index` on the vCPU whose state is `state`. On anything but
/// [`MsrWrite::Done`] the state is unchanged.
pub fn write_msr(state: &mut GuestMsrState, index: u32, value: u64) -> MsrWrite {
    if backend_owned(index) {
        return MsrWrite::NotEmulated;
    }
    if hidden_feature(index) {
        return WRITE_GP_KNOWN;
    }
    if let Some(slot) = fixed_mtrr_slot(index) {
        if !(0..8).all(|byte| valid_mtrr_type((value >> (byte * 8)) & 0xff)) {
            return WRITE_GP_KNOWN;
        }
        state.mtrr_fixed[slot] = value;
        return MsrWrite::Done;
    }
    if (IA32_MTRR_PHYSBASE0..=IA32_MTRR_PHYSMASK7).contains(&index) {
        let pair = &mut state.mtrr_variable[((index - IA32_MTRR_PHYSBASE0) / 2) as usize];
        let address_bits = state.physical_address_mask & !0xfff;
        if index.is_multiple_of(2) {
            // PHYSBASE: type in 7:0, 11:8 reserved, base below MAXPHYADDR.
            if value & !(address_bits | 0xff) != 0 || !valid_mtrr_type(value & 0xff) {
                return WRITE_GP_KNOWN;
            }
            pair.0 = value;
        } else {
            // PHYSMASK: valid bit 11, 10:0 reserved.
            if value & !(address_bits | MTRR_PHYSMASK_VALID) != 0 {
                return WRITE_GP_KNOWN;
            }
            pair.1 = value;
        }
        return MsrWrite::Done;
    }
    match index {
        IA32_APIC_BASE => write_apic_base(state, value),
        IA32_MTRR_DEF_TYPE => {
            let allowed = MTRR_DEF_TYPE_E | MTRR_DEF_TYPE_FE | 0xff;
            if value & !allowed != 0 || !valid_mtrr_type(value & 0xff) {
                return WRITE_GP_KNOWN;
            }
            state.mtrr_def_type = value;
            MsrWrite::Done
        }
        IA32_PAT => {
            if !(0..8).all(|entry| valid_pat_type((value >> (entry * 8)) & 0xff)) {
                return WRITE_GP_KNOWN;
            }
            state.pat = value;
            MsrWrite::Done
        }
        // Linux writes 0 before reading the microcode revision; AMD's PATCH_LEVEL shares
        // the index. Accepted, nothing to keep.
        IA32_BIOS_SIGN_ID => MsrWrite::Done,
        // Clearing the (already clear) status is fine; nothing else is writable.
        IA32_MCG_STATUS if value == 0 => MsrWrite::Done,
        IA32_DEBUGCTL if value == 0 => MsrWrite::Done,
        IA32_MISC_ENABLE if state.intel() && value == MISC_ENABLE_VALUE => MsrWrite::Done,
        // Writes that keep HWCR's value are harmless; DE_CFG writes are ignored (Xen).
        MSR_K7_HWCR if state.amd() && value == HWCR_TSC_FREQ_SEL => MsrWrite::Done,
        MSR_AMD64_DE_CFG if state.amd() => MsrWrite::Done,
        XEN_HYPERCALL_PAGE_MSR => {
            let page_index = (value & 0xfff) as u32;
            let gpa = value & !0xfff;
            if page_index != 0 || gpa & !state.physical_address_mask != 0 {
                return WRITE_GP_KNOWN;
            }
            MsrWrite::InstallHypercallPage { gpa, page_index }
        }
        IA32_MTRRCAP | IA32_PLATFORM_ID | IA32_MCG_CAP | IA32_MCG_STATUS | IA32_DEBUGCTL | IA32_MISC_ENABLE
        | IA32_FEATURE_CONTROL | MSR_K7_HWCR => WRITE_GP_KNOWN,
        _ => MsrWrite::InjectGp { unknown_msr: true },
    }
}

/// APIC_BASE: the enable bit may change; the BSP flag is read-only (a written value is
/// ignored, as Linux writes back what it read); relocation, x2APIC mode (EXTD) and
/// reserved bits #GP. Going from disabled straight to x2APIC is what EXTD would need;
/// it comes with x2APIC support.
fn write_apic_base(state: &mut GuestMsrState, value: u64) -> MsrWrite {
    let address = value & state.physical_address_mask & !0xfff;
    let reserved =
        value & !(state.physical_address_mask & !0xfff) & !(APIC_BASE_BSP | APIC_BASE_EXTD | APIC_BASE_ENABLE);
    if reserved != 0 || address != APIC_BASE_ADDRESS || value & APIC_BASE_EXTD != 0 {
        return WRITE_GP_KNOWN;
    }
    state.apic_base = (state.apic_base & APIC_BASE_BSP) | APIC_BASE_ADDRESS | (value & APIC_BASE_ENABLE);
    MsrWrite::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amd(vcpu: u32) -> GuestMsrState {
        GuestMsrState::new(vcpu, HostVendor::Amd, 48)
    }

    fn intel(vcpu: u32) -> GuestMsrState {
        GuestMsrState::new(vcpu, HostVendor::Intel, 39)
    }

    #[test]
    fn backend_owned_msrs_are_not_emulated() {
        let mut state = amd(0);
        for index in [
            IA32_TSC,
            IA32_EFER,
            IA32_STAR,
            IA32_LSTAR,
            IA32_CSTAR,
            IA32_FMASK,
            IA32_FS_BASE,
            IA32_GS_BASE,
            IA32_KERNEL_GS_BASE,
            IA32_SYSENTER_CS,
            IA32_SYSENTER_ESP,
            IA32_SYSENTER_EIP,
        ] {
            assert_eq!(read_msr(&state, index), MsrRead::NotEmulated, "{index:#x}");
            assert_eq!(write_msr(&mut state, index, 1), MsrWrite::NotEmulated, "{index:#x}");
        }
        assert_eq!(state, amd(0));
    }

    #[test]
    fn apic_base() {
        let mut bsp = amd(0);
        assert_eq!(read_msr(&bsp, IA32_APIC_BASE), MsrRead::Value(0xfee0_0900));
        let mut ap = amd(1);
        assert_eq!(read_msr(&ap, IA32_APIC_BASE), MsrRead::Value(0xfee0_0800));
        // Disable and re-enable; the BSP flag stays as it was whatever is written.
        assert_eq!(write_msr(&mut bsp, IA32_APIC_BASE, 0xfee0_0000), MsrWrite::Done);
        assert!(!bsp.apic_enabled());
        assert_eq!(read_msr(&bsp, IA32_APIC_BASE), MsrRead::Value(0xfee0_0100));
        assert_eq!(write_msr(&mut ap, IA32_APIC_BASE, 0xfee0_0900), MsrWrite::Done);
        assert_eq!(ap.apic_base(), 0xfee0_0800);
        // x2APIC, relocation, reserved bits: #GP and no change.
        for value in [0xfee0_0c00, 0xfed0_0800, 0xfee0_0801, 0xfee0_0a00, 1 << 60 | 0xfee0_0800] {
            assert_eq!(write_msr(&mut ap, IA32_APIC_BASE, value), WRITE_GP_KNOWN, "{value:#x}");
        }
        assert_eq!(ap.apic_base(), 0xfee0_0800);
    }

    #[test]
    fn mtrrs() {
        let mut state = intel(0);
        assert_eq!(read_msr(&state, IA32_MTRRCAP), MsrRead::Value(0x508));
        assert_eq!(write_msr(&mut state, IA32_MTRRCAP, 0), WRITE_GP_KNOWN);
        assert_eq!(read_msr(&state, IA32_MTRR_DEF_TYPE), MsrRead::Value(0xc06));
        assert_eq!(write_msr(&mut state, IA32_MTRR_DEF_TYPE, 0x800), MsrWrite::Done);
        assert_eq!(state.mtrr_def_type(), 0x800);
        for bad in [0x802, 0x803, 0x807, 0x1800, 0x100] {
            assert_eq!(write_msr(&mut state, IA32_MTRR_DEF_TYPE, bad), WRITE_GP_KNOWN, "{bad:#x}");
        }
        assert_eq!(state.mtrr_def_type(), 0x800);

        assert_eq!(read_msr(&state, 0x26c), MsrRead::Value(FIXED_ALL_WB));
        assert_eq!(write_msr(&mut state, 0x259, 0x0000_0000_0101_0000), MsrWrite::Done);
        assert_eq!(read_msr(&state, 0x259), MsrRead::Value(0x0101_0000));
        assert_eq!(write_msr(&mut state, 0x259, 0x0200_0000_0000_0000), WRITE_GP_KNOWN);
        assert_eq!(read_msr(&state, 0x251), MsrRead::InjectGp { unknown_msr: true });

        // Variable pair 3 with a 39-bit physical address space.
        assert_eq!(write_msr(&mut state, 0x206, 0x7f_c000_0006), MsrWrite::Done);
        assert_eq!(write_msr(&mut state, 0x207, 0x7f_c000_0800), MsrWrite::Done);
        assert_eq!(read_msr(&state, 0x206), MsrRead::Value(0x7f_c000_0006));
        assert_eq!(read_msr(&state, 0x207), MsrRead::Value(0x7f_c000_0800));
        assert_eq!(write_msr(&mut state, 0x206, 0x80_0000_0006), WRITE_GP_KNOWN, "above MAXPHYADDR");
        assert_eq!(write_msr(&mut state, 0x206, 0x102), WRITE_GP_KNOWN, "reserved 11:8 / bad type");
        assert_eq!(write_msr(&mut state, 0x207, 0x801), WRITE_GP_KNOWN, "reserved 10:0");
        assert_eq!(read_msr(&state, 0x210), MsrRead::InjectGp { unknown_msr: true }, "only 8 pairs");
    }

    #[test]
    fn pat() {
        let mut state = amd(2);
        assert_eq!(read_msr(&state, IA32_PAT), MsrRead::Value(PAT_POWER_ON));
        let linux = 0x0407_0501_0007_0406;
        assert_eq!(write_msr(&mut state, IA32_PAT, linux), MsrWrite::Done);
        assert_eq!(state.pat(), linux);
        for bad in [0x02, 0x03 << 8, 0x08 << 56, 0xff] {
            assert_eq!(write_msr(&mut state, IA32_PAT, bad), WRITE_GP_KNOWN);
        }
        assert_eq!(state.pat(), linux);
    }

    #[test]
    fn identification_and_machine_check() {
        let mut state = intel(0);
        assert_eq!(read_msr(&state, IA32_PLATFORM_ID), MsrRead::Value(0));
        assert_eq!(write_msr(&mut state, IA32_BIOS_SIGN_ID, 0), MsrWrite::Done);
        assert_eq!(read_msr(&state, IA32_BIOS_SIGN_ID), MsrRead::Value(0));
        assert_eq!(read_msr(&state, IA32_MCG_CAP), MsrRead::Value(0));
        assert_eq!(read_msr(&state, IA32_MCG_STATUS), MsrRead::Value(0));
        assert_eq!(write_msr(&mut state, IA32_MCG_STATUS, 0), MsrWrite::Done);
        assert_eq!(write_msr(&mut state, IA32_MCG_STATUS, 1), WRITE_GP_KNOWN);
        assert_eq!(write_msr(&mut state, IA32_MCG_CAP, 0), WRITE_GP_KNOWN);
        assert_eq!(read_msr(&state, 0x401), GP_KNOWN, "no MCA banks");
        let misc = read_msr(&state, IA32_MISC_ENABLE);
        assert_eq!(misc, MsrRead::Value(MISC_ENABLE_VALUE));
        assert_eq!(write_msr(&mut state, IA32_MISC_ENABLE, MISC_ENABLE_VALUE), MsrWrite::Done);
        assert_eq!(write_msr(&mut state, IA32_MISC_ENABLE, 0), WRITE_GP_KNOWN);
        assert_eq!(read_msr(&state, IA32_FEATURE_CONTROL), MsrRead::Value(1));
        assert_eq!(write_msr(&mut state, IA32_FEATURE_CONTROL, 5), WRITE_GP_KNOWN);
        assert_eq!(read_msr(&state, MSR_K7_HWCR), GP_KNOWN, "AMD-only on Intel");

        let mut state = amd(0);
        assert_eq!(read_msr(&state, IA32_MISC_ENABLE), GP_KNOWN, "Intel-only on AMD");
        assert_eq!(read_msr(&state, MSR_K7_HWCR), MsrRead::Value(1 << 24));
        assert_eq!(read_msr(&state, MSR_AMD64_DE_CFG), MsrRead::Value(2));
        assert_eq!(write_msr(&mut state, MSR_AMD64_DE_CFG, 0), MsrWrite::Done);
        assert_eq!(read_msr(&state, MSR_AMD64_DE_CFG), MsrRead::Value(2));
    }

    #[test]
    fn hidden_features_gp_quietly() {
        let mut state = amd(0);
        for index in [
            IA32_SPEC_CTRL,
            IA32_PRED_CMD,
            IA32_ARCH_CAPABILITIES,
            IA32_FLUSH_CMD,
            IA32_TSC_DEADLINE,
            IA32_TSC_AUX,
            0x802,
            0x830,
        ] {
            assert_eq!(read_msr(&state, index), GP_KNOWN, "{index:#x}");
            assert_eq!(write_msr(&mut state, index, 0), WRITE_GP_KNOWN, "{index:#x}");
        }
        assert_eq!(read_msr(&state, 0xc001_0114), MsrRead::InjectGp { unknown_msr: true });
        assert_eq!(write_msr(&mut state, 0x1234_5678, 0), MsrWrite::InjectGp { unknown_msr: true });
        assert_eq!(state, amd(0));
    }

    #[test]
    fn hypercall_page_msr() {
        let mut state = amd(0);
        assert_eq!(read_msr(&state, 0x4000_0000), MsrRead::Value(0));
        assert_eq!(
            write_msr(&mut state, 0x4000_0000, 0x0123_4000),
            MsrWrite::InstallHypercallPage { gpa: 0x0123_4000, page_index: 0 }
        );
        assert_eq!(write_msr(&mut state, 0x4000_0000, 0x0123_4001), WRITE_GP_KNOWN, "page index 1");
        assert_eq!(write_msr(&mut state, 0x4000_0000, 1 << 60), WRITE_GP_KNOWN, "beyond MAXPHYADDR");
        assert_eq!(read_msr(&state, 0x4000_0001), MsrRead::InjectGp { unknown_msr: true });
    }

    #[test]
    fn no_panic_on_any_access() {
        let mut state = intel(3);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let index = match seed % 3 {
                0 => (seed >> 8) as u32 & 0xfff,
                1 => 0xc000_0000 | ((seed >> 8) as u32 & 0x1_ffff),
                _ => (seed >> 8) as u32,
            };
            let _ = read_msr(&state, index);
            let _ = write_msr(&mut state, index, seed.rotate_left(17));
        }
    }
}
