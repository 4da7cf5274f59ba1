//! The boot matrix: boot the real image once per machine and check the shell end to end.
//!
//! One test per boot-matrix entry — BIOS + IDE disk, BIOS + USB stick on xHCI, UEFI +
//! disk. Each boots ONCE (TCG boots are the expensive part) and then runs every check
//! on that boot: the prompt, `info`, `cpus`, `help`, `version`, `dmesg`, `uptime`,
//! `mem`, error handling for unknown commands, bad arguments and garbage input, the
//! framebuffer log (decoded from a screen dump), `reboot` (on the USB machine) and
//! finally `poweroff`, which must make QEMU exit with status 0 (ACPI S5; status 1 would
//! mean the isa-debug-exit fallback fired).
//!
//! The tests need build/basalt.img and fail — never skip — without it. Transcripts of
//! every run are in build/qemu-tests/<test>.serial.log.

use std::time::{Duration, Instant};

use qemu_tests::{Failures, Firmware, Machine, MachineConfig, Medium, Pattern, Result};

/// Every command the shell's table must list in `help`.
const COMMANDS: [&str; 9] = [
    "help", "version", "info", "dmesg", "cpus", "mem", "uptime", "reboot", "poweroff",
];

/// How long QEMU may take to exit after `poweroff`.
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(120);

/// Boots `config` and waits for the first prompt; returns the machine and the boot log.
fn boot_to_prompt(config: MachineConfig, name: &str) -> Result<(Machine, String)> {
    let mut machine = Machine::boot(config, name)?;
    let boot_log = machine.expect_boot_prompt()?;
    eprintln!(
        "[{name}] first prompt after {:.1} s",
        machine.elapsed().as_secs_f64()
    );
    Ok((machine, boot_log))
}

fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(str::trim).filter(|line| !line.is_empty())
}

/// The boot log shows the hypervisor's first line and (per the contract) GRUB's menu.
fn check_boot_log(machine: &Machine, boot_log: &str, failures: &mut Failures) -> Result<()> {
    failures.soft(machine.check(boot_log.contains("GRUB"), || {
        "GRUB's menu never appeared on the serial line".to_owned()
    }))?;
    failures.soft(
        machine.check(lines(boot_log).any(|line| line.contains("Basalt")), || {
            "no hypervisor log line containing \"Basalt\" before the first prompt".to_owned()
        }),
    )?;
    failures.soft(machine.check(machine.queries_answered() > 0, || {
        "the shell sent no cursor-position query (ESC [6n) before its prompt".to_owned()
    }))
}

/// The number after `label` in `text` (e.g. "Memory: " → 511).
fn number_after(text: &str, label: &str) -> Option<u64> {
    let start = text.find(label)? + label.len();
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn check_info(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let info = machine.run_command("info")?;
    let cpus = machine.config().cpus;
    let line_starting = |prefix: &str| {
        lines(&info)
            .find(|line| line.starts_with(prefix))
            .map(str::to_owned)
    };
    failures.soft(machine.check(
        info.contains(&format!("CPUs: {cpus} found, {cpus} online")),
        || format!("`info` does not say \"CPUs: {cpus} found, {cpus} online\":\n{info}"),
    ))?;
    let virtualization = line_starting("Virtualization:").unwrap_or_default();
    for feature in ["SVM", "NPT"] {
        failures.soft(
            machine.check(
                virtualization
                    .split_whitespace()
                    .any(|word| word == feature),
                || format!("`info` does not list {feature} under Virtualization:\n{info}"),
            ),
        )?;
    }
    if let Some(missing) = line_starting("Missing:") {
        failures.soft(
            machine.check(
                !missing
                    .split_whitespace()
                    .any(|word| word == "SVM" || word == "NPT"),
                || format!("`info` lists SVM or NPT as missing:\n{info}"),
            ),
        )?;
    }
    let firmware = machine.config().emulator.firmware().shell_name();
    failures.soft(machine.check(
        line_starting("Firmware:").is_some_and(|line| line.ends_with(firmware)),
        || format!("`info` does not say \"Firmware: {firmware}\":\n{info}"),
    ))?;
    for pattern in [
        r"CPU: .+ \(family \d+ model \d+ stepping \d+\)",
        r"Memory: \d+ MiB total, \d+ MiB free",
        r"TSC: \d+ MHz",
    ] {
        failures.soft(machine.check(Pattern::regex(pattern).is_match(&info), || {
            format!("`info` has no line like /{pattern}/:\n{info}")
        }))?;
    }
    failures.soft(machine.check(line_starting("Command line:").is_some(), || {
        format!("`info` has no \"Command line:\":\n{info}")
    }))?;
    let total = number_after(&info, "Memory: ").unwrap_or(0);
    let free = number_after(&info, "MiB total, ").unwrap_or(u64::MAX);
    let configured = u64::from(machine.config().memory_mib);
    failures.soft(machine.check(total <= configured && total >= configured / 2 && free <= total, || {
        format!("`info` memory numbers implausible for a {configured} MiB machine (total {total}, free {free}):\n{info}")
    }))
}

fn check_cpus(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let table = machine.run_command("cpus")?;
    let cpus = machine.config().cpus as usize;
    failures.soft(machine.check(
        Pattern::regex(r"CPU\s+APIC\s+STATE\s+TICKS").is_match(&table),
        || format!("`cpus` has no \"CPU  APIC  STATE    TICKS\" header:\n{table}"),
    ))?;
    // Rows look like "  0     0  online   1234 ..."; the summary line ("2 CPUs, 2 online")
    // does not start with a number.
    let online = lines(&table)
        .filter(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            words.len() >= 3 && words[0].parse::<u32>().is_ok() && words[2] == "online"
        })
        .count();
    failures.soft(machine.check(online == cpus, || {
        format!("`cpus` shows {online} online rows, expected {cpus}:\n{table}")
    }))
}

fn check_help(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let help = machine.run_command("help")?;
    for command in COMMANDS {
        failures.soft(machine.check(
            lines(&help).any(|line| line.split_whitespace().next() == Some(command)),
            || format!("`help` has no line for {command:?}:\n{help}"),
        ))?;
    }
    Ok(())
}

/// `version` prints exactly one "Basalt <crate version> (commit ..., <profile>)" line.
fn check_version(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let version = machine.run_command("version")?;
    let expected = format!(
        r"^Basalt {} \(commit [^,]+, \w+\)$",
        env!("CARGO_PKG_VERSION").replace('.', r"\.")
    );
    let text = format!("{}\n", version.trim());
    failures.soft(machine.check(
        Pattern::regex(&expected).is_match(&text) && lines(&version).count() == 1,
        || format!("`version` printed {version:?}, expected one line like /{expected}/"),
    ))
}

fn check_dmesg(machine: &mut Machine, boot_log: &str, failures: &mut Failures) -> Result<()> {
    let dmesg = machine.run_command("dmesg")?;
    let count = lines(&dmesg).count();
    failures.soft(machine.check(count >= 3 && dmesg.contains("Basalt") && !dmesg.contains("error:"), || {
        format!("`dmesg` should show the boot log (≥ 3 lines, the \"Basalt\" line), got {count} lines:\n{dmesg}")
    }))?;
    // dmesg shows "[     0.116259] info: <message>", the serial console "[    0.000000] <message>"
    // (timestamps and the level tag differ): compare messages of levels the console shows.
    let serial: Vec<&str> = lines(boot_log).collect();
    let shown: Vec<&str> = lines(&dmesg)
        .filter_map(|line| line.split_once("] ").map(|(_, message)| message))
        .filter(|message| !message.starts_with("debug: ") && !message.starts_with("trace: "))
        .map(|message| message.strip_prefix("info: ").unwrap_or(message))
        .collect();
    let on_serial = shown
        .iter()
        .filter(|message| serial.iter().any(|line| line.ends_with(*message)))
        .count();
    failures.soft(machine.check(!shown.is_empty() && on_serial == shown.len(), || {
        format!(
            "only {on_serial} of {} info-or-higher `dmesg` messages also appeared on the serial console during boot:\n{dmesg}",
            shown.len()
        )
    }))
}

fn check_simple(machine: &mut Machine, command: &str, failures: &mut Failures) -> Result<()> {
    let output = machine.run_command(command)?;
    failures.soft(machine.check(
        !output.trim().is_empty()
            && output.chars().any(|c| c.is_ascii_digit())
            && !output.contains("error:"),
        || format!("`{command}` printed no numbers or an error:\n{output}"),
    ))
}

fn check_errors(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let output = machine.run_command("frobnicate")?;
    failures.soft(machine.check(
        output.trim() == "error: unknown command 'frobnicate'; type 'help' for a list",
        || format!("unknown command gave {output:?}"),
    ))?;
    let output = machine.run_command("dmesg -n notanumber")?;
    let mut output_lines = lines(&output);
    failures.soft(machine.check(
        output_lines.next().is_some_and(|line| line.starts_with("error:"))
            && output_lines.any(|line| line.starts_with("usage:") && line.contains("dmesg")),
        || format!("`dmesg -n notanumber` should print \"error: ...\" then \"usage: dmesg ...\", got:\n{output}"),
    ))?;
    let output = machine.run_command("help nosuchcommand")?;
    failures.soft(
        machine.check(
            lines(&output)
                .next()
                .is_some_and(|line| line.starts_with("error:")),
            || format!("`help nosuchcommand` should print an error, got:\n{output}"),
        ),
    )?;
    check_version(machine, failures)
}

/// Typing junk: the shell must survive and answer `version` afterwards.
fn check_garbage(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let mut binary: Vec<u8> = (0x80..=0xffu8).collect();
    binary.extend_from_slice(&[0x00, 0x00, 0xc3, 0x28, 0xf0, 0x90, 0x80, b'x', 0x00]);
    let controls: Vec<u8> = (0x01..0x20u8)
        .filter(|byte| ![b'\r', b'\n', 0x1b].contains(byte))
        .collect();
    let long_line: Vec<u8> = (0..4096).map(|index| b'a' + (index % 26) as u8).collect();
    let escape_soup = b"\x1b[A\x1b[B\x1b[C\x1b[D\x1b[H\x1b[F\x1b[3~\x1b[1;5D\x1bOA\x1bOP\x1b[999999999999;99999999999R\x1b[24;80R\x1b]0;title\x07\x1b[200~paste\x1b[201~\x1b\x1b\x1b[\x1b[?1049h\x1bc\x1b".to_vec();
    let inputs: [(&str, Vec<u8>); 5] = [
        ("binary bytes", binary),
        ("control characters", controls),
        ("a 4 KiB line", long_line),
        ("escape soup", escape_soup),
        ("an empty line", Vec::new()),
    ];
    for (what, mut bytes) in inputs {
        machine.note(format!("garbage: {what}"));
        bytes.push(b'\r');
        machine.send_bytes(&bytes)?;
        machine
            .expect_prompt()
            .map_err(|error| error.context(format!("no prompt after {what}")))?;
        // Some inputs (Ctrl-C, Ctrl-L, LF) make the editor print extra prompts: let it settle.
        machine.wait_quiet(Duration::from_millis(700), Duration::from_secs(60))?;
        check_version(machine, failures)
            .map_err(|error| error.context(format!("`version` after {what}")))?;
    }
    Ok(())
}

/// The framebuffer mirror of the log decodes to text that also appeared on serial.
fn check_screen(machine: &mut Machine, boot_log: &str, failures: &mut Failures) -> Result<()> {
    let screen = machine.screendump()?;
    let text = screen.text();
    failures.soft(machine.check(screen.contains("Basalt"), || {
        format!(
            "the decoded screen ({}x{}) does not contain \"Basalt\":\n{text}",
            screen.width, screen.height
        )
    }))?;
    let serial: Vec<&str> = lines(boot_log).collect();
    let shared: Vec<&str> = screen
        .lines()
        .filter(|line| line.len() >= 12 && serial.contains(line))
        .collect();
    failures.soft(machine.check(!shared.is_empty(), || {
        format!("no decoded screen line equals a serial log line; decoded screen:\n{text}")
    }))?;
    machine.note(format!(
        "{} screen lines equal serial log lines",
        shared.len()
    ));
    Ok(())
}

/// `reboot` goes back through the firmware and GRUB to a second prompt.
fn check_reboot(
    machine: &mut Machine,
    first_boot_log: &str,
    failures: &mut Failures,
) -> Result<()> {
    machine.send_line("reboot")?;
    machine.expect("reboot\n", qemu_tests::COMMAND_TIMEOUT)?;
    let started = Instant::now();
    let second_boot_log = machine.expect_boot_prompt()?;
    eprintln!(
        "[{}] second prompt {:.1} s after `reboot`",
        machine.name(),
        started.elapsed().as_secs_f64()
    );
    if first_boot_log.contains("GRUB") {
        failures.soft(machine.check(second_boot_log.contains("GRUB"), || {
            "GRUB's menu did not appear after `reboot`".to_owned()
        }))?;
    }
    failures.soft(machine.check(
        lines(&second_boot_log).any(|line| line.contains("Basalt")),
        || "no \"Basalt\" log line after `reboot`".to_owned(),
    ))?;
    check_version(machine, failures)?;
    check_cpus(machine, failures)
}

/// `poweroff` ends QEMU with status 0 (ACPI S5).
fn check_poweroff(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    machine.send_line("poweroff")?;
    machine.expect("poweroff\n", qemu_tests::COMMAND_TIMEOUT)?;
    let status = machine.wait_exit(POWEROFF_TIMEOUT)?;
    let explained = machine.explain_exit(status);
    failures.soft(machine.check(machine.is_clean_exit(status), || {
        format!("`poweroff` did not power off cleanly: {explained}")
    }))
}

/// Every shell check that leaves the machine running.
fn check_shell(machine: &mut Machine, boot_log: &str, failures: &mut Failures) -> Result<()> {
    check_info(machine, failures)?;
    check_cpus(machine, failures)?;
    check_help(machine, failures)?;
    check_version(machine, failures)?;
    check_dmesg(machine, boot_log, failures)?;
    check_simple(machine, "uptime", failures)?;
    check_simple(machine, "mem", failures)?;
    check_errors(machine, failures)?;
    check_garbage(machine, failures)
}

/// Boots `config` once, runs `checks` on it, and reports every failed check at the end
/// (a broken conversation stops at once, listing the failures recorded before it).
fn run_boot_test(
    config: MachineConfig,
    name: &str,
    checks: impl FnOnce(&mut Machine, &str, &mut Failures) -> Result<()>,
) -> Result<()> {
    let (mut machine, boot_log) = boot_to_prompt(config, name)?;
    let mut failures = Failures::new();
    let outcome = checks(&mut machine, &boot_log, &mut failures);
    eprintln!(
        "[{name}] finished after {:.1} s; transcript {}",
        machine.elapsed().as_secs_f64(),
        machine.transcript_path().display()
    );
    match outcome {
        Ok(()) => failures.finish(),
        Err(error) => Err(failures.with_fatal(error)),
    }
}

#[test]
fn bios_ide() -> Result<()> {
    let config = MachineConfig::qemu(Firmware::Bios, Medium::IdeDisk);
    run_boot_test(config, "bios_ide", |machine, boot_log, failures| {
        check_boot_log(machine, boot_log, failures)?;
        check_screen(machine, boot_log, failures)?;
        check_shell(machine, boot_log, failures)?;
        check_poweroff(machine, failures)
    })
}

#[test]
fn bios_usb_xhci() -> Result<()> {
    let config = MachineConfig::qemu(Firmware::Bios, Medium::UsbStick).allow_reset(true);
    run_boot_test(config, "bios_usb_xhci", |machine, boot_log, failures| {
        check_boot_log(machine, boot_log, failures)?;
        check_shell(machine, boot_log, failures)?;
        check_reboot(machine, boot_log, failures)?;
        check_poweroff(machine, failures)
    })
}

#[test]
fn uefi_disk() -> Result<()> {
    let config = MachineConfig::qemu(Firmware::Uefi, Medium::IdeDisk);
    run_boot_test(config, "uefi_disk", |machine, boot_log, failures| {
        check_boot_log(machine, boot_log, failures)?;
        check_screen(machine, boot_log, failures)?;
        check_shell(machine, boot_log, failures)?;
        check_poweroff(machine, failures)
    })
}
