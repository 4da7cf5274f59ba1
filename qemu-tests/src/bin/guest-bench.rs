//! `make bench`, guest part: the cost of a guest exit round trip on both backends (AMD
//! SVM under QEMU TCG, Intel VMX under Bochs) and the time from `create` to a guest's
//! first console output.
//!
//! Exit cost: the `bench` test guest runs N CPUID (leaf 0x40000000) and N `xen_version`
//! hypercalls and reports TSC cycles per operation. QEMU runs with `-icount shift=0`
//! (one guest instruction = one virtual nanosecond; `sleep=off` because with sleeping
//! idle time the boot never gets past GRUB's menu timeout here), so the figure counts instructions
//! executed on the exit path — hypervisor and guest — and does not depend on the host's
//! load. Create-to-first-output: `create hello` on a normal (not icount) boot, read from
//! the hypervisor's own log: the toolstack's "created ... in X ms" line gives when
//! `create` started, the domain's "first console output" line when the guest first
//! wrote. Both are hypervisor timestamps (TSC), median over several creates.

use std::time::Duration;

use qemu_tests::config::workspace_root;
use qemu_tests::{Firmware, Machine, MachineConfig, Medium};

fn test_image() -> std::path::PathBuf {
    workspace_root().join("build").join("basalt-test.img")
}

/// The number after `prefix` in the first line of `text` that contains it.
fn number_after(text: &str, prefix: &str) -> Option<f64> {
    let start = text.find(prefix)? + prefix.len();
    let rest = &text[start..];
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// A log line's timestamp `[   12.345678]` in seconds.
fn timestamp_of(line: &str) -> Option<f64> {
    let open = line.find('[')?;
    let close = line[open..].find(']')? + open;
    line[open + 1..close].trim().parse().ok()
}

fn exit_costs() -> Result<(f64, f64, u64), String> {
    let config = MachineConfig::qemu(Firmware::Bios, Medium::IdeDisk)
        .with_image(test_image())
        .with_extra_args(&["-icount", "shift=0,align=off,sleep=off"]);
    // One CPU: QEMU's icount runs the vCPUs round-robin and GRUB's menu never times out
    // with two here; the exit path does not need a second CPU.
    let config = MachineConfig { cpus: 1, boot_timeout: Duration::from_secs(900), ..config };
    let mut machine = Machine::boot(config, "guest-bench-exits").map_err(|error| error.to_string())?;
    // GRUB's 3-second menu countdown busy-waits: billions of counted instructions.
    // Choose the default entry at once instead.
    machine.expect("Use the ^ and v keys", Duration::from_secs(600)).map_err(|error| error.to_string())?;
    machine.send_bytes(b"\r").map_err(|error| error.to_string())?;
    machine.expect_boot_prompt().map_err(|error| error.to_string())?;
    run_bench_guest(&mut machine)
}

/// The same figures on Intel VMX under Bochs (one CPU; Bochs's TSC follows its fixed
/// instructions-per-second setting, so the figure is again an instruction count).
fn exit_costs_bochs() -> Result<(f64, f64, u64), String> {
    let config = MachineConfig::bochs(Medium::Cdrom).with_image(test_image()).with_cpus(1);
    let (mut machine, _) =
        Machine::boot_to_prompt(config, "guest-bench-exits-bochs").map_err(|error| error.to_string())?;
    run_bench_guest(&mut machine)
}

/// `create bench`, wait for it to finish, read its figures from its console.
fn run_bench_guest(machine: &mut Machine) -> Result<(f64, f64, u64), String> {
    machine.run_command("create bench").map_err(|error| error.to_string())?;
    machine
        .expect("shut down: poweroff", Duration::from_secs(1800))
        .map_err(|error| format!("bench guest did not finish: {error}"))?;
    machine.send_line("console bench").map_err(|error| error.to_string())?;
    let output = machine.expect("bench: done", Duration::from_secs(60)).map_err(|error| error.to_string())?;
    let cpuid = number_after(&output, "bench: cpuid ").ok_or("no cpuid figure")?;
    let hypercall = number_after(&output, "bench: xen_version ").ok_or("no xen_version figure")?;
    let iterations = number_after(&output, "cycles/op over ").ok_or("no iteration count")? as u64;
    machine.send_bytes(&[0x1d]).map_err(|error| error.to_string())?;
    Ok((cpuid, hypercall, iterations))
}

fn create_to_first_output(rounds: usize) -> Result<Vec<f64>, String> {
    let config = MachineConfig::qemu(Firmware::Bios, Medium::IdeDisk).with_image(test_image());
    let mut machine = Machine::boot(config, "guest-bench-create").map_err(|error| error.to_string())?;
    machine.expect_boot_prompt().map_err(|error| error.to_string())?;
    let mut samples = Vec::new();
    for round in 0..rounds {
        machine.send_line("create hello").map_err(|error| error.to_string())?;
        machine.expect("first console output", Duration::from_secs(60)).map_err(|error| error.to_string())?;
        machine.expect(" after creation", Duration::from_secs(10)).map_err(|error| error.to_string())?;
        // This round's lines are the latest of their kind in the transcript.
        let transcript = machine.transcript_text();
        let created_line =
            transcript.lines().filter(|line| line.contains("created from 'hello' in ")).nth(round).unwrap_or_default();
        let first_line = transcript.lines().filter(|line| line.contains("first console output")).nth(round);
        let first_line = first_line.unwrap_or_default();
        let build_ms = number_after(created_line, " in ").ok_or("no build time")?;
        let (Some(created_at), Some(first_at)) = (timestamp_of(created_line), timestamp_of(first_line)) else {
            return Err(format!("unparsable log lines: {created_line:?} {first_line:?}"));
        };
        // `create` started build_ms before its log line.
        samples.push((first_at - created_at) * 1000.0 + build_ms);
        // hello.cfg preserves the domain after poweroff: destroy it for the next round.
        machine.expect("shut down: poweroff", Duration::from_secs(60)).map_err(|error| error.to_string())?;
        machine.send_line("destroy hello").map_err(|error| error.to_string())?;
        machine.expect("destroyed", Duration::from_secs(60)).map_err(|error| error.to_string())?;
        machine.wait_quiet(Duration::from_millis(300), Duration::from_secs(5)).map_err(|error| error.to_string())?;
        machine.skip_pending_output();
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples)
}

fn main() {
    let mut failed = false;
    let mut rows: Vec<(String, String)> = Vec::new();
    match exit_costs() {
        Ok((cpuid, hypercall, iterations)) => {
            rows.push((
                format!("SVM (QEMU): CPUID exit round trip ({iterations} ops)"),
                format!("{cpuid} TSC cycles/op"),
            ));
            rows.push((
                format!("SVM (QEMU): xen_version hypercall round trip ({iterations} ops)"),
                format!("{hypercall} TSC cycles/op"),
            ));
        }
        Err(error) => {
            eprintln!("exit benchmark failed: {error}");
            failed = true;
        }
    }
    match exit_costs_bochs() {
        Ok((cpuid, hypercall, iterations)) => {
            rows.push((
                format!("VMX (Bochs): CPUID exit round trip ({iterations} ops)"),
                format!("{cpuid} TSC cycles/op"),
            ));
            rows.push((
                format!("VMX (Bochs): xen_version hypercall round trip ({iterations} ops)"),
                format!("{hypercall} TSC cycles/op"),
            ));
        }
        Err(error) => {
            eprintln!("Bochs exit benchmark failed: {error}");
            failed = true;
        }
    }
    match create_to_first_output(5) {
        Ok(samples) if !samples.is_empty() => rows.push((
            "create to first console output (hello)".to_owned(),
            format!(
                "median {:.1} ms (min {:.1}, max {:.1}, {} creates)",
                samples[samples.len() / 2],
                samples[0],
                samples[samples.len() - 1],
                samples.len()
            ),
        )),
        Ok(_) => {}
        Err(error) => {
            eprintln!("create benchmark failed: {error}");
            failed = true;
        }
    }
    println!("\nBasalt guest benchmark: QEMU TCG -cpu qemu64,+svm,+npt (no nRIP save), 2 CPUs (exit costs: 1 CPU under -icount shift=0)\n");
    qemu_tests::report::print_table(&rows);
    if failed {
        std::process::exit(1);
    }
}
