//! Guest breakpoint addresses (DR0–DR3).
//!
//! Why: the world switch saves and loads DR6 and DR7 (they are in the VMCB, and the
//! VMCS) but not the four address registers, which guests may write without an exit.
//! Without switching them one domain could read the breakpoint addresses another set.
//! The hypervisor uses no hardware breakpoints itself (its DR7 is all-disabled after
//! every exit), so, like the x87/SSE state, they are loaded when a vCPU's time slice
//! starts and saved when it ends.

use core::arch::asm;

/// One vCPU's DR0–DR3 (reset value: all zero).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DebugAddressRegisters {
    pub dr: [u64; 4],
}

impl DebugAddressRegisters {
    /// Loads DR0–DR3 with this vCPU's values.
    pub fn load(&self) {
        // SAFETY: writing breakpoint addresses has no effect while the host's DR7 keeps
        // every breakpoint disabled, which it does outside guest mode.
        unsafe {
            asm!("mov dr0, {}", in(reg) self.dr[0], options(nomem, nostack, preserves_flags));
            asm!("mov dr1, {}", in(reg) self.dr[1], options(nomem, nostack, preserves_flags));
            asm!("mov dr2, {}", in(reg) self.dr[2], options(nomem, nostack, preserves_flags));
            asm!("mov dr3, {}", in(reg) self.dr[3], options(nomem, nostack, preserves_flags));
        }
    }

    /// Saves the CPU's DR0–DR3 as this vCPU's values.
    pub fn save(&mut self) {
        // SAFETY: reading debug registers at CPL 0 has no side effects.
        unsafe {
            asm!("mov {}, dr0", out(reg) self.dr[0], options(nomem, nostack, preserves_flags));
            asm!("mov {}, dr1", out(reg) self.dr[1], options(nomem, nostack, preserves_flags));
            asm!("mov {}, dr2", out(reg) self.dr[2], options(nomem, nostack, preserves_flags));
            asm!("mov {}, dr3", out(reg) self.dr[3], options(nomem, nostack, preserves_flags));
        }
    }
}
