//! The VMCB: offsets of the fields Basalt uses (AMD APM vol. 2, appendix B, tables B-1
//! control area and B-2 state save area), exit codes (appendix C) and a typed view over
//! one 4 KiB VMCB page reached through the direct map.

/// Control area.
pub const INTERCEPT_CR_READ: usize = 0x000;
pub const INTERCEPT_EXCEPTIONS: usize = 0x008;
pub const INTERCEPT_MISC1: usize = 0x00c;
pub const INTERCEPT_MISC2: usize = 0x010;
pub const IOPM_BASE_PA: usize = 0x040;
pub const MSRPM_BASE_PA: usize = 0x048;
pub const TSC_OFFSET: usize = 0x050;
pub const GUEST_ASID: usize = 0x058;
pub const TLB_CONTROL: usize = 0x05c;
pub const VINTR: usize = 0x060;
pub const INTERRUPT_SHADOW: usize = 0x068;
pub const EXIT_CODE: usize = 0x070;
pub const EXIT_INFO1: usize = 0x078;
pub const EXIT_INFO2: usize = 0x080;
pub const EXIT_INT_INFO: usize = 0x088;
pub const NP_ENABLE: usize = 0x090;
pub const EVENT_INJECTION: usize = 0x0a8;
pub const NESTED_CR3: usize = 0x0b0;
pub const CLEAN_BITS: usize = 0x0c0;
pub const NEXT_RIP: usize = 0x0c8;

/// State save area: segment registers are 16 bytes each (selector u16, attributes u16,
/// limit u32, base u64).
pub const ES: usize = 0x400;
pub const CS: usize = 0x410;
pub const SS: usize = 0x420;
pub const DS: usize = 0x430;
pub const FS: usize = 0x440;
pub const GS: usize = 0x450;
pub const GDTR: usize = 0x460;
pub const LDTR: usize = 0x470;
pub const IDTR: usize = 0x480;
pub const TR: usize = 0x490;
pub const CPL: usize = 0x4cb;
pub const EFER: usize = 0x4d0;
pub const CR4: usize = 0x548;
pub const CR3: usize = 0x550;
pub const CR0: usize = 0x558;
pub const DR7: usize = 0x560;
pub const DR6: usize = 0x568;
pub const RFLAGS: usize = 0x570;
pub const RIP: usize = 0x578;
pub const RSP: usize = 0x5d8;
pub const RAX: usize = 0x5f8;
pub const CR2: usize = 0x640;
pub const G_PAT: usize = 0x668;

/// Intercept vector 3 (offset 0x00c) bits.
pub const INTERCEPT_INTR: u32 = 1 << 0;
pub const INTERCEPT_NMI: u32 = 1 << 1;
pub const INTERCEPT_SMI: u32 = 1 << 2;
pub const INTERCEPT_INIT: u32 = 1 << 3;
pub const INTERCEPT_VINTR: u32 = 1 << 4;
pub const INTERCEPT_CPUID: u32 = 1 << 18;
pub const INTERCEPT_INVD: u32 = 1 << 22;
pub const INTERCEPT_HLT: u32 = 1 << 24;
pub const INTERCEPT_INVLPGA: u32 = 1 << 26;
pub const INTERCEPT_IOIO_PROT: u32 = 1 << 27;
pub const INTERCEPT_MSR_PROT: u32 = 1 << 28;
pub const INTERCEPT_TASK_SWITCH: u32 = 1 << 29;
pub const INTERCEPT_SHUTDOWN: u32 = 1 << 31;
/// Intercept vector 4 (offset 0x010) bits.
pub const INTERCEPT_VMRUN: u32 = 1 << 0;
pub const INTERCEPT_VMMCALL: u32 = 1 << 1;
pub const INTERCEPT_VMLOAD: u32 = 1 << 2;
pub const INTERCEPT_VMSAVE: u32 = 1 << 3;
pub const INTERCEPT_STGI: u32 = 1 << 4;
pub const INTERCEPT_CLGI: u32 = 1 << 5;
pub const INTERCEPT_SKINIT: u32 = 1 << 6;
pub const INTERCEPT_RDTSCP: u32 = 1 << 7;
pub const INTERCEPT_ICEBP: u32 = 1 << 8;
pub const INTERCEPT_WBINVD: u32 = 1 << 9;
pub const INTERCEPT_MONITOR: u32 = 1 << 10;
pub const INTERCEPT_MWAIT: u32 = 1 << 11;
pub const INTERCEPT_MWAIT_ARMED: u32 = 1 << 12;
pub const INTERCEPT_XSETBV: u32 = 1 << 13;

/// V_INTR_MASKING (VINTR bit 24): physical interrupts are masked by the host's IF, not
/// the guest's, so they always reach the host.
pub const V_INTR_MASKING: u64 = 1 << 24;
/// VINTR: a virtual interrupt is pending (V_IRQ), at priority 15, ignoring V_TPR —
/// used only to get a VINTR exit when the guest can take an interrupt.
pub const V_IRQ: u64 = 1 << 8;
pub const V_INTR_PRIO_MAX: u64 = 0xf << 16;
pub const V_IGN_TPR: u64 = 1 << 20;

/// Exit codes (appendix C).
pub const VMEXIT_EXCEPTION_BASE: u64 = 0x40;
pub const VMEXIT_INTR: u64 = 0x60;
pub const VMEXIT_VINTR: u64 = 0x64;
pub const VMEXIT_NMI: u64 = 0x61;
pub const VMEXIT_SMI: u64 = 0x62;
pub const VMEXIT_INIT: u64 = 0x63;
pub const VMEXIT_CPUID: u64 = 0x72;
pub const VMEXIT_INVD: u64 = 0x76;
pub const VMEXIT_PAUSE: u64 = 0x77;
pub const VMEXIT_HLT: u64 = 0x78;
pub const VMEXIT_INVLPGA: u64 = 0x7a;
pub const VMEXIT_IOIO: u64 = 0x7b;
pub const VMEXIT_MSR: u64 = 0x7c;
pub const VMEXIT_TASK_SWITCH: u64 = 0x7d;
pub const VMEXIT_SHUTDOWN: u64 = 0x7f;
pub const VMEXIT_VMRUN: u64 = 0x80;
pub const VMEXIT_VMMCALL: u64 = 0x81;
pub const VMEXIT_VMLOAD: u64 = 0x82;
pub const VMEXIT_VMSAVE: u64 = 0x83;
pub const VMEXIT_STGI: u64 = 0x84;
pub const VMEXIT_CLGI: u64 = 0x85;
pub const VMEXIT_SKINIT: u64 = 0x86;
pub const VMEXIT_RDTSCP: u64 = 0x87;
pub const VMEXIT_ICEBP: u64 = 0x88;
pub const VMEXIT_WBINVD: u64 = 0x89;
pub const VMEXIT_MONITOR: u64 = 0x8a;
pub const VMEXIT_MWAIT: u64 = 0x8b;
pub const VMEXIT_MWAIT_CONDITIONAL: u64 = 0x8c;
pub const VMEXIT_XSETBV: u64 = 0x8d;
pub const VMEXIT_NPF: u64 = 0x400;
/// VMEXIT_INVALID is -1; QEMU reports only the low 32 bits set, so compare those.
pub const VMEXIT_INVALID_LOW32: u64 = 0xffff_ffff;

/// EVENTINJ: valid bit, type field values, error-code-valid bit.
pub const EVENT_VALID: u64 = 1 << 31;
pub const EVENT_TYPE_INTR: u64 = 0 << 8;
pub const EVENT_TYPE_EXCEPTION: u64 = 3 << 8;
pub const EVENT_ERROR_VALID: u64 = 1 << 11;

/// A VMCB page through the direct map.
pub struct Vmcb {
    virtual_address: *mut u8,
}

// SAFETY: a Vmcb is owned by exactly one vCPU object, which only one physical CPU uses
// at a time (the scheduler never hands a running vCPU to a second CPU).
unsafe impl Send for Vmcb {}

impl Vmcb {
    /// # Safety
    /// `virtual_address` is the direct-map address of a 4 KiB page owned by the caller for
    /// the Vmcb's lifetime.
    pub unsafe fn new(virtual_address: u64) -> Vmcb {
        Vmcb { virtual_address: virtual_address as *mut u8 }
    }

    pub fn read_u64(&self, offset: usize) -> u64 {
        debug_assert!(offset + 8 <= 4096);
        // SAFETY: offsets are constants inside the 4 KiB page this Vmcb owns.
        unsafe { self.virtual_address.add(offset).cast::<u64>().read_volatile() }
    }
    pub fn write_u64(&mut self, offset: usize, value: u64) {
        debug_assert!(offset + 8 <= 4096);
        // SAFETY: as in read_u64.
        unsafe { self.virtual_address.add(offset).cast::<u64>().write_volatile(value) }
    }
    pub fn read_u32(&self, offset: usize) -> u32 {
        // SAFETY: as in read_u64.
        unsafe { self.virtual_address.add(offset).cast::<u32>().read_volatile() }
    }
    pub fn write_u32(&mut self, offset: usize, value: u32) {
        // SAFETY: as in read_u64.
        unsafe { self.virtual_address.add(offset).cast::<u32>().write_volatile(value) }
    }
    pub fn read_u16(&self, offset: usize) -> u16 {
        // SAFETY: as in read_u64.
        unsafe { self.virtual_address.add(offset).cast::<u16>().read_volatile() }
    }
    pub fn write_u8(&mut self, offset: usize, value: u8) {
        // SAFETY: as in read_u64.
        unsafe { self.virtual_address.add(offset).write_volatile(value) }
    }
    pub fn read_u8(&self, offset: usize) -> u8 {
        // SAFETY: as in read_u64.
        unsafe { self.virtual_address.add(offset).read_volatile() }
    }

    /// Writes a segment register: selector, packed attributes (VMCB format: descriptor
    /// bits 40–47 in 0–7, bits 52–55 in 8–11), limit, base.
    pub fn write_segment(&mut self, offset: usize, selector: u16, attributes: u16, limit: u32, base: u64) {
        let low = u64::from(selector) | (u64::from(attributes) << 16) | (u64::from(limit) << 32);
        self.write_u64(offset, low);
        self.write_u64(offset + 8, base);
    }

    pub fn segment_attributes(&self, offset: usize) -> u16 {
        self.read_u16(offset + 2)
    }
    pub fn segment_base(&self, offset: usize) -> u64 {
        self.read_u64(offset + 8)
    }
}

/// Converts Xen's VMX-style access rights (`*_ar` in `vcpu_hvm_x86_32`: bits 0–7 and
/// 12–15) into the VMCB's packed 12-bit attribute format.
pub const fn attributes_from_access_rights(access_rights: u16) -> u16 {
    (access_rights & 0xff) | ((access_rights >> 4) & 0xf00)
}
