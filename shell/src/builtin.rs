//! The built-in command table: `help`, `version`, `info`, `dmesg`, `cpus`,
//! `mem`, `uptime`, `poweroff` — every one a thin formatter over [`System`].
//! (`reboot` restarts the machine too, but it also takes a domain, so it lives
//! in [`crate::appliance`].)
//!
//! Why this shape: a `static` cannot be generic, but an associated constant of
//! a generic type can, and is evaluated once per concrete context type. So
//! [`builtin_commands::<Appliance>()`](builtin_commands) returns a
//! `&'static [Command<Appliance>]` like any other subsystem's table and
//! image/ writes
//! `Registry::new(&[basalt_shell::builtin_commands::<Appliance>(), OTHER_TABLE])`.
//!
//! Output formats are part of the interface (the emulator tests read them);
//! each `run_*` function documents its own. Text that comes from outside the
//! shell's control (log lines, the command line, CPU strings) is printed
//! through [`Printable`], so it cannot send escape sequences to the terminal.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write as _};
use core::marker::PhantomData;

use crate::command::{Command, CommandError, Invocation};
use crate::system::{LogLevel, System};

/// The built-in commands for context type `C`.
pub fn builtin_commands<C: System + 'static>() -> &'static [Command<C>] {
    BuiltinTable::<C>::COMMANDS
}

/// Carrier of the generic table (see the module documentation).
struct BuiltinTable<C>(PhantomData<C>);

impl<C: System + 'static> BuiltinTable<C> {
    const COMMANDS: &'static [Command<C>] = &[
        Command {
            name: "help",
            usage: "help [COMMAND]",
            summary: "list the commands, or describe one",
            run: run_help::<C>,
        },
        Command {
            name: "version",
            usage: "version",
            summary: "show the hypervisor version and build",
            run: run_version::<C>,
        },
        Command {
            name: "info",
            usage: "info",
            summary: "show CPU, memory, virtualization features and firmware",
            run: run_info::<C>,
        },
        Command {
            name: "dmesg",
            usage: "dmesg [-l LEVEL] [-n COUNT]",
            summary: "show the hypervisor log (LEVEL: error|warn|info|debug|trace)",
            run: run_dmesg::<C>,
        },
        Command { name: "cpus", usage: "cpus", summary: "list the physical CPUs and their state", run: run_cpus::<C> },
        Command {
            name: "mem",
            usage: "mem",
            summary: "show memory totals, heap use and the memory map",
            run: run_mem::<C>,
        },
        Command { name: "uptime", usage: "uptime", summary: "show the time since boot", run: run_uptime::<C> },
        Command { name: "poweroff", usage: "poweroff", summary: "turn the machine off", run: run_poweroff::<C> },
    ];
}

const BYTES_PER_MEBIBYTE: u64 = 1024 * 1024;
const NANOSECONDS_PER_SECOND: u64 = 1_000_000_000;

/// `help`: one line per command, `NAME  USAGE  SUMMARY`, columns padded.
/// `help CMD`: `usage: USAGE` then the summary.
fn run_help<C: 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    match invocation.args {
        [] => {
            let registry = invocation.registry;
            let name_width = registry.iter().map(|c| c.name.len()).max().unwrap_or(0);
            let usage_width = registry.iter().map(|c| c.usage.len()).max().unwrap_or(0);
            for command in registry.iter() {
                writeln!(
                    invocation.out,
                    "{:<name_width$}  {:<usage_width$}  {}",
                    command.name, command.usage, command.summary
                )?;
            }
            Ok(())
        }
        [name] => match invocation.registry.find(name) {
            Some(command) => {
                writeln!(invocation.out, "usage: {}", command.usage)?;
                writeln!(invocation.out, "{}", command.summary)?;
                Ok(())
            }
            None => Err(CommandError::Usage(format!("unknown command '{}'", Printable(name)))),
        },
        [_, unexpected, ..] => Err(CommandError::Usage(format!("unexpected argument '{unexpected}'"))),
    }
}

/// `version`: `Basalt 0.1.0 (commit abc1234, release)`.
fn run_version<C: System + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    invocation.expect_no_arguments()?;
    let version = invocation.context.version();
    writeln!(
        invocation.out,
        "{} {} (commit {}, {})",
        version.product, version.version, version.commit, version.build_profile
    )?;
    Ok(())
}

/// `info`:
/// ```text
/// CPU: AuthenticAMD AMD EPYC 7302 (family 23 model 49 stepping 0)
/// CPUs: 4 found, 4 online
/// Memory: 2048 MiB total, 1900 MiB free
/// Virtualization: SVM NPT x2APIC        ("none" if none)
/// Missing: VMX EPT                      ("none" if nothing is missing)
/// Guests: AMD SVM with nested paging     (or why this machine cannot run guests)
/// Firmware: BIOS
/// TSC: 2994 MHz                         ("unknown" if 0)
/// Command line: console=ttyS0           ("(empty)" if empty)
/// ```
fn run_info<C: System + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    invocation.expect_no_arguments()?;
    let platform = invocation.context.platform();
    let memory = invocation.context.memory();
    let out = &mut *invocation.out;
    writeln!(
        out,
        "CPU: {} {} (family {} model {} stepping {})",
        Printable(&platform.cpu_vendor),
        Printable(&platform.cpu_model),
        platform.family,
        platform.model,
        platform.stepping
    )?;
    writeln!(out, "CPUs: {} found, {} online", platform.cpus_found, platform.cpus_online)?;
    writeln!(
        out,
        "Memory: {} MiB total, {} MiB free",
        memory.total_bytes / BYTES_PER_MEBIBYTE,
        memory.free_bytes / BYTES_PER_MEBIBYTE
    )?;
    let features_with = |present: bool| -> String {
        let names: Vec<&str> =
            platform.features.iter().filter(|(_, is_present)| *is_present == present).map(|(name, _)| *name).collect();
        if names.is_empty() {
            String::from("none")
        } else {
            names.join(" ")
        }
    };
    writeln!(out, "Virtualization: {}", features_with(true))?;
    writeln!(out, "Missing: {}", features_with(false))?;
    writeln!(out, "Guests: {}", Printable(&platform.guests))?;
    writeln!(out, "Firmware: {}", Printable(&platform.firmware))?;
    if platform.tsc_khz == 0 {
        writeln!(out, "TSC: unknown")?;
    } else {
        writeln!(out, "TSC: {} MHz", platform.tsc_khz / 1000)?;
    }
    if platform.cmdline.is_empty() {
        writeln!(out, "Command line: (empty)")?;
    } else {
        writeln!(out, "Command line: {}", Printable(&platform.cmdline))?;
    }
    Ok(())
}

/// `dmesg [-l LEVEL] [-n COUNT]`: lines `[   12.345678] info: text`, oldest
/// first; `-l` keeps lines at most as verbose as LEVEL, `-n` keeps the last
/// COUNT of those.
fn run_dmesg<C: System + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    let mut most_verbose_level = LogLevel::Trace;
    let mut last_count: Option<usize> = None;
    let mut arguments = invocation.args.iter();
    while let Some(&option) = arguments.next() {
        let mut value_of = |option: &str| {
            arguments.next().copied().ok_or_else(|| CommandError::Usage(format!("option {option} needs a value")))
        };
        match option {
            "-l" => {
                let value = value_of("-l")?;
                most_verbose_level = LogLevel::parse(value).ok_or_else(|| {
                    CommandError::Usage(format!(
                        "unknown log level '{}' (error, warn, info, debug, trace)",
                        Printable(value)
                    ))
                })?;
            }
            "-n" => {
                let value = value_of("-n")?;
                let count = parse_decimal(value).ok_or_else(|| {
                    CommandError::Usage(format!("COUNT must be a number, not '{}'", Printable(value)))
                })?;
                last_count = Some(count);
            }
            unknown => return Err(CommandError::Usage(format!("unknown option '{}'", Printable(unknown)))),
        }
    }

    let mut write_result = Ok(());
    let out = &mut *invocation.out;
    match last_count {
        None => invocation.context.dmesg(&mut |line| {
            if line.level <= most_verbose_level && write_result.is_ok() {
                write_result = write_log_line(out, line.timestamp_ns, line.level, line.text);
            }
        }),
        Some(count) => {
            // Keep only the newest `count` formatted lines; memory is bounded
            // by the log itself, never by the number the operator typed.
            let mut newest_lines: VecDeque<String> = VecDeque::new();
            if count > 0 {
                invocation.context.dmesg(&mut |line| {
                    if line.level <= most_verbose_level {
                        let mut formatted = String::new();
                        let _ = write_log_line(&mut formatted, line.timestamp_ns, line.level, line.text);
                        if newest_lines.len() == count {
                            newest_lines.pop_front();
                        }
                        newest_lines.push_back(formatted);
                    }
                });
            }
            for formatted in newest_lines {
                out.write_str(&formatted)?;
            }
        }
    }
    write_result.map_err(CommandError::from)
}

fn write_log_line(out: &mut dyn fmt::Write, timestamp_ns: u64, level: LogLevel, text: &str) -> fmt::Result {
    writeln!(
        out,
        "[{:>5}.{:06}] {}: {}",
        timestamp_ns / NANOSECONDS_PER_SECOND,
        (timestamp_ns % NANOSECONDS_PER_SECOND) / 1000,
        level,
        Printable(text)
    )
}

/// `cpus`: a table, the bootstrap CPU marked, then a summary line:
/// ```text
/// CPU  APIC  STATE    TICKS
///   0     0  online   1234                  bootstrap
///   1     2  offline  0
/// 2 CPUs, 1 online
/// ```
fn run_cpus<C: System + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    invocation.expect_no_arguments()?;
    let cpus = invocation.context.cpus();
    let out = &mut *invocation.out;
    writeln!(out, "CPU  APIC  STATE    TICKS")?;
    for cpu in &cpus {
        let row = format!(
            "{:>3}  {:>4}  {:<7}  {:<20}  {}",
            cpu.index,
            cpu.apic_id,
            if cpu.online { "online" } else { "offline" },
            cpu.timer_ticks,
            if cpu.bootstrap { "bootstrap" } else { "" }
        );
        writeln!(out, "{}", row.trim_end())?;
    }
    let online = cpus.iter().filter(|cpu| cpu.online).count();
    writeln!(out, "{} CPUs, {} online", cpus.len(), online)?;
    Ok(())
}

/// `mem`:
/// ```text
/// Memory: 2048 MiB total, 1900 MiB free
/// Free: 1992294400 bytes
/// Heap: 1024 KiB used of 16384 KiB
/// START               END                 SIZE        KIND
/// 0x0000000000000000  0x000000000009fc00  639 KiB     usable
/// ```
/// (END is exclusive.)
fn run_mem<C: System + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    invocation.expect_no_arguments()?;
    let memory = invocation.context.memory();
    let out = &mut *invocation.out;
    writeln!(
        out,
        "Memory: {} MiB total, {} MiB free",
        memory.total_bytes / BYTES_PER_MEBIBYTE,
        memory.free_bytes / BYTES_PER_MEBIBYTE
    )?;
    // The exact figure: guests' memory comes back to the byte on destroy.
    writeln!(out, "Free: {} bytes", memory.free_bytes)?;
    writeln!(out, "Heap: {} KiB used of {} KiB", memory.heap_used_bytes / 1024, memory.heap_total_bytes / 1024)?;
    writeln!(out, "{:<18}  {:<18}  {:<10}  KIND", "START", "END", "SIZE")?;
    for region in &memory.regions {
        writeln!(
            out,
            "{:#018x}  {:#018x}  {:<10}  {}",
            region.start,
            region.end,
            HumanSize(region.end.saturating_sub(region.start)),
            Printable(region.kind)
        )?;
    }
    Ok(())
}

/// `uptime`: `up 0d 00:01:23.456`.
fn run_uptime<C: System + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    invocation.expect_no_arguments()?;
    let uptime_ns = invocation.context.uptime_ns();
    let total_seconds = uptime_ns / NANOSECONDS_PER_SECOND;
    let milliseconds = (uptime_ns % NANOSECONDS_PER_SECOND) / 1_000_000;
    writeln!(
        invocation.out,
        "up {}d {:02}:{:02}:{:02}.{:03}",
        total_seconds / 86_400,
        (total_seconds / 3600) % 24,
        (total_seconds / 60) % 60,
        total_seconds % 60,
        milliseconds
    )?;
    Ok(())
}

/// `poweroff`: prints `Powering off...`; if the system returns, `error: <reason>`.
fn run_poweroff<C: System + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    invocation.expect_no_arguments()?;
    writeln!(invocation.out, "Powering off...")?;
    power_action_failed("poweroff", invocation.context.poweroff())
}

/// Reboot and poweroff only return on failure, so any return is an error
/// (`action` names it: `reboot failed: <reason>`). Shared with
/// [`crate::appliance`]'s `reboot`.
pub(crate) fn power_action_failed(action: &str, result: Result<(), String>) -> Result<(), CommandError> {
    Err(CommandError::Failed(match result {
        Err(reason) => format!("{action} failed: {}", Printable(&reason)),
        Ok(()) => format!("{action} returned without taking effect"),
    }))
}

/// Parses a plain decimal number (no sign, no blanks), saturating nothing:
/// out-of-range values are rejected.
fn parse_decimal(text: &str) -> Option<usize> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Displays text with every control character (C0, DEL, C1) except tab
/// replaced by `?`, so untrusted text cannot drive the terminal.
pub struct Printable<'a>(pub &'a str);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for piece in self.0.split_inclusive(|c: char| c != '\t' && c.is_control()) {
            match piece.chars().last() {
                Some(last) if last != '\t' && last.is_control() => {
                    formatter.write_str(&piece[..piece.len() - last.len_utf8()])?;
                    formatter.write_char('?')?;
                }
                _ => formatter.write_str(piece)?,
            }
        }
        Ok(())
    }
}

/// Displays a byte count with a binary unit: `512 B`, `639 KiB`, `2047 MiB`,
/// `2 GiB`. A larger unit is used only when it is exact, or when the number
/// would otherwise exceed five digits (then it is rounded down).
struct HumanSize(u64);

impl fmt::Display for HumanSize {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        let mut value = self.0;
        let mut unit_index = 0;
        while unit_index + 1 < UNITS.len() && ((value >= 1024 && value.is_multiple_of(1024)) || value >= 100_000) {
            value /= 1024;
            unit_index += 1;
        }
        // Pad through `pad` so callers' width specifiers apply.
        formatter.pad(&format!("{value} {}", UNITS[unit_index]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_replaces_controls() {
        assert_eq!(format!("{}", Printable("a\x1b[6nb\tc\u{9b}d\x7f")), "a?[6nb\tc?d?");
        assert_eq!(format!("{}", Printable("plain ü")), "plain ü");
        assert_eq!(format!("{}", Printable("")), "");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(format!("{}", HumanSize(512)), "512 B");
        assert_eq!(format!("{}", HumanSize(0x9fc00)), "639 KiB");
        assert_eq!(format!("{}", HumanSize(2 << 30)), "2 GiB");
        assert_eq!(format!("{}", HumanSize(2047 << 20)), "2047 MiB");
        assert_eq!(format!("{}", HumanSize(0)), "0 B");
        assert_eq!(format!("{}", HumanSize(u64::MAX)), "16383 PiB");
        assert_eq!(format!("{:<8}|", HumanSize(1024)), "1 KiB   |");
    }

    #[test]
    fn decimal_parsing() {
        assert_eq!(parse_decimal("42"), Some(42));
        assert_eq!(parse_decimal("+4"), None);
        assert_eq!(parse_decimal(""), None);
        assert_eq!(parse_decimal("99999999999999999999999"), None);
    }
}
