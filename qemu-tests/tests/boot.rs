//! The boot matrix: boot the real image once per machine and check the shell end to end.
//!
//! One test per boot-matrix entry — BIOS + IDE disk, BIOS + USB stick on xHCI, UEFI +
//! disk, and BIOS + CD-ROM booting GRUB's recovery entry. Each boots ONCE (TCG boots
//! are the expensive part) and then runs every check on that boot: the prompt, `info`,
//! `cpus`, `help`, `version`, `dmesg`, `uptime`, `mem`, error handling for unknown
//! commands, bad arguments and garbage input, the framebuffer log (decoded from a screen
//! dump), `reboot` (on the USB machine), the exception report of `fault 1 pf` (on the
//! IDE machine, last, since it takes CPU 1 away) and finally `poweroff`, which must make
//! QEMU exit with status 0 (ACPI S5; status 1 would mean the isa-debug-exit fallback
//! fired). The recovery machine checks what its entry changes: command line, debug log
//! on serial, one CPU online, nothing drawn on the screen.
//!
//! A CPU exception report ("*** HYPERVISOR EXCEPTION") fails any wait at once, like a
//! panic, except while `check_fault` waits for the one it provoked.
//!
//! The tests need build/basalt.img and fail — never skip — without it. Transcripts of
//! every run are in build/qemu-tests/<test>.serial.log.

use std::time::{Duration, Instant};

use qemu_tests::{Failures, Firmware, Machine, MachineConfig, Medium, Pattern, Result};

/// Every command the shell's tables must list in `help` (the built-ins, then the
/// appliance's diagnostic `fault`).
const COMMANDS: [&str; 10] =
    ["help", "version", "info", "dmesg", "cpus", "mem", "uptime", "reboot", "poweroff", "fault"];

/// How long QEMU may take to exit after `poweroff`.
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(120);

/// Boots `config` and waits for the first prompt; returns the machine and the boot log.
fn boot_to_prompt(config: MachineConfig, name: &str) -> Result<(Machine, String)> {
    let mut machine = Machine::boot(config, name)?;
    let boot_log = machine.expect_boot_prompt()?;
    eprintln!("[{name}] first prompt after {:.1} s", machine.elapsed().as_secs_f64());
    Ok((machine, boot_log))
}

fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(str::trim).filter(|line| !line.is_empty())
}

/// The boot log shows the hypervisor's first line and (per the contract) GRUB's menu.
fn check_boot_log(machine: &Machine, boot_log: &str, failures: &mut Failures) -> Result<()> {
    failures.soft(
        machine.check(boot_log.contains("GRUB"), || "GRUB's menu never appeared on the serial line".to_owned()),
    )?;
    failures.soft(machine.check(lines(boot_log).any(|line| line.contains("Basalt")), || {
        "no hypervisor log line containing \"Basalt\" before the first prompt".to_owned()
    }))?;
    failures.soft(machine.check(machine.queries_answered() > 0, || {
        "the shell sent no cursor-position query (ESC [6n) before its prompt".to_owned()
    }))
}

/// The number after `label` in `text` (e.g. "Memory: " → 511).
fn number_after(text: &str, label: &str) -> Option<u64> {
    let start = text.find(label)? + label.len();
    let digits: String = text[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn check_info(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let cpus = machine.config().cpus;
    check_info_online(machine, cpus, failures).map(drop)
}

/// `info` with `online` of the machine's CPUs online (fewer after `maxcpus=` or `fault`).
fn check_info_online(machine: &mut Machine, online: u32, failures: &mut Failures) -> Result<String> {
    let info = machine.run_command("info")?;
    let cpus = machine.config().cpus;
    let line_starting = |prefix: &str| lines(&info).find(|line| line.starts_with(prefix)).map(str::to_owned);
    failures.soft(machine.check(info.contains(&format!("CPUs: {cpus} found, {online} online")), || {
        format!("`info` does not say \"CPUs: {cpus} found, {online} online\":\n{info}")
    }))?;
    let virtualization = line_starting("Virtualization:").unwrap_or_default();
    for feature in ["SVM", "NPT"] {
        failures.soft(machine.check(virtualization.split_whitespace().any(|word| word == feature), || {
            format!("`info` does not list {feature} under Virtualization:\n{info}")
        }))?;
    }
    if let Some(missing) = line_starting("Missing:") {
        failures.soft(machine.check(!missing.split_whitespace().any(|word| word == "SVM" || word == "NPT"), || {
            format!("`info` lists SVM or NPT as missing:\n{info}")
        }))?;
    }
    let firmware = machine.config().emulator.firmware().shell_name();
    failures.soft(machine.check(line_starting("Firmware:").is_some_and(|line| line.ends_with(firmware)), || {
        format!("`info` does not say \"Firmware: {firmware}\":\n{info}")
    }))?;
    for pattern in
        [r"CPU: .+ \(family \d+ model \d+ stepping \d+\)", r"Memory: \d+ MiB total, \d+ MiB free", r"TSC: \d+ MHz"]
    {
        failures.soft(machine.check(Pattern::regex(pattern).is_match(&info), || {
            format!("`info` has no line like /{pattern}/:\n{info}")
        }))?;
    }
    failures.soft(
        machine.check(line_starting("Command line:").is_some(), || format!("`info` has no \"Command line:\":\n{info}")),
    )?;
    let total = number_after(&info, "Memory: ").unwrap_or(0);
    let free = number_after(&info, "MiB total, ").unwrap_or(u64::MAX);
    let configured = u64::from(machine.config().memory_mib);
    failures.soft(machine.check(total <= configured && total >= configured / 2 && free <= total, || {
        format!(
            "`info` memory numbers implausible for a {configured} MiB machine (total {total}, free {free}):\n{info}"
        )
    }))?;
    Ok(info)
}

fn check_cpus(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let cpus = machine.config().cpus;
    check_cpus_online(machine, &(0..cpus).collect::<Vec<_>>(), failures).map(drop)
}

/// The STATE column of each `cpus` row, by CPU index. Rows look like
/// "  0     0  online   1234   bootstrap"; the summary ("2 CPUs, 2 online") does not
/// start with a number.
fn cpu_states(table: &str) -> Vec<(u32, String)> {
    lines(table)
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words[..] {
                [index, _apic, state, ..] => Some((index.parse().ok()?, state.to_owned())),
                _ => None,
            }
        })
        .collect()
}

/// (CPU index, timer ticks) from each row of a `cpus` table.
fn cpu_ticks(table: &str) -> Vec<(u32, u64)> {
    lines(table)
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words[..] {
                [index, _apic, _state, ticks, ..] => Some((index.parse().ok()?, ticks.parse().ok()?)),
                _ => None,
            }
        })
        .collect()
}

/// Every CPU's local APIC timer runs: each CPU's tick count grows between two `cpus`
/// a second apart, by about 100 Hz (at least 20 ticks, allowing a slow, loaded
/// emulator).
fn check_timers(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let before = cpu_ticks(&machine.run_command("cpus")?);
    std::thread::sleep(Duration::from_secs(2));
    let after = cpu_ticks(&machine.run_command("cpus")?);
    failures.soft(
        machine.check(before.len() == machine.config().cpus as usize && before.len() == after.len(), || {
            format!("`cpus` rows: {before:?} then {after:?}")
        }),
    )?;
    for ((cpu, first), (_, second)) in before.iter().zip(&after) {
        failures.soft(machine.check(second.saturating_sub(*first) >= 20, || {
            format!("CPU {cpu}'s timer ticks went from {first} to {second} in 2 s: its local APIC timer is not running")
        }))?;
    }
    Ok(())
}

/// `cpus` has its header and exactly the CPUs `online` in "online" rows; returns the
/// table.
fn check_cpus_online(machine: &mut Machine, online: &[u32], failures: &mut Failures) -> Result<String> {
    let table = machine.run_command("cpus")?;
    failures.soft(machine.check(Pattern::regex(r"CPU\s+APIC\s+STATE\s+TICKS").is_match(&table), || {
        format!("`cpus` has no \"CPU  APIC  STATE    TICKS\" header:\n{table}")
    }))?;
    let shown: Vec<u32> =
        cpu_states(&table).into_iter().filter(|(_, state)| state == "online").map(|(index, _)| index).collect();
    failures.soft(
        machine.check(shown == online, || format!("`cpus` shows CPUs {shown:?} online, expected {online:?}:\n{table}")),
    )?;
    let summary = format!("CPUs, {} online", online.len());
    failures
        .soft(machine.check(table.contains(&summary), || {
            format!("`cpus` has no summary line ending \"{summary}\":\n{table}")
        }))?;
    Ok(table)
}

fn check_help(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let help = machine.run_command("help")?;
    for command in COMMANDS {
        failures.soft(
            machine.check(lines(&help).any(|line| line.split_whitespace().next() == Some(command)), || {
                format!("`help` has no line for {command:?}:\n{help}")
            }),
        )?;
    }
    Ok(())
}

/// `version` prints exactly one "Basalt <crate version> (commit ..., <profile>)" line.
fn check_version(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let version = machine.run_command("version")?;
    let expected = format!(r"^Basalt {} \(commit [^,]+, \w+\)$", env!("CARGO_PKG_VERSION").replace('.', r"\."));
    let text = format!("{}\n", version.trim());
    failures.soft(machine.check(Pattern::regex(&expected).is_match(&text) && lines(&version).count() == 1, || {
        format!("`version` printed {version:?}, expected one line like /{expected}/")
    }))
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
    let on_serial = shown.iter().filter(|message| serial.iter().any(|line| line.ends_with(*message))).count();
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
        !output.trim().is_empty() && output.chars().any(|c| c.is_ascii_digit()) && !output.contains("error:"),
        || format!("`{command}` printed no numbers or an error:\n{output}"),
    ))
}

fn check_errors(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let output = machine.run_command("frobnicate")?;
    failures.soft(
        machine.check(output.trim() == "error: unknown command 'frobnicate'; type 'help' for a list", || {
            format!("unknown command gave {output:?}")
        }),
    )?;
    let output = machine.run_command("dmesg -n notanumber")?;
    let mut output_lines = lines(&output);
    failures.soft(machine.check(
        output_lines.next().is_some_and(|line| line.starts_with("error:"))
            && output_lines.any(|line| line.starts_with("usage:") && line.contains("dmesg")),
        || format!("`dmesg -n notanumber` should print \"error: ...\" then \"usage: dmesg ...\", got:\n{output}"),
    ))?;
    let output = machine.run_command("help nosuchcommand")?;
    failures.soft(machine.check(lines(&output).next().is_some_and(|line| line.starts_with("error:")), || {
        format!("`help nosuchcommand` should print an error, got:\n{output}")
    }))?;
    check_version(machine, failures)
}

/// Typing junk: the shell must survive and answer `version` afterwards.
fn check_garbage(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let mut binary: Vec<u8> = (0x80..=0xffu8).collect();
    binary.extend_from_slice(&[0x00, 0x00, 0xc3, 0x28, 0xf0, 0x90, 0x80, b'x', 0x00]);
    let controls: Vec<u8> = (0x01..0x20u8).filter(|byte| ![b'\r', b'\n', 0x1b].contains(byte)).collect();
    let long_line: Vec<u8> = (0..4096).map(|index| b'a' + (index % 26) as u8).collect();
    let escape_soup = b"\x1b[A\x1b[B\x1b[C\x1b[D\x1b[H\x1b[F\x1b[3~\x1b[1;5D\x1bOA\x1bOP\x1b[999999999999;99999999999R\x1b[24;80R\x1b]0;title\x07\x1b[200~paste\x1b[201~\x1b\x1b\x1b[\x1b[?1049h\x1bc\x1b".to_vec();
    // A flood: 32 KiB of pseudo-random bytes (xorshift) sent in one write, far more
    // than the UART FIFO and the receive ring hold.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let flood: Vec<u8> = (0..32 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let inputs: [(&str, Vec<u8>); 6] = [
        ("binary bytes", binary),
        ("a 32 KiB flood of random bytes", flood),
        ("control characters", controls),
        ("a 4 KiB line", long_line),
        ("escape soup", escape_soup),
        ("an empty line", Vec::new()),
    ];
    for (what, mut bytes) in inputs {
        machine.note(format!("garbage: {what}"));
        bytes.push(b'\r');
        machine.send_bytes(&bytes)?;
        machine.expect_prompt().map_err(|error| error.context(format!("no prompt after {what}")))?;
        // Some inputs (Ctrl-C, Ctrl-L, LF) make the editor print extra prompts: let it settle.
        machine.wait_quiet(Duration::from_millis(700), Duration::from_secs(60))?;
        check_version(machine, failures).map_err(|error| error.context(format!("`version` after {what}")))?;
    }
    Ok(())
}

/// The framebuffer mirror of the log decodes to text that also appeared on serial.
fn check_screen(machine: &mut Machine, boot_log: &str, failures: &mut Failures) -> Result<()> {
    let screen = machine.screendump()?;
    let text = screen.text();
    failures.soft(machine.check(screen.contains("Basalt"), || {
        format!("the decoded screen ({}x{}) does not contain \"Basalt\":\n{text}", screen.width, screen.height)
    }))?;
    let serial: Vec<&str> = lines(boot_log).collect();
    let shared: Vec<&str> = screen.lines().filter(|line| line.len() >= 12 && serial.contains(line)).collect();
    failures.soft(machine.check(!shared.is_empty(), || {
        format!("no decoded screen line equals a serial log line; decoded screen:\n{text}")
    }))?;
    machine.note(format!("{} screen lines equal serial log lines", shared.len()));
    Ok(())
}

/// `reboot` goes back through the firmware and GRUB to a second prompt.
fn check_reboot(machine: &mut Machine, first_boot_log: &str, failures: &mut Failures) -> Result<()> {
    machine.send_line("reboot")?;
    machine.expect("reboot\n", qemu_tests::COMMAND_TIMEOUT)?;
    let started = Instant::now();
    let second_boot_log = machine.expect_boot_prompt()?;
    eprintln!("[{}] second prompt {:.1} s after `reboot`", machine.name(), started.elapsed().as_secs_f64());
    if first_boot_log.contains("GRUB") {
        failures.soft(
            machine.check(second_boot_log.contains("GRUB"), || "GRUB's menu did not appear after `reboot`".to_owned()),
        )?;
    }
    failures.soft(machine.check(lines(&second_boot_log).any(|line| line.contains("Basalt")), || {
        "no \"Basalt\" log line after `reboot`".to_owned()
    }))?;
    check_version(machine, failures)?;
    check_cpus(machine, failures)
}

/// Recognizes one line of output.
type LineTest<'a> = Box<dyn Fn(&str) -> bool + 'a>;

/// The CPU `fault` is pointed at: an application processor, so CPU 0 keeps the shell.
const FAULT_CPU: u32 = 1;

/// The address the kernel's deliberate #PF reads (nothing maps it).
const FAULT_ADDRESS: &str = "0xffff9000dead0000";

/// Sends `fault CPU KIND` and reads CPU `cpu`'s exception report up to its "halted"
/// line. CPU 0 answers "fault requested on CPU N" and a prompt while the faulting CPU
/// writes its report (in one piece), so the prompt may come before or after it: read up
/// to the report's last line, let the line go quiet, and only then talk to the shell
/// again. Returns the report and what followed it.
fn raise_fault(machine: &mut Machine, cpu: u32, kind: &str) -> Result<(String, String)> {
    machine.skip_pending_output();
    let command = format!("fault {cpu} {kind}");
    machine.send_line(&command)?;
    machine.expect(format!("{command}\n"), qemu_tests::COMMAND_TIMEOUT)?;
    let halted = format!("*** CPU {cpu} halted\n");
    let report = machine
        .expect_allowing(halted.as_str(), qemu_tests::COMMAND_TIMEOUT, &[qemu_tests::EXCEPTION_MARKER])
        .map_err(|error| error.context(format!("exception report after `{command}`")))?;
    machine.wait_quiet(Duration::from_millis(1500), Duration::from_secs(60))?;
    let after_report = machine.take_pending_output();
    machine.note("exception report complete");
    Ok((report, after_report))
}

/// Records a failure unless `report` has a line matching each of `expected`, in order.
fn check_report_order(
    machine: &Machine,
    command: &str,
    report: &str,
    expected: &[(&str, LineTest)],
    failures: &mut Failures,
) -> Result<()> {
    let report_lines: Vec<&str> = lines(report).collect();
    let mut position = 0;
    for (what, is_line) in expected {
        match report_lines[position..].iter().position(|line| is_line(line)) {
            Some(offset) => position += offset + 1,
            None => {
                let order: Vec<&str> = expected.iter().map(|(what, _)| *what).collect();
                return failures.soft(machine.check(false, || {
                    format!("the report after `{command}` lacks {what} (expected in order: {order:?}):\n{report}")
                }));
            }
        }
    }
    Ok(())
}

/// `fault 1 pf`: CPU 1 takes a page fault and prints the exception report — banner, CR2,
/// registers, a symbolized backtrace through `raise_requested_fault`, "halted" — in that
/// order; then CPU 1 is offline, the shell on CPU 0 still works, and `fault` rejects a
/// missing CPU, an offline CPU and an unknown kind. Run it last before `poweroff`:
/// it takes a CPU away.
fn check_fault(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let cpu = FAULT_CPU;
    let command = format!("fault {cpu} pf");
    let (report, after_report) = raise_fault(machine, cpu, "pf")?;
    let halted = format!("*** CPU {cpu} halted");
    let banner = format!("*** HYPERVISOR EXCEPTION on CPU {cpu}: vector 14 #PF page fault, error code 0x0");
    let cr2 = format!("*** faulting address (CR2) {FAULT_ADDRESS}");
    let frame = Pattern::regex(r"^#\d+\s+0x[0-9a-f]+ .*raise_requested_fault");
    let expected: [(&str, LineTest); 6] = [
        ("the exception banner", Box::new(|line: &str| line == banner)),
        ("the CR2 line", Box::new(|line: &str| line == cr2)),
        ("the register dump (\"RIP 0x...\")", Box::new(|line: &str| line.starts_with("RIP 0x"))),
        ("\"backtrace:\"", Box::new(|line: &str| line == "backtrace:")),
        ("a frame in raise_requested_fault", Box::new(|line: &str| frame.is_match(line))),
        ("the halt line", Box::new(|line: &str| line == halted)),
    ];
    check_report_order(machine, &command, &report, &expected, failures)?;
    failures.soft(
        machine.check(format!("{report}{after_report}").contains(&format!("fault requested on CPU {cpu}\n")), || {
            format!("`{command}` did not answer \"fault requested on CPU {cpu}\":\n{report}{after_report}")
        }),
    )?;

    // CPU 1 is gone; CPU 0 still runs the shell.
    let table = check_cpus_online(machine, &[0], failures)?;
    let state = cpu_states(&table).into_iter().find(|(index, _)| *index == cpu).map(|(_, state)| state);
    failures.soft(machine.check(state.as_deref() == Some("offline"), || {
        format!("`cpus` should show CPU {cpu} \"offline\" after its exception, shows {state:?}:\n{table}")
    }))?;
    check_info_online(machine, machine.config().cpus - 1, failures)?;
    check_version(machine, failures)?;

    // Refusals. Never `fault 0 <valid kind>`: CPU 0 runs the shell.
    let missing = machine.config().cpus + 7;
    let output = machine.run_command(&format!("fault {missing} ud"))?;
    failures.soft(machine.check(output.trim() == format!("error: no CPU {missing}"), || {
        format!("`fault {missing} ud` should print \"error: no CPU {missing}\", printed:\n{output}")
    }))?;
    let output = machine.run_command(&format!("fault {cpu} ud"))?;
    let output_lines: Vec<&str> = lines(&output).collect();
    failures.soft(machine.check(
        matches!(output_lines[..], [line] if line.starts_with("error:") && line.contains(&format!("CPU {cpu} ")) && line.contains("not online")),
        || format!("`fault {cpu} ud` on the halted CPU should print one \"error: CPU {cpu} is not online\" line, printed:\n{output}"),
    ))?;
    let output = machine.run_command("fault 0 xx")?;
    let output_lines: Vec<&str> = lines(&output).collect();
    let expected = ["error: unknown fault kind 'xx'", "usage: fault CPU ud|pf|gp|so"];
    failures
        .soft(machine.check(output_lines == expected, || {
            format!("`fault 0 xx` should print {expected:?}, printed:\n{output}")
        }))?;
    check_version(machine, failures)
}

/// `fault 1 so`: CPU 1 recurses into the guard page under its stack; the page fault
/// cannot be delivered on the exhausted stack, so the CPU takes a double fault on its
/// own interrupt stack and prints a report that says so, with the recursion folded into
/// one repeated frame. Then CPU 1 is offline and the shell on CPU 0 still works.
fn check_stack_overflow(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let cpu = FAULT_CPU;
    let (report, _) = raise_fault(machine, cpu, "so")?;
    let halted = format!("*** CPU {cpu} halted");
    let banner = format!("*** HYPERVISOR EXCEPTION on CPU {cpu}: vector 8 #DF double fault, error code 0x0");
    let frame = Pattern::regex(r"^#\d+\s+0x[0-9a-f]+ .*recurse_until_the_stack_ends");
    let expected: [(&str, LineTest); 6] = [
        ("the double-fault banner", Box::new(|line: &str| line == banner)),
        (
            "the stack-overflow line",
            Box::new(|line: &str| line.starts_with("*** stack overflow: RSP is in the guard page")),
        ),
        ("\"backtrace:\"", Box::new(|line: &str| line == "backtrace:")),
        ("a recursion frame", Box::new(|line: &str| frame.is_match(line))),
        ("the folded repeats", Box::new(|line: &str| line.starts_with("... the frame above repeats"))),
        ("the halt line", Box::new(|line: &str| line == halted)),
    ];
    check_report_order(machine, &format!("fault {cpu} so"), &report, &expected, failures)?;
    check_info_online(machine, machine.config().cpus - 1, failures)?;
    check_version(machine, failures)
}

/// GRUB's second menu entry.
const RECOVERY_ENTRY: &str = "Basalt (recovery: serial console only, verbose log, one CPU)";

/// Boots `config` and picks GRUB's recovery entry over the serial line: waits for the
/// menu, presses down-arrow (`ESC [ B`), waits for GRUB to highlight the entry (`*`
/// before it) and presses Enter. Returns the machine and everything printed up to the
/// first prompt.
fn boot_recovery_to_prompt(config: MachineConfig, name: &str) -> Result<(Machine, String)> {
    let mut machine = Machine::boot(config, name)?;
    let boot_timeout = machine.config().boot_timeout;
    // GRUB's timeout is 3 s from here: the harness answers within milliseconds.
    let mut boot_log =
        machine.expect("Use the ^ and v keys", boot_timeout).map_err(|error| error.context("GRUB's menu"))?;
    machine.send_bytes(b"\x1b[B")?;
    boot_log += &machine
        .expect(format!("*{RECOVERY_ENTRY}"), qemu_tests::COMMAND_TIMEOUT)
        .map_err(|error| error.context("GRUB highlighting the recovery entry after down-arrow"))?;
    machine.send_bytes(b"\r")?;
    boot_log += &machine.expect_boot_prompt()?;
    eprintln!("[{name}] first prompt after {:.1} s", machine.elapsed().as_secs_f64());
    Ok((machine, boot_log))
}

/// The recovery entry's command-line options.
const RECOVERY_OPTIONS: [&str; 3] = ["console=com1", "maxcpus=1", "loglvl=debug"];

/// The recovery boot: its command line, debug-level log lines on serial, one CPU
/// online, and nothing from the hypervisor on the screen (console=com1).
fn check_recovery(machine: &mut Machine, boot_log: &str, failures: &mut Failures) -> Result<()> {
    let logged_command_line =
        lines(boot_log).find(|line| line.contains("command line: ")).unwrap_or_default().to_owned();
    for option in RECOVERY_OPTIONS {
        failures.soft(machine.check(logged_command_line.split_whitespace().any(|word| word == option), || {
            format!("the boot log's command line lacks {option:?}: {logged_command_line:?}")
        }))?;
    }
    // Debug messages of image/src/boot.rs: one "memory: 0x...-0x... KIND" per region of
    // the firmware's memory map (info level only prints "memory: N MiB usable").
    let regions = lines(boot_log)
        .filter(|line| Pattern::regex(r"^\[\s*\d+\.\d+\] memory: 0x[0-9a-f]+-0x[0-9a-f]+ ").is_match(line))
        .count();
    failures.soft(machine.check(regions >= 2, || {
        format!("loglvl=debug: expected debug \"memory: 0x...-0x... KIND\" region lines on serial during boot, found {regions}")
    }))?;

    let info = check_info_online(machine, 1, failures)?;
    let command_line = lines(&info).find_map(|line| line.strip_prefix("Command line:")).unwrap_or_default().to_owned();
    for option in RECOVERY_OPTIONS {
        failures.soft(machine.check(command_line.split_whitespace().any(|word| word == option), || {
            format!("`info`'s command line lacks {option:?}:\n{info}")
        }))?;
    }
    check_cpus_online(machine, &[0], failures)?;
    check_version(machine, failures)?;

    // console=com1: the hypervisor never draws on the framebuffer.
    let screen = machine.screendump()?;
    let banner = format!("Basalt {} hypervisor", env!("CARGO_PKG_VERSION"));
    let text = screen.text();
    failures.soft(machine.check(!screen.contains(&banner), || {
        format!("console=com1, yet the decoded screen shows hypervisor log text ({banner:?}):\n{text}")
    }))?;
    let logged =
        screen.lines().filter(|line| line.len() >= 12 && lines(boot_log).any(|serial| serial.ends_with(line))).count();
    failures.soft(machine.check(logged == 0, || {
        format!("console=com1, yet {logged} decoded screen lines equal serial log lines:\n{text}")
    }))
}

/// `poweroff` ends QEMU with status 0 (ACPI S5).
fn check_poweroff(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    machine.send_line("poweroff")?;
    machine.expect("poweroff\n", qemu_tests::COMMAND_TIMEOUT)?;
    let status = machine.wait_exit(POWEROFF_TIMEOUT)?;
    let explained = machine.explain_exit(status);
    failures.soft(
        machine.check(machine.is_clean_exit(status), || format!("`poweroff` did not power off cleanly: {explained}")),
    )
}

/// Every shell check that leaves the machine running.
fn check_shell(machine: &mut Machine, boot_log: &str, failures: &mut Failures) -> Result<()> {
    check_info(machine, failures)?;
    check_cpus(machine, failures)?;
    check_timers(machine, failures)?;
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
    finish_boot_test(&machine, outcome, failures)
}

/// Reports a boot test: every failed check, plus the error that stopped it, if any.
fn finish_boot_test(machine: &Machine, outcome: Result<()>, failures: Failures) -> Result<()> {
    eprintln!(
        "[{}] finished after {:.1} s; transcript {}",
        machine.name(),
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
        check_fault(machine, failures)?;
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
        check_stack_overflow(machine, failures)?;
        check_poweroff(machine, failures)
    })
}

#[test]
fn bios_cdrom_recovery() -> Result<()> {
    let config = MachineConfig::qemu(Firmware::Bios, Medium::Cdrom);
    let name = "bios_cdrom_recovery";
    let (mut machine, boot_log) = boot_recovery_to_prompt(config, name)?;
    let mut failures = Failures::new();
    let outcome = (|| {
        check_boot_log(&machine, &boot_log, &mut failures)?;
        check_recovery(&mut machine, &boot_log, &mut failures)?;
        check_poweroff(&mut machine, &mut failures)
    })();
    finish_boot_test(&machine, outcome, failures)
}
