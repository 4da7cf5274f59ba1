//! Driving domains from the hypervisor's shell, as the guest, Linux and disk tests do:
//! the test image they boot, one boot with every check on it, `mem`'s free bytes,
//! `create`/`list`/`destroy`, the hypervisor's per-domain log lines, and `console` in and
//! out (Ctrl-]).
//!
//! The shell's commands answer synchronously, but the hypervisor's log lines about a
//! domain (`[  12.345] domain 4 (hello) shut down: poweroff`) reach the serial line
//! whenever the domain acts — possibly inside a command's output. So [`await_log`] first
//! looks in the text already read, and the parsers here skip log lines
//! ([`output_lines`]).
//!
//! The Linux payload's own shell, behind a console, is [`crate::linux_console`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::console_text::{line_matches, output_lines, regex_escape};
use crate::{Error, Failures, Machine, MachineConfig, Pattern, Result, COMMAND_TIMEOUT};

/// Ctrl-]: ends `console`.
pub const CONSOLE_ESCAPE: &[u8] = b"\x1d";
/// How long to wait for the cursor-position query after a prompt before attaching to
/// a console (it normally follows within microseconds).
pub const PROMPT_QUERY_WAIT: Duration = Duration::from_secs(5);

/// `$BASALT_TEST_IMAGE`, else `<workspace>/build/basalt-test.img` (`make test-image`:
/// the real image plus the test guests, the Linux payload and their configs).
pub fn test_image() -> PathBuf {
    match std::env::var_os("BASALT_TEST_IMAGE") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => crate::config::workspace_root().join("build").join("basalt-test.img"),
    }
}

/// Fails with `test image <image> does not exist: run `make test-image` first (<hint>)`
/// unless `image` is a file.
pub fn ensure_test_image(image: &Path, hint: &str) -> Result<()> {
    if image.is_file() {
        return Ok(());
    }
    Err(Error::new(format!("test image {} does not exist: run `make test-image` first ({hint})", image.display())))
}

/// Boots `config` to the shell's prompt as test `name`, runs `checks` on that one boot
/// and reports every failed check at the end: a soft failure (collected in the
/// [`Failures`]) lets the checks go on; an error from `checks` (a broken conversation)
/// ends them and is reported with the soft failures before it.
pub fn boot_and_check(
    config: MachineConfig,
    name: &str,
    checks: impl FnOnce(&mut Machine, &mut Failures) -> Result<()>,
) -> Result<()> {
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

// --- mem and list --------------------------------------------------------------------

/// The bytes of `mem`'s exact `Free: <bytes> bytes` line.
pub fn parse_free_bytes(mem_output: &str) -> Option<u64> {
    output_lines(mem_output)
        .into_iter()
        .find_map(|line| line.strip_prefix("Free: ")?.strip_suffix(" bytes")?.parse().ok())
}

/// `mem`'s exact `Free: <bytes> bytes`, with the whole output (for messages). No such
/// line stops the test.
pub fn free_bytes(machine: &mut Machine) -> Result<(u64, String)> {
    let output = machine.run_command("mem")?;
    match parse_free_bytes(&output) {
        Some(free) => Ok((free, output)),
        None => Err(machine.fail(format!("`mem` printed no \"Free: <bytes> bytes\" line:\n{output}"))),
    }
}

/// One row of `list`: `NAME ID MEM(MiB) VCPUS STATE TIME(s)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListRow {
    /// The domain's name.
    pub name: String,
    /// The domain's id.
    pub id: u32,
    /// Its memory, in MiB.
    pub memory_mib: u64,
    /// Online vCPUs (as xl counts them).
    pub vcpus: u32,
    /// xl's six state letters, `rbpscd` or `-` each.
    pub state: String,
    /// CPU time used, in seconds.
    pub seconds: f64,
}

/// The domain rows of a `list` table (header and log lines skipped).
pub fn parse_list(table: &str) -> Vec<ListRow> {
    let state = Pattern::regex(r"^[r-][b-][p-][s-][c-][d-]$");
    output_lines(table)
        .into_iter()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words[..] {
                [name, id, memory, vcpus, letters, seconds] if line_matches(&state, letters) => Some(ListRow {
                    name: name.to_owned(),
                    id: id.parse().ok()?,
                    memory_mib: memory.parse().ok()?,
                    vcpus: vcpus.parse().ok()?,
                    state: letters.to_owned(),
                    seconds: seconds.parse().ok()?,
                }),
                _ => None,
            }
        })
        .collect()
}

/// `list`, parsed, with the table (for messages).
pub fn list(machine: &mut Machine) -> Result<(Vec<ListRow>, String)> {
    let output = machine.run_command("list")?;
    Ok((parse_list(&output), output))
}

// --- create, destroy and log lines ---------------------------------------------------

/// The id in `create`'s output if it is exactly one `Created domain <id> (<name>)` line
/// (log lines aside).
pub fn parse_created(create_output: &str, name: &str) -> Option<u32> {
    let suffix = format!(" ({name})");
    match output_lines(create_output)[..] {
        [line] => line.strip_prefix("Created domain ").and_then(|rest| rest.strip_suffix(&suffix)?.parse().ok()),
        _ => None,
    }
}

/// `create <arguments>` of a domain that will be called `name`: anything but one
/// `Created domain <id> (<name>)` line stops the test. Returns the id and the whole
/// output (a log line about the new domain may already be in it: see [`await_log`]).
pub fn create(machine: &mut Machine, arguments: &str, name: &str) -> Result<(u32, String)> {
    let output = machine.run_command(&format!("create {arguments}"))?;
    match parse_created(&output, name) {
        Some(id) => Ok((id, output)),
        None => Err(machine.fail(format!(
            "`create {arguments}` should print one \"Created domain <id> ({name})\", printed:\n{output}"
        ))),
    }
}

/// The rest (trimmed) of the first line of `text` that contains `prefix`.
fn rest_after(text: &str, prefix: &str) -> Option<String> {
    text.lines().find_map(|line| line.split_once(prefix).map(|(_, rest)| rest.trim().to_owned()))
}

/// Waits up to `timeout` for the hypervisor's log line `domain <id> (<name>) <event>...`
/// of domain `(id, name)`, which may already be in `seen` (output read before); returns
/// the rest of the line after `event`, trimmed.
pub fn await_log(
    machine: &mut Machine,
    seen: &str,
    (id, name): (u32, &str),
    event: &str,
    timeout: Duration,
) -> Result<String> {
    let prefix = format!("domain {id} ({name}) {event}");
    if let Some(rest) = rest_after(seen, &prefix) {
        return Ok(rest);
    }
    let text = machine
        .expect(Pattern::regex(&format!("{}.*\n", regex_escape(&prefix))), timeout)
        .map_err(|error| error.context(format!("waiting for the log line {prefix:?}")))?;
    Ok(rest_after(text.lines().last().unwrap_or_default(), &prefix).unwrap_or_default())
}

/// `destroy <id>` of domain `(id, name)`: the command must be silent (log lines aside;
/// a soft failure otherwise), and its `domain <id> (<name>) destroyed` log line must come
/// within `timeout`.
pub fn destroy(
    machine: &mut Machine,
    (id, name): (u32, &str),
    timeout: Duration,
    failures: &mut Failures,
) -> Result<()> {
    let output = machine.run_command(&format!("destroy {id}"))?;
    failures.soft(machine.check(output_lines(&output).is_empty(), || {
        format!("`destroy {id}` should print nothing (bar the log line), printed:\n{output}")
    }))?;
    await_log(machine, &output, (id, name), "destroyed", timeout).map(drop)
}

// --- consoles ------------------------------------------------------------------------

/// Types `console <domain>` (a name or an id) at the prompt — once the prompt's trailing
/// cursor-position query is answered, so the answer cannot reach the guest — and waits
/// for the banner; returns the text up to and including it. The domain's kept output
/// (the replay) follows.
pub fn attach(machine: &mut Machine, domain: &str) -> Result<String> {
    machine.wait_prompt_query(PROMPT_QUERY_WAIT);
    machine.skip_pending_output();
    machine.send_line(&format!("console {domain}"))?;
    machine
        .expect(Pattern::regex(r"Connected to domain \d+ \(.*\)\. Escape character is '\^\]'\.\n"), COMMAND_TIMEOUT)
        .map_err(|error| error.context(format!("the banner of `console {domain}`")))
}

/// Leaves the console of `domain` with Ctrl-] and waits for the hypervisor's prompt;
/// returns what the console printed before the prompt.
pub fn detach(machine: &mut Machine, domain: &str) -> Result<String> {
    machine.send_bytes(CONSOLE_ESCAPE)?;
    machine.expect_prompt().map_err(|error| error.context(format!("the prompt after Ctrl-] on {domain}")))
}

#[cfg(test)]
mod tests;
