//! The checks `blkhostile` runs once connected, in order, and the report they print.
//!
//! 1. `round trip 1`: a good write of 12 sectors at sector 0 (two segments: a whole
//!    page, then sectors 2..=5 of a second page) and a read of them back into two other
//!    pages split differently (sectors 4..=7, then a whole page); the data read must
//!    have the checksum of the pattern written.
//! 2. The malformed requests of [`HOSTILE`], one at a time, each with its own id; each
//!    must be answered with that id and `BLKIF_RSP_ERROR` or `BLKIF_RSP_EOPNOTSUPP`.
//!    The malformed writes all carry the hostile page's data and aim at sector 0.
//! 3. `round trip 2`: the same at the last 12 sectors of the disk, with other data.
//! 4. `earlier data intact`: sectors 0..12 still hold round trip 1's data (no malformed
//!    write reached the disk, not even by wrapping the sector number).
//! 5. `read-only page untouched`: the refused read did not write the read-only page.
//! 6. On xvdb, the read-only disk ([`READ_ONLY_CHECKS`], after `connect xvdb`):
//!    `xvdb advertised read-only` (B/info has `VDISK_READONLY` = 4, B/mode is `r`);
//!    `xvdb write refused` (a well-formed write of one page at sector 0 must be
//!    answered `BLKIF_RSP_ERROR`: the back end's own refusal, as a Linux frontend
//!    refuses such writes before they reach the ring); `xvdb read` (12 sectors at
//!    sector 0 read back as zeroes: the disk starts zeroed and the refused write did
//!    not land).
//! 7. `grants released`: no grant entry is left marked `GTF_reading`/`GTF_writing`.
//!
//! A request that gets no answer leaves the ring stuck (the request stays outstanding),
//! so every later ring check reports FAILED without sending anything.

use core::fmt::{self, Write as _};

use basalt_guest_blkhostile_protocol::blkif::{
    indirect_request, judge, read_write_request, request, Expectation, Segment, BLKIF_OP_READ, BLKIF_OP_WRITE,
    ENTRY_SIZE, SECTOR_SIZE,
};
use basalt_guest_blkhostile_protocol::pattern::{fill, sectors_checksum, Checksum};
use basalt_guest_blkhostile_protocol::{Deadline, SharedPage, PAGE_SIZE};
use basalt_guest_rt::println;

use basalt_guest_blkhostile_protocol::grant_table::GrantTable;

use crate::frontend::{Connection, Frontend, Grants, GRANTS};
use crate::hypercalls::GuestEnvironment;
use crate::memory::{shared_page, PhysPage, Role};

/// Per blkif request.
const REQUEST_TIMEOUT_NS: u64 = 10_000_000_000;
/// xvda's request ids are this plus a running number: recognisable in dom0's logs.
pub const ID_BASE: u64 = 0xB10C_0000_0000_0000;
/// xvdb's request ids start here.
pub const ID_BASE_XVDB: u64 = 0xB10C_0000_0001_0000;
/// `VDISK_READONLY`, B/info's read-only bit (io/blkif.h).
const VDISK_READONLY: u64 = 4;
/// A grant reference far beyond any table (and near u32 overflow when scaled).
const BAD_GREF: u32 = 0xFFFF_FFF0;
/// An operation code blkif does not define.
const UNKNOWN_OPERATION: u8 = 99;

/// Pattern seeds.
pub const SEED_ROUND_TRIP_1: u64 = 1;
pub const SEED_ROUND_TRIP_2: u64 = 2;
pub const SEED_READ_ONLY: u64 = 0x5EAD_0411;
pub const SEED_HOSTILE: u64 = 0xBAD_DA7A;

/// Sectors each round trip moves.
const ROUND_TRIP_SECTORS: u64 = 12;

/// Bytes of a failure's explanation kept (small enough to return by value).
const DETAIL_MAX: usize = 112;

/// One failure's explanation, formatted into a fixed buffer (truncated if long).
pub struct Detail {
    text: [u8; DETAIL_MAX],
    len: u8,
}

impl Detail {
    pub fn new(arguments: fmt::Arguments<'_>) -> Self {
        let mut detail = Self { text: [0; DETAIL_MAX], len: 0 };
        let _ = detail.write_fmt(arguments);
        detail
    }

    pub fn as_str(&self) -> &str {
        let text = &self.text[..usize::from(self.len)];
        match core::str::from_utf8(text) {
            Ok(text) => text,
            Err(error) => core::str::from_utf8(&text[..error.valid_up_to()]).unwrap_or(""),
        }
    }
}

impl fmt::Write for Detail {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let len = usize::from(self.len);
        let take = text.len().min(DETAIL_MAX - len);
        self.text[len..len + take].copy_from_slice(&text.as_bytes()[..take]);
        self.len = (len + take) as u8;
        Ok(())
    }
}

macro_rules! detail {
    ($($argument:tt)*) => {
        $crate::checks::Detail::new(format_args!($($argument)*))
    };
}
pub(crate) use detail;

/// Counts and prints outcomes: `blkhostile: <check> ok` or `... FAILED (<detail>)`.
#[derive(Default)]
pub struct Report {
    pub passed: u32,
    pub total: u32,
}

impl Report {
    pub fn record(&mut self, name: &str, outcome: Result<(), Detail>) {
        self.total += 1;
        match outcome {
            Ok(()) => {
                self.passed += 1;
                println!("blkhostile: {name} ok");
            }
            Err(detail) => println!("blkhostile: {name} FAILED ({})", detail.as_str()),
        }
    }
}

/// What a malformed request is built from.
pub struct Context {
    pub sectors: u64,
    pub handle: u16,
    pub grants: Grants,
}

/// A malformed request: its check name and how to build it with a given id.
pub struct Hostile {
    pub name: &'static str,
    pub build: fn(&Context, u64) -> [u8; ENTRY_SIZE],
}

/// The malformed requests, in the order they are sent.
pub const HOSTILE: &[Hostile] = &[
    Hostile {
        name: "bad grant reference",
        build: |context, id| request(BLKIF_OP_WRITE, context.handle, id, 0, &[Segment::page(BAD_GREF)]),
    },
    Hostile {
        name: "never-granted entry",
        build: |context, id| {
            request(BLKIF_OP_WRITE, context.handle, id, 0, &[Segment::page(context.grants.never_granted)])
        },
    },
    Hostile {
        name: "grant to another domain",
        build: |context, id| {
            request(BLKIF_OP_WRITE, context.handle, id, 0, &[Segment::page(context.grants.other_domain)])
        },
    },
    Hostile {
        name: "read into read-only grant",
        build: |context, id| request(BLKIF_OP_READ, context.handle, id, 0, &[Segment::page(context.grants.read_only)]),
    },
    Hostile {
        name: "sector past the end",
        build: |context, id| {
            let segment = Segment { gref: context.grants.read_first, first_sect: 0, last_sect: 0 };
            request(BLKIF_OP_READ, context.handle, id, context.sectors, &[segment])
        },
    },
    Hostile {
        name: "request straddling the end",
        build: |context, id| {
            let sector = context.sectors.saturating_sub(4);
            request(BLKIF_OP_READ, context.handle, id, sector, &[Segment::page(context.grants.read_first)])
        },
    },
    Hostile {
        name: "sector number wraps",
        build: |context, id| {
            request(BLKIF_OP_WRITE, context.handle, id, u64::MAX - 3, &[Segment::page(context.grants.hostile)])
        },
    },
    Hostile {
        name: "zero segments",
        build: |context, id| {
            read_write_request(BLKIF_OP_WRITE, 0, context.handle, id, 0, &[Segment::page(context.grants.hostile)])
        },
    },
    Hostile {
        name: "12 segments",
        build: |context, id| {
            read_write_request(BLKIF_OP_WRITE, 12, context.handle, id, 0, &[Segment::page(context.grants.hostile); 11])
        },
    },
    Hostile {
        name: "255 segments",
        build: |context, id| {
            read_write_request(BLKIF_OP_WRITE, 255, context.handle, id, 0, &[Segment::page(context.grants.hostile); 11])
        },
    },
    Hostile {
        name: "first_sect > last_sect",
        build: |context, id| {
            let segment = Segment { gref: context.grants.hostile, first_sect: 5, last_sect: 2 };
            request(BLKIF_OP_WRITE, context.handle, id, 0, &[segment])
        },
    },
    Hostile {
        name: "last_sect 8",
        build: |context, id| {
            let segment = Segment { gref: context.grants.hostile, first_sect: 0, last_sect: 8 };
            request(BLKIF_OP_WRITE, context.handle, id, 0, &[segment])
        },
    },
    Hostile {
        name: "unknown operation",
        build: |context, id| {
            read_write_request(UNKNOWN_OPERATION, 1, context.handle, id, 0, &[Segment::page(context.grants.hostile)])
        },
    },
    Hostile {
        name: "indirect with bad indirect gref",
        build: |context, id| indirect_request(BLKIF_OP_WRITE, 1, context.handle, id, 0, &[BAD_GREF]),
    },
];

/// Names of every check on xvda after `connect`, in order (printed as not run when
/// the connection fails).
pub fn check_names() -> impl Iterator<Item = &'static str> {
    ["round trip 1"].into_iter().chain(HOSTILE.iter().map(|hostile| hostile.name)).chain([
        "round trip 2",
        "earlier data intact",
        "read-only page untouched",
    ])
}

/// The checks on xvdb after `connect xvdb`, in order.
pub const READ_ONLY_CHECKS: [&str; 3] = ["xvdb advertised read-only", "xvdb write refused", "xvdb read"];

/// Fills the pages whose contents later checks compare against.
pub fn prepare_pages() {
    let mut buffer = [0u8; PAGE_SIZE];
    for (role, seed) in [(Role::ReadOnly, SEED_READ_ONLY), (Role::Hostile, SEED_HOSTILE)] {
        fill(&mut buffer, seed, 0);
        shared_page(role).write_bytes(0, &buffer);
    }
}

/// The checksum of `segment`'s sectors in the page of `role`.
fn add_segment(checksum: &mut Checksum, role: Role, segment: Segment) {
    let page = shared_page(role);
    let mut sector = [0u8; SECTOR_SIZE];
    for index in segment.first_sect..=segment.last_sect {
        page.read_bytes(usize::from(index) * SECTOR_SIZE, &mut sector);
        checksum.add(&sector);
    }
}

/// Runs the checks of one connected disk.
pub struct Tester<'a> {
    frontend: &'a mut Frontend,
    env: &'a mut GuestEnvironment,
    next_id: u64,
    /// Set when a request went unanswered: the ring can no longer be used.
    stuck: Option<Detail>,
}

impl<'a> Tester<'a> {
    /// Its requests' ids count up from `first_id`.
    pub fn new(frontend: &'a mut Frontend, env: &'a mut GuestEnvironment, first_id: u64) -> Self {
        Self { frontend, env, next_id: first_id, stuck: None }
    }

    /// The checks of xvda ([`check_names`]).
    pub fn run(&mut self, report: &mut Report) {
        report.record("round trip 1", self.round_trip(SEED_ROUND_TRIP_1, 0));
        let context = Context { sectors: self.frontend.sectors, handle: self.frontend.handle, grants: GRANTS };
        for hostile in HOSTILE {
            let outcome = self.exchange(|id| (hostile.build)(&context, id), Expectation::Refused);
            report.record(hostile.name, outcome);
        }
        let last = self.frontend.sectors.saturating_sub(ROUND_TRIP_SECTORS);
        report.record("round trip 2", self.round_trip(SEED_ROUND_TRIP_2, last));
        report.record("earlier data intact", self.read_back(SEED_ROUND_TRIP_1, 0));
        report.record("read-only page untouched", read_only_page_untouched());
    }

    /// The checks of xvdb ([`READ_ONLY_CHECKS`]), connected as `connection` says.
    pub fn run_read_only(&mut self, connection: &Connection, report: &mut Report) {
        let [advertised, write_refused, read] = READ_ONLY_CHECKS;
        let read_only = connection.info.is_some_and(|info| info & VDISK_READONLY != 0) && connection.mode() == "r";
        report.record(
            advertised,
            if read_only {
                Ok(())
            } else {
                Err(detail!(
                    "info {:?}, mode {:?}; expected bit {VDISK_READONLY} and \"r\"",
                    connection.info,
                    connection.mode()
                ))
            },
        );
        let handle = self.frontend.handle;
        let source = Segment::page(GRANTS.hostile);
        report.record(
            write_refused,
            self.exchange(|id| request(BLKIF_OP_WRITE, handle, id, 0, &[source]), Expectation::Error),
        );
        report.record(read, self.read_zeroes(0));
    }

    /// Sends the request `build(id)` and judges the answer.
    fn exchange(
        &mut self,
        build: impl FnOnce(u64) -> [u8; ENTRY_SIZE],
        expectation: Expectation,
    ) -> Result<(), Detail> {
        if let Some(reason) = &self.stuck {
            return Err(detail!("not sent: {}", reason.as_str()));
        }
        let id = self.next_id;
        self.next_id += 1;
        let entry = build(id);
        let mut deadline = Deadline::after(self.env, REQUEST_TIMEOUT_NS);
        match self.frontend.ring.exchange(self.env, self.frontend.port, &entry, &mut deadline) {
            Ok(response) => judge(id, expectation, &response).map_err(|mismatch| detail!("{mismatch}")),
            Err(error) => {
                self.stuck = Some(detail!("request {id:#x} got no answer ({error})"));
                Err(detail!("{error}"))
            }
        }
    }

    /// Writes 12 sectors of `seed`'s pattern at `sector`, then reads them back.
    fn round_trip(&mut self, seed: u64, sector: u64) -> Result<(), Detail> {
        let whole = Segment::page(GRANTS.write_first);
        let middle = Segment { gref: GRANTS.write_second, first_sect: 2, last_sect: 5 };
        let mut buffer = [0u8; PAGE_SIZE];
        fill(&mut buffer, seed, sector * SECTOR_SIZE as u64);
        shared_page(Role::WriteFirst).write_bytes(0, &buffer);
        // The second page's sectors 2..=5 continue the pattern; the rest is noise.
        buffer.fill(0x5A);
        fill(&mut buffer[2 * SECTOR_SIZE..6 * SECTOR_SIZE], seed, (sector + 8) * SECTOR_SIZE as u64);
        shared_page(Role::WriteSecond).write_bytes(0, &buffer);
        let handle = self.frontend.handle;
        self.exchange(|id| request(BLKIF_OP_WRITE, handle, id, sector, &[whole, middle]), Expectation::Okay)
            .map_err(|failure| detail!("write: {}", failure.as_str()))?;
        self.read_back(seed, sector)
    }

    /// Reads 12 sectors at `sector` and compares them with `seed`'s pattern.
    fn read_back(&mut self, seed: u64, sector: u64) -> Result<(), Detail> {
        let read = self.read_sectors(sector)?;
        let expected = sectors_checksum(seed, sector, ROUND_TRIP_SECTORS);
        if read == expected {
            Ok(())
        } else {
            Err(detail!("checksum {:#x} read, {:#x} written", read.value(), expected.value()))
        }
    }

    /// Reads 12 sectors at `sector`, which must all be zero.
    fn read_zeroes(&mut self, sector: u64) -> Result<(), Detail> {
        let read = self.read_sectors(sector)?;
        let mut expected = Checksum::new();
        for _ in 0..ROUND_TRIP_SECTORS {
            expected.add(&[0; SECTOR_SIZE]);
        }
        if read == expected {
            Ok(())
        } else {
            Err(detail!("checksum {:#x} read, {:#x} for zeroes", read.value(), expected.value()))
        }
    }

    /// Reads 12 sectors at `sector` into the read pages (filled with 0xEE first, so
    /// a read that moved nothing shows) and returns their checksum.
    fn read_sectors(&mut self, sector: u64) -> Result<Checksum, Detail> {
        let tail = Segment { gref: GRANTS.read_first, first_sect: 4, last_sect: 7 };
        let whole = Segment::page(GRANTS.read_second);
        let stale = [0xEEu8; PAGE_SIZE];
        shared_page(Role::ReadFirst).write_bytes(0, &stale);
        shared_page(Role::ReadSecond).write_bytes(0, &stale);
        let handle = self.frontend.handle;
        self.exchange(|id| request(BLKIF_OP_READ, handle, id, sector, &[tail, whole]), Expectation::Okay)
            .map_err(|failure| detail!("read: {}", failure.as_str()))?;
        let mut read = Checksum::new();
        add_segment(&mut read, Role::ReadFirst, tail);
        add_segment(&mut read, Role::ReadSecond, whole);
        Ok(read)
    }
}

/// `grants released`: no data page's grant is left marked in use (the rings stay in
/// use while connected; a stuck request may hold data pages).
pub fn grants_released(grants: &GrantTable<PhysPage>) -> Result<(), Detail> {
    let granted = [
        GRANTS.write_first,
        GRANTS.write_second,
        GRANTS.read_first,
        GRANTS.read_second,
        GRANTS.read_only,
        GRANTS.hostile,
        GRANTS.other_domain,
    ];
    match granted.into_iter().find(|&gref| grants.in_use(gref).unwrap_or(true)) {
        None => Ok(()),
        Some(gref) => Err(detail!("grant {gref} still marked in use (flags {:#x})", grants.flags(gref).unwrap_or(0))),
    }
}

fn read_only_page_untouched() -> Result<(), Detail> {
    let mut expected = [0u8; PAGE_SIZE];
    fill(&mut expected, SEED_READ_ONLY, 0);
    let mut actual = [0u8; PAGE_SIZE];
    shared_page(Role::ReadOnly).read_bytes(0, &mut actual);
    match expected.iter().zip(actual.iter()).position(|(want, got)| want != got) {
        None => Ok(()),
        Some(at) => Err(detail!("byte {at} changed")),
    }
}
