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
//! `bochs_vmx_guests` runs the SVM guest tests' guests on VMX (build/basalt-test.img):
//! hello prints and powers off, smp runs 4 vCPUs on 2 CPUs to completion, triplefault
//! and badmem crash alone with their reasons in the log, spinner (interrupts off) keeps
//! running while demo echoes and the shell answers, and every byte of memory comes back.
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

/// Attaches to `domain`'s console, waits for `until`, leaves with Ctrl-]; returns what
/// the console printed.
fn console_until(machine: &mut Machine, domain: &str, until: &str) -> Result<String> {
    machine.wait_prompt_query(Duration::from_secs(5));
    machine.skip_pending_output();
    machine.send_line(&format!("console {domain}"))?;
    machine.expect("Escape character is '^]'.", Duration::from_secs(60))?;
    let text = machine.expect(until, GUEST_TIMEOUT)?;
    machine.send_bytes(&[0x1d])?;
    machine.expect_prompt()?;
    Ok(text)
}

/// Under Bochs a guest runs at tens of MIPS, with exits a few microseconds each.
const GUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// The `Free: N bytes` figure of `mem`.
fn free_bytes(machine: &mut Machine) -> Result<u64> {
    let mem = machine.run_command("mem")?;
    mem.lines()
        .find_map(|line| line.trim().strip_prefix("Free: ")?.strip_suffix(" bytes")?.parse().ok())
        .ok_or_else(|| machine.fail(format!("`mem` has no \"Free: N bytes\" line:\n{mem}")))
}

/// Polls `dmesg` until a line contains `text` (log lines also reach the serial line
/// asynchronously, possibly inside a command's output, so the log ring is the reliable
/// place to look).
fn wait_for_log(machine: &mut Machine, text: &str) -> Result<String> {
    let started = Instant::now();
    loop {
        let log = machine.run_command("dmesg")?;
        if let Some(line) = log.lines().find(|line| line.contains(text)) {
            return Ok(line.to_owned());
        }
        if started.elapsed() > GUEST_TIMEOUT {
            return Err(machine.fail(format!("no log line containing {text:?}:\n{log}")));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The state column of `domain`'s row in `list`.
fn state_of(machine: &mut Machine, domain: &str) -> Result<String> {
    let table = machine.run_command(&format!("list {domain}"))?;
    let row = table.lines().find(|line| line.starts_with(domain)).unwrap_or_default().to_owned();
    Ok(row.split_whitespace().nth(4).unwrap_or_default().to_owned())
}

/// The guests of the SVM tests, on Intel VMX with EPT: hello prints and powers off,
/// smp runs four vCPUs on two CPUs to completion, a triple fault and an access to
/// memory the domain does not have crash only that domain (with the reason in the
/// log), the spinner keeps running while demo still echoes and the shell answers, and
/// all memory comes back.
#[test]
fn bochs_vmx_guests() -> Result<()> {
    let name = "bochs_vmx_guests";
    let image = qemu_tests::config::workspace_root().join("build").join("basalt-test.img");
    let config = MachineConfig { image, memory_mib: 768, ..MachineConfig::standard(EmulatorKind::Bochs) };
    let (mut machine, _) = Machine::boot_to_prompt(config, name)?;
    let mut failures = Failures::new();
    let result = (|| {
        let info = machine.run_command("info")?;
        failures.soft(machine.check(info.contains("Guests: Intel VMX with EPT"), || {
            format!("`info` should say the guests run on Intel VMX with EPT:\n{info}")
        }))?;
        let before = free_bytes(&mut machine)?;

        machine.run_command("create hello")?;
        let hello = console_until(&mut machine, "hello", "hello from domain")?;
        failures.soft(machine.check(hello.contains("hello from domain"), || hello.clone()))?;

        machine.run_command("create demo")?;
        console_until(&mut machine, "demo", "Type a line")?;

        machine.run_command("create smp")?;
        let smp = console_until(&mut machine, "smp", "smp: all 4 vcpus done")?;
        for vcpu in 0..4 {
            failures.soft(machine.check(smp.contains(&format!("smp: vcpu {vcpu} done")), || smp.clone()))?;
        }

        for (guest, reason) in [("triplefault", "triple fault"), ("badmem", "which is not its memory")] {
            machine.run_command(&format!("create {guest}"))?;
            wait_for_log(&mut machine, reason)?;
            let state = state_of(&mut machine, guest)?;
            failures.soft(machine.check(state == "----c-", || format!("{guest} should be crashed: {state}")))?;
        }
        machine.run_command("create spinner")?;
        console_until(&mut machine, "spinner", "spinning")?;
        machine.wait_prompt_query(Duration::from_secs(5));
        machine.skip_pending_output();
        machine.send_line("console demo")?;
        machine.expect("Escape character is '^]'.", Duration::from_secs(60))?;
        machine.send_line("still here")?;
        machine.expect("demo: you typed 'still here'", GUEST_TIMEOUT)?;
        machine.send_bytes(&[0x1d])?;
        machine.expect_prompt()?;
        let state = state_of(&mut machine, "spinner")?;
        failures.soft(machine.check(state == "r-----", || format!("spinner should still run: {state}")))?;
        let version = machine.run_command("version")?;
        failures.soft(machine.check(version.contains("Basalt"), || version.clone()))?;

        for guest in ["spinner", "badmem", "triplefault", "smp", "demo", "hello"] {
            machine.run_command(&format!("destroy {guest}"))?;
        }
        let after = free_bytes(&mut machine)?;
        failures.soft(machine.check(after == before, || format!("Free: {before} before, {after} after")))?;
        check_poweroff(&mut machine)
    })();
    match result {
        Ok(()) => failures.finish(),
        Err(error) => Err(failures.with_fatal(error)),
    }
}
