//! Interrupt and exception dispatch.
//!
//! Device and IPI vectors go to handlers registered in a table (one entry per vector).
//! CPU exceptions (vectors 0–31) are never expected in the hypervisor: each prints the
//! vector, error code, registers, the faulting address and a symbolized backtrace on
//! the serial line, then halts that CPU — no reboot loop. The backtrace follows the
//! %rbp chain (the hypervisor is built with frame pointers) within the faulting CPU's
//! known stack, so a corrupt chain cannot fault again inside the handler.

use crate::arch::instructions;
use crate::console::emergency::EmergencyWriter;
use crate::symbols::SymbolTable;
use core::fmt::Write;
use core::sync::atomic::{AtomicUsize, Ordering};

/// The registers saved on entry to every vector, in the order the stubs push them.
#[derive(Debug)]
#[repr(C)]
pub struct TrapFrame {
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
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// A handler for a device or IPI vector. It must acknowledge the interrupt (EOI).
pub type InterruptHandler = fn(&mut TrapFrame);

static HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];

/// The hypervisor's own symbol table, once the image has parsed it.
static SYMBOLS: spin::Once<SymbolTable<'static>> = spin::Once::new();

/// Installs `handler` for `vector` (32..=255).
pub fn register(vector: u8, handler: InterruptHandler) {
    HANDLERS[usize::from(vector)].store(handler as usize, Ordering::Release);
}

/// Makes the hypervisor's symbol table available to exception backtraces.
pub fn set_symbols(symbols: SymbolTable<'static>) {
    SYMBOLS.call_once(|| symbols);
}

/// The hypervisor's own symbol table, if it was loaded.
pub fn symbols() -> Option<&'static SymbolTable<'static>> {
    SYMBOLS.get()
}

pub(crate) fn dispatch(frame: &mut TrapFrame) {
    let vector = frame.vector as usize;
    if vector < 32 {
        exception(frame);
    }
    let handler = HANDLERS.get(vector).map_or(0, |slot| slot.load(Ordering::Acquire));
    if handler == 0 {
        // An unexpected vector: acknowledge it so the APIC keeps delivering.
        crate::cpu::lapic::end_of_interrupt();
        return;
    }
    // SAFETY: only `register` stores into HANDLERS, and it stores `InterruptHandler`s.
    let handler: InterruptHandler = unsafe { core::mem::transmute::<usize, InterruptHandler>(handler) };
    handler(frame);
}

const EXCEPTION_NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved (15)",
    "#MF x87 error",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD error",
    "#VE virtualization exception",
    "#CP control protection",
    "reserved (22)",
    "reserved (23)",
    "reserved (24)",
    "reserved (25)",
    "reserved (26)",
    "reserved (27)",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security exception",
    "reserved (31)",
];

fn exception(frame: &TrapFrame) -> ! {
    let mut out = EmergencyWriter::new();
    let cpu = crate::cpu::percpu::current_index();
    let name = EXCEPTION_NAMES.get(frame.vector as usize).copied().unwrap_or("?");
    let _ = writeln!(
        out,
        "\n*** HYPERVISOR EXCEPTION on CPU {cpu}: vector {} {name}, error code {:#x}",
        frame.vector, frame.error_code
    );
    if frame.vector == 14 {
        let _ = writeln!(out, "*** faulting address (CR2) {:#018x}", instructions::read_cr2());
    }
    let _ = writeln!(
        out,
        "RIP {:#018x}  CS {:#06x}  RFLAGS {:#010x}  RSP {:#018x}  SS {:#06x}",
        frame.rip, frame.cs, frame.rflags, frame.rsp, frame.ss
    );
    let _ = writeln!(
        out,
        "RAX {:#018x}  RBX {:#018x}  RCX {:#018x}  RDX {:#018x}",
        frame.rax, frame.rbx, frame.rcx, frame.rdx
    );
    let _ = writeln!(
        out,
        "RSI {:#018x}  RDI {:#018x}  RBP {:#018x}  R8  {:#018x}",
        frame.rsi, frame.rdi, frame.rbp, frame.r8
    );
    let _ = writeln!(
        out,
        "R9  {:#018x}  R10 {:#018x}  R11 {:#018x}  R12 {:#018x}",
        frame.r9, frame.r10, frame.r11, frame.r12
    );
    let _ = writeln!(out, "R13 {:#018x}  R14 {:#018x}  R15 {:#018x}", frame.r13, frame.r14, frame.r15);
    let _ = writeln!(
        out,
        "CR0 {:#018x}  CR3 {:#018x}  CR4 {:#018x}",
        instructions::read_cr0(),
        instructions::read_cr3(),
        instructions::read_cr4()
    );
    let stack = crate::cpu::percpu::current_stack_bounds();
    if frame.rsp < stack.0 && frame.rsp >= stack.0.saturating_sub(4096) {
        let _ = writeln!(out, "*** stack overflow: RSP is in the guard page below this CPU's stack");
    }
    let _ = writeln!(out, "backtrace:");
    write_backtrace(&mut out, frame.rip, frame.rbp, stack);
    let _ = writeln!(out, "*** CPU {cpu} halted");
    out.flush();
    crate::cpu::percpu::current().online.store(false, core::sync::atomic::Ordering::Release);
    instructions::halt_forever();
}

unsafe extern "C" {
    /// The instruction after the interrupt stubs' call into [`dispatch`]: a return
    /// address equal to it means the frame above is a [`TrapFrame`].
    static isr_common_return: u8;
    static __kernel_start: u8;
    static __kernel_end: u8;
}

/// Prints `rip` and then the return addresses found along the %rbp chain, each with its
/// symbol when the symbol table is loaded. Frames are followed only while they lie
/// inside `stack` = [bottom, top), move strictly upward, and return into the
/// hypervisor image. Where the chain passes through an interrupt entry, the
/// interrupted instruction is printed from the saved [`TrapFrame`] and the walk goes on
/// with the interrupted code's frame pointer.
pub fn write_backtrace(out: &mut dyn Write, rip: u64, mut rbp: u64, stack: (u64, u64)) {
    write_frame(out, 0, rip);
    let (bottom, top) = stack;
    let inside = |address: u64, length: u64| address >= bottom && address.saturating_add(length) <= top;
    let interrupt_return = &raw const isr_common_return as u64;
    let image = (&raw const __kernel_start as u64)..(&raw const __kernel_end as u64);
    let mut depth = 1;
    // Deep recursion prints one frame and a count instead of a screenful.
    let mut last_address = rip;
    let mut repeated = 0u32;
    while depth < 256 {
        if !rbp.is_multiple_of(8) || !inside(rbp, 16) {
            break;
        }
        // SAFETY: rbp..rbp+16 lies inside this CPU's mapped kernel stack (checked above).
        let (next_rbp, return_address) = unsafe { (*(rbp as *const u64), *((rbp + 8) as *const u64)) };
        if return_address == interrupt_return {
            let frame_address = rbp + 16;
            if !inside(frame_address, core::mem::size_of::<TrapFrame>() as u64) {
                break;
            }
            // SAFETY: the interrupt stub pushed a whole TrapFrame right above this
            // return address, inside the stack (checked above).
            let frame = unsafe { &*(frame_address as *const TrapFrame) };
            flush_repeats(out, &mut repeated);
            let _ = writeln!(out, "  -- interrupted by vector {} --", frame.vector);
            write_frame(out, depth, frame.rip);
            last_address = frame.rip;
            depth += 1;
            rbp = frame.rbp;
            continue;
        }
        if !image.contains(&return_address) {
            break;
        }
        if return_address == last_address {
            repeated += 1;
        } else {
            flush_repeats(out, &mut repeated);
            write_frame(out, depth, return_address);
            last_address = return_address;
        }
        depth += 1;
        if next_rbp <= rbp {
            break;
        }
        rbp = next_rbp;
    }
    flush_repeats(out, &mut repeated);
}

fn flush_repeats(out: &mut dyn Write, repeated: &mut u32) {
    if *repeated > 0 {
        let _ = writeln!(out, "  ... the frame above repeats {} more times", *repeated);
        *repeated = 0;
    }
}

fn write_frame(out: &mut dyn Write, depth: usize, address: u64) {
    match symbols().and_then(|table| table.lookup(address)) {
        Some(symbol) => {
            let _ = writeln!(out, "  #{depth:<2} {address:#018x} {}+{:#x}", symbol.demangled(), symbol.offset);
        }
        None => {
            let _ = writeln!(out, "  #{depth:<2} {address:#018x} ?");
        }
    }
}
