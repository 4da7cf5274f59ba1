//! A fake granting guest for exercising [`GrantTable`] off the hypervisor: grant
//! frames as a vector of entries, with a queue of writes the guest makes in the middle
//! of the hypervisor's compare-exchanges. The host tests (grant_table_tests.rs) and
//! the `grant_table_ops` fuzz body ([`fuzz_one`]) share it. Compiled only for hosted
//! builds (`cargo test`, cargo-fuzz), never into the image.

use alloc::{collections::VecDeque, vec, vec::Vec};

use super::{Access, GrantEntries, GrantEntryHeader, GrantEntryV1, GrantError, GrantTable};
use basalt_xen_abi::grant_table::{
    GNTST_bad_gntref, GNTST_bad_handle, GNTST_general_error, GTF_permit_access, GTF_reading, GTF_readonly, GTF_writing,
    GRANT_ENTRIES_PER_FRAME_V1,
};

/// Grant frames in memory. Out-of-range references behave as the trait requires.
pub struct FakeGrantEntries {
    pub entries: Vec<GrantEntryV1>,
    /// Headers the guest writes over the entry, one just before each of the next
    /// compare-exchanges (so the exchange sees a changed entry).
    pub interfering_writes: VecDeque<GrantEntryHeader>,
    /// How many compare-exchanges were attempted.
    pub compare_exchanges: u32,
}

impl FakeGrantEntries {
    /// `count` zeroed (invalid) entries.
    pub fn new(count: u32) -> FakeGrantEntries {
        FakeGrantEntries {
            entries: vec![GrantEntryV1::default(); count as usize],
            interfering_writes: VecDeque::new(),
            compare_exchanges: 0,
        }
    }

    /// What a frontend does: grant `frame` to `domid` in entry `gref`.
    pub fn grant(&mut self, gref: u32, domid: u16, frame: u32, readonly: bool) {
        let flags = GTF_permit_access | if readonly { GTF_readonly } else { 0 };
        if let Some(entry) = self.entries.get_mut(gref as usize) {
            *entry = GrantEntryV1 { flags, domid, frame };
        }
    }

    /// What a frontend's end-foreign-access does: clear the flags only if neither
    /// `GTF_reading` nor `GTF_writing` is set. Returns whether access ended.
    pub fn revoke(&mut self, gref: u32) -> bool {
        match self.entries.get_mut(gref as usize) {
            Some(entry) if entry.flags & (GTF_reading | GTF_writing) == 0 => {
                entry.flags = 0;
                true
            }
            _ => false,
        }
    }

    pub fn flags(&self, gref: u32) -> u16 {
        self.entries.get(gref as usize).map_or(0, |entry| entry.flags)
    }
}

impl GrantEntries for FakeGrantEntries {
    fn entry_count(&self) -> u32 {
        self.entries.len() as u32
    }

    fn load(&self, gref: u32) -> GrantEntryV1 {
        self.entries.get(gref as usize).copied().unwrap_or_default()
    }

    fn compare_exchange_header(
        &mut self,
        gref: u32,
        current: GrantEntryHeader,
        new: GrantEntryHeader,
    ) -> Result<(), GrantEntryHeader> {
        self.compare_exchanges += 1;
        let interference = self.interfering_writes.pop_front();
        let Some(entry) = self.entries.get_mut(gref as usize) else {
            return Err(GrantEntryHeader::default());
        };
        if let Some(write) = interference {
            entry.flags = write.flags;
            entry.domid = write.domid;
        }
        let actual = GrantEntryHeader { flags: entry.flags, domid: entry.domid };
        if actual != current {
            return Err(actual);
        }
        entry.flags = new.flags;
        entry.domid = new.domid;
        Ok(())
    }

    fn clear_flags(&mut self, gref: u32, bits: u16) {
        if let Some(entry) = self.entries.get_mut(gref as usize) {
            entry.flags &= !bits;
        }
    }
}

/// Reads the input a byte at a time; zeros once it runs out.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&first, rest)) = self.data.split_first() else {
            return 0;
        };
        self.data = rest;
        first
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    /// Mostly a few references, so acquires and releases meet; sometimes any.
    fn gref(&mut self) -> u32 {
        match self.byte() % 8 {
            0 => self.u32(),
            1 => GRANT_ENTRIES_PER_FRAME_V1 - 1 + u32::from(self.byte() % 3),
            _ => u32::from(self.byte() % 12),
        }
    }

    fn domid(&mut self) -> u16 {
        match self.byte() % 4 {
            0 => self.u16(),
            _ => 0,
        }
    }

    fn access(&mut self) -> Access {
        if self.byte() & 1 == 0 {
            Access::Read
        } else {
            Access::Write
        }
    }

    /// Flags a guest might write: mostly sensible grants, sometimes anything.
    fn flags(&mut self) -> u16 {
        match self.byte() % 4 {
            0 => self.u16(),
            1 => GTF_permit_access | GTF_readonly,
            _ => GTF_permit_access,
        }
    }
}

/// The fuzz body: a grant table (max 1–4 frames) over fake frames of up to two
/// frames' entries; the guest grants, rewrites, revokes and interferes; the grantee
/// (domain 0, sometimes others) acquires and releases. A reference model of the use
/// counts is checked after every step, with the status bits the invariants require.
/// Panics on a violation; never otherwise.
pub fn fuzz_one(data: &[u8]) {
    let mut input = Input { data };
    let mut table = GrantTable::new(u32::from(input.byte() % 5));
    let backed = match input.byte() % 3 {
        0 => GRANT_ENTRIES_PER_FRAME_V1 * 2,
        1 => GRANT_ENTRIES_PER_FRAME_V1,
        _ => 16,
    };
    let mut frames = FakeGrantEntries::new(backed);
    // (readers, writers, grantee, gfn) per reference: what the table should hold.
    let mut model: alloc::collections::BTreeMap<u32, (u32, u32, u16, u64)> = Default::default();
    let mut steps = 0;
    while !input.data.is_empty() && steps < 4096 {
        steps += 1;
        match input.byte() % 10 {
            0 | 1 => {
                let (gref, domid, frame, flags) = (input.gref(), input.domid(), input.u32(), input.flags());
                if let Some(entry) = frames.entries.get_mut(gref as usize) {
                    // A guest may write anything, even over an entry in use.
                    *entry = GrantEntryV1 { flags, domid, frame };
                }
            }
            2 => {
                // Succeeds only if the guest itself cleared our bits meanwhile; the
                // table must cope either way.
                frames.revoke(input.gref());
            }
            3 => {
                for _ in 0..input.byte() % 8 {
                    let header = GrantEntryHeader { flags: input.flags(), domid: input.domid() };
                    frames.interfering_writes.push_back(header);
                }
            }
            4..=6 => {
                let (gref, grantee, access) = (input.gref(), input.domid(), input.access());
                let before = frames.load(gref);
                let cas_before = frames.compare_exchanges;
                let previous = table.active(gref);
                match table.acquire(&mut frames, gref, grantee, access) {
                    Ok(granted) => {
                        assert!(gref < table.nr_entries() && gref < frames.entry_count());
                        // The bits are set by the first use and by the first writer; a
                        // guest that clears them later only hurts itself (as in Xen).
                        let first_writer = access == Access::Write && previous.is_none_or(|active| active.writers == 0);
                        let flags = frames.flags(gref);
                        if previous.is_none() || first_writer {
                            assert!(flags & GTF_reading != 0, "acquired without GTF_reading");
                        }
                        if first_writer {
                            assert!(flags & GTF_writing != 0, "write without GTF_writing");
                        }
                        assert_eq!(granted.readonly, access == Access::Read);
                        let slot = model.entry(gref).or_insert((0, 0, grantee, granted.gfn));
                        assert_eq!((slot.2, slot.3), (grantee, granted.gfn), "a pinned entry changed hands or frame");
                        match access {
                            Access::Read => slot.0 += 1,
                            Access::Write => slot.1 += 1,
                        }
                    }
                    Err(error) => {
                        assert!(frames.compare_exchanges - cas_before <= super::CMPXCHG_ATTEMPTS);
                        match error {
                            GrantError::BadGrantReference(_) => {
                                assert!(gref >= table.nr_entries().min(frames.entry_count()))
                            }
                            GrantError::InUseByOther { .. } => {
                                assert!(model.get(&gref).is_some_and(|slot| slot.2 != grantee))
                            }
                            GrantError::NotGranted { .. } => assert!(!model.contains_key(&gref)),
                            GrantError::ReadOnly(_) => assert_eq!(access, Access::Write),
                            GrantError::Unstable(_) => {
                                assert_eq!(frames.compare_exchanges - cas_before, super::CMPXCHG_ATTEMPTS)
                            }
                            other => panic!("acquire failed with {other:?}"),
                        }
                        if frames.compare_exchanges == cas_before {
                            assert_eq!(frames.load(gref), before, "a failed acquire without exchange wrote");
                        }
                        assert!(error.status() == GNTST_bad_gntref || error.status() == GNTST_general_error);
                    }
                }
            }
            7 | 8 => {
                let (gref, access) = (input.gref(), input.access());
                let expected = model.get(&gref).is_some_and(|slot| match access {
                    Access::Read => slot.0 > 0,
                    Access::Write => slot.1 > 0,
                });
                match table.release(&mut frames, gref, access) {
                    Ok(()) => {
                        assert!(expected, "released {gref} {access:?} that was not acquired");
                        let slot = model.get_mut(&gref).expect("checked above");
                        match access {
                            Access::Read => slot.0 -= 1,
                            Access::Write => slot.1 -= 1,
                        }
                        if slot.1 == 0 {
                            assert_eq!(frames.flags(gref) & GTF_writing, 0, "last writer left GTF_writing");
                        }
                        if *slot == (0, 0, slot.2, slot.3) {
                            assert_eq!(frames.flags(gref) & (GTF_reading | GTF_writing), 0, "last user left bits");
                            model.remove(&gref);
                        }
                    }
                    Err(error) => {
                        assert!(!expected);
                        assert_eq!(error, GrantError::NotAcquired(gref));
                        assert_eq!(error.status(), GNTST_bad_handle);
                    }
                }
            }
            _ => match input.byte() % 4 {
                0 => {
                    let released = table.release_all(&mut frames);
                    assert_eq!(released, model.len());
                    for gref in model.keys() {
                        assert_eq!(frames.flags(*gref) & (GTF_reading | GTF_writing), 0);
                    }
                    model.clear();
                }
                1 => {
                    let (frames_before, max) = table.query_size();
                    let index = match input.byte() % 4 {
                        0 => input.u32(),
                        index => u32::from(index),
                    };
                    match table.ensure_frame(index) {
                        Ok(()) => assert!(index < max && table.query_size().0 == frames_before.max(index + 1)),
                        Err(error) => {
                            assert!(index >= max && table.query_size().0 == frames_before);
                            assert_eq!(error.errno(), basalt_xen_abi::errno::EINVAL);
                        }
                    }
                }
                2 => {
                    let version = u32::from(input.byte() % 4);
                    let result = table.set_version(version);
                    assert_eq!(result.is_ok(), version == 1);
                    assert_eq!(table.get_version(), 1);
                }
                _ => {
                    let frames_wanted = u32::from(input.byte() % 6);
                    let (before, max) = table.query_size();
                    assert_eq!(table.grow(frames_wanted).is_ok(), frames_wanted <= max);
                    assert_eq!(
                        table.query_size().0,
                        if frames_wanted <= max { before.max(frames_wanted) } else { before }
                    );
                }
            },
        }
        // The table holds exactly the model's uses.
        let actual: Vec<(u32, (u32, u32, u16, u64))> = table
            .active_mappings()
            .map(|(gref, active)| (gref, (active.readers, active.writers, active.grantee, active.gfn)))
            .collect();
        let expected: Vec<(u32, (u32, u32, u16, u64))> = model.iter().map(|(&gref, &slot)| (gref, slot)).collect();
        assert_eq!(actual, expected, "step {steps}");
        assert!(actual.iter().all(|(_, (readers, writers, _, _))| readers + writers > 0));
    }
}
