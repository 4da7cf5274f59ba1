//! Every dcmd on a synthetic core: a test domain is built in memory (code for a → b →
//! c with a frame-pointer chain, a marker string, two vCPUs, event channels, grants,
//! xenstore, shared info, a symbol file), written with `core_file::write_core`, opened
//! again with `CoreFile`, and each dcmd runs through a `Session` on the core, as
//! `basalt-mdb` would. The expected output is what the domain holds, so a field lost
//! or mangled anywhere between the target, the core's sections and the dcmd fails.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use crate::core_file::{write_core, CoreFile};
use crate::engine::{Flow, Session};
use crate::lang::test_elf::elf_with_symbols;
use crate::symbols::SymbolKind;
use crate::target::testing::FakeTarget;
use crate::target::{ChannelBinding, EventChannel, GrantEntry, TargetKind, XenstoreNode};

const TEXT: u64 = 0xffff_ffff_8100_0000;
const STACK: u64 = 0xffff_c900_0000_0000;
const MARKER: u64 = 0xffff_8880_0010_0000;

/// `push %rbp; mov %rsp,%rbp; call <next>; pop %rbp; ret` padded to 0x20 bytes.
fn function_body(call_target_offset: i32) -> Vec<u8> {
    let mut code = vec![0x55, 0x48, 0x89, 0xe5, 0xe8];
    code.extend_from_slice(&call_target_offset.to_le_bytes());
    code.extend_from_slice(&[0x5d, 0xc3]);
    code.resize(0x20, 0x90);
    code
}

fn domain() -> FakeTarget {
    let mut target = FakeTarget::new();
    target.registers.push(Default::default());
    target.info.vcpus = 2;
    target.info.domain_id = 7;
    target.info.domain_name = String::from("callchain");
    target.info.kind = TargetKind::Live;
    target.info.state = String::from("running");
    target.info.vcpu_snapshot = String::from("domain paused while the core was written");
    target.info.hypervisor = String::from("Basalt 0.1.0");
    target.info.host = Some(String::from("testhost"));

    // a at TEXT, b at TEXT+0x20, c at TEXT+0x40; each calls the next (the call is at
    // +4, its return address +9).
    let mut text = Vec::new();
    text.extend(function_body(0x20 - 9));
    text.extend(function_body(0x20 - 9));
    text.extend(function_body(-9)); // c "calls" itself: never returns
    target.write_virtual(TEXT, 0x20_0000, &text);
    target.kernel_symbol_file = Some(elf_with_symbols(&[
        ("callchain_a", TEXT, 0x20, SymbolKind::Function),
        ("callchain_b", TEXT + 0x20, 0x20, SymbolKind::Function),
        ("callchain_c", TEXT + 0x40, 0x20, SymbolKind::Function),
        ("marker", MARKER, 32, SymbolKind::Object),
    ]));
    target.write_virtual(MARKER, 0x30_0000, b"BASALT-MDB-MARKER-0123456789\0");

    // c's frame -> b's frame -> a's frame -> end.
    let frame_c = STACK + 0x100;
    let frame_b = STACK + 0x120;
    let frame_a = STACK + 0x140;
    let mut stack = vec![0u8; 0x200];
    let mut put = |address: u64, value: u64| {
        let at = (address - STACK) as usize;
        stack[at..at + 8].copy_from_slice(&value.to_le_bytes());
    };
    put(frame_c, frame_b);
    put(frame_c + 8, TEXT + 0x20 + 9);
    put(frame_b, frame_a);
    put(frame_b + 8, TEXT + 9);
    put(frame_a, 0);
    put(frame_a + 8, 0);
    target.write_virtual(STACK, 0x40_0000, &stack);
    for (vcpu, registers) in target.registers.iter_mut().enumerate() {
        registers.rip = TEXT + 0x44;
        registers.rsp = frame_c - 0x10;
        registers.rbp = frame_c;
        registers.rax = 0x1111 * (vcpu as u64 + 1);
        registers.cs = 0x10;
    }
    target.registers[1].rip = TEXT + 0x24;

    target.event_channels = Some(vec![
        EventChannel {
            port: 1,
            binding: ChannelBinding::Interdomain { remote_domain: 0, remote_port: 5 },
            vcpu: 0,
            pending: Some(false),
            masked: Some(false),
            owner: Some(String::from("xenstore")),
        },
        EventChannel {
            port: 2,
            binding: ChannelBinding::Interdomain { remote_domain: 0, remote_port: 6 },
            vcpu: 0,
            pending: Some(true),
            masked: Some(false),
            owner: Some(String::from("console backend")),
        },
        EventChannel {
            port: 3,
            binding: ChannelBinding::Virq(0),
            vcpu: 1,
            pending: Some(false),
            masked: Some(true),
            owner: None,
        },
    ]);
    target.grants = Some(vec![GrantEntry { reference: 8, flags: 0x19, domain: 0, frame: 0x1234 }]);
    target.xenstore = Some(vec![
        XenstoreNode { path: String::from("/local/domain/7/name"), value: b"callchain".to_vec() },
        XenstoreNode { path: String::from("/local/domain/7/console/ring-ref"), value: b"4095".to_vec() },
    ]);
    target.shared_info = Some(vec![0; 4096]);
    target
}

/// The core of [`domain`], opened as a session.
fn session_on_core() -> Session<'static> {
    let live = domain();
    let mut core = Vec::new();
    let summary = write_core(&live, &mut core, &mut |_, _| {}).expect("write_core");
    assert_eq!(summary.bytes, core.len() as u64);
    let file = CoreFile::open(core, "test.core").expect("CoreFile::open");
    Session::new(Box::new(file))
}

fn run(session: &mut Session<'_>, line: &str) -> String {
    let mut out = String::new();
    assert_eq!(session.execute(line, &mut out), Flow::Continue, "{line}");
    out
}

fn frames(output: &str) -> Vec<String> {
    output.lines().filter(|line| line.ends_with("()")).map(|line| line.split('+').next().unwrap().to_string()).collect()
}

#[test]
fn status_cpuinfo_and_cpuregs_come_from_the_core() {
    let mut session = session_on_core();
    let status = run(&mut session, "::status");
    assert!(status.contains("test.core"), "{status}");
    assert!(status.contains("domain 7 (callchain)"), "{status}");
    assert!(status.contains("testhost"), "{status}");
    assert!(status.contains("ELF .symtab"), "{status}");

    let cpuinfo = run(&mut session, "::cpuinfo");
    assert!(cpuinfo.contains("callchain_c+0x4"), "{cpuinfo}");
    assert!(cpuinfo.contains("callchain_b+0x4"), "{cpuinfo}");

    let registers = run(&mut session, "::cpuregs -c 1");
    assert!(registers.contains("%rax = 0x0000000000002222"), "{registers}");
    assert!(registers.contains("callchain_b+0x4"), "{registers}");
    assert!(run(&mut session, "::cpuregs -c 2").starts_with("error: "));
}

#[test]
fn cpustack_and_walk_cpu_unwind_every_vcpu() {
    let mut session = session_on_core();
    let stack = run(&mut session, "::cpustack");
    assert_eq!(frames(&stack), ["callchain_c", "callchain_b", "callchain_a"], "{stack}");
    let both = run(&mut session, "::walk cpu | ::cpustack");
    assert_eq!(frames(&both)[..3], ["callchain_c", "callchain_b", "callchain_a"], "{both}");
    assert!(frames(&both).len() > 3, "{both}");
}

#[test]
fn memory_formats_symbols_and_translation_read_the_core_pages() {
    let mut session = session_on_core();
    assert!(run(&mut session, "marker/s").contains("BASALT-MDB-MARKER-0123456789"));
    let nm = run(&mut session, "::nm callchain_b");
    assert!(nm.contains("ffffffff81000020"), "{nm}");
    let dis = run(&mut session, "callchain_c::dis");
    assert!(dis.contains("pushq %rbp"), "{dis}");
    let vtop = run(&mut session, "marker::vtop");
    assert!(vtop.contains("300000"), "{vtop}");
    assert_eq!(run(&mut session, "callchain_b=K").trim(), "ffffffff81000020");
    assert!(run(&mut session, "0x1234/K").starts_with("error: "));
}

#[test]
fn metadata_dcmds_read_the_basalt_sections() {
    let mut session = session_on_core();
    let channels = run(&mut session, "::evtchns");
    assert!(channels.lines().any(|line| line.contains("dom0:6") && line.contains("console backend")), "{channels}");
    assert!(channels.lines().any(|line| line.contains("virq:timer")), "{channels}");
    assert_eq!(run(&mut session, "::walk evtchn").split_whitespace().collect::<Vec<_>>(), ["1", "2", "3"]);
    let grants = run(&mut session, "::grants");
    assert!(grants.contains("1234"), "{grants}");
    assert_eq!(run(&mut session, "::walk grant").trim(), "8");
    let store = run(&mut session, "::xenstore /local/domain/7/console");
    assert!(store.contains("ring-ref") && store.contains("4095") && !store.contains("name"), "{store}");
    assert!(run(&mut session, "::domains").starts_with("error: "));
    let msgbuf = run(&mut session, "::msgbuf");
    assert!(msgbuf.starts_with("error: "), "{msgbuf}");
}

#[test]
fn a_damaged_core_is_refused_at_open() {
    let live = domain();
    let mut core = Vec::new();
    write_core(&live, &mut core, &mut |_, _| {}).unwrap();
    let length = core.len();
    for cut in [0, 16, 63, 64, 200, length / 2, length - 1] {
        assert!(CoreFile::open(core[..cut].to_vec(), "cut").is_err(), "a core cut at {cut} opened");
    }
}
