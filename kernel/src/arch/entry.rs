//! The multiboot2 header and the 32-bit entry that reaches long mode.
//!
//! GRUB enters `_start` in 32-bit protected mode with paging off, %eax holding the
//! multiboot2 magic and %ebx the physical address of the boot information (Multiboot2
//! specification §3.3). We build boot page tables that map the first 4 GiB twice with
//! 2 MiB pages — identity (the kernel runs at its physical link address) and at
//! [`crate::mm::DIRECT_MAP_BASE`] (the direct map of physical memory) — enable PAE,
//! long mode and paging, and call `basalt_image_main(magic, info)` (defined by image/)
//! on the boot stack. The same PML4 later serves every CPU; `mm::paging` extends the
//! direct map past 4 GiB by adding page directories under the shared PDPT.

/// Size of the bootstrap processor's stack (also used for its exception backtraces).
pub const BOOT_STACK_SIZE: usize = 64 * 1024;

core::arch::global_asm!(
    r#"
    .set MB2_MAGIC, 0xe85250d6
    .set MB2_ARCH_I386, 0

    .section .multiboot2, "a"
    .balign 8
mb2_header_start:
    .long MB2_MAGIC
    .long MB2_ARCH_I386
    .long mb2_header_end - mb2_header_start
    .long 0x100000000 - (MB2_MAGIC + MB2_ARCH_I386 + (mb2_header_end - mb2_header_start))
    /* Framebuffer request (tag 5, optional): 1024x768x32; GRUB may pick another. */
    .balign 8
    .short 5
    .short 1
    .long 20
    .long 1024
    .long 768
    .long 32
    /* End tag. */
    .balign 8
    .short 0
    .short 0
    .long 8
mb2_header_end:

    .section .bss.boot, "aw", @nobits
    .balign 4096
    .global boot_pml4
boot_pml4:
    .skip 4096
    .global boot_pdpt
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096 * 4
    /* Unmapped once paging is ours (mm::paging::unmap_guard_page), so a stack
       overflow faults instead of overwriting the page tables above. */
    .global boot_stack_guard
boot_stack_guard:
    .skip 4096
    .global boot_stack_bottom
boot_stack_bottom:
    .skip {stack_size}
    .global boot_stack_top
boot_stack_top:

    .section .data.boot, "aw"
    .balign 8
boot_magic:
    .long 0
boot_info:
    .long 0
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff  /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff  /* 0x10: data */
boot_gdt_end:
boot_gdtr:
    .short boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .section .text.boot, "ax"
    .code32
    .global _start
_start:
    cli
    cld
    movl $boot_stack_top, %esp
    movl %eax, boot_magic
    movl %ebx, boot_info

    /* 2048 PD entries: 4 GiB of 2 MiB pages, present | writable | large. */
    movl $boot_pd, %edi
    movl $0x83, %eax
    movl $2048, %ecx
1:  movl %eax, (%edi)
    movl $0, 4(%edi)
    addl $0x200000, %eax
    addl $8, %edi
    loop 1b

    /* PDPT[0..4] -> the four page directories. */
    movl $boot_pdpt, %edi
    movl $boot_pd + 3, %eax
    movl $4, %ecx
2:  movl %eax, (%edi)
    movl $0, 4(%edi)
    addl $4096, %eax
    addl $8, %edi
    loop 2b

    /* PML4[0] (identity) and PML4[256] (direct map) share the PDPT. */
    movl $boot_pdpt + 3, %eax
    movl %eax, boot_pml4
    movl %eax, boot_pml4 + 256 * 8

    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $(1 << 5), %eax            /* PAE */
    movl %eax, %cr4
    movl $0xc0000080, %ecx         /* EFER */
    rdmsr
    orl $((1 << 8) | (1 << 11)), %eax  /* LME | NXE */
    wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax          /* PG | WP | PE */
    movl %eax, %cr0

    lgdt boot_gdtr
    ljmp $0x08, $long_mode_entry

    .code64
long_mode_entry:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movabsq $boot_stack_top, %rsp
    xorl %ebp, %ebp
    movl boot_magic(%rip), %edi
    movl boot_info(%rip), %esi
    call basalt_image_main
3:  cli
    hlt
    jmp 3b
"#,
    stack_size = const BOOT_STACK_SIZE,
    options(att_syntax)
);

unsafe extern "C" {
    static boot_stack_guard: u8;
    static boot_stack_bottom: u8;
    static boot_stack_top: u8;
    static boot_pml4: u8;
}

/// Bounds `[bottom, top)` of the bootstrap processor's stack.
pub fn boot_stack_bounds() -> (u64, u64) {
    (&raw const boot_stack_bottom as u64, &raw const boot_stack_top as u64)
}

/// Address of the page below the boot stack, to be unmapped as its guard.
pub fn boot_stack_guard_page() -> u64 {
    &raw const boot_stack_guard as u64
}

/// Physical address of the boot PML4, which every CPU uses.
pub fn boot_pml4_address() -> u64 {
    &raw const boot_pml4 as u64
}
