//! Starting the application processors (INIT-SIPI-SIPI; Intel SDM vol. 3A §8.4.4,
//! AMD APM vol. 2 §16.5) through a real-mode trampoline copied below 1 MiB.
//!
//! The trampoline switches real → protected → long mode on the boot page tables (the
//! PML4 sits below 4 GiB, as 32-bit CR3 loads need) and calls [`ap_entry`] on a stack
//! prepared here. APs are started one at a time, so one parameter block suffices.

use crate::arch::instructions::without_interrupts;
use crate::cpu::{lapic, percpu, time};
use crate::mm::phys_to_virt;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

/// Stack size of each application processor.
pub const AP_STACK_SIZE: usize = 64 * 1024;

core::arch::global_asm!(
    r#"
    .section .ap_trampoline, "ax"
    .global ap_trampoline_start
    .code16
ap_trampoline_start:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    xorl %ebx, %ebx
    movw %ax, %bx
    shll $4, %ebx                  /* ebx = trampoline physical base */
    lgdtl (ap_gdtr - ap_trampoline_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    .byte 0x66, 0xea               /* ljmpl $0x08, $(base + pm32 offset), patched */
ap_pm32_target:
    .long 0
    .short 0x08

    .code32
ap_pm32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl %cr4, %eax
    orl $(1 << 5), %eax
    movl %eax, %cr4
    movl (ap_cr3 - ap_trampoline_start)(%ebx), %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx
    rdmsr
    orl $((1 << 8) | (1 << 11)), %eax
    wrmsr
    movl %cr0, %eax
    andl $0x9fffffff, %eax         /* INIT left caching off (CD, NW): turn it on */
    orl $0x80010001, %eax          /* PG | WP | PE */
    movl %eax, %cr0
    leal 0xff0(%ebx), %esp         /* scratch stack at the end of the trampoline page */
    leal (ap_long - ap_trampoline_start)(%ebx), %eax
    pushl $0x18
    pushl %eax
    lret

    .code64
ap_long:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movq (ap_stack - ap_trampoline_start)(%rbx), %rsp
    movq (ap_argument - ap_trampoline_start)(%rbx), %rdi
    movq (ap_entry_address - ap_trampoline_start)(%rbx), %rax
    xorl %ebp, %ebp
    callq *%rax
1:  cli
    hlt
    jmp 1b

    .balign 8
ap_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff       /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff       /* 0x10: data */
    .quad 0x00af9a000000ffff       /* 0x18: 64-bit code */
ap_gdt_end:
ap_gdtr:
    .short ap_gdt_end - ap_gdt - 1
    .long 0                        /* patched: base + ap_gdt offset */
    .balign 8
ap_cr3:
    .quad 0
ap_stack:
    .quad 0
ap_argument:
    .quad 0
ap_entry_address:
    .quad 0
    .global ap_trampoline_end
ap_trampoline_end:

    .equ AP_OFFSET_PM32_TARGET, ap_pm32_target - ap_trampoline_start
    .equ AP_OFFSET_PM32, ap_pm32 - ap_trampoline_start
    .equ AP_OFFSET_GDT, ap_gdt - ap_trampoline_start
    .equ AP_OFFSET_GDTR_BASE, ap_gdtr + 2 - ap_trampoline_start
    .equ AP_OFFSET_CR3, ap_cr3 - ap_trampoline_start
    .equ AP_OFFSET_STACK, ap_stack - ap_trampoline_start
    .equ AP_OFFSET_ARGUMENT, ap_argument - ap_trampoline_start
    .equ AP_OFFSET_ENTRY, ap_entry_address - ap_trampoline_start
    .global AP_OFFSET_PM32_TARGET, AP_OFFSET_PM32, AP_OFFSET_GDT, AP_OFFSET_GDTR_BASE
    .global AP_OFFSET_CR3, AP_OFFSET_STACK, AP_OFFSET_ARGUMENT, AP_OFFSET_ENTRY
"#,
    options(att_syntax)
);

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static AP_OFFSET_PM32_TARGET: u8;
    static AP_OFFSET_PM32: u8;
    static AP_OFFSET_GDT: u8;
    static AP_OFFSET_GDTR_BASE: u8;
    static AP_OFFSET_CR3: u8;
    static AP_OFFSET_STACK: u8;
    static AP_OFFSET_ARGUMENT: u8;
    static AP_OFFSET_ENTRY: u8;
}

/// Called by image/ on each AP once it runs in long mode on its own stack.
pub type ApMain = extern "C" fn(cpu_index: u64) -> !;

static AP_STARTED: AtomicBool = AtomicBool::new(false);

/// The AP calls this as soon as it runs Rust code, so the BSP can move on.
pub fn signal_started() {
    AP_STARTED.store(true, Ordering::Release);
}

/// Outcome of bringing up the application processors.
#[derive(Debug, Default)]
pub struct SmpReport {
    pub started: Vec<u32>,
    pub failed: Vec<u32>,
    pub skipped: u32,
}

fn offset(symbol: &u8) -> u64 {
    symbol as *const u8 as u64
}

/// Starts each CPU in `apic_ids` (the bootstrap CPU excluded) with `entry`, using the
/// 4 KiB page at `trampoline_page` (< 1 MiB, page aligned). At most `max_cpus` CPUs
/// run in total.
pub fn start_application_processors(
    apic_ids: &[u32],
    trampoline_page: u64,
    entry: ApMain,
    max_cpus: usize,
) -> SmpReport {
    let mut report = SmpReport::default();
    // SAFETY: linker symbols; only their addresses are used, and the `.equ` offsets are
    // absolute symbols whose "address" is the offset value.
    let (start, end, offsets) = unsafe {
        (
            &raw const ap_trampoline_start as u64,
            &raw const ap_trampoline_end as u64,
            [
                offset(&AP_OFFSET_PM32_TARGET),
                offset(&AP_OFFSET_PM32),
                offset(&AP_OFFSET_GDT),
                offset(&AP_OFFSET_GDTR_BASE),
                offset(&AP_OFFSET_CR3),
                offset(&AP_OFFSET_STACK),
                offset(&AP_OFFSET_ARGUMENT),
                offset(&AP_OFFSET_ENTRY),
            ],
        )
    };
    let [pm32_target, pm32, gdt, gdtr_base, cr3, stack, argument, entry_offset] = offsets;
    let length = end - start;
    // The page's last 16 bytes are the trampoline's scratch stack.
    debug_assert!(length < 0xff0);
    let base = phys_to_virt(trampoline_page);
    // SAFETY: the trampoline page is a free, direct-mapped frame below 1 MiB that the
    // caller reserved for us; the code block is shorter than a page.
    unsafe {
        core::ptr::copy_nonoverlapping(start as *const u8, base as *mut u8, length as usize);
        ((base + pm32_target) as *mut u32).write_unaligned((trampoline_page + pm32) as u32);
        ((base + gdtr_base) as *mut u32).write_unaligned((trampoline_page + gdt) as u32);
        ((base + cr3) as *mut u64).write_unaligned(crate::arch::entry::boot_pml4_address());
        ((base + entry_offset) as *mut u64).write_unaligned(entry as usize as u64);
    }
    let bsp_apic = lapic::id();
    let mut next_index = 1usize;
    for &apic_id in apic_ids.iter().filter(|&&id| id != bsp_apic) {
        if next_index >= max_cpus.min(percpu::MAX_CPUS) {
            report.skipped += 1;
            continue;
        }
        let Some((bottom, top)) = crate::mm::paging::allocate_guarded_stack(AP_STACK_SIZE) else {
            report.failed.push(apic_id);
            continue;
        };
        if percpu::prepare(next_index, apic_id, (bottom, top)).is_none() {
            report.failed.push(apic_id);
            continue;
        }
        AP_STARTED.store(false, Ordering::Release);
        // SAFETY: parameter block inside the trampoline page written above.
        unsafe {
            ((base + stack) as *mut u64).write_unaligned(top);
            ((base + argument) as *mut u64).write_unaligned(next_index as u64);
        }
        let vector = (trampoline_page >> 12) as u32;
        without_interrupts(|| {
            lapic::send_ipi(apic_id, 0x4500); // INIT, level assert
            time::delay_us(10_000);
            lapic::send_ipi(apic_id, 0x4600 | vector); // STARTUP
            time::delay_us(200);
            if !AP_STARTED.load(Ordering::Acquire) {
                lapic::send_ipi(apic_id, 0x4600 | vector);
            }
        });
        // Wait up to one second for the AP to report in.
        let mut waited_us = 0;
        while !AP_STARTED.load(Ordering::Acquire) && waited_us < 1_000_000 {
            time::delay_us(100);
            waited_us += 100;
        }
        if AP_STARTED.load(Ordering::Acquire) {
            report.started.push(apic_id);
            next_index += 1;
        } else {
            report.failed.push(apic_id);
        }
    }
    report
}
