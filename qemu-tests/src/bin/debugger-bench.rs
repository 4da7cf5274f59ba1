//! `make bench`, debugger part: how long the debugger's operations take on a real
//! Linux domain and on the small test guest, live in the appliance and on the host.
//!
//! One boot of `build/basalt-test.img` (QEMU TCG, AMD SVM + NPT, 2 CPUs, 1 GiB, BIOS,
//! IDE boot disk) with two zeroed sparse virtio-blk disks this program creates: `vda`
//! (512 MiB, the Linux core) and `vdb` (64 MiB, the test guest's core). On it, in order:
//!
//! - `create callchain` (qemu-tests/guests/callchain, 32 MiB, spinning in its call
//!   chain), then N times `dump-core callchain vdb`: host wall time from typing the
//!   command to its last line `dump-core: wrote B bytes to vdb, sha256 H`, the core's B
//!   bytes and B / time. Then the guest is destroyed, so its spinning vCPU does not
//!   share the emulated CPUs with what follows.
//! - `create linux1` (Debian's cloud kernel + the busybox initramfs, 1 vCPU, 256 MiB)
//!   to its shell. Then N mdb sessions, each after 2 s of quiet (the guest idles):
//!   `mdb linux1` until the `> ` prompt (the session finds vmcoreinfo and reads the
//!   kernel's kallsyms out of guest memory; the banner's symbol count is reported),
//!   then `::cpustack`, `::msgbuf` (its line count reported) and `::evtchns`, each from
//!   typing the line to the next prompt, and `$q`.
//! - N times `dump-core linux1 vda`, timed like the callchain dumps (dump-core holds
//!   the domain paused while it writes); then the shell's `poweroff`.
//!
//! After QEMU exited, on the host: N runs each of `basalt-mdb <vda image> -e ::status`
//! (opening the core and loading symbols from the kallsyms inside it) and `-e ::msgbuf`,
//! wall time of the whole process. The program is `target/release/basalt-mdb` (or
//! `$BASALT_MDB`): `cargo build --release -p basalt-debugger --bin basalt-mdb`.
//!
//! Each figure is the median of N (default 3, `--runs N`) with the range; all of it is
//! TCG on the host, so absolute numbers depend on the host and its load.

use std::path::Path;
use std::time::Duration;

use qemu_tests::config::QEMU_DEFAULT_CPU;
use qemu_tests::console_text::output_lines;
use qemu_tests::debugger::{
    self, frame_lines, host_mdb, mdb_line, mdb_open, mdb_quit, power_off, run_host_mdb, start_callchain, start_linux,
    virtio_disk_args, Dump, GUEST, LINUX,
};
use qemu_tests::disk_images::DiskImages;
use qemu_tests::domains::{destroy, PROMPT_QUERY_WAIT};
use qemu_tests::linux_console::linux_test_config;
use qemu_tests::{Error, Failures, Machine, MachineConfig, Result};

/// How long opening a session or one dcmd may take (kallsyms and the message buffer of
/// the Linux domain are read page by page through the guest's page tables, under TCG):
/// more than the tests allow, as the benchmark also runs on loaded hosts.
const MDB_TIMEOUT: Duration = Duration::from_secs(300);
/// How long one dump-core may take to reach its last line (the 256 MiB Linux domain's).
const DUMP_TIMEOUT: Duration = Duration::from_secs(900);
/// How long one `basalt-mdb` run on the host may take (kallsyms from the Linux core).
const HOST_MDB_TIMEOUT: Duration = Duration::from_secs(300);
/// Quiet before each mdb session, so the Linux vCPU is idle in the kernel when paused.
const SETTLE: Duration = Duration::from_secs(2);
/// dom0's names of the two disks, in command-line order.
const LINUX_CORE_DISK: &str = "vda";
const GUEST_CORE_DISK: &str = "vdb";
const LINUX_CORE_DISK_BYTES: u64 = 512 << 20;
const GUEST_CORE_DISK_BYTES: u64 = 64 << 20;
/// What `::msgbuf` of the Linux domain must hold (start_kernel's first line).
const LINUX_FIRST_MESSAGE: &str = "Linux version 6.1.0-";
/// The dcmds timed in each Linux session.
const DCMDS: [&str; 3] = ["::cpustack", "::msgbuf", "::evtchns"];

// --- parsing -------------------------------------------------------------------------

/// What mdb's banner `Loading live domain N (NAME): 1 vCPU, 256 MiB, SYMBOLS` says about
/// symbols (`87347 symbols (kallsyms in guest memory)`).
fn banner_symbols(text: &str) -> Option<&str> {
    let line = text.lines().find(|line| line.contains("Loading live domain "))?;
    line.rsplit_once(" MiB, ").map(|(_, symbols)| symbols.trim())
}

/// The lines of `::msgbuf` output, which must hold Linux's first boot message. Counted
/// on the raw text: each line starts with a `[    0.000000]` time stamp, which the
/// harness's output filter would take for the hypervisor's log lines.
fn message_lines(output: &str) -> Option<usize> {
    output.contains(LINUX_FIRST_MESSAGE).then(|| output.lines().filter(|line| !line.trim().is_empty()).count())
}

/// Median, lowest and highest of `values` (None if empty).
fn spread(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some((*sorted.get(sorted.len() / 2)?, *sorted.first()?, *sorted.last()?))
}

/// `12.3 s (12.1–12.9)` (seconds; milliseconds under one second), or `-` for no runs.
fn describe_seconds(values: &[f64]) -> String {
    match spread(values) {
        Some((median, low, high)) if high < 1.0 => {
            format!("{:.0} ms ({:.0}–{:.0})", median * 1e3, low * 1e3, high * 1e3)
        }
        Some((median, low, high)) => format!("{median:.2} s ({low:.2}–{high:.2})"),
        None => "-".to_owned(),
    }
}

// --- the appliance's shell -----------------------------------------------------------

/// `dump-core DOMAIN DISK` once the prompt's cursor-position query is answered, timed
/// from typing the command to its last line.
fn dump_core(machine: &mut Machine, domain: &str, disk: &str) -> Result<Dump> {
    machine.wait_prompt_query(PROMPT_QUERY_WAIT);
    debugger::dump_core(machine, domain, disk, DUMP_TIMEOUT)
}

/// What the Linux sessions measured: seconds per run of the open and of each of
/// [`DCMDS`], with the last session's banner symbols, frames and message lines.
#[derive(Default)]
struct Sessions {
    open: Vec<f64>,
    dcmds: [Vec<f64>; DCMDS.len()],
    symbols: String,
    frames: usize,
    message_lines: usize,
}

fn linux_sessions(machine: &mut Machine, runs: usize) -> Result<Sessions> {
    let mut sessions = Sessions::default();
    for run in 1..=runs {
        std::thread::sleep(SETTLE);
        machine.wait_prompt_query(PROMPT_QUERY_WAIT);
        let (banner, open) = mdb_open(machine, LINUX, MDB_TIMEOUT)?;
        let open = open.as_secs_f64();
        sessions.symbols = banner_symbols(&banner).unwrap_or("(no banner)").to_owned();
        sessions.open.push(open);
        let mut report = format!("mdb {LINUX} run {run}/{runs}: open {open:.2} s ({})", sessions.symbols);
        for (index, dcmd) in DCMDS.iter().enumerate() {
            let (output, elapsed) = mdb_line(machine, dcmd, MDB_TIMEOUT)?;
            let seconds = elapsed.as_secs_f64();
            if output_lines(&output).iter().any(|line| line.starts_with("error:")) {
                return Err(machine.fail(format!("`{dcmd}` on {LINUX} failed:\n{output}")));
            }
            match *dcmd {
                "::cpustack" => sessions.frames = frame_lines(&output).len(),
                "::msgbuf" => {
                    sessions.message_lines = message_lines(&output).ok_or_else(|| {
                        machine.fail(format!("`::msgbuf` on {LINUX} lacks {LINUX_FIRST_MESSAGE:?}:\n{output}"))
                    })?;
                }
                _ => {}
            }
            if let Some(samples) = sessions.dcmds.get_mut(index) {
                samples.push(seconds);
            }
            report += &format!(", {dcmd} {seconds:.2} s");
        }
        mdb_quit(machine)?;
        eprintln!("{report}");
    }
    Ok(sessions)
}

/// `runs` dump-cores of `domain` onto `disk`.
fn dumps(machine: &mut Machine, domain: &str, disk: &str, runs: usize) -> Result<Vec<Dump>> {
    let mut samples = Vec::new();
    for run in 1..=runs {
        let dump = dump_core(machine, domain, disk)?;
        eprintln!(
            "dump-core {domain} {disk} run {run}/{runs}: {} bytes in {:.2} s ({:.1} MB/s)",
            dump.bytes,
            dump.elapsed.as_secs_f64(),
            dump.bytes as f64 / 1e6 / dump.elapsed.as_secs_f64()
        );
        samples.push(dump);
    }
    Ok(samples)
}

/// `create callchain` to its ready line, `runs` dumps, `destroy`.
fn callchain_dumps(machine: &mut Machine, runs: usize) -> Result<Vec<Dump>> {
    let (id, _) = start_callchain(machine)?;
    let samples = dumps(machine, GUEST, GUEST_CORE_DISK, runs)?;
    let mut failures = Failures::new();
    destroy(machine, (id, GUEST), Duration::from_secs(60), &mut failures)?;
    failures.finish()?;
    Ok(samples)
}

/// Everything measured on the one boot.
struct Live {
    guest_dumps: Vec<Dump>,
    sessions: Sessions,
    linux_dumps: Vec<Dump>,
}

fn on_the_appliance(linux_core: &Path, guest_core: &Path, runs: usize) -> Result<Live> {
    let mut config = linux_test_config(MachineConfig::standard(qemu_tests::EmulatorKind::Qemu).with_memory_mib(1024))?;
    for (image, id) in [(linux_core, "linuxcore"), (guest_core, "guestcore")] {
        config.extra_args.extend(virtio_disk_args(image, id));
    }
    let (mut machine, _) = Machine::boot_to_prompt(config, "debugger-bench")?;
    let machine = &mut machine;
    let guest_dumps = callchain_dumps(machine, runs)?;
    let boot = start_linux(machine)?;
    eprintln!("{LINUX} ready after {:.1} s", boot.as_secs_f64());
    let sessions = linux_sessions(machine, runs)?;
    let linux_dumps = dumps(machine, LINUX, LINUX_CORE_DISK, runs)?;
    power_off(machine)?;
    eprintln!("transcript: {}", machine.transcript_path().display());
    Ok(Live { guest_dumps, sessions, linux_dumps })
}

// --- the host ------------------------------------------------------------------------

/// `basalt-mdb <image> -e <line>`, timed: (standard output, seconds).
fn host_mdb_timed(program: &Path, image: &Path, line: &str) -> Result<(String, f64)> {
    run_host_mdb(program, image, &[line], HOST_MDB_TIMEOUT).map(|(output, elapsed)| (output, elapsed.as_secs_f64()))
}

/// Seconds per run of `-e ::status` and of `-e ::msgbuf`, and ::msgbuf's line count.
fn on_the_host(image: &Path, runs: usize) -> Result<(Vec<f64>, Vec<f64>, usize)> {
    let program = host_mdb()?;
    let (mut status, mut messages, mut lines) = (Vec::new(), Vec::new(), 0);
    for run in 1..=runs {
        let (output, seconds) = host_mdb_timed(&program, image, "::status")?;
        if !output.contains(LINUX) {
            return Err(Error::new(format!("basalt-mdb's ::status should name {LINUX}, printed:\n{output}")));
        }
        status.push(seconds);
        let (output, message_seconds) = host_mdb_timed(&program, image, "::msgbuf")?;
        lines = message_lines(&output).ok_or_else(|| {
            Error::new(format!("basalt-mdb's ::msgbuf should hold {LINUX_FIRST_MESSAGE:?}, printed:\n{output}"))
        })?;
        messages.push(message_seconds);
        eprintln!(
            "basalt-mdb run {run}/{runs}: ::status {seconds:.2} s, ::msgbuf {message_seconds:.2} s ({lines} lines)"
        );
    }
    Ok((status, messages, lines))
}

// --- main ----------------------------------------------------------------------------

/// The row of a set of dumps: time, bytes, MB/s (each run's own, then the median).
fn dump_row(label: String, dumps: &[Dump]) -> (String, String) {
    let seconds: Vec<f64> = dumps.iter().map(|dump| dump.elapsed.as_secs_f64()).collect();
    let rates: Vec<f64> = dumps.iter().map(|dump| dump.bytes as f64 / 1e6 / dump.elapsed.as_secs_f64()).collect();
    let bytes = dumps.last().map_or(0, |dump| dump.bytes);
    let rate = spread(&rates).map_or_else(|| "-".to_owned(), |(median, _, _)| format!("{median:.1} MB/s"));
    (label, format!("{}, {bytes} bytes ({:.1} MiB), {rate}", describe_seconds(&seconds), bytes as f64 / 1048576.0))
}

fn main() {
    let args = qemu_tests::report::bench_args_or_exit(&[], "debugger-bench [--runs N]");
    let runs = args.runs;
    let fail = |error: Error| -> ! {
        eprintln!("debugger-bench failed:\n{error}");
        std::process::exit(1)
    };
    if let Err(error) = host_mdb() {
        fail(error);
    }
    let mut images = DiskImages::new("debugger-bench", "cores").unwrap_or_else(|error| fail(error));
    let linux_core = images.create("linux-core.img", LINUX_CORE_DISK_BYTES).unwrap_or_else(|error| fail(error));
    let guest_core = images.create("guest-core.img", GUEST_CORE_DISK_BYTES).unwrap_or_else(|error| fail(error));
    let live = on_the_appliance(&linux_core, &guest_core, runs).unwrap_or_else(|error| {
        images.keep = true;
        fail(error.context(format!("disk images kept in {}", images.directory.display())))
    });
    let (host_status, host_messages, host_lines) = on_the_host(&linux_core, runs).unwrap_or_else(|error| {
        images.keep = true;
        fail(error.context(format!("disk images kept in {}", images.directory.display())))
    });

    let sessions = &live.sessions;
    let mut rows = vec![
        dump_row(
            format!("`dump-core {LINUX} {LINUX_CORE_DISK}` (256 MiB Linux domain, 512 MiB disk)"),
            &live.linux_dumps,
        ),
        dump_row(format!("`dump-core {GUEST} {GUEST_CORE_DISK}` (32 MiB test guest, 64 MiB disk)"), &live.guest_dumps),
        (format!("`mdb {LINUX}` → `> ` ({})", sessions.symbols), describe_seconds(&sessions.open)),
    ];
    for (dcmd, samples) in DCMDS.iter().zip(&sessions.dcmds) {
        let note = match *dcmd {
            "::cpustack" => format!(" ({} frames)", sessions.frames),
            "::msgbuf" => format!(" ({} lines)", sessions.message_lines),
            _ => String::new(),
        };
        rows.push((format!("`{dcmd}` on {LINUX}{note}"), describe_seconds(samples)));
    }
    rows.push((
        "host `basalt-mdb <core> -e ::status` (open + kallsyms in the core)".to_owned(),
        describe_seconds(&host_status),
    ));
    rows.push((format!("host `basalt-mdb <core> -e ::msgbuf` ({host_lines} lines)"), describe_seconds(&host_messages)));
    println!(
        "\nDebugger benchmark: basalt-test.img, QEMU TCG -cpu {QEMU_DEFAULT_CPU}, 2 CPUs; host wall time, medians of {runs} runs (range)\n"
    );
    qemu_tests::report::print_table(&rows);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_banner() {
        let banner = "\nLoading live domain 2 (linux1): 1 vCPU, 256 MiB, 87347 symbols (kallsyms in guest memory)\n";
        assert_eq!(banner_symbols(banner), Some("87347 symbols (kallsyms in guest memory)"));
        assert_eq!(banner_symbols("error: no domain"), None);
    }

    #[test]
    fn counts_message_lines_with_their_time_stamps() {
        let output = "[    0.000000] Linux version 6.1.0-56-cloud-amd64\n[    0.000000] Command line: console=hvc0\n\n";
        assert_eq!(message_lines(output), Some(2));
        assert_eq!(message_lines("error: no message buffer"), None);
    }

    #[test]
    fn median_and_range() {
        assert_eq!(spread(&[3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(spread(&[]), None);
        assert_eq!(describe_seconds(&[12.5, 12.25, 13.0]), "12.50 s (12.25–13.00)");
        assert_eq!(describe_seconds(&[0.25, 0.5, 0.125]), "250 ms (125–500)");
        assert_eq!(describe_seconds(&[]), "-");
    }
}
