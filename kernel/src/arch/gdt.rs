//! Per-CPU GDT and TSS, with separate interrupt stacks (IST) for the exceptions that
//! must not run on a possibly broken kernel stack: double fault, NMI, machine check.
//!
//! Each CPU has its own GDT because the TSS descriptor carries a busy bit. Selector
//! layout (shared by every CPU, and matching the boot GDT): 0x08 kernel code (64-bit),
//! 0x10 kernel data, 0x18 TSS.

use alloc::boxed::Box;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// IST slot (1-based in the IDT, 0-based in the TSS) for double faults.
pub const IST_DOUBLE_FAULT: u8 = 1;
/// IST slot for NMIs.
pub const IST_NMI: u8 = 2;
/// IST slot for machine checks.
pub const IST_MACHINE_CHECK: u8 = 3;

const IST_STACK_SIZE: usize = 16 * 1024;

/// Builds and loads a GDT and TSS for the calling CPU (after the heap exists). Both
/// are leaked: they must live as long as the CPU runs.
///
/// `kernel_stack_top` goes into RSP0 for completeness (the hypervisor never runs code at
/// CPL 3, so hardware never uses it today).
pub fn load_for_this_cpu(kernel_stack_top: u64) {
    let tss: &'static mut TaskStateSegment = Box::leak(Box::new(TaskStateSegment::new()));
    for slot in [IST_DOUBLE_FAULT, IST_NMI, IST_MACHINE_CHECK] {
        // Guarded like every stack; without memory for one the slot stays 0 and that
        // exception would use the current stack.
        if let Some((_, top)) = crate::mm::paging::allocate_guarded_stack(IST_STACK_SIZE) {
            tss.interrupt_stack_table[usize::from(slot - 1)] = VirtAddr::new(top);
        }
    }
    tss.privilege_stack_table[0] = VirtAddr::new(kernel_stack_top);
    let tss: &'static TaskStateSegment = tss;
    let gdt: &'static mut GlobalDescriptorTable<8> = Box::leak(Box::new(GlobalDescriptorTable::empty()));
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let tss_selector = gdt.append(Descriptor::tss_segment(tss));
    let gdt: &'static GlobalDescriptorTable<8> = gdt;
    gdt.load();
    // SAFETY: the selectors come from the GDT just loaded, which is 'static; code is a
    // 64-bit code segment and data a writable data segment, as the CPU requires.
    unsafe {
        CS::set_reg(code);
        SS::set_reg(data);
        DS::set_reg(data);
        ES::set_reg(data);
        load_tss(tss_selector);
    }
}
