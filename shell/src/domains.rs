//! The domain commands, named and formatted as in Xen's `xl`: `create`,
//! `list`, `destroy`, `pause`, `unpause`, `shutdown`, `vcpu-list`, `vcpu-pin`,
//! `sched-credit`, `console` — every one a thin formatter over
//! [`DomainControl`]. xl's `reboot DOMAIN` is the one xl command not here.
//!
//! Why a trait: the commands are portable logic; image/ implements
//! [`DomainControl`] with the hypervisor and the toolstack, and
//! `testing::FakeDomains` implements it in memory for host tests. Everything
//! crossing it is plain data.
//!
//! Why xl's `reboot DOMAIN` is not in this table: plain `reboot` restarts the
//! machine (the emulator tests use it), a [`crate::Registry`] rejects
//! duplicate names, and this table knows nothing of the machine. So one
//! `reboot` serves both meanings from [`crate::appliance`]'s table, generic
//! over [`crate::System`] + [`DomainControl`], and this table stays usable on
//! a context that only controls domains. That command reports as the ones here
//! do, through the crate-visible `failed` and `unexpected`, and reads its
//! `[-t SECONDS] DOMAIN` with the same `stop_timeout_and_domain` as `shutdown`.
//!
//! Domains are named by the operator with an id or a name; the command passes
//! the word through and the implementation resolves it. Arguments the shell
//! can check (numbers, ranges, CPU lists, `KEY=VALUE` words) are checked here,
//! once, and are usage errors; whatever the implementation refuses comes back
//! as a one-line `String` and is printed as `error: <message>`.
//!
//! Output formats are part of the interface (the emulator tests read them);
//! each `run_*` function documents its own. Successful actions (`destroy`,
//! `pause`, `unpause`, `shutdown`, `vcpu-pin`, setting with `sched-credit`,
//! and the appliance table's `reboot DOMAIN`) print nothing, as xl does.
//! Names and error messages come from outside the shell and are printed
//! through [`Printable`].
//!
//! Same generic-table trick as [`crate::builtin`]: image/ writes
//! `Registry::new(&[builtin_commands::<Appliance>(), domain_commands::<Appliance>(),
//! appliance_commands::<Appliance>(), ...])`.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::{self, Write as _};
use core::marker::PhantomData;

use crate::builtin::Printable;
use crate::command::{Command, CommandError, Invocation};

/// A domain the toolstack just built, as `create` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedDomain {
    /// The new domain's id.
    pub id: u32,
    /// Its name (from the config or a `name=` override).
    pub name: String,
}

/// Domain state flags, as xl's `list` shows them (`rbpscd`); several may be
/// set at once (a paused domain that is also shutting down: `--ps--`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DomainState {
    /// A vCPU of the domain is running on a physical CPU right now (`r`).
    pub running: bool,
    /// Every vCPU is blocked, waiting for an event (`b`).
    pub blocked: bool,
    /// Paused by the operator or the toolstack (`p`).
    pub paused: bool,
    /// The guest has shut down, or been asked to and has not yet finished (`s`).
    pub shutdown: bool,
    /// The guest crashed (`c`).
    pub crashed: bool,
    /// Being destroyed; its resources are not all freed yet (`d`).
    pub dying: bool,
}

/// xl's six state letters, `-` for each flag not set: `r-----`, `-b----`, `--p---`, ...
impl fmt::Display for DomainState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let letters = [
            (self.running, 'r'),
            (self.blocked, 'b'),
            (self.paused, 'p'),
            (self.shutdown, 's'),
            (self.crashed, 'c'),
            (self.dying, 'd'),
        ];
        let text: String = letters.iter().map(|&(set, letter)| if set { letter } else { '-' }).collect();
        formatter.pad(&text)
    }
}

/// One row of `list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSummary {
    /// Domain id (0 is the built-in dom0, `Domain-0`).
    pub id: u32,
    /// Domain name.
    pub name: String,
    /// Memory currently given to the domain, in MiB.
    pub memory_mib: u64,
    /// Number of vCPUs online.
    pub vcpus: u32,
    /// State flags.
    pub state: DomainState,
    /// CPU time consumed by all its vCPUs, in nanoseconds.
    pub cpu_time_ns: u64,
}

/// What one vCPU is doing, as `vcpu-list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VcpuState {
    /// Running on a physical CPU now (`r--`).
    Running,
    /// Online, waiting for an event (`-b-`).
    Blocked,
    /// Online, but its domain is paused (`--p`).
    Paused,
    /// Down: never brought up by the guest, or taken offline (`---`).
    Offline,
}

impl VcpuState {
    /// The three-letter state column of `vcpu-list`.
    pub const fn letters(self) -> &'static str {
        match self {
            VcpuState::Running => "r--",
            VcpuState::Blocked => "-b-",
            VcpuState::Paused => "--p",
            VcpuState::Offline => "---",
        }
    }
}

/// One row of `vcpu-list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuSummary {
    /// Name of the vCPU's domain.
    pub domain_name: String,
    /// Id of the vCPU's domain.
    pub domain_id: u32,
    /// The vCPU's number within its domain.
    pub vcpu: u32,
    /// Physical CPU it runs on, or last ran on; `None` if none (shown as `-`).
    pub cpu: Option<u32>,
    /// What it is doing.
    pub state: VcpuState,
    /// CPU time it has consumed, in nanoseconds.
    pub cpu_time_ns: u64,
    /// Physical CPUs it may run on, in [`CpuSet`]'s syntax: `"all"`, `"0-1"`, `"0,2"`.
    pub affinity: String,
}

/// One row of `sched-credit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedCreditEntry {
    /// Domain name.
    pub name: String,
    /// Domain id.
    pub id: u32,
    /// Relative share of CPU time, 1..=65535 (xl's default 256).
    pub weight: u32,
    /// Most CPU the domain may use, in percent of one physical CPU; 0 = no cap.
    pub cap: u32,
}

/// Highest accepted credit-scheduler weight.
pub const MAX_CREDIT_WEIGHT: u32 = 65_535;
/// Highest accepted credit-scheduler cap: 100 % of each of up to 64 CPUs.
pub const MAX_CREDIT_CAP: u32 = 6_400;
/// Longest `-t SECONDS` that `shutdown` and `reboot DOMAIN` accept: one hour.
pub const MAX_STOP_TIMEOUT_SECONDS: u32 = 3_600;
/// How long a guest asked to shut down or reboot gets before it is stopped,
/// when the operator gives no `-t` ([`DomainControl::shutdown`] gets `None`).
pub const DEFAULT_STOP_TIMEOUT_SECONDS: u32 = 60;

/// A set of physical CPUs as the operator writes it: `all`, or a
/// comma-separated list of `N` and `N-M` items (`0-1`, `0,2`, `0-3,6`).
///
/// [`CpuSet::parse`] is the one place the syntax is checked; the parsed form
/// is canonical: ranges sorted, overlapping and adjacent ones merged, and its
/// [`Display`](fmt::Display) prints that form (`"0-2,5"`, `"all"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuSet {
    /// Every physical CPU.
    All,
    /// The CPUs in these ranges: sorted, disjoint, not adjacent, non-empty.
    Listed(Vec<CpuRange>),
}

/// Physical CPUs `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuRange {
    /// Lowest CPU number in the range.
    pub first: u32,
    /// Highest CPU number in the range (inclusive, `>= first`).
    pub last: u32,
}

impl CpuSet {
    /// Parses `all` or `N[-M][,N[-M]...]` (decimal, no blanks, `N <= M`).
    pub fn parse(text: &str) -> Option<CpuSet> {
        if text == "all" {
            return Some(CpuSet::All);
        }
        let mut ranges = Vec::new();
        for item in text.split(',') {
            let (first, last) = match item.split_once('-') {
                Some((first, last)) => (parse_u32(first)?, parse_u32(last)?),
                None => {
                    let cpu = parse_u32(item)?;
                    (cpu, cpu)
                }
            };
            if first > last {
                return None;
            }
            ranges.push(CpuRange { first, last });
        }
        ranges.sort_by_key(|range| range.first);
        let mut merged: Vec<CpuRange> = Vec::with_capacity(ranges.len());
        for range in ranges {
            match merged.last_mut() {
                Some(previous) if range.first <= previous.last.saturating_add(1) => {
                    previous.last = previous.last.max(range.last);
                }
                _ => merged.push(range),
            }
        }
        Some(CpuSet::Listed(merged))
    }

    /// Whether `cpu` is in the set.
    pub fn contains(&self, cpu: u32) -> bool {
        match self {
            CpuSet::All => true,
            CpuSet::Listed(ranges) => ranges.iter().any(|range| (range.first..=range.last).contains(&cpu)),
        }
    }

    /// The highest CPU named, or `None` for [`CpuSet::All`] (for range checks).
    pub fn highest(&self) -> Option<u32> {
        match self {
            CpuSet::All => None,
            CpuSet::Listed(ranges) => ranges.last().map(|range| range.last),
        }
    }
}

impl fmt::Display for CpuSet {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::new();
        match self {
            CpuSet::All => text.push_str("all"),
            CpuSet::Listed(ranges) => {
                for (index, range) in ranges.iter().enumerate() {
                    if index > 0 {
                        text.push(',');
                    }
                    if range.first == range.last {
                        write!(text, "{}", range.first)?;
                    } else {
                        write!(text, "{}-{}", range.first, range.last)?;
                    }
                }
            }
        }
        formatter.pad(&text)
    }
}

/// The domains as the shell sees them: image/ implements this with the
/// hypervisor and the toolstack.
///
/// Contracts for implementers:
/// - `domain` arguments are the operator's word, unchanged: a decimal domain
///   id or a name. Resolve it (an id first, then a name) and fail with
///   `no domain '<word>'` if neither matches.
/// - Every error is one line without a trailing newline or `error:` prefix;
///   the shell prints it as `error: <message>` (control characters replaced).
/// - The methods are called from the shell's task and return when the request
///   has been carried out or handed over: `shutdown` and `reboot` return once
///   the guest has been asked, not when it has finished (nor when their
///   timeout runs out; the fallback stop happens later, without the shell).
/// - Lists are snapshots in domain-id order (vCPUs in vCPU order within it);
///   `Domain-0` is part of them like any other domain.
pub trait DomainControl {
    /// Builds and starts a domain from the config file named `config`
    /// (xl.cfg syntax), with `overrides` applied after it: each is one
    /// `KEY=VALUE` word as typed (`name=d2`, `vcpus=2`), already checked to
    /// have a non-empty `KEY` of letters, digits and `_`.
    fn create(&mut self, config: &str, overrides: &[&str]) -> Result<CreatedDomain, String>;
    /// Every domain, or only `domain` if given.
    fn domains(&self, domain: Option<&str>) -> Result<Vec<DomainSummary>, String>;
    /// Kills the domain at once and frees what it holds (xl `destroy`).
    fn destroy(&mut self, domain: &str) -> Result<(), String>;
    /// Stops scheduling the domain's vCPUs.
    fn pause(&mut self, domain: &str) -> Result<(), String>;
    /// Schedules a paused domain's vCPUs again.
    fn unpause(&mut self, domain: &str) -> Result<(), String>;
    /// Asks the guest to shut down by writing `poweroff` to its xenstore node
    /// `control/shutdown`. If the guest has not shut down `timeout_seconds`
    /// later (`None` = the default, [`DEFAULT_STOP_TIMEOUT_SECONDS`] = 60 s;
    /// at most [`MAX_STOP_TIMEOUT_SECONDS`]), the hypervisor stops it with
    /// reason poweroff, so the config's `on_poweroff` action still applies. A
    /// guest that never connected to xenstore cannot be asked and is stopped
    /// that way at once.
    fn shutdown(&mut self, domain: &str, timeout_seconds: Option<u32>) -> Result<(), String>;
    /// Asks the guest to reboot by writing `reboot` to its xenstore node
    /// `control/shutdown`. If the guest has not shut down `timeout_seconds`
    /// later (`None` = the default, [`DEFAULT_STOP_TIMEOUT_SECONDS`] = 60 s;
    /// at most [`MAX_STOP_TIMEOUT_SECONDS`]), the hypervisor stops it with
    /// reason reboot, so the config's `on_reboot` action (normally: rebuild
    /// it) still applies. A guest that never connected to xenstore cannot be
    /// asked and is stopped that way at once.
    fn reboot(&mut self, domain: &str, timeout_seconds: Option<u32>) -> Result<(), String>;
    /// The vCPUs of every domain, or only of `domain` if given.
    fn vcpus(&self, domain: Option<&str>) -> Result<Vec<VcpuSummary>, String>;
    /// Restricts vCPU `vcpu` of `domain` (every vCPU if `None`) to the
    /// physical CPUs in `cpus`. Fails if the vCPU or a CPU does not exist.
    fn pin_vcpu(&mut self, domain: &str, vcpu: Option<u32>, cpus: &CpuSet) -> Result<(), String>;
    /// Credit-scheduler parameters of every domain, or only of `domain`.
    fn sched_credit(&self, domain: Option<&str>) -> Result<Vec<SchedCreditEntry>, String>;
    /// Sets the weight and/or cap of `domain`; `None` leaves a value as it is.
    /// Values are already range-checked ([`MAX_CREDIT_WEIGHT`], [`MAX_CREDIT_CAP`]).
    fn set_sched_credit(&mut self, domain: &str, weight: Option<u32>, cap: Option<u32>) -> Result<(), String>;
    /// Connects the serial line to the domain's console until the operator
    /// types the escape character, then returns. The implementation prints
    /// its own banner (it knows the resolved name); the command prints nothing.
    fn attach_console(&mut self, domain: &str) -> Result<(), String>;
}

/// The domain commands for context type `C`.
pub fn domain_commands<C: DomainControl + 'static>() -> &'static [Command<C>] {
    DomainTable::<C>::COMMANDS
}

/// Carrier of the generic table (see [`crate::builtin`]).
struct DomainTable<C>(PhantomData<C>);

impl<C: DomainControl + 'static> DomainTable<C> {
    const COMMANDS: &'static [Command<C>] = &[
        Command {
            name: "create",
            usage: "create CONFIG [KEY=VALUE ...]",
            summary: "create a domain from an xl.cfg config, KEY=VALUE overriding its settings",
            run: run_create::<C>,
        },
        Command {
            name: "list",
            usage: "list [DOMAIN]",
            summary: "list domains: id, memory (MiB), vCPUs, state, CPU time",
            run: run_list::<C>,
        },
        Command {
            name: "destroy",
            usage: "destroy DOMAIN",
            summary: "end a domain at once and free its resources",
            run: run_destroy::<C>,
        },
        Command { name: "pause", usage: "pause DOMAIN", summary: "stop running a domain's vCPUs", run: run_pause::<C> },
        Command { name: "unpause", usage: "unpause DOMAIN", summary: "resume a paused domain", run: run_unpause::<C> },
        Command {
            name: "shutdown",
            usage: "shutdown [-t SECONDS] DOMAIN",
            summary: "ask a domain to shut down; stopped if still up after SECONDS (0-3600, default 60)",
            run: run_shutdown::<C>,
        },
        Command {
            name: "vcpu-list",
            usage: "vcpu-list [DOMAIN]",
            summary: "list vCPUs: physical CPU, state, CPU time, affinity",
            run: run_vcpu_list::<C>,
        },
        Command {
            name: "vcpu-pin",
            usage: "vcpu-pin DOMAIN VCPU|all CPUS",
            summary: "set the physical CPUs a vCPU may run on (CPUS: all, N, N-M, comma-separated)",
            run: run_vcpu_pin::<C>,
        },
        Command {
            name: "sched-credit",
            usage: "sched-credit [-d DOMAIN] [-w WEIGHT] [-c CAP]",
            summary: "show, or with -w/-c set, credit weight (1-65535) and cap (0-6400 %, 0 = none)",
            run: run_sched_credit::<C>,
        },
        Command {
            name: "console",
            usage: "console DOMAIN",
            summary: "connect to a domain's console (the escape character returns)",
            run: run_console::<C>,
        },
    ];
}

const NANOSECONDS_PER_TENTH_SECOND: u64 = 100_000_000;

/// `create CONFIG [KEY=VALUE ...]`: `Created domain 3 (web)`.
fn run_create<C: DomainControl + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    let Some((&config, overrides)) = invocation.args.split_first() else {
        return Err(CommandError::Usage(String::from("missing CONFIG")));
    };
    if let Some(bad) = overrides.iter().find(|word| !is_override(word)) {
        return Err(CommandError::Usage(format!("expected KEY=VALUE, not '{}'", Printable(bad))));
    }
    let created = invocation.context.create(config, overrides).map_err(failed)?;
    writeln!(invocation.out, "Created domain {} ({})", created.id, Printable(&created.name))?;
    Ok(())
}

/// `list [DOMAIN]`, xl's format (Mem in MiB, Time(s) rounded to a tenth):
/// ```text
/// Name                                        ID   Mem VCPUs      State   Time(s)
/// Domain-0                                     0  1024     2     r-----      12.3
/// ```
fn run_list<C: DomainControl + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    let domain = optional_domain(invocation.args)?;
    let domains = invocation.context.domains(domain).map_err(failed)?;
    let out = &mut *invocation.out;
    writeln!(out, "Name                                        ID   Mem VCPUs      State   Time(s)")?;
    for summary in &domains {
        writeln!(
            out,
            "{:<40} {:>5} {:>5} {:>5}     {}  {:>8}",
            printable(&summary.name),
            summary.id,
            summary.memory_mib,
            summary.vcpus,
            summary.state,
            Seconds(summary.cpu_time_ns)
        )?;
    }
    Ok(())
}

/// `destroy DOMAIN`: silent on success.
fn run_destroy<C: DomainControl + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    let domain = one_domain(invocation.args)?;
    invocation.context.destroy(domain).map_err(failed)
}

/// `pause DOMAIN`: silent on success.
fn run_pause<C: DomainControl + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    let domain = one_domain(invocation.args)?;
    invocation.context.pause(domain).map_err(failed)
}

/// `unpause DOMAIN`: silent on success.
fn run_unpause<C: DomainControl + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    let domain = one_domain(invocation.args)?;
    invocation.context.unpause(domain).map_err(failed)
}

/// `shutdown [-t SECONDS] DOMAIN`: silent once the guest has been asked.
fn run_shutdown<C: DomainControl + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    let (timeout_seconds, domain) = stop_timeout_and_domain(invocation.args)?;
    invocation.context.shutdown(domain, timeout_seconds).map_err(failed)
}

/// `vcpu-list [DOMAIN]`, xl's header, rows aligned under it (CPU `-` if none;
/// State `r--`, `-b-`, `--p`, or `---` for an offline vCPU):
/// ```text
/// Name                                ID  VCPU   CPU State   Time(s) Affinity
/// Domain-0                             0     0     0   r--       5.2 all
/// web                                  3     1     -   ---       0.0 0-1
/// ```
fn run_vcpu_list<C: DomainControl + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    let domain = optional_domain(invocation.args)?;
    let vcpus = invocation.context.vcpus(domain).map_err(failed)?;
    let out = &mut *invocation.out;
    writeln!(out, "Name                                ID  VCPU   CPU State   Time(s) Affinity")?;
    for vcpu in &vcpus {
        let cpu = match vcpu.cpu {
            Some(cpu) => cpu.to_string(),
            None => String::from("-"),
        };
        writeln!(
            out,
            "{:<32} {:>5} {:>5} {:>5} {:>5} {:>9} {}",
            printable(&vcpu.domain_name),
            vcpu.domain_id,
            vcpu.vcpu,
            cpu,
            vcpu.state.letters(),
            Seconds(vcpu.cpu_time_ns),
            Printable(&vcpu.affinity)
        )?;
    }
    Ok(())
}

/// `vcpu-pin DOMAIN VCPU|all CPUS`: silent on success.
fn run_vcpu_pin<C: DomainControl + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    let (domain, vcpu_word, cpus_word) = match *invocation.args {
        [domain, vcpu, cpus] => (domain, vcpu, cpus),
        [] => return Err(CommandError::Usage(String::from("missing DOMAIN, VCPU and CPUS"))),
        [_] => return Err(CommandError::Usage(String::from("missing VCPU and CPUS"))),
        [_, _] => return Err(CommandError::Usage(String::from("missing CPUS"))),
        [_, _, _, extra, ..] => return Err(unexpected(extra)),
    };
    let vcpu = match vcpu_word {
        "all" => None,
        number => Some(parse_u32(number).ok_or_else(|| {
            CommandError::Usage(format!("VCPU must be a number or 'all', not '{}'", Printable(number)))
        })?),
    };
    let cpus = CpuSet::parse(cpus_word).ok_or_else(|| {
        CommandError::Usage(format!("bad CPU list '{}' (all, N, N-M, comma-separated)", Printable(cpus_word)))
    })?;
    invocation.context.pin_vcpu(domain, vcpu, &cpus).map_err(failed)
}

/// `sched-credit [-d DOMAIN]`: xl's table (without its cpupool line):
/// ```text
/// Name                                ID Weight  Cap
/// Domain-0                             0    256    0
/// ```
/// `sched-credit -d DOMAIN [-w WEIGHT] [-c CAP]` with `-w` or `-c` sets the
/// values and prints nothing. Options may come in any order; the last of a
/// repeated option counts (getopt's behavior).
fn run_sched_credit<C: DomainControl + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    let mut domain: Option<&str> = None;
    let mut weight: Option<u32> = None;
    let mut cap: Option<u32> = None;
    let mut arguments = invocation.args.iter();
    while let Some(&option) = arguments.next() {
        let mut value_of = |option: &str| {
            arguments.next().copied().ok_or_else(|| CommandError::Usage(format!("option {option} needs a value")))
        };
        match option {
            "-d" => domain = Some(value_of("-d")?),
            "-w" => {
                let value = value_of("-w")?;
                weight = Some(parse_in_range(value, 1, MAX_CREDIT_WEIGHT).ok_or_else(|| {
                    CommandError::Usage(format!("WEIGHT must be 1 to {MAX_CREDIT_WEIGHT}, not '{}'", Printable(value)))
                })?);
            }
            "-c" => {
                let value = value_of("-c")?;
                cap = Some(parse_in_range(value, 0, MAX_CREDIT_CAP).ok_or_else(|| {
                    CommandError::Usage(format!("CAP must be 0 to {MAX_CREDIT_CAP}, not '{}'", Printable(value)))
                })?);
            }
            other if other.starts_with('-') => {
                return Err(CommandError::Usage(format!("unknown option '{}'", Printable(other))))
            }
            other => return Err(unexpected(other)),
        }
    }

    if weight.is_some() || cap.is_some() {
        let Some(domain) = domain else {
            return Err(CommandError::Usage(String::from("setting WEIGHT or CAP needs -d DOMAIN")));
        };
        return invocation.context.set_sched_credit(domain, weight, cap).map_err(failed);
    }
    let entries = invocation.context.sched_credit(domain).map_err(failed)?;
    let out = &mut *invocation.out;
    writeln!(out, "Name                                ID Weight  Cap")?;
    for entry in &entries {
        writeln!(out, "{:<33} {:>4} {:>6} {:>4}", printable(&entry.name), entry.id, entry.weight, entry.cap)?;
    }
    Ok(())
}

/// `console DOMAIN`: hands the serial line to the implementation, which
/// prints its own banner; nothing else is printed on success.
fn run_console<C: DomainControl + 'static>(invocation: &mut Invocation<'_, C>) -> Result<(), CommandError> {
    let domain = one_domain(invocation.args)?;
    invocation.context.attach_console(domain).map_err(failed)
}

/// Exactly one DOMAIN argument.
fn one_domain<'a>(arguments: &[&'a str]) -> Result<&'a str, CommandError> {
    match *arguments {
        [domain] => Ok(domain),
        [] => Err(CommandError::Usage(String::from("missing DOMAIN"))),
        [_, extra, ..] => Err(unexpected(extra)),
    }
}

/// `[-t SECONDS] DOMAIN`, the arguments of `shutdown` and of the appliance's
/// `reboot DOMAIN`: the timeout (`None` without `-t`; of a repeated `-t` the
/// last counts, getopt's behavior) and the domain word. Options come before
/// DOMAIN; any word after it is unexpected. SECONDS is plain decimal,
/// 0..=[`MAX_STOP_TIMEOUT_SECONDS`].
pub(crate) fn stop_timeout_and_domain<'a>(arguments: &[&'a str]) -> Result<(Option<u32>, &'a str), CommandError> {
    let mut words = arguments.iter().copied();
    let mut timeout_seconds = None;
    let domain = loop {
        match words.next() {
            Some("-t") => {
                let value = words.next().ok_or_else(|| CommandError::Usage(String::from("option -t needs a value")))?;
                timeout_seconds = Some(parse_in_range(value, 0, MAX_STOP_TIMEOUT_SECONDS).ok_or_else(|| {
                    CommandError::Usage(format!(
                        "SECONDS must be 0 to {MAX_STOP_TIMEOUT_SECONDS}, not '{}'",
                        Printable(value)
                    ))
                })?);
            }
            Some(option) if option.starts_with('-') => {
                return Err(CommandError::Usage(format!("unknown option '{}'", Printable(option))))
            }
            Some(domain) => break domain,
            None => return Err(CommandError::Usage(String::from("missing DOMAIN"))),
        }
    };
    match words.next() {
        Some(extra) => Err(unexpected(extra)),
        None => Ok((timeout_seconds, domain)),
    }
}

/// At most one DOMAIN argument.
fn optional_domain<'a>(arguments: &[&'a str]) -> Result<Option<&'a str>, CommandError> {
    match *arguments {
        [] => Ok(None),
        [domain] => Ok(Some(domain)),
        [_, extra, ..] => Err(unexpected(extra)),
    }
}

/// `unexpected argument 'WORD'`, a usage error.
pub(crate) fn unexpected(argument: &str) -> CommandError {
    CommandError::Usage(format!("unexpected argument '{}'", Printable(argument)))
}

/// An implementation's refusal, as the operator sees it.
pub(crate) fn failed(message: String) -> CommandError {
    CommandError::Failed(printable(&message))
}

/// `KEY=VALUE` with a non-empty key of ASCII letters, digits and `_`.
fn is_override(word: &str) -> bool {
    match word.split_once('=') {
        Some((key, _)) => !key.is_empty() && key.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_'),
        None => false,
    }
}

/// A plain decimal `u32` (digits only: no sign, no blanks).
fn parse_u32(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_in_range(text: &str, lowest: u32, highest: u32) -> Option<u32> {
    parse_u32(text).filter(|value| (lowest..=highest).contains(value))
}

/// `text` with control characters replaced, as an owned string so a width
/// can pad it ([`Printable`] itself ignores widths).
fn printable(text: &str) -> String {
    format!("{}", Printable(text))
}

/// Nanoseconds as seconds with one decimal, rounded to nearest (xl's `%.1f`);
/// honours width and alignment.
struct Seconds(u64);

impl fmt::Display for Seconds {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = self.0 / NANOSECONDS_PER_TENTH_SECOND
            + u64::from(self.0 % NANOSECONDS_PER_TENTH_SECOND >= NANOSECONDS_PER_TENTH_SECOND / 2);
        formatter.pad(&format!("{}.{}", tenths / 10, tenths % 10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_sets_parse_to_canonical_form() {
        assert_eq!(CpuSet::parse("all"), Some(CpuSet::All));
        let cases = [("0-1", "0-1"), ("0,2", "0,2"), ("3,0-1,2", "0-3"), ("5,1-2,2-3,9", "1-3,5,9"), ("7-7", "7")];
        for (text, canonical) in cases {
            assert_eq!(CpuSet::parse(text).map(|set| set.to_string()).as_deref(), Some(canonical), "{text}");
        }
        for bad in ["", ",", "1,", "-1", "1-", "2-1", "a", "ALL", " 1", "1 ", "+1", "1--2", "0x1", "99999999999"] {
            assert_eq!(CpuSet::parse(bad), None, "{bad:?}");
        }
        let set = CpuSet::parse("0-1,4").unwrap();
        assert!(set.contains(1) && set.contains(4) && !set.contains(2));
        assert_eq!(set.highest(), Some(4));
        assert!(CpuSet::All.contains(u32::MAX));
        assert_eq!(CpuSet::All.highest(), None);
        assert_eq!(CpuSet::parse("4294967295,0-4294967294").unwrap().to_string(), "0-4294967295");
    }

    #[test]
    fn seconds_round_to_a_tenth() {
        assert_eq!(format!("{}", Seconds(0)), "0.0");
        assert_eq!(format!("{}", Seconds(49_999_999)), "0.0");
        assert_eq!(format!("{}", Seconds(50_000_000)), "0.1");
        assert_eq!(format!("{}", Seconds(12_345_000_000)), "12.3");
        assert_eq!(format!("{}", Seconds(9_960_000_000)), "10.0");
        assert_eq!(format!("{:>6}|", Seconds(1_000_000_000)), "   1.0|");
        assert_eq!(format!("{}", Seconds(u64::MAX)), "18446744073.7");
    }

    #[test]
    fn state_letters() {
        assert_eq!(DomainState::default().to_string(), "------");
        let everything =
            DomainState { running: true, blocked: true, paused: true, shutdown: true, crashed: true, dying: true };
        assert_eq!(everything.to_string(), "rbpscd");
        assert_eq!(DomainState { paused: true, shutdown: true, ..DomainState::default() }.to_string(), "--ps--");
    }

    #[test]
    fn overrides() {
        assert!(is_override("name=d2") && is_override("vcpus=") && is_override("on_crash=preserve"));
        assert!(!is_override("=2") && !is_override("name") && !is_override("my-key=1") && !is_override("a b=1"));
    }
}
