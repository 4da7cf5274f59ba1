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
//! Reading the Linux shell: a command's output is found between two marker lines the
//! shell prints around it, not after its echo (busybox ash wraps the echo early; see
//! `qemu_tests::linux_console`).
//!
//! Failed checks are collected and reported together at the end; a broken conversation
//! (timeout, panic, the emulator exiting, a Linux panic, a crashed domain) stops the test
//! at once. Transcripts are in build/qemu-tests/<test>.serial.log.

use std::time::{Duration, Instant};

use qemu_tests::console_text::{line_matches, output_lines};
use qemu_tests::domains::{attach, await_log, boot_and_check, destroy, detach, free_bytes, list, ListRow};
use qemu_tests::linux_console::{
    await_ready, boot_linux, linux_command, linux_test_config, shut_down_from_inside, LINUX_BOOT_TIMEOUT,
    LINUX_COMMAND_TIMEOUT, SHUTDOWN_TIMEOUT,
};
use qemu_tests::{EmulatorKind, Failures, Machine, MachineConfig, Pattern, Result};

/// How long Linux may take from `create` to its shell under Bochs (~100 MIPS): about
/// 45 s on an idle 2-core host (create ≈ 7 s, boot ≈ 42 s), ~4× TCG; the margin is for
/// a host busy with other emulators.
const BOCHS_LINUX_BOOT_TIMEOUT: Duration = Duration::from_secs(600);

/// The machine each test boots: the test image with the Linux fatal markers.
/// QEMU: 2 CPUs, 2 GiB (two 256 MiB domains, the heap holds a 53 MB kernel while it
/// is unpacked); Bochs: 1 CPU (Bochs runs all CPUs on one host thread), 1 GiB.
fn machine_config(kind: EmulatorKind) -> Result<MachineConfig> {
    linux_test_config(match kind {
        EmulatorKind::Qemu => MachineConfig::standard(kind).with_cpus(2).with_memory_mib(2048),
        EmulatorKind::Bochs => MachineConfig::standard(kind).with_cpus(1).with_memory_mib(1024),
    })
}

/// Boots `kind`'s machine, runs `checks` and reports every failed check at the end.
fn run_linux_test(
    kind: EmulatorKind,
    name: &str,
    checks: impl FnOnce(&mut Machine, &mut Failures) -> Result<()>,
) -> Result<()> {
    boot_and_check(machine_config(kind)?, name, checks)
}

/// Whether `list`'s table has domain `id` called `name`.
fn listed(rows: &[ListRow], (id, name): (u32, &str)) -> bool {
    rows.iter().any(|row| row.id == id && row.name == name)
}

/// `command`'s output must be exactly one line matching `pattern`.
fn check_one_line(machine: &mut Machine, command: &str, pattern: &str, failures: &mut Failures) -> Result<()> {
    let (_, lines) = linux_command(machine, command, LINUX_COMMAND_TIMEOUT)?;
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
    let (_, interrupts) = linux_command(machine, "cat /proc/interrupts", LINUX_COMMAND_TIMEOUT)?;
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
    let (replay, lines) = linux_command(machine, &format!("echo {word}-$(({sum}))"), LINUX_COMMAND_TIMEOUT)?;
    let expected = format!("{word}-{result}");
    failures.soft(machine.check(lines == [expected.clone()], || {
        format!("`echo {word}-$(({sum}))` in {domain} should print {expected:?}, printed {lines:?}")
    }))?;
    detach(machine, domain)?;
    Ok(replay)
}

/// Types `command` (poweroff or reboot) at `domain`'s shell; waits for the console to
/// end because the domain is gone, and for the hypervisor's `shut down: <reason>` line.
fn check_shut_down_from_inside(
    machine: &mut Machine,
    (id, domain): (u32, &str),
    command: &str,
    failures: &mut Failures,
) -> Result<String> {
    attach(machine, domain)?;
    linux_command(machine, "true", LINUX_COMMAND_TIMEOUT)?;
    let text = shut_down_from_inside(machine, (id, domain), command)?;
    let reason = await_log(machine, &text, (id, domain), "shut down:", SHUTDOWN_TIMEOUT)?;
    failures.soft(machine.check(reason == command, || format!("{domain} shut down with {reason:?}, not {command}")))?;
    Ok(text)
}

/// QEMU (AMD SVM): Linux to its shell, two Linux domains at once, poweroff and reboot
/// from inside, and all memory back.
#[test]
fn linux_boots_to_a_shell() -> Result<()> {
    run_linux_test(EmulatorKind::Qemu, "linux_boots_to_a_shell", |machine, failures| {
        let (initial, initial_output) = free_bytes(machine)?;

        let (linux, took) = boot_linux(machine, "linux", "linux", LINUX_BOOT_TIMEOUT)?;
        eprintln!("[linux_boots_to_a_shell] linux: create to shell {:.1} s", took.as_secs_f64());
        check_platform(machine, 2, failures)?;
        detach(machine, "linux")?;

        let (linux1, _) = boot_linux(machine, "linux1", "linux1", LINUX_BOOT_TIMEOUT)?;
        detach(machine, "linux1")?;
        let (rows, table) = list(machine)?;
        failures.soft(machine.check(listed(&rows, (linux, "linux")) && listed(&rows, (linux1, "linux1")), || {
            format!("`list` should show linux ({linux}) and linux1 ({linux1}):\n{table}")
        }))?;

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
        let text = check_shut_down_from_inside(machine, (linux1, "linux1"), "poweroff", failures)?;
        await_log(machine, &text, (linux1, "linux1"), "destroyed", SHUTDOWN_TIMEOUT)?;
        let (rows, table) = list(machine)?;
        failures.soft(machine.check(rows.iter().all(|row| row.id != linux1), || {
            format!("linux1 powered off (on_poweroff = \"destroy\"), yet `list` shows it:\n{table}")
        }))?;

        // reboot inside linux: on_reboot = "restart", a new domain that boots again.
        let text = check_shut_down_from_inside(machine, (linux, "linux"), "reboot", failures)?;
        let rest = await_log(machine, &text, (linux, "linux"), "restarted as domain", SHUTDOWN_TIMEOUT)?;
        let Ok(restarted) = rest.parse::<u32>() else {
            return Err(machine.fail(format!("bad restart log line: {rest:?}")));
        };
        attach(machine, "linux")?;
        await_ready(machine, "linux", LINUX_BOOT_TIMEOUT)?;
        check_one_line(machine, "cat /sys/hypervisor/type", "^xen$", failures)?;
        detach(machine, "linux")?;
        let (rows, table) = list(machine)?;
        let linux_rows: Vec<(&str, u32)> =
            rows.iter().filter(|row| row.name.starts_with("linux")).map(|row| (row.name.as_str(), row.id)).collect();
        failures.soft(machine.check(linux_rows == [("linux", restarted)], || {
            format!("after its reboot, linux should be domain {restarted} (was {linux}), alone:\n{table}")
        }))?;

        check_flood_and_shutdown(machine, restarted, failures)?;
        let (free, output) = free_bytes(machine)?;
        if free == initial {
            return Ok(());
        }
        // Tell a leak from a one-time allocation: one more create/boot/destroy.
        let (again, _) = boot_linux(machine, "linux1", "linux1", LINUX_BOOT_TIMEOUT)?;
        detach(machine, "linux1")?;
        destroy(machine, (again, "linux1"), SHUTDOWN_TIMEOUT, failures)?;
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
    linux_command(
        machine,
        "(sleep 5; exec yes basalt-console-flood > /dev/hvc0) > /dev/null 2>&1 & true",
        LINUX_COMMAND_TIMEOUT,
    )?;
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
    let text = await_log(machine, &asked, (linux, "linux"), "shut down: ", SHUTDOWN_TIMEOUT)?;
    failures.soft(machine.check(text.starts_with("poweroff"), || format!("linux shut down with {text:?}")))?;
    await_log(machine, "", (linux, "linux"), "destroyed", SHUTDOWN_TIMEOUT)?;
    let (rows, table) = list(machine)?;
    failures.soft(machine.check(rows.iter().all(|row| row.id != linux), || {
        format!("linux shut down (on_poweroff = \"destroy\"), yet `list` shows it:\n{table}")
    }))
}

/// Bochs (Intel VMX + EPT): linux1 boots to its shell and sees Xen.
#[test]
fn linux_boots_on_vmx() -> Result<()> {
    run_linux_test(EmulatorKind::Bochs, "linux_boots_on_vmx", |machine, failures| {
        let (_, took) = boot_linux(machine, "linux1", "linux1", BOCHS_LINUX_BOOT_TIMEOUT)?;
        eprintln!("[linux_boots_on_vmx] linux1: create to shell {:.1} s", took.as_secs_f64());
        check_one_line(machine, "cat /sys/hypervisor/type", "^xen$", failures)?;
        detach(machine, "linux1").map(drop)
    })
}
