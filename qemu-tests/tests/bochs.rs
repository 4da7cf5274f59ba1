//! Intel VMX under Bochs: boot the real image on a Haswell model and talk to the shell.
//!
//! The same `build/basalt.img` the QEMU boot matrix boots, on Debian's Bochs with
//! `corei7_haswell_4770` (VMX with EPT, unrestricted guest and VPID), 2 CPUs and 512 MiB,
//! from the hybrid image's El Torito side (CD-ROM, read-only). Checks: the first prompt;
//! `info` lists VMX and EPT under "Virtualization:", neither under "Missing:", and says
//! "CPUs: 2 found, 2 online"; `version`; `poweroff` ends
//! Bochs through ACPI S5 (its log says "ACPI control: soft power off"; Bochs exits with
//! status 1 however it stops — see backend/bochs.rs).
//!
//! The guests on VMX are tested by tests/guests.rs (`bochs_domains_and_memory`,
//! `bochs_hostile_guests`): the same checks as on SVM, the emulator chosen by one
//! parameter.
//!
//! [`boot`] is the helper guest tests use to run on either vendor's virtualization:
//! `boot(EmulatorKind::Bochs, "name")` and `boot(EmulatorKind::Qemu, "name")` give a
//! machine at its first prompt. Transcripts and Bochs's log are in
//! build/qemu-tests/<test>.serial.log and <test>.bochs.log.

use std::time::{Duration, Instant};

use qemu_tests::{EmulatorKind, Failures, Machine, MachineConfig, Result};

/// How long Bochs may take to exit after `poweroff` (ACPI S5 takes effect at once).
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(120);

/// Boots the standard machine of `kind` (QEMU: AMD SVM; Bochs: Intel VMX) and waits for
/// its first prompt.
fn boot(kind: EmulatorKind, name: &str) -> Result<Machine> {
    let (machine, _boot_log) = Machine::boot_to_prompt(MachineConfig::standard(kind), name)?;
    eprintln!("[{name}] first prompt after {:.1} s", machine.elapsed().as_secs_f64());
    Ok(machine)
}

/// `info` lists `kind`'s virtualization features as present and all CPUs online.
fn check_info(machine: &mut Machine, kind: EmulatorKind, failures: &mut Failures) -> Result<()> {
    let info = machine.run_command("info")?;
    let line_starting = |prefix: &str| {
        info.lines().map(str::trim).find(|line| line.starts_with(prefix)).map(str::to_owned).unwrap_or_default()
    };
    let cpus = machine.config().cpus;
    failures.soft(machine.check(info.contains(&format!("CPUs: {cpus} found, {cpus} online")), || {
        format!("`info` does not say \"CPUs: {cpus} found, {cpus} online\":\n{info}")
    }))?;
    let present = line_starting("Virtualization:");
    let missing = line_starting("Missing:");
    for feature in kind.virtualization_features() {
        failures.soft(machine.check(present.split_whitespace().any(|word| word == feature), || {
            format!("`info` does not list {feature} under Virtualization:\n{info}")
        }))?;
        failures.soft(machine.check(!missing.split_whitespace().any(|word| word == feature), || {
            format!("`info` lists {feature} as missing:\n{info}")
        }))?;
    }
    failures.soft(machine.check(line_starting("Firmware:").ends_with("BIOS"), || {
        format!("`info` does not say \"Firmware: BIOS\":\n{info}")
    }))
}

/// `poweroff` prints its line and the emulator exits cleanly (ACPI S5).
fn check_poweroff(machine: &mut Machine) -> Result<()> {
    machine.skip_pending_output();
    machine.send_line("poweroff")?;
    // Bochs exits the moment ACPI S5 is written, sometimes before its serial socket
    // passed on the "Powering off..." the shell printed just before: the clean ACPI exit
    // is what counts.
    let status = machine.wait_exit(POWEROFF_TIMEOUT)?;
    if machine.is_clean_exit(status) {
        Ok(())
    } else {
        Err(machine.fail(format!("`poweroff` did not power off cleanly: {}", machine.explain_exit(status))))
    }
}

#[test]
fn bochs_boots_to_the_shell() -> Result<()> {
    let name = "bochs_boots_to_the_shell";
    let started = Instant::now();
    let mut machine = boot(EmulatorKind::Bochs, name)?;
    let mut failures = Failures::new();
    let result = (|| {
        check_info(&mut machine, EmulatorKind::Bochs, &mut failures)?;
        let version = machine.run_command("version")?;
        failures.soft(machine.check(version.contains("Basalt"), || format!("`version` printed {version:?}")))?;
        check_poweroff(&mut machine)
    })();
    eprintln!("[{name}] finished after {:.1} s", started.elapsed().as_secs_f64());
    match result {
        Ok(()) => failures.finish(),
        Err(error) => Err(failures.with_fatal(error)),
    }
}
