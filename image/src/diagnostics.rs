//! Diagnostic shell commands of the appliance itself, in their own table (the shell's
//! registry gathers every subsystem's table; see appliance.rs).

use crate::appliance::Appliance;
use alloc::format;
use basalt_kernel::cpu::diagnostics::{request_fault, FaultKind};
use basalt_kernel::cpu::percpu;
use basalt_shell::{Command, CommandError, Invocation};
use core::sync::atomic::Ordering;

/// The appliance's diagnostic commands.
pub static DIAGNOSTIC_COMMANDS: &[Command<Appliance>] = &[Command {
    name: "fault",
    usage: "fault CPU ud|pf|gp|so",
    summary: "raise a CPU exception (so: stack overflow) on purpose to test the crash report; halts that CPU",
    run: fault,
}];

fn fault(invocation: &mut Invocation<'_, Appliance>) -> Result<(), CommandError> {
    let [cpu, kind] = invocation.args else {
        return Err(CommandError::Usage("expected a CPU number and a fault kind".into()));
    };
    let index: usize = cpu.parse().map_err(|_| CommandError::Usage(format!("'{cpu}' is not a CPU number")))?;
    let kind = FaultKind::parse(kind).ok_or_else(|| CommandError::Usage(format!("unknown fault kind '{kind}'")))?;
    let slot = percpu::all().nth(index).ok_or_else(|| CommandError::Failed(format!("no CPU {index}")))?;
    if !slot.online.load(Ordering::Acquire) {
        return Err(CommandError::Failed(format!("CPU {index} is not online")));
    }
    if index == percpu::current_index() as usize {
        let _ = writeln!(invocation.out, "CPU {index} runs this shell: the appliance will stop responding");
    }
    request_fault(slot.apic_id.load(Ordering::Relaxed), kind);
    let _ = writeln!(invocation.out, "fault requested on CPU {index}");
    Ok(())
}
