//! The panic handler: a broken internal invariant. Prints the message, the CPU and a
//! symbolized backtrace on the serial line, then halts this CPU (DESIGN.md, decision 7).

use basalt_kernel::arch::{instructions, trap};
use basalt_kernel::console::emergency::EmergencyWriter;
use basalt_kernel::cpu::percpu;
use core::fmt::Write;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut out = EmergencyWriter::new();
    let cpu = percpu::current_index();
    let _ = writeln!(out, "\n*** HYPERVISOR PANIC on CPU {cpu}: {}", info.message());
    if let Some(location) = info.location() {
        let _ = writeln!(out, "*** at {}:{}", location.file(), location.line());
    }
    let rbp: u64;
    // SAFETY: reads the frame pointer register; no side effects.
    unsafe { core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags)) };
    let _ = writeln!(out, "backtrace:");
    trap::write_backtrace(&mut out, panic as *const () as u64, rbp, percpu::current_stack_bounds());
    let _ = writeln!(out, "*** CPU {cpu} halted");
    out.flush();
    percpu::current().online.store(false, core::sync::atomic::Ordering::Release);
    instructions::halt_forever()
}
