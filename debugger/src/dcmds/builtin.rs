//! The debugger's own dcmds: `::help`, `::dcmds`, `::walkers`, `::walk` and `::quit`
//! (the engine acts on `::quit` itself and runs `::walk` without printing when its
//! addresses go down a pipeline; both are listed here so `::dcmds` shows them).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::dcmd::{Dcmd, DcmdCall, DcmdError, DcmdResult, Debuggee, Walker};
use crate::dcmds::{all_dcmds, all_walkers, find_dcmd, find_walker};

const HELP: Dcmd = Dcmd {
    name: "help",
    usage: "[dcmd]",
    summary: "list the language, or describe a dcmd",
    help: "Without an argument, summarises the command language. With a dcmd name (with or \
without its leading ::), prints its usage and description.",
    run: help,
};

const DCMDS_DCMD: Dcmd = Dcmd {
    name: "dcmds",
    usage: "",
    summary: "list the dcmds",
    help: "Lists every dcmd by name with a one-line summary. ::help NAME describes one.",
    run: list_dcmds,
};

const WALKERS_DCMD: Dcmd = Dcmd {
    name: "walkers",
    usage: "",
    summary: "list the walkers",
    help: "Lists every walker ::walk can run.",
    run: list_walkers,
};

const WALK: Dcmd = Dcmd {
    name: "walk",
    usage: "walker",
    summary: "walk a data structure, passing each address on",
    help: "[addr]::walk NAME runs the walker NAME (from addr, if given). As the last stage \
of a pipeline it prints each address; otherwise each address is passed to the next stage, \
which runs once per address: ::walk NAME | ::dcmd.",
    run: walk,
};

const QUIT: Dcmd = Dcmd {
    name: "quit",
    usage: "",
    summary: "leave the debugger (also $q)",
    help: "Ends the session. $q does the same.",
    run: quit,
};

#[cfg(not(test))]
pub const DCMDS: &[Dcmd] = &[HELP, DCMDS_DCMD, WALKERS_DCMD, WALK, QUIT];
#[cfg(not(test))]
pub const WALKERS: &[Walker] = &[];

/// Under test, a dcmd and a walker that exercise pipelines without a real target.
#[cfg(test)]
pub const DCMDS: &[Dcmd] = &[HELP, DCMDS_DCMD, WALKERS_DCMD, WALK, QUIT, test_only::NEXT];
#[cfg(test)]
pub const WALKERS: &[Walker] = &[test_only::COUNTING];

const OVERVIEW: &str = "\
Commands (numbers are hex unless written 0t decimal, 0o octal, 0i binary):
  expr                    set dot (.) to the value of expr
  [addr][,count]::dcmd    run a dcmd; ::dcmds lists them, ::help NAME describes one
  [addr][,count]/fmt      format virtual memory (fmt: B x X J K b o O d D e u U E c s i a p)
  [addr][,count]\\fmt      format guest-physical memory
  [value][,count]=fmt     format the value itself
  a | b                   run b once for each address a returns
  [addr]::walk NAME       walk a structure (::walkers lists them)
  cmd ; cmd               several commands on one line
  $q, ::quit              leave
Expressions: symbols, . (dot), <rip <rsp ... (current vCPU registers), *addr (64-bit
read), %addr (32-bit read), - ~ # (not), * % (divide) # (round up) + - << >> == != & ^ |.";

fn help(_: &Debuggee<'_>, call: &DcmdCall<'_>, out: &mut dyn fmt::Write) -> DcmdResult {
    match call.args {
        [] => writeln!(out, "{OVERVIEW}")?,
        [name] => {
            let name = name.trim_start_matches("::");
            let dcmd = find_dcmd(name).ok_or_else(|| DcmdError::Failed(alloc::format!("unknown dcmd '{name}'")))?;
            writeln!(out, "NAME\n  {} - {}\n", dcmd.name, dcmd.summary)?;
            writeln!(out, "SYNOPSIS\n  {}\n", synopsis(dcmd))?;
            writeln!(out, "DESCRIPTION\n  {}", dcmd.help)?;
        }
        _ => return Err(DcmdError::Usage(String::from("one dcmd name at most"))),
    }
    Ok(Vec::new())
}

/// `[addr]::name usage`, as ::help prints it.
fn synopsis(dcmd: &Dcmd) -> String {
    let synopsis = alloc::format!("[addr]::{} {}", dcmd.name, dcmd.usage);
    String::from(synopsis.trim_end())
}

fn no_arguments(call: &DcmdCall<'_>) -> Result<(), DcmdError> {
    if call.args.is_empty() {
        Ok(())
    } else {
        Err(DcmdError::Usage(String::from("no arguments expected")))
    }
}

fn list_dcmds(_: &Debuggee<'_>, call: &DcmdCall<'_>, out: &mut dyn fmt::Write) -> DcmdResult {
    no_arguments(call)?;
    let mut dcmds: Vec<&Dcmd> = all_dcmds().collect();
    dcmds.sort_by_key(|dcmd| dcmd.name);
    let width = dcmds.iter().map(|dcmd| dcmd.name.len()).max().unwrap_or(0);
    for dcmd in dcmds {
        writeln!(out, "  {:<width$} - {}", dcmd.name, dcmd.summary)?;
    }
    Ok(Vec::new())
}

fn list_walkers(_: &Debuggee<'_>, call: &DcmdCall<'_>, out: &mut dyn fmt::Write) -> DcmdResult {
    no_arguments(call)?;
    let mut walkers: Vec<&Walker> = all_walkers().collect();
    walkers.sort_by_key(|walker| walker.name);
    if walkers.is_empty() {
        writeln!(out, "no walkers")?;
    }
    let width = walkers.iter().map(|walker| walker.name.len()).max().unwrap_or(0);
    for walker in walkers {
        writeln!(out, "  {:<width$} - {}", walker.name, walker.summary)?;
    }
    Ok(Vec::new())
}

/// Runs the walker `::walk` names and returns its addresses (no output).
pub fn walk_addresses(debuggee: &Debuggee<'_>, call: &DcmdCall<'_>) -> DcmdResult {
    let [name] = call.args else {
        return Err(DcmdError::Usage(String::from("one walker name expected")));
    };
    let walker = find_walker(name).ok_or_else(|| DcmdError::Failed(alloc::format!("unknown walker '{name}'")))?;
    (walker.walk)(debuggee, call.address)
}

fn walk(debuggee: &Debuggee<'_>, call: &DcmdCall<'_>, out: &mut dyn fmt::Write) -> DcmdResult {
    let addresses = walk_addresses(debuggee, call)?;
    for address in &addresses {
        writeln!(out, "{address:x}")?;
    }
    Ok(addresses)
}

fn quit(_: &Debuggee<'_>, _: &DcmdCall<'_>, _: &mut dyn fmt::Write) -> DcmdResult {
    // The engine ends the session before dispatching ::quit; nothing to do here.
    Ok(Vec::new())
}

#[cfg(test)]
mod test_only {
    use super::*;

    /// `addr::test_next`: prints its address and passes on addr+1.
    pub const NEXT: Dcmd = Dcmd {
        name: "test_next",
        usage: "[-f]",
        summary: "test: print the address, pass on address+1",
        help: "Test only. -f fails with a usage error.",
        run: |_, call, out| {
            let options = crate::dcmd::Options::parse(call.args, "f")?;
            if options.has('f') {
                return Err(DcmdError::Usage(String::from("asked to fail")));
            }
            let address = call.address.ok_or_else(|| DcmdError::Usage(String::from("address needed")))?;
            writeln!(out, "next {address:#x} count {:?}", call.count)?;
            Ok(alloc::vec![address.wrapping_add(1)])
        },
    };

    /// `[addr]::walk test_counting`: addr (default 0x1000), +0x10, +0x20.
    pub const COUNTING: Walker = Walker {
        name: "test_counting",
        summary: "test: three addresses 0x10 apart",
        walk: |_, start| {
            let start = start.unwrap_or(0x1000);
            Ok(alloc::vec![start, start.wrapping_add(0x10), start.wrapping_add(0x20)])
        },
    };
}
