//! The stack and log dcmds: `::cpustack [-v] [-c cpu]` (alias `::stack`) unwinds a
//! vCPU's stack ([`crate::stack`]) and prints one `symbol+0xoffset()` line per frame,
//! innermost first, as mdb's `::stack` does; `::msgbuf` prints a Linux guest's kernel
//! log ([`crate::linux::printk`]).
//!
//! Symbol names and log text come from the guest, so they are printed with anything
//! but printable ASCII escaped; notes (how the stack was unwound, why it stopped)
//! never contain `+`, so a frame line is told from a note by it.

use alloc::format;
use alloc::vec::Vec;
use core::fmt::{self, Write as _};

use crate::dcmd::{selected_vcpu, Dcmd, DcmdCall, DcmdError, DcmdResult, Debuggee, Options, Walker};
use crate::stack::{self, Method};

pub const DCMDS: &[Dcmd] = &[
    Dcmd {
        name: "cpustack",
        usage: "[-v] [-c cpu]",
        summary: "print the stack of the current vCPU (or of vCPU -c cpu)",
        help: "Unwinds the vCPU's stack from its saved registers and prints one line per frame, \
innermost first: symbol+0xoffset() where a kernel symbol contains the address, the address \
otherwise. Linux guests are unwound with the kernel's ORC tables when the symbols name them, \
other guests along the frame-pointer chain; if neither gets past the first frame, the stack's \
first page is scanned for words that point into functions, and the output says so. With -v \
each line also shows the frame's stack and frame pointers. With -c (or an address before ::) \
the given vCPU.",
        run: run_cpustack,
    },
    Dcmd {
        name: "stack",
        usage: "[-v]",
        summary: "print the stack of the current vCPU (::cpustack)",
        help: "The same as ::cpustack for the current vCPU.",
        run: run_cpustack,
    },
    Dcmd {
        name: "msgbuf",
        usage: "",
        summary: "print a Linux guest's kernel log",
        help: "Reads the kernel's printk ring buffer through the layout its vmcoreinfo gives and \
prints each record as `[seconds.micros] text`, in sequence order. Records that are being \
written or were overwritten are left out; records whose contents do not check out are \
counted in a note at the end.",
        run: run_msgbuf,
    },
];

pub const WALKERS: &[Walker] = &[];

/// Guest text for the terminal: printable ASCII as is, the rest `\xNN`.
struct Printable<'a>(&'a str);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0.bytes() {
            if (0x20..0x7f).contains(&byte) && byte != b'\\' {
                formatter.write_char(char::from(byte))?;
            } else {
                write!(formatter, "\\x{byte:02x}")?;
            }
        }
        Ok(())
    }
}

fn run_cpustack(debuggee: &Debuggee<'_>, call: &DcmdCall<'_>, out: &mut dyn fmt::Write) -> DcmdResult {
    let options = Options::parse(call.args, "vc:")?;
    if let Some(word) = options.positional.first() {
        return Err(DcmdError::Usage(format!("unexpected argument '{}'", Printable(word))));
    }
    let vcpu = selected_vcpu(debuggee, call, &options)?;
    let registers = debuggee.target().registers(vcpu)?;
    let unwinding = stack::unwind_with_method(debuggee, &registers);
    let symbols = debuggee.symbols();
    if unwinding.method == Method::Scan {
        writeln!(out, "(no frame chain: {})", unwinding.method.name())?;
    }
    for (index, frame) in unwinding.frames.iter().enumerate() {
        if options.has('v') {
            write!(out, "{:016x} {:016x} ", frame.sp, frame.frame_pointer)?;
        }
        // A caller's pc is a return address: the instruction after the call, which is
        // past the end of the caller when the call was its last instruction (a call to
        // a function that never returns). The call itself, at pc - 1, names the caller.
        let named = if index == 0 {
            symbols.by_address(frame.pc)
        } else {
            symbols
                .by_address(frame.pc.wrapping_sub(1))
                .map(|(symbol, _)| (symbol, frame.pc - symbol.address))
                .or_else(|| symbols.by_address(frame.pc))
        };
        match named {
            Some((symbol, 0)) => writeln!(out, "{}()", Printable(&symbol.name))?,
            Some((symbol, offset)) => writeln!(out, "{}+{offset:#x}()", Printable(&symbol.name))?,
            None => writeln!(out, "{:#x}()", frame.pc)?,
        }
    }
    if let Some(why) = &unwinding.stopped {
        writeln!(out, "(unwinding by {} stopped: {})", unwinding.method.name(), Printable(why))?;
    }
    Ok(unwinding.frames.iter().map(|frame| frame.pc).collect())
}

fn run_msgbuf(debuggee: &Debuggee<'_>, call: &DcmdCall<'_>, out: &mut dyn fmt::Write) -> DcmdResult {
    if let Some(word) = call.args.first() {
        return Err(DcmdError::Usage(format!("unexpected argument '{}'", Printable(word))));
    }
    let log = crate::linux::printk::read_log(debuggee).map_err(DcmdError::Failed)?;
    for record in &log.records {
        let line = record.line();
        for (index, part) in line.split('\n').enumerate() {
            if index > 0 {
                out.write_str("    ")?;
            }
            writeln!(out, "{}", Printable(part))?;
        }
    }
    if !log.skipped.is_empty() {
        writeln!(
            out,
            "({} records skipped as inconsistent; the first: {})",
            log.skipped.len(),
            Printable(&log.skipped[0])
        )?;
    }
    Ok(Vec::new())
}
