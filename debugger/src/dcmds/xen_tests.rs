//! Host tests of the domain dcmds ([`super`]) against [`FakeTarget`]: exact output of
//! each, the shared_info fallback of `::evtchns`, and the one-line errors for a
//! missing vCPU, metadata the target does not have, and bad arguments.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::dcmds::find_dcmd;
use crate::symbols::{Symbol, SymbolKind};
use crate::target::testing::FakeTarget;

/// Runs `::name args` (with `address` before the `::`, if any) on `target`.
fn run_at(target: FakeTarget, address: Option<u64>, name: &str, args: &[&str]) -> Result<String, DcmdError> {
    let dcmd = find_dcmd(name).unwrap_or_else(|| panic!("::{name} is not in the dcmd tables"));
    let debuggee = Debuggee::new(Box::new(target));
    let words: Vec<String> = args.iter().map(|word| String::from(*word)).collect();
    let call = DcmdCall { address, count: None, args: &words };
    let mut out = String::new();
    (dcmd.run)(&debuggee, &call, &mut out)?;
    Ok(out)
}

fn run(target: FakeTarget, name: &str, args: &[&str]) -> Result<String, DcmdError> {
    run_at(target, None, name, args)
}

fn error_text(result: Result<String, DcmdError>) -> String {
    match result {
        Ok(output) => panic!("expected an error, got output {output:?}"),
        Err(error) => alloc::format!("{error}"),
    }
}

const LONG_MODE: Registers = Registers {
    rip: 0xffff_ffff_8100_0010,
    rsp: 0xffff_c900_0000_3e38,
    cr0: 0x8005_0033,
    cr3: 0x100_a000,
    cr4: 0x0020_06b0,
    efer: 0xd01,
    rflags: 0x246,
    cs: 0x10,
    ss: 0x18,
    state: VcpuRunState::Running,
    ..ZERO_REGISTERS
};

const ZERO_REGISTERS: Registers = Registers {
    rax: 0,
    rbx: 0,
    rcx: 0,
    rdx: 0,
    rsi: 0,
    rdi: 0,
    rbp: 0,
    rsp: 0,
    r8: 0,
    r9: 0,
    r10: 0,
    r11: 0,
    r12: 0,
    r13: 0,
    r14: 0,
    r15: 0,
    rip: 0,
    rflags: 0,
    cr0: 0,
    cr2: 0,
    cr3: 0,
    cr4: 0,
    efer: 0,
    cs: 0,
    ss: 0,
    ds: 0,
    es: 0,
    fs: 0,
    gs: 0,
    fs_base: 0,
    gs_base: 0,
    kernel_gs_base: 0,
    state: VcpuRunState::Running,
};

/// Domain 3 "linux1", two vCPUs in long mode (vCPU 1 blocked), 512 MiB.
fn linux1(kind: TargetKind, host: Option<&str>) -> FakeTarget {
    let mut target = FakeTarget::new();
    target.info = TargetInfo {
        kind,
        domain_id: 3,
        domain_name: String::from("linux1"),
        vcpus: 2,
        memory_bytes: 512 << 20,
        state: String::from("running"),
        vcpu_snapshot: String::from(
            "domain paused while each command runs; registers as saved at each vCPU's last exit",
        ),
        hypervisor: String::from("Basalt 0.1.0"),
        host: host.map(String::from),
    };
    let blocked =
        Registers { rip: 0xffff_ffff_8100_2000, rsp: 0xffff_c900_0008_3ec0, state: VcpuRunState::Blocked, ..LONG_MODE };
    target.registers = vec![LONG_MODE, blocked];
    target
}

#[test]
fn status_of_a_live_domain() {
    let output = run(linux1(TargetKind::Live, None), "status", &[]).unwrap();
    assert_eq!(
        output,
        "debugging live domain 3 (linux1), 64-bit, on Basalt 0.1.0\n\
         operating system: unknown\n\
         domain state: running\n\
         vCPUs: 2 (1 running, 1 blocked)\n\
         memory: 512 MiB\n\
         vCPU state: domain paused while each command runs; registers as saved at each vCPU's last exit\n\
         symbols: none (no symbols)\n"
    );
}

#[test]
fn status_of_a_core_names_the_file_and_the_host() {
    let core = TargetKind::CoreFile { source: String::from("core.domu") };
    let mut target = linux1(core.clone(), Some("sxc16"));
    target.info.hypervisor = String::from("Xen 4.17.3");
    let output = run(target, "status", &[]).unwrap();
    assert!(
        output.starts_with(
            "debugging domain crash dump core.domu (64-bit) of domain 3 (linux1) from sxc16\nhypervisor: Xen 4.17.3\n"
        ),
        "{output}"
    );

    let mut no_host = linux1(core, None);
    no_host.registers[0] = Registers { efer: 0, cr0: 0x11, cr4: 0, ..LONG_MODE };
    no_host.registers[1].state = VcpuRunState::Down;
    no_host.info.vcpus = 3;
    let output = run(no_host, "status", &[]).unwrap();
    assert!(output.starts_with("debugging domain crash dump core.domu (32-bit) of domain 3 (linux1)\n"), "{output}");
    assert!(output.contains("vCPUs: 3 (1 running, 1 down, 1 unreadable)\n"), "{output}");
    assert_eq!(error_text(run(FakeTarget::new(), "status", &["extra"])), "unexpected argument 'extra'");
}

#[test]
fn status_names_a_linux_guest_from_its_vmcoreinfo() {
    let mut target = linux1(TargetKind::Live, None);
    target.write_physical(0x3000, b"OSRELEASE=6.1.0-56-cloud-amd64\nPAGESIZE=4096\n\0");
    target.info.memory_bytes = 512 << 20;
    let output = run(target, "status", &[]).unwrap();
    assert!(output.contains("\noperating system: Linux 6.1.0-56-cloud-amd64\n"), "{output}");
}

#[test]
fn memory_sizes_use_the_largest_exact_unit() {
    assert_eq!(memory_size(512 << 20), "512 MiB");
    assert_eq!(memory_size(2 << 30), "2 GiB");
    assert_eq!(memory_size(1536 << 10), "1536 KiB");
    assert_eq!(memory_size((1 << 20) + 1), "1 MiB (1048577 bytes)");
    assert_eq!(memory_size(100), "100 bytes");
    assert_eq!(memory_size(0), "0 bytes");
}

fn kernel_symbols() -> SymbolTable {
    SymbolTable::new(
        vec![
            Symbol {
                name: String::from("startup_64"),
                address: 0xffff_ffff_8100_0000,
                size: 0x100,
                kind: SymbolKind::Function,
            },
            Symbol {
                name: String::from("default_idle"),
                address: 0xffff_ffff_8100_2000,
                size: 0x40,
                kind: SymbolKind::Function,
            },
        ],
        "test",
    )
}

#[test]
fn cpuinfo_lines_up_one_vcpu_per_line() {
    let target = linux1(TargetKind::Live, None);
    let vcpus = vec![
        (0, Ok(target.registers[0])),
        (1, Ok(target.registers[1])),
        (2, Ok(Registers { state: VcpuRunState::Down, ..ZERO_REGISTERS })),
        (11, Err(TargetError::NoSuchVcpu(11))),
    ];
    let mut output = String::new();
    write_cpuinfo(&vcpus, &kernel_symbols(), &mut output).unwrap();
    assert_eq!(
        output,
        "ID STATE   PAGING     RIP             RSP              CR3\n \
          0 running 4-level    startup_64+0x10 ffffc90000003e38 100a000\n \
          1 blocked 4-level    default_idle    ffffc90000083ec0 100a000\n \
          2 down    paging off 0               0                0\n\
         11 error: no vCPU 11\n"
    );
}

#[test]
fn cpuinfo_without_symbols_prints_hex() {
    let output = run(linux1(TargetKind::Live, None), "cpuinfo", &[]).unwrap();
    assert_eq!(
        output,
        "ID STATE   PAGING  RIP              RSP              CR3\n \
          0 running 4-level ffffffff81000010 ffffc90000003e38 100a000\n \
          1 blocked 4-level ffffffff81002000 ffffc90000083ec0 100a000\n"
    );
}

#[test]
fn cpuregs_lays_out_registers_like_mdb() {
    let registers = Registers { rax: 1, r9: 0xdead_beef, r15: u64::MAX, fs_base: 0x7f00_0000_1000, ..LONG_MODE };
    let mut output = String::new();
    write_cpuregs(&registers, &kernel_symbols(), &mut output).unwrap();
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines[0], "%rax = 0x0000000000000001       %r9  = 0x00000000deadbeef");
    assert_eq!(lines[6], "%r8  = 0x0000000000000000       %r15 = 0xffffffffffffffff");
    assert_eq!(lines[8], "%cs = 0x0010    %ds = 0x0000    %es = 0x0000");
    assert_eq!(lines[9], "%fs = 0x0000    %gs = 0x0000    %ss = 0x0018");
    assert!(output.contains("\n%rip = 0xffffffff81000010 startup_64+0x10\n"), "{output}");
    assert!(output.contains("\n%rflags = 0x00000246\n  id=0 vip=0 vif=0 ac=0 vm=0 rf=0 nt=0 iopl=0x0\n"), "{output}");
    assert!(output.contains("\n  status=<of,df,IF,tf,sf,ZF,af,PF,cf>\n"), "{output}");
    assert!(output.contains("\n%cr0 = 0x0000000080050033 <PG,AM,WP,NE,ET,MP,PE>\n"), "{output}");
    assert!(output.contains("\n%cr4 = 0x00000000002006b0 <SMAP,OSXMMEXCPT,OSFXSR,PGE,PAE,PSE>\n"), "{output}");
    assert!(output.contains("\n%efer = 0x0000000000000d01 <NXE,LMA,LME>\n"), "{output}");
    assert!(output.contains("\n%fsbase = 0x00007f0000001000\n"), "{output}");
}

#[test]
fn cpuregs_picks_the_vcpu_and_reports_a_missing_one() {
    let output = run(linux1(TargetKind::Live, None), "cpuregs", &["-c", "1"]).unwrap();
    assert!(output.contains("%rip = 0xffffffff81002000\n"), "{output}");
    let output = run_at(linux1(TargetKind::Live, None), Some(1), "cpuregs", &[]).unwrap();
    assert!(output.contains("%rsp = 0xffffc90000083ec0\n"), "{output}");
    let output = run(linux1(TargetKind::Live, None), "cpuregs", &[]).unwrap();
    assert!(output.contains("%rip = 0xffffffff81000010\n"), "{output}");

    assert_eq!(error_text(run(linux1(TargetKind::Live, None), "cpuregs", &["-c", "5"])), "no vCPU 5");
    assert_eq!(
        error_text(run(linux1(TargetKind::Live, None), "cpuregs", &["-c", "1_0000_0000"])),
        "'1_0000_0000' is not a number"
    );
    assert_eq!(error_text(run(linux1(TargetKind::Live, None), "cpuregs", &["-c", "100000000"])), "no vCPU 4294967296");
    assert!(matches!(run(linux1(TargetKind::Live, None), "cpuregs", &["-x"]), Err(DcmdError::Usage(_))));
}

fn channel(port: u32, binding: ChannelBinding, owner: Option<&str>) -> EventChannel {
    EventChannel { port, binding, vcpu: 0, pending: Some(false), masked: Some(false), owner: owner.map(String::from) }
}

#[test]
fn evtchns_from_the_channel_table() {
    let mut target = FakeTarget::new();
    target.event_channels = Some(vec![
        channel(5, ChannelBinding::Interdomain { remote_domain: 0, remote_port: 5 }, Some("xenstore")),
        channel(1, ChannelBinding::Virq(0), Some("xen_timer_interrupt")),
        EventChannel { vcpu: 1, pending: Some(true), masked: Some(true), ..channel(2, ChannelBinding::Ipi, None) },
        channel(3, ChannelBinding::Virq(5), None),
        channel(4, ChannelBinding::Pirq(9), None),
        EventChannel { pending: None, masked: None, ..channel(6, ChannelBinding::Unbound { remote_domain: 0 }, None) },
        channel(7, ChannelBinding::Virq(13), Some("bad\x1b[2J")),
    ]);
    let output = run(target, "evtchns", &[]).unwrap();
    assert_eq!(
        output,
        "Type        Evtchn VCPU Pending Masked Remote Owner\n\
         virq:timer       1    0 no      no     -      xen_timer_interrupt\n\
         ipi              2    1 yes     yes    -      -\n\
         virq:5           3    0 no      no     -      -\n\
         pirq:9           4    0 no      no     -      -\n\
         interdomain      5    0 no      no     dom0:5 xenstore\n\
         unbound          6    0 -       -      dom0   -\n\
         virq:xenpmu      7    0 no      no     -      bad\\x1b[2J\n"
    );
}

fn shared_info_with(pending: &[u32], unmasked: &[u32]) -> Vec<u8> {
    let mut page = vec![0u8; 4096];
    for word in 0..64 {
        let at = SHARED_INFO_EVTCHN_MASK + word * 8;
        page[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    }
    let mut set = |offset: usize, port: u32, value: bool| {
        let at = offset + (port / 64) as usize * 8;
        let mut word = u64::from_le_bytes(page[at..at + 8].try_into().unwrap());
        if value {
            word |= 1 << (port % 64);
        } else {
            word &= !(1 << (port % 64));
        }
        page[at..at + 8].copy_from_slice(&word.to_le_bytes());
    };
    for &port in pending {
        set(SHARED_INFO_EVTCHN_PENDING, port, true);
    }
    for &port in unmasked {
        set(SHARED_INFO_EVTCHN_MASK, port, false);
    }
    page
}

#[test]
fn evtchns_fall_back_to_shared_info_and_say_so() {
    let mut target = FakeTarget::new();
    target.shared_info = Some(shared_info_with(&[3, 130], &[1, 3, 2000]));
    let output = run(target, "evtchns", &[]).unwrap();
    assert_eq!(
        output,
        "(no event-channel table from this target: ports that are pending or unmasked in shared_info; bindings unknown)\n\
         Type    Evtchn VCPU Pending Masked Remote Owner\n\
         unknown      1    - no      no     -      -\n\
         unknown      3    - yes     no     -      -\n\
         unknown    130    - yes     yes    -      -\n\
         unknown   2000    - no      no     -      -\n"
    );
}

#[test]
fn evtchns_fallback_is_bounded_for_a_guest_that_masked_nothing() {
    let mut target = FakeTarget::new();
    target.shared_info = Some(vec![0u8; 4096]);
    let output = run(target, "evtchns", &[]).unwrap();
    assert_eq!(output.lines().count(), 2 + MAXIMUM_FALLBACK_ROWS + 1);
    assert!(
        output.ends_with("... and 3839 more unmasked ports (the guest has not masked its unused ports)\n"),
        "{output}"
    );
}

#[test]
fn evtchns_without_any_source_is_a_one_line_error() {
    assert_eq!(
        error_text(run(FakeTarget::new(), "evtchns", &[])),
        "event channel table: not supported by this target, and the guest registered no shared_info page"
    );
    let mut short = FakeTarget::new();
    short.shared_info = Some(vec![0u8; 100]);
    assert_eq!(error_text(run(short, "evtchns", &[])), "shared_info is 100 bytes, too short for its event bitmaps");
}

#[test]
fn grants_decode_their_flags() {
    let mut target = FakeTarget::new();
    target.grants = Some(vec![
        GrantEntry { reference: 9, flags: 0x1 | 0x4 | 0x8, domain: 0, frame: 0x12345 },
        GrantEntry { reference: 8, flags: 0x1 | 0x10, domain: 0, frame: 0x2000 },
        GrantEntry { reference: 300, flags: 0x2 | 0x4, domain: 12, frame: 0x7 },
        GrantEntry { reference: 301, flags: 0x3 | 0x100, domain: 2, frame: 0x8 },
    ]);
    let output = run(target, "grants", &[]).unwrap();
    assert_eq!(
        output,
        "Ref Flags                                       Domain Frame\n  \
           8 0x0011 <permit_access,writing>                   0  2000\n  \
           9 0x000d <permit_access,readonly,reading>          0 12345\n\
         300 0x0006 <accept_transfer,transfer_committed>     12     7\n\
         301 0x0103 <transitive,sub_page>                     2     8\n"
    );
    assert_eq!(grant_flag_names(0), "invalid");
    assert_eq!(error_text(run(FakeTarget::new(), "grants", &[])), "grant table: not supported by this target");
}

fn node(path: &str, value: &[u8]) -> XenstoreNode {
    XenstoreNode { path: String::from(path), value: value.to_vec() }
}

fn xenstore_target() -> FakeTarget {
    let mut target = FakeTarget::new();
    target.xenstore = Some(vec![
        node("/local/domain/3/name", b"linux1"),
        node("/local/domain/3/device/vbd/51712/state", b"4"),
        node("/local/domain/3/console/tty", b"\x1b]0;\"x\"\\\n"),
        node("/local/domain/30/name", b"other"),
        node("/local/domain/3", b""),
    ]);
    target
}

#[test]
fn xenstore_lists_sorted_nodes_with_escapes() {
    let output = run(xenstore_target(), "xenstore", &[]).unwrap();
    assert_eq!(
        output,
        "/local/domain/3 = \"\"\n\
         /local/domain/3/console/tty = \"\\x1b]0;\\\"x\\\"\\\\\\x0a\"\n\
         /local/domain/3/device/vbd/51712/state = \"4\"\n\
         /local/domain/3/name = \"linux1\"\n\
         /local/domain/30/name = \"other\"\n"
    );
}

#[test]
fn xenstore_path_selects_a_subtree_not_a_prefix() {
    let output = run(xenstore_target(), "xenstore", &["/local/domain/3/"]).unwrap();
    assert!(!output.contains("/30/"), "{output}");
    assert_eq!(output.lines().count(), 4);
    let output = run(xenstore_target(), "xenstore", &["/local/domain/3/name"]).unwrap();
    assert_eq!(output, "/local/domain/3/name = \"linux1\"\n");
    assert_eq!(error_text(run(xenstore_target(), "xenstore", &["/vm"])), "no xenstore nodes under /vm");
    assert!(matches!(run(xenstore_target(), "xenstore", &["/a", "/b"]), Err(DcmdError::Usage(_))));
    assert_eq!(error_text(run(FakeTarget::new(), "xenstore", &[])), "xenstore: not supported by this target");
}

#[test]
fn domains_lists_every_domain_by_id() {
    let mut target = FakeTarget::new();
    target.domains = Some(vec![
        DomainSummary {
            id: 3,
            name: String::from("linux1"),
            state: String::from("running"),
            vcpus: 2,
            memory_bytes: 512 << 20,
        },
        DomainSummary {
            id: 0,
            name: String::from("Domain-0"),
            state: String::from("running"),
            vcpus: 1,
            memory_bytes: 64 << 20,
        },
    ]);
    let output = run(target, "domains", &[]).unwrap();
    assert_eq!(
        output,
        "ID Name     State   vCPUs  Memory\n \
          0 Domain-0 running     1  64 MiB\n \
          3 linux1   running     2 512 MiB\n"
    );
    assert_eq!(
        error_text(run(FakeTarget::new(), "domains", &[])),
        "::domains (only inside the appliance): not supported by this target"
    );
}
