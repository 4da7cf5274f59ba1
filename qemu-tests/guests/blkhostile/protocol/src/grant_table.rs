//! The guest's own v1 grant entries, in the one grant frame it maps
//! (`xen/include/public/grant_table.h`; pvh-abi.md §3.7).
//!
//! An entry is `flags` u16 @0, `domid` u16 @2, `frame` u32 @4. To grant, the guest
//! writes `frame` and `domid`, then — after a barrier, so the hypervisor never sees a
//! valid type with a stale frame — `flags` (`GTF_permit_access`, plus `GTF_readonly`).
//! The hypervisor sets `GTF_reading`/`GTF_writing` while dom0 uses the page and must
//! clear them when it is done: [`GrantTable::in_use`] reports entries it left marked.

// Xen's names for Xen's constants (STYLE.md: ABI terms keep the headers' spelling).
#![allow(non_upper_case_globals)]

use crate::{SharedPage, PAGE_SIZE};

pub const GTF_permit_access: u16 = 1;
pub const GTF_readonly: u16 = 1 << 2;
pub const GTF_reading: u16 = 1 << 3;
pub const GTF_writing: u16 = 1 << 4;

/// Bytes of a v1 entry.
pub const ENTRY_SIZE: usize = 8;
/// Entries in one grant frame.
pub const ENTRIES_PER_FRAME: u32 = (PAGE_SIZE / ENTRY_SIZE) as u32;

/// The entry is beyond the one frame this table covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfFrame(pub u32);

/// Grant frame 0 of the guest's table.
pub struct GrantTable<P: SharedPage> {
    frame: P,
}

impl<P: SharedPage> GrantTable<P> {
    pub fn new(frame: P) -> Self {
        Self { frame }
    }

    fn offset(gref: u32) -> Result<usize, OutOfFrame> {
        if gref < ENTRIES_PER_FRAME {
            Ok(gref as usize * ENTRY_SIZE)
        } else {
            Err(OutOfFrame(gref))
        }
    }

    /// Lets `domid` use guest frame `gfn` through entry `gref` (read-only if asked).
    pub fn grant(&mut self, gref: u32, domid: u16, gfn: u32, readonly: bool) -> Result<(), OutOfFrame> {
        let offset = Self::offset(gref)?;
        self.frame.write_u32(offset + 4, gfn);
        self.frame.write_u16(offset + 2, domid);
        self.frame.fence();
        let flags = if readonly { GTF_permit_access | GTF_readonly } else { GTF_permit_access };
        self.frame.write_u16(offset, flags);
        self.frame.fence();
        Ok(())
    }

    /// Makes entry `gref` invalid (type 0), as a never-granted or revoked entry is.
    pub fn invalidate(&mut self, gref: u32) -> Result<(), OutOfFrame> {
        let offset = Self::offset(gref)?;
        self.frame.write_u16(offset, 0);
        self.frame.fence();
        Ok(())
    }

    /// The entry's flags as they are now.
    pub fn flags(&self, gref: u32) -> Result<u16, OutOfFrame> {
        Ok(self.frame.read_u16(Self::offset(gref)?))
    }

    /// Whether the hypervisor still marks the entry as being read or written.
    pub fn in_use(&self, gref: u32) -> Result<bool, OutOfFrame> {
        Ok(self.flags(gref)? & (GTF_reading | GTF_writing) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestPage;

    #[test]
    fn grant_writes_the_v1_layout() {
        let frame = TestPage::new();
        let mut table = GrantTable::new(frame.clone());
        table.grant(9, 0, 0x1234, false).unwrap();
        table.grant(10, 3, 0x99, true).unwrap();
        assert_eq!(&frame.0.borrow()[72..80], &[1, 0, 0, 0, 0x34, 0x12, 0, 0]);
        assert_eq!(&frame.0.borrow()[80..88], &[5, 0, 3, 0, 0x99, 0, 0, 0]);
        assert_eq!(table.flags(10), Ok(GTF_permit_access | GTF_readonly));
    }

    #[test]
    fn in_use_follows_the_hypervisor_bits_and_invalidate_clears_the_type() {
        let mut frame = TestPage::new();
        let mut table = GrantTable::new(frame.clone());
        table.grant(8, 0, 1, false).unwrap();
        assert_eq!(table.in_use(8), Ok(false));
        frame.write_u16(64, GTF_permit_access | GTF_reading | GTF_writing);
        assert_eq!(table.in_use(8), Ok(true));
        table.invalidate(8).unwrap();
        assert_eq!(table.flags(8), Ok(0));
    }

    #[test]
    fn entries_beyond_the_frame_are_refused() {
        let mut table = GrantTable::new(TestPage::new());
        assert_eq!(table.grant(ENTRIES_PER_FRAME, 0, 1, false), Err(OutOfFrame(ENTRIES_PER_FRAME)));
        assert_eq!(table.flags(u32::MAX), Err(OutOfFrame(u32::MAX)));
        assert!(table.grant(ENTRIES_PER_FRAME - 1, 0, 1, false).is_ok());
    }
}
