//! Host tests of the xenstore commands ([`crate::xenstore`]) through the whole
//! dispatch path, against [`FakeSystem`]'s [`FakeXenstore`]: output formats,
//! escaping both ways, usage errors, the store's refusals passed through, and
//! `help` listing the commands once the table is registered.

use alloc::string::String;
use alloc::vec::Vec;

use crate::command::Registry;
use crate::testing::{fake_xenstore_shell, FakeSystem, FakeXenstore, Xorshift};
use crate::xenstore::{unescape, xenstore_commands, Escaped};
use crate::Shell;

fn run_lines(lines: &[&str]) -> (FakeSystem, String) {
    let shell = fake_xenstore_shell();
    let mut system = FakeSystem::new();
    let mut output = String::new();
    for line in lines {
        shell.execute_line(&mut system, line, &mut output);
    }
    (system, output)
}

fn run(line: &str) -> String {
    run_lines(&[line]).1
}

const XENSTORE_COMMAND_NAMES: [&str; 4] = ["xenstore-ls", "xenstore-read", "xenstore-rm", "xenstore-write"];

#[test]
fn help_lists_the_xenstore_commands() {
    let shell = fake_xenstore_shell();
    let output = run("help");
    assert_eq!(output.lines().count(), shell.registry().len());
    for name in XENSTORE_COMMAND_NAMES {
        let command = shell.registry().find(name).unwrap();
        let line = output.lines().find(|line| line.split_whitespace().next() == Some(name)).unwrap();
        assert!(line.contains(command.usage) && line.ends_with(command.summary), "{line}");
    }
    // The table stands alone on a context that is only a xenstore.
    let registry = Registry::new(&[xenstore_commands::<FakeXenstore>()]).unwrap();
    let names: Vec<&str> = registry.iter().map(|command| command.name).collect();
    assert_eq!(names, XENSTORE_COMMAND_NAMES);
    let alone = Shell::new(registry);
    let mut store = FakeXenstore::new();
    let mut output = String::new();
    alone.execute_line(&mut store, "xenstore-read /local/domain/3/name", &mut output);
    assert_eq!(output, "web\n");
}

#[test]
fn ls_prints_the_tree_indented_with_escaped_values() {
    assert_eq!(
        run("xenstore-ls"),
        concat!(
            "local = \"\"\n",
            " domain = \"\"\n",
            "  0 = \"\"\n",
            "   name = \"Domain-0\"\n",
            "  3 = \"\"\n",
            "   data = \"\"\n",
            "    blob = \"a\\tb\\001\\xff\\\\\"\n",
            "   memory = \"\"\n",
            "    target = \"524288\"\n",
            "   name = \"web\"\n",
            "tool = \"\"\n",
        )
    );
    assert_eq!(run("xenstore-ls /local/domain/3/memory"), "target = \"524288\"\n");
    assert_eq!(run("xenstore-ls /local/domain/3/name"), "");
    // Relative to dom0's home.
    assert_eq!(run("xenstore-ls ."), "error: .: invalid argument or path (EINVAL)\n");
    assert_eq!(run("xenstore-ls /nope"), "error: /nope: no such node (ENOENT)\n");
    assert_eq!(run("xenstore-ls / extra"), "error: unexpected argument 'extra'\nusage: xenstore-ls [PATH]\n");
}

#[test]
fn read_write_rm() {
    assert_eq!(run("xenstore-read /local/domain/3/name"), "web\n");
    assert_eq!(run("xenstore-read name"), "Domain-0\n");
    assert_eq!(run("xenstore-read /local/domain/3/data/blob"), "a\\tb\\001\\xff\\\\\n");
    let (system, output) = run_lines(&[
        "xenstore-write /local/domain/3/control/shutdown poweroff",
        "xenstore-read /local/domain/3/control/shutdown",
        "xenstore-write /local/domain/3/data/bin 'a\\x00\\n\\7z'",
        "xenstore-rm /local/domain/3/memory",
    ]);
    assert_eq!(output, "poweroff\n");
    assert_eq!(system.xenstore.nodes["/local/domain/3/data/bin"], b"a\0\n\x07z");
    assert!(!system.xenstore.nodes.contains_key("/local/domain/3/memory/target"));
    assert!(!system.xenstore.nodes.contains_key("/local/domain/3/memory"));
}

#[test]
fn errors_are_one_line_and_usage_errors_show_usage() {
    assert_eq!(run("xenstore-read"), "error: missing PATH\nusage: xenstore-read PATH\n");
    assert_eq!(run("xenstore-read a b"), "error: unexpected argument 'b'\nusage: xenstore-read PATH\n");
    assert_eq!(run("xenstore-read /nope"), "error: /nope: no such node (ENOENT)\n");
    assert_eq!(run("xenstore-write"), "error: missing PATH and VALUE\nusage: xenstore-write PATH VALUE\n");
    assert_eq!(run("xenstore-write /x"), "error: missing VALUE\nusage: xenstore-write PATH VALUE\n");
    assert_eq!(run("xenstore-write /x 1 2"), "error: unexpected argument '2'\nusage: xenstore-write PATH VALUE\n");
    assert_eq!(run("xenstore-write /a//b 1"), "error: /a//b: invalid argument or path (EINVAL)\n");
    assert_eq!(run("xenstore-rm /"), "error: /: invalid argument or path (EINVAL)\n");
    assert_eq!(run("xenstore-rm"), "error: missing PATH\nusage: xenstore-rm PATH\n");
}

#[test]
fn escaping_round_trips() {
    let mut generator = Xorshift::new(0x5eed);
    for _ in 0..2000 {
        let value: Vec<u8> = (0..generator.below(12)).map(|_| generator.next_u64() as u8).collect();
        let text = alloc::format!("{}", Escaped(&value));
        assert!(text.bytes().all(|byte| (b' '..=b'~').contains(&byte)), "{text:?}");
        assert_eq!(unescape(&text), value, "{text:?}");
    }
    assert_eq!(unescape("\\x"), b"x");
    assert_eq!(unescape("\\xg"), b"xg");
    assert_eq!(unescape("\\q"), b"q");
    assert_eq!(unescape("end\\"), b"end\\");
    assert_eq!(unescape("\\101\\0"), b"A\0");
}
