//! Host tests of the grant-table bookkeeping against a fake granting guest.

use alloc::{vec, vec::Vec};

use super::testing::{fuzz_one, FakeGrantEntries};
use super::*;
use basalt_xen_abi::grant_table::{
    GNTST_bad_gntref, GNTST_bad_handle, GNTST_general_error, GTF_accept_transfer, GTF_permit_access, GTF_reading,
    GTF_readonly, GTF_sub_page, GTF_transitive, GTF_writing,
};

const BACKEND: u16 = 0;
const FRONTEND_FRAME: u32 = 0x1234;

/// A default-sized table over one frame of entries, with entry 8 granted read-write
/// to the backend and entry 9 read-only.
fn granted() -> (GrantTable, FakeGrantEntries) {
    let table = GrantTable::new(DEFAULT_MAX_GRANT_FRAMES);
    let mut frames = FakeGrantEntries::new(512);
    frames.grant(8, BACKEND, FRONTEND_FRAME, false);
    frames.grant(9, BACKEND, FRONTEND_FRAME + 1, true);
    (table, frames)
}

#[test]
fn new_table_has_one_frame_of_v1_entries() {
    let table = GrantTable::new(DEFAULT_MAX_GRANT_FRAMES);
    assert_eq!(table.query_size(), (1, 64));
    assert_eq!(table.nr_entries(), 512);
    assert_eq!(table.get_version(), 1);
    assert_eq!(table.active_mappings().count(), 0);
    // The maximum is clamped to something usable.
    assert_eq!(GrantTable::new(0).query_size(), (1, 1));
    assert_eq!(GrantTable::new(u32::MAX).query_size(), (1, MAX_GRANT_FRAMES_LIMIT));
}

#[test]
fn set_version_follows_xen() {
    let mut table = GrantTable::new(4);
    assert_eq!(table.set_version(1), Ok(()));
    assert_eq!(table.set_version(2), Err(GrantError::VersionUnsupported(2)));
    assert_eq!(GrantError::VersionUnsupported(2).errno(), basalt_xen_abi::errno::ENOSYS);
    for version in [0, 3, u32::MAX] {
        assert_eq!(table.set_version(version), Err(GrantError::BadVersion(version)));
        assert_eq!(GrantError::BadVersion(version).errno(), basalt_xen_abi::errno::EINVAL);
    }
    assert_eq!(table.get_version(), 1, "the version in use is unchanged by any request");
}

#[test]
fn grow_up_to_the_maximum_never_shrinks() {
    let mut table = GrantTable::new(4);
    assert_eq!(table.grow(0), Ok(()));
    assert_eq!(table.query_size(), (1, 4));
    assert_eq!(table.grow(3), Ok(()));
    assert_eq!(table.query_size(), (3, 4));
    assert_eq!(table.grow(2), Ok(()));
    assert_eq!(table.query_size(), (3, 4), "never shrinks");
    assert_eq!(table.grow(5), Err(GrantError::TooManyFrames { requested: 5, max: 4 }));
    assert_eq!(table.query_size(), (3, 4));
    // add_to_physmap(grant_table, idx) grows to idx + 1.
    assert_eq!(table.ensure_frame(1), Ok(()));
    assert_eq!(table.ensure_frame(3), Ok(()));
    assert_eq!(table.query_size(), (4, 4));
    assert_eq!(table.nr_entries(), 2048);
    assert!(table.ensure_frame(4).is_err());
    assert_eq!(table.ensure_frame(u32::MAX).unwrap_err().errno(), basalt_xen_abi::errno::EINVAL);
    assert_eq!(table.query_size(), (4, 4));
}

#[test]
fn read_acquire_sets_reading_and_release_clears_it() {
    let (mut table, mut frames) = granted();
    let frame = table.acquire(&mut frames, 8, BACKEND, Access::Read).unwrap();
    assert_eq!(frame, GrantedFrame { gfn: u64::from(FRONTEND_FRAME), readonly: true });
    assert_eq!(frames.flags(8), GTF_permit_access | GTF_reading);
    // While in use the frontend cannot revoke.
    assert!(!frames.revoke(8));
    assert_eq!(table.active(8), Some(ActiveGrant { grantee: BACKEND, gfn: 0x1234, readers: 1, writers: 0 }));
    table.release(&mut frames, 8, Access::Read).unwrap();
    assert_eq!(frames.flags(8), GTF_permit_access);
    assert_eq!(table.active(8), None);
    assert!(frames.revoke(8));
}

#[test]
fn write_acquire_sets_both_bits_and_counts_users() {
    let (mut table, mut frames) = granted();
    let frame = table.acquire(&mut frames, 8, BACKEND, Access::Write).unwrap();
    assert!(!frame.readonly);
    assert_eq!(frames.flags(8), GTF_permit_access | GTF_reading | GTF_writing);
    table.acquire(&mut frames, 8, BACKEND, Access::Read).unwrap();
    table.acquire(&mut frames, 8, BACKEND, Access::Write).unwrap();
    assert_eq!(table.active(8).map(|active| (active.readers, active.writers)), Some((1, 2)));
    table.release(&mut frames, 8, Access::Write).unwrap();
    assert_eq!(frames.flags(8) & (GTF_reading | GTF_writing), GTF_reading | GTF_writing, "a writer remains");
    table.release(&mut frames, 8, Access::Write).unwrap();
    assert_eq!(frames.flags(8), GTF_permit_access | GTF_reading, "the last writer went, a reader remains");
    table.release(&mut frames, 8, Access::Read).unwrap();
    assert_eq!(frames.flags(8), GTF_permit_access);
    assert_eq!(table.active_mappings().count(), 0);
}

#[test]
fn reader_upgraded_to_writer_rechecks_readonly() {
    let (mut table, mut frames) = granted();
    table.acquire(&mut frames, 9, BACKEND, Access::Read).unwrap();
    assert_eq!(table.acquire(&mut frames, 9, BACKEND, Access::Write), Err(GrantError::ReadOnly(9)));
    assert_eq!(frames.flags(9), GTF_permit_access | GTF_readonly | GTF_reading);
    assert_eq!(table.active(9).map(|active| (active.readers, active.writers)), Some((1, 0)));
    // The frontend makes the grant writable while it is read: the upgrade now works.
    frames.entries[9].flags &= !GTF_readonly;
    table.acquire(&mut frames, 8, BACKEND, Access::Read).unwrap();
    assert_eq!(table.acquire(&mut frames, 9, BACKEND, Access::Write).map(|frame| frame.readonly), Ok(false));
    assert_eq!(frames.flags(9), GTF_permit_access | GTF_reading | GTF_writing);
}

#[test]
fn readonly_grant_refuses_writes() {
    let (mut table, mut frames) = granted();
    let error = table.acquire(&mut frames, 9, BACKEND, Access::Write).unwrap_err();
    assert_eq!(error, GrantError::ReadOnly(9));
    assert_eq!(error.status(), GNTST_general_error);
    assert_eq!(frames.flags(9), GTF_permit_access | GTF_readonly, "nothing set");
    assert_eq!(table.active(9), None);
    assert!(table.acquire(&mut frames, 9, BACKEND, Access::Read).is_ok());
}

#[test]
fn out_of_range_references_are_bad_gntref() {
    let (mut table, mut frames) = granted();
    for gref in [512, 513, u32::MAX] {
        let error = table.acquire(&mut frames, gref, BACKEND, Access::Read).unwrap_err();
        assert_eq!(error, GrantError::BadGrantReference(gref));
        assert_eq!(error.status(), GNTST_bad_gntref);
    }
    // The table grew but the frames behind it did not: the smaller bound wins.
    table.grow(2).unwrap();
    assert_eq!(table.acquire(&mut frames, 600, BACKEND, Access::Read), Err(GrantError::BadGrantReference(600)));
    // And frames beyond the table's size are not reachable either.
    let mut table = GrantTable::new(4);
    let mut big = FakeGrantEntries::new(1024);
    big.grant(700, BACKEND, 1, false);
    assert_eq!(table.acquire(&mut big, 700, BACKEND, Access::Read), Err(GrantError::BadGrantReference(700)));
    table.ensure_frame(1).unwrap();
    assert!(table.acquire(&mut big, 700, BACKEND, Access::Read).is_ok());
}

#[test]
fn entries_must_grant_access_to_the_grantee() {
    let (mut table, mut frames) = granted();
    // Wrong domain.
    assert_eq!(
        table.acquire(&mut frames, 8, 3, Access::Read),
        Err(GrantError::NotGranted { gref: 8, flags: GTF_permit_access, domid: BACKEND })
    );
    // Invalid, transfer and transitive entries, and sub-page-less v1 types only.
    for flags in [0, GTF_accept_transfer, GTF_transitive] {
        frames.entries[10] = GrantEntryV1 { flags, domid: BACKEND, frame: 5 };
        assert!(matches!(table.acquire(&mut frames, 10, BACKEND, Access::Read), Err(GrantError::NotGranted { .. })));
        assert_eq!(frames.flags(10), flags, "nothing set");
    }
    // Copy semantics: extra bits the guest sets (sub-page, cache attributes) do not matter.
    frames.entries[11] = GrantEntryV1 { flags: GTF_permit_access | GTF_sub_page, domid: BACKEND, frame: 6 };
    assert!(table.acquire(&mut frames, 11, BACKEND, Access::Read).is_ok());
    assert_eq!(table.active_mappings().map(|(gref, _)| gref).collect::<Vec<_>>(), vec![11]);
}

#[test]
fn reserved_entries_can_be_used_as_in_xen() {
    let (mut table, mut frames) = granted();
    frames.grant(0, BACKEND, 0xfeff0, false);
    frames.grant(1, BACKEND, 0xfeffc, false);
    assert_eq!(table.acquire(&mut frames, 0, BACKEND, Access::Write).map(|frame| frame.gfn), Ok(0xfeff0));
    assert_eq!(table.acquire(&mut frames, 1, BACKEND, Access::Write).map(|frame| frame.gfn), Ok(0xfeffc));
}

#[test]
fn an_entry_in_use_keeps_its_frame_and_grantee() {
    let (mut table, mut frames) = granted();
    table.acquire(&mut frames, 8, BACKEND, Access::Read).unwrap();
    // The guest rewrites the entry while it is in use (it must not, but may).
    frames.entries[8] = GrantEntryV1 { flags: GTF_permit_access | GTF_reading, domid: 7, frame: 0xdead };
    assert_eq!(table.acquire(&mut frames, 8, BACKEND, Access::Read).map(|frame| frame.gfn), Ok(0x1234));
    // Another domain cannot use the entry while the backend does.
    assert_eq!(table.acquire(&mut frames, 8, 7, Access::Read), Err(GrantError::InUseByOther { gref: 8, grantee: 0 }));
    table.release(&mut frames, 8, Access::Read).unwrap();
    table.release(&mut frames, 8, Access::Read).unwrap();
    // Now free: the rewritten entry grants to domain 7.
    assert_eq!(table.acquire(&mut frames, 8, 7, Access::Read).map(|frame| frame.gfn), Ok(0xdead));
}

#[test]
fn a_guest_flipping_flags_gets_a_few_retries_then_an_error() {
    let (mut table, mut frames) = granted();
    // Two concurrent harmless changes (a cache attribute bit toggling): retried.
    for flags in [GTF_permit_access | 1 << 5, GTF_permit_access] {
        frames.interfering_writes.push_back(GrantEntryHeader { flags, domid: BACKEND });
    }
    assert!(table.acquire(&mut frames, 8, BACKEND, Access::Write).is_ok());
    assert_eq!(frames.compare_exchanges, 3);
    assert_eq!(frames.flags(8), GTF_permit_access | GTF_reading | GTF_writing);

    // A guest that changes the entry on every attempt: five attempts, then Unstable.
    frames.compare_exchanges = 0;
    for round in 1..=10u16 {
        let flags = GTF_permit_access | (round & 1) << 5;
        frames.interfering_writes.push_back(GrantEntryHeader { flags, domid: BACKEND });
    }
    // (An invalid entry fails before any exchange.)
    let not_granted = GrantError::NotGranted { gref: 10, flags: 0, domid: 0 };
    assert_eq!(table.acquire(&mut frames, 10, BACKEND, Access::Read), Err(not_granted));
    assert_eq!(frames.compare_exchanges, 0);
    frames.grant(10, BACKEND, 77, false);
    frames.compare_exchanges = 0;
    assert_eq!(table.acquire(&mut frames, 10, BACKEND, Access::Read), Err(GrantError::Unstable(10)));
    assert_eq!(frames.compare_exchanges, CMPXCHG_ATTEMPTS);
    assert_eq!(table.active(10), None);
    frames.interfering_writes.clear();
    assert!(table.acquire(&mut frames, 10, BACKEND, Access::Read).is_ok());
}

#[test]
fn a_guest_revoking_during_the_exchange_is_seen() {
    let (mut table, mut frames) = granted();
    // The guest ends access between our load and our exchange: the retry sees it.
    frames.interfering_writes.push_back(GrantEntryHeader { flags: 0, domid: BACKEND });
    assert_eq!(
        table.acquire(&mut frames, 8, BACKEND, Access::Read),
        Err(GrantError::NotGranted { gref: 8, flags: 0, domid: BACKEND })
    );
    // It makes the grant read-only between our load and our exchange.
    frames.grant(8, BACKEND, FRONTEND_FRAME, false);
    frames.interfering_writes.push_back(GrantEntryHeader { flags: GTF_permit_access | GTF_readonly, domid: BACKEND });
    assert_eq!(table.acquire(&mut frames, 8, BACKEND, Access::Write), Err(GrantError::ReadOnly(8)));
    // It hands the grant to another domain between our load and our exchange.
    frames.grant(8, BACKEND, FRONTEND_FRAME, false);
    frames.interfering_writes.push_back(GrantEntryHeader { flags: GTF_permit_access, domid: 5 });
    assert!(matches!(
        table.acquire(&mut frames, 8, BACKEND, Access::Read),
        Err(GrantError::NotGranted { domid: 5, .. })
    ));
    assert_eq!(frames.flags(8), GTF_permit_access, "no bits left behind");
    assert_eq!(table.active_mappings().count(), 0);
}

#[test]
fn releases_without_acquire_are_refused() {
    let (mut table, mut frames) = granted();
    assert_eq!(table.release(&mut frames, 8, Access::Read), Err(GrantError::NotAcquired(8)));
    assert_eq!(GrantError::NotAcquired(8).status(), GNTST_bad_handle);
    assert_eq!(table.release(&mut frames, u32::MAX, Access::Write), Err(GrantError::NotAcquired(u32::MAX)));
    table.acquire(&mut frames, 8, BACKEND, Access::Read).unwrap();
    // A write release of a read use is refused and changes nothing.
    assert_eq!(table.release(&mut frames, 8, Access::Write), Err(GrantError::NotAcquired(8)));
    assert_eq!(table.active(8).map(|active| active.readers), Some(1));
    assert_eq!(frames.flags(8), GTF_permit_access | GTF_reading);
    table.release(&mut frames, 8, Access::Read).unwrap();
    // Double release.
    assert_eq!(table.release(&mut frames, 8, Access::Read), Err(GrantError::NotAcquired(8)));
    assert_eq!(frames.flags(8), GTF_permit_access);
}

#[test]
fn release_all_clears_every_bit() {
    let (mut table, mut frames) = granted();
    frames.grant(20, BACKEND, 1, false);
    table.acquire(&mut frames, 8, BACKEND, Access::Write).unwrap();
    table.acquire(&mut frames, 9, BACKEND, Access::Read).unwrap();
    table.acquire(&mut frames, 20, BACKEND, Access::Read).unwrap();
    table.acquire(&mut frames, 20, BACKEND, Access::Read).unwrap();
    assert_eq!(table.release_all(&mut frames), 3);
    for gref in [8, 9, 20] {
        assert_eq!(frames.flags(gref) & (GTF_reading | GTF_writing), 0);
        assert!(frames.revoke(gref));
    }
    assert_eq!(table.active_mappings().count(), 0);
    assert_eq!(table.release_all(&mut frames), 0);
}

#[test]
fn shrunken_frames_behind_the_table_do_not_panic() {
    let (mut table, mut frames) = granted();
    table.acquire(&mut frames, 8, BACKEND, Access::Write).unwrap();
    table.acquire(&mut frames, 9, BACKEND, Access::Read).unwrap();
    let mut small = FakeGrantEntries::new(4);
    assert_eq!(table.acquire(&mut small, 8, BACKEND, Access::Read), Err(GrantError::BadGrantReference(8)));
    assert_eq!(table.release(&mut small, 8, Access::Write), Ok(()));
    assert_eq!(table.release_all(&mut small), 1);
}

#[test]
fn use_counts_do_not_overflow() {
    let (mut table, mut frames) = granted();
    table.acquire(&mut frames, 8, BACKEND, Access::Read).unwrap();
    if let Some(active) = table.active.get_mut(&8) {
        active.readers = u32::MAX;
    }
    assert_eq!(table.acquire(&mut frames, 8, BACKEND, Access::Read), Err(GrantError::TooManyUsers(8)));
    assert_eq!(table.active(8).map(|active| active.readers), Some(u32::MAX));
    // A writer is counted separately and still fits.
    assert!(table.acquire(&mut frames, 8, BACKEND, Access::Write).is_ok());
}

#[test]
fn errors_have_statuses_and_messages() {
    assert_eq!(GrantError::BadGrantReference(1).errno(), basalt_xen_abi::errno::EINVAL);
    assert_eq!(GrantError::Unstable(1).status(), GNTST_general_error);
    assert_eq!(GrantError::TooManyFrames { requested: 65, max: 64 }.status(), GNTST_general_error);
    assert_eq!(alloc::format!("{}", GrantError::ReadOnly(9)), "grant 9 is read-only");
}

#[test]
fn fuzz_body_over_random_inputs() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..2_000 {
        let length = (next() % 1024) as usize;
        let input: Vec<u8> = (0..length).map(|_| next() as u8).collect();
        fuzz_one(&input);
    }
    for length in 0..16 {
        fuzz_one(&vec![0xff; length]);
        fuzz_one(&vec![0; length]);
    }
}
