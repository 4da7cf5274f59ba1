//! The debugger tests: the appliance's `mdb DOMAIN` on a live domain, `dump-core DOMAIN
//! DISK` writing a Xen-format ELF core raw onto a disk, and the host's `basalt-mdb`
//! reading that disk's image after QEMU exited — the same registers and stack it saw
//! live.
//!
//! Two tests, each one QEMU boot (TCG, AMD SVM + NPT, BIOS, IDE boot disk,
//! `build/basalt-test.img`) with every check on it; they run in parallel (two machines,
//! the most the 2-core CI box takes):
//! - `mdb_and_dump_core_of_a_test_guest` (2 CPUs, 512 MiB, three 64 MiB zeroed virtio-blk
//!   disks the test creates: `vda` for the cores, `vdb` for a disk held by a domain,
//!   `vdc` for a `--crash` core): `create callchain` (qemu-tests/guests/callchain: it
//!   prints `CALLCHAIN-READY marker=0x<address of "BASALT-MDB-MARKER-0123456789">` and
//!   spins in `callchain_c`, called from `callchain_b`, called from `callchain_a`, built
//!   with frame pointers, in long mode on 4-level page tables). Then `mdb callchain`: the
//!   prompt is `> `; `::status` names the domain; `::cpuregs` has `%rip` inside
//!   `callchain_c` (its extent read from the guest's ELF on the host, `nm -S`);
//!   `::cpustack` names `callchain_c`, `callchain_b`, `callchain_a` innermost first, and
//!   every frame below them by name too; `<marker>/s` prints the string; `::evtchns`
//!   lists the console's interdomain channel to dom0; `callchain_c::dis` disassembles its
//!   frame set-up (`push %rbp`); `::nm` has `callchain_b` at its ELF address; a malformed
//!   expression, an address no page table maps and one that maps to memory the domain
//!   does not have each print one `error:` line and the session goes on; `$q` returns to
//!   `basalt> `. `dump-core callchain vda` of the running domain prints `dump-core: wrote
//!   N bytes to vda, sha256 H`, and the domain runs on (`list`: not paused, crashed or
//!   dying; its CPU time grows). Then paused (`pause`), a second `mdb` session reads
//!   `::cpuregs` and `::cpustack` and a second dump-core writes the paused domain (which
//!   stays paused: the pause is the operator's). A dump-core onto `vdb`, which
//!   `block-attach` gave to callchain, is refused in one `error:` line. `dump-core
//!   --crash callchain vdc` leaves the domain crashed (`list`: `c`, CPU time still).
//!   After the shell's `poweroff`, on the host: the sha256 of the first N bytes of vda's
//!   image is H; vdb's image is still all zero; `basalt-mdb <vda image> -e <dcmd>` names
//!   the domain (`::status`) and prints the paused session's `%rip`, `%rsp`, `%cr3`
//!   (`::cpuregs`) and stack (`::cpustack`) exactly, the marker string (`<marker>/s`) and
//!   the console's channel (`::evtchns`); vdc's first bytes have the `--crash` core's
//!   sha256 and `basalt-mdb` opens it.
//! - `mdb_on_a_linux_domain` (2 CPUs, 1 GiB): `create linux1` (Debian's cloud kernel,
//!   1 vCPU) to `BASALT-LINUX-READY`, back to the shell, `mdb linux1`: `::cpustack`
//!   names every frame by symbol (kallsyms: the image's vmlinuz carries no .symtab),
//!   at least four of them, down to where a kernel stack begins (start_kernel's entry
//!   for the idle task, the system-call entry, ret_from_fork, or an `asm_*` interrupt
//!   stub when the interrupt came from user mode) without the unwinder giving up —
//!   where the vCPU was when it was paused (idle, in a system call, in an interrupt)
//!   varies; `::msgbuf`
//!   holds the kernel's boot messages (`Linux version 6.1.0-…`, its command line);
//!   `::evtchns` has a `virq:timer` row and interdomain rows to dom0 owned by
//!   the xenstore and console back ends; `$q`.
//!
//! The host program is `target/release/basalt-mdb` (`make qemu-test` builds it; by
//! hand: `cargo build -p basalt-debugger --release --bin basalt-mdb`; `BASALT_MDB`
//! names another). Disk images live in a directory of their own under the system
//! temporary directory, kept (and named in the error) only if the test fails.
//!
//! Failed checks are collected and reported together at the end; a broken conversation
//! (timeout, panic, the emulator exiting, a Linux panic, a crashed domain) stops the
//! test at once. Transcripts are in build/qemu-tests/<test>.serial.log.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use qemu_tests::config::workspace_root;
use qemu_tests::console_text::output_lines;
use qemu_tests::debugger::{
    self, frame_lines, host_mdb, mdb_open, mdb_quit, parse_hex, power_off, start_callchain, start_linux,
    virtio_disk_args, Dump, DUMP_TIMEOUT, GUEST, HOST_MDB_TIMEOUT, LINUX, MDB_TIMEOUT,
};
use qemu_tests::disk_images::DiskImages;
use qemu_tests::domains::{boot_and_check, ensure_test_image, list, test_image, ListRow};
use qemu_tests::linux_console::linux_test_config;
use qemu_tests::machine::after_echo;
use qemu_tests::{ensure, EmulatorKind, Error, Failures, Machine, MachineConfig, Pattern, Result, PROMPT};

/// The NUL-terminated string at the marker's address.
const MARKER_TEXT: &str = "BASALT-MDB-MARKER-0123456789";
/// The guest's frames while it spins, innermost first.
const FRAMES: [&str; 3] = ["callchain_c", "callchain_b", "callchain_a"];
/// The registers the core must carry exactly as the paused live domain had them.
const COMPARED_REGISTERS: [&str; 3] = ["%rip", "%rsp", "%cr3"];

/// The disk the cores are written to, and the one a domain holds.
const CORE_DISK: &str = "vda";
const HELD_DISK: &str = "vdb";
/// The disk `dump-core --crash` writes to.
const CRASH_DISK: &str = "vdc";
/// Size of each disk: the 32 MiB domain's core (memory, page-table frames aside, plus
/// headers) fits with room to spare.
const DISK_BYTES: u64 = 64 << 20;

/// A virtual address no page table of the guest maps: the runtime maps only PML4
/// entry 0 (the first 4 GiB).
const UNMAPPED_VIRTUAL: u64 = 0x7fff_0000_0000;
/// A virtual address the guest's identity map translates to guest-physical memory the
/// 32 MiB domain does not have (the `badmem` guest's address).
const UNPOPULATED_VIRTUAL: u64 = 0xc000_0000;

/// Functions a Linux task's kernel stack ends in, one of which the unwinder must
/// reach, whatever the vCPU was doing when it was paused (the idle loop, a system call,
/// a kernel thread), through any interrupt frame on top: the boot CPU's idle task
/// (start_kernel, called from the entry code), a task that came from user space
/// (entry_SYSCALL_64, arch/x86/entry/entry_64.S), a kernel thread (ret_from_fork). An
/// interrupt or exception taken in user mode ends the kernel stack at its entry stub
/// instead, whose name starts with [`LINUX_ENTRY_STUB_PREFIX`].
const LINUX_STACK_BOTTOMS: [&str; 5] = [
    "secondary_startup_64_no_verify",
    "start_kernel",
    "x86_64_start_kernel",
    "entry_SYSCALL_64_after_hwframe",
    "ret_from_fork",
];
/// The interrupt and exception entry stubs (arch/x86/include/asm/idtentry.h:
/// `asm_sysvec_xen_hvm_callback`, `asm_exc_page_fault`, ...).
const LINUX_ENTRY_STUB_PREFIX: &str = "asm_";
/// What `::cpustack` prints when its unwinder gave up before the end of the stack
/// (`(unwinding by ORC stopped: <why>)`).
const UNWINDING_STOPPED: &str = " stopped: ";
/// Fewest frames a Linux kernel stack has from its entry to wherever it runs (the idle
/// task: start_kernel, arch_call_rest_init, rest_init, cpu_startup_entry, do_idle, ...).
const LINUX_MINIMUM_FRAMES: usize = 4;
/// Lines of Linux's own boot log `::msgbuf` must hold (the first is printed by
/// start_kernel, the second by setup_arch with the config's command line).
const LINUX_MESSAGES: [&str; 2] = ["Linux version 6.1.0-", "Command line: console=hvc0 earlyprintk=xen"];

// --- the mdb session -----------------------------------------------------------------

/// Runs one line in the open mdb session and returns its output (the echo and the next
/// prompt removed, log lines kept); see [`debugger::mdb_line`].
fn mdb(machine: &mut Machine, line: &str) -> Result<String> {
    debugger::mdb_line(machine, line, MDB_TIMEOUT).map(|(output, _)| output)
}

/// `$q`: the shell's prompt must come back, with nothing printed before it.
fn quit_quietly(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let text = mdb_quit(machine)?;
    let output = after_echo(&text, "$q\n").unwrap_or(text.clone());
    failures.soft(machine.check(output_lines(&output).is_empty(), || {
        format!("`$q` should print nothing before {PROMPT:?}, printed:\n{text}")
    }))
}

/// Runs `line`, which must fail in exactly one `error:` line; then the session must
/// still answer (`::status` names the domain).
fn check_one_error(machine: &mut Machine, line: &str, domain: &str, failures: &mut Failures) -> Result<()> {
    let output = mdb(machine, line)?;
    let lines = output_lines(&output);
    failures.soft(machine.check(matches!(lines[..], [only] if only.starts_with("error:")), || {
        format!("mdb `{line}` should print one `error:` line, printed:\n{output}")
    }))?;
    let status = mdb(machine, "::status")?;
    failures.soft(machine.check(status.contains(domain), || {
        format!("after `{line}`, `::status` should still name {domain}, printed:\n{status}")
    }))
}

// --- reading mdb output --------------------------------------------------------------

/// The value of `register` (e.g. `%rip`) in `::cpuregs` output: the first hex number
/// after the register's name, an `=` or `:` between them allowed
/// (`%rip = 0x0000000000101209 callchain_c+0x39`).
fn register_value(output: &str, register: &str) -> Option<u64> {
    let words: Vec<&str> = output.split_whitespace().collect();
    let position = words.iter().position(|word| word.trim_end_matches([':', '=']) == register)?;
    words
        .get(position + 1..)?
        .iter()
        .filter(|word| !matches!(**word, "=" | ":"))
        .take(1)
        .find_map(|word| parse_hex(word))
}

/// The rest of the `%rip` line after its value (the symbolic form, e.g.
/// `callchain_c+0x39`), or the whole line.
fn register_line<'a>(output: &'a str, register: &str) -> Option<&'a str> {
    output.lines().find(|line| line.split_whitespace().any(|word| word.trim_end_matches([':', '=']) == register))
}

/// The frames' function names in `::cpustack` output, in order of first appearance,
/// of the names in `wanted`.
fn frames_in_order<'a>(output: &str, wanted: &[&'a str]) -> Vec<&'a str> {
    let mut found: Vec<(usize, &str)> = wanted
        .iter()
        .filter_map(|name| output.find(&format!("{name}+")).or_else(|| output.find(name)).map(|at| (at, *name)))
        .collect();
    found.sort_unstable();
    found.into_iter().map(|(_, name)| name).collect()
}

/// The dcmd's notes in `::cpustack` output: a stack scan instead of a frame chain, an
/// unwinder that gave up.
fn stack_notes(output: &str) -> Vec<&str> {
    output_lines(output).into_iter().filter(|line| line.starts_with('(')).collect()
}

/// Frame lines that name no symbol (a bare address).
fn unnamed_frames(output: &str) -> Vec<&str> {
    frame_lines(output).into_iter().filter(|line| line.starts_with("0x")).collect()
}

/// Whether `::evtchns` output has a row whose first word is `kind` and which contains
/// each of `words` (e.g. the remote `dom0:` and the owner).
fn has_channel_row(output: &str, kind: &str, words: &[&str]) -> bool {
    output_lines(output)
        .into_iter()
        .any(|line| line.split_whitespace().next() == Some(kind) && words.iter().all(|word| line.contains(word)))
}

/// The values of [`COMPARED_REGISTERS`] in `::cpuregs` output (None where missing).
fn registers_of(output: &str) -> Vec<(&'static str, Option<u64>)> {
    COMPARED_REGISTERS.iter().map(|register| (*register, register_value(output, register))).collect()
}

// --- the guest's ELF on the host -----------------------------------------------------

/// Address and size of `symbol` in the guest's ELF, by `nm -S` (binutils).
fn elf_symbol(elf: &Path, symbol: &str) -> Result<(u64, u64)> {
    let output = Command::new("nm")
        .arg("-S")
        .arg(elf)
        .output()
        .map_err(|error| Error::new(format!("cannot run nm (binutils) on {}: {error}", elf.display())))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| match line.split_whitespace().collect::<Vec<_>>()[..] {
            [address, size, _, name] if name == symbol => Some((parse_hex(address)?, parse_hex(size)?)),
            _ => None,
        })
        .ok_or_else(|| Error::new(format!("`nm -S {}` has no sized symbol {symbol}:\n{text}", elf.display())))
}

/// `build/guests/callchain.elf`, the guest the test image carries.
fn guest_elf() -> PathBuf {
    workspace_root().join("build").join("guests").join(format!("{GUEST}.elf"))
}

// --- the shell -----------------------------------------------------------------------

/// The `list` row of `name`, with the table for messages.
fn list_row(machine: &mut Machine, name: &str) -> Result<(Option<ListRow>, String)> {
    let (rows, table) = list(machine)?;
    Ok((rows.into_iter().find(|row| row.name == name), table))
}

/// `list` twice, 3 s apart: the domain must be in state `state` (its letters `rbpscd`
/// as a regex) both times, and its CPU time must grow if `runs`, else stay the same.
fn check_state(
    machine: &mut Machine,
    name: &str,
    (state, runs): (&str, bool),
    when: &str,
    failures: &mut Failures,
) -> Result<()> {
    let pattern = Pattern::regex(&format!("^{state}$"));
    let (first, first_table) = list_row(machine, name)?;
    std::thread::sleep(Duration::from_secs(3));
    let (second, second_table) = list_row(machine, name)?;
    let good = match (&first, &second) {
        (Some(first), Some(second)) => {
            qemu_tests::console_text::line_matches(&pattern, &first.state)
                && qemu_tests::console_text::line_matches(&pattern, &second.state)
                && (second.seconds > first.seconds) == runs
        }
        _ => false,
    };
    failures.soft(machine.check(good, || {
        let time = if runs { "grow" } else { "stay the same" };
        format!(
            "{when}: `list` should show {name} in state {pattern}, its CPU time should {time}:\n{first_table}\n3 s later:\n{second_table}"
        )
    }))
}

/// `dump-core <arguments> <disk>` (up to [`DUMP_TIMEOUT`]); anything but its `wrote`
/// line stops the test.
fn dump_core(machine: &mut Machine, arguments: &str, disk: &str) -> Result<Dump> {
    let dump = debugger::dump_core(machine, arguments, disk, DUMP_TIMEOUT)?;
    eprintln!(
        "[{}] `dump-core {arguments} {disk}`: {} bytes in {:.1} s",
        machine.name(),
        dump.bytes,
        dump.elapsed.as_secs_f64()
    );
    Ok(dump)
}

// --- the host side -------------------------------------------------------------------

/// Runs `basalt-mdb <image> -e <line>...` (up to [`HOST_MDB_TIMEOUT`]) and returns its
/// standard output.
fn run_host_mdb(image: &Path, lines: &[&str]) -> Result<String> {
    debugger::run_host_mdb(&host_mdb()?, image, lines, HOST_MDB_TIMEOUT).map(|(output, _)| output)
}

/// The lower-case hex sha256 of the first `bytes` bytes of `image`, by coreutils'
/// `sha256sum` (reading the file itself: the core may be tens of MiB).
fn host_sha256_prefix(image: &Path, bytes: u64) -> Result<String> {
    let output = Command::new("sh")
        .arg("-c")
        .arg("head -c \"$1\" \"$2\" | sha256sum")
        .arg("sh")
        .arg(bytes.to_string())
        .arg(image)
        .output()
        .map_err(|error| Error::new(format!("cannot run head | sha256sum: {error}")))?;
    let text = String::from_utf8_lossy(&output.stdout);
    match text.split_whitespace().next() {
        Some(sum) if output.status.success() && sum.len() == 64 => Ok(sum.to_owned()),
        _ => Err(Error::new(format!("head -c {bytes} {} | sha256sum printed {text:?}", image.display()))),
    }
}

/// Whether every byte of `image` is zero.
fn all_zero(image: &Path) -> Result<bool> {
    let data = std::fs::read(image).map_err(|error| Error::new(format!("reading {}: {error}", image.display())))?;
    Ok(data.iter().all(|byte| *byte == 0))
}

// --- the callchain test --------------------------------------------------------------

/// What the paused session saw, to compare with the core.
struct PausedView {
    registers: String,
    stack: String,
}

/// The live session on the running guest: every dcmd the test guest can show.
fn check_live_session(machine: &mut Machine, (id, marker): (u32, u64), failures: &mut Failures) -> Result<()> {
    let elf = guest_elf();
    let (c_start, c_size) = elf_symbol(&elf, "callchain_c")?;
    let (b_start, _) = elf_symbol(&elf, "callchain_b")?;

    mdb_open(machine, GUEST, MDB_TIMEOUT)?;

    let status = mdb(machine, "::status")?;
    failures.soft(machine.check(status.contains(&format!("domain {id} ({GUEST})")), || {
        format!("`::status` should name domain {id} ({GUEST}), printed:\n{status}")
    }))?;

    let registers = mdb(machine, "::cpuregs")?;
    let rip = register_value(&registers, "%rip");
    failures.soft(machine.check(
        rip.is_some_and(|rip| (c_start..c_start + c_size).contains(&rip))
            && register_line(&registers, "%rip").is_some_and(|line| line.contains("callchain_c")),
        || {
            format!(
                "`::cpuregs` should show %rip inside callchain_c ({c_start:#x}..{:#x}) and name it, printed:\n{registers}",
                c_start + c_size
            )
        },
    ))?;

    let stack = mdb(machine, "::cpustack")?;
    failures.soft(machine.check(frames_in_order(&stack, &FRAMES) == FRAMES, || {
        format!("`::cpustack` should name {FRAMES:?} in that order (innermost first), printed:\n{stack}")
    }))?;

    // Below callchain_a: main, basalt_guest_main and rt_start, whose calls to the
    // never-returning function after them are their last instructions — so their return
    // addresses are one past their ends, and only a lookup of the call (pc - 1) names them.
    let notes = stack_notes(&stack);
    failures.soft(machine.check(notes.is_empty(), || {
        format!("`::cpustack` should follow callchain's frame-pointer chain to its end, noted {notes:?} in:\n{stack}")
    }))?;
    let unnamed = unnamed_frames(&stack);
    failures.soft(machine.check(unnamed.is_empty(), || {
        format!("every `::cpustack` frame should name its function (the guest has a .symtab), unnamed {unnamed:?} in:\n{stack}")
    }))?;

    let string = mdb(machine, &format!("{marker:#x}/s"))?;
    failures.soft(machine.check(string.contains(MARKER_TEXT), || {
        format!("`{marker:#x}/s` should print {MARKER_TEXT:?}, printed:\n{string}")
    }))?;

    let channels = mdb(machine, "::evtchns")?;
    // The table's row: `interdomain <port> <vcpu> <pending> <masked> dom0:<port> console backend`.
    let console_row = has_channel_row(&channels, "interdomain", &["dom0:", "console backend"]);
    failures.soft(machine.check(console_row, || {
        format!("`::evtchns` should list the console's interdomain channel to dom0, printed:\n{channels}")
    }))?;

    let disassembly = mdb(machine, "callchain_c::dis")?;
    failures.soft(machine.check(
        disassembly.contains("callchain_c") && disassembly.contains("push") && disassembly.contains("%rbp"),
        || {
            format!(
                "`callchain_c::dis` should disassemble callchain_c's frame set-up (push %rbp), printed:\n{disassembly}"
            )
        },
    ))?;

    let symbols = mdb(machine, "::nm")?;
    let b_row =
        output_lines(&symbols).into_iter().find(|line| line.split_whitespace().any(|word| word == "callchain_b"));
    failures.soft(machine.check(
        b_row.is_some_and(|row| row.split_whitespace().filter_map(parse_hex).any(|value| value == b_start)),
        || format!("`::nm` should list callchain_b at {b_start:#x}, printed:\n{symbols}"),
    ))?;

    check_one_error(machine, "(1+2=X", GUEST, failures)?;
    check_one_error(machine, &format!("{UNMAPPED_VIRTUAL:#x}/K"), GUEST, failures)?;
    check_one_error(machine, &format!("{UNPOPULATED_VIRTUAL:#x}/K"), GUEST, failures)?;

    quit_quietly(machine, failures)
}

/// The paused domain's registers and stack, in a second session.
fn paused_session(machine: &mut Machine, failures: &mut Failures) -> Result<PausedView> {
    mdb_open(machine, GUEST, MDB_TIMEOUT)?;
    let registers = mdb(machine, "::cpuregs")?;
    let stack = mdb(machine, "::cpustack")?;
    failures.soft(machine.check(registers_of(&registers).iter().all(|(_, value)| value.is_some()), || {
        format!("`::cpuregs` of the paused domain should show {COMPARED_REGISTERS:?}, printed:\n{registers}")
    }))?;
    failures.soft(machine.check(frames_in_order(&stack, &FRAMES) == FRAMES, || {
        format!("`::cpustack` of the paused domain should name {FRAMES:?} innermost first, printed:\n{stack}")
    }))?;
    quit_quietly(machine, failures)?;
    Ok(PausedView { registers, stack })
}

/// `dump-core` onto a disk a domain holds must be refused in one `error:` line naming
/// the disk.
fn check_dump_refused(machine: &mut Machine, failures: &mut Failures) -> Result<()> {
    let attach_command = format!("block-attach {GUEST} phy:{HELD_DISK},xvda,w");
    let attached = machine.run_command(&attach_command)?;
    if !output_lines(&attached).iter().any(|line| line.starts_with("attached ")) {
        return Err(machine.fail(format!("`{attach_command}` should attach the disk, printed:\n{attached}")));
    }
    let command = format!("dump-core {GUEST} {HELD_DISK}");
    let output = machine.run_command(&command)?;
    let lines = output_lines(&output);
    failures.soft(
        machine.check(matches!(lines[..], [only] if only.starts_with("error:") && only.contains(HELD_DISK)), || {
            format!("`{command}` onto a disk {GUEST} holds should be refused in one `error:` line, printed:\n{output}")
        }),
    )
}

/// After QEMU exited: the core's checksum, the held disk untouched, and `basalt-mdb` on
/// the core disk's image seeing what the paused live session saw.
fn check_core_on_host(
    (core_image, held_image): (&Path, &Path),
    core: &Dump,
    (id, marker, paused): (u32, u64, &PausedView),
    failures: &mut Failures,
) -> Result<()> {
    let (bytes, sum) = (core.bytes, core.sha256.as_str());
    let host_sum = host_sha256_prefix(core_image, bytes)?;
    failures.soft(ensure(host_sum == sum, || {
        format!("the first {bytes} bytes of {} have sha256 {host_sum}, dump-core said {sum}", core_image.display())
    }))?;
    failures.soft(ensure(all_zero(held_image)?, || {
        format!("{} (the refused dump-core's disk) should still be all zero", held_image.display())
    }))?;

    // One run per dcmd, so each output is that dcmd's alone.
    let started = Instant::now();
    let status = run_host_mdb(core_image, &["::status"])?;
    let registers = run_host_mdb(core_image, &["::cpuregs"])?;
    let stack = run_host_mdb(core_image, &["::cpustack"])?;
    eprintln!("[debugger] basalt-mdb on the core: {:.1} s for three runs", started.elapsed().as_secs_f64());
    failures.soft(ensure(status.contains(&format!("domain {id} ({GUEST})")), || {
        format!("basalt-mdb's `::status` should name domain {id} ({GUEST}), printed:\n{status}")
    }))?;
    let live = registers_of(&paused.registers);
    let core = registers_of(&registers);
    failures.soft(ensure(live == core && live.iter().all(|(_, value)| value.is_some()), || {
        format!(
            "basalt-mdb's registers {core:x?} should be the paused domain's {live:x?}; live:\n{}\ncore:\n{registers}",
            paused.registers
        )
    }))?;
    let string = run_host_mdb(core_image, &[&format!("{marker:#x}/s")])?;
    failures.soft(ensure(string.contains(MARKER_TEXT), || {
        format!("basalt-mdb's `{marker:#x}/s` should print {MARKER_TEXT:?}, printed:\n{string}")
    }))?;
    let channels = run_host_mdb(core_image, &["::evtchns"])?;
    failures.soft(ensure(has_channel_row(&channels, "interdomain", &["dom0:", "console backend"]), || {
        format!("basalt-mdb's `::evtchns` should list the console's channel to dom0, printed:\n{channels}")
    }))?;
    let live_frames = frame_lines(&paused.stack);
    let core_frames = frame_lines(&stack);
    failures.soft(ensure(!live_frames.is_empty() && core_frames == live_frames, || {
        format!("basalt-mdb's `::cpustack` should print the paused domain's frames {live_frames:?}, printed:\n{stack}")
    }))
}

/// `dump-core --crash` of the running domain onto [`CRASH_DISK`]: after the `wrote`
/// line it says `dump-core: domain <id> left paused and marked crashed`, and `list`
/// shows the domain crashed and no longer running (its config preserves a crashed
/// domain).
fn check_dump_and_crash(machine: &mut Machine, id: u32, failures: &mut Failures) -> Result<Dump> {
    let crash = dump_core(machine, &format!("--crash {GUEST}"), CRASH_DISK)?;
    let expected = format!("dump-core: domain {id} left paused and marked crashed");
    failures.soft(machine.check(output_lines(&crash.after).contains(&expected.as_str()), || {
        format!(
            "`dump-core --crash {GUEST} {CRASH_DISK}` should end with {expected:?}, printed after its last line:\n{}",
            crash.after
        )
    }))?;
    // xl's letters: a crashed domain shows `c`; it does not run (whether `p` shows too
    // is the list's business, not the debugger's).
    check_state(machine, GUEST, ("[r-][b-][p-]-c[d-]", false), "after dump-core --crash", failures)?;
    Ok(crash)
}

/// After QEMU exited: the `--crash` core's checksum, and `basalt-mdb` opens it.
fn check_crash_core_on_host(image: &Path, crash: &Dump, id: u32, failures: &mut Failures) -> Result<()> {
    let host_sum = host_sha256_prefix(image, crash.bytes)?;
    failures.soft(ensure(host_sum == crash.sha256, || {
        format!(
            "the first {} bytes of {} have sha256 {host_sum}, dump-core --crash said {}",
            crash.bytes,
            image.display(),
            crash.sha256
        )
    }))?;
    let status = run_host_mdb(image, &["::status"])?;
    failures.soft(ensure(status.contains(&format!("domain {id} ({GUEST})")), || {
        format!("basalt-mdb's `::status` of the --crash core should name domain {id} ({GUEST}), printed:\n{status}")
    }))
}

#[test]
fn mdb_and_dump_core_of_a_test_guest() -> Result<()> {
    let name = "mdb_and_dump_core_of_a_test_guest";
    host_mdb()?;
    let mut images = DiskImages::new("debugger", name)?;
    let core_image = images.create("core.img", DISK_BYTES)?;
    let held_image = images.create("held.img", DISK_BYTES)?;
    let crash_image = images.create("crash.img", DISK_BYTES)?;
    let mut config = MachineConfig::standard(EmulatorKind::Qemu).with_image(test_image()).with_memory_mib(512);
    ensure_test_image(&config.image, "it needs the callchain guest, `make guests`")?;
    config.extra_args.extend(virtio_disk_args(&core_image, "core"));
    config.extra_args.extend(virtio_disk_args(&held_image, "held"));
    config.extra_args.extend(virtio_disk_args(&crash_image, "crash"));
    let result = boot_and_check(config, name, |machine, failures| {
        let (id, marker) = start_callchain(machine)?;
        eprintln!("[{name}] {GUEST} is domain {id}, marker at {marker:#x}");
        let started = Instant::now();
        check_live_session(machine, (id, marker), failures)?;
        eprintln!("[{name}] live session: {:.1} s", started.elapsed().as_secs_f64());

        dump_core(machine, GUEST, CORE_DISK)?;
        check_state(machine, GUEST, ("[r-][b-]----", true), "after dump-core of the running domain", failures)?;

        machine.run_command(&format!("pause {GUEST}"))?;
        let paused = paused_session(machine, failures)?;
        let core = dump_core(machine, GUEST, CORE_DISK)?;
        check_state(machine, GUEST, ("[r-][b-]p---", false), "after dump-core of the paused domain", failures)?;
        machine.run_command(&format!("unpause {GUEST}"))?;

        check_dump_refused(machine, failures)?;
        let crash = check_dump_and_crash(machine, id, failures)?;
        power_off(machine)?;
        check_core_on_host((&core_image, &held_image), &core, (id, marker, &paused), failures)?;
        check_crash_core_on_host(&crash_image, &crash, id, failures)
    });
    result.map_err(|error| {
        images.keep = true;
        error.context(format!("disk images kept in {}", images.directory.display()))
    })
}

// --- the Linux test ------------------------------------------------------------------

#[test]
fn mdb_on_a_linux_domain() -> Result<()> {
    let name = "mdb_on_a_linux_domain";
    let config = linux_test_config(MachineConfig::standard(EmulatorKind::Qemu).with_memory_mib(1024))?;
    boot_and_check(config, name, |machine, failures| {
        let boot = start_linux(machine)?;
        eprintln!("[{name}] {LINUX} ready after {:.1} s", boot.as_secs_f64());
        // Let the guest's shell go back to sleep, so the vCPU is normally in the kernel
        // (idle, or an interrupt) when mdb pauses it rather than in busybox's user code,
        // whose frames have no kernel symbols.
        std::thread::sleep(Duration::from_secs(2));

        let started = Instant::now();
        mdb_open(machine, LINUX, MDB_TIMEOUT)?;
        let stack = mdb(machine, "::cpustack")?;
        let frames = frame_lines(&stack);
        let bottom = frames.last().and_then(|line| line.split('+').next()).unwrap_or_default();
        failures.soft(machine.check(
            frames.len() >= LINUX_MINIMUM_FRAMES
                && unnamed_frames(&stack).is_empty()
                && !stack_notes(&stack).iter().any(|note| note.contains(UNWINDING_STOPPED))
                && (LINUX_STACK_BOTTOMS.contains(&bottom) || bottom.starts_with(LINUX_ENTRY_STUB_PREFIX)),
            || {
                format!(
                    "`::cpustack` of {LINUX} should name at least {LINUX_MINIMUM_FRAMES} frames, all by symbol (kallsyms), down to one of {LINUX_STACK_BOTTOMS:?} or an {LINUX_ENTRY_STUB_PREFIX}* entry stub (an interrupt from user mode), without giving up, printed:\n{stack}"
                )
            },
        ))?;
        let messages = mdb(machine, "::msgbuf")?;
        for line in LINUX_MESSAGES {
            failures.soft(
                machine.check(messages.contains(line), || {
                    format!("`::msgbuf` should hold {line:?}, printed:\n{messages}")
                }),
            )?;
        }
        let channels = mdb(machine, "::evtchns")?;
        let rows: [(&str, &[&str]); 3] = [
            ("virq:timer", &[]),
            ("interdomain", &["dom0:", "xenstore"]),
            ("interdomain", &["dom0:", "console backend"]),
        ];
        for (kind, words) in rows {
            failures.soft(machine.check(has_channel_row(&channels, kind, words), || {
                format!("`::evtchns` of {LINUX} should have a {kind} row with {words:?}, printed:\n{channels}")
            }))?;
        }
        quit_quietly(machine, failures)?;
        eprintln!("[{name}] mdb session: {:.1} s", started.elapsed().as_secs_f64());
        let version = machine.run_command("version")?;
        failures.soft(
            machine.check(!output_lines(&version).is_empty(), || "`version` after the session printed nothing".into()),
        )
    })
}
