//! Hypercall dispatch: one table from hypercall number to handler, and the handlers of
//! the base set — `xen_version`, `console_io`, `sched_op`, `memory_op` (memory map and
//! reservation queries), `vcpu_op` (bring-up, timers) and `set_timer_op`.
//!
//! Why vendor-neutral: VMCALL (VMX) and VMMCALL (SVM) exits carry the same request. The
//! backend reads the registers into a [`HypercallRequest`], calls [`dispatch`] with its
//! [`HypercallEnvironment`], writes the returned value into RAX
//! ([`return_register_value`]), steps past the 3-byte instruction, and then acts on the
//! [`HypercallOutcome`] (reschedule, block, shut the domain down).
//!
//! Semantics follow Xen (xen/common/kernel.c `do_xen_version`, drivers/char/console.c
//! `do_console_io`, common/sched/core.c `do_sched_op`, common/memory.c and
//! arch/x86/mm.c `memory_op`, common/domain.c `common_vcpu_op`, arch/x86/hvm/hypercall.c
//! `hvm_hypercall`), for an unprivileged HVM/PVH domain; the errno values are
//! xen/include/public/errno.h's. Where Basalt differs, the handler says so.
//!
//! Invariants:
//! * Every value from the guest is untrusted: pointers go only to
//!   [`HypercallEnvironment::copy_from_guest`]/[`HypercallEnvironment::copy_to_guest`],
//!   structures are copied out once and then checked, sizes are bounded before anything
//!   is allocated. No path panics on guest input.
//! * A bad pointer gives -EFAULT. A handler that writes one structure writes it with one
//!   copy, so nothing is written when it faults; handlers that write twice (memory_map)
//!   are noted.
//! * Argument widths are Xen's C prototypes: `int cmd` is truncated to 32 bits, as Xen
//!   does, so a guest sees the same answers.
//! * Guest pointers are linear addresses of the calling vCPU (pvh-abi.md §2.4).
// The ABI constants keep Xen's spelling (`XENVER_version`), also in patterns.
#![allow(non_upper_case_globals)]

use alloc::vec::Vec;

use basalt_xen_abi::{
    console::{CONSOLEIO_read, CONSOLEIO_write},
    domid::{DOMID_FIRST_RESERVED, DOMID_SELF},
    errno::*,
    hypercall as number,
    memory::{
        XENMEM_add_to_physmap, XENMEM_current_reservation, XENMEM_maximum_gpfn, XENMEM_maximum_ram_page,
        XENMEM_maximum_reservation, XENMEM_memory_map, E820_ENTRY_SIZE, MEMOP_CMD_MASK, MEMOP_EXTENT_SHIFT,
        XEN_MEMORY_MAP_SIZE, XEN_MEMORY_MAP_SIZE_32,
    },
    sched::{
        SCHEDOP_block, SCHEDOP_pin_override, SCHEDOP_poll, SCHEDOP_remote_shutdown, SCHEDOP_shutdown,
        SCHEDOP_shutdown_code, SCHEDOP_yield, SHUTDOWN_poweroff, SCHED_POLL_MAX_PORTS, SCHED_POLL_SIZE,
        SCHED_POLL_SIZE_32,
    },
    vcpu::{
        VCPUOP_down, VCPUOP_initialise, VCPUOP_is_up, VCPUOP_register_runstate_memory_area, VCPUOP_register_vcpu_info,
        VCPUOP_set_singleshot_timer, VCPUOP_stop_periodic_timer, VCPUOP_stop_singleshot_timer, VCPUOP_up,
        VcpuHvmX86_32, VcpuHvmX86_64, VCPU_HVM_CONTEXT_REGS_OFFSET, VCPU_HVM_CONTEXT_SIZE, VCPU_HVM_MODE_32B,
        VCPU_HVM_MODE_64B, VCPU_SET_SINGLESHOT_TIMER_SIZE, VCPU_SET_SINGLESHOT_TIMER_SIZE_32,
    },
    version::*,
};

pub use super::hypercall_events::{EventChannelOp, EventChannelReply, GrantTableOp, GrantTableReply, PortStatus};
use super::{XEN_VERSION_MAJOR, XEN_VERSION_MINOR};

/// The guest page size (XENVER_pagesize).
const PAGE_SIZE: i64 = 4096;
/// `struct vcpu_info`.
const VCPU_INFO_SIZE: u64 = 64;
/// `struct xen_add_to_physmap` (64-bit).
const XEN_ADD_TO_PHYSMAP_SIZE: usize = 24;
const XENMAPSPACE_shared_info: u32 = 0;
const XENMAPSPACE_grant_table: u32 = 1;
const XENMAPIDX_grant_table_status: u64 = 1 << 31;
/// XENVER_extraversion: the version banner is "4.17.0-basalt".
const EXTRAVERSION: &str = ".0-basalt";
/// XENVER_capabilities: HVM guests only, as Xen lists them for an HVM-only build.
const CAPABILITIES: &str = "hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64";
/// XENVER_changeset: the commit the image was built from, when the build says so.
const CHANGESET: &str = match option_env!("BASALT_GIT_COMMIT") {
    Some(commit) => commit,
    None => "basalt",
};
/// What Xen hands an unprivileged caller instead of a privileged string.
const DENIED: &str = "<denied>";
/// XENVER_get_features submap 0 for a Basalt HVM/PVH domU: what Xen reports for one
/// (kernel.c), minus the features whose hypercalls Basalt does not implement
/// (memory_op_vnode_supported, runstate/vcpu_time_phys_area) and the device-model-only
/// dm_msix_all_writes. No hvm_pirqs (pvh-abi.md §3.2: it must be 0).
pub const FEATURES_SUBMAP_0: u32 = (1 << XENFEAT_writable_page_tables)
    | (1 << XENFEAT_auto_translated_physmap)
    | (1 << XENFEAT_hvm_callback_vector)
    | (1 << XENFEAT_hvm_safe_pvclock)
    | (1 << XENFEAT_not_direct_mapped);

/// Console writes larger than this are refused with -EINVAL (Xen continues long writes
/// across preemptions; a 1 MiB cap bounds one exit's work instead).
pub const CONSOLE_WRITE_MAX: u32 = 1 << 20;
/// Bytes moved per copy for console I/O.
const CONSOLE_CHUNK: usize = 256;
/// Xen's set_timer_op sanity limit: a timeout more than 2^50 ns ahead is treated as a
/// guest bug and replaced by one 100 ms ahead.
const SET_TIMER_MAX_AHEAD_SHIFT: u32 = 50;
const SET_TIMER_FALLBACK_NS: u64 = 100_000_000;

/// The guest's register width at the hypercall, which decides where the arguments are
/// and the layout of structures whose fields are `long` or handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestWidth {
    /// 64-bit mode: RAX = number; RDI, RSI, RDX, R10, R8, R9.
    Bits64,
    /// 32-bit or 16-bit protected mode, or real mode: EAX; EBX, ECX, EDX, ESI, EDI, EBP.
    Bits32,
}

/// The general-purpose registers a hypercall reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HypercallRegisters {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
}

/// One hypercall as the guest issued it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HypercallRequest {
    pub number: u64,
    pub args: [u64; 6],
    pub width: GuestWidth,
    /// The vCPU's current privilege level (0 in real mode). Hypercalls from CPL > 0 fail
    /// with -EPERM, as in Xen.
    pub cpl: u8,
}

impl HypercallRequest {
    /// A hypercall from 64-bit code.
    pub fn from_registers_64(registers: &HypercallRegisters, cpl: u8) -> HypercallRequest {
        HypercallRequest {
            number: registers.rax,
            args: [registers.rdi, registers.rsi, registers.rdx, registers.r10, registers.r8, registers.r9],
            width: GuestWidth::Bits64,
            cpl,
        }
    }

    /// A hypercall from 32-bit, 16-bit or real-mode code: only the low halves count.
    pub fn from_registers_32(registers: &HypercallRegisters, cpl: u8) -> HypercallRequest {
        let low = |value: u64| value & 0xffff_ffff;
        HypercallRequest {
            number: low(registers.rax),
            args: [
                low(registers.rbx),
                low(registers.rcx),
                low(registers.rdx),
                low(registers.rsi),
                low(registers.rdi),
                low(registers.rbp),
            ],
            width: GuestWidth::Bits32,
            cpl,
        }
    }
}

/// What the caller does after writing [`return_register_value`] of the carried value
/// into RAX (if any) and stepping past the hypercall instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HypercallOutcome {
    /// Resume the guest.
    Return(i64),
    /// Return the value, then give up the physical CPU (SCHEDOP_yield, and SCHEDOP_poll
    /// for now).
    Yield(i64),
    /// RAX = 0, then block the vCPU until an event is pending for it (SCHEDOP_block).
    Block,
    /// The domain shuts down with a `SHUTDOWN_*` reason (as the guest gave it; Xen keeps
    /// the low 8 bits). RAX is not written now: for `SHUTDOWN_suspend` whoever resumes
    /// the domain sets it (0 resumed, 1 cancelled).
    Shutdown { reason: u32 },
}

/// The RAX value for a hypercall result: the full 64 bits, or in 32-bit mode the low 32
/// bits zero-extended (so -ENOSYS is 0xffffffda).
pub fn return_register_value(value: i64, width: GuestWidth) -> u64 {
    match width {
        GuestWidth::Bits64 => value as u64,
        GuestWidth::Bits32 => u64::from(value as u32),
    }
}

/// A guest address the environment could not read or write. The copy had no effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestFault;

/// One entry of the domain's memory map (the E820 format of XENMEM_memory_map).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    /// Guest-physical start, bytes.
    pub addr: u64,
    /// Length, bytes.
    pub size: u64,
    /// E820 type: 1 RAM, 2 reserved, 3 ACPI, ...
    pub kind: u32,
}

/// The domain's memory, in 4 KiB pages (XENMEM_*_reservation, XENMEM_maximum_gpfn).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryPages {
    /// Pages the domain holds now.
    pub current: u64,
    /// Pages it may hold.
    pub maximum: u64,
    /// The largest guest frame number in its physical map.
    pub max_gpfn: u64,
}

/// Where a vCPU is in its life cycle (Xen: `is_initialised`, `_VPF_down`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VcpuPowerState {
    /// Never given a start context.
    Uninitialised,
    /// Has a context but is not running (never brought up, or taken down).
    Down,
    /// Runnable.
    Up,
}

/// A start context from VCPUOP_initialise, mode already checked. The register sets
/// are copied out of guest memory; the backend validates them architecturally when it
/// loads them (and the environment reports a bad one as -EINVAL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VcpuStartContext {
    Protected32(VcpuHvmX86_32),
    Long64(VcpuHvmX86_64),
}

/// What a hypercall may do to the domain and the calling vCPU. The vCPU run loop
/// implements it; host tests use a fake.
///
/// Contracts: copies either complete or fail without effect; every method may be
/// called at most a bounded number of times per hypercall (no method loops on guest
/// data); errors the environment returns are positive Xen errno values (`EINVAL`),
/// which [`dispatch`] negates.
pub trait HypercallEnvironment {
    /// The calling domain.
    fn domain_id(&self) -> u16;
    /// The calling vCPU.
    fn vcpu_id(&self) -> u32;
    /// vCPUs the domain was created with; ids are `0..vcpu_count()`.
    fn vcpu_count(&self) -> u32;
    /// Reads guest-linear memory of the calling vCPU.
    fn copy_from_guest(&mut self, gva: u64, buf: &mut [u8]) -> Result<(), GuestFault>;
    /// Writes guest-linear memory of the calling vCPU.
    fn copy_to_guest(&mut self, gva: u64, data: &[u8]) -> Result<(), GuestFault>;
    /// Appends guest output to the domain's console buffer (raw bytes; the console
    /// layer filters for the terminal).
    fn console_write(&mut self, bytes: &[u8]);
    /// Takes up to `buf.len()` bytes of pending operator input for the domain; returns
    /// how many.
    fn console_read(&mut self, buf: &mut [u8]) -> usize;
    /// The domain's 16-byte handle (its UUID; XENVER_guest_handle).
    fn guest_handle(&self) -> [u8; 16];
    fn memory_pages(&self) -> MemoryPages;
    /// The domain's E820 map; empty means "none" (XENMEM_memory_map then says -ENOSYS).
    fn memory_map(&self) -> &[E820Entry];
    /// `None` if the domain has no such vCPU.
    fn vcpu_state(&self, vcpu: u32) -> Option<VcpuPowerState>;
    /// Gives an uninitialised vCPU its start context (it stays down). `Err(EINVAL)` for
    /// a context the backend refuses.
    fn vcpu_initialise(&mut self, vcpu: u32, context: &VcpuStartContext) -> Result<(), i64>;
    /// Makes an initialised vCPU runnable; a no-op if it is up.
    fn vcpu_up(&mut self, vcpu: u32) -> Result<(), i64>;
    /// Takes a vCPU down (at least one other stays up). If it is the caller, the run loop
    /// stops running it after writing RAX.
    fn vcpu_down(&mut self, vcpu: u32) -> Result<(), i64>;
    /// SCHEDOP_shutdown_code: the reason the next shutdown reports (the first recorded
    /// one wins, as in Xen).
    fn set_shutdown_code(&mut self, reason: u8);
    /// Arms (`Some`) or cancels (`None`) the calling vCPU's single-shot timer, in Xen
    /// system time (ns since the domain's time base). A deadline at or before
    /// [`HypercallEnvironment::now_ns`] fires at once (VIRQ_TIMER).
    fn set_timer(&mut self, deadline_ns: Option<u64>);
    /// The current Xen system time, ns.
    fn now_ns(&self) -> u64;

    // The methods below default to -ENOSYS so environments that do not offer a
    // service (host fakes of the base set) need not mention it.

    /// XENMEM_add_to_physmap(XENMAPSPACE_shared_info): shared_info appears at `gfn`.
    fn map_shared_info(&mut self, _gfn: u64) -> Result<(), Errno> {
        Err(ENOSYS)
    }
    /// XENMEM_add_to_physmap(XENMAPSPACE_grant_table): grant frame `index` appears at `gfn`.
    fn map_grant_frame(&mut self, _index: u32, _gfn: u64) -> Result<(), Errno> {
        Err(ENOSYS)
    }
    /// VCPUOP_register_vcpu_info: `vcpu`'s vcpu_info lives at guest-physical `gpa`
    /// from now on (already checked: 64 bytes inside one page).
    fn register_vcpu_info(&mut self, _vcpu: u32, _gpa: u64) -> Result<(), Errno> {
        Err(ENOSYS)
    }
    /// VCPUOP_register_runstate_memory_area: `vcpu`'s runstate record is at guest-linear `gva`.
    fn register_runstate_area(&mut self, _vcpu: u32, _gva: u64) -> Result<(), Errno> {
        Err(ENOSYS)
    }
    /// One event-channel operation for the calling domain.
    fn event_channel(&mut self, _op: EventChannelOp) -> Result<EventChannelReply, Errno> {
        Err(ENOSYS)
    }
    /// One grant-table operation for the calling domain.
    fn grant_table(&mut self, _op: GrantTableOp) -> Result<GrantTableReply, Errno> {
        Err(ENOSYS)
    }
    /// HVMOP_get_param for the calling domain.
    fn hvm_param(&mut self, _index: u32) -> Result<u64, Errno> {
        Err(ENOSYS)
    }
    /// HVMOP_set_param for the calling domain.
    fn set_hvm_param(&mut self, _index: u32, _value: u64) -> Result<(), Errno> {
        Err(ENOSYS)
    }
    /// HVMOP_set_evtchn_upcall_vector.
    fn set_upcall_vector(&mut self, _vcpu: u32, _vector: u8) -> Result<(), Errno> {
        Err(ENOSYS)
    }
}

/// Result of one handler: a value for RAX or a scheduling action.
pub(super) type Handler = fn(&mut dyn HypercallEnvironment, &HypercallRequest) -> HypercallOutcome;

/// One row of the hypercall table.
pub struct HypercallEntry {
    pub number: u64,
    /// Xen's name, for logs and the debugger.
    pub name: &'static str,
    handler: Handler,
}

/// The hypercalls Basalt answers; every other number is -ENOSYS.
pub static HYPERCALLS: &[HypercallEntry] = &[
    HypercallEntry { number: number::memory_op, name: "memory_op", handler: memory_op },
    HypercallEntry { number: number::set_timer_op, name: "set_timer_op", handler: set_timer_op },
    HypercallEntry { number: number::xen_version, name: "xen_version", handler: xen_version },
    HypercallEntry { number: number::console_io, name: "console_io", handler: console_io },
    HypercallEntry { number: number::vcpu_op, name: "vcpu_op", handler: vcpu_op },
    HypercallEntry { number: number::sched_op, name: "sched_op", handler: sched_op },
    HypercallEntry {
        number: number::event_channel_op,
        name: "event_channel_op",
        handler: super::hypercall_events::event_channel_op,
    },
    HypercallEntry {
        number: number::grant_table_op,
        name: "grant_table_op",
        handler: super::hypercall_events::grant_table_op,
    },
    HypercallEntry { number: number::hvm_op, name: "hvm_op", handler: super::hypercall_events::hvm_op },
    HypercallEntry { number: number::vm_assist, name: "vm_assist", handler: super::hypercall_events::vm_assist },
];

/// Xen's name of a hypercall Basalt answers.
pub fn hypercall_name(hypercall: u64) -> Option<&'static str> {
    HYPERCALLS.iter().find(|entry| entry.number == hypercall).map(|entry| entry.name)
}

/// Runs one hypercall.
pub fn dispatch(env: &mut dyn HypercallEnvironment, call: &HypercallRequest) -> HypercallOutcome {
    if call.cpl != 0 {
        return HypercallOutcome::Return(-EPERM);
    }
    match HYPERCALLS.iter().find(|entry| entry.number == call.number) {
        Some(entry) => (entry.handler)(env, call),
        None => HypercallOutcome::Return(-ENOSYS),
    }
}

/// A handler's failure: a positive Xen errno.
pub type Errno = i64;

pub(super) fn finish(result: Result<i64, Errno>) -> HypercallOutcome {
    HypercallOutcome::Return(match result {
        Ok(value) => value,
        Err(errno) => -errno,
    })
}

pub(super) fn read_guest<const N: usize>(env: &mut dyn HypercallEnvironment, gva: u64) -> Result<[u8; N], Errno> {
    let mut bytes = [0u8; N];
    env.copy_from_guest(gva, &mut bytes).map_err(|GuestFault| EFAULT)?;
    Ok(bytes)
}

/// Writes `data` at `gva`; an empty write touches nothing and succeeds (as Xen's
/// zero-length copies do).
pub(super) fn write_guest(env: &mut dyn HypercallEnvironment, gva: u64, data: &[u8]) -> Result<(), Errno> {
    if data.is_empty() {
        return Ok(());
    }
    env.copy_to_guest(gva, data).map_err(|GuestFault| EFAULT)
}

pub(super) fn u16_at(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes([bytes[offset], bytes[offset + 1]])
}

pub(super) fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let mut field = [0u8; 4];
    field.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(field)
}

pub(super) fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut field = [0u8; 8];
    field.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(field)
}

/// `text` NUL-padded (and always NUL-terminated) in an `N`-byte field.
fn c_string<const N: usize>(text: &str) -> [u8; N] {
    let mut field = [0u8; N];
    let length = text.len().min(N.saturating_sub(1));
    field[..length].copy_from_slice(&text.as_bytes()[..length]);
    field
}

// ---------------------------------------------------------------------------------
// xen_version (version.h)

fn xen_version(env: &mut dyn HypercallEnvironment, call: &HypercallRequest) -> HypercallOutcome {
    let command = u64::from(call.args[0] as u32);
    let arg = call.args[1];
    let result = match command {
        XENVER_version => Ok((i64::from(XEN_VERSION_MAJOR) << 16) | i64::from(XEN_VERSION_MINOR)),
        XENVER_extraversion => write_guest(env, arg, &c_string::<XEN_EXTRAVERSION_LEN>(EXTRAVERSION)).map(|()| 0),
        XENVER_compile_info => {
            // xen_compile_info: compiler[64], compile_by[16], compile_domain[32],
            // compile_date[32].
            let mut info = [0u8; XEN_COMPILE_INFO_LEN];
            info[..64].copy_from_slice(&c_string::<64>("rustc"));
            info[64..80].copy_from_slice(&c_string::<16>("basalt"));
            write_guest(env, arg, &info).map(|()| 0)
        }
        XENVER_capabilities => write_guest(env, arg, &c_string::<XEN_CAPABILITIES_INFO_LEN>(CAPABILITIES)).map(|()| 0),
        XENVER_changeset => write_guest(env, arg, &c_string::<XEN_CHANGESET_INFO_LEN>(CHANGESET)).map(|()| 0),
        XENVER_platform_parameters => {
            // virt_start is 0 for HVM guests (unsigned long: 4 bytes in 32-bit mode).
            let size = match call.width {
                GuestWidth::Bits64 => 8,
                GuestWidth::Bits32 => 4,
            };
            write_guest(env, arg, &[0u8; 8][..size]).map(|()| 0)
        }
        XENVER_get_features => get_features(env, arg),
        XENVER_pagesize => Ok(if arg == 0 { PAGE_SIZE } else { -EINVAL }),
        XENVER_guest_handle => {
            let handle = env.guest_handle();
            write_guest(env, arg, &handle).map(|()| 0)
        }
        // A domU is denied the hypervisor's command line: Xen copies "<denied>".
        XENVER_commandline => {
            let mut text = [0u8; 9];
            text[..DENIED.len()].copy_from_slice(DENIED.as_bytes());
            write_guest(env, arg, &text).map(|()| 0)
        }
        XENVER_build_id | XENVER_extraversion2 | XENVER_capabilities2 | XENVER_changeset2 | XENVER_commandline2 => {
            Err(EPERM)
        }
        _ => Err(ENOSYS),
    };
    finish(result)
}

/// `xen_feature_info { u32 submap_idx; u32 submap; }`: only submap 0 exists.
fn get_features(env: &mut dyn HypercallEnvironment, arg: u64) -> Result<i64, Errno> {
    let mut info: [u8; XEN_FEATURE_INFO_SIZE] = read_guest(env, arg)?;
    if u32_at(&info, 0) != 0 {
        return Err(EINVAL);
    }
    info[4..8].copy_from_slice(&FEATURES_SUBMAP_0.to_le_bytes());
    write_guest(env, arg, &info).map(|()| 0)
}

// ---------------------------------------------------------------------------------
// console_io (xen.h CONSOLEIO_*)

fn console_io(env: &mut dyn HypercallEnvironment, call: &HypercallRequest) -> HypercallOutcome {
    let command = u64::from(call.args[0] as u32);
    let count = call.args[1] as u32;
    let buffer = call.args[2];
    let result = match command {
        CONSOLEIO_write => console_write(env, buffer, count),
        CONSOLEIO_read => console_read(env, buffer, count),
        _ => Err(ENOSYS),
    };
    finish(result)
}

/// Copies the guest's bytes to the console in chunks. A fault part-way leaves the
/// chunks before it written (as in Xen) and returns -EFAULT.
fn console_write(env: &mut dyn HypercallEnvironment, buffer: u64, count: u32) -> Result<i64, Errno> {
    if count > CONSOLE_WRITE_MAX {
        return Err(EINVAL);
    }
    let mut chunk = [0u8; CONSOLE_CHUNK];
    let mut done = 0usize;
    let total = count as usize;
    while done < total {
        let length = (total - done).min(CONSOLE_CHUNK);
        env.copy_from_guest(buffer.wrapping_add(done as u64), &mut chunk[..length]).map_err(|GuestFault| EFAULT)?;
        env.console_write(&chunk[..length]);
        done += length;
    }
    Ok(0)
}

/// Returns how many bytes of pending input were copied (0 when there is none). Input
/// taken from the console when the copy to the guest faults is lost.
fn console_read(env: &mut dyn HypercallEnvironment, buffer: u64, count: u32) -> Result<i64, Errno> {
    if count > i32::MAX as u32 {
        return Err(E2BIG);
    }
    let mut chunk = [0u8; CONSOLE_CHUNK];
    let mut done = 0usize;
    let total = count as usize;
    while done < total {
        let want = (total - done).min(CONSOLE_CHUNK);
        let got = env.console_read(&mut chunk[..want]).min(want);
        if got == 0 {
            break;
        }
        write_guest(env, buffer.wrapping_add(done as u64), &chunk[..got])?;
        done += got;
        if got < want {
            break;
        }
    }
    Ok(done as i64)
}

// ---------------------------------------------------------------------------------
// sched_op (sched.h)

fn sched_op(env: &mut dyn HypercallEnvironment, call: &HypercallRequest) -> HypercallOutcome {
    let command = u64::from(call.args[0] as u32);
    let arg = call.args[1];
    match command {
        SCHEDOP_yield => HypercallOutcome::Yield(0),
        SCHEDOP_block => HypercallOutcome::Block,
        SCHEDOP_shutdown => match read_guest::<4>(env, arg) {
            Ok(bytes) => HypercallOutcome::Shutdown { reason: u32::from_le_bytes(bytes) },
            Err(errno) => HypercallOutcome::Return(-errno),
        },
        SCHEDOP_shutdown_code => finish(read_guest::<4>(env, arg).map(|bytes| {
            env.set_shutdown_code(bytes[0]);
            0
        })),
        SCHEDOP_poll => match poll(env, arg, call.width) {
            // Returning at once is what a poll woken by a pending event looks like;
            // Linux's PV spinlocks BUG() on any error (pvh-abi.md §3.8).
            Ok(()) => HypercallOutcome::Yield(0),
            Err(errno) => HypercallOutcome::Return(-errno),
        },
        // `sched_remote_shutdown { domid_t; u32 reason; }`: device-model privilege.
        SCHEDOP_remote_shutdown => finish(read_guest::<8>(env, arg).and_then(|bytes| {
            if u16_at(&bytes, 0) >= DOMID_FIRST_RESERVED {
                Err(ESRCH)
            } else {
                Err(EPERM)
            }
        })),
        SCHEDOP_pin_override => HypercallOutcome::Return(-EPERM),
        _ => HypercallOutcome::Return(-ENOSYS),
    }
}

/// Checks a `sched_poll { handle ports; u32 nr_ports; u64 timeout; }` the way Xen does
/// before blocking: at most 128 ports, all readable.
fn poll(env: &mut dyn HypercallEnvironment, arg: u64, width: GuestWidth) -> Result<(), Errno> {
    let (ports, nr_ports) = match width {
        GuestWidth::Bits64 => {
            let bytes: [u8; SCHED_POLL_SIZE] = read_guest(env, arg)?;
            (u64_at(&bytes, 0), u32_at(&bytes, 8))
        }
        GuestWidth::Bits32 => {
            let bytes: [u8; SCHED_POLL_SIZE_32] = read_guest(env, arg)?;
            (u64::from(u32_at(&bytes, 0)), u32_at(&bytes, 4))
        }
    };
    if nr_ports > SCHED_POLL_MAX_PORTS {
        return Err(EINVAL);
    }
    if nr_ports == 0 {
        return Ok(());
    }
    let mut port_array = [0u8; SCHED_POLL_MAX_PORTS as usize * 4];
    env.copy_from_guest(ports, &mut port_array[..nr_ports as usize * 4]).map_err(|GuestFault| EFAULT)
}

// ---------------------------------------------------------------------------------
// memory_op (memory.h)

fn memory_op(env: &mut dyn HypercallEnvironment, call: &HypercallRequest) -> HypercallOutcome {
    let command = match call.width {
        GuestWidth::Bits64 => call.args[0],
        GuestWidth::Bits32 => call.args[0] & 0xffff_ffff,
    };
    let arg = call.args[1];
    let operation = command & MEMOP_CMD_MASK;
    let start_extent = command >> MEMOP_EXTENT_SHIFT;
    let result = match operation {
        XENMEM_maximum_ram_page if start_extent != 0 => Err(EINVAL),
        // "The largest machine frame of RAM": an auto-translated guest only ever sees its
        // own frames, so it gets its own largest frame number.
        XENMEM_maximum_ram_page => Ok(clamp_to_i64(env.memory_pages().max_gpfn)),
        XENMEM_current_reservation | XENMEM_maximum_reservation | XENMEM_maximum_gpfn => {
            if start_extent != 0 {
                Err(EINVAL)
            } else {
                domain_memory_query(env, arg, operation)
            }
        }
        // Xen matches the memory_map command without masking: continuation bits there
        // are an unknown command.
        XENMEM_memory_map if start_extent == 0 => memory_map(env, arg, call.width),
        XENMEM_add_to_physmap if start_extent == 0 => add_to_physmap(env, arg),
        _ => Err(ENOSYS),
    };
    finish(result)
}

/// `xen_add_to_physmap { domid_t domid; u16 size; u32 space; xen_ulong_t idx;
/// xen_pfn_t gpfn; }` (24 bytes, 64-bit layout; a 32-bit guest's is the same size for
/// the fields Basalt reads as Linux builds it). Only the caller's own domain.
fn add_to_physmap(env: &mut dyn HypercallEnvironment, arg: u64) -> Result<i64, Errno> {
    let bytes: [u8; XEN_ADD_TO_PHYSMAP_SIZE] = read_guest(env, arg)?;
    let domid = u16_at(&bytes, 0);
    if domid != DOMID_SELF && domid != env.domain_id() {
        return Err(if domid >= DOMID_FIRST_RESERVED { ESRCH } else { EPERM });
    }
    let space = u32_at(&bytes, 4);
    let index = u64_at(&bytes, 8);
    let gfn = u64_at(&bytes, 16);
    match space {
        XENMAPSPACE_shared_info if index == 0 => env.map_shared_info(gfn).map(|()| 0),
        XENMAPSPACE_shared_info => Err(EINVAL),
        XENMAPSPACE_grant_table => {
            // Bit 31 selects v2 status frames, which Basalt (v1 only) has none of.
            if index & XENMAPIDX_grant_table_status != 0 || index > u64::from(u32::MAX) {
                return Err(EINVAL);
            }
            env.map_grant_frame(index as u32, gfn).map(|()| 0)
        }
        _ => Err(ENOSYS),
    }
}

fn clamp_to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// `xen_memory_domain { domid_t domid; }`. Only the caller itself may be asked about:
/// another domain's id is -EPERM whether or not it exists (Xen answers -ESRCH for an
/// absent one; Basalt does not tell a domU which domains exist), a reserved id -ESRCH.
fn domain_memory_query(env: &mut dyn HypercallEnvironment, arg: u64, operation: u64) -> Result<i64, Errno> {
    let domid = u16::from_le_bytes(read_guest::<2>(env, arg)?);
    if domid != DOMID_SELF && domid != env.domain_id() {
        return Err(if domid >= DOMID_FIRST_RESERVED { ESRCH } else { EPERM });
    }
    let pages = env.memory_pages();
    Ok(clamp_to_i64(match operation {
        XENMEM_current_reservation => pages.current,
        XENMEM_maximum_reservation => pages.maximum,
        _ => pages.max_gpfn,
    }))
}

/// `xen_memory_map { u32 nr_entries; handle buffer; }` (16 bytes; 8 in 32-bit mode):
/// writes min(nr_entries, map length) 20-byte entries, then the count back. As in Xen,
/// a fault on the count leaves the entries written.
fn memory_map(env: &mut dyn HypercallEnvironment, arg: u64, width: GuestWidth) -> Result<i64, Errno> {
    let (capacity, buffer) = match width {
        GuestWidth::Bits64 => {
            let bytes: [u8; XEN_MEMORY_MAP_SIZE] = read_guest(env, arg)?;
            (u32_at(&bytes, 0), u64_at(&bytes, 8))
        }
        GuestWidth::Bits32 => {
            let bytes: [u8; XEN_MEMORY_MAP_SIZE_32] = read_guest(env, arg)?;
            (u32_at(&bytes, 0), u64::from(u32_at(&bytes, 4)))
        }
    };
    let map = env.memory_map();
    if map.is_empty() {
        return Err(ENOSYS);
    }
    let count = map.len().min(capacity as usize);
    let mut entries = Vec::with_capacity(count * E820_ENTRY_SIZE);
    for entry in &map[..count] {
        entries.extend_from_slice(&entry.addr.to_le_bytes());
        entries.extend_from_slice(&entry.size.to_le_bytes());
        entries.extend_from_slice(&entry.kind.to_le_bytes());
    }
    write_guest(env, buffer, &entries)?;
    write_guest(env, arg, &(count as u32).to_le_bytes())?;
    Ok(0)
}

// ---------------------------------------------------------------------------------
// vcpu_op (vcpu.h, hvm/hvm_vcpu.h)

fn vcpu_op(env: &mut dyn HypercallEnvironment, call: &HypercallRequest) -> HypercallOutcome {
    let command = u64::from(call.args[0] as u32);
    let vcpu = call.args[1] as u32;
    let arg = call.args[2];
    let Some(state) = env.vcpu_state(vcpu) else {
        return HypercallOutcome::Return(-ENOENT);
    };
    let is_caller = vcpu == env.vcpu_id();
    let result = match command {
        VCPUOP_initialise => vcpu_initialise(env, vcpu, state, arg),
        VCPUOP_up => match state {
            VcpuPowerState::Uninitialised => Err(EINVAL),
            _ => env.vcpu_up(vcpu).map(|()| 0),
        },
        VCPUOP_down => {
            let others_up = (0..env.vcpu_count())
                .filter(|&other| other != vcpu)
                .any(|other| env.vcpu_state(other) == Some(VcpuPowerState::Up));
            if !others_up {
                // Xen: the last vCPU going down powers the domain off.
                return HypercallOutcome::Shutdown { reason: SHUTDOWN_poweroff };
            }
            env.vcpu_down(vcpu).map(|()| 0)
        }
        VCPUOP_is_up => Ok(i64::from(state == VcpuPowerState::Up)),
        // HVM vCPUs have no periodic timer; stopping it always succeeds.
        VCPUOP_stop_periodic_timer => Ok(0),
        VCPUOP_set_singleshot_timer if !is_caller => Err(EINVAL),
        VCPUOP_set_singleshot_timer => {
            // `vcpu_set_singleshot_timer { u64 timeout_abs_ns; u32 flags; }`. The flags
            // (VCPU_SSHOTTMR_future) are ignored, as current Xen does.
            let size = match call.width {
                GuestWidth::Bits64 => VCPU_SET_SINGLESHOT_TIMER_SIZE,
                GuestWidth::Bits32 => VCPU_SET_SINGLESHOT_TIMER_SIZE_32,
            };
            let mut timer = [0u8; VCPU_SET_SINGLESHOT_TIMER_SIZE];
            match env.copy_from_guest(arg, &mut timer[..size]) {
                Ok(()) => {
                    env.set_timer(Some(u64_at(&timer, 0)));
                    Ok(0)
                }
                Err(GuestFault) => Err(EFAULT),
            }
        }
        VCPUOP_register_vcpu_info => register_vcpu_info(env, vcpu, arg),
        VCPUOP_register_runstate_memory_area => {
            // `vcpu_register_runstate_memory_area { union { handle; u64 p; } addr; }`.
            let size = match call.width {
                GuestWidth::Bits64 => 8,
                GuestWidth::Bits32 => 4,
            };
            let mut address = [0u8; 8];
            match env.copy_from_guest(arg, &mut address[..size]) {
                Ok(()) => env.register_runstate_area(vcpu, u64::from_le_bytes(address)).map(|()| 0),
                Err(GuestFault) => Err(EFAULT),
            }
        }
        VCPUOP_stop_singleshot_timer if !is_caller => Err(EINVAL),
        VCPUOP_stop_singleshot_timer => {
            env.set_timer(None);
            Ok(0)
        }
        _ => Err(ENOSYS),
    };
    finish(result)
}

/// `vcpu_register_vcpu_info { u64 mfn; u32 offset; u32 rsvd; }`: Xen's checks — the
/// 64-byte vcpu_info must not cross the page, the reserved word is zero.
fn register_vcpu_info(env: &mut dyn HypercallEnvironment, vcpu: u32, arg: u64) -> Result<i64, Errno> {
    let bytes: [u8; 16] = read_guest(env, arg)?;
    let gfn = u64_at(&bytes, 0);
    let offset = u64::from(u32_at(&bytes, 8));
    if u32_at(&bytes, 12) != 0 || offset + VCPU_INFO_SIZE > PAGE_SIZE as u64 {
        return Err(EINVAL);
    }
    let gpa = gfn.checked_mul(PAGE_SIZE as u64).and_then(|base| base.checked_add(offset)).ok_or(EINVAL)?;
    env.register_vcpu_info(vcpu, gpa).map(|()| 0)
}

/// VCPUOP_initialise with a `vcpu_hvm_context` (128 bytes: u32 mode, pad, register
/// union at 8). Xen's order: copy (-EFAULT), already initialised (-EEXIST), mode
/// (-EINVAL), then the architectural checks (the environment's -EINVAL).
fn vcpu_initialise(
    env: &mut dyn HypercallEnvironment,
    vcpu: u32,
    state: VcpuPowerState,
    arg: u64,
) -> Result<i64, Errno> {
    let context: [u8; VCPU_HVM_CONTEXT_SIZE] = read_guest(env, arg)?;
    if state != VcpuPowerState::Uninitialised {
        return Err(EEXIST);
    }
    let registers = &context[VCPU_HVM_CONTEXT_REGS_OFFSET..];
    let start = match u32_at(&context, 0) {
        VCPU_HVM_MODE_32B => VcpuStartContext::Protected32(parse_x86_32(registers)),
        VCPU_HVM_MODE_64B => VcpuStartContext::Long64(parse_x86_64(registers)),
        _ => return Err(EINVAL),
    };
    env.vcpu_initialise(vcpu, &start).map(|()| 0)
}

/// `struct vcpu_hvm_x86_32` from its 120 little-endian bytes.
fn parse_x86_32(bytes: &[u8]) -> VcpuHvmX86_32 {
    let word = |index: usize| u32_at(bytes, index * 4);
    let half = |offset: usize| u16_at(bytes, offset);
    VcpuHvmX86_32 {
        eax: word(0),
        ecx: word(1),
        edx: word(2),
        ebx: word(3),
        esp: word(4),
        ebp: word(5),
        esi: word(6),
        edi: word(7),
        eip: word(8),
        eflags: word(9),
        cr0: word(10),
        cr3: word(11),
        cr4: word(12),
        pad1: word(13),
        efer: u64_at(bytes, 56),
        cs_base: word(16),
        ds_base: word(17),
        ss_base: word(18),
        es_base: word(19),
        tr_base: word(20),
        cs_limit: word(21),
        ds_limit: word(22),
        ss_limit: word(23),
        es_limit: word(24),
        tr_limit: word(25),
        cs_ar: half(104),
        ds_ar: half(106),
        ss_ar: half(108),
        es_ar: half(110),
        tr_ar: half(112),
        pad2: [half(114), half(116), half(118)],
    }
}

/// `struct vcpu_hvm_x86_64` from its 112 little-endian bytes.
fn parse_x86_64(bytes: &[u8]) -> VcpuHvmX86_64 {
    let quad = |index: usize| u64_at(bytes, index * 8);
    VcpuHvmX86_64 {
        rax: quad(0),
        rcx: quad(1),
        rdx: quad(2),
        rbx: quad(3),
        rsp: quad(4),
        rbp: quad(5),
        rsi: quad(6),
        rdi: quad(7),
        rip: quad(8),
        rflags: quad(9),
        cr0: quad(10),
        cr3: quad(11),
        cr4: quad(12),
        efer: quad(13),
    }
}

// ---------------------------------------------------------------------------------
// set_timer_op (xen.h)

/// `set_timer_op(s_time_t timeout)` (32-bit guests pass it as low, high halves):
/// 0 cancels; a negative timeout or one more than 2^50 ns ahead is a guest bug Xen
/// answers with a timer 100 ms from now; anything else arms the timer. Always 0.
fn set_timer_op(env: &mut dyn HypercallEnvironment, call: &HypercallRequest) -> HypercallOutcome {
    let timeout = match call.width {
        GuestWidth::Bits64 => call.args[0] as i64,
        GuestWidth::Bits32 => ((call.args[1] << 32) | (call.args[0] & 0xffff_ffff)) as i64,
    };
    if timeout == 0 {
        env.set_timer(None);
        return HypercallOutcome::Return(0);
    }
    let now = env.now_ns();
    let offset = (timeout as i128) - i128::from(now);
    if timeout < 0 || (offset > 0 && (offset >> SET_TIMER_MAX_AHEAD_SHIFT) != 0) {
        env.set_timer(Some(now.saturating_add(SET_TIMER_FALLBACK_NS)));
    } else {
        env.set_timer(Some(timeout as u64));
    }
    HypercallOutcome::Return(0)
}

// ---------------------------------------------------------------------------------
// fuzzing (hosted builds only)

#[doc(hidden)]
#[cfg(not(target_os = "none"))]
#[path = "hypercall_testing.rs"]
pub mod testing;

#[doc(hidden)]
#[cfg(not(target_os = "none"))]
pub use testing::fuzz_one;

#[cfg(test)]
#[path = "hypercall_tests.rs"]
mod tests;
