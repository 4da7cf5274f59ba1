//! x87/MMX/SSE register state of guest vCPUs.
//!
//! Why: VMRUN and VM exits switch neither the x87 nor the SSE registers, so without this
//! one domain's floating-point and vector registers would be seen (and clobbered) by
//! the next vCPU on the same CPU. The hypervisor itself never touches them (the
//! x86_64-unknown-none target is soft-float), so a vCPU's state only has to be loaded
//! when its time slice starts and saved when it ends (FXRSTOR / FXSAVE, SDM vol. 1
//! §10.5, APM vol. 2 §11.4.4). AVX and later state needs XSAVE; guests are not offered
//! XSAVE (CPUID policy), XSETBV is intercepted and the host's XCR0 stays x87-only, so
//! the 512-byte FXSAVE image is the whole state.

use core::arch::asm;

const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;

/// Lets FXSAVE/FXRSTOR include the SSE registers on the calling CPU (CR4.OSFXSR), and
/// SIMD exceptions be reported as #XM; both are host settings only.
pub fn enable_this_cpu() {
    let cr4 = super::instructions::read_cr4();
    // SAFETY: setting OSFXSR/OSXMMEXCPT only changes how FXSAVE/FXRSTOR and SIMD
    // exceptions behave; the hypervisor executes no SSE instructions of its own.
    unsafe { asm!("mov cr4, {}", in(reg) cr4 | CR4_OSFXSR | CR4_OSXMMEXCPT, options(nostack, preserves_flags)) };
}

/// One vCPU's FXSAVE image.
#[repr(C, align(16))]
pub struct FpuState {
    image: [u8; 512],
}

impl Default for FpuState {
    /// The state after FNINIT with MXCSR at its reset value: FCW 0x037f, all
    /// exceptions masked, registers empty.
    fn default() -> Self {
        let mut image = [0u8; 512];
        image[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        image[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        // MXCSR_MASK: reserved bits in MXCSR must be clear for FXRSTOR; 0xffff is the
        // mask every SSE2 CPU reports.
        image[28..32].copy_from_slice(&0xffffu32.to_le_bytes());
        FpuState { image }
    }
}

impl FpuState {
    /// Loads this state into the CPU's registers.
    pub fn load(&self) {
        // SAFETY: the image is 16-byte aligned, 512 bytes, and holds either the default
        // (valid) state or one FXSAVE wrote; CR4.OSFXSR is set on every CPU that runs
        // guests.
        unsafe { asm!("fxrstor64 [{}]", in(reg) self.image.as_ptr(), options(nostack, readonly, preserves_flags)) };
    }

    /// Saves the CPU's registers into this state.
    pub fn save(&mut self) {
        // SAFETY: the image is 16-byte aligned and 512 bytes, as FXSAVE requires.
        unsafe { asm!("fxsave64 [{}]", in(reg) self.image.as_mut_ptr(), options(nostack, preserves_flags)) };
    }
}
