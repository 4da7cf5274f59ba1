//! Host tests of the debugger commands ([`crate::debugger`]) and of the shell's
//! session mode, against [`FakeSystem`]'s [`crate::testing::FakeDebugger`]: `mdb`
//! switches the prompt to `> ` and hands lines to the session until `$q`, both
//! through [`Shell::execute_line`] and over a scripted serial line (editing and
//! Ctrl-C included); refusals and usage errors; `dump-core`'s argument parsing.

use alloc::string::String;
use alloc::vec::Vec;

use crate::debugger::{parse_dump_core, DumpCoreRequest, DEBUGGER_PROMPT};
use crate::testing::{fake_debugger_shell, FakeSystem, ScriptedLine};
use crate::{CommandError, Shell, PROMPT};

/// Runs `lines` in order on one fake appliance; returns it, the shell and the
/// output of each line.
fn run_lines(lines: &[&str]) -> (FakeSystem, Shell<FakeSystem>, Vec<String>) {
    let shell = fake_debugger_shell();
    let mut system = FakeSystem::new();
    let mut outputs = Vec::new();
    for line in lines {
        let mut output = String::new();
        shell.execute_line(&mut system, line, &mut output);
        outputs.push(output);
    }
    (system, shell, outputs)
}

fn recorded_lines(system: &FakeSystem) -> Vec<String> {
    system.debugger.session_lines.borrow().clone()
}

#[test]
fn mdb_routes_lines_to_the_session_until_quit() {
    let shell = fake_debugger_shell();
    let mut system = FakeSystem::new();
    let mut run = |line: &str| {
        let mut output = String::new();
        shell.execute_line(&mut system, line, &mut output);
        (output, shell.prompt())
    };
    assert_eq!(run("mdb web"), (String::new(), DEBUGGER_PROMPT));
    assert_eq!(run("::status"), (String::from("[web] ::status\n"), DEBUGGER_PROMPT));
    // A shell command's name is just mdb text while the session is open.
    assert_eq!(run("list"), (String::from("[web] list\n"), DEBUGGER_PROMPT));
    assert_eq!(run("  $q  "), (String::new(), PROMPT));
    let (after, prompt) = run("list");
    assert!(after.contains("Domain-0") && after.contains("web"), "{after}");
    assert_eq!(prompt, PROMPT);
    assert!(!shell.in_debugger());
    assert_eq!(system.debugger.opened, ["web"]);
    assert_eq!(recorded_lines(&system), ["web: ::status", "web: list"]);
}

#[test]
fn mdb_opens_by_id_and_can_be_reopened() {
    let (system, shell, outputs) = run_lines(&["mdb 3", "$q", "mdb web", "::cpuinfo", "$q"]);
    assert_eq!(outputs, ["", "", "", "[web] ::cpuinfo\n", ""]);
    assert_eq!(system.debugger.opened, ["web", "web"]);
    assert_eq!(shell.prompt(), PROMPT);
}

#[test]
fn mdb_refusals_and_usage_errors_stay_in_the_shell() {
    let (system, shell, outputs) = run_lines(&["mdb nosuch", "mdb", "mdb web extra", "mdb bad\x1b[2J"]);
    assert_eq!(outputs[0], "error: no domain 'nosuch'\n");
    assert_eq!(outputs[1], "error: missing DOMAIN\nusage: mdb DOMAIN\n");
    assert_eq!(outputs[2], "error: unexpected argument 'extra'\nusage: mdb DOMAIN\n");
    assert!(!outputs[3].contains('\x1b'), "{:?}", outputs[3]);
    assert_eq!(shell.prompt(), PROMPT);
    assert!(system.debugger.opened.is_empty());
}

#[test]
fn the_serial_line_prompts_with_the_mode() {
    let shell = fake_debugger_shell();
    let mut system = FakeSystem::new();
    let mut line = ScriptedLine::answering(b"mdb web\r::status\r$q\rversion\r", 24, 80);
    shell.run_until_closed(&mut system, &mut line);
    let output = line.output_text();
    // Prompts: basalt> (mdb), > (::status), > ($q), basalt> (version), basalt> (end).
    assert_eq!(output.matches(PROMPT).count(), 3, "{output:?}");
    assert_eq!(output.matches(DEBUGGER_PROMPT).count(), 5, "{output:?}");
    let status_at = output.find("[web] ::status").expect("the session answered");
    let version_at = output.find("Basalt 0.1.0").expect("version ran after $q");
    assert!(status_at < version_at);
    assert_eq!(recorded_lines(&system), ["web: ::status"]);
}

#[test]
fn editing_history_and_ctrl_c_work_in_a_session() {
    let shell = fake_debugger_shell();
    let mut system = FakeSystem::new();
    // A typo fixed with backspace; a line abandoned with Ctrl-C (the session
    // stays open); the previous line recalled with the up arrow.
    let input = b"mdb web\r::statux\x7fs\r::regs\x03\x1b[A\r$q\r";
    let mut line = ScriptedLine::answering(input, 24, 80);
    shell.run_until_closed(&mut system, &mut line);
    assert_eq!(recorded_lines(&system), ["web: ::status", "web: ::status"]);
    assert!(!shell.in_debugger());
}

#[test]
fn dump_core_parses_its_arguments() {
    let request = |domain: &str, disk: &str, crash| DumpCoreRequest {
        domain: String::from(domain),
        disk: String::from(disk),
        crash,
    };
    assert_eq!(parse_dump_core(&["web", "sda1"]), Ok(request("web", "sda1", false)));
    assert_eq!(parse_dump_core(&["--crash", "web", "sda1"]), Ok(request("web", "sda1", true)));
    assert_eq!(parse_dump_core(&["web", "sda1", "--crash"]), Ok(request("web", "sda1", true)));
    let usage = |message: &str| Err(CommandError::Usage(String::from(message)));
    assert_eq!(parse_dump_core(&[]), usage("missing DOMAIN and DISK"));
    assert_eq!(parse_dump_core(&["--crash", "web"]), usage("missing DISK"));
    assert_eq!(parse_dump_core(&["web", "sda1", "sdb"]), usage("unexpected argument 'sdb'"));
    assert_eq!(parse_dump_core(&["-c", "web", "sda1"]), usage("unknown option '-c'"));
    assert_eq!(parse_dump_core(&["--force", "web", "sda1"]), usage("unknown option '--force'"));
}

#[test]
fn dump_core_runs_the_implementation_and_prints_its_lines() {
    let (system, _, outputs) =
        run_lines(&["dump-core --crash web sda1", "dump-core 3 nvme0n1", "dump-core web", "dump-core web nodisk"]);
    assert_eq!(
        outputs[0],
        "dump-core: writing domain 3 (web) to sda1\ndump-core: 512 MiB written; domain left crashed\n"
    );
    assert_eq!(
        outputs[1],
        "dump-core: writing domain 3 (web) to nvme0n1\ndump-core: 512 MiB written; domain resumed\n"
    );
    assert_eq!(outputs[2], "error: missing DISK\nusage: dump-core [--crash] DOMAIN DISK\n");
    assert_eq!(outputs[3], "error: no disk or partition named nodisk\n");
    assert_eq!(system.debugger.dumps.len(), 2);
    assert!(system.debugger.dumps[0].crash && !system.debugger.dumps[1].crash);
}

#[test]
fn help_lists_the_debugger_commands() {
    let (_, _, outputs) = run_lines(&["help"]);
    assert!(outputs[0].contains("mdb DOMAIN"), "{}", outputs[0]);
    assert!(outputs[0].contains("dump-core [--crash] DOMAIN DISK"), "{}", outputs[0]);
}
