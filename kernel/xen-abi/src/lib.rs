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
//! arch-x86/hvm/start_info.h; `elfnote` — elfnote.h.
#![no_std]
#![forbid(unsafe_code)]
#![allow(non_upper_case_globals)]

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

    /// Bytes per entry of the hypercall page: entry N sits at N * 32.
    pub const HYPERCALL_PAGE_ENTRY_SIZE: usize = 32;
    /// Entries in the one-page hypercall page.
    pub const HYPERCALL_PAGE_ENTRIES: usize = 4096 / HYPERCALL_PAGE_ENTRY_SIZE;
}

/// Xen errno values (errno.h); hypercalls return their negation.
pub mod errno {
    pub const EPERM: i64 = 1;
    pub const ENOENT: i64 = 2;
    pub const ESRCH: i64 = 3;
    pub const EINTR: i64 = 4;
    pub const EIO: i64 = 5;
    pub const E2BIG: i64 = 7;
    pub const EBADF: i64 = 9;
    pub const EAGAIN: i64 = 11;
    pub const ENOMEM: i64 = 12;
    pub const EACCES: i64 = 13;
    pub const EFAULT: i64 = 14;
    pub const EBUSY: i64 = 16;
    pub const EEXIST: i64 = 17;
    pub const EXDEV: i64 = 18;
    pub const ENODEV: i64 = 19;
    pub const EINVAL: i64 = 22;
    pub const ENOSPC: i64 = 28;
    pub const ERANGE: i64 = 34;
    pub const ENOSYS: i64 = 38;
    pub const ENODATA: i64 = 61;
    pub const EOPNOTSUPP: i64 = 95;
    pub const EALREADY: i64 = 114;
    pub const EINPROGRESS: i64 = 115;
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
    pub const XENVER_build_id: u64 = 10;

    pub const XEN_EXTRAVERSION_LEN: usize = 16;
    pub const XEN_CAPABILITIES_INFO_LEN: usize = 1024;
    pub const XEN_CHANGESET_INFO_LEN: usize = 64;
    pub const XEN_COMPILE_INFO_LEN: usize = 64 + 16 + 32 + 32;
    pub const XEN_GUEST_HANDLE_LEN: usize = 16;
    pub const XEN_COMMANDLINE_LEN: usize = 1024;

    /// Feature bits of submap 0 (features.h).
    pub const XENFEAT_writable_page_tables: u32 = 0;
    pub const XENFEAT_auto_translated_physmap: u32 = 2;
    pub const XENFEAT_supervisor_mode_kernel: u32 = 3;
    pub const XENFEAT_hvm_callback_vector: u32 = 8;
    pub const XENFEAT_hvm_safe_pvclock: u32 = 9;
    pub const XENFEAT_hvm_pirqs: u32 = 10;
    pub const XENFEAT_linux_rsdp_unrestricted: u32 = 15;
}

/// `memory_op` sub-operations (memory.h).
pub mod memory {
    pub const XENMEM_increase_reservation: u64 = 0;
    pub const XENMEM_decrease_reservation: u64 = 1;
    /// Argument: pointer to `domid_t`; returns the highest guest frame number in use.
    pub const XENMEM_maximum_ram_page: u64 = 2;
    /// Argument: pointer to `domid_t`; returns the domain's current page count.
    pub const XENMEM_current_reservation: u64 = 3;
    /// Argument: pointer to `domid_t`; returns the domain's page limit.
    pub const XENMEM_maximum_reservation: u64 = 4;
    pub const XENMEM_populate_physmap: u64 = 6;
    pub const XENMEM_add_to_physmap: u64 = 7;
    /// Argument: `xen_memory_map { unsigned int nr_entries; XEN_GUEST_HANDLE(void) buffer; }`
    /// (16 bytes on x86-64: u32, 4 bytes padding, u64 pointer); the buffer receives
    /// E820 entries of 20 bytes (`u64 addr, u64 size, u32 type`).
    pub const XENMEM_memory_map: u64 = 9;
    pub const XENMEM_machine_memory_map: u64 = 10;
    pub const XENMEM_maximum_gpfn: u64 = 14;

    /// `domid_t` meaning the caller.
    pub const DOMID_SELF: u16 = 0x7ff0;
    /// Size of one E820 entry in the `XENMEM_memory_map` buffer.
    pub const E820_ENTRY_SIZE: usize = 20;
    /// Size of `struct xen_memory_map` on x86-64.
    pub const XEN_MEMORY_MAP_SIZE: usize = 16;
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
    pub const XEN_ELFNOTE_ENTRY: u32 = 1;
    pub const XEN_ELFNOTE_HYPERCALL_PAGE: u32 = 2;
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
    pub const DOMID_IDLE: u16 = 0x7fff;
}
