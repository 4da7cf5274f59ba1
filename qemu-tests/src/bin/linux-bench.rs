//! `make bench`, Linux part: how long Debian's cloud kernel with the busybox initramfs
//! (guest-payload/) takes to boot to its `BASALT-LINUX-READY` marker — as a PVH domU
//! under Basalt, and booted directly by QEMU without Basalt — and the ratio.
//!
//! - Basalt: `build/basalt-test.img` on QEMU TCG (AMD SVM + NPT, 2 CPUs, 2 GiB); host
//!   wall time from typing `create linux1` (1 vCPU, 256 MiB; the toolstack unpacks the
//!   bzImage as part of `create`) to the marker on `console linux1`; then `destroy`, and
//!   again from a fresh create. Median of N runs (default 3).
//! - Direct: the same kernel's vmlinux ELF (`make bench` extracts it from the bzImage's
//!   LZ4 payload: guest-payload/extract-vmlinux.sh) and the same initramfs, booted by
//!   QEMU TCG itself (`-kernel` takes a PVH ELF: it enters at the
//!   XEN_ELFNOTE_PHYS32_ENTRY note) on the same CPU model with 1 CPU and 256 MiB,
//!   `console=ttyS0`; host wall time from starting QEMU to the marker on the serial line.
//!   Median of N fresh QEMU runs.
//!
//! Both are host wall-clock times of TCG, so they depend on the host and its load; the
//! ratio is the figure to compare. `--direct-only` runs only the second half (it needs no
//! Basalt image); `--runs N` changes N.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use qemu_tests::config::{workspace_root, QEMU_DEFAULT_CPU};
use qemu_tests::{Firmware, Machine, MachineConfig, Medium, Pattern, COMMAND_TIMEOUT, PROMPT};

/// What the payload's init prints on the console once the system is up.
const READY_MARKER: &str = "BASALT-LINUX-READY";
/// The 1-vCPU Linux config of the test image.
const CONFIG: &str = "linux1";
/// How long one boot may take (TCG; Basalt's SVM path emulates every exit).
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

fn guests_dir() -> PathBuf {
    workspace_root().join("build").join("guests")
}

/// `create linux1` → marker on its console, `runs` times on one boot of the test image.
fn under_basalt(runs: usize) -> Result<Vec<Duration>, String> {
    let image = workspace_root().join("build").join("basalt-test.img");
    let config = MachineConfig::qemu(Firmware::Bios, Medium::IdeDisk).with_image(image).with_memory_mib(2048);
    let (mut machine, _) = Machine::boot_to_prompt(config, "linux-bench").map_err(|error| error.to_string())?;
    let mut samples = Vec::new();
    for run in 1..=runs {
        machine.wait_prompt_query(Duration::from_secs(5));
        machine.skip_pending_output();
        let started = Instant::now();
        machine.send_line(&format!("create {CONFIG}")).map_err(|error| error.to_string())?;
        let created = machine.expect(PROMPT, COMMAND_TIMEOUT).map_err(|error| error.to_string())?;
        let id: u32 = created
            .lines()
            .find_map(|line| {
                line.trim().strip_prefix("Created domain ")?.strip_suffix(&format!(" ({CONFIG})"))?.parse().ok()
            })
            .ok_or_else(|| format!("`create {CONFIG}` failed:\n{created}"))?;
        machine.wait_prompt_query(Duration::from_secs(5));
        machine.send_line(&format!("console {CONFIG}")).map_err(|error| error.to_string())?;
        machine.expect(READY_MARKER, BOOT_TIMEOUT).map_err(|error| error.to_string())?;
        let elapsed = started.elapsed();
        eprintln!("Basalt run {run}/{runs}: create {CONFIG} to {READY_MARKER} {:.2} s", elapsed.as_secs_f64());
        samples.push(elapsed);
        machine.send_bytes(&[0x1d]).map_err(|error| error.to_string())?;
        machine.expect(PROMPT, COMMAND_TIMEOUT).map_err(|error| error.to_string())?;
        machine.wait_prompt_query(Duration::from_secs(5));
        machine.send_line(&format!("destroy {id}")).map_err(|error| error.to_string())?;
        machine
            .expect(Pattern::literal(format!("domain {id} ({CONFIG}) destroyed")), COMMAND_TIMEOUT)
            .map_err(|error| error.to_string())?;
        machine.wait_quiet(Duration::from_millis(300), Duration::from_secs(10)).map_err(|error| error.to_string())?;
    }
    Ok(samples)
}

/// QEMU start → marker on ttyS0, booting vmlinux + initramfs directly.
fn direct_once(vmlinux: &Path, initramfs: &Path) -> Result<Duration, String> {
    let binary = qemu_tests::backend::qemu::qemu_binary();
    let started = Instant::now();
    let mut child = Command::new(&binary)
        .args(["-machine", "pc", "-accel", "tcg", "-cpu", QEMU_DEFAULT_CPU, "-smp", "1", "-m", "256"])
        .args(["-nodefaults", "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot"])
        .arg("-kernel")
        .arg(vmlinux)
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", "console=ttyS0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot start {binary}: {error}"))?;
    let mut stdout = child.stdout.take().ok_or("QEMU stdout missing")?;
    let (sender, receiver) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            match stdout.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(count) => {
                    seen.extend_from_slice(&buffer[..count]);
                    if seen.windows(READY_MARKER.len()).any(|window| window == READY_MARKER.as_bytes()) {
                        let _ = sender.send(Instant::now());
                        break;
                    }
                }
            }
        }
        seen
    });
    let result = receiver.recv_timeout(BOOT_TIMEOUT);
    let _ = child.kill();
    let _ = child.wait();
    let seen = reader.join().unwrap_or_default();
    match result {
        Ok(at) => Ok(at - started),
        Err(_) => {
            let text = String::from_utf8_lossy(&seen);
            let tail: Vec<&str> = text.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
            Err(format!("no {READY_MARKER} from the direct boot; last lines:\n{}", tail.join("\n")))
        }
    }
}

fn direct(runs: usize) -> Result<Vec<Duration>, String> {
    let (vmlinux, initramfs) = (guests_dir().join("vmlinux"), guests_dir().join("initramfs.cpio.gz"));
    for file in [&vmlinux, &initramfs] {
        if !file.is_file() {
            return Err(format!(
                "{} is missing: run `make bench` (or `make guest-linux build/guests/vmlinux`)",
                file.display()
            ));
        }
    }
    let mut samples = Vec::new();
    for run in 1..=runs {
        let elapsed = direct_once(&vmlinux, &initramfs)?;
        eprintln!("direct run {run}/{runs}: QEMU start to {READY_MARKER} {:.2} s", elapsed.as_secs_f64());
        samples.push(elapsed);
    }
    Ok(samples)
}

/// (median, text) of `samples`.
fn summary(mut samples: Vec<Duration>) -> (Duration, String) {
    samples.sort();
    let median = samples[samples.len() / 2];
    let text = format!(
        "median {:.2} s (min {:.2}, max {:.2}, {} runs)",
        median.as_secs_f64(),
        samples[0].as_secs_f64(),
        samples[samples.len() - 1].as_secs_f64(),
        samples.len()
    );
    (median, text)
}

fn main() {
    let args = qemu_tests::report::bench_args_or_exit(&["--direct-only"], "linux-bench [--runs N] [--direct-only]");
    let (runs, direct_only) = (args.runs, args.has("--direct-only"));

    let mut rows: Vec<(String, String)> = Vec::new();
    let mut failed = false;
    let basalt = if direct_only {
        None
    } else {
        match under_basalt(runs) {
            Ok(samples) => {
                let (median, text) = summary(samples);
                rows.push((format!("Basalt: `create {CONFIG}` (1 vCPU) to {READY_MARKER}"), text));
                Some(median)
            }
            Err(error) => {
                eprintln!("Linux under Basalt failed:\n{error}");
                rows.push((format!("Basalt: `create {CONFIG}` (1 vCPU) to {READY_MARKER}"), "failed".to_owned()));
                failed = true;
                None
            }
        }
    };
    let direct = match direct(runs) {
        Ok(samples) => {
            let (median, text) = summary(samples);
            rows.push((format!("QEMU direct (-kernel vmlinux, 1 CPU): start to {READY_MARKER}"), text));
            Some(median)
        }
        Err(error) => {
            eprintln!("direct boot failed:\n{error}");
            rows.push((format!("QEMU direct (-kernel vmlinux, 1 CPU): start to {READY_MARKER}"), "failed".to_owned()));
            failed = true;
            None
        }
    };
    if let (Some(basalt), Some(direct)) = (basalt, direct) {
        rows.push(("ratio Basalt / direct".to_owned(), format!("{:.2}", basalt.as_secs_f64() / direct.as_secs_f64())));
    }
    println!(
        "\nLinux boot benchmark: Debian's cloud kernel + busybox initramfs, QEMU TCG -cpu {QEMU_DEFAULT_CPU}, 256 MiB guest (Basalt machine: 2 CPUs, 2 GiB)\n"
    );
    qemu_tests::report::print_table(&rows);
    if failed {
        std::process::exit(1);
    }
}
