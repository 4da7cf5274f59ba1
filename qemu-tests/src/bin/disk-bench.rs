//! `make bench`, disk part: sequential write, sequential read and 4 KiB random-read
//! figures of one emulated virtio-blk disk, measured three ways in one run on one host:
//!
//! - **dom0**: Basalt's own `disk-bench vda 32` shell command on the raw device
//!   (builtin-dom0's virtio-blk driver, no guest), before any domain holds it;
//! - **domU on Basalt**: `create linuxdisk` (Debian's cloud kernel, 1 vCPU, 256 MiB,
//!   `disk = ['phy:vda,xvda,w']`), and in it `blkbench /dev/xvda 32` — xen-blkfront →
//!   Basalt's blkif back end → the same driver and device;
//! - **Linux direct**: the same kernel (its vmlinux) and the same initramfs booted by
//!   QEMU itself (1 CPU, 256 MiB), `blkbench /dev/vda 32` through Linux's virtio_blk.
//!
//! Both Basalt figures come from one boot of `build/basalt-bench.img` (QEMU TCG, AMD
//! SVM with NPT, 2 CPUs, 2 GiB; `make bench-image`: the hypervisor, the kernel, an initramfs
//! that is the payload's plus `/usr/bin/blkbench` and virtio-blk's modules, and
//! configs/linuxdisk.cfg). Each QEMU gets its own 64 MiB raw disk file, written out in
//! full (no sparse holes) in a temporary directory, as `-drive ...,if=none` +
//! `-device virtio-blk-pci` with QEMU's default cache mode: both see the same host path.
//!
//! The workload (guest-payload/blkbench.c) is dom0's `disk-bench` rebuilt for Linux:
//! 32 MiB in 128 KiB O_DIRECT writes then fsync, the same range read back in 128 KiB
//! O_DIRECT reads and compared, then 4 KiB O_DIRECT reads at random aligned offsets
//! (same generator and seed) until 4096 reads or 3 s; queue depth 1 throughout. O_DIRECT
//! keeps Linux's page cache out: every request reaches the device. Times are the
//! guest's CLOCK_MONOTONIC. Without blkbench in the initramfs (no static C toolchain
//! when it was built, or `--dd`) the guests run busybox dd instead — 128 KiB
//! `oflag=direct conv=fsync` / `iflag=direct` for the sequential figures and a shell
//! loop of one-block dd for the random reads, timed with /proc/uptime (10 ms) — and the
//! table says so: that random-read figure counts process creation, not the disk.
//!
//! Each figure is the median of N runs (default 3) on one boot. All of it is TCG on the
//! host, so absolute numbers depend on the host and its load; the ratios are the figures
//! to compare. `--direct-only` skips Basalt, `--runs N` changes N, `--dd` forces the
//! busybox dd workload; `BASALT_BENCH_IMAGE` names another image to boot.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use qemu_tests::config::{workspace_root, QEMU_DEFAULT_CPU};
use qemu_tests::console_text::output_lines;
use qemu_tests::{Firmware, Machine, MachineConfig, Medium, COMMAND_TIMEOUT, PROMPT};

/// What the payload's init prints on the console once the system is up.
const READY_MARKER: &str = "BASALT-LINUX-READY";
/// The payload shell's prompt (PS1 in guest-payload/rootfs/etc/profile).
const LINUX_PROMPT: &str = "linux# ";
/// The Linux config with dom0's `vda` as its xvda.
const CONFIG: &str = "linuxdisk";
/// The disk's name in dom0.
const DOM0_DISK: &str = "vda";
/// Mebibytes each run writes and reads (dom0's `disk-bench` default).
const MEBIBYTES: u32 = 32;
/// Size of each QEMU's disk file.
const DISK_BYTES: usize = 64 << 20;
/// Where the bench initramfs puts the workload program.
const HELPER: &str = "/usr/bin/blkbench";
/// Sequential request size of the workload (and of the dd fallback).
const SEQUENTIAL_REQUEST_BYTES: u64 = 128 * 1024;
/// Upper bound on the random reads of the dd fallback (it also stops after 3 s).
const FALLBACK_RANDOM_READS: u32 = 4096;
/// How long Linux may take to boot to its shell (TCG; Basalt's SVM path emulates
/// every exit).
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long one benchmark run (one command) may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// Ctrl-]: ends `console`.
const CONSOLE_ESCAPE: &[u8] = b"\x1d";
/// Lines that mean a Linux guest is dead.
const LINUX_FATAL_MARKERS: [&str; 2] = ["Kernel panic - not syncing", ") crashed: "];

/// One run's result.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Figures {
    write_mb_per_s: f64,
    read_mb_per_s: f64,
    random_iops: f64,
}

/// How a guest run was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Blkbench,
    BusyboxDd,
}

/// `$BASALT_BENCH_IMAGE`, else `<workspace>/build/basalt-bench.img` (the override
/// compares two hypervisor builds on the same workload).
fn bench_image() -> PathBuf {
    match std::env::var_os("BASALT_BENCH_IMAGE") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => workspace_root().join("build").join("basalt-bench.img"),
    }
}

fn bench_initramfs() -> PathBuf {
    workspace_root().join("build").join("bench").join("initramfs-bench.cpio.gz")
}

fn vmlinux() -> PathBuf {
    workspace_root().join("build").join("guests").join("vmlinux")
}

// --- parsing -------------------------------------------------------------------------

/// The number right after `prefix` in `text` (digits and one decimal point).
fn number_after(text: &str, prefix: &str) -> Option<f64> {
    let start = text.find(prefix)? + prefix.len();
    let rest = &text[start..];
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// dom0's line: `disk-bench vda: 32 MiB sequential write X MB/s, sequential read Y
/// MB/s, 4 KiB random read Z IOPS`.
fn parse_dom0_line(text: &str) -> Option<Figures> {
    let line = text.lines().find(|line| line.contains(&format!("disk-bench {DOM0_DISK}:")))?;
    let figures = Figures {
        write_mb_per_s: number_after(line, "sequential write ")?,
        read_mb_per_s: number_after(line, "sequential read ")?,
        random_iops: number_after(line, "random read ")?,
    };
    line.contains("IOPS").then_some(figures)
}

/// blkbench's `blkbench-raw bytes=B write_ns=N read_ns=N random_reads=R random_ns=N`.
fn parse_blkbench_raw(text: &str) -> Option<Figures> {
    let line = text.lines().find_map(|line| line.find("blkbench-raw ").map(|start| &line[start..]))?;
    let field = |name: &str| -> Option<f64> {
        line.split_whitespace().find_map(|word| word.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
    };
    let (bytes, write_ns, read_ns) = (field("bytes")?, field("write_ns")?, field("read_ns")?);
    let (random_reads, random_ns) = (field("random_reads")?, field("random_ns")?);
    if write_ns <= 0.0 || read_ns <= 0.0 || random_ns <= 0.0 {
        return None;
    }
    Some(Figures {
        write_mb_per_s: bytes / 1e6 / (write_ns / 1e9),
        read_mb_per_s: bytes / 1e6 / (read_ns / 1e9),
        random_iops: random_reads / (random_ns / 1e9),
    })
}

/// The seconds blkbench timed in all (write, read and random phases), from its raw line.
fn guest_seconds(text: &str) -> Option<f64> {
    let line = text.lines().find_map(|line| line.find("blkbench-raw ").map(|start| &line[start..]))?;
    let mut total = 0.0;
    for name in ["write_ns=", "read_ns=", "random_ns="] {
        total += line.split_whitespace().find_map(|word| word.strip_prefix(name)?.parse::<f64>().ok())?;
    }
    Some(total / 1e9)
}

/// The dd fallback's `dd-time <label> <count> <start> <end>` (`/proc/uptime` seconds):
/// (count, seconds).
fn parse_dd_time(text: &str, label: &str) -> Option<(f64, f64)> {
    let line = text.lines().find_map(|line| line.find("dd-time ").map(|start| &line[start..]))?;
    match line.split_whitespace().collect::<Vec<_>>()[..] {
        ["dd-time", found, count, start, end] if found == label => {
            let (count, start, end): (f64, f64, f64) = (count.parse().ok()?, start.parse().ok()?, end.parse().ok()?);
            (end > start).then_some((count, end - start))
        }
        _ => None,
    }
}

/// The median of each figure over `runs` (each figure on its own).
fn median(runs: &[Figures]) -> Option<Figures> {
    let middle = |mut values: Vec<f64>| -> Option<f64> {
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied()
    };
    Some(Figures {
        write_mb_per_s: middle(runs.iter().map(|run| run.write_mb_per_s).collect())?,
        read_mb_per_s: middle(runs.iter().map(|run| run.read_mb_per_s).collect())?,
        random_iops: middle(runs.iter().map(|run| run.random_iops).collect())?,
    })
}

fn describe(figures: &Figures) -> String {
    format!(
        "write {:.1} MB/s, read {:.1} MB/s, 4 KiB random read {:.0} IOPS",
        figures.write_mb_per_s, figures.read_mb_per_s, figures.random_iops
    )
}

fn describe_ratio(top: &Figures, bottom: &Figures) -> String {
    let ratio = |a: f64, b: f64| if b > 0.0 { format!("{:.2}", a / b) } else { "-".to_owned() };
    format!(
        "write {}, read {}, random read {}",
        ratio(top.write_mb_per_s, bottom.write_mb_per_s),
        ratio(top.read_mb_per_s, bottom.read_mb_per_s),
        ratio(top.random_iops, bottom.random_iops)
    )
}

// --- the workload in a Linux shell ---------------------------------------------------

/// A Linux shell on a serial line: types a command, returns its output lines.
trait LinuxShell {
    /// Runs `command` and returns what it printed between two marker lines.
    fn run(&mut self, command: &str, timeout: Duration) -> Result<Vec<String>, String>;
}

/// The workload of one run on `device`, by `method`; the output's figures.
fn workload_once(shell: &mut dyn LinuxShell, device: &str, method: Method) -> Result<Figures, String> {
    match method {
        Method::Blkbench => {
            let started = Instant::now();
            let lines = shell.run(&format!("{HELPER} {device} {MEBIBYTES} 2>&1"), RUN_TIMEOUT)?;
            let host_seconds = started.elapsed().as_secs_f64();
            let text = lines.join("\n");
            let figures = parse_blkbench_raw(&text).ok_or_else(|| format!("blkbench printed no result:\n{text}"))?;
            // The figures use the guest's clock; the host's wall time around the whole
            // command (typing, process start, output) bounds it from above, so a guest
            // clock running fast or slow shows here.
            if let Some(guest_seconds) = guest_seconds(&text) {
                eprintln!(
                    "  guest clock {guest_seconds:.2} s of timed I/O, host wall {host_seconds:.2} s for the command"
                );
            }
            Ok(figures)
        }
        Method::BusyboxDd => {
            let requests = u64::from(MEBIBYTES) * 1024 * 1024 / SEQUENTIAL_REQUEST_BYTES;
            let bytes = (requests * SEQUENTIAL_REQUEST_BYTES) as f64;
            // /proc/uptime around each phase: one `read` builtin, no process.
            let timed = |label: &str, count: &str, body: &str| {
                format!(
                    "read a _ </proc/uptime; {body}; s=$?; read b _ </proc/uptime; \
                     [ $s -eq 0 ] && echo dd-time {label} {count} $a $b"
                )
            };
            let write = timed(
                "write",
                "1",
                &format!(
                    "dd if=/dev/zero of={device} bs={SEQUENTIAL_REQUEST_BYTES} count={requests} oflag=direct conv=fsync 2>/dev/null"
                ),
            );
            let read = timed(
                "read",
                "1",
                &format!("dd if={device} of=/dev/null bs={SEQUENTIAL_REQUEST_BYTES} count={requests} iflag=direct 2>/dev/null"),
            );
            // Until FALLBACK_RANDOM_READS reads or 3 s (uptime in centiseconds: its
            // integer part is never 0 this long after boot).
            let slots = requests * SEQUENTIAL_REQUEST_BYTES / 4096;
            let random = format!(
                "n=0; read a _ </proc/uptime; t=${{a%.*}}${{a#*.}}; u=$t; \
                 while [ $n -lt {FALLBACK_RANDOM_READS} ] && [ $((u - t)) -lt 300 ]; do \
                 dd if={device} of=/dev/null bs=4096 count=1 skip=$((RANDOM % {slots})) iflag=direct 2>/dev/null || break; \
                 n=$((n + 1)); read b _ </proc/uptime; u=${{b%.*}}${{b#*.}}; done; \
                 read b _ </proc/uptime; echo dd-time random $n $a $b"
            );
            let mut seconds = Vec::new();
            for (label, command) in [("write", write), ("read", read), ("random", random)] {
                let lines = shell.run(&command, RUN_TIMEOUT)?;
                let (count, elapsed) = parse_dd_time(&lines.join("\n"), label)
                    .ok_or_else(|| format!("dd {label} phase printed no time:\n{}", lines.join("\n")))?;
                seconds.push((count, elapsed));
            }
            match seconds[..] {
                [(_, write), (_, read), (reads, random)] => Ok(Figures {
                    write_mb_per_s: bytes / 1e6 / write,
                    read_mb_per_s: bytes / 1e6 / read,
                    random_iops: reads / random,
                }),
                _ => Err("dd fallback: missing phases".to_owned()),
            }
        }
    }
}

/// `runs` runs of the workload on `device`; blkbench if the initramfs has it (and
/// `force_dd` is off).
fn workload(
    shell: &mut dyn LinuxShell,
    name: &str,
    device: &str,
    runs: usize,
    force_dd: bool,
) -> Result<(Method, Vec<Figures>), String> {
    let present = shell.run(&format!("[ -x {HELPER} ] && echo helper-present"), COMMAND_TIMEOUT)?;
    let method = if !force_dd && present.iter().any(|line| line.contains("helper-present")) {
        Method::Blkbench
    } else {
        if !force_dd {
            eprintln!("{name}: no {HELPER} in the initramfs (no static C toolchain at build time): busybox dd instead");
        }
        Method::BusyboxDd
    };
    let mut samples = Vec::new();
    for run in 1..=runs {
        let figures = workload_once(shell, device, method)?;
        eprintln!("{name} run {run}/{runs} ({method:?}): {}", describe(&figures));
        samples.push(figures);
    }
    Ok((method, samples))
}

// --- Basalt: dom0 and the domU --------------------------------------------------------

/// The Basalt machine with its console attached to a Linux domain.
struct BasaltConsole<'machine> {
    machine: &'machine mut Machine,
    commands: u32,
}

impl LinuxShell for BasaltConsole<'_> {
    /// ash wraps the echo of long lines early (the harness answers its cursor query with
    /// column 80), so the output is framed by `<<N` / `N>>` lines the shell itself
    /// prints: `echo "<""<N"` prints what its echo does not contain.
    fn run(&mut self, command: &str, timeout: Duration) -> Result<Vec<String>, String> {
        self.commands += 1;
        let number = self.commands;
        let (begin, end) = (format!("<<{number}"), format!("{number}>>"));
        self.machine
            .send_line(&format!("echo \"<\"\"<{number}\"; {command}; echo \"{number}>\"\">\""))
            .map_err(|error| error.to_string())?;
        self.machine.expect(begin.as_str(), timeout).map_err(|error| error.to_string())?;
        let output = self.machine.expect(end.as_str(), timeout).map_err(|error| error.to_string())?;
        self.machine.expect(LINUX_PROMPT, COMMAND_TIMEOUT).map_err(|error| error.to_string())?;
        let output = &output[..output.len() - end.len()];
        Ok(output_lines(output).into_iter().map(str::to_owned).collect())
    }
}

/// What one Basalt boot measured: dom0's runs (None: the image has no `disk-bench`)
/// and the domU's.
struct BasaltResults {
    dom0: Result<Vec<Figures>, String>,
    domu: Result<(Method, Vec<Figures>), String>,
}

/// A shell command of the hypervisor that may run long; its output.
fn hypervisor_command(machine: &mut Machine, command: &str, timeout: Duration) -> Result<String, String> {
    machine.wait_prompt_query(Duration::from_secs(5));
    machine.skip_pending_output();
    machine.send_line(command).map_err(|error| error.to_string())?;
    let text = machine.expect(PROMPT, timeout).map_err(|error| error.to_string())?;
    Ok(text[..text.len() - PROMPT.len()].to_owned())
}

fn dom0_runs(machine: &mut Machine, runs: usize) -> Result<Vec<Figures>, String> {
    let mut samples = Vec::new();
    for run in 1..=runs {
        let command = format!("disk-bench {DOM0_DISK} {MEBIBYTES}");
        let output = hypervisor_command(machine, &command, RUN_TIMEOUT)?;
        let figures =
            parse_dom0_line(&output).ok_or_else(|| format!("`{command}` printed no figures:\n{}", output.trim()))?;
        eprintln!("dom0 run {run}/{runs}: {}", describe(&figures));
        samples.push(figures);
    }
    Ok(samples)
}

fn domu_runs(machine: &mut Machine, runs: usize, force_dd: bool) -> Result<(Method, Vec<Figures>), String> {
    let created = hypervisor_command(machine, &format!("create {CONFIG}"), COMMAND_TIMEOUT)?;
    let id: u32 = created
        .lines()
        .find_map(|line| {
            line.trim().strip_prefix("Created domain ")?.strip_suffix(&format!(" ({CONFIG})"))?.parse().ok()
        })
        .ok_or_else(|| format!("`create {CONFIG}` failed:\n{created}"))?;
    machine.wait_prompt_query(Duration::from_secs(5));
    machine.send_line(&format!("console {CONFIG}")).map_err(|error| error.to_string())?;
    machine.expect(READY_MARKER, BOOT_TIMEOUT).map_err(|error| error.to_string())?;
    machine.expect(LINUX_PROMPT, COMMAND_TIMEOUT).map_err(|error| error.to_string())?;
    let mut console = BasaltConsole { machine, commands: 0 };
    let size = console.run("blockdev --getsize64 /dev/xvda", COMMAND_TIMEOUT)?;
    if !size.iter().any(|line| line.trim() == DISK_BYTES.to_string()) {
        return Err(format!("/dev/xvda in {CONFIG} is not the {DISK_BYTES}-byte disk: {size:?}"));
    }
    let result = workload(&mut console, "Basalt domU", "/dev/xvda", runs, force_dd);
    machine.send_bytes(CONSOLE_ESCAPE).map_err(|error| error.to_string())?;
    machine.expect(PROMPT, COMMAND_TIMEOUT).map_err(|error| error.to_string())?;
    hypervisor_command(machine, &format!("destroy {id}"), COMMAND_TIMEOUT)?;
    result
}

/// One boot of the bench image with `disk` as its virtio-blk disk: dom0's runs, then
/// the domU's.
fn under_basalt(disk: &Path, runs: usize, force_dd: bool) -> Result<BasaltResults, String> {
    let image = bench_image();
    if !image.is_file() {
        return Err(format!("{} is missing: run `make bench` (or `make bench-image`)", image.display()));
    }
    let drive = format!("file={},format=raw,if=none,id=d0", disk.display());
    let mut config = MachineConfig::qemu(Firmware::Bios, Medium::IdeDisk)
        .with_image(image)
        .with_memory_mib(2048)
        .with_extra_args(&["-drive", &drive, "-device", "virtio-blk-pci,drive=d0"]);
    config.fatal_markers.extend(LINUX_FATAL_MARKERS.iter().map(|marker| (*marker).to_owned()));
    let (mut machine, _) = Machine::boot_to_prompt(config, "disk-bench").map_err(|error| error.to_string())?;
    let dom0 = dom0_runs(&mut machine, runs);
    if let Err(error) = &dom0 {
        eprintln!("dom0 disk-bench failed:\n{error}");
    }
    let domu = domu_runs(&mut machine, runs, force_dd);
    eprintln!("transcript: {}", machine.transcript_path().display());
    Ok(BasaltResults { dom0, domu })
}

// --- Linux directly under QEMU ---------------------------------------------------------

/// Everything QEMU printed and whether the line closed, with a condition variable
/// signalled on each change.
type SerialOutput = (Mutex<(Vec<u8>, bool)>, Condvar);

/// QEMU booting vmlinux + the bench initramfs with the disk on virtio-blk; its serial
/// line is stdin/stdout.
struct DirectLinux {
    child: Child,
    input: ChildStdin,
    output: Arc<SerialOutput>,
    /// How far `expect` has read.
    cursor: usize,
    commands: u32,
}

impl DirectLinux {
    fn start(disk: &Path) -> Result<Self, String> {
        let (vmlinux, initramfs) = (vmlinux(), bench_initramfs());
        for file in [&vmlinux, &initramfs] {
            if !file.is_file() {
                return Err(format!("{} is missing: run `make bench`", file.display()));
            }
        }
        let binary = qemu_tests::backend::qemu::qemu_binary();
        let mut child = Command::new(&binary)
            .args(["-machine", "pc", "-accel", "tcg", "-cpu", QEMU_DEFAULT_CPU, "-smp", "1", "-m", "256"])
            .args(["-nodefaults", "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot"])
            .arg("-kernel")
            .arg(&vmlinux)
            .arg("-initrd")
            .arg(&initramfs)
            .args(["-append", "console=ttyS0"])
            .arg("-drive")
            .arg(format!("file={},format=raw,if=none,id=d0", disk.display()))
            .args(["-device", "virtio-blk-pci,drive=d0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("cannot start {binary}: {error}"))?;
        let input = child.stdin.take().ok_or("QEMU stdin missing")?;
        let mut stdout = child.stdout.take().ok_or("QEMU stdout missing")?;
        let output = Arc::new((Mutex::new((Vec::new(), false)), Condvar::new()));
        let shared = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            loop {
                let count = stdout.read(&mut buffer).unwrap_or(0);
                let (lock, changed) = &*shared;
                let mut state = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if count == 0 {
                    state.1 = true;
                } else {
                    state.0.extend_from_slice(&buffer[..count]);
                }
                changed.notify_all();
                if count == 0 {
                    break;
                }
            }
        });
        Ok(Self { child, input, output, cursor: 0, commands: 0 })
    }

    /// Waits for `text` after the last match; returns what came before it.
    fn expect(&mut self, text: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let (lock, changed) = &*self.output;
        let mut state = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        loop {
            let unread = state.0.get(self.cursor..).unwrap_or_default();
            if let Some(at) = unread.windows(text.len()).position(|window| window == text.as_bytes()) {
                let before = String::from_utf8_lossy(&unread[..at]).into_owned();
                self.cursor += at + text.len();
                return Ok(before);
            }
            let unread_text = String::from_utf8_lossy(unread);
            if let Some(marker) = LINUX_FATAL_MARKERS.iter().find(|marker| unread_text.contains(*marker)) {
                return Err(format!("Linux printed {marker:?} while waiting for {text:?}:\n{unread_text}"));
            }
            let now = Instant::now();
            if state.1 || now >= deadline {
                let tail: Vec<&str> =
                    unread_text.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
                let why = if state.1 { "QEMU exited" } else { "timed out" };
                return Err(format!("{why} waiting for {text:?}; last lines:\n{}", tail.join("\n")));
            }
            state = changed.wait_timeout(state, deadline - now).unwrap_or_else(|poisoned| poisoned.into_inner()).0;
        }
    }
}

impl LinuxShell for DirectLinux {
    fn run(&mut self, command: &str, timeout: Duration) -> Result<Vec<String>, String> {
        self.commands += 1;
        let number = self.commands;
        let (begin, end) = (format!("<<{number}"), format!("{number}>>"));
        let line = format!("echo \"<\"\"<{number}\"; {command}; echo \"{number}>\"\">\"\r");
        self.input.write_all(line.as_bytes()).and_then(|()| self.input.flush()).map_err(|error| error.to_string())?;
        self.expect(&begin, timeout)?;
        let output = self.expect(&end, timeout)?;
        self.expect(LINUX_PROMPT, COMMAND_TIMEOUT)?;
        let stripped = qemu_tests::ansi::strip(output.as_bytes());
        let text = String::from_utf8_lossy(&stripped).into_owned();
        Ok(output_lines(&text).into_iter().map(str::to_owned).collect())
    }
}

impl Drop for DirectLinux {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn direct(disk: &Path, runs: usize, force_dd: bool) -> Result<(Method, Vec<Figures>), String> {
    let mut linux = DirectLinux::start(disk)?;
    linux.expect(READY_MARKER, BOOT_TIMEOUT)?;
    linux.expect(LINUX_PROMPT, COMMAND_TIMEOUT)?;
    let size = linux.run("blockdev --getsize64 /dev/vda", COMMAND_TIMEOUT)?;
    if !size.iter().any(|line| line.trim() == DISK_BYTES.to_string()) {
        return Err(format!("/dev/vda in the direct boot is not the {DISK_BYTES}-byte disk: {size:?}"));
    }
    workload(&mut linux, "QEMU direct", "/dev/vda", runs, force_dd)
}

// --- main ----------------------------------------------------------------------------

/// A temporary directory removed when dropped.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> Result<Self, String> {
        let path = std::env::temp_dir().join(format!("basalt-disk-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|error| format!("creating {}: {error}", path.display()))?;
        Ok(Self(path))
    }

    /// A fresh DISK_BYTES raw disk file of zeros, every block written (no holes, so
    /// the host file system allocates nothing during a run).
    fn disk(&self, name: &str) -> Result<PathBuf, String> {
        let path = self.0.join(name);
        std::fs::write(&path, vec![0u8; DISK_BYTES]).map_err(|error| format!("writing {}: {error}", path.display()))?;
        Ok(path)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The table row for a set of runs (or why it has none); the median.
fn row(
    label: &str,
    runs: Result<(Method, Vec<Figures>), String>,
    failed: &mut bool,
) -> ((String, String), Option<Figures>) {
    match runs {
        Ok((method, samples)) => match median(&samples) {
            Some(figures) => {
                let how = match method {
                    Method::Blkbench => "",
                    Method::BusyboxDd => " (busybox dd fallback; random read counts process creation)",
                };
                ((label.to_owned(), format!("{}{how}", describe(&figures))), Some(figures))
            }
            None => {
                *failed = true;
                ((label.to_owned(), "no runs".to_owned()), None)
            }
        },
        Err(error) => {
            eprintln!("{label} failed:\n{error}");
            *failed = true;
            ((label.to_owned(), "failed".to_owned()), None)
        }
    }
}

fn main() {
    let args = qemu_tests::report::bench_args_or_exit(
        &["--direct-only", "--dd"],
        "disk-bench [--runs N] [--direct-only] [--dd]",
    );
    let (runs, direct_only, force_dd) = (args.runs, args.has("--direct-only"), args.has("--dd"));
    let work = WorkDir::new().unwrap_or_else(|error| {
        eprintln!("{error}");
        std::process::exit(1)
    });

    let mut rows = Vec::new();
    let mut failed = false;
    let dom0_label = format!("dom0 `disk-bench {DOM0_DISK} {MEBIBYTES}` (virtio-blk driver, raw)");
    let domu_label = format!("Linux domU on Basalt (`{CONFIG}`, blkfront /dev/xvda)");
    let (mut dom0, mut domu) = (None, None);
    if !direct_only {
        let basalt = work.disk("basalt-vda.img").and_then(|disk| under_basalt(&disk, runs, force_dd));
        match basalt {
            Ok(results) => {
                let (dom0_row, dom0_median) =
                    row(&dom0_label, results.dom0.map(|samples| (Method::Blkbench, samples)), &mut failed);
                let (domu_row, domu_median) = row(&domu_label, results.domu, &mut failed);
                rows.extend([dom0_row, domu_row]);
                (dom0, domu) = (dom0_median, domu_median);
            }
            Err(error) => {
                eprintln!("Basalt failed:\n{error}");
                failed = true;
                rows.push((dom0_label, "failed".to_owned()));
                rows.push((domu_label, "failed".to_owned()));
            }
        }
    }
    let direct_runs = work.disk("direct-vda.img").and_then(|disk| direct(&disk, runs, force_dd));
    let (direct_row, direct_median) = row("Linux directly under QEMU (virtio_blk /dev/vda)", direct_runs, &mut failed);
    rows.push(direct_row);
    if let (Some(domu), Some(dom0)) = (&domu, &dom0) {
        rows.push(("ratio domU / dom0".to_owned(), describe_ratio(domu, dom0)));
    }
    if let (Some(domu), Some(direct)) = (&domu, &direct_median) {
        rows.push(("ratio domU / QEMU direct".to_owned(), describe_ratio(domu, direct)));
    }
    println!(
        "\nDisk benchmark: one virtio-blk disk (64 MiB raw file), {MEBIBYTES} MiB sequential in 128 KiB requests + 4 KiB random reads, \
         queue depth 1, O_DIRECT in Linux; QEMU TCG -cpu {QEMU_DEFAULT_CPU}; medians of {runs} runs\n"
    );
    qemu_tests::report::print_table(&rows);
    if failed {
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dom0_line() {
        let output =
            "disk-bench vda: 32 MiB sequential write 12.5 MB/s, sequential read 40.25 MB/s, 4 KiB random read 812 IOPS";
        assert_eq!(
            parse_dom0_line(output),
            Some(Figures { write_mb_per_s: 12.5, read_mb_per_s: 40.25, random_iops: 812.0 })
        );
        assert_eq!(parse_dom0_line("error: unknown command 'disk-bench'"), None);
        assert_eq!(parse_dom0_line("disk-bench vda: vda is in use (domain 1)"), None);
    }

    #[test]
    fn parses_blkbench_raw_line() {
        let output = "\u{1b}[6nblkbench /dev/xvda: ...\nblkbench-raw bytes=33554432 write_ns=2000000000 read_ns=1000000000 random_reads=4096 random_ns=2048000000";
        let figures = parse_blkbench_raw(output).unwrap();
        assert!((figures.write_mb_per_s - 16.777216).abs() < 1e-9);
        assert!((figures.read_mb_per_s - 33.554432).abs() < 1e-9);
        assert!((figures.random_iops - 2000.0).abs() < 1e-9);
        assert!((guest_seconds(output).unwrap() - 5.048).abs() < 1e-9);
        assert_eq!(parse_blkbench_raw("blkbench-raw bytes=1 write_ns=0 read_ns=1 random_reads=1 random_ns=1"), None);
        assert_eq!(parse_blkbench_raw("blkbench: open /dev/xvda: No such file"), None);
    }

    #[test]
    fn parses_dd_times() {
        assert_eq!(parse_dd_time("dd-time random 200 12.50 14.50", "random"), Some((200.0, 2.0)));
        assert_eq!(parse_dd_time("dd-time read 1 12.50 14.50", "write"), None);
        assert_eq!(parse_dd_time("dd-time write 1 12.50 12.50", "write"), None);
    }

    #[test]
    fn median_takes_each_figure_on_its_own() {
        let runs = [
            Figures { write_mb_per_s: 1.0, read_mb_per_s: 30.0, random_iops: 200.0 },
            Figures { write_mb_per_s: 3.0, read_mb_per_s: 10.0, random_iops: 100.0 },
            Figures { write_mb_per_s: 2.0, read_mb_per_s: 20.0, random_iops: 300.0 },
        ];
        assert_eq!(median(&runs), Some(Figures { write_mb_per_s: 2.0, read_mb_per_s: 20.0, random_iops: 200.0 }));
        assert_eq!(median(&[]), None);
    }
}
