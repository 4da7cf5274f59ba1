//! The Linux tests: Debian 12's cloud kernel, exactly as shipped, boots as a PVH domU
//! on `build/basalt-test.img` to a busybox shell, and is driven through `console`.
//!
//! The payload (`make guest-linux`, guest-payload/): the bzImage as module `vmlinuz`,
//! a busybox initramfs as module `initramfs`, configs `linux.cfg` (2 vCPUs, 256 MiB)
//! and `linux1.cfg` (1 vCPU). Its init prints `BASALT-LINUX-READY` on the console, then
//! a login shell with the prompt `linux# ` runs there (hvc0); `poweroff` and `reboot`
//! typed at it end or restart the domain (on_poweroff "destroy", on_reboot "restart").
//!
//! Two tests, each one boot with every check on it:
//! - `linux_boots_to_a_shell` (QEMU TCG, AMD SVM + NPT, 2 CPUs, 2 GiB): `create linux`,
//!   the marker and the prompt on its console; `uname -r` is Debian's 6.1.0-N-cloud-amd64,
//!   `/sys/hypervisor/type` says xen, `nproc` says 2, `/proc/interrupts` has Linux's
//!   event-channel interrupts (irq chips "xen-percpu" / "xen-dyn", named in Linux's
//!   drivers/xen/events/events_base.c); Ctrl-] returns to the shell. Then linux1 beside
//!   it: what is typed in one console shows in that one only (and not in the other's
//!   replay). linux1's `poweroff` destroys it; linux's `reboot` restarts it as a new
//!   domain of the same name that boots to the marker again; after destroying
//!   everything `mem`'s `Free:` is exactly what it was before the first create.
//! - `linux_boots_on_vmx` (Bochs, Intel VMX + EPT, Haswell, 1 CPU): `create linux1`,
//!   the marker and the prompt, `/sys/hypervisor/type` says xen. Bochs interprets every
//!   instruction (~100 MIPS): ≈ 75 s in all, of which create to shell ≈ 49 s.
//!
//! Reading the Linux shell: busybox's line editor asks the terminal for the cursor
//! position after each prompt (`ESC [6n`), and the harness answers like a terminal whose
//! cursor is in column 80 (the answer the hypervisor's own shell needs). ash then
//! believes its line is full and wraps the echo of a typed command early (`u`,
//! newline, `name -r`). So a command's output is not found after its echo but between
//! two marker lines the shell prints around it ([`linux_command`]).
//!
//! Failed checks are collected and reported together at the end; a broken conversation
//! (timeout, panic, the emulator exiting, a Linux panic, a crashed domain) stops the test
//! at once. Transcripts are in build/qemu-tests/<test>.serial.log.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use qemu_tests::console_text::{line_matches, output_lines, regex_escape as escape};
use qemu_tests::{EmulatorKind, Error, Failures, Machine, MachineConfig, Pattern, Result, COMMAND_TIMEOUT, PROMPT};

/// Ctrl-]: ends `console`.
const CONSOLE_ESCAPE: &[u8] = b"\x1d";
/// What the payload's init prints on the console once the system is up.
const READY_MARKER: &str = "BASALT-LINUX-READY";
/// The payload shell's prompt (PS1 in guest-payload/rootfs/etc/profile).
const LINUX_PROMPT: &str = "linux# ";
/// How long Linux may take from `create` to its shell under QEMU's TCG: the emulated
/// SVM guest runs translated code and every exit is emulated (≈ 11–17 s on the 2-core
/// build host; minutes on a loaded one).
const LINUX_BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// The same under Bochs (~100 MIPS): about 45 s on an idle 2-core host (create ≈ 7 s,
/// boot ≈ 42 s), ~4× TCG; the margin is for a host busy with other emulators.
const BOCHS_LINUX_BOOT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a command at the Linux shell may take.
const LINUX_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `poweroff` / `reboot` may take until the domain is gone (init's shutdown
/// actions, then the kernel's own shutdown path).
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(180);
/// How long to wait for the cursor-position query after a prompt before attaching to
/// a console (it normally follows within microseconds).
const PROMPT_QUERY_WAIT: Duration = Duration::from_secs(5);
/// Lines that mean the Linux guest is dead: Linux's panic, and the hypervisor's log line
/// for a crashed domain (`domain 3 (linux) crashed: ...`). An `expect` that sees one
/// fails at once rather than waiting out a boot timeout.
const LINUX_FATAL_MARKERS: [&str; 2] = ["Kernel panic - not syncing", ") crashed: "];

/// `$BASALT_TEST_IMAGE`, else `<workspace>/build/basalt-test.img`.
fn test_image() -> PathBuf {
    match std::env::var_os("BASALT_TEST_IMAGE") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => qemu_tests::config::workspace_root().join("build").join("basalt-test.img"),
    }
}

/// The machine each test boots: the test image with the Linux fatal markers.
/// QEMU: 2 CPUs, 2 GiB (two 256 MiB domains, the heap holds a 53 MB kernel while it
/// is unpacked); Bochs: 1 CPU (Bochs runs all CPUs on one host thread), 1 GiB.
fn machine_config(kind: EmulatorKind) -> MachineConfig {
    let config = match kind {
        EmulatorKind::Qemu => MachineConfig::standard(kind).with_cpus(2).with_memory_mib(2048),
        EmulatorKind::Bochs => MachineConfig::standard(kind).with_cpus(1).with_memory_mib(1024),
    };
    let mut config = config.with_image(test_image());
    config.fatal_markers.extend(LINUX_FATAL_MARKERS.iter().map(|marker| (*marker).to_owned()));
    config
}

/// Boots `kind`'s machine, runs `checks` and reports every failed check at the end.
fn run_linux_test(
    kind: EmulatorKind,
    name: &str,
    checks: impl FnOnce(&mut Machine, &mut Failures) -> Result<()>,
) -> Result<()> {
    let config = machine_config(kind);
    if !config.image.is_file() {
        return Err(Error::new(format!(
            "test image {} does not exist: run `make test-image` first (it needs the Linux payload, `make guest-linux`)",
            config.image.display()
        )));
    }
    let (mut machine, _) = Machine::boot_to_prompt(config, name)?;
    eprintln!("[{name}] first prompt after {:.1} s", machine.elapsed().as_secs_f64());
    let mut failures = Failures::new();
    let outcome = checks(&mut machine, &mut failures);
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

// --- the hypervisor's shell ----------------------------------------------------------

/// `mem`'s exact `Free: <bytes> bytes`, with the whole output (for messages).
fn free_bytes(machine: &mut Machine) -> Result<(u64, String)> {
    let output = machine.run_command("mem")?;
    let free = output_lines(&output)
        .into_iter()
        .find_map(|line| line.strip_prefix("Free: ")?.strip_suffix(" bytes")?.parse().ok());
    match free {
        Some(free) => Ok((free, output)),
        None => Err(machine.fail(format!("`mem` printed no \"Free: <bytes> bytes\" line:\n{output}"))),
    }
}

/// (name, id) of each domain row of `list`, with the table.
fn list(machine: &mut Machine) -> Result<(Vec<(String, u32)>, String)> {
    let output = machine.run_command("list")?;
    let state = Pattern::regex(r"^[r-][b-][p-][s-][c-][d-]$");
    let rows = output_lines(&output)
        .into_iter()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words[..] {
                [name, id, _memory, _vcpus, letters, _seconds] if line_matches(&state, letters) => {
                    Some((name.to_owned(), id.parse().ok()?))
                }
                _ => None,
            }
        })
        .collect();
    Ok((rows, output))
}

/// `create <config>`: one `Created domain <id> (<name>)` line; returns the id.
fn create(machine: &mut Machine, config: &str) -> Result<u32> {
    let output = machine.run_command(&format!("create {config}"))?;
    let suffix = format!(" ({config})");
    let id = match output_lines(&output)[..] {
        [line] => line.strip_prefix("Created domain ").and_then(|rest| rest.strip_suffix(&suffix)?.parse().ok()),
        _ => None,
    };
    id.ok_or_else(|| {
        machine
            .fail(format!("`create {config}` should print one \"Created domain <id> ({config})\", printed:\n{output}"))
    })
}

/// Waits for the hypervisor's log line `domain <id> (<name>) <event>...`, which may
/// already be in `seen`; returns the rest of the line after `event`.
fn await_log(machine: &mut Machine, seen: &str, (id, name): (u32, &str), event: &str) -> Result<String> {
    let prefix = format!("domain {id} ({name}) {event}");
    if let Some(rest) = seen.lines().find_map(|line| line.split_once(&prefix).map(|(_, rest)| rest.trim().to_owned())) {
        return Ok(rest);
    }
    let text = machine
        .expect(Pattern::regex(&format!("{}.*\n", escape(&prefix))), SHUTDOWN_TIMEOUT)
        .map_err(|error| error.context(format!("waiting for the log line {prefix:?}")))?;
    let line = text.lines().last().unwrap_or_default();
    Ok(line.split_once(&prefix).map(|(_, rest)| rest.trim().to_owned()).unwrap_or_default())
}

/// `destroy <id>`, then its `destroyed` log line.
fn destroy(machine: &mut Machine, (id, name): (u32, &str)) -> Result<()> {
    let output = machine.run_command(&format!("destroy {id}"))?;
    await_log(machine, &output, (id, name), "destroyed").map(drop)
}

/// Types `console <domain>` at the prompt (once the prompt's cursor-position query is
/// answered, so the answer cannot reach the guest) and waits for the banner. The
/// domain's kept output (the replay) follows.
fn attach(machine: &mut Machine, domain: &str) -> Result<()> {
    machine.wait_prompt_query(PROMPT_QUERY_WAIT);
    machine.skip_pending_output();
    machine.send_line(&format!("console {domain}"))?;
    machine
        .expect(Pattern::regex(r"Connected to domain \d+ \(.*\)\. Escape character is '\^\]'\.\n"), COMMAND_TIMEOUT)
        .map_err(|error| error.context(format!("the banner of `console {domain}`")))
        .map(drop)
}

/// Ctrl-] and the hypervisor's prompt.
fn detach(machine: &mut Machine, domain: &str) -> Result<()> {
    machine.send_bytes(CONSOLE_ESCAPE)?;
    machine
        .expect(PROMPT, COMMAND_TIMEOUT)
        .map_err(|error| error.context(format!("the prompt after Ctrl-] on {domain}")))?;
    Ok(())
}

// --- the Linux shell -----------------------------------------------------------------

/// On an attached console: waits for the ready marker and then the shell's prompt;
/// returns the time it took.
fn await_ready(machine: &mut Machine, domain: &str, timeout: Duration) -> Result<Duration> {
    let started = Instant::now();
    machine
        .expect(READY_MARKER, timeout)
        .map_err(|error| error.context(format!("Linux domain {domain} booting to {READY_MARKER}")))?;
    machine.expect(LINUX_PROMPT, LINUX_COMMAND_TIMEOUT).map_err(|error| {
        error.context(format!("the shell prompt {LINUX_PROMPT:?} of {domain} after {READY_MARKER}"))
    })?;
    Ok(started.elapsed())
}

/// Numbers the marker lines of [`linux_command`], so no two commands share one.
static COMMAND_NUMBER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// Runs `command` at the Linux shell of the attached console. Returns what came before
/// the command's output (whatever was unread: the console's replay, the echo) and the
/// output's lines without Linux's log lines. The output is framed by lines the shell
/// prints: `echo "<""<7"` prints `<<7`, which its own echo does not contain.
fn linux_command(machine: &mut Machine, command: &str) -> Result<(String, Vec<String>)> {
    let number = COMMAND_NUMBER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (begin, end) = (format!("<<{number}"), format!("{number}>>"));
    machine.send_line(&format!("echo \"<\"\"<{number}\"; {command}; echo \"{number}>\"\">\""))?;
    let context = |error: Error| error.context(format!("the Linux command {command:?}"));
    let before = machine.expect(begin.as_str(), LINUX_COMMAND_TIMEOUT).map_err(context)?;
    let output = machine.expect(end.as_str(), LINUX_COMMAND_TIMEOUT).map_err(context)?;
    machine.expect(LINUX_PROMPT, LINUX_COMMAND_TIMEOUT).map_err(context)?;
    let output = &output[..output.len() - end.len()];
    Ok((before, output_lines(output).into_iter().map(str::to_owned).collect()))
}

/// `command`'s output must be exactly one line matching `pattern`.
fn check_one_line(machine: &mut Machine, command: &str, pattern: &str, failures: &mut Failures) -> Result<()> {
    let (_, lines) = linux_command(machine, command)?;
    let pattern = Pattern::regex(pattern);
    failures.soft(machine.check(matches!(&lines[..], [line] if line_matches(&pattern, line)), || {
        format!("`{command}` in Linux should print one line matching {pattern}, printed {lines:?}")
    }))
}

// --- the tests -----------------------------------------------------------------------

/// What Linux sees of its platform: the kernel, Xen, its vCPUs, event channels.
fn check_platform(machine: &mut Machine, vcpus: u32, failures: &mut Failures) -> Result<()> {
    check_one_line(machine, "uname -r", r"^6\.1\.0-\d+-cloud-amd64$", failures)?;
    check_one_line(machine, "cat /sys/hypervisor/type", "^xen$", failures)?;
    check_one_line(machine, "nproc", &format!("^{vcpus}$"), failures)?;
    let (_, interrupts) = linux_command(machine, "cat /proc/interrupts")?;
    failures.soft(machine.check(
        interrupts.iter().any(|line| line.contains("xen-percpu") || line.contains("xen-dyn")),
        || {
            format!(
                "/proc/interrupts has no event-channel interrupt (xen-percpu / xen-dyn):\n{}",
                interrupts.join("\n")
            )
        },
    ))
}

/// Types `echo <word>-$((<sum>))` in `domain`'s console; the shell must print
/// `<word>-<result>`. Returns what the console replayed before it.
fn echo_in(
    machine: &mut Machine,
    domain: &str,
    (word, sum, result): (&str, &str, u32),
    failures: &mut Failures,
) -> Result<String> {
    attach(machine, domain)?;
    let (replay, lines) = linux_command(machine, &format!("echo {word}-$(({sum}))"))?;
    let expected = format!("{word}-{result}");
    failures.soft(machine.check(lines == [expected.clone()], || {
        format!("`echo {word}-$(({sum}))` in {domain} should print {expected:?}, printed {lines:?}")
    }))?;
    detach(machine, domain)?;
    Ok(replay)
}

/// Types `command` (poweroff or reboot) at `domain`'s shell; waits for the console to
/// end because the domain is gone, and for the hypervisor's `shut down: <reason>` line.
fn shut_down_from_inside(
    machine: &mut Machine,
    (id, domain): (u32, &str),
    command: &str,
    failures: &mut Failures,
) -> Result<String> {
    attach(machine, domain)?;
    linux_command(machine, "true")?;
    machine.send_line(command)?;
    let gone = format!("[domain {id} is gone]");
    let mut text = machine.expect(gone.as_str(), SHUTDOWN_TIMEOUT).map_err(|error| {
        error.context(format!("`{command}` typed in Linux domain {domain} ({id}): the domain should end"))
    })?;
    text += &machine.expect(PROMPT, COMMAND_TIMEOUT)?;
    let reason = await_log(machine, &text, (id, domain), "shut down:")?;
    failures.soft(machine.check(reason == command, || format!("{domain} shut down with {reason:?}, not {command}")))?;
    Ok(text)
}

/// QEMU (AMD SVM): Linux to its shell, two Linux domains at once, poweroff and reboot
/// from inside, and all memory back.
#[test]
fn linux_boots_to_a_shell() -> Result<()> {
    run_linux_test(EmulatorKind::Qemu, "linux_boots_to_a_shell", |machine, failures| {
        let (initial, initial_output) = free_bytes(machine)?;

        let created = Instant::now();
        let linux = create(machine, "linux")?;
        attach(machine, "linux")?;
        await_ready(machine, "linux", LINUX_BOOT_TIMEOUT)?;
        eprintln!("[linux_boots_to_a_shell] linux: create to shell {:.1} s", created.elapsed().as_secs_f64());
        check_platform(machine, 2, failures)?;
        detach(machine, "linux")?;

        let linux1 = create(machine, "linux1")?;
        attach(machine, "linux1")?;
        await_ready(machine, "linux1", LINUX_BOOT_TIMEOUT)?;
        detach(machine, "linux1")?;
        let (rows, table) = list(machine)?;
        failures.soft(machine.check(
            rows.contains(&("linux".to_owned(), linux)) && rows.contains(&("linux1".to_owned(), linux1)),
            || format!("`list` should show linux ({linux}) and linux1 ({linux1}):\n{table}"),
        ))?;

        // Each console is its own: what one domain printed is not in the other's replay.
        echo_in(machine, "linux1", ("one", "1+1", 2), failures)?;
        let replay = echo_in(machine, "linux", ("two", "2+2", 4), failures)?;
        failures.soft(machine.check(!replay.contains("one-2"), || {
            format!("linux's console replayed linux1's output \"one-2\":\n{replay}")
        }))?;
        let replay = echo_in(machine, "linux1", ("three", "1+2", 3), failures)?;
        failures.soft(machine.check(replay.contains("one-2") && !replay.contains("two-4"), || {
            format!("linux1's replay should have its own \"one-2\" and not linux's \"two-4\":\n{replay}")
        }))?;

        // poweroff inside linux1: on_poweroff = "destroy".
        let text = shut_down_from_inside(machine, (linux1, "linux1"), "poweroff", failures)?;
        await_log(machine, &text, (linux1, "linux1"), "destroyed")?;
        let (rows, table) = list(machine)?;
        failures.soft(machine.check(rows.iter().all(|(_, id)| *id != linux1), || {
            format!("linux1 powered off (on_poweroff = \"destroy\"), yet `list` shows it:\n{table}")
        }))?;

        // reboot inside linux: on_reboot = "restart", a new domain that boots again.
        let text = shut_down_from_inside(machine, (linux, "linux"), "reboot", failures)?;
        let rest = await_log(machine, &text, (linux, "linux"), "restarted as domain")?;
        let Ok(restarted) = rest.parse::<u32>() else {
            return Err(machine.fail(format!("bad restart log line: {rest:?}")));
        };
        attach(machine, "linux")?;
        await_ready(machine, "linux", LINUX_BOOT_TIMEOUT)?;
        check_one_line(machine, "cat /sys/hypervisor/type", "^xen$", failures)?;
        detach(machine, "linux")?;
        let (rows, table) = list(machine)?;
        failures.soft(machine.check(
            rows.iter().filter(|(name, _)| name.starts_with("linux")).cloned().collect::<Vec<_>>()
                == [("linux".to_owned(), restarted)],
            || format!("after its reboot, linux should be domain {restarted} (was {linux}), alone:\n{table}"),
        ))?;

        check_flood_and_shutdown(machine, restarted, failures)?;
        let (free, output) = free_bytes(machine)?;
        if free == initial {
            return Ok(());
        }
        // Tell a leak from a one-time allocation: one more create/boot/destroy.
        let again = create(machine, "linux1")?;
        attach(machine, "linux1")?;
        await_ready(machine, "linux1", LINUX_BOOT_TIMEOUT)?;
        detach(machine, "linux1")?;
        destroy(machine, (again, "linux1"))?;
        let (after_another, _) = free_bytes(machine)?;
        failures.soft(machine.check(false, || {
            format!(
                "after destroying every Linux domain `mem` says Free: {free} bytes, expected exactly {initial} (difference {}); one more create/boot/destroy of linux1 then changed it by {} more ({}):\nbefore:\n{initial_output}\nafter:\n{output}",
                free as i128 - initial as i128,
                after_another as i128 - free as i128,
                if after_another == free { "a one-time allocation, or held until the next domain" } else { "memory is lost per domain" },
            )
        }))
    })
}

/// A guest flooding its console does not starve the shell, xenstore names it, and
/// `shutdown` asks it through xenstore's control/shutdown: it powers off by itself
/// (on_poweroff = "destroy") while still flooding.
fn check_flood_and_shutdown(machine: &mut Machine, linux: u32, failures: &mut Failures) -> Result<()> {
    attach(machine, "linux")?;
    // Starts after the detach below, runs until the guest shuts down.
    linux_command(machine, "(sleep 5; exec yes basalt-console-flood > /dev/hvc0) > /dev/null 2>&1 & true")?;
    detach(machine, "linux")?;
    std::thread::sleep(Duration::from_secs(8));
    let started = Instant::now();
    let version = machine.run_command("version")?;
    failures.soft(machine.check(version.contains("Basalt") || version.contains("basalt"), || {
        format!(
            "`version` beside a console flood answered:
{version}"
        )
    }))?;
    let name = machine.run_command(&format!("xenstore-read /local/domain/{linux}/name"))?;
    failures.soft(machine.check(output_lines(&name).contains(&"linux"), || {
        format!(
            "xenstore-read /local/domain/{linux}/name should say linux:
{name}"
        )
    }))?;
    let feature = machine.run_command(&format!("xenstore-read /local/domain/{linux}/control/feature-poweroff"))?;
    failures.soft(machine.check(output_lines(&feature).contains(&"1"), || {
        format!(
            "Linux should have written control/feature-poweroff = 1:
{feature}"
        )
    }))?;
    eprintln!(
        "[linux_boots_to_a_shell] three shell commands beside the flood: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // The fallback stop would come after 240 s, later than await_log waits
    // (SHUTDOWN_TIMEOUT): only a guest that acted on control/shutdown passes.
    let asked = machine.run_command("shutdown -t 240 linux")?;
    failures.soft(machine.check(!asked.contains("error"), || format!("`shutdown -t 240 linux` said:\n{asked}")))?;
    let text = await_log(machine, &asked, (linux, "linux"), "shut down: ")?;
    failures.soft(machine.check(text.starts_with("poweroff"), || format!("linux shut down with {text:?}")))?;
    await_log(machine, "", (linux, "linux"), "destroyed")?;
    let (rows, table) = list(machine)?;
    failures.soft(machine.check(rows.iter().all(|(_, id)| *id != linux), || {
        format!("linux shut down (on_poweroff = \"destroy\"), yet `list` shows it:\n{table}")
    }))
}

/// Bochs (Intel VMX + EPT): linux1 boots to its shell and sees Xen.
#[test]
fn linux_boots_on_vmx() -> Result<()> {
    run_linux_test(EmulatorKind::Bochs, "linux_boots_on_vmx", |machine, failures| {
        let created = Instant::now();
        create(machine, "linux1")?;
        attach(machine, "linux1")?;
        await_ready(machine, "linux1", BOCHS_LINUX_BOOT_TIMEOUT)?;
        eprintln!("[linux_boots_on_vmx] linux1: create to shell {:.1} s", created.elapsed().as_secs_f64());
        check_one_line(machine, "cat /sys/hypervisor/type", "^xen$", failures)?;
        detach(machine, "linux1")
    })
}
