//! `blkhostile`: a minimal Xen blkfront for xvda that first does things right, then
//! sends dom0's blkif back end every malformed request it can think of, then checks
//! that the back end still serves it and that nothing malformed had an effect.
//!
//! What it expects of its domain (configs/blkhostile.cfg: `disk = ['ram:16M,xvda,w']`):
//! - HVM params 1 and 2: a xenstore ring (outside RAM, below 4 GiB) and its event
//!   channel, served by dom0's xenstore (READ and WRITE without transactions, relative
//!   paths under `/local/domain/<id>`).
//! - `device/vbd/51712/backend` = the back end's directory B, `backend-id` = "0"; the
//!   frontend directory writable by the guest; B readable by it.
//! - B/state reaching InitWait (2) within 30 s, then Connected (4) within 30 s after the
//!   guest wrote `ring-ref` (grant 8), `event-channel` (an unbound port for the back
//!   end), `protocol` = `x86_64-abi` and `state` = 3; B/sectors set by then.
//! - `XENMEM_add_to_physmap(XENMAPSPACE_grant_table, 0, 0x80000)`: grant frame 0 at
//!   2 GiB; v1 entries granting pages to domain 0 (read-only for pages dom0 only
//!   reads: write sources, and one page that a read must not touch).
//! - One request outstanding at a time; every answer within 10 s, in the request's
//!   slot, with its id; malformed requests answered with BLKIF_RSP_ERROR (−1) or
//!   BLKIF_RSP_EOPNOTSUPP (−2), good ones with BLKIF_RSP_OKAY.
//! - `HVMOP_get_time` for its deadlines (without it, a poll budget bounds each wait),
//!   `SCHEDOP_yield` between polls. It never takes an interrupt: it polls.
//!
//! It prints `blkhostile: <check> ok` or `blkhostile: <check> FAILED (<detail>)` for
//! `connect` and each check of [`checks`] (20 in all), then `blkhostile: done N/M`, and
//! powers off. If the connection fails, every later check is reported FAILED as not
//! run, so the count is always the same.
#![no_std]
#![no_main]

mod checks;
mod frontend;
mod hypercalls;
mod memory;

use basalt_guest_rt::{cpu, poweroff, println};

use crate::checks::{check_names, detail, prepare_pages, Report, Tester};
use crate::frontend::{connect, FRONTEND_DIRECTORY};
use crate::hypercalls::GuestEnvironment;

basalt_guest_rt::entry!(main);

fn main() -> ! {
    match cpu::domain_id() {
        Some(domain) => println!("blkhostile: domain {domain}, frontend {FRONTEND_DIRECTORY} (xvda)"),
        None => println!("blkhostile: domain ?, frontend {FRONTEND_DIRECTORY} (xvda)"),
    }
    prepare_pages();
    let mut env = GuestEnvironment;
    let mut report = Report::default();
    match connect(&mut env) {
        Ok((mut frontend, connection)) => {
            println!(
                "blkhostile: back end {} (domain {}), port {}, {} sectors, sector-size {:?}, info {:?}, \
                 max indirect segments {:?}",
                connection.backend(),
                frontend.backend_id,
                frontend.port,
                frontend.sectors,
                connection.sector_size,
                connection.info,
                connection.max_indirect_segments,
            );
            report.record("connect", Ok(()));
            Tester::new(&mut frontend, &mut env).run(&mut report);
        }
        Err(error) => {
            report.record("connect", Err(detail!("{error}")));
            for name in check_names() {
                report.record(name, Err(detail!("not run: not connected")));
            }
        }
    }
    println!("blkhostile: done {}/{}", report.passed, report.total);
    poweroff()
}
