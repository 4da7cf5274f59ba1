//! `blkhostile`: a minimal Xen blkfront that first does things right, then sends dom0's
//! blkif back end every malformed request it can think of on xvda, then checks that
//! the back end still serves it and that nothing malformed had an effect; and that the
//! back end itself refuses writes to a read-only disk (xvdb).
//!
//! What it expects of its domain (configs/blkhostile.cfg:
//! `disk = ['ram:16M,xvda,w', 'ram:1M,xvdb,r']`):
//! - HVM params 1 and 2: a xenstore ring (outside RAM, below 4 GiB) and its event
//!   channel, served by dom0's xenstore (READ and WRITE without transactions, relative
//!   paths under `/local/domain/<id>`).
//! - For each disk (xvda = 51712, xvdb = 51728): `device/vbd/<devid>/backend` = the
//!   back end's directory B, `backend-id` = "0" (the same for both); the frontend
//!   directory writable by the guest; B readable by it.
//! - B/state reaching InitWait (2) within 30 s, then Connected (4) within 30 s after the
//!   guest wrote `ring-ref` (grant 8 for xvda, 16 for xvdb), `event-channel` (an
//!   unbound port for the back end), `protocol` = `x86_64-abi` and `state` = 3;
//!   B/sectors set by then; for xvdb B/info with `VDISK_READONLY` (4) and B/mode `r`.
//! - `XENMEM_add_to_physmap(XENMAPSPACE_grant_table, 0, 0x80000)`: grant frame 0 at
//!   2 GiB; v1 entries granting pages to domain 0 (read-only for pages dom0 only
//!   reads: write sources, and one page that a read must not touch).
//! - One request outstanding at a time; every answer within 10 s, in the request's
//!   slot, with its id; malformed requests answered with BLKIF_RSP_ERROR (−1) or
//!   BLKIF_RSP_EOPNOTSUPP (−2), a write to xvdb with BLKIF_RSP_ERROR, good ones with
//!   BLKIF_RSP_OKAY.
//! - `HVMOP_get_time` for its deadlines (without it, a poll budget bounds each wait),
//!   `SCHEDOP_yield` between polls. It never takes an interrupt: it polls.
//!
//! It prints `blkhostile: <check> ok` or `blkhostile: <check> FAILED (<detail>)` for
//! `connect`, each xvda check of [`checks`], `connect xvdb`, each xvdb check and
//! `grants released` (24 in all), then `blkhostile: done N/M`, and powers off. If a
//! connection fails, the checks that needed it are reported FAILED as not run, so the
//! count is always the same.
#![no_std]
#![no_main]

mod checks;
mod frontend;
mod hypercalls;
mod memory;

use basalt_guest_rt::{cpu, poweroff, println};

use crate::checks::Detail;
use crate::checks::{
    check_names, detail, grants_released, prepare_pages, Report, Tester, ID_BASE, ID_BASE_XVDB, READ_ONLY_CHECKS,
};
use crate::frontend::{open, Connection, Frontend, XVDA, XVDB};
use crate::hypercalls::GuestEnvironment;

basalt_guest_rt::entry!(main);

fn main() -> ! {
    match cpu::domain_id() {
        Some(domain) => println!("blkhostile: domain {domain}, frontends {} and {}", XVDA.directory, XVDB.directory),
        None => println!("blkhostile: domain ?, frontends {} and {}", XVDA.directory, XVDB.directory),
    }
    prepare_pages();
    let mut env = GuestEnvironment;
    let mut report = Report::default();
    let xvda_checks = || ["connect"].into_iter().chain(check_names());
    let xvdb_checks = || ["connect xvdb"].into_iter().chain(READ_ONLY_CHECKS);
    match open(&mut env) {
        Ok(mut session) => {
            match session.connect(&mut env, &XVDA) {
                Ok((mut frontend, connection)) => {
                    print_connection(XVDA.vdev, &frontend, &connection);
                    report.record("connect", Ok(()));
                    Tester::new(&mut frontend, &mut env, ID_BASE).run(&mut report);
                }
                Err(error) => record_not_run(&mut report, xvda_checks(), detail!("{error}")),
            }
            match session.connect(&mut env, &XVDB) {
                Ok((mut frontend, connection)) => {
                    print_connection(XVDB.vdev, &frontend, &connection);
                    report.record("connect xvdb", Ok(()));
                    Tester::new(&mut frontend, &mut env, ID_BASE_XVDB).run_read_only(&connection, &mut report);
                }
                Err(error) => record_not_run(&mut report, xvdb_checks(), detail!("{error}")),
            }
            report.record("grants released", grants_released(&session.grants));
        }
        Err(error) => {
            let all = xvda_checks().chain(xvdb_checks()).chain(["grants released"]);
            record_not_run(&mut report, all, detail!("{error}"));
        }
    }
    println!("blkhostile: done {}/{}", report.passed, report.total);
    poweroff()
}

/// Records the first of `checks` as failed with `error` and the rest as not run.
fn record_not_run<'a>(report: &mut Report, mut checks: impl Iterator<Item = &'a str>, error: Detail) {
    if let Some(first) = checks.next() {
        report.record(first, Err(error));
    }
    for name in checks {
        report.record(name, Err(detail!("not run: not connected")));
    }
}

fn print_connection(vdev: &str, frontend: &Frontend, connection: &Connection) {
    println!(
        "blkhostile: {vdev}: back end {}, port {}, {} sectors, sector-size {:?}, info {:?}, mode {:?}, \
         max indirect segments {:?}",
        connection.backend(),
        frontend.port,
        frontend.sectors,
        connection.sector_size,
        connection.info,
        connection.mode(),
        connection.max_indirect_segments,
    );
}
