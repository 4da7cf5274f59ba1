//! The domain-level dcmds: `::status` (what is being debugged), `::cpuinfo` and
//! `::cpuregs` (the vCPUs), and the Xen metadata of the domain — `::evtchns`,
//! `::grants`, `::xenstore` — plus `::domains` (every domain of the appliance).
//!
//! Each reads through [`crate::target::Target`] only, so it works alike on a live
//! domain, a dump-core file and a test fixture; a target that lacks a piece of
//! metadata answers "not supported" and the dcmd says so in one line. Layouts follow
//! illumos mdb (`::status`, `::cpuregs` on amd64) where mdb has the command, and
//! Xen's public headers for the ABI facts: xen.h (VIRQ numbers, the x86_64
//! shared_info layout) and grant_table.h (GTF_* flags).
//!
//! Everything a guest or a file controls (xenstore paths and values, owner texts,
//! symbol names) is printed through [`Printable`], so it cannot send escape
//! sequences to the operator's terminal; every loop is bounded by a constant.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write as _};

use crate::dcmd::{selected_vcpu, Dcmd, DcmdCall, DcmdError, DcmdResult, Debuggee, Options, Walker};
use crate::paging::PagingMode;
use crate::symbols::SymbolTable;
use crate::target::{
    ChannelBinding, DomainSummary, EventChannel, GrantEntry, Registers, TargetError, TargetInfo, TargetKind,
    VcpuRunState, XenstoreNode,
};

pub const DCMDS: &[Dcmd] = &[
    Dcmd {
        name: "status",
        usage: "",
        summary: "print a summary of the debugged domain",
        help: "Says whether this is a live domain or a dump-core file, the domain's id and name, \
the guest operating system (when it can be recognized), its vCPUs and their states, its memory, \
how the vCPU state was captured, and where the kernel symbols came from.",
        run: run_status,
    },
    Dcmd {
        name: "cpuinfo",
        usage: "",
        summary: "print one line per vCPU: state, paging mode, RIP, RSP, CR3",
        help: "For each vCPU: its id, whether it was running, blocked or down when its registers \
were saved, the paging mode its control registers select, the instruction pointer (symbolic \
where a kernel symbol contains it), the stack pointer and the page-table root.",
        run: run_cpuinfo,
    },
    Dcmd {
        name: "cpuregs",
        usage: "[-c cpu]",
        summary: "print the registers of the current vCPU (or of vCPU -c cpu)",
        help: "Prints the general-purpose registers, the instruction pointer with its symbol, the \
flags with each status bit named (upper case: set), the segment selectors, the control \
registers with their named bits, EFER, and the FS/GS bases. With -c (or an address before ::), \
the given vCPU instead of the current one.",
        run: run_cpuregs,
    },
    Dcmd {
        name: "evtchns",
        usage: "",
        summary: "print the domain's event channels",
        help: "One line per event channel: what it is bound to (virq:NAME, interdomain, ipi, \
unbound, pirq:N), its port, the vCPU it notifies, its pending and masked bits, the remote \
end (domN:port) and who owns it. A target without an event-channel table is answered from \
the pending and mask bitmaps of the guest's shared_info page, and the output says so.",
        run: run_evtchns,
    },
    Dcmd {
        name: "grants",
        usage: "",
        summary: "print the in-use entries of the domain's grant table",
        help: "One line per in-use grant entry: the reference, the GTF_* flags (decoded), the \
domain the grant is for, and the granted frame.",
        run: run_grants,
    },
    Dcmd {
        name: "xenstore",
        usage: "[path]",
        summary: "print the domain's xenstore nodes under path (default: all)",
        help: "Prints `path = \"value\"` for every node at or under path, sorted by path. Bytes \
that are not printable ASCII are shown as \\xNN.",
        run: run_xenstore,
    },
    Dcmd {
        name: "domains",
        usage: "",
        summary: "print every domain of the appliance",
        help: "One line per domain: id, name, state, vCPU count and memory. Only inside the \
appliance; a core file knows only its own domain.",
        run: run_domains,
    },
];

pub const WALKERS: &[Walker] = &[
    Walker {
        name: "cpu",
        summary: "every vCPU's number (`::walk cpu | ::cpustack` prints every stack)",
        walk: walk_vcpus,
    },
    Walker { name: "evtchn", summary: "the port of every event channel of the domain", walk: walk_event_channels },
    Walker { name: "grant", summary: "the reference of every in-use grant entry", walk: walk_grants },
];

fn walk_vcpus(debuggee: &Debuggee<'_>, _start: Option<u64>) -> DcmdResult {
    Ok((0..u64::from(debuggee.target().info().vcpus)).collect())
}

fn walk_event_channels(debuggee: &Debuggee<'_>, _start: Option<u64>) -> DcmdResult {
    Ok(debuggee.target().event_channels()?.iter().map(|channel| u64::from(channel.port)).collect())
}

fn walk_grants(debuggee: &Debuggee<'_>, _start: Option<u64>) -> DcmdResult {
    Ok(debuggee.target().grants()?.iter().map(|grant| u64::from(grant.reference)).collect())
}

/// Most vCPUs a dcmd looks at (a domain cannot have more; bounds loops over a
/// count a core file supplies).
const MAXIMUM_VCPUS: u32 = 4096;

/// x86_64 shared_info layout (xen.h, `struct shared_info`): 32 (XEN_LEGACY_MAX_VCPUS)
/// `vcpu_info` of 64 bytes, then `evtchn_pending[64]` and `evtchn_mask[64]`, each an
/// array of 64-bit words, so 4096 ports of two-level event channels.
const SHARED_INFO_EVTCHN_PENDING: usize = 32 * 64;
const SHARED_INFO_EVTCHN_MASK: usize = SHARED_INFO_EVTCHN_PENDING + 64 * 8;
const TWO_LEVEL_PORTS: u32 = 64 * 64;
/// Most rows the shared_info fallback of `::evtchns` prints: a guest that has not
/// masked its unused ports yet would otherwise list all 4095.
const MAXIMUM_FALLBACK_ROWS: usize = 256;

fn expect_no_arguments(call: &DcmdCall<'_>) -> Result<(), DcmdError> {
    match call.args.first() {
        None => Ok(()),
        Some(word) => Err(DcmdError::Usage(format!("unexpected argument '{}'", Printable(word.as_bytes())))),
    }
}

fn vcpu_count(info: &TargetInfo) -> u32 {
    info.vcpus.min(MAXIMUM_VCPUS)
}

fn run_state_name(state: VcpuRunState) -> &'static str {
    match state {
        VcpuRunState::Running => "running",
        VcpuRunState::Blocked => "blocked",
        VcpuRunState::Down => "down",
    }
}

const EFER_LMA: u64 = 1 << 10;
const CR0_PE: u64 = 1;

/// mdb's data model word. A vCPU in long mode is 64-bit and one in protected mode
/// without it 32-bit; before the guest leaves real mode (or when vCPU 0 cannot be
/// read) there is nothing to go by, and Basalt's guests are 64-bit kernels.
fn data_model(registers: Option<&Registers>) -> &'static str {
    match registers {
        Some(registers) if registers.efer & EFER_LMA == 0 && registers.cr0 & CR0_PE != 0 => "32-bit",
        _ => "64-bit",
    }
}

/// `512 MiB`, `2 GiB`, `1536 KiB`: the largest binary unit that divides exactly.
fn memory_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{} {unit}", bytes / size);
        }
    }
    if bytes >= 1 << 20 {
        return format!("{} MiB ({bytes} bytes)", bytes >> 20);
    }
    format!("{bytes} bytes")
}

fn run_status(debuggee: &Debuggee<'_>, call: &DcmdCall<'_>, out: &mut dyn fmt::Write) -> DcmdResult {
    expect_no_arguments(call)?;
    let target = debuggee.target();
    let info = target.info();
    let first_registers = target.registers(0).ok();
    let model = data_model(first_registers.as_ref());
    let name = Printable(info.domain_name.as_bytes());
    match &info.kind {
        TargetKind::Live => writeln!(
            out,
            "debugging live domain {} ({name}), {model}, on {}",
            info.domain_id,
            Printable(info.hypervisor.as_bytes())
        )?,
        TargetKind::CoreFile { source } => {
            write!(
                out,
                "debugging domain crash dump {} ({model}) of domain {} ({name})",
                Printable(source.as_bytes()),
                info.domain_id
            )?;
            if let Some(host) = &info.host {
                write!(out, " from {}", Printable(host.as_bytes()))?;
            }
            writeln!(out)?;
            writeln!(out, "hypervisor: {}", Printable(info.hypervisor.as_bytes()))?;
        }
    }
    match crate::linux::operating_system(debuggee) {
        Some(system) => writeln!(out, "operating system: {}", Printable(system.as_bytes()))?,
        None => writeln!(out, "operating system: unknown")?,
    }
    writeln!(out, "domain state: {}", Printable(info.state.as_bytes()))?;
    writeln!(out, "vCPUs: {}", vcpu_states(debuggee, &info))?;
    writeln!(out, "memory: {}", memory_size(info.memory_bytes))?;
    writeln!(out, "vCPU state: {}", Printable(info.vcpu_snapshot.as_bytes()))?;
    let symbols = debuggee.symbols();
    if symbols.is_empty() {
        writeln!(out, "symbols: none ({})", Printable(symbols.source.as_bytes()))?;
    } else {
        writeln!(out, "symbols: {} ({} symbols)", Printable(symbols.source.as_bytes()), symbols.len())?;
    }
    Ok(Vec::new())
}

/// `2 (1 running, 1 blocked)`: the count and how many are in each state.
fn vcpu_states(debuggee: &Debuggee<'_>, info: &TargetInfo) -> String {
    let mut counts = [0u32; 4];
    for vcpu in 0..vcpu_count(info) {
        let slot = match debuggee.target().registers(vcpu) {
            Ok(registers) => match registers.state {
                VcpuRunState::Running => 0,
                VcpuRunState::Blocked => 1,
                VcpuRunState::Down => 2,
            },
            Err(_) => 3,
        };
        counts[slot] += 1;
    }
    let names = ["running", "blocked", "down", "unreadable"];
    let parts: Vec<String> = counts
        .iter()
        .zip(names)
        .filter(|(count, _)| **count != 0)
        .map(|(count, name)| format!("{count} {name}"))
        .collect();
    if parts.is_empty() {
        format!("{}", info.vcpus)
    } else {
        format!("{} ({})", info.vcpus, parts.join(", "))
    }
}

/// `name+0xoff` for an address a symbol contains, else the address in hex.
fn symbolic(symbols: &SymbolTable, address: u64) -> String {
    match symbols.describe(address) {
        Some(name) => format!("{}", Printable(name.as_bytes())),
        None => format!("{address:x}"),
    }
}

/// Columns padded to their widest cell, one space apart (mdb's tables), without
/// trailing blanks. `right` marks the columns aligned to the right. A row with fewer
/// cells than the header ends in free text (an error) that is not measured.
struct Table {
    right: &'static [bool],
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str], right: &'static [bool]) -> Table {
        Table { right, rows: alloc::vec![header.iter().map(|cell| String::from(*cell)).collect()] }
    }

    fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    fn write(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|column| {
                self.rows
                    .iter()
                    // A short row's last cell is free text (an error) that must not
                    // widen the column it starts in.
                    .filter(|row| row.len() == columns || column + 1 < row.len())
                    .filter_map(|row| row.get(column))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let mut line = String::new();
            for (column, cell) in row.iter().enumerate() {
                let width = widths.get(column).copied().unwrap_or(0);
                let last = column + 1 == row.len();
                if column > 0 {
                    line.push(' ');
                }
                if self.right.get(column).copied().unwrap_or(false) {
                    write!(line, "{cell:>width$}")?;
                } else if last {
                    line.push_str(cell);
                } else {
                    write!(line, "{cell:<width$}")?;
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

fn run_cpuinfo(debuggee: &Debuggee<'_>, call: &DcmdCall<'_>, out: &mut dyn fmt::Write) -> DcmdResult {
    expect_no_arguments(call)?;
    let info = debuggee.target().info();
    let mut vcpus = Vec::new();
    for vcpu in 0..vcpu_count(&info) {
        vcpus.push((vcpu, debuggee.target().registers(vcpu)));
    }
    write_cpuinfo(&vcpus, debuggee.symbols(), out)?;
    Ok(Vec::new())
}

fn write_cpuinfo(
    vcpus: &[(u32, Result<Registers, TargetError>)],
    symbols: &SymbolTable,
    out: &mut dyn fmt::Write,
) -> Result<(), DcmdError> {
    let mut table = Table::new(&["ID", "STATE", "PAGING", "RIP", "RSP", "CR3"], &[true]);
    for (vcpu, registers) in vcpus {
        let row = match registers {
            Ok(registers) => alloc::vec![
                format!("{vcpu}"),
                String::from(run_state_name(registers.state)),
                String::from(PagingMode::of(registers).name()),
                symbolic(symbols, registers.rip),
                format!("{:x}", registers.rsp),
                format!("{:x}", registers.cr3),
            ],
            Err(error) => alloc::vec![format!("{vcpu}"), format!("error: {error}")],
        };
        table.push(row);
    }
    table.write(out)?;
    Ok(())
}

fn run_cpuregs(debuggee: &Debuggee<'_>, call: &DcmdCall<'_>, out: &mut dyn fmt::Write) -> DcmdResult {
    let options = Options::parse(call.args, "c:")?;
    if let Some(word) = options.positional.first() {
        return Err(DcmdError::Usage(format!("unexpected argument '{}'", Printable(word.as_bytes()))));
    }
    let vcpu = selected_vcpu(debuggee, call, &options)?;
    let registers = debuggee.target().registers(vcpu)?;
    write_cpuregs(&registers, debuggee.symbols(), out)?;
    Ok(Vec::new())
}

/// RFLAGS status bits, mdb's order and names (upper case when set).
const RFLAGS_STATUS: [(u32, &str); 9] =
    [(11, "of"), (10, "df"), (9, "if"), (8, "tf"), (7, "sf"), (6, "zf"), (4, "af"), (2, "pf"), (0, "cf")];
/// CR0 bits (SDM vol. 3 §2.5), high to low.
const CR0_BITS: [(u32, &str); 11] = [
    (31, "PG"),
    (30, "CD"),
    (29, "NW"),
    (18, "AM"),
    (16, "WP"),
    (5, "NE"),
    (4, "ET"),
    (3, "TS"),
    (2, "EM"),
    (1, "MP"),
    (0, "PE"),
];
/// CR4 bits (SDM vol. 3 §2.5), high to low.
const CR4_BITS: [(u32, &str); 21] = [
    (24, "PKS"),
    (23, "CET"),
    (22, "PKE"),
    (21, "SMAP"),
    (20, "SMEP"),
    (18, "OSXSAVE"),
    (17, "PCIDE"),
    (16, "FSGSBASE"),
    (14, "SMXE"),
    (13, "VMXE"),
    (12, "LA57"),
    (11, "UMIP"),
    (10, "OSXMMEXCPT"),
    (9, "OSFXSR"),
    (8, "PCE"),
    (7, "PGE"),
    (6, "MCE"),
    (5, "PAE"),
    (4, "PSE"),
    (3, "DE"),
    (1, "PVI"),
];
/// EFER bits (SDM vol. 3 §2.2.1, APM vol. 2 §3.1.7), high to low.
const EFER_BITS: [(u32, &str); 6] = [(15, "TCE"), (14, "FFXSR"), (12, "SVME"), (11, "NXE"), (10, "LMA"), (8, "LME")];

/// `<PG,WP,PE>`: the names of the set bits.
fn set_bit_names(value: u64, bits: &[(u32, &str)]) -> String {
    let names: Vec<&str> = bits.iter().filter(|(bit, _)| value & (1 << bit) != 0).map(|(_, name)| *name).collect();
    format!("<{}>", names.join(","))
}

fn write_cpuregs(registers: &Registers, symbols: &SymbolTable, out: &mut dyn fmt::Write) -> Result<(), DcmdError> {
    let left = [
        ("rax", registers.rax),
        ("rbx", registers.rbx),
        ("rcx", registers.rcx),
        ("rdx", registers.rdx),
        ("rsi", registers.rsi),
        ("rdi", registers.rdi),
        ("r8", registers.r8),
    ];
    let right = [
        ("r9", registers.r9),
        ("r10", registers.r10),
        ("r11", registers.r11),
        ("r12", registers.r12),
        ("r13", registers.r13),
        ("r14", registers.r14),
        ("r15", registers.r15),
    ];
    for ((left_name, left_value), (right_name, right_value)) in left.iter().zip(right.iter()) {
        writeln!(out, "%{left_name:<3} = 0x{left_value:016x}       %{right_name:<3} = 0x{right_value:016x}")?;
    }
    writeln!(out)?;
    writeln!(out, "%cs = 0x{:04x}    %ds = 0x{:04x}    %es = 0x{:04x}", registers.cs, registers.ds, registers.es)?;
    writeln!(out, "%fs = 0x{:04x}    %gs = 0x{:04x}    %ss = 0x{:04x}", registers.fs, registers.gs, registers.ss)?;
    writeln!(out)?;
    match symbols.describe(registers.rip) {
        Some(name) => writeln!(out, "%rip = 0x{:016x} {}", registers.rip, Printable(name.as_bytes()))?,
        None => writeln!(out, "%rip = 0x{:016x}", registers.rip)?,
    }
    writeln!(out, "%rbp = 0x{:016x}", registers.rbp)?;
    writeln!(out, "%rsp = 0x{:016x}", registers.rsp)?;
    writeln!(out)?;
    let flags = registers.rflags;
    let bit = |number: u32| (flags >> number) & 1;
    writeln!(out, "%rflags = 0x{flags:08x}")?;
    writeln!(
        out,
        "  id={} vip={} vif={} ac={} vm={} rf={} nt={} iopl=0x{:x}",
        bit(21),
        bit(20),
        bit(19),
        bit(18),
        bit(17),
        bit(16),
        bit(14),
        (flags >> 12) & 3
    )?;
    let status: Vec<String> = RFLAGS_STATUS
        .iter()
        .map(|(number, name)| if bit(*number) != 0 { name.to_ascii_uppercase() } else { String::from(*name) })
        .collect();
    writeln!(out, "  status=<{}>", status.join(","))?;
    writeln!(out)?;
    writeln!(out, "%cr0 = 0x{:016x} {}", registers.cr0, set_bit_names(registers.cr0, &CR0_BITS))?;
    writeln!(out, "%cr2 = 0x{:016x}", registers.cr2)?;
    writeln!(out, "%cr3 = 0x{:016x}", registers.cr3)?;
    writeln!(out, "%cr4 = 0x{:016x} {}", registers.cr4, set_bit_names(registers.cr4, &CR4_BITS))?;
    writeln!(out, "%efer = 0x{:016x} {}", registers.efer, set_bit_names(registers.efer, &EFER_BITS))?;
    writeln!(out)?;
    writeln!(out, "%fsbase = 0x{:016x}", registers.fs_base)?;
    writeln!(out, "%gsbase = 0x{:016x}", registers.gs_base)?;
    writeln!(out, "%kgsbase = 0x{:016x}", registers.kernel_gs_base)?;
    Ok(())
}

/// Xen's VIRQ_* names (xen.h), by number.
fn virq_name(virq: u32) -> Option<&'static str> {
    Some(match virq {
        0 => "timer",
        1 => "debug",
        2 => "console",
        3 => "dom_exc",
        4 => "tbuf",
        6 => "debugger",
        7 => "xenoprof",
        8 => "con_ring",
        9 => "pcpu_state",
        10 => "mem_event",
        11 => "argo",
        12 => "enomem",
        13 => "xenpmu",
        _ => return None,
    })
}

fn yes_no(bit: Option<bool>) -> String {
    String::from(match bit {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    })
}

fn channel_row(channel: &EventChannel) -> Vec<String> {
    let (kind, remote) = match channel.binding {
        ChannelBinding::Unbound { remote_domain } => (String::from("unbound"), format!("dom{remote_domain}")),
        ChannelBinding::Interdomain { remote_domain, remote_port } => {
            (String::from("interdomain"), format!("dom{remote_domain}:{remote_port}"))
        }
        ChannelBinding::Virq(virq) => match virq_name(virq) {
            Some(name) => (format!("virq:{name}"), String::from("-")),
            None => (format!("virq:{virq}"), String::from("-")),
        },
        ChannelBinding::Ipi => (String::from("ipi"), String::from("-")),
        ChannelBinding::Pirq(pirq) => (format!("pirq:{pirq}"), String::from("-")),
        ChannelBinding::Unknown => (String::from("unknown"), String::from("-")),
    };
    let owner = match &channel.owner {
        Some(owner) => format!("{}", Printable(owner.as_bytes())),
        None => String::from("-"),
    };
    alloc::vec![
        kind,
        format!("{}", channel.port),
        format!("{}", channel.vcpu),
        yes_no(channel.pending),
        yes_no(channel.masked),
        remote,
        owner,
    ]
}

const EVTCHN_HEADER: [&str; 7] = ["Type", "Evtchn", "VCPU", "Pending", "Masked", "Remote", "Owner"];
const EVTCHN_RIGHT: &[bool] = &[false, true, true];

fn run_evtchns(debuggee: &Debuggee<'_>, call: &DcmdCall<'_>, out: &mut dyn fmt::Write) -> DcmdResult {
    expect_no_arguments(call)?;
    let target = debuggee.target();
    match target.event_channels() {
        Ok(mut channels) => {
            channels.sort_by_key(|channel| channel.port);
            let mut table = Table::new(&EVTCHN_HEADER, EVTCHN_RIGHT);
            for channel in &channels {
                table.push(channel_row(channel));
            }
            table.write(out)?;
            Ok(Vec::new())
        }
        Err(TargetError::Unsupported(what)) => match target.shared_info()? {
            Some(page) => {
                write_evtchns_from_shared_info(&page, out)?;
                Ok(Vec::new())
            }
            None => Err(DcmdError::Failed(format!(
                "{what}: not supported by this target, and the guest registered no shared_info page"
            ))),
        },
        Err(error) => Err(error.into()),
    }
}

/// Bit `port` of a bitmap of little-endian 64-bit words starting at `offset`.
fn shared_info_bit(page: &[u8], offset: usize, port: u32) -> Option<bool> {
    let word_offset = offset.checked_add((port / 64) as usize * 8)?;
    let word = page.get(word_offset..word_offset.checked_add(8)?)?;
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(word);
    Some(u64::from_le_bytes(bytes) >> (port % 64) & 1 != 0)
}

/// `::evtchns` from shared_info alone: the ports that are pending or unmasked (a
/// guest masks the ports it does not use), without bindings.
fn write_evtchns_from_shared_info(page: &[u8], out: &mut dyn fmt::Write) -> Result<(), DcmdError> {
    if page.len() < SHARED_INFO_EVTCHN_MASK + 64 * 8 {
        return Err(DcmdError::Failed(format!("shared_info is {} bytes, too short for its event bitmaps", page.len())));
    }
    writeln!(
        out,
        "(no event-channel table from this target: ports that are pending or unmasked in shared_info; bindings unknown)"
    )?;
    let mut table = Table::new(&EVTCHN_HEADER, EVTCHN_RIGHT);
    let mut listed = 0usize;
    let mut left_out = 0usize;
    // Port 0 is never a valid event channel (xen.h).
    for port in 1..TWO_LEVEL_PORTS {
        let pending = shared_info_bit(page, SHARED_INFO_EVTCHN_PENDING, port);
        let masked = shared_info_bit(page, SHARED_INFO_EVTCHN_MASK, port);
        if pending != Some(true) && masked != Some(false) {
            continue;
        }
        if listed == MAXIMUM_FALLBACK_ROWS {
            left_out += 1;
            continue;
        }
        listed += 1;
        let channel = EventChannel { port, binding: ChannelBinding::Unknown, vcpu: 0, pending, masked, owner: None };
        let mut row = channel_row(&channel);
        if let Some(vcpu) = row.get_mut(2) {
            *vcpu = String::from("-");
        }
        table.push(row);
    }
    table.write(out)?;
    if left_out != 0 {
        writeln!(out, "... and {left_out} more unmasked ports (the guest has not masked its unused ports)")?;
    }
    Ok(())
}

/// grant_table.h: the entry type in bits 0-1, then flag bits; GTF_accept_transfer
/// entries reuse bits 2-3 for the transfer's progress.
const GTF_TYPE_MASK: u16 = 3;
const GTF_PERMIT_ACCESS: u16 = 1;
const GTF_ACCEPT_TRANSFER: u16 = 2;
const GTF_TRANSITIVE: u16 = 3;
const PERMIT_ACCESS_FLAGS: [(u32, &str); 6] =
    [(2, "readonly"), (3, "reading"), (4, "writing"), (5, "PWT"), (6, "PCD"), (7, "PAT")];
const ACCEPT_TRANSFER_FLAGS: [(u32, &str); 2] = [(2, "transfer_committed"), (3, "transfer_completed")];
const GTF_SUB_PAGE_BIT: u32 = 8;

/// `permit_access,readonly,reading`: the entry type then each set flag.
fn grant_flag_names(flags: u16) -> String {
    let mut names: Vec<&str> = Vec::new();
    let kind = flags & GTF_TYPE_MASK;
    names.push(match kind {
        GTF_PERMIT_ACCESS => "permit_access",
        GTF_ACCEPT_TRANSFER => "accept_transfer",
        GTF_TRANSITIVE => "transitive",
        _ => "invalid",
    });
    let bits: &[(u32, &str)] = if kind == GTF_ACCEPT_TRANSFER { &ACCEPT_TRANSFER_FLAGS } else { &PERMIT_ACCESS_FLAGS };
    for (bit, name) in bits {
        if flags & (1 << bit) != 0 {
            names.push(name);
        }
    }
    if kind != GTF_ACCEPT_TRANSFER && flags & (1 << GTF_SUB_PAGE_BIT) != 0 {
        names.push("sub_page");
    }
    names.join(",")
}

fn write_grants(grants: &[GrantEntry], out: &mut dyn fmt::Write) -> Result<(), DcmdError> {
    let mut table = Table::new(&["Ref", "Flags", "", "Domain", "Frame"], &[true, false, false, true, true]);
    for grant in grants {
        table.push(alloc::vec![
            format!("{}", grant.reference),
            format!("0x{:04x}", grant.flags),
            format!("<{}>", grant_flag_names(grant.flags)),
            format!("{}", grant.domain),
            format!("{:x}", grant.frame),
        ]);
    }
    table.write(out)?;
    Ok(())
}

fn run_grants(debuggee: &Debuggee<'_>, call: &DcmdCall<'_>, out: &mut dyn fmt::Write) -> DcmdResult {
    expect_no_arguments(call)?;
    let mut grants = debuggee.target().grants()?;
    grants.sort_by_key(|grant| grant.reference);
    write_grants(&grants, out)?;
    Ok(Vec::new())
}

/// True if `path` is `prefix` or below it (`/` is everything).
fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty() || path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

fn write_xenstore(nodes: &[XenstoreNode], prefix: &str, out: &mut dyn fmt::Write) -> Result<(), DcmdError> {
    let mut selected: Vec<&XenstoreNode> = nodes.iter().filter(|node| under(&node.path, prefix)).collect();
    if selected.is_empty() {
        return Err(DcmdError::Failed(format!("no xenstore nodes under {}", Printable(prefix.as_bytes()))));
    }
    selected.sort_by(|left, right| left.path.cmp(&right.path));
    for node in selected {
        writeln!(out, "{} = \"{}\"", Printable(node.path.as_bytes()), Quoted(&node.value))?;
    }
    Ok(())
}

fn run_xenstore(debuggee: &Debuggee<'_>, call: &DcmdCall<'_>, out: &mut dyn fmt::Write) -> DcmdResult {
    let prefix = match call.args {
        [] => "/",
        [path] => path.as_str(),
        [_, extra, ..] => {
            return Err(DcmdError::Usage(format!("unexpected argument '{}'", Printable(extra.as_bytes()))))
        }
    };
    let nodes = debuggee.target().xenstore()?;
    write_xenstore(&nodes, prefix, out)?;
    Ok(Vec::new())
}

fn write_domains(domains: &[DomainSummary], out: &mut dyn fmt::Write) -> Result<(), DcmdError> {
    let mut table = Table::new(&["ID", "Name", "State", "vCPUs", "Memory"], &[true, false, false, true, true]);
    for domain in domains {
        table.push(alloc::vec![
            format!("{}", domain.id),
            format!("{}", Printable(domain.name.as_bytes())),
            format!("{}", Printable(domain.state.as_bytes())),
            format!("{}", domain.vcpus),
            memory_size(domain.memory_bytes),
        ]);
    }
    table.write(out)?;
    Ok(())
}

fn run_domains(debuggee: &Debuggee<'_>, call: &DcmdCall<'_>, out: &mut dyn fmt::Write) -> DcmdResult {
    expect_no_arguments(call)?;
    let mut domains = debuggee.target().domains()?;
    domains.sort_by_key(|domain| domain.id);
    write_domains(&domains, out)?;
    Ok(Vec::new())
}

/// Untrusted bytes for the terminal: printable ASCII as is, anything else `\xNN`
/// (and `\` itself doubled, so the output reads back unambiguously).
struct Printable<'a>(&'a [u8]);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(self.0, formatter, false)
    }
}

/// Like [`Printable`], and `"` escaped too, for text inside double quotes.
struct Quoted<'a>(&'a [u8]);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(self.0, formatter, true)
    }
}

fn write_escaped(bytes: &[u8], formatter: &mut fmt::Formatter<'_>, in_quotes: bool) -> fmt::Result {
    for &byte in bytes {
        match byte {
            b'\\' => formatter.write_str("\\\\")?,
            b'"' if in_quotes => formatter.write_str("\\\"")?,
            b' '..=b'~' => formatter.write_char(char::from(byte))?,
            _ => write!(formatter, "\\x{byte:02x}")?,
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "xen_tests.rs"]
mod tests;
