//! The interrupt descriptor table and the 256 entry stubs.
//!
//! Every vector has a 16-byte stub that pushes a dummy error code when the CPU does not
//! push one (so the frame layout is uniform), then the vector number, and jumps to a
//! common path that saves the general registers into a [`TrapFrame`] and calls
//! [`super::trap::dispatch`]. One IDT serves all CPUs. Exceptions that must not use a
//! possibly broken stack (double fault, NMI, machine check) switch to an IST stack.

use super::gdt::{IST_DOUBLE_FAULT, IST_MACHINE_CHECK, IST_NMI};
use super::trap::TrapFrame;
use core::cell::UnsafeCell;

const STUB_SIZE: u64 = 16;

core::arch::global_asm!(
    r#"
    .section .text.isr, "ax"
    .code64
    .balign 16
    .global isr_stubs
isr_stubs:
    .set vector, 0
    .rept 256
    .balign 16
    .if (vector == 8) || ((vector >= 10) && (vector <= 14)) || (vector == 17) || (vector == 21) || (vector == 29) || (vector == 30)
    .else
    pushq $0
    .endif
    pushq $vector
    jmp isr_common
    .set vector, vector + 1
    .endr

isr_common:
    pushq %r15
    pushq %r14
    pushq %r13
    pushq %r12
    pushq %r11
    pushq %r10
    pushq %r9
    pushq %r8
    pushq %rbp
    pushq %rdi
    pushq %rsi
    pushq %rdx
    pushq %rcx
    pushq %rbx
    pushq %rax
    movq %rsp, %rdi
    cld
    call {dispatch}
    .global isr_common_return
isr_common_return:
    popq %rax
    popq %rbx
    popq %rcx
    popq %rdx
    popq %rsi
    popq %rdi
    popq %rbp
    popq %r8
    popq %r9
    popq %r10
    popq %r11
    popq %r12
    popq %r13
    popq %r14
    popq %r15
    addq $16, %rsp
    iretq
"#,
    dispatch = sym dispatch_entry,
    options(att_syntax)
);

extern "C" fn dispatch_entry(frame: &mut TrapFrame) {
    super::trap::dispatch(frame);
}

unsafe extern "C" {
    static isr_stubs: u8;
}

#[derive(Clone, Copy)]
#[repr(C)]
struct GateDescriptor {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attributes: u8,
    offset_middle: u16,
    offset_high: u32,
    reserved: u32,
}

const _: () = assert!(core::mem::size_of::<GateDescriptor>() == 16);

#[repr(C, align(16))]
struct Idt(UnsafeCell<[GateDescriptor; 256]>);

// SAFETY: the table is written once by the bootstrap CPU in `init` before any other CPU
// starts or interrupts are enabled, and only read (by hardware) afterwards.
unsafe impl Sync for Idt {}

static IDT: Idt = Idt(UnsafeCell::new(
    [GateDescriptor {
        offset_low: 0,
        selector: 0,
        ist: 0,
        type_attributes: 0,
        offset_middle: 0,
        offset_high: 0,
        reserved: 0,
    }; 256],
));

/// Fills the IDT (bootstrap CPU, once, interrupts disabled) and loads it.
pub fn init() {
    let stubs = &raw const isr_stubs as u64;
    // SAFETY: see `impl Sync for Idt`: single writer before any reader exists.
    let table = unsafe { &mut *IDT.0.get() };
    for (vector, gate) in table.iter_mut().enumerate() {
        let handler = stubs + vector as u64 * STUB_SIZE;
        let ist = match vector {
            2 => IST_NMI,
            8 => IST_DOUBLE_FAULT,
            18 => IST_MACHINE_CHECK,
            _ => 0,
        };
        *gate = GateDescriptor {
            offset_low: handler as u16,
            selector: 0x08,
            ist,
            type_attributes: 0x8e, // present, DPL 0, 64-bit interrupt gate
            offset_middle: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        };
    }
    load();
}

/// Loads the shared IDT on the calling CPU.
pub fn load() {
    let pointer = x86_64::structures::DescriptorTablePointer {
        limit: (core::mem::size_of::<[GateDescriptor; 256]>() - 1) as u16,
        base: x86_64::VirtAddr::new(IDT.0.get() as u64),
    };
    // SAFETY: the IDT is a static that lives forever and `init` filled every gate.
    unsafe { x86_64::instructions::tables::lidt(&pointer) };
}
