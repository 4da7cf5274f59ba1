//! `demo`: the guest shipped in build/basalt.img, to try `create`, `console` and
//! `destroy` with. It greets, then echoes console input line by line:
//! `demo: you typed '<line>'`. The line `poweroff` shuts it down (`on_poweroff`),
//! `reboot` reboots it (`on_reboot`, which restarts it).
//!
//! Input comes from `console_io(CONSOLEIO_read)`, which returns what arrived (0 bytes
//! if nothing). With nothing to read the vCPU blocks in `SCHEDOP_block`; the hypervisor
//! wakes a blocked vCPU when console input arrives for its domain. Characters are
//! echoed as typed; backspace (0x7f or 0x08) erases; CR or LF ends the line (a CR LF
//! pair ends one line, not two). Only printable ASCII is kept.
#![no_std]
#![no_main]

use basalt_guest_rt::abi::sched::{SCHEDOP_block, SHUTDOWN_poweroff, SHUTDOWN_reboot};
use basalt_guest_rt::{console, cpu, hypercall, println, shutdown};

basalt_guest_rt::entry!(main);

/// Longest line kept; further characters are dropped (and not echoed).
const LINE_MAX: usize = 128;

/// A line being typed.
struct LineEditor {
    bytes: [u8; LINE_MAX],
    length: usize,
    /// The previous byte was CR: a following LF belongs to the same line end.
    after_carriage_return: bool,
}

impl LineEditor {
    const fn new() -> Self {
        Self { bytes: [0; LINE_MAX], length: 0, after_carriage_return: false }
    }

    /// Takes one input byte, echoes it, and returns a finished line when it ends one.
    fn feed(&mut self, byte: u8) -> Option<&str> {
        let after_carriage_return = core::mem::replace(&mut self.after_carriage_return, byte == b'\r');
        match byte {
            b'\n' if after_carriage_return => None,
            b'\r' | b'\n' => {
                console::write_bytes(b"\r\n");
                let length = core::mem::take(&mut self.length);
                // Only printable ASCII was stored, so this is always UTF-8.
                core::str::from_utf8(&self.bytes[..length]).ok()
            }
            0x7f | 0x08 => {
                if self.length > 0 {
                    self.length -= 1;
                    console::write_bytes(b"\x08 \x08");
                }
                None
            }
            0x20..=0x7e if self.length < LINE_MAX => {
                self.bytes[self.length] = byte;
                self.length += 1;
                console::write_bytes(&[byte]);
                None
            }
            _ => None,
        }
    }
}

fn main() -> ! {
    const GREETING: &str = "Type a line; it is echoed back. 'poweroff' or 'reboot' ends me.";
    match cpu::domain_id() {
        Some(domain) => println!("Basalt demo guest: domain {domain}. {GREETING}"),
        None => println!("Basalt demo guest: domain ?. {GREETING}"),
    }
    let mut editor = LineEditor::new();
    let mut input = [0u8; 64];
    loop {
        let received = hypercall::console_read(&mut input);
        if received <= 0 {
            hypercall::sched_op(SCHEDOP_block);
            continue;
        }
        let received = (received as usize).min(input.len());
        for &byte in &input[..received] {
            let Some(line) = editor.feed(byte) else { continue };
            println!("demo: you typed '{line}'");
            match line {
                "poweroff" => shutdown(SHUTDOWN_poweroff),
                "reboot" => shutdown(SHUTDOWN_reboot),
                _ => {}
            }
        }
    }
}
