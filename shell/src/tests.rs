//! Host tests of the whole shell: every built-in command's output against
//! [`FakeSystem`], error lines, extra command tables, and the serial loop
//! (noline + answerback shim) under hostile input, ending with the fuzz
//! bodies run over many deterministic pseudo-random inputs.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::command::{Command, CommandError, Invocation, Registry, RegistryError};
use crate::testing::{
    fake_appliance_shell, fake_shell, fuzz_shell_input, fuzz_tokenize, FakeSystem, ScriptedLine, Xorshift,
    FAKE_VERSION_LINE, RECOVERY_INPUT,
};
use crate::{builtin_commands, Shell, PROMPT};

fn run_command(line: &str) -> String {
    let shell = fake_shell();
    let mut system = FakeSystem::new();
    let mut output = String::new();
    shell.execute_line(&mut system, line, &mut output);
    output
}

/// Runs the serial loop over `input` (a terminal that answers nothing).
fn serve(input: &[u8]) -> String {
    let shell = fake_shell();
    let mut system = FakeSystem::new();
    let mut line = ScriptedLine::new(input);
    shell.run_until_closed(&mut system, &mut line);
    line.output_text()
}

const BUILTIN_NAMES: [&str; 8] = ["cpus", "dmesg", "help", "info", "mem", "poweroff", "uptime", "version"];

#[test]
fn help_lists_every_command_with_usage_and_summary() {
    let output = run_command("help");
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.len(), BUILTIN_NAMES.len(), "{output}");
    for (line, name) in lines.iter().zip(BUILTIN_NAMES) {
        let command = fake_shell().registry().find(name).unwrap();
        assert!(line.starts_with(name), "{line}");
        assert!(line.contains(command.usage), "{line}");
        assert!(line.ends_with(command.summary), "{line}");
    }
    assert!(output.contains("dmesg [-l LEVEL] [-n COUNT]"));
}

#[test]
fn help_for_one_command() {
    assert_eq!(
        run_command("help dmesg"),
        "usage: dmesg [-l LEVEL] [-n COUNT]\nshow the hypervisor log (LEVEL: error|warn|info|debug|trace)\n"
    );
    assert_eq!(run_command("help nope"), "error: unknown command 'nope'\nusage: help [COMMAND]\n");
    assert_eq!(run_command("help a b"), "error: unexpected argument 'b'\nusage: help [COMMAND]\n");
}

#[test]
fn version_line() {
    assert_eq!(run_command("version"), format!("{FAKE_VERSION_LINE}\n"));
    assert_eq!(run_command("version now"), "error: unexpected argument 'now'\nusage: version\n");
}

#[test]
fn info_lines() {
    let output = run_command("info");
    let expected = [
        "CPU: AuthenticAMD AMD EPYC 7302 (family 23 model 49 stepping 0)",
        "CPUs: 2 found, 1 online",
        "Memory: 2048 MiB total, 1900 MiB free",
        "Virtualization: SVM NPT x2APIC",
        "Missing: VMX EPT",
        "Guests: AMD SVM with nested paging",
        "Firmware: BIOS",
        "TSC: 2994 MHz",
        "Command line: console=ttyS0 loglevel=debug",
    ];
    assert_eq!(output.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn info_without_features_or_facts() {
    let shell = fake_shell();
    let mut system = FakeSystem::new();
    system.platform.features.clear();
    system.platform.tsc_khz = 0;
    system.platform.cmdline.clear();
    let mut output = String::new();
    shell.execute_line(&mut system, "info", &mut output);
    assert!(output.contains("Virtualization: none\n"), "{output}");
    assert!(output.contains("Missing: none\n"), "{output}");
    assert!(output.contains("TSC: unknown\n"), "{output}");
    assert!(output.contains("Command line: (empty)\n"), "{output}");
}

#[test]
fn cpus_table() {
    let output = run_command("cpus");
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines[0], "CPU  APIC  STATE    TICKS");
    assert!(lines[1].starts_with("  0     0  online   1234"), "{output}");
    assert!(lines[1].ends_with("bootstrap"), "{output}");
    assert_eq!(lines[2], "  1     2  offline  0");
    assert_eq!(lines[3], "2 CPUs, 1 online");
}

#[test]
fn mem_totals_and_regions() {
    let output = run_command("mem");
    assert!(output.contains("Memory: 2048 MiB total, 1900 MiB free\n"), "{output}");
    assert!(output.contains("Heap: 1024 KiB used of 16384 KiB\n"), "{output}");
    assert!(output.contains("START"), "{output}");
    assert!(output.contains("0x0000000000000000  0x000000000009fc00  639 KiB     usable\n"), "{output}");
    assert!(output.contains("0x0000000000100000  0x0000000080000000  2047 MiB    usable\n"), "{output}");
}

#[test]
fn uptime_format() {
    assert_eq!(run_command("uptime"), "up 0d 00:01:23.456\n");
    let shell = fake_shell();
    let mut system = FakeSystem::new();
    system.uptime_ns = ((2 * 86_400 + 3 * 3600 + 4 * 60 + 5) * 1_000_000_000) + 6_000_000;
    let mut output = String::new();
    shell.execute_line(&mut system, "uptime", &mut output);
    assert_eq!(output, "up 2d 03:04:05.006\n");
}

#[test]
fn dmesg_all_filtered_and_last() {
    let output = run_command("dmesg");
    assert_eq!(output.lines().count(), 5, "{output}");
    assert!(output.starts_with("[    0.001000] info: basalt booting\n"), "{output}");
    assert!(output.contains("[   12.345678] warn: cpu 1 did not start\n"));
    // Escape sequences in log text are neutralized.
    assert!(output.contains("error: evil ?[6n text\n"), "{output}");
    assert!(!output.contains('\x1b'));

    let warnings = run_command("dmesg -l warn");
    assert_eq!(warnings.lines().count(), 2, "{warnings}");
    assert!(warnings.contains("warn: cpu 1") && warnings.contains("error: evil"));

    let last_two = run_command("dmesg -n 2");
    assert_eq!(last_two, "[   13.000000] error: evil ?[6n text\n[   14.000000] trace: tick\n");
    assert_eq!(run_command("dmesg -l info -n 1"), "[   13.000000] error: evil ?[6n text\n");
    assert_eq!(run_command("dmesg -n 0"), "");
    assert_eq!(run_command("dmesg -n 18446744073709551615").lines().count(), 5);
}

#[test]
fn dmesg_bad_arguments() {
    let usage = "usage: dmesg [-l LEVEL] [-n COUNT]\n";
    assert_eq!(
        run_command("dmesg -l loud"),
        format!("error: unknown log level 'loud' (error, warn, info, debug, trace)\n{usage}")
    );
    assert_eq!(run_command("dmesg -n many"), format!("error: COUNT must be a number, not 'many'\n{usage}"));
    assert_eq!(run_command("dmesg -n"), format!("error: option -n needs a value\n{usage}"));
    assert_eq!(run_command("dmesg -x"), format!("error: unknown option '-x'\n{usage}"));
    assert_eq!(
        run_command("dmesg -n 99999999999999999999999"),
        format!("error: COUNT must be a number, not '99999999999999999999999'\n{usage}")
    );
}

#[test]
fn reboot_and_poweroff_report_failure() {
    // `reboot` is in the appliance table, so this needs the whole appliance.
    let shell = fake_appliance_shell();
    let mut system = FakeSystem::new();
    let mut output = String::new();
    shell.execute_line(&mut system, "reboot", &mut output);
    shell.execute_line(&mut system, "poweroff", &mut output);
    assert_eq!(
        output,
        "Rebooting...\nerror: reboot failed: fake machine cannot reboot\n\
         Powering off...\nerror: poweroff failed: fake machine cannot power off\n"
    );
    assert_eq!((system.reboot_requests, system.poweroff_requests), (1, 1));
    let mut output = String::new();
    shell.execute_line(&mut system, "poweroff now", &mut output);
    assert_eq!(output, "error: unexpected argument 'now'\nusage: poweroff\n");
    // With a word, `reboot` means a domain, never the machine.
    let mut output = String::new();
    shell.execute_line(&mut system, "reboot now", &mut output);
    shell.execute_line(&mut system, "reboot web now", &mut output);
    shell.execute_line(&mut system, "reboot -t 5", &mut output);
    assert_eq!(
        output,
        "error: no domain 'now'\nerror: unexpected argument 'now'\nusage: reboot [[-t SECONDS] DOMAIN]\n\
         error: missing DOMAIN\nusage: reboot [[-t SECONDS] DOMAIN]\n"
    );
    assert_eq!((system.reboot_requests, system.poweroff_requests), (1, 1));
    assert!(system.domains.reboot_requests.is_empty());
    // The built-in table alone has no `reboot`.
    assert_eq!(run_command("reboot"), "error: unknown command 'reboot'; type 'help' for a list\n");
}

#[test]
fn unknown_commands_and_parse_errors_get_one_line() {
    assert_eq!(run_command("frobnicate --hard"), "error: unknown command 'frobnicate'; type 'help' for a list\n");
    assert_eq!(run_command("version 'open"), "error: unterminated ' quote\n");
    let long_line = "x".repeat(10_000);
    assert_eq!(run_command(&long_line), "error: line too long (10000 bytes, at most 1024)\n");
    assert_eq!(run_command("a\x07b"), "error: control character U+0007 at byte 1\n");
    let many_words = ["w"; 100].join(" ");
    assert_eq!(run_command(&many_words), "error: too many words (at most 64)\n");
}

#[test]
fn blank_lines_do_nothing() {
    assert_eq!(run_command(""), "");
    assert_eq!(run_command("   \t "), "");
}

#[test]
fn quoted_command_name_dispatches() {
    assert_eq!(run_command("'version'"), format!("{FAKE_VERSION_LINE}\n"));
}

// A later subsystem's table, concrete on the context type like image/'s will be.
fn run_greet(invocation: &mut Invocation<'_, FakeSystem>) -> Result<(), CommandError> {
    match invocation.args {
        [name] => {
            writeln!(invocation.out, "hello, {name}")?;
            Ok(())
        }
        _ => Err(CommandError::Usage(String::from("need exactly one NAME"))),
    }
}
static GREETING_COMMANDS: &[Command<FakeSystem>] =
    &[Command { name: "greet", usage: "greet NAME", summary: "say hello", run: run_greet }];
static CLASHING_COMMANDS: &[Command<FakeSystem>] =
    &[Command { name: "version", usage: "version", summary: "an impostor", run: run_greet }];

#[test]
fn extra_tables_join_the_registry() {
    let registry = Registry::new(&[builtin_commands::<FakeSystem>(), GREETING_COMMANDS]).unwrap();
    let shell = Shell::new(registry);
    let mut system = FakeSystem::new();
    let mut output = String::new();
    shell.execute_line(&mut system, "greet \"Basalt operator\"", &mut output);
    shell.execute_line(&mut system, "greet", &mut output);
    shell.execute_line(&mut system, "help", &mut output);
    assert!(output.starts_with("hello, Basalt operator\nerror: need exactly one NAME\nusage: greet NAME\n"));
    assert!(output.contains("greet     greet NAME"), "{output}");
    assert_eq!(
        Registry::new(&[builtin_commands::<FakeSystem>(), CLASHING_COMMANDS]).err(),
        Some(RegistryError::DuplicateName("version"))
    );
}

#[test]
fn serial_session_with_dumb_terminal() {
    let output = serve(b"version\r");
    assert!(output.contains(PROMPT), "{output:?}");
    assert!(output.contains(&format!("\n\r{FAKE_VERSION_LINE}\r\n")), "{output:?}");
    // Two prompts: one for `version`, one after it.
    assert_eq!(output.matches(PROMPT).count(), 2, "{output:?}");
}

#[test]
fn serial_session_with_answering_terminal() {
    let shell = fake_shell();
    let mut system = FakeSystem::new();
    let mut line = ScriptedLine::answering(b"uptime\rversion\r", 40, 120);
    shell.run_until_closed(&mut system, &mut line);
    let output = line.output_text();
    assert!(output.contains("up 0d 00:01:23.456\r\n"), "{output:?}");
    assert!(output.contains(FAKE_VERSION_LINE), "{output:?}");
    assert_eq!(output.matches(PROMPT).count(), 3, "{output:?}");
}

#[test]
fn silent_terminal_with_timeouts_loses_no_keystroke() {
    let mut script = alloc::vec![None, None, None];
    script.extend(b"ver".iter().map(|&byte| Some(byte)));
    script.push(None);
    script.extend(b"sion\r".iter().map(|&byte| Some(byte)));
    let shell = fake_shell();
    let mut system = FakeSystem::new();
    let mut line = ScriptedLine::with_pauses(&script);
    shell.run_until_closed(&mut system, &mut line);
    assert!(line.output_text().contains(FAKE_VERSION_LINE));
}

#[test]
fn error_lines_use_crlf_on_serial() {
    let output = serve(b"nope\rdmesg -n x\r");
    assert!(output.contains("error: unknown command 'nope'; type 'help' for a list\r\n"));
    assert!(output.contains("error: COUNT must be a number, not 'x'\r\nusage: dmesg [-l LEVEL] [-n COUNT]\r\n"));
}

#[test]
fn history_recalls_previous_line() {
    let output = serve(b"version\r\x1b[A\r\x1bOA\r");
    assert_eq!(output.matches(FAKE_VERSION_LINE).count(), 3, "{output:?}");
}

#[test]
fn line_editing_keys() {
    // Left and right arrows, Home, End, Delete.
    let output = serve(b"ersio\x1b[D\x1b[Cn\x1b[1~v\x1b[4~\r");
    assert!(output.contains(FAKE_VERSION_LINE), "{output:?}");
    let output = serve(b"vxersion\x1bOH\x1b[C\x1b[3~\r");
    assert!(output.contains(FAKE_VERSION_LINE), "{output:?}");
    // Ctrl-U clears, then Backspace fixes a typo.
    let output = serve(b"garbage\x15versionn\x7f\r");
    assert!(output.contains(FAKE_VERSION_LINE), "{output:?}");
}

#[test]
fn ctrl_c_and_ctrl_d_give_a_fresh_prompt() {
    let output = serve(b"partial\x03\x04version\r");
    assert!(output.contains(FAKE_VERSION_LINE), "{output:?}");
    assert!(!output.contains("unknown command"), "{output:?}");
}

/// Runs hostile `input`, then [`RECOVERY_INPUT`], and checks the shell still works.
fn assert_survives(input: &[u8]) {
    let mut full = input.to_vec();
    full.extend_from_slice(RECOVERY_INPUT);
    let output = serve(&full);
    let version_at = output.rfind(FAKE_VERSION_LINE).expect("version ran");
    assert_eq!(output[version_at..].matches(PROMPT).count(), 1);
}

#[test]
fn survives_a_10_kb_line() {
    let mut input = alloc::vec![b'x'; 10 * 1024];
    input.push(b'\r');
    assert_survives(&input);
    // Characters past the 256-byte line buffer are refused (bell), not stored.
    let mut long_word = alloc::vec![b'y'; 10 * 1024];
    long_word.push(b'\r');
    let output = serve(&long_word);
    let expected = format!("error: unknown command '{}';", "y".repeat(256));
    assert!(output.contains(&expected), "{}", &output[output.len() - 400..]);
}

#[test]
fn survives_every_byte_value() {
    let every_byte: Vec<u8> = (0..=255).collect();
    assert_survives(&every_byte);
    let reversed: Vec<u8> = (0..=255).rev().collect();
    assert_survives(&reversed);
}

#[test]
fn survives_random_garbage() {
    let mut generator = Xorshift::new(0x5eed);
    let garbage: Vec<u8> = (0..50_000).map(|_| generator.next_u64() as u8).collect();
    assert_survives(&garbage);
}

#[test]
fn survives_escape_sequence_soup() {
    let fragments: [&[u8]; 24] = [
        b"\x1b",
        b"\x1b[",
        b"\x1b[A",
        b"\x1b[B",
        b"\x1b[C",
        b"\x1b[D",
        b"\x1b[1~",
        b"\x1b[3~",
        b"\x1b[4~",
        b"\x1b[H",
        b"\x1b[F",
        b"\x1bOA",
        b"\x1b[6n",
        b"\x1b[999;999H",
        b"\x1b[200~",
        b"\x1b[0;0R",
        b"\x1b[R",
        b"\x1b[5R",
        b"\x1b[;R",
        b"\x1b[1;1R",
        b"\x1b[65535;65535R",
        b"\x1b[99999999999999999999999999R",
        b"\x1b]0;title\x07",
        b"\x1b[?1049h",
    ];
    let mut generator = Xorshift::new(42);
    let mut soup = Vec::new();
    for _ in 0..20_000 {
        match generator.below(4) {
            0 => soup.push(b"abc \r\x08\x7f"[generator.below(7)]),
            _ => soup.extend_from_slice(fragments[generator.below(fragments.len())]),
        }
    }
    assert_survives(&soup);
}

#[test]
fn survives_cursor_reports_interleaved_with_typing() {
    let mut input = Vec::new();
    for round in 0..500u32 {
        input.extend_from_slice(format!("\x1b[{};{}R", round % 7, round % 13).as_bytes());
        input.extend_from_slice(b"ver");
        input.extend_from_slice(format!("\x1b[{}R", round).as_bytes());
        input.extend_from_slice(b"sion\r");
    }
    let output = serve(&input);
    assert_eq!(output.matches(FAKE_VERSION_LINE).count(), 500);
}

#[test]
fn survives_malformed_answers_from_a_real_terminal() {
    // Answers arrive where noline waits for them, but are broken.
    for answers in [
        &b"\x1b[0;0R\x1b[0;0R"[..],
        b"\x1b[R\x1b[R",
        b"\x1b[5R\x1b[;5R",
        b"\x1b[9999;9999R\x1b[9999;1R",
        b"\x1b[24;3R\x1b[24;1R",
        b"\x1b[1;1R\x1b[1;1R",
    ] {
        let mut input = answers.to_vec();
        input.extend_from_slice(b"version\r");
        let output = serve(&input);
        assert!(output.contains(FAKE_VERSION_LINE), "{answers:?}: {output:?}");
    }
}

#[test]
fn survives_a_flood_of_enters_and_controls() {
    let mut input = Vec::new();
    for index in 0..5_000u32 {
        input.push([b'\r', b'\n', 0x03, 0x04, 0x0c, 0x10, 0x0e, 0x17, 0x0b][index as usize % 9]);
    }
    assert_survives(&input);
}

/// Runs the `shell_input` fuzz body over `count` deterministic inputs: short,
/// biased toward what matters (escape fragments, digits, separators, control
/// and non-ASCII bytes, both valid and invalid UTF-8).
fn run_shell_fuzz_body(seed: u64, count: usize) {
    const ALPHABET: &[u8] = b"\x1b\x1b\x1b[[[;;0123456789RRnOAB~HCD \r\r\x03\x04\x7f\x08\x10\x14\x17\x80\xc3\xa9\xe2\x82\xac\xed\xa0\xc0\xf0\x9f\xf4\x90\xf8vxyz'\"\\";
    let mut generator = Xorshift::new(seed);
    for _ in 0..count {
        let length = generator.below(48);
        let mut data = alloc::vec![generator.below(4) as u8];
        for _ in 0..length {
            let byte = if generator.below(4) == 0 {
                generator.next_u64() as u8
            } else {
                ALPHABET[generator.below(ALPHABET.len())]
            };
            data.push(byte);
        }
        fuzz_shell_input(&data);
    }
}

#[test]
fn fuzz_body_over_deterministic_inputs() {
    // ~6 s unoptimized; the 200k-input run below is opt-in.
    run_shell_fuzz_body(0xba5a17, 20_000);
}

#[test]
#[ignore = "about a minute unoptimized; run with `cargo test -p basalt-shell -- --ignored`"]
fn fuzz_body_over_200k_deterministic_inputs() {
    run_shell_fuzz_body(0xdecaf, 200_000);
}

#[test]
fn history_wraps_with_multibyte_entries() {
    // Far more than the 4 KiB history holds, with 2-, 3- and 4-byte characters,
    // then walk the whole history up and down: entries recalled across the
    // ring's wrap point must still be valid UTF-8 (noline reads them unchecked).
    let mut input = Vec::new();
    for index in 0..400u32 {
        input.extend_from_slice(format!("é€😀 {index} {}\r", "ü".repeat(index as usize % 17)).as_bytes());
    }
    for _ in 0..300 {
        input.extend_from_slice(b"\x1b[A");
    }
    input.extend_from_slice(b"\x03");
    for _ in 0..100 {
        input.extend_from_slice(b"\x1b[A\x1b[A\x1b[B\x14\x17\r");
    }
    assert_survives(&input);
}

#[test]
fn tokenize_fuzz_body_over_deterministic_inputs() {
    const ALPHABET: &[u8] = b"ab \t'\"\\\x01\x7f\xc2\x9b\xe2\x82\xac -l n 5";
    let mut generator = Xorshift::new(7);
    for _ in 0..200_000 {
        let length = generator.below(40);
        let data: Vec<u8> = (0..length)
            .map(|_| {
                if generator.below(8) == 0 {
                    generator.next_u64() as u8
                } else {
                    ALPHABET[generator.below(ALPHABET.len())]
                }
            })
            .collect();
        fuzz_tokenize(&data);
    }
}

#[test]
fn invalid_utf8_never_reaches_the_editor() {
    // Found by the fuzz body: noline 0.5.1 stores these in its line buffer and
    // later reads it as `str` unchecked. The shim must drop them.
    for invalid in [
        &b"\xc0\x80"[..],        // overlong NUL
        b"\xc1\xbf",             // overlong
        b"\xe0\x80\x80",         // overlong
        b"\xed\xa0\x80",         // surrogate U+D800
        b"\xf4\x90\x80\x80",     // above U+10FFFF
        b"\xf5\x80\x80\x80",     // invalid lead
        b"\xf8\x88\x80\x80\x80", // 5-byte form
        b"\x80\xbf",             // lone continuations
        b"\xe2\x82",             // truncated
    ] {
        let mut input = b"x".to_vec();
        input.extend_from_slice(invalid);
        input.extend_from_slice("é\r".as_bytes());
        let output = serve(&input);
        assert!(output.contains("error: unknown command 'xé'; type 'help' for a list\r\n"), "{invalid:?}: {output:?}");
    }
}

#[test]
fn terminal_control_strings_are_not_typed_text() {
    // A terminal's title report (OSC ... BEL) and a DCS string ended by ST arrive
    // before a command; neither may reach the line editor.
    let output = serve(b"\x1b]0;title\x07\x1bP1$r0m\x1b\\version\r");
    assert!(output.contains(FAKE_VERSION_LINE), "{output}");
    assert!(!output.contains("unknown command"), "{output}");
    assert!(!output.contains("title"), "{output}");
    // An unterminated control string is bounded: input after it is still read.
    let mut input = b"\x1b]".to_vec();
    input.extend(core::iter::repeat_n(b'z', 600));
    input.extend_from_slice(b"\r");
    assert_survives(&input);
}
