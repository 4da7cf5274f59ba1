//! Xen hypercalls from a 64-bit guest: the hypercall page, direct `vmcall`/`vmmcall`,
//! and typed wrappers for the hypercalls the test guests use.
//!
//! Convention (xen/include/public/arch-x86/xen-x86_64.h): number in RAX, arguments in
//! RDI, RSI, RDX, R10, R8; the result (a `long`, negative Xen errno on failure) in RAX.
//! The argument registers may come back changed, so they are treated as clobbered.
//!
//! Two ways in ([`Mechanism`]):
//! - The hypercall page (Xen's classic interface): CPUID leaf 0x40000002 EBX names an
//!   MSR; writing a page's guest-physical address to it makes the hypervisor fill the
//!   page with 32-byte stubs, entry N at page + N * 32 doing `mov $N, %eax; vmcall or
//!   vmmcall; ret`. [`init`] installs it at boot.
//! - Direct: the guest issues `vmmcall` (AMD, Hygon) or `vmcall` (everyone else, by
//!   the CPUID vendor string) itself, as Linux does since XSA-466. Used for numbers the
//!   page has no entry for (≥ 128), when the page could not be installed, and by any
//!   guest that asks for it with [`set_mechanism`].

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use basalt_xen_abi::console::{CONSOLEIO_read, CONSOLEIO_write};
use basalt_xen_abi::hypercall::{self as number, HYPERCALL_PAGE_ENTRIES, HYPERCALL_PAGE_ENTRY_SIZE};
use basalt_xen_abi::sched::{SCHEDOP_shutdown, SchedShutdown};

use crate::cpu::{self, Vendor};

/// How hypercalls reach the hypervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// Call entry N of the installed hypercall page.
    Page,
    /// Execute `vmcall` (Intel and other vendors).
    Vmcall,
    /// Execute `vmmcall` (AMD, Hygon).
    Vmmcall,
}

const MECHANISM_PAGE: u8 = 0;
const MECHANISM_VMCALL: u8 = 1;
const MECHANISM_VMMCALL: u8 = 2;

/// The mechanism in use; `Page` only after [`init`] saw the page filled.
static MECHANISM: AtomicU8 = AtomicU8::new(MECHANISM_VMCALL);
/// The direct instruction this CPU uses (set by [`init`] from the vendor string).
static DIRECT: AtomicU8 = AtomicU8::new(MECHANISM_VMCALL);
/// CPUID showed Xen's signature at boot.
static XEN_PRESENT: AtomicBool = AtomicBool::new(false);

/// Picks the direct instruction from the CPU vendor and installs the hypercall page.
/// Runs once on vCPU 0 before the guest's main function.
pub(crate) fn init() {
    let direct = match cpu::vendor() {
        Vendor::Amd => MECHANISM_VMMCALL,
        Vendor::Other => MECHANISM_VMCALL,
    };
    DIRECT.store(direct, Ordering::Relaxed);
    MECHANISM.store(direct, Ordering::Relaxed);
    XEN_PRESENT.store(cpu::is_xen(), Ordering::Relaxed);
    if install_page() {
        MECHANISM.store(MECHANISM_PAGE, Ordering::Relaxed);
    }
}

/// Writes the page's address to the hypercall-page MSR and checks that the hypervisor
/// filled it (an entry of zeros would execute as `add %al, (%rax)`).
fn install_page() -> bool {
    let Some(leaf) = cpu::xen_leaf(2) else { return false };
    let msr = leaf.ebx;
    let page = crate::boot::hypercall_page();
    // SAFETY: the MSR is Xen's hypercall-page MSR (leaf 0x40000002 EBX, checked to be
    // Xen's leaf); the value is our page-aligned page (index 0), which the guest uses for
    // nothing else.
    unsafe { cpu::wrmsr(msr, page) };
    page_filled()
}

/// True if the hypercall page holds stubs (its `console_io` entry is not zeros).
fn page_filled() -> bool {
    let first_byte = entry_address(number::console_io) as *const u8;
    // SAFETY: the hypercall page is 4096 bytes of this image's .bss, identity-mapped;
    // volatile because the hypervisor, not Rust, wrote it.
    unsafe { first_byte.read_volatile() != 0 }
}

/// True if the guest runs under a hypervisor with Xen's CPUID signature. Without one
/// (QEMU booting the guest's PVH note itself) a hypercall would raise #UD; only the
/// console has a fallback.
pub fn xen_present() -> bool {
    XEN_PRESENT.load(Ordering::Relaxed)
}

/// The mechanism hypercalls currently use.
pub fn mechanism() -> Mechanism {
    match MECHANISM.load(Ordering::Relaxed) {
        MECHANISM_PAGE => Mechanism::Page,
        MECHANISM_VMMCALL => Mechanism::Vmmcall,
        _ => Mechanism::Vmcall,
    }
}

/// Chooses how later hypercalls are made. `Page` is refused (returns false) when the
/// page was not installed; `Vmcall`/`Vmmcall` are taken as asked, even if this CPU's
/// vendor would want the other one.
pub fn set_mechanism(mechanism: Mechanism) -> bool {
    let value = match mechanism {
        Mechanism::Page => {
            if !page_installed() {
                return false;
            }
            MECHANISM_PAGE
        }
        Mechanism::Vmcall => MECHANISM_VMCALL,
        Mechanism::Vmmcall => MECHANISM_VMMCALL,
    };
    MECHANISM.store(value, Ordering::Relaxed);
    true
}

/// The direct instruction this CPU's vendor calls for.
pub fn vendor_direct_mechanism() -> Mechanism {
    if DIRECT.load(Ordering::Relaxed) == MECHANISM_VMMCALL {
        Mechanism::Vmmcall
    } else {
        Mechanism::Vmcall
    }
}

fn page_installed() -> bool {
    cpu::xen_leaf(2).is_some() && page_filled()
}

fn entry_address(hypercall: u64) -> u64 {
    crate::boot::hypercall_page() + hypercall * HYPERCALL_PAGE_ENTRY_SIZE as u64
}

/// Makes hypercall `hypercall` with five arguments (unused ones are ignored by the
/// hypervisor) and returns RAX.
///
/// # Safety
/// Pointer arguments are handed to the hypervisor, which may write through them: each
/// must be valid for what the hypercall does with it. (Deliberately bad pointers to
/// memory the guest does not own — unmapped guest-physical space — are fine: the
/// hypervisor checks them and answers `-EFAULT`.)
pub unsafe fn hypercall5(hypercall: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    let in_page = (hypercall as usize) < HYPERCALL_PAGE_ENTRIES;
    let mechanism = match mechanism() {
        Mechanism::Page if in_page => Mechanism::Page,
        Mechanism::Page => vendor_direct_mechanism(),
        direct => direct,
    };
    let result: i64;
    match mechanism {
        // SAFETY: the page was filled by the hypervisor (checked by `init`/
        // `set_mechanism`), entry `hypercall` is inside it, and each entry is a stub
        // ending in `ret` that follows the register convention above. The stack is
        // usable for the return address (this target has no red zone). The caller
        // vouches for the pointer arguments.
        Mechanism::Page => unsafe {
            core::arch::asm!(
                "call {entry}",
                entry = in(reg) entry_address(hypercall),
                inlateout("rax") hypercall as i64 => result,
                inlateout("rdi") a1 => _,
                inlateout("rsi") a2 => _,
                inlateout("rdx") a3 => _,
                inlateout("r10") a4 => _,
                inlateout("r8") a5 => _,
                out("rcx") _,
                out("r9") _,
                out("r11") _,
            );
        },
        // SAFETY: VMCALL exits to the hypervisor, which implements the register
        // convention above. The caller vouches for the pointer arguments.
        Mechanism::Vmcall => unsafe {
            core::arch::asm!(
                "vmcall",
                inlateout("rax") hypercall as i64 => result,
                inlateout("rdi") a1 => _,
                inlateout("rsi") a2 => _,
                inlateout("rdx") a3 => _,
                inlateout("r10") a4 => _,
                inlateout("r8") a5 => _,
                out("rcx") _,
                out("r9") _,
                out("r11") _,
                options(nostack),
            );
        },
        // SAFETY: as for VMCALL; VMMCALL is AMD's spelling of the same exit.
        Mechanism::Vmmcall => unsafe {
            core::arch::asm!(
                "vmmcall",
                inlateout("rax") hypercall as i64 => result,
                inlateout("rdi") a1 => _,
                inlateout("rsi") a2 => _,
                inlateout("rdx") a3 => _,
                inlateout("r10") a4 => _,
                inlateout("r8") a5 => _,
                out("rcx") _,
                out("r9") _,
                out("r11") _,
                options(nostack),
            );
        },
    }
    result
}

/// `console_io(CONSOLEIO_write, len, bytes)`: writes to the domain's console.
pub fn console_write(bytes: &[u8]) -> i64 {
    // SAFETY: the hypervisor only reads `bytes.len()` bytes from a live slice.
    unsafe { hypercall5(number::console_io, CONSOLEIO_write, bytes.len() as u64, bytes.as_ptr() as u64, 0, 0) }
}

/// `console_io(CONSOLEIO_read, len, buffer)`: returns how many bytes of console input
/// arrived (0 if none), or a negative errno.
pub fn console_read(buffer: &mut [u8]) -> i64 {
    // SAFETY: the hypervisor writes at most `buffer.len()` bytes into a live, exclusively
    // borrowed buffer.
    unsafe { hypercall5(number::console_io, CONSOLEIO_read, buffer.len() as u64, buffer.as_mut_ptr() as u64, 0, 0) }
}

/// `sched_op(cmd, 0)` for the argument-less operations (`SCHEDOP_yield`,
/// `SCHEDOP_block`).
pub fn sched_op(command: u64) -> i64 {
    // SAFETY: these operations take no pointer (the second argument is 0).
    unsafe { hypercall5(number::sched_op, command, 0, 0, 0, 0) }
}

/// `sched_op(SCHEDOP_shutdown, &sched_shutdown { reason })`. Returns only on failure.
pub fn sched_shutdown(reason: u32) -> i64 {
    let argument = SchedShutdown { reason };
    // SAFETY: the hypervisor reads the 4-byte `sched_shutdown` from a live local.
    unsafe { hypercall5(number::sched_op, SCHEDOP_shutdown, (&raw const argument) as u64, 0, 0, 0) }
}

/// `vcpu_op(cmd, vcpuid, 0)` for the operations without an argument (`VCPUOP_up`,
/// `VCPUOP_down`, `VCPUOP_is_up`).
pub fn vcpu_op(command: u64, vcpu_id: u32) -> i64 {
    // SAFETY: these operations take no pointer (the third argument is 0).
    unsafe { hypercall5(number::vcpu_op, command, u64::from(vcpu_id), 0, 0, 0) }
}

/// `xen_version(XENVER_version, NULL)`: `major << 16 | minor`.
pub fn xen_version() -> i64 {
    // SAFETY: XENVER_version takes no argument.
    unsafe { hypercall5(number::xen_version, basalt_xen_abi::version::XENVER_version, 0, 0, 0, 0) }
}
