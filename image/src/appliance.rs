//! The appliance behind the shell: implements the shell's `System` with the kernel.
use basalt_kernel::arch::instructions;
use basalt_kernel::console::serial;

/// Runs the serial shell on this CPU for ever.
pub fn run_shell() -> ! {
    loop {
        serial::write_bytes(b"basalt> ");
        loop {
            match serial::read_byte() {
                Some(b'\r') => break,
                Some(byte) => serial::write_bytes(&[byte]),
                None => instructions::enable_interrupts_and_halt(),
            }
        }
        serial::write_bytes(b"\r\n");
    }
}
