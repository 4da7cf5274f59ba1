//! Grant-table (v1) bookkeeping of one granting domain: its table size and version,
//! and which of its entries a grantee (Basalt's dom0 backends) is using right now.
//!
//! Why: a guest shares a page with a backend by writing a grant entry
//! (`GTF_permit_access`, the backend's domid, the frame) into its grant frames. Before
//! the backend touches the page it *acquires* the entry: the hypervisor checks the
//! entry and atomically sets `GTF_reading` (and `GTF_writing`) in it, which is what
//! stops the guest from revoking the grant (its end-foreign-access only succeeds while
//! neither bit is set). When the backend is done it *releases* the entry and the bits
//! are cleared. This module decides all of that; the grant frames themselves are
//! guest memory, reached through [`GrantEntries`], which the hypervisor implements
//! with atomic operations (the guest writes the same words concurrently).
//!
//! Invariants:
//! * an entry is in [`GrantTable::active_mappings`] exactly while it has a reader or
//!   a writer; from its first acquire to its last release, the entry's `GTF_reading`
//!   (and, while there are writers, `GTF_writing`) bit is set by us and the frame the
//!   grantee uses is the one read at the first acquire (Xen's active entry);
//! * after the last release of an entry (or [`GrantTable::release_all`]) we have
//!   cleared the bits we set: a backend never leaves a grant unrevocable;
//! * the entry's `flags`/`domid` are only updated with a bounded compare-exchange
//!   loop: a guest that keeps changing them makes the acquire fail, never spin.
//!
//! Nothing here trusts the guest: every grant reference is bounds-checked against the
//! table, every entry is re-read through the trait, and no input panics.
//!
//! Specification: xen/include/public/grant_table.h; xen/common/grant_table.c (4.17):
//! `_set_status_v1` (checks and the five-attempt cmpxchg loop), `acquire_grant_for_copy`
//! / `release_grant_for_copy` and `map_grant_ref` / `unmap_common_complete` (pin
//! counts, when the status bits are set and cleared), `gnttab_grow_table`,
//! `gnttab_set_version` (v2 is ENOSYS when the maximum version is 1),
//! `gnttab_query_size`, `gnttab_get_shared_frame` (add_to_physmap of frame `idx`
//! grows the table to `idx + 1`). docs/pvh-abi.md §3.7. Entries 0..8 are reserved by
//! convention only; as in Xen they can be acquired. Only v1 exists here; transfers,
//! transitive and sub-page grants are not supported.

use alloc::collections::BTreeMap;
use core::fmt;

use basalt_xen_abi::errno::{EINVAL, ENOSYS};
use basalt_xen_abi::grant_table::{
    GNTST_bad_gntref, GNTST_bad_handle, GNTST_general_error, GTF_permit_access, GTF_reading, GTF_readonly,
    GTF_type_mask, GTF_writing, GRANT_ENTRIES_PER_FRAME_V1,
};
pub use basalt_xen_abi::grant_table::{GrantEntryHeader, GrantEntryV1};

/// Frames a new table has (Xen's `INITIAL_NR_GRANT_FRAMES`).
pub const INITIAL_NR_GRANT_FRAMES: u32 = 1;
/// Xen's default per-domain maximum (`max_grant_frames`): 64 frames, 32768 entries.
pub const DEFAULT_MAX_GRANT_FRAMES: u32 = 64;
/// The largest maximum [`GrantTable::new`] accepts: entry numbers must fit a `u32`.
pub const MAX_GRANT_FRAMES_LIMIT: u32 = u32::MAX / GRANT_ENTRIES_PER_FRAME_V1;
/// Compare-exchange attempts on a guest entry before giving up (Xen: five).
pub const CMPXCHG_ATTEMPTS: u32 = 5;

/// A domain's grant frames (guest-writable memory), as the hypervisor reaches them.
/// Each method is one atomic access. Implementations must tolerate any `gref`
/// without panicking (this module only passes ones below [`Self::entry_count`], but
/// the frames behind the trait may have changed between calls): an out-of-range
/// `load` returns a zero entry, an out-of-range exchange fails, a clear does nothing.
pub trait GrantEntries {
    /// Entries currently backed by grant frames.
    fn entry_count(&self) -> u32;
    /// The entry `gref` (one snapshot; the guest may change it right after).
    fn load(&self, gref: u32) -> GrantEntryV1;
    /// Atomically replaces the first four bytes of entry `gref` (`flags` @0, `domid`
    /// @2) with `new` if they equal `current`; otherwise returns what they are.
    fn compare_exchange_header(
        &mut self,
        gref: u32,
        current: GrantEntryHeader,
        new: GrantEntryHeader,
    ) -> Result<(), GrantEntryHeader>;
    /// Atomically clears `bits` in the entry's `flags`.
    fn clear_flags(&mut self, gref: u32, bits: u16);
}

/// What the grantee will do with the granted frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// The frame an acquired grant gives access to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantedFrame {
    /// The granting guest's frame number, as recorded at the entry's first acquire.
    pub gfn: u64,
    /// Acquired for reading only: the grantee must not write the frame.
    pub readonly: bool,
}

/// One entry in use by a grantee (Xen's `active_grant_entry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveGrant {
    /// The domain using the grant.
    pub grantee: u16,
    /// The frame read at the first acquire; later changes by the guest are ignored.
    pub gfn: u64,
    /// Outstanding [`Access::Read`] acquires.
    pub readers: u32,
    /// Outstanding [`Access::Write`] acquires.
    pub writers: u32,
}

/// Why a grant operation failed. [`GrantError::status`] is the `GNTST_*` code for
/// per-operation results; [`GrantError::errno`] the Xen errno for hypercalls without
/// one (set_version, add_to_physmap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantError {
    /// The reference is at or beyond the table's entries (GNTST_bad_gntref).
    BadGrantReference(u32),
    /// The entry does not grant access to this grantee: wrong type or domid
    /// (GNTST_general_error).
    NotGranted { gref: u32, flags: u16, domid: u16 },
    /// Write access to a read-only grant (GNTST_general_error).
    ReadOnly(u32),
    /// The guest kept changing the entry during every compare-exchange attempt
    /// (GNTST_general_error).
    Unstable(u32),
    /// The entry is in use by another grantee (GNTST_general_error).
    InUseByOther { gref: u32, grantee: u16 },
    /// The use counter would overflow (GNTST_general_error).
    TooManyUsers(u32),
    /// A release without a matching acquire (GNTST_bad_handle).
    NotAcquired(u32),
    /// Growing beyond the maximum (EINVAL).
    TooManyFrames { requested: u32, max: u32 },
    /// A version other than 1 or 2 (EINVAL).
    BadVersion(u32),
    /// Version 2, which Basalt does not offer (ENOSYS, as Xen with a maximum of 1).
    VersionUnsupported(u32),
}

impl GrantError {
    /// The `GNTST_*` status of a failed per-operation request.
    pub fn status(self) -> i16 {
        match self {
            GrantError::BadGrantReference(_) => GNTST_bad_gntref,
            GrantError::NotAcquired(_) => GNTST_bad_handle,
            _ => GNTST_general_error,
        }
    }

    /// The positive Xen errno (the hypercall returns its negation).
    pub fn errno(self) -> i64 {
        match self {
            GrantError::VersionUnsupported(_) => ENOSYS,
            _ => EINVAL,
        }
    }
}

impl fmt::Display for GrantError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GrantError::BadGrantReference(gref) => write!(formatter, "grant reference {gref} out of range"),
            GrantError::NotGranted { gref, flags, domid } => {
                write!(formatter, "grant {gref} not granted (flags {flags:#x}, domain {domid})")
            }
            GrantError::ReadOnly(gref) => write!(formatter, "grant {gref} is read-only"),
            GrantError::Unstable(gref) => write!(formatter, "grant {gref} keeps changing"),
            GrantError::InUseByOther { gref, grantee } => write!(formatter, "grant {gref} in use by domain {grantee}"),
            GrantError::TooManyUsers(gref) => write!(formatter, "grant {gref} has too many users"),
            GrantError::NotAcquired(gref) => write!(formatter, "grant {gref} was not acquired for that access"),
            GrantError::TooManyFrames { requested, max } => {
                write!(formatter, "{requested} grant frames requested, at most {max}")
            }
            GrantError::BadVersion(version) => write!(formatter, "grant table version {version} does not exist"),
            GrantError::VersionUnsupported(version) => write!(formatter, "grant table version {version} not offered"),
        }
    }
}

/// The grant table of one granting domain. See the module documentation.
#[derive(Debug, Clone)]
pub struct GrantTable {
    /// Always 1: the only version offered.
    version: u32,
    /// Frames in use; entries `0..nr_frames * 512` exist.
    nr_frames: u32,
    max_frames: u32,
    active: BTreeMap<u32, ActiveGrant>,
}

impl GrantTable {
    /// A v1 table of [`INITIAL_NR_GRANT_FRAMES`] frames that may grow to `max_frames`
    /// (clamped to `1..=`[`MAX_GRANT_FRAMES_LIMIT`]; Xen's default is 64).
    pub fn new(max_frames: u32) -> GrantTable {
        let max_frames = max_frames.clamp(INITIAL_NR_GRANT_FRAMES, MAX_GRANT_FRAMES_LIMIT);
        GrantTable { version: 1, nr_frames: INITIAL_NR_GRANT_FRAMES, max_frames, active: BTreeMap::new() }
    }

    /// GNTTABOP_query_size: `(nr_frames, max_nr_frames)`.
    pub fn query_size(&self) -> (u32, u32) {
        (self.nr_frames, self.max_frames)
    }

    /// Entries in the table now (512 per frame).
    pub fn nr_entries(&self) -> u32 {
        self.nr_frames * GRANT_ENTRIES_PER_FRAME_V1
    }

    /// GNTTABOP_get_version.
    pub fn get_version(&self) -> u32 {
        self.version
    }

    /// GNTTABOP_set_version: 1 succeeds (it is already in use); 2 is ENOSYS; any other
    /// value EINVAL. Whatever the result, Xen writes the version in use
    /// ([`Self::get_version`]) back to the guest's argument.
    pub fn set_version(&mut self, version: u32) -> Result<(), GrantError> {
        match version {
            1 => Ok(()),
            2 => Err(GrantError::VersionUnsupported(version)),
            _ => Err(GrantError::BadVersion(version)),
        }
    }

    /// Grows the table to `frames` frames (GNTTABOP_setup_table). Never shrinks;
    /// beyond the maximum is an error and changes nothing.
    pub fn grow(&mut self, frames: u32) -> Result<(), GrantError> {
        if frames > self.max_frames {
            return Err(GrantError::TooManyFrames { requested: frames, max: self.max_frames });
        }
        self.nr_frames = self.nr_frames.max(frames);
        Ok(())
    }

    /// XENMEM_add_to_physmap(XENMAPSPACE_grant_table, idx): makes frame `index` exist,
    /// growing the table to `index + 1` frames if needed.
    pub fn ensure_frame(&mut self, index: u32) -> Result<(), GrantError> {
        let frames =
            index.checked_add(1).ok_or(GrantError::TooManyFrames { requested: u32::MAX, max: self.max_frames })?;
        self.grow(frames)
    }

    /// `grantee` starts using entry `gref` for `access`. The first use checks the entry
    /// (`GTF_permit_access`, domid = `grantee`, not read-only for writing) and sets
    /// `GTF_reading` (+ `GTF_writing`) in it with a bounded compare-exchange; later
    /// uses only count, except that the first writer of an entry so far only read
    /// checks `GTF_readonly` and sets `GTF_writing`. Every acquire needs one
    /// [`Self::release`] with the same access.
    pub fn acquire(
        &mut self,
        entries: &mut dyn GrantEntries,
        gref: u32,
        grantee: u16,
        access: Access,
    ) -> Result<GrantedFrame, GrantError> {
        if gref >= self.nr_entries().min(entries.entry_count()) {
            return Err(GrantError::BadGrantReference(gref));
        }
        let existing = self.active.get(&gref).copied();
        let mut updated = existing.unwrap_or(ActiveGrant { grantee, gfn: 0, readers: 0, writers: 0 });
        if updated.grantee != grantee {
            return Err(GrantError::InUseByOther { gref, grantee: updated.grantee });
        }
        let counter = match access {
            Access::Read => &mut updated.readers,
            Access::Write => &mut updated.writers,
        };
        *counter = counter.checked_add(1).ok_or(GrantError::TooManyUsers(gref))?;
        let first_writer = access == Access::Write && existing.is_some_and(|active| active.writers == 0);
        if existing.is_none() || first_writer {
            set_status(entries, gref, grantee, access, existing.is_some())?;
        }
        if existing.is_none() {
            // Read after the status bits are set: from now on the guest cannot
            // revoke the grant, so this is the frame it granted.
            updated.gfn = u64::from(entries.load(gref).frame);
        }
        self.active.insert(gref, updated);
        Ok(GrantedFrame { gfn: updated.gfn, readonly: access == Access::Read })
    }

    /// The grantee stops one use of `gref` for `access`. When the last writer goes,
    /// `GTF_writing` is cleared; when the last user goes, `GTF_reading` too.
    pub fn release(&mut self, entries: &mut dyn GrantEntries, gref: u32, access: Access) -> Result<(), GrantError> {
        let active = self.active.get_mut(&gref).ok_or(GrantError::NotAcquired(gref))?;
        let counter = match access {
            Access::Read => &mut active.readers,
            Access::Write => &mut active.writers,
        };
        *counter = counter.checked_sub(1).ok_or(GrantError::NotAcquired(gref))?;
        let (readers, writers) = (active.readers, active.writers);
        let in_range = gref < entries.entry_count();
        if writers == 0 && in_range {
            entries.clear_flags(gref, GTF_writing);
        }
        if readers == 0 && writers == 0 {
            if in_range {
                entries.clear_flags(gref, GTF_reading);
            }
            self.active.remove(&gref);
        }
        Ok(())
    }

    /// Ends every use of every entry and clears their status bits (teardown of the
    /// granting domain or of its backends). Returns how many entries were in use.
    pub fn release_all(&mut self, entries: &mut dyn GrantEntries) -> usize {
        let count = self.active.len();
        let limit = entries.entry_count();
        for &gref in self.active.keys() {
            if gref < limit {
                entries.clear_flags(gref, GTF_reading | GTF_writing);
            }
        }
        self.active.clear();
        count
    }

    /// The entries in use, lowest reference first (for teardown and the debugger).
    pub fn active_mappings(&self) -> impl Iterator<Item = (u32, ActiveGrant)> + '_ {
        self.active.iter().map(|(&gref, &active)| (gref, active))
    }

    /// The use of entry `gref`, if any.
    pub fn active(&self, gref: u32) -> Option<ActiveGrant> {
        self.active.get(&gref).copied()
    }
}

/// Sets `GTF_reading` (+ `GTF_writing` for [`Access::Write`]) in entry `gref`
/// (`_set_status_v1`). An entry not yet in use (`pinned` false) must grant
/// `GTF_permit_access` to `grantee`; a write needs `GTF_readonly` clear. The checks
/// are redone on every attempt against the header the exchange found.
fn set_status(
    entries: &mut dyn GrantEntries,
    gref: u32,
    grantee: u16,
    access: Access,
    pinned: bool,
) -> Result<(), GrantError> {
    let entry = entries.load(gref);
    let mut current = GrantEntryHeader { flags: entry.flags, domid: entry.domid };
    for _ in 0..CMPXCHG_ATTEMPTS {
        if !pinned && ((current.flags & GTF_type_mask) != GTF_permit_access || current.domid != grantee) {
            return Err(GrantError::NotGranted { gref, flags: current.flags, domid: current.domid });
        }
        let mut new = current;
        new.flags |= GTF_reading;
        if access == Access::Write {
            if current.flags & GTF_readonly != 0 {
                return Err(GrantError::ReadOnly(gref));
            }
            new.flags |= GTF_writing;
        }
        match entries.compare_exchange_header(gref, current, new) {
            Ok(()) => return Ok(()),
            Err(actual) => current = actual,
        }
    }
    Err(GrantError::Unstable(gref))
}

// ---------------------------------------------------------------------------------
// fuzzing (hosted builds only)

#[doc(hidden)]
#[cfg(not(target_os = "none"))]
#[path = "grant_table_testing.rs"]
pub mod testing;

#[doc(hidden)]
#[cfg(not(target_os = "none"))]
pub use testing::fuzz_one;

#[cfg(test)]
#[path = "grant_table_tests.rs"]
mod tests;
