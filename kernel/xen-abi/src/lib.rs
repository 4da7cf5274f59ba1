//! Xen's guest ABI for x86-64 HVM/PVH guests, as defined by Xen's public headers
//! (xen/include/public). One definition, shared by the hypervisor (kernel/), the
//! built-in dom0, the debugger and the test guests, so no user redefines a constant.
//!
//! Names keep the headers' spelling (`SCHEDOP_block`, `XENVER_version`) so they can be
//! grepped against the specification. Structures are `#[repr(C)]` with their sizes and
//! field offsets asserted at compile time.
//!
//! Header for each module: `hypercall` — xen.h; `errno` — errno.h; `sched` — sched.h;
//! `console` — xen.h (CONSOLEIO_*); `version` — version.h; `memory` — memory.h;
//! `vcpu` — vcpu.h and hvm/hvm_vcpu.h; `cpuid` — arch-x86/cpuid.h; `start_info` —
//! arch-x86/hvm/start_info.h; `elfnote` — elfnote.h; [`event_channel`] —
//! event_channel.h and the 2-level words of xen.h; [`grant_table`] — grant_table.h.
#![no_std]
#![forbid(unsafe_code)]
#![allow(non_upper_case_globals)]

pub mod event_channel;
pub mod grant_table;

/// Hypercall numbers (xen.h `__HYPERVISOR_*`). In 64-bit guests the number is in RAX and
/// the arguments in RDI, RSI, RDX, R10, R8; in 32-bit guests in EBX, ECX, EDX, ESI, EDI.
/// The result comes back in RAX (negative Xen errno on failure).
pub mod hypercall {
    pub const set_trap_table: u64 = 0;
    pub const mmu_update: u64 = 1;
    pub const set_gdt: u64 = 2;
    pub const stack_switch: u64 = 3;
    pub const set_callbacks: u64 = 4;
    pub const fpu_taskswitch: u64 = 5;
    pub const sched_op_compat: u64 = 6;
    pub const platform_op: u64 = 7;
    pub const set_debugreg: u64 = 8;
    pub const get_debugreg: u64 = 9;
    pub const update_descriptor: u64 = 10;
    pub const memory_op: u64 = 12;
    pub const multicall: u64 = 13;
    pub const update_va_mapping: u64 = 14;
    pub const set_timer_op: u64 = 15;
    pub const event_channel_op_compat: u64 = 16;
    pub const xen_version: u64 = 17;
    pub const console_io: u64 = 18;
    pub const physdev_op_compat: u64 = 19;
    pub const grant_table_op: u64 = 20;
    pub const vm_assist: u64 = 21;
    pub const update_va_mapping_otherdomain: u64 = 22;
    pub const iret: u64 = 23;
    pub const vcpu_op: u64 = 24;
    pub const set_segment_base: u64 = 25;
    pub const mmuext_op: u64 = 26;
    pub const xsm_op: u64 = 27;
    pub const nmi_op: u64 = 28;
    pub const sched_op: u64 = 29;
    pub const callback_op: u64 = 30;
    pub const xenoprof_op: u64 = 31;
    pub const event_channel_op: u64 = 32;
    pub const physdev_op: u64 = 33;
    pub const hvm_op: u64 = 34;
    pub const sysctl: u64 = 35;
    pub const domctl: u64 = 36;
    pub const kexec_op: u64 = 37;
    pub const argo_op: u64 = 39;
    pub const xenpmu_op: u64 = 40;
    pub const dm_op: u64 = 41;
    pub const hypfs_op: u64 = 42;
    /// Removed from Xen (4.13); the number stays reserved.
    pub const tmem_op: u64 = 38;
    /// First architecture-specific hypercall; x86 uses it for `mca` (machine-check
    /// architecture) and `arch_1` for `paging_domctl_cont`.
    pub const arch_0: u64 = 48;
    pub const mca: u64 = arch_0;
    pub const arch_1: u64 = 49;
    pub const arch_7: u64 = 55;

    /// Bytes per entry of the hypercall page: entry N sits at N * 32.
    pub const HYPERCALL_PAGE_ENTRY_SIZE: usize = 32;
    /// Entries in the one-page hypercall page.
    pub const HYPERCALL_PAGE_ENTRIES: usize = 4096 / HYPERCALL_PAGE_ENTRY_SIZE;
}

/// Xen errno values (errno.h); hypercalls return their negation. The complete list
/// of errno.h: values Xen does not define (for example Linux's EALREADY 114 /
/// EINPROGRESS 115) have no place here.
pub mod errno {
    pub const EPERM: i64 = 1;
    pub const ENOENT: i64 = 2;
    pub const ESRCH: i64 = 3;
    pub const EINTR: i64 = 4;
    pub const EIO: i64 = 5;
    pub const ENXIO: i64 = 6;
    pub const E2BIG: i64 = 7;
    pub const ENOEXEC: i64 = 8;
    pub const EBADF: i64 = 9;
    pub const ECHILD: i64 = 10;
    pub const EAGAIN: i64 = 11;
    pub const EWOULDBLOCK: i64 = EAGAIN;
    pub const ENOMEM: i64 = 12;
    pub const EACCES: i64 = 13;
    pub const EFAULT: i64 = 14;
    pub const EBUSY: i64 = 16;
    pub const EEXIST: i64 = 17;
    pub const EXDEV: i64 = 18;
    pub const ENODEV: i64 = 19;
    pub const ENOTDIR: i64 = 20;
    pub const EISDIR: i64 = 21;
    pub const EINVAL: i64 = 22;
    pub const ENFILE: i64 = 23;
    pub const EMFILE: i64 = 24;
    pub const ENOSPC: i64 = 28;
    pub const EROFS: i64 = 30;
    pub const EMLINK: i64 = 31;
    pub const EDOM: i64 = 33;
    pub const ERANGE: i64 = 34;
    pub const EDEADLK: i64 = 35;
    pub const EDEADLOCK: i64 = EDEADLK;
    pub const ENAMETOOLONG: i64 = 36;
    pub const ENOLCK: i64 = 37;
    pub const ENOSYS: i64 = 38;
    pub const ENOTEMPTY: i64 = 39;
    pub const ENODATA: i64 = 61;
    pub const ETIME: i64 = 62;
    pub const EBADMSG: i64 = 74;
    pub const EOVERFLOW: i64 = 75;
    pub const EILSEQ: i64 = 84;
    /// Internal to Xen (a hypercall continuation); never returned to a guest.
    pub const ERESTART: i64 = 85;
    pub const ENOTSOCK: i64 = 88;
    pub const EMSGSIZE: i64 = 90;
    pub const EOPNOTSUPP: i64 = 95;
    pub const EADDRINUSE: i64 = 98;
    pub const EADDRNOTAVAIL: i64 = 99;
    pub const ENOBUFS: i64 = 105;
    pub const EISCONN: i64 = 106;
    pub const ENOTCONN: i64 = 107;
    pub const ETIMEDOUT: i64 = 110;
    pub const ECONNREFUSED: i64 = 111;
}

/// `sched_op` sub-operations and shutdown reasons (sched.h).
pub mod sched {
    pub const SCHEDOP_yield: u64 = 0;
    pub const SCHEDOP_block: u64 = 1;
    /// Argument: pointer to `sched_shutdown { uint32_t reason; }`.
    pub const SCHEDOP_shutdown: u64 = 2;
    pub const SCHEDOP_poll: u64 = 3;
    pub const SCHEDOP_remote_shutdown: u64 = 4;
    pub const SCHEDOP_shutdown_code: u64 = 5;
    pub const SCHEDOP_watchdog: u64 = 6;
    pub const SCHEDOP_pin_override: u64 = 7;

    pub const SHUTDOWN_poweroff: u32 = 0;
    pub const SHUTDOWN_reboot: u32 = 1;
    pub const SHUTDOWN_suspend: u32 = 2;
    pub const SHUTDOWN_crash: u32 = 3;
    pub const SHUTDOWN_watchdog: u32 = 4;
    pub const SHUTDOWN_soft_reset: u32 = 5;
    /// Largest defined shutdown reason. Xen keeps only the low 8 bits of a reason.
    pub const SHUTDOWN_MAX: u32 = 5;

    /// `struct sched_poll { handle ports; unsigned int nr_ports; u64 timeout; }`: 24
    /// bytes in 64-bit guests (handle @0, nr_ports @8, timeout @16), 16 in 32-bit ones
    /// (handle @0, nr_ports @4, timeout @8). Xen refuses more than
    /// `SCHED_POLL_MAX_PORTS` ports.
    pub const SCHED_POLL_SIZE: usize = 24;
    pub const SCHED_POLL_SIZE_32: usize = 16;
    pub const SCHED_POLL_MAX_PORTS: u32 = 128;

    /// `struct sched_shutdown`: the argument of `SCHEDOP_shutdown`.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    #[repr(C)]
    pub struct SchedShutdown {
        /// One of the `SHUTDOWN_*` reasons.
        pub reason: u32,
    }

    const _: () = assert!(core::mem::size_of::<SchedShutdown>() == 4);
}

/// `console_io` sub-operations (xen.h): `console_io(cmd, count, buffer)`.
pub mod console {
    pub const CONSOLEIO_write: u64 = 0;
    pub const CONSOLEIO_read: u64 = 1;
}

/// `xen_version` sub-operations (version.h).
pub mod version {
    /// Returns `major << 16 | minor`; no argument.
    pub const XENVER_version: u64 = 0;
    /// Argument: `char[16]`.
    pub const XENVER_extraversion: u64 = 1;
    /// Argument: `xen_compile_info` (4 strings: 64 + 16 + 32 + 32 bytes).
    pub const XENVER_compile_info: u64 = 2;
    /// Argument: `char[1024]`.
    pub const XENVER_capabilities: u64 = 3;
    /// Argument: `char[64]`.
    pub const XENVER_changeset: u64 = 4;
    /// Argument: `xen_platform_parameters { unsigned long virt_start; }`.
    pub const XENVER_platform_parameters: u64 = 5;
    /// Argument: `xen_feature_info { unsigned int submap_idx; uint32_t submap; }`.
    pub const XENVER_get_features: u64 = 6;
    /// Returns the page size; no argument.
    pub const XENVER_pagesize: u64 = 7;
    /// Argument: `xen_domain_handle_t` (16-byte UUID).
    pub const XENVER_guest_handle: u64 = 8;
    /// Argument: `char[1024]`.
    pub const XENVER_commandline: u64 = 9;
    /// Argument: `xen_varbuf`; privileged (a domU gets -EPERM).
    pub const XENVER_build_id: u64 = 10;
    /// `xen_varbuf` variants of the fixed-size string queries (Xen 4.21).
    pub const XENVER_extraversion2: u64 = 11;
    pub const XENVER_capabilities2: u64 = 12;
    pub const XENVER_changeset2: u64 = 13;
    pub const XENVER_commandline2: u64 = 14;

    pub const XEN_EXTRAVERSION_LEN: usize = 16;
    pub const XEN_CAPABILITIES_INFO_LEN: usize = 1024;
    pub const XEN_CHANGESET_INFO_LEN: usize = 64;
    pub const XEN_COMPILE_INFO_LEN: usize = 64 + 16 + 32 + 32;
    pub const XEN_GUEST_HANDLE_LEN: usize = 16;
    pub const XEN_COMMANDLINE_LEN: usize = 1024;

    /// Size of `struct xen_feature_info` (`u32 submap_idx; u32 submap`).
    pub const XEN_FEATURE_INFO_SIZE: usize = 8;

    /// Feature bit numbers of submap 0 (features.h).
    pub const XENFEAT_writable_page_tables: u32 = 0;
    pub const XENFEAT_writable_descriptor_tables: u32 = 1;
    pub const XENFEAT_auto_translated_physmap: u32 = 2;
    pub const XENFEAT_supervisor_mode_kernel: u32 = 3;
    pub const XENFEAT_pae_pgdir_above_4gb: u32 = 4;
    pub const XENFEAT_mmu_pt_update_preserve_ad: u32 = 5;
    pub const XENFEAT_highmem_assist: u32 = 6;
    pub const XENFEAT_gnttab_map_avail_bits: u32 = 7;
    pub const XENFEAT_hvm_callback_vector: u32 = 8;
    pub const XENFEAT_hvm_safe_pvclock: u32 = 9;
    pub const XENFEAT_hvm_pirqs: u32 = 10;
    pub const XENFEAT_dom0: u32 = 11;
    pub const XENFEAT_grant_map_identity: u32 = 12;
    pub const XENFEAT_memory_op_vnode_supported: u32 = 13;
    pub const XENFEAT_ARM_SMCCC_supported: u32 = 14;
    /// A *guest* feature (declared in its XEN_ELFNOTE_SUPPORTED_FEATURES note and read
    /// by the domain builder): the RSDP may lie above 1 MiB. Xen never reports it.
    pub const XENFEAT_linux_rsdp_unrestricted: u32 = 15;
    pub const XENFEAT_not_direct_mapped: u32 = 16;
    pub const XENFEAT_direct_mapped: u32 = 17;
    pub const XENFEAT_runstate_phys_area: u32 = 18;
    pub const XENFEAT_vcpu_time_phys_area: u32 = 19;
    pub const XENFEAT_dm_msix_all_writes: u32 = 20;
    /// Number of 32-bit submaps; `XENVER_get_features` with a larger index is -EINVAL.
    pub const XENFEAT_NR_SUBMAPS: u32 = 1;
}

/// `memory_op` sub-operations (memory.h).
pub mod memory {
    pub const XENMEM_increase_reservation: u64 = 0;
    pub const XENMEM_decrease_reservation: u64 = 1;
    /// No argument (NULL); returns the largest machine frame number of RAM in the
    /// system and never fails.
    pub const XENMEM_maximum_ram_page: u64 = 2;
    /// Argument: `xen_memory_domain { domid_t domid; }`; returns the domain's current
    /// page count.
    pub const XENMEM_current_reservation: u64 = 3;
    /// Argument: `xen_memory_domain`; returns the domain's page limit.
    pub const XENMEM_maximum_reservation: u64 = 4;
    pub const XENMEM_machphys_mfn_list: u64 = 5;
    pub const XENMEM_populate_physmap: u64 = 6;
    pub const XENMEM_add_to_physmap: u64 = 7;
    /// Argument: `xen_memory_map { unsigned int nr_entries; XEN_GUEST_HANDLE(void) buffer; }`
    /// (16 bytes on x86-64: u32, 4 bytes padding, u64 pointer); the buffer receives
    /// E820 entries of 20 bytes (`u64 addr, u64 size, u32 type`).
    pub const XENMEM_memory_map: u64 = 9;
    pub const XENMEM_machine_memory_map: u64 = 10;
    pub const XENMEM_exchange: u64 = 11;
    pub const XENMEM_machphys_mapping: u64 = 12;
    pub const XENMEM_set_memory_map: u64 = 13;
    /// Argument: `xen_memory_domain`; returns the largest guest frame number in use.
    pub const XENMEM_maximum_gpfn: u64 = 14;
    pub const XENMEM_remove_from_physmap: u64 = 15;
    pub const XENMEM_add_to_physmap_batch: u64 = 23;
    pub const XENMEM_claim_pages: u64 = 24;
    pub const XENMEM_machphys_compat_mfn_list: u64 = 25;
    pub const XENMEM_get_vnumainfo: u64 = 26;
    pub const XENMEM_reserved_device_memory_map: u64 = 27;
    pub const XENMEM_acquire_resource: u64 = 28;

    /// `memory_op`'s command word: bits 5:0 select the operation, the bits above
    /// carry a continuation's start extent (xen/include/xen/hypercall.h).
    pub const MEMOP_EXTENT_SHIFT: u32 = 6;
    pub const MEMOP_CMD_MASK: u64 = (1 << MEMOP_EXTENT_SHIFT) - 1;

    /// `domid_t` meaning the caller.
    pub const DOMID_SELF: u16 = 0x7ff0;
    /// Size of one E820 entry in the `XENMEM_memory_map` buffer.
    pub const E820_ENTRY_SIZE: usize = 20;
    /// Size of `struct xen_memory_map` on x86-64.
    pub const XEN_MEMORY_MAP_SIZE: usize = 16;
    /// Size of the 32-bit (compat) `struct xen_memory_map`: u32 count, u32 handle.
    pub const XEN_MEMORY_MAP_SIZE_32: usize = 8;
}

/// `vcpu_op(cmd, vcpuid, arg)` sub-operations (vcpu.h) and the HVM initial state
/// (hvm/hvm_vcpu.h).
pub mod vcpu {
    /// Argument: `vcpu_hvm_context` for HVM/PVH guests.
    pub const VCPUOP_initialise: u64 = 0;
    pub const VCPUOP_up: u64 = 1;
    pub const VCPUOP_down: u64 = 2;
    /// Returns 1 if the vCPU is up, 0 if not.
    pub const VCPUOP_is_up: u64 = 3;
    pub const VCPUOP_get_runstate_info: u64 = 4;
    pub const VCPUOP_register_runstate_memory_area: u64 = 5;
    pub const VCPUOP_set_periodic_timer: u64 = 6;
    pub const VCPUOP_stop_periodic_timer: u64 = 7;
    pub const VCPUOP_set_singleshot_timer: u64 = 8;
    pub const VCPUOP_stop_singleshot_timer: u64 = 9;
    pub const VCPUOP_register_vcpu_info: u64 = 10;
    pub const VCPUOP_send_nmi: u64 = 11;
    pub const VCPUOP_get_physid: u64 = 12;
    pub const VCPUOP_register_vcpu_time_memory_area: u64 = 13;
    pub const VCPUOP_register_runstate_phys_area: u64 = 14;
    pub const VCPUOP_register_vcpu_time_phys_area: u64 = 15;

    /// `vcpu_set_singleshot_timer.flags`: fail with -ETIME if the timeout is in the
    /// past. Current Xen ignores it (a past timeout fires at once).
    pub const VCPU_SSHOTTMR_future: u32 = 1 << 0;
    /// `struct vcpu_set_singleshot_timer { u64 timeout_abs_ns; u32 flags; }`: 16 bytes
    /// in 64-bit guests, 12 in 32-bit ones (u64 is 4-byte aligned on i386).
    pub const VCPU_SET_SINGLESHOT_TIMER_SIZE: usize = 16;
    pub const VCPU_SET_SINGLESHOT_TIMER_SIZE_32: usize = 12;

    /// `vcpu_hvm_context.mode`.
    pub const VCPU_HVM_MODE_32B: u32 = 0;
    pub const VCPU_HVM_MODE_64B: u32 = 1;

    /// `struct vcpu_hvm_x86_32`: 32-bit protected-mode start state. Segment attributes
    /// (`*_ar`) use the VMX access-rights layout packed into 16 bits (type, S, DPL, P in
    /// bits 0–7; AVL, L, D/B, G in bits 12–15).
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    #[repr(C)]
    pub struct VcpuHvmX86_32 {
        pub eax: u32,
        pub ecx: u32,
        pub edx: u32,
        pub ebx: u32,
        pub esp: u32,
        pub ebp: u32,
        pub esi: u32,
        pub edi: u32,
        pub eip: u32,
        pub eflags: u32,
        pub cr0: u32,
        pub cr3: u32,
        pub cr4: u32,
        pub pad1: u32,
        pub efer: u64,
        pub cs_base: u32,
        pub ds_base: u32,
        pub ss_base: u32,
        pub es_base: u32,
        pub tr_base: u32,
        pub cs_limit: u32,
        pub ds_limit: u32,
        pub ss_limit: u32,
        pub es_limit: u32,
        pub tr_limit: u32,
        pub cs_ar: u16,
        pub ds_ar: u16,
        pub ss_ar: u16,
        pub es_ar: u16,
        pub tr_ar: u16,
        pub pad2: [u16; 3],
    }

    /// `struct vcpu_hvm_x86_64`: 64-bit start state (segments implied flat).
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    #[repr(C)]
    pub struct VcpuHvmX86_64 {
        pub rax: u64,
        pub rcx: u64,
        pub rdx: u64,
        pub rbx: u64,
        pub rsp: u64,
        pub rbp: u64,
        pub rsi: u64,
        pub rdi: u64,
        pub rip: u64,
        pub rflags: u64,
        pub cr0: u64,
        pub cr3: u64,
        pub cr4: u64,
        pub efer: u64,
    }

    /// Byte offset of the register union inside `vcpu_hvm_context` (after `mode`, `pad`).
    pub const VCPU_HVM_CONTEXT_REGS_OFFSET: usize = 8;
    /// Size of `vcpu_hvm_context` (the larger union member is the 32-bit one).
    pub const VCPU_HVM_CONTEXT_SIZE: usize = 8 + core::mem::size_of::<VcpuHvmX86_32>();

    const _: () = assert!(core::mem::size_of::<VcpuHvmX86_32>() == 120);
    const _: () = assert!(core::mem::offset_of!(VcpuHvmX86_32, efer) == 56);
    const _: () = assert!(core::mem::offset_of!(VcpuHvmX86_32, cs_ar) == 104);
    const _: () = assert!(core::mem::size_of::<VcpuHvmX86_64>() == 112);
}

/// Hypervisor CPUID leaves (arch-x86/cpuid.h). The base may sit at any 0x100 multiple
/// from 0x40000000; Basalt uses 0x40000000 itself.
pub mod cpuid {
    pub const XEN_CPUID_FIRST_LEAF: u32 = 0x4000_0000;
    /// Leaf 0 EBX/ECX/EDX: "XenV" "MMXe" "nVMM".
    pub const XEN_CPUID_SIGNATURE_EBX: u32 = 0x566e_6558;
    pub const XEN_CPUID_SIGNATURE_ECX: u32 = 0x6558_4d4d;
    pub const XEN_CPUID_SIGNATURE_EDX: u32 = 0x4d4d_566e;
    /// Leaf 0 EAX: the largest hypervisor leaf Basalt answers (base + 5).
    pub const XEN_CPUID_MAX_LEAF_OFFSET: u32 = 5;
    /// Leaf 2 EBX: the MSR a guest writes the hypercall page's guest-physical address
    /// (page-aligned, low bits = page index) to.
    pub const XEN_HYPERCALL_PAGE_MSR: u32 = 0x4000_0000;
    /// Leaf 4 (HVM features) EAX bits.
    pub const XEN_HVM_CPUID_APIC_ACCESS_VIRT: u32 = 1 << 0;
    pub const XEN_HVM_CPUID_X2APIC_VIRT: u32 = 1 << 1;
    pub const XEN_HVM_CPUID_IOMMU_MAPPINGS: u32 = 1 << 2;
    /// Leaf 4 EBX holds the vCPU id.
    pub const XEN_HVM_CPUID_VCPU_ID_PRESENT: u32 = 1 << 3;
    /// Leaf 4 ECX holds the domain id.
    pub const XEN_HVM_CPUID_DOMID_PRESENT: u32 = 1 << 4;
    /// MSI/IO-APIC destination IDs may use 15 bits.
    pub const XEN_HVM_CPUID_EXT_DEST_ID: u32 = 1 << 5;
    /// Per-vCPU event-channel upcall vectors (HVMOP_set_evtchn_upcall_vector) work.
    pub const XEN_HVM_CPUID_UPCALL_VECTOR: u32 = 1 << 6;

    /// Leaf 2 ECX: the host supports MMU_PT_UPDATE_PRESERVE_AD (PV only).
    pub const XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD: u32 = 1 << 0;

    /// Leaf 3 sub-leaf 0 EAX bits (time).
    pub const XEN_CPUID_TSC_EMULATED: u32 = 1 << 0;
    pub const XEN_CPUID_HOST_TSC_RELIABLE: u32 = 1 << 1;
    pub const XEN_CPUID_RDTSCP_INSTR_AVAIL: u32 = 1 << 2;
    /// Leaf 3 sub-leaf 0 EBX (`tsc_mode`).
    pub const XEN_CPUID_TSC_MODE_DEFAULT: u32 = 0;
    pub const XEN_CPUID_TSC_MODE_ALWAYS_EMULATE: u32 = 1;
    pub const XEN_CPUID_TSC_MODE_NEVER_EMULATE: u32 = 2;
    pub const XEN_CPUID_TSC_MODE_PVRDTSCP: u32 = 3;

    /// Leaf 5 sub-leaf 0 EBX bits 7:0 (PV only): machine address width.
    pub const XEN_CPUID_MACHINE_ADDRESS_WIDTH_MASK: u32 = 0xff;
    /// Xen defines the leaves base+0 ..= base+XEN_CPUID_MAX_NUM_LEAVES.
    pub const XEN_CPUID_MAX_NUM_LEAVES: u32 = 5;
}

/// `hvm_start_info` (arch-x86/hvm/start_info.h): what vCPU 0 finds at %ebx.
pub mod start_info {
    pub const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;

    /// Version 1 layout. All addresses are guest-physical.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    #[repr(C)]
    pub struct HvmStartInfo {
        pub magic: u32,
        pub version: u32,
        pub flags: u32,
        pub nr_modules: u32,
        pub modlist_paddr: u64,
        pub cmdline_paddr: u64,
        pub rsdp_paddr: u64,
        pub memmap_paddr: u64,
        pub memmap_entries: u32,
        pub reserved: u32,
    }

    /// `hvm_modlist_entry`.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    #[repr(C)]
    pub struct HvmModlistEntry {
        pub paddr: u64,
        pub size: u64,
        pub cmdline_paddr: u64,
        pub reserved: u64,
    }

    /// `hvm_memmap_table_entry`.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    #[repr(C)]
    pub struct HvmMemmapTableEntry {
        pub addr: u64,
        pub size: u64,
        pub r#type: u32,
        pub reserved: u32,
    }

    pub const XEN_HVM_MEMMAP_TYPE_RAM: u32 = 1;
    pub const XEN_HVM_MEMMAP_TYPE_RESERVED: u32 = 2;
    pub const XEN_HVM_MEMMAP_TYPE_ACPI: u32 = 3;

    const _: () = assert!(core::mem::size_of::<HvmStartInfo>() == 56);
    const _: () = assert!(core::mem::size_of::<HvmModlistEntry>() == 32);
    const _: () = assert!(core::mem::size_of::<HvmMemmapTableEntry>() == 24);
}

/// ELF note types in the "Xen" namespace (elfnote.h).
pub mod elfnote {
    pub const XEN_ELFNOTE_INFO: u32 = 0;
    pub const XEN_ELFNOTE_ENTRY: u32 = 1;
    pub const XEN_ELFNOTE_HYPERCALL_PAGE: u32 = 2;
    pub const XEN_ELFNOTE_VIRT_BASE: u32 = 3;
    pub const XEN_ELFNOTE_PADDR_OFFSET: u32 = 4;
    pub const XEN_ELFNOTE_XEN_VERSION: u32 = 5;
    pub const XEN_ELFNOTE_GUEST_OS: u32 = 6;
    pub const XEN_ELFNOTE_GUEST_VERSION: u32 = 7;
    pub const XEN_ELFNOTE_LOADER: u32 = 8;
    pub const XEN_ELFNOTE_PAE_MODE: u32 = 9;
    pub const XEN_ELFNOTE_FEATURES: u32 = 10;
    pub const XEN_ELFNOTE_BSD_SYMTAB: u32 = 11;
    pub const XEN_ELFNOTE_HV_START_LOW: u32 = 12;
    pub const XEN_ELFNOTE_L1_MFN_VALID: u32 = 13;
    pub const XEN_ELFNOTE_SUSPEND_CANCEL: u32 = 14;
    pub const XEN_ELFNOTE_INIT_P2M: u32 = 15;
    pub const XEN_ELFNOTE_MOD_START_PFN: u32 = 16;
    pub const XEN_ELFNOTE_SUPPORTED_FEATURES: u32 = 17;
    /// 32-bit physical entry point for PVH.
    pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
    pub const XEN_ELFNOTE_PHYS32_RELOC: u32 = 19;
}

/// `domid_t` values with special meaning (xen.h).
pub mod domid {
    pub const DOMID_FIRST_RESERVED: u16 = 0x7ff0;
    pub const DOMID_SELF: u16 = 0x7ff0;
    pub const DOMID_IO: u16 = 0x7ff1;
    pub const DOMID_XEN: u16 = 0x7ff2;
    pub const DOMID_COW: u16 = 0x7ff3;
    pub const DOMID_INVALID: u16 = 0x7ff4;
    pub const DOMID_ANY: u16 = 0x7ff5;
    pub const DOMID_IDLE: u16 = 0x7fff;
    pub const DOMID_MASK: u16 = 0x7fff;
}
