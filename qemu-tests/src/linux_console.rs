//! The Linux payload's shell behind a domain's console, as tests/linux.rs and
//! tests/disks.rs drive it: its markers and timeouts, booting a Linux domain to its
//! shell, running one command and reading exactly its output, and ending the domain
//! from inside.
//!
//! The payload (`make guest-linux`, guest-payload/): Debian's cloud kernel with a
//! busybox initramfs whose init prints [`READY_MARKER`] on the console (hvc0), then
//! runs a login shell with the prompt [`LINUX_PROMPT`].
//!
//! Why commands are framed by marker lines: busybox's line editor asks the terminal for
//! the cursor position after each prompt (`ESC [6n`), and the harness answers like a
//! terminal whose cursor is in column 80 (the answer the hypervisor's own shell needs).
//! ash then believes its line is full and wraps the echo of a typed command early
//! (`u`, newline, `name -r`). So a command's output is not found after its echo but
//! between two lines the shell prints around it: `echo "<""<7"` prints `<<7`, which
//! the echo of the typed line does not contain ([`framed_command_line`]).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::console_text::output_lines;
use crate::domains::{attach, create, ensure_test_image, test_image};
use crate::{Error, Machine, MachineConfig, Result, COMMAND_TIMEOUT, PROMPT};

/// What the payload's init prints on the console once the system is up.
pub const READY_MARKER: &str = "BASALT-LINUX-READY";
/// The payload shell's prompt (PS1 in guest-payload/rootfs/etc/profile).
pub const LINUX_PROMPT: &str = "linux# ";
/// How long Linux may take from `create` to its shell under QEMU's TCG: the emulated
/// SVM guest runs translated code and every exit is emulated (≈ 11–17 s on the idle
/// 2-core build host; minutes on a loaded one).
pub const LINUX_BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// How long a quick command at the Linux shell may take.
pub const LINUX_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `poweroff` / `reboot` may take until the domain is gone (init's shutdown
/// actions, then the kernel's own shutdown path); the Linux tests wait as long for any
/// hypervisor log line about a domain.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(180);
/// Lines that mean the Linux guest is dead: Linux's panic, and the hypervisor's log line
/// for a crashed domain (`domain 3 (linux) crashed: ...`). An `expect` that sees one
/// fails at once rather than waiting out a boot timeout.
pub const LINUX_FATAL_MARKERS: [&str; 2] = ["Kernel panic - not syncing", ") crashed: "];

/// `config` booting the test image, with [`LINUX_FATAL_MARKERS`] added to its fatal
/// markers. Fails if the test image is missing.
pub fn linux_test_config(config: MachineConfig) -> Result<MachineConfig> {
    let mut config = config.with_image(test_image());
    config.fatal_markers.extend(LINUX_FATAL_MARKERS.iter().map(|marker| (*marker).to_owned()));
    ensure_test_image(&config.image, "it needs the Linux payload, `make guest-linux`")?;
    Ok(config)
}

/// On an attached console: waits up to `timeout` for the ready marker, then (up to
/// [`LINUX_COMMAND_TIMEOUT`]) for the shell's prompt; returns the time it took.
pub fn await_ready(machine: &mut Machine, domain: &str, timeout: Duration) -> Result<Duration> {
    let started = Instant::now();
    machine
        .expect(READY_MARKER, timeout)
        .map_err(|error| error.context(format!("Linux domain {domain} booting to {READY_MARKER}")))?;
    machine.expect(LINUX_PROMPT, LINUX_COMMAND_TIMEOUT).map_err(|error| {
        error.context(format!("the shell prompt {LINUX_PROMPT:?} of {domain} after {READY_MARKER}"))
    })?;
    Ok(started.elapsed())
}

/// `create <arguments>` of the Linux domain `name`, its console, and Linux up to its
/// shell (the marker within `boot_timeout`); stays attached. Returns the domain's id and
/// the time from `create` to the shell.
pub fn boot_linux(
    machine: &mut Machine,
    arguments: &str,
    name: &str,
    boot_timeout: Duration,
) -> Result<(u32, Duration)> {
    let started = Instant::now();
    let (id, _) = create(machine, arguments, name)?;
    attach(machine, name)?;
    await_ready(machine, name, boot_timeout)?;
    Ok((id, started.elapsed()))
}

/// Numbers the marker lines of [`framed_command_line`], so no two commands share one.
static COMMAND_NUMBER: AtomicU32 = AtomicU32::new(1);

/// The line typed to run `body` framed by marker lines numbered `number`, and the two
/// lines the shell prints around its output: (typed line, `<<number`, `number>>`).
/// `echo "<""<7"` prints `<<7`; the typed text itself has a quote between the `<`s.
pub fn framed_command_line(number: u32, body: &str) -> (String, String, String) {
    (format!("echo \"<\"\"<{number}\"; {body}; echo \"{number}>\"\">\""), format!("<<{number}"), format!("{number}>>"))
}

/// What a framed command printed.
struct Framed {
    /// Whatever was unread before the opening marker: the console's replay, the echo.
    before: String,
    /// The text from the opening marker through the closing one.
    output: String,
    /// The output's lines, without the closing marker and Linux's log lines.
    lines: Vec<String>,
}

/// Types `body` framed by marker lines at the attached Linux shell and waits for the
/// opening marker (up to [`LINUX_COMMAND_TIMEOUT`]), the closing one (up to `timeout`)
/// and the next prompt. Errors name `command` (what the caller asked to run).
fn run_framed(machine: &mut Machine, body: &str, command: &str, timeout: Duration) -> Result<Framed> {
    let number = COMMAND_NUMBER.fetch_add(1, Ordering::Relaxed);
    let (line, begin, end) = framed_command_line(number, body);
    machine.send_line(&line)?;
    let context = |error: Error| error.context(format!("the Linux command {command:?}"));
    let before = machine.expect(begin.as_str(), LINUX_COMMAND_TIMEOUT).map_err(context)?;
    let output = machine.expect(end.as_str(), timeout).map_err(context)?;
    machine.expect(LINUX_PROMPT, LINUX_COMMAND_TIMEOUT).map_err(context)?;
    let lines =
        output_lines(output.strip_suffix(end.as_str()).unwrap_or(&output)).into_iter().map(str::to_owned).collect();
    Ok(Framed { before, output, lines })
}

/// Runs `command` at the Linux shell of the attached console; its output may take up to
/// `timeout`. Returns what came before the output (whatever was unread: the console's
/// replay, the echo) and the output's lines without Linux's log lines.
pub fn linux_command(machine: &mut Machine, command: &str, timeout: Duration) -> Result<(String, Vec<String>)> {
    let framed = run_framed(machine, command, command, timeout)?;
    Ok((framed.before, framed.lines))
}

/// Splits the `status=<n>` line the shell printed last off `lines`: (n, the lines
/// before it). None if the last line is not one.
pub fn split_status(mut lines: Vec<String>) -> Option<(i32, Vec<String>)> {
    let status = lines.pop()?.strip_prefix("status=")?.parse().ok()?;
    Some((status, lines))
}

/// [`linux_command`] that also reads `command`'s exit status (printed as `status=<n>`
/// just before the closing marker): returns the status and the output lines. A missing
/// status line stops the test.
pub fn linux_command_status(machine: &mut Machine, command: &str, timeout: Duration) -> Result<(i32, Vec<String>)> {
    let framed = run_framed(machine, &format!("{command}; echo \"status=$?\""), command, timeout)?;
    match split_status(framed.lines) {
        Some(result) => Ok(result),
        None => Err(machine.fail(format!("the Linux command {command:?} printed no status line:\n{}", framed.output))),
    }
}

/// Types `command` (`poweroff` or `reboot`) at the attached Linux shell of domain
/// `(id, name)`; waits up to [`SHUTDOWN_TIMEOUT`] for the console to end because the
/// domain is gone, then for the hypervisor's prompt. Returns all text read, in which the
/// domain's log lines may already be (see [`crate::domains::await_log`]).
pub fn shut_down_from_inside(machine: &mut Machine, (id, name): (u32, &str), command: &str) -> Result<String> {
    machine.send_line(command)?;
    let gone = format!("[domain {id} is gone]");
    let mut text = machine.expect(gone.as_str(), SHUTDOWN_TIMEOUT).map_err(|error| {
        error.context(format!("`{command}` typed in Linux domain {name} ({id}): the domain should end"))
    })?;
    text += &machine.expect(PROMPT, COMMAND_TIMEOUT)?;
    Ok(text)
}

#[cfg(test)]
mod tests;
