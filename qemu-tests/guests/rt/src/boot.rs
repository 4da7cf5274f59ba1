//! The PVH entry point, the identity page tables and the stacks.
//!
//! Xen's PVH boot protocol (`docs/misc/pvh.pandoc`, loader: builtin-dom0's
//! `toolstack/pvh_elf.rs`) enters vCPU 0 at the address in the `XEN_ELFNOTE_PHYS32_ENTRY`
//! note, in 32-bit flat protected mode with paging off, interrupts off, and %ebx = the
//! guest-physical address of `hvm_start_info`; no GDT, IDT or stack is provided.
//!
//! `pvh_start` does what the hypervisor's own entry does (kernel/src/arch/entry.rs),
//! minus its higher-half alias, since a guest is linked at 1 MiB and runs identity
//! mapped: zero .bss, take the boot stack, map the first 4 GiB identity with 2 MiB pages
//! (PML4[0] → PDPT[0..4] → four page directories, all present + writable), set CR3,
//! CR4.PAE, EFER.LME, CR0.PG, load a GDT with a 64-bit code segment, far-jump into it,
//! load the data segments and call [`crate::rt_start`] with the start-info address.
//!
//! Guest RAM is only the low megabytes; the rest of the 4 GiB identity map points at
//! unpopulated guest-physical space, which the `badmem` guest reads on purpose.
//!
//! Secondary vCPUs do not come through here: `VCPUOP_initialise` starts them directly
//! in 64-bit mode with CR3 = [`page_table_root`] and RSP = [`vcpu_stack_top`].

use basalt_xen_abi::elfnote::XEN_ELFNOTE_PHYS32_ENTRY;

/// Size of vCPU 0's boot stack.
pub const BOOT_STACK_SIZE: usize = 64 * 1024;
/// Most vCPUs the runtime has stacks for (vCPU 0 uses the boot stack).
pub const MAX_VCPUS: usize = 16;
/// Size of each secondary vCPU's stack.
pub const VCPU_STACK_SIZE: usize = 32 * 1024;

core::arch::global_asm!(
    r#"
    /* The PVH entry note (xen/include/public/elfnote.h): name "Xen", a 4-byte
       descriptor holding the 32-bit physical entry point. */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 4
    .long {phys32_entry_note}
    .asciz "Xen"
    .balign 4
    .long pvh_start
    .balign 4

    .section .bss.basalt_guest_boot, "aw", @nobits
    .balign 4096
    .global basalt_guest_pml4
basalt_guest_pml4:
    .skip 4096
basalt_guest_pdpt:
    .skip 4096
basalt_guest_pd:
    .skip 4096 * 4
    /* Filled by the hypervisor when its guest-physical address is written to the
       hypercall-page MSR (hypercall.rs). */
    .global basalt_guest_hypercall_page
basalt_guest_hypercall_page:
    .skip 4096
basalt_guest_boot_stack_bottom:
    .skip {boot_stack_size}
basalt_guest_boot_stack_top:
    .global basalt_guest_vcpu_stacks
basalt_guest_vcpu_stacks:
    .skip {vcpu_stacks_size}

    .section .data.basalt_guest_boot, "aw"
    .balign 8
basalt_guest_gdt:
    .quad 0
    .quad 0x00af9b000000ffff  /* 0x08: 64-bit code, present, accessed */
    .quad 0x00cf93000000ffff  /* 0x10: flat data, present, accessed */
basalt_guest_gdt_end:
basalt_guest_gdtr:
    .short basalt_guest_gdt_end - basalt_guest_gdt - 1
    .long basalt_guest_gdt

    .section .text.pvh_start, "ax"
    .code32
    .global pvh_start
pvh_start:
    cli
    cld
    /* %esi keeps the hvm_start_info address until Rust gets it. */
    movl %ebx, %esi

    /* Zero .bss (the loader did, but a restarted domain must not depend on it). */
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    xorl %eax, %eax
    rep stosb

    movl $basalt_guest_boot_stack_top, %esp

    /* 2048 PD entries: 4 GiB of 2 MiB pages, present | writable | large. */
    movl $basalt_guest_pd, %edi
    movl $0x83, %eax
    movl $2048, %ecx
1:  movl %eax, (%edi)
    movl $0, 4(%edi)
    addl $0x200000, %eax
    addl $8, %edi
    loop 1b

    /* PDPT[0..4] -> the four page directories (present | writable). */
    movl $basalt_guest_pdpt, %edi
    movl $basalt_guest_pd + 3, %eax
    movl $4, %ecx
2:  movl %eax, (%edi)
    movl $0, 4(%edi)
    addl $4096, %eax
    addl $8, %edi
    loop 2b

    /* PML4[0] -> the PDPT: identity only, the guest is linked low. */
    movl $basalt_guest_pdpt + 3, %eax
    movl %eax, basalt_guest_pml4

    movl $basalt_guest_pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $(1 << 5), %eax            /* CR4.PAE */
    movl %eax, %cr4
    movl $0xc0000080, %ecx         /* IA32_EFER */
    rdmsr
    orl $(1 << 8), %eax            /* EFER.LME */
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax          /* CR0.PG | CR0.PE: long mode becomes active */
    movl %eax, %cr0

    lgdt basalt_guest_gdtr
    ljmp $0x08, $basalt_guest_long_mode

    .code64
basalt_guest_long_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movabsq $basalt_guest_boot_stack_top, %rsp
    xorl %ebp, %ebp
    movl %esi, %edi                /* zero-extends: rt_start(start_info_address) */
    call {rt_start}
3:  cli
    hlt
    jmp 3b
"#,
    phys32_entry_note = const XEN_ELFNOTE_PHYS32_ENTRY,
    boot_stack_size = const BOOT_STACK_SIZE,
    vcpu_stacks_size = const MAX_VCPUS * VCPU_STACK_SIZE,
    rt_start = sym crate::rt_start,
    options(att_syntax)
);

unsafe extern "C" {
    static basalt_guest_pml4: u8;
    static basalt_guest_vcpu_stacks: u8;
    static basalt_guest_hypercall_page: u8;
}

/// Guest-physical (= virtual) address of the PML4 every vCPU uses as CR3.
pub fn page_table_root() -> u64 {
    (&raw const basalt_guest_pml4) as u64
}

/// Guest-physical address of the page the hypervisor fills with hypercall stubs.
pub fn hypercall_page() -> u64 {
    (&raw const basalt_guest_hypercall_page) as u64
}

/// One past the top of secondary vCPU `vcpu_id`'s stack, or `None` when the runtime
/// has no stack for it (`vcpu_id` 0 or ≥ [`MAX_VCPUS`]). Stack `k` lies at
/// `[base + k * size, base + (k + 1) * size)`; slot 0 of the area is unused (vCPU 0
/// has the boot stack) and separates stack 1 from the boot stack below it.
pub fn vcpu_stack_top(vcpu_id: u32) -> Option<u64> {
    let index = usize::try_from(vcpu_id).ok().filter(|k| (1..MAX_VCPUS).contains(k))?;
    Some((&raw const basalt_guest_vcpu_stacks) as u64 + ((index + 1) * VCPU_STACK_SIZE) as u64)
}
