//! Driving the appliance's debugger, as tests/debugger.rs and the debugger benchmark
//! (src/bin/debugger-bench.rs) do: the guests they inspect, the virtio disks the cores
//! go to, an `mdb` session at the shell (open, one line at a time, `$q`), `dump-core`
//! and its last line, the shell's `poweroff` (so the disk images are complete), and the
//! host's `basalt-mdb` run on a core image after QEMU exited.
//!
//! An mdb session lives inside the hypervisor's shell: `mdb DOMAIN` prints a banner and
//! the debugger's prompt [`MDB_PROMPT`] at the start of a line; each line typed is
//! answered up to the next such prompt; `$q` brings back the shell's [`PROMPT`]. A
//! shell prompt where the debugger's was expected means the session never opened or
//! ended, which stops the caller.
//!
//! Timeouts are the callers' choice ([`MDB_TIMEOUT`], [`DUMP_TIMEOUT`] and
//! [`HOST_MDB_TIMEOUT`] fit the tests; the benchmark reads larger domains and allows
//! more); the functions that time an operation return how long it took from typing it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::workspace_root;
use crate::domains::{attach, create, detach, PROMPT_QUERY_WAIT};
use crate::linux_console::{await_ready, LINUX_BOOT_TIMEOUT};
use crate::machine::after_echo;
use crate::{Error, Machine, Pattern, Result, PROMPT};

/// The debugger's prompt.
pub const MDB_PROMPT: &str = "> ";
/// How long one mdb line may take in the tests (a Linux stack or message buffer is read
/// page by page through the guest's page tables, under TCG).
pub const MDB_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a dump-core of the 32 MiB callchain domain may take to reach its last line.
pub const DUMP_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the callchain guest may take from `create` to its ready line.
pub const GUEST_READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long QEMU may take to exit after the shell's `poweroff` (ACPI S5).
pub const POWEROFF_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one `basalt-mdb` run on the host may take in the tests.
pub const HOST_MDB_TIMEOUT: Duration = Duration::from_secs(120);

/// The test guest and its config name (qemu-tests/guests/callchain, configs/callchain.cfg:
/// 32 MiB, spinning in a call chain built with frame pointers).
pub const GUEST: &str = "callchain";
/// What the guest prints once its marker is in place, before the marker's address.
pub const GUEST_READY: &str = "CALLCHAIN-READY marker=";
/// The Linux domain (configs/linux1.cfg: 1 vCPU, 256 MiB).
pub const LINUX: &str = "linux1";

// --- disks ---------------------------------------------------------------------------

/// QEMU arguments attaching `image` (raw) as a virtio-blk disk with drive id `id`; the
/// first on the command line is dom0's `vda`, the second `vdb`, and so on.
pub fn virtio_disk_args(image: &Path, id: &str) -> [String; 4] {
    [
        "-drive".into(),
        format!("file={},format=raw,if=none,id={id}", image.display()),
        "-device".into(),
        format!("virtio-blk-pci,drive={id}"),
    ]
}

// --- parsing -------------------------------------------------------------------------

/// A hex number as mdb and the guest print it (`0x` optional, leading zeros allowed).
pub fn parse_hex(word: &str) -> Option<u64> {
    let digits = word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")).unwrap_or(word);
    if digits.is_empty() {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// The byte count and sha256 of dump-core's last line `dump-core: wrote B bytes to
/// DISK, sha256 H` (H 64 hex digits) among `text`'s lines.
pub fn parse_dump_line(text: &str, disk: &str) -> Option<(u64, String)> {
    text.lines().find_map(|line| {
        let rest = line.split_once("dump-core: wrote ")?.1;
        let (bytes, rest) = rest.split_once(" bytes to ")?;
        let sum = rest.strip_prefix(disk)?.strip_prefix(", sha256 ")?.trim();
        (sum.len() == 64 && sum.bytes().all(|byte| byte.is_ascii_hexdigit())).then_some(())?;
        Some((bytes.parse().ok()?, sum.to_owned()))
    })
}

/// The frame lines of `::cpustack` output (`name+0x1d()` or, for an address no symbol
/// covers, `0x101149()`); log lines and the dcmd's notes (`(no frame chain: ...)`,
/// `(unwinding by ... stopped: ...)`) dropped.
pub fn frame_lines(output: &str) -> Vec<&str> {
    crate::console_text::output_lines(output)
        .into_iter()
        .filter(|line| line.ends_with(')') && !line.starts_with('('))
        .collect()
}

// --- domains to inspect --------------------------------------------------------------

/// `create callchain`, its ready line on the console (the marker's address), back to
/// the shell. Returns the domain's id and the marker's address.
pub fn start_callchain(machine: &mut Machine) -> Result<(u32, u64)> {
    let (id, _) = create(machine, GUEST, GUEST)?;
    attach(machine, GUEST)?;
    machine
        .expect(GUEST_READY, GUEST_READY_TIMEOUT)
        .map_err(|error| error.context(format!("{GUEST}'s ready line {GUEST_READY:?}")))?;
    let rest = machine.expect(Pattern::regex(r"\S+\n"), GUEST_READY_TIMEOUT)?;
    let Some(marker) = parse_hex(rest.trim()) else {
        return Err(
            machine.fail(format!("{GUEST}'s ready line should end in the marker's hex address, ended {rest:?}"))
        );
    };
    detach(machine, GUEST)?;
    Ok((id, marker))
}

/// `create linux1`, its console until Linux's shell is up, back to the hypervisor's
/// shell. Returns the time from the console's attach to Linux's shell.
pub fn start_linux(machine: &mut Machine) -> Result<Duration> {
    create(machine, LINUX, LINUX)?;
    attach(machine, LINUX)?;
    let boot = await_ready(machine, LINUX, LINUX_BOOT_TIMEOUT)?;
    detach(machine, LINUX)?;
    Ok(boot)
}

// --- the mdb session -----------------------------------------------------------------

/// Ends of what the shell prints after an mdb line: the debugger's prompt at the start
/// of a line, or the hypervisor's (the session ended or never opened).
pub fn after_line_pattern() -> Pattern {
    Pattern::regex(&format!("^{MDB_PROMPT}|{PROMPT}"))
}

/// Types `line` and waits up to `timeout` for the next debugger prompt: the text before
/// that prompt (the echo included) and the time from typing the line. The shell's
/// prompt instead is an error saying `when_shell` (what it means for this line).
fn exchange(machine: &mut Machine, line: &str, timeout: Duration, when_shell: &str) -> Result<(String, Duration)> {
    machine.skip_pending_output();
    let started = Instant::now();
    machine.send_line(line)?;
    let text = machine
        .expect(after_line_pattern(), timeout)
        .map_err(|error| error.context(format!("the debugger's prompt after {line:?}")))?;
    let elapsed = started.elapsed();
    if text.ends_with(PROMPT) {
        return Err(machine.fail(format!("{line:?}: {when_shell}, printed:\n{text}")));
    }
    let before = text.strip_suffix(MDB_PROMPT).unwrap_or(&text);
    Ok((before.to_owned(), elapsed))
}

/// Types `mdb <domain>` at the shell's prompt and waits up to `timeout` for the
/// debugger's prompt; returns what came before it (the banner, if any) and the time
/// from typing the command. The shell's prompt instead (the command refused) stops the
/// caller.
pub fn mdb_open(machine: &mut Machine, domain: &str, timeout: Duration) -> Result<(String, Duration)> {
    let command = format!("mdb {domain}");
    let when_shell = format!("should open a session with the prompt {MDB_PROMPT:?}");
    let (before, elapsed) = exchange(machine, &command, timeout, &when_shell)?;
    let banner = after_echo(&before, &format!("{command}\n")).unwrap_or(before);
    Ok((banner, elapsed))
}

/// Runs one line in the open mdb session, waiting up to `timeout`; returns its output
/// (the echo and the next prompt removed, log lines kept) and the time from typing the
/// line. A session that ends (the shell's prompt comes back), or no echo of the line,
/// stops the caller.
pub fn mdb_line(machine: &mut Machine, line: &str, timeout: Duration) -> Result<(String, Duration)> {
    let (before, elapsed) = exchange(machine, line, timeout, "the mdb session ended")?;
    match after_echo(&before, &format!("{line}\n")) {
        Some(output) => Ok((output.trim_end_matches('\n').to_owned(), elapsed)),
        None => Err(machine.fail(format!("echo of the mdb line {line:?} not found before the prompt in:\n{before}"))),
    }
}

/// `$q`: waits for the shell's prompt; returns everything printed before it (the echo
/// included), for callers that check the session ended quietly.
pub fn mdb_quit(machine: &mut Machine) -> Result<String> {
    machine.skip_pending_output();
    machine.send_line("$q")?;
    machine.expect_prompt().map_err(|error| error.context("the shell's prompt after `$q`"))
}

// --- dump-core and poweroff ----------------------------------------------------------

/// What one dump-core reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Dump {
    /// The core's size in bytes.
    pub bytes: u64,
    /// The lower-case hex sha256 of those bytes, as dump-core printed it.
    pub sha256: String,
    /// From typing the command to its `wrote` line.
    pub elapsed: Duration,
    /// What the shell printed after the `wrote` line, up to the prompt.
    pub after: String,
}

/// Types `dump-core <arguments> <disk>` and waits (up to `timeout`) for its last line
/// `dump-core: wrote <N> bytes to <disk>, sha256 <H>`, then for the prompt. Anything
/// else (an `error:` line, no such line, an empty core) stops the caller.
pub fn dump_core(machine: &mut Machine, arguments: &str, disk: &str, timeout: Duration) -> Result<Dump> {
    let command = format!("dump-core {arguments} {disk}");
    machine.skip_pending_output();
    let started = Instant::now();
    machine.send_line(&command)?;
    let done = Pattern::regex(&format!(r"dump-core: wrote \d+ bytes to {disk}, sha256 [0-9a-f]+\n|error:.*\n"));
    let text = machine.expect(done, timeout).map_err(|error| error.context(format!("the last line of `{command}`")))?;
    let elapsed = started.elapsed();
    let after = machine.expect_prompt().map_err(|error| error.context(format!("the prompt after `{command}`")))?;
    match parse_dump_line(text.lines().last().unwrap_or_default(), disk) {
        Some((bytes, sha256)) if bytes > 0 => Ok(Dump { bytes, sha256, elapsed, after }),
        _ => Err(machine.fail(format!(
            "`{command}` should print \"dump-core: wrote N bytes to {disk}, sha256 <64 hex digits>\", printed:\n{text}{after}"
        ))),
    }
}

/// The shell's `poweroff`: QEMU must exit cleanly (ACPI S5) within
/// [`POWEROFF_TIMEOUT`], so the disk images are complete.
pub fn power_off(machine: &mut Machine) -> Result<()> {
    machine.wait_prompt_query(PROMPT_QUERY_WAIT);
    machine.skip_pending_output();
    machine.send_line("poweroff")?;
    let status = machine.wait_exit(POWEROFF_TIMEOUT)?;
    if machine.is_clean_exit(status) {
        Ok(())
    } else {
        Err(machine.fail(format!("`poweroff` did not power off cleanly: {}", machine.explain_exit(status))))
    }
}

// --- the host's basalt-mdb -----------------------------------------------------------

/// `$BASALT_MDB`, else `basalt-mdb` in cargo's release directory (`$CARGO_TARGET_DIR`
/// or `<workspace>/target`); an error says how to build it unless it is a file.
pub fn host_mdb() -> Result<PathBuf> {
    let path = match std::env::var_os("BASALT_MDB") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => {
            let target = match std::env::var_os("CARGO_TARGET_DIR") {
                Some(directory) if !directory.is_empty() => PathBuf::from(directory),
                _ => workspace_root().join("target"),
            };
            target.join("release").join("basalt-mdb")
        }
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::new(format!(
            "{} does not exist: run `cargo build -p basalt-debugger --release --bin basalt-mdb` (or set BASALT_MDB)",
            path.display()
        )))
    }
}

/// Reads all of `pipe` on a thread of its own, so a child that prints more than a pipe
/// holds (`::msgbuf` does) is not blocked while it is waited for.
fn read_on_thread(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Runs `<program> <image> -e <line>...` and returns its standard output and the wall
/// time of the whole process; it must exit with status 0 within `timeout`.
pub fn run_host_mdb(program: &Path, image: &Path, lines: &[&str], timeout: Duration) -> Result<(String, Duration)> {
    let described = format!(
        "{} {} {}",
        program.display(),
        image.display(),
        lines.iter().map(|line| format!("-e '{line}'")).collect::<Vec<_>>().join(" ")
    );
    let mut command = Command::new(program);
    command.arg(image);
    for line in lines {
        command.arg("-e").arg(line);
    }
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| Error::new(format!("cannot run {described}: {error}")))?;
    let stdout = read_on_thread(child.stdout.take());
    let stderr = read_on_thread(child.stderr.take());
    let deadline = started + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|error| Error::new(format!("{described}: {error}")))? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::new(format!("`{described}` did not finish within {timeout:?}")));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&stdout.join().unwrap_or_default()).into_owned();
    if !status.success() {
        let stderr = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
        return Err(Error::new(format!("`{described}` exited with {status}:\n{stdout}\nstandard error:\n{stderr}")));
    }
    Ok((stdout, elapsed))
}

#[cfg(test)]
mod tests;
