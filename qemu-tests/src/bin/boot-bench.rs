//! `make bench`: image and hypervisor sizes, and time from emulator start to prompt.
//!
//! Prints a markdown-friendly aligned table: the size of build/basalt.img, the size of
//! build/basalt.elf and of its loadable (PT_LOAD) segments, and the time from starting
//! QEMU to the first `basalt> ` prompt for BIOS+IDE and UEFI+disk — median, min and max
//! over N boots each (default 5; `--boots N`). Boots run one after another so they do
//! not disturb each other's timings. Exits non-zero if any boot failed.

use std::time::Duration;

use qemu_tests::config::{default_image, hypervisor_elf, workspace_root};
use qemu_tests::elf::{self, PT_LOAD};
use qemu_tests::{Firmware, Machine, MachineConfig, Medium};

const MIB: f64 = 1024.0 * 1024.0;

fn size_text(bytes: u64) -> String {
    format!("{bytes} bytes ({:.2} MiB)", bytes as f64 / MIB)
}

/// `path` relative to the workspace when inside it, for a compact table.
fn short(path: &std::path::Path) -> String {
    path.strip_prefix(workspace_root()).unwrap_or(path).display().to_string()
}

/// The machine label used in the table.
fn machine_label(firmware: Firmware) -> &'static str {
    match firmware {
        Firmware::Bios => "BIOS+IDE",
        Firmware::Uefi => "UEFI+disk",
    }
}

/// Boots once and returns the time to the first prompt.
fn time_boot(firmware: Firmware) -> Result<Duration, String> {
    // One artifact set per firmware (the last boot's transcript is kept).
    let name = format!("boot-bench-{}", firmware.shell_name().to_lowercase());
    let mut machine =
        Machine::boot(MachineConfig::qemu(firmware, Medium::IdeDisk), &name).map_err(|error| error.to_string())?;
    machine.expect_boot_prompt().map_err(|error| error.to_string())?;
    Ok(machine.elapsed())
    // Dropping the machine kills QEMU before the next boot starts.
}

fn main() {
    let mut boots = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--boots" => {
                boots =
                    args.next().and_then(|count| count.parse().ok()).filter(|&count| count > 0).unwrap_or_else(|| {
                        eprintln!("--boots needs a positive number");
                        std::process::exit(2)
                    })
            }
            _ => {
                eprintln!("usage: boot-bench [--boots N]");
                std::process::exit(2);
            }
        }
    }

    let mut rows: Vec<(String, String)> = Vec::new();
    let mut failed = false;
    let image = default_image();
    match std::fs::metadata(&image) {
        Ok(metadata) => rows.push((format!("image {}", short(&image)), size_text(metadata.len()))),
        Err(error) => {
            eprintln!("{}: {error}: run `make image` first", image.display());
            std::process::exit(1);
        }
    }
    let elf_path = hypervisor_elf();
    match std::fs::read(&elf_path) {
        Ok(data) => {
            rows.push((format!("hypervisor {}", short(&elf_path)), size_text(data.len() as u64)));
            match elf::segments(&data) {
                Ok(segments) => {
                    let load: Vec<_> = segments.iter().filter(|segment| segment.kind == PT_LOAD).collect();
                    let file: u64 = load.iter().map(|segment| segment.file_size).sum();
                    let memory: u64 = load.iter().map(|segment| segment.memory_size).sum();
                    rows.push((format!("  {} PT_LOAD segments, in file", load.len()), size_text(file)));
                    rows.push(("  PT_LOAD segments, in memory".to_owned(), size_text(memory)));
                }
                Err(error) => rows.push(("  PT_LOAD segments".to_owned(), format!("unreadable: {error}"))),
            }
        }
        Err(error) => rows.push((format!("hypervisor {}", short(&elf_path)), format!("missing: {error}"))),
    }

    for firmware in [Firmware::Bios, Firmware::Uefi] {
        let mut times = Vec::new();
        for run in 1..=boots {
            match time_boot(firmware) {
                Ok(time) => {
                    eprintln!("{} boot {run}/{boots}: {:.2} s", machine_label(firmware), time.as_secs_f64());
                    times.push(time);
                }
                Err(error) => {
                    eprintln!("{} boot {run}/{boots} failed:\n{error}", machine_label(firmware));
                    failed = true;
                }
            }
        }
        times.sort();
        let label = format!("{}: QEMU start to first prompt", machine_label(firmware));
        let value = match (times.first(), times.last()) {
            (Some(min), Some(max)) => format!(
                "median {:.2} s (min {:.2}, max {:.2}, {} of {boots} boots)",
                times[times.len() / 2].as_secs_f64(),
                min.as_secs_f64(),
                max.as_secs_f64(),
                times.len()
            ),
            _ => "all boots failed".to_owned(),
        };
        rows.push((label, value));
    }

    let config = MachineConfig::qemu(Firmware::Bios, Medium::IdeDisk);
    println!(
        "Basalt boot benchmark: QEMU TCG, -cpu {}, {} CPUs, {} MiB, {boots} sequential boots per firmware\n",
        config.cpu_model, config.cpus, config.memory_mib
    );
    qemu_tests::report::print_table(&rows);
    if failed {
        std::process::exit(1);
    }
}
