//! Grant tables (xen/include/public/grant_table.h): the v1 entry a guest writes to
//! share a page, its flag bits, the `grant_table_op` sub-operations and the
//! per-operation `GNTST_*` status codes.
//!
//! A v1 table is an array of 8-byte [`GrantEntryV1`] in frames the guest maps with
//! `XENMEM_add_to_physmap(XENMAPSPACE_grant_table)`; 512 entries per 4 KiB frame.
//! The guest owns `domid` and `frame` and the type/readonly bits of `flags`; the
//! hypervisor sets and clears `GTF_reading`/`GTF_writing` while it uses the page.

/// `grant_table_op(cmd, uop, count)` sub-operations.
pub const GNTTABOP_map_grant_ref: u64 = 0;
pub const GNTTABOP_unmap_grant_ref: u64 = 1;
pub const GNTTABOP_setup_table: u64 = 2;
pub const GNTTABOP_dump_table: u64 = 3;
pub const GNTTABOP_transfer: u64 = 4;
pub const GNTTABOP_copy: u64 = 5;
pub const GNTTABOP_query_size: u64 = 6;
pub const GNTTABOP_unmap_and_replace: u64 = 7;
pub const GNTTABOP_set_version: u64 = 8;
pub const GNTTABOP_get_status_frames: u64 = 9;
pub const GNTTABOP_get_version: u64 = 10;
pub const GNTTABOP_swap_grant_ref: u64 = 11;
pub const GNTTABOP_cache_flush: u64 = 12;

/// `grant_entry_v1.flags`, bits 1:0: the entry type.
pub const GTF_invalid: u16 = 0;
pub const GTF_permit_access: u16 = 1;
pub const GTF_accept_transfer: u16 = 2;
/// v2 only.
pub const GTF_transitive: u16 = 3;
pub const GTF_type_mask: u16 = 3;
/// Set by the guest: the grantee may only read.
pub const GTF_readonly: u16 = 1 << 2;
/// Set by the hypervisor while the grantee reads (or writes) the frame.
pub const GTF_reading: u16 = 1 << 3;
/// Set by the hypervisor while the grantee may write the frame.
pub const GTF_writing: u16 = 1 << 4;
/// Cache attributes for a mapping (x86).
pub const GTF_PWT: u16 = 1 << 5;
pub const GTF_PCD: u16 = 1 << 6;
pub const GTF_PAT: u16 = 1 << 7;
/// v2 sub-page grant.
pub const GTF_sub_page: u16 = 1 << 8;
/// `GTF_accept_transfer` entries: transfer states.
pub const GTF_transfer_committed: u16 = 1 << 2;
pub const GTF_transfer_completed: u16 = 1 << 3;

/// Entries 0..8 are reserved for the toolstack (0 console, 1 xenstore by convention);
/// Xen still lets them be used. Linux allocates from 8 upward.
pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;
/// Bytes per v1 entry and entries per 4 KiB grant frame.
pub const GRANT_ENTRY_V1_SIZE: usize = 8;
pub const GRANT_ENTRIES_PER_FRAME_V1: u32 = 4096 / GRANT_ENTRY_V1_SIZE as u32;

/// Per-operation status (`status` field of each op), not an errno.
pub const GNTST_okay: i16 = 0;
pub const GNTST_general_error: i16 = -1;
pub const GNTST_bad_domain: i16 = -2;
pub const GNTST_bad_gntref: i16 = -3;
pub const GNTST_bad_handle: i16 = -4;
pub const GNTST_bad_virt_addr: i16 = -5;
pub const GNTST_bad_dev_addr: i16 = -6;
pub const GNTST_no_device_space: i16 = -7;
pub const GNTST_permission_denied: i16 = -8;
pub const GNTST_bad_page: i16 = -9;
pub const GNTST_bad_copy_arg: i16 = -10;
pub const GNTST_address_too_big: i16 = -11;
pub const GNTST_eagain: i16 = -12;
pub const GNTST_no_space: i16 = -13;

/// `struct grant_entry_v1`. Written by the granting guest (frame and domid first,
/// then, after a write barrier, flags); `flags` is shared with the hypervisor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct GrantEntryV1 {
    /// `GTF_*` bits: type (1:0), readonly, and the hypervisor's reading/writing bits.
    pub flags: u16,
    /// The domain allowed to use the grant (the backend's domid).
    pub domid: u16,
    /// The granted guest frame number (a GFN for HVM/PVH guests).
    pub frame: u32,
}

/// `grant_entry_header_t`: the first four bytes of an entry, compared and exchanged
/// as one 32-bit word so a change of `domid` cannot slip between a check and an
/// update of `flags`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct GrantEntryHeader {
    pub flags: u16,
    pub domid: u16,
}

const _: () = assert!(core::mem::size_of::<GrantEntryV1>() == GRANT_ENTRY_V1_SIZE);
const _: () = assert!(core::mem::offset_of!(GrantEntryV1, domid) == 2);
const _: () = assert!(core::mem::offset_of!(GrantEntryV1, frame) == 4);
const _: () = assert!(core::mem::size_of::<GrantEntryHeader>() == 4);
