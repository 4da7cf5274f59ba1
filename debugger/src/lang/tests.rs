//! Session-level tests of the language, the formats and the generic dcmds, against
//! the fuzzing fixture (a page of code at TEXT, a page of data at DATA).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use super::fuzzing::{fixture, fixture_with_symbols, fuzz_on, DATA, TEXT};
use crate::engine::{Flow, Session};
use crate::target::testing::FakeTarget;

fn run_on(target: FakeTarget, lines: &[&str]) -> (String, Session<'static>) {
    let mut session = Session::new(Box::new(target));
    let mut output = String::new();
    for line in lines {
        session.execute(line, &mut output);
    }
    (output, session)
}

fn run(line: &str) -> String {
    run_on(fixture(), &[line]).0
}

fn with_symbols() -> FakeTarget {
    fixture_with_symbols()
}

/// A line as the formats lay it out: the label and colon, padded to column 16.
fn labelled(label: &str, items: &str) -> String {
    let label = alloc::format!("{label}:");
    alloc::format!("{label:<15} {items}\n")
}

fn run_symbols(line: &str) -> String {
    run_on(with_symbols(), &[line]).0
}

#[test]
fn arithmetic_follows_mdb_precedence_and_radix() {
    assert_eq!(run("10=E"), "16\n");
    assert_eq!(run("0t10=E"), "10\n");
    assert_eq!(run("0o17+0i101=E"), "20\n");
    assert_eq!(run("0x10*2+1=E"), "33\n");
    assert_eq!(run("1+2*3=E"), "7\n");
    assert_eq!(run("(1+2)*3=E"), "9\n");
    assert_eq!(run("0t7%2=E"), "3\n");
    assert_eq!(run("0t7#4=E"), "8\n");
    assert_eq!(run("1<<4+1=E"), "32\n");
    assert_eq!(run("6&3|8=E"), "10\n");
    assert_eq!(run("6^3=E"), "5\n");
    assert_eq!(run("1+1==2=E"), "1\n");
    assert_eq!(run("2!=2=E"), "0\n");
    assert_eq!(run("-1=J"), "ffffffffffffffff\n");
    assert_eq!(run("~0=X"), "ffffffff\n");
    assert_eq!(run("#0=E;#5=E"), "1\n0\n");
    assert_eq!(run("-1=e"), "-1\n");
    assert_eq!(run("ffffffffffffffff+2=E"), "1\n");
    assert_eq!(run("1<<0t64=E"), "0\n");
    assert_eq!(run("deadbeef=X"), "deadbeef\n");
    assert_eq!(run("ffff_8000_0000_0000=J"), "ffff800000000000\n");
    assert_eq!(run("1_0+0x1_0=E"), "32\n");
}

#[test]
fn expression_errors_are_one_line() {
    assert_eq!(run("1%0=E"), "error: division by zero\n");
    assert_eq!(run("1#0=E"), "error: division by zero\n");
    assert_eq!(run("(1+2=E"), "error: syntax error: missing ')'\n");
    assert_eq!(run("nosuchsymbol=E"), "error: unknown symbol 'nosuchsymbol'\n");
    assert_eq!(run("<nosuch=E"), "error: unknown register '<nosuch'\n");
    assert_eq!(run("1+=E"), "error: syntax error: expression expected before '='\n");
    assert_eq!(run("12zz=E"), "error: '12zz' is not a number\n");
    assert_eq!(run("*1000=E"), "error: no mapping for virtual address 0x1000\n");
    assert_eq!(run("1 2"), "error: syntax error: a dcmd or format expected before number 0x2\n");
    let deep = "(".repeat(500) + "1";
    assert_eq!(run(&deep), "error: expression nested too deeply\n");
    assert_eq!(run(&"-".repeat(10_000)), "error: expression nested too deeply\n");
}

#[test]
fn dot_registers_and_dereference() {
    let (output, session) = run_on(fixture(), &["1234", ".=J", ".+1=J"]);
    assert_eq!(output, "1234\n1235\n");
    assert_eq!(session.dot(), 0x1235);
    let (output, session) = run_on(fixture(), &["1234;.+1;.+1", ".=J"]);
    assert_eq!((output.as_str(), session.dot()), ("1236\n", 0x1236));
    assert_eq!(run("<rip=J"), alloc::format!("{TEXT:x}\n"));
    assert_eq!(run("<rsp-20=J"), alloc::format!("{DATA:x}\n"));
    assert_eq!(run("<cr0=X;<efer=X"), "80000011\n500\n");
    assert_eq!(run(&alloc::format!("*{DATA:#x}=J")), "1122334455667788\n");
    assert_eq!(run(&alloc::format!("%{DATA:#x}=X")), "55667788\n");
    // *(DATA+8) holds DATA itself: dereferences chain.
    assert_eq!(run(&alloc::format!("**({DATA:#x}+8)=J")), "1122334455667788\n");
    // The address of /fmt becomes dot.
    let (output, _) = run_on(fixture(), &[&alloc::format!("{DATA:#x}/J"), ".=J"]);
    assert!(output.ends_with(&alloc::format!("\n{DATA:x}\n")), "{output}");
}

#[test]
fn memory_formats() {
    let data = |format: &str| run(&alloc::format!("{DATA:#x}{format}"));
    let at = |offset: u64| alloc::format!("{:#x}", DATA + offset);
    let label = at(0);
    assert_eq!(data("/J"), labelled(&label, "1122334455667788"));
    assert_eq!(data("/K"), labelled(&label, "1122334455667788"));
    assert_eq!(data("/2X"), labelled(&label, "55667788 11223344"));
    assert_eq!(data(",2/X"), data("/2X"));
    assert_eq!(data("/x"), labelled(&label, "7788"));
    assert_eq!(data("/B"), labelled(&label, "88"));
    assert_eq!(data("/D"), labelled(&label, "1432778632"));
    assert_eq!(data("/U"), data("/D"));
    assert_eq!(data("/E"), labelled(&label, "1234605616436508552"));
    assert_eq!(data("/b"), labelled(&label, "210"));
    assert_eq!(run(&alloc::format!("{}/s", at(16))), labelled(&at(16), "hello"));
    assert_eq!(run(&alloc::format!("{}/5c", at(16))), labelled(&at(16), "hello"));
    assert_eq!(data("/a"), alloc::format!("{label}:\n"));
    assert_eq!(run(&alloc::format!("{}/p", at(8))), labelled(&at(8), &label));
    // Four X per line, then a new line labelled with its own address.
    let lines: Vec<String> = data("/6X").lines().map(String::from).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(alloc::format!("{}\n", lines[1]), labelled(&at(16), "6c6c6568 6f"));
    // Letters in sequence, each from where the last ended.
    assert_eq!(data("/XB"), labelled(&label, "55667788") + &labelled(&at(4), "44"));
}

#[test]
fn instructions_decode_as_64_bit_gas() {
    let output = run(&alloc::format!("{TEXT:#x}/3i"));
    let texts: Vec<&str> =
        output.lines().filter_map(|line| line.split_once(": ")).map(|(_, text)| text.trim()).collect();
    assert_eq!(texts[0], "pushq %rbp");
    assert_eq!(texts[1], "movq %rsp,%rbp");
    assert!(texts[2].starts_with("call"), "{output}");
    // In 32-bit protected mode the same bytes decode differently (0x48 is dec %eax).
    let mut target = fixture();
    target.registers[0].efer = 0;
    target.registers[0].cr4 = 0;
    target.registers[0].cr0 = 1;
    target.write_physical(0x1000, &[0x48, 0x89, 0xe5]);
    let (output, _) = run_on(target, &["1000\\i"]);
    assert!(output.contains("decl %eax"), "{output}");
}

#[test]
fn physical_reads_with_backslash() {
    let mut target = fixture();
    target.write_physical(0x5000, &0xcafe_f00du32.to_le_bytes());
    let (output, _) = run_on(target, &["5000\\X", "6000\\X"]);
    assert_eq!(output, "0x5000:         cafef00d\nerror: no mapping for physical address 0x6000\n");
}

#[test]
fn value_formats() {
    assert_eq!(run("41=c"), "A\n");
    assert_eq!(run("0t100=D"), "100\n");
    assert_eq!(run("ffff=d"), "-1\n");
    assert_eq!(run("10,3=X"), "10 10 10\n");
    assert_eq!(run("1234=a"), "0x1234\n");
    assert_eq!(run("1=s"), "error: format 's' reads memory: use /s (or \\s)\n");
    assert_eq!(run("1=Z"), "error: unknown format letter 'Z'\n");
}

#[test]
fn counts_are_bounded() {
    assert_eq!(
        run(&alloc::format!("{DATA:#x},10001/B")),
        "error: count too large (at most 0x10000 items per command)\n"
    );
    assert_eq!(
        run(&alloc::format!("{DATA:#x},ffffffffffffffff/99999999999X")),
        "error: count too large (at most 0x10000 items per command)\n"
    );
    // A count that fits runs until memory ends, then says where.
    let output = run(&alloc::format!("{DATA:#x},1000/J"));
    assert!(
        output.ends_with(&alloc::format!("error: no mapping for virtual address {:#x}\n", DATA + 0x1000)),
        "{output}"
    );
    // Strings are bounded by the read budget.
    let output = run(&alloc::format!("{DATA:#x},10000/s"));
    assert!(output.lines().count() < 0x10000);
}

#[test]
fn symbols_in_expressions_and_labels() {
    assert_eq!(run_symbols("marker=J"), alloc::format!("{DATA:x}\n"));
    assert_eq!(run_symbols("marker+4=a"), "marker+0x4\n");
    assert_eq!(run_symbols("marker/J"), labelled("marker", "1122334455667788"));
    assert_eq!(run_symbols("self_pointer/p"), "self_pointer:   marker\n");
    assert_eq!(run_symbols("*self_pointer=a"), "marker\n");
    assert_eq!(run_symbols("greeting/s"), "greeting:       hello\n");
    // A rip-relative operand names the symbol it reaches: movq -0x103(%rip),%rax at
    // TEXT+0x100 reads start_kernel+4.
    let mut target = with_symbols();
    target.write_physical(0x20_0100, &[0x48, 0x8b, 0x05, 0xfd, 0xfe, 0xff, 0xff]);
    let (output, _) = run_on(target, &["start_kernel+100/i"]);
    assert!(output.ends_with(",%rax <start_kernel+0x4>\n"), "{output}");
    let output = run_symbols("start_kernel/2i");
    assert!(output.starts_with("start_kernel:   pushq %rbp\nstart_kernel+0x1: movq %rsp,%rbp\n"), "{output}");
}

#[test]
fn dis_vtop_and_nm() {
    let output = run_symbols("start_kernel+1::dis");
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.len(), 6, "{output}");
    assert!(lines[0].starts_with(" start_kernel:") && lines[0].ends_with("pushq %rbp"), "{output}");
    assert!(lines[1].starts_with(">start_kernel+0x1:"), "{output}");
    assert!(lines[2].contains("call") && lines[2].contains("<start_kernel+0x9>"), "{output}");
    assert!(lines[5].ends_with("retq"), "{output}");
    assert_eq!(run_symbols("::dis -n 2").lines().count(), 2);
    assert_eq!(run("::dis -n 2").lines().count(), 2);
    assert_eq!(run("::dis -n 99999"), "error: at most 0x1000 instructions\nusage: ::dis [-n count]\n");

    let output = run(&alloc::format!("{:#x}::vtop", DATA + 0x18));
    assert!(output.starts_with(&alloc::format!("virtual {:#x}: 4-level paging, vCPU 0", DATA + 0x18)), "{output}");
    assert_eq!(output.lines().filter(|line| line.contains(" at physical ")).count(), 4, "{output}");
    assert!(output.contains("physical 0x300018 (4 KiB page)"), "{output}");
    assert!(output.ends_with("machine address: not known to this target\n"), "{output}");
    assert_eq!(run("::vtop"), "error: an address is needed: ADDR::vtop\nusage: ::vtop [-c cpu]\n");
    assert_eq!(
        run("1000::vtop -c 3"),
        "virtual 0x1000: \u{0}".replace('\u{0}', "").replace("virtual 0x1000: ", "error: no vCPU 3\n")
    );
    assert!(run("1000::vtop").ends_with("error: no mapping for virtual address 0x1000\n"));

    let output = run_symbols("::nm");
    assert!(output.starts_with("Value              Size       Type Name\n"), "{output}");
    assert!(
        output.contains(&alloc::format!("{:<18} 0xc        FUNC start_kernel\n", alloc::format!("{TEXT:#x}"))),
        "{output}"
    );
    assert_eq!(run_symbols("::nm ee").lines().count(), 2);
    assert_eq!(run_symbols("::nm -n marker").lines().count(), 2);
    assert_eq!(run_symbols("greeting+2::nm").lines().nth(1).map(|line| line.ends_with("greeting")), Some(true));
    assert_eq!(run_symbols("::nm -n nothing"), "Value              Size       Type Name\nerror: no symbol 'nothing'\n");
    assert!(run("::nm").starts_with("error: no symbols"));
    // ::nm passes addresses on: the data symbols' first words.
    assert_eq!(
        run_symbols("::nm -n marker | /J"),
        alloc::format!(
            "Value              Size       Type Name\n{:<18} 0x8        OBJT marker\n",
            alloc::format!("{DATA:#x}")
        ) + &labelled("marker", "1122334455667788")
    );
}

#[test]
fn pipelines_and_walkers() {
    assert_eq!(run("::walk test_counting"), "1000\n1010\n1020\n");
    assert_eq!(run("500::walk test_counting"), "500\n510\n520\n");
    assert_eq!(
        run("::walk test_counting | ::test_next"),
        "next 0x1000 count None\nnext 0x1010 count None\nnext 0x1020 count None\n"
    );
    assert_eq!(
        run("::walk test_counting | ::test_next | ::test_next"),
        "next 0x1000 count None\nnext 0x1010 count None\nnext 0x1020 count None\n\
next 0x1001 count None\nnext 0x1011 count None\nnext 0x1021 count None\n"
    );
    assert_eq!(run("::walk test_counting | =J"), "1000\n1010\n1020\n");
    assert_eq!(run("7,3::test_next"), "next 0x7 count Some(3)\n");
    assert_eq!(run("1|2::test_next"), "next 0x3 count None\n");
    assert_eq!(run("::walk nosuch"), "error: unknown walker 'nosuch'\n");
    assert_eq!(run("::walk"), "error: one walker name expected\nusage: ::walk walker\n");
    assert_eq!(run("::walkers x"), "error: no arguments expected\nusage: ::walkers\n");
    let walkers = run("::walkers");
    assert!(walkers.contains("  test_counting - test: three addresses 0x10 apart\n"), "{walkers}");
    assert!(walkers.contains("  cpu "), "{walkers}");
    assert_eq!(run("::walk test_counting |"), "error: syntax error: a dcmd or format expected before end of line\n");
    // The pipeline's last dcmd leaves dot at its address.
    let (_, session) = run_on(fixture(), &["::walk test_counting | ::test_next"]);
    assert_eq!(session.dot(), 0x1020);
}

#[test]
fn dcmd_errors_help_and_quit() {
    assert_eq!(run("::nosuch"), "error: unknown dcmd 'nosuch'\n");
    assert_eq!(run("1::test_next -f"), "error: asked to fail\nusage: ::test_next [-f]\n");
    assert_eq!(run("1::test_next -z"), "error: unknown option -z\nusage: ::test_next [-f]\n");
    assert_eq!(run("$x"), "error: unknown dcmd '$x'\n");
    assert_eq!(run(":c"), "error: ':' commands (process control) are not supported; dcmds start with '::'\n");
    assert_eq!(run("::help \"un closed"), "error: unterminated quoted string\n");
    // An error ends the line: the second command does not run.
    assert_eq!(run("::nosuch; 1=X"), "error: unknown dcmd 'nosuch'\n");
    assert_eq!(run("1=X;;2=X"), "1\n2\n");

    let help = run("::help");
    assert!(help.contains("::dcmd") && help.contains("$q"), "{help}");
    let help = run("::help ::vtop");
    assert!(help.starts_with("NAME\n  vtop - translate"), "{help}");
    assert!(help.contains("SYNOPSIS\n  [addr]::vtop [-c cpu]\n"), "{help}");
    assert_eq!(run("::help nosuch"), "error: unknown dcmd 'nosuch'\n");
    let dcmds = run("::dcmds");
    let names: Vec<&str> = dcmds.lines().filter_map(|line| line.split_whitespace().next()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
    for name in ["dcmds", "dis", "help", "nm", "quit", "vtop", "walk", "walkers"] {
        assert!(names.contains(&name), "{name} missing from {dcmds}");
    }

    let mut session = Session::new(Box::new(fixture()));
    let mut output = String::new();
    assert_eq!(session.execute("$q", &mut output), Flow::Quit);
    assert_eq!(session.execute("::quit", &mut output), Flow::Quit);
    assert_eq!(session.execute("1=X; $q", &mut output), Flow::Quit);
    assert_eq!(session.execute("", &mut output), Flow::Continue);
    assert_eq!(session.execute("   ", &mut output), Flow::Continue);
    assert_eq!(output, "1\n");
}

#[test]
fn evaluate_and_symbolic_for_other_dcmds() {
    let session = Session::new(Box::new(with_symbols()));
    let debuggee = session.debuggee();
    assert_eq!(super::evaluate(debuggee, 5, ". + marker"), Ok(DATA + 5));
    assert!(super::evaluate(debuggee, 0, "1 2").is_err());
    assert!(super::evaluate(debuggee, 0, "").is_err());
    assert_eq!(crate::format::symbolic(debuggee, DATA + 0x11), "greeting+0x1");
    assert_eq!(crate::format::symbolic(debuggee, 0x42), "0x42");
}

/// Lines built from the language's pieces at random (a fixed-seed generator): each
/// must return, and every line of output that reports a failure starts `error: `.
#[test]
fn random_lines_never_panic() {
    const PIECES: &[&str] = &[
        "1",
        "0t9",
        "ffff",
        ".",
        "<rip",
        "<rsp",
        "*",
        "%",
        "#",
        "-",
        "~",
        "+",
        "<<",
        ">>",
        "==",
        "!=",
        "&",
        "|",
        "^",
        "(",
        ")",
        ",",
        "::",
        "/",
        "\\",
        "=",
        "$q",
        ";",
        " ",
        "X",
        "J",
        "s",
        "i",
        "c",
        "a",
        "p",
        "10",
        "walk",
        "test_counting",
        "test_next",
        "dis",
        "vtop",
        "nm",
        "help",
        "-n",
        "\"",
        "ffff800000100000",
        "ffffffff81000000",
        "0",
        "ffffffffffffffff",
        "!",
        ":",
        "é",
    ];
    let target = fixture_with_symbols();
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..20_000 {
        let mut line = String::new();
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let length = state % 12;
        for _ in 0..length {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            line.push_str(PIECES[(state % PIECES.len() as u64) as usize]);
        }
        let output = fuzz_on(target.clone(), line.as_bytes());
        assert!(
            output.lines().filter(|text| text.contains("error")).all(|text| text.starts_with("error: ")),
            "{line:?}: {output}"
        );
    }
    assert!(fuzz_on(target, &[0xff, 0xfe]).is_empty());
}
