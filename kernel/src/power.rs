//! Power-off and reset.
//!
//! Power-off: ACPI S5 (write SLP_TYPa|SLP_EN to PM1a_CNT, and PM1b if present; ACPI
//! 6.x §4.8.3.2.1, §7.4.2), after switching the chipset to ACPI mode through SMI_CMD if
//! SCI_EN is still clear. Fallbacks for emulators: QEMU's isa-debug-exit port (0xf4)
//! and Bochs' shutdown port (0x8900). Reset: the FADT reset register, then the PCI
//! reset control port 0xcf9, then the keyboard controller, then a triple fault.

use crate::acpi::tables::{Fadt, SleepTypes};
use crate::arch::instructions::{inw, outb, outw};
use crate::cpu::time::delay_us;

/// How a power-off attempt ended (it only returns on failure).
#[derive(Debug)]
pub enum PowerError {
    /// No FADT/\_S5 information: ACPI power-off is impossible.
    NoAcpiSleepInformation,
    /// S5 was requested but the machine kept running.
    StillRunning,
}

impl core::fmt::Display for PowerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PowerError::NoAcpiSleepInformation => f.write_str("no ACPI S5 information (FADT/DSDT)"),
            PowerError::StillRunning => f.write_str("the machine did not power off"),
        }
    }
}

const SLP_EN: u16 = 1 << 13;
const SCI_EN: u16 = 1;

/// Tries ACPI S5, then the emulator exit ports. Returns only if all failed.
pub fn poweroff(fadt: Option<&Fadt>, s5: Option<&SleepTypes>) -> PowerError {
    let error = match (fadt, s5) {
        (Some(fadt), Some(s5)) if fadt.pm1a_control_block != 0 => {
            acpi_sleep_s5(fadt, s5);
            PowerError::StillRunning
        }
        _ => PowerError::NoAcpiSleepInformation,
    };
    // Emulator fallbacks: QEMU exits with status (value << 1) | 1; Bochs powers off
    // when it reads "Shutdown" on port 0x8900. Both are harmless elsewhere.
    outb(0xf4, 0);
    for byte in b"Shutdown" {
        outb(0x8900, *byte);
    }
    delay_us(100_000);
    error
}

fn acpi_sleep_s5(fadt: &Fadt, s5: &SleepTypes) {
    let pm1a = fadt.pm1a_control_block as u16;
    if inw(pm1a) & SCI_EN == 0 && fadt.smi_command_port != 0 && fadt.acpi_enable != 0 {
        outb(fadt.smi_command_port as u16, fadt.acpi_enable);
        for _ in 0..300 {
            if inw(pm1a) & SCI_EN != 0 {
                break;
            }
            delay_us(10_000);
        }
    }
    outw(pm1a, (u16::from(s5.slp_typ_a) << 10) | SLP_EN);
    if fadt.pm1b_control_block != 0 {
        outw(fadt.pm1b_control_block as u16, (u16::from(s5.slp_typ_b) << 10) | SLP_EN);
    }
    delay_us(500_000);
}

/// Resets the machine; never returns.
pub fn reboot(fadt: Option<&Fadt>) -> ! {
    if let Some(register) = fadt.and_then(|fadt| fadt.reset_register.as_ref().map(|r| (r, fadt.reset_value))) {
        let (address, value) = register;
        // Space 1 = system I/O. (Memory-space reset registers are rare; skipped.)
        if address.address_space == 1 {
            outb(address.address as u16, value);
            delay_us(100_000);
        }
    }
    outb(0xcf9, 0x02);
    outb(0xcf9, 0x06);
    delay_us(100_000);
    outb(0x64, 0xfe);
    delay_us(100_000);
    // Triple fault: an empty IDT and an exception.
    let empty = x86_64::structures::DescriptorTablePointer { limit: 0, base: x86_64::VirtAddr::new(0) };
    // SAFETY: deliberately loading an empty IDT and trapping, to force a CPU reset.
    unsafe {
        x86_64::instructions::tables::lidt(&empty);
        core::arch::asm!("int3");
    }
    crate::arch::instructions::halt_forever()
}
