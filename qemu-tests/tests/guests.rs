//! The guest tests: boot `build/basalt-test.img` (the real image plus the test guests
//! and their configs as GRUB modules, built by `make test-image`) and drive domains from
//! the serial shell with xl's commands.
//!
//! Three machines (BIOS, IDE disk, 2 CPUs, 1 GiB), each booted ONCE with every check run
//! on that boot — TCG boots are the expensive part:
//! - `domains_and_memory`: two domains at once (hello + demo) both print and `list`
//!   shows both with the right state; a 4-vCPU guest (smp) on 2 physical CPUs runs all
//!   four vCPUs to completion; destroying everything returns `mem`'s `Free:` to exactly
//!   the value before the first `create`; 20 create/destroy cycles of hello leave
//!   `Free:` unchanged.
//! - `hostile_guests`: triplefault, badmem, hcflood and spinner are each contained while
//!   the demo guest keeps echoing console input beside them: crashed states and crash
//!   reasons, spinner and hcflood still running (their CPU time grows), hcflood's
//!   `unexpected` count stays 0, the shell keeps answering; blkhostile's good and
//!   malformed blkif requests on a RAM disk all get the right answers; and destroying
//!   them and demo returns `Free:` exactly to its value before demo was created.
//! - `lifecycle`: demo's `poweroff` with `on_poweroff = "destroy"`, `create` overrides,
//!   `pause`/`unpause`, `vcpu-pin`/`vcpu-list`, `sched-credit`, `shutdown`,
//!   `reboot DOMAIN` (`on_reboot = "restart"`), and the one-line errors of bad
//!   requests (unknown config, unknown domain, a config with a syntax error, too much
//!   memory — which must not change `Free:`).
//!
//! Hypervisor log lines (`[  12.345] domain 4 (hello) shut down: poweroff`) reach the
//! serial line asynchronously, in between the shell's own output. So after an action
//! that logs later (a guest that powers off or crashes), the test waits for that log
//! line before it types again, and table parsers skip log lines.
//!
//! Failed checks are collected and reported together at the end; a broken conversation
//! (timeout, panic, QEMU exit) stops the test at once. Transcripts are in
//! build/qemu-tests/<test>.serial.log.

use std::time::Duration;

use qemu_tests::console_text::{line_matches, output_lines};
use qemu_tests::domains::{
    attach, boot_and_check, create, detach, ensure_test_image, free_bytes, list, test_image, ListRow,
};
use qemu_tests::{
    EmulatorKind, Error, Failures, Firmware, Machine, MachineConfig, Medium, Pattern, Result, COMMAND_TIMEOUT, PROMPT,
};

/// How long a guest may take to print something or stop (TCG on a loaded host).
const GUEST_TIMEOUT: Duration = Duration::from_secs(90);
/// Create/destroy cycles of the memory check.
const CYCLES: u32 = 20;

/// Runs `checks` on a fresh boot of the test image on a 2-CPU, 1 GiB BIOS machine of
/// `kind` (QEMU: AMD SVM; Bochs: Intel VMX) and reports every failed check at the end.
fn run_guest_test(
    kind: EmulatorKind,
    name: &str,
    checks: impl FnOnce(&mut Machine, &mut Failures) -> Result<()>,
) -> Result<()> {
    let mut config = match kind {
        EmulatorKind::Qemu => MachineConfig::qemu(Firmware::Bios, Medium::IdeDisk),
        EmulatorKind::Bochs => MachineConfig::standard(EmulatorKind::Bochs),
    };
    config.image = test_image();
    config.memory_mib = 1024;
    ensure_test_image(&config.image, "or point BASALT_TEST_IMAGE at one")?;
    boot_and_check(config, name, checks)
}

// --- reading the shell's output ------------------------------------------------------

/// One row of `vcpu-list`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VcpuRow {
    domain_id: u32,
    vcpu: u32,
    cpu: String,
    state: String,
    affinity: String,
}

/// The rows of a `vcpu-list` table.
fn parse_vcpu_list(table: &str) -> Vec<VcpuRow> {
    let state = Pattern::regex(r"^[r-][b-][p-]$");
    output_lines(table)
        .into_iter()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words[..] {
                [_name, id, vcpu, cpu, letters, _seconds, affinity] if line_matches(&state, letters) => Some(VcpuRow {
                    domain_id: id.parse().ok()?,
                    vcpu: vcpu.parse().ok()?,
                    cpu: cpu.to_owned(),
                    state: letters.to_owned(),
                    affinity: affinity.to_owned(),
                }),
                _ => None,
            }
        })
        .collect()
}

/// (id, weight, cap) of each `sched-credit` row.
fn parse_sched_credit(table: &str) -> Vec<(u32, u32, u32)> {
    output_lines(table)
        .into_iter()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words[..] {
                [_name, id, weight, cap] => Some((id.parse().ok()?, weight.parse().ok()?, cap.parse().ok()?)),
                _ => None,
            }
        })
        .collect()
}

// --- shell actions -------------------------------------------------------------------

/// The `Heap: ...` line of a `mem` output, for messages.
fn heap_line(mem_output: &str) -> &str {
    output_lines(mem_output).into_iter().find(|line| line.starts_with("Heap:")).unwrap_or("(no Heap: line)")
}

/// [`qemu_tests::domains::await_log`] waiting up to [`GUEST_TIMEOUT`].
fn await_log(machine: &mut Machine, seen: &str, id: u32, name: &str, event: &str) -> Result<String> {
    qemu_tests::domains::await_log(machine, seen, (id, name), event, GUEST_TIMEOUT)
}

/// [`qemu_tests::domains::destroy`] waiting up to [`GUEST_TIMEOUT`] for the log line.
fn destroy(machine: &mut Machine, id: u32, name: &str, failures: &mut Failures) -> Result<()> {
    qemu_tests::domains::destroy(machine, (id, name), GUEST_TIMEOUT, failures)
}

/// Attaches to the console of `domain`, waits for `until` (after the banner), leaves
/// with Ctrl-] and returns everything printed from the banner to the prompt.
fn console_until(machine: &mut Machine, domain: &str, until: &Pattern) -> Result<String> {
    let banner = attach(machine, domain)?;
    let banner = banner.lines().last().unwrap_or_default().to_owned();
    let text = machine
        .expect(until.clone(), GUEST_TIMEOUT)
        .map_err(|error| error.context(format!("waiting for {until} on the console of {domain}")))?;
    let rest = detach(machine, domain)?;
    Ok(format!("{banner}\n{text}{rest}"))
}

/// Attaches to the demo guest `domain`, types `line` and waits for the guest's
/// `demo: you typed '<line>'`; leaves with Ctrl-].
fn demo_echo(machine: &mut Machine, domain: &str, line: &str) -> Result<()> {
    attach(machine, domain)?;
    machine.send_line(line)?;
    machine
        .expect(format!("demo: you typed '{line}'"), GUEST_TIMEOUT)
        .map_err(|error| error.context(format!("the demo guest {domain} echoing {line:?}")))?;
    detach(machine, domain).map(drop)
}

/// A command that must print exactly one `error:` line (log lines aside) mentioning
/// every word in `mentions`.
fn check_error(machine: &mut Machine, command: &str, mentions: &[&str], failures: &mut Failures) -> Result<String> {
    check_error_lines(machine, command, mentions, false, failures)
}

/// A command the shell rejects as misused: one `error:` line mentioning every word in
/// `mentions`, then its `usage:` line.
fn check_usage_error(machine: &mut Machine, command: &str, mentions: &[&str], failures: &mut Failures) -> Result<()> {
    check_error_lines(machine, command, mentions, true, failures).map(drop)
}

fn check_error_lines(
    machine: &mut Machine,
    command: &str,
    mentions: &[&str],
    with_usage: bool,
    failures: &mut Failures,
) -> Result<String> {
    let output = machine.run_command(command)?;
    let lines = output_lines(&output);
    let error_line = |line: &str| line.starts_with("error:") && mentions.iter().all(|word| line.contains(word));
    let verb = command.split_whitespace().next().unwrap_or_default();
    let usage_line = |line: &str| line.starts_with(&format!("usage: {verb} "));
    let expected = if with_usage { "one \"error:\" line then \"usage:\"" } else { "one \"error:\" line" };
    failures.soft(machine.check(
        match lines[..] {
            [line] => !with_usage && error_line(line),
            [line, usage] => with_usage && error_line(line) && usage_line(usage),
            _ => false,
        },
        || format!("`{command}` should print {expected} mentioning {mentions:?}, printed:\n{output}"),
    ))?;
    Ok(output)
}

/// `version` answers with its one line.
fn check_version(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let output = machine.run_command("version")?;
    let lines = output_lines(&output);
    failures.soft(machine.check(matches!(lines[..], [line] if line.starts_with("Basalt ")), || {
        format!("`version` should print one \"Basalt ...\" line, printed:\n{output}")
    }))
}

/// The row of domain `id`, or a failed check.
fn row<'a>(machine: &Machine, rows: &'a [ListRow], id: u32, table: &str) -> Result<&'a ListRow> {
    rows.iter()
        .find(|row| row.id == id)
        .ok_or_else(|| Error::assertion(format!("[{}] `list` has no row for domain {id}:\n{table}", machine.name())))
}

/// `list` shows domain `id` called `name` in `state` (one of `states`), with
/// `memory_mib` and `vcpus` online.
fn check_row(
    machine: &mut Machine,
    (rows, table): (&[ListRow], &str),
    (id, name): (u32, &str),
    states: &[&str],
    (memory_mib, vcpus): (u64, u32),
    failures: &mut Failures,
) -> Result<()> {
    let found = match row(machine, rows, id, table) {
        Ok(found) => found.clone(),
        Err(error) => return failures.soft(Err(error)),
    };
    failures.soft(machine.check(
        found.name == name
            && states.contains(&found.state.as_str())
            && found.memory_mib == memory_mib
            && found.vcpus == vcpus,
        || {
            format!(
                "`list` should show domain {id} as {name}, {memory_mib} MiB, {vcpus} vCPUs, state {}; found {found:?}:\n{table}",
                states.join(" or ")
            )
        },
    ))
}

/// `Free:` is exactly `expected`.
fn check_free(machine: &mut Machine, expected: (u64, &str), what: &str, failures: &mut Failures) -> Result<()> {
    let (free, output) = free_bytes(machine)?;
    let (expected, expected_output) = expected;
    failures.soft(machine.check(free == expected, || {
        format!(
            "{what}: `mem` says Free: {free} bytes, expected exactly {expected} (difference {} bytes; before: {:?}, now: {:?})",
            free as i128 - expected as i128,
            heap_line(expected_output),
            heap_line(&output)
        )
    }))
}

// --- domains_and_memory ----------------------------------------------------------------

/// hello (which powers off, preserved) and demo (which waits for input) exist at once;
/// both consoles show their output; `list` shows both.
fn check_two_domains(machine: &mut Machine, failures: &mut Failures) -> Result<(u32, u32)> {
    let (hello, output) = create(machine, "hello", "hello")?;
    let reason = await_log(machine, &output, hello, "hello", "shut down:")?;
    failures.soft(machine.check(reason == "poweroff", || format!("hello shut down with {reason:?}, not poweroff")))?;
    let (demo, _) = create(machine, "demo", "demo")?;

    let greeting = format!("hello from domain {hello}\n");
    console_until(machine, &hello.to_string(), &Pattern::literal(greeting))?;
    let greeting = format!("Basalt demo guest: domain {demo}.");
    console_until(machine, "demo", &Pattern::literal(greeting))?;
    demo_echo(machine, "demo", "two domains at once")?;

    let (rows, table) = list(machine)?;
    failures.soft(machine.check(rows.len() == 3 && rows[0].name == "Domain-0" && rows[0].id == 0, || {
        format!("`list` should show Domain-0, hello and demo:\n{table}")
    }))?;
    check_row(machine, (&rows, &table), (hello, "hello"), &["---s--"], (16, 1), failures)?;
    check_row(machine, (&rows, &table), (demo, "demo"), &["-b----", "r-----"], (32, 1), failures)?;
    Ok((hello, demo))
}

/// smp (4 vCPUs) on 2 physical CPUs: every vCPU's `done` line and `all 4 vcpus done`.
fn check_smp(machine: &mut Machine, failures: &mut Failures) -> Result<u32> {
    let (smp, output) = create(machine, "smp", "smp")?;
    let reason = await_log(machine, &output, smp, "smp", "shut down:")?;
    failures.soft(machine.check(reason == "poweroff", || format!("smp shut down with {reason:?}, not poweroff")))?;
    let console = console_until(machine, "smp", &Pattern::literal("smp: all 4 vcpus done\n"))?;
    for vcpu in 0..4 {
        let done = Pattern::regex(&format!(r"^smp: vcpu {vcpu} done sum=\d+$"));
        failures.soft(machine.check(console.lines().any(|line| line_matches(&done, line.trim())), || {
            format!("the smp guest's console has no \"smp: vcpu {vcpu} done sum=...\" line:\n{console}")
        }))?;
    }
    failures
        .soft(machine.check(!console.contains("did not start"), || format!("an smp vCPU did not start:\n{console}")))?;
    let vcpus = parse_vcpu_list(&machine.run_command(&format!("vcpu-list {smp}"))?);
    failures.soft(machine.check(
        vcpus.iter().map(|row| row.vcpu).collect::<Vec<_>>() == [0, 1, 2, 3]
            && vcpus.iter().all(|row| row.domain_id == smp),
        || format!("`vcpu-list {smp}` should list vCPUs 0-3 of domain {smp}: {vcpus:?}"),
    ))?;
    let (rows, table) = list(machine)?;
    let found = row(machine, &rows, smp, &table).map(|found| found.state.clone());
    failures.soft(found.and_then(|state| {
        machine.check(state == "---s--", || format!("smp should be shut down (---s--) after powering off:\n{table}"))
    }))?;
    Ok(smp)
}

/// 20 cycles of create hello → it prints and powers off (preserved) → destroy; `Free:`
/// is the same after each cycle as before the first.
fn check_cycles(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let (before, before_output) = free_bytes(machine)?;
    let mut changed = Vec::new();
    for cycle in 1..=CYCLES {
        let (id, output) = create(machine, "hello", "hello")?;
        await_log(machine, &output, id, "hello", "shut down:")?;
        console_until(machine, &id.to_string(), &Pattern::literal(format!("hello from domain {id}\n")))?;
        destroy(machine, id, "hello", failures)?;
        let (free, _) = free_bytes(machine)?;
        if free != before {
            changed.push(format!("cycle {cycle}: {free} ({:+})", free as i128 - before as i128));
        }
    }
    failures.soft(machine.check(changed.is_empty(), || {
        format!(
            "{CYCLES} create/destroy cycles of hello: Free: was {before} before the first; after: {}",
            changed.join(", ")
        )
    }))?;
    check_free(machine, (before, &before_output), &format!("after {CYCLES} create/destroy cycles"), failures)?;
    let (rows, table) = list(machine)?;
    failures.soft(machine.check(rows.len() == 1, || format!("only Domain-0 should be left after the cycles:\n{table}")))
}

/// Two `fpu` guests pinned to CPU 1 (fpu.cfg: `cpus = "1"`) fill their SSE registers
/// with their domain id and take turns on that CPU thousands of times; each must find
/// its registers as it left them (a hypervisor that does not switch x87/SSE state
/// fails this at once: checked by hand with the save/restore taken out). The same
/// guests check their breakpoint addresses DR0–DR3 (switched the same way).
fn check_fpu_isolation(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let (first, _) = create(machine, "fpu", "fpu")?;
    let (second, _) = create(machine, "fpu name=fpu2", "fpu2")?;
    let started = std::time::Instant::now();
    loop {
        let (rows, table) = list(machine)?;
        let finished = [first, second]
            .iter()
            .all(|id| rows.iter().any(|row| row.id == *id && (row.state.contains('s') || row.state.contains('c'))));
        if finished {
            break;
        }
        if started.elapsed() > GUEST_TIMEOUT {
            return Err(machine.fail(format!("the fpu guests did not finish:\n{table}")));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for (id, name) in [(first, "fpu"), (second, "fpu2")] {
        let console = console_until(machine, name, &Pattern::regex(r"fpu: .*\n"))?;
        failures.soft(machine.check(console.contains("fpu: registers intact after 4000 switches"), || {
            format!("{name}'s SSE registers were not kept across vCPU switches:\n{console}")
        }))?;
        destroy(machine, id, name, failures)?;
    }
    Ok(())
}

#[test]
fn domains_and_memory() -> Result<()> {
    domains_and_memory_on(EmulatorKind::Qemu, "domains_and_memory")
}

/// The same on Intel VMX with EPT (Bochs, Haswell model).
#[test]
fn bochs_domains_and_memory() -> Result<()> {
    domains_and_memory_on(EmulatorKind::Bochs, "bochs_domains_and_memory")
}

fn domains_and_memory_on(kind: EmulatorKind, name: &str) -> Result<()> {
    run_guest_test(kind, name, |machine, failures| {
        let (initial, initial_output) = free_bytes(machine)?;
        let (hello, demo) = check_two_domains(machine, failures)?;
        let smp = check_smp(machine, failures)?;
        check_fpu_isolation(machine, failures)?;
        for (id, name) in [(smp, "smp"), (hello, "hello"), (demo, "demo")] {
            destroy(machine, id, name, failures)?;
        }
        let (rows, table) = list(machine)?;
        failures
            .soft(machine.check(rows.len() == 1, || format!("only Domain-0 should be left after destroy:\n{table}")))?;
        // Measured from before the first create of this boot: no warm-up hides a leak.
        check_free(
            machine,
            (initial, &initial_output),
            "after destroying hello, demo and smp (compared with before the first create)",
            failures,
        )?;
        check_cycles(machine, failures)?;
        check_version(machine, failures)
    })
}

// --- hostile_guests ------------------------------------------------------------------

/// Creates hostile guest `name`; a crashing one must be marked crashed with a reason
/// (returned), a running one must still run. Then demo still echoes and the shell
/// answers.
fn contain(machine: &mut Machine, name: &str, crashes: bool, failures: &mut Failures) -> Result<(u32, String)> {
    let (id, output) = create(machine, name, name)?;
    let reason = if crashes { await_log(machine, &output, id, name, "crashed:")? } else { String::new() };
    demo_echo(machine, "demo", &format!("still here after {name}"))?;
    check_version(machine, failures)?;
    let (rows, table) = list(machine)?;
    let expected: &[&str] = if crashes { &["----c-"] } else { &["r-----"] };
    check_row(machine, (&rows, &table), (id, name), expected, (16, 1), failures)?;
    let demo_state = rows.iter().find(|row| row.name == "demo").map(|row| row.state.clone()).unwrap_or_default();
    failures.soft(machine.check(demo_state == "-b----" || demo_state == "r-----", || {
        format!("demo should still be running or blocked after {name}:\n{table}")
    }))?;
    Ok((id, reason))
}

/// Attaches to hcflood's console and reads its `hcflood: <calls> calls, <unexpected>
/// unexpected` lines (the kept history, then new ones) until one reports more than
/// `after` calls; every count of unexpected answers must be 0, and no line may report
/// an unexpected answer. Returns the highest call count seen.
fn check_hcflood(machine: &mut Machine, id: u32, after: u64, failures: &mut Failures) -> Result<u64> {
    let progress = Pattern::regex(r"hcflood: \d+ calls, \d+ unexpected\n");
    let mut console = attach(machine, &id.to_string())?;
    let mut highest = 0;
    while highest <= after {
        let text = machine
            .expect(progress.clone(), GUEST_TIMEOUT)
            .map_err(|error| error.context(format!("waiting for hcflood to pass {after} calls")))?;
        highest = highest.max(progress_counts(&text).iter().map(|&(calls, _)| calls).max().unwrap_or(0));
        console += &text;
    }
    console += &detach(machine, &id.to_string())?;
    let counts = progress_counts(&console);
    for line in console.lines().filter_map(|line| line.trim().strip_prefix("hcflood: ")) {
        failures.soft(
            machine.check(line.ends_with(" unexpected"), || format!("hcflood reported an unexpected answer: {line:?}")),
        )?;
    }
    failures.soft(
        machine.check(!counts.is_empty() && counts.iter().all(|&(_, unexpected)| unexpected == 0), || {
            format!("hcflood's progress lines should all say 0 unexpected:\n{console}")
        }),
    )?;
    Ok(counts.iter().map(|&(calls, _)| calls).max().unwrap_or(0))
}

/// (calls, unexpected) of each `hcflood: <calls> calls, <unexpected> unexpected` line.
fn progress_counts(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.trim().strip_prefix("hcflood: ")?.split_whitespace().collect();
            match words[..] {
                [calls, "calls,", unexpected, "unexpected"] => Some((calls.parse().ok()?, unexpected.parse().ok()?)),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn hostile_guests() -> Result<()> {
    hostile_guests_on(EmulatorKind::Qemu, "hostile_guests")
}

/// The same on Intel VMX with EPT (Bochs, Haswell model).
#[test]
fn bochs_hostile_guests() -> Result<()> {
    hostile_guests_on(EmulatorKind::Bochs, "bochs_hostile_guests")
}

fn hostile_guests_on(kind: EmulatorKind, name: &str) -> Result<()> {
    run_guest_test(kind, name, |machine, failures| {
        // The first domain of a boot leaves a one-time allocation behind, which
        // `domains_and_memory` checks for; this test's baseline is taken after one
        // hello has come and gone, and covers everything from demo's creation on.
        let (hello, output) = create(machine, "hello", "hello")?;
        await_log(machine, &output, hello, "hello", "shut down:")?;
        destroy(machine, hello, "hello", failures)?;
        let before = free_bytes(machine)?;
        let (demo, _) = create(machine, "demo", "demo")?;
        console_until(machine, "demo", &Pattern::literal(format!("Basalt demo guest: domain {demo}.")))?;
        demo_echo(machine, "demo", "before the hostile guests")?;

        let (triplefault, triple_reason) = contain(machine, "triplefault", true, failures)?;
        failures.soft(
            machine.check(line_matches(&Pattern::regex(r"^triple fault at rip 0x[0-9a-f]+$"), &triple_reason), || {
                format!("triplefault's crash reason should be \"triple fault at rip 0x...\", was {triple_reason:?}")
            }),
        )?;
        let (badmem, badmem_reason) = contain(machine, "badmem", true, failures)?;
        failures.soft(machine.check(badmem_reason.contains("0xc0000000"), || {
            format!("badmem's crash reason should name guest-physical 0xc0000000, was {badmem_reason:?}")
        }))?;
        let (hcflood, _) = contain(machine, "hcflood", false, failures)?;
        let (spinner, _) = contain(machine, "spinner", false, failures)?;
        check_blkhostile(machine, failures)?;

        // The crash reasons are in dmesg too.
        let dmesg = machine.run_command("dmesg")?;
        for (id, name, reason) in [(triplefault, "triplefault", &triple_reason), (badmem, "badmem", &badmem_reason)] {
            let line = format!("domain {id} ({name}) crashed: {reason}");
            failures.soft(machine.check(dmesg.lines().any(|logged| logged.ends_with(&line)), || {
                format!("`dmesg` has no line ending {line:?}:\n{dmesg}")
            }))?;
        }

        // spinner and hcflood keep running: their CPU time grows and hcflood keeps
        // counting, with no unexpected answer.
        let first_calls = check_hcflood(machine, hcflood, 0, failures)?;
        let (rows, _) = list(machine)?;
        std::thread::sleep(Duration::from_secs(2));
        demo_echo(machine, "demo", "beside hcflood and spinner")?;
        let (later, table) = list(machine)?;
        for (id, name) in [(hcflood, "hcflood"), (spinner, "spinner")] {
            let time =
                |rows: &[ListRow]| rows.iter().find(|row| row.id == id).map(|row| (row.seconds, row.state.clone()));
            let (earlier, now) = (time(&rows), time(&later));
            failures.soft(machine.check(
                matches!((&earlier, &now), (Some((first, _)), Some((second, state))) if second > first && state == "r-----"),
                || format!("{name} should keep running (state r-----, CPU time growing): {earlier:?} then {now:?}:\n{table}"),
            ))?;
        }
        // hcflood keeps counting: wait for a progress line past the ones seen before.
        check_hcflood(machine, hcflood, first_calls, failures)?;
        check_version(machine, failures)?;

        for (id, name) in [(spinner, "spinner"), (hcflood, "hcflood"), (badmem, "badmem"), (triplefault, "triplefault")]
        {
            destroy(machine, id, name, failures)?;
        }
        let (rows, table) = list(machine)?;
        failures.soft(machine.check(rows.iter().map(|row| row.id).collect::<Vec<_>>() == [0, demo], || {
            format!("only Domain-0 and demo should be left after destroying the hostile guests:\n{table}")
        }))?;
        demo_echo(machine, "demo", "after the hostile guests")?;
        check_stock_linux(machine, failures)?;
        destroy(machine, demo, "demo", failures)?;
        check_free(machine, (before.0, &before.1), "after destroying the hostile guests and demo", failures)?;
        check_version(machine, failures)
    })
}

/// blkhostile (a minimal blkfront on a RAM disk, configs/blkhostile.cfg) sends good
/// and malformed blkif requests: every check it prints says `ok`, its last line is
/// `blkhostile: done N/N`, and it powers off by itself; demo keeps echoing beside it.
/// Created with `on_poweroff=preserve` so its console replay can be read afterwards.
/// tests/disks.rs runs it beside a Linux guest with a real disk; here it covers the
/// back end on both vendors (grant copies, event channels, the xenbus handshake).
fn check_blkhostile(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let (id, output) = create(machine, "blkhostile on_poweroff=preserve", "blkhostile")?;
    let reason = await_log(machine, &output, id, "blkhostile", "shut down:")?;
    failures
        .soft(machine.check(reason == "poweroff", || format!("blkhostile should power off, shut down: {reason:?}")))?;
    let console = console_until(machine, &id.to_string(), &Pattern::regex(r"blkhostile: done \d+/\d+\n"))?;
    let checks: Vec<&str> = console.lines().filter_map(|line| line.trim().strip_prefix("blkhostile: ")).collect();
    let done = checks.iter().find_map(|line| line.strip_prefix("done ")).and_then(|count| count.split_once('/'));
    failures.soft(machine.check(
        matches!(done, Some((passed, total)) if passed == total && total.parse::<u32>().is_ok_and(|total| total >= 20)),
        || format!("blkhostile should pass every check (done N/N, N ≥ 20):\n{console}"),
    ))?;
    failures.soft(machine.check(!checks.iter().any(|line| line.contains("FAILED")), || {
        format!("blkhostile reported a failed check:\n{console}")
    }))?;
    demo_echo(machine, "demo", "after blkhostile")?;
    destroy(machine, id, "blkhostile", failures)
}

/// Debian's cloud kernel, exactly as shipped (a 14 MB bzImage with an LZ4 payload that
/// unpacks to a 53 MB ELF), boots beside what is left of the hostile guests: its early
/// log (earlyprintk=xen: console_io) names the kernel and the command line, demo keeps
/// echoing and the shell answers while it boots, and its 256 MiB come back when it is
/// destroyed mid-boot (checked with the rest). tests/linux.rs takes it to its shell.
fn check_stock_linux(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let (linux, output) = create(machine, "linux", "linux")?;
    let first_output = format!("domain {linux} (linux): first console output");
    if !output.contains(&first_output) {
        machine
            .expect(Pattern::literal(first_output.clone()), GUEST_TIMEOUT)
            .map_err(|error| error.context("waiting for Linux's first console output"))?;
    }
    // Its boot log (earlyprintk=xen: console_io) names the kernel and echoes the
    // command line the config gave it through hvm_start_info.
    let console =
        console_until(machine, "linux", &Pattern::literal("Command line: console=hvc0 earlyprintk=xen loglevel=8\n"))?;
    failures.soft(machine.check(console.contains("Linux version 6."), || {
        format!("Linux's console should start with its version line:\n{console}")
    }))?;
    demo_echo(machine, "demo", "beside linux")?;
    check_version(machine, failures)?;
    destroy(machine, linux, "linux", failures)
}

// --- lifecycle -----------------------------------------------------------------------

/// demo types `poweroff` → on_poweroff = "destroy": the console says the domain is gone
/// and `list` no longer has it.
fn check_poweroff_destroys(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let (demo, _) = create(machine, "demo", "demo")?;
    let mut text = attach(machine, "demo")?;
    text += &machine.expect(format!("Basalt demo guest: domain {demo}."), GUEST_TIMEOUT)?;
    machine.send_line("poweroff")?;
    text += &machine.expect("demo: you typed 'poweroff'", GUEST_TIMEOUT)?;
    // The console ends by itself once the domain is destroyed.
    text += &machine.expect(format!("[domain {demo} is gone]"), GUEST_TIMEOUT)?;
    text += &machine.expect_prompt()?;
    let reason = await_log(machine, &text, demo, "demo", "shut down:")?;
    failures.soft(machine.check(reason == "poweroff", || format!("demo shut down with {reason:?}, not poweroff")))?;
    await_log(machine, &text, demo, "demo", "destroyed")?;
    let (rows, table) = list(machine)?;
    failures.soft(machine.check(rows.len() == 1 && rows[0].id == 0, || {
        format!("demo (domain {demo}) powered off with on_poweroff = \"destroy\", yet `list` shows:\n{table}")
    }))
}

/// `create demo name=d2 vcpus=2`; returns d2's id. The guest only brings up vCPU 0, and
/// `list`'s VCPUs column counts online vCPUs (as xl's does), so it shows 1; `vcpu-list`
/// shows the second vCPU, offline (`---`), which is what the override changed.
fn check_overrides(machine: &mut Machine, failures: &mut Failures) -> Result<u32> {
    let (d2, _) = create(machine, "demo name=d2 vcpus=2", "d2")?;
    console_until(machine, "d2", &Pattern::literal(format!("Basalt demo guest: domain {d2}.")))?;
    let (rows, table) = list(machine)?;
    check_row(machine, (&rows, &table), (d2, "d2"), &["-b----", "r-----"], (32, 1), failures)?;
    let table = machine.run_command("vcpu-list d2")?;
    let vcpus = parse_vcpu_list(&table);
    failures.soft(machine.check(
        matches!(&vcpus[..], [zero, one] if zero.vcpu == 0 && zero.state != "---" && one.vcpu == 1 && one.state == "---"),
        || format!("`vcpu-list d2` should show vCPU 0 online and vCPU 1 offline (---):\n{table}"),
    ))?;
    Ok(d2)
}

/// `pause` → `--p---` (vCPU `--p`); `unpause` → blocked again, and the guest answers.
fn check_pause(machine: &mut Machine, d2: u32, failures: &mut Failures) -> Result<()> {
    let output = machine.run_command("pause d2")?;
    failures.soft(machine.check(output_lines(&output).is_empty(), || format!("`pause d2` printed:\n{output}")))?;
    let (rows, table) = list(machine)?;
    check_row(machine, (&rows, &table), (d2, "d2"), &["--p---"], (32, 1), failures)?;
    let table = machine.run_command("vcpu-list d2")?;
    let vcpus = parse_vcpu_list(&table);
    failures.soft(machine.check(vcpus.first().is_some_and(|vcpu| vcpu.state == "--p"), || {
        format!("`vcpu-list d2` should show vCPU 0 paused (--p):\n{table}")
    }))?;
    let output = machine.run_command("unpause d2")?;
    failures.soft(machine.check(output_lines(&output).is_empty(), || format!("`unpause d2` printed:\n{output}")))?;
    let (rows, table) = list(machine)?;
    check_row(machine, (&rows, &table), (d2, "d2"), &["-b----", "r-----"], (32, 1), failures)?;
    demo_echo(machine, "d2", "after unpause")
}

/// `vcpu-pin` changes the affinity `vcpu-list` shows; the guest still runs pinned.
fn check_pin(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let output = machine.run_command("vcpu-pin d2 0 1")?;
    failures
        .soft(machine.check(output_lines(&output).is_empty(), || format!("`vcpu-pin d2 0 1` printed:\n{output}")))?;
    let table = machine.run_command("vcpu-list d2")?;
    let affinity: Vec<String> = parse_vcpu_list(&table).into_iter().map(|row| row.affinity).collect();
    failures.soft(machine.check(affinity == ["1", "0-1"], || {
        format!("after `vcpu-pin d2 0 1`, vcpu-list should show affinities 1 and 0-1:\n{table}")
    }))?;
    demo_echo(machine, "d2", "pinned to CPU 1")?;
    let table = machine.run_command("vcpu-list d2")?;
    let cpu = parse_vcpu_list(&table).first().map(|row| row.cpu.clone()).unwrap_or_default();
    failures.soft(machine.check(cpu == "1", || {
        format!("vCPU 0 of d2, pinned to CPU 1, ran after pinning; vcpu-list should show it on CPU 1:\n{table}")
    }))?;
    let output = machine.run_command("vcpu-pin d2 all 0")?;
    failures
        .soft(machine.check(output_lines(&output).is_empty(), || format!("`vcpu-pin d2 all 0` printed:\n{output}")))?;
    let table = machine.run_command("vcpu-list d2")?;
    let affinity: Vec<String> = parse_vcpu_list(&table).into_iter().map(|row| row.affinity).collect();
    failures.soft(machine.check(affinity == ["0", "0"], || {
        format!("after `vcpu-pin d2 all 0`, vcpu-list should show affinity 0 for both vCPUs:\n{table}")
    }))?;
    demo_echo(machine, "d2", "pinned to CPU 0")?;
    check_error(machine, "vcpu-pin d2 5 0", &["vCPU 5"], failures)?;
    check_error(machine, "vcpu-pin d2 0 7", &["7"], failures)?;
    Ok(())
}

/// `sched-credit -d d2 -w 512` (and `-c 50`) then `sched-credit` shows them.
fn check_sched_credit(machine: &mut Machine, d2: u32, failures: &mut Failures) -> Result<()> {
    for command in ["sched-credit -d d2 -w 512", "sched-credit -d d2 -c 50"] {
        let output = machine.run_command(command)?;
        failures.soft(machine.check(output_lines(&output).is_empty(), || format!("`{command}` printed:\n{output}")))?;
    }
    let table = machine.run_command("sched-credit")?;
    let rows = parse_sched_credit(&table);
    failures.soft(machine.check(rows == [(0, 256, 0), (d2, 512, 50)], || {
        format!("`sched-credit` should show Domain-0 256/0 and d2 (domain {d2}) 512/50:\n{table}")
    }))?;
    let table = machine.run_command("sched-credit -d d2")?;
    failures.soft(machine.check(parse_sched_credit(&table) == [(d2, 512, 50)], || {
        format!("`sched-credit -d d2` should show only d2 with 512/50:\n{table}")
    }))?;
    check_usage_error(machine, "sched-credit -d d2 -w 0", &["WEIGHT"], failures)
}

/// `shutdown d2` → powers off → on_poweroff destroy.
fn check_shutdown(machine: &mut Machine, d2: u32, failures: &mut Failures) -> Result<()> {
    let output = machine.run_command("shutdown d2")?;
    failures.soft(machine.check(output_lines(&output).is_empty(), || format!("`shutdown d2` printed:\n{output}")))?;
    await_log(machine, &output, d2, "d2", "destroyed")?;
    let (rows, table) = list(machine)?;
    failures.soft(machine.check(rows.iter().all(|row| row.id != d2), || {
        format!("d2 was shut down (on_poweroff = \"destroy\"), yet `list` shows it:\n{table}")
    }))
}

/// `reboot DOMAIN` → on_reboot = "restart": a new domain of the same name greets.
fn check_domain_reboot(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let (first, _) = create(machine, "demo name=r1", "r1")?;
    let output = machine.run_command("reboot r1")?;
    failures.soft(machine.check(output_lines(&output).is_empty(), || format!("`reboot r1` printed:\n{output}")))?;
    let rest = await_log(machine, &output, first, "r1", "restarted as domain")?;
    let Ok(second) = rest.parse::<u32>() else {
        return failures.soft(machine.check(false, || format!("bad restart log line: {rest:?}")));
    };
    console_until(machine, "r1", &Pattern::literal(format!("Basalt demo guest: domain {second}.")))?;
    let (rows, table) = list(machine)?;
    failures.soft(machine.check(
        rows.iter().all(|row| row.id != first) && rows.iter().any(|row| row.id == second && row.name == "r1"),
        || format!("after `reboot r1`, r1 should be domain {second} and domain {first} gone:\n{table}"),
    ))?;
    destroy(machine, second, "r1", failures)
}

/// Bad requests each print one `error:` line and change nothing.
fn check_errors(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let before = free_bytes(machine)?;
    let (rows_before, _) = list(machine)?;
    check_error(machine, "create nosuch", &["nosuch"], failures)?;
    check_error(machine, "destroy 99", &["99"], failures)?;
    check_error(machine, "destroy Domain-0", &["Domain-0"], failures)?;
    check_error(machine, "create broken", &["line 3"], failures)?;
    check_error(machine, "create hello memory=100000", &["memory"], failures)?;
    check_free(machine, (before.0, &before.1), "after the failed creates", failures)?;
    let (rows, table) = list(machine)?;
    let ids = |rows: &[ListRow]| rows.iter().map(|row| row.id).collect::<Vec<_>>();
    failures.soft(
        machine.check(ids(&rows) == ids(&rows_before), || format!("failed creates changed the domain list:\n{table}")),
    )
}

#[test]
fn lifecycle() -> Result<()> {
    run_guest_test(EmulatorKind::Qemu, "lifecycle", |machine, failures| {
        check_poweroff_destroys(machine, failures)?;
        let d2 = check_overrides(machine, failures)?;
        check_pause(machine, d2, failures)?;
        check_pin(machine, failures)?;
        check_sched_credit(machine, d2, failures)?;
        check_errors(machine, failures)?;
        check_shutdown(machine, d2, failures)?;
        check_domain_reboot(machine, failures)?;
        check_version(machine, failures)?;
        // A prompt is still there after everything.
        machine.send_line("")?;
        machine.expect(PROMPT, COMMAND_TIMEOUT).map(drop)
    })
}

// --- no virtualization ---------------------------------------------------------------

/// A CPU with neither SVM nor VMX (QEMU's `qemu64` without SVM) still boots to the
/// shell; `info` says guests cannot run, and `create` says so in one line and leaves
/// memory as it was.
#[test]
fn without_virtualization() -> Result<()> {
    let mut config = MachineConfig::qemu(Firmware::Bios, Medium::IdeDisk);
    config.image = test_image();
    config.cpu_model = "qemu64,-svm".to_owned();
    let (mut machine, _) = Machine::boot_to_prompt(config, "without_virtualization")?;
    let mut failures = Failures::new();
    let outcome = (|| {
        let info = machine.run_command("info")?;
        failures.soft(machine.check(info.contains("Guests: cannot run guests"), || {
            format!("`info` should say guests cannot run here:\n{info}")
        }))?;
        let (before, before_output) = free_bytes(&mut machine)?;
        check_error(&mut machine, "create hello", &["cannot run guests"], &mut failures)?;
        check_free(&mut machine, (before, &before_output), "after a refused create", &mut failures)?;
        let (rows, table) = list(&mut machine)?;
        failures.soft(machine.check(rows.len() == 1, || format!("only Domain-0 should exist:\n{table}")))?;
        check_version(&mut machine, &mut failures)
    })();
    match outcome {
        Ok(()) => failures.finish(),
        Err(error) => Err(failures.with_fatal(error)),
    }
}
