//! Host tests of the domain commands ([`crate::domains`]) through the whole
//! dispatch path, against [`FakeSystem`]'s [`FakeDomains`]: every command's
//! output format, every usage error, the implementation's refusals passed
//! through, and the fake changed as commanded.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::command::Registry;
use crate::domains::{domain_commands, DomainState, VcpuState, DEFAULT_STOP_TIMEOUT_SECONDS, MAX_STOP_TIMEOUT_SECONDS};
use crate::testing::{fake_appliance_shell, FakeDomains, FakeSystem, Xorshift};
use crate::{appliance_commands, builtin_commands, Shell};

/// Runs `lines` in order on one fake appliance; returns it and all output.
fn run_lines(lines: &[&str]) -> (FakeSystem, String) {
    let shell = fake_appliance_shell();
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

fn usage_error(message: &str, usage: &str) -> String {
    format!("error: {message}\nusage: {usage}\n")
}

const LIST_HEADER: &str = "Name                                        ID   Mem VCPUs      State   Time(s)";
const LIST_DOMAIN_0: &str = "Domain-0                                     0  1024     2     r-----       8.3";
const LIST_WEB: &str = "web                                          3   512     1     -b----       1.3";
const VCPU_HEADER: &str = "Name                                ID  VCPU   CPU State   Time(s) Affinity";
const SCHED_HEADER: &str = "Name                                ID Weight  Cap";

const DOMAIN_COMMAND_NAMES: [&str; 10] =
    ["console", "create", "destroy", "list", "pause", "sched-credit", "shutdown", "unpause", "vcpu-list", "vcpu-pin"];

#[test]
fn tables_combine_and_help_lists_domain_commands() {
    let shell = fake_appliance_shell();
    // 8 built-ins, the domain commands, and the appliance's `reboot`.
    assert_eq!(shell.registry().len(), 8 + DOMAIN_COMMAND_NAMES.len() + 1);
    let output = run("help");
    assert_eq!(output.lines().count(), shell.registry().len(), "{output}");
    for name in DOMAIN_COMMAND_NAMES {
        let command = shell.registry().find(name).unwrap();
        let line = output.lines().find(|line| line.split_whitespace().next() == Some(name)).unwrap();
        assert!(line.contains(command.usage) && line.ends_with(command.summary), "{line}");
    }
    assert!(output.contains("sched-credit [-d DOMAIN] [-w WEIGHT] [-c CAP]"), "{output}");
    assert_eq!(run("help vcpu-pin").lines().next(), Some("usage: vcpu-pin DOMAIN VCPU|all CPUS"));
    assert_eq!(
        run("help shutdown"),
        "usage: shutdown [-t SECONDS] DOMAIN\n\
         ask a domain to shut down; stopped if still up after SECONDS (0-3600, default 60)\n"
    );
    // One `reboot`, for the machine and for a domain, from the appliance table.
    let reboot = output.lines().find(|line| line.split_whitespace().next() == Some("reboot")).unwrap();
    assert!(reboot.contains("reboot [[-t SECONDS] DOMAIN]") && reboot.ends_with("(0-3600, default 60)"), "{reboot}");
    assert_eq!(
        run("help reboot"),
        "usage: reboot [[-t SECONDS] DOMAIN]\n\
         restart the machine, or ask DOMAIN to reboot; stopped if still up after SECONDS (0-3600, default 60)\n"
    );
    // The summaries state the trait's default and range, not a number of their own.
    for name in ["shutdown", "reboot"] {
        let summary = shell.registry().find(name).unwrap().summary;
        let range_and_default = format!("(0-{MAX_STOP_TIMEOUT_SECONDS}, default {DEFAULT_STOP_TIMEOUT_SECONDS})");
        assert!(summary.ends_with(&range_and_default), "{summary}");
    }
    assert_eq!(appliance_commands::<FakeSystem>().iter().map(|command| command.name).collect::<Vec<_>>(), ["reboot"]);
    // Without the appliance table, the built-in and domain tables combine too.
    assert!(Registry::new(&[builtin_commands::<FakeSystem>(), domain_commands::<FakeSystem>()]).is_ok());
    // The domain table also stands alone, on a context that is only a DomainControl.
    let registry = Registry::new(&[domain_commands::<FakeDomains>()]).unwrap();
    let names: Vec<&str> = registry.iter().map(|command| command.name).collect();
    assert_eq!(names, DOMAIN_COMMAND_NAMES);
    let alone = Shell::new(registry);
    let mut domains = FakeDomains::new();
    let mut output = String::new();
    alone.execute_line(&mut domains, "list web", &mut output);
    assert_eq!(output, format!("{LIST_HEADER}\n{LIST_WEB}\n"));
}

#[test]
fn list_format() {
    assert_eq!(run("list"), format!("{LIST_HEADER}\n{LIST_DOMAIN_0}\n{LIST_WEB}\n"));
    assert_eq!(run("list web"), format!("{LIST_HEADER}\n{LIST_WEB}\n"));
    assert_eq!(run("list 0"), format!("{LIST_HEADER}\n{LIST_DOMAIN_0}\n"));
    assert_eq!(run("list nope"), "error: no domain 'nope'\n");
    assert_eq!(run("list web 3"), usage_error("unexpected argument '3'", "list [DOMAIN]"));
}

#[test]
fn list_columns_for_large_values_and_every_flag() {
    let shell = fake_appliance_shell();
    let mut system = FakeSystem::new();
    let web = &mut system.domains.domains[1];
    web.state = DomainState { running: true, blocked: true, paused: true, shutdown: true, crashed: true, dying: true };
    web.cpu_time_ns = 123_456_789_000_000;
    web.memory_mib = 65_536;
    web.name = String::from("a-name-that-is-longer-than-forty-characters-wide");
    let mut output = String::new();
    shell.execute_line(&mut system, "list 3", &mut output);
    let row = output.lines().nth(1).unwrap();
    assert_eq!(row, "a-name-that-is-longer-than-forty-characters-wide     3 65536     1     rbpscd  123456.8");
}

#[test]
fn names_and_errors_from_the_implementation_are_printable() {
    let shell = fake_appliance_shell();
    let mut system = FakeSystem::new();
    system.domains.domains[1].name = String::from("evil\x1b[2J\u{9b}1m");
    let mut output = String::new();
    for line in ["list 3", "vcpu-list 3", "sched-credit -d 3", "pause 3", "unpause 3", "unpause 3"] {
        shell.execute_line(&mut system, line, &mut output);
    }
    assert!(!output.contains('\x1b') && !output.contains('\u{9b}'), "{output:?}");
    assert!(output.contains("\nevil?[2J?1m                                  3   512"), "{output}");
    assert!(output.contains("\nevil?[2J?1m                          3     0"), "{output}");
    assert!(output.contains("\nevil?[2J?1m                          3    512   50\n"), "{output}");
    assert!(output.ends_with("error: domain 'evil?[2J?1m' is not paused\n"), "{output}");
}

#[test]
fn create_reports_the_new_domain_and_applies_overrides() {
    let (system, output) = run_lines(&["create demo", "create demo name=d2 vcpus=2 memory=128", "list"]);
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines[..2], ["Created domain 4 (demo)", "Created domain 5 (d2)"]);
    assert_eq!(lines[2..5], [LIST_HEADER, LIST_DOMAIN_0, LIST_WEB]);
    assert_eq!(lines[5], "demo                                         4   256     1     -b----       0.0");
    assert_eq!(lines[6], "d2                                           5   128     2     -b----       0.0");
    assert_eq!(system.domains.find("d2").unwrap().vcpus.len(), 2);
    // A quoted value with blanks is one override word.
    let (system, output) = run_lines(&["create demo 'name=my demo'"]);
    assert_eq!(output, "Created domain 4 (my demo)\n");
    assert!(system.domains.find("my demo").is_some());
}

#[test]
fn create_errors() {
    let usage = "create CONFIG [KEY=VALUE ...]";
    assert_eq!(run("create"), usage_error("missing CONFIG", usage));
    assert_eq!(run("create demo vcpus"), usage_error("expected KEY=VALUE, not 'vcpus'", usage));
    assert_eq!(run("create demo name=x =2"), usage_error("expected KEY=VALUE, not '=2'", usage));
    assert_eq!(run("create demo bad-key=1"), usage_error("expected KEY=VALUE, not 'bad-key=1'", usage));
    assert_eq!(run("create nope"), "error: cannot read config 'nope': no such file\n");
    assert_eq!(run("create demo name=web"), "error: domain 'web' already exists\n");
    assert_eq!(run("create demo vcpus=0"), "error: bad value for vcpus: '0'\n");
    assert_eq!(run("create demo colour=blue"), "error: unsupported setting 'colour'\n");
    let (system, _) = run_lines(&["create", "create nope", "create demo vcpus"]);
    assert_eq!(system.domains.domains.len(), 2);
}

#[test]
fn life_cycle_commands_act_silently() {
    let (system, output) = run_lines(&["pause web", "list web"]);
    assert_eq!(
        output,
        format!("{LIST_HEADER}\nweb                                          3   512     1     --p---       1.3\n")
    );
    assert!(system.domains.find("web").unwrap().state.paused);
    assert_eq!(system.domains.find("web").unwrap().vcpus[0].state, VcpuState::Paused);

    let (system, output) = run_lines(&["pause 3", "unpause web"]);
    assert_eq!(output, "");
    let web = system.domains.find("web").unwrap();
    assert!(!web.state.paused && web.state.blocked);
    assert_eq!(web.vcpus[0].state, VcpuState::Blocked);
    assert_eq!(web.vcpus[1].state, VcpuState::Offline);

    let (system, output) = run_lines(&["shutdown web", "reboot 3", "reboot web", "console web"]);
    assert_eq!(output, "");
    assert_eq!(system.domains.shutdown_requests, [(3, None)]);
    assert_eq!(system.domains.reboot_requests, [(3, None), (3, None)]);
    assert_eq!(system.reboot_requests, 0, "`reboot DOMAIN` must not restart the machine");
    assert_eq!(system.domains.console_attachments, [3]);
    assert!(system.domains.find("web").unwrap().state.shutdown);

    let (system, output) = run_lines(&["destroy web", "list"]);
    assert_eq!(output, format!("{LIST_HEADER}\n{LIST_DOMAIN_0}\n"));
    assert!(system.domains.find("web").is_none());
}

#[test]
fn life_cycle_usage_errors_and_refusals() {
    for (name, usage, refusal) in [
        ("destroy", "destroy DOMAIN", "Domain-0 cannot be destroyed"),
        ("pause", "pause DOMAIN", "Domain-0 cannot be paused"),
        ("unpause", "unpause DOMAIN", "domain 'Domain-0' is not paused"),
        ("shutdown", "shutdown [-t SECONDS] DOMAIN", "Domain-0 cannot be shut down from here"),
        ("console", "console DOMAIN", "Domain-0 cannot be attached to (its console is this shell)"),
    ] {
        assert_eq!(run(name), usage_error("missing DOMAIN", usage));
        assert_eq!(run(&format!("{name} web 3")), usage_error("unexpected argument '3'", usage));
        assert_eq!(run(&format!("{name} nope")), "error: no domain 'nope'\n", "{name}");
        assert_eq!(run(&format!("{name} 42")), "error: no domain '42'\n", "{name}");
        assert_eq!(run(&format!("{name} Domain-0")), format!("error: {refusal}\n"), "{name}");
    }
    let (system, _) = run_lines(&["destroy", "destroy web 3", "pause web web", "shutdown", "console web x"]);
    assert_eq!(system.domains.domains.len(), 2);
    assert_eq!(system.domains.find("web").unwrap().state, DomainState { blocked: true, ..DomainState::default() });
    assert!(system.domains.shutdown_requests.is_empty() && system.domains.console_attachments.is_empty());
}

#[test]
fn reboot_domain_usage_errors_and_refusals() {
    // Without DOMAIN, `reboot` is the machine's (tests.rs covers it); with one
    // it is xl's, and anything it cannot do restarts nothing.
    let usage = "reboot [[-t SECONDS] DOMAIN]";
    assert_eq!(run("reboot web 3"), usage_error("unexpected argument '3'", usage));
    assert_eq!(run("reboot a b"), usage_error("unexpected argument 'b'", usage));
    assert_eq!(run("reboot nope"), "error: no domain 'nope'\n");
    assert_eq!(run("reboot 42"), "error: no domain '42'\n");
    assert_eq!(run("reboot Domain-0"), "error: Domain-0 cannot be rebooted from here\n");
    assert_eq!(run("reboot 0"), "error: Domain-0 cannot be rebooted from here\n");
    let (system, _) = run_lines(&["reboot web 3", "reboot a b", "reboot nope", "reboot Domain-0", "reboot 0"]);
    assert_eq!((system.reboot_requests, system.domains.reboot_requests.len()), (0, 0));
    assert_eq!(run("domain-reboot web"), "error: unknown command 'domain-reboot'; type 'help' for a list\n");
}

#[test]
fn shutdown_and_reboot_pass_the_timeout_on() {
    let (system, output) = run_lines(&[
        "shutdown -t 5 web",
        "shutdown -t 0 3",
        "shutdown -t 3600 web",
        "shutdown web",
        "shutdown -t 7 -t 0009 web",
        "reboot -t 5 web",
        "reboot -t 0 3",
        "reboot -t 3600 web",
        "reboot 3",
        "reboot -t 1 -t 2 web",
    ]);
    assert_eq!(output, "");
    assert_eq!(
        system.domains.shutdown_requests,
        [(3, Some(5)), (3, Some(0)), (3, Some(3600)), (3, None), (3, Some(9))]
    );
    assert_eq!(system.domains.reboot_requests, [(3, Some(5)), (3, Some(0)), (3, Some(3600)), (3, None), (3, Some(2))]);
    assert_eq!(system.reboot_requests, 0, "`reboot -t SECONDS DOMAIN` must not restart the machine");
}

#[test]
fn shutdown_and_reboot_timeout_errors() {
    for (name, usage) in [("shutdown", "shutdown [-t SECONDS] DOMAIN"), ("reboot", "reboot [[-t SECONDS] DOMAIN]")] {
        let seconds_error = |value: &str| usage_error(&format!("SECONDS must be 0 to 3600, not '{value}'"), usage);
        assert_eq!(run(&format!("{name} -t")), usage_error("option -t needs a value", usage), "{name}");
        assert_eq!(run(&format!("{name} -t x web")), seconds_error("x"), "{name}");
        assert_eq!(run(&format!("{name} -t 3601 web")), seconds_error("3601"), "{name}");
        assert_eq!(run(&format!("{name} -t web")), seconds_error("web"), "{name}");
        for bad in ["-1", "+5", "5s", " 5", "0x10", "", "4294967296", "99999999999999999999"] {
            assert_eq!(run(&format!("{name} -t '{bad}' web")), seconds_error(bad), "{name} {bad:?}");
        }
        assert_eq!(run(&format!("{name} -t 5")), usage_error("missing DOMAIN", usage), "{name}");
        assert_eq!(run(&format!("{name} -t 5 web 3")), usage_error("unexpected argument '3'", usage), "{name}");
        assert_eq!(run(&format!("{name} web -t 5")), usage_error("unexpected argument '-t'", usage), "{name}");
        assert_eq!(run(&format!("{name} -x web")), usage_error("unknown option '-x'", usage), "{name}");
        assert_eq!(run(&format!("{name} -T 5 web")), usage_error("unknown option '-T'", usage), "{name}");
        assert_eq!(run(&format!("{name} -t5 web")), usage_error("unknown option '-t5'", usage), "{name}");
        // A good timeout does not hide the implementation's refusal.
        assert_eq!(run(&format!("{name} -t 5 nope")), "error: no domain 'nope'\n", "{name}");
        let (system, _) = run_lines(&[
            &format!("{name} -t"),
            &format!("{name} -t 3601 web"),
            &format!("{name} -t 5"),
            &format!("{name} -t 5 web 3"),
            &format!("{name} web -t 5"),
            &format!("{name} -t 5 Domain-0"),
        ]);
        assert!(system.domains.shutdown_requests.is_empty() && system.domains.reboot_requests.is_empty(), "{name}");
        assert_eq!(system.reboot_requests, 0, "`{name}` with options must never restart the machine");
        assert!(!system.domains.find("web").unwrap().state.shutdown, "{name}");
    }
    assert_eq!(run("shutdown -t 5 Domain-0"), "error: Domain-0 cannot be shut down from here\n");
    assert_eq!(run("reboot -t 5 0"), "error: Domain-0 cannot be rebooted from here\n");
}

#[test]
fn vcpu_list_format() {
    let domain_0 = [
        "Domain-0                             0     0     0   r--       5.2 all",
        "Domain-0                             0     1     1   -b-       3.1 all",
    ];
    let web = [
        "web                                  3     0     1   -b-       1.3 0-1",
        "web                                  3     1     -   ---       0.0 all",
    ];
    let all: Vec<&str> = [VCPU_HEADER].into_iter().chain(domain_0).chain(web).collect();
    assert_eq!(run("vcpu-list").lines().collect::<Vec<_>>(), all);
    let only_web: Vec<&str> = [VCPU_HEADER].into_iter().chain(web).collect();
    assert_eq!(run("vcpu-list web").lines().collect::<Vec<_>>(), only_web);
    assert_eq!(run("vcpu-list 3").lines().collect::<Vec<_>>(), only_web);
    let (_, paused) = run_lines(&["pause web", "vcpu-list web"]);
    assert!(paused.contains("web                                  3     0     1   --p       1.3 0-1\n"), "{paused}");
    assert_eq!(run("vcpu-list nope"), "error: no domain 'nope'\n");
    assert_eq!(run("vcpu-list web x"), usage_error("unexpected argument 'x'", "vcpu-list [DOMAIN]"));
}

#[test]
fn vcpu_pin_changes_affinity() {
    let (system, output) = run_lines(&["vcpu-pin web 1 2,0-1", "vcpu-pin Domain-0 all 3", "vcpu-list"]);
    assert!(output.starts_with(VCPU_HEADER), "{output}");
    assert_eq!(system.domains.find("web").unwrap().vcpus[1].affinity, "0-2");
    assert_eq!(system.domains.find("web").unwrap().vcpus[0].affinity, "0-1");
    assert!(system.domains.find("0").unwrap().vcpus.iter().all(|vcpu| vcpu.affinity == "3"));
    assert!(output.contains("web                                  3     1     -   ---       0.0 0-2\n"), "{output}");
    let (system, output) = run_lines(&["vcpu-pin 3 0 all"]);
    assert_eq!(output, "");
    assert_eq!(system.domains.find("web").unwrap().vcpus[0].affinity, "all");
}

#[test]
fn vcpu_pin_errors() {
    let usage = "vcpu-pin DOMAIN VCPU|all CPUS";
    assert_eq!(run("vcpu-pin"), usage_error("missing DOMAIN, VCPU and CPUS", usage));
    assert_eq!(run("vcpu-pin web"), usage_error("missing VCPU and CPUS", usage));
    assert_eq!(run("vcpu-pin web 0"), usage_error("missing CPUS", usage));
    assert_eq!(run("vcpu-pin web 0 1 2"), usage_error("unexpected argument '2'", usage));
    assert_eq!(run("vcpu-pin web x 1"), usage_error("VCPU must be a number or 'all', not 'x'", usage));
    assert_eq!(run("vcpu-pin web -1 1"), usage_error("VCPU must be a number or 'all', not '-1'", usage));
    for bad in ["1-0", "", "0,", "a", "0-", "1;2"] {
        assert_eq!(
            run(&format!("vcpu-pin web 0 '{bad}'")),
            usage_error(&format!("bad CPU list '{bad}' (all, N, N-M, comma-separated)"), usage),
            "{bad}"
        );
    }
    assert_eq!(run("vcpu-pin web 2 0"), "error: domain 'web' has no vCPU 2\n");
    assert_eq!(run("vcpu-pin web 0 0-4"), "error: CPU 4 does not exist (CPUs 0-3)\n");
    assert_eq!(run("vcpu-pin nope 0 0"), "error: no domain 'nope'\n");
    let (system, _) = run_lines(&["vcpu-pin web 0 1-0", "vcpu-pin web 0 0-4", "vcpu-pin web 0"]);
    assert_eq!(system.domains.find("web").unwrap().vcpus[0].affinity, "0-1");
}

#[test]
fn sched_credit_shows_and_sets() {
    let domain_0 = "Domain-0                             0    256    0";
    let web = "web                                  3    512   50";
    assert_eq!(run("sched-credit"), format!("{SCHED_HEADER}\n{domain_0}\n{web}\n"));
    assert_eq!(run("sched-credit -d web"), format!("{SCHED_HEADER}\n{web}\n"));
    let (system, output) = run_lines(&["sched-credit -d web -w 1024", "sched-credit -c 0 -d 3", "sched-credit -d 3"]);
    assert_eq!(output, format!("{SCHED_HEADER}\nweb                                  3   1024    0\n"));
    let web = system.domains.find("web").unwrap();
    assert_eq!((web.weight, web.cap), (1024, 0));
    let (system, output) = run_lines(&["sched-credit -w 1 -c 6400 -d Domain-0 -w 65535"]);
    assert_eq!(output, "");
    assert_eq!((system.domains.domains[0].weight, system.domains.domains[0].cap), (65535, 6400));
}

#[test]
fn sched_credit_errors() {
    let usage = "sched-credit [-d DOMAIN] [-w WEIGHT] [-c CAP]";
    assert_eq!(run("sched-credit -w 0 -d web"), usage_error("WEIGHT must be 1 to 65535, not '0'", usage));
    assert_eq!(run("sched-credit -d web -w 65536"), usage_error("WEIGHT must be 1 to 65535, not '65536'", usage));
    assert_eq!(run("sched-credit -d web -w heavy"), usage_error("WEIGHT must be 1 to 65535, not 'heavy'", usage));
    assert_eq!(run("sched-credit -d web -c 6401"), usage_error("CAP must be 0 to 6400, not '6401'", usage));
    assert_eq!(run("sched-credit -d web -c -1"), usage_error("CAP must be 0 to 6400, not '-1'", usage));
    assert_eq!(run("sched-credit -w 10"), usage_error("setting WEIGHT or CAP needs -d DOMAIN", usage));
    assert_eq!(run("sched-credit -c 10"), usage_error("setting WEIGHT or CAP needs -d DOMAIN", usage));
    assert_eq!(run("sched-credit -d"), usage_error("option -d needs a value", usage));
    assert_eq!(run("sched-credit -d web -w"), usage_error("option -w needs a value", usage));
    assert_eq!(run("sched-credit -d web -c"), usage_error("option -c needs a value", usage));
    assert_eq!(run("sched-credit -p Pool-0"), usage_error("unknown option '-p'", usage));
    assert_eq!(run("sched-credit web"), usage_error("unexpected argument 'web'", usage));
    assert_eq!(run("sched-credit -d nope"), "error: no domain 'nope'\n");
    assert_eq!(run("sched-credit -d nope -w 5"), "error: no domain 'nope'\n");
    let (system, _) = run_lines(&["sched-credit -d web -w 0", "sched-credit -w 7", "sched-credit -d web -w 9 x"]);
    let web = system.domains.find("web").unwrap();
    assert_eq!((web.weight, web.cap), (512, 50));
}

#[test]
fn domain_commands_survive_random_arguments() {
    const WORDS: [&str; 22] = [
        "web",
        "3",
        "0",
        "Domain-0",
        "nope",
        "all",
        "-d",
        "-w",
        "-c",
        "1",
        "0-1",
        "65536",
        "-",
        "=",
        "k=v",
        "name=",
        "demo",
        "''",
        "4294967296",
        "0,3",
        "-t",
        "3600",
    ];
    let names: Vec<&str> = DOMAIN_COMMAND_NAMES.into_iter().chain(["reboot"]).collect();
    let shell = fake_appliance_shell();
    let mut system = FakeSystem::new();
    let mut generator = Xorshift::new(0xd0d0);
    for _ in 0..20_000 {
        let mut line = String::from(names[generator.below(names.len())]);
        for _ in 0..generator.below(6) {
            line.push(' ');
            line.push_str(WORDS[generator.below(WORDS.len())]);
        }
        let mut output = String::new();
        shell.execute_line(&mut system, &line, &mut output);
        assert!(output.is_empty() || output.ends_with('\n'), "{line}: {output:?}");
        if system.domains.domains.len() > 20 {
            system.domains = FakeDomains::new();
        }
    }
}
